#include "artifact_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void artifact_crash_point(const char *step) {
    const char *at = getenv("RLHF_ARTIFACT_CRASH_AT");
    if (at != NULL && strcmp(at, step) == 0)
        raise(SIGKILL);
}

void artifact_store_default_dir(const char *db_path, char *out, size_t cap) {
    snprintf(out, cap, "%.4000s.data", db_path);
}

void artifact_store_rel_path(const char *sha256, char *out, size_t cap) {
    snprintf(out, cap, "objects/%.64s", sha256);
}

void artifact_store_path(const char *dir, const char *sha256, char *out, size_t cap) {
    snprintf(out, cap, "%.4000s/objects/%.64s", dir, sha256);
}

static int make_dir(const char *path, char *err, size_t errlen) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    snprintf(err, errlen, "cannot create %.3000s: %s", path, strerror(errno));
    return -1;
}

int artifact_store_init(const char *dir, char *err, size_t errlen) {
    char sub[4200];
    if (make_dir(dir, err, errlen) != 0)
        return -1;
    snprintf(sub, sizeof sub, "%.4000s/objects", dir);
    if (make_dir(sub, err, errlen) != 0)
        return -1;
    snprintf(sub, sizeof sub, "%.4000s/tmp", dir);
    return make_dir(sub, err, errlen);
}

/* fsync of a directory: makes a rename in it durable. */
static int sync_dir(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot sync directory %.3000s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* ==== writing ================================================================= */

int artifact_writer_open(artifact_writer *w, const char *dir, uint64_t max_bytes, char *err,
                         size_t errlen) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    snprintf(w->tmp_path, sizeof w->tmp_path, "%.4000s/tmp/artifact-XXXXXX", dir);
    w->fd = mkstemp(w->tmp_path);
    if (w->fd < 0) {
        snprintf(err, errlen, "cannot create a file in %.3000s/tmp: %s", dir, strerror(errno));
        return -1;
    }
    sha256_init(&w->sha);
    w->max_bytes = max_bytes;
    return 0;
}

int artifact_writer_write(artifact_writer *w, const void *bytes, size_t n, char *err,
                          size_t errlen) {
    if (w->max_bytes > 0 && w->n_bytes + n > w->max_bytes) {
        w->too_large = true;
        snprintf(err, errlen, "larger than %llu bytes", (unsigned long long)w->max_bytes);
        return -1;
    }
    const char *p = bytes;
    size_t left = n;
    while (left > 0) {
        ssize_t k = write(w->fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(err, errlen, "cannot write %.3000s: %s", w->tmp_path, strerror(errno));
            return -1;
        }
        p += k, left -= (size_t)k;
    }
    sha256_update(&w->sha, bytes, n);
    w->n_bytes += n;
    return 0;
}

void artifact_writer_abort(artifact_writer *w) {
    const int saved = errno; /* the failure's, for the caller */
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->tmp_path);
    }
    w->fd = -1;
    errno = saved;
}

int artifact_writer_commit(artifact_writer *w, char sha256[65], char *err, size_t errlen) {
    uint8_t digest[32];
    sha256_final(&w->sha, digest);
    for (int i = 0; i < 32; i++)
        snprintf(sha256 + 2 * i, 3, "%02x", digest[i]);
    artifact_crash_point("written");
    if (fsync(w->fd) != 0) {
        snprintf(err, errlen, "cannot sync %.3000s: %s", w->tmp_path, strerror(errno));
        artifact_writer_abort(w);
        return -1;
    }
    artifact_crash_point("synced");
    char final_path[4200], objects[4200];
    artifact_store_path(w->dir, sha256, final_path, sizeof final_path);
    if (rename(w->tmp_path, final_path) != 0) {
        snprintf(err, errlen, "cannot rename into %.3000s: %s", final_path, strerror(errno));
        artifact_writer_abort(w);
        return -1;
    }
    close(w->fd);
    w->fd = -1;
    artifact_crash_point("renamed");
    snprintf(objects, sizeof objects, "%.4000s/objects", w->dir);
    if (sync_dir(objects, err, errlen) != 0)
        return -1;
    artifact_crash_point("dir_synced");
    return 0;
}

/* The stream artifact_store_put_stream hands its writer: each write goes to
 * the artifact_writer; the first failure is kept (stdio reports only that
 * one happened). */
typedef struct writer_stream {
    artifact_writer *w;
    char *err;
    size_t errlen;
    int failed_errno; /* 0: no write failed */
} writer_stream;

static ssize_t writer_stream_write(void *cookie, const char *buf, size_t n) {
    writer_stream *ws = cookie;
    if (ws->failed_errno != 0)
        return 0;
    if (artifact_writer_write(ws->w, buf, n, ws->err, ws->errlen) != 0) {
        ws->failed_errno = errno != 0 ? errno : EIO;
        errno = ws->failed_errno;
        return 0; /* fopencookie: 0 is an error */
    }
    return (ssize_t)n;
}

int artifact_store_put_stream(const char *dir, artifact_stream_writer write, void *wctx,
                              char sha256[65], uint64_t *n_bytes, char *err, size_t errlen) {
    artifact_writer w;
    if (artifact_writer_open(&w, dir, 0, err, errlen) != 0)
        return -1;
    writer_stream ws = {&w, err, errlen, 0};
    FILE *out = fopencookie(&ws, "w", (cookie_io_functions_t){.write = writer_stream_write});
    if (out == NULL) {
        snprintf(err, errlen, "cannot open a stream: %s", strerror(errno));
        artifact_writer_abort(&w);
        return -1;
    }
    size_t reported = 0;
    errno = 0;
    const bool produced = write(wctx, out, &reported) == 0 && fflush(out) == 0;
    const int produce_errno = errno; /* the writer's own failure (out of memory, say) */
    fclose(out);                     /* flushed already; the fd is the writer's */
    if (ws.failed_errno == 0 && !produced)
        snprintf(err, errlen, "cannot produce the artifact: %s",
                 produce_errno != 0 ? strerror(produce_errno) : "the writer failed");
    else if (ws.failed_errno == 0 && reported != w.n_bytes)
        snprintf(err, errlen, "the writer reported %zu bytes but wrote %llu", reported,
                 (unsigned long long)w.n_bytes);
    if (ws.failed_errno != 0 || !produced || reported != w.n_bytes) {
        artifact_writer_abort(&w);
        errno = ws.failed_errno != 0 ? ws.failed_errno : produced ? 0 : produce_errno;
        return -1;
    }
    *n_bytes = w.n_bytes;
    return artifact_writer_commit(&w, sha256, err, errlen);
}

int artifact_write_bytes(void *wctx, FILE *out, size_t *n_bytes) {
    const artifact_bytes *b = wctx;
    *n_bytes = b->n;
    return fwrite(b->bytes, 1, b->n, out) == b->n ? 0 : -1;
}

int artifact_store_put(const char *dir, const void *bytes, size_t n, char sha256[65], char *err,
                       size_t errlen) {
    artifact_bytes b = {bytes, n};
    uint64_t n_bytes;
    return artifact_store_put_stream(dir, artifact_write_bytes, &b, sha256, &n_bytes, err, errlen);
}

/* ==== reading ================================================================= */

int artifact_store_open(const char *dir, const char *sha256, int64_t size_bytes, char *err,
                        size_t errlen) {
    char path[4200];
    artifact_store_path(dir, sha256, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "artifact %.64s: cannot open %.3000s: %s", sha256, path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (size_bytes >= 0 && st.st_size != size_bytes) {
        snprintf(err, errlen, "artifact %.64s: %lld bytes on disk, %lld recorded", sha256,
                 (long long)st.st_size, (long long)size_bytes);
        close(fd);
        return -1;
    }
    return fd;
}

/* ==== collecting ============================================================== */

static bool is_hex_digest(const char *name) {
    if (strlen(name) != 64)
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return false;
    return true;
}

/* Removes an unreferenced object without racing a writer that renames a
 * fresh copy of the same content over it (and commits a reference) right
 * now: the object is first moved aside; if what was moved is fresh after
 * all, it was that writer's file and goes back. 0 removed, -1 kept. */
static int remove_object(const char *dir, const char *file, const char *name, int64_t grace_s,
                         time_t now) {
    char aside[4500];
    snprintf(aside, sizeof aside, "%.4000s/tmp/collect-%.64s", dir, name);
    if (rename(file, aside) != 0)
        return -1;
    struct stat st;
    if (lstat(aside, &st) == 0 && now - st.st_mtime < grace_s) {
        /* a writer's: back, unless an even newer copy has landed since */
        if (link(aside, file) != 0 && errno != EEXIST)
            return -1;
        unlink(aside);
        return -1;
    }
    return unlink(aside);
}

/* Removes the files of sub that are old enough and (for objects) not
 * referenced. Adds to *removed; -1 with err. */
static int collect_dir(sqlite3 *db, const char *dir, const char *sub, int64_t grace_s,
                       int64_t *removed, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/%s", dir, sub);
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cannot list %.3000s: %s", path, strerror(errno));
        return -1;
    }
    const bool objects = strcmp(sub, "objects") == 0;
    sqlite3_stmt *st = NULL;
    if (objects && sqlite3_prepare_v2(db,
                                      "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE path IS "
                                      "NOT NULL AND sha256 = ?1) OR EXISTS (SELECT 1 FROM "
                                      "model_files WHERE sha256 = ?1)",
                                      -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot look up artifact references: %s", sqlite3_errmsg(db));
        closedir(d);
        return -1;
    }
    const time_t now = time(NULL);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[4500];
        snprintf(file, sizeof file, "%s/%.255s", path, e->d_name);
        struct stat fst;
        if (lstat(file, &fst) != 0 || now - fst.st_mtime < grace_s)
            continue;
        if (objects) {
            if (!is_hex_digest(e->d_name))
                continue; /* not ours */
            sqlite3_bind_text(st, 1, e->d_name, -1, SQLITE_TRANSIENT);
            int step = sqlite3_step(st);
            const bool referenced = step == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
            if (step != SQLITE_ROW) {
                snprintf(err, errlen, "cannot look up artifact references: %s", sqlite3_errmsg(db));
                rc = -1;
            }
            sqlite3_reset(st);
            if (rc != 0 || referenced)
                continue;
        }
        if (objects ? remove_object(dir, file, e->d_name, grace_s, now) == 0 : unlink(file) == 0)
            (*removed)++;
    }
    sqlite3_finalize(st);
    closedir(d);
    return rc;
}

int64_t artifact_store_collect(sqlite3 *db, const char *dir, int64_t grace_s, char *err,
                               size_t errlen) {
    int64_t removed = 0;
    if (collect_dir(db, dir, "tmp", grace_s, &removed, err, errlen) != 0 ||
        collect_dir(db, dir, "objects", grace_s, &removed, err, errlen) != 0)
        return -1;
    return removed;
}
