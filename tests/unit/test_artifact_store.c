/* common/artifact_store: an artifact is a file named by its SHA-256,
 * durable before a row references it; collection removes what no row
 * references (after a grace period) and the temporary files; a process
 * killed (SIGKILL) at every step of a checkpoint write leaves no row
 * without its file, and what it left unreferenced is collected. */
#include <signal.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifact_store.h"
#include "checkpoint_file.h"
#include "db.h"
#include "sha256.h"
#include "suites.h"
#include "test_util.h"

typedef struct store_fixture {
    char dir[64], db_path[128], data[128];
    sqlite3 *db;
} store_fixture;

static void fixture_init(store_fixture *f) {
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/rlhf-artifacts-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->db_path, sizeof f->db_path, "%s/t.db", f->dir);
    artifact_store_default_dir(f->db_path, f->data, sizeof f->data);
    ck_assert_str_eq(f->data + strlen(f->dir), "/t.db.data");
    ck_assert_int_eq(db_open(f->db_path, &f->db, err, sizeof err), 0);
    ck_assert_msg(db_migrate(f->db, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(artifact_store_init(f->data, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(db_exec(f->db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at) VALUES (1, 'sft', 'running', '{}', 1, 0)",
                             err, sizeof err),
                     SQLITE_OK);
}

static void fixture_free(store_fixture *f) {
    sqlite3_close(f->db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A checkpoint row referencing object sha (n bytes) in the store. */
static void reference(sqlite3 *db, const char *sha, size_t n) {
    char sql[512], err[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO checkpoints (job_id, step, kind, path, sha256, size_bytes, created_at) "
             "VALUES (1, 1, 'periodic', 'objects/%s', '%s', %zu, 0)",
             sha, sha, n);
    ck_assert_msg(db_exec(db, sql, err, sizeof err) == SQLITE_OK, "%s", err);
}

/* Every checkpoint row with a path has its file, with the recorded size
 * and digest. Returns how many rows there are. */
static int64_t expect_references_whole(const store_fixture *f) {
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(f->db,
                                        "SELECT id, sha256, size_bytes FROM checkpoints WHERE "
                                        "path IS NOT NULL",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int64_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char err[512], got[65];
        const int fd = checkpoint_file_open(f->db, f->data, sqlite3_column_int64(st, 0), NULL, err,
                                            sizeof err);
        ck_assert_msg(fd >= 0, "%s", err);
        const int64_t size = sqlite3_column_int64(st, 2);
        char *buf = malloc((size_t)size + 1);
        ck_assert_int_eq(pread(fd, buf, (size_t)size + 1, 0), size);
        sha256_hex(buf, (size_t)size, got);
        ck_assert_str_eq(got, (const char *)sqlite3_column_text(st, 1));
        free(buf);
        close(fd);
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

START_TEST(test_put_open_and_collect) {
    store_fixture f;
    fixture_init(&f);
    char sha[65], want[65], err[512], path[256];
    const char text[] = "weights, say";
    ck_assert_msg(artifact_store_put(f.data, text, sizeof text, sha, err, sizeof err) == 0, "%s",
                  err);
    sha256_hex(text, sizeof text, want);
    ck_assert_str_eq(sha, want);
    artifact_store_path(f.data, sha, path, sizeof path);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, (off_t)sizeof text);
    ck_assert_int_eq(test_count_files(f.data, "tmp"), 0);
    /* the recorded size is checked on open */
    int fd = artifact_store_open(f.data, sha, 3, err, sizeof err);
    ck_assert_int_eq(fd, -1);
    ck_assert_msg(strstr(err, "3 recorded") != NULL, "%s", err);
    fd = artifact_store_open(f.data, sha, (int64_t)sizeof text, err, sizeof err);
    ck_assert_int_ge(fd, 0);
    close(fd);

    /* a second, unreferenced object; a stray temporary file; a file that
     * is not an object name */
    char other[65];
    ck_assert_int_eq(artifact_store_put(f.data, "x", 1, other, err, sizeof err), 0);
    char stray[256], foreign[256];
    snprintf(stray, sizeof stray, "%s/tmp/artifact-left", f.data);
    snprintf(foreign, sizeof foreign, "%s/objects/README", f.data);
    FILE *out = fopen(stray, "w");
    fputs("half", out);
    fclose(out);
    out = fopen(foreign, "w");
    fclose(out);
    reference(f.db, sha, sizeof text);
    /* young files survive a grace period (a writer may be about to commit) */
    ck_assert_int_eq(artifact_store_collect(f.db, f.data, 3600, err, sizeof err), 0);
    ck_assert_int_eq(test_count_files(f.data, "objects"), 3);
    /* without one: the unreferenced object and the temporary file go */
    ck_assert_int_eq(artifact_store_collect(f.db, f.data, 0, err, sizeof err), 2);
    ck_assert_int_eq(test_count_files(f.data, "objects"), 2); /* sha and README */
    ck_assert_int_eq(test_count_files(f.data, "tmp"), 0);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(expect_references_whole(&f), 1);
    fixture_free(&f);
}
END_TEST

START_TEST(test_writer_limit_and_abort) {
    store_fixture f;
    fixture_init(&f);
    artifact_writer w;
    char err[512];
    ck_assert_int_eq(artifact_writer_open(&w, f.data, 8, err, sizeof err), 0);
    ck_assert_int_eq(artifact_writer_write(&w, "12345", 5, err, sizeof err), 0);
    ck_assert_int_eq(artifact_writer_write(&w, "6789", 4, err, sizeof err), -1);
    ck_assert(w.too_large);
    ck_assert_msg(strstr(err, "larger than 8 bytes") != NULL, "%s", err);
    ck_assert_int_eq(test_count_files(f.data, "tmp"), 1);
    artifact_writer_abort(&w);
    ck_assert_int_eq(test_count_files(f.data, "tmp"), 0);
    ck_assert_int_eq(test_count_files(f.data, "objects"), 0);
    fixture_free(&f);
}
END_TEST

/* A stream writer for test_put_stream: n_bytes of a pattern, in pieces of
 * odd sizes (so they straddle stdio's buffer); fail_after > 0: fails once
 * that many bytes are out; lie: reports one byte more than it wrote. */
typedef struct pattern_source {
    size_t n_bytes, fail_after;
    bool lie;
} pattern_source;

static unsigned char pattern_byte(size_t i) {
    return (unsigned char)(i * 131u + (i >> 9));
}

static int write_pattern(void *wctx, FILE *out, size_t *n_bytes) {
    const pattern_source *src = wctx;
    static const size_t pieces[] = {1, 7, 4093, 65536, 1048577, 333};
    static unsigned char buf[1048577];
    size_t done = 0;
    for (int k = 0; done < src->n_bytes; k++) {
        if (src->fail_after > 0 && done >= src->fail_after)
            return -1;
        size_t n = pieces[k % 6] < src->n_bytes - done ? pieces[k % 6] : src->n_bytes - done;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern_byte(done + i);
        if (fwrite(buf, 1, n, out) != n)
            return -1;
        done += n;
    }
    *n_bytes = done + src->lie;
    return 0;
}

/* A streamed artifact is the file artifact_store_put makes of the same
 * bytes (digest hashed while writing); a writer that fails, or whose count
 * is not what it wrote, leaves nothing in tmp/ or objects/. */
START_TEST(test_put_stream) {
    store_fixture f;
    fixture_init(&f);
    char sha[65], want[65], err[512];
    pattern_source src = {3 * 1048576 + 5, 0, false};
    unsigned char *all = malloc(src.n_bytes);
    for (size_t i = 0; i < src.n_bytes; i++)
        all[i] = pattern_byte(i);
    uint64_t n = 0;
    ck_assert_msg(
        artifact_store_put_stream(f.data, write_pattern, &src, sha, &n, err, sizeof err) == 0, "%s",
        err);
    ck_assert_uint_eq(n, src.n_bytes);
    ck_assert_int_eq(artifact_store_put(f.data, all, src.n_bytes, want, err, sizeof err), 0);
    ck_assert_str_eq(sha, want);
    sha256_hex(all, src.n_bytes, want);
    ck_assert_str_eq(sha, want);
    ck_assert_int_eq(test_count_files(f.data, "objects"), 1);
    const int fd = artifact_store_open(f.data, sha, (int64_t)src.n_bytes, err, sizeof err);
    ck_assert_int_ge(fd, 0);
    unsigned char *back = malloc(src.n_bytes);
    ck_assert_int_eq(pread(fd, back, src.n_bytes, 0), (ssize_t)src.n_bytes);
    ck_assert_int_eq(memcmp(back, all, src.n_bytes), 0);
    close(fd);
    free(back);
    free(all);

    pattern_source failing = {3 * 1048576, 2 * 1048576, false};
    ck_assert_int_eq(
        artifact_store_put_stream(f.data, write_pattern, &failing, sha, &n, err, sizeof err), -1);
    pattern_source liar = {1000, 0, true};
    ck_assert_int_eq(
        artifact_store_put_stream(f.data, write_pattern, &liar, sha, &n, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "reported 1001 bytes but wrote 1000") != NULL, "%s", err);
    ck_assert_int_eq(test_count_files(f.data, "tmp"), 0);
    ck_assert_int_eq(test_count_files(f.data, "objects"), 1);
    fixture_free(&f);
}
END_TEST

/* A child writes an artifact and commits a row that references it, as
 * rlhf-train's checkpoint write does, and is killed at `step`. */
static void write_and_die(const store_fixture *f, const char *step, int i) {
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        setenv("RLHF_ARTIFACT_CRASH_AT", step, 1);
        sqlite3 *db;
        char err[512], sha[65], bytes[64];
        const int n = snprintf(bytes, sizeof bytes, "checkpoint %d written until %s", i, step);
        if (db_open(f->db_path, &db, err, sizeof err) != 0 ||
            artifact_store_put(f->data, bytes, (size_t)n, sha, err, sizeof err) != 0)
            _exit(2);
        db_begin(db);
        reference(db, sha, (size_t)n);
        if (db_commit(db) != SQLITE_OK)
            _exit(3);
        artifact_crash_point("committed");
        sqlite3_close(db);
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (strcmp(step, "none") == 0)
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    else
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s: status %d", step,
                      status);
}

START_TEST(test_kill_at_every_step) {
    static const char *const steps[] = {"written",    "synced",    "renamed",
                                        "dir_synced", "committed", "none"};
    /* whether the row (the acknowledgement) exists after dying there */
    static const bool committed[] = {false, false, false, false, true, true};
    store_fixture f;
    fixture_init(&f);
    char err[512];
    int64_t rows = 0;
    for (int i = 0; i < 6; i++) {
        write_and_die(&f, steps[i], i);
        rows += committed[i];
        /* before collection: no row lacks its file */
        ck_assert_int_eq(expect_references_whole(&f), rows);
        /* what a restart does */
        ck_assert_int_ge(artifact_store_collect(f.db, f.data, 0, err, sizeof err), 0);
        ck_assert_int_eq(expect_references_whole(&f), rows);
        ck_assert_int_eq(test_count_files(f.data, "tmp"), 0);
        ck_assert_msg(test_count_files(f.data, "objects") == rows,
                      "after %s: %d objects, %lld rows", steps[i],
                      test_count_files(f.data, "objects"), (long long)rows);
    }
    fixture_free(&f);
}
END_TEST

Suite *artifact_store_suite(void) {
    Suite *s = suite_create("artifact_store");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_put_open_and_collect);
    tcase_add_test(tc, test_writer_limit_and_abort);
    tcase_add_test(tc, test_put_stream);
    tcase_add_test(tc, test_kill_at_every_step);
    suite_add_tcase(s, tc);
    return s;
}
