#include "optim.h"

#include "nn.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

ENGINE_HOT void adam_step(float *params, const float *grads, float *m, float *v,
                          const uint8_t *decay_mask, int64_t n, const adam_config *cfg, int64_t t) {
    const float b1 = cfg->beta1, b2 = cfg->beta2;
    const float bias1 = 1.0f - powf(b1, (float)t);
    const float bias2_sqrt = sqrtf(1.0f - powf(b2, (float)t));
    /* torch folds the corrections into the step size and the eps term:
     * lr/bias1 · m / (sqrt(v)/sqrt(bias2) + eps) — same value, one division. */
    const float step_size = cfg->lr / bias1;
    const float decay = cfg->lr * cfg->weight_decay;
    if (decay != 0.0f)
        for (int64_t i = 0; i < n; i++)
            if (decay_mask == NULL || decay_mask[i])
                params[i] -= decay * params[i];
    /* Branch-free, so it vectorises (ENGINE_HOT clones). */
    for (int64_t i = 0; i < n; i++) {
        const float g = grads[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        const float denom = sqrtf(v[i]) / bias2_sqrt + cfg->eps;
        params[i] -= step_size * m[i] / denom;
    }
}

ENGINE_HOT double grad_global_norm(const float *grads, int64_t n) {
    /* 16 running sums in a fixed order (element i goes to sum i % 16), so
     * the loop vectorises at any width and every width gives the same bits. */
    enum { LANES = 16 };
    double lane[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            lane[j] += (double)grads[i + j] * grads[i + j];
    for (int j = 0; i < n; i++, j++)
        lane[j] += (double)grads[i] * grads[i];
    double sum = 0.0;
    for (int j = 0; j < LANES; j++)
        sum += lane[j];
    return sqrt(sum);
}

double grad_clip_global_norm(float *grads, int64_t n, double max_norm) {
    double norm = grad_global_norm(grads, n);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float scale = (float)coef;
        for (int64_t i = 0; i < n; i++)
            grads[i] *= scale;
    }
    return norm;
}

float lr_linear(float lr0, int64_t step, int64_t total_steps) {
    if (total_steps <= 0)
        return lr0;
    double frac = 1.0 - (double)step / (double)total_steps;
    if (frac < 0.0)
        frac = 0.0;
    return (float)(frac * lr0);
}

int lr_schedule_from_name(const char *name) {
    if (strcmp(name, "constant") == 0)
        return LR_SCHEDULE_CONSTANT;
    if (strcmp(name, "linear") == 0)
        return LR_SCHEDULE_LINEAR;
    if (strcmp(name, "cosine") == 0)
        return LR_SCHEDULE_COSINE;
    return -1;
}

float lr_schedule(lr_schedule_kind kind, float lr, int64_t step, int64_t warmup_steps,
                  int64_t total_steps, float min_ratio) {
    if (step < warmup_steps)
        return lr * (float)(step + 1) / (float)warmup_steps;
    if (kind == LR_SCHEDULE_CONSTANT || total_steps <= warmup_steps)
        return lr;
    double progress = (double)(step - warmup_steps) / (double)(total_steps - warmup_steps);
    progress = progress > 1.0 ? 1.0 : progress;
    const double floor_lr = (double)lr * min_ratio;
    const double shape =
        kind == LR_SCHEDULE_COSINE ? 0.5 * (1.0 + cos(M_PI * progress)) : 1.0 - progress;
    return (float)(floor_lr + ((double)lr - floor_lr) * shape);
}
