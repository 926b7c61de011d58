/* dpo — the Direct Preference Optimization family of losses on per-sequence
 * log-probs. The trainer computes, for each preference pair i, the summed
 * (or, for length normalisation, the mean) log-prob of the chosen and the
 * rejected response under the policy and under the reference, and hands the
 * four arrays here; this returns the batch loss, its gradient with respect to
 * the two policy arrays, and the metrics TRL logs.
 *
 * With h_i = (π_c - π_r) - (ref_c - ref_r) (the "logits" of TRL's dpo_loss)
 * and z_i = β·h_i, the per-pair losses are
 *   sigmoid  -(1-ε)·log σ(z) - ε·log σ(-z)    DPO, Rafailov et al. 2023 eq. 7;
 *                                              ε > 0 is conservative DPO
 *                                              (cDPO, Mitchell 2023 eq. 3)
 *   ipo      (h - 1/(2β))²                     IPO, Azar et al. 2023 eq. 17
 *                                              (β plays the paper's τ)
 *   hinge    max(0, 1 - z)                     SLiC, Zhao et al. 2023 eq. 3
 *                                              (δ = 1, β as in TRL)
 * and the batch loss is their mean over the n pairs. Label smoothing applies
 * to sigmoid only, as in TRL (dpo_config_validate refuses ε with the others).
 * IPO is meant for length-normalised log-probs (TRL averages them for ipo);
 * normalising is the caller's choice for every loss type.
 *
 * Metrics follow TRL's DPOTrainer.get_batch_loss_metrics: with the implicit
 * rewards r_c = β·(π_c - ref_c), r_r = β·(π_r - ref_r),
 *   rewards/chosen     = mean r_c          rewards/rejected = mean r_r
 *   rewards/accuracies = mean [r_c > r_r]  (strict: a tie counts as wrong)
 *   rewards/margins    = mean (r_c - r_r)
 *   logps/chosen       = mean π_c          logps/rejected   = mean π_r
 * (TRL computes the rewards with β for every loss type, so do we.)
 *
 * All arithmetic is in double; inputs and gradients are float like the rest
 * of the engine's activations.
 */
#ifndef RLHF_DPO_H
#define RLHF_DPO_H

#include <stddef.h>

typedef enum dpo_loss_type {
    DPO_LOSS_SIGMOID, /* "sigmoid" */
    DPO_LOSS_IPO,     /* "ipo" */
    DPO_LOSS_HINGE,   /* "hinge" */
} dpo_loss_type;

/* "sigmoid" | "ipo" | "hinge", or -1. */
int dpo_loss_type_from_name(const char *name);
const char *dpo_loss_type_name(dpo_loss_type type);

typedef struct dpo_config {
    dpo_loss_type loss_type;
    double beta;            /* > 0; TRL's default is 0.1 */
    double label_smoothing; /* ε in [0, 0.5); sigmoid only */
} dpo_config;

/* 0, or -1 with a message naming the field ("beta: must be > 0"). */
int dpo_config_validate(const dpo_config *cfg, char *err, size_t errlen);

typedef struct dpo_metrics {
    double loss;
    double rewards_chosen, rewards_rejected; /* "rewards/chosen", "rewards/rejected" */
    double rewards_accuracies;               /* "rewards/accuracies" */
    double rewards_margins;                  /* "rewards/margins" */
    double logps_chosen, logps_rejected;     /* "logps/chosen", "logps/rejected" */
} dpo_metrics;

/* The mean loss over n ≥ 1 pairs (returned, and in metrics->loss when
 * metrics is not NULL). d_chosen[i] and d_rejected[i] receive
 * ∂loss/∂policy_chosen[i] and ∂loss/∂policy_rejected[i] (of the mean, so
 * they carry the 1/n); either may be NULL. The reference arrays are
 * constants. At the hinge's kink (z = 1) the gradient is 0, like PyTorch's
 * relu. */
double dpo_loss(const dpo_config *cfg, int n, const float *policy_chosen,
                const float *policy_rejected, const float *ref_chosen, const float *ref_rejected,
                float *d_chosen, float *d_rejected, dpo_metrics *metrics);

/* The preference pairs of a K-wise ranking (rank[k]: 0 = best, equal
 * ranks tie): every (winner, loser) of the C(K, 2) pairs with
 * rank[winner] < rank[loser], in order of (i, j), i < j; ties give no pair.
 * Writes up to cap pairs to winner[] and loser[] and returns how many the
 * ranking has (so a result > cap means the arrays were too small). */
int dpo_pairs_from_ranks(const int *rank, int k, int *winner, int *loser, int cap);

#endif
