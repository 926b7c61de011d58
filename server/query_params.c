#include "query_params.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "openai_ids.h"
#include "reply.h"

const char *http_query(request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_parse_int64(const char *s, size_t n, int64_t min, int64_t max, int64_t *out) {
    size_t i = 0;
    bool negative = n > 0 && s[0] == '-' && min < 0;
    if (negative)
        i++;
    if (i == n)
        return 0;
    uint64_t magnitude = 0;
    const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned digit = (unsigned)(s[i] - '0');
        if (magnitude > (limit - digit) / 10)
            return 0; /* beyond int64: refused, never clamped */
        magnitude = magnitude * 10 + digit;
    }
    int64_t v = negative ? (magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude)
                         : (int64_t)magnitude;
    if (v < min || v > max)
        return 0;
    *out = v;
    return 1;
}

static int parse_positive(const char *s, int64_t *out) {
    return s != NULL && http_parse_int64(s, strlen(s), 1, INT64_MAX, out);
}

/* kind < 0: a plain integer cursor; else an openai_id_kind. */
static int query_page(request *r, const char *cursor_name, int kind, int64_t dflt, int64_t max,
                      int64_t *limit, int64_t *cursor, enum MHD_Result *replied) {
    const char *l = http_query(r, "limit");
    const char *c = cursor_name ? http_query(r, cursor_name) : NULL;
    *limit = dflt;
    *cursor = 0;
    if (l != NULL && (!parse_positive(l, limit) || *limit > max)) {
        *replied = http_reply_error(r, 400, "invalid_value", "limit",
                                    "limit must be an integer in [1, %lld]", (long long)max);
        return 0;
    }
    if (c != NULL && kind >= 0 && (*cursor = openai_id_parse(c, (openai_id_kind)kind)) <= 0) {
        *cursor = 0;
        *replied = http_reply_error(r, 400, "invalid_value", cursor_name, "%s must be an id %sN",
                                    cursor_name, openai_id_prefix((openai_id_kind)kind));
        return 0;
    }
    if (c != NULL && kind < 0 && !parse_positive(c, cursor)) {
        *replied = http_reply_error(r, 400, "invalid_value", cursor_name,
                                    "%s must be an integer id in [1, %lld]", cursor_name,
                                    (long long)INT64_MAX);
        return 0;
    }
    return 1;
}

int http_query_page(request *r, const char *cursor_name, int64_t dflt, int64_t max, int64_t *limit,
                    int64_t *cursor, enum MHD_Result *replied) {
    return query_page(r, cursor_name, -1, dflt, max, limit, cursor, replied);
}

int http_query_page_of(request *r, const char *cursor_name, int kind, int64_t dflt, int64_t max,
                       int64_t *limit, int64_t *cursor, enum MHD_Result *replied) {
    return query_page(r, cursor_name, kind, dflt, max, limit, cursor, replied);
}

enum MHD_Result http_reply_list(request *r, const char *sql, int64_t scope, db_row_json from_row) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    return http_reply_page(r, sql, after, limit, scope, from_row);
}

enum MHD_Result http_reply_list_of(request *r, const char *what, int found, const char *sql,
                                   db_row_json from_row) {
    return found <= 0 ? http_reply_not_found(r, what, found)
                      : http_reply_list(r, sql, r->path_id, from_row);
}
