#include "models_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "openai_ids.h"

static void copy_text(char *out, size_t cap, sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

int models_store_find(sqlite3 *db, const char *name, model_row *out) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id, name, source, status FROM models WHERE name = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        copy_text(out->name, sizeof out->name, st, 1);
        copy_text(out->source, sizeof out->source, st, 2);
        copy_text(out->status, sizeof out->status, st, 3);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *text) {
    if (text != NULL && *text)
        sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int64_t models_store_insert(sqlite3 *db, const char *name, const char *source, const char *path,
                            const char *status, const char *family, const char *chat_format,
                            int64_t created_by) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO models (name, source, path, status, family, chat_format, "
                           "created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, source, -1, SQLITE_STATIC);
        bind_text_or_null(st, 3, path);
        sqlite3_bind_text(st, 4, status, -1, SQLITE_STATIC);
        bind_text_or_null(st, 5, family);
        bind_text_or_null(st, 6, chat_format);
        sqlite3_bind_int64(st, 7, db_now_s());
        if (created_by > 0)
            sqlite3_bind_int64(st, 8, created_by);
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    return id;
}

int models_store_set_status(sqlite3 *db, int64_t id, const char *status, const char *family,
                            const char *chat_format, const json_t *error) {
    sqlite3_stmt *st = NULL;
    char *error_text = error ? json_dumps(error, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int ok = sqlite3_prepare_v2(db,
                                "UPDATE models SET status = ?2, family = ?3, chat_format = ?4, "
                                "error = ?5 WHERE id = ?1",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
        bind_text_or_null(st, 3, family);
        bind_text_or_null(st, 4, chat_format);
        bind_text_or_null(st, 5, error_text);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    free(error_text);
    return ok ? 0 : -1;
}

int models_store_put_file(sqlite3 *db, int64_t id, const char *name, const char *sha256,
                          int64_t size_bytes) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db,
                                "INSERT OR REPLACE INTO model_files (model_id, name, sha256, "
                                "size_bytes) VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, size_bytes);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* ---- model objects ----------------------------------------------------------------- */

static json_t *text_or_null(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? json_string((const char *)t) : json_null();
}

static json_t *model_files_json(sqlite3 *db, int64_t id) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT name, size_bytes, sha256 FROM model_files WHERE model_id = ?1 "
                           "ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    json_t *files = json_array();
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            files, json_pack("{s:s, s:I, s:s}", "name", (const char *)sqlite3_column_text(st, 0),
                             "size_bytes", (json_int_t)sqlite3_column_int64(st, 1), "sha256",
                             (const char *)sqlite3_column_text(st, 2)));
    sqlite3_finalize(st);
    return files;
}

#define MODEL_COLUMNS "id, name, source, path, status, family, chat_format, error, created_at"

static json_t *model_json_row(sqlite3 *db, sqlite3_stmt *st) {
    const int64_t id = sqlite3_column_int64(st, 0);
    json_t *error = NULL;
    if (sqlite3_column_type(st, 7) != SQLITE_NULL)
        error = json_loads((const char *)sqlite3_column_text(st, 7), 0, NULL);
    json_t *files = model_files_json(db, id);
    return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o*}", "id",
                     (const char *)sqlite3_column_text(st, 1), "object", "model", "created",
                     (json_int_t)sqlite3_column_int64(st, 8), "owned_by", "rlhfd", "source",
                     (const char *)sqlite3_column_text(st, 2), "status",
                     (const char *)sqlite3_column_text(st, 4), "path", text_or_null(st, 3),
                     "family", text_or_null(st, 5), "chat_format", text_or_null(st, 6), "files",
                     files ? files : json_array(), "error", error ? error : json_null(), "parent",
                     NULL);
}

json_t *models_store_json(sqlite3 *db, int64_t id) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT " MODEL_COLUMNS " FROM models WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    json_t *out = sqlite3_step(st) == SQLITE_ROW ? model_json_row(db, st) : NULL;
    sqlite3_finalize(st);
    return out;
}

/* Fine-tuned models: succeeded jobs with a final checkpoint. */
#define FT_SQL                                                                                     \
    "SELECT j.id, f.suffix, coalesce(m.name, '" MODELS_STORE_SCRATCH "'), m.name, c.id, "          \
    "c.created_at FROM jobs j "                                                                    \
    "JOIN checkpoints c ON c.id = (SELECT max(id) FROM checkpoints WHERE job_id = j.id AND kind "  \
    "= 'final') LEFT JOIN models m ON m.id = j.base_model_id "                                     \
    "LEFT JOIN fine_tuning_jobs f ON f.job_id = j.id WHERE j.status = 'succeeded'"

/* One name per fine-tuned model, the same here and in the fine-tuning
 * jobs' fine_tuned_model: ft:BASE:SUFFIX:ftjob-N (openai_ids.h), BASE the
 * registered model its lineage starts from (or "scratch"). */
static json_t *ft_json_row(sqlite3_stmt *st) {
    char id[OPENAI_MODEL_NAME_BYTES];
    openai_model_name(id, sizeof id, (const char *)sqlite3_column_text(st, 2),
                      (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 0), 0);
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:I, s:I, s:s}", "id", id, "object", "model",
                     "created", (json_int_t)sqlite3_column_int64(st, 5), "owned_by", "rlhfd",
                     "parent", text_or_null(st, 3), "job_id",
                     (json_int_t)sqlite3_column_int64(st, 0), "checkpoint_id",
                     (json_int_t)sqlite3_column_int64(st, 4), "status", "ready");
}

json_t *models_store_list(sqlite3 *db) {
    json_t *data = json_array();
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db, "SELECT " MODEL_COLUMNS " FROM models ORDER BY id", -1, &st,
                                NULL) == SQLITE_OK;
    int rc = SQLITE_DONE;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(data, model_json_row(db, st));
    ok = ok && rc == SQLITE_DONE;
    sqlite3_finalize(st);
    st = NULL;
    ok = ok && sqlite3_prepare_v2(db, FT_SQL " ORDER BY j.id", -1, &st, NULL) == SQLITE_OK;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(data, ft_json_row(st));
    ok = ok && rc == SQLITE_DONE;
    sqlite3_finalize(st);
    if (!ok) {
        json_decref(data);
        return NULL;
    }
    return data;
}

void models_store_base_name(sqlite3 *db, int64_t base_model_id, char *out, size_t len) {
    snprintf(out, len, MODELS_STORE_SCRATCH);
    sqlite3_stmt *st = NULL;
    if (base_model_id <= 0 ||
        sqlite3_prepare_v2(db, "SELECT name FROM models WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, base_model_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

int models_store_find_ft(sqlite3 *db, const char *name, json_t **object, int64_t *checkpoint_id) {
    *object = NULL;
    int64_t job, checkpoint;
    if (!openai_model_parse(name, &job, &checkpoint) || checkpoint > 0)
        return 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, FT_SQL " AND j.id = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        json_t *obj = ft_json_row(st);
        /* the whole name must match: a wrong BASE or TYPE names nothing */
        if (strcmp(json_string_value(json_object_get(obj, "id")), name) == 0) {
            *object = obj;
            *checkpoint_id = sqlite3_column_int64(st, 4);
        } else {
            json_decref(obj);
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? *object != NULL : -1;
}

int models_store_delete(sqlite3 *db, int64_t id, int64_t *job) {
    *job = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id FROM jobs WHERE base_model_id = ?1 LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *job = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 2;
    if (rc != SQLITE_DONE ||
        sqlite3_prepare_v2(db, "DELETE FROM models WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc != SQLITE_DONE ? -1 : sqlite3_changes(db) > 0 ? 1 : 0;
}

int64_t models_store_checkpoint_base(sqlite3 *db, int64_t checkpoint_id) {
    sqlite3_stmt *st = NULL;
    int64_t base = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT j.base_model_id FROM checkpoints c JOIN jobs j ON j.id = "
                           "c.job_id WHERE c.id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, checkpoint_id);
        if (sqlite3_step(st) == SQLITE_ROW)
            base = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return base;
}

void models_store_chat_format(sqlite3 *db, int64_t id, char *out, size_t len) {
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, "SELECT chat_format FROM models WHERE id = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
            snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
}
