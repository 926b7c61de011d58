/* optim — Adam/AdamW, global gradient-norm clipping and learning-rate
 * schedules, each one loop over a flat parameter buffer.
 *
 * Adam (Kingma & Ba 2015, Algorithm 1) with PyTorch's eps placement: eps is
 * added to the bias-corrected second-moment root,
 *     p -= lr · m̂ / (sqrt(v̂) + eps),   m̂ = m / (1 - β1ᵗ),  v̂ = v / (1 - β2ᵗ)
 * (torch.optim.Adam; TensorFlow instead adds eps to the uncorrected root,
 * which matters when eps is as large as PPO's 1e-5). AdamW (Loshchilov &
 * Hutter 2019) decays weights decoupled from the gradient: p -= lr · wd · p
 * before the Adam step, and only where decay_mask (if given) is 1.
 */
#ifndef RLHF_OPTIM_H
#define RLHF_OPTIM_H

#include <stdint.h>

typedef struct adam_config {
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay; /* 0 = plain Adam */
} adam_config;

/* One step at step number t (1-based). m and v are the moment buffers,
 * zeroed before the first step. decay_mask may be NULL (decay everything
 * when weight_decay > 0). */
void adam_step(float *params, const float *grads, float *m, float *v, const uint8_t *decay_mask,
               int64_t n, const adam_config *cfg, int64_t t);

/* Global L2 norm of grads (computed in double). */
double grad_global_norm(const float *grads, int64_t n);
/* Scales grads so their global norm is at most max_norm (as
 * torch.nn.utils.clip_grad_norm_: multiplies by max_norm / (norm + 1e-6)
 * when that factor is below 1). Returns the norm before clipping. */
double grad_clip_global_norm(float *grads, int64_t n, double max_norm);

/* Linear annealing from lr0 at step 0 to 0 at total_steps (CleanRL's
 * frac = 1 - step / total). */
float lr_linear(float lr0, int64_t step, int64_t total_steps);

/* Warm-up then decay, as most LM trainers (HF get_cosine_schedule_with_warmup
 * and friends): lr·(step+1)/warmup during warm-up, then from lr down to
 * lr·min_ratio at total_steps, following a half cosine ("cosine"), a line
 * ("linear") or staying at lr ("constant"). step is 0-based. */
typedef enum lr_schedule_kind {
    LR_SCHEDULE_CONSTANT,
    LR_SCHEDULE_LINEAR,
    LR_SCHEDULE_COSINE,
} lr_schedule_kind;

/* "constant" | "linear" | "cosine", or -1. */
int lr_schedule_from_name(const char *name);
float lr_schedule(lr_schedule_kind kind, float lr, int64_t step, int64_t warmup_steps,
                  int64_t total_steps, float min_ratio);

#endif
