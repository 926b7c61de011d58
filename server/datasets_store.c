#include "datasets_store.h"

#include <stdio.h>

int datasets_store_info(sqlite3 *db, int64_t id, char format[16], int64_t *n_rows) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT format, n_rows FROM datasets WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(format, 16, "%s", (const char *)sqlite3_column_text(st, 0));
        *n_rows = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
