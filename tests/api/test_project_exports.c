/* GET /v1/projects/{id}/export (server/export_store.h): TRL, TRL
 * conversational, OpenAI DPO and CSV, each filter on hand-counted data,
 * and the per-annotator exclusion that exports honour.
 *
 * The data: three annotators P, Q, R rank two comparisons of two
 * candidates. "one": all rank a over b (agreement 1). "two": P and Q rank
 * c over d, R ranks d over c: of the three pairs of rankings one agrees,
 * so its agreement is 1/3. Six pairs in all, one per ranking, in the order
 * P1 Q1 R1 P2 Q2 R2.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

#define PROMPT_TWO "two, with \\\"quote\\\""

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The number of lines the export with query q answers (asserting 200). */
static size_t export_lines(const test_daemon *d, int64_t project, const char *q) {
    char path[256];
    snprintf(path, sizeof path, "/v1/projects/%lld/export%s", (long long)project, q);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    size_t n = count_lines(r->body);
    reply_free(r);
    return n;
}

static void rank_first_over_second(const test_daemon *d, int64_t comparison, const char *token,
                                   bool first_best) {
    char path[96];
    snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)comparison);
    http_reply *c = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *cands = json_object_get(c->json, "candidates");
    const long long a = json_integer_value(json_object_get(json_array_get(cands, 0), "id"));
    const long long b = json_integer_value(json_object_get(json_array_get(cands, 1), "id"));
    reply_free(c);
    char body[96];
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", first_best ? a : b,
             first_best ? b : a);
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)comparison);
    reply_free(expect_ok(http(d, "POST", path, token, body, NULL)));
}

/* GET the project's agreement: its n_rankings, after checking that it
 * lists n_annotators annotators and none named absent (may be NULL). */
static int64_t agreement_rankings(const test_daemon *d, int64_t project, size_t n_annotators,
                                  const char *absent) {
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/agreement", (long long)project);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *annotators = json_object_get(r->json, "annotators");
    ck_assert_uint_eq(json_array_size(annotators), n_annotators);
    for (size_t i = 0; absent != NULL && i < n_annotators; i++)
        ck_assert_str_ne(
            json_string_value(json_object_get(json_array_get(annotators, i), "annotator")), absent);
    const int64_t n = json_integer_value(json_object_get(r->json, "n_rankings"));
    reply_free(r);
    return n;
}

START_TEST(test_export_formats_and_filters) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", "--read-rate", "0", NULL);
    const int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"x\",\"k\":2,\"overlap\":3}");
    char tok[3][128];
    int64_t id[3];
    const char *const names[3] = {"P", "Q", "R"};
    for (int i = 0; i < 3; i++) {
        id[i] = make_token(&d, names[i], "annotator", tok[i]);
        grant_project(&d, project, id[i]);
    }
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);
    const int64_t one =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"one\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    const int64_t two = create(&d, cpath, d.admin,
                               "{\"prompt\":\"" PROMPT_TWO "\",\"candidates\":[{\"text\":\"c\"},"
                               "{\"text\":\"d\"}]}");
    for (int i = 0; i < 3; i++)
        rank_first_over_second(&d, one, tok[i], true);
    for (int i = 0; i < 3; i++)
        rank_first_over_second(&d, two, tok[i], i < 2);

    char path[256];
    snprintf(path, sizeof path, "/v1/projects/%lld/export", (long long)project);
    http_reply *r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/x-ndjson");
    ck_assert_int_eq(count_lines(r->body), 6);
    ck_assert(strncmp(r->body, "{\"prompt\":\"one\",\"chosen\":\"a\",\"rejected\":\"b\"}\n", 45) ==
              0);
    ck_assert_ptr_nonnull(
        strstr(r->body, "{\"prompt\":\"" PROMPT_TWO "\",\"chosen\":\"d\",\"rejected\":\"c\"}\n"));
    reply_free(r);
    snprintf(path, sizeof path, "/v1/projects/%lld/export?format=trl_conversational",
             (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    const char *conversational_first =
        "{\"prompt\":[{\"role\":\"user\",\"content\":\"one\"}],\"chosen\":[{\"role\":"
        "\"assistant\",\"content\":\"a\"}],\"rejected\":[{\"role\":\"assistant\","
        "\"content\":\"b\"}]}\n";
    ck_assert(strncmp(r->body, conversational_first, strlen(conversational_first)) == 0);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/projects/%lld/export?format=openai", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    const char *openai_first =
        "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]},\"preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"a\"}],\"non_preferred_output\":[{\"role\":"
        "\"assistant\",\"content\":\"b\"}]}\n";
    ck_assert(strncmp(r->body, openai_first, strlen(openai_first)) == 0);
    /* what OpenAI's format is for: a preference dataset takes it back */
    const int64_t ds = create_dataset(&d, "preference", r->body);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", ds), 6);
    reply_free(r);

    /* CSV: a header, RFC 4180 quoting, the retired flag. */
    snprintf(path, sizeof path, "/v1/comparisons/%lld/retire", (long long)two);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)));
    snprintf(path, sizeof path, "/v1/projects/%lld/export?format=csv", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(r->content_type, "text/csv; charset=utf-8");
    ck_assert_int_eq(count_lines(r->body), 7);
    const char *csv_head = "pair_id,comparison_id,ranking_id,annotator,prompt,chosen,rejected,"
                           "created_at,retired\n1,1,1,P,one,a,b,";
    ck_assert(strncmp(r->body, csv_head, strlen(csv_head)) == 0);
    ck_assert_ptr_nonnull(strstr(r->body, "\n6,2,6,R,\"two, with \"\"quote\"\"\",d,c,"));
    ck_assert(strcmp(r->body + r->body_len - 6, ",true\n") == 0);
    ck_assert_ptr_nonnull(strstr(r->body, ",false\n2,1,2,Q,"));
    reply_free(r);

    /* Filters, counted by hand (see the top). */
    char q[128];
    ck_assert_int_eq(export_lines(&d, project, "?exclude_retired=1"), 3);
    ck_assert_int_eq(export_lines(&d, project, "?min_agreement=0.5"), 3);
    ck_assert_int_eq(export_lines(&d, project, "?min_agreement=0.33"), 6);
    ck_assert_int_eq(export_lines(&d, project, "?min_agreement=0.34"), 3);
    ck_assert_int_eq(export_lines(&d, project, "?min_agreement=0"), 6);
    snprintf(q, sizeof q, "?annotators=%lld", (long long)id[0]);
    ck_assert_int_eq(export_lines(&d, project, q), 2);
    snprintf(q, sizeof q, "?annotators=%lld,%lld", (long long)id[0], (long long)id[1]);
    ck_assert_int_eq(export_lines(&d, project, q), 4);
    snprintf(q, sizeof q, "?exclude_annotators=%lld", (long long)id[2]);
    ck_assert_int_eq(export_lines(&d, project, q), 4);
    snprintf(q, sizeof q, "?annotators=%lld&exclude_annotators=%lld", (long long)id[0],
             (long long)id[0]);
    ck_assert_int_eq(export_lines(&d, project, q), 0);
    ck_assert_int_eq(export_lines(&d, project, "?since=1"), 6);
    ck_assert_int_eq(export_lines(&d, project, "?until=1"), 0);
    ck_assert_int_eq(export_lines(&d, project, "?since=99999999999"), 0);
    ck_assert_int_eq(export_lines(&d, project, "?format=csv&exclude_gold=1"), 7);
    static const struct {
        const char *q, *param;
    } bad[] = {{"?format=jsonl", "format"},
               {"?min_agreement=2", "min_agreement"},
               {"?min_agreement=x", "min_agreement"},
               {"?annotators=a", "annotators"},
               {"?exclude_annotators=1,", "exclude_annotators"},
               {"?since=-1", "since"},
               {"?exclude_retired=2", "exclude_retired"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "/v1/projects/%lld/export%s", (long long)project, bad[i].q);
        call_expect_error(&d, "GET", path, d.admin, NULL, 400, "invalid_value", bad[i].param);
    }

    /* An excluded annotator: out of every export and of the agreement; the
     * rankings stay and come back when included. The agreement is read
     * before too, so a cached answer that survived the exclusion fails. */
    int64_t agreed_rankings = agreement_rankings(&d, project, 3, NULL);
    snprintf(path, sizeof path, "/v1/projects/%lld/annotators/%lld/exclude", (long long)project,
             (long long)id[2]);
    r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    ck_assert(json_is_true(json_object_get(r->json, "excluded")));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")), 2);
    reply_free(r);
    ck_assert_int_eq(export_lines(&d, project, ""), 4);
    ck_assert_int_eq(export_lines(&d, project, "?min_agreement=0.5"), 4);
    static const char *const raw[] = {"pairs.jsonl", "rankings.jsonl"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/v1/projects/%lld/%s", (long long)project, raw[i]);
        r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
        ck_assert_int_eq(count_lines(r->body), 4);
        ck_assert_ptr_null(strstr(r->body, "\"annotator\":\"R\""));
        reply_free(r);
    }
    ck_assert_int_eq(agreement_rankings(&d, project, 2, "R"), agreed_rankings - 2);
    snprintf(path, sizeof path, "/v1/projects/%lld/annotators", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 0), "name")), "R");
    ck_assert(json_is_true(json_object_get(json_array_get(data, 0), "excluded")));
    ck_assert(json_is_false(json_object_get(json_array_get(data, 1), "excluded")));
    reply_free(r);
    snprintf(path, sizeof path, "/v1/projects/%lld/annotators/%lld/include", (long long)project,
             (long long)id[2]);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)));
    ck_assert_int_eq(export_lines(&d, project, ""), 6);
    ck_assert_int_eq(agreement_rankings(&d, project, 3, NULL), agreed_rankings);
    snprintf(path, sizeof path, "/v1/projects/%lld/annotators/999/exclude", (long long)project);
    call_expect_error(&d, "POST", path, d.admin, NULL, 404, "token_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *project_exports_suite(void) {
    Suite *s = suite_create("project_exports");
    TCase *tc = tcase_create("project_exports");
    tcase_add_test(tc, test_export_formats_and_filters);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
