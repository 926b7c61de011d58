/* Datasets: create, upload JSONL, list, get, delete when no job uses them.
 *
 * A dataset has one format (sft, preference, prompts) and is filled by one
 * upload; its lines are those common/dataset_format.h parses, the same the
 * trainer reads from a file (TRL, OpenAI and K-wise preference rows, and
 * so on).
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

#include "dataset_format.h"
#include "datasets_store.h"
#include "ranking_limits.h"
#include "routes.h"

/* Longest line of an upload: three strings at the string limit, with room
 * for keys and escapes. */
#define UPLOAD_MAX_LINE_BYTES (4 * HTTP_JSON_MAX_STRING)

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
    else if (dataset_format_from_name(format, &(dataset_format){0}) != 0)
        replied = http_reply_error(r, 400, "invalid_value", "format",
                                   "format must be one of " DATASET_FORMAT_NAMES);
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        int64_t id = datasets_store_insert(r->db, name, format, r->token.id);
        json_t *dataset = id > 0 ? datasets_store_load(r->db, id, NULL) : NULL;
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
    if (format != NULL && dataset_format_from_name(format, &(dataset_format){0}) != 0)
        return http_reply_error(r, 400, "invalid_value", "format",
                                "format must be one of " DATASET_FORMAT_NAMES);
    sqlite3_stmt *st = datasets_store_list(r->db, after, format, limit + 1);
    if (st == NULL)
        return http_reply_db_error(r);
    return http_reply_rows(r, st, limit, 0, datasets_store_json);
}

enum MHD_Result route_datasets_get(request *r) {
    int found;
    json_t *dataset = datasets_store_load(r->db, r->path_id, &found);
    return dataset     ? http_reply_json(r, 200, dataset)
           : found < 0 ? http_reply_db_error(r)
                       : reply_no_dataset(r);
}

/* Deletes the dataset and its rows, unless a job uses it. */
enum MHD_Result route_datasets_delete(request *r) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int64_t job = 0;
    const int deleted = datasets_store_delete(r->db, r->path_id, &job);
    if (deleted != 1)
        db_rollback(r->db);
    if (deleted == 0)
        return reply_no_dataset(r);
    if (deleted == 2)
        return http_reply_error(r, 409, "dataset_in_use", NULL,
                                "dataset %lld is used by job %lld and cannot be deleted",
                                (long long)r->path_id, (long long)job);
    if (deleted < 0)
        return http_reply_db_error(r);
    return http_commit_reply(r, 200,
                             json_pack("{s:I, s:s, s:b}", "id", (json_int_t)r->path_id, "object",
                                       "dataset", "deleted", 1));
}

/* ---- the streamed upload ----------------------------------------------------- */

typedef struct upload_state {
    dataset_format format;
    char *line; /* the partial current line */
    size_t len, cap;
    int64_t line_no; /* lines completed */
    int64_t n_rows;
    FILE *spool; /* rows: line, SPOOL_STRINGS strings as (int64 length or -1, bytes), margin */
    bool failed;
    int64_t bad_line;
    dataset_error error;
} upload_state;

/* A spooled row's strings, in the order of dataset_rows' columns prompt,
 * response, chosen, rejected, prompt_messages, responses, ranks. */
enum { SPOOL_STRINGS = DATASETS_STORE_TEXT_COLUMNS };

static int spool_string(FILE *f, const char *s) {
    int64_t n = s ? (int64_t)strlen(s) : -1;
    return fwrite(&n, sizeof n, 1, f) == 1 && (n <= 0 || fwrite(s, (size_t)n, 1, f) == 1);
}

static void upload_fail(upload_state *u, int64_t line, const dataset_error *e) {
    u->failed = true;
    u->bad_line = line;
    u->error = *e;
}

/* A failure that is not about a field. */
static void upload_fail_with(upload_state *u, int64_t line, const char *code, const char *param,
                             const char *message) {
    dataset_error e = {.code = code};
    snprintf(e.param, sizeof e.param, "%s", param);
    snprintf(e.message, sizeof e.message, "%s", message);
    upload_fail(u, line, &e);
}

/* The spooled strings of a row: dataset_rows' text columns (NULL where
 * unset); K-wise rows keep responses and ranks as JSON arrays. The JSON
 * texts are malloc'd into owned[]. 0, or -1 out of memory. */
static int row_columns(const dataset_row *row, const char *col[SPOOL_STRINGS], char *owned[2]) {
    memset(col, 0, sizeof(const char *) * SPOOL_STRINGS);
    owned[0] = owned[1] = NULL;
    col[0] = row->prompt;
    col[1] = row->response;
    col[4] = row->prompt_messages;
    if (row->k == 2 && !row->kwise) {
        col[2] = row->responses[0];
        col[3] = row->responses[1];
    } else if (row->kwise) {
        json_t *texts = json_array(), *ranks = json_array();
        for (int i = 0; i < row->k; i++) {
            json_array_append_new(texts, json_string(row->responses[i]));
            json_array_append_new(ranks, json_integer(row->ranks[i]));
        }
        col[5] = owned[0] = json_dumps(texts, JSON_COMPACT);
        col[6] = owned[1] = json_dumps(ranks, JSON_COMPACT);
        json_decref(texts);
        json_decref(ranks);
        if (owned[0] == NULL || owned[1] == NULL)
            return -1;
    }
    return 0;
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
    char err[256];
    char param[256];
    json_t *v = http_json_parse(u->line, len, err, sizeof err, param, sizeof param);
    if (v == NULL) {
        upload_fail_with(u, line_no, param[0] ? "string_too_long" : "invalid_json", param, err);
        return;
    }
    dataset_row row;
    dataset_error e;
    const char *col[SPOOL_STRINGS];
    char *owned[2] = {NULL, NULL};
    if (dataset_row_parse(v, u->format, RANKING_MAX_K, &row, &e) != 0) {
        upload_fail(u, line_no, &e);
        json_decref(v);
        return;
    }
    int ok =
        row_columns(&row, col, owned) == 0 && fwrite(&line_no, sizeof line_no, 1, u->spool) == 1;
    for (int k = 0; ok && k < SPOOL_STRINGS; k++)
        ok = spool_string(u->spool, col[k]);
    const double margin = row.has_margin ? row.margin : 0.0;
    ok = ok && fwrite(&row.has_margin, sizeof row.has_margin, 1, u->spool) == 1 &&
         fwrite(&margin, sizeof margin, 1, u->spool) == 1;
    if (ok)
        u->n_rows++;
    else
        upload_fail_with(u, line_no, "spool_failed", "", "cannot write the upload's spool file");
    free(owned[0]);
    free(owned[1]);
    dataset_row_free(&row);
    json_decref(v);
}

static int upload_begin(request *r, enum MHD_Result *replied) {
    char format[16];
    int64_t n_rows = 0;
    int found = datasets_store_info(r->db, r->path_id, format, &n_rows);
    if (found <= 0) {
        *replied = found == 0 ? reply_no_dataset(r) : http_reply_db_error(r);
        return 0;
    }
    upload_state *u = calloc(1, sizeof *u);
    if (u != NULL && dataset_format_from_name(format, &u->format) != 0) {
        free(u);
        *replied = http_reply_db_error(r);
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
            char message[64];
            snprintf(message, sizeof message, "the line is longer than %d bytes",
                     UPLOAD_MAX_LINE_BYTES);
            upload_fail_with(u, u->line_no + 1, "line_too_long", "", message);
            return;
        }
        if (u->len + take > u->cap) {
            size_t cap = (u->len + take) * 2;
            char *grown = realloc(u->line, cap);
            if (grown == NULL) {
                upload_fail_with(u, u->line_no + 1, "out_of_memory", "", "out of memory");
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

const http_upload route_datasets_upload_stream = {upload_begin, upload_data, upload_free, NULL};

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
        (st = datasets_store_rows_prepare(r->db)) == NULL)
        return 0;
    int ok = 1;
    for (int64_t i = 0; ok && i < u->n_rows; i++) {
        dataset_stored_row row = {0};
        ok = fread(&row.line, sizeof row.line, 1, u->spool) == 1;
        for (int k = 0; k < SPOOL_STRINGS && ok; k++)
            ok = unspool_string(u->spool, &row.text[k]);
        ok = ok && fread(&row.has_margin, sizeof row.has_margin, 1, u->spool) == 1 &&
             fread(&row.margin, sizeof row.margin, 1, u->spool) == 1;
        ok = ok && datasets_store_add_row(st, r->path_id, &row);
        for (int k = 0; k < SPOOL_STRINGS; k++)
            free(row.text[k]);
    }
    sqlite3_finalize(st);
    return ok && datasets_store_set_n_rows(r->db, r->path_id, u->n_rows);
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
    json_t *dataset = datasets_store_load(r->db, r->path_id, &found);
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
    if (!upload_store(r, u) || (dataset = datasets_store_load(r->db, r->path_id, &found)) == NULL) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    return http_commit_reply(r, 200, dataset);
}
