#include "nn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ==== dense =============================================================== */

ENGINE_HOT void dense_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int C, int OC) {
    float beta = 0.0f;
    if (bias != NULL) {
        for (int b = 0; b < B; b++)
            memcpy(out + (int64_t)b * OC, bias, sizeof(float) * (size_t)OC);
        beta = 1.0f;
    }
    if (B == 1) /* one row: a matrix-vector product; sgemm would re-pack the whole weight */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, beta, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OC, C, 1.0f, inp, C, weight, C,
                    beta, out, OC);
}

ENGINE_HOT void dense_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int B, int C, int OC) {
    if (dinp != NULL)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, C, OC, 1.0f, dout, OC, weight, C,
                    1.0f, dinp, C);
    if (dweight != NULL) /* NULL: a frozen weight, input gradient only */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, B, 1.0f, dout, OC, inp, C, 1.0f,
                    dweight, C);
    if (dbias != NULL)
        for (int b = 0; b < B; b++) {
            const float *row = dout + (int64_t)b * OC;
            for (int o = 0; o < OC; o++)
                dbias[o] += row[o];
        }
}

/* ==== activations ========================================================== */

int activation_from_name(const char *name) {
    if (strcmp(name, "tanh") == 0)
        return ACTIVATION_TANH;
    if (strcmp(name, "relu") == 0)
        return ACTIVATION_RELU;
    if (strcmp(name, "gelu") == 0)
        return ACTIVATION_GELU;
    return -1;
}

const char *activation_name(activation_kind kind) {
    switch (kind) {
        case ACTIVATION_TANH:
            return "tanh";
        case ACTIVATION_RELU:
            return "relu";
        case ACTIVATION_GELU:
            return "gelu";
    }
    return "?";
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* tanh as a [13/6] rational function of x on [-7.9, 7.9] (the minimax fit
 * Eigen uses), clamped outside, where tanh is 1 to float precision. Max
 * absolute error 3.6e-7 (tested); unlike libm's tanhf it has no branches, so
 * the activation loops vectorise — tanhf was over half of PPO's run time. */
static inline float tanh_rational(float x) {
    const float clamp = 7.90531110763549805f;
    x = x < clamp ? x : clamp;
    x = x > -clamp ? x : -clamp;
    const float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return x * p / q;
}

float nn_tanhf(float x) {
    return tanh_rational(x);
}

ENGINE_HOT void activation_forward(activation_kind kind, float *out, const float *inp, int64_t n) {
    switch (kind) {
        case ACTIVATION_TANH:
            for (int64_t i = 0; i < n; i++)
                out[i] = tanh_rational(inp[i]);
            break;
        case ACTIVATION_RELU:
            for (int64_t i = 0; i < n; i++)
                out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
            break;
        case ACTIVATION_GELU:
            for (int64_t i = 0; i < n; i++) {
                float x = inp[i];
                out[i] =
                    0.5f * x * (1.0f + tanh_rational(GELU_SCALE * (x + 0.044715f * x * x * x)));
            }
            break;
    }
}

ENGINE_HOT void activation_backward(activation_kind kind, float *dinp, const float *dout,
                                    const float *inp, const float *out, int64_t n) {
    switch (kind) {
        case ACTIVATION_TANH:
            for (int64_t i = 0; i < n; i++)
                dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
            break;
        case ACTIVATION_RELU:
            for (int64_t i = 0; i < n; i++)
                dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
            break;
        case ACTIVATION_GELU:
            for (int64_t i = 0; i < n; i++) {
                float x = inp[i];
                float u = GELU_SCALE * (x + 0.044715f * x * x * x);
                float t = tanh_rational(u);
                float sech2 = 1.0f - t * t;
                float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
                dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * sech2 * du);
            }
            break;
    }
}

/* ==== vectorised row reductions ================================================ */

enum { NN_LANES = 16 };

ENGINE_HOT float nn_max(const float *x, int64_t n) {
    float lane[NN_LANES];
    for (int j = 0; j < NN_LANES; j++)
        lane[j] = x[0];
    int64_t i = 0;
    for (; i + NN_LANES <= n; i += NN_LANES)
        for (int j = 0; j < NN_LANES; j++)
            lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float m = x[0];
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    for (int j = 0; j < NN_LANES; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

/* e^x for x in [-87, 88] (clamped): x = n·ln2 + r, Cephes' degree-6
 * polynomial for e^r on |r| <= ln2/2, and 2^n built in the exponent bits. */
static inline float exp_poly(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    const float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f; /* ln2 split in two for exact reduction */
    r = r + n * 2.12194440e-4f;
    const float r2 = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r2 + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

ENGINE_HOT float nn_exp_sum(float *out, const float *in, int64_t n, float shift) {
    float lane[NN_LANES] = {0};
    int64_t i = 0;
    for (; i + NN_LANES <= n; i += NN_LANES)
        for (int j = 0; j < NN_LANES; j++) {
            const float e = exp_poly(in[i + j] - shift);
            out[i + j] = e;
            lane[j] += e;
        }
    float sum = 0.0f;
    for (; i < n; i++) {
        out[i] = exp_poly(in[i] - shift);
        sum += out[i];
    }
    for (int j = 0; j < NN_LANES; j++)
        sum += lane[j];
    return sum;
}

ENGINE_HOT float nn_dot(const float *a, const float *b, int64_t n) {
    float lane[NN_LANES] = {0};
    int64_t i = 0;
    for (; i + NN_LANES <= n; i += NN_LANES)
        for (int j = 0; j < NN_LANES; j++)
            lane[j] += a[i + j] * b[i + j];
    float sum = 0.0f;
    for (; i < n; i++)
        sum += a[i] * b[i];
    for (int j = 0; j < NN_LANES; j++)
        sum += lane[j];
    return sum;
}

/* ==== softmax family ========================================================== */

static float row_max(const float *x, int V) {
    float m = x[0];
    for (int j = 1; j < V; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

void softmax_forward(float *probs, const float *logits, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (int64_t)b * V;
        float *p = probs + (int64_t)b * V;
        float m = row_max(z, V);
        double sum = 0.0;
        for (int j = 0; j < V; j++) {
            p[j] = expf(z[j] - m);
            sum += p[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < V; j++)
            p[j] *= inv;
    }
}

void log_softmax_forward(float *logp, const float *logits, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (int64_t)b * V;
        float *out = logp + (int64_t)b * V;
        float m = row_max(z, V);
        double sum = 0.0;
        for (int j = 0; j < V; j++)
            sum += expf(z[j] - m);
        float lse = m + (float)log(sum);
        for (int j = 0; j < V; j++)
            out[j] = z[j] - lse;
    }
}

void log_softmax_backward(float *dlogits, const float *dlogp, const float *logp, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *g = dlogp + (int64_t)b * V;
        const float *lp = logp + (int64_t)b * V;
        float *dz = dlogits + (int64_t)b * V;
        float gsum = 0.0f;
        for (int j = 0; j < V; j++)
            gsum += g[j];
        for (int j = 0; j < V; j++)
            dz[j] += g[j] - expf(lp[j]) * gsum;
    }
}

/* ==== categorical ============================================================== */

void categorical_sample(int32_t *out, const float *logp, int B, int V, rng_state *rng) {
    for (int b = 0; b < B; b++) {
        const float *lp = logp + (int64_t)b * V;
        float u = rng_next_float(rng);
        float cdf = 0.0f;
        int32_t choice = V - 1; /* rounding can leave the cdf a hair below u */
        for (int j = 0; j < V; j++) {
            cdf += expf(lp[j]);
            if (u < cdf) {
                choice = j;
                break;
            }
        }
        out[b] = choice;
    }
}

void categorical_argmax(int32_t *out, const float *logp, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *lp = logp + (int64_t)b * V;
        int32_t best = 0;
        for (int j = 1; j < V; j++)
            if (lp[j] > lp[best])
                best = j;
        out[b] = best;
    }
}

void categorical_entropy(float *entropy, const float *logp, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *lp = logp + (int64_t)b * V;
        float h = 0.0f;
        for (int j = 0; j < V; j++)
            h -= expf(lp[j]) * lp[j];
        entropy[b] = h;
    }
}

void categorical_entropy_backward(float *dlogits, const float *dentropy, const float *logp,
                                  const float *entropy, int B, int V) {
    for (int b = 0; b < B; b++) {
        const float *lp = logp + (int64_t)b * V;
        float *dz = dlogits + (int64_t)b * V;
        for (int j = 0; j < V; j++)
            dz[j] += dentropy[b] * -expf(lp[j]) * (lp[j] + entropy[b]);
    }
}

/* ==== losses ==================================================================== */

float mse_forward(const float *pred, const float *target, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        sum += d * d;
    }
    return (float)(0.5 * sum / (double)n);
}

void mse_backward(float *dpred, const float *pred, const float *target, int64_t n, float scale) {
    float k = scale / (float)n;
    for (int64_t i = 0; i < n; i++)
        dpred[i] += k * (pred[i] - target[i]);
}

/* ==== initialisation ============================================================= */

void init_orthogonal(float *w, int rows, int cols, float gain, rng_state *rng, double *scratch) {
    /* Orthonormalise the columns of a tall (m, n) Gaussian matrix A with
     * modified Gram–Schmidt, run twice ("twice is enough", Giraud et al.
     * 2005) for orthogonality to rounding. MGS yields R with a positive
     * diagonal, which is exactly torch's Q · sign(diag(R)). A wide matrix is
     * the transpose of a tall one. A is stored column by column. */
    int transpose = rows < cols;
    int m = transpose ? cols : rows;
    int n = transpose ? rows : cols;
    double *a = scratch;
    for (int64_t i = 0; i < (int64_t)m * n; i++)
        a[i] = rng_next_normal(rng);
    for (int j = 0; j < n; j++) {
        double *aj = a + (int64_t)j * m;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < j; k++) {
                const double *ak = a + (int64_t)k * m;
                double dot = 0.0;
                for (int i = 0; i < m; i++)
                    dot += ak[i] * aj[i];
                for (int i = 0; i < m; i++)
                    aj[i] -= dot * ak[i];
            }
        double norm = 0.0;
        for (int i = 0; i < m; i++)
            norm += aj[i] * aj[i];
        norm = sqrt(norm);
        for (int i = 0; i < m; i++)
            aj[i] /= norm;
    }
    /* Tall case: w[r][c] = Q[r][c] = a[c*m + r]. Wide: w = Qᵀ, w[r][c] = a[r*m + c]. */
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            w[(int64_t)r * cols + c] =
                (float)(gain * (transpose ? a[(int64_t)r * m + c] : a[(int64_t)c * m + r]));
}
