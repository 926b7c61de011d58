/* Graders (engine/grader.h): every type against hand-worked scores, the
 * templates, and every validation error by its exact message. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "grader.h"
#include "suites.h"
#include "test_util.h"

/* Scores output against the row given as JSON text with the grader given
 * as JSON text; asserts both parse and the score succeeds. */
static double score_of(const char *spec, const char *output, const char *row) {
    char err[512];
    grader *g = grader_parse_text(spec, NULL, err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    json_t *item = row ? json_loads(row, 0, NULL) : NULL;
    ck_assert(row == NULL || item != NULL);
    const grader_sample s = {"a prompt", output};
    double score = NAN;
    ck_assert_msg(grader_score(g, &s, item, &score, err, sizeof err) == 0, "%s", err);
    json_decref(item);
    grader_free(g);
    return score;
}

/* The message of grader_score's failure. */
static void score_error(const char *spec, const char *output, const char *row, char *err,
                        size_t errlen) {
    grader *g = grader_parse_text(spec, NULL, err, errlen);
    ck_assert_msg(g != NULL, "%s", err);
    json_t *item = row ? json_loads(row, 0, NULL) : NULL;
    const grader_sample s = {NULL, output};
    double score;
    ck_assert_int_eq(grader_score(g, &s, item, &score, err, errlen), -1);
    json_decref(item);
    grader_free(g);
}

#define CHECK(op, ref)                                                                             \
    "{\"type\":\"string_check\",\"input\":\"{{sample.output_text}}\","                             \
    "\"reference\":\"" ref "\",\"operation\":\"" op "\"}"

START_TEST(test_string_check) {
    const char *row = "{\"answer\": \"Paris\"}";
    ck_assert_double_eq(score_of(CHECK("eq", "{{item.answer}}"), "Paris", row), 1);
    ck_assert_double_eq(score_of(CHECK("eq", "{{item.answer}}"), "paris", row), 0);
    ck_assert_double_eq(score_of(CHECK("ne", "{{item.answer}}"), "paris", row), 1);
    ck_assert_double_eq(score_of(CHECK("ne", "{{item.answer}}"), "Paris", row), 0);
    ck_assert_double_eq(score_of(CHECK("like", "{{item.answer}}"), "It is Paris.", row), 1);
    ck_assert_double_eq(score_of(CHECK("like", "{{item.answer}}"), "It is PARIS.", row), 0);
    ck_assert_double_eq(score_of(CHECK("ilike", "{{item.answer}}"), "It is PARIS.", row), 1);
    ck_assert_double_eq(score_of(CHECK("ilike", "{{item.answer}}"), "It is Rome.", row), 0);
}
END_TEST

/* Substitution: spaces in braces, literal text around variables, nested
 * paths with indices, numbers as JSON text, the sample parsed as JSON. */
START_TEST(test_templates) {
    const char *row = "{\"q\": {\"answers\": [{\"text\": \"x\"}, {\"text\": \"yes\"}]}, "
                      "\"n\": 42, \"r\": 0.5, \"list\": [1, 2]}";
    ck_assert_double_eq(score_of(CHECK("eq", "A:{{ item.q.answers[1].text }}!"), "A:yes!", row), 1);
    ck_assert_double_eq(score_of(CHECK("eq", "{{item.n}}"), "42", row), 1);
    ck_assert_double_eq(score_of(CHECK("eq", "{{item.r}}/{{item.list}}"), "0.5/[1,2]", row), 1);
    ck_assert_double_eq(score_of(CHECK("eq", "{{item.list[0]}}{{item.n}}"), "142", row), 1);
    const char *json_check = "{\"type\":\"string_check\",\"input\":\"{{sample.output_json.name}}\","
                             "\"reference\":\"{{item.name}}\",\"operation\":\"eq\"}";
    ck_assert_double_eq(score_of(json_check, "{\"name\": \"Ann\"}", "{\"name\": \"Ann\"}"), 1);
    /* not JSON, or JSON without the field: the sample's fault, scored 0 */
    ck_assert_double_eq(score_of(json_check, "Ann", "{\"name\": \"Ann\"}"), 0);
    ck_assert_double_eq(score_of(json_check, "{\"nom\": \"Ann\"}", "{\"name\": \"Ann\"}"), 0);
    char err[512];
    score_error(CHECK("eq", "{{item.answer}}"), "x", "{\"question\": \"?\"}", err, sizeof err);
    ck_assert_str_eq(err, "grader.reference: {{item.answer}}: the dataset row has no such field");
    score_error(CHECK("eq", "{{item.a[3]}}"), "x", "{\"a\": [1]}", err, sizeof err);
    ck_assert_str_eq(err, "grader.reference: {{item.a[3]}}: the dataset row has no such field");
    score_error(CHECK("eq", "{{item.a}}"), "x", NULL, err, sizeof err);
    ck_assert_str_eq(err, "grader.reference: {{item.a}}: the dataset row has no such field");
}
END_TEST

/* fuzzy ratio = 2·LCS / (|a| + |b|):
 *   kitten / sitting: LCS "ittn" = 4 → 8/13 = 0.6153846 (rapidfuzz: 61.538)
 *   abc / abc → 1;  "" / "" → 1;  "" / abc → 0;  ab / ba: LCS 1 → 2/4 */
START_TEST(test_fuzzy_ratio) {
    ck_assert_close(grader_fuzzy_ratio("kitten", "sitting"), 8.0 / 13.0, 1e-15, 0, "kitten");
    ck_assert_close(grader_fuzzy_ratio("abc", "abc"), 1.0, 0, 0, "same");
    ck_assert_close(grader_fuzzy_ratio("", ""), 1.0, 0, 0, "both empty");
    ck_assert_close(grader_fuzzy_ratio("", "abc"), 0.0, 0, 0, "one empty");
    ck_assert_close(grader_fuzzy_ratio("ab", "ba"), 0.5, 0, 0, "swap");
    const char *spec = "{\"type\":\"text_similarity\",\"input\":\"{{sample.output_text}}\","
                       "\"reference\":\"{{item.ref}}\",\"evaluation_metric\":\"fuzzy_match\"}";
    ck_assert_close(score_of(spec, "kitten", "{\"ref\": \"sitting\"}"), 8.0 / 13.0, 1e-15, 0,
                    "grader");
}
END_TEST

/* BLEU-4, add-one smoothing for n ≥ 2:
 *   hyp "the cat sat on the mat", ref "the cat is on the mat" (c = r = 6):
 *   p1 = 5/6 (the×2, cat, on, mat), p2 = (3+1)/(5+1) (the cat, on the, the mat),
 *   p3 = (1+1)/(4+1) (on the mat), p4 = (0+1)/(3+1), BP = 1
 *   BLEU = (5/6 · 4/6 · 2/5 · 1/4)^(1/4) = (1/18)^(1/4) = 0.4855428
 *   hyp "the cat", ref of 6 words: every p_n = 1 (p3, p4 are (0+1)/(0+1)),
 *   BP = exp(1 - 6/2) = e^-2 = 0.1353353
 *   clipping: hyp "the the the", ref "the cat": p1 = 1/3, p2 = (0+1)/(2+1),
 *   p3 = (0+1)/(1+1), p4 = 1; BP = 1 → (1/3 · 1/3 · 1/2)^(1/4) = (1/18)^(1/4) */
START_TEST(test_bleu) {
    const double eighteenth = pow(1.0 / 18.0, 0.25);
    ck_assert_close(grader_bleu("the cat sat on the mat", "the cat is on the mat"), eighteenth,
                    1e-12, 0, "cat");
    ck_assert_close(grader_bleu("the cat", "the cat sat on the mat"), exp(-2.0), 1e-12, 0,
                    "brevity penalty");
    ck_assert_close(grader_bleu("the the the", "the cat"), eighteenth, 1e-12, 0, "clipping");
    ck_assert_close(grader_bleu("a b c d e", "a b c d e"), 1.0, 1e-12, 0, "identical");
    ck_assert_close(grader_bleu("x y z", "a b c"), 0.0, 0, 0, "no unigram match");
    ck_assert_close(grader_bleu("", "a b c"), 0.0, 0, 0, "empty hypothesis");
    ck_assert_close(grader_bleu("  the  cat\tsat on the\nmat ", "the cat is on the mat"),
                    eighteenth, 1e-12, 0, "whitespace tokens");
    const char *spec = "{\"type\":\"text_similarity\",\"input\":\"{{sample.output_text}}\","
                       "\"reference\":\"{{item.ref}}\",\"evaluation_metric\":\"bleu\"}";
    ck_assert_close(score_of(spec, "the cat sat on the mat", "{\"ref\":\"the cat is on the mat\"}"),
                    eighteenth, 1e-12, 0, "grader");
}
END_TEST

START_TEST(test_regex) {
    const char *spec = "{\"type\":\"regex\",\"pattern\":\"####[[:space:]]*(-?[0-9]+)\","
                       "\"reference\":\"{{item.answer}}\",\"operation\":\"number_eq\"}";
    ck_assert_double_eq(score_of(spec, "17+25 is 42 #### 42", "{\"answer\": 42}"), 1);
    ck_assert_double_eq(score_of(spec, "#### -7 then #### 3", "{\"answer\": \"-7\"}"), 1);
    ck_assert_double_eq(score_of(spec, "####42", "{\"answer\": \"42.0\"}"), 1);
    ck_assert_double_eq(score_of(spec, "#### 41", "{\"answer\": 42}"), 0);
    ck_assert_double_eq(score_of(spec, "#### 16", "{\"answer\": \"1.6e1\"}"), 1);
    ck_assert_double_eq(score_of(spec, "42", "{\"answer\": 42}"), 0); /* no match */
    const char *exact = "{\"type\":\"regex\",\"pattern\":\"answer: ([a-z]+)\","
                        "\"reference\":\"{{item.answer}}\"}"; /* eq, group 1 by default */
    ck_assert_double_eq(score_of(exact, "so the answer: paris.", "{\"answer\": \"paris\"}"), 1);
    ck_assert_double_eq(score_of(exact, "so the answer: parisian", "{\"answer\": \"paris\"}"), 0);
    const char *group0 = "{\"type\":\"regex\",\"pattern\":\"[0-9]+\",\"group\":0,"
                         "\"reference\":\"{{item.a}}\",\"operation\":\"eq\"}";
    ck_assert_double_eq(score_of(group0, "x 12 y", "{\"a\": \"12\"}"), 1);
    const char *two = "{\"type\":\"regex\",\"pattern\":\"([0-9]+)-([0-9]+)\",\"group\":2,"
                      "\"reference\":\"{{item.a}}\",\"operation\":\"eq\"}";
    ck_assert_double_eq(score_of(two, "range 3-9", "{\"a\": \"9\"}"), 1);
    char err[512];
    score_error(spec, "#### 42", "{\"answer\": \"forty-two\"}", err, sizeof err);
    ck_assert_str_eq(err, "grader.reference: 'forty-two' is not a number");
    score_error(spec, "#### 16", "{\"answer\": \"0x10\"}", err, sizeof err);
    ck_assert_str_eq(err, "grader.reference: '0x10' is not a number");
}
END_TEST

/* "hello world": 11 bytes, 2 words.
 *   bytes, max 5, penalty 0.1: d = 6 → 0.4;  bytes, [0, 20] → 1
 *   words, min 3, penalty 0.25: d = 1 → 0.75;  bytes, max 1, penalty 1: → 0 (floor) */
START_TEST(test_length) {
    ck_assert_close(
        score_of("{\"type\":\"length\",\"max_length\":5,\"penalty\":0.1}", "hello world", NULL),
        0.4, 1e-12, 0, "too long");
    ck_assert_close(
        score_of("{\"type\":\"length\",\"min_length\":0,\"max_length\":20}", "hello world", NULL),
        1.0, 0, 0, "inside");
    ck_assert_close(score_of("{\"type\":\"length\",\"unit\":\"words\",\"min_length\":3,"
                             "\"penalty\":0.25}",
                             "hello  world ", NULL),
                    0.75, 1e-12, 0, "too few words");
    ck_assert_close(score_of("{\"type\":\"length\",\"max_length\":1}", "hello world", NULL), 0.0, 0,
                    0, "floored at 0");
    ck_assert_close(score_of("{\"type\":\"length\",\"input\":\"{{item.t}}\",\"max_length\":2,"
                             "\"penalty\":0.5}",
                             "ignored", "{\"t\":\"abc\"}"),
                    0.5, 1e-12, 0, "templated input");
}
END_TEST

/* A fake reward model: the length of prompt + text, or a failure. */
static int fake_model(void *ctx, const char *model, const char *prompt, const char *text,
                      double *score, char *err, size_t errlen) {
    int *calls = ctx;
    (*calls)++;
    if (strcmp(model, "broken") == 0) {
        snprintf(err, errlen, "checkpoint missing");
        return -1;
    }
    *score = (double)(strlen(prompt) + strlen(text)) * (strcmp(model, "rm-neg") == 0 ? -1 : 1);
    return 0;
}

START_TEST(test_score_model) {
    char err[512];
    grader *g = grader_parse_text(
        "{\"type\":\"multi\",\"graders\":{"
        "\"a\":{\"type\":\"score_model\",\"model\":\"rm-1\"},"
        "\"b\":{\"type\":\"score_model\",\"model\":\"rm-neg\",\"range\":[-3, 3]}},"
        "\"calculate_output\":\"a + b\"}",
        "hyperparameters.grader", err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert_int_eq(grader_model_count(g), 2);
    ck_assert_str_eq(grader_model(g, 0), "rm-1");
    ck_assert_str_eq(grader_model(g, 1), "rm-neg");
    ck_assert_ptr_null(grader_model(g, 2));
    const grader_sample s = {"Hi", "there"}; /* 2 + 5 = 7 */
    double score;
    ck_assert_int_eq(grader_score(g, &s, NULL, &score, err, sizeof err), -1);
    ck_assert_str_eq(err, "hyperparameters.grader.graders.a.model: no reward-model scorer was "
                          "given for 'rm-1'");
    int calls = 0;
    grader_set_score_fn(g, fake_model, &calls);
    ck_assert_msg(grader_score(g, &s, NULL, &score, err, sizeof err) == 0, "%s", err);
    ck_assert_double_eq(score, 7.0 - 3.0); /* b = -7 clamped to -3 */
    ck_assert_int_eq(calls, 2);
    grader_free(g);

    g = grader_parse_text("{\"type\":\"score_model\",\"model\":\"broken\"}", NULL, err, sizeof err);
    ck_assert_int_eq(grader_model_count(g), 1);
    grader_set_score_fn(g, fake_model, &calls);
    ck_assert_int_eq(grader_score(g, &s, NULL, &score, err, sizeof err), -1);
    ck_assert_str_eq(err, "grader.model: 'broken': checkpoint missing");
    grader_free(g);
}
END_TEST

/* correct = 1 ("42" eq "42"), len = 0.4 ("hello world", max 5, penalty 0.1). */
#define MULTI(formula)                                                                             \
    "{\"type\":\"multi\",\"name\":\"combined\",\"graders\":{"                                      \
    "\"correct\":{\"type\":\"string_check\",\"input\":\"{{item.x}}\",\"reference\":\"42\","        \
    "\"operation\":\"eq\"},"                                                                       \
    "\"len\":{\"type\":\"length\",\"max_length\":5,\"penalty\":0.1}},"                             \
    "\"calculate_output\":\"" formula "\"}"

START_TEST(test_multi) {
    const char *row = "{\"x\": \"42\"}", *out = "hello world";
    ck_assert_close(score_of(MULTI("0.7 * correct + 0.3 * len"), out, row), 0.82, 1e-12, 0,
                    "weighted sum");
    ck_assert_close(score_of(MULTI("(correct + len) / 2"), out, row), 0.7, 1e-12, 0, "mean");
    ck_assert_close(score_of(MULTI("-len + 2 * -correct"), out, row), -2.4, 1e-12, 0, "unary");
    ck_assert_close(score_of(MULTI("2^3^2 - 500"), out, row), 12, 1e-9, 0, "right-assoc power");
    ck_assert_close(score_of(MULTI("2^-1"), out, row), 0.5, 0, 0, "negative exponent");
    ck_assert_close(score_of(MULTI("min(correct, len, 0.9) + max(len, 0.1)"), out, row), 0.8, 1e-12,
                    0, "min/max");
    ck_assert_close(score_of(MULTI("abs(-len) + floor(2.5) + ceil(0.2) + sqrt(4) + exp(0) + "
                                   "log(1)"),
                             out, row),
                    0.4 + 2 + 1 + 2 + 1 + 0, 1e-12, 0, "functions");
    ck_assert_close(score_of(MULTI("10 - 4 - 3"), out, row), 3, 0, 0, "left-assoc minus");
    ck_assert_close(score_of(MULTI("8 / 4 / 2"), out, row), 1, 0, 0, "left-assoc divide");
    char err[512];
    score_error(MULTI("correct / (correct - 1)"), out, row, err, sizeof err);
    ck_assert_str_eq(err, "grader.calculate_output: the result is not a finite number (inf)");
    /* the array form: names come from each grader's "name" */
    const char *array = "{\"type\":\"multi\",\"graders\":["
                        "{\"name\":\"a\",\"type\":\"string_check\",\"input\":\"x\","
                        "\"reference\":\"x\",\"operation\":\"eq\"},"
                        "{\"name\":\"b\",\"type\":\"length\",\"max_length\":0,\"penalty\":0.5}],"
                        "\"calculate_output\":\"a - b\"}";
    ck_assert_close(score_of(array, "x", NULL), 1.0 - 0.5, 1e-12, 0, "array form");
    /* the parts: each sub-grader's score by its name */
    grader *g = grader_parse_text(MULTI("0.7 * correct + 0.3 * len"), NULL, err, sizeof err);
    ck_assert_str_eq(grader_name(g), "combined");
    ck_assert_int_eq(grader_part_count(g), 2);
    ck_assert_str_eq(grader_part_name(g, 0), "correct");
    ck_assert_str_eq(grader_part_name(g, 1), "len");
    ck_assert_ptr_null(grader_part_name(g, 2));
    json_t *item = json_loads(row, 0, NULL);
    const grader_sample sample = {NULL, out};
    double score, parts[2];
    ck_assert_int_eq(grader_score_parts(g, &sample, item, &score, parts, err, sizeof err), 0);
    ck_assert_close(score, 0.82, 1e-12, 0, "score with parts");
    ck_assert_double_eq(parts[0], 1.0);
    ck_assert_close(parts[1], 0.4, 1e-12, 0, "len part");
    json_decref(item);
    grader_free(g);
    g = grader_parse_text("{\"type\":\"length\",\"max_length\":5}", NULL, err, sizeof err);
    ck_assert_str_eq(grader_name(g), "length");
    ck_assert_int_eq(grader_model_count(g), 0);
    ck_assert_int_eq(grader_part_count(g), 1);
    ck_assert_str_eq(grader_part_name(g, 0), "length");
    const grader_sample short_one = {NULL, "abc"};
    ck_assert_int_eq(grader_score_parts(g, &short_one, NULL, &score, parts, err, sizeof err), 0);
    ck_assert(score == 1.0 && parts[0] == 1.0);
    grader_free(g);
}
END_TEST

/* Every validation error, by its message (a message ending in ": " is a
 * prefix: the rest is glibc's or jansson's wording). */
START_TEST(test_validation_errors) {
    static const char *const cases[][2] = {
        {"[1]", "grader: must be a grader object"},
        {"{\"name\":\"x\"}", "grader.type: is required"},
        {"{\"type\":\"python\",\"source\":\"def grade(s, i): return 1\"}",
         "grader.type: python graders are not supported here (no user code, no LLM judge); use "
         "regex, string_check, text_similarity, length, score_model or multi"},
        {"{\"type\":\"cosine\"}",
         "grader.type: must be one of string_check, text_similarity, regex, length, score_model, "
         "multi"},
        {"{\"type\":7}",
         "grader.type: must be one of string_check, text_similarity, regex, length, score_model, "
         "multi"},
        {"{\"type\":\"length\",\"max_length\":5,\"name\":3}", "grader.name: must be a string"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\",\"opration\":\"eq\"}",
         "grader.opration: unknown field for a string_check grader"},
        {"{\"type\":\"string_check\",\"reference\":\"b\",\"operation\":\"eq\"}",
         "grader.input: is required"},
        {"{\"type\":\"string_check\",\"input\":1,\"reference\":\"b\",\"operation\":\"eq\"}",
         "grader.input: must be a string"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"operation\":\"eq\"}",
         "grader.reference: is required"},
        {"{\"type\":\"string_check\",\"input\":\"a {{sample.output_text\",\"reference\":\"b\","
         "\"operation\":\"eq\"}",
         "grader.input: \"{{\" at byte 2 is never closed"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"{{items.answer}}\","
         "\"operation\":\"eq\"}",
         "grader.reference: unknown variable {{items.answer}} (use sample.output_text, "
         "sample.output_json.<path> or item.<path>)"},
        {"{\"type\":\"string_check\",\"input\":\"{{sample.output_texts}}\",\"reference\":\"b\","
         "\"operation\":\"eq\"}",
         "grader.input: unknown variable {{sample.output_texts}} (use sample.output_text, "
         "sample.output_json.<path> or item.<path>)"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"{{item.a..b}}\","
         "\"operation\":\"eq\"}",
         "grader.reference: malformed path in {{item.a..b}}"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"{{ item.a[x] }}\","
         "\"operation\":\"eq\"}",
         "grader.reference: malformed path in {{item.a[x]}}"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\"}",
         "grader.operation: is required (one of eq, ne, like, ilike)"},
        {"{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\",\"operation\":\"number_"
         "eq\"}",
         "grader.operation: must be one of eq, ne, like, ilike"},
        {"{\"type\":\"text_similarity\",\"input\":\"a\",\"reference\":\"b\","
         "\"evaluation_metric\":\"cosine\"}",
         "grader.evaluation_metric: must be one of fuzzy_match, bleu"},
        {"{\"type\":\"text_similarity\",\"input\":\"a\",\"reference\":\"b\","
         "\"pass_threshold\":0.5,\"evaluation_metric\":\"bleu\"}",
         "grader.pass_threshold: unknown field for a text_similarity grader"},
        {"{\"type\":\"regex\",\"reference\":\"b\"}", "grader.pattern: is required"},
        {"{\"type\":\"regex\",\"pattern\":[],\"reference\":\"b\"}",
         "grader.pattern: must be a string"},
        {"{\"type\":\"regex\",\"pattern\":\"(a\",\"reference\":\"b\"}",
         "grader.pattern: not a POSIX extended regular expression: "},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\",\"group\":2,\"reference\":\"b\"}",
         "grader.group: is 2 but the pattern has 1 group"},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\",\"group\":1.5,\"reference\":\"b\"}",
         "grader.group: must be an integer"},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\",\"group\":-1,\"reference\":\"b\"}",
         "grader.group: must be >= 0"},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\",\"group\":10,\"reference\":\"b\"}",
         "grader.group: must be at most 9"},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\",\"reference\":\"b\",\"operation\":\"gt\"}",
         "grader.operation: must be one of eq, ne, like, ilike, number_eq"},
        {"{\"type\":\"regex\",\"pattern\":\"(a)\"}", "grader.reference: is required"},
        {"{\"type\":\"length\"}",
         "grader.min_length: a length grader needs min_length, max_length or both"},
        {"{\"type\":\"length\",\"min_length\":5,\"max_length\":4}",
         "grader.max_length: must be >= min_length (5)"},
        {"{\"type\":\"length\",\"max_length\":4,\"penalty\":-1}", "grader.penalty: must be >= 0"},
        {"{\"type\":\"length\",\"max_length\":\"4\"}", "grader.max_length: must be an integer"},
        {"{\"type\":\"length\",\"max_length\":4,\"unit\":\"tokens\"}",
         "grader.unit: must be one of bytes, words"},
        {"{\"type\":\"score_model\"}", "grader.model: is required"},
        {"{\"type\":\"score_model\",\"model\":\"\"}", "grader.model: must be a non-empty string"},
        {"{\"type\":\"score_model\",\"model\":\"m\",\"range\":[1,0]}",
         "grader.range: must be [low, high] with low < high"},
        {"{\"type\":\"score_model\",\"model\":\"m\",\"sampling_params\":{}}",
         "grader.sampling_params: unknown field for a score_model grader"},
        {"{\"type\":\"multi\",\"calculate_output\":\"1\"}", "grader.graders: is required"},
        {"{\"type\":\"multi\",\"graders\":3,\"calculate_output\":\"1\"}",
         "grader.graders: must be an object of named graders or an array"},
        {"{\"type\":\"multi\",\"graders\":{},\"calculate_output\":\"1\"}",
         "grader.graders: must not be empty"},
        {"{\"type\":\"multi\",\"graders\":[{\"type\":\"length\",\"max_length\":1}],"
         "\"calculate_output\":\"1\"}",
         "grader.graders[0].name: is required in an array of graders (the formula refers to it)"},
        {"{\"type\":\"multi\",\"graders\":[{\"name\":\"a\",\"type\":\"length\",\"max_length\":1},"
         "{\"name\":\"b\",\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\","
         "\"operation\":\"equals\"}],\"calculate_output\":\"a\"}",
         "grader.graders[1].operation: must be one of eq, ne, like, ilike"},
        {"{\"type\":\"multi\",\"graders\":[{\"name\":\"a\",\"type\":\"length\",\"max_length\":1},"
         "{\"name\":\"a\",\"type\":\"length\",\"max_length\":2}],\"calculate_output\":\"a\"}",
         "grader.graders: two graders are named 'a'"},
        {"{\"type\":\"multi\",\"graders\":[7],\"calculate_output\":\"1\"}",
         "grader.graders[0]: must be a grader object"},
        {"{\"type\":\"multi\",\"graders\":{\"a-b\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"1\"}",
         "grader.graders: 'a-b' is not a name a formula can use (letters, digits, _)"},
        {"{\"type\":\"multi\",\"graders\":{\"ok\":{\"type\":\"multi\",\"graders\":{\"deep\":"
         "{\"type\":\"length\",\"min_length\":-1}},\"calculate_output\":\"deep\"}},"
         "\"calculate_output\":\"ok\"}",
         "grader.graders.ok.graders.deep.min_length: must be >= 0"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}}}",
         "grader.calculate_output: is required"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":2}",
         "grader.calculate_output: must be a string"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"a + c\"}",
         "grader.calculate_output: 'c' names no grader in graders at position 4"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"a +\"}",
         "grader.calculate_output: unexpected end at position 3"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"a a\"}",
         "grader.calculate_output: unexpected text after the formula at position 2"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"(a\"}",
         "grader.calculate_output: expected ')' at position 2"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"abs(a, 1)\"}",
         "grader.calculate_output: abs takes one argument at position 9"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"max(a 1)\"}",
         "grader.calculate_output: expected ',' or ')' at position 6"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"pow(a, 2)\"}",
         "grader.calculate_output: unknown function (use min, max, abs, floor, ceil, exp, sqrt, "
         "log) at position 0"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"length\",\"max_length\":1}},"
         "\"calculate_output\":\"a * $\"}",
         "grader.calculate_output: unexpected character at position 4"},
        {"{\"type\":", "grader: not JSON: "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        grader *g = grader_parse_text(cases[i][0], NULL, err, sizeof err);
        ck_assert_msg(g == NULL, "accepted %s", cases[i][0]);
        ck_assert_msg(
            strncmp(err, cases[i][1], strlen(cases[i][1])) == 0 &&
                (strlen(err) == strlen(cases[i][1]) || cases[i][1][strlen(cases[i][1]) - 1] == ' '),
            "%s\n  gave: %s\n  want: %s", cases[i][0], err, cases[i][1]);
    }
    /* the caller's path prefixes every message */
    char err[512];
    json_t *spec = json_pack("{s:s}", "type", "regex");
    ck_assert_ptr_null(grader_parse(spec, "hyperparameters.grader", err, sizeof err));
    ck_assert_str_eq(err, "hyperparameters.grader.reference: is required");
    json_decref(spec);
}
END_TEST

Suite *grader_suite(void) {
    Suite *s = suite_create("grader");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_string_check);
    tcase_add_test(tc, test_templates);
    tcase_add_test(tc, test_fuzzy_ratio);
    tcase_add_test(tc, test_bleu);
    tcase_add_test(tc, test_regex);
    tcase_add_test(tc, test_length);
    tcase_add_test(tc, test_score_model);
    tcase_add_test(tc, test_multi);
    tcase_add_test(tc, test_validation_errors);
    suite_add_tcase(s, tc);
    return s;
}
