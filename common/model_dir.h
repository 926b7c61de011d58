/* model_dir — where a registered base model's Hugging Face directory is on
 * disk: a model registered from a directory is that directory; an uploaded
 * one is DATA_DIR/models/<id>/, a directory of symbolic links, one per
 * uploaded file, to its object in the artifact store (artifact_store.h),
 * (re)made from the model_files rows whenever it is asked for. The links
 * are derived data: the rows are the truth, so a crash while linking loses
 * nothing. */
#ifndef RLHF_MODEL_DIR_H
#define RLHF_MODEL_DIR_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* The directory of model id (any status) into out. 1 found, 0 no such
 * model, -1 error (err). */
int model_dir_path(sqlite3 *db, const char *data_dir, int64_t model_id, char *out, size_t cap,
                   char *err, size_t errlen);

/* Removes an uploaded model's link directory (after its row is deleted). */
void model_dir_remove(const char *data_dir, int64_t model_id);

#endif
