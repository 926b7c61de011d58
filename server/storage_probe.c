#include "storage_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mutex;
    int64_t checked_ms; /* monotonic; 0: never */
    int writable;
    char why[256];
} cache = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The directory of path into dir ("." when path names none). */
static void directory_of(const char *path, char *dir, size_t len) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
}

static int probe_now(const char *db_path, char *why, size_t why_len) {
    char dir[4096], file[4200];
    directory_of(db_path, dir, sizeof dir);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        snprintf(why, why_len, "cannot stat the database's filesystem: %s", strerror(errno));
        return 0;
    }
    const unsigned long long free_bytes =
        (unsigned long long)vfs.f_bavail * (unsigned long long)vfs.f_frsize;
    if (free_bytes < STORAGE_PROBE_MIN_FREE_BYTES) {
        snprintf(why, why_len, "the database's disk is full: %llu bytes free, %d needed",
                 free_bytes, STORAGE_PROBE_MIN_FREE_BYTES);
        return 0;
    }
    snprintf(file, sizeof file, "%s/.rlhfd-storage-probe-%ld", dir, (long)getpid());
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = fd < 0 ? errno : posix_fallocate(fd, 0, STORAGE_PROBE_FILE_BYTES);
    if (fd >= 0 && err == 0 && fdatasync(fd) != 0)
        err = errno;
    if (fd >= 0) {
        close(fd);
        unlink(file);
    }
    if (err != 0) {
        snprintf(why, why_len, "cannot write beside the database: %s", strerror(err));
        return 0;
    }
    return 1;
}

int storage_probe(const char *db_path, char *why, size_t why_len) {
    pthread_mutex_lock(&cache.mutex);
    const int64_t now = monotonic_ms();
    if (cache.checked_ms == 0 || now - cache.checked_ms >= STORAGE_PROBE_CACHE_MS) {
        cache.why[0] = '\0';
        cache.writable = probe_now(db_path, cache.why, sizeof cache.why);
        cache.checked_ms = now;
    }
    const int writable = cache.writable;
    snprintf(why, why_len, "%s", cache.why);
    pthread_mutex_unlock(&cache.mutex);
    return writable;
}
