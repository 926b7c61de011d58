/* route_table — every endpoint of rlhfd: method, path pattern, the roles
 * that may call it, its handler (routes.h), whether it honours
 * Idempotency-Key and whether it streams its body. docs/api.md describes
 * every route (a test checks that it lists them all). */
#ifndef RLHF_ROUTE_TABLE_H
#define RLHF_ROUTE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

typedef struct http_route {
    const char *method;
    const char *pattern; /* segments; "{id}" matches a positive integer (at most
                            two per pattern), a final "{path}" the rest (checked
                            by its handler) */
    int roles;           /* auth_role bits that may call it; 0: no token needed */
    enum MHD_Result (*handler)(request *r);
    bool creates;              /* a creating POST: Idempotency-Key applies */
    const http_upload *upload; /* streams its body (NULL: held whole) */
} http_route;

/* The route for method and url (*id and *sub_id receive its first and
 * second {id}, 0 when it has none, or -1 when its digits are beyond int64:
 * refuse, never clamp), or NULL; then *path_known tells whether another
 * method has the path (405, not 404). */
const http_route *route_table_match(const char *method, const char *url, int64_t *id,
                                    int64_t *sub_id, bool *path_known);
/* Whether route is an expensive read (generation, agreement, exports,
 * metric pages): limited by the token's read_rate instead of write_rate. */
bool route_table_expensive(const http_route *route);
/* route's position in the table: 0 .. http_route_count() - 1. */
size_t route_table_index(const http_route *route);

/* The table, for /metrics, `rlhfd --routes` and the docs test. */
size_t http_route_count(void);
void http_route_at(size_t i, const char **method, const char **pattern);
/* The auth_role bits that may call route i (0: no token needed). */
int http_route_roles(size_t i);
/* Whether route i honours Idempotency-Key (a creating POST). */
bool http_route_creates(size_t i);

#endif
