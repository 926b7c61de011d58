#include "conn_guard.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "reply.h"

typedef struct conn_entry {
    struct conn_entry *prev, *next; /* oldest first */
    conn_guard *guard;
    int fd;
    struct sockaddr_storage addr;
    conn_admission admission;
    conn_stage stage; /* what it sends next (under the guard's lock, as below) */
    int64_t due_ms;   /* monotonic deadline; 0: none */
    bool cut;         /* answered and shut down by the guard */
    bool holds_spare; /* counted in spare_held */
} conn_entry;

struct conn_guard {
    int64_t max_connections, max_per_ip, spare, header_timeout_ms, body_timeout_ms;
    pthread_mutex_t mutex; /* the list, the counts, every cut */
    pthread_cond_t wake;
    pthread_t thread;
    bool stopping;
    conn_entry *head, *tail;
    int64_t admitted, spare_held;
};

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned conn_guard_mhd_limit(const rlhfd_config *cfg) {
    /* libmicrohttpd splits its limit among the pool's threads and drops
     * (silently) what a full thread accepts: twice what the guard holds,
     * plus room for connections being cut, keeps every thread's share
     * above what any one thread holds in practice. */
    return (unsigned)((cfg->max_connections + cfg->spare_connections) * 2 + 64);
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

/* Answers e with a JSON error written to its socket and shuts the socket
 * down; libmicrohttpd then reads the end and closes it. Lock held. */
static void entry_cut(conn_entry *e, unsigned status, const char *reason, const char *code,
                      const char *message, int64_t retry_after) {
    char text[1024];
    int n = http_error_response_text(text, sizeof text, status, reason, code, message, retry_after);
    if (n > 0) {
        ssize_t sent = send(e->fd, text, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)sent; /* best effort: the client may be gone or not reading */
    }
    shutdown(e->fd, SHUT_RDWR);
    e->cut = true;
    e->due_ms = 0;
}

static void entry_set_deadline(conn_entry *e, conn_stage stage) {
    const conn_guard *g = e->guard;
    e->stage = stage;
    int64_t timeout = stage == CONN_STAGE_HEADERS ? g->header_timeout_ms
                      : stage == CONN_STAGE_BODY  ? g->body_timeout_ms
                                                  : 0;
    e->due_ms = timeout > 0 ? monotonic_ms() + timeout : 0;
}

/* Lock held: counts e in, deciding its admission; pushes out the oldest
 * spare connection still sending headers when the spare room is full. */
static void entry_admit(conn_guard *g, conn_entry *e) {
    int64_t from_address = 0;
    for (const conn_entry *o = g->head; o != NULL; o = o->next)
        if (o->admission == CONN_ADMISSION_ADMITTED && same_address(&o->addr, &e->addr))
            from_address++;
    if (from_address >= g->max_per_ip)
        e->admission = CONN_ADMISSION_OVER_IP;
    else if (g->admitted >= g->max_connections)
        e->admission = CONN_ADMISSION_OVER_TOTAL;
    else
        e->admission = CONN_ADMISSION_ADMITTED;
    if (e->admission == CONN_ADMISSION_ADMITTED) {
        g->admitted++;
    } else if (g->spare_held < g->spare) {
        g->spare_held++, e->holds_spare = true;
    } else {
        conn_entry *oldest = g->head;
        while (oldest != NULL && (oldest->admission == CONN_ADMISSION_ADMITTED || oldest->cut ||
                                  oldest->stage != CONN_STAGE_HEADERS))
            oldest = oldest->next;
        conn_entry *victim = oldest != NULL ? oldest : e;
        entry_cut(victim, 503, "Service Unavailable", "too_many_connections",
                  "the server holds as many connections as it may; retry shortly",
                  CONN_GUARD_RETRY_AFTER_S);
        if (victim != e) /* e takes the room victim leaves (counted until it closes) */
            g->spare_held++, e->holds_spare = true;
    }
    e->prev = g->tail;
    if (g->tail != NULL)
        g->tail->next = e;
    else
        g->head = e;
    g->tail = e;
}

/* Lock held. */
static void entry_remove(conn_guard *g, conn_entry *e) {
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        g->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        g->tail = e->prev;
    if (e->admission == CONN_ADMISSION_ADMITTED)
        g->admitted--;
    else if (e->holds_spare)
        g->spare_held--;
}

void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
    conn_guard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_entry *e = *socket_context;
        if (e == NULL)
            return;
        pthread_mutex_lock(&g->mutex);
        entry_remove(g, e);
        pthread_mutex_unlock(&g->mutex);
        free(e);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *addr =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    conn_entry *e = calloc(1, sizeof *e);
    if (e == NULL || fd == NULL) {
        free(e); /* unguarded: libmicrohttpd's own limits and idle timeout still hold */
        return;
    }
    e->guard = g;
    e->fd = fd->connect_fd;
    if (addr != NULL && addr->client_addr != NULL)
        memcpy(&e->addr, addr->client_addr,
               addr->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                        : sizeof(struct sockaddr_in));
    entry_set_deadline(e, CONN_STAGE_HEADERS);
    pthread_mutex_lock(&g->mutex);
    entry_admit(g, e);
    pthread_mutex_unlock(&g->mutex);
    *socket_context = e;
}

static conn_entry *entry_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

conn_admission conn_guard_admission(struct MHD_Connection *conn) {
    const conn_entry *e = entry_of(conn);
    return e != NULL ? e->admission : CONN_ADMISSION_ADMITTED;
}

void conn_guard_expect(struct MHD_Connection *conn, conn_stage stage) {
    conn_entry *e = entry_of(conn);
    if (e == NULL)
        return;
    /* under the lock: once a reply is expected the watchdog, which holds it
     * while it looks, can no longer write a 408 beside libmicrohttpd's reply */
    pthread_mutex_lock(&e->guard->mutex);
    entry_set_deadline(e, stage);
    pthread_mutex_unlock(&e->guard->mutex);
}

/* ---- the watchdog --------------------------------------------------------- */

static void *watchdog(void *arg) {
    conn_guard *g = arg;
    int64_t shortest =
        g->header_timeout_ms < g->body_timeout_ms ? g->header_timeout_ms : g->body_timeout_ms;
    int64_t tick_ms = shortest / 10 < 10 ? 10 : shortest / 10 > 250 ? 250 : shortest / 10;
    pthread_mutex_lock(&g->mutex);
    while (!g->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(tick_ms % 1000) * 1000000;
        until.tv_sec += tick_ms / 1000 + until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&g->wake, &g->mutex, &until);
        const int64_t now = monotonic_ms();
        for (conn_entry *e = g->head; e != NULL; e = e->next) {
            int64_t due = e->due_ms;
            if (e->cut || due == 0 || now < due)
                continue;
            char message[160];
            if (e->stage == CONN_STAGE_BODY)
                snprintf(message, sizeof message,
                         "no part of the request body arrived within %lld ms",
                         (long long)g->body_timeout_ms);
            else
                snprintf(message, sizeof message,
                         "the request line and headers did not arrive within %lld ms",
                         (long long)g->header_timeout_ms);
            entry_cut(e, 408, "Request Timeout", "request_timeout", message, 0);
        }
    }
    pthread_mutex_unlock(&g->mutex);
    return NULL;
}

conn_guard *conn_guard_start(const rlhfd_config *cfg, char *err, size_t errlen) {
    conn_guard *g = calloc(1, sizeof *g);
    if (g == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->max_connections = cfg->max_connections;
    g->max_per_ip = cfg->max_connections_per_ip;
    g->spare = cfg->spare_connections;
    g->header_timeout_ms = cfg->header_timeout_ms;
    g->body_timeout_ms = cfg->body_timeout_ms;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&g->mutex, NULL);
    if (pthread_create(&g->thread, NULL, watchdog, g) != 0) {
        snprintf(err, errlen, "cannot start the connection watchdog");
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->mutex);
        free(g);
        return NULL;
    }
    return g;
}

void conn_guard_stop(conn_guard *g) {
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mutex);
    g->stopping = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->mutex);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->mutex);
    free(g);
}
