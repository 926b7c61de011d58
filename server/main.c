/* rlhfd — the daemon: HTTP API, job scheduler, SQLite as the system of
 * record. See docs/server.md and `rlhfd --help`. */
#include <arpa/inet.h>
#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agreement_cache.h"
#include "artifact_store.h"
#include "auth.h"
#include "conn_guard.h"
#include "http.h"
#include "mhd_errors.h"
#include "park.h"
#include "ratelimit.h"
#include "scheduler.h"
#include "series_cache.h"
#include "server.h"
#include "slow_pool.h"
#include "token_cache.h"
#include "writer.h"

/* The generate pool and the heavy-read pool (server/slow_pool.h). The
 * environment's RLHFD_TEST_SLOW_GATE names a FIFO the workers of both read
 * one byte from before each task: a test hook that holds generations and
 * heavy reads running while a test looks (tests/api/test_slow_reads.c). */
static int start_slow_pools(server *srv, char *err, size_t errlen) {
    const char *gate = getenv("RLHFD_TEST_SLOW_GATE");
    int gate_fd = -1;
    if (gate != NULL && (gate_fd = open(gate, O_RDWR | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "RLHFD_TEST_SLOW_GATE %s: %s", gate, strerror(errno));
        return -1;
    }
    const slow_pool_config gen = {"generate",
                                  (int)srv->cfg.generate_slots,
                                  (int)srv->cfg.generate_queue,
                                  (int)srv->cfg.generate_per_token,
                                  srv->cfg.queue_timeout_ms,
                                  gate_fd};
    const slow_pool_config read = {"heavy-read",
                                   (int)srv->cfg.read_workers,
                                   (int)srv->cfg.read_queue,
                                   (int)srv->cfg.read_per_token,
                                   srv->cfg.queue_timeout_ms,
                                   gate_fd};
    if ((srv->gen_pool = slow_pool_start(&gen, err, errlen)) == NULL ||
        (srv->read_pool = slow_pool_start(&read, err, errlen)) == NULL)
        return -1;
    return 0;
}

/* IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT → addr. A name is resolved once,
 * at start (getaddrinfo); of its addresses the first IPv4 one is taken
 * (so "localhost" means 127.0.0.1 where it also means ::1), else the first
 * IPv6 one. 0, or -1 with err. */
static int parse_listen(const char *listen, struct sockaddr_storage *addr, char *err,
                        size_t errlen) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    snprintf(err, errlen, "--listen must be IPV4:PORT, [IPV6]:PORT or HOSTNAME:PORT, got '%s'",
             listen);
    if (colon == NULL || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memset(addr, 0, sizeof *addr);
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
        host[n - 1] = '\0';
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1)
        return 0;
    if (strchr(host, ':') != NULL)
        return -1; /* an IPv6 literal needs its brackets */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &found);
    if (rc != 0) {
        snprintf(err, errlen, "--listen: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = found;
         ai != NULL && (pick == NULL || pick->ai_family != AF_INET); ai = ai->ai_next)
        if ((ai->ai_family == AF_INET || (ai->ai_family == AF_INET6 && pick == NULL)) &&
            ai->ai_addrlen <= sizeof *addr)
            pick = ai;
    if (pick != NULL) {
        memcpy(addr, pick->ai_addr, pick->ai_addrlen);
        if (pick->ai_family == AF_INET)
            ((struct sockaddr_in *)addr)->sin_port = htons((uint16_t)port);
        else
            ((struct sockaddr_in6 *)addr)->sin6_port = htons((uint16_t)port);
    } else
        snprintf(err, errlen, "--listen: '%s' has no IPv4 or IPv6 address", host);
    freeaddrinfo(found);
    return pick != NULL ? 0 : -1;
}

/* Every connection is a file descriptor: the soft limit (often 1024) is
 * raised toward the hard one so that the connection limits, not EMFILE,
 * decide; a warning if even the hard limit is too low. */
static void raise_open_files(unsigned connections) {
    struct rlimit lim;
    const rlim_t wanted = (rlim_t)connections + 256; /* + database, pipes, workers */
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= wanted)
        return;
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= wanted ? wanted : lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur < wanted)
        fprintf(stderr,
                "rlhfd: warning: at most %llu open files; --max-connections and "
                "--spare-connections want %llu\n",
                (unsigned long long)lim.rlim_cur, (unsigned long long)wanted);
}

static int stop_pipe[2];

/* libmicrohttpd's accept policy: every connection while serving, none once
 * shutdown has begun (the connection is closed as soon as it is accepted). */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr, (void)addrlen;
    return atomic_load(&((server *)cls)->shutting_down) ? MHD_NO : MHD_YES;
}

static void on_stop_signal(int sig) {
    unsigned char byte = (unsigned char)sig;
    ssize_t n = write(stop_pipe[1], &byte, 1);
    (void)n;
}

static int create_token(sqlite3 *db, const rlhfd_command *cmd) {
    auth_role role = auth_role_parse(cmd->create_token_role);
    if (role == AUTH_ROLE_NONE) {
        fprintf(stderr, "rlhfd: --create-token needs --role admin|annotator|viewer\n");
        return 2;
    }
    char token[AUTH_TOKEN_BYTES], err[256];
    int64_t id = auth_token_create(db, cmd->create_token_name, role, token, err, sizeof err);
    if (id <= 0) {
        fprintf(stderr, "rlhfd: cannot create token '%s': %s\n", cmd->create_token_name,
                id == 0 ? "the name is taken" : err);
        return 1;
    }
    /* The only time the secret is shown. */
    printf("%s\n", token);
    return 0;
}

/* rlhfd --routes: the route table as a JSON array of {method, path, roles}
 * (roles: the role names that may call it, [] for no token), for
 * tests/api/test_docs.c (docs/api.md against the table) and scripts. */
static int print_routes(void) {
    json_t *routes = json_array();
    for (size_t i = 0; i < http_route_count(); i++) {
        const char *method, *pattern;
        http_route_at(i, &method, &pattern);
        json_t *roles = json_array();
        const auth_role all[] = {AUTH_ROLE_ADMIN, AUTH_ROLE_ANNOTATOR, AUTH_ROLE_VIEWER};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            if (http_route_roles(i) & all[j])
                json_array_append_new(roles, json_string(auth_role_name(all[j])));
        json_array_append_new(routes, json_pack("{s:s, s:s, s:o}", "method", method, "path",
                                                pattern, "roles", roles));
    }
    int rc = json_dumpf(routes, stdout, JSON_INDENT(1)) == 0 && puts("") >= 0 ? 0 : 1;
    json_decref(routes);
    return rc;
}

int main(int argc, char **argv) {
    static server srv;
    rlhfd_command cmd;
    char err[512];
    int rc = rlhfd_config_load(&srv.cfg, &cmd, argc, argv, err, sizeof err);
    if (rc < 0 || cmd.help) {
        if (rc < 0)
            fprintf(stderr, "rlhfd: %s\n", err);
        rlhfd_config_usage(rc < 0 ? stderr : stdout);
        return rc < 0 ? 2 : 0;
    }
    if (cmd.routes)
        return print_routes();
    struct sockaddr_storage addr;
    if (cmd.create_token_name == NULL &&
        parse_listen(srv.cfg.listen, &addr, err, sizeof err) != 0) {
        fprintf(stderr, "rlhfd: %s\n", err);
        return 2;
    }
    sqlite3 *db = NULL;
    if (db_open(srv.cfg.db_path, &db, err, sizeof err) != 0 ||
        db_migrate(db, err, sizeof err) != 0) {
        fprintf(stderr, "rlhfd: %s\n", err);
        sqlite3_close(db);
        return 1;
    }
    if (cmd.create_token_name != NULL) {
        rc = create_token(db, &cmd);
        sqlite3_close(db);
        return rc;
    }
    /* The artifact store: what a crash left unreferenced goes now (and
     * periodically, scheduler.c). */
    int64_t collected = artifact_store_init(srv.cfg.data_dir, err, sizeof err) == 0
                            ? artifact_store_collect(db, srv.cfg.data_dir, srv.cfg.artifact_grace_s,
                                                     err, sizeof err)
                            : -1;
    sqlite3_close(db);
    if (collected < 0) {
        fprintf(stderr, "rlhfd: %s\n", err);
        return 1;
    }

    /* SIGTERM/SIGINT only write a byte to a pipe that main reads: a
     * handler, not a blocked mask plus sigwait, because libraries (OpenBLAS)
     * start threads before main could block anything, and a signal delivered
     * to one of those would kill the process with the default action. */
    struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
    if (pipe2(stop_pipe, O_CLOEXEC) != 0 || sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGINT, &sa, NULL) != 0) {
        fprintf(stderr, "rlhfd: cannot set up signal handling\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    if (db_pool_init(&srv.pool, srv.cfg.db_path, (int)srv.cfg.db_connections, err, sizeof err) !=
            0 ||
        (srv.park = park_start(srv.cfg.sse_poll_ms, err, sizeof err)) == NULL ||
        (srv.writer = writer_start(srv.cfg.db_path, err, sizeof err)) == NULL ||
        (srv.rate_limiter = rate_limiter_new(srv.cfg.write_rate, srv.cfg.write_burst)) == NULL ||
        (srv.read_limiter = rate_limiter_new(srv.cfg.read_rate, srv.cfg.read_burst)) == NULL ||
        start_slow_pools(&srv, err, sizeof err) != 0 ||
        (srv.agreement_cache = agreement_cache_new(AGREEMENT_CACHE_PROJECTS)) == NULL ||
        (srv.token_cache = token_cache_new()) == NULL ||
        (srv.series_cache = series_cache_new(SERIES_CACHE_BYTES)) == NULL ||
        (srv.conn_guard = conn_guard_start(&srv.cfg, err, sizeof err)) == NULL ||
        (srv.scheduler = scheduler_start(&srv.cfg, err, sizeof err)) == NULL) {
        bool out_of_memory =
            srv.writer &&
            (!srv.rate_limiter || !srv.read_limiter ||
             (srv.read_pool && (!srv.agreement_cache || !srv.token_cache || !srv.series_cache)));
        conn_guard_stop(srv.conn_guard);
        fprintf(stderr, "rlhfd: %s\n", out_of_memory ? "out of memory" : err);
        return 1;
    }
    /* A thread pool, each thread with its own epoll set, keep-alive
     * (HTTP/1.1 default). No callback blocks for long: an idle event stream
     * parks its connection (server/park.h), a ranking write waits for its
     * group commit suspended (server/writer.h), a generation or a heavy read
     * waits for its worker suspended (server/defer_slow.h); other handlers
     * do short SQLite work on pooled connections. */
    const bool ipv6 = addr.ss_family == AF_INET6;
    const unsigned connection_limit = conn_guard_mhd_limit(&srv.cfg);
    /* libmicrohttpd answers what it refuses itself (a malformed request, a
     * head that outgrows its per-connection memory); mhd_errors.c turns
     * those answers into the JSON error shape. */
    char mhd_err[256];
    if (mhd_errors_install(mhd_err, sizeof mhd_err) != 0)
        fprintf(stderr, "rlhfd: warning: %s; libmicrohttpd's own errors stay HTML\n", mhd_err);
    const size_t mhd_memory = http_mhd_memory_limit(&srv.cfg);
    raise_open_files(connection_limit);
    /* Connections are counted and given deadlines by the guard
     * (server/conn_guard.h), which answers what is over the limits itself;
     * libmicrohttpd's own limit is only a backstop above it, and its timeout
     * closes connections with no traffic at all. A request begins in
     * http_request_start, which sees the raw request target. */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
            (ipv6 ? MHD_USE_IPv6 : 0),
        0, accept_policy, &srv, http_handle, &srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)srv.cfg.http_threads,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, &srv, MHD_OPTION_URI_LOG_CALLBACK,
        http_request_start, &srv, MHD_OPTION_NOTIFY_CONNECTION, conn_guard_notify, srv.conn_guard,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        mhd_memory, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)srv.cfg.idle_timeout_s,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "rlhfd: cannot listen on %s\n", srv.cfg.listen);
        scheduler_stop(srv.scheduler, 0);
        conn_guard_stop(srv.conn_guard);
        park_stop(srv.park);
        slow_pool_stop(srv.gen_pool);
        slow_pool_stop(srv.read_pool);
        writer_stop(srv.writer);
        writer_free(srv.writer);
        db_pool_free(&srv.pool);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET6_ADDRSTRLEN];
    if (ipv6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    printf("rlhfd: listening on http://%s%s%s:%u (db %s, workers %lld)\n", ipv6 ? "[" : "", host,
           ipv6 ? "]" : "", (unsigned)info->port, srv.cfg.db_path, (long long)srv.cfg.workers);
    fflush(stdout);

    unsigned char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "rlhfd: %s: shutting down\n", strsignal(sig));
    /* Stop accepting; let requests in flight finish; streams end at their
     * next poll; workers checkpoint and requeue their jobs. */
    atomic_store(&srv.shutting_down, true);
    /* From here accept_policy closes every new connection at once. Not
     * MHD_quiesce_daemon: with a thread pool on epoll, 0.9.75's quiesce
     * races the pool's own removal of the listen socket and panics ("Failed
     * to remove listen FD from epoll set", seen under load in job_stream). */
    park_stop(srv.park); /* every parked stream resumes and ends */
    scheduler_stop(srv.scheduler, srv.cfg.shutdown_grace_ms);
    /* Running generations and heavy reads finish, queued ones get 503, and
     * queued writes commit; their connections resume; later ones get 503.
     * Nothing is left suspended when MHD stops. */
    slow_pool_stop(srv.gen_pool);
    slow_pool_stop(srv.read_pool);
    writer_stop(srv.writer);
    MHD_stop_daemon(d);
    conn_guard_stop(srv.conn_guard);
    writer_free(srv.writer);
    rate_limiter_free(srv.rate_limiter);
    rate_limiter_free(srv.read_limiter);
    slow_pool_free(srv.gen_pool);
    slow_pool_free(srv.read_pool);
    agreement_cache_free(srv.agreement_cache);
    token_cache_free(srv.token_cache);
    series_cache_free(srv.series_cache);
    db_pool_free(&srv.pool);
    return 0;
}
