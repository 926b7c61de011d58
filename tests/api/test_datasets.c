/* /v1/datasets and their streamed JSONL uploads: every format, and every way
 * an upload is refused (naming the line and field, storing nothing).
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* An upload that must fail at line with code and param, storing nothing. */
static void expect_bad_upload(const test_daemon *d, int64_t id, const char *body, size_t len,
                              const char *code, const char *param, int64_t line) {
    http_reply *r = upload_dataset(d, id, body, len, NULL);
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
    http_reply *r = expect_ok(upload_dataset(&d, sft, sft_file, strlen(sft_file), NULL));
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
    r = expect_ok(upload_dataset(&d, pref, pref_file, strlen(pref_file), NULL));
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
    reply_free(expect_ok(upload_dataset(&d, prompts, prompt_file, strlen(prompt_file), NULL)));
    /* One upload per dataset. */
    r = upload_dataset(&d, prompts, prompt_file, strlen(prompt_file), NULL);
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
    http_reply *r = upload_dataset(&d, sft, huge, 3100000, NULL);
    expect_error(r, 413, "body_too_large", NULL);
    reply_free(r);
    r = upload_dataset(&d, sft, huge, 3100000, "Transfer-Encoding: chunked");
    expect_error(r, 413, "body_too_large", NULL);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows", 0), 0);
    /* Just under the cap, chunked: accepted. */
    r = expect_ok(upload_dataset(&d, sft, huge, 2999968, "Transfer-Encoding: chunked"));
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

Suite *datasets_suite(void) {
    Suite *s = suite_create("datasets");
    TCase *tc = tcase_create("datasets");
    tcase_add_test(tc, test_dataset_upload_formats);
    tcase_add_test(tc, test_dataset_upload_errors);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
