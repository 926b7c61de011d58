/* See ranking_order.h. */
#include "ranking_order.h"

#include <stdio.h>

int ranking_check_order(const json_t *order, const char *name, const int64_t *ids, size_t n,
                        int64_t *rank, http_error *e) {
    if (!json_is_array(order))
        return http_error_set(e, 400, "invalid_type", name,
                              "%s must be an array of groups of candidate ids, best "
                              "first (a group holds ties)",
                              name);
    for (size_t i = 0; i < n; i++)
        rank[i] = -1;
    size_t g;
    json_t *group;
    json_array_foreach((json_t *)order, g, group) {
        char param[64];
        snprintf(param, sizeof param, "%s[%zu]", name, g);
        if (!json_is_array(group) || json_array_size(group) == 0) {
            return http_error_set(e, 400, "invalid_type", param,
                                  "%s must be a non-empty array of candidate ids", param);
        }
        size_t j;
        json_t *idv;
        json_array_foreach(group, j, idv) {
            snprintf(param, sizeof param, "%s[%zu][%zu]", name, g, j);
            size_t i = 0;
            while (i < n && !(json_is_integer(idv) && json_integer_value(idv) == ids[i]))
                i++;
            if (i == n) {
                return http_error_set(e, 400, "unknown_candidate", param,
                                      "%s is not a candidate id of this comparison", param);
            }
            if (rank[i] >= 0) {
                return http_error_set(e, 400, "duplicate_candidate", param,
                                      "candidate %lld appears more than once", (long long)ids[i]);
            }
            rank[i] = (int64_t)g;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (rank[i] < 0) {
            return http_error_set(e, 400, "missing_candidate", name,
                                  "%s must rank every candidate; %lld is missing", name,
                                  (long long)ids[i]);
        }
    return 1;
}
