/* job_create — POST /v1/jobs's validation and insert, and its cancel
 * (routes_jobs.c), shared with /v1/fine_tuning/jobs (routes_fine_tuning.c),
 * which translates its OpenAI body into a native one and answers with its
 * own view of the stored job.
 */
#ifndef RLHF_JOB_CREATE_H
#define RLHF_JOB_CREATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"

/* How a surface other than /v1/jobs stores and shows the job it creates. */
typedef struct job_create_view {
    /* In the job's transaction, after its insert: 1, or 0 (rolled back, 500). */
    int (*store)(sqlite3 *db, int64_t job_id, void *ctx);
    /* The reply object of the stored job (NULL: 500). */
    json_t *(*reply)(sqlite3 *db, int64_t job_id, void *ctx);
    /* The param of an engine hyperparameter error (err names the native key
     * in its first '...', see job_error_key). */
    void (*hyperparameter_param)(const char *err, char *param, size_t len, void *ctx);
    void *ctx;
} job_create_view;

/* Validates the native job body (POST /v1/jobs: type, hyperparameters,
 * training_file, ...) and stores the job with its datasets in one
 * transaction; replies with the job object (view NULL) or view's. */
enum MHD_Result jobs_create(request *r, const json_t *body, const job_create_view *view);

/* POST /v1/jobs/{id}/cancel of r->path_id, replying with the job object
 * (view NULL) or view's reply (its store is not used). */
enum MHD_Result jobs_cancel(request *r, const job_create_view *view);

/* The newest ranking of project id that gives preference pairs (not a
 * skip, not all ties): what a reward or dpo job on the project trains up
 * to, into *cutoff (0 if none). 1 the project exists, 0 not, -1 error. */
int jobs_project_ranking_cutoff(sqlite3 *db, int64_t id, int64_t *cutoff);

/* The key an engine error message names in its first '...' ("hyperparameter
 * 'gamma' must be ..."): 1 with key, or 0. */
int job_error_key(const char *err, char *key, size_t len);

/* The job types of the registry, "sft, reward, ...", for messages. */
void job_available_types(char *out, size_t len);

#endif
