/* server/openai_ids: the string ids of the OpenAI-compatible surface and
 * the fine-tuned model names, made and parsed back, and what is refused. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "openai_ids.h"
#include "suites.h"

START_TEST(test_ids_round_trip) {
    char id[32];
    openai_id_format(id, sizeof id, OPENAI_ID_JOB, 42);
    ck_assert_str_eq(id, "ftjob-42");
    ck_assert_int_eq(openai_id_parse(id, OPENAI_ID_JOB), 42);
    openai_id_format(id, sizeof id, OPENAI_ID_FILE, 7);
    ck_assert_str_eq(id, "file-7");
    ck_assert_int_eq(openai_id_parse("ftevent-123456789012345678", OPENAI_ID_EVENT),
                     123456789012345678LL);
    ck_assert_int_eq(openai_id_parse("ftckpt-9", OPENAI_ID_CKPT), 9);
    /* wrong prefix, no digits, zero, a leading zero, a sign, trailing text,
     * too many digits, NULL */
    const char *const bad[] = {
        "file-7x", "file-",   "file-0", "file-07", "file--7",
        "file-+7", "ftjob-7", "7",      "file-7 ", "file-1234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(openai_id_parse(bad[i], OPENAI_ID_FILE) == -1, "%s", bad[i]);
    ck_assert_int_eq(openai_id_parse(NULL, OPENAI_ID_FILE), -1);
}
END_TEST

START_TEST(test_model_names_round_trip) {
    char name[OPENAI_MODEL_NAME_BYTES];
    int64_t job, ckpt;
    openai_model_name(name, sizeof name, "scratch", "mine", 3, 0);
    ck_assert_str_eq(name, "ft:scratch:mine:ftjob-3");
    ck_assert_int_eq(openai_model_parse(name, &job, &ckpt), 1);
    ck_assert_int_eq(job, 3);
    ck_assert_int_eq(ckpt, 0);
    /* a fine-tune of a fine-tune keeps the base; no suffix leaves it empty */
    openai_model_name(name, sizeof name, "ft:scratch:mine:ftjob-3", NULL, 11, 25);
    ck_assert_str_eq(name, "ft:scratch::ftjob-11:ftckpt-25");
    ck_assert_int_eq(openai_model_parse(name, &job, &ckpt), 1);
    ck_assert_int_eq(job, 11);
    ck_assert_int_eq(ckpt, 25);
    openai_model_name(name, sizeof name, "ftckpt-5", "a.b", 2, 0);
    ck_assert_str_eq(name, "ft:ftckpt-5:a.b:ftjob-2");
    ck_assert_int_eq(openai_model_parse(name, &job, &ckpt), 1);
    ck_assert_int_eq(job, 2);
    const char *const bad[] = {"scratch",         "ft:scratch:mine:job-3",  "ft:x:y:ftjob-0",
                               "ft:x:y:ftckpt-4", "ft:x:y:ftjob-:ftckpt-4", "gpt-4o:ftjob-3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(openai_model_parse(bad[i], &job, &ckpt) == 0, "%s", bad[i]);
}
END_TEST

Suite *openai_ids_suite(void) {
    Suite *s = suite_create("openai_ids");
    TCase *tc = tcase_create("openai_ids");
    tcase_add_test(tc, test_ids_round_trip);
    tcase_add_test(tc, test_model_names_round_trip);
    suite_add_tcase(s, tc);
    return s;
}
