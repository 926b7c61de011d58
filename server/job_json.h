/* job_json — what every job route shares: the API's job object (from a
 * jobs_db row), text columns holding JSON, and the 404 of a job route whose
 * {id} names no job. routes_jobs.c, routes_job_events.c and
 * routes_checkpoints.c use it. */
#ifndef RLHF_JOB_JSON_H
#define RLHF_JOB_JSON_H

#include "http.h"
#include "jobs_db.h"

/* The job object: the OpenAI fine-tuning job's fields (training_file,
 * hyperparameters, model, fine_tuned_model, ...) and ours (attempts,
 * ranks, ...). NULL when out of memory. */
json_t *job_json(const job_row *job);

/* db_row_json for a SELECT JOBS_DB_COLUMNS (lists of jobs). */
json_t *job_json_from_stmt(sqlite3 *db, sqlite3_stmt *st, int64_t scope);

/* Column i of st parsed as JSON; null if NULL or unparsable. */
json_t *job_json_column(sqlite3_stmt *st, int i);

/* 404 job_not_found for r->path_id. */
enum MHD_Result job_reply_not_found(request *r);

/* 1 if job r->path_id exists, else 0 after replying 404 (or 500). */
int job_require(request *r, enum MHD_Result *replied);

#endif
