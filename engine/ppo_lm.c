/* See ppo_lm.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lm_policy.h"
#include "model.h"
#include "optim.h"
#include "ppo.h"
#include "ppo_lm.h"
#include "rng.h"
#include "safetensors.h"
#include "train_state.h"

static const char *const estimator_choices[] = {"k1", "k3", "abs", NULL};
static const char *const value_model_choices[] = {"reward_model", "policy_head", NULL};

#define F(name) offsetof(ppo_lm_config, name)
static const hparam_def ppo_lm_defs[] = {
    {"seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,
     "Seeds the prompt order, sampling and minibatch shuffles."},
    {"total_updates", HPARAM_INT, F(total_updates), 100, 1, 1e9, NULL, "PPO updates to run."},
    {"batch_size", HPARAM_INT, F(batch_size), 16, 1, 4096, NULL, "Prompts per rollout."},
    {"mini_batch_size", HPARAM_INT, F(mini_batch_size), 4, 1, 4096, NULL,
     "Rollout rows per gradient step; must divide batch_size."},
    {"ppo_epochs", HPARAM_INT, F(ppo_epochs), 4, 1, 100, NULL, "Passes over each rollout."},
    {"learning_rate", HPARAM_FLOAT, F(learning_rate), 1e-5, 0, 1, NULL, "Adam step size."},
    {"anneal_lr", HPARAM_BOOL, F(anneal_lr), 1, 0, 0, NULL,
     "Anneal the learning rate linearly to 0."},
    {"max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 1.0, 0, 1e6, NULL,
     "Clip the global gradient norm to this."},
    {"clip_coef", HPARAM_FLOAT, F(clip_coef), 0.2, 0, 10, NULL, "Surrogate clipping epsilon."},
    {"vf_clip", HPARAM_FLOAT, F(vf_clip), 0.2, 0, 100, NULL, "Value clipping range."},
    {"vf_coef", HPARAM_FLOAT, F(vf_coef), 0.1, 0, 100, NULL, "Value loss coefficient."},
    {"gamma", HPARAM_FLOAT, F(gamma), 1.0, 0, 1, NULL, "Discount over response tokens."},
    {"lam", HPARAM_FLOAT, F(lam), 0.95, 0, 1, NULL, "GAE lambda."},
    {"kl_coef", HPARAM_FLOAT, F(kl_coef), 0.05, 0, 100, NULL,
     "β of the per-token KL penalty (initial value when adaptive)."},
    {"kl_estimator", HPARAM_CHOICE, F(kl_estimator), 0, 0, 0, estimator_choices,
     "Per-token KL estimator in the reward."},
    {"target_kl", HPARAM_FLOAT, F(target_kl), 0, 0, 1e6, NULL,
     "Adaptive β: target KL per sequence (Ziegler); 0 = fixed β."},
    {"kl_horizon", HPARAM_FLOAT, F(kl_horizon), 10000, 1, 1e12, NULL,
     "Adaptive β horizon, in samples."},
    {"whiten_rewards", HPARAM_BOOL, F(whiten_rewards), 0, 0, 0, NULL,
     "Whiten the per-token rewards (scale only) before GAE."},
    {"response_length", HPARAM_INT, F(response_length), 32, 1, 4096, NULL,
     "Most tokens sampled per response."},
    {"temperature", HPARAM_FLOAT, F(temperature), 1.0, 0.01, 10, NULL, "Sampling temperature."},
    {"missing_eos_penalty", HPARAM_FLOAT, F(missing_eos_penalty), 1.0, 0, 1e6, NULL,
     "Subtracted from the score of a response that never emitted EOS."},
    {"non_finite_patience", HPARAM_INT, F(non_finite_patience), 3, 1, 1000, NULL,
     "Non-finite updates in a row that fail the job (each is skipped)."},
    {"sample_interval", HPARAM_INT, F(sample_interval), 10, 0, 1e9, NULL,
     "Log sample generations every this many updates (0 = only at the end)."},
    {"checkpoint_interval", HPARAM_INT, F(checkpoint_interval), 0, 0, 1e9, NULL,
     "Checkpoint every this many updates (0 = only at the end); these and a stopped run's "
     "checkpoint can resume."},
    {"value_model", HPARAM_CHOICE, F(value_model), 0, 0, 0, value_model_choices,
     "Where values come from: reward_model = a separate GPT-2 initialised from the reward "
     "model (head included) with its own Adam, as InstructGPT and TRL; policy_head = a scalar "
     "head on the policy's trunk. Default reward_model: on the demo pipeline (3 seeds, "
     "bench/ppo_value_model.c) it raised the gold score by 1.60 vs 1.16 at a similar KL, for "
     "about 1.6x the time per update."},
    {"gradient_accumulation_steps", HPARAM_INT, F(gradient_accumulation_steps), 1, 1, 4096, NULL,
     "Micro-batches per minibatch (of mini_batch_size / this rows each), their gradients "
     "summed into one optimizer step; must divide mini_batch_size."},
    {"rollout_samples", HPARAM_INT, F(rollout_samples), 2, 0, 64, NULL, LM_ROLLOUT_SAMPLES_DOC},
    {"rollout_interval", HPARAM_INT, F(rollout_interval), 10, 1, 1e9, NULL,
     LM_ROLLOUT_INTERVAL_DOC},
    {"lora_r", HPARAM_INT, F(lora_r), 0, 0, 4096, NULL,
     "LoRA rank of the policy and the separate value model (0 = full fine-tuning). With LoRA "
     "their base weights are frozen, only adapters and the scalar head train, the reference "
     "is the policy with its adapters disabled, and the value model's adapters sit on the "
     "reward model's weights (no second copy of either)."},
    {"lora_alpha", HPARAM_FLOAT, F(lora_alpha), 16, 1e-6, 1e6, NULL,
     "LoRA alpha: adapters are scaled by lora_alpha / lora_r."},
    {"lora_targets", HPARAM_CHOICE, F(lora_targets), 0, 0, 0, lm_lora_target_choices,
     LM_LORA_TARGETS_DOC},
};
#undef F

const hparam_table ppo_lm_hparams = {ppo_lm_defs, (int)(sizeof ppo_lm_defs / sizeof ppo_lm_defs[0]),
                                     sizeof(ppo_lm_config)};

int ppo_lm_validate(const ppo_lm_config *cfg, char *err, size_t errlen) {
    if (cfg->batch_size % cfg->mini_batch_size != 0) {
        snprintf(err, errlen,
                 "hyperparameter 'mini_batch_size': %lld does not divide batch_size %lld",
                 (long long)cfg->mini_batch_size, (long long)cfg->batch_size);
        return -1;
    }
    if (cfg->mini_batch_size % cfg->gradient_accumulation_steps != 0) {
        snprintf(err, errlen,
                 "hyperparameter 'gradient_accumulation_steps': %lld does not divide "
                 "mini_batch_size %lld",
                 (long long)cfg->gradient_accumulation_steps, (long long)cfg->mini_batch_size);
        return -1;
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What the optimizer updates: with LoRA the adapters and the scalar head
 * (one flat buffer), else every parameter (model.h). */
#define trainable_params model_trainable_params
#define trainable_grads  model_trainable_grads
#define trainable_count  model_trainable_count

static lm_lora_spec lora_spec(const ppo_lm_config *cfg) {
    return (lm_lora_spec){cfg->lora_r, cfg->lora_alpha, cfg->lora_targets, (uint64_t)cfg->seed};
}

static void scale_logits(model *m, float s) {
    const int64_t n = model_logits_count(m);
    float *logits = model_logits(m);
    for (int64_t i = 0; i < n; i++)
        logits[i] *= s;
}

/* One rollout's worth of buffers, (B, N) unless noted. */
typedef struct rollout {
    int B, P, N, S;     /* rows, prompt columns, response columns, S = P + N */
    int32_t *seq;       /* (B, S) left-padded prompt then right-padded response */
    uint8_t *seq_mask;  /* (B, S) */
    int32_t *positions; /* (B, S) */
    int32_t *targets;   /* (B, S) next token */
    int32_t *len;       /* (B) response tokens incl. EOS */
    uint8_t *mask;      /* (B, N) real response tokens */
    float *logp, *ref_logp, *values, *kl, *rewards, *adv, *returns; /* (B, N) */
    float *score;         /* (B) normalised RM score incl. EOS penalty */
    float *full;          /* (B, S) scratch */
    float *dfull, *dvals; /* (B, S) backward scratch */
    int32_t *gen;         /* (B, N) sampled tokens */
    int32_t *prompt_ids;  /* (B, P) */
    uint8_t *prompt_mask; /* (B, P) */
} rollout;

static int rollout_alloc(rollout *ro, int B, int P, int N) {
    memset(ro, 0, sizeof *ro);
    ro->B = B, ro->P = P, ro->N = N, ro->S = P + N;
    const size_t BS = (size_t)B * (size_t)ro->S, BN = (size_t)B * (size_t)N;
    ro->seq = malloc(sizeof(int32_t) * BS);
    ro->seq_mask = malloc(BS);
    ro->positions = malloc(sizeof(int32_t) * BS);
    ro->targets = malloc(sizeof(int32_t) * BS);
    ro->len = malloc(sizeof(int32_t) * (size_t)B);
    ro->mask = malloc(BN);
    float **f[] = {&ro->logp,    &ro->ref_logp, &ro->values, &ro->kl,
                   &ro->rewards, &ro->adv,      &ro->returns};
    int ok = ro->seq && ro->seq_mask && ro->positions && ro->targets && ro->len && ro->mask;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        ok &= (*f[i] = malloc(sizeof(float) * BN)) != NULL;
    ro->score = malloc(sizeof(float) * (size_t)B);
    ro->full = malloc(sizeof(float) * BS);
    ro->dfull = malloc(sizeof(float) * BS);
    ro->dvals = malloc(sizeof(float) * BS);
    ro->gen = malloc(sizeof(int32_t) * BN);
    ro->prompt_ids = malloc(sizeof(int32_t) * (size_t)B * (size_t)P);
    ro->prompt_mask = malloc((size_t)B * (size_t)P);
    return ok && ro->score && ro->full && ro->dfull && ro->dvals && ro->gen && ro->prompt_ids &&
                   ro->prompt_mask
               ? 0
               : -1;
}

static void rollout_free(rollout *ro) {
    void *p[] = {ro->seq,     ro->seq_mask, ro->positions, ro->targets,    ro->len,
                 ro->mask,    ro->logp,     ro->ref_logp,  ro->values,     ro->kl,
                 ro->rewards, ro->adv,      ro->returns,   ro->score,      ro->full,
                 ro->dfull,   ro->dvals,    ro->gen,       ro->prompt_ids, ro->prompt_mask};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
    memset(ro, 0, sizeof *ro);
}

/* Forward over rows [r0, r0 + n) of the rollout's sequences; fills the
 * per-response-token log-probs (at temperature) and, if the model has one,
 * values, into logp/values rows (n, N); entropy likewise if not NULL. The LM
 * head runs only on the N columns P-1 .. S-2 that predict response tokens
 * (acts.logits (n, N, V)). */
static void score_tokens(model *m, rollout *ro, int r0, int n, float inv_temp, float *logp,
                         float *values, float *entropy) {
    const int S = ro->S, P = ro->P, N = ro->N;
    model_forward(m, ro->seq + (int64_t)r0 * S, ro->positions + (int64_t)r0 * S,
                  ro->seq_mask + (int64_t)r0 * S, n, S, P - 1, S - 1);
    scale_logits(m, inv_temp);
    model_token_logprobs(m, ro->gen + (int64_t)r0 * N, logp, entropy);
    const float *mv = model_values(m);
    if (values && model_has_scalar_head(m))
        for (int b = 0; b < n; b++)
            for (int t = 0; t < N; t++) /* the position predicting token t */
                values[(int64_t)b * N + t] = mv[(int64_t)b * S + P + t - 1];
}

/* Copies rows idx[0..n) of src into rows 0..n-1 of dst (same P, N). */
static void copy_rows(rollout *dst, const rollout *src, const int32_t *idx, int n) {
    const int S = src->S, N = src->N;
    for (int i = 0; i < n; i++) {
        const int64_t s = idx[i];
        memcpy(dst->seq + (int64_t)i * S, src->seq + s * S, sizeof(int32_t) * (size_t)S);
        memcpy(dst->seq_mask + (int64_t)i * S, src->seq_mask + s * S, (size_t)S);
        memcpy(dst->positions + (int64_t)i * S, src->positions + s * S,
               sizeof(int32_t) * (size_t)S);
        memcpy(dst->targets + (int64_t)i * S, src->targets + s * S, sizeof(int32_t) * (size_t)S);
        memcpy(dst->mask + (int64_t)i * N, src->mask + s * N, (size_t)N);
        memcpy(dst->gen + (int64_t)i * N, src->gen + s * N, sizeof(int32_t) * (size_t)N);
        float *const d[] = {dst->logp, dst->values, dst->adv, dst->returns};
        const float *const f[] = {src->logp, src->values, src->adv, src->returns};
        for (int k = 0; k < 4; k++)
            memcpy(d[k] + (int64_t)i * N, f[k] + s * N, sizeof(float) * (size_t)N);
    }
}

static double masked_mean(const float *x, const uint8_t *mask, int64_t n) {
    double s = 0.0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i])
            s += x[i], c++;
    return c ? s / (double)c : NAN;
}

/* ==== the job ==================================================================== */

/* Where training is, beyond the weights: what a resume restores. */
typedef struct ppo_state {
    int64_t update;       /* updates done, skipped ones included */
    int64_t adam_t;       /* optimizer steps taken (both models step together) */
    int64_t bad_in_a_row; /* non-finite updates in a row */
    int64_t cursor;       /* next index into the prompt order */
    rng_state order_rng;  /* prompt_rng before the shuffle that made the order */
    rng_state prompt_rng, sample_rng, minibatch_rng;
    ppo_kl_controller ctl;
    double first_score;       /* of the first update that trained; NAN before */
    float *adam_m, *adam_v;   /* the policy's moments */
    float *vadam_m, *vadam_v; /* the separate value model's */
} ppo_state;

typedef struct ppo_job {
    const ppo_lm_config *cfg;
    const ppo_lm_inputs *in;
    const train_sink *sink;
    model policy, ref, rm, value; /* ref unused with LoRA: the policy, adapters off */
    bool separate_value;          /* value_model = reward_model: values from `value` */
    bool lora;                    /* lora_r > 0 */
    double gain, bias;            /* the reward model's normalisation */
    int B, M, U, N, P, S;         /* rollout rows, minibatch rows, micro-batch rows, columns */
    int eot;
    float inv_temp;
    ppo_kl_estimator est;
    int32_t **prompt_tokens, *prompt_len, *order, *perm;
    rollout ro, mb; /* mb: one micro-batch */
    float *flat;    /* (9, U·N) training scratch */
    ppo_state st;
} ppo_job;

typedef struct rollout_stats {
    double seq_kl, score_mean, neg_logp, len_mean;
    int eos_count;
} rollout_stats;

typedef struct train_stats {
    double pg, v, approxkl, clipfrac, vclipfrac, ratio, entropy, vpred;
    int steps;
} train_stats;

/* The value model's outputs live on this model. */
static model *critic(ppo_job *job) {
    return job->separate_value ? &job->value : &job->policy;
}

static int load_models(ppo_job *job, char *err, size_t errlen) {
    const ppo_lm_config *cfg = job->cfg;
    const ppo_lm_inputs *in = job->in;
    if (job->lora && in->ref_checkpoint != NULL) {
        snprintf(err, errlen,
                 "a reference model apart from the policy's init needs full fine-tuning "
                 "(lora_r 0): with LoRA the reference is the base model");
        return -1;
    }
    const char *policy_path = in->resume_checkpoint ? in->resume_checkpoint : in->policy_checkpoint;
    /* With LoRA a resumable checkpoint holds the base and the adapters; the
     * value model's adapters come back with the rest of the state. */
    const lm_lora_load policy_lora = !job->lora              ? LM_LORA_NONE
                                     : in->resume_checkpoint ? LM_LORA_FROM_FILE
                                                             : LM_LORA_FRESH;
    const lm_lora_spec spec = lora_spec(cfg);
    model_info rm_info;
    if (lm_open_model(&job->policy, policy_path, !job->separate_value, policy_lora, &spec,
                      0xE0000005u, NULL, err, errlen) != 0 ||
        (!job->lora &&
         lm_open_model(&job->ref, in->ref_checkpoint ? in->ref_checkpoint : in->policy_checkpoint,
                       false, LM_LORA_NONE, &spec, 0, NULL, err, errlen) != 0) ||
        lm_open_model(&job->rm, in->reward_checkpoint, true, LM_LORA_NONE, &spec, 0, &rm_info, err,
                      errlen) != 0)
        return -1;
    job->gain = rm_info.reward_gain, job->bias = rm_info.reward_bias;
    /* With LoRA the value model's frozen base is the reward model's (adapters
     * off for the score, the value model's own adapters and head on for
     * values): one copy of those weights instead of two. */
    if (job->separate_value &&
        (job->lora ? lm_open_shared(&job->value, &job->rm, &spec, 0xE0000006u, err, errlen)
                   : lm_open_model(&job->value, in->reward_checkpoint, true, LM_LORA_NONE, &spec,
                                   0xE0000006u, NULL, err, errlen)) != 0)
        return -1;
    /* full fine-tuning: gradients for what trains (GPT-2 models always have them) */
    if (model_alloc_grads(&job->policy, err, errlen) != 0 ||
        (job->separate_value && model_alloc_grads(&job->value, err, errlen) != 0))
        return -1;
    const struct {
        const model *m;
        const char *what;
    } loaded[] = {{&job->policy, "policy"}, {&job->ref, "SFT (reference)"}, {&job->rm, "reward"}};
    for (int i = 0; i < 3; i++) {
        int64_t n;
        const float *w = model_base_params(loaded[i].m, &n);
        if (!lm_all_finite(w, n)) {
            snprintf(err, errlen, "the %s model's weights are not finite", loaded[i].what);
            return -1;
        }
    }
    /* no reference model with LoRA: the SFT file's shape (only a resume can differ) */
    char pshape[256], rshape[256];
    model_shape_text(&job->policy, pshape, sizeof pshape);
    if (job->lora && in->resume_checkpoint) {
        if (model_source_shape_text(in->policy_checkpoint, rshape, sizeof rshape, err, errlen) != 0)
            return -1;
    } else {
        model_shape_text(job->lora ? &job->policy : &job->ref, rshape, sizeof rshape);
    }
    if (strcmp(pshape, rshape) != 0) {
        snprintf(err, errlen, "the resumed policy and the SFT model (%s) differ in shape",
                 in->policy_checkpoint);
        return -1;
    }
    if (model_vocab_size(&job->rm) != model_vocab_size(&job->policy) ||
        in->tok->vocab_size > model_vocab_size(&job->policy)) {
        snprintf(err, errlen,
                 "the policy (%d), reward model (%d) and tokenizer (%d) vocabularies "
                 "do not match",
                 model_vocab_size(&job->policy), model_vocab_size(&job->rm), in->tok->vocab_size);
        return -1;
    }
    return 0;
}

/* Tokenizes the prompts once; P is the longest (all are left-padded to it). */
static int prepare_prompts(ppo_job *job, char *err, size_t errlen) {
    const ppo_lm_inputs *in = job->in;
    const int N = job->N;
    int context = model_max_seq_len(&job->policy);
    context = model_max_seq_len(&job->rm) < context ? model_max_seq_len(&job->rm) : context;
    job->prompt_tokens = calloc((size_t)in->n_prompts, sizeof *job->prompt_tokens);
    job->prompt_len = calloc((size_t)in->n_prompts, sizeof *job->prompt_len);
    job->order = malloc(sizeof(int32_t) * (size_t)in->n_prompts);
    job->perm = malloc(sizeof(int32_t) * (size_t)job->B);
    if (!job->prompt_tokens || !job->prompt_len || !job->order || !job->perm) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const int cap = context - N;
    if (cap < 1) {
        snprintf(err, errlen,
                 "hyperparameter 'response_length': %d leaves no room for a "
                 "prompt in a context of %d",
                 N, context);
        return -1;
    }
    job->P = 1;
    int64_t n_cut = 0;
    for (int64_t i = 0; i < in->n_prompts; i++) {
        job->prompt_tokens[i] = malloc(sizeof(int32_t) * (size_t)cap);
        const int64_t n =
            job->prompt_tokens[i]
                ? tokenizer_encode_input(in->tok, in->prompts[i], strlen(in->prompts[i]),
                                         job->prompt_tokens[i], (size_t)cap,
                                         in->prompts_rendered && in->prompts_rendered[i])
                : -1;
        if (n < 1) {
            snprintf(err, errlen, "prompt %lld is empty or could not be tokenized",
                     (long long)i + 1);
            return -1;
        }
        job->prompt_len[i] = (int32_t)(n < cap ? n : cap); /* longer prompts keep their start */
        job->P = job->prompt_len[i] > job->P ? job->prompt_len[i] : job->P;
        n_cut += n > cap;
    }
    job->S = job->P + N;
    if (sink_warn_truncated(job->sink, "prompts", n_cut, in->n_prompts, "context - response_length",
                            cap) != 0) {
        snprintf(err, errlen, "cannot report the truncated prompts");
        return -1;
    }
    return 0;
}

static int alloc_buffers(ppo_job *job, char *err, size_t errlen) {
    const int B = job->B, U = job->U, S = job->S;
    if (rollout_alloc(&job->ro, B, job->P, job->N) != 0 ||
        rollout_alloc(&job->mb, job->U, job->P, job->N) != 0 ||
        model_reserve(&job->policy, U, S, err, errlen) != 0 ||
        (!job->lora && model_reserve(&job->ref, U, S, err, errlen) != 0) ||
        model_reserve(&job->rm, U, S, err, errlen) != 0 ||
        (job->separate_value && model_reserve(&job->value, U, S, err, errlen) != 0)) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for the rollout");
        return -1;
    }
    ppo_state *st = &job->st;
    const size_t np = (size_t)trainable_count(&job->policy);
    const size_t nv = (size_t)trainable_count(&job->value);
    st->adam_m = calloc(np, sizeof(float));
    st->adam_v = calloc(np, sizeof(float));
    st->vadam_m = calloc(nv ? nv : 1, sizeof(float));
    st->vadam_v = calloc(nv ? nv : 1, sizeof(float));
    job->flat = malloc(sizeof(float) * (size_t)job->U * (size_t)job->N * 9);
    if (!st->adam_m || !st->adam_v || !st->vadam_m || !st->vadam_v || !job->flat) {
        snprintf(err, errlen, "out of memory for the optimizer");
        return -1;
    }
    return 0;
}

static void job_free(ppo_job *job) {
    if (job->prompt_tokens)
        for (int64_t i = 0; i < job->in->n_prompts; i++)
            free(job->prompt_tokens[i]);
    free(job->prompt_tokens), free(job->prompt_len), free(job->order), free(job->perm);
    free(job->st.adam_m), free(job->st.adam_v), free(job->st.vadam_m), free(job->st.vadam_v);
    free(job->flat);
    rollout_free(&job->ro);
    rollout_free(&job->mb);
    model_free(&job->policy);
    model_free(&job->ref);
    model_free(&job->value); /* before the reward model whose weights it may read */
    model_free(&job->rm);
}

/* ---- checkpoints ---------------------------------------------------------------- */

static void format_f64(char *out, size_t cap, double x) {
    snprintf(out, cap, "%a", x);
}

/* The policy (and with_state, the trainer's state) through the sink. Refuses
 * non-finite weights. */
static int emit_checkpoint(ppo_job *job, bool with_state, char *err, size_t errlen) {
    const ppo_state *st = &job->st;
    /* every rank's sampling RNG, for a resume on as many ranks */
    const dist_comm *dist = job->in->dist;
    const int ranks = dist_size(dist);
    rng_state *rngs = malloc(sizeof(rng_state) * (size_t)ranks);
    if (rngs == NULL || dist_allgather(dist, &st->sample_rng, rngs, sizeof(rng_state)) != 0) {
        free(rngs);
        snprintf(err, errlen, "gathering the ranks' RNG states failed");
        return -1;
    }
    char(*rank_rng)[2][80] = calloc((size_t)ranks, sizeof *rank_rng);
    for (int r = 1; r < ranks && rank_rng; r++) {
        snprintf(rank_rng[r][0], sizeof rank_rng[r][0], "training_state.sample_rng.rank%d", r);
        train_state_format_rng(rank_rng[r][1], sizeof rank_rng[r][1], &rngs[r]);
    }
    free(rngs);
    if (!dist_is_root(dist) || rank_rng == NULL) {
        free(rank_rng);
        if (dist_is_root(dist))
            snprintf(err, errlen, "out of memory for the checkpoint");
        return dist_is_root(dist) ? -1 : 0;
    }
    if (!lm_all_finite(trainable_params(&job->policy), trainable_count(&job->policy)) ||
        (job->separate_value &&
         !lm_all_finite(trainable_params(&job->value), trainable_count(&job->value)))) {
        snprintf(err, errlen, "the weights are not finite at update %lld; no checkpoint written",
                 (long long)st->update);
        return -1;
    }
    char step[24], adam_t[24], bad[24], cursor[24], beta[40], first[40];
    char order_rng[80], prompt_rng[80], sample_rng[80], mb_rng[80];
    snprintf(step, sizeof step, "%lld", (long long)st->update);
    snprintf(adam_t, sizeof adam_t, "%lld", (long long)st->adam_t);
    snprintf(bad, sizeof bad, "%lld", (long long)st->bad_in_a_row);
    snprintf(cursor, sizeof cursor, "%lld", (long long)st->cursor);
    format_f64(beta, sizeof beta, st->ctl.beta);
    format_f64(first, sizeof first, st->first_score);
    train_state_format_rng(order_rng, sizeof order_rng, &st->order_rng);
    train_state_format_rng(prompt_rng, sizeof prompt_rng, &st->prompt_rng);
    train_state_format_rng(sample_rng, sizeof sample_rng, &st->sample_rng);
    train_state_format_rng(mb_rng, sizeof mb_rng, &st->minibatch_rng);
    char *config = train_state_config_text(&ppo_lm_hparams, job->cfg);
    const char *const meta[][2] = {{"rlhfd_job", "ppo"},
                                   {"step", step},
                                   {"training_state.adam_t", adam_t},
                                   {"training_state.non_finite_in_a_row", bad},
                                   {"training_state.cursor", cursor},
                                   {"training_state.kl_coef", beta},
                                   {"training_state.first_score", first},
                                   {"training_state.order_rng", order_rng},
                                   {"training_state.prompt_rng", prompt_rng},
                                   {"training_state.sample_rng", sample_rng},
                                   {"training_state.minibatch_rng", mb_rng},
                                   {"training_state.config", config ? config : ""}};
    /* with LoRA: moments of the adapters (and head) only; the value model's
     * adapters and head as its parameters */
    const int64_t np = trainable_count(&job->policy), nv = trainable_count(&job->value);
    const safetensors_tensor state[5] = {
        {.name = "training_state.adam_m", .data = st->adam_m, .ndim = 1, .shape = {np}},
        {.name = "training_state.adam_v", .data = st->adam_v, .ndim = 1, .shape = {np}},
        {.name = "training_state.value_params",
         .data = trainable_params(&job->value),
         .ndim = 1,
         .shape = {nv}},
        {.name = "training_state.value_adam_m", .data = st->vadam_m, .ndim = 1, .shape = {nv}},
        {.name = "training_state.value_adam_v", .data = st->vadam_v, .ndim = 1, .shape = {nv}}};
    /* meta, then (a run on several ranks) the ranks' RNGs and their count */
    const int n_base = (int)(sizeof meta / sizeof meta[0]);
    const char *(*all_meta)[2] = calloc((size_t)(n_base + ranks), sizeof *all_meta);
    char n_ranks[24];
    snprintf(n_ranks, sizeof n_ranks, "%d", ranks);
    int n_meta = 0;
    for (int i = 0; all_meta && i < n_base; i++)
        all_meta[n_meta][0] = meta[i][0], all_meta[n_meta++][1] = meta[i][1];
    if (all_meta && ranks > 1) {
        all_meta[n_meta][0] = "training_state.ranks", all_meta[n_meta++][1] = n_ranks;
        for (int r = 1; r < ranks; r++)
            all_meta[n_meta][0] = rank_rng[r][0], all_meta[n_meta++][1] = rank_rng[r][1];
    }
    n_meta = with_state ? n_meta : 2;
    const int n_state = with_state ? (job->separate_value ? 5 : 2) : 0;
    const int rc = config && all_meta
                       ? model_sink_checkpoint(job->sink, st->update, &job->policy,
                                               (const char *const(*)[2])all_meta, n_meta,
                                               n_state ? state : NULL, n_state)
                       : -1;
    free(config);
    free(all_meta);
    free(rank_rng);
    if (rc != 0)
        snprintf(err, errlen, "writing the checkpoint at update %lld failed",
                 (long long)st->update);
    return rc;
}

static int load_state_tensor(const safetensors_file *f, const char *name, float *dst, int64_t n,
                             char *err, size_t errlen) {
    const safetensors_info *t = safetensors_find(f, name);
    if (t == NULL) {
        snprintf(err, errlen, "resume: the checkpoint has no %s", name);
        return -1;
    }
    return safetensors_load_f32(t, dst, n, err, errlen);
}

/* Restores the trainer's state (the policy's weights were loaded from the
 * same file by load_models) from a resumable checkpoint of this job. */
static int restore_state(ppo_job *job, char *err, size_t errlen) {
    safetensors_file f;
    if (safetensors_read_file(&f, job->in->resume_checkpoint, err, errlen) != 0)
        return -1;
    ppo_state *st = &job->st;
    int rc = train_state_check_config(&f, &ppo_lm_hparams, job->cfg, err, errlen);
    if (rc == 0) {
        int ok = 1;
        st->update = train_state_meta_i64(&f, "step", &ok);
        st->adam_t = train_state_meta_i64(&f, "training_state.adam_t", &ok);
        st->bad_in_a_row = train_state_meta_i64(&f, "training_state.non_finite_in_a_row", &ok);
        st->cursor = train_state_meta_i64(&f, "training_state.cursor", &ok);
        st->ctl.beta = train_state_meta_f64(&f, "training_state.kl_coef", &ok);
        st->first_score = train_state_meta_f64(&f, "training_state.first_score", &ok);
        static const char *const rng_keys[4] = {
            "training_state.order_rng", "training_state.prompt_rng", "training_state.sample_rng",
            "training_state.minibatch_rng"};
        rng_state *const rngs[4] = {&st->order_rng, &st->prompt_rng, &st->sample_rng,
                                    &st->minibatch_rng};
        for (int i = 0; i < 4; i++)
            ok = ok &&
                 train_state_parse_rng(rngs[i], safetensors_metadata_get(&f, rng_keys[i])) == 0;
        if (!ok || st->cursor > job->in->n_prompts || st->update > job->cfg->total_updates) {
            snprintf(err, errlen, "resume: the checkpoint's training state is incomplete");
            rc = -1;
        }
        /* each rank samples with its own RNG: resume on as many ranks */
        const dist_comm *dist = job->in->dist;
        const char *saved_ranks = safetensors_metadata_get(&f, "training_state.ranks");
        const int ranks = saved_ranks ? atoi(saved_ranks) : 1;
        char key[64];
        snprintf(key, sizeof key, "training_state.sample_rng.rank%d", dist_rank(dist));
        if (rc == 0 && ranks != dist_size(dist)) {
            snprintf(err, errlen,
                     "resume: the checkpoint was written by a run on %d rank(s); resume it on "
                     "%d (mpirun -np %d), not %d",
                     ranks, ranks, ranks, dist_size(dist));
            rc = -1;
        } else if (rc == 0 && dist_rank(dist) > 0 &&
                   train_state_parse_rng(&st->sample_rng, safetensors_metadata_get(&f, key)) != 0) {
            snprintf(err, errlen, "resume: the checkpoint has no %s", key);
            rc = -1;
        }
    }
    const int64_t np = trainable_count(&job->policy), nv = trainable_count(&job->value);
    if (rc == 0)
        rc = load_state_tensor(&f, "training_state.adam_m", st->adam_m, np, err, errlen) ||
             load_state_tensor(&f, "training_state.adam_v", st->adam_v, np, err, errlen);
    if (rc == 0 && job->separate_value)
        rc = load_state_tensor(&f, "training_state.value_params", trainable_params(&job->value), nv,
                               err, errlen) ||
             load_state_tensor(&f, "training_state.value_adam_m", st->vadam_m, nv, err, errlen) ||
             load_state_tensor(&f, "training_state.value_adam_v", st->vadam_v, nv, err, errlen);
    safetensors_free(&f);
    if (rc != 0)
        return -1;
    /* The order in use: redo its shuffle from the saved state before it. */
    if (st->cursor < job->in->n_prompts) {
        rng_state r = st->order_rng;
        rng_permutation(&r, job->order, (int32_t)job->in->n_prompts);
    }
    return 0;
}

/* ---- one update ---------------------------------------------------------------- */

/* The next B prompts of the stream into ro.prompt_ids, left-padded. */
static void next_prompts(ppo_job *job) {
    ppo_state *st = &job->st;
    rollout *ro = &job->ro;
    const int P = job->P;
    for (int b = 0; b < job->B; b++) {
        if (st->cursor >= job->in->n_prompts) {
            st->order_rng = st->prompt_rng;
            rng_permutation(&st->prompt_rng, job->order, (int32_t)job->in->n_prompts);
            st->cursor = 0;
        }
        const int32_t p = job->order[st->cursor++];
        const int pad = P - job->prompt_len[p];
        for (int c = 0; c < P; c++) {
            ro->prompt_ids[(int64_t)b * P + c] =
                c < pad ? job->eot : job->prompt_tokens[p][c - pad];
            ro->prompt_mask[(int64_t)b * P + c] = (uint8_t)(c >= pad);
        }
    }
}

/* Samples the responses and lays out prompt + response rows. */
static int generate_rollout(ppo_job *job, char *err, size_t errlen) {
    rollout *ro = &job->ro;
    const int B = job->B, P = job->P, N = job->N, S = job->S;
    /* this rank's rows, then everyone's */
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(B, dist_rank(dist), dist_size(dist), &lo, &hi);
    if (hi > lo &&
        model_generate(&job->policy, ro->prompt_ids + lo * P, ro->prompt_mask + lo * P,
                       (int)(hi - lo), P, (float)job->cfg->temperature, 0, 1.0f, N, job->eot,
                       &job->st.sample_rng, ro->gen + lo * N, ro->len + lo, err, errlen) != 0)
        return -1;
    if (dist_allgather_rows(dist, ro->gen, sizeof(int32_t) * (size_t)N, B) != 0 ||
        dist_allgather_rows(dist, ro->len, sizeof(int32_t), B) != 0) {
        snprintf(err, errlen, "gathering the ranks' samples failed");
        return -1;
    }
    for (int b = 0; b < B; b++) {
        int pos = 0;
        for (int c = 0; c < S; c++) {
            const int64_t i = (int64_t)b * S + c;
            const int real = c < P ? ro->prompt_mask[(int64_t)b * P + c] : c - P < ro->len[b];
            ro->seq[i] =
                c < P ? ro->prompt_ids[(int64_t)b * P + c] : ro->gen[(int64_t)b * N + c - P];
            ro->seq_mask[i] = (uint8_t)real;
            ro->positions[i] = real ? pos++ : 0;
        }
        for (int c = 0; c < S; c++)
            ro->targets[(int64_t)b * S + c] = c + 1 < S ? ro->seq[(int64_t)b * S + c + 1] : 0;
        for (int t = 0; t < N; t++)
            ro->mask[(int64_t)b * N + t] = (uint8_t)(t < ro->len[b]);
    }
    return 0;
}

/* Values of the separate value model for rows [r0, r0 + n) of ro into values (n, N). */
static void value_forward(model *v, rollout *ro, int r0, int n, float *values) {
    const int S = ro->S, P = ro->P, N = ro->N;
    model_forward(v, ro->seq + (int64_t)r0 * S, ro->positions + (int64_t)r0 * S,
                  ro->seq_mask + (int64_t)r0 * S, n, S, 0, 0);
    const float *vv = model_values(v);
    for (int b = 0; b < n; b++)
        for (int t = 0; t < N; t++)
            values[(int64_t)b * N + t] = vv[(int64_t)b * S + P + t - 1];
}

/* Policy and reference log-probs, values and reward-model scores of rollout
 * rows [lo, lo + n). */
static void score_rows(ppo_job *job, int lo, int n) {
    rollout *ro = &job->ro;
    const int S = job->S, P = job->P, N = job->N;
    score_tokens(&job->policy, ro, lo, n, job->inv_temp, ro->logp + (int64_t)lo * N,
                 ro->values + (int64_t)lo * N, NULL);
    if (job->lora) { /* the reference: the same weights with the adapters off */
        model_set_lora_enabled(&job->policy, false);
        score_tokens(&job->policy, ro, lo, n, job->inv_temp, ro->ref_logp + (int64_t)lo * N, NULL,
                     NULL);
        model_set_lora_enabled(&job->policy, true);
    } else {
        score_tokens(&job->ref, ro, lo, n, job->inv_temp, ro->ref_logp + (int64_t)lo * N, NULL,
                     NULL);
    }
    if (job->separate_value)
        value_forward(&job->value, ro, lo, n, ro->values + (int64_t)lo * N);
    model_forward(&job->rm, ro->seq + (int64_t)lo * S, ro->positions + (int64_t)lo * S,
                  ro->seq_mask + (int64_t)lo * S, n, S, 0, 0);
    const float *rv = model_values(&job->rm);
    for (int b = 0; b < n; b++) {
        const int last = P + ro->len[lo + b] - 1;
        ro->score[lo + b] = (float)(job->gain * rv[(int64_t)b * S + last] + job->bias);
    }
}

/* Policy and reference log-probs, values, reward-model scores. Returns
 * whether all of them are finite. */
static bool score_rollout(ppo_job *job, rollout_stats *rs) {
    rollout *ro = &job->ro;
    const int B = job->B, S = job->S, P = job->P, N = job->N;
    /* this rank's rows [lo, hi), then everyone's */
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(B, dist_rank(dist), dist_size(dist), &lo, &hi);
    /* micro-batches of U rows: the models' activations are reserved for U
     * rows (what training needs), not for the whole rollout */
    for (int64_t r0 = lo; r0 < hi; r0 += job->U)
        score_rows(job, (int)r0, (int)(hi - r0 < job->U ? hi - r0 : job->U));
    float *const rows[3] = {ro->logp, ro->ref_logp, ro->values};
    bool gathered = dist_allgather_rows(dist, ro->score, sizeof(float), B) == 0;
    for (int k = 0; k < 3; k++)
        gathered =
            gathered && dist_allgather_rows(dist, rows[k], sizeof(float) * (size_t)N, B) == 0;
    if (!gathered)
        ro->score[0] = NAN; /* a failed collective: the update is skipped */
    memset(rs, 0, sizeof *rs);
    for (int b = 0; b < B; b++) {
        const int has_eos = ro->gen[(int64_t)b * N + ro->len[b] - 1] == job->eot;
        rs->eos_count += has_eos;
        if (!has_eos)
            ro->score[b] -= (float)job->cfg->missing_eos_penalty;
    }
    const ppo_lm_inputs *in = job->in;
    if (in->observe_rollout) {
        const ppo_lm_rollout_view v = {job->st.update + 1,
                                       B,
                                       P,
                                       N,
                                       S,
                                       ro->seq,
                                       ro->positions,
                                       ro->seq_mask,
                                       ro->len,
                                       ro->logp,
                                       ro->ref_logp,
                                       ro->values,
                                       ro->score};
        in->observe_rollout(in->observe_ctx, &v);
    }
    const int64_t BN = (int64_t)B * N;
    return lm_all_finite(ro->logp, BN) && lm_all_finite(ro->ref_logp, BN) &&
           lm_all_finite(ro->score, B) && lm_all_finite(ro->values, BN);
}

/* KL, shaped rewards, GAE, whitening; the rollout's summary in rs. */
static void compute_advantages(ppo_job *job, rollout_stats *rs) {
    rollout *ro = &job->ro;
    const ppo_lm_config *cfg = job->cfg;
    const int B = job->B, N = job->N;
    const int64_t BN = (int64_t)B * N;
    ppo_kl_per_token(ro->kl, ro->logp, ro->ref_logp, ro->mask, B, N, job->est);
    ppo_kl_penalty_rewards(ro->rewards, ro->kl, ro->score, ro->len, (float)job->st.ctl.beta, B, N);
    if (cfg->whiten_rewards)
        ppo_whiten(ro->rewards, ro->mask, BN, true, PPO_WHITEN_EPS_IN_VAR);
    ppo_compute_gae_sequences(ro->adv, ro->returns, ro->rewards, ro->values, ro->len,
                              (float)cfg->gamma, (float)cfg->lam, B, N);
    ppo_whiten(ro->adv, ro->mask, BN, false, PPO_WHITEN_EPS_IN_VAR);
    for (int b = 0; b < B; b++) {
        rs->score_mean += ro->score[b];
        rs->len_mean += ro->len[b];
        for (int t = 0; t < ro->len[b]; t++) {
            rs->seq_kl += ro->kl[(int64_t)b * N + t];
            rs->neg_logp -= ro->logp[(int64_t)b * N + t];
        }
    }
    rs->seq_kl /= B, rs->score_mean /= B, rs->neg_logp /= B, rs->len_mean /= B;
}

/* Forward and backward of one micro-batch (rows of job->mb), its losses
 * weighted by its share w of the minibatch's tokens, gradients added to the
 * models'. Returns 0, or 1 if a loss is not finite. */
static int train_micro_batch(ppo_job *job, int U, int64_t n_total, train_stats *ts) {
    const ppo_lm_config *cfg = job->cfg;
    rollout *mb = &job->mb;
    model *policy = &job->policy, *vm = critic(job);
    const int N = job->N, S = job->S, P = job->P;
    const int64_t UN = (int64_t)U * N;
    float *newlogp = job->flat, *newval = newlogp + UN, *ent = newval + UN;
    score_tokens(policy, mb, 0, U, job->inv_temp, newlogp, newval, ent);
    if (job->separate_value)
        value_forward(&job->value, mb, 0, U, newval);
    /* masked tokens, flattened: new/old log-prob, advantage, value, old value, return */
    float *f_new = ent + UN, *f_old = f_new + UN, *f_adv = f_old + UN, *f_val = f_adv + UN;
    float *f_oldv = f_val + UN, *f_ret = f_oldv + UN;
    int n_tok = 0;
    for (int64_t i = 0; i < UN; i++) {
        if (!mb->mask[i])
            continue;
        f_new[n_tok] = newlogp[i], f_old[n_tok] = mb->logp[i], f_adv[n_tok] = mb->adv[i];
        f_val[n_tok] = newval[i], f_oldv[n_tok] = mb->values[i], f_ret[n_tok] = mb->returns[i];
        n_tok++;
    }
    if (n_tok == 0)
        return 0;
    const float w = (float)((double)n_tok / (double)n_total);
    const float clip = (float)cfg->clip_coef, vclip = (float)cfg->vf_clip;
    const float pg = ppo_policy_loss_forward(f_new, f_old, f_adv, n_tok, clip);
    const float vl = ppo_value_loss_forward(f_val, f_oldv, f_ret, n_tok, vclip, true);
    if (!isfinite(pg) || !isfinite(vl))
        return 1;
    /* gradients back onto the (U, S) positions that predicted each token */
    float *d_new = mb->kl, *d_val = mb->rewards; /* (U, N) scratch, unused in mb */
    memset(d_new, 0, sizeof(float) * (size_t)n_tok);
    memset(d_val, 0, sizeof(float) * (size_t)n_tok);
    ppo_policy_loss_backward(d_new, f_new, f_old, f_adv, n_tok, clip, w);
    ppo_value_loss_backward(d_val, f_val, f_oldv, f_ret, n_tok, vclip, true,
                            (float)cfg->vf_coef * w);
    memset(mb->dfull, 0, sizeof(float) * (size_t)UN); /* (U, N): the logits' columns */
    memset(model_dvalues(vm), 0, sizeof(float) * (size_t)U * (size_t)S);
    int k = 0;
    for (int b = 0; b < U; b++)
        for (int t = 0; t < N; t++) {
            if (!mb->mask[(int64_t)b * N + t])
                continue;
            const int64_t c = (int64_t)b * S + P + t - 1;
            mb->dfull[(int64_t)b * N + t] = d_new[k];
            model_dvalues(vm)[c] = d_val[k];
            const double lr_ = (double)f_new[k] - f_old[k];
            ts->approxkl += 0.5 * lr_ * lr_ / (double)n_total;
            ts->clipfrac += (fabs(exp(lr_) - 1.0) > cfg->clip_coef) / (double)n_total;
            ts->ratio += exp(lr_) / (double)n_total;
            ts->vclipfrac += (fabs((double)f_val[k] - f_oldv[k]) > cfg->vf_clip) / (double)n_total;
            ts->vpred += (double)f_val[k] / (double)n_total;
            k++;
        }
    ts->entropy += masked_mean(ent, mb->mask, UN) * w;
    ts->pg += (double)pg * w, ts->v += (double)vl * w;
    /* d/d(logits/T) → d/dlogits: one more factor 1/T */
    model_logprobs_backward(policy, mb->gen, mb->dfull, NULL);
    scale_logits(policy, job->inv_temp);
    model_backward(policy, true, !job->separate_value);
    if (job->separate_value)
        model_backward(&job->value, false, true);
    return 0;
}

/* One optimizer step on the minibatch of rollout rows idx[0..M): its
 * micro-batches' gradients summed, clipped, Adam. Returns 0, or 1 if a loss
 * or gradient is not finite (no step taken). */
static int train_minibatch(ppo_job *job, const int32_t *idx, float lr, train_stats *ts) {
    const rollout *ro = &job->ro;
    const int N = job->N;
    int64_t n_total = 0; /* the minibatch's response tokens: the losses are means over them */
    for (int i = 0; i < job->M; i++)
        for (int t = 0; t < N; t++)
            n_total += ro->mask[(int64_t)idx[i] * N + t];
    if (n_total == 0)
        return 0;
    model_zero_grad(&job->policy);
    if (job->separate_value)
        model_zero_grad(&job->value);
    /* With data parallelism each rank runs its shard of every micro-batch;
     * a non-finite loss on any rank skips the step on all. */
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(job->U, dist_rank(dist), dist_size(dist), &lo, &hi);
    double bad = 0.0;
    for (int r0 = 0; r0 < job->M && bad == 0.0 && hi > lo; r0 += job->U) {
        copy_rows(&job->mb, ro, idx + r0 + lo, (int)(hi - lo));
        bad = train_micro_batch(job, (int)(hi - lo), n_total, ts);
    }
    if (dist_allreduce_sum_f64(dist, &bad, 1) != 0 ||
        dist_allreduce_sum_f32(dist, trainable_grads(&job->policy),
                               trainable_count(&job->policy)) != 0 ||
        (job->separate_value && dist_allreduce_sum_f32(dist, trainable_grads(&job->value),
                                                       trainable_count(&job->value)) != 0))
        return 1;
    if (bad != 0.0)
        return 1;
    const double max_norm = job->cfg->max_grad_norm;
    model *policy = &job->policy, *value = &job->value;
    const double norm =
        grad_clip_global_norm(trainable_grads(policy), trainable_count(policy), max_norm);
    const double vnorm =
        job->separate_value
            ? grad_clip_global_norm(trainable_grads(value), trainable_count(value), max_norm)
            : 0.0;
    if (!isfinite(norm) || !isfinite(vnorm))
        return 1;
    const adam_config adam = {lr, 0.9f, 0.999f, 1e-5f, 0.0f};
    ppo_state *st = &job->st;
    st->adam_t++;
    adam_step(trainable_params(policy), trainable_grads(policy), st->adam_m, st->adam_v, NULL,
              trainable_count(policy), &adam, st->adam_t);
    if (job->separate_value)
        adam_step(trainable_params(value), trainable_grads(value), st->vadam_m, st->vadam_v, NULL,
                  trainable_count(value), &adam, st->adam_t);
    char err[256];
    if (dist_check_replicas(dist, trainable_params(policy), trainable_count(policy), err,
                            sizeof err) != 0 ||
        (job->separate_value && dist_check_replicas(dist, trainable_params(value),
                                                    trainable_count(value), err, sizeof err) != 0))
        return 1; /* replicas that diverged: non-finite-like, reported as a skip */
    ts->steps++;
    return 0;
}

/* ppo_epochs passes of shuffled minibatches. Returns 0, or 1 if a step was
 * not finite (the rest of the update is skipped). */
static int train_on_rollout(ppo_job *job, float lr, train_stats *ts) {
    for (int64_t epoch = 0; epoch < job->cfg->ppo_epochs; epoch++) {
        rng_permutation(&job->st.minibatch_rng, job->perm, job->B);
        for (int start_row = 0; start_row < job->B; start_row += job->M)
            if (train_minibatch(job, job->perm + start_row, lr, ts) != 0)
                return 1;
    }
    return 0;
}

static int report_update(ppo_job *job, int64_t update, const rollout_stats *rs,
                         const train_stats *ts, float lr, const double t[4], double start) {
    const rollout *ro = &job->ro;
    const int B = job->B, N = job->N, S = job->S;
    const int64_t BN = (int64_t)B * N;
    const double beta = job->st.ctl.beta;
    const double ns = ts->steps ? ts->steps : 1;
    /* explained variance of the rollout's values */
    double var_ret = 0, var_res = 0, mr = masked_mean(ro->returns, ro->mask, BN), md = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < BN; i++)
        if (ro->mask[i])
            md += ro->returns[i] - ro->values[i], cnt++;
    md /= cnt ? cnt : 1;
    for (int64_t i = 0; i < BN; i++)
        if (ro->mask[i]) {
            var_ret += (ro->returns[i] - mr) * (ro->returns[i] - mr);
            const double d = ro->returns[i] - ro->values[i] - md;
            var_res += d * d;
        }
    const sink_metric m[] = {
        {"objective/kl", rs->seq_kl},
        {"objective/kl_coef", beta},
        {"objective/entropy", rs->neg_logp},
        {"objective/scores", rs->score_mean},
        {"objective/non_score_reward", -beta * rs->seq_kl},
        {"objective/rlhf_reward", rs->score_mean - beta * rs->seq_kl},
        {"policy/approxkl_avg", ts->approxkl / ns},
        {"policy/clipfrac_avg", ts->clipfrac / ns},
        {"policy/entropy_avg", ts->entropy / ns},
        {"loss/policy_avg", ts->pg / ns},
        {"loss/value_avg", ts->v / ns},
        {"val/clipfrac_avg", ts->vclipfrac / ns},
        {"val/ratio", ts->ratio / ns},
        {"val/vpred", ts->vpred / ns},
        {"val/var_explained", var_ret > 0 ? 1.0 - var_res / var_ret : NAN},
        {"val/num_eos_tokens", rs->eos_count},
        {"tokens/responses_len_mean", rs->len_mean},
        {"lr", lr},
        {"episode", (double)update * B},
        {"time/generation_s", t[1] - t[0]},
        {"time/scoring_s", t[2] - t[1]},
        {"time/training_s", t[3] - t[2]},
        {"tokens_per_s", (double)B * S / (t[3] - t[0])},
        {"wall_s", t[3] - start},
    };
    if (sink_metrics(job->sink, update, m, (int)(sizeof m / sizeof m[0])) != 0)
        return -1;
    const ppo_lm_config *cfg = job->cfg;
    /* advantage: the batch-whitened one the loss used */
    const lm_rollout_batch batch = {
        job->in->tok,    B,       job->P,     N,           ro->prompt_ids,
        ro->prompt_mask, ro->gen, ro->len,    ro->score,   ro->logp,
        ro->ref_logp,    ro->kl,  ro->values, ro->rewards, ro->adv};
    if (lm_report_rollouts(job->sink, update, cfg->total_updates, cfg->rollout_samples,
                           cfg->rollout_interval, &batch) != 0)
        return -1;
    if (update == cfg->total_updates ||
        (cfg->sample_interval > 0 && update % cfg->sample_interval == 0)) {
        char text[1024], msg[1400];
        const int32_t shown = ro->len[0] - (ro->gen[ro->len[0] - 1] == job->eot); /* no EOT text */
        const int64_t k =
            tokenizer_decode(job->in->tok, ro->gen, (size_t)shown, text, sizeof text - 1);
        text[k < 0 ? 0 : k > (int64_t)sizeof text - 1 ? (int64_t)sizeof text - 1 : k] = '\0';
        snprintf(msg, sizeof msg, "sample at update %lld (score %.3f): %s", (long long)update,
                 ro->score[0], text);
        sink_event(job->sink, SINK_LEVEL_INFO, "sample", msg, NULL, 0);
    }
    return 0;
}

/* ==== the loop ==================================================================== */

int ppo_lm_train(const ppo_lm_config *cfg, const ppo_lm_inputs *in, const train_sink *sink,
                 ppo_lm_result *result, char *err, size_t errlen) {
    if (errlen > 0)
        err[0] = '\0';
    if (ppo_lm_validate(cfg, err, errlen) != 0)
        return -1;
    if (in->n_prompts < 1 || in->policy_checkpoint == NULL || in->reward_checkpoint == NULL) {
        snprintf(err, errlen,
                 "ppo needs prompts, a policy (SFT) checkpoint and a reward model "
                 "checkpoint");
        return -1;
    }
    ppo_job job = {.cfg = cfg, .in = in, .sink = sink, .gain = 1.0, .bias = 0.0};
    job.separate_value = strcmp(cfg->value_model, "reward_model") == 0;
    job.lora = cfg->lora_r > 0;
    job.B = (int)cfg->batch_size, job.M = (int)cfg->mini_batch_size;
    job.U = (int)(cfg->mini_batch_size / cfg->gradient_accumulation_steps);
    job.N = (int)cfg->response_length;
    job.eot = in->tok->eot_id;
    job.inv_temp = (float)(1.0 / cfg->temperature);
    job.est = (ppo_kl_estimator)ppo_kl_estimator_from_name(cfg->kl_estimator);
    ppo_lm_result res = {0};
    int rc = -1;
    if (load_models(&job, err, errlen) != 0 || prepare_prompts(&job, err, errlen) != 0 ||
        alloc_buffers(&job, err, errlen) != 0)
        goto done;
    ppo_state *st = &job.st;
    rng_seed(&st->prompt_rng, (uint64_t)cfg->seed, 0xE0000002u);
    rng_seed(&st->sample_rng, dist_sample_seed((uint64_t)cfg->seed, dist_rank(in->dist)),
             0xE0000003u);
    rng_seed(&st->minibatch_rng, (uint64_t)cfg->seed, 0xE0000004u);
    st->order_rng = st->prompt_rng;
    st->cursor = in->n_prompts; /* forces a shuffle */
    st->ctl = (ppo_kl_controller){cfg->kl_coef, cfg->target_kl, cfg->kl_horizon};
    st->first_score = NAN;
    if (in->resume_checkpoint != NULL && restore_state(&job, err, errlen) != 0)
        goto done;
    if (dist_size(in->dist) > 1) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "data parallel on %d ranks: each samples, scores and trains on its share of "
                 "the %d rollouts; sampling seeds seed + rank * 2654435761",
                 dist_size(in->dist), job.B);
        const sink_metric data[] = {{"world_size", dist_size(in->dist)}};
        sink_event(sink, SINK_LEVEL_INFO, "data_parallel", msg, data, 1);
    }
    const double start = now_s();
    while (st->update < cfg->total_updates) {
        if (dist_should_stop(in->dist, sink)) {
            res.stopped = true;
            break;
        }
        const int64_t update = st->update + 1;
        double t[4];
        t[0] = now_s();
        next_prompts(&job);
        if (generate_rollout(&job, err, errlen) != 0)
            goto done;
        t[1] = now_s();
        rollout_stats rs;
        const bool finite = score_rollout(&job, &rs);
        t[2] = now_s();
        train_stats ts = {0};
        const float lr = cfg->anneal_lr
                             ? lr_linear((float)cfg->learning_rate, update - 1, cfg->total_updates)
                             : (float)cfg->learning_rate;
        bool skipped = !finite;
        if (finite) {
            compute_advantages(&job, &rs);
            skipped = train_on_rollout(&job, lr, &ts) != 0;
            /* the ranks' token-weighted shares of the statistics add up */
            double sums[8] = {ts.pg,        ts.v,     ts.approxkl, ts.clipfrac,
                              ts.vclipfrac, ts.ratio, ts.entropy,  ts.vpred};
            if (!skipped && dist_allreduce_sum_f64(in->dist, sums, 8) == 0)
                ts = (train_stats){sums[0], sums[1], sums[2], sums[3], sums[4],
                                   sums[5], sums[6], sums[7], ts.steps};
        }
        t[3] = now_s();
        st->update = update;
        if (skipped) {
            char msg[160];
            snprintf(msg, sizeof msg, "update %lld skipped: %s", (long long)update,
                     finite ? "non-finite loss or gradient" : "non-finite rollout");
            sink_event(sink, SINK_LEVEL_WARN, "non_finite", msg, NULL, 0);
            if (++st->bad_in_a_row >= cfg->non_finite_patience) {
                snprintf(err, errlen,
                         "%lld non-finite updates in a row (non_finite_patience): the last at "
                         "update %lld had a %s",
                         (long long)st->bad_in_a_row, (long long)update,
                         finite ? "non-finite loss or gradient"
                                : "non-finite log-prob, value or reward-model score");
                goto done;
            }
        } else {
            st->bad_in_a_row = 0;
            ppo_kl_controller_update(&st->ctl, rs.seq_kl, job.B);
            if (isnan(st->first_score))
                st->first_score = rs.score_mean;
            res.last_score = rs.score_mean;
            res.last_kl = rs.seq_kl;
            if (report_update(&job, update, &rs, &ts, lr, t, start) != 0) {
                snprintf(err, errlen, "the metrics sink failed");
                goto done;
            }
        }
        res.updates = update;
        res.first_score = st->first_score;
        if (update < cfg->total_updates && cfg->checkpoint_interval > 0 &&
            update % cfg->checkpoint_interval == 0 && emit_checkpoint(&job, true, err, errlen) != 0)
            goto done;
    }
    res.updates = st->update;
    res.first_score = st->first_score;
    /* A stopped run keeps its state so it can resume; a finished one is weights only. */
    if (emit_checkpoint(&job, res.stopped, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (result)
        *result = res;
    job_free(&job);
    return rc;
}
