/* artifact_store — large artifacts (full checkpoints, model weights) as
 * files named by their SHA-256 in a directory beside the database:
 *
 *   DATA_DIR/objects/<sha256>   the artifacts, read-only once renamed there
 *   DATA_DIR/tmp/               files being written
 *
 * A write goes to a temporary file, is fsynced, renamed to its digest's
 * name and the objects directory fsynced; only then does the caller
 * reference it (a row holding the sha256) in a committed transaction. So a
 * committed reference always names a durable file, and a crash between the
 * steps leaves at most an unreferenced file, which artifact_store_collect
 * removes. SQLite keeps the metadata; the rows that reference objects are
 * checkpoints with a path (path = "objects/<sha256>") and model_files.
 *
 * Collection runs at start-up and periodically (rlhfd). A writer in another
 * process renames before it commits its reference, so an object younger
 * than the grace period is never collected even when nothing references it
 * yet; rename gives the object its temporary file's fresh mtime even when
 * an older copy of the same content was there, and collection moves an
 * object aside and checks its mtime again before deleting it, so a fresh
 * copy renamed in meanwhile survives.
 *
 * For crash tests, RLHF_ARTIFACT_CRASH_AT=STEP kills the process with
 * SIGKILL at that step: "written", "synced", "renamed", "dir_synced", or a
 * caller's own step passed to artifact_crash_point (e.g. "committed"). */
#ifndef RLHF_ARTIFACT_STORE_H
#define RLHF_ARTIFACT_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sha256.h"

/* The default data directory of the database at db_path: "DB_PATH.data". */
void artifact_store_default_dir(const char *db_path, char *out, size_t cap);

/* Creates dir, dir/objects and dir/tmp if missing. 0, or -1 with err. */
int artifact_store_init(const char *dir, char *err, size_t errlen);

/* dir/objects/<sha256>; the "objects/<sha256>" a row stores as its path is
 * artifact_store_rel_path. */
void artifact_store_path(const char *dir, const char *sha256, char *out, size_t cap);
void artifact_store_rel_path(const char *sha256, char *out, size_t cap);

/* A file being written into the store. */
typedef struct artifact_writer {
    int fd;
    char dir[4096];
    char tmp_path[4200];
    sha256_ctx sha;
    uint64_t n_bytes;
    uint64_t max_bytes; /* 0: no limit */
    bool too_large;
} artifact_writer;

int artifact_writer_open(artifact_writer *w, const char *dir, uint64_t max_bytes, char *err,
                         size_t errlen);
/* Appends; -1 with err on an I/O error or past max_bytes (w->too_large). */
int artifact_writer_write(artifact_writer *w, const void *bytes, size_t n, char *err,
                          size_t errlen);
/* fsync, rename to objects/<sha256>, fsync objects/. sha256 gets the
 * digest. The writer is closed either way. 0, or -1 with err. */
int artifact_writer_commit(artifact_writer *w, char sha256[65], char *err, size_t errlen);
/* Closes and removes the temporary file (a no-op after commit). */
void artifact_writer_abort(artifact_writer *w);

/* How an artifact's bytes are produced for artifact_store_put_stream: write
 * them to out and set *n_bytes to their count. 0 or -1. (The same shape as
 * engine/sink.h's sink_checkpoint_writer.) */
typedef int (*artifact_stream_writer)(void *wctx, FILE *out, size_t *n_bytes);

/* A buffer already in memory, and the writer that writes it (wctx: an
 * artifact_bytes): for artifact_store_put, and for the sinks' in-memory
 * checkpoints that take the streaming path. */
typedef struct artifact_bytes {
    const void *bytes;
    size_t n;
} artifact_bytes;
int artifact_write_bytes(void *wctx, FILE *out, size_t *n_bytes);

/* What write(wctx, out, &n) writes, as one artifact: out is a stream into
 * an artifact_writer, hashed as it is written, so the artifact is never
 * whole in memory; then committed as artifact_writer_commit does (same
 * crash points). *n_bytes gets its size. 0, or -1 with err, nothing left
 * in tmp/ or objects/, and errno as the failed file operation left it
 * (db_errno_is_storage tells a full disk). */
int artifact_store_put_stream(const char *dir, artifact_stream_writer write, void *wctx,
                              char sha256[65], uint64_t *n_bytes, char *err, size_t errlen);

/* bytes[0..n) as one artifact: artifact_store_put_stream of those bytes. */
int artifact_store_put(const char *dir, const void *bytes, size_t n, char sha256[65], char *err,
                       size_t errlen);

/* Opens the object sha256 for reading and checks its size; returns the fd
 * or -1 with err. */
int artifact_store_open(const char *dir, const char *sha256, int64_t size_bytes, char *err,
                        size_t errlen);

/* Removes the objects no row references and the temporary files, when
 * their mtime is at least grace_s seconds old. Returns how many files it
 * removed, or -1 with err. */
int64_t artifact_store_collect(sqlite3 *db, const char *dir, int64_t grace_s, char *err,
                               size_t errlen);

/* Test hook: SIGKILLs the process when RLHF_ARTIFACT_CRASH_AT names step. */
void artifact_crash_point(const char *step);

#endif
