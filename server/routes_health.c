/* GET /healthz: the process answers. GET /readyz: it can also reach the
 * database, the database's disk can take writes (storage_probe.h) and it
 * is not shutting down. Neither needs a token. GET /metrics: Prometheus. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "prometheus.h"
#include "routes.h"
#include "reply.h"
#include "scheduler.h"
#include "storage_probe.h"
#include "writer.h"

enum MHD_Result route_healthz(request *r) {
    return http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

enum MHD_Result route_readyz(request *r) {
    if (atomic_load(&r->srv->shutting_down))
        return http_reply_error(r, 503, "shutting_down", NULL, "rlhfd is shutting down");
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(r->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == db_schema_version();
    sqlite3_finalize(st);
    if (!ok)
        return http_reply_error(r, 503, "database_unavailable", NULL,
                                "the database is not reachable or not at schema version %d",
                                db_schema_version());
    char why[256];
    if (!storage_probe(r->srv->cfg.db_path, why, sizeof why)) {
        r->retry_after = HTTP_RETRY_AFTER_DB_IO_S;
        return http_reply_error(r, 503, "insufficient_storage", NULL,
                                "the database cannot be written: %s", why);
    }
    return http_reply_json(
        r, 200, json_pack("{s:s, s:i}", "status", "ready", "schema_version", db_schema_version()));
}

/* One integer from a query without parameters; -1 on error. */
static int64_t query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* GET /metrics: the Prometheus text format. Request counters and latency
 * histograms since start (prometheus.c), then gauges read now. */
enum MHD_Result route_metrics(request *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL)
        return http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    prometheus_write_requests(out);
    int64_t queued = query_int(r->db, "SELECT count(*) FROM jobs WHERE status = 'queued'");
    int64_t running = query_int(r->db, "SELECT count(*) FROM jobs WHERE status = 'running'");
    int64_t pages = query_int(r->db, "PRAGMA page_count");
    int64_t page_bytes = query_int(r->db, "PRAGMA page_size");
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", r->srv->cfg.db_path);
    struct stat st;
    int64_t wal_bytes = stat(wal, &st) == 0 ? (int64_t)st.st_size : 0;
    fprintf(out,
            "# HELP rlhfd_jobs_queued Jobs waiting for a worker (the queue depth).\n"
            "# TYPE rlhfd_jobs_queued gauge\nrlhfd_jobs_queued %lld\n"
            "# HELP rlhfd_jobs_running Jobs whose status is running (any worker).\n"
            "# TYPE rlhfd_jobs_running gauge\nrlhfd_jobs_running %lld\n"
            "# HELP rlhfd_workers_running rlhf-train processes this daemon runs now.\n"
            "# TYPE rlhfd_workers_running gauge\nrlhfd_workers_running %d\n"
            "# HELP rlhfd_database_bytes Size of the SQLite database (pages x page size).\n"
            "# TYPE rlhfd_database_bytes gauge\nrlhfd_database_bytes %lld\n"
            "# HELP rlhfd_database_wal_bytes Size of the write-ahead log file.\n"
            "# TYPE rlhfd_database_wal_bytes gauge\nrlhfd_database_wal_bytes %lld\n",
            (long long)queued, (long long)running, scheduler_running(r->srv->scheduler),
            (long long)(pages * page_bytes), (long long)wal_bytes);
    long long batches, writes, checkpoints;
    writer_stats(r->srv->writer, &batches, &writes, &checkpoints);
    fprintf(out,
            "# HELP rlhfd_group_commits_total Transactions the group-commit writer committed.\n"
            "# TYPE rlhfd_group_commits_total counter\nrlhfd_group_commits_total %lld\n"
            "# HELP rlhfd_group_commit_writes_total Writes (rankings) in those transactions.\n"
            "# TYPE rlhfd_group_commit_writes_total counter\nrlhfd_group_commit_writes_total "
            "%lld\n"
            "# HELP rlhfd_wal_checkpoints_total WAL checkpoints run by the writer's checkpointer.\n"
            "# TYPE rlhfd_wal_checkpoints_total counter\nrlhfd_wal_checkpoints_total %lld\n",
            batches, writes, checkpoints);
    if (fclose(out) != 0 || queued < 0 || running < 0 || pages < 0 || page_bytes < 0) {
        free(text);
        return http_reply_error(r, 500, "database_error", NULL, "cannot read the gauges");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return http_queue(r, 200, resp);
}
