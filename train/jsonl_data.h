/* jsonl_data — a JSONL file of one dataset format (common/dataset_format.h:
 * the lines rlhfd's upload takes too) as the engine's inputs. Blank lines
 * are skipped; the first bad line stops the load with "path:line: why". */
#ifndef RLHF_JSONL_DATA_H
#define RLHF_JSONL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "dataset_format.h"
#include "reward.h"
#include "sft.h"

/* sft rows as (prompt, response): {"prompt", "response" | "completion"},
 * or {"text"} for raw text (trained on every token: an empty prompt). */
typedef struct text_pairs {
    text_pair *items;
    int64_t n;
    char **strings; /* owned copies behind items */
    int64_t n_strings, cap_strings;
} text_pairs;

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen);
/* prompts rows, each as (prompt, reference answer or ""). */
int prompts_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen);
void text_pairs_free(text_pairs *p);

/* preference rows as rankings: TRL pairs, OpenAI preference rows and
 * K-wise {"prompt", "responses", "ranks"} (K = 2..RANKING_MAX_K, rank 0
 * best, equal ranks tie), with an optional "margin". */
typedef struct ranking_set {
    ranking *items;
    int64_t n;
    char **strings;
    int64_t n_strings, cap_strings;
} ranking_set;

int rankings_load_jsonl(ranking_set *out, const char *path, char *err, size_t errlen);
void ranking_set_free(ranking_set *r);

/* A parsed preference row as the engine's ranking; keep(keep_ctx, s)
 * returns the copy of s the ranking holds (NULL: out of memory). 0, or -1
 * (out of memory, or K outside 2..RANKING_MAX_K). */
int ranking_from_row(const dataset_row *row, ranking *rk, const char *(*keep)(void *, const char *),
                     void *keep_ctx);

#endif
