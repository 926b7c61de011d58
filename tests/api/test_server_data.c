/* rlhfd's data routes end to end: datasets and their streamed JSONL uploads,
 * preference collection (projects, comparisons, next, rankings, pairs),
 * Idempotency-Key, /metrics, and docs/api.md against the route table. A real
 * daemon on loopback with a fresh database per test (test_server_util.h).
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

/* Uploads len bytes to dataset id; returns the reply (caller frees). */
static http_reply *upload(const test_daemon *d, int64_t id, const char *body, size_t len,
                          const char *extra_header) {
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    return http_bytes(d, "POST", path, d->admin, body, len, extra_header);
}

/* An upload that must fail at line with code and param, storing nothing. */
static void expect_bad_upload(const test_daemon *d, int64_t id, const char *body, size_t len,
                              const char *code, const char *param, int64_t line) {
    http_reply *r = upload(d, id, body, len, NULL);
    expect_error(r, 400, code, param);
    json_t *err = json_object_get(r->json, "error");
    if (line > 0) {
        ck_assert_msg(json_integer_value(json_object_get(err, "line")) == line,
                      "line, want %lld: %s", (long long)line, r->body);
        char want[32];
        snprintf(want, sizeof want, "line %lld: ", (long long)line);
        ck_assert_msg(
            strncmp(json_string_value(json_object_get(err, "message")), want, strlen(want)) == 0,
            "%s", r->body);
    }
    reply_free(r);
    ck_assert_int_eq(db_int(d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", id), 0);
    ck_assert_int_eq(db_int(d, "SELECT n_rows FROM datasets WHERE id = ?1", id), 0);
}

/* ---- datasets ----------------------------------------------------------------------- */

START_TEST(test_dataset_upload_formats) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t sft = create(&d, "/v1/datasets", d.admin, "{\"name\":\"chat sft\",\"format\":\"sft\"}");
    int64_t pref =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"prefs\",\"format\":\"preference\"}");
    int64_t prompts =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"ppo\",\"format\":\"prompts\"}");

    /* CRLF, a blank line, and no newline after the last line. */
    const char *sft_file = "{\"prompt\":\"2+2?\",\"response\":\"4\"}\r\n"
                           "\n"
                           "{\"prompt\":\"\",\"response\":\"caf\xc3\xa9 \\u00e9\"}";
    http_reply *r = expect_ok(upload(&d, sft, sft_file, strlen(sft_file), NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "ready");
    reply_free(r);
    /* Rows keep their line numbers. */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND "
                            "line = 3 AND response = 'café é'",
                            sft),
                     1);

    /* TRL and OpenAI chat preferences in one file. */
    const char *pref_file =
        "{\"prompt\":\"Say hi\",\"chosen\":\"Hi!\",\"rejected\":\"No.\"}\n"
        "{\"input\":{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},"
        "{\"role\":\"user\",\"content\":\"Capital of France?\"}]},"
        "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"Paris\"}],"
        "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"Lyon\"}]}\n";
    r = expect_ok(upload(&d, pref, pref_file, strlen(pref_file), NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), 2);
    reply_free(r);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = "
                            "2 AND prompt = 'Capital of France?' AND chosen = 'Paris' AND "
                            "rejected = 'Lyon' AND json_array_length(prompt_messages) = 2",
                            pref),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = "
                            "1 AND prompt_messages IS NULL AND chosen = 'Hi!'",
                            pref),
                     1);

    const char *prompt_file = "{\"prompt\":\"a\"}\n{\"prompt\":\"b\"}\n{\"prompt\":\"c\"}\n";
    reply_free(expect_ok(upload(&d, prompts, prompt_file, strlen(prompt_file), NULL)));
    /* One upload per dataset. */
    r = upload(&d, prompts, prompt_file, strlen(prompt_file), NULL);
    expect_error(r, 409, "dataset_not_empty", NULL);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", prompts),
                     3);

    /* get, list with pagination and a format filter */
    char path[96];
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)pref);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "format")), "preference");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")), "dataset");
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/datasets?limit=2", d.admin, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), prompts);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "last_id")), pref);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    reply_free(r);
    snprintf(path, sizeof path, "/v1/datasets?limit=2&after=%lld", (long long)pref);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), sft);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/datasets?format=sft", d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);

    /* Delete: refused while a job uses the dataset, then gone with its rows. */
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) VALUES "
                 "(7, 'ppo-control', 'cancelled', '{}', 1, 0)");
    char sql[160];
    snprintf(sql, sizeof sql,
             "INSERT INTO job_datasets (job_id, purpose, dataset_id) VALUES (7, 'training', %lld)",
             (long long)sft);
    exec_sql(&d, sql);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)sft);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "dataset_in_use", NULL);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)pref);
    r = expect_ok(http(&d, "DELETE", path, d.admin, NULL, NULL));
    ck_assert(json_is_true(json_object_get(r->json, "deleted")));
    reply_free(r);
    call_expect_error(&d, "GET", path, d.admin, NULL, 404, "dataset_not_found", NULL);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 404, "dataset_not_found", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", pref),
                     0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_dataset_upload_errors) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--max-upload-bytes", "3000000", NULL);
    int64_t sft = create(&d, "/v1/datasets", d.admin, "{\"name\":\"s\",\"format\":\"sft\"}");
    int64_t pref =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"p\",\"format\":\"preference\"}");
    const char *good = "{\"prompt\":\"p\",\"response\":\"r\"}\n";
    char file[512];
#define BAD(id, text, code, param, line)                                                           \
    do {                                                                                           \
        snprintf(file, sizeof file, "%s%s%s", good, good, text);                                   \
        expect_bad_upload(&d, id, file, strlen(file), code, param, line);                          \
    } while (0)
    BAD(sft, "{\"prompt\":\"p\"}\n", "missing_required_parameter", "response", 3);
    BAD(sft, "{\"prompt\":\"p\",\"response\":\"r\",\"extra\":1}", "unknown_parameter", "extra", 3);
    BAD(sft, "{\"prompt\":\"p\",\"response\":7}", "invalid_type", "response", 3);
    BAD(sft, "{\"prompt\":\"p\",\"response\":\"\"}", "invalid_value", "response", 3);
    BAD(sft, "{\"prompt\":\"p\",", "invalid_json", NULL, 3);
    BAD(sft, "[1]", "invalid_json", NULL, 3);
    BAD(sft, "{\"prompt\":\"p\",\"prompt\":\"q\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    /* Strict UTF-8: an overlong '/', an encoded surrogate, a stray byte, and
     * the escape of NUL. */
    BAD(sft, "{\"prompt\":\"\xc0\xaf\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    BAD(sft, "{\"prompt\":\"\xed\xa0\x80\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    BAD(sft, "{\"prompt\":\"\xff\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    BAD(sft, "{\"prompt\":\"\\u0000\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    BAD(sft, "{\"prompt\":\"\\ud800\",\"response\":\"r\"}", "invalid_json", NULL, 3);
    /* Depth: 40 nested arrays. */
    BAD(sft,
        "{\"prompt\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]}",
        "invalid_json", NULL, 3);
    /* Preference formats, field paths into the OpenAI messages. */
    snprintf(file, sizeof file, "{\"prompt\":\"p\",\"chosen\":\"a\"}");
    expect_bad_upload(&d, pref, file, strlen(file), "missing_required_parameter", "rejected", 1);
    snprintf(file, sizeof file,
             "{\"input\":{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]},"
             "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}],"
             "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"b\"}]}");
    expect_bad_upload(&d, pref, file, strlen(file), "invalid_value", "input.messages[0].role", 1);
    snprintf(file, sizeof file,
             "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},"
             "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"},"
             "{\"role\":\"assistant\",\"content\":\"c\"}],"
             "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"b\"}]}");
    expect_bad_upload(&d, pref, file, strlen(file), "invalid_value", "preferred_output", 1);
    snprintf(file, sizeof file,
             "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":\"n\"}]},"
             "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}],"
             "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"b\"}]}");
    expect_bad_upload(&d, pref, file, strlen(file), "unknown_parameter", "input.messages[0].name",
                      1);
    snprintf(file, sizeof file,
             "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},"
             "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}]}");
    expect_bad_upload(&d, pref, file, strlen(file), "missing_required_parameter",
                      "non_preferred_output", 1);
    expect_bad_upload(&d, sft, "\n\n", 2, "empty_file", NULL, 0);
    /* A string over the limit, on line 2. */
    size_t big_len = HTTP_JSON_MAX_STRING + 100;
    char *big = malloc(big_len + 64);
    int n = snprintf(big, 64, "%s{\"prompt\":\"", good);
    memset(big + n, 'x', HTTP_JSON_MAX_STRING + 1);
    n += HTTP_JSON_MAX_STRING + 1;
    n += snprintf(big + n, 64, "\",\"response\":\"r\"}\n");
    expect_bad_upload(&d, sft, big, (size_t)n, "string_too_long", "prompt", 2);
    /* Over the upload cap: declared (Content-Length) and streamed (chunked,
     * no length), answered 413 either way. */
    char *huge = malloc(3100000);
    for (size_t i = 0; i < 3100000 / 32; i++)
        memcpy(huge + 32 * i, "{\"prompt\":\"p\",\"response\":\"rrr\"}\n", 32);
    http_reply *r = upload(&d, sft, huge, 3100000, NULL);
    expect_error(r, 413, "body_too_large", NULL);
    reply_free(r);
    r = upload(&d, sft, huge, 3100000, "Transfer-Encoding: chunked");
    expect_error(r, 413, "body_too_large", NULL);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows", 0), 0);
    /* Just under the cap, chunked: accepted. */
    r = expect_ok(upload(&d, sft, huge, 2999968, "Transfer-Encoding: chunked"));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), 2999968 / 32);
    reply_free(r);
    free(huge);
    free(big);

    /* Creation, listing and routing errors; roles. */
    call_expect_error(&d, "POST", "/v1/datasets/999/upload", d.admin, good, 404,
                      "dataset_not_found", NULL);
    call_expect_error(&d, "POST", "/v1/datasets", d.admin, "{\"format\":\"sft\"}", 400,
                      "invalid_value", "name");
    call_expect_error(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"x\",\"format\":\"dpo\"}",
                      400, "invalid_value", "format");
    call_expect_error(&d, "POST", "/v1/datasets", d.admin,
                      "{\"name\":\"x\",\"format\":\"sft\",\"rows\":[]}", 400, "unknown_parameter",
                      "rows");
    call_expect_error(&d, "GET", "/v1/datasets?format=x", d.admin, NULL, 400, "invalid_value",
                      "format");
    call_expect_error(&d, "GET", "/v1/datasets/999", d.admin, NULL, 404, "dataset_not_found", NULL);
    char viewer[128], annotator[128];
    make_token(&d, "vera", "viewer", viewer);
    make_token(&d, "anna", "annotator", annotator);
    call_expect_error(&d, "POST", "/v1/datasets", viewer, "{\"name\":\"x\",\"format\":\"sft\"}",
                      403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/datasets", annotator, NULL, 403, "insufficient_role", NULL);
    /* An upload is refused before its body when the token is wrong. */
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)pref);
    call_expect_error(&d, "POST", path, viewer, good, 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", path, NULL, good, 401, "missing_api_key", NULL);
    /* JSON bodies have the same depth limit. */
    call_expect_error(&d, "POST", "/v1/datasets", d.admin,
                      "{\"name\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]"
                      "]]]]]]]]]]]]]]]]}",
                      400, "invalid_json", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
#undef BAD
}
END_TEST

/* ---- preferences ------------------------------------------------------------------- */

/* GET next as token: the comparison id, or 0 when none is left. */
static int64_t next_for(const test_daemon *d, int64_t project, const char *token) {
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/next", (long long)project);
    http_reply *r = http(d, "GET", path, token, NULL, NULL);
    int64_t id = 0;
    if (r->status == 404)
        expect_error(r, 404, "no_comparison_available", NULL);
    else {
        expect_ok(r);
        id = reply_id(r);
        ck_assert(json_is_integer(json_object_get(r->json, "lease_expires_at")));
    }
    reply_free(r);
    return id;
}

/* The candidate ids of a comparison, in position order. */
static void candidate_ids(const test_daemon *d, int64_t comparison, int64_t *ids, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)comparison);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *cands = json_object_get(r->json, "candidates");
    ck_assert_int_eq(json_array_size(cands), n);
    for (size_t i = 0; i < n; i++)
        ids[i] = json_integer_value(json_object_get(json_array_get(cands, i), "id"));
    reply_free(r);
}

START_TEST(test_preference_collection) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--max-body-bytes", "3000000", NULL);
    char a1[128], a2[128], a3[128], viewer[128];
    make_token(&d, "ann1", "annotator", a1);
    make_token(&d, "ann2", "annotator", a2);
    make_token(&d, "ann3", "annotator", a3);
    make_token(&d, "vera", "viewer", viewer);
    /* A checkpoint for a sampled candidate to point at. */
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) VALUES "
                 "(1, 'ppo-control', 'succeeded', '{}', 1, 0); INSERT INTO checkpoints (id, "
                 "job_id, step, kind, bytes, sha256, size_bytes, created_at) VALUES (5, 1, 10, "
                 "'final', x'00', printf('%064d', 0), 1, 0)");

    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"p\",\"k\":10}", 400,
                      "invalid_value", "k");
    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"p\",\"overlap\":\"2\"}",
                      400, "invalid_type", "overlap");
    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"k\":3}", 400, "invalid_value",
                      "name");
    call_expect_error(&d, "POST", "/v1/projects", a1, "{\"name\":\"p\"}", 403, "insufficient_role",
                      NULL);
    int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"helpful\",\"k\":3,\"overlap\":2}");
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);

    /* Comparison validation. */
    struct {
        const char *body, *code, *param;
    } bad[] = {
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"}]}", "invalid_value", "candidates"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"},{\"text\":\"c\"},"
         "{\"text\":\"d\"}]}",
         "invalid_value", "candidates"},
        {"{\"prompt\":\"q\",\"candidates\":{}}", "invalid_type", "candidates"},
        {"{\"prompt\":\"\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", "invalid_value",
         "prompt"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"\"}]}", "invalid_value",
         "candidates[1].text"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"model\":\"x\"},{\"text\":\"b\"}]}",
         "unknown_parameter", "candidates[0].model"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"checkpoint\"},"
         "{\"text\":\"b\"}]}",
         "invalid_value", "candidates[0].checkpoint_id"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"human\"},"
         "{\"text\":\"b\"}]}",
         "invalid_value", "candidates[0].source"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"checkpoint\","
         "\"checkpoint_id\":99},{\"text\":\"b\"}]}",
         "checkpoint_not_found", "candidates[0].checkpoint_id"},
        {"[]", "invalid_json", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        call_expect_error(&d, "POST", cpath, d.admin, bad[i].body, 400, bad[i].code, bad[i].param);
    call_expect_error(&d, "POST", "/v1/projects/99/comparisons", d.admin,
                      "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", 404,
                      "project_not_found", NULL);
    call_expect_error(&d, "POST", cpath, a1,
                      "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", 403,
                      "insufficient_role", NULL);
    /* A string over the limit in a JSON body names its path. */
    size_t big_len = HTTP_JSON_MAX_STRING + 200;
    char *big = malloc(big_len);
    int n = snprintf(big, 64, "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"");
    memset(big + n, 'y', HTTP_JSON_MAX_STRING + 1);
    n += HTTP_JSON_MAX_STRING + 1;
    snprintf(big + n, 16, "\"}]}");
    call_expect_error(&d, "POST", cpath, d.admin, big, 400, "string_too_long",
                      "candidates[1].text");
    free(big);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons", 0), 0);

    int64_t c1 =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"Explain WAL\",\"candidates\":[{\"text\":\"A log.\"},"
               "{\"text\":\"A journal.\"},{\"text\":\"Sampled.\",\"source\":\"checkpoint\","
               "\"checkpoint_id\":5}]}");
    int64_t c2 = create(&d, cpath, d.admin,
                        "{\"prompt\":\"Say hi\",\"candidates\":[{\"text\":\"hi\"},{\"text\":"
                        "\"hello\"}]}");
    int64_t ids[3];
    candidate_ids(&d, c1, ids, 3);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM candidates WHERE comparison_id = ?1 AND "
                            "source = 'checkpoint' AND source_checkpoint_id = 5",
                            c1),
                     1);

    /* next: least-ranked first, the same one until answered, and never more
     * annotators at once than the overlap (2). */
    ck_assert_int_eq(next_for(&d, project, a1), c1);
    ck_assert_int_eq(next_for(&d, project, a1), c1);
    ck_assert_int_eq(next_for(&d, project, a2), c1);
    ck_assert_int_eq(next_for(&d, project, a3), c2); /* c1 is leased twice */
    char npath[96];
    snprintf(npath, sizeof npath, "/v1/projects/%lld/comparisons/next", (long long)project);
    call_expect_error(&d, "GET", npath, viewer, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/99/comparisons/next", a1, NULL, 404,
                      "project_not_found", NULL);

    /* Ranking validation. */
    char rpath[96], body[256];
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c1);
    call_expect_error(&d, "POST", rpath, a1, "{}", 400, "missing_required_parameter", "order");
    call_expect_error(&d, "POST", rpath, a1, "{\"order\":5}", 400, "invalid_type", "order");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[]]}", (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "invalid_type", "order[1]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[0], 12345LL,
             (long long)ids[2]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "unknown_candidate", "order[1][0]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[0],
             (long long)ids[1], (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "duplicate_candidate", "order[1][1]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)ids[0],
             (long long)ids[1]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "missing_candidate", "order");
    snprintf(body, sizeof body, "{\"order\":[[%lld]],\"skip\":true}", (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "invalid_value", "skip");
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true,\"note\":12}", 400, "invalid_value",
                      "note");
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true,\"when\":1}", 400, "unknown_parameter",
                      "when");
    call_expect_error(&d, "POST", rpath, viewer, "{\"skip\":true}", 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/comparisons/999/rankings", a1, "{\"skip\":true}", 404,
                      "comparison_not_found", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings", 0), 0);

    /* ann1: best first, a tie for second → 2 pairs. ann2: a strict order → 3. */
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]],\"note\":\"close call\"}",
             (long long)ids[0], (long long)ids[2], (long long)ids[1]);
    http_reply *r = expect_ok(http(&d, "POST", rpath, a1, body, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "annotator")), "ann1");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "note")), "close call");
    /* The order comes back grouped, ties in candidate position order. */
    json_t *order = json_object_get(r->json, "order");
    ck_assert_int_eq(json_array_size(order), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(order, 1), 0)), ids[1]);
    json_t *posted1 = json_incref(r->json); /* compared with what GET reads back, below */
    reply_free(r);
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true}", 409, "already_ranked", NULL);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)ids[2],
             (long long)ids[1], (long long)ids[0]);
    r = expect_ok(http(&d, "POST", rpath, a2, body, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 3);
    ck_assert(json_is_null(json_object_get(r->json, "note")));
    json_t *posted2 = json_incref(r->json);
    reply_free(r);
    /* c1 has its two rankings: ann3 without a lease is refused. */
    call_expect_error(&d, "POST", rpath, a3, body, 409, "overlap_reached", NULL);
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM comparison_leases WHERE comparison_id = ?1", c1), 0);

    /* c2 now: ann1 gets it (beside ann3's lease); ann3 skips it, which
     * counts as their answer but not toward the overlap, so ann2 gets it too. */
    ck_assert_int_eq(next_for(&d, project, a1), c2);
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c2);
    r = expect_ok(http(&d, "POST", rpath, a3, "{\"skip\":true,\"note\":\"unclear\"}", NULL));
    ck_assert(json_is_true(json_object_get(r->json, "skipped")));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 0);
    reply_free(r);
    ck_assert_int_eq(next_for(&d, project, a3), 0); /* answered both */
    ck_assert_int_eq(next_for(&d, project, a2), c2);
    int64_t c2ids[2];
    candidate_ids(&d, c2, c2ids, 2);
    snprintf(body, sizeof body, "{\"order\":[[%lld,%lld]]}", (long long)c2ids[0],
             (long long)c2ids[1]);
    r = expect_ok(http(&d, "POST", rpath, a2, body, NULL)); /* a full tie: no pairs */
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 0);
    reply_free(r);
    ck_assert_int_eq(next_for(&d, project, a2), 0);

    /* Pairs: 2 + 3, as training-ready text, newest first, paginated. */
    char ppath[128];
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs?limit=3", (long long)project);
    r = expect_ok(http(&d, "GET", ppath, viewer, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 3);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    json_t *p0 = json_array_get(data, 0);
    ck_assert_str_eq(json_string_value(json_object_get(p0, "annotator")), "ann2");
    ck_assert_str_eq(json_string_value(json_object_get(p0, "prompt")), "Explain WAL");
    int64_t last = json_integer_value(json_object_get(r->json, "last_id"));
    reply_free(r);
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs?after=%lld", (long long)project,
             (long long)last);
    r = expect_ok(http(&d, "GET", ppath, d.admin, NULL, NULL));
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    /* ann1 put "A log." first: it is chosen over both others. */
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(data, i);
        ck_assert_str_eq(json_string_value(json_object_get(p, "annotator")), "ann1");
        ck_assert_str_eq(json_string_value(json_object_get(p, "chosen")), "A log.");
    }
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM preference_pairs", 0), 5);
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs", (long long)project);
    call_expect_error(&d, "GET", ppath, a1, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/99/pairs", d.admin, NULL, 404, "project_not_found",
                      NULL);

    /* Reads: annotators and viewers see projects and comparisons. */
    r = expect_ok(http(&d, "GET", cpath, a1, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 1), "n_rankings")),
                     2);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/projects", viewer, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "n_comparisons")),
                     2);
    reply_free(r);
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c1);
    r = expect_ok(http(&d, "GET", rpath, viewer, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    /* The write's answer is built from what it wrote; it equals the read. */
    ck_assert(json_equal(json_array_get(json_object_get(r->json, "data"), 0), posted2));
    ck_assert(json_equal(json_array_get(json_object_get(r->json, "data"), 1), posted1));
    json_decref(posted1);
    json_decref(posted2);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/comparisons/999", a1, NULL, 404, "comparison_not_found",
                      NULL);
    call_expect_error(&d, "GET", "/v1/projects/999", a1, NULL, 404, "project_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/comparisons/999/rankings", d.admin, NULL, 404,
                      "comparison_not_found", NULL);

    /* Every acknowledged ranking survives a SIGKILL of the daemon. */
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings", 0), 4);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM ranking_entries", 0), 3 + 3 + 2);
    daemon_cleanup(&d);
}
END_TEST

/* ---- Idempotency-Key ---------------------------------------------------------------- */

START_TEST(test_idempotency_keys) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const char *body = "{\"name\":\"once\",\"format\":\"prompts\"}";
    http_reply *r =
        expect_ok(http(&d, "POST", "/v1/datasets", d.admin, body, "Idempotency-Key: k1"));
    int64_t id = reply_id(r);
    ck_assert(!r->replayed);
    char *first = strdup(r->body);
    reply_free(r);
    r = expect_ok(http(&d, "POST", "/v1/datasets", d.admin, body, "Idempotency-Key: k1"));
    ck_assert(r->replayed);
    ck_assert_str_eq(r->body, first); /* byte for byte */
    free(first);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM datasets", 0), 1);
    /* Same key, different body or path: refused. */
    r = http(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"twice\",\"format\":\"prompts\"}",
             "Idempotency-Key: k1");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    r = http(&d, "POST", "/v1/projects", d.admin, body, "Idempotency-Key: k1");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    char key[300] = "Idempotency-Key: ";
    memset(key + strlen(key), 'a', 256);
    r = http(&d, "POST", "/v1/datasets", d.admin, body, key);
    expect_error(r, 400, "invalid_value", "Idempotency-Key");
    reply_free(r);
    /* Keys are per token: another admin's k1 is a new request. */
    char other[128];
    make_token(&d, "root2", "admin", other);
    r = expect_ok(http(&d, "POST", "/v1/datasets", other, body, "Idempotency-Key: k1"));
    ck_assert(!r->replayed);
    ck_assert_int_ne(reply_id(r), id);
    reply_free(r);
    /* A failed request stores nothing under its key. */
    r = http(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"\"}", "Idempotency-Key: k2");
    expect_error(r, 400, "invalid_value", "name");
    reply_free(r);
    reply_free(expect_ok(http(&d, "POST", "/v1/datasets", d.admin,
                              "{\"name\":\"fixed\",\"format\":\"sft\"}", "Idempotency-Key: k2")));

    /* An upload retried after it succeeded replays, though the dataset is full. */
    const char *file = "{\"prompt\":\"a\"}\n";
    r = expect_ok(upload(&d, id, file, strlen(file), "Idempotency-Key: up"));
    reply_free(r);
    r = expect_ok(upload(&d, id, file, strlen(file), "Idempotency-Key: up"));
    ck_assert(r->replayed);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), 1);
    reply_free(r);
    r = upload(&d, id, "{\"prompt\":\"b\"}\n", 15, "Idempotency-Key: up");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    r = upload(&d, id, file, strlen(file), "Idempotency-Key: up2");
    expect_error(r, 409, "dataset_not_empty", NULL);
    reply_free(r);

    /* Rankings and jobs too; and the keys survive a restart. */
    int64_t project = create(&d, "/v1/projects", d.admin, "{\"name\":\"p\"}");
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);
    const char *cbody = "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}";
    r = expect_ok(http(&d, "POST", cpath, d.admin, cbody, "Idempotency-Key: c"));
    int64_t c = reply_id(r);
    reply_free(r);
    const char *job = "{\"type\":\"ppo-control\",\"max_attempts\":1,\"hyperparameters\":"
                      "{\"total_steps\":1024}}";
    r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, job, "Idempotency-Key: j"));
    int64_t job_id = reply_id(r);
    reply_free(r);
    daemon_stop(&d);
    daemon_start(&d, NULL);
    r = expect_ok(http(&d, "POST", cpath, d.admin, cbody, "Idempotency-Key: c"));
    ck_assert(r->replayed);
    ck_assert_int_eq(reply_id(r), c);
    reply_free(r);
    r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, job, "Idempotency-Key: j"));
    ck_assert(r->replayed);
    ck_assert_int_eq(reply_id(r), job_id);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons", 0), 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- /metrics ------------------------------------------------------------------------ */

/* The value of the sample line that starts with prefix (then a space), or -1. */
static double sample(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

/* Scrapes /metrics until the sample has the value; returns that scrape. */
static http_reply *wait_sample(const test_daemon *d, const char *token, const char *prefix,
                               double want) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *r = expect_ok(http(d, "GET", "/metrics", token, NULL, NULL));
        double got = sample(r->body, prefix);
        if (got == want)
            return r;
        ck_assert_msg(now_ms() < deadline, "%s is %g, want %g", prefix, got, want);
        reply_free(r);
        pause_ms(5);
    }
}

START_TEST(test_prometheus_metrics) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    for (int i = 0; i < 3; i++)
        reply_free(http(&d, "GET", "/healthz", NULL, NULL, NULL));
    call_expect_error(&d, "GET", "/nowhere", NULL, NULL, 404, "unknown_route", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", NULL, NULL, 401, "missing_api_key", NULL);
    char viewer[128], annotator[128];
    make_token(&d, "vera", "viewer", viewer);
    make_token(&d, "anna", "annotator", annotator);
    call_expect_error(&d, "GET", "/metrics", annotator, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/metrics", NULL, NULL, 401, "missing_api_key", NULL);
    /* A request is counted when its response has been sent, which the
     * client may see first: wait for the last one. */
    http_reply *r = wait_sample(&d, viewer,
                                "rlhfd_http_requests_total{route=\"POST /v1/tokens\","
                                "status=\"200\"}",
                                2);
    ck_assert_msg(strncmp(r->content_type, "text/plain; version=0.0.4", 25) == 0, "%s",
                  r->content_type);
    const char *t = r->body;
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"GET /healthz\",status=\"200\"}"),
                     3);
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"unmatched\",status=\"404\"}"), 1);
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"GET /v1/jobs\",status=\"401\"}"),
                     1);
    ck_assert_int_eq(
        sample(t, "rlhfd_http_requests_total{route=\"POST /v1/tokens\",status=\"200\"}"), 2);
    ck_assert_int_eq(
        sample(t, "rlhfd_http_request_duration_seconds_bucket{route=\"GET /healthz\",le=\"+Inf\"}"),
        3);
    ck_assert_int_eq(sample(t, "rlhfd_http_request_duration_seconds_count{route=\"GET /healthz\"}"),
                     3);
    ck_assert(sample(t, "rlhfd_http_request_duration_seconds_sum{route=\"GET /healthz\"}") >= 0);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE rlhfd_http_request_duration_seconds histogram\n"));
    ck_assert_int_eq(sample(t, "rlhfd_jobs_queued"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_jobs_running"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_workers_running"), 0);
    ck_assert_int_gt(sample(t, "rlhfd_database_bytes"), 4096);
    ck_assert(sample(t, "rlhfd_database_wal_bytes") >= 0);
    reply_free(r);
    /* Queue depth follows the jobs table. */
    exec_sql(&d, "INSERT INTO jobs (type, status, config, max_attempts, created_at) VALUES "
                 "('x', 'queued', '{}', 1, 0), ('x', 'queued', '{}', 1, 0)");
    r = expect_ok(http(&d, "GET", "/metrics", d.admin, NULL, NULL));
    ck_assert_int_eq(sample(r->body, "rlhfd_jobs_queued"), 2);
    ck_assert_int_ge(sample(r->body, "rlhfd_http_requests_total{route=\"GET /metrics\",status="
                                     "\"200\"}"),
                     1);
    reply_free(r);
    kill(d.pid, SIGKILL); /* the fake jobs would fail to start; nothing to keep */
    daemon_wait(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- jobs on datasets --------------------------------------------------------------- */

/* A tiny model, so a job takes well under a second: 40 steps, a periodic
 * (resumable) checkpoint every 4. */
#define TINY_SFT_HYPERPARAMETERS                                                                   \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":40,\"checkpoint_interval\":4,\"eval_interval\":10,\"sample_interval\":0,"       \
    "\"sample_max_tokens\":8}"

/* An sft dataset of n rows, uploaded; returns its id. */
static int64_t sft_dataset(const test_daemon *d, const char *name, int n) {
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"format\":\"sft\"}", name);
    int64_t id = create(d, "/v1/datasets", d->admin, body);
    char *file = malloc((size_t)n * 128);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(file + len,
                               "{\"prompt\":\"What is %d plus %d?\",\"response\":\"%d\"}\n", i,
                               i % 7, i + i % 7);
    http_reply *r = expect_ok(upload(d, id, file, len, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), n);
    reply_free(r);
    free(file);
    return id;
}

/* POST /v1/jobs with {"type":"sft", <fields>, "hyperparameters": TINY}. */
static int64_t create_sft_job(const test_daemon *d, const char *fields) {
    char body[1024];
    snprintf(body, sizeof body, "{\"type\":\"sft\",%s,\"hyperparameters\":%s}", fields,
             TINY_SFT_HYPERPARAMETERS);
    return create(d, "/v1/jobs", d->admin, body);
}

/* The job's checkpoint of kind "final": its id and sha256. */
static int64_t final_checkpoint(const test_daemon *d, int64_t job, char sha256[65]) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/checkpoints?limit=100", (long long)job);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    int64_t id = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r->json, "data"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "final") == 0) {
            ck_assert_int_eq(id, 0);
            id = json_integer_value(json_object_get(c, "id"));
            snprintf(sha256, 65, "%s", json_string_value(json_object_get(c, "sha256")));
        }
    }
    ck_assert_msg(id > 0, "job %lld has no final checkpoint: %s", (long long)job, r->body);
    reply_free(r);
    return id;
}

/* The checkpoint's bytes (caller frees). */
static http_reply *checkpoint_content(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    ck_assert_int_lt(r->body_len, sizeof r->body - 1); /* not truncated */
    return r;
}

/* training_file / validation_file: every error names its field, nothing is
 * stored by a refused request, a job on a dataset trains on it (held-out
 * loss from validation_file), and the dataset cannot be deleted while a
 * job names it. Numbers in replies print short (0.95, not
 * 0.94999999999999996). */
START_TEST(test_sft_job_on_dataset) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t train = sft_dataset(&d, "train", 64);
    const int64_t valid = sft_dataset(&d, "valid", 8);
    const int64_t empty =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"e\",\"format\":\"sft\"}");
    const int64_t pref =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"p\",\"format\":\"preference\"}");
    const char *pref_file = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n";
    reply_free(expect_ok(upload(&d, pref, pref_file, strlen(pref_file), NULL)));

    ck_assert_int_eq(train, 1); /* the rows below that say "training_file":1 */
    struct {
        const char *body_fmt; /* %lld: a dataset id */
        int64_t dataset;
        const char *code, *param;
    } bad[] = {
        {"{\"type\":\"sft\"}", 0, "missing_required_parameter", "training_file"},
        {"{\"type\":\"sft\",\"validation_file\":%lld}", valid, "missing_required_parameter",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":\"%lld\"}", train, "invalid_type", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":-%lld}", train, "invalid_value", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", 999, "dataset_not_found", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", empty, "dataset_empty", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", pref, "invalid_dataset_format",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":%lld}", pref,
         "invalid_dataset_format", "validation_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":%lld}", empty, "dataset_empty",
         "validation_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":null}", 0, "invalid_type",
         "validation_file"},
        {"{\"type\":\"ppo-control\",\"training_file\":%lld}", train, "invalid_value",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":{\"n_head\":3}}", train,
         "invalid_hyperparameter", "hyperparameters.n_head"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, bad[i].body_fmt, (long long)bad[i].dataset);
        call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, bad[i].code, bad[i].param);
    }
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_datasets", 0), 0);

    /* Held-out loss comes only from validation_file (eval_fraction 0). */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"validation_file\":%lld,"
             "\"hyperparameters\":{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,"
             "\"batch_size\":8,\"max_steps\":10,\"eval_fraction\":0,\"eval_interval\":5,"
             "\"sample_interval\":0,\"sample_max_tokens\":8}}",
             (long long)train, (long long)valid);
    http_reply *r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, body, NULL));
    const int64_t job = json_integer_value(json_object_get(r->json, "id"));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "training_file")), train);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "validation_file")), valid);
    /* 15 significant digits in replies; the stored config keeps every bit. */
    ck_assert_msg(strstr(r->body, "\"beta2\":0.95,") && strstr(r->body, "\"min_lr_ratio\":0.1,") &&
                      strstr(r->body, "\"learning_rate\":0.001,"),
                  "%s", r->body);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = ?1 AND config LIKE "
                            "'%\"beta2\":0.94999999999999996%'",
                            job),
                     1);
    reply_free(r);
    http_reply *done = wait_job(&d, job, "succeeded", 1);
    ck_assert_int_eq(job_int(done, "training_file"), train);
    ck_assert_int_eq(job_int(done, "validation_file"), valid);
    reply_free(done);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=eval_loss,loss", (long long)job);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 10);
    json_t *last = json_object_get(json_array_get(json_object_get(r->json, "data"), 9), "metrics");
    ck_assert(json_is_real(json_object_get(last, "eval_loss")));
    ck_assert(json_object_get(
                  json_object_get(json_array_get(json_object_get(r->json, "data"), 0), "metrics"),
                  "eval_loss") == NULL);
    reply_free(r);
    /* A job without validation_file says so; listing shows both fields. */
    char fields[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld", (long long)train);
    const int64_t plain = create_sft_job(&d, fields);
    r = expect_ok(http(&d, "GET", "/v1/jobs?type=sft", d.admin, NULL, NULL));
    json_t *first = json_array_get(json_object_get(r->json, "data"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "id")), plain);
    ck_assert(json_is_null(json_object_get(first, "validation_file")));
    ck_assert_int_eq(json_integer_value(json_object_get(first, "training_file")), train);
    reply_free(r);
    reply_free(wait_job(&d, plain, "succeeded", 1));

    /* Both datasets are in use now; an unused one deletes. */
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)train);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "dataset_in_use", NULL);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)valid);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "dataset_in_use", NULL);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)empty);
    reply_free(expect_ok(http(&d, "DELETE", path, d.admin, NULL, NULL)));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Asserts job ends with the same final checkpoint, byte for byte, as the
 * uninterrupted reference job, after resuming (attempts as given). */
static void expect_resumed_like(const test_daemon *d, int64_t job, int64_t attempts,
                                int64_t reference) {
    reply_free(wait_job(d, job, "succeeded", attempts));
    ck_assert(has_event(d, job, "resumed"));
    char want_sha[65], got_sha[65];
    http_reply *want = checkpoint_content(d, final_checkpoint(d, reference, want_sha));
    http_reply *got = checkpoint_content(d, final_checkpoint(d, job, got_sha));
    ck_assert_str_eq(got_sha, want_sha);
    ck_assert_int_eq(got->body_len, want->body_len);
    ck_assert(memcmp(got->body, want->body, got->body_len) == 0);
    reply_free(want);
    reply_free(got);
}

/* A requeued sft job resumes from its last checkpoint with training state
 * and ends bit-identical to an uninterrupted run (one OpenBLAS thread per
 * worker): after SIGKILL of its worker (periodic checkpoint; the attempt
 * is used up) and after SIGTERM (the stopped-run checkpoint of a shutdown;
 * the attempt is given back). */
START_TEST(test_sft_resume_after_interruption) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t train = sft_dataset(&d, "train", 64);
    char fields[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld", (long long)train);
    const int64_t reference = create_sft_job(&d, fields);
    reply_free(wait_job(&d, reference, "succeeded", 1));
    ck_assert(!has_event(&d, reference, "resumed"));

    const int64_t killed = create_sft_job(&d, fields);
    pid_t worker;
    sqlite3 *lock = hold_running_job(&d, killed, 1, &worker);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    release_job(lock);
    expect_resumed_like(&d, killed, 2, reference);

    const int64_t stopped = create_sft_job(&d, fields);
    lock = hold_running_job(&d, stopped, 1, &worker);
    ck_assert_int_eq(kill(worker, SIGTERM), 0);
    release_job(lock);
    expect_resumed_like(&d, stopped, 1, reference);
    ck_assert(has_event(&d, stopped, "queued"));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- docs/api.md --------------------------------------------------------------------- */

/* Every route of rlhfd's own table appears in docs/api.md as a heading
 * "### `METHOD PATTERN`". */
START_TEST(test_api_docs_cover_routes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/api.md", test_repo_dir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *doc = malloc(1 << 20);
    size_t n = fread(doc, 1, (1 << 20) - 1, f);
    doc[n] = '\0';
    fclose(f);
    ck_assert_int_gt(http_route_count(), 20);
    for (size_t i = 0; i < http_route_count(); i++) {
        const char *method, *pattern;
        http_route_at(i, &method, &pattern);
        char heading[256];
        snprintf(heading, sizeof heading, "\n### `%s %s`\n", method, pattern);
        ck_assert_msg(strstr(doc, heading) != NULL, "docs/api.md does not document %s %s", method,
                      pattern);
    }
    free(doc);
}
END_TEST

Suite *server_data_suite(void) {
    Suite *s = suite_create("server_data");
    TCase *tc = tcase_create("data");
    tcase_add_test(tc, test_dataset_upload_formats);
    tcase_add_test(tc, test_dataset_upload_errors);
    tcase_add_test(tc, test_preference_collection);
    tcase_add_test(tc, test_idempotency_keys);
    tcase_add_test(tc, test_prometheus_metrics);
    tcase_add_test(tc, test_api_docs_cover_routes);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    TCase *jobs = tcase_create("jobs");
    tcase_add_test(jobs, test_sft_job_on_dataset);
    tcase_add_test(jobs, test_sft_resume_after_interruption);
    tcase_set_timeout(jobs, 120);
    suite_add_tcase(s, jobs);
    return s;
}
