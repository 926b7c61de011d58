/* Files, the OpenAI-compatible view of datasets (openai_ids.h: file-N is
 * dataset N): upload as multipart/form-data (`file`, `purpose`), list, get,
 * delete, content. A file's rows are validated on upload exactly as a
 * native upload's (dataset_upload.h, in the format of its first line:
 * dataset_format_detect), and stored the same way; the bytes as uploaded
 * are kept beside them for /content.
 *
 * The form is parsed as it streams by libmicrohttpd's post processor; the
 * `file` part goes through dataset_upload line by line, so only the current
 * line is held. `purpose` may come before or after the file (the openai
 * SDKs send the keys in the order the caller gave them), so it is checked
 * when the body is complete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataset_upload.h"
#include "datasets_store.h"
#include "openai_ids.h"
#include "routes.h"

/* The purposes of OpenAI's files API; only fine-tuning data is stored. */
static const char *const openai_purposes[] = {"assistants", "batch", "fine-tune", "vision",
                                              "user_data",  "evals", NULL};

enum { FILENAME_MAX_BYTES = 256, PURPOSE_MAX_BYTES = 32 };

typedef struct file_upload {
    struct MHD_PostProcessor *form;
    dataset_upload *rows;
    bool form_failed; /* the post processor gave up: not multipart, or broken */
    bool saw_file;
    int n_files;         /* parts named file */
    uint64_t file_bytes; /* of the first */
    char unknown[64];    /* the first part that is neither file nor purpose */
    char filename[FILENAME_MAX_BYTES + 1];
    bool filename_too_long;
    char purpose[PURPOSE_MAX_BYTES + 2]; /* one byte more than allowed: too long */
    size_t purpose_len;
    bool saw_purpose;
} file_upload;

static enum MHD_Result form_part(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding;
    file_upload *f = cls;
    if (key != NULL && strcmp(key, "file") == 0) {
        if (off == 0 && !f->saw_file) {
            f->saw_file = true;
            f->n_files++;
            if (filename != NULL && strlen(filename) > FILENAME_MAX_BYTES)
                f->filename_too_long = true;
            snprintf(f->filename, sizeof f->filename, "%s",
                     filename && filename[0] ? filename : "upload.jsonl");
        } else if (off == 0 && size > 0 && f->file_bytes > 0) {
            f->n_files++; /* a second file part starts over at offset 0 */
        }
        if (f->n_files == 1 && size > 0) {
            dataset_upload_feed(f->rows, data, size);
            f->file_bytes += size;
        }
    } else if (key != NULL && strcmp(key, "purpose") == 0) {
        f->saw_purpose = true;
        if (f->purpose_len + size > PURPOSE_MAX_BYTES + 1)
            size = PURPOSE_MAX_BYTES + 1 - f->purpose_len; /* too long: fails the comparison */
        memcpy(f->purpose + f->purpose_len, data, size);
        f->purpose_len += size;
        f->purpose[f->purpose_len] = '\0';
    } else if (f->unknown[0] == '\0') {
        snprintf(f->unknown, sizeof f->unknown, "%s", key ? key : "");
        if (f->unknown[0] == '\0')
            snprintf(f->unknown, sizeof f->unknown, "(unnamed)");
    }
    return MHD_YES;
}

static int files_begin(request *r, enum MHD_Result *replied) {
    const char *type =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (type == NULL || strncasecmp(type, "multipart/form-data", 19) != 0) {
        *replied = http_reply_error(r, 400, "invalid_content_type", NULL,
                                    "POST /v1/files takes multipart/form-data with the parts "
                                    "file (a JSONL file) and purpose (\"fine-tune\")");
        return 0;
    }
    file_upload *f = calloc(1, sizeof *f);
    if (f != NULL && (f->rows = dataset_upload_new(NULL)) != NULL &&
        (f->form = MHD_create_post_processor(r->conn, 65536, form_part, f)) != NULL) {
        r->upload = f;
        return 1;
    }
    if (f != NULL)
        dataset_upload_free(f->rows);
    free(f);
    *replied = http_reply_error(r, 400, "invalid_content_type", NULL,
                                "cannot read the multipart/form-data body (is its boundary "
                                "given?)");
    return 0;
}

static void files_data(request *r, const char *bytes, size_t n) {
    file_upload *f = r->upload;
    if (!f->form_failed && MHD_post_process(f->form, bytes, n) != MHD_YES)
        f->form_failed = true;
}

static void files_free(request *r) {
    file_upload *f = r->upload;
    if (f == NULL)
        return;
    if (f->form != NULL)
        MHD_destroy_post_processor(f->form);
    dataset_upload_free(f->rows);
    free(f);
    r->upload = NULL;
}

const http_upload route_files_create_stream = {files_begin, files_data, files_free, NULL};

/* ---- POST /v1/files ---------------------------------------------------------------- */

enum MHD_Result route_files_create(request *r) {
    file_upload *f = r->upload;
    enum MHD_Result replied;
    /* The form ends with its closing boundary: a body cut short is not a file. */
    const bool complete = MHD_destroy_post_processor(f->form) == MHD_YES;
    f->form = NULL;
    if (f->form_failed || !complete)
        return http_reply_error(r, 400, "invalid_multipart", NULL,
                                "the multipart/form-data body is malformed or incomplete");
    if (f->unknown[0])
        return http_reply_error(r, 400, "unknown_parameter", f->unknown,
                                "unknown form field '%s' (give file and purpose)", f->unknown);
    if (!f->saw_file)
        return http_reply_error(r, 400, "missing_required_parameter", "file",
                                "file is required: the JSONL file, as a form part with a "
                                "filename");
    if (f->n_files > 1)
        return http_reply_error(r, 400, "invalid_value", "file", "give one file per request");
    if (f->filename_too_long)
        return http_reply_error(r, 400, "invalid_value", "file",
                                "the file's name is longer than %d bytes", FILENAME_MAX_BYTES);
    if (!f->saw_purpose)
        return http_reply_error(r, 400, "missing_required_parameter", "purpose",
                                "purpose is required (\"fine-tune\")");
    if (strcmp(f->purpose, "fine-tune") != 0)
        return http_reply_error(r, 400, "invalid_value", "purpose",
                                http_one_of(f->purpose, openai_purposes)
                                    ? "purpose '%.32s' is not supported here: rlhfd stores "
                                      "fine-tuning data only (purpose \"fine-tune\")"
                                    : "unknown purpose '%.32s' (rlhfd takes \"fine-tune\")",
                                f->purpose);
    if (!dataset_upload_end(r, f->rows, &replied))
        return replied;
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    const char *format = dataset_format_name(dataset_upload_format(f->rows));
    int64_t id = datasets_store_insert(r->db, f->filename, format, r->token.id);
    json_t *file = NULL;
    if (id <= 0 || !datasets_store_set_purpose(r->db, id, f->purpose) ||
        !dataset_upload_store(r->db, f->rows, id) ||
        (file = datasets_store_load_file(r->db, id, NULL)) == NULL) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    return http_commit_reply(r, 200, file);
}

/* ---- GET /v1/files, GET /v1/files/{id}, DELETE, content ------------------------------ */

static enum MHD_Result reply_no_file(request *r) {
    return http_reply_error(r, 404, "file_not_found", NULL, "no file file-%lld",
                            (long long)r->path_id);
}

enum MHD_Result route_files_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page_of(r, "after", OPENAI_ID_FILE, 20, 10000, &limit, &after, &replied))
        return replied;
    const char *purpose = http_query(r, "purpose");
    if (purpose != NULL && !http_one_of(purpose, openai_purposes))
        return http_reply_error(r, 400, "invalid_value", "purpose", "unknown purpose '%.32s'",
                                purpose);
    if (purpose != NULL && strcmp(purpose, "fine-tune") != 0) /* none stored */
        return http_reply_json(r, 200, http_list(json_array(), false, "id"));
    const char *order = http_query(r, "order");
    if (order != NULL && strcmp(order, "desc") != 0)
        return http_reply_error(r, 400, "invalid_value", "order",
                                "files are listed newest first (order \"desc\")");
    sqlite3_stmt *st = datasets_store_list(r->db, after, NULL, limit + 1);
    if (st == NULL)
        return http_reply_db_error(r);
    return http_reply_rows(r, st, limit, 0, datasets_store_file_json);
}

enum MHD_Result route_files_get(request *r) {
    int found;
    json_t *file = datasets_store_load_file(r->db, r->path_id, &found);
    return file        ? http_reply_json(r, 200, file)
           : found < 0 ? http_reply_db_error(r)
                       : reply_no_file(r);
}

/* Deletes the file (its dataset), unless a job trains on it. */
enum MHD_Result route_files_delete(request *r) {
    return datasets_delete(r, true);
}

/* The bytes as uploaded (a native dataset without an upload has none). */
enum MHD_Result route_files_content(request *r) {
    char *bytes;
    size_t n;
    int found = datasets_store_content(r->db, r->path_id, &bytes, &n);
    if (found <= 0)
        return found < 0 ? http_reply_db_error(r) : reply_no_file(r);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, bytes, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(bytes);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    return http_queue(r, 200, resp);
}
