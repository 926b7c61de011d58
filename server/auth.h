/* auth — API tokens and roles.
 *
 * A token is "rlhfd_" + 64 hex characters of getrandom() output, shown once
 * when it is created; the database stores only its SHA-256. Roles: admin
 * (everything, including tokens), annotator (comparisons and rankings),
 * viewer (reads jobs, metrics, checkpoints).
 */
#ifndef RLHF_AUTH_H
#define RLHF_AUTH_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef enum auth_role {
    AUTH_ROLE_NONE = 0,
    AUTH_ROLE_ADMIN = 1 << 0,
    AUTH_ROLE_ANNOTATOR = 1 << 1,
    AUTH_ROLE_VIEWER = 1 << 2,
} auth_role;

typedef struct auth_token {
    int64_t id;
    auth_role role;
} auth_token;

/* "admin" → AUTH_ROLE_ADMIN, ...; AUTH_ROLE_NONE if unknown. */
auth_role auth_role_parse(const char *name);
const char *auth_role_name(auth_role role);

/* Creates a token called name with role, writing the secret into token
 * (at least AUTH_TOKEN_BYTES). Returns the new id, 0 if the name is taken,
 * -1 on error (err). One statement: its own transaction, or the caller's. */
#define AUTH_TOKEN_BYTES 72
int64_t auth_token_create(sqlite3 *db, const char *name, auth_role role, char *token, char *err,
                          size_t errlen);

/* Looks up the token presented in "Authorization: Bearer <token>". Returns
 * 1 found (out filled), 0 unknown or revoked, -1 SQL error. */
int auth_token_lookup(sqlite3 *db, const char *token, auth_token *out);

#endif
