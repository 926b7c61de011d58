/* demo_gold — the demo task's text and its hidden gold preference, without
 * a model: what the simulated annotator needs (rlhfctl annotate --simulate
 * demo ranks a project's comparisons with it over HTTP) and what
 * demo_task.h builds on. See demo_task.h for the task itself. */
#ifndef RLHF_DEMO_GOLD_H
#define RLHF_DEMO_GOLD_H

#include <stdbool.h>
#include <stddef.h>

#include "ranking_limits.h"
#include "rng.h"

enum { DEMO_TASK_MAX_K = RANKING_MAX_K };

/* Writes one (prompt, response) example drawn from rng into the buffers
 * (NUL-terminated, truncated to cap). */
void demo_task_example(rng_state *rng, char *prompt, size_t prompt_cap, char *response,
                       size_t response_cap);

/* Writes a fresh response to prompt, drawn like the SFT data's (for the
 * prompt's subject): what a policy might sample, for simulated rankings. */
void demo_task_response(rng_state *rng, const char *prompt, char *response, size_t response_cap);

/* The gold score of a response to a prompt (see demo_task.h). */
double demo_task_gold_score(const char *prompt, const char *response);

/* The simulated annotator's judgement of k (2..DEMO_TASK_MAX_K) responses
 * with these gold scores: Plackett–Luce noise of the given temperature —
 * response j's key is gold_j / temperature + G_j, G_j ~ Gumbel(0, 1) drawn
 * from noise (drawn even at temperature 0, where the key is the gold score
 * alone); argsorting such keys is a Plackett–Luce draw (for k = 2 exactly
 * Bradley–Terry). rank[j] = how many keys are strictly larger (0 = best;
 * equal keys tie). Returns whether the keys are not all equal. */
bool demo_task_rank(const double *gold, int k, double temperature, rng_state *noise, int *rank);

#endif
