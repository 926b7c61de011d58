/* rlhfd — the daemon: HTTP API, job scheduler, SQLite as the system of
 * record. See docs/server.md and `rlhfd --help`. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "http.h"
#include "scheduler.h"
#include "server.h"

/* HOST:PORT (IPv4) → addr. */
static int parse_listen(const char *listen, struct sockaddr_in *addr) {
    char host[64];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return -1;
    return 0;
}

static int stop_pipe[2];

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
    struct sockaddr_in addr;
    if (cmd.create_token_name == NULL && parse_listen(srv.cfg.listen, &addr) != 0) {
        fprintf(stderr, "rlhfd: --listen must be IPV4:PORT, got '%s'\n", srv.cfg.listen);
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
    sqlite3_close(db);

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
        (srv.scheduler = scheduler_start(&srv.cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "rlhfd: %s\n", err);
        return 1;
    }
    /* Thread per connection: an event stream blocks its own thread while it
     * waits for new rows, and nothing else. */
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG,
                         0, NULL, NULL, http_handle, &srv, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, http_completed,
                         &srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "rlhfd: cannot listen on %s\n", srv.cfg.listen);
        scheduler_stop(srv.scheduler, 0);
        db_pool_free(&srv.pool);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
    printf("rlhfd: listening on http://%s:%u (db %s, workers %lld)\n", host, (unsigned)info->port,
           srv.cfg.db_path, (long long)srv.cfg.workers);
    fflush(stdout);

    unsigned char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "rlhfd: %s: shutting down\n", strsignal(sig));
    /* Stop accepting; let requests in flight finish; streams end at their
     * next poll; workers checkpoint and requeue their jobs. */
    atomic_store(&srv.shutting_down, true);
    MHD_socket listen_fd = MHD_quiesce_daemon(d);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    scheduler_stop(srv.scheduler, srv.cfg.shutdown_grace_ms);
    MHD_stop_daemon(d);
    db_pool_free(&srv.pool);
    return 0;
}
