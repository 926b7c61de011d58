/* job_events_store — a job's events as the routes read them: page by page
 * (GET /v1/jobs/{id}/events) and after an id (the stream). The workers and
 * jobs_db write them (db_insert_job_event, common/db.h). */
#ifndef RLHF_JOB_EVENTS_STORE_H
#define RLHF_JOB_EVENTS_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

/* One page of job ?3's events, newest first: binds ?1 = after (0 for the
 * first page), ?2 = the row limit (http_reply_page's convention). */
extern const char job_events_store_page_sql[];

/* The same for job ?3's rollouts (the events of code 'rollout' that
 * training keeps, train/db_sink.h), newest first. */
extern const char job_events_store_rollouts_sql[];
/* A rollout row as the API's object: {id, object:"job.rollout", job_id,
 * created_at} and the stored step, sample, prompt, response, score, tokens. */
json_t *job_events_store_rollout_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id);

/* The events of job_id after event id after_id, oldest first, at most
 * limit: the prepared statement (rows for job_events_store_json), or NULL. */
sqlite3_stmt *job_events_store_after(sqlite3 *db, int64_t job_id, int64_t after_id, int64_t limit);

/* A row of either as the API's event object ("job.event"). */
json_t *job_events_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id);
/* The id and type (message | metrics: the SSE event name) of such a row. */
int64_t job_events_store_id(sqlite3_stmt *st);
const char *job_events_store_type(sqlite3_stmt *st);

#endif
