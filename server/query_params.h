/* query_params — the query string: single arguments and list paging. */
#ifndef RLHF_QUERY_PARAMS_H
#define RLHF_QUERY_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "request.h"

/* The n bytes at s as a decimal integer in [min, max]: digits only (a
 * leading '-' when min < 0), no spaces, signs or junk; a value beyond int64
 * is refused, never clamped. 1 with *out, or 0. */
int http_parse_int64(const char *s, size_t n, int64_t min, int64_t max, int64_t *out);
/* A query argument, or NULL. */
const char *http_query(request *r, const char *name);
/* Pagination: limit in [1, max] (default dflt) and an optional positive
 * integer cursor (cursor_name, e.g. "after", or NULL for none; 0 when
 * absent). 1 ok, 0 replied 400. */
int http_query_page(request *r, const char *cursor_name, int64_t dflt, int64_t max, int64_t *limit,
                    int64_t *cursor, enum MHD_Result *replied);

/* http_query_page for the OpenAI-compatible lists, whose cursors are
 * string ids: cursor_name's value must be "<prefix of kind>N" (*cursor =
 * N). */
int http_query_page_of(request *r, const char *cursor_name, int kind, int64_t dflt, int64_t max,
                       int64_t *limit, int64_t *cursor, enum MHD_Result *replied);

/* Replies a newest-first page of sql (as http_reply_page runs it) for
 * ?after (a cursor id) and ?limit (1..100, default 20). */
enum MHD_Result http_reply_list(request *r, const char *sql, int64_t scope, db_row_json from_row);
/* http_reply_list of r's {id} as scope, when the lookup of that {id} (a
 * <what>) found it (found 1); else http_reply_not_found. */
enum MHD_Result http_reply_list_of(request *r, const char *what, int found, const char *sql,
                                   db_row_json from_row);

#endif
