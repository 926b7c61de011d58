#include "checkpoints_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_file.h"
#include "job_json.h"

const char checkpoints_store_page_sql[] =
    "SELECT id, step, kind, sha256, size_bytes, metrics, created_at "
    "FROM checkpoints WHERE job_id = ?3 AND (?1 = 0 OR id < ?1) "
    "ORDER BY id DESC LIMIT ?2";

json_t *checkpoints_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    (void)db;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:I, s:o, s:I}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "checkpoint", "job_id",
                     (json_int_t)job_id, "step_number", (json_int_t)sqlite3_column_int64(st, 1),
                     "kind", (const char *)sqlite3_column_text(st, 2), "sha256",
                     (const char *)sqlite3_column_text(st, 3), "size_bytes",
                     (json_int_t)sqlite3_column_int64(st, 4), "metrics", job_json_column(st, 5),
                     "created_at", (json_int_t)sqlite3_column_int64(st, 6));
}

int checkpoints_store_content(sqlite3 *db, const char *data_dir, int64_t id,
                              checkpoint_content *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT sha256, job_id, step, size_bytes FROM checkpoints WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (found == 1) {
        snprintf(out->sha256, sizeof out->sha256, "%s", (const char *)sqlite3_column_text(st, 0));
        out->job_id = sqlite3_column_int64(st, 1);
        out->step = sqlite3_column_int64(st, 2);
        out->n_bytes = (uint64_t)sqlite3_column_int64(st, 3);
    } else if (found < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    if (found == 1 && (out->fd = checkpoint_file_open(db, data_dir, id, NULL, err, errlen)) < 0)
        found = -1;
    return found;
}

int checkpoints_store_origin(sqlite3 *db, int64_t id, bool by_job, checkpoint_origin *out) {
    memset(out, 0, sizeof *out);
    const char *sql =
        by_job ? "SELECT type, status, (SELECT max(c.id) FROM checkpoints c WHERE c.job_id = "
                 "jobs.id AND c.kind = 'final') FROM jobs WHERE id = ?1"
               : "SELECT j.type, j.status, c.id FROM checkpoints c JOIN jobs j ON j.id = c.job_id "
                 "WHERE c.id = ?1";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(out->job_type, sizeof out->job_type, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        snprintf(out->job_status, sizeof out->job_status, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        out->checkpoint_id = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
