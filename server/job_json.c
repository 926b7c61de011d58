#include "job_json.h"

#include <string.h>

static json_t *int_or_null(int64_t v) {
    return v != 0 ? json_integer(v) : json_null();
}

json_t *job_json_column(sqlite3_stmt *st, int i) {
    const char *text = (const char *)sqlite3_column_text(st, i);
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

json_t *job_json(const job_row *job) {
    json_t *hyperparameters = json_loads(job->config, 0, NULL);
    json_t *out = json_pack(
        "{s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:b, s:I, s:o, s:o, s:o}", "id",
        (json_int_t)job->id, "object", "job", "type", job->type, "status", job->status,
        "training_file", int_or_null(job->training_file), "validation_file",
        int_or_null(job->validation_file), "hyperparameters",
        hyperparameters ? hyperparameters : json_null(), "attempts", (json_int_t)job->attempts,
        "max_attempts", (json_int_t)job->max_attempts, "cancel_requested", job->cancel_requested,
        "created_at", (json_int_t)job->created_at, "started_at", int_or_null(job->started_at),
        "finished_at", int_or_null(job->finished_at), "error",
        job->error ? json_pack("{s:s}", "message", job->error) : json_null());
    /* What the job starts from and, once it succeeded, its result: the
     * OpenAI fine-tuning names (model, fine_tuned_model), as checkpoint ids. */
    if (out != NULL) {
        json_object_set_new(out, "model", int_or_null(job->refs.model));
        json_object_set_new(out, "reward_model", int_or_null(job->refs.reward_model));
        json_object_set_new(out, "ref_model", int_or_null(job->refs.ref_model));
        json_object_set_new(out, "training_project", int_or_null(job->refs.project));
        json_object_set_new(out, "fine_tuned_model",
                            strcmp(job->status, "succeeded") == 0
                                ? int_or_null(job->final_checkpoint)
                                : json_null());
        json_object_set_new(out, "ranks", json_integer(job->ranks));
    }
    return out;
}

json_t *job_json_from_stmt(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    job_row job;
    if (job_row_read(st, &job) != 0)
        return NULL;
    json_t *out = job_json(&job);
    job_row_free(&job);
    return out;
}

enum MHD_Result job_reply_not_found(request *r) {
    return http_reply_error(r, 404, "job_not_found", NULL, "no job %lld", (long long)r->path_id);
}

int job_require(request *r, enum MHD_Result *replied) {
    /* every job route starts here: a cached statement */
    sqlite3_stmt *st = db_cached_prepare(r->db, "SELECT 1 FROM jobs WHERE id = ?1");
    int found = -1;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, r->path_id);
        int rc = sqlite3_step(st);
        found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
        db_cached_done(st);
    }
    if (found <= 0)
        *replied = found == 0 ? job_reply_not_found(r) : http_reply_db_error(r);
    return found > 0;
}
