/* datasets_store — the datasets and dataset_rows tables.
 *
 * How a dataset row is stored (issue 13: a 62 MB upload took 270 MB): the
 * parsed row's fields once, one column each (prompt, response, chosen,
 * rejected; an OpenAI row's conversation; a K-wise row's responses and ranks
 * as compact JSON arrays), in a rowid table (schema 010). Not the raw line:
 * the line repeats the field names and JSON escapes in every row, and the
 * trainer (train/db_job.c) reads the columns directly instead of parsing
 * JSON per row on every job start. Not the raw line as well as the columns:
 * that doubles the size. What made uploads 2-4x their size was not the
 * columns but 001's WITHOUT ROWID layout (a row over ~1 KB spilled into
 * overflow pages of its own); bench/bench_dataset_storage.py measures it
 * (bench/RESULTS.md: 1.0-1.1x the upload after, up to 3.1x before).
 */
#include "datasets_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "openai_ids.h"

#define DATASET_COLUMNS "id, name, format, n_rows, created_at, purpose, bytes"

int datasets_store_info(sqlite3 *db, int64_t id, char format[16], int64_t *n_rows) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT format, n_rows FROM datasets WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(format, 16, "%s", (const char *)sqlite3_column_text(st, 0));
        *n_rows = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

json_t *datasets_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    int64_t n_rows = sqlite3_column_int64(st, 3);
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
        "object", "dataset", "name", (const char *)sqlite3_column_text(st, 1), "format",
        (const char *)sqlite3_column_text(st, 2), "n_rows", (json_int_t)n_rows, "status",
        n_rows > 0 ? "ready" : "empty", "created_at", (json_int_t)sqlite3_column_int64(st, 4));
}

json_t *datasets_store_load(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " DATASET_COLUMNS " FROM datasets WHERE id = ?1", id,
                       datasets_store_json, found);
}

int64_t datasets_store_insert(sqlite3 *db, const char *name, const char *format,
                              int64_t created_by) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO datasets (name, format, created_at, created_by) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, db_now_s());
        sqlite3_bind_int64(st, 4, created_by);
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    return id;
}

sqlite3_stmt *datasets_store_list(sqlite3 *db, int64_t after, const char *format, int64_t limit) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " DATASET_COLUMNS " FROM datasets WHERE (?1 = 0 OR id < ?1) "
                           "AND (?2 IS NULL OR format = ?2) ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, limit);
    return st;
}

int datasets_store_delete(sqlite3 *db, int64_t id, int64_t *job) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT count(*) FROM datasets WHERE id = ?1), "
                           "(SELECT min(job_id) FROM job_datasets WHERE dataset_id = ?1)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, id) || sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return -1;
    }
    const int exists = sqlite3_column_int(st, 0);
    *job = sqlite3_column_int64(st, 1); /* 0 when NULL */
    sqlite3_finalize(st);
    if (!exists || *job > 0)
        return exists ? 2 : 0;
    int ok =
        sqlite3_prepare_v2(db, "DELETE FROM datasets WHERE id = ?1", -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return ok ? 1 : -1;
}

sqlite3_stmt *datasets_store_rows_prepare(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO dataset_rows (dataset_id, line, prompt, response, "
                           "chosen, rejected, prompt_messages, responses, ranks, margin) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    return st;
}

int datasets_store_add_row(sqlite3_stmt *st, int64_t dataset_id, dataset_stored_row *row) {
    sqlite3_bind_int64(st, 1, dataset_id);
    sqlite3_bind_int64(st, 2, row->line);
    for (int k = 0; k < DATASETS_STORE_TEXT_COLUMNS; k++)
        sqlite3_bind_text(st, 3 + k, row->text[k], -1, free), row->text[k] = NULL;
    if (row->has_margin)
        sqlite3_bind_double(st, 3 + DATASETS_STORE_TEXT_COLUMNS, row->margin);
    else
        sqlite3_bind_null(st, 3 + DATASETS_STORE_TEXT_COLUMNS);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    return ok;
}

int datasets_store_set_upload(sqlite3 *db, int64_t id, int64_t n_rows, int64_t bytes) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE datasets SET n_rows = ?2, bytes = ?3 WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, n_rows);
    sqlite3_bind_int64(st, 3, bytes);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* ---- files ------------------------------------------------------------------------ */

int datasets_store_add_content(sqlite3 *db, int64_t id, int64_t seq, const void *bytes, size_t n) {
    sqlite3_stmt *st = db_cached_prepare(
        db, "INSERT INTO dataset_content (dataset_id, seq, bytes) VALUES (?1, ?2, ?3)");
    if (st == NULL)
        return 0;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_blob64(st, 3, bytes, n, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    return ok;
}

int datasets_store_content(sqlite3 *db, int64_t id, char **bytes, size_t *n) {
    *bytes = NULL, *n = 0;
    int found = db_row_exists(db, "SELECT 1 FROM datasets WHERE id = ?1", id);
    sqlite3_stmt *st = NULL;
    if (found <= 0 || sqlite3_prepare_v2(db,
                                         "SELECT bytes FROM dataset_content WHERE dataset_id = ?1 "
                                         "ORDER BY seq",
                                         -1, &st, NULL) != SQLITE_OK)
        return found <= 0 ? found : -1;
    sqlite3_bind_int64(st, 1, id);
    int rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t piece = (size_t)sqlite3_column_bytes(st, 0);
        if (*n + piece > cap) {
            char *grown = realloc(*bytes, (cap = (*n + piece) * 2));
            if (grown == NULL)
                break;
            *bytes = grown;
        }
        if (piece > 0)
            memcpy(*bytes + *n, sqlite3_column_blob(st, 0), piece);
        *n += piece;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*bytes);
        *bytes = NULL, *n = 0;
        return -1;
    }
    return 1;
}

int datasets_store_set_purpose(sqlite3 *db, int64_t id, const char *purpose) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE datasets SET purpose = ?2 WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* A native dataset is a file too: its purpose is what its format trains
 * (every format is fine-tuning data), its status `processed` once it has
 * rows (OpenAI's word for a file that passed validation), else
 * `uploaded`. */
json_t *datasets_store_file_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    char id[32];
    openai_id_format(id, sizeof id, OPENAI_ID_FILE, sqlite3_column_int64(st, 0));
    const char *purpose = (const char *)sqlite3_column_text(st, 5);
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:n}", "id", id, "object", "file",
                     "bytes", (json_int_t)sqlite3_column_int64(st, 6), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 4), "filename",
                     (const char *)sqlite3_column_text(st, 1), "purpose",
                     purpose ? purpose : "fine-tune", "status",
                     sqlite3_column_int64(st, 3) > 0 ? "processed" : "uploaded", "format",
                     (const char *)sqlite3_column_text(st, 2), "status_details");
}

json_t *datasets_store_load_file(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " DATASET_COLUMNS " FROM datasets WHERE id = ?1", id,
                       datasets_store_file_json, found);
}
