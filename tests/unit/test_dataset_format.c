/* common/dataset_format.h: every line format of every dataset format, parsed
 * by the one parser and accepted alike by both of its users — rlhf-train
 * reading a JSONL file (train/jsonl_data.h) and rlhfd's upload (a real
 * daemon, the rows it stores, and a reward job reading K-wise rows back
 * from the database); bad lines named by line and field on both paths; and
 * the largest K, one number in the engine, the parser and the schema. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset_format.h"
#include "db.h"
#include "jsonl_data.h"
#include "ranking_limits.h"
#include "suites.h"
#include "test_server_util.h"

/* ---- the parser ------------------------------------------------------------ */

/* Parses text as a row of format, taking chat rows when chat (rlhf-train's
 * files) or not (rlhfd's upload): 0 or -1 (e filled). */
static int parse_as(const char *text, dataset_format format, bool chat, dataset_row *row,
                    dataset_error *e, json_t **line) {
    json_error_t jerr;
    *line = json_loads(text, 0, &jerr);
    ck_assert_msg(*line != NULL, "%s: %s", text, jerr.text);
    return dataset_row_parse_chat(*line, format, RANKING_MAX_K, chat, row, e);
}

static int parse(const char *text, dataset_format format, dataset_row *row, dataset_error *e,
                 json_t **line) {
    return parse_as(text, format, false, row, e, line);
}

static int parse_chat(const char *text, dataset_format format, dataset_row *row, dataset_error *e,
                      json_t **line) {
    return parse_as(text, format, true, row, e, line);
}

/* A bad line: the code, the field and a message that names it. */
typedef struct bad_row {
    dataset_format format;
    const char *line, *code, *param, *message;
} bad_row;

static void assert_bad_rows(const bad_row *cases, size_t n, bool chat) {
    for (size_t i = 0; i < n; i++) {
        dataset_row row;
        dataset_error e;
        json_t *line;
        ck_assert_msg(parse_as(cases[i].line, cases[i].format, chat, &row, &e, &line) == -1,
                      "case %zu", i);
        ck_assert_msg(strcmp(e.code, cases[i].code) == 0, "case %zu: code %s", i, e.code);
        ck_assert_msg(strcmp(e.param, cases[i].param) == 0, "case %zu: param %s", i, e.param);
        ck_assert_msg(strcmp(e.message, cases[i].message) == 0, "case %zu: '%s'", i, e.message);
        json_decref(line);
    }
}

/* row is a pair: prompt, chosen ranked 0 above rejected. */
static void assert_pair(const dataset_row *row, const char *prompt, const char *chosen,
                        const char *rejected) {
    ck_assert_str_eq(row->prompt, prompt);
    ck_assert_int_eq(row->k, 2);
    ck_assert_str_eq(row->responses[0], chosen);
    ck_assert_str_eq(row->responses[1], rejected);
    ck_assert_int_eq(row->ranks[0], 0);
    ck_assert_int_eq(row->ranks[1], 1);
}

START_TEST(test_parse_every_line_format) {
    dataset_row row;
    dataset_error e;
    json_t *line;
    /* sft: prompt/response, prompt/completion, text; the prompt may be empty */
    ck_assert_int_eq(
        parse("{\"prompt\":\"2+2?\",\"response\":\"4\"}", DATASET_FORMAT_SFT, &row, &e, &line), 0);
    ck_assert_str_eq(row.prompt, "2+2?");
    ck_assert_str_eq(row.response, "4");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(
        parse("{\"prompt\":\"\",\"completion\":\"c\"}", DATASET_FORMAT_SFT, &row, &e, &line), 0);
    ck_assert_str_eq(row.prompt, "");
    ck_assert_str_eq(row.response, "c");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(parse("{\"text\":\"raw\"}", DATASET_FORMAT_SFT, &row, &e, &line), 0);
    ck_assert_str_eq(row.prompt, "");
    ck_assert_str_eq(row.response, "raw");
    dataset_row_free(&row), json_decref(line);

    /* sft: an OpenAI chat row; the response is the last message, the prompt
     * the last user message before it, the context kept */
    ck_assert_int_eq(parse("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                           "{\"role\":\"user\",\"content\":\"u1\"},"
                           "{\"role\":\"assistant\",\"content\":\"a1\"},"
                           "{\"role\":\"user\",\"content\":\"u2\"},"
                           "{\"role\":\"assistant\",\"content\":\"a2\"}]}",
                           DATASET_FORMAT_SFT, &row, &e, &line),
                     0);
    ck_assert_str_eq(row.prompt, "u2");
    ck_assert_str_eq(row.response, "a2");
    ck_assert_str_eq(row.prompt_messages,
                     "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":"
                     "\"u1\"},{\"role\":\"assistant\",\"content\":\"a1\"},{\"role\":\"user\","
                     "\"content\":\"u2\"}]");
    dataset_row_free(&row), json_decref(line);

    /* the format of a file uploaded without one, by its first line's keys */
    const struct {
        const char *line;
        dataset_format format;
    } detect[] = {
        {"{\"messages\":[]}", DATASET_FORMAT_SFT},
        {"{\"prompt\":\"p\",\"completion\":\"c\"}", DATASET_FORMAT_SFT},
        {"{\"prompt\":\"p\",\"chosen\":\"a\"}", DATASET_FORMAT_PREFERENCE},
        {"{\"input\":{}}", DATASET_FORMAT_PREFERENCE},
        {"{\"prompt\":\"p\"}", DATASET_FORMAT_PROMPTS},
        {"{\"other\":1}", DATASET_FORMAT_SFT},
    };
    for (size_t i = 0; i < sizeof detect / sizeof detect[0]; i++) {
        line = json_loads(detect[i].line, 0, NULL);
        ck_assert_msg(dataset_format_detect(line) == detect[i].format, "%s", detect[i].line);
        json_decref(line);
    }

    /* prompts: a prompt and its reference answer ("answer" before an sft
     * row's response) */
    ck_assert_int_eq(
        parse("{\"prompt\":\"p\",\"response\":\"r\"}", DATASET_FORMAT_PROMPTS, &row, &e, &line), 0);
    ck_assert_str_eq(row.prompt, "p");
    ck_assert_str_eq(row.response, "r");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(parse("{\"prompt\":\"p\",\"response\":\"r\",\"answer\":\"42\"}",
                           DATASET_FORMAT_PROMPTS, &row, &e, &line),
                     0);
    ck_assert_str_eq(row.response, "42");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(parse("{\"prompt\":\"p\"}", DATASET_FORMAT_PROMPTS, &row, &e, &line), 0);
    ck_assert_ptr_null(row.response);
    dataset_row_free(&row), json_decref(line);

    /* preference: TRL with a margin */
    ck_assert_int_eq(parse("{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\",\"margin\":1.5}",
                           DATASET_FORMAT_PREFERENCE, &row, &e, &line),
                     0);
    ck_assert_int_eq(row.k, 2);
    ck_assert(!row.kwise);
    ck_assert_str_eq(row.responses[0], "a");
    ck_assert_str_eq(row.responses[1], "b");
    ck_assert_int_eq(row.ranks[0], 0);
    ck_assert_int_eq(row.ranks[1], 1);
    ck_assert(row.has_margin);
    ck_assert(row.margin == 1.5);
    dataset_row_free(&row), json_decref(line);
    /* OpenAI: the prompt is the last user message; the messages are kept */
    ck_assert_int_eq(
        parse("{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"first\"},"
              "{\"role\":\"assistant\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"q\"}]},"
              "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"good\"}],"
              "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"bad\"}]}",
              DATASET_FORMAT_PREFERENCE, &row, &e, &line),
        0);
    assert_pair(&row, "q", "good", "bad");
    ck_assert(!row.has_margin);
    ck_assert_ptr_nonnull(strstr(row.prompt_messages, "\"first\""));
    dataset_row_free(&row), json_decref(line);
    /* K-wise with ties */
    ck_assert_int_eq(parse("{\"prompt\":\"p\",\"responses\":[\"x\",\"y\",\"z\"],\"ranks\":[1,0,1],"
                           "\"margin\":-2}",
                           DATASET_FORMAT_PREFERENCE, &row, &e, &line),
                     0);
    ck_assert(row.kwise);
    ck_assert_int_eq(row.k, 3);
    ck_assert_str_eq(row.responses[2], "z");
    ck_assert_int_eq(row.ranks[0], 1);
    ck_assert_int_eq(row.ranks[1], 0);
    ck_assert_int_eq(row.ranks[2], 1);
    ck_assert(row.margin == -2);
    dataset_row_free(&row), json_decref(line);
    /* An empty response is a response (what pairs.jsonl exports of a
     * candidate sampled empty), in every preference shape. */
    ck_assert_int_eq(parse("{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"\"}",
                           DATASET_FORMAT_PREFERENCE, &row, &e, &line),
                     0);
    ck_assert_str_eq(row.responses[1], "");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(parse("{\"prompt\":\"p\",\"responses\":[\"\",\"y\"],\"ranks\":[1,0]}",
                           DATASET_FORMAT_PREFERENCE, &row, &e, &line),
                     0);
    ck_assert_str_eq(row.responses[0], "");
    dataset_row_free(&row), json_decref(line);
    ck_assert_int_eq(
        parse("{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},"
              "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"\"}],"
              "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"bad\"}]}",
              DATASET_FORMAT_PREFERENCE, &row, &e, &line),
        0);
    ck_assert_str_eq(row.responses[0], "");
    dataset_row_free(&row), json_decref(line);

    dataset_format f;
    ck_assert_int_eq(dataset_format_from_name("preference", &f), 0);
    ck_assert_int_eq(f, DATASET_FORMAT_PREFERENCE);
    ck_assert_int_eq(dataset_format_from_name("pairs", &f), -1);
    ck_assert_int_eq(dataset_format_from_name(NULL, &f), -1);
    ck_assert_str_eq(dataset_format_name(DATASET_FORMAT_PROMPTS), "prompts");
    /* what each job type trains on; ppo-control reads no dataset */
    ck_assert_str_eq(dataset_format_for_job("sft"), "sft");
    ck_assert_str_eq(dataset_format_for_job("reward"), "preference");
    ck_assert_str_eq(dataset_format_for_job("ppo"), "prompts");
    ck_assert_ptr_null(dataset_format_for_job("ppo-control"));
}
END_TEST

/* Chat SFT rows (the trainer's parser): the conversation as one JSON message list, and where
 * training starts (OpenAI's messages: 0; TRL's conversational
 * prompt/completion: after the prompt). */
START_TEST(test_parse_chat_sft_rows) {
    dataset_row row;
    dataset_error e;
    json_t *line, *line2;
    ck_assert_int_eq(parse_chat("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                                "{\"role\":\"user\",\"content\":\"q\"},"
                                "{\"role\":\"assistant\",\"content\":\"a\"}]}",
                                DATASET_FORMAT_SFT, &row, &e, &line),
                     0);
    ck_assert_str_eq(row.messages, "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":"
                                   "\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                                   "\"content\":\"a\"}]");
    ck_assert_int_eq(row.first_trained, 0);
    ck_assert_str_eq(row.prompt, "");
    dataset_row_free(&row);
    json_decref(line);
    ck_assert_int_eq(parse_chat("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"},"
                                "{\"role\":\"assistant\",\"content\":\"a1\"},"
                                "{\"role\":\"user\",\"content\":\"q2\"}],"
                                "\"completion\":[{\"role\":\"assistant\",\"content\":\"a2\"}]}",
                                DATASET_FORMAT_SFT, &row, &e, &line),
                     0);
    ck_assert_int_eq(row.first_trained, 3);
    dataset_row_free(&row);
    /* rlhfd's upload (dataset_row_parse) does not take them (yet) */
    ck_assert_int_eq(dataset_row_parse(line, DATASET_FORMAT_SFT, RANKING_MAX_K, &row, &e), -1);
    ck_assert_str_eq(e.param, "prompt");
    ck_assert_int_eq(parse_chat("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"},"
                                "{\"role\":\"assistant\",\"content\":\"a1\"},"
                                "{\"role\":\"user\",\"content\":\"q2\"}],"
                                "\"completion\":[{\"role\":\"assistant\",\"content\":\"a2\"}]}",
                                DATASET_FORMAT_SFT, &row, &e, &line2),
                     0);
    json_decref(line2);
    dataset_row pr;
    /* preference: TRL's conversational pair keeps the conversation */
    ck_assert_int_eq(parse_chat("{\"prompt\":[{\"role\":\"system\",\"content\":\"s\"},"
                                "{\"role\":\"user\",\"content\":\"q\"}],"
                                "\"chosen\":[{\"role\":\"assistant\",\"content\":\"good\"}],"
                                "\"rejected\":[{\"role\":\"assistant\",\"content\":\"bad\"}]}",
                                DATASET_FORMAT_PREFERENCE, &pr, &e, &line2),
                     0);
    assert_pair(&pr, "q", "good", "bad");
    ck_assert_ptr_nonnull(strstr(pr.prompt_messages, "\"system\""));
    dataset_row_free(&pr);
    json_decref(line2);
    /* PPO prompts: TRL's conversational {"prompt": [messages]} */
    ck_assert_int_eq(parse_chat("{\"prompt\":[{\"role\":\"user\",\"content\":\"q\"}]}",
                                DATASET_FORMAT_PROMPTS, &pr, &e, &line2),
                     0);
    ck_assert_str_eq(pr.messages, "[{\"role\":\"user\",\"content\":\"q\"}]");
    dataset_row_free(&pr);
    json_decref(line2);
    ck_assert_ptr_nonnull(strstr(row.messages, "\"a1\"},{\"role\":\"user\",\"content\":"
                                               "\"q2\"},{\"role\":\"assistant\",\"content\":"
                                               "\"a2\"}]"));
    dataset_row_free(&row);
    json_decref(line);
}
END_TEST

START_TEST(test_parse_bad_rows_named) {
    const bad_row cases[] = {
        {DATASET_FORMAT_SFT, "[1]", "invalid_json", "", "the line must be a JSON object"},
        {DATASET_FORMAT_SFT, "{\"prompt\":\"a\"}", "missing_required_parameter", "response",
         "missing field 'response'"},
        {DATASET_FORMAT_SFT, "{\"prompt\":1,\"response\":\"b\"}", "invalid_type", "prompt",
         "field 'prompt' must be a string"},
        {DATASET_FORMAT_SFT, "{\"prompt\":\"a\",\"response\":\"\"}", "invalid_value", "response",
         "field 'response' must not be empty"},
        {DATASET_FORMAT_SFT, "{\"prompt\":\"a\",\"answer\":\"b\"}", "unknown_parameter", "answer",
         "unknown field 'answer'"},
        {DATASET_FORMAT_SFT, "{\"prompt\":\"a\",\"text\":\"b\"}", "invalid_value", "text",
         "give either text, or prompt and response"},
        {DATASET_FORMAT_SFT, "{\"prompt\":\"a\",\"response\":\"b\",\"completion\":\"c\"}",
         "invalid_value", "completion", "give response or completion, not both"},
        {DATASET_FORMAT_SFT, "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"}]}",
         "invalid_value", "messages",
         "messages must be an array of at least a user and an assistant message"},
        {DATASET_FORMAT_SFT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\","
         "\"content\":\"a\"},{\"role\":\"user\",\"content\":\"v\"}]}",
         "invalid_value", "messages[2].role",
         "the last message (messages[2].role) must be the assistant's response"},
        {DATASET_FORMAT_SFT,
         "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"assistant\","
         "\"content\":\"a\"}]}",
         "invalid_value", "messages", "messages has no user message"},
        {DATASET_FORMAT_SFT, "{\"messages\":[],\"tools\":[]}", "unknown_parameter", "tools",
         "unknown field 'tools'"},
        {DATASET_FORMAT_PROMPTS, "{\"prompt\":\"\"}", "invalid_value", "prompt",
         "field 'prompt' must not be empty"},
        {DATASET_FORMAT_PROMPTS, "{\"text\":\"t\"}", "unknown_parameter", "text",
         "unknown field 'text'"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":[]}",
         "invalid_type", "rejected", "field 'rejected' must be a string"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"\",\"chosen\":\"a\",\"rejected\":\"b\"}",
         "invalid_value", "prompt", "field 'prompt' must not be empty"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"p\",\"chosen\":\"a\"}",
         "missing_required_parameter", "rejected",
         "fields 'chosen' and 'rejected' go together: missing field 'rejected'"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\","
         "\"margin\":\"big\"}",
         "invalid_type", "margin", "field 'margin' must be a number"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\",\"ranks\":[0,1]}", "invalid_value",
         "responses", "give chosen and rejected, or responses and ranks, not both"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranks\":[0]}",
         "invalid_value", "ranks",
         "'responses' needs 2 to 9 entries and 'ranks' as many (got 2 "
         "and 1)"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranks\":[0,5]}", "invalid_value",
         "ranks[1]", "rank 5 of response 1 is outside 0..1"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranks\":[1,1]}", "invalid_value", "ranks",
         "a ranking where every response ties says nothing"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"p\",\"responses\":[\"a\",7],\"ranks\":[0,1]}",
         "invalid_type", "responses[1]", "field 'responses[1]' must be a string"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranks\":[0,0.5]}", "invalid_type",
         "ranks[1]", "field 'ranks[1]' must be an integer"},
        {DATASET_FORMAT_PREFERENCE, "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"]}",
         "missing_required_parameter", "ranks",
         "missing field 'ranks' (a K-wise row gives responses and ranks)"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"input\":{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]},"
         "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}],"
         "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"b\"}]}",
         "invalid_value", "input.messages[0].role",
         "input.messages[0].role 'tool' is not allowed here"},
        {DATASET_FORMAT_PREFERENCE,
         "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]},"
         "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"a\"}]}",
         "missing_required_parameter", "non_preferred_output",
         "missing field 'non_preferred_output'"},
    };
    assert_bad_rows(cases, sizeof cases / sizeof cases[0], false);
    /* chat rows as rlhf-train's files take them */
    const bad_row chat[] = {
        {DATASET_FORMAT_SFT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         "invalid_value", "messages", "messages has no assistant message"},
        {DATASET_FORMAT_SFT,
         "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"},"
         "{\"role\":\"assistant\",\"content\":\"y\"}]}",
         "invalid_value", "messages[0].role", "messages[0].role 'tool' is not allowed here"},
        {DATASET_FORMAT_SFT,
         "{\"messages\":[{\"role\":\"assistant\",\"content\":\"y\"}],\"prompt\":\"p\"}",
         "unknown_parameter", "prompt", "unknown field 'prompt'"},
        {DATASET_FORMAT_SFT, "{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         "missing_required_parameter", "completion",
         "missing field 'completion' (the assistant messages to train on)"},
        {DATASET_FORMAT_SFT,
         "{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}],"
         "\"completion\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "invalid_value", "completion[0].role", "completion[0].role 'user' is not allowed here"},
    };
    assert_bad_rows(chat, sizeof chat / sizeof chat[0], true);
    /* K above the limit, by one */
    char text[512] = "{\"prompt\":\"p\",\"responses\":[";
    for (int i = 0; i <= RANKING_MAX_K; i++)
        strcat(text, i ? ",\"r\"" : "\"r\"");
    strcat(text, "],\"ranks\":[");
    for (int i = 0; i <= RANKING_MAX_K; i++)
        strcat(text, i ? ",1" : "0");
    strcat(text, "]}");
    dataset_row row;
    dataset_error e;
    json_t *line;
    ck_assert_int_eq(parse(text, DATASET_FORMAT_PREFERENCE, &row, &e, &line), -1);
    ck_assert_str_eq(e.param, "responses");
    json_decref(line);
}
END_TEST

/* ---- the trainer's path: a JSONL file ------------------------------------------- */

static char *write_file(const char *dir, const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* One file in each format, with every line form of the format. */
static const char sft_file[] = "{\"prompt\":\"2+2?\",\"response\":\"4\"}\n"
                               "\n"
                               "{\"prompt\":\"\",\"completion\":\"c\"}\n"
                               "{\"text\":\"raw\"}\n";
static const char prompts_file[] = "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"response\":\"r\"}\n";
static const char preference_file[] =
    "{\"prompt\":\"Say hi\",\"chosen\":\"Hi!\",\"rejected\":\"No.\"}\n"
    "{\"input\":{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},"
    "{\"role\":\"user\",\"content\":\"Capital of France?\"}]},"
    "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"Paris\"}],"
    "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"Lyon\"}]}\n"
    "{\"prompt\":\"Rank\",\"responses\":[\"x\",\"y\",\"z\"],\"ranks\":[2,0,1],\"margin\":0.5}\n";

START_TEST(test_trainer_reads_every_format) {
    char dir[] = "/tmp/dataset-format-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char err[512];
    text_pairs pairs;
    ck_assert_msg(
        text_pairs_load_jsonl(&pairs, write_file(dir, "sft.jsonl", sft_file), err, sizeof err) == 0,
        "%s", err);
    ck_assert_int_eq(pairs.n, 3);
    ck_assert_str_eq(pairs.items[0].response, "4");
    ck_assert_str_eq(pairs.items[1].prompt, "");
    ck_assert_str_eq(pairs.items[1].response, "c");
    ck_assert_str_eq(pairs.items[2].prompt, "");
    ck_assert_str_eq(pairs.items[2].response, "raw");
    text_pairs_free(&pairs);
    ck_assert_int_eq(
        prompts_load_jsonl(&pairs, write_file(dir, "p.jsonl", prompts_file), err, sizeof err), 0);
    ck_assert_int_eq(pairs.n, 2);
    ck_assert_str_eq(pairs.items[1].prompt, "b");
    text_pairs_free(&pairs);

    ranking_set set;
    ck_assert_msg(rankings_load_jsonl(&set, write_file(dir, "pref.jsonl", preference_file), err,
                                      sizeof err) == 0,
                  "%s", err);
    ck_assert_int_eq(set.n, 3);
    ck_assert_str_eq(set.items[0].responses[0], "Hi!");
    ck_assert_int_eq(set.items[0].rank[1], 1);
    ck_assert(set.items[0].margin == 0.0f);
    ck_assert_str_eq(set.items[1].prompt, "Capital of France?");
    ck_assert_str_eq(set.items[1].responses[0], "Paris");
    ck_assert_str_eq(set.items[1].responses[1], "Lyon");
    ck_assert_int_eq(set.items[2].k, 3);
    ck_assert_str_eq(set.items[2].responses[1], "y");
    ck_assert_int_eq(set.items[2].rank[0], 2);
    ck_assert_int_eq(set.items[2].rank[1], 0);
    ck_assert(set.items[2].margin == 0.5f);
    ranking_set_free(&set);

    /* A bad line stops the load, named by path, line and field. */
    const char *bad = write_file(dir, "bad.jsonl",
                                 "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n\n"
                                 "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":1}\n");
    ck_assert_int_eq(rankings_load_jsonl(&set, bad, err, sizeof err), -1);
    char want[320];
    snprintf(want, sizeof want, "%s:3: field 'rejected' must be a string", bad);
    ck_assert_str_eq(err, want);
    unlink(bad);
    const char *files[] = {"sft.jsonl", "p.jsonl", "pref.jsonl"};
    for (int i = 0; i < 3; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}
END_TEST

/* ---- the daemon's path: uploads, and a job reading them back ------------------------ */

static int64_t upload_dataset(const test_daemon *d, const char *format, const char *text) {
    char body[128], path[64];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"format\":\"%s\"}", format, format);
    const int64_t id = create(d, "/v1/datasets", d->admin, body);
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    reply_free(expect_ok(http_bytes(d, "POST", path, d->admin, text, strlen(text), NULL)));
    return id;
}

START_TEST(test_upload_takes_every_format) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft = upload_dataset(&d, "sft", sft_file);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND "
                            "((line = 1 AND response = '4') OR (line = 3 AND prompt = '' AND "
                            "response = 'c') OR (line = 4 AND prompt = '' AND response = 'raw'))",
                            sft),
                     3);
    const int64_t prompts = upload_dataset(&d, "prompts", prompts_file);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND "
                            "((line = 1 AND response IS NULL) OR (line = 2 AND response = 'r'))",
                            prompts),
                     2); /* a prompts row keeps its answer (graders read it) */
    const int64_t pref = upload_dataset(&d, "preference", preference_file);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = 1 "
                            "AND chosen = 'Hi!' AND rejected = 'No.' AND responses IS NULL AND "
                            "margin IS NULL",
                            pref),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = 2 "
                            "AND prompt = 'Capital of France?' AND chosen = 'Paris' AND "
                            "json_array_length(prompt_messages) = 2",
                            pref),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = 3 "
                            "AND prompt = 'Rank' AND chosen IS NULL AND responses = "
                            "'[\"x\",\"y\",\"z\"]' AND ranks = '[2,0,1]' AND margin = 0.5",
                            pref),
                     1);
    /* A bad K-wise line: named by line and field; nothing stored. */
    const int64_t bad =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"bad\",\"format\":\"preference\"}");
    const char *text = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
                       "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"ranks\":[0,5]}\n";
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)bad);
    http_reply *r = http_bytes(&d, "POST", path, d.admin, text, strlen(text), NULL);
    expect_error(r, 400, "invalid_value", "ranks[1]");
    json_t *err = json_object_get(r->json, "error");
    ck_assert_int_eq(json_integer_value(json_object_get(err, "line")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(err, "message")),
                     "line 2: rank 5 of response 1 is outside 0..1");
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1", bad), 0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* rlhf-train reads an uploaded K-wise dataset back from the database: a
 * tiny sft model, then a reward job on the uploaded preference file (a
 * pair, an OpenAI row and a K-wise row, twice over). */
START_TEST(test_reward_job_reads_uploaded_rankings) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft_data = upload_dataset(&d, "sft", sft_file);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":{\"n_layer\":1,"
             "\"d_model\":16,\"n_head\":2,\"context\":32,\"batch_size\":2,\"max_steps\":2,"
             "\"eval_interval\":0,\"sample_interval\":0}}",
             (long long)sft_data);
    const int64_t sft = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    char twice[2 * sizeof preference_file];
    snprintf(twice, sizeof twice, "%s%s", preference_file, preference_file);
    const int64_t pref = upload_dataset(&d, "preference", twice);
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"batch_size\":2,\"max_steps\":2,\"eval_interval\":0,"
             "\"norm_samples\":0}}",
             (long long)pref, (long long)sft);
    const int64_t reward = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, reward, "succeeded", 1));
    /* all six rows became rankings (the running event counts them) */
    ck_assert_int_eq(db_int(&d,
                            "SELECT json_extract(data, '$.n_train') FROM job_events WHERE "
                            "job_id = ?1 AND code = 'running'",
                            reward),
                     6);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- the largest K ------------------------------------------------------------------ */

/* The schema holds RANKING_MAX_K: a project of K is stored, of K + 1
 * refused; a K-wise dataset row likewise. */
START_TEST(test_schema_max_k_is_the_constant) {
    char dir[] = "/tmp/dataset-format-XXXXXX", path[96], err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/rlhfd.db", dir);
    sqlite3 *db;
    ck_assert_int_eq(db_open(path, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO projects (id, name, k, overlap, created_at) VALUES (1, 'p', %d, 1, 0)",
             RANKING_MAX_K);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    snprintf(sql, sizeof sql,
             "INSERT INTO projects (id, name, k, overlap, created_at) VALUES (2, 'p', %d, 1, 0)",
             RANKING_MAX_K + 1);
    ck_assert_int_ne(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    snprintf(sql, sizeof sql, "UPDATE projects SET k = %d WHERE id = 1", RANKING_MAX_K + 1);
    ck_assert_int_ne(db_exec(db, sql, err, sizeof err), SQLITE_OK);

    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO datasets (id, name, format, created_at) VALUES "
                             "(1, 'd', 'preference', 0)",
                             err, sizeof err),
                     SQLITE_OK);
    for (int k = RANKING_MAX_K; k <= RANKING_MAX_K + 1; k++) {
        char responses[128] = "[", ranks[128] = "[";
        for (int i = 0; i < k; i++) {
            strcat(responses, i ? ",\"r\"" : "\"r\"");
            strcat(ranks, i ? ",1" : "0");
        }
        strcat(responses, "]"), strcat(ranks, "]");
        snprintf(sql, sizeof sql,
                 "INSERT INTO dataset_rows (dataset_id, line, prompt, responses, ranks) VALUES "
                 "(1, %d, 'p', '%s', '%s')",
                 k, responses, ranks);
        const int rc = db_exec(db, sql, err, sizeof err);
        if (k == RANKING_MAX_K)
            ck_assert_msg(rc == SQLITE_OK, "%s", err);
        else
            ck_assert_int_ne(rc, SQLITE_OK);
    }
    sqlite3_close(db);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *dataset_format_suite(void) {
    Suite *s = suite_create("dataset_format");
    TCase *tc = tcase_create("parser");
    tcase_add_test(tc, test_parse_every_line_format);
    tcase_add_test(tc, test_parse_bad_rows_named);
    tcase_add_test(tc, test_parse_chat_sft_rows);
    tcase_add_test(tc, test_trainer_reads_every_format);
    tcase_add_test(tc, test_schema_max_k_is_the_constant);
    suite_add_tcase(s, tc);
    TCase *daemon = tcase_create("daemon");
    tcase_set_timeout(daemon, 120);
    tcase_add_test(daemon, test_upload_takes_every_format);
    tcase_add_test(daemon, test_reward_job_reads_uploaded_rankings);
    suite_add_tcase(s, daemon);
    return s;
}
