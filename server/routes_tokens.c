/* POST /v1/tokens {name, role} → the token, shown once. GET /v1/tokens:
 * names and roles, never secrets. POST /v1/tokens/{id}/revoke: the token
 * stops working at once (every request looks its token up; an open event
 * stream ends at its next poll). Admin only. */
#include <string.h>

#include "routes.h"
#include "token_cache.h"

/* The body's name and role: 1 ok, 0 with e. */
static int check_token(const json_t *body, const char **name, auth_role *role, http_error *e) {
    static const char *const keys[] = {"name", "role", NULL};
    *name = json_string_value(json_object_get(body, "name"));
    *role = auth_role_parse(json_string_value(json_object_get(body, "role")));
    if (!json_check_keys(body, keys, "", e) || !json_check_name(*name, 128, e))
        return 0;
    if (*role == AUTH_ROLE_NONE)
        return http_error_set(e, 400, "invalid_value", "role",
                              "role must be one of admin, annotator, viewer");
    return 1;
}

enum MHD_Result route_tokens_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    const char *name;
    auth_role role;
    http_error e;
    if (!check_token(body, &name, &role, &e))
        replied = http_reply_http_error(r, &e);
    else {
        char token[AUTH_TOKEN_BYTES], err[256];
        int64_t id = db_begin(r->db) == SQLITE_OK
                         ? auth_token_create(r->db, name, role, token, err, sizeof err)
                         : (snprintf(err, sizeof err, "%s", sqlite3_errmsg(r->db)), -1);
        if (id < 0)
            replied = http_reply_db_failure(r, db_failure_of(r->db), err);
        else if (id == 0)
            replied = http_reply_error(r, 409, "name_taken", "name",
                                       "a token called '%.128s' already exists", name);
        else
            replied = http_commit_reply(r, 200,
                                        json_pack("{s:I, s:s, s:s, s:s, s:s, s:I}", "id",
                                                  (json_int_t)id, "object", "token", "name", name,
                                                  "role", auth_role_name(role), "token", token,
                                                  "created_at", (json_int_t)db_now_s()));
    }
    json_decref(body);
    return replied;
}

static json_t *token_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    json_t *revoked = sqlite3_column_type(st, 4) == SQLITE_NULL
                          ? json_null()
                          : json_integer(sqlite3_column_int64(st, 4));
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:o}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "token", "name",
                     (const char *)sqlite3_column_text(st, 1), "role",
                     (const char *)sqlite3_column_text(st, 2), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 3), "revoked_at", revoked);
}

enum MHD_Result route_tokens_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT id, name, role, created_at, revoked_at FROM api_tokens "
                           "WHERE ?1 = 0 OR id < ?1 ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, limit + 1);
    return http_reply_rows(r, st, limit, 0, token_from_row);
}

#define TOKEN_COLUMNS "id, name, role, created_at, revoked_at FROM api_tokens"

/* Sets revoked_at (kept if already set: revoking twice answers the same
 * token). Refuses to revoke the last active admin token, which would leave
 * nobody able to manage tokens (rlhfd --create-token could still). */
enum MHD_Result route_tokens_revoke(request *r) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int found;
    json_t *token = db_load_row(r->db, "SELECT " TOKEN_COLUMNS " WHERE id = ?1", r->path_id,
                                token_from_row, &found);
    if (token == NULL) {
        db_rollback(r->db);
        return found < 0 ? http_reply_db_error(r)
                         : http_reply_error(r, 404, "token_not_found", NULL, "no token %lld",
                                            (long long)r->path_id);
    }
    const bool active = json_is_null(json_object_get(token, "revoked_at"));
    const bool admin = strcmp(json_string_value(json_object_get(token, "role")), "admin") == 0;
    json_decref(token);
    if (active && admin &&
        db_row_exists(r->db,
                      "SELECT 1 FROM api_tokens WHERE role = 'admin' AND revoked_at IS NULL AND "
                      "id <> ?1",
                      r->path_id) == 0) {
        db_rollback(r->db);
        return http_reply_error(r, 409, "last_admin_token", NULL,
                                "token %lld is the last active admin token; create another "
                                "admin token first",
                                (long long)r->path_id);
    }
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(r->db,
                                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND "
                                "revoked_at IS NULL",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, r->path_id);
        sqlite3_bind_int64(st, 2, db_now_s());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    token = ok ? db_load_row(r->db, "SELECT " TOKEN_COLUMNS " WHERE id = ?1", r->path_id,
                             token_from_row, NULL)
               : NULL;
    if (token == NULL) {
        enum MHD_Result replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    /* Before the reply goes out, no cached copy of the token survives
     * (server/token_cache.h). */
    enum MHD_Result replied = http_commit_reply(r, 200, token);
    if (r->srv->token_cache != NULL)
        token_cache_invalidate(r->srv->token_cache);
    return replied;
}
