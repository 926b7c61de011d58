/* demo_task — a small language task with a known answer, for the demo and
 * the end-to-end tests of the RLHF pipeline.
 *
 * Prompts ask about a subject ("Describe the river."); responses describe it
 * with two or three adjectives ("The river is calm, old and grim."). The
 * SFT data picks adjectives uniformly from positive, negative and neutral
 * words, so a model trained on it writes well-formed but indifferent
 * answers. The hidden "gold" preference (demo_task_gold_score) is
 * #positive − #negative adjectives, minus 2 if the answer does not have the
 * form "The <subject> is ..." for the prompt's subject: a rule a small model
 * can learn to satisfy, and a simulated annotator can rank by.
 */
#ifndef RLHF_DEMO_TASK_H
#define RLHF_DEMO_TASK_H

#include <stdbool.h>
#include <stddef.h>

#include "demo_gold.h"
#include "model.h"
#include "rng.h"
#include "tokenizer.h"

/* Samples one response to prompt from model m (temperature, up to 64 new
 * tokens or what the context holds, stopping at EOT), writes its text to
 * text (NUL-terminated, EOT dropped) and returns its gold score; NAN if the
 * model cannot take the prompt. */
double demo_task_sample(const model *m, const tokenizer *tok, const char *prompt, float temperature,
                        rng_state *rng, char *text, size_t text_cap);

/* The same draw with its tokens: up to max_new new tokens (at most 64, and
 * what the context holds); ids (capacity 256 + 64) receives the prompt's
 * n_prompt tokens followed by the n_gen sampled ones, EOT included when the
 * model emitted it. With max_new = 64 it consumes rng exactly as
 * demo_task_sample. NAN if the model cannot take the prompt. */
double demo_task_sample_tokens(const model *m, const tokenizer *tok, const char *prompt,
                               float temperature, int max_new, rng_state *rng, char *text,
                               size_t text_cap, int32_t *ids, int *n_prompt, int *n_gen);

/* Bytes of one response text of the annotator (NUL included). */
enum { DEMO_TASK_RESPONSE_BYTES = 256 };

/* The simulated annotator (rlhf-train demo-rankings, the pipeline test and
 * bench): draws a prompt from rng into prompt (prompt_cap bytes), samples k
 * (2..RANKING_MAX_K) responses of m to it at temperature 1 from rng into
 * responses[j], and ranks them with demo_task_rank (demo_gold.h: gold
 * score with Plackett–Luce noise of the given temperature, from noise).
 * Returns whether the ranking says something: every response was sampled
 * (no NAN gold score) and the keys are not all equal. */
bool demo_task_annotate(const model *m, const tokenizer *tok, int k, double temperature,
                        rng_state *rng, rng_state *noise, char *prompt, size_t prompt_cap,
                        char (*responses)[DEMO_TASK_RESPONSE_BYTES], int *rank);

/* Mean gold score of n samples of m (temperature 1) on fresh demo prompts:
 * the prompts from one stream of seed, the sampling from another. */
double demo_task_mean_gold(const model *m, const tokenizer *tok, int n, uint64_t seed);

#endif
