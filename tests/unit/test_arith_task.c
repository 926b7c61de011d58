/* The arithmetic task (engine/arith_task.h): prompts and answers, the
 * split, determinism, the dataset writers and the grader that checks it. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "arith_task.h"
#include "grader.h"
#include "suites.h"
#include "test_util.h"
#include "tokenizer.h"

START_TEST(test_prompts_and_answers) {
    char buf[32];
    const arith_problem add = {17, 25, '+'}, sub = {30, 4, '-'};
    arith_task_prompt(&add, buf, sizeof buf);
    ck_assert_str_eq(buf, "17+25=");
    arith_task_answer_text(&add, buf, sizeof buf);
    ck_assert_str_eq(buf, "42");
    arith_task_prompt(&sub, buf, sizeof buf);
    ck_assert_str_eq(buf, "30-4=");
    ck_assert_int_eq(arith_task_answer(&sub), 26);
    arith_problem p;
    ck_assert_int_eq(arith_task_parse_prompt("30-4=", &p), 0);
    ck_assert(p.a == 30 && p.b == 4 && p.op == '-');
    ck_assert_int_eq(arith_task_parse_prompt("0+0=", &p), 0);
    static const char *const bad[] = {
        "", "17+25", "17+25=1", "+2=", "1*2=", "1+=", "12345+1=", " 1+2=", "1+-2="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(arith_task_parse_prompt(bad[i], &p) == -1, "accepted '%s'", bad[i]);
    /* the byte-level tokenizer: one token a character */
    tokenizer tok;
    char err[128];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    int32_t ids[16];
    ck_assert_int_eq(tokenizer_encode(&tok, "17+25=", 6, ids, 16, false), 6);
    ck_assert_int_eq(ids[2], '+');
    tokenizer_free(&tok);
}
END_TEST

/* Over every problem of the default config (2 · 100 · 100 additions and
 * ordered subtractions): the held-out share is near 20 %, draws stay in
 * their split, and another split seed gives another split. */
START_TEST(test_split) {
    arith_task_config cfg = arith_task_default_config();
    int heldout = 0, total = 0, moved = 0;
    arith_task_config other = cfg;
    other.split_seed = 17;
    for (int a = 0; a <= 99; a++)
        for (int b = 0; b <= 99; b++) {
            const arith_problem p = {a, b, '+'};
            heldout += arith_task_is_heldout(&cfg, &p);
            moved += arith_task_is_heldout(&cfg, &p) != arith_task_is_heldout(&other, &p);
            total++;
        }
    /* binomial(10000, 0.2): sd 40, so ±5 sd is ±200 */
    ck_assert_msg(heldout > 1800 && heldout < 2200, "held out %d of %d", heldout, total);
    ck_assert_msg(moved > 2000, "another split seed moved only %d problems", moved);
    rng_state rng;
    rng_seed(&rng, 5, 0);
    int subtractions = 0;
    for (int i = 0; i < 2000; i++) {
        arith_problem p;
        const arith_split split = i % 2 ? ARITH_SPLIT_HELDOUT : ARITH_SPLIT_TRAIN;
        arith_task_draw(&cfg, split, &rng, &p);
        ck_assert_int_eq(arith_task_is_heldout(&cfg, &p), split == ARITH_SPLIT_HELDOUT);
        ck_assert(p.a >= 0 && p.a <= 99 && p.b >= 0 && p.b <= 99);
        ck_assert(p.op == '+' || (p.op == '-' && p.a >= p.b));
        subtractions += p.op == '-';
    }
    ck_assert_msg(subtractions > 850 && subtractions < 1150, "%d subtractions", subtractions);
    cfg.subtraction = false;
    for (int i = 0; i < 200; i++) {
        arith_problem p;
        arith_task_draw(&cfg, ARITH_SPLIT_TRAIN, &rng, &p);
        ck_assert_int_eq(p.op, '+');
    }
}
END_TEST

/* Reads the JSON lines of f (rewound) into an array. */
static json_t *read_rows(FILE *f) {
    rewind(f);
    json_t *rows = json_array();
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        json_error_t jerr;
        json_t *row = json_loads(line, 0, &jerr);
        ck_assert_msg(row != NULL, "not JSON: %s (%s)", line, jerr.text);
        json_array_append_new(rows, row);
    }
    return rows;
}

START_TEST(test_sft_writer) {
    const arith_task_config cfg = arith_task_default_config();
    char err[128];
    FILE *f = tmpfile(), *again = tmpfile(), *all_right = tmpfile();
    ck_assert_int_eq(arith_task_write_sft(f, &cfg, 1000, 3, 0.5, err, sizeof err), 0);
    ck_assert_int_eq(arith_task_write_sft(again, &cfg, 1000, 3, 0.5, err, sizeof err), 0);
    ck_assert_int_eq(arith_task_write_sft(all_right, &cfg, 300, 4, 1.0, err, sizeof err), 0);
    json_t *rows = read_rows(f), *rows_again = read_rows(again), *right = read_rows(all_right);
    ck_assert_int_eq((int)json_array_size(rows), 1000);
    ck_assert_msg(json_equal(rows, rows_again), "the same seed writes the same rows");
    int correct = 0;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        ck_assert_int_eq((int)json_object_size(row), 2);
        arith_problem p;
        ck_assert_int_eq(
            arith_task_parse_prompt(json_string_value(json_object_get(row, "prompt")), &p), 0);
        ck_assert(!arith_task_is_heldout(&cfg, &p));
        const long got = strtol(json_string_value(json_object_get(row, "response")), NULL, 10);
        const long want = (long)arith_task_answer(&p);
        ck_assert_msg(got >= 0 && labs(got - want) <= 2, "%ld for %ld", got, want);
        correct += got == want;
    }
    /* binomial(1000, 0.5): sd 16, ±5 sd */
    ck_assert_msg(correct > 420 && correct < 580, "%d correct of 1000", correct);
    for (size_t i = 0; i < json_array_size(right); i++) {
        arith_problem p;
        json_t *row = json_array_get(right, i);
        arith_task_parse_prompt(json_string_value(json_object_get(row, "prompt")), &p);
        char want[32];
        arith_task_answer_text(&p, want, sizeof want);
        ck_assert_str_eq(json_string_value(json_object_get(row, "response")), want);
    }
    ck_assert_int_eq(arith_task_write_sft(f, &cfg, 1, 3, 1.5, err, sizeof err), -1);
    ck_assert_str_eq(err, "correct_fraction: must be in [0, 1]");
    json_decref(rows), json_decref(rows_again), json_decref(right);
    fclose(f), fclose(again), fclose(all_right);
}
END_TEST

/* The prompt rows and the task's grader together: the right answer scores
 * 1 on every held-out row, near misses and malformed answers 0. */
START_TEST(test_prompts_with_grader) {
    const arith_task_config cfg = arith_task_default_config();
    char err[256];
    grader *g = grader_parse_text(ARITH_TASK_GRADER_JSON, NULL, err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert_str_eq(grader_name(g), "exact_answer");
    FILE *f = tmpfile();
    ck_assert_int_eq(
        arith_task_write_prompts(f, &cfg, ARITH_SPLIT_HELDOUT, 200, 9, err, sizeof err), 0);
    json_t *rows = read_rows(f);
    ck_assert_int_eq((int)json_array_size(rows), 200);
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *row = json_array_get(rows, i);
        const char *prompt = json_string_value(json_object_get(row, "prompt"));
        arith_problem p;
        ck_assert_int_eq(arith_task_parse_prompt(prompt, &p), 0);
        ck_assert(arith_task_is_heldout(&cfg, &p));
        char right[32], wrong[32];
        arith_task_answer_text(&p, right, sizeof right);
        ck_assert_str_eq(json_string_value(json_object_get(row, "answer")), right);
        snprintf(wrong, sizeof wrong, "%lld", (long long)arith_task_answer(&p) + 1);
        double score;
        grader_sample s = {prompt, right};
        ck_assert_int_eq(grader_score(g, &s, row, &score, err, sizeof err), 0);
        ck_assert_double_eq(score, 1);
        s.output_text = wrong;
        ck_assert_int_eq(grader_score(g, &s, row, &score, err, sizeof err), 0);
        ck_assert_double_eq(score, 0);
    }
    json_t *item = json_pack("{s:s, s:s}", "prompt", "17+25=", "answer", "42");
    static const struct {
        const char *output;
        double score;
    } cases[] = {{"42", 1},  {" 42\n", 1}, {"042", 1}, {"42 43", 0},    {"42abc", 0},
                 {"4 2", 0}, {"", 0},      {"-42", 0}, {"forty-two", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const grader_sample s = {"17+25=", cases[i].output};
        double score;
        ck_assert_int_eq(grader_score(g, &s, item, &score, err, sizeof err), 0);
        ck_assert_msg(score == cases[i].score, "'%s' scored %g", cases[i].output, score);
    }
    json_decref(item), json_decref(rows);
    fclose(f);
    grader_free(g);
}
END_TEST

START_TEST(test_validation) {
    char err[128];
    arith_task_config cfg = arith_task_default_config();
    ck_assert_int_eq(arith_task_validate(&cfg, err, sizeof err), 0);
    cfg.max_operand = 0;
    ck_assert_int_eq(arith_task_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "max_operand: must be in [1, 9999]");
    cfg = arith_task_default_config();
    cfg.heldout_fraction = 1;
    ck_assert_int_eq(arith_task_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "heldout_fraction: must be in (0, 1)");
    FILE *f = tmpfile();
    ck_assert_int_eq(arith_task_write_prompts(f, &cfg, ARITH_SPLIT_TRAIN, 1, 1, err, sizeof err),
                     -1);
    fclose(f);
}
END_TEST

Suite *arith_task_suite(void) {
    Suite *s = suite_create("arith_task");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_prompts_and_answers);
    tcase_add_test(tc, test_split);
    tcase_add_test(tc, test_sft_writer);
    tcase_add_test(tc, test_prompts_with_grader);
    tcase_add_test(tc, test_validation);
    suite_add_tcase(s, tc);
    return s;
}
