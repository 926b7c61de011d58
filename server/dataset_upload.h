/* dataset_upload — one JSONL upload into a dataset, streamed: each line is
 * validated as it arrives (only the current partial line is held) and its
 * row appended to an unlinked spool file, the bytes as they came to
 * another. When the body is complete and every line was good, the rows and
 * the bytes go into the database in the caller's transaction; the first bad
 * line stops everything and is reported by number and field.
 *
 * POST /v1/datasets/{id}/upload feeds it the raw body (routes_datasets.c),
 * POST /v1/files the `file` part of a multipart form (routes_files.c).
 */
#ifndef RLHF_DATASET_UPLOAD_H
#define RLHF_DATASET_UPLOAD_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "dataset_format.h"
#include "request.h"

typedef struct dataset_upload dataset_upload;

/* A new upload of rows of *format, or of the format of the first line
 * (dataset_format_detect) when format is NULL. NULL when out of memory or
 * without a spool file. */
dataset_upload *dataset_upload_new(const dataset_format *format);
void dataset_upload_free(dataset_upload *u);

/* The next n bytes of the file. */
void dataset_upload_feed(dataset_upload *u, const char *bytes, size_t n);

/* Ends the upload (a last line without a newline counts): 1 every line was
 * good and there is at least one row; else 0 after replying 400 with the
 * first bad line (`line` in the error object) or empty_file. */
int dataset_upload_end(request *r, dataset_upload *u, enum MHD_Result *replied);

/* The rows' format (detected: the first line's) and what was uploaded. */
dataset_format dataset_upload_format(const dataset_upload *u);
int64_t dataset_upload_rows(const dataset_upload *u);
int64_t dataset_upload_bytes(const dataset_upload *u);

/* In the caller's transaction: the rows into dataset_rows, the bytes into
 * dataset_content, and n_rows and bytes into dataset id. 1, or 0 on error. */
int dataset_upload_store(sqlite3 *db, dataset_upload *u, int64_t dataset_id);

#endif
