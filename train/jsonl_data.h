/* jsonl_data — (prompt, response) examples from a JSONL file, one object a
 * line: {"prompt": "...", "response": "..."}, or {"text": "..."} for raw
 * text (trained on every token: an empty prompt). Blank lines are skipped.
 * The first bad line stops the load with its line number and the reason. */
#ifndef RLHF_JSONL_DATA_H
#define RLHF_JSONL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "sft.h"

typedef struct text_pairs {
    text_pair *items;
    int64_t n;
    char **strings; /* owned copies behind items */
    int64_t n_strings;
} text_pairs;

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen);
void text_pairs_free(text_pairs *p);

#endif
