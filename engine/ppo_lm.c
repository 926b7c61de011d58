/* ppo_lm — PPO for language models against a reward model, with a KL
 * penalty to the SFT model (Ziegler et al. 2019; Ouyang et al. 2022; the
 * details of Huang et al. 2023 and TRL's PPOTrainer).
 *
 * One update: sample responses to a batch of prompts from the policy
 * (temperature T, stop at EOS, fixed maximum length); score prompt +
 * response with the reward model (normalised by its stored gain/bias, minus
 * a penalty when no EOS came); per-token log-probs under the policy and the
 * frozen SFT reference; values from a scalar head on the policy's trunk;
 * per-token rewards -β·KL plus the score on the last token; GAE with γ, λ;
 * advantage whitening (and optional reward whitening); then ppo_epochs
 * passes of shuffled minibatches of the clipped surrogate plus the clipped
 * value loss. Log-probs everywhere are of logits / T, so sampling and
 * training agree on the distribution.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "optim.h"
#include "ppo_control.h"
#include "rlhf_ppo.h"
#include "rng.h"
#include "safetensors.h"

static const char *const estimator_choices[] = {"k1", "k3", "abs", NULL};

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
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads a GPT-2 checkpoint; with_head gives the model a scalar head (the
 * file's if it has one, else freshly initialised). */
static int load_model(gpt2_model *m, const char *path, bool with_head, uint64_t seed, double *gain,
                      double *bias, char *err, size_t errlen) {
    safetensors_file f;
    gpt2_config gc;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    int rc = gpt2_config_from_checkpoint(&gc, &f, err, errlen);
    gc.scalar_head = with_head;
    if (rc == 0 && (rc = gpt2_init(m, &gc, err, errlen)) == 0) {
        rng_state r;
        rng_seed(&r, seed, 0xE0000001u);
        gpt2_init_weights(m, &r);
        if ((rc = gpt2_checkpoint_load(m, &f, NULL, err, errlen)) != 0)
            gpt2_free(m);
    }
    if (rc == 0 && gain != NULL) {
        const char *g = safetensors_metadata_get(&f, "reward_gain");
        const char *b = safetensors_metadata_get(&f, "reward_bias");
        *gain = g ? atof(g) : 1.0;
        *bias = b ? atof(b) : 0.0;
    }
    safetensors_free(&f);
    return rc;
}

static void scale_logits(gpt2_model *m, float s) {
    const int64_t n = (int64_t)m->B * m->T * m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        m->acts.logits[i] *= s;
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
 * values, into logp/values rows (n, N); entropy likewise if not NULL. */
static void score_tokens(gpt2_model *m, rollout *ro, int r0, int n, float inv_temp, float *logp,
                         float *values, float *entropy) {
    const int S = ro->S, P = ro->P, N = ro->N;
    gpt2_batch batch = {ro->seq + (int64_t)r0 * S, ro->positions + (int64_t)r0 * S,
                        ro->seq_mask + (int64_t)r0 * S, n, S};
    gpt2_forward(m, &batch, true);
    scale_logits(m, inv_temp);
    float *ent = entropy ? ro->dfull : NULL; /* scratch (n, S) */
    gpt2_token_logprobs(m, ro->targets + (int64_t)r0 * S, ro->full, ent);
    for (int b = 0; b < n; b++)
        for (int t = 0; t < N; t++) {
            const int64_t c = (int64_t)b * S + P + t - 1; /* the position predicting token t */
            logp[(int64_t)b * N + t] = ro->full[c];
            if (values && m->cfg.scalar_head)
                values[(int64_t)b * N + t] = m->acts.values[c];
            if (entropy)
                entropy[(int64_t)b * N + t] = ent[c];
        }
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
        float *const d[] = {dst->logp, dst->values, dst->adv, dst->returns};
        const float *const f[] = {src->logp, src->values, src->adv, src->returns};
        for (int k = 0; k < 4; k++)
            memcpy(d[k] + (int64_t)i * N, f[k] + s * N, sizeof(float) * (size_t)N);
    }
}

static bool all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

static double masked_mean(const float *x, const uint8_t *mask, int64_t n) {
    double s = 0.0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask[i])
            s += x[i], c++;
    return c ? s / (double)c : NAN;
}

int ppo_lm_train(const ppo_lm_config *cfg, const ppo_lm_inputs *in, const train_sink *sink,
                 ppo_lm_result *result, char *err, size_t errlen) {
    if (ppo_lm_validate(cfg, err, errlen) != 0)
        return -1;
    if (in->n_prompts < 1 || in->policy_checkpoint == NULL || in->reward_checkpoint == NULL) {
        snprintf(err, errlen,
                 "ppo needs prompts, a policy (SFT) checkpoint and a reward model "
                 "checkpoint");
        return -1;
    }
    gpt2_model policy = {0}, ref = {0}, rm = {0};
    double gain = 1.0, bias = 0.0;
    if (load_model(&policy, in->policy_checkpoint, true, (uint64_t)cfg->seed, NULL, NULL, err,
                   errlen) != 0)
        return -1;
    int rc = -1;
    rollout ro = {0}, mb = {0};
    float *adam_m = NULL, *adam_v = NULL, *flat = NULL;
    int32_t **prompt_tokens = NULL, *prompt_len = NULL, *order = NULL, *perm = NULL;
    ppo_lm_result res = {0};
    if (load_model(&ref, in->policy_checkpoint, false, (uint64_t)cfg->seed, NULL, NULL, err,
                   errlen) != 0 ||
        load_model(&rm, in->reward_checkpoint, true, (uint64_t)cfg->seed, &gain, &bias, err,
                   errlen) != 0)
        goto done;
    if (rm.cfg.vocab_size != policy.cfg.vocab_size || in->tok->vocab_size > policy.cfg.vocab_size) {
        snprintf(err, errlen,
                 "the policy (%d), reward model (%d) and tokenizer (%d) vocabularies "
                 "do not match",
                 policy.cfg.vocab_size, rm.cfg.vocab_size, in->tok->vocab_size);
        goto done;
    }
    const int B = (int)cfg->batch_size, M = (int)cfg->mini_batch_size;
    const int N = (int)cfg->response_length;
    const int context =
        policy.cfg.max_seq_len < rm.cfg.max_seq_len ? policy.cfg.max_seq_len : rm.cfg.max_seq_len;
    /* Prompts, tokenized once; P is the longest (left-padded to it). */
    prompt_tokens = calloc((size_t)in->n_prompts, sizeof *prompt_tokens);
    prompt_len = calloc((size_t)in->n_prompts, sizeof *prompt_len);
    order = malloc(sizeof(int32_t) * (size_t)in->n_prompts);
    perm = malloc(sizeof(int32_t) * (size_t)B);
    if (!prompt_tokens || !prompt_len || !order || !perm) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    int P = 1;
    for (int64_t i = 0; i < in->n_prompts; i++) {
        const int cap = context - N;
        if (cap < 1) {
            snprintf(err, errlen,
                     "hyperparameter 'response_length': %d leaves no room for a "
                     "prompt in a context of %d",
                     N, context);
            goto done;
        }
        prompt_tokens[i] = malloc(sizeof(int32_t) * (size_t)cap);
        const int64_t n = prompt_tokens[i]
                              ? tokenizer_encode(in->tok, in->prompts[i], strlen(in->prompts[i]),
                                                 prompt_tokens[i], (size_t)cap, false)
                              : -1;
        if (n < 1) {
            snprintf(err, errlen, "prompt %lld is empty or could not be tokenized",
                     (long long)i + 1);
            goto done;
        }
        prompt_len[i] = (int32_t)(n < cap ? n : cap); /* longer prompts keep their start */
        P = prompt_len[i] > P ? prompt_len[i] : P;
    }
    const int S = P + N;
    if (rollout_alloc(&ro, B, P, N) != 0 || rollout_alloc(&mb, M, P, N) != 0 ||
        gpt2_reserve(&policy, B, S, err, errlen) != 0 || gpt2_reserve(&ref, B, S, err, errlen) ||
        gpt2_reserve(&rm, B, S, err, errlen) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for the rollout");
        goto done;
    }
    adam_m = calloc((size_t)policy.num_params, sizeof(float));
    adam_v = calloc((size_t)policy.num_params, sizeof(float));
    flat = malloc(sizeof(float) * (size_t)M * (size_t)N * 8);
    if (!adam_m || !adam_v || !flat) {
        snprintf(err, errlen, "out of memory for the optimizer");
        goto done;
    }
    rng_state prompt_rng, sample_rng, mb_rng;
    rng_seed(&prompt_rng, (uint64_t)cfg->seed, 0xE0000002u);
    rng_seed(&sample_rng, (uint64_t)cfg->seed, 0xE0000003u);
    rng_seed(&mb_rng, (uint64_t)cfg->seed, 0xE0000004u);
    int64_t cursor = in->n_prompts; /* forces a shuffle */
    kl_controller ctl = {cfg->kl_coef, cfg->target_kl, cfg->kl_horizon};
    const kl_estimator est = (kl_estimator)kl_estimator_from_name(cfg->kl_estimator);
    const float inv_temp = (float)(1.0 / cfg->temperature);
    const int eot = in->tok->eot_id;
    int64_t adam_t = 0, bad_in_a_row = 0;
    const double start = now_s();

    for (int64_t update = 1; update <= cfg->total_updates; update++) {
        if (sink_should_stop(sink))
            break;
        const double t0 = now_s();
        /* ---- rollout: prompts, left-padded ---- */
        for (int b = 0; b < B; b++) {
            if (cursor >= in->n_prompts) {
                int32_t n32 = (int32_t)in->n_prompts;
                rng_permutation(&prompt_rng, order, n32);
                cursor = 0;
            }
            const int32_t p = order[cursor++];
            const int pad = P - prompt_len[p];
            for (int c = 0; c < P; c++) {
                ro.prompt_ids[(int64_t)b * P + c] = c < pad ? eot : prompt_tokens[p][c - pad];
                ro.prompt_mask[(int64_t)b * P + c] = (uint8_t)(c >= pad);
            }
        }
        const gpt2_sample_config sc = {(float)cfg->temperature, 0, 1.0f, N, eot};
        if (gpt2_generate(&policy, ro.prompt_ids, ro.prompt_mask, B, P, &sc, &sample_rng, ro.gen,
                          ro.len, err, errlen) != 0)
            goto done;
        for (int b = 0; b < B; b++) {
            int pos = 0;
            for (int c = 0; c < S; c++) {
                const int64_t i = (int64_t)b * S + c;
                const int real = c < P ? ro.prompt_mask[(int64_t)b * P + c] : c - P < ro.len[b];
                ro.seq[i] =
                    c < P ? ro.prompt_ids[(int64_t)b * P + c] : ro.gen[(int64_t)b * N + c - P];
                ro.seq_mask[i] = (uint8_t)real;
                ro.positions[i] = real ? pos++ : 0;
            }
            for (int c = 0; c < S; c++)
                ro.targets[(int64_t)b * S + c] = c + 1 < S ? ro.seq[(int64_t)b * S + c + 1] : 0;
            for (int t = 0; t < N; t++)
                ro.mask[(int64_t)b * N + t] = (uint8_t)(t < ro.len[b]);
        }
        const double t1 = now_s();
        /* ---- scoring: policy and reference log-probs, values, the reward model ---- */
        score_tokens(&policy, &ro, 0, B, inv_temp, ro.logp, ro.values, NULL);
        score_tokens(&ref, &ro, 0, B, inv_temp, ro.ref_logp, NULL, NULL);
        gpt2_batch rb = {ro.seq, ro.positions, ro.seq_mask, B, S};
        gpt2_forward(&rm, &rb, false);
        int eos_count = 0;
        for (int b = 0; b < B; b++) {
            const int last = P + ro.len[b] - 1;
            ro.score[b] = (float)(gain * rm.acts.values[(int64_t)b * S + last] + bias);
            const int has_eos = ro.gen[(int64_t)b * N + ro.len[b] - 1] == eot;
            eos_count += has_eos;
            if (!has_eos)
                ro.score[b] -= (float)cfg->missing_eos_penalty;
        }
        const double t2 = now_s();
        const int64_t BN = (int64_t)B * N;
        if (!all_finite(ro.logp, BN) || !all_finite(ro.ref_logp, BN) || !all_finite(ro.score, B) ||
            !all_finite(ro.values, BN)) {
            char msg[128];
            snprintf(msg, sizeof msg, "update %lld skipped: non-finite rollout", (long long)update);
            sink_event(sink, SINK_LEVEL_WARN, "non_finite", msg, NULL, 0);
            if (++bad_in_a_row >= cfg->non_finite_patience) {
                snprintf(err, errlen, "%lld non-finite updates in a row", (long long)bad_in_a_row);
                goto done;
            }
            continue;
        }
        rlhf_kl_per_token(ro.kl, ro.logp, ro.ref_logp, ro.mask, B, N, est);
        rlhf_shape_rewards(ro.rewards, ro.kl, ro.score, ro.len, (float)ctl.beta, B, N);
        if (cfg->whiten_rewards)
            rlhf_whiten(ro.rewards, ro.mask, BN, false);
        rlhf_compute_gae(ro.adv, ro.returns, ro.rewards, ro.values, ro.len, (float)cfg->gamma,
                         (float)cfg->lam, B, N);
        rlhf_whiten(ro.adv, ro.mask, BN, true);
        double seq_kl = 0.0, score_mean = 0.0, neg_logp = 0.0, len_mean = 0.0;
        for (int b = 0; b < B; b++) {
            score_mean += ro.score[b];
            len_mean += ro.len[b];
            for (int t = 0; t < ro.len[b]; t++) {
                seq_kl += ro.kl[(int64_t)b * N + t];
                neg_logp -= ro.logp[(int64_t)b * N + t];
            }
        }
        seq_kl /= B, score_mean /= B, neg_logp /= B, len_mean /= B;

        /* ---- PPO epochs over shuffled minibatches ---- */
        const float lr = cfg->anneal_lr
                             ? lr_linear((float)cfg->learning_rate, update - 1, cfg->total_updates)
                             : (float)cfg->learning_rate;
        double pg_sum = 0, v_sum = 0, approxkl = 0, clipfrac = 0, vclipfrac = 0, ratio = 0,
               entropy = 0, vpred = 0;
        int steps = 0;
        for (int64_t epoch = 0; epoch < cfg->ppo_epochs; epoch++) {
            rng_permutation(&mb_rng, perm, B);
            for (int start_row = 0; start_row < B; start_row += M) {
                copy_rows(&mb, &ro, perm + start_row, M);
                float *newlogp = flat, *newval = flat + (int64_t)M * N,
                      *ent = newval + (int64_t)M * N;
                score_tokens(&policy, &mb, 0, M, inv_temp, newlogp, newval, ent);
                /* masked tokens, flattened: new/old log-prob, advantage, value, old value, return
                 */
                float *f_new = ent + (int64_t)M * N, *f_old = f_new + (int64_t)M * N;
                float *f_adv = f_old + (int64_t)M * N, *f_val = f_adv + (int64_t)M * N;
                float *f_oldv = f_val + (int64_t)M * N, *f_ret = ro.full; /* (B·S ≥ M·N) scratch */
                int n_tok = 0;
                for (int64_t i = 0; i < (int64_t)M * N; i++) {
                    if (!mb.mask[i])
                        continue;
                    f_new[n_tok] = newlogp[i], f_old[n_tok] = mb.logp[i], f_adv[n_tok] = mb.adv[i];
                    f_val[n_tok] = newval[i], f_oldv[n_tok] = mb.values[i],
                    f_ret[n_tok] = mb.returns[i];
                    n_tok++;
                }
                if (n_tok == 0)
                    continue;
                const float pg =
                    ppo_policy_loss_forward(f_new, f_old, f_adv, n_tok, (float)cfg->clip_coef);
                const float vl =
                    ppo_value_loss_forward(f_val, f_oldv, f_ret, n_tok, (float)cfg->vf_clip, true);
                if (!isfinite(pg) || !isfinite(vl))
                    continue; /* skip this step; the rollout check guards the rest */
                /* gradients back onto the (M, S) positions that predicted each token */
                float *d_new = mb.kl, *d_val = mb.rewards; /* (M, N) scratch, unused in mb */
                memset(d_new, 0, sizeof(float) * (size_t)n_tok);
                memset(d_val, 0, sizeof(float) * (size_t)n_tok);
                ppo_policy_loss_backward(d_new, f_new, f_old, f_adv, n_tok, (float)cfg->clip_coef,
                                         1.0f);
                ppo_value_loss_backward(d_val, f_val, f_oldv, f_ret, n_tok, (float)cfg->vf_clip,
                                        true, (float)cfg->vf_coef);
                memset(mb.dfull, 0, sizeof(float) * (size_t)M * (size_t)S);
                memset(policy.acts.dvalues, 0, sizeof(float) * (size_t)M * (size_t)S);
                int k = 0;
                for (int b = 0; b < M; b++)
                    for (int t = 0; t < N; t++) {
                        if (!mb.mask[(int64_t)b * N + t])
                            continue;
                        const int64_t c = (int64_t)b * S + P + t - 1;
                        mb.dfull[c] = d_new[k];
                        policy.acts.dvalues[c] = d_val[k];
                        const double lr_ = (double)f_new[k] - f_old[k];
                        approxkl += 0.5 * lr_ * lr_ / n_tok;
                        clipfrac += (fabs(exp(lr_) - 1.0) > cfg->clip_coef) / (double)n_tok;
                        ratio += exp(lr_) / n_tok;
                        vclipfrac +=
                            (fabs((double)f_val[k] - f_oldv[k]) > cfg->vf_clip) / (double)n_tok;
                        vpred += (double)f_val[k] / n_tok;
                        k++;
                    }
                entropy += masked_mean(ent, mb.mask, (int64_t)M * N);
                /* d/d(logits/T) → d/dlogits: one more factor 1/T */
                gpt2_logprobs_backward(&policy, mb.targets, mb.dfull, NULL);
                scale_logits(&policy, inv_temp);
                gpt2_zero_grad(&policy);
                gpt2_backward(&policy, true, true);
                grad_clip_global_norm(policy.grad_memory, policy.num_params, cfg->max_grad_norm);
                const adam_config adam = {lr, 0.9f, 0.999f, 1e-5f, 0.0f};
                adam_step(policy.param_memory, policy.grad_memory, adam_m, adam_v, NULL,
                          policy.num_params, &adam, ++adam_t);
                pg_sum += pg, v_sum += vl;
                steps++;
            }
        }
        bad_in_a_row = 0;
        kl_controller_update(&ctl, seq_kl, B);
        const double t3 = now_s();
        if (update == 1)
            res.first_score = score_mean;
        res.last_score = score_mean;
        res.last_kl = seq_kl;
        res.updates = update;
        const double ns = steps ? steps : 1;
        /* explained variance of the rollout's values */
        double var_ret = 0, var_res = 0, mr = masked_mean(ro.returns, ro.mask, BN), md = 0;
        int64_t cnt = 0;
        for (int64_t i = 0; i < BN; i++)
            if (ro.mask[i])
                md += ro.returns[i] - ro.values[i], cnt++;
        md /= cnt ? cnt : 1;
        for (int64_t i = 0; i < BN; i++)
            if (ro.mask[i]) {
                var_ret += (ro.returns[i] - mr) * (ro.returns[i] - mr);
                const double d = ro.returns[i] - ro.values[i] - md;
                var_res += d * d;
            }
        const sink_metric m[] = {
            {"objective/kl", seq_kl},
            {"objective/kl_coef", ctl.beta},
            {"objective/entropy", neg_logp},
            {"objective/scores", score_mean},
            {"objective/non_score_reward", -ctl.beta * seq_kl},
            {"objective/rlhf_reward", score_mean - ctl.beta * seq_kl},
            {"policy/approxkl_avg", approxkl / ns},
            {"policy/clipfrac_avg", clipfrac / ns},
            {"policy/entropy_avg", entropy / ns},
            {"loss/policy_avg", pg_sum / ns},
            {"loss/value_avg", v_sum / ns},
            {"val/clipfrac_avg", vclipfrac / ns},
            {"val/ratio", ratio / ns},
            {"val/vpred", vpred / ns},
            {"val/var_explained", var_ret > 0 ? 1.0 - var_res / var_ret : NAN},
            {"val/num_eos_tokens", eos_count},
            {"tokens/responses_len_mean", len_mean},
            {"lr", lr},
            {"episode", (double)update * B},
            {"time/generation_s", t1 - t0},
            {"time/scoring_s", t2 - t1},
            {"time/training_s", t3 - t2},
            {"tokens_per_s", (double)B * S / (t3 - t0)},
            {"wall_s", t3 - start},
        };
        if (sink_metrics(sink, update, m, (int)(sizeof m / sizeof m[0])) != 0) {
            snprintf(err, errlen, "the metrics sink failed");
            goto done;
        }
        if (update == cfg->total_updates ||
            (cfg->sample_interval > 0 && update % cfg->sample_interval == 0)) {
            char text[1024], msg[1400];
            const int32_t shown = ro.len[0] - (ro.gen[ro.len[0] - 1] == eot); /* no EOT text */
            const int64_t k =
                tokenizer_decode(in->tok, ro.gen, (size_t)shown, text, sizeof text - 1);
            text[k < 0 ? 0 : k > (int64_t)sizeof text - 1 ? (int64_t)sizeof text - 1 : k] = '\0';
            snprintf(msg, sizeof msg, "sample at update %lld (score %.3f): %s", (long long)update,
                     ro.score[0], text);
            sink_event(sink, SINK_LEVEL_INFO, "sample", msg, NULL, 0);
        }
    }
    if (!all_finite(policy.param_memory, policy.num_params)) {
        snprintf(err, errlen, "the policy's weights are not finite; no checkpoint written");
        goto done;
    }
    {
        char steps[24];
        snprintf(steps, sizeof steps, "%lld", (long long)res.updates);
        const char *const meta[][2] = {{"rlhfd_job", "ppo"}, {"step", steps}};
        size_t n_bytes = 0;
        void *bytes = gpt2_checkpoint_serialize(&policy, meta, 2, NULL, 0, &n_bytes);
        const int crc = bytes ? sink_checkpoint(sink, res.updates, bytes, n_bytes) : -1;
        free(bytes);
        if (crc != 0) {
            snprintf(err, errlen, "writing the policy checkpoint failed");
            goto done;
        }
    }
    rc = 0;
done:
    if (result)
        *result = res;
    if (prompt_tokens)
        for (int64_t i = 0; i < in->n_prompts; i++)
            free(prompt_tokens[i]);
    free(prompt_tokens), free(prompt_len), free(order), free(perm);
    free(adam_m), free(adam_v), free(flat);
    rollout_free(&ro);
    rollout_free(&mb);
    gpt2_free(&policy);
    gpt2_free(&ref);
    gpt2_free(&rm);
    return rc;
}
