#include "dpo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const loss_names[] = {"sigmoid", "ipo", "hinge"};

int dpo_loss_type_from_name(const char *name) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, loss_names[i]) == 0)
            return i;
    return -1;
}

const char *dpo_loss_type_name(dpo_loss_type type) {
    return (unsigned)type < 3 ? loss_names[type] : "?";
}

int dpo_config_validate(const dpo_config *cfg, char *err, size_t errlen) {
    if ((unsigned)cfg->loss_type >= 3)
        snprintf(err, errlen, "loss_type: must be one of sigmoid, ipo, hinge");
    else if (!(cfg->beta > 0) || !isfinite(cfg->beta))
        snprintf(err, errlen, "beta: must be a finite number > 0");
    else if (!(cfg->label_smoothing >= 0 && cfg->label_smoothing < 0.5))
        snprintf(err, errlen, "label_smoothing: must be in [0, 0.5)");
    else if (cfg->label_smoothing > 0 && cfg->loss_type != DPO_LOSS_SIGMOID)
        snprintf(err, errlen, "label_smoothing: applies to loss_type sigmoid only (got %s)",
                 loss_names[cfg->loss_type]);
    else
        return 0;
    return -1;
}

/* log σ(z) = -softplus(-z), without overflow for large |z|. */
static double log_sigmoid(double z) {
    return -(fmax(-z, 0.0) + log1p(exp(-fabs(z))));
}

static double sigmoid(double z) {
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

double dpo_loss(const dpo_config *cfg, int n, const float *policy_chosen,
                const float *policy_rejected, const float *ref_chosen, const float *ref_rejected,
                float *d_chosen, float *d_rejected, dpo_metrics *metrics) {
    const double beta = cfg->beta, eps = cfg->label_smoothing;
    double loss = 0, r_c = 0, r_r = 0, acc = 0, lp_c = 0, lp_r = 0;
    for (int i = 0; i < n; i++) {
        const double h = ((double)policy_chosen[i] - policy_rejected[i]) -
                         ((double)ref_chosen[i] - ref_rejected[i]);
        const double z = beta * h;
        double l, dl_dh; /* the pair's loss and its derivative in h */
        switch (cfg->loss_type) {
            case DPO_LOSS_IPO: {
                const double d = h - 1.0 / (2.0 * beta);
                l = d * d, dl_dh = 2.0 * d;
                break;
            }
            case DPO_LOSS_HINGE:
                l = fmax(0.0, 1.0 - z), dl_dh = z < 1.0 ? -beta : 0.0;
                break;
            default: /* d/dz [-(1-ε) log σ(z) - ε log σ(-z)] = σ(z) - (1 - ε) */
                l = -(1.0 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z);
                dl_dh = beta * (sigmoid(z) - (1.0 - eps));
                break;
        }
        loss += l;
        if (d_chosen != NULL)
            d_chosen[i] = (float)(dl_dh / n);
        if (d_rejected != NULL)
            d_rejected[i] = (float)(-dl_dh / n);
        const double rc = beta * ((double)policy_chosen[i] - ref_chosen[i]);
        const double rr = beta * ((double)policy_rejected[i] - ref_rejected[i]);
        r_c += rc, r_r += rr, acc += rc > rr;
        lp_c += policy_chosen[i], lp_r += policy_rejected[i];
    }
    loss /= n;
    if (metrics != NULL) {
        metrics->loss = loss;
        metrics->rewards_chosen = r_c / n;
        metrics->rewards_rejected = r_r / n;
        metrics->rewards_accuracies = acc / n;
        metrics->rewards_margins = (r_c - r_r) / n;
        metrics->logps_chosen = lp_c / n;
        metrics->logps_rejected = lp_r / n;
    }
    return loss;
}

int dpo_pairs_from_ranks(const int *rank, int k, int *winner, int *loser, int cap) {
    int n = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++) {
            if (rank[i] == rank[j])
                continue;
            if (n < cap) {
                winner[n] = rank[i] < rank[j] ? i : j;
                loser[n] = rank[i] < rank[j] ? j : i;
            }
            n++;
        }
    return n;
}
