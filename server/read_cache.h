/* read_cache — what rlhfd remembers between reads, so that a metric read
 * costs neither SQLite nor SHA-256 when nothing changed (issue 5).
 *
 * Tokens: a small direct-mapped table, presented token text -> (id, role),
 * filled by successful lookups only. Revocation (the only way a token stops
 * being valid: POST /v1/tokens/{id}/revoke; nothing else writes
 * api_tokens.revoked_at) calls read_cache_tokens_invalidate after its
 * commit and before its reply is sent, which empties the table and bumps a
 * generation: a lookup that read the database before the commit carries the
 * old generation and is not stored (read_cache_token_put), so a revoked
 * token gets 401 on the very next request. The secret text is held in
 * memory as it is in every request; it is never written anywhere. Another
 * process revoking tokens in the same database is not seen: rlhfd owns its
 * database's tokens.
 *
 * Series: whole pre-rendered series (metrics_series) of finished jobs, keyed
 * by (job, name). A job that reached succeeded, failed or cancelled never
 * gets another metric row: the worker writes metrics only in a transaction
 * fenced on its lease and status IN ('validating_files', 'running')
 * (train/db_sink.c), and no state leaves those three. So a series read
 * after seeing such a status is final. Bounded by bytes and entries; the
 * oldest entry goes first. A series that cannot be cached (non-finite
 * values, a name JSON escapes, too large) is remembered as such.
 */
#ifndef RLHF_READ_CACHE_H
#define RLHF_READ_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "metrics_page.h"

typedef struct read_cache read_cache;

/* rlhfd's series budget: a 10,000-step series of one name is ~0.6 MB. */
#define READ_CACHE_SERIES_BYTES ((size_t)64 << 20)

/* series_max_bytes: the series cache's budget (0: no series cache). */
read_cache *read_cache_new(size_t series_max_bytes);
void read_cache_free(read_cache *c);

/* 1 and *out if token is cached, else 0 (then *generation is what to pass
 * to read_cache_token_put after the database lookup). */
int read_cache_token_get(read_cache *c, const char *token, auth_token *out, uint64_t *generation);
void read_cache_token_put(read_cache *c, const char *token, const auth_token *t,
                          uint64_t generation);
void read_cache_tokens_invalidate(read_cache *c);

/* A page of a cached series: 1 rendered (*out, *len), 0 not cached,
 * -1 out of memory; 2: known not cacheable (render it another way). */
int read_cache_series_page(read_cache *c, int64_t job_id, const char *name, int64_t after_step,
                           int64_t limit, char **out, size_t *len);
/* Caches s (taken; cacheable 0: remembered as not cacheable, s empty). */
void read_cache_series_put(read_cache *c, metrics_series *s, int cacheable);

#endif
