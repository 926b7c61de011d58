/* ranking_order — the check of an order: groups of candidate ids, best
 * first (a group holds ties), as a ranking gives it and as a gold answer
 * does (over candidate positions). */
#ifndef RLHF_RANKING_ORDER_H
#define RLHF_RANKING_ORDER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"

/* Validates order (the member called name, for the errors) against the
 * candidates ids[0..n): every candidate exactly once, in non-empty
 * groups. rank[i] receives the group of ids[i]. 1 ok, 0 with e. */
int ranking_check_order(const json_t *order, const char *name, const int64_t *ids, size_t n,
                        int64_t *rank, http_error *e);

#endif
