/* json_checks — request bodies as JSON within limits, and the checks of
 * their members.
 *
 * One way to validate: a check takes the value and an http_error
 * (reply.h) and returns 1 (ok) or 0 with the error filled in, naming the
 * member at fault in param ("k", "candidates[1].text"). The handler replies
 * the first error once (http_reply_http_error), so a check does not know
 * whether its value is a body, a member of one, or an item of a bulk
 * request (which prefixes the item's index). The http_check_* forms reply
 * at once, for handlers with a single check.
 */
#ifndef RLHF_JSON_CHECKS_H
#define RLHF_JSON_CHECKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"
#include "request.h"

/* JSON limits for every body and every uploaded line, beyond the body cap:
 * nesting depth, bytes per string (keys included). jansson validates UTF-8
 * (no overlongs, no surrogates, nothing above U+10FFFF) and refuses \u0000. */
#define HTTP_JSON_MAX_DEPTH  32
#define HTTP_JSON_MAX_STRING (1 << 20)
/* Parses text as one JSON value within those limits, rejecting duplicate
 * keys. NULL on failure, with err and param (the path of the offending
 * string, e.g. "candidates[1].text", or "" when no single field is at
 * fault). */
json_t *http_json_parse(const char *text, size_t len, char *err, size_t errlen, char *param,
                        size_t paramlen);

/* The body as a JSON object within the limits above, or NULL after replying
 * 400 (bad JSON, too deep, string too long, not an object). */
json_t *http_body_object(request *r, enum MHD_Result *replied);

/* Whether s is one of the strings of list (NULL-terminated); false for a
 * NULL s. */
bool http_one_of(const char *s, const char *const *list);

/* Every key of obj is in allowed (NULL-terminated); else 400
 * unknown_parameter with param prefix + key (prefix e.g. "sample.", or ""). */
int json_check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                    http_error *e);
/* name (a member "name", or NULL if absent) is a non-empty string of at
 * most max_bytes; else 400 invalid_value "name". */
int json_check_name(const char *name, size_t max_bytes, http_error *e);
/* Member key of obj, if present, is an integer in [lo, hi] (*out, or dflt
 * when absent); else 400 invalid_type or invalid_value naming key. */
int json_check_int(const json_t *obj, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                   int64_t *out, http_error *e);

/* json_check_keys and json_check_name for a whole body, replying at once:
 * 1 ok, 0 replied. */
int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied);
int http_check_name(request *r, const char *name, size_t max_bytes, enum MHD_Result *replied);

#endif
