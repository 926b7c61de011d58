/* See grpo_lm.h. */
#include "grpo_lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grader.h"
#include "lm_policy.h"
#include "optim.h"
#include "ppo.h"
#include "rng.h"
#include "sft.h"
#include "train_state.h"

static const char *const aggregation_choices[] = {"sequence", "token", "constant", NULL};

#define F(name) offsetof(grpo_lm_config, name)
#define ROW_SEED                                                                                   \
    {                                                                                              \
        "seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,                                     \
            "Seeds the prompt order, the sampling and the adapters."                               \
    }
#define ROW_TOTAL_STEPS                                                                            \
    {                                                                                              \
        "total_steps", HPARAM_INT, F(total_steps), 100, 1, 1e9, NULL,                              \
            "Batches to sample and train on."                                                      \
    }
#define ROW_PROMPTS                                                                                \
    {                                                                                              \
        "prompts_per_step", HPARAM_INT, F(prompts_per_step), 4, 1, 1024, NULL,                     \
            "Prompts per batch (each sampled num_generations times)."                              \
    }
#define ROW_LR                                                                                     \
    {                                                                                              \
        "learning_rate", HPARAM_FLOAT, F(learning_rate), 1e-6, 0, 1, NULL,                         \
            "Adam step size (TRL's default)."                                                      \
    }
#define ROW_ANNEAL                                                                                 \
    {                                                                                              \
        "anneal_lr", HPARAM_BOOL, F(anneal_lr), 1, 0, 0, NULL,                                     \
            "Anneal the learning rate linearly to 0."                                              \
    }
#define ROW_CLIP                                                                                   \
    {                                                                                              \
        "max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 1.0, 0, 1e6, NULL,                        \
            "Clip the global gradient norm to this."                                               \
    }
#define ROW_LENGTH                                                                                 \
    {                                                                                              \
        "max_completion_length", HPARAM_INT, F(max_completion_length), 32, 1, 4096, NULL,          \
            "Most tokens sampled per completion (EOS included)."                                   \
    }
#define ROW_TEMPERATURE                                                                            \
    { "temperature", HPARAM_FLOAT, F(temperature), 1.0, 0.01, 10, NULL, "Sampling temperature." }
#define ROW_GRADER                                                                                 \
    {                                                                                              \
        "grader", HPARAM_JSON, F(grader), 0, 0, 0, NULL,                                           \
            "A grader object (OpenAI's shapes: string_check, text_similarity, regex, length, "     \
            "score_model, multi; docs/algorithms.md) scoring each completion against its prompt "  \
            "row "                                                                                 \
            "(item.prompt, item.answer); \"\" = none."                                             \
    }
#define ROW_GRADER_WEIGHT                                                                          \
    {                                                                                              \
        "grader_weight", HPARAM_FLOAT, F(grader_weight), 1.0, -1e6, 1e6, NULL,                     \
            "Weight of the grader's score in the reward."                                          \
    }
#define ROW_RM_WEIGHT                                                                              \
    {                                                                                              \
        "reward_model_weight", HPARAM_FLOAT, F(reward_model_weight), 1.0, -1e6, 1e6, NULL,         \
            "Weight of the reward model's normalised score in the reward (when the job has one)."  \
    }
#define ROW_EVAL                                                                                   \
    {                                                                                              \
        "eval_interval", HPARAM_INT, F(eval_interval), 20, 0, 1e9, NULL,                           \
            "Greedy held-out reward (eval/reward) every this many steps (0 = start and end only)." \
    }
#define ROW_CHECKPOINT                                                                             \
    {                                                                                              \
        "checkpoint_interval", HPARAM_INT, F(checkpoint_interval), 0, 0, 1e9, NULL,                \
            "Checkpoint every this many steps (0 = only at the end); these and a stopped run's "   \
            "checkpoint can resume."                                                               \
    }
#define ROWS_LORA                                                                                  \
    {"lora_r",                                                                                     \
     HPARAM_INT,                                                                                   \
     F(lora_r),                                                                                    \
     0,                                                                                            \
     0,                                                                                            \
     4096,                                                                                         \
     NULL,                                                                                         \
     "LoRA rank (0 = full fine-tuning); with LoRA the reference is the policy with its "           \
     "adapters off."},                                                                             \
        {"lora_alpha",  HPARAM_FLOAT,                                                              \
         F(lora_alpha), 16,                                                                        \
         1e-6,          1e6,                                                                       \
         NULL,          "LoRA alpha: adapters are scaled by lora_alpha / lora_r."},                \
    {                                                                                              \
        "lora_targets", HPARAM_CHOICE, F(lora_targets), 0, 0, 0, lm_lora_target_choices,           \
            LM_LORA_TARGETS_DOC                                                                    \
    }

#define ROWS_ROLLOUT                                                                               \
    {"rollout_samples", HPARAM_INT, F(rollout_samples), 2, 0, 64, NULL, LM_ROLLOUT_SAMPLES_DOC}, { \
        "rollout_interval", HPARAM_INT, F(rollout_interval), 10, 1, 1e9, NULL,                     \
            LM_ROLLOUT_INTERVAL_DOC                                                                \
    }

static const hparam_def grpo_defs[] = {
    ROW_SEED,
    ROW_TOTAL_STEPS,
    ROW_PROMPTS,
    {"num_generations", HPARAM_INT, F(num_generations), 8, 2, 1024, NULL,
     "Completions per prompt (G): the group each advantage is relative to."},
    {"num_iterations", HPARAM_INT, F(num_iterations), 1, 1, 100, NULL,
     "Optimizer steps on each batch (TRL's num_iterations; μ in the GRPO paper)."},
    ROW_LR,
    ROW_ANNEAL,
    ROW_CLIP,
    {"epsilon_low", HPARAM_FLOAT, F(epsilon_low), 0.2, 0, 10, NULL,
     "Lower clip: the ratio is kept above 1 - epsilon_low."},
    {"epsilon_high", HPARAM_FLOAT, F(epsilon_high), 0.2, 0, 10, NULL,
     "Upper clip: the ratio is kept below 1 + epsilon_high (DAPO's clip-higher: 0.28)."},
    {"beta", HPARAM_FLOAT, F(beta), 0.0, 0, 100, NULL,
     "β of the k3 KL to the reference in the loss; 0 (TRL's default) = no KL and no "
     "reference."},
    {"loss_aggregation", HPARAM_CHOICE, F(loss_aggregation), 0, 0, 0, aggregation_choices,
     "sequence: mean over each completion's tokens, then over completions (GRPO); token: mean "
     "over all tokens (DAPO); constant: sum over tokens / (completions · "
     "max_completion_length) (Dr. GRPO)."},
    {"scale_rewards", HPARAM_BOOL, F(scale_rewards), 1, 0, 0, NULL,
     "Divide advantages by the group's reward std (false: Dr. GRPO)."},
    {"skip_zero_std", HPARAM_BOOL, F(skip_zero_std), 0, 0, 0, NULL,
     "Leave groups whose rewards are all equal out of the loss (they carry no signal)."},
    ROW_LENGTH,
    ROW_TEMPERATURE,
    ROW_GRADER,
    ROW_GRADER_WEIGHT,
    ROW_RM_WEIGHT,
    ROW_EVAL,
    ROW_CHECKPOINT,
    ROWS_ROLLOUT,
    ROWS_LORA,
};

static const hparam_def rloo_defs[] = {
    ROW_SEED,
    ROW_TOTAL_STEPS,
    ROW_PROMPTS,
    {"num_generations", HPARAM_INT, F(num_generations), 4, 2, 1024, NULL,
     "Completions per prompt (k): each one's baseline is the mean reward of the other k - 1."},
    ROW_LR,
    ROW_ANNEAL,
    ROW_CLIP,
    {"beta", HPARAM_FLOAT, F(beta), 0.05, 0, 100, NULL,
     "β of the KL penalty in the reward: r = score - β Σ_t (log π - log π_ref) (TRL's RLOO "
     "default 0.05)."},
    ROW_LENGTH,
    ROW_TEMPERATURE,
    ROW_GRADER,
    ROW_GRADER_WEIGHT,
    ROW_RM_WEIGHT,
    ROW_EVAL,
    ROW_CHECKPOINT,
    ROWS_ROLLOUT,
    ROWS_LORA,
};
#undef F

const hparam_table grpo_lm_hparams = {grpo_defs, (int)(sizeof grpo_defs / sizeof grpo_defs[0]),
                                      sizeof(grpo_lm_config)};
const hparam_table rloo_lm_hparams = {rloo_defs, (int)(sizeof rloo_defs / sizeof rloo_defs[0]),
                                      sizeof(grpo_lm_config)};

static int validate_grader(const grpo_lm_config *cfg, char *err, size_t errlen) {
    if (cfg->grader[0] == '\0')
        return 0;
    char why[400];
    grader *g = grader_parse_text(cfg->grader, "grader", why, sizeof why);
    if (g == NULL) {
        snprintf(err, errlen, "hyperparameter 'grader': %s", why);
        return -1;
    }
    grader_free(g);
    return 0;
}

int grpo_lm_validate(const grpo_lm_config *cfg, char *err, size_t errlen) {
    return validate_grader(cfg, err, errlen);
}

int rloo_lm_validate(const grpo_lm_config *cfg, char *err, size_t errlen) {
    return validate_grader(cfg, err, errlen);
}

/* ==== the job ===================================================================== */

typedef struct grpo_job {
    const grpo_lm_config *cfg;
    const grpo_lm_inputs *in;
    const train_sink *sink;
    bool rloo;
    model policy, ref, rm; /* ref: without LoRA and with a KL; rm: optional */
    bool use_ref, use_rm;
    double gain, bias;
    grader *grader;
    int n_parts;
    int G, B, P, N, eot;
    float inv_temp;
    int32_t **prompt_tokens, *prompt_len, *order;
    json_t **items; /* per prompt {"prompt", "answer"} */
    json_t **eval_items;
    int32_t *batch_prompt; /* (B) which prompt each row answers */
    int32_t *prompt_ids;   /* (B, P) */
    uint8_t *prompt_mask;  /* (B, P) */
    int32_t *gen, *gen_len;
    lm_rows rows;
    float *reward, *adv, *old_logp, *ref_logp, *logp, *tok_loss, *dlogp, *w, *tok_adv; /* (B, N) */
    int32_t *agg_len;                                                                  /* (B) */
    double *parts;   /* (B, n_parts) */
    float *rm_score; /* (B) */
    float *score;    /* (B) the reward before RLOO's KL term */
    int32_t *ids_scratch;
    uint8_t *mask_scratch;
    lm_train_state st; /* extra: the first eval/reward */
} grpo_job;

static lm_lora_spec lora_spec(const grpo_lm_config *cfg) {
    return (lm_lora_spec){cfg->lora_r, cfg->lora_alpha, cfg->lora_targets, (uint64_t)cfg->seed};
}

/* The reward model's normalised score of (prompt ids + completion) row b of
 * rows, from its forward over rows [r0, r0 + n). */
static void rm_scores(grpo_job *job, int r0, int n) {
    const lm_rows *r = &job->rows;
    const int S = r->S;
    model_forward(&job->rm, r->seq + (int64_t)r0 * S, r->positions + (int64_t)r0 * S,
                  r->seq_mask + (int64_t)r0 * S, n, S, 0, 0);
    const float *values = model_values(&job->rm);
    for (int i = 0; i < n; i++) {
        const int last = r->P + r->len[r0 + i] - 1;
        job->rm_score[r0 + i] = (float)(job->gain * values[(int64_t)i * S + last] + job->bias);
    }
}

/* score_model graders score with the job's reward model. */
static int score_with_rm(void *ctx, const char *model_name, const char *prompt, const char *text,
                         double *score, char *err, size_t errlen) {
    grpo_job *job = ctx;
    (void)model_name;
    if (!job->use_rm) {
        snprintf(err, errlen,
                 "a score_model grader needs the job's reward model (reward_model); this job has "
                 "none");
        return -1;
    }
    const int cap = model_max_seq_len(&job->rm);
    const text_pair ex = {prompt ? prompt : "", text, NULL, 0};
    const int64_t n =
        sft_tokenize(job->in->tok, &ex, false, job->ids_scratch, job->mask_scratch, cap);
    if (n < 1) {
        snprintf(err, errlen, "score_model: the text could not be tokenized");
        return -1;
    }
    model_forward(&job->rm, job->ids_scratch, NULL, NULL, 1, (int)n, 0, 0);
    *score = job->gain * model_values(&job->rm)[n - 1] + job->bias;
    return 0;
}

static int load_models(grpo_job *job, char *err, size_t errlen) {
    const grpo_lm_config *cfg = job->cfg;
    const grpo_lm_inputs *in = job->in;
    const lm_lora_spec spec = lora_spec(cfg);
    if (lm_open_policy(&job->policy, in->policy_checkpoint, in->resume_checkpoint, &spec,
                       0xF0000001u, err, errlen) != 0)
        return -1;
    if (job->use_ref && cfg->lora_r != 0 && in->ref_checkpoint != NULL) {
        snprintf(err, errlen,
                 "a reference model apart from the policy's init needs full fine-tuning "
                 "(lora_r 0): with LoRA the reference is the base model");
        return -1;
    }
    if (job->use_ref && cfg->lora_r == 0 &&
        lm_open_model(&job->ref, in->ref_checkpoint ? in->ref_checkpoint : in->policy_checkpoint,
                      false, LM_LORA_NONE, &spec, 0, NULL, err, errlen) != 0)
        return -1;
    if (job->use_rm) {
        model_info info;
        if (lm_open_model(&job->rm, in->reward_checkpoint, true, LM_LORA_NONE, &spec, 0, &info, err,
                          errlen) != 0)
            return -1;
        job->gain = info.reward_gain, job->bias = info.reward_bias;
        if (!info.head_loaded) {
            snprintf(err, errlen, "the reward model %s has no reward head", in->reward_checkpoint);
            return -1;
        }
    }
    if (!lm_weights_finite(&job->policy)) {
        snprintf(err, errlen, "the policy's weights are not finite");
        return -1;
    }
    if (in->tok->vocab_size > model_vocab_size(&job->policy) ||
        (job->use_rm && model_vocab_size(&job->rm) != model_vocab_size(&job->policy))) {
        snprintf(err, errlen, "the policy, reward model and tokenizer vocabularies do not match");
        return -1;
    }
    return 0;
}

static json_t *make_item(const char *prompt, const char *answer) {
    return json_pack("{s:s, s:s}", "prompt", prompt, "answer", answer ? answer : "");
}

static int prepare(grpo_job *job, char *err, size_t errlen) {
    const grpo_lm_inputs *in = job->in;
    const int N = job->N, B = job->B;
    int context = model_max_seq_len(&job->policy);
    if (job->use_rm && model_max_seq_len(&job->rm) < context)
        context = model_max_seq_len(&job->rm);
    const int cap = context - N;
    if (cap < 1) {
        snprintf(err, errlen,
                 "hyperparameter 'max_completion_length': %d leaves no room for a prompt in a "
                 "context of %d",
                 N, context);
        return -1;
    }
    const int64_t np = in->n_prompts, ne = in->eval_prompts ? in->n_eval : 0;
    job->prompt_tokens = calloc((size_t)(np + ne), sizeof *job->prompt_tokens);
    job->prompt_len = calloc((size_t)(np + ne), sizeof *job->prompt_len);
    job->items = calloc((size_t)(np + ne), sizeof *job->items);
    job->eval_items = job->items + np;
    job->order = malloc(sizeof(int32_t) * (size_t)np);
    if (!job->prompt_tokens || !job->prompt_len || !job->items || !job->order) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    job->P = 1;
    for (int64_t i = 0; i < np + ne; i++) {
        const char *p = i < np ? in->prompts[i] : in->eval_prompts[i - np];
        const char *a = i < np ? (in->answers ? in->answers[i] : NULL)
                               : (in->eval_answers ? in->eval_answers[i - np] : NULL);
        job->prompt_tokens[i] = malloc(sizeof(int32_t) * (size_t)cap);
        job->items[i] = make_item(p, a);
        const int64_t n =
            job->prompt_tokens[i]
                ? tokenizer_encode_input(in->tok, p, strlen(p), job->prompt_tokens[i], (size_t)cap,
                                         in->prompts_rendered && in->prompts_rendered[i])
                : -1;
        if (n < 1 || job->items[i] == NULL) {
            snprintf(err, errlen, "%s prompt %lld is empty or could not be tokenized",
                     i < np ? "training" : "held-out", (long long)(i < np ? i : i - np) + 1);
            return -1;
        }
        job->prompt_len[i] = (int32_t)(n < cap ? n : cap);
        job->P = job->prompt_len[i] > job->P ? job->prompt_len[i] : job->P;
    }
    const int64_t BN = (int64_t)B * N;
    float **f[] = {&job->old_logp, &job->ref_logp, &job->logp,   &job->tok_loss,
                   &job->dlogp,    &job->w,        &job->tok_adv};
    bool ok = true;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        ok &= (*f[i] = malloc(sizeof(float) * (size_t)BN)) != NULL;
    job->reward = malloc(sizeof(float) * (size_t)B);
    job->adv = malloc(sizeof(float) * (size_t)B);
    job->rm_score = calloc((size_t)B, sizeof(float));
    job->score = calloc((size_t)B, sizeof(float));
    job->agg_len = malloc(sizeof(int32_t) * (size_t)B);
    job->parts = calloc((size_t)B * (size_t)(job->n_parts ? job->n_parts : 1), sizeof(double));
    job->batch_prompt = malloc(sizeof(int32_t) * (size_t)B);
    job->prompt_ids = malloc(sizeof(int32_t) * (size_t)B * (size_t)job->P);
    job->prompt_mask = malloc((size_t)B * (size_t)job->P);
    job->gen = malloc(sizeof(int32_t) * (size_t)BN);
    job->gen_len = malloc(sizeof(int32_t) * (size_t)B);
    job->ids_scratch = malloc(sizeof(int32_t) * (size_t)context);
    job->mask_scratch = malloc((size_t)context);
    const int S = job->P + N;
    if (!ok || !job->reward || !job->adv || !job->rm_score || !job->score || !job->agg_len ||
        !job->parts || !job->batch_prompt || !job->prompt_ids || !job->prompt_mask || !job->gen ||
        !job->gen_len || !job->ids_scratch || !job->mask_scratch ||
        lm_rows_alloc(&job->rows, B, job->P, N) != 0 ||
        model_reserve(&job->policy, B, S, err, errlen) != 0 ||
        (lm_model_loaded(&job->ref) && model_reserve(&job->ref, B, S, err, errlen) != 0) ||
        (job->use_rm && model_reserve(&job->rm, B, S > context ? S : context, err, errlen) != 0)) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for the batches");
        return -1;
    }
    return 0;
}

static void job_free(grpo_job *job) {
    const int64_t n = job->in->n_prompts + (job->in->eval_prompts ? job->in->n_eval : 0);
    for (int64_t i = 0; job->prompt_tokens && i < n; i++)
        free(job->prompt_tokens[i]);
    for (int64_t i = 0; job->items && i < n; i++)
        json_decref(job->items[i]);
    free(job->prompt_tokens), free(job->prompt_len), free(job->items), free(job->order);
    void *p[] = {
        job->old_logp,    job->ref_logp, job->logp,    job->tok_loss,     job->dlogp,
        job->w,           job->tok_adv,  job->reward,  job->adv,          job->rm_score,
        job->score,       job->agg_len,  job->parts,   job->batch_prompt, job->prompt_ids,
        job->prompt_mask, job->gen,      job->gen_len, job->ids_scratch,  job->mask_scratch};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
    lm_rows_free(&job->rows);
    lm_train_state_free(&job->st);
    grader_free(job->grader);
    model_free(&job->policy);
    model_free(&job->ref);
    model_free(&job->rm);
}

static const hparam_table *job_table(const grpo_job *job) {
    return job->rloo ? &rloo_lm_hparams : &grpo_lm_hparams;
}

/* ---- sampling and scoring ------------------------------------------------------------ */

/* Left-pads the prompts of batch_prompt[0..n) (indices into prompt_tokens)
 * into prompt_ids / prompt_mask. */
static void layout_prompts(grpo_job *job, int n) {
    const int P = job->P;
    for (int b = 0; b < n; b++) {
        const int32_t p = job->batch_prompt[b];
        const int pad = P - job->prompt_len[p];
        for (int c = 0; c < P; c++) {
            job->prompt_ids[(int64_t)b * P + c] =
                c < pad ? job->eot : job->prompt_tokens[p][c - pad];
            job->prompt_mask[(int64_t)b * P + c] = (uint8_t)(c >= pad);
        }
    }
}

/* Lays out rows [r0, r0 + n) from their prompts and sampled completions. */
static void layout_rows(grpo_job *job, int r0, int n) {
    for (int b = r0; b < r0 + n; b++) {
        const int32_t p = job->batch_prompt[b];
        lm_rows_set(&job->rows, b, job->prompt_tokens[p], job->prompt_len[p],
                    job->gen + (int64_t)b * job->N, job->gen_len[b], job->eot);
    }
}

/* Samples completions of the laid-out prompts [r0, r0 + n) from rng and lays
 * out their rows. */
static int generate(grpo_job *job, int r0, int n, rng_state *rng, char *err, size_t errlen) {
    const int P = job->P, N = job->N;
    if (model_generate(&job->policy, job->prompt_ids + (int64_t)r0 * P,
                       job->prompt_mask + (int64_t)r0 * P, n, P, (float)job->cfg->temperature, 0,
                       1.0f, N, job->eot, rng, job->gen + (int64_t)r0 * N, job->gen_len + r0, err,
                       errlen) != 0)
        return -1;
    layout_rows(job, r0, n);
    return 0;
}

/* The reward of rows [r0, r0 + n): grader and reward model, weighted.
 * items: the prompt rows, by batch_prompt. 0, or -1 with err (a grader
 * error: bad data). */
static int score(grpo_job *job, int r0, int n, json_t *const *items, char *err, size_t errlen) {
    const grpo_lm_config *cfg = job->cfg;
    if (job->use_rm && n > 0)
        rm_scores(job, r0, n);
    for (int b = r0; b < r0 + n; b++) {
        double r = job->use_rm ? cfg->reward_model_weight * job->rm_score[b] : 0.0;
        if (job->grader != NULL) {
            char text[4096];
            const int32_t *g = job->gen + (int64_t)b * job->N;
            const int len =
                job->gen_len[b] - (job->gen_len[b] > 0 && g[job->gen_len[b] - 1] == job->eot);
            const int64_t k = tokenizer_decode(job->in->tok, g, (size_t)len, text, sizeof text - 1);
            text[k < 0 ? 0 : k] = '\0';
            const int32_t p = job->batch_prompt[b];
            const grader_sample s = {json_string_value(json_object_get(items[p], "prompt")), text};
            double gs;
            char why[300];
            if (grader_score_parts(job->grader, &s, items[p], &gs,
                                   job->parts + (int64_t)b * job->n_parts, why, sizeof why) != 0) {
                snprintf(err, errlen, "grader: %s", why);
                return -1;
            }
            r += cfg->grader_weight * gs;
        }
        job->reward[b] = (float)r;
    }
    return 0;
}

/* Mean reward of one completion per held-out prompt, sampled at the
 * training temperature from the same RNG stream at every evaluation
 * (common random numbers: two evaluations differ by the policy alone). */
static int evaluate(grpo_job *job, double *out, char *err, size_t errlen) {
    const int64_t ne = job->in->eval_prompts ? job->in->n_eval : 0;
    double sum = 0.0;
    rng_state rng;
    rng_seed(&rng, (uint64_t)job->cfg->seed, 0xF0000004u);
    for (int64_t i0 = 0; i0 < ne; i0 += job->B) {
        const int n = (int)(ne - i0 < job->B ? ne - i0 : job->B);
        for (int b = 0; b < n; b++)
            job->batch_prompt[b] = (int32_t)(job->in->n_prompts + i0 + b);
        layout_prompts(job, n);
        if (generate(job, 0, n, &rng, err, errlen) != 0 ||
            score(job, 0, n, job->items, err, errlen) != 0)
            return -1;
        for (int b = 0; b < n; b++)
            sum += job->reward[b];
    }
    *out = ne > 0 ? sum / (double)ne : NAN;
    return 0;
}

/* ---- one step ------------------------------------------------------------------------ */

typedef struct step_stats {
    double reward, reward_std, zero_std, kl, clip_low, clip_high, loss, grad_norm;
    double len_mean, len_min, len_max, clipped;
    double rm_mean;
} step_stats;

/* The next prompts_per_step prompts, each G times. */
static void next_batch(grpo_job *job) {
    for (int i = 0; i < job->B / job->G; i++) {
        const int32_t p = lm_train_state_next(&job->st, job->order, job->in->n_prompts);
        for (int g = 0; g < job->G; g++)
            job->batch_prompt[i * job->G + g] = p;
    }
    layout_prompts(job, job->B);
}

/* Reference log-probs of rows [r0, r0 + n) into ref_logp. */
static void reference_logprobs(grpo_job *job, int r0, int n) {
    float *out = job->ref_logp + (int64_t)r0 * job->N;
    if (model_has_lora(&job->policy)) {
        model_set_lora_enabled(&job->policy, false);
        lm_rows_logprobs(&job->policy, &job->rows, r0, n, job->inv_temp, out);
        model_set_lora_enabled(&job->policy, true);
    } else {
        lm_rows_logprobs(&job->ref, &job->rows, r0, n, job->inv_temp, out);
    }
}

/* This rank's rows: its shard of the groups, [*r0, *r0 + *n). */
static void my_rows(const grpo_job *job, int *r0, int *n) {
    int64_t lo, hi;
    const dist_comm *dist = job->in->dist;
    dist_shard(job->B / job->G, dist_rank(dist), dist_size(dist), &lo, &hi);
    *r0 = (int)lo * job->G, *n = (int)(hi - lo) * job->G;
}

/* Every rank's rows of buf, (B rows of row_bytes), on every rank: the
 * shards are whole groups. 0 or -1. */
static int gather_rows(const grpo_job *job, void *buf, size_t row_bytes) {
    return dist_allgather_rows(job->in->dist, buf, row_bytes * (size_t)job->G, job->B / job->G);
}

/* One optimizer step on the batch (this rank's rows of it). Returns 0, or
 * 1 if not finite or the ranks failed (err says which). */
static int optimize(grpo_job *job, float lr, step_stats *ss, char *err, size_t errlen) {
    const grpo_lm_config *cfg = job->cfg;
    const int B = job->B, N = job->N;
    int r0, n;
    my_rows(job, &r0, &n);
    const int64_t i0 = (int64_t)r0 * N, i1 = (int64_t)(r0 + n) * N;
    model *pm = &job->policy;
    model_zero_grad(pm);
    if (n > 0)
        lm_rows_logprobs(pm, &job->rows, r0, n, job->inv_temp, job->logp + i0);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++)
            job->tok_adv[(int64_t)b * N + t] = job->adv[b];
    /* RLOO: REINFORCE, no clipping, the KL already in the reward */
    const float eps_lo = job->rloo ? INFINITY : (float)cfg->epsilon_low;
    const float eps_hi = job->rloo ? INFINITY : (float)cfg->epsilon_high;
    const float beta = job->rloo ? 0.0f : (float)cfg->beta;
    ppo_clipped_token_loss(job->tok_loss + i0, job->dlogp + i0, job->logp + i0, job->old_logp + i0,
                           job->ref_logp + i0, job->tok_adv + i0, (int)(i1 - i0), eps_lo, eps_hi,
                           beta);
    ppo_loss_weights(
        job->w, job->agg_len, B, N,
        job->rloo
            ? PPO_AGG_SUM
            : (ppo_loss_agg)(strcmp(cfg->loss_aggregation, "sequence") == 0 ? PPO_AGG_SEQUENCE
                             : strcmp(cfg->loss_aggregation, "token") == 0  ? PPO_AGG_TOKEN
                                                                            : PPO_AGG_CONSTANT));
    /* loss, clipped low, clipped high, tokens: this rank's, then the sums */
    double sums[4] = {0};
    for (int64_t i = i0; i < i1; i++) {
        sums[0] += (double)job->w[i] * job->tok_loss[i];
        job->dlogp[i] *= job->w[i];
        if (!job->rows.mask[i])
            continue;
        const double ratio = exp((double)job->logp[i] - job->old_logp[i]);
        sums[1] += ratio < 1.0 - eps_lo && job->tok_adv[i] < 0;
        sums[2] += ratio > 1.0 + eps_hi && job->tok_adv[i] > 0;
        sums[3]++;
    }
    if (n > 0)
        lm_rows_backward(pm, &job->rows, r0, job->inv_temp, job->dlogp + i0);
    err[0] = '\0';
    const double norm = lm_train_state_adam_dist(&job->st, pm, job->in->dist, sums, 4, lr,
                                                 cfg->max_grad_norm, err, errlen);
    if (!isfinite(norm))
        return 1;
    const double it = job->rloo ? 1.0 : (double)cfg->num_iterations;
    const double tokens = sums[3] > 0 ? sums[3] : 1;
    ss->loss += sums[0] / it, ss->grad_norm += norm / it;
    ss->clip_low += sums[1] / tokens / it;
    ss->clip_high += sums[2] / tokens / it;
    return 0;
}

/* Samples and scores this rank's groups of the batch (each group from its
 * own stream of the step's seed), then gathers every rank's completions,
 * rewards and log-probs. 0, or -1 with err. */
static int rollout(grpo_job *job, char *err, size_t errlen) {
    const int G = job->G, N = job->N, B = job->B;
    int r0, n;
    my_rows(job, &r0, &n);
    const uint64_t step_seed = rng_next_u64(&job->st.sample_rng);
    for (int g = r0 / G; g < (r0 + n) / G; g++) {
        rng_state rng;
        rng_seed(&rng, step_seed, (uint64_t)g);
        if (generate(job, g * G, G, &rng, err, errlen) != 0)
            return -1;
    }
    if (score(job, r0, n, job->items, err, errlen) != 0)
        return -1;
    if (n > 0) {
        lm_rows_logprobs(&job->policy, &job->rows, r0, n, job->inv_temp,
                         job->old_logp + (int64_t)r0 * N);
        if (job->use_ref)
            reference_logprobs(job, r0, n);
    }
    const size_t f = sizeof(float);
    if (gather_rows(job, job->gen, sizeof(int32_t) * (size_t)N) != 0 ||
        gather_rows(job, job->gen_len, sizeof(int32_t)) != 0 ||
        gather_rows(job, job->reward, f) != 0 || gather_rows(job, job->rm_score, f) != 0 ||
        (job->n_parts > 0 &&
         gather_rows(job, job->parts, sizeof(double) * (size_t)job->n_parts) != 0) ||
        gather_rows(job, job->old_logp, f * (size_t)N) != 0 ||
        (job->use_ref && gather_rows(job, job->ref_logp, f * (size_t)N) != 0)) {
        snprintf(err, errlen, "gathering the ranks' completions failed");
        return -1;
    }
    layout_rows(job, 0, B);
    if (!job->use_ref)
        memcpy(job->ref_logp, job->old_logp, sizeof(float) * (size_t)B * (size_t)N);
    return 0;
}

static int train_step(grpo_job *job, float lr, step_stats *ss, char *err, size_t errlen) {
    const grpo_lm_config *cfg = job->cfg;
    const int B = job->B, N = job->N, G = job->G;
    memset(ss, 0, sizeof *ss);
    next_batch(job);
    if (rollout(job, err, errlen) != 0)
        return -1;
    memcpy(job->score, job->reward, sizeof(float) * (size_t)B);
    /* KL per completion (k1 for RLOO's reward, k3 reported) */
    double kl_tokens = 0.0;
    int64_t tokens = 0;
    for (int b = 0; b < B; b++) {
        double k1 = 0.0;
        for (int t = 0; t < job->rows.len[b]; t++) {
            const double d =
                (double)job->old_logp[(int64_t)b * N + t] - job->ref_logp[(int64_t)b * N + t];
            k1 += d;
            kl_tokens += exp(-d) - 1.0 + d;
        }
        tokens += job->rows.len[b];
        if (job->rloo)
            job->reward[b] -= (float)(cfg->beta * k1);
    }
    ss->kl = tokens ? kl_tokens / (double)tokens : 0.0;
    int zero = 0;
    if (job->rloo)
        ppo_rloo_advantages(job->adv, job->reward, B / G, G);
    else
        zero = ppo_group_advantages(job->adv, job->reward, B / G, G, cfg->scale_rewards);
    ss->zero_std = (double)zero / (double)(B / G);
    for (int g = 0; g < B / G; g++) {
        double m = 0.0, v = 0.0;
        bool equal = true;
        for (int i = 0; i < G; i++)
            m += job->reward[g * G + i], equal &= job->reward[g * G + i] == job->reward[g * G];
        m /= G;
        for (int i = 0; i < G; i++)
            v += (job->reward[g * G + i] - m) * (job->reward[g * G + i] - m);
        ss->reward += m / (B / G);
        ss->reward_std += sqrt(v / (G - 1)) / (B / G);
        for (int i = 0; i < G; i++) /* skipped groups weigh nothing in the loss */
            job->agg_len[g * G + i] =
                equal && cfg->skip_zero_std && !job->rloo ? 0 : job->rows.len[g * G + i];
    }
    ss->len_min = N;
    for (int b = 0; b < B; b++) {
        const int len = job->rows.len[b];
        ss->len_mean += (double)len / B;
        ss->len_min = len < ss->len_min ? len : ss->len_min;
        ss->len_max = len > ss->len_max ? len : ss->len_max;
        ss->clipped += (len == 0 || job->gen[(int64_t)b * N + len - 1] != job->eot) / (double)B;
        ss->rm_mean += job->rm_score[b] / B;
    }
    const int64_t iters = job->rloo ? 1 : cfg->num_iterations;
    for (int64_t it = 0; it < iters; it++) {
        char why[300];
        if (optimize(job, lr, ss, why, sizeof why) != 0) {
            snprintf(err, errlen, "step %lld: %s", (long long)job->st.step + 1,
                     why[0] ? why : "the loss or the gradient is not finite");
            return -1;
        }
    }
    return 0;
}

static int report(grpo_job *job, const step_stats *ss, float lr) {
    sink_metric m[40];
    int n = 0;
    m[n++] = (sink_metric){"reward", ss->reward};
    m[n++] = (sink_metric){"reward_std", ss->reward_std};
    m[n++] = (sink_metric){"frac_reward_zero_std", ss->zero_std};
    m[n++] = (sink_metric){"kl", ss->kl};
    m[n++] = (sink_metric){"clip_ratio/low_mean", ss->clip_low};
    m[n++] = (sink_metric){"clip_ratio/high_mean", ss->clip_high};
    m[n++] = (sink_metric){"clip_ratio/region_mean", ss->clip_low + ss->clip_high};
    m[n++] = (sink_metric){"completions/mean_length", ss->len_mean};
    m[n++] = (sink_metric){"completions/min_length", ss->len_min};
    m[n++] = (sink_metric){"completions/max_length", ss->len_max};
    m[n++] = (sink_metric){"completions/clipped_ratio", ss->clipped};
    m[n++] = (sink_metric){"loss", ss->loss};
    m[n++] = (sink_metric){"grad_norm", ss->grad_norm};
    m[n++] = (sink_metric){"lr", lr};
    if (job->use_rm)
        m[n++] = (sink_metric){"rewards/reward_model/mean", ss->rm_mean};
    char names[16][96];
    for (int k = 0; k < job->n_parts && k < 16 && n < 40; k++) {
        double mean = 0.0;
        for (int b = 0; b < job->B; b++)
            mean += job->parts[(int64_t)b * job->n_parts + k] / job->B;
        snprintf(names[k], sizeof names[k], "rewards/%s/mean", grader_part_name(job->grader, k));
        m[n++] = (sink_metric){names[k], mean};
    }
    return sink_metrics(job->sink, job->st.step, m, n);
}

/* The first rollout_samples completions, token by token: GRPO's KL term is
 * k3 (in the loss, β > 0) and its reward the score on the last token; RLOO's
 * KL is k1 and each token is credited -β k1, the last one the score too
 * (their sum is RLOO's reward). Uses tok_loss and w as scratch. */
static int report_rollouts(grpo_job *job) {
    const grpo_lm_config *cfg = job->cfg;
    const int N = job->N;
    const int rows = (int)(cfg->rollout_samples < job->B ? cfg->rollout_samples : job->B);
    float *kl = job->tok_loss, *reward = job->w;
    for (int b = 0; b < rows; b++)
        for (int t = 0; t < N; t++) {
            const int64_t i = (int64_t)b * N + t;
            const double d = (double)job->old_logp[i] - job->ref_logp[i];
            kl[i] = (float)(job->rloo ? d : exp(-d) - 1.0 + d);
            reward[i] = (float)(job->rloo ? -cfg->beta * d : 0.0);
            if (t == job->rows.len[b] - 1)
                reward[i] += job->score[b];
        }
    const lm_rollout_batch batch = {
        job->in->tok,     job->B,   job->P,       N,          job->prompt_ids,
        job->prompt_mask, job->gen, job->gen_len, job->score, job->old_logp,
        job->ref_logp,    kl,       NULL,         reward,     job->tok_adv};
    return lm_report_rollouts(job->sink, job->st.step, cfg->total_steps, cfg->rollout_samples,
                              cfg->rollout_interval, &batch);
}

static int report_eval(grpo_job *job, grpo_lm_result *res, char *err, size_t errlen) {
    if (!job->in->eval_prompts || job->in->n_eval == 0 || !dist_is_root(job->in->dist))
        return 0;
    double r;
    if (evaluate(job, &r, err, errlen) != 0)
        return -1;
    if (isnan(job->st.extra))
        job->st.extra = r;
    res->first_eval = job->st.extra, res->last_eval = r;
    const sink_metric m[] = {{"eval/reward", r}};
    if (sink_metrics(job->sink, job->st.step, m, 1) != 0) {
        snprintf(err, errlen, "the metrics sink failed");
        return -1;
    }
    return 0;
}

/* ==== the loop ==================================================================== */

int grpo_lm_train(const grpo_lm_config *cfg, const grpo_lm_inputs *in, const train_sink *sink,
                  grpo_lm_result *result, char *err, size_t errlen) {
    if (errlen > 0)
        err[0] = '\0';
    grpo_lm_result res = {.first_eval = NAN, .last_eval = NAN, .first_reward = NAN};
    grpo_job job = {.cfg = cfg, .in = in, .sink = sink};
    job.rloo = in->algorithm == GRPO_ALGORITHM_RLOO;
    const char *name = job.rloo ? "rloo" : "grpo";
    if (validate_grader(cfg, err, errlen) != 0)
        return -1;
    if (in->n_prompts < 1 || in->policy_checkpoint == NULL) {
        snprintf(err, errlen, "%s needs prompts and a policy (SFT) checkpoint", name);
        return -1;
    }
    if (cfg->grader[0] == '\0' && in->reward_checkpoint == NULL) {
        snprintf(err, errlen,
                 "hyperparameter 'grader': %s needs a reward: a grader, a reward model, or both",
                 name);
        return -1;
    }
    job.use_rm = in->reward_checkpoint != NULL;
    job.use_ref = cfg->beta > 0.0;
    job.G = (int)cfg->num_generations;
    job.B = (int)(cfg->prompts_per_step * cfg->num_generations);
    job.N = (int)cfg->max_completion_length;
    job.eot = in->tok->eot_id;
    job.inv_temp = (float)(1.0 / cfg->temperature);
    int rc = -1;
    if (cfg->grader[0] != '\0') {
        job.grader = grader_parse_text(cfg->grader, "grader", err, errlen);
        if (job.grader == NULL)
            goto done;
        grader_set_score_fn(job.grader, score_with_rm, &job);
        job.n_parts = grader_part_count(job.grader);
    }
    if (load_models(&job, err, errlen) != 0 || prepare(&job, err, errlen) != 0)
        goto done;
    lm_train_state *st = &job.st;
    if (lm_train_state_init(st, &job.policy, (uint64_t)cfg->seed, 0xF0000002u, 0xF0000003u,
                            in->n_prompts) != 0) {
        snprintf(err, errlen, "out of memory for the optimizer");
        goto done;
    }
    if (in->resume_checkpoint != NULL &&
        lm_train_state_restore(st, &job.policy, in->resume_checkpoint, job_table(&job), cfg,
                               cfg->total_steps, job.order, in->n_prompts, err, errlen) != 0)
        goto done;
    if (st->step == 0 && report_eval(&job, &res, err, errlen) != 0)
        goto done;
    while (st->step < cfg->total_steps) {
        if (dist_should_stop(in->dist, sink)) {
            res.stopped = true;
            break;
        }
        const float lr = cfg->anneal_lr
                             ? lr_linear((float)cfg->learning_rate, st->step, cfg->total_steps)
                             : (float)cfg->learning_rate;
        step_stats ss;
        if (train_step(&job, lr, &ss, err, errlen) != 0)
            goto done;
        st->step++;
        if (isnan(res.first_reward))
            res.first_reward = ss.reward;
        res.last_reward = ss.reward;
        if (report(&job, &ss, lr) != 0 || report_rollouts(&job) != 0) {
            snprintf(err, errlen, "the metrics sink failed");
            goto done;
        }
        if ((st->step == cfg->total_steps ||
             (cfg->eval_interval > 0 && st->step % cfg->eval_interval == 0)) &&
            report_eval(&job, &res, err, errlen) != 0)
            goto done;
        if (dist_is_root(in->dist) && st->step < cfg->total_steps && cfg->checkpoint_interval > 0 &&
            st->step % cfg->checkpoint_interval == 0 &&
            lm_train_state_emit(st, &job.policy, sink, name, job_table(&job), cfg, true, err,
                                errlen) != 0)
            goto done;
    }
    res.steps = st->step;
    res.first_eval = st->extra;
    if (dist_is_root(in->dist) && lm_train_state_emit(st, &job.policy, sink, name, job_table(&job),
                                                      cfg, res.stopped, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (result)
        *result = res;
    job_free(&job);
    return rc;
}
