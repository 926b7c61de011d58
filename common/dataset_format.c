#include "dataset_format.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {[DATASET_FORMAT_SFT] = "sft",
                                    [DATASET_FORMAT_PREFERENCE] = "preference",
                                    [DATASET_FORMAT_PROMPTS] = "prompts"};

const char *dataset_format_name(dataset_format f) {
    return names[f];
}

const char *dataset_format_for_job(const char *job_type) {
    static const struct {
        const char *job_type;
        dataset_format format;
    } reads[] = {
        {"sft", DATASET_FORMAT_SFT},
        {"reward", DATASET_FORMAT_PREFERENCE},
        {"dpo", DATASET_FORMAT_PREFERENCE},
        {"grpo", DATASET_FORMAT_PROMPTS},
        {"rloo", DATASET_FORMAT_PROMPTS},
        {"ppo", DATASET_FORMAT_PROMPTS},
        {"loop-sample", DATASET_FORMAT_PROMPTS},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++)
        if (strcmp(reads[i].job_type, job_type) == 0)
            return names[reads[i].format];
    return NULL;
}

dataset_format dataset_format_detect(const json_t *line) {
    static const char *const preference[] = {"input",     "chosen", "rejected",
                                             "responses", "ranks",  NULL};
    static const char *const sft[] = {"messages", "response", "completion", "text", NULL};
    for (int i = 0; preference[i]; i++)
        if (json_object_get(line, preference[i]) != NULL)
            return DATASET_FORMAT_PREFERENCE;
    for (int i = 0; sft[i]; i++)
        if (json_object_get(line, sft[i]) != NULL)
            return DATASET_FORMAT_SFT;
    return json_object_get(line, "prompt") != NULL ? DATASET_FORMAT_PROMPTS : DATASET_FORMAT_SFT;
}

int dataset_format_from_name(const char *name, dataset_format *out) {
    for (size_t i = 0; name != NULL && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (dataset_format)i;
            return 0;
        }
    return -1;
}

/* ---- errors and fields ----------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int fail(dataset_error *e, const char *code,
                                                      const char *param, const char *fmt, ...) {
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static bool one_of(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* obj's keys must all be in allowed; prefix is the path to obj ("" for
 * the line, "input.messages[0]." inside). */
static int check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                      dataset_error *e) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (!one_of(key, allowed)) {
            char param[128];
            snprintf(param, sizeof param, "%s%.64s", prefix, key);
            return fail(e, "unknown_parameter", param, "unknown field '%s'", param);
        }
    }
    return 0;
}

/* obj[key] as a string (param names it): non-empty unless allow_empty. */
static int get_string(const json_t *obj, const char *key, const char *param, bool allow_empty,
                      const char **out, dataset_error *e) {
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return fail(e, "missing_required_parameter", param, "missing field '%s'", param);
    if (!json_is_string(v))
        return fail(e, "invalid_type", param, "field '%s' must be a string", param);
    if (!allow_empty && json_string_length(v) == 0)
        return fail(e, "invalid_value", param, "field '%s' must not be empty", param);
    *out = json_string_value(v);
    return 0;
}

/* ---- sft and prompts --------------------------------------------------------- */

static int check_messages(const json_t *messages, const char *param, const char *const *roles,
                          const char *want_role, bool empty_ok, const char **last,
                          dataset_error *e);

/* An OpenAI chat fine-tuning row, {"messages": [..., one assistant message
 * last]}: the response is that last message, the prompt the last user
 * message before it, and the messages before it are kept as
 * prompt_messages (as for OpenAI preference rows). */
static int parse_chat(const json_t *line, dataset_row *row, dataset_error *e) {
    static const char *const keys[] = {"messages", NULL};
    static const char *const roles[] = {"system", "developer", "user", "assistant", NULL};
    if (check_keys(line, keys, "", e) != 0)
        return -1;
    const json_t *messages = json_object_get(line, "messages");
    const size_t n = json_array_size(messages);
    if (!json_is_array(messages) || n < 2)
        return fail(e, json_is_array(messages) ? "invalid_value" : "invalid_type", "messages",
                    "messages must be an array of at least a user and an assistant message");
    const char *last_assistant;
    if (check_messages(messages, "messages", roles, "assistant", false, &last_assistant, e) != 0)
        return -1;
    const json_t *last = json_array_get(messages, n - 1);
    if (strcmp(json_string_value(json_object_get(last, "role")), "assistant") != 0) {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu].role", n - 1);
        return fail(e, "invalid_value", param,
                    "the last message (%s) must be the assistant's response", param);
    }
    row->response = last_assistant;
    json_t *context = json_array();
    for (size_t i = 0; i + 1 < n; i++)
        json_array_append(context, json_array_get(messages, i));
    int rc = check_messages(context, "messages", roles, "user", false, &row->prompt, e);
    if (rc == 0 &&
        (row->prompt_messages = json_dumps(context, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
        rc = fail(e, "out_of_memory", "", "out of memory");
    json_decref(context);
    return rc;
}

/* A chat row: {"messages"} (every assistant turn trains) or TRL's
 * conversational {"prompt": [...], "completion": [...]} (the completion's). */
static int parse_sft_chat(const json_t *line, dataset_row *row, dataset_error *e) {
    static const char *const roles[] = {"system", "user", "assistant", NULL};
    static const char *const assistant[] = {"assistant", NULL};
    const json_t *msgs = json_object_get(line, "messages");
    const char *last;
    json_t *all;
    if (msgs != NULL) {
        static const char *const keys[] = {"messages", NULL};
        if (check_keys(line, keys, "", e) != 0 ||
            check_messages(msgs, "messages", roles, "assistant", false, &last, e) != 0)
            return -1;
        all = json_incref((json_t *)msgs);
    } else {
        static const char *const keys[] = {"prompt", "completion", NULL};
        const json_t *prompt = json_object_get(line, "prompt");
        const json_t *completion = json_object_get(line, "completion");
        if (check_keys(line, keys, "", e) != 0 ||
            check_messages(prompt, "prompt", roles, "user", false, &last, e) != 0)
            return -1;
        if (completion == NULL)
            return fail(e, "missing_required_parameter", "completion",
                        "missing field 'completion' (the assistant messages to train on)");
        if (check_messages(completion, "completion", assistant, "assistant", false, &last, e) != 0)
            return -1;
        all = json_array();
        json_array_extend(all, (json_t *)prompt);
        json_array_extend(all, (json_t *)completion);
        row->first_trained = (int)json_array_size(prompt);
    }
    row->messages = json_dumps(all, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(all);
    row->prompt = "", row->response = "";
    return row->messages ? 0 : fail(e, "out_of_memory", "", "out of memory");
}

static int parse_sft(const json_t *line, bool chat, dataset_row *row, dataset_error *e) {
    static const char *const keys[] = {"prompt", "response", "completion", "text", NULL};
    if (chat && (json_object_get(line, "messages") != NULL ||
                 json_is_array(json_object_get(line, "prompt"))))
        return parse_sft_chat(line, row, e);
    if (json_object_get(line, "messages") != NULL)
        return parse_chat(line, row, e);
    if (check_keys(line, keys, "", e) != 0)
        return -1;
    const bool text = json_object_get(line, "text") != NULL;
    const bool completion = json_object_get(line, "completion") != NULL;
    const bool response = json_object_get(line, "response") != NULL;
    if (text && (response || completion || json_object_get(line, "prompt") != NULL))
        return fail(e, "invalid_value", "text", "give either text, or prompt and response");
    if (response && completion)
        return fail(e, "invalid_value", "completion", "give response or completion, not both");
    if (text) {
        row->prompt = "";
        return get_string(line, "text", "text", false, &row->response, e);
    }
    const char *answer = completion ? "completion" : "response";
    if (get_string(line, "prompt", "prompt", true, &row->prompt, e) != 0)
        return -1;
    return get_string(line, answer, answer, false, &row->response, e);
}

static int parse_prompts(const json_t *line, bool chat, dataset_row *row, dataset_error *e) {
    static const char *const keys[] = {"prompt", "answer", "response", "completion", NULL};
    const json_t *messages = json_object_get(line, "prompt");
    if (chat && json_is_array(messages)) { /* TRL's conversational prompt */
        static const char *const roles[] = {"system", "user", "assistant", NULL};
        const char *ignored;
        if (check_keys(line, keys, "", e) != 0 ||
            check_messages(messages, "prompt", roles, "user", false, &ignored, e) != 0)
            return -1;
        row->prompt = "";
        if ((row->messages = json_dumps(messages, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
            return fail(e, "out_of_memory", "", "out of memory");
    } else if (check_keys(line, keys, "", e) != 0 ||
               get_string(line, "prompt", "prompt", false, &row->prompt, e) != 0)
        return -1;
    /* The reference answer a grader reads as {{item.answer}}: "answer", or
     * an sft row's response (so an sft file serves as prompts). */
    for (int k = 3; k >= 1; k--)
        if (json_object_get(line, keys[k]) != NULL &&
            get_string(line, keys[k], keys[k], true, &row->response, e) != 0)
            return -1;
    return 0;
}

/* ---- preference ------------------------------------------------------------------ */

/* Room for k responses and ranks in row. */
static int row_alloc(dataset_row *row, int k, dataset_error *e) {
    row->responses = calloc((size_t)k, sizeof *row->responses);
    row->ranks = calloc((size_t)k, sizeof *row->ranks);
    if (row->responses == NULL || row->ranks == NULL)
        return fail(e, "out_of_memory", "", "out of memory");
    row->k = k;
    return 0;
}

static int parse_margin(const json_t *line, dataset_row *row, dataset_error *e) {
    const json_t *margin = json_object_get(line, "margin");
    if (margin == NULL)
        return 0;
    if (!json_is_number(margin))
        return fail(e, "invalid_type", "margin", "field 'margin' must be a number");
    row->has_margin = true;
    row->margin = json_number_value(margin);
    return 0;
}

/* Each rank in 0..k-1, and at least one response strictly better than
 * another (the same rules as the engine's ranking_validate). */
static int check_ranks(const int *ranks, int k, dataset_error *e) {
    bool strict = false;
    for (int i = 0; i < k; i++) {
        if (ranks[i] < 0 || ranks[i] >= k) {
            char param[32];
            snprintf(param, sizeof param, "ranks[%d]", i);
            return fail(e, "invalid_value", param, "rank %d of response %d is outside 0..%d",
                        ranks[i], i, k - 1);
        }
        for (int j = 0; j < k; j++)
            strict |= ranks[i] < ranks[j];
    }
    if (!strict)
        return fail(e, "invalid_value", "ranks",
                    "a ranking where every response ties says nothing");
    return 0;
}

static int parse_kwise(const json_t *line, int max_k, dataset_row *row, dataset_error *e) {
    const json_t *responses = json_object_get(line, "responses");
    const json_t *ranks = json_object_get(line, "ranks");
    if (responses == NULL || ranks == NULL)
        return fail(e, "missing_required_parameter", responses ? "ranks" : "responses",
                    "missing field '%s' (a K-wise row gives responses and ranks)",
                    responses ? "ranks" : "responses");
    if (!json_is_array(responses) || !json_is_array(ranks))
        return fail(e, "invalid_type", json_is_array(responses) ? "ranks" : "responses",
                    "field '%s' must be an array",
                    json_is_array(responses) ? "ranks" : "responses");
    const size_t k = json_array_size(responses);
    if (k < 2 || k > (size_t)max_k || json_array_size(ranks) != k)
        return fail(e, "invalid_value", k < 2 || k > (size_t)max_k ? "responses" : "ranks",
                    "'responses' needs 2 to %d entries and 'ranks' as many (got %zu and %zu)",
                    max_k, k, json_array_size(ranks));
    if (row_alloc(row, (int)k, e) != 0)
        return -1;
    row->kwise = true;
    for (size_t i = 0; i < k; i++) {
        const json_t *text = json_array_get(responses, i), *rank = json_array_get(ranks, i);
        char param[32];
        snprintf(param, sizeof param, "responses[%zu]", i);
        if (!json_is_string(text))
            return fail(e, "invalid_type", param, "field '%s' must be a string", param);
        snprintf(param, sizeof param, "ranks[%zu]", i);
        if (!json_is_integer(rank) || json_integer_value(rank) < -1000000 ||
            json_integer_value(rank) > 1000000)
            return fail(e, "invalid_type", param, "field '%s' must be an integer", param);
        row->responses[i] = json_string_value(text);
        row->ranks[i] = (int)json_integer_value(rank);
    }
    return check_ranks(row->ranks, row->k, e);
}

/* An OpenAI message list: a non-empty array of {role, content}; roles from
 * roles; content non-empty unless empty_ok (a response). The content of the
 * last message with want_role into *last. */
static int check_messages(const json_t *messages, const char *param, const char *const *roles,
                          const char *want_role, bool empty_ok, const char **last,
                          dataset_error *e) {
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return fail(e, json_is_array(messages) ? "invalid_value" : "invalid_type", param,
                    "%s must be a non-empty array of messages", param);
    *last = NULL;
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)messages, i, m) {
        char at[96], field[128];
        snprintf(at, sizeof at, "%s[%zu]", param, i);
        if (!json_is_object(m))
            return fail(e, "invalid_type", at, "%s must be an object {role, content}", at);
        static const char *const keys[] = {"role", "content", NULL};
        const char *role, *content;
        snprintf(field, sizeof field, "%s.", at);
        if (check_keys(m, keys, field, e) != 0)
            return -1;
        snprintf(field, sizeof field, "%s.role", at);
        if (get_string(m, "role", field, false, &role, e) != 0)
            return -1;
        if (!one_of(role, roles))
            return fail(e, "invalid_value", field, "%s '%.32s' is not allowed here", field, role);
        snprintf(field, sizeof field, "%s.content", at);
        if (get_string(m, "content", field, empty_ok, &content, e) != 0)
            return -1;
        if (strcmp(role, want_role) == 0)
            *last = content;
    }
    if (*last == NULL)
        return fail(e, "invalid_value", param, "%s has no %s message", param, want_role);
    return 0;
}

/* The one assistant message of preferred_output / non_preferred_output. */
static int check_output(const json_t *line, const char *key, const char **out, dataset_error *e) {
    static const char *const assistant[] = {"assistant", NULL};
    const json_t *v = json_object_get(line, key);
    if (v == NULL)
        return fail(e, "missing_required_parameter", key, "missing field '%s'", key);
    if (json_is_array(v) && json_array_size(v) != 1)
        return fail(e, "invalid_value", key, "%s must hold exactly one assistant message", key);
    return check_messages(v, key, assistant, "assistant", true, out, e);
}

static int parse_openai(const json_t *line, dataset_row *row, dataset_error *e) {
    static const char *const keys[] = {"input", "preferred_output", "non_preferred_output", NULL};
    static const char *const input_keys[] = {"messages", NULL};
    static const char *const roles[] = {"system", "developer", "user", "assistant", NULL};
    const json_t *input = json_object_get(line, "input");
    if (check_keys(line, keys, "", e) != 0)
        return -1;
    if (!json_is_object(input))
        return fail(e, "invalid_type", "input", "input must be an object {messages}");
    if (check_keys(input, input_keys, "input.", e) != 0)
        return -1;
    const json_t *messages = json_object_get(input, "messages");
    if (messages == NULL)
        return fail(e, "missing_required_parameter", "input.messages",
                    "missing field 'input.messages'");
    if (check_messages(messages, "input.messages", roles, "user", false, &row->prompt, e) != 0 ||
        row_alloc(row, 2, e) != 0 ||
        check_output(line, "preferred_output", &row->responses[0], e) != 0 ||
        check_output(line, "non_preferred_output", &row->responses[1], e) != 0)
        return -1;
    row->ranks[0] = 0, row->ranks[1] = 1;
    row->prompt_messages = json_dumps(messages, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return row->prompt_messages ? 0 : fail(e, "out_of_memory", "", "out of memory");
}

/* TRL's conversational preference row: {"prompt": [messages], "chosen":
 * [one assistant message], "rejected": [one]}; the prompt is its last user
 * message, the conversation prompt_messages (as OpenAI rows). */
static int parse_conversational_pair(const json_t *line, dataset_row *row, dataset_error *e) {
    static const char *const keys[] = {"prompt", "chosen", "rejected", "margin", NULL};
    static const char *const roles[] = {"system", "user", "assistant", NULL};
    const json_t *messages = json_object_get(line, "prompt");
    if (check_keys(line, keys, "", e) != 0 ||
        check_messages(messages, "prompt", roles, "user", false, &row->prompt, e) != 0 ||
        parse_margin(line, row, e) != 0 || row_alloc(row, 2, e) != 0 ||
        check_output(line, "chosen", &row->responses[0], e) != 0 ||
        check_output(line, "rejected", &row->responses[1], e) != 0)
        return -1;
    row->ranks[0] = 0, row->ranks[1] = 1;
    row->prompt_messages = json_dumps(messages, JSON_COMPACT | JSON_PRESERVE_ORDER);
    return row->prompt_messages ? 0 : fail(e, "out_of_memory", "", "out of memory");
}

static int parse_preference(const json_t *line, int max_k, bool chat, dataset_row *row,
                            dataset_error *e) {
    if (json_object_get(line, "input") != NULL)
        return parse_openai(line, row, e);
    if (chat && json_is_array(json_object_get(line, "prompt")))
        return parse_conversational_pair(line, row, e);
    static const char *const keys[] = {"prompt", "chosen", "rejected", "responses",
                                       "ranks",  "margin", NULL};
    if (check_keys(line, keys, "", e) != 0 ||
        get_string(line, "prompt", "prompt", false, &row->prompt, e) != 0 ||
        parse_margin(line, row, e) != 0)
        return -1;
    const bool pair = json_object_get(line, "chosen") || json_object_get(line, "rejected");
    const bool kwise = json_object_get(line, "responses") || json_object_get(line, "ranks");
    if (pair && kwise)
        return fail(e, "invalid_value", "responses",
                    "give chosen and rejected, or responses and ranks, not both");
    if (!pair && kwise)
        return parse_kwise(line, max_k, row, e);
    if (row_alloc(row, 2, e) != 0)
        return -1;
    row->ranks[0] = 0, row->ranks[1] = 1;
    for (int i = 0; i < 2; i++) {
        const char *key = i == 0 ? "chosen" : "rejected";
        const char *other = i == 0 ? "rejected" : "chosen";
        if (get_string(line, key, key, true, &row->responses[i], e) != 0) {
            /* the pair's fields go together: say so when one is there */
            if (strcmp(e->code, "missing_required_parameter") == 0 &&
                json_object_get(line, other) != NULL)
                snprintf(e->message, sizeof e->message,
                         "fields 'chosen' and 'rejected' go together: missing field '%s'", key);
            return -1;
        }
    }
    return 0;
}

/* ---- the line ---------------------------------------------------------------------- */

int dataset_row_parse(const json_t *line, dataset_format format, int max_k, dataset_row *row,
                      dataset_error *e) {
    return dataset_row_parse_chat(line, format, max_k, false, row, e);
}

int dataset_row_parse_chat(const json_t *line, dataset_format format, int max_k, bool chat,
                           dataset_row *row, dataset_error *e) {
    memset(row, 0, sizeof *row);
    int rc;
    if (!json_is_object(line))
        rc = fail(e, "invalid_json", "", "the line must be a JSON object");
    else if (format == DATASET_FORMAT_SFT)
        rc = parse_sft(line, chat, row, e);
    else if (format == DATASET_FORMAT_PROMPTS)
        rc = parse_prompts(line, chat, row, e);
    else
        rc = parse_preference(line, max_k, chat, row, e);
    if (rc != 0)
        dataset_row_free(row);
    return rc;
}

void dataset_row_free(dataset_row *row) {
    free(row->responses);
    free(row->ranks);
    free(row->prompt_messages);
    free(row->messages);
    memset(row, 0, sizeof *row);
}
