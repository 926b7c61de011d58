/* GET /healthz: the process answers. GET /readyz: it can also reach the
 * database and is not shutting down. Neither needs a token. */
#include "routes.h"

enum MHD_Result route_healthz(request *r) {
    return http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result route_readyz(request *r) {
    if (atomic_load(&r->srv->shutting_down))
        return http_reply_error(r, 503, "shutting_down", NULL, "rlhfd is shutting down");
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == db_schema_version();
    sqlite3_finalize(st);
    if (!ok)
        return http_reply_error(r, 503, "database_unavailable", NULL,
                                "the database is not reachable or not at schema version %d",
                                db_schema_version());
    return http_reply_json(
        r, 200, json_pack("{s:s, s:i}", "status", "ready", "schema_version", db_schema_version()));
}
