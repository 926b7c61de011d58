/* server — rlhfd's configuration and the state its parts share.
 *
 * Settings come from, in increasing precedence: defaults, a JSON config file
 * (--config FILE or RLHFD_CONFIG), environment variables (RLHFD_*), then
 * command-line flags. `rlhfd --help` lists them.
 */
#ifndef RLHF_SERVER_H
#define RLHF_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "db.h"

typedef struct rlhfd_config {
    char listen[128]; /* HOST:PORT; port 0 picks a free one */
    char db_path[4096];
    int64_t workers;          /* concurrent rlhf-train processes */
    int64_t threads_per_job;  /* OPENBLAS_NUM_THREADS of each worker */
    int64_t worker_nice;      /* added to each worker's nice value */
    int64_t max_body_bytes;   /* JSON bodies, held whole */
    int64_t max_upload_bytes; /* dataset uploads, streamed */
    int64_t lease_ms;         /* a worker's lease; it renews every lease/4 */
    int64_t max_attempts;     /* default for new jobs */
    int64_t db_connections;   /* request-thread connection pool */
    int64_t shutdown_grace_ms;
    int64_t sse_poll_ms;        /* how often a stream looks for new events */
    int64_t sse_heartbeat_ms;   /* comment lines that keep proxies from timing out */
    char train_bin[4096];       /* default: rlhf-train beside rlhfd */
    int64_t model_cache;        /* checkpoints kept loaded for generation (generate.h) */
    int64_t generate_slots;     /* generation worker threads (generations at once) */
    int64_t generate_queue;     /* generations waiting beyond those (then 503) */
    int64_t generate_per_token; /* queued or running per token (then 429); 0: no limit */
    int64_t read_workers;       /* worker threads of heavy reads (agreement) */
    int64_t read_queue;         /* heavy reads waiting beyond those (then 503) */
    int64_t read_per_token;     /* heavy reads queued or running per token (then 429); 0: none */
    int64_t queue_timeout_ms;   /* a queued generation or heavy read waits at most this */
    int64_t read_rate;          /* expensive reads per token and second, 0: unlimited */
    int64_t read_burst;         /* their token bucket size */
    int64_t http_threads;       /* MHD thread pool (epoll per thread) */
    /* Connection hygiene (conn_guard.h). */
    int64_t max_connections;        /* admitted at once */
    int64_t max_connections_per_ip; /* admitted at once from one address */
    int64_t spare_connections;      /* beyond those: health probes only */
    int64_t header_timeout_ms;      /* request line + headers */
    int64_t max_target_bytes;       /* the request target (longer: 414) */
    int64_t max_header_bytes;       /* the header lines (more: 431) */
    int64_t body_timeout_ms;        /* each piece of a body */
    int64_t idle_timeout_s;         /* no traffic at all (libmicrohttpd's timeout) */
    int64_t write_rate;             /* per token and second, 0: unlimited */
    int64_t write_burst;            /* token bucket size */
    char web_root[4096];          /* the built web client (static.c); default: web/ beside rlhfd */
    char hostfile[4096];          /* mpirun's hostfile for jobs with ranks > 1; "" = none */
    char mpirun[4096];            /* the mpirun program */
    char data_dir[4096];          /* the artifact store (common/artifact_store.h) */
    char model_root[8192];        /* directories models may be registered from, one a line */
    int64_t max_model_file_bytes; /* one file of a model upload */
    int64_t artifact_grace_s;     /* artifact_store_collect's grace period */
} rlhfd_config;

/* What argv asked for besides serving. */
typedef struct rlhfd_command {
    const char *create_token_name; /* --create-token NAME */
    const char *create_token_role; /* --role ROLE */
    bool help;
    bool routes; /* --routes: print the route table as JSON */
} rlhfd_command;

/* Fills cfg from defaults, file, environment and argv. Returns 0; 1 when
 * argv asked for something other than serving (create_token_name, help or
 * routes set); -1 with err on bad input. */
int rlhfd_config_load(rlhfd_config *cfg, rlhfd_command *cmd, int argc, char **argv, char *err,
                      size_t errlen);
void rlhfd_config_usage(FILE *out);

struct scheduler;
struct park;
struct writer;
struct rate_limiter;
struct token_cache;
struct series_cache;
struct conn_guard;
struct slow_pool;
struct agreement_cache;

typedef struct server {
    rlhfd_config cfg;
    db_pool pool;
    struct scheduler *scheduler;
    struct park *park;                       /* idle event streams, resumed every sse_poll_ms */
    struct writer *writer;                   /* group commit of ranking writes */
    struct rate_limiter *rate_limiter;       /* per-token write budget */
    struct rate_limiter *read_limiter;       /* per-token budget of expensive reads */
    struct slow_pool *gen_pool;              /* generation workers (generate.h) */
    struct slow_pool *read_pool;             /* heavy-read workers (agreement) */
    struct agreement_cache *agreement_cache; /* agreement per project (NULL: none) */
    struct token_cache *token_cache;         /* tokens looked up (NULL: none) */
    struct series_cache *series_cache;       /* metric series read (NULL: none) */
    struct conn_guard *conn_guard;           /* connection counts and deadlines */
    atomic_bool shutting_down;
} server;

#endif
