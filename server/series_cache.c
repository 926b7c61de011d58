#include "series_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_text.h"
#include "metrics_page.h"

#define SERIES_SLOTS 64
#define WAL_HDR      48 /* one copy of the WAL-index header */

typedef struct series_slot {
    bool used, cacheable, final;
    int64_t epoch;     /* jobs.metrics_epoch of the snapshot its rows are from */
    uint64_t inserted; /* order, for eviction */
    metrics_series s;  /* not cacheable: no rows, just the job and name */
    bool tagged;       /* the database has not changed while tag is its WAL header */
    unsigned char tag[WAL_HDR];
} series_slot;

struct series_cache {
    pthread_rwlock_t lock;
    size_t max, bytes;
    uint64_t inserted;
    series_slot slots[SERIES_SLOTS];
    pthread_mutex_t shm_mutex;
    int shm_fd; /* the database's -shm file: -2 not opened yet, -1 none */
};

series_cache *series_cache_new(size_t max_bytes) {
    series_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_rwlock_init(&c->lock, NULL);
    pthread_mutex_init(&c->shm_mutex, NULL);
    c->max = max_bytes;
    c->shm_fd = -2;
    return c;
}

void series_cache_free(series_cache *c) {
    if (c == NULL)
        return;
    for (int i = 0; i < SERIES_SLOTS; i++)
        metrics_series_free(&c->slots[i].s);
    if (c->shm_fd >= 0)
        close(c->shm_fd);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->shm_mutex);
    free(c);
}

static series_slot *series_find(series_cache *c, int64_t job_id, const char *name) {
    for (int i = 0; i < SERIES_SLOTS; i++)
        if (c->slots[i].used && c->slots[i].s.job_id == job_id &&
            strcmp(c->slots[i].s.name, name) == 0)
            return &c->slots[i];
    return NULL;
}

static void slot_drop(series_cache *c, series_slot *x) {
    c->bytes -= x->s.bytes;
    metrics_series_free(&x->s);
    x->used = false;
}

/* Evicts the oldest slots other than keep while over the budget. */
static void series_fit(series_cache *c, const series_slot *keep) {
    while (c->bytes > c->max) {
        series_slot *oldest = NULL;
        for (int i = 0; i < SERIES_SLOTS; i++) {
            series_slot *x = &c->slots[i];
            if (x->used && x != keep && (oldest == NULL || x->inserted < oldest->inserted))
                oldest = x;
        }
        if (oldest == NULL)
            return;
        slot_drop(c, oldest);
    }
}

/* s keeps its job and name and loses its rows (not cacheable). */
static void series_strip(metrics_series *s) {
    metrics_series bare = {.job_id = s->job_id, .name = s->name};
    s->name = NULL;
    metrics_series_free(s);
    *s = bare;
    s->bytes = sizeof *s + strlen(s->name) + 1;
}

/* Stores x (taken) in slot, or in a free one when slot is NULL; within the
 * budget. Returns the slot. */
static series_slot *series_store(series_cache *c, series_slot *slot, metrics_series *x,
                                 bool cacheable, bool final, int64_t epoch) {
    if (cacheable && x->bytes > c->max / 4) /* one series may not take it all */
        cacheable = false;
    if (!cacheable)
        series_strip(x);
    if (slot != NULL) {
        slot_drop(c, slot);
    } else {
        for (int i = 0; i < SERIES_SLOTS && slot == NULL; i++)
            if (!c->slots[i].used)
                slot = &c->slots[i];
        if (slot == NULL) { /* all used: the oldest goes */
            slot = &c->slots[0];
            for (int i = 1; i < SERIES_SLOTS; i++)
                if (c->slots[i].inserted < slot->inserted)
                    slot = &c->slots[i];
            slot_drop(c, slot);
        }
    }
    *slot = (series_slot){true, cacheable, final, epoch, ++c->inserted, *x, false, {0}};
    c->bytes += x->bytes;
    memset(x, 0, sizeof *x);
    series_fit(c, slot);
    return slot;
}

/* slot's rows are now (at least as new as) what the database held when
 * hdr was its WAL header (NULL: unknown). Every change to a slot's rows
 * sets this. */
static void slot_tag(series_slot *slot, const unsigned char *hdr) {
    slot->tagged = hdr != NULL;
    if (hdr != NULL)
        memcpy(slot->tag, hdr, WAL_HDR);
}

static bool status_final(const char *status) {
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

/* The current WAL-index header of db's database into hdr: true, or false
 * when it cannot be known now (then the caller reads the database). See
 * series_cache.h for why an unchanged header means an unchanged database. */
static bool wal_header(series_cache *c, sqlite3 *db, unsigned char *hdr) {
    int fd = __atomic_load_n(&c->shm_fd, __ATOMIC_ACQUIRE);
    if (fd == -2) { /* opened once (again if it is not there yet) */
        pthread_mutex_lock(&c->shm_mutex);
        if ((fd = c->shm_fd) == -2) {
            const char *path = sqlite3_db_filename(db, "main");
            char shm[4096];
            fd = -1;
            if (path != NULL && path[0] != '\0' &&
                (size_t)snprintf(shm, sizeof shm, "%s-shm", path) < sizeof shm &&
                (fd = open(shm, O_RDONLY | O_CLOEXEC)) < 0 && errno == ENOENT)
                fd = -2; /* not created yet: try again next time */
            __atomic_store_n(&c->shm_fd, fd, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&c->shm_mutex);
    }
    /* Two copies, as SQLite's readers check them: a writer updates the
     * second, then the first; a read that overlaps it sees them differ. */
    unsigned char both[2 * WAL_HDR];
    if (fd < 0 || pread(fd, both, sizeof both, 0) != (ssize_t)sizeof both)
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_nlink == 0) {
        /* Unlinked: the last connection closed and deleted it, and SQLite
         * makes a new one. It cannot happen while rlhfd's pool is open, only
         * in a race at its start; the old descriptor is left open (another
         * thread may be reading it) and the path opened again. */
        int expected = fd;
        __atomic_compare_exchange_n(&c->shm_fd, &expected, -2, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
        return false;
    }
    if (memcmp(both, both + WAL_HDR, WAL_HDR) != 0)
        return false;
    uint32_t version;
    memcpy(&version, both, sizeof version);
    if (version != 3007000 || both[12] != 1) /* iVersion, isInit: the format we know */
        return false;
    memcpy(hdr, both, WAL_HDR);
    return true;
}

static int slot_page(const series_slot *slot, int64_t after_step, int64_t limit, char **out,
                     size_t *len) {
    return metrics_series_page(&slot->s, after_step, limit, out, len) == 0 ? 1 : -1;
}

/* The series was read whole, at epoch, from one snapshot: the reply comes
 * from it (it is that snapshot's answer), and it replaces the slot unless
 * the slot is at least as new. */
static int serve_whole(series_cache *c, metrics_series *whole, const char *name, int fetched,
                       bool final, int64_t epoch, const unsigned char *hdr, int64_t after_step,
                       int64_t limit, char **out, size_t *len) {
    bool cacheable = fetched == 1;
    int rc =
        cacheable ? (metrics_series_page(whole, after_step, limit, out, len) == 0 ? 1 : -1) : 0;
    if ((whole->name = strdup(name)) == NULL) {
        metrics_series_free(whole);
        return rc;
    }
    pthread_rwlock_wrlock(&c->lock);
    series_slot *slot = series_find(c, whole->job_id, name);
    /* At one epoch a series only grows, and a value that is not finite
     * stays: more rows is newer, and not cacheable is final for the epoch. */
    bool newer = slot == NULL || epoch > slot->epoch ||
                 (epoch == slot->epoch && slot->cacheable && (!cacheable || whole->n > slot->s.n));
    if (newer) {
        slot = series_store(c, slot, whole, cacheable, final, epoch);
    } else {
        if (final && epoch == slot->epoch) /* the same rows, seen finished */
            slot->final = true;
        metrics_series_free(whole);
    }
    slot_tag(slot, hdr); /* kept: the slot is at least as new as what was read */
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

int series_cache_serve(series_cache *c, sqlite3 *db, int64_t job_id, const char *name,
                       int64_t after_step, int64_t limit, char **out, size_t *len) {
    if (c->max == 0 || !json_plain_string(name, strlen(name)))
        return 0;
    /* 1. What the cache holds. A final series needs nothing else, nor one
     * whose database has not changed since it was last brought up to date:
     * the WAL header now (read before anything else is read) is its tag. */
    pthread_rwlock_rdlock(&c->lock);
    series_slot *slot = series_find(c, job_id, name);
    unsigned char hdr_now[WAL_HDR];
    const unsigned char *hdr = NULL;
    if (slot == NULL || !slot->final)
        hdr = wal_header(c, db, hdr_now) ? hdr_now : NULL;
    if (slot != NULL &&
        (slot->final || (hdr != NULL && slot->tagged && memcmp(slot->tag, hdr, WAL_HDR) == 0))) {
        int rc = slot->cacheable ? slot_page(slot, after_step, limit, out, len) : 0;
        pthread_rwlock_unlock(&c->lock);
        return rc;
    }
    const bool have = slot != NULL, cacheable = have && slot->cacheable;
    const int64_t epoch = have ? slot->epoch : 0;
    const size_t have_n = cacheable ? slot->s.n : 0;
    const int64_t last = have_n > 0 ? slot->s.steps[have_n - 1] : 0;
    pthread_rwlock_unlock(&c->lock);

    /* 2. The job's status and epoch, and the rows after the cached last
     * step, from one snapshot (a series known not cacheable: none). */
    metrics_series tail;
    char status[16];
    int64_t now;
    const bool all = !have || (cacheable && have_n == 0);
    int fetched = metrics_series_fetch(db, job_id, name, all, cacheable ? last : INT64_MAX, &tail,
                                       status, &now);
    if (fetched <= 0)
        return 0; /* no such job, or an error: the uncached path answers */
    bool final = status_final(status);
    if (!have || (all && now != epoch))
        return serve_whole(c, &tail, name, fetched, final, now, hdr, after_step, limit, out, len);
    if (now != epoch) { /* something was rewritten: read it all again, in a snapshot of its own */
        metrics_series_free(&tail);
        fetched = metrics_series_fetch(db, job_id, name, true, 0, &tail, status, &now);
        if (fetched <= 0)
            return 0;
        final = status_final(status);
        return serve_whole(c, &tail, name, fetched, final, now, hdr, after_step, limit, out, len);
    }

    /* 3. The same epoch: since the cached rows were read, the series only
     * grew at its end, and tail is that growth. */
    int rc = 0;
    if (fetched == 1 && tail.n == 0 && !final) { /* nothing new */
        if (hdr != NULL)                         /* to tag it */
            pthread_rwlock_wrlock(&c->lock);
        else
            pthread_rwlock_rdlock(&c->lock);
        slot = series_find(c, job_id, name);
        if (slot != NULL && slot->cacheable && slot->epoch >= now &&
            (slot->epoch > now || slot->s.n >= have_n)) {
            rc = slot_page(slot, after_step, limit, out, len);
            if (hdr != NULL)
                slot_tag(slot, hdr);
        }
        pthread_rwlock_unlock(&c->lock);
        metrics_series_free(&tail);
        return rc;
    }
    pthread_rwlock_wrlock(&c->lock);
    slot = series_find(c, job_id, name);
    if (slot != NULL && slot->epoch == now && !slot->cacheable) {
        slot->final = slot->final || final; /* stays not cacheable at this epoch */
        slot_tag(slot, hdr);
    } else if (slot != NULL && slot->epoch == now && slot->cacheable && slot->s.n >= have_n &&
               (have_n == 0 || slot->s.steps[have_n - 1] == last)) {
        /* the slot holds every row up to last (perhaps more): append the rest */
        if (fetched == 2) { /* a value that is not finite after the slot's rows */
            c->bytes -= slot->s.bytes;
            series_strip(&slot->s);
            c->bytes += slot->s.bytes;
            slot->cacheable = false;
            slot->final = slot->final || final;
            slot_tag(slot, hdr);
        } else {
            size_t before = slot->s.bytes;
            if (metrics_series_append(&slot->s, &tail) == 0) {
                c->bytes += slot->s.bytes - before;
                slot->final = slot->final || final;
                slot_tag(slot, hdr);
                rc = slot_page(slot, after_step, limit, out, len);
                if (slot->s.bytes > c->max / 4) {
                    c->bytes -= slot->s.bytes;
                    series_strip(&slot->s);
                    c->bytes += slot->s.bytes;
                    slot->cacheable = false;
                }
                series_fit(c, slot);
            } else {
                slot_drop(c, slot);
            }
        }
    } else if (slot != NULL && slot->cacheable && slot->epoch > now) {
        rc = slot_page(slot, after_step, limit, out, len); /* a newer snapshot's */
    } /* else: evicted or replaced meanwhile; the uncached path answers */
    pthread_rwlock_unlock(&c->lock);
    metrics_series_free(&tail);
    return rc;
}
