/* dataset_format — every JSONL line format of a dataset, parsed once: by
 * rlhfd's upload (server/routes_datasets.c) and by rlhf-train reading a
 * file (train/jsonl_data.c), so both accept the same lines.
 *
 *   sft         {"prompt", "response"}  or  {"prompt", "completion"}
 *               (prompt may be empty), or {"text"} (raw text: prompt ""),
 *               or {"messages": [...]} (OpenAI chat fine-tuning: the last
 *                message is the assistant's response, the prompt the last
 *                user message before it; the earlier messages are kept as
 *                prompt_messages).
 *               Chat rows (dataset_row_parse_chat: rlhf-train reading a
 *               file), rendered by the model's chat template instead:
 *               {"messages": [{role, content}...]} (every assistant turn
 *                trains), or TRL's conversational
 *               {"prompt": [messages], "completion": [assistant messages]}
 *                (the completion trains); roles system, user, assistant
 *   preference  {"prompt", "chosen", "rejected"}                    (TRL)
 *               {"input": {"messages": [...]}, "preferred_output": [one
 *                assistant message], "non_preferred_output": [one]} (OpenAI;
 *                the prompt is the last user message)
 *               {"prompt", "responses": [K strings], "ranks": [K ints]}
 *                (K-wise: rank 0 best, equal ranks tie, not all tied)
 *               TRL and K-wise rows may carry "margin" (a number).
 *               (dataset_row_parse_chat) TRL's conversational {"prompt":
 *                [messages], "chosen": [one assistant message], "rejected":
 *                [one]}: prompt_messages holds the conversation, rendered
 *                by the model's chat template as OpenAI rows are
 *   prompts     {"prompt"} (PPO, GRPO, RLOO prompts), with an optional
 *               reference answer "answer" (or an sft row's "response" /
 *               "completion", so an sft file serves as prompts; "answer"
 *               wins) that graders read as {{item.answer}};
 *               (dataset_row_parse_chat) TRL's conversational
 *               {"prompt": [messages]}, rendered with the generation prompt.
 *
 * Strings must be non-empty except an sft prompt and a preference row's
 * responses (chosen, rejected, responses[i], an output message's content):
 * an empty answer is a thing a person can rank (rlhfd's comparisons keep a
 * candidate a model sampled empty, docs/api.md, and pairs.jsonl exports it),
 * and the reward model scores it as prompt + end of text. A bad line gets a code
 * (the API's error codes: missing_required_parameter, invalid_type,
 * invalid_value, unknown_parameter, invalid_json), the field it is about
 * (param: "rejected", "input.messages[0].role", "ranks[1]") and a message
 * naming that field; the caller prefixes the line ("line 37: ..."). The
 * parser knows no engine types: it yields strings and ranks, which train/
 * turns into the engine's text_pair and ranking.
 */
#ifndef RLHF_DATASET_FORMAT_H
#define RLHF_DATASET_FORMAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum dataset_format {
    DATASET_FORMAT_SFT,
    DATASET_FORMAT_PREFERENCE,
    DATASET_FORMAT_PROMPTS,
} dataset_format;

/* "sft" | "preference" | "prompts" (datasets.format): 0 with *out set, or
 * -1 for any other name (or NULL). */
int dataset_format_from_name(const char *name, dataset_format *out);
/* The names, for error messages: "sft, preference, prompts". */
#define DATASET_FORMAT_NAMES "sft, preference, prompts"
/* The format an uploaded file's first line is in, by its keys (a file
 * uploaded without one, POST /v1/files): input, chosen, rejected,
 * responses or ranks → preference; messages, response, completion or text
 * → sft; prompt alone → prompts; anything else sft (whose parse then says
 * what is missing). */
dataset_format dataset_format_detect(const json_t *line);
/* The name of format f. */
const char *dataset_format_name(dataset_format f);

/* The name of the dataset format a job type (engine/jobs.h, by name)
 * trains on, for training_file and validation_file alike: sft → sft,
 * reward → preference, ppo → prompts; NULL for a type that reads no
 * dataset rlhfd holds. rlhfd checks a new job's datasets with it, and
 * rlhf-train again when it loads them. */
const char *dataset_format_for_job(const char *job_type);

/* One line, parsed. The strings point into the parsed line (the json_t
 * must outlive the row), except prompt_messages. */
typedef struct dataset_row {
    const char *prompt;
    const char *response; /* sft; a prompts row's answer, or NULL */
    /* preference: k responses and their ranks. A pair (TRL, OpenAI) is
     * k = 2 with ranks {0, 1}; kwise says the line gave responses/ranks. */
    int k;
    const char **responses; /* malloc'd array of k */
    int *ranks;             /* malloc'd array of k */
    bool kwise;
    bool has_margin;
    double margin;
    char *prompt_messages; /* OpenAI rows: input.messages as JSON text, malloc'd */
    /* chat rows (dataset_row_parse_chat): the whole conversation as a JSON
     * message list (malloc'd; prompt and, for sft, response are ""); sft
     * trains from message first_trained on */
    char *messages;
    int first_trained;
} dataset_row;

/* Why a line is bad. */
typedef struct dataset_error {
    const char *code;
    char param[128]; /* "" when the line as a whole is wrong */
    char message[384];
} dataset_error;

/* Parses line (one JSON value) as a row of format. max_k: the largest K of
 * a K-wise row (the caller's RANKING_MAX_K, engine/ranking_limits.h).
 * 0 with row filled (free it with dataset_row_free), or -1 with e (row
 * holds nothing to free). */
int dataset_row_parse(const json_t *line, dataset_format format, int max_k, dataset_row *row,
                      dataset_error *e);
/* The same, taking chat rows when chat is true (rlhf-train reading a file
 * renders them with the model's chat template; rlhfd's upload parses with
 * dataset_row_parse and stores an OpenAI chat row's last turn and its
 * earlier messages, which its worker puts back together, sft.h). */
int dataset_row_parse_chat(const json_t *line, dataset_format format, int max_k, bool chat,
                           dataset_row *row, dataset_error *e);
void dataset_row_free(dataset_row *row);

#endif
