/* See loop_sample.h. */
#include "loop_sample.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_gold.h"
#include "model.h"
#include "rng.h"
#include "sft.h"

#define F(name) offsetof(loop_sample_config, name)
static const hparam_def loop_sample_defs[] = {
    {"prompt_offset", HPARAM_INT, F(prompt_offset), 0, 0, 1e12, NULL,
     "First row of the prompts dataset sampled (0-based; rows wrap around)."},
    {"n_prompts", HPARAM_INT, F(n_prompts), 4, 1, LOOP_SAMPLE_MAX_PROMPTS, NULL,
     "Prompts sampled."},
    {"samples_per_prompt", HPARAM_INT, F(samples_per_prompt), 4, 1, LOOP_SAMPLE_MAX_K, NULL,
     "Responses sampled per prompt (K)."},
    {"max_tokens", HPARAM_INT, F(max_tokens), 24, 1, 1024, NULL,
     "Most tokens sampled per response (fewer when the context is shorter)."},
    {"temperature", HPARAM_FLOAT, F(temperature), 1.0, 1e-6, 10, NULL, "Sampling temperature."},
    {"seed", HPARAM_INT, F(seed), 1, 0, 9007199254740991.0, NULL,
     "Seeds the draw: prompt i's responses come from rng stream i."},
};
#undef F

const hparam_table loop_sample_hparams = {
    loop_sample_defs, (int)(sizeof loop_sample_defs / sizeof loop_sample_defs[0]),
    sizeof(loop_sample_config)};

int loop_sample_validate(const loop_sample_config *cfg, char *err, size_t errlen) {
    (void)cfg, (void)err, (void)errlen; /* the table's ranges are the whole check */
    return 0;
}

enum { SCORE_MAX_TOKENS = 320 };

/* A reward model and its normalisation (reward_gain, reward_bias). */
typedef struct scorer {
    model m;
    double gain, bias;
    int cap; /* tokens scored */
} scorer;

static int scorer_open(scorer *s, const char *path, char *err, size_t errlen) {
    const model_open_options opt = {.scalar_head = true, .require_head = true};
    model_info info;
    char why[400];
    if (model_load(path, &opt, &s->m, &info, why, sizeof why) != 0) {
        snprintf(err, errlen, "reward model %s: %s", path, why);
        return -1;
    }
    s->cap =
        model_max_seq_len(&s->m) < SCORE_MAX_TOKENS ? model_max_seq_len(&s->m) : SCORE_MAX_TOKENS;
    if (model_reserve(&s->m, 1, s->cap, why, sizeof why) != 0) {
        model_free(&s->m);
        snprintf(err, errlen, "reward model %s: %s", path, why);
        return -1;
    }
    s->gain = info.reward_gain, s->bias = info.reward_bias;
    return 0;
}

/* The normalised reward of prompt + response + EOT, as the reward job
 * trained on it (the head at the last token); NAN if it does not tokenize. */
static double scorer_score(scorer *s, const tokenizer *tok, const char *prompt,
                           const char *response) {
    int32_t ids[SCORE_MAX_TOKENS];
    uint8_t mask[SCORE_MAX_TOKENS];
    const text_pair ex = {prompt, response, NULL, 0};
    const int64_t n = sft_tokenize(tok, &ex, true, ids, mask, s->cap);
    if (n < 1)
        return NAN;
    model_forward(&s->m, ids, NULL, NULL, 1, (int)n, 0, 0);
    return s->gain * model_values(&s->m)[n - 1] + s->bias;
}

/* K responses to prompt from policy (rng stream `stream` of seed) into
 * texts[0..K) (malloc'd). 0 or -1 with err. */
static int sample_prompt(const model *policy, const tokenizer *tok, const loop_sample_config *cfg,
                         const char *prompt, uint64_t stream, char **texts, char *err,
                         size_t errlen) {
    const int K = (int)cfg->samples_per_prompt, context = model_max_seq_len(policy);
    const size_t len = strlen(prompt);
    const int64_t P = tokenizer_encode(tok, prompt, len, NULL, 0, false);
    if (P < 1 || P >= context) {
        snprintf(err, errlen, "prompt \"%.60s\" takes %lld tokens; the policy's context is %d",
                 prompt, (long long)P, context);
        return -1;
    }
    const int N = cfg->max_tokens < context - P ? (int)cfg->max_tokens : context - (int)P;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(K * P));
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)(K * N));
    int32_t *gen_len = calloc((size_t)K, sizeof(int32_t));
    const size_t cap = (size_t)N * 32 + 64;
    int rc = ids && gen && gen_len ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    for (int b = 0; rc == 0 && b < K; b++)
        tokenizer_encode(tok, prompt, len, ids + (int64_t)b * P, (size_t)P, false);
    rng_state rng;
    rng_seed(&rng, (uint64_t)cfg->seed, stream);
    if (rc == 0)
        rc = model_generate(policy, ids, NULL, K, (int)P, (float)cfg->temperature, 0, 1.0f, N,
                            tok->eot_id, &rng, gen, gen_len, err, errlen);
    for (int b = 0; rc == 0 && b < K; b++) {
        int n = gen_len[b];
        while (n > 0 && model_is_eos(policy, tok->eot_id, gen[(int64_t)b * N + n - 1]))
            n--;
        if ((texts[b] = malloc(cap)) == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        int64_t m = tokenizer_decode(tok, gen + (int64_t)b * N, (size_t)n, texts[b], cap - 1);
        m = m < 0 ? 0 : m > (int64_t)cap - 1 ? (int64_t)cap - 1 : m;
        texts[b][m] = '\0';
    }
    free(ids), free(gen), free(gen_len);
    return rc;
}

int loop_sample_run(const loop_sample_config *cfg, const loop_sample_inputs *in,
                    const train_sink *sink, char *err, size_t errlen) {
    if (in->n_rows < 1 || in->n_reward < 0 || in->n_reward > LOOP_SAMPLE_MAX_MODELS) {
        snprintf(err, errlen, "loop-sample needs a prompts dataset and at most %d reward models",
                 LOOP_SAMPLE_MAX_MODELS);
        return -1;
    }
    const int P = (int)cfg->n_prompts, K = (int)cfg->samples_per_prompt, N = P * K;
    const int M = in->n_reward;
    char **texts = calloc((size_t)N, sizeof *texts);
    double *scores = calloc((size_t)N * (size_t)(M > 0 ? M : 1), sizeof *scores);
    sink_sample *rows = calloc((size_t)N, sizeof *rows);
    const char *prompts[LOOP_SAMPLE_MAX_PROMPTS];
    model policy;
    model_info info;
    char why[400];
    bool loaded = false;
    int rc = texts && scores && rows ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    else if ((rc = model_load(in->policy_checkpoint, NULL, &policy, &info, why, sizeof why)) != 0)
        snprintf(err, errlen, "model: %s", why);
    loaded = rc == 0;
    for (int i = 0; rc == 0 && i < P; i++) {
        prompts[i] = in->prompts[(cfg->prompt_offset + i) % in->n_rows];
        rc = sample_prompt(&policy, in->tok, cfg, prompts[i], (uint64_t)i, texts + i * K, err,
                           errlen);
        if (sink_should_stop(sink)) /* asked to stop: the job is requeued or cancelled */
            goto done;
    }
    if (loaded) /* its memory back before the reward models load */
        model_free(&policy);
    loaded = false;
    for (int e = 0; rc == 0 && e < M; e++) {
        scorer s;
        if ((rc = scorer_open(&s, in->reward_checkpoints[e], err, errlen)) != 0)
            break;
        for (int b = 0; b < N; b++)
            scores[b * M + e] = scorer_score(&s, in->tok, prompts[b / K], texts[b]);
        model_free(&s.m);
    }
    double gold = 0.0;
    for (int b = 0; rc == 0 && b < N; b++) {
        rows[b] = (sink_sample){.prompt_index = b / K,
                                .prompt = prompts[b / K],
                                .response = texts[b],
                                .gold = demo_task_gold_score(prompts[b / K], texts[b]),
                                .scores = scores + (int64_t)b * M,
                                .n_scores = M};
        gold += rows[b].gold / N;
    }
    if (rc == 0) {
        const sink_metric m[] = {{"samples", (double)N}, {"gold_mean", gold}};
        if (sink_metrics(sink, 1, m, 2) != 0 || sink_samples(sink, rows, N) != 0) {
            snprintf(err, errlen, "cannot store the samples");
            rc = -1;
        }
    }
done:
    if (loaded)
        model_free(&policy);
    for (int b = 0; texts && b < N; b++)
        free(texts[b]);
    free(texts), free(scores), free(rows);
    return rc;
}
