#include "demo_task.h"

#include "reward.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double demo_task_sample_tokens(const model *m, const tokenizer *tok, const char *prompt,
                               float temperature, int max_new, rng_state *rng, char *text,
                               size_t text_cap, int32_t *ids, int *n_prompt, int *n_gen) {
    *n_prompt = 0, *n_gen = 0;
    const int64_t np = tokenizer_encode_prompt(tok, prompt, strlen(prompt), ids, 256, false);
    const int64_t room = model_max_seq_len(m) - np;
    max_new = max_new < 64 ? max_new : 64;
    if (np < 1 || np > 256 || room < 1 || max_new < 1)
        return NAN;
    int32_t *gen = ids + np;
    int32_t len = 0;
    char err[128];
    if (model_generate(m, ids, NULL, 1, (int)np, temperature, 0, 1.0f,
                       room < max_new ? (int)room : max_new, tok->eot_id, rng, gen, &len, err,
                       sizeof err) != 0)
        return NAN;
    *n_prompt = (int)np, *n_gen = (int)len;
    if (len > 0 && gen[len - 1] == tok->eot_id)
        len--;
    int64_t n = tokenizer_decode(tok, gen, (size_t)len, text, text_cap - 1);
    n = n < 0 ? 0 : n > (int64_t)text_cap - 1 ? (int64_t)text_cap - 1 : n;
    text[n] = '\0';
    return demo_task_gold_score(prompt, text);
}

double demo_task_sample(const model *m, const tokenizer *tok, const char *prompt, float temperature,
                        rng_state *rng, char *text, size_t text_cap) {
    int32_t ids[256 + 64];
    int np, ng;
    return demo_task_sample_tokens(m, tok, prompt, temperature, 64, rng, text, text_cap, ids, &np,
                                   &ng);
}

double demo_task_mean_gold(const model *m, const tokenizer *tok, int n, uint64_t seed) {
    rng_state prompts, sampling;
    rng_seed(&prompts, seed, 1);
    rng_seed(&sampling, seed, 2);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        char prompt[128], unused[256], text[256];
        demo_task_example(&prompts, prompt, sizeof prompt, unused, sizeof unused);
        sum += demo_task_sample(m, tok, prompt, 1.0f, &sampling, text, sizeof text);
    }
    return sum / n;
}

bool demo_task_annotate(const model *m, const tokenizer *tok, int k, double temperature,
                        rng_state *rng, rng_state *noise, char *prompt, size_t prompt_cap,
                        char (*responses)[DEMO_TASK_RESPONSE_BYTES], int *rank) {
    char unused[256];
    demo_task_example(rng, prompt, prompt_cap, unused, sizeof unused);
    double gold[RANKING_MAX_K];
    bool sampled = true;
    for (int j = 0; j < k; j++) {
        gold[j] =
            demo_task_sample(m, tok, prompt, 1.0f, rng, responses[j], DEMO_TASK_RESPONSE_BYTES);
        sampled &= !isnan(gold[j]);
    }
    return demo_task_rank(gold, k, temperature, noise, rank) && sampled;
}
