#include "checkpoint_file.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_store.h"

/* The largest safetensors header read (engine/safetensors.h's limit). */
#define CHECKPOINT_FILE_MAX_HEADER 100000000u

void checkpoint_file_data_dir(const char *db_path, char *out, size_t cap) {
    const char *env = getenv("RLHF_DATA_DIR");
    if (env != NULL && *env)
        snprintf(out, cap, "%s", env);
    else
        artifact_store_default_dir(db_path, out, cap);
}

/* Copies the blob into an unlinked temporary file; its fd, or -1. */
static int blob_to_temp_file(sqlite3_blob *blob, char *err, size_t errlen) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/rlhf-checkpoint-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file %.256s: %s", path, strerror(errno));
        return -1;
    }
    unlink(path);
    enum { CHUNK_BYTES = 1 << 20 };
    char *buf = malloc(CHUNK_BYTES);
    const int size = sqlite3_blob_bytes(blob);
    int ok = buf != NULL;
    for (int off = 0; ok && off < size; off += CHUNK_BYTES) {
        int n = size - off < CHUNK_BYTES ? size - off : CHUNK_BYTES;
        ok = sqlite3_blob_read(blob, buf, n, off) == SQLITE_OK && write(fd, buf, (size_t)n) == n;
    }
    free(buf);
    if (!ok) {
        snprintf(err, errlen, "cannot copy the checkpoint to a temporary file: %s",
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int checkpoint_file_open(sqlite3 *db, const char *data_dir, int64_t id, bool *found, char *err,
                         size_t errlen) {
    if (found != NULL)
        *found = false;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT path, sha256, size_bytes FROM checkpoints "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read checkpoint %lld: %s", (long long)id, sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, id);
    int fd = -1;
    const int step = sqlite3_step(st);
    if (step == SQLITE_ROW && found != NULL)
        *found = true;
    if (step != SQLITE_ROW) {
        snprintf(err, errlen, "%s checkpoint %lld", step == SQLITE_DONE ? "no" : "cannot read",
                 (long long)id);
    } else if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
        fd = artifact_store_open(data_dir, (const char *)sqlite3_column_text(st, 1),
                                 sqlite3_column_int64(st, 2), err, errlen);
    } else {
        sqlite3_blob *blob = NULL;
        if (sqlite3_blob_open(db, "main", "checkpoints", "bytes", id, 0, &blob) != SQLITE_OK)
            snprintf(err, errlen, "cannot read checkpoint %lld: %s", (long long)id,
                     sqlite3_errmsg(db));
        else
            fd = blob_to_temp_file(blob, err, errlen);
        sqlite3_blob_close(blob);
    }
    sqlite3_finalize(st);
    return fd;
}

bool checkpoint_file_has_training_state(int fd) {
    unsigned char len_le[8];
    if (pread(fd, len_le, 8, 0) != 8)
        return false;
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--)
        header_bytes = header_bytes << 8 | len_le[i];
    if (header_bytes > CHECKPOINT_FILE_MAX_HEADER)
        return false;
    char *header = malloc(header_bytes + 1);
    bool has = false;
    if (header && pread(fd, header, header_bytes, 8) == (ssize_t)header_bytes) {
        json_t *h = json_loadb(header, header_bytes, 0, NULL);
        const char *key;
        json_t *value;
        json_object_foreach(json_object_get(h, "__metadata__"), key, value) has |=
            strncmp(key, "training_state.", 15) == 0;
        json_decref(h);
    }
    free(header);
    return has;
}
