/* nn — layers as forward/backward pairs of plain functions over flat float
 * buffers (the llm.c pattern).
 *
 * Conventions: B is the batch (rows), row-major everywhere. A dense weight is
 * stored (OC, C) — out-features by in-features, as PyTorch's nn.Linear — so
 * forward is out = inp · Wᵀ + b. Every backward ACCUMULATES (+=) into the
 * gradients of parameters and inputs, so callers zero gradient buffers once
 * per step and several consumers of one tensor can add their parts. A NULL
 * input-gradient pointer means "not needed" (e.g. the first layer).
 * Nothing here allocates.
 */
#ifndef RLHF_NN_H
#define RLHF_NN_H

#include <stdint.h>

#include "rng.h"

/* Hot elementwise loops are compiled three times (x86-64-v2 baseline, AVX2,
 * AVX-512) and the loader picks the widest the CPU has; without FMA
 * contraction (-std=c11 implies -ffp-contract=off) all three give the same
 * bits. Off under AddressSanitizer, whose runtime and ifuncs do not mix. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define ENGINE_HOT __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define ENGINE_HOT
#endif

/* ---- dense (fully connected) ---------------------------------------- */

/* out (B, OC) = inp (B, C) · weight (OC, C)ᵀ + bias (OC); bias may be NULL. */
void dense_forward(float *out, const float *inp, const float *weight, const float *bias, int B,
                   int C, int OC);
/* dinp (B, C) += dout · weight; dweight (OC, C) += doutᵀ · inp;
 * dbias (OC) += column sums of dout. dinp, dweight and dbias may be NULL
 * (a frozen weight: dweight NULL skips its sgemm). */
void dense_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                    const float *weight, int B, int C, int OC);

/* ---- elementwise activations (n elements) ---------------------------- */

typedef enum activation_kind {
    ACTIVATION_TANH,
    ACTIVATION_RELU,
    ACTIVATION_GELU, /* tanh approximation, as GPT-2 */
} activation_kind;

/* Parses "tanh" | "relu" | "gelu"; returns -1 for anything else. */
int activation_from_name(const char *name);
const char *activation_name(activation_kind kind);

/* The tanh the activations use (a rational approximation, |error| < 4e-7). */
float nn_tanhf(float x);

void activation_forward(activation_kind kind, float *out, const float *inp, int64_t n);
/* dinp += dout * f'(inp); out is the forward output (tanh uses it). */
void activation_backward(activation_kind kind, float *dinp, const float *dout, const float *inp,
                         const float *out, int64_t n);

/* ---- vectorised row reductions (the LM head's V = 50257-wide rows) ------ */

/* The largest of x[0..n), n >= 1. */
float nn_max(const float *x, int64_t n);
/* out[j] = exp(in[j] - shift) with a polynomial exp (Cephes' expf: relative
 * error < 1e-7, tested; inputs below -87 give e^-87), returns Σ out. out
 * may be in. Sums run in 16 fixed lanes: the same bits at any vector width. */
float nn_exp_sum(float *out, const float *in, int64_t n, float shift);
/* Σ a[j] · b[j] in 16 fixed lanes. */
float nn_dot(const float *a, const float *b, int64_t n);

/* ---- softmax family over rows of V logits ----------------------------- */

/* probs (B, V) = softmax(logits) per row, max-subtracted for stability. */
void softmax_forward(float *probs, const float *logits, int B, int V);
/* logp (B, V) = log_softmax(logits) per row. */
void log_softmax_forward(float *logp, const float *logits, int B, int V);
/* dlogits += dlogp - softmax · Σ_j dlogp_j, per row (the log-softmax
 * Jacobian-vector product). logp is the forward output. */
void log_softmax_backward(float *dlogits, const float *dlogp, const float *logp, int B, int V);

/* ---- categorical distribution given log-probabilities (B, V) --------- */

/* Samples one index per row from exp(logp) using one uniform draw each. */
void categorical_sample(int32_t *out, const float *logp, int B, int V, rng_state *rng);
/* Index of the largest log-probability per row (greedy action). */
void categorical_argmax(int32_t *out, const float *logp, int B, int V);
/* entropy (B) = -Σ_j p_j log p_j per row. */
void categorical_entropy(float *entropy, const float *logp, int B, int V);
/* dlogits += dentropy_b · dH/dz, with dH/dz_k = -p_k (log p_k + H). */
void categorical_entropy_backward(float *dlogits, const float *dentropy, const float *logp,
                                  const float *entropy, int B, int V);

/* ---- losses ---------------------------------------------------------- */

/* Mean squared error 0.5 · mean((pred - target)²) over n; returns the loss.
 * Backward: dpred += scale · (pred - target) / n. */
float mse_forward(const float *pred, const float *target, int64_t n);
void mse_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale);

/* ---- initialisation ---------------------------------------------------- */

/* Orthogonal init of a (rows, cols) matrix scaled by gain (Saxe et al. 2014,
 * as torch.nn.init.orthogonal_): QR of a Gaussian matrix with the signs of
 * R's diagonal folded into Q, so rows (if rows <= cols) or columns are
 * orthonormal times gain. Works in double precision internally; scratch must
 * hold rows*cols doubles. */
void init_orthogonal(float *w, int rows, int cols, float gain, rng_state *rng, double *scratch);

#endif
