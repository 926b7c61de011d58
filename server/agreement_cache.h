/* agreement_cache — the answer of GET /v1/projects/{id}/agreement per
 * project, so that a read does not recompute it from every ranking.
 *
 * An entry is the reply's body as computed from a snapshot whose highest
 * ranking change id (ranking_changes, schemas 016 and 018: one per insert,
 * edit or delete of a ranking, and per exclusion or inclusion of an
 * annotator) was `last`. The entry is still the answer for a
 * later snapshot with highest id `now` when no change with an id in
 * (last, now] belongs to the project: then the entry moves up to `now`
 * (agreement_cache_advance) without being recomputed. A new, edited or
 * withdrawn ranking in the project makes it stale. At most max_entries projects are kept (the least
 * recently read go first). Thread-safe.
 */
#ifndef RLHF_AGREEMENT_CACHE_H
#define RLHF_AGREEMENT_CACHE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* How many projects rlhfd keeps (main.c). */
#define AGREEMENT_CACHE_PROJECTS 64

typedef struct agreement_cache agreement_cache;

/* NULL on out of memory. */
agreement_cache *agreement_cache_new(size_t max_entries);
void agreement_cache_free(agreement_cache *c);

/* The entry's `last` for project_id, or -1 when there is none. */
int64_t agreement_cache_last(agreement_cache *c, int64_t project_id);
/* A copy of the body (malloc'd, *len bytes) when the entry's `last` is
 * exactly last: 1; else 0 (or out of memory). */
int agreement_cache_get(agreement_cache *c, int64_t project_id, int64_t last, char **text,
                        size_t *len);
/* Stores text (copied) as the answer at last, unless the entry holds a
 * later one. 0, or -1 out of memory. */
int agreement_cache_put(agreement_cache *c, int64_t project_id, int64_t last, const char *text,
                        size_t len);
/* The entry at `from` is the answer at `to` too (nothing in between
 * concerns its project): it moves up. No effect if the entry is no longer
 * at `from`. */
void agreement_cache_advance(agreement_cache *c, int64_t project_id, int64_t from, int64_t to);

/* The body of GET /v1/projects/{id}/agreement (malloc'd, *len bytes,
 * ending in the newline every reply ends in) computed from every ranking
 * of the project, and the snapshot's highest ranking change id into *last: what
 * the cache holds. NULL on a database error or out of memory. */
char *agreement_body_text(sqlite3 *db, int64_t project_id, int64_t *last, size_t *len);

/* Reads answered from the cache (gets that hit), and answers stored (puts:
 * computations), for /metrics and tests. */
void agreement_cache_stats(agreement_cache *c, long long *hits, long long *computed);

#endif
