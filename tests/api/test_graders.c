/* POST /v1/graders/run: a grader scores one sample against an item, with
 * the sub-scores of a multi grader; bad graders and bodies are refused
 * naming the field; annotators may not run graders. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "arith_task.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

static double reward_of(http_reply *r) {
    return json_number_value(json_object_get(r->json, "reward"));
}

START_TEST(test_graders_run) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    /* the arithmetic task's exact-answer regex grader: right, then wrong */
    const char *ok = "{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":\" 42 \","
                     "\"item\":{\"prompt\":\"17+25=\",\"answer\":\"42\"}}";
    http_reply *r = expect_ok(http(&d, "POST", "/v1/graders/run", d.admin, ok, NULL));
    ck_assert_double_eq(reward_of(r), 1.0);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")), "grader_run");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r->json, "metadata"), "type")), "regex");
    reply_free(r);
    const char *wrong = "{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":\"43\","
                        "\"item\":{\"answer\":\"42\"}}";
    char viewer[128], annotator[128];
    make_token(&d, "view", "viewer", viewer);
    make_token(&d, "ann", "annotator", annotator);
    r = expect_ok(http(&d, "POST", "/v1/graders/run", viewer, wrong, NULL));
    ck_assert_double_eq(reward_of(r), 0.0);
    reply_free(r);
    /* multi: 0.7 · exact + 0.3 · length (1 inside 1..3 bytes; "42" is 2) */
    const char *multi =
        "{\"grader\":{\"type\":\"multi\",\"graders\":{\"exact\":" ARITH_TASK_GRADER_JSON
        ",\"short\":{\"type\":\"length\",\"min_length\":1,\"max_length\":3}},"
        "\"calculate_output\":\"0.7 * exact + 0.3 * short\"},\"model_sample\":\"42\","
        "\"item\":{\"answer\":\"41\"}}";
    r = expect_ok(http(&d, "POST", "/v1/graders/run", d.admin, multi, NULL));
    ck_assert_double_eq_tol(reward_of(r), 0.3, 1e-12);
    json_t *sub = json_object_get(r->json, "sub_rewards");
    ck_assert_double_eq(json_number_value(json_object_get(sub, "exact")), 0.0);
    ck_assert_double_eq(json_number_value(json_object_get(sub, "short")), 1.0);
    reply_free(r);

    struct {
        const char *body, *code, *param;
    } bad[] = {
        {"{\"model_sample\":\"x\"}", "missing_required_parameter", "grader"},
        {"{\"grader\":" ARITH_TASK_GRADER_JSON "}", "missing_required_parameter", "model_sample"},
        {"{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":1}", "invalid_type",
         "model_sample"},
        {"{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":\"1\",\"item\":[]}",
         "invalid_type", "item"},
        {"{\"grader\":{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\","
         "\"operation\":\"is\"},\"model_sample\":\"1\"}",
         "invalid_grader", "grader.operation"},
        {"{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":\"1\",\"item\":{}}",
         "grader_failed", "grader.reference"},
        {"{\"grader\":" ARITH_TASK_GRADER_JSON ",\"model_sample\":\"1\",\"extra\":1}",
         "unknown_parameter", "extra"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        call_expect_error(&d, "POST", "/v1/graders/run", d.admin, bad[i].body, 400, bad[i].code,
                          bad[i].param);
    r = http(&d, "POST", "/v1/graders/run", annotator, ok, NULL);
    ck_assert_int_eq(r->status, 403);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *graders_suite(void) {
    Suite *s = suite_create("graders");
    TCase *tc = tcase_create("run");
    tcase_add_test(tc, test_graders_run);
    suite_add_tcase(s, tc);
    return s;
}
