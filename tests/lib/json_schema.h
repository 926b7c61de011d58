/* A JSON Schema subset over jansson, enough for the response schemas of
 * docs/openapi.json: type (a name or an array of names, so ["string",
 * "null"] is nullable), properties, required, additionalProperties (false
 * or a schema), items, enum, const, minimum, maximum, minItems, maxItems,
 * pattern (POSIX extended), $ref (a local pointer, "#/components/schemas/
 * Job"), oneOf, anyOf, allOf. Annotations (description, title, format,
 * examples, default, deprecated, $comment, x-*) are ignored; any other
 * keyword is an error, so a schema never seems to check what it does not. */
#ifndef RLHF_JSON_SCHEMA_H
#define RLHF_JSON_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Whether instance matches schema; $refs resolve in root (the whole
 * document). On false, why names the first failure with its place in the
 * instance: "$.data[0].status: \"x\" is not one of the enum". */
bool json_schema_validate(const json_t *root, const json_t *schema, const json_t *instance,
                          char *why, size_t len);

/* The value at a local JSON pointer ("#/components/schemas/Job"), or NULL. */
const json_t *json_schema_resolve(const json_t *root, const char *ref);

#endif
