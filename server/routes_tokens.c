/* POST /v1/tokens {name, role} → the token, shown once. GET /v1/tokens:
 * names and roles, never secrets. Admin only. */
#include "routes.h"

enum MHD_Result route_tokens_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"name", "role", NULL};
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *role_name = json_string_value(json_object_get(body, "role"));
    auth_role role = auth_role_parse(role_name);
    if (!http_check_keys(r, body, keys, &replied))
        ;
    else if (!http_check_name(r, name, 128, &replied))
        ;
    else if (role == AUTH_ROLE_NONE)
        replied = http_reply_error(r, 400, "invalid_value", "role",
                                   "role must be one of admin, annotator, viewer");
    else {
        char token[AUTH_TOKEN_BYTES], err[256];
        int64_t id = db_begin(r->db) == SQLITE_OK
                         ? auth_token_create(r->db, name, role, token, err, sizeof err)
                         : (snprintf(err, sizeof err, "%s", sqlite3_errmsg(r->db)), -1);
        if (id < 0)
            replied = http_reply_error(r, 500, "database_error", NULL, "%s", err);
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
        return http_reply_error(r, 500, "database_error", NULL, "%s", sqlite3_errmsg(r->db));
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, limit + 1);
    return http_reply_rows(r, st, limit, 0, token_from_row);
}
