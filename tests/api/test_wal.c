/* The WAL stays bounded (issue 13): after a transaction bigger than
 * DB_WAL_SIZE_LIMIT_BYTES, rlhfd's checkpointer (server/writer.c) gives the
 * disk back instead of leaving the -wal file at the transaction's size. A
 * real daemon on loopback (test_server_util.h).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

static int64_t file_bytes(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* An sft dataset of about `bytes` bytes of JSONL whose responses are
 * pseudo-random letters (so no future compact storage of datasets makes
 * the upload smaller than the WAL limit). Returns the body; *rows its rows. */
static char *random_sft_jsonl(size_t bytes, int64_t *rows) {
    const size_t response_len = 4000;
    char *body = malloc(bytes + response_len + 64);
    ck_assert_ptr_nonnull(body);
    size_t used = 0;
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    *rows = 0;
    while (used < bytes) {
        used += (size_t)sprintf(body + used, "{\"prompt\":\"row %lld\",\"response\":\"",
                                (long long)*rows);
        for (size_t i = 0; i < response_len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            body[used++] = (char)('a' + x % 26);
        }
        used += (size_t)sprintf(body + used, "\"}\n");
        ++*rows;
    }
    body[used] = '\0';
    return body;
}

START_TEST(test_wal_shrinks_after_big_upload) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", d.db);

    int64_t rows = 0;
    const size_t upload_bytes = 3 * (size_t)DB_WAL_SIZE_LIMIT_BYTES / 2;
    char *body = random_sft_jsonl(upload_bytes, &rows);
    int64_t id = create(&d, "/v1/datasets", d.admin, "{\"name\":\"big\",\"format\":\"sft\"}");
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    http_reply *r = expect_ok(http_bytes(&d, "POST", path, d.admin, body, strlen(body), NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), rows);
    reply_free(r);
    free(body);

    /* The upload was one transaction: every page it wrote went through the
     * WAL, and they are more than the limit (else the test proves nothing). */
    int64_t pages =
        db_int(&d, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size", 0);
    ck_assert_msg(pages > DB_WAL_SIZE_LIMIT_BYTES, "the database holds %lld bytes, want > %d",
                  (long long)pages, DB_WAL_SIZE_LIMIT_BYTES);

    /* Nothing else is written: the checkpointer alone has to shrink it. */
    int64_t wal_bytes = file_bytes(wal);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (wal_bytes > DB_WAL_SIZE_LIMIT_BYTES && now_ms() < deadline) {
        pause_ms(50);
        wal_bytes = file_bytes(wal);
    }
    ck_assert_msg(wal_bytes <= DB_WAL_SIZE_LIMIT_BYTES,
                  "the -wal file is %lld bytes %d ms after a %zu-byte upload (limit %d)",
                  (long long)wal_bytes, DEADLINE_MS, upload_bytes, DB_WAL_SIZE_LIMIT_BYTES);

    /* The rows are in the database file, and rlhfd still writes. */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", id),
                     rows);
    create(&d, "/v1/projects", d.admin, "{\"name\":\"after\"}");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_wal_size_limit_is_set) {
    /* Every connection db_open makes (rlhfd's, the workers', rlhfctl's)
     * truncates the WAL to the limit when it starts it over. */
    char dir[] = "/tmp/rlhf-wal-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64], err[256];
    snprintf(path, sizeof path, "%s/t.db", dir);
    sqlite3 *db = NULL;
    ck_assert_msg(db_open(path, &db, err, sizeof err) == 0, "%s", err);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_size_limit", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int64(st, 0), DB_WAL_SIZE_LIMIT_BYTES);
    sqlite3_finalize(st);
    db_close(db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *wal_suite(void) {
    Suite *s = suite_create("wal");
    TCase *tc = tcase_create("wal");
    tcase_add_test(tc, test_wal_size_limit_is_set);
    tcase_add_test(tc, test_wal_shrinks_after_big_upload);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
