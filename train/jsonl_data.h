/* jsonl_data — (prompt, response) examples from a JSONL file, one object a
 * line: {"prompt": "...", "response": "..."}, or {"text": "..."} for raw
 * text (trained on every token: an empty prompt). Blank lines are skipped.
 * The first bad line stops the load with its line number and the reason. */
#ifndef RLHF_JSONL_DATA_H
#define RLHF_JSONL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "reward.h"
#include "sft.h"

typedef struct text_pairs {
    text_pair *items;
    int64_t n;
    char **strings; /* owned copies behind items */
    int64_t n_strings, cap_strings;
} text_pairs;

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen);
/* The same file format, but {"prompt"} alone is a line too (PPO prompts;
 * responses, if present, are ignored by the job). */
int prompts_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen);
void text_pairs_free(text_pairs *p);

/* Rankings, one a line: TRL's {"prompt", "chosen", "rejected"}, or
 * {"prompt", "responses": [...], "ranks": [...]} for K = 2..9 responses with
 * rank 0 the best and equal ranks for ties; "margin" (a number) is optional
 * in both. Each ranking is validated (reward.h) with its line number. */
typedef struct ranking_set {
    ranking *items;
    int64_t n;
    char **strings;
    int64_t n_strings, cap_strings;
} ranking_set;

int rankings_load_jsonl(ranking_set *out, const char *path, char *err, size_t errlen);
void ranking_set_free(ranking_set *r);

#endif
