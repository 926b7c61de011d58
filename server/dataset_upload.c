#include "dataset_upload.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets_store.h"
#include "json_checks.h"
#include "ranking_limits.h"
#include "reply.h"

/* Longest line of an upload: three strings at the string limit, with room
 * for keys and escapes. */
#define UPLOAD_MAX_LINE_BYTES (4 * HTTP_JSON_MAX_STRING)

struct dataset_upload {
    dataset_format format;
    bool detect; /* format: the first line's (dataset_format_detect) */
    char *line;  /* the partial current line */
    size_t len, cap;
    int64_t line_no; /* lines completed */
    int64_t n_rows;
    FILE *spool; /* rows: line, SPOOL_STRINGS strings as (int64 length or -1, bytes), margin */
    bool failed;
    int64_t bad_line;
    dataset_error error;
    FILE *content; /* the bytes as they came */
    int64_t bytes;
};
typedef struct dataset_upload upload_state;

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
    if (u->detect) {
        u->format = dataset_format_detect(v);
        u->detect = false;
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

void dataset_upload_feed(dataset_upload *u, const char *bytes, size_t n) {
    u->bytes += (int64_t)n;
    if (!u->failed && n > 0 && fwrite(bytes, n, 1, u->content) != 1)
        upload_fail_with(u, u->line_no + 1, "spool_failed", "",
                         "cannot write the upload's spool file");
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

/* The spooled bytes into dataset_content, DATASETS_STORE_CONTENT_PIECE at
 * a time. 1 or 0. */
static int store_content(sqlite3 *db, upload_state *u, int64_t dataset_id) {
    if (fflush(u->content) != 0 || fseek(u->content, 0, SEEK_SET) != 0)
        return 0;
    char *piece = malloc(DATASETS_STORE_CONTENT_PIECE);
    int ok = piece != NULL;
    size_t n;
    for (int64_t seq = 0; ok && (n = fread(piece, 1, DATASETS_STORE_CONTENT_PIECE, u->content)) > 0;
         seq++)
        ok = datasets_store_add_content(db, dataset_id, seq, piece, n);
    free(piece);
    return ok && !ferror(u->content);
}

int dataset_upload_store(sqlite3 *db, dataset_upload *u, int64_t dataset_id) {
    sqlite3_stmt *st = NULL;
    if (fflush(u->spool) != 0 || fseek(u->spool, 0, SEEK_SET) != 0 ||
        (st = datasets_store_rows_prepare(db)) == NULL)
        return 0;
    int ok = 1;
    for (int64_t i = 0; ok && i < u->n_rows; i++) {
        dataset_stored_row row = {0};
        ok = fread(&row.line, sizeof row.line, 1, u->spool) == 1;
        for (int k = 0; k < SPOOL_STRINGS && ok; k++)
            ok = unspool_string(u->spool, &row.text[k]);
        ok = ok && fread(&row.has_margin, sizeof row.has_margin, 1, u->spool) == 1 &&
             fread(&row.margin, sizeof row.margin, 1, u->spool) == 1;
        ok = ok && datasets_store_add_row(st, dataset_id, &row);
        for (int k = 0; k < SPOOL_STRINGS; k++)
            free(row.text[k]);
    }
    sqlite3_finalize(st);
    return ok && store_content(db, u, dataset_id) &&
           datasets_store_set_upload(db, dataset_id, u->n_rows, u->bytes);
}

dataset_upload *dataset_upload_new(const dataset_format *format) {
    upload_state *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->format = format ? *format : DATASET_FORMAT_SFT;
    u->detect = format == NULL;
    if ((u->spool = tmpfile()) == NULL || (u->content = tmpfile()) == NULL) {
        dataset_upload_free(u);
        return NULL;
    }
    return u;
}

void dataset_upload_free(dataset_upload *u) {
    if (u == NULL)
        return;
    if (u->spool)
        fclose(u->spool);
    if (u->content)
        fclose(u->content);
    free(u->line);
    free(u);
}

int dataset_upload_end(request *r, dataset_upload *u, enum MHD_Result *replied) {
    if (u->len > 0 && !u->failed)
        upload_line(u); /* the last line had no newline */
    if (u->failed)
        *replied =
            http_reply_error_with(r, 400, u->error.code, u->error.param[0] ? u->error.param : NULL,
                                  json_pack("{s:I}", "line", (json_int_t)u->bad_line),
                                  "line %lld: %s", (long long)u->bad_line, u->error.message);
    else if (u->n_rows == 0)
        *replied =
            http_reply_error(r, 400, "empty_file", NULL,
                             "the upload has no rows (a JSONL file, one JSON object a line)");
    else
        return 1;
    return 0;
}

dataset_format dataset_upload_format(const dataset_upload *u) {
    return u->format;
}

int64_t dataset_upload_rows(const dataset_upload *u) {
    return u->n_rows;
}

int64_t dataset_upload_bytes(const dataset_upload *u) {
    return u->bytes;
}
