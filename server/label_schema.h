/* label_schema — what an annotator may say about each response besides the
 * ranking: Likert ratings and flags, configured per project.
 *
 * A project's schema is {ratings: [{name, min, max, required}], flags:
 * [name, ...]}, e.g. {"ratings": [{"name": "overall", "min": 1, "max": 7}],
 * "flags": ["harmful", "factually wrong", "refusal"]} (InstructGPT rated
 * overall quality 1-7). A ranking's labels are [{candidate_id, ratings:
 * {name: integer}, flags: [name, ...]}], at most one item per candidate.
 */
#ifndef RLHF_LABEL_SCHEMA_H
#define RLHF_LABEL_SCHEMA_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"

#define LABEL_SCHEMA_MAX_RATINGS 8
#define LABEL_SCHEMA_MAX_FLAGS   16
#define LABEL_SCHEMA_MAX_NAME    64
#define LABEL_SCHEMA_MAX_POINTS  21 /* max - min + 1 */

/* Validates a project's label_schema (param "label_schema..."): 1 with
 * *out (a new reference: the schema with defaults filled in), 0 with e.
 * NULL (absent) is the empty schema. */
int label_schema_check(const json_t *schema, json_t **out, http_error *e);

/* Validates a ranking's labels (param "labels[i]...") against the
 * project's schema and the comparison's candidate ids ids[0..n). NULL
 * (absent) is no labels, allowed unless a rating is required. skip: the
 * ranking is a skip, which takes no labels. 1 ok, 0 with e. */
int label_schema_check_labels(const json_t *schema, const json_t *labels, const int64_t *ids,
                              size_t n, int skip, http_error *e);

#endif
