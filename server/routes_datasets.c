/* Datasets: create, upload JSONL, list, get, delete when no job uses them.
 *
 * A dataset has one format and is filled by one upload:
 *   sft        {"prompt", "response"}
 *   preference {"prompt", "chosen", "rejected"} (TRL), or
 *              {"input": {"messages": [...]}, "preferred_output": [...],
 *               "non_preferred_output": [...]} (OpenAI chat preferences)
 *   prompts    {"prompt"} (PPO prompts)
 *
 * The upload is streamed: each line is validated as it arrives (only the
 * current partial line is held) and its row is appended to an unlinked
 * spool file. When the body is complete and every line was good, the rows
 * go into the database in one transaction; the first bad line stops
 * everything, is reported by number and field, and nothing is stored.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

/* Longest line of an upload: three strings at the string limit, with room
 * for keys and escapes. */
#define UPLOAD_MAX_LINE_BYTES (4 * HTTP_JSON_MAX_STRING)

static const char *const dataset_formats[] = {"sft", "preference", "prompts", NULL};

#define DATASET_COLUMNS "id, name, format, n_rows, created_at"

static json_t *dataset_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    int64_t n_rows = sqlite3_column_int64(st, 3);
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:s, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
        "object", "dataset", "name", (const char *)sqlite3_column_text(st, 1), "format",
        (const char *)sqlite3_column_text(st, 2), "n_rows", (json_int_t)n_rows, "status",
        n_rows > 0 ? "ready" : "empty", "created_at", (json_int_t)sqlite3_column_int64(st, 4));
}

/* The dataset as JSON; NULL if there is none (*found 0) or on error. */
static json_t *dataset_load(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " DATASET_COLUMNS " FROM datasets WHERE id = ?1", id,
                       dataset_from_row, found);
}

static enum MHD_Result reply_no_dataset(request *r) {
    return http_reply_error(r, 404, "dataset_not_found", NULL, "no dataset %lld",
                            (long long)r->path_id);
}

/* ---- POST /v1/datasets, GET /v1/datasets[/{id}], DELETE ------------------------ */

enum MHD_Result route_datasets_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"name", "format", NULL};
    const char *name = json_string_value(json_object_get(body, "name"));
    const char *format = json_string_value(json_object_get(body, "format"));
    if (!http_check_keys(r, body, keys, &replied))
        ;
    else if (!http_check_name(r, name, 256, &replied))
        ;
    else if (!http_one_of(format, dataset_formats))
        replied = http_reply_error(r, 400, "invalid_value", "format",
                                   "format must be one of sft, preference, prompts");
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        sqlite3_stmt *st = NULL;
        int64_t id = -1;
        if (sqlite3_prepare_v2(r->db,
                               "INSERT INTO datasets (name, format, created_at, created_by) "
                               "VALUES (?1, ?2, ?3, ?4)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, db_now_s());
            sqlite3_bind_int64(st, 4, r->token.id);
            if (sqlite3_step(st) == SQLITE_DONE)
                id = sqlite3_last_insert_rowid(r->db);
        }
        sqlite3_finalize(st);
        json_t *dataset = id > 0 ? dataset_load(r->db, id, NULL) : NULL;
        replied = dataset ? http_commit_reply(r, 200, dataset) : http_reply_db_error(r);
    }
    json_decref(body);
    return replied;
}

enum MHD_Result route_datasets_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    const char *format = http_query(r, "format");
    if (format != NULL && !http_one_of(format, dataset_formats))
        return http_reply_error(r, 400, "invalid_value", "format",
                                "format must be one of sft, preference, prompts");
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT " DATASET_COLUMNS " FROM datasets WHERE (?1 = 0 OR id < ?1) "
                           "AND (?2 IS NULL OR format = ?2) ORDER BY id DESC LIMIT ?3",
                           -1, &st, NULL) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_text(st, 2, format, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, limit + 1);
    return http_reply_rows(r, st, limit, 0, dataset_from_row);
}

enum MHD_Result route_datasets_get(request *r) {
    int found;
    json_t *dataset = dataset_load(r->db, r->path_id, &found);
    return dataset     ? http_reply_json(r, 200, dataset)
           : found < 0 ? http_reply_db_error(r)
                       : reply_no_dataset(r);
}

/* Deletes the dataset and its rows, unless a job uses it. */
enum MHD_Result route_datasets_delete(request *r) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT (SELECT count(*) FROM datasets WHERE id = ?1), "
                           "(SELECT min(job_id) FROM job_datasets WHERE dataset_id = ?1)",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, r->path_id) || sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return http_reply_db_error(r);
    }
    int exists = sqlite3_column_int(st, 0);
    int64_t job = sqlite3_column_int64(st, 1); /* 0 when NULL */
    sqlite3_finalize(st);
    if (!exists) {
        db_rollback(r->db);
        return reply_no_dataset(r);
    }
    if (job > 0) {
        db_rollback(r->db);
        return http_reply_error(r, 409, "dataset_in_use", NULL,
                                "dataset %lld is used by job %lld and cannot be deleted",
                                (long long)r->path_id, (long long)job);
    }
    int ok =
        sqlite3_prepare_v2(r->db, "DELETE FROM datasets WHERE id = ?1", -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, r->path_id);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (!ok)
        return http_reply_db_error(r);
    return http_commit_reply(r, 200,
                             json_pack("{s:I, s:s, s:b}", "id", (json_int_t)r->path_id, "object",
                                       "dataset", "deleted", 1));
}

/* ---- one line of an upload ----------------------------------------------------- */

/* A validated row. Strings point into the parsed line (or messages_json). */
typedef struct dataset_row {
    const char *prompt, *response, *chosen, *rejected;
    char *prompt_messages; /* malloc'ed JSON, OpenAI format only */
} dataset_row;

/* Why a line is bad: a code, the field (param, "" if none) and a message. */
typedef struct line_error {
    const char *code;
    char param[256];
    char message[512];
} line_error;

__attribute__((format(printf, 4, 5))) static int
line_fail(line_error *e, const char *code, const char *param, const char *fmt, ...) {
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return 0;
}

/* obj's keys must all be in allowed. */
static int check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                      line_error *e) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (!http_one_of(key, allowed)) {
            char param[256];
            snprintf(param, sizeof param, "%s%.64s", prefix, key);
            return line_fail(e, "unknown_parameter", param, "unknown field '%s'", param);
        }
    }
    return 1;
}

/* obj[key] as a string (non-empty unless allow_empty). */
static int get_string(const json_t *obj, const char *key, const char *param, bool allow_empty,
                      const char **out, line_error *e) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return line_fail(e, "missing_required_parameter", param, "%s is required", param);
    if (!json_is_string(v))
        return line_fail(e, "invalid_type", param, "%s must be a string", param);
    if (!allow_empty && json_string_length(v) == 0)
        return line_fail(e, "invalid_value", param, "%s must not be empty", param);
    *out = json_string_value(v);
    return 1;
}

/* An OpenAI message list: a non-empty array of {role, content}; roles from
 * the given set. The content of the last message with role want_role into
 * *last (NULL if none). */
static int check_messages(const json_t *messages, const char *param, const char *const *roles,
                          const char *want_role, const char **last, line_error *e) {
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return line_fail(e, json_is_array(messages) ? "invalid_value" : "invalid_type", param,
                         "%s must be a non-empty array of messages", param);
    *last = NULL;
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)messages, i, m) {
        char at[256], field[300];
        snprintf(at, sizeof at, "%s[%zu]", param, i);
        if (!json_is_object(m))
            return line_fail(e, "invalid_type", at, "%s must be an object {role, content}", at);
        static const char *const keys[] = {"role", "content", NULL};
        snprintf(field, sizeof field, "%s.", at);
        const char *role, *content;
        if (!check_keys(m, keys, field, e))
            return 0;
        snprintf(field, sizeof field, "%s.role", at);
        if (!get_string(m, "role", field, false, &role, e))
            return 0;
        if (!http_one_of(role, roles))
            return line_fail(e, "invalid_value", field, "%s '%.32s' is not allowed here", field,
                             role);
        snprintf(field, sizeof field, "%s.content", at);
        if (!get_string(m, "content", field, false, &content, e))
            return 0;
        if (strcmp(role, want_role) == 0)
            *last = content;
    }
    if (*last == NULL)
        return line_fail(e, "invalid_value", param, "%s has no %s message", param, want_role);
    return 1;
}

/* The one assistant message of preferred_output / non_preferred_output. */
static int check_output(const json_t *line, const char *key, const char **out, line_error *e) {
    static const char *const assistant[] = {"assistant", NULL};
    json_t *v = json_object_get(line, key);
    if (v == NULL)
        return line_fail(e, "missing_required_parameter", key, "%s is required", key);
    if (json_is_array(v) && json_array_size(v) != 1)
        return line_fail(e, "invalid_value", key, "%s must hold exactly one assistant message",
                         key);
    return check_messages(v, key, assistant, "assistant", out, e);
}

static int parse_openai_preference(const json_t *line, dataset_row *row, line_error *e) {
    static const char *const keys[] = {"input", "preferred_output", "non_preferred_output", NULL};
    static const char *const input_keys[] = {"messages", NULL};
    static const char *const roles[] = {"system", "developer", "user", "assistant", NULL};
    json_t *input = json_object_get(line, "input");
    if (!check_keys(line, keys, "", e) || !check_keys(input, input_keys, "input.", e))
        return 0;
    if (!json_is_object(input))
        return line_fail(e, "invalid_type", "input", "input must be an object {messages}");
    json_t *messages = json_object_get(input, "messages");
    if (messages == NULL)
        return line_fail(e, "missing_required_parameter", "input.messages",
                         "input.messages is required");
    if (!check_messages(messages, "input.messages", roles, "user", &row->prompt, e) ||
        !check_output(line, "preferred_output", &row->chosen, e) ||
        !check_output(line, "non_preferred_output", &row->rejected, e))
        return 0;
    row->prompt_messages = json_dumps(messages, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return row->prompt_messages != NULL || line_fail(e, "out_of_memory", "", "out of memory");
}

/* Validates one parsed line against the dataset's format. */
static int parse_row(const json_t *line, const char *format, dataset_row *row, line_error *e) {
    memset(row, 0, sizeof *row);
    if (!json_is_object(line))
        return line_fail(e, "invalid_json", "", "the line must be a JSON object");
    if (strcmp(format, "prompts") == 0) {
        static const char *const keys[] = {"prompt", NULL};
        return check_keys(line, keys, "", e) &&
               get_string(line, "prompt", "prompt", false, &row->prompt, e);
    }
    if (strcmp(format, "sft") == 0) {
        static const char *const keys[] = {"prompt", "response", NULL};
        return check_keys(line, keys, "", e) &&
               get_string(line, "prompt", "prompt", true, &row->prompt, e) &&
               get_string(line, "response", "response", false, &row->response, e);
    }
    if (json_object_get(line, "input") != NULL)
        return parse_openai_preference(line, row, e);
    static const char *const keys[] = {"prompt", "chosen", "rejected", NULL};
    return check_keys(line, keys, "", e) &&
           get_string(line, "prompt", "prompt", false, &row->prompt, e) &&
           get_string(line, "chosen", "chosen", false, &row->chosen, e) &&
           get_string(line, "rejected", "rejected", false, &row->rejected, e);
}

/* ---- the streamed upload ----------------------------------------------------- */

typedef struct upload_state {
    char format[16];
    char *line; /* the partial current line */
    size_t len, cap;
    int64_t line_no; /* lines completed */
    int64_t n_rows;
    FILE *spool; /* rows: line, then 5 strings as (int64 length or -1, bytes) */
    bool failed;
    int64_t bad_line;
    line_error error;
} upload_state;

static int spool_string(FILE *f, const char *s) {
    int64_t n = s ? (int64_t)strlen(s) : -1;
    return fwrite(&n, sizeof n, 1, f) == 1 && (n <= 0 || fwrite(s, (size_t)n, 1, f) == 1);
}

static void upload_fail(upload_state *u, int64_t line, const line_error *e) {
    u->failed = true;
    u->bad_line = line;
    u->error = *e;
}

/* Validates the line in u->line[0..len) and spools its row. */
static void upload_line(upload_state *u) {
    int64_t line_no = ++u->line_no;
    size_t len = u->len;
    u->len = 0;
    if (len > 0 && u->line[len - 1] == '\r')
        len--;
    size_t blank = 0;
    while (blank < len && (u->line[blank] == ' ' || u->line[blank] == '\t'))
        blank++;
    if (blank == len)
        return; /* blank lines are skipped */
    line_error e;
    char err[256];
    char param[256];
    json_t *v = http_json_parse(u->line, len, err, sizeof err, param, sizeof param);
    if (v == NULL) {
        line_fail(&e, param[0] ? "string_too_long" : "invalid_json", param, "%s", err);
        upload_fail(u, line_no, &e);
        return;
    }
    dataset_row row;
    if (!parse_row(v, u->format, &row, &e))
        upload_fail(u, line_no, &e);
    else if (fwrite(&line_no, sizeof line_no, 1, u->spool) != 1 ||
             !spool_string(u->spool, row.prompt) || !spool_string(u->spool, row.response) ||
             !spool_string(u->spool, row.chosen) || !spool_string(u->spool, row.rejected) ||
             !spool_string(u->spool, row.prompt_messages)) {
        line_fail(&e, "spool_failed", "", "cannot write the upload's spool file");
        upload_fail(u, line_no, &e);
    } else
        u->n_rows++;
    free(row.prompt_messages);
    json_decref(v);
}

static int upload_begin(request *r, enum MHD_Result *replied) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT format, n_rows FROM datasets WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    sqlite3_bind_int64(st, 1, r->path_id);
    int rc = sqlite3_step(st);
    upload_state *u = rc == SQLITE_ROW ? calloc(1, sizeof *u) : NULL;
    int64_t n_rows = rc == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
    if (u != NULL)
        snprintf(u->format, sizeof u->format, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        *replied = rc == SQLITE_DONE ? reply_no_dataset(r) : http_reply_db_error(r);
        return 0;
    }
    /* Refused before the body is read; with an Idempotency-Key it may be a
     * retry of the upload that filled it, which the end of the request
     * replays. */
    if (n_rows > 0 && r->idempotency_key == NULL) {
        free(u);
        *replied = http_reply_error(r, 409, "dataset_not_empty", NULL,
                                    "dataset %lld already holds an upload (%lld rows); create a "
                                    "new dataset",
                                    (long long)r->path_id, (long long)n_rows);
        return 0;
    }
    if (u == NULL || (u->spool = tmpfile()) == NULL) {
        free(u);
        *replied = http_reply_error(r, 500, "spool_failed", NULL, "cannot create a spool file");
        return 0;
    }
    r->upload = u;
    return 1;
}

static void upload_data(request *r, const char *bytes, size_t n) {
    upload_state *u = r->upload;
    while (n > 0 && !u->failed) {
        const char *nl = memchr(bytes, '\n', n);
        size_t take = nl ? (size_t)(nl - bytes) : n;
        if (u->len + take > UPLOAD_MAX_LINE_BYTES) {
            line_error e;
            line_fail(&e, "line_too_long", "", "the line is longer than %d bytes",
                      UPLOAD_MAX_LINE_BYTES);
            upload_fail(u, u->line_no + 1, &e);
            return;
        }
        if (u->len + take > u->cap) {
            size_t cap = (u->len + take) * 2;
            char *grown = realloc(u->line, cap);
            if (grown == NULL) {
                line_error e;
                line_fail(&e, "out_of_memory", "", "out of memory");
                upload_fail(u, u->line_no + 1, &e);
                return;
            }
            u->line = grown, u->cap = cap;
        }
        if (take > 0) /* an empty line may come before any buffer exists */
            memcpy(u->line + u->len, bytes, take);
        u->len += take;
        if (nl == NULL)
            return;
        upload_line(u);
        bytes += take + 1, n -= take + 1;
    }
}

static void upload_free(request *r) {
    upload_state *u = r->upload;
    if (u == NULL)
        return;
    if (u->spool)
        fclose(u->spool);
    free(u->line);
    free(u);
    r->upload = NULL;
}

const http_upload route_datasets_upload_stream = {upload_begin, upload_data, upload_free};

/* One spooled string: NULL (length -1) or a malloc'ed copy; 0 on a short read. */
static int unspool_string(FILE *f, char **out) {
    int64_t n;
    *out = NULL;
    if (fread(&n, sizeof n, 1, f) != 1)
        return 0;
    if (n < 0)
        return 1;
    if ((*out = malloc((size_t)n + 1)) == NULL || (n > 0 && fread(*out, (size_t)n, 1, f) != 1))
        return 0;
    (*out)[n] = '\0';
    return 1;
}

/* Inserts the spooled rows and the row count in the open transaction. */
static int upload_store(request *r, upload_state *u) {
    sqlite3_stmt *st = NULL;
    if (fflush(u->spool) != 0 || fseek(u->spool, 0, SEEK_SET) != 0 ||
        sqlite3_prepare_v2(r->db,
                           "INSERT INTO dataset_rows (dataset_id, line, prompt, response, "
                           "chosen, rejected, prompt_messages) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                           "?7)",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    int ok = 1;
    for (int64_t i = 0; ok && i < u->n_rows; i++) {
        int64_t line;
        char *s[5] = {0};
        ok = fread(&line, sizeof line, 1, u->spool) == 1;
        for (int k = 0; k < 5 && ok; k++)
            ok = unspool_string(u->spool, &s[k]);
        if (ok) {
            sqlite3_bind_int64(st, 1, r->path_id);
            sqlite3_bind_int64(st, 2, line);
            for (int k = 0; k < 5; k++)
                sqlite3_bind_text(st, 3 + k, s[k], -1, free), s[k] = NULL;
            ok = sqlite3_step(st) == SQLITE_DONE;
            sqlite3_reset(st);
        }
        for (int k = 0; k < 5; k++)
            free(s[k]);
    }
    sqlite3_finalize(st);
    if (!ok || sqlite3_prepare_v2(r->db, "UPDATE datasets SET n_rows = ?2 WHERE id = ?1", -1, &st,
                                  NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_int64(st, 2, u->n_rows);
    ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

/* POST /v1/datasets/{id}/upload, once the whole body has streamed through
 * upload_data. */
enum MHD_Result route_datasets_upload(request *r) {
    upload_state *u = r->upload;
    if (u->len > 0 && !u->failed)
        upload_line(u); /* the last line had no newline */
    if (u->failed)
        return http_reply_error_with(r, 400, u->error.code,
                                     u->error.param[0] ? u->error.param : NULL,
                                     json_pack("{s:I}", "line", (json_int_t)u->bad_line),
                                     "line %lld: %s", (long long)u->bad_line, u->error.message);
    if (u->n_rows == 0)
        return http_reply_error(r, 400, "empty_file", NULL,
                                "the upload has no rows (a JSONL file, one JSON object a line)");
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    /* Re-checked inside the transaction: a concurrent upload or delete. */
    int found;
    json_t *dataset = dataset_load(r->db, r->path_id, &found);
    int64_t n_rows = json_integer_value(json_object_get(dataset, "n_rows"));
    json_decref(dataset);
    if (found <= 0 || n_rows > 0) {
        db_rollback(r->db);
        return found < 0    ? http_reply_db_error(r)
               : found == 0 ? reply_no_dataset(r)
                            : http_reply_error(r, 409, "dataset_not_empty", NULL,
                                               "dataset %lld already holds an upload (%lld rows)",
                                               (long long)r->path_id, (long long)n_rows);
    }
    if (!upload_store(r, u) || (dataset = dataset_load(r->db, r->path_id, &found)) == NULL) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    return http_commit_reply(r, 200, dataset);
}
