/* lm_logits — the LM head's losses over rows of V logits, shared by every
 * model family: masked cross-entropy (turning logits into dlogits in place),
 * per-token log-probabilities and entropies, and the backward of a loss given
 * through those log-probabilities.
 *
 * The rows are V wide (50257 for GPT-2, 151936 for Qwen), so the passes use
 * nn.h's vectorised max / exp-sum / dot. row_scratch holds V floats.
 */
#ifndef RLHF_LM_LOGITS_H
#define RLHF_LM_LOGITS_H

#include <stdint.h>

/* Masked mean cross-entropy of targets (N) over logits (N, V): row i counts
 * when loss_mask[i] (NULL = all). Returns the loss (NAN if nothing counts).
 * When grad_scale > 0, logits become dlogits = grad_scale · ∂loss/∂logits. */
float lm_logits_ce_loss(float *logits, const int32_t *targets, const uint8_t *loss_mask, int N,
                        int V, float grad_scale, float *row_scratch);

/* logp[i] = log softmax(logits[i])[targets[i]] and, when entropy is not
 * NULL, the entropy of row i. Logits unchanged. */
void lm_logits_token_logprobs(const float *logits, const int32_t *targets, int N, int V,
                              float *logp, float *entropy, float *row_scratch);

/* logits become dlogits for a loss with gradients dlogp (N) with respect to
 * the target log-probabilities and dentropy (N, or NULL) with respect to the
 * entropies:  ∂/∂z_j = dlogp · (1[j = y] - p_j) - dentropy · p_j (log p_j + H). */
void lm_logits_logprobs_backward(float *logits, const int32_t *targets, const float *dlogp,
                                 const float *dentropy, int N, int V, float *row_scratch);

#endif
