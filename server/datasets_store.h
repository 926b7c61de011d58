/* datasets_store — the datasets table as rlhfd's routes read it. */
#ifndef RLHF_DATASETS_STORE_H
#define RLHF_DATASETS_STORE_H

#include <sqlite3.h>
#include <stdint.h>

/* Dataset id's format (16 bytes: sft | preference | prompts) and row
 * count: 1 found, 0 no such dataset, -1 error. */
int datasets_store_info(sqlite3 *db, int64_t id, char format[16], int64_t *n_rows);

#endif
