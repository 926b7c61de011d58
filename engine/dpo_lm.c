/* See dpo_lm.h. */
#include "dpo_lm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo.h"
#include "lm_policy.h"
#include "optim.h"
#include "rng.h"
#include "train_state.h"

static const char *const loss_choices[] = {"sigmoid", "ipo", "hinge", NULL};
static const char *const reference_choices[] = {"precomputed", "adapters_off", "frozen_copy", NULL};
static const char *const schedule_choices[] = {"linear", "cosine", "constant", NULL};

#define F(name) offsetof(dpo_lm_config, name)
static const hparam_def dpo_lm_defs[] = {
    {"seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,
     "Seeds the held-out split, the pair order and the adapters."},
    {"epochs", HPARAM_INT, F(epochs), 1, 1, 10000, NULL, "Passes over the training pairs."},
    {"max_steps", HPARAM_INT, F(max_steps), 0, 0, 1e9, NULL,
     "Optimizer steps; 0 = as many as `epochs` takes."},
    {"batch_size", HPARAM_INT, F(batch_size), 8, 1, 1024, NULL, "Preference pairs per step."},
    {"learning_rate", HPARAM_FLOAT, F(learning_rate), 1e-6, 0, 1, NULL,
     "Peak Adam step size (TRL's DPO default)."},
    {"lr_schedule", HPARAM_CHOICE, F(lr_schedule), 0, 0, 0, schedule_choices,
     "Decay after warm-up, to 0 at the last step (TRL's default: linear)."},
    {"warmup_steps", HPARAM_INT, F(warmup_steps), 0, 0, 1e9, NULL, "Linear warm-up steps."},
    {"max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 1.0, 0, 1e6, NULL,
     "Clip the global gradient norm to this."},
    {"beta", HPARAM_FLOAT, F(beta), 0.1, 1e-6, 1e3, NULL,
     "β: the strength of the KL constraint to the reference (IPO's τ)."},
    {"loss_type", HPARAM_CHOICE, F(loss_type), 0, 0, 0, loss_choices,
     "sigmoid (DPO), ipo (Azar et al. 2023) or hinge (SLiC)."},
    {"label_smoothing", HPARAM_FLOAT, F(label_smoothing), 0, 0, 0.499, NULL,
     "ε of conservative DPO: the share of labels assumed flipped (sigmoid only)."},
    {"length_normalize", HPARAM_BOOL, F(length_normalize), 0, 0, 0, NULL,
     "Mean instead of summed log-probs over a response's tokens (IPO's usual form)."},
    {"reference", HPARAM_CHOICE, F(reference), 0, 0, 0, reference_choices,
     "Reference log-probs: precomputed once from the initial model (default: the same numbers "
     "every step, for one forward per pair instead of one per pair per step and no second model "
     "in memory), adapters_off every step (LoRA only), or frozen_copy every step."},
    {"max_prompt_length", HPARAM_INT, F(max_prompt_length), 128, 1, 65536, NULL,
     "Prompt tokens kept (the last ones)."},
    {"max_response_length", HPARAM_INT, F(max_response_length), 64, 1, 65536, NULL,
     "Response tokens kept, <|endoftext|> included (the first ones)."},
    {"eval_fraction", HPARAM_FLOAT, F(eval_fraction), 0.1, 0, 0.5, NULL,
     "Share of rankings held out when no eval set is given."},
    {"eval_interval", HPARAM_INT, F(eval_interval), 50, 0, 1e9, NULL,
     "Held-out metrics every this many steps (0 = only at the end)."},
    {"checkpoint_interval", HPARAM_INT, F(checkpoint_interval), 0, 0, 1e9, NULL,
     "Checkpoint every this many steps (0 = only at the end); these and a stopped run's "
     "checkpoint can resume."},
    {"lora_r", HPARAM_INT, F(lora_r), 0, 0, 4096, NULL,
     "LoRA rank (0 = full fine-tuning). With LoRA only the adapters train."},
    {"lora_alpha", HPARAM_FLOAT, F(lora_alpha), 16, 1e-6, 1e6, NULL,
     "LoRA alpha: adapters are scaled by lora_alpha / lora_r."},
    {"lora_targets", HPARAM_CHOICE, F(lora_targets), 0, 0, 0, lm_lora_target_choices,
     LM_LORA_TARGETS_DOC},
};
#undef F

const hparam_table dpo_lm_hparams = {dpo_lm_defs, (int)(sizeof dpo_lm_defs / sizeof dpo_lm_defs[0]),
                                     sizeof(dpo_lm_config)};

static dpo_config loss_config(const dpo_lm_config *cfg) {
    return (dpo_config){(dpo_loss_type)dpo_loss_type_from_name(cfg->loss_type), cfg->beta,
                        cfg->label_smoothing};
}

int dpo_lm_validate(const dpo_lm_config *cfg, char *err, size_t errlen) {
    const dpo_config lc = loss_config(cfg);
    char why[200];
    if (dpo_config_validate(&lc, why, sizeof why) != 0) {
        snprintf(err, errlen, "hyperparameter %s", why); /* "hyperparameter beta: must ..." */
        return -1;
    }
    if (strcmp(cfg->reference, "adapters_off") == 0 && cfg->lora_r == 0) {
        snprintf(err, errlen,
                 "hyperparameter 'reference': adapters_off needs LoRA (lora_r > 0); without "
                 "adapters use precomputed or frozen_copy");
        return -1;
    }
    return 0;
}

/* ==== the job ===================================================================== */

/* One preference pair: responses w (chosen) and l (rejected) of a ranking. */
typedef struct pair {
    int32_t ranking, w, l;
} pair;

/* A set of rankings, tokenized, and their pairs. */
typedef struct pair_set {
    const ranking *rk;
    int64_t n_rk;
    int32_t **prompt; /* (n_rk) ids */
    int32_t *prompt_len;
    int32_t **resp; /* (n_rk · RANKING_MAX_K) ids, <|endoftext|> last */
    int32_t *resp_len;
    pair *pairs;
    int64_t n;
    float *ref_c, *ref_r; /* (n) precomputed reference log-probs */
} pair_set;

typedef struct dpo_job {
    const dpo_lm_config *cfg;
    const dpo_lm_inputs *in;
    const train_sink *sink;
    model policy, ref; /* ref: frozen_copy only */
    bool live_ref;     /* reference computed every step */
    dpo_config loss;
    int B, P, N, eot;
    pair_set train, eval;
    ranking *split; /* the rankings split into train and eval, when no eval set is given */
    int32_t *order;
    lm_rows rows;                       /* (2B) chosen then rejected */
    float *logp, *dlogp;                /* (2B, N) */
    float *seq_policy, *seq_ref, *dseq; /* (2B) */
    lm_train_state st;
    int64_t total_steps;
} dpo_job;

static lm_lora_spec lora_spec(const dpo_lm_config *cfg) {
    return (lm_lora_spec){cfg->lora_r, cfg->lora_alpha, cfg->lora_targets, (uint64_t)cfg->seed};
}

static void pair_set_free(pair_set *s) {
    for (int64_t i = 0; s->prompt && i < s->n_rk; i++)
        free(s->prompt[i]);
    for (int64_t i = 0; s->resp && i < s->n_rk * RANKING_MAX_K; i++)
        free(s->resp[i]);
    free(s->prompt), free(s->prompt_len), free(s->resp), free(s->resp_len), free(s->pairs);
    free(s->ref_c), free(s->ref_r);
    memset(s, 0, sizeof *s);
}

/* Tokenizes the rankings (prompts keep their last max_prompt_length ids,
 * responses their first max_response_length, EOT included) and lists their
 * pairs. what names the set in messages. */
static int pair_set_build(pair_set *s, const ranking *rk, int64_t n_rk, const dpo_job *job,
                          const char *what, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->rk = rk, s->n_rk = n_rk;
    const tokenizer *tok = job->in->tok;
    const int64_t pcap = job->cfg->max_prompt_length, rcap = job->cfg->max_response_length;
    const int64_t buf_cap = 65536;
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)buf_cap);
    s->prompt = calloc((size_t)(n_rk ? n_rk : 1), sizeof *s->prompt);
    s->prompt_len = calloc((size_t)(n_rk ? n_rk : 1), sizeof *s->prompt_len);
    s->resp = calloc((size_t)(n_rk ? n_rk : 1) * RANKING_MAX_K, sizeof *s->resp);
    s->resp_len = calloc((size_t)(n_rk ? n_rk : 1) * RANKING_MAX_K, sizeof *s->resp_len);
    int64_t n_pairs = 0;
    for (int64_t i = 0; i < n_rk; i++)
        n_pairs += dpo_pairs_from_ranks(rk[i].rank, rk[i].k, NULL, NULL, 0);
    s->pairs = malloc(sizeof(pair) * (size_t)(n_pairs ? n_pairs : 1));
    if (!buf || !s->prompt || !s->prompt_len || !s->resp || !s->resp_len || !s->pairs) {
        free(buf);
        snprintf(err, errlen, "out of memory tokenizing the %s rankings", what);
        return -1;
    }
    for (int64_t i = 0; i < n_rk; i++) {
        char why[200];
        if (ranking_validate(&rk[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "%s ranking %lld: %s", what, (long long)i + 1, why);
            free(buf);
            return -1;
        }
        int64_t n = tokenizer_encode_input(tok, rk[i].prompt, strlen(rk[i].prompt), buf,
                                           (size_t)buf_cap, rk[i].rendered);
        if (n < 1) {
            snprintf(err, errlen, "%s ranking %lld: the prompt is empty or could not be tokenized",
                     what, (long long)i + 1);
            free(buf);
            return -1;
        }
        const int64_t keep = n < pcap ? n : pcap;
        s->prompt[i] = malloc(sizeof(int32_t) * (size_t)keep);
        if (s->prompt[i] == NULL)
            break;
        memcpy(s->prompt[i], buf + n - keep, sizeof(int32_t) * (size_t)keep);
        s->prompt_len[i] = (int32_t)keep;
        for (int k = 0; k < rk[i].k; k++) {
            n = tokenizer_encode(tok, rk[i].responses[k], strlen(rk[i].responses[k]), buf,
                                 (size_t)buf_cap - 1, rk[i].rendered);
            if (n < 0) {
                snprintf(err, errlen, "%s ranking %lld: response %d could not be tokenized", what,
                         (long long)i + 1, k + 1);
                free(buf);
                return -1;
            }
            buf[n++] = job->eot;
            const int64_t r = n < rcap ? n : rcap;
            int32_t **dst = &s->resp[i * RANKING_MAX_K + k];
            if ((*dst = malloc(sizeof(int32_t) * (size_t)r)) == NULL)
                break;
            memcpy(*dst, buf, sizeof(int32_t) * (size_t)r);
            s->resp_len[i * RANKING_MAX_K + k] = (int32_t)r;
        }
        int w[RANKING_MAX_K * RANKING_MAX_K], l[RANKING_MAX_K * RANKING_MAX_K];
        const int np =
            dpo_pairs_from_ranks(rk[i].rank, rk[i].k, w, l, RANKING_MAX_K * RANKING_MAX_K);
        for (int p = 0; p < np; p++)
            s->pairs[s->n++] = (pair){(int32_t)i, w[p], l[p]};
    }
    free(buf);
    s->ref_c = malloc(sizeof(float) * (size_t)(s->n ? s->n : 1));
    s->ref_r = malloc(sizeof(float) * (size_t)(s->n ? s->n : 1));
    if (!s->ref_c || !s->ref_r || s->n != n_pairs) {
        snprintf(err, errlen, "out of memory tokenizing the %s rankings", what);
        return -1;
    }
    return 0;
}

/* Lays out pairs idx[0..n) of s: row i the chosen response, row n + i the rejected. */
static void layout_pairs(dpo_job *job, const pair_set *s, const int32_t *idx, int n) {
    for (int i = 0; i < n; i++) {
        const pair *p = &s->pairs[idx[i]];
        const int64_t r = p->ranking;
        const int64_t cw = r * RANKING_MAX_K + p->w, cl = r * RANKING_MAX_K + p->l;
        lm_rows_set(&job->rows, i, s->prompt[r], s->prompt_len[r], s->resp[cw], s->resp_len[cw],
                    job->eot);
        lm_rows_set(&job->rows, n + i, s->prompt[r], s->prompt_len[r], s->resp[cl], s->resp_len[cl],
                    job->eot);
    }
}

/* Sequence log-probs of the 2n laid-out rows under m into seq[0..2n), in
 * one forward (which m keeps for backward). */
static void sequence_logps(dpo_job *job, model *m, int n, float *seq) {
    const int N = job->N, rows = 2 * n;
    lm_rows_logprobs(m, &job->rows, 0, rows, 1.0f, job->logp);
    for (int b = 0; b < rows; b++) {
        double s = 0.0;
        for (int t = 0; t < N; t++)
            s += job->logp[(int64_t)b * N + t];
        const int len = job->rows.len[b];
        seq[b] = (float)(job->cfg->length_normalize && len > 0 ? s / len : s);
    }
}

/* The reference's sequence log-probs of the laid-out rows. */
static void reference_logps(dpo_job *job, int n, float *seq) {
    if (model_has_lora(&job->policy) && strcmp(job->cfg->reference, "frozen_copy") != 0) {
        model_set_lora_enabled(&job->policy, false);
        sequence_logps(job, &job->policy, n, seq);
        model_set_lora_enabled(&job->policy, true);
    } else {
        sequence_logps(job, &job->ref, n, seq);
    }
}

/* Fills s->ref_c / ref_r for every pair of s: each rank its shard, then
 * every rank all of them. 0, or -1 (a failed collective). */
static int precompute_reference(dpo_job *job, pair_set *s) {
    int32_t idx[1024];
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(s->n, dist_rank(dist), dist_size(dist), &lo, &hi);
    for (int64_t p0 = lo; p0 < hi; p0 += job->B) {
        const int n = (int)(hi - p0 < job->B ? hi - p0 : job->B);
        for (int i = 0; i < n; i++)
            idx[i] = (int32_t)(p0 + i);
        layout_pairs(job, s, idx, n);
        reference_logps(job, n, job->seq_ref);
        for (int i = 0; i < n; i++)
            s->ref_c[p0 + i] = job->seq_ref[i], s->ref_r[p0 + i] = job->seq_ref[n + i];
    }
    return dist_allgather_rows(dist, s->ref_c, sizeof(float), s->n) != 0 ||
                   dist_allgather_rows(dist, s->ref_r, sizeof(float), s->n) != 0
               ? -1
               : 0;
}

/* Splits the train rankings into train and held-out when no eval set is
 * given: eval_fraction of them (whole rankings), chosen by the seed. */
static int split_rankings(dpo_job *job, const ranking **train, int64_t *n_train,
                          const ranking **eval, int64_t *n_eval, char *err, size_t errlen) {
    const dpo_lm_inputs *in = job->in;
    if (in->eval != NULL || job->cfg->eval_fraction == 0.0 || in->n_train < 2) {
        *train = in->train, *n_train = in->n_train, *eval = in->eval, *n_eval = in->n_eval;
        return 0;
    }
    const int64_t n = in->n_train;
    int64_t ne = (int64_t)llround(job->cfg->eval_fraction * (double)n);
    ne = ne < 1 ? 1 : ne > n - 1 ? n - 1 : ne;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
    job->split = malloc(sizeof(ranking) * (size_t)n);
    if (!perm || !job->split) {
        free(perm);
        snprintf(err, errlen, "out of memory splitting the rankings");
        return -1;
    }
    rng_state r;
    rng_seed(&r, (uint64_t)job->cfg->seed, 0xD0000001u);
    rng_permutation(&r, perm, (int32_t)n);
    for (int64_t i = 0; i < n; i++) /* held-out first, then train, each in input order */
        job->split[i] = in->train[perm[i]];
    free(perm);
    *eval = job->split, *n_eval = ne;
    *train = job->split + ne, *n_train = n - ne;
    return 0;
}

static int load_models(dpo_job *job, char *err, size_t errlen) {
    const dpo_lm_config *cfg = job->cfg;
    const dpo_lm_inputs *in = job->in;
    const lm_lora_spec spec = lora_spec(cfg);
    if (lm_open_policy(&job->policy, in->policy_checkpoint, in->resume_checkpoint, &spec,
                       0xD0000002u, err, errlen) != 0)
        return -1;
    /* no adapters: the reference is a copy of the initial model — kept
     * (frozen_copy) or used once for the precomputation */
    const bool need_copy = cfg->lora_r == 0 || strcmp(cfg->reference, "frozen_copy") == 0;
    if (need_copy && lm_open_model(&job->ref, in->policy_checkpoint, false, LM_LORA_NONE, &spec, 0,
                                   NULL, err, errlen) != 0)
        return -1;
    if (!lm_weights_finite(&job->policy) || (need_copy && !lm_weights_finite(&job->ref))) {
        snprintf(err, errlen, "the initial model's weights are not finite");
        return -1;
    }
    if (in->tok->vocab_size > model_vocab_size(&job->policy)) {
        snprintf(err, errlen, "the tokenizer's vocabulary (%d) is larger than the model's (%d)",
                 in->tok->vocab_size, model_vocab_size(&job->policy));
        return -1;
    }
    return 0;
}

static int prepare(dpo_job *job, char *err, size_t errlen) {
    const ranking *tr, *ev;
    int64_t ntr, nev;
    if (split_rankings(job, &tr, &ntr, &ev, &nev, err, errlen) != 0 ||
        pair_set_build(&job->train, tr, ntr, job, "training", err, errlen) != 0 ||
        pair_set_build(&job->eval, ev, nev, job, "held-out", err, errlen) != 0)
        return -1;
    if (job->train.n == 0) {
        snprintf(err, errlen, "dpo needs preference pairs; the training rankings have none");
        return -1;
    }
    /* columns: the longest prompt and the longest response of either set */
    job->P = 1, job->N = 1;
    const pair_set *sets[2] = {&job->train, &job->eval};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < sets[k]->n_rk; i++) {
            job->P = sets[k]->prompt_len[i] > job->P ? sets[k]->prompt_len[i] : job->P;
            for (int j = 0; j < sets[k]->rk[i].k; j++) {
                const int32_t n = sets[k]->resp_len[i * RANKING_MAX_K + j];
                job->N = n > job->N ? n : job->N;
            }
        }
    if (job->P + job->N > model_max_seq_len(&job->policy)) {
        snprintf(err, errlen,
                 "hyperparameter 'max_prompt_length': prompts of %d and responses of %d tokens "
                 "exceed the model's context of %d; lower max_prompt_length or "
                 "max_response_length",
                 job->P, job->N, model_max_seq_len(&job->policy));
        return -1;
    }
    const int rows = 2 * job->B;
    const int64_t RN = (int64_t)rows * job->N;
    job->order = malloc(sizeof(int32_t) * (size_t)job->train.n);
    job->logp = malloc(sizeof(float) * (size_t)RN);
    job->dlogp = malloc(sizeof(float) * (size_t)RN);
    job->seq_policy = malloc(sizeof(float) * (size_t)rows);
    job->seq_ref = malloc(sizeof(float) * (size_t)rows);
    job->dseq = malloc(sizeof(float) * (size_t)rows);
    if (lm_rows_alloc(&job->rows, rows, job->P, job->N) != 0 || !job->order || !job->logp ||
        !job->dlogp || !job->seq_policy || !job->seq_ref || !job->dseq ||
        model_reserve(&job->policy, rows, job->P + job->N, err, errlen) != 0 ||
        (lm_model_loaded(&job->ref) &&
         model_reserve(&job->ref, rows, job->P + job->N, err, errlen) != 0)) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for the batches");
        return -1;
    }
    return 0;
}

static void job_free(dpo_job *job) {
    pair_set_free(&job->train);
    pair_set_free(&job->eval);
    free(job->split), free(job->order), free(job->logp), free(job->dlogp);
    free(job->seq_policy), free(job->seq_ref), free(job->dseq);
    lm_train_state_free(&job->st);
    lm_rows_free(&job->rows);
    model_free(&job->policy);
    model_free(&job->ref);
}

/* ---- steps ------------------------------------------------------------------------ */

/* Policy and reference sequence log-probs of the laid-out pairs [0, n) of s
 * (idx: their indices in s, for the precomputed reference); the policy's
 * forward stays for backward. */
static void score_pairs(dpo_job *job, const pair_set *s, const int32_t *idx, int n) {
    if (job->live_ref) {
        reference_logps(job, n, job->seq_ref);
    } else {
        for (int i = 0; i < n; i++)
            job->seq_ref[i] = s->ref_c[idx[i]], job->seq_ref[n + i] = s->ref_r[idx[i]];
    }
    sequence_logps(job, &job->policy, n, job->seq_policy);
}

/* The pairs' loss and metrics (the rejected half starts at n). */
static double pairs_loss(dpo_job *job, int n, bool grad, dpo_metrics *m) {
    return dpo_loss(&job->loss, n, job->seq_policy, job->seq_policy + n, job->seq_ref,
                    job->seq_ref + n, grad ? job->dseq : NULL, grad ? job->dseq + n : NULL, m);
}

/* The metrics as an array, for sums over batches and ranks. */
enum { N_METRICS = 7 };
static void metrics_to_array(const dpo_metrics *m, double w, double *out) {
    const double v[N_METRICS] = {m->loss,
                                 m->rewards_chosen,
                                 m->rewards_rejected,
                                 m->rewards_accuracies,
                                 m->rewards_margins,
                                 m->logps_chosen,
                                 m->logps_rejected};
    for (int i = 0; i < N_METRICS; i++)
        out[i] += v[i] * w;
}
static dpo_metrics metrics_from_array(const double *v) {
    return (dpo_metrics){v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
}

/* The held-out metrics, pair-weighted over batches (and ranks: each scores
 * its shard). NAN metrics if a collective failed. */
static dpo_metrics evaluate(dpo_job *job) {
    double sum[N_METRICS] = {0};
    int32_t idx[1024];
    const pair_set *s = &job->eval;
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(s->n, dist_rank(dist), dist_size(dist), &lo, &hi);
    for (int64_t p0 = lo; p0 < hi; p0 += job->B) {
        const int n = (int)(hi - p0 < job->B ? hi - p0 : job->B);
        for (int i = 0; i < n; i++)
            idx[i] = (int32_t)(p0 + i);
        layout_pairs(job, s, idx, n);
        score_pairs(job, s, idx, n);
        dpo_metrics m;
        pairs_loss(job, n, false, &m);
        metrics_to_array(&m, (double)n / (double)s->n, sum);
    }
    if (dist_allreduce_sum_f64(dist, sum, N_METRICS) != 0)
        for (int i = 0; i < N_METRICS; i++)
            sum[i] = NAN;
    return metrics_from_array(sum);
}

static int report_eval(dpo_job *job, dpo_lm_result *res) {
    if (job->eval.n == 0)
        return 0;
    const dpo_metrics m = evaluate(job);
    res->eval_accuracy = m.rewards_accuracies, res->eval_margin = m.rewards_margins;
    const sink_metric out[] = {{"eval/loss", m.loss},
                               {"eval/rewards/accuracies", m.rewards_accuracies},
                               {"eval/rewards/margins", m.rewards_margins},
                               {"eval/logps/chosen", m.logps_chosen},
                               {"eval/logps/rejected", m.logps_rejected}};
    return sink_metrics(job->sink, job->st.step, out, 5);
}

/* One optimizer step on the next batch_size pairs, of which this rank
 * scores its shard (all of them on one process); 1 if the loss or gradient
 * was not finite or the ranks failed (no step; err says why). */
static int train_step(dpo_job *job, float lr, dpo_metrics *m, double *grad_norm, char *err,
                      size_t errlen) {
    const int B = job->B, N = job->N;
    int32_t idx[1024];
    for (int i = 0; i < B; i++)
        idx[i] = lm_train_state_next(&job->st, job->order, job->train.n);
    const dist_comm *dist = job->in->dist;
    int64_t lo, hi;
    dist_shard(B, dist_rank(dist), dist_size(dist), &lo, &hi);
    const int n = (int)(hi - lo);
    double sums[N_METRICS] = {0};
    model *pm = &job->policy;
    model_zero_grad(pm);
    if (n > 0) {
        layout_pairs(job, &job->train, idx + lo, n);
        score_pairs(job, &job->train, idx + lo, n);
        memset(job->dseq, 0, sizeof(float) * 2 * (size_t)n);
        dpo_metrics mine;
        pairs_loss(job, n, true, &mine);
        /* this shard's share of the batch mean */
        const double share = (double)n / (double)B;
        metrics_to_array(&mine, share, sums);
        /* d seq / d token log-prob: 1, or 1/len when normalised */
        for (int b = 0; b < 2 * n; b++) {
            const int len = job->rows.len[b];
            const float d = (float)(job->dseq[b] * share);
            const float g = job->cfg->length_normalize && len > 0 ? d / (float)len : d;
            for (int t = 0; t < N; t++)
                job->dlogp[(int64_t)b * N + t] = job->rows.mask[(int64_t)b * N + t] ? g : 0.0f;
        }
        lm_rows_backward(pm, &job->rows, 0, 1.0f, job->dlogp);
    }
    err[0] = '\0';
    *grad_norm = lm_train_state_adam_dist(&job->st, pm, dist, sums, N_METRICS, lr,
                                          job->cfg->max_grad_norm, err, errlen);
    *m = metrics_from_array(sums);
    return isfinite(*grad_norm) && isfinite(m->loss) ? 0 : 1;
}

/* ==== the loop ==================================================================== */

int dpo_lm_train(const dpo_lm_config *cfg, const dpo_lm_inputs *in, const train_sink *sink,
                 dpo_lm_result *result, char *err, size_t errlen) {
    if (errlen > 0)
        err[0] = '\0';
    dpo_lm_result res = {.eval_accuracy = NAN, .eval_margin = NAN};
    if (dpo_lm_validate(cfg, err, errlen) != 0)
        return -1;
    if (in->n_train < 1 || in->policy_checkpoint == NULL) {
        snprintf(err, errlen, "dpo needs rankings and a policy (SFT) checkpoint");
        return -1;
    }
    dpo_job job = {.cfg = cfg, .in = in, .sink = sink, .loss = loss_config(cfg)};
    job.B = (int)cfg->batch_size; /* at most 1024: the table's bound */
    job.eot = in->tok->eot_id;
    job.live_ref = strcmp(cfg->reference, "precomputed") != 0;
    int rc = -1;
    if (load_models(&job, err, errlen) != 0 || prepare(&job, err, errlen) != 0)
        goto done;
    res.n_train_pairs = job.train.n, res.n_eval_pairs = job.eval.n;
    const int64_t per_epoch = (job.train.n + job.B - 1) / job.B;
    job.total_steps = cfg->max_steps > 0 ? cfg->max_steps : per_epoch * cfg->epochs;
    lm_train_state *st = &job.st;
    if (lm_train_state_init(st, &job.policy, (uint64_t)cfg->seed, 0xD0000003u, 0xD0000004u,
                            job.train.n) != 0) {
        snprintf(err, errlen, "out of memory for the optimizer");
        goto done;
    }
    if (in->resume_checkpoint != NULL &&
        lm_train_state_restore(st, &job.policy, in->resume_checkpoint, &dpo_lm_hparams, cfg,
                               job.total_steps, job.order, job.train.n, err, errlen) != 0)
        goto done;
    if (!job.live_ref) {
        if (precompute_reference(&job, &job.train) != 0 ||
            precompute_reference(&job, &job.eval) != 0) {
            snprintf(err, errlen, "gathering the ranks' reference log-probs failed");
            goto done;
        }
        model_free(&job.ref); /* needed no more */
        if (!lm_all_finite(job.train.ref_c, job.train.n) ||
            !lm_all_finite(job.train.ref_r, job.train.n)) {
            snprintf(err, errlen, "the reference log-probs are not finite");
            goto done;
        }
    }
    const lr_schedule_kind kind = (lr_schedule_kind)lr_schedule_from_name(cfg->lr_schedule);
    while (st->step < job.total_steps) {
        if (dist_should_stop(in->dist, sink)) {
            res.stopped = true;
            break;
        }
        const float lr = lr_schedule(kind, (float)cfg->learning_rate, st->step, cfg->warmup_steps,
                                     job.total_steps, 0.0f);
        dpo_metrics m;
        double gn = NAN;
        char why[300];
        if (train_step(&job, lr, &m, &gn, why, sizeof why) != 0) {
            snprintf(err, errlen, "step %lld: %s", (long long)st->step + 1,
                     why[0] ? why : "the loss or the gradient is not finite");
            goto done;
        }
        st->step++;
        const sink_metric out[] = {{"loss", m.loss},
                                   {"rewards/chosen", m.rewards_chosen},
                                   {"rewards/rejected", m.rewards_rejected},
                                   {"rewards/accuracies", m.rewards_accuracies},
                                   {"rewards/margins", m.rewards_margins},
                                   {"logps/chosen", m.logps_chosen},
                                   {"logps/rejected", m.logps_rejected},
                                   {"lr", lr},
                                   {"grad_norm", gn},
                                   {"epoch", (double)(st->step - 1) / (double)per_epoch}};
        if (sink_metrics(sink, st->step, out, (int)(sizeof out / sizeof out[0])) != 0 ||
            ((st->step == job.total_steps ||
              (cfg->eval_interval > 0 && st->step % cfg->eval_interval == 0)) &&
             report_eval(&job, &res) != 0)) {
            snprintf(err, errlen, "the metrics sink failed");
            goto done;
        }
        if (dist_is_root(in->dist) && st->step < job.total_steps && cfg->checkpoint_interval > 0 &&
            st->step % cfg->checkpoint_interval == 0 &&
            lm_train_state_emit(st, &job.policy, sink, "dpo", &dpo_lm_hparams, cfg, true, err,
                                errlen) != 0)
            goto done;
    }
    res.steps = st->step;
    if (dist_is_root(in->dist) && lm_train_state_emit(st, &job.policy, sink, "dpo", &dpo_lm_hparams,
                                                      cfg, res.stopped, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (result)
        *result = res;
    job_free(&job);
    return rc;
}
