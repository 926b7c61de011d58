/* models_store — the models and model_files tables (schema 011) as the
 * routes read and write them, and the fine-tuned models the API lists
 * beside them: a succeeded job's final checkpoint, named
 * "ft:BASE:SUFFIX:ftjob-N" like the fine-tuning jobs' fine_tuned_model
 * (openai_ids.h; BASE the registered model its lineage starts from, or
 * "scratch" for a lineage trained from scratch; SUFFIX the fine-tuning
 * job's suffix, else empty). */
#ifndef RLHF_MODELS_STORE_H
#define RLHF_MODELS_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* A registered model, as the routes need it. */
typedef struct model_row {
    int64_t id;
    char name[80];
    char source[16]; /* "directory" | "upload" */
    char status[16]; /* "uploading" | "ready" | "failed" */
} model_row;

/* Model called name into out: 1 found, 0 not, -1 error. */
int models_store_find(sqlite3 *db, const char *name, model_row *out);

/* Inserts a model (path NULL for an upload) in the caller's transaction.
 * The new id, or -1 (e.g. the name is taken: sqlite3_extended_errcode is
 * SQLITE_CONSTRAINT_UNIQUE). */
int64_t models_store_insert(sqlite3 *db, const char *name, const char *source, const char *path,
                            const char *status, const char *family, const char *chat_format,
                            int64_t created_by);

/* Sets an upload's outcome: status, family, chat_format ("" = NULL),
 * error (a JSON object, or NULL). 0 or -1. */
int models_store_set_status(sqlite3 *db, int64_t id, const char *status, const char *family,
                            const char *chat_format, const json_t *error);

/* Records (or replaces) one uploaded file. 0 or -1. */
int models_store_put_file(sqlite3 *db, int64_t id, const char *name, const char *sha256,
                          int64_t size_bytes);

/* The model object of model id (with its files); NULL on error. */
json_t *models_store_json(sqlite3 *db, int64_t id);

/* Every model object: the registered models (oldest first), then the
 * fine-tuned ones (by job). NULL on error. */
json_t *models_store_list(sqlite3 *db);

/* The fine-tuned model called name ("ft:BASE:TYPE:JOB_ID"): 1 found with
 * *object (new reference) and *checkpoint_id set, 0 not, -1 error. */
/* The base of a lineage without a registered model (a GPT-2 from scratch). */
#define MODELS_STORE_SCRATCH "scratch"
/* The base name of the lineage that starts at registered model
 * base_model_id (0: MODELS_STORE_SCRATCH) into out. */
void models_store_base_name(sqlite3 *db, int64_t base_model_id, char *out, size_t len);
int models_store_find_ft(sqlite3 *db, const char *name, json_t **object, int64_t *checkpoint_id);

/* Deletes model id unless a job uses it: 1 deleted, 0 no such model, 2 in
 * use (*job = one such job), -1 error. In the caller's transaction. */
int models_store_delete(sqlite3 *db, int64_t id, int64_t *job);

/* The base model a checkpoint's job starts from (its lineage), or 0. */
int64_t models_store_checkpoint_base(sqlite3 *db, int64_t checkpoint_id);

/* The chat format recorded for model id ("chatml", …) into out; "" when
 * none or on error. */
void models_store_chat_format(sqlite3 *db, int64_t id, char *out, size_t len);

#endif
