/* rlhfd's settings: one table, read from a JSON file, the environment and
 * the command line, in that order (later wins). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_store.h"
#include "server.h"

typedef struct option_def {
    const char *name; /* --name; RLHFD_NAME; "name" in the file ('-' → '_') */
    bool is_int;
    size_t offset;
    size_t bytes; /* strings: the buffer */
    int64_t dflt, min, max;
    const char *dflt_text;
    const char *doc;
    bool list; /* repeatable: each value is added on its own line */
} option_def;

#define STR(field, dflt, doc)                                                                      \
    {                                                                                              \
#field, false, offsetof(rlhfd_config, field), sizeof(((rlhfd_config *)0)->field), 0, 0, 0, \
            dflt, doc, false                                                                       \
    }
#define LIST(field, doc)                                                                           \
    {                                                                                              \
#field, false, offsetof(rlhfd_config, field), sizeof(((rlhfd_config *)0)->field), 0, 0, 0, \
            "", doc, true                                                                          \
    }
#define INT(field, dflt, lo, hi, doc)                                                              \
    { #field, true, offsetof(rlhfd_config, field), 0, dflt, lo, hi, NULL, doc, false }

static const option_def options[] = {
    STR(listen, "127.0.0.1:8080",
        "IPV4:PORT, [IPV6]:PORT or HOST:PORT to serve on (port 0: any free port)"),
    STR(db_path, "rlhfd.db", "the SQLite database file (created if missing)"),
    INT(workers, 2, 1, 256, "at most this many rlhf-train processes at once"),
    INT(threads_per_job, 1, 1, 256, "OpenBLAS threads of each rlhf-train process"),
    INT(worker_nice, 10, 0, 19,
        "added to rlhf-train processes' nice value: training yields the CPU to requests"),
    INT(max_body_bytes, 1 << 20, 1024, (int64_t)1 << 34, "largest accepted JSON request body"),
    INT(max_upload_bytes, (int64_t)1 << 30, 1024, (int64_t)1 << 40,
        "largest accepted dataset upload (streamed, never held whole)"),
    INT(lease_ms, 30000, 200, 3600000, "a worker's lease; renewed every lease/4"),
    INT(max_attempts, 3, 1, 100, "default attempts per job before it fails"),
    INT(db_connections, 8, 1, 256, "database connections shared by request threads"),
    INT(shutdown_grace_ms, 30000, 0, 3600000, "on SIGTERM, how long workers get to stop"),
    INT(sse_poll_ms, 250, 10, 10000, "how often an event stream looks for new events"),
    INT(sse_heartbeat_ms, 15000, 100, 600000, "keep-alive comment interval on idle streams"),
    STR(train_bin, "", "the rlhf-train program (default: beside rlhfd)"),
    INT(model_cache, 2, 0, 64, "checkpoints kept loaded for /generate (least recently used out)"),
    INT(generate_slots, 2, 1, 64, "generation worker threads: generations that run at once"),
    INT(generate_queue, 16, 0, 4096, "generations that may wait for a worker (more: 503)"),
    INT(generate_per_token, 4, 0, 4096,
        "generations one token may have queued or running (more: 429; 0: no limit)"),
    INT(read_workers, 2, 1, 64, "worker threads of heavy reads (agreement)"),
    INT(read_queue, 32, 0, 4096, "heavy reads that may wait for a worker (more: 503)"),
    INT(read_per_token, 8, 0, 4096,
        "heavy reads one token may have queued or running (more: 429; 0: no limit)"),
    INT(queue_timeout_ms, 30000, 10, 3600000,
        "a queued generation or heavy read that waited this long gets 503"),
    INT(read_rate, 20, 0, 1000000,
        "expensive reads per second per token (generate, agreement, exports, metric pages; "
        "0: unlimited)"),
    INT(read_burst, 60, 1, 1000000, "expensive reads a token may send at once"),
    INT(http_threads, 4, 1, 256, "HTTP thread pool (epoll, keep-alive); streams do not hold one"),
    INT(max_connections, 1000, 1, 100000,
        "connections served at once; beyond them only /healthz and /readyz are answered "
        "(others get 503 with Retry-After)"),
    INT(max_connections_per_ip, 64, 1, 100000,
        "connections served at once from one client address (beyond: 429 with Retry-After)"),
    INT(spare_connections, 32, 1, 10000,
        "connections held beyond those limits for health probes and 503/429 answers"),
    INT(header_timeout_ms, 10000, 100, 600000,
        "time to send a request line and headers (from connect or the previous reply)"),
    INT(max_target_bytes, 8192, 256, 1 << 20,
        "longest request target (path and query); longer gets 414 in the JSON error shape"),
    INT(max_header_bytes, 32768, 1024, 1 << 20,
        "most bytes of header lines in a request; more gets 431 in the JSON error shape"),
    INT(body_timeout_ms, 30000, 100, 3600000, "time to send each piece of a request body"),
    INT(idle_timeout_s, 60, 1, 86400, "a connection with no traffic at all is closed"),
    INT(write_rate, 100, 0, 1000000, "writes per second per token (POST/DELETE; 0: unlimited)"),
    INT(write_burst, 200, 1, 1000000, "writes a token may send at once before write_rate applies"),
    STR(web_root, "", "directory of the built web client served at / (default: web/ beside rlhfd)"),
    STR(hostfile, "", "mpirun hostfile (this machine first) for jobs with ranks > 1"),
    STR(mpirun, "/usr/bin/mpirun", "the mpirun program that starts jobs with ranks > 1"),
    STR(data_dir, "",
        "the artifact store: checkpoints and model files by sha256 (default: DB_PATH.data)"),
    LIST(model_root, "a directory POST /v1/models may register models from (repeatable)"),
    INT(max_model_file_bytes, (int64_t)1 << 34, 1024, (int64_t)1 << 44,
        "largest file of a model upload (streamed into the artifact store)"),
    INT(artifact_grace_s, 3600, 0, 30 * 86400,
        "unreferenced artifacts younger than this are not collected (a writer may be about to "
        "reference them)"),
};
#define N_OPTIONS (sizeof options / sizeof options[0])

/* --db is the natural flag for db_path. */
static void option_flag(const option_def *o, char *out, size_t len) {
    snprintf(out, len, "%s", strcmp(o->name, "db_path") == 0 ? "db" : o->name);
    for (char *c = out; *c; c++)
        if (*c == '_')
            *c = '-';
}

static void option_env(const option_def *o, char *out, size_t len) {
    char flag[64];
    option_flag(o, flag, sizeof flag);
    int n = snprintf(out, len, "RLHFD_");
    for (const char *c = flag; *c && (size_t)n + 1 < len; c++)
        out[n++] = *c == '-' ? '_' : (char)(*c - ('a' <= *c && *c <= 'z' ? 32 : 0));
    out[n] = '\0';
}

static int option_set(rlhfd_config *cfg, const option_def *o, const char *value, const char *where,
                      char *err, size_t errlen) {
    char *field = (char *)cfg + o->offset;
    if (!o->is_int) {
        const size_t used = o->list && field[0] ? strlen(field) + 1 : 0;
        if (used + strlen(value) >= o->bytes || (o->list && strchr(value, '\n') != NULL)) {
            snprintf(err, errlen, "%s: value too long", where);
            return -1;
        }
        if (used > 0)
            field[used - 1] = '\n';
        snprintf(field + used, o->bytes - used, "%s", value);
        return 0;
    }
    char *end;
    long long v = strtoll(value, &end, 10);
    if (*value == '\0' || *end != '\0' || v < o->min || v > o->max) {
        snprintf(err, errlen, "%s must be an integer in [%lld, %lld], got '%.64s'", where,
                 (long long)o->min, (long long)o->max, value);
        return -1;
    }
    *(int64_t *)field = v;
    return 0;
}

static int load_file(rlhfd_config *cfg, const char *path, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *obj = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s: %s", path, obj ? "must be a JSON object" : jerr.text);
        json_decref(obj);
        return -1;
    }
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        const option_def *o = NULL;
        char name[64];
        for (size_t i = 0; i < N_OPTIONS && o == NULL; i++) {
            option_flag(&options[i], name, sizeof name);
            for (char *c = name; *c; c++)
                *c = *c == '-' ? '_' : *c;
            if (strcmp(name, key) == 0)
                o = &options[i];
        }
        char where[128], text[64];
        snprintf(where, sizeof where, "%s: \"%.64s\"", path, key);
        const char *v = json_string_value(value);
        if (o != NULL && o->is_int && json_is_integer(value))
            snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value)), v = text;
        if (o == NULL || v == NULL || option_set(cfg, o, v, where, err, errlen) != 0) {
            if (o == NULL)
                snprintf(err, errlen, "%s: unknown setting", where);
            else if (v == NULL)
                snprintf(err, errlen, "%s must be %s", where,
                         o->is_int ? "an integer" : "a string");
            json_decref(obj);
            return -1;
        }
    }
    json_decref(obj);
    return 0;
}

void rlhfd_config_usage(FILE *out) {
    fprintf(out, "usage: rlhfd [--config FILE.json] [--OPTION VALUE]...\n"
                 "       rlhfd [--db FILE] --create-token NAME --role admin|annotator|viewer\n"
                 "       rlhfd --routes   (the route table as JSON: [{method, path}])\n"
                 "options (also RLHFD_<OPTION> in the environment, or keys of the config file):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char flag[64];
        option_flag(&options[i], flag, sizeof flag);
        char dflt[64];
        if (options[i].is_int)
            snprintf(dflt, sizeof dflt, "%lld", (long long)options[i].dflt);
        else
            snprintf(dflt, sizeof dflt, "%s", options[i].dflt_text);
        fprintf(out, "  --%-24s %s (default %s)\n", flag, options[i].doc,
                dflt[0] ? dflt : "see text");
    }
}

/* name (rlhf-train, web) in the directory of this executable. */
static void beside_self(const char *name, char *out, size_t len) {
    char self[PATH_MAX - 16]; /* leaves room for "/rlhf-train" */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, len, "%s", name);
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, len, "%s/%s", self, name);
}

int rlhfd_config_load(rlhfd_config *cfg, rlhfd_command *cmd, int argc, char **argv, char *err,
                      size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    memset(cmd, 0, sizeof *cmd);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char *field = (char *)cfg + options[i].offset;
        if (options[i].is_int)
            *(int64_t *)field = options[i].dflt;
        else
            snprintf(field, options[i].bytes, "%s", options[i].dflt_text);
    }
    const char *file = getenv("RLHFD_CONFIG");
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0)
            file = argv[i + 1];
    if (file != NULL && load_file(cfg, file, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        option_env(&options[i], env, sizeof env);
        const char *v = getenv(env);
        if (v != NULL && option_set(cfg, &options[i], v, env, err, errlen) != 0)
            return -1;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cmd->help = true;
            continue;
        }
        if (strcmp(arg, "--routes") == 0) {
            cmd->routes = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || i + 1 >= argc) {
            snprintf(err, errlen, "%s '%s'",
                     strncmp(arg, "--", 2) ? "unexpected argument" : "missing value for", arg);
            return -1;
        }
        const char *value = argv[++i];
        if (strcmp(arg, "--config") == 0)
            continue;
        if (strcmp(arg, "--create-token") == 0) {
            cmd->create_token_name = value;
            continue;
        }
        if (strcmp(arg, "--role") == 0) {
            cmd->create_token_role = value;
            continue;
        }
        const option_def *o = NULL;
        for (size_t k = 0; k < N_OPTIONS && o == NULL; k++) {
            char flag[64];
            option_flag(&options[k], flag, sizeof flag);
            if (strcmp(arg + 2, flag) == 0)
                o = &options[k];
        }
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", arg);
            return -1;
        }
        if (option_set(cfg, o, value, arg, err, errlen) != 0)
            return -1;
    }
    if (cfg->train_bin[0] == '\0')
        beside_self("rlhf-train", cfg->train_bin, sizeof cfg->train_bin);
    if (cfg->web_root[0] == '\0')
        beside_self("web", cfg->web_root, sizeof cfg->web_root);
    if (cfg->data_dir[0] == '\0')
        artifact_store_default_dir(cfg->db_path, cfg->data_dir, sizeof cfg->data_dir);
    if (cmd->create_token_role != NULL && cmd->create_token_name == NULL) {
        snprintf(err, errlen, "--role goes with --create-token NAME");
        return -1;
    }
    return cmd->help || cmd->routes || cmd->create_token_name ? 1 : 0;
}
