/* checkpoints_store — the checkpoints table as the routes read it: a job's
 * checkpoints page by page, one checkpoint's bytes, and what a `model` /
 * `reward_model` reference of POST /v1/jobs names. rlhf-train writes
 * checkpoints (train/db_sink.c); nothing here writes. */
#ifndef RLHF_CHECKPOINTS_STORE_H
#define RLHF_CHECKPOINTS_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One page of job ?3's checkpoints, newest first: binds ?1 = after (0 for
 * the first page), ?2 = the row limit (http_reply_page's convention). */
extern const char checkpoints_store_page_sql[];
/* A row of checkpoints_store_page_sql as the API's checkpoint object. */
json_t *checkpoints_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id);

/* A stored checkpoint's safetensors file, with what its download names. */
typedef struct checkpoint_content {
    int fd; /* the file (the artifact store's, or a temporary copy of a row's blob) */
    uint64_t n_bytes;
    char sha256[65];
    int64_t job_id, step;
} checkpoint_content;

/* Opens checkpoint id's file into out: 1 found (close out->fd), 0 no such
 * checkpoint, -1 error (err). */
int checkpoints_store_content(sqlite3 *db, const char *data_dir, int64_t id,
                              checkpoint_content *out, char *err, size_t errlen);

/* Where a checkpoint comes from: its job's type and status. */
typedef struct checkpoint_origin {
    char job_type[64];
    char job_status[32];
    int64_t checkpoint_id; /* by job: the job's final checkpoint, 0 if none */
} checkpoint_origin;

/* by_job: job id's newest final checkpoint; else checkpoint id. 1 found (the job, or the
 * checkpoint), 0 not, -1 error. */
int checkpoints_store_origin(sqlite3 *db, int64_t id, bool by_job, checkpoint_origin *out);

#endif
