/* token_cache — presented API tokens rlhfd has looked up, so that a
 * request with a known token costs neither SQLite nor SHA-256 (issue 5).
 *
 * A small direct-mapped table, presented token text -> (id, role),
 * filled by successful lookups only. Revocation (the only way a token stops
 * being valid: POST /v1/tokens/{id}/revoke; nothing else writes
 * api_tokens.revoked_at) calls token_cache_invalidate after its
 * commit and before its reply is sent, which empties the table and bumps a
 * generation: a lookup that read the database before the commit carries the
 * old generation and is not stored (token_cache_put), so a revoked
 * token gets 401 on the very next request. The secret text is held in
 * memory as it is in every request; it is never written anywhere. Another
 * process revoking tokens in the same database is not seen: rlhfd owns its
 * database's tokens.
 */
#ifndef RLHF_TOKEN_CACHE_H
#define RLHF_TOKEN_CACHE_H

#include <stdint.h>

#include "auth.h"

typedef struct token_cache token_cache;

/* The table's slots; a token takes the slot its hash picks, so a later
 * token with the same slot replaces it. */
#define TOKEN_CACHE_SLOTS 256
/* Longer tokens are not remembered (rlhfd's own are 51 bytes). */
#define TOKEN_CACHE_MAX_LEN 128

token_cache *token_cache_new(void);
void token_cache_free(token_cache *c);

/* 1 and *out if token is cached, else 0 (then *generation is what to pass
 * to token_cache_put after the database lookup). */
int token_cache_get(token_cache *c, const char *token, auth_token *out, uint64_t *generation);
/* Remembers t for token, unless the cache was invalidated since the
 * token_cache_get that gave generation. */
void token_cache_put(token_cache *c, const char *token, const auth_token *t, uint64_t generation);
/* Forgets every token (a token was revoked). */
void token_cache_invalidate(token_cache *c);

#endif
