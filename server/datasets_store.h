/* datasets_store — the datasets and dataset_rows tables as rlhfd's routes
 * read and write them (routes_datasets.c; routes_jobs.c checks a job's
 * datasets with datasets_store_info). */
#ifndef RLHF_DATASETS_STORE_H
#define RLHF_DATASETS_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

/* Dataset id's format (16 bytes: sft | preference | prompts) and row
 * count: 1 found, 0 no such dataset, -1 error. */
int datasets_store_info(sqlite3 *db, int64_t id, char format[16], int64_t *n_rows);

/* The API's dataset object: of a row of datasets_store_list (a
 * db_row_json), or of dataset id (NULL with *found 0: none, -1: error;
 * found may be NULL). */
json_t *datasets_store_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope);
json_t *datasets_store_load(sqlite3 *db, int64_t id, int *found);

/* A new empty dataset, in the caller's transaction: its id, or -1. */
int64_t datasets_store_insert(sqlite3 *db, const char *name, const char *format,
                              int64_t created_by);

/* A page of datasets, newest first: ids below after (0: from the newest),
 * of format when not NULL, at most limit rows. The prepared statement, or
 * NULL. */
sqlite3_stmt *datasets_store_list(sqlite3 *db, int64_t after, const char *format, int64_t limit);

/* Deletes dataset id and its rows unless a job names it, in the caller's
 * transaction: 1 deleted, 0 no such dataset, 2 in use (*job = the first
 * job naming it), -1 error. */
int datasets_store_delete(sqlite3 *db, int64_t id, int64_t *job);

/* One row of dataset_rows: its text columns (NULL where unset) and margin. */
enum { DATASETS_STORE_TEXT_COLUMNS = 7 };
typedef struct dataset_stored_row {
    int64_t line;
    /* prompt, response, chosen, rejected, prompt_messages, responses, ranks */
    char *text[DATASETS_STORE_TEXT_COLUMNS];
    bool has_margin;
    double margin;
} dataset_stored_row;

/* Inserting rows: prepare once, add each (its strings are taken and freed),
 * finalize with sqlite3_finalize. NULL / 0 on error. */
sqlite3_stmt *datasets_store_rows_prepare(sqlite3 *db);
int datasets_store_add_row(sqlite3_stmt *st, int64_t dataset_id, dataset_stored_row *row);
/* Records n_rows and the upload's size in bytes for dataset id: 1 or 0 on
 * error. */
int datasets_store_set_upload(sqlite3 *db, int64_t id, int64_t n_rows, int64_t bytes);

/* ---- files (the OpenAI view of a dataset, routes_files.c) ----------------------- */

/* The bytes of an upload are kept in pieces of at most this size. */
enum { DATASETS_STORE_CONTENT_PIECE = 1 << 20 };
/* Piece seq of dataset id's upload, in the caller's transaction: 1 or 0. */
int datasets_store_add_content(sqlite3 *db, int64_t id, int64_t seq, const void *bytes, size_t n);
/* Dataset id's upload as it came, into *bytes (malloc'd) and *n: 1 found, 0
 * no such dataset, -1 error. A dataset without an upload has 0 bytes. */
int datasets_store_content(sqlite3 *db, int64_t id, char **bytes, size_t *n);

/* Sets the purpose of dataset id (a file's: "fine-tune"), in the caller's
 * transaction: 1 or 0. */
int datasets_store_set_purpose(sqlite3 *db, int64_t id, const char *purpose);

/* The OpenAI file object (id "file-N") of a row of datasets_store_list (a
 * db_row_json), or of dataset id (NULL with *found 0: none, -1: error). */
json_t *datasets_store_file_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope);
json_t *datasets_store_load_file(sqlite3 *db, int64_t id, int *found);

#endif
