/* studies_store — the studies, study_variations and study_jobs tables
 * (schema/014_studies.sql): a study's rows as written in its create
 * transaction, and what GET /v1/studies reads back — the study object with
 * its jobs' statuses, the summary table and the curves, computed from the
 * jobs and metrics tables at read time (a study stores no results of its
 * own, so it is never out of step with its jobs).
 */
#ifndef RLHF_STUDIES_STORE_H
#define RLHF_STUDIES_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

/* What a new study is made of. */
typedef struct study_new {
    const char *name;
    const char *job_type;
    const char *metric; /* the summary's primary metric */
    const char *goal;   /* "max" | "min": which value is the best */
    const char *spec;   /* the request body, JSON text */
    int64_t created_by; /* api_tokens id; 0 for none */
} study_new;

/* In the caller's transaction: the study row (its id, or -1), a variation
 * (0 or -1), a child job of variation and seed (0 or -1). */
int64_t studies_store_insert(sqlite3 *db, const study_new *study);
int studies_store_add_variation(sqlite3 *db, int64_t study, int64_t variation, const char *label,
                                const char *hyperparameters_json);
int studies_store_add_job(sqlite3 *db, int64_t study, int64_t variation, int64_t seed,
                          int64_t job_id);

/* The study object of GET /v1/studies/{id}: its fields, variations, jobs
 * (id, variation, seed, status), status and job counts, and the summary
 * table. NULL with *found 0 (no such study) or -1 (error). */
json_t *studies_store_load(sqlite3 *db, int64_t id, int *found);

/* db_row_json of a study list row (SELECT STUDIES_STORE_COLUMNS): the
 * study's fields, status and job counts, without jobs and summary. */
json_t *studies_store_row_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope);
#define STUDIES_STORE_COLUMNS "id, name, job_type, metric, goal, spec, created_at"

/* The study's job ids (malloc'd into *ids): their count, or -1. */
int studies_store_job_ids(sqlite3 *db, int64_t id, int64_t **ids);

/* {"object": "study.curves", "metric", "variations": [{"variation", "label", "steps": [{"step",
 * "mean", "min", "max", "n"}]}]} of metric over the study's jobs, by
 * step: mean and band over the seeds that reached the step. NULL on
 * error. */
json_t *studies_store_curves(sqlite3 *db, int64_t id, const char *metric);

#endif
