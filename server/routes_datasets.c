/* Datasets: create, upload JSONL, list, get, delete when no job uses them.
 *
 * A dataset has one format (sft, preference, prompts) and is filled by one
 * upload; its lines are those common/dataset_format.h parses, the same the
 * trainer reads from a file (TRL, OpenAI and K-wise preference rows, and
 * so on).
 *
 * The upload is streamed (dataset_upload.h): each line is validated as it
 * arrives; when the body is complete and every line was good, the rows go
 * into the database in one transaction; the first bad line stops
 * everything, is reported by number and field, and nothing is stored.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_format.h"
#include "datasets_store.h"
#include "dataset_upload.h"
#include "openai_ids.h"
#include "routes.h"

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

enum MHD_Result datasets_delete(request *r, bool as_file) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int64_t job = 0;
    const int deleted = datasets_store_delete(r->db, r->path_id, &job);
    if (deleted != 1)
        db_rollback(r->db);
    if (deleted == 0)
        return as_file ? http_reply_error(r, 404, "file_not_found", NULL, "no file file-%lld",
                                          (long long)r->path_id)
                       : reply_no_dataset(r);
    if (deleted == 2)
        return http_reply_error(r, 409, as_file ? "file_in_use" : "dataset_in_use", NULL,
                                "%s %s%lld is used by job %lld and cannot be deleted",
                                as_file ? "file" : "dataset", as_file ? "file-" : "",
                                (long long)r->path_id, (long long)job);
    if (deleted < 0)
        return http_reply_db_error(r);
    char id[32];
    openai_id_format(id, sizeof id, OPENAI_ID_FILE, r->path_id);
    json_t *out = as_file ? json_pack("{s:s, s:s, s:b}", "id", id, "object", "file", "deleted", 1)
                          : json_pack("{s:I, s:s, s:b}", "id", (json_int_t)r->path_id, "object",
                                      "dataset", "deleted", 1);
    return http_commit_reply(r, 200, out);
}

/* Deletes the dataset and its rows, unless a job uses it. */
enum MHD_Result route_datasets_delete(request *r) {
    return datasets_delete(r, false);
}

/* ---- the streamed upload (dataset_upload.h) ------------------------------------ */

static int upload_begin(request *r, enum MHD_Result *replied) {
    char format_name[16];
    dataset_format format;
    int64_t n_rows = 0;
    int found = datasets_store_info(r->db, r->path_id, format_name, &n_rows);
    if (found <= 0) {
        *replied = found == 0 ? reply_no_dataset(r) : http_reply_db_error(r);
        return 0;
    }
    if (dataset_format_from_name(format_name, &format) != 0) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    /* Refused before the body is read; with an Idempotency-Key it may be a
     * retry of the upload that filled it, which the end of the request
     * replays. */
    if (n_rows > 0 && r->idempotency_key == NULL) {
        *replied = http_reply_error(r, 409, "dataset_not_empty", NULL,
                                    "dataset %lld already holds an upload (%lld rows); create a "
                                    "new dataset",
                                    (long long)r->path_id, (long long)n_rows);
        return 0;
    }
    if ((r->upload = dataset_upload_new(&format)) == NULL) {
        *replied = http_reply_error(r, 500, "spool_failed", NULL, "cannot create a spool file");
        return 0;
    }
    return 1;
}

static void upload_data(request *r, const char *bytes, size_t n) {
    dataset_upload_feed(r->upload, bytes, n);
}

static void upload_free(request *r) {
    dataset_upload_free(r->upload);
    r->upload = NULL;
}

const http_upload route_datasets_upload_stream = {upload_begin, upload_data, upload_free, NULL};

/* POST /v1/datasets/{id}/upload, once the whole body has streamed through
 * upload_data. */
enum MHD_Result route_datasets_upload(request *r) {
    enum MHD_Result replied;
    if (!dataset_upload_end(r, r->upload, &replied))
        return replied;
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
    if (!dataset_upload_store(r->db, r->upload, r->path_id) ||
        (dataset = datasets_store_load(r->db, r->path_id, &found)) == NULL) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    return http_commit_reply(r, 200, dataset);
}
