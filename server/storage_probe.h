/* storage_probe — can the database's filesystem take a write right now?
 *
 * /readyz answers 503 while it cannot, and the scheduler starts no worker
 * meanwhile (a worker would only fail to write its first checkpoint). Two
 * checks, each a few syscalls, on the directory that holds the database
 * (and its -wal file):
 *   1. statvfs: at least STORAGE_PROBE_MIN_FREE_BYTES free for unprivileged
 *      writers (f_bavail), since a WAL frame or a checkpoint needs room;
 *   2. a probe file: created, given STORAGE_PROBE_FILE_BYTES of real blocks
 *      (posix_fallocate), fdatasync'ed and removed — which fails with
 *      ENOSPC, EDQUOT, EIO or EROFS where a database write would.
 * The answer is cached for STORAGE_PROBE_CACHE_MS, so a flood of /readyz
 * calls costs one probe a second.
 */
#ifndef RLHF_STORAGE_PROBE_H
#define RLHF_STORAGE_PROBE_H

#include <stddef.h>

#define STORAGE_PROBE_MIN_FREE_BYTES (1024 * 1024)
#define STORAGE_PROBE_FILE_BYTES     (64 * 1024)
#define STORAGE_PROBE_CACHE_MS       1000

/* 1 writable, 0 not (why says what failed), for the database at db_path.
 * Thread-safe; at most one probe per STORAGE_PROBE_CACHE_MS. */
int storage_probe(const char *db_path, char *why, size_t why_len);

#endif
