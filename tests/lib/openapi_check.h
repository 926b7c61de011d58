/* docs/openapi.json as the tests use it: the document rlhfd serves (the
 * bytes compiled into it, server/openapi.h), each path's route-table
 * pattern, and the check every reply of the http helpers goes through
 * (test_server_util.c): the reply's route and status pick a response of the
 * document, whose media type and JSON schema (json_schema.h) the reply must
 * match. */
#ifndef RLHF_OPENAPI_CHECK_H
#define RLHF_OPENAPI_CHECK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The parsed document (parsed once; never freed). */
const json_t *openapi_doc(void);

/* The route-table pattern of the document's path with the operation op:
 * each {param} becomes {id} when op declares it an integer, {path} when it
 * is named path, else {name} ("/v1/models/{name}/files/{file_name}" ->
 * "/v1/models/{name}/files/{name}"). */
void openapi_route_pattern(const json_t *doc, const char *path, const json_t *op, char *out,
                           size_t len);

/* The document's operation for method and route-table pattern, or NULL. */
const json_t *openapi_operation(const json_t *doc, const char *method, const char *pattern);

/* Whether a reply matches the document: method and target as sent (the
 * query is ignored), status, Content-Type, the body and its parse (NULL
 * if not JSON); truncated: the body was cut short (then not checked
 * against a schema). A text/event-stream body is checked event by event
 * against its media type's "x-sse-events" when it has them, a JSONL one
 * line by line against its "x-jsonl-item". On false, why says what does
 * not match. */
bool openapi_reply_ok(const json_t *doc, const char *method, const char *target, long status,
                      const char *content_type, const char *body, size_t body_len,
                      const json_t *json, bool truncated, char *why, size_t len);

#endif
