/* checkpoint_file — a stored checkpoint as a file descriptor, wherever its
 * bytes are: a file of the artifact store (checkpoints.path, opened in
 * place) or a blob in the row (copied into an unlinked temporary file, so a
 * killed process leaves nothing behind). The engine opens the result as
 * /proc/self/fd/N. */
#ifndef RLHF_CHECKPOINT_FILE_H
#define RLHF_CHECKPOINT_FILE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The data directory of the database at db_path: RLHF_DATA_DIR if set
 * (rlhfd sets it for its workers), else artifact_store_default_dir. */
void checkpoint_file_data_dir(const char *db_path, char *out, size_t cap);

/* Opens checkpoint id. Returns the fd (the caller closes it), or -1 with
 * err; *found is false when there is no such checkpoint (may be NULL). */
int checkpoint_file_open(sqlite3 *db, const char *data_dir, int64_t id, bool *found, char *err,
                         size_t errlen);

/* Whether the safetensors file at fd carries training state
 * (`training_state.*` metadata, sft.h). Reads the header only. */
bool checkpoint_file_has_training_state(int fd);

#endif
