#include "auth.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "db.h"
#include "sha256.h"

static const char *const role_names[] = {"admin", "annotator", "viewer"};

auth_role auth_role_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (name != NULL && strcmp(name, role_names[i]) == 0)
            return (auth_role)(1 << i);
    return AUTH_ROLE_NONE;
}

const char *auth_role_name(auth_role role) {
    for (int i = 0; i < 3; i++)
        if (role == (auth_role)(1 << i))
            return role_names[i];
    return "none";
}

int64_t auth_token_create(sqlite3 *db, const char *name, auth_role role, char *token, char *err,
                          size_t errlen) {
    unsigned char secret[32];
    if (getrandom(secret, sizeof secret, 0) != (ssize_t)sizeof secret) {
        snprintf(err, errlen, "getrandom failed");
        return -1;
    }
    int n = snprintf(token, AUTH_TOKEN_BYTES, "rlhfd_");
    for (size_t i = 0; i < sizeof secret; i++)
        n += snprintf(token + n, AUTH_TOKEN_BYTES - (size_t)n, "%02x", secret[i]);
    char digest[65];
    sha256_hex(token, strlen(token), digest);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO api_tokens (name, role, token_sha256, created_at) "
                           "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, auth_role_name(role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, db_now_s());
    int rc = sqlite3_step(st);
    int64_t id = rc != SQLITE_DONE          ? -1
                 : sqlite3_changes(db) == 0 ? 0
                                            : sqlite3_last_insert_rowid(db);
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return id;
}

int auth_token_lookup(sqlite3 *db, const char *token, auth_token *out) {
    char digest[65];
    sha256_hex(token, strlen(token), digest);
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT id, role FROM api_tokens WHERE "
                                             "token_sha256 = ?1 AND revoked_at IS NULL");
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->role = auth_role_parse((const char *)sqlite3_column_text(st, 1));
    }
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
