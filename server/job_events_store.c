#include "job_events_store.h"

#include "job_json.h"

#define EVENT_COLUMNS "id, created_at, level, type, code, message, data"

/* Rollouts are events of code 'rollout' (train/db_sink.c) with their own
 * route: the events list and the stream leave them out. */
const char job_events_store_page_sql[] = "SELECT " EVENT_COLUMNS " FROM job_events WHERE "
                                         "job_id = ?3 AND (?1 = 0 OR id < ?1) "
                                         "AND code <> 'rollout' ORDER BY id DESC LIMIT ?2";

const char job_events_store_rollouts_sql[] = "SELECT " EVENT_COLUMNS " FROM job_events WHERE "
                                             "job_id = ?3 AND (?1 = 0 OR id < ?1) "
                                             "AND code = 'rollout' ORDER BY id DESC LIMIT ?2";

json_t *job_events_store_rollout_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    (void)db;
    json_t *out = json_pack("{s:I, s:s, s:I, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
                            "object", "job.rollout", "job_id", (json_int_t)job_id, "created_at",
                            (json_int_t)sqlite3_column_int64(st, 1));
    json_t *data = job_json_column(st, 6);
    if (out && json_is_object(data))
        json_object_update(out, data);
    json_decref(data);
    return out;
}

sqlite3_stmt *job_events_store_after(sqlite3 *db, int64_t job_id, int64_t after_id, int64_t limit) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " EVENT_COLUMNS " FROM job_events WHERE job_id = ?1 "
                           "AND id > ?2 AND code <> 'rollout' ORDER BY id LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int64(st, 3, limit);
    return st;
}

json_t *job_events_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    (void)db;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:o}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "job.event", "job_id",
                     (json_int_t)job_id, "created_at", (json_int_t)sqlite3_column_int64(st, 1),
                     "level", (const char *)sqlite3_column_text(st, 2), "type",
                     (const char *)sqlite3_column_text(st, 3), "code",
                     (const char *)sqlite3_column_text(st, 4), "message",
                     (const char *)sqlite3_column_text(st, 5), "data", job_json_column(st, 6));
}

int64_t job_events_store_id(sqlite3_stmt *st) {
    return sqlite3_column_int64(st, 0);
}

const char *job_events_store_type(sqlite3_stmt *st) {
    return (const char *)sqlite3_column_text(st, 3);
}
