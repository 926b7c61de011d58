/* gemm_ceiling — the physical ceiling our engine works under: cblas_sgemm
 * GFLOP/s on a large square product and on the shapes training actually
 * runs (X·Wᵀ forward, dY·W and dYᵀ·X backward), at 1 and 2 threads, with
 * the kernel our programs use (engine/blas_setup.h picks it; run with
 * RLHF_BLAS_AUTOCORE=0 to see what OpenBLAS picks alone). Medians of
 * repeated timings; nothing here is pass/fail.
 *
 *   build/gemm-ceiling [--quick]
 *
 * With --qwen3 BATCH PROMPT_LEN [LAYERS]: the fastest prefill any
 * implementation whose projections are this cblas_sgemm could reach at
 * Qwen3-0.6B's shape (hidden 1024, 16 query / 8 KV heads of 128,
 * intermediate 3072, vocab 151936, 28 layers): the summed time of every
 * projection of the layers alone (q, k, v, o, gate, up, down per layer), at
 * 2 threads. Attention, norms and
 * everything else cost extra, so this is an upper bound in tokens/s for us
 * and for a PyTorch model alike (bench/bench_llama.py prints it beside
 * both). Decode has none here: at one row per sequence both sides leave
 * sgemm (gemv-like kernels, memory-bound), which this does not time.
 * One JSON line.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_setup.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct shape {
    const char *what;
    int M, N, K;
    int trans_a, trans_b;
} shape;

/* Median GFLOP/s of reps timings, each long enough (>= 20 ms) to time. */
static double measure(const shape *s, int reps) {
    const int M = s->M, N = s->N, K = s->K;
    float *a = malloc(sizeof(float) * (size_t)M * K);
    float *b = malloc(sizeof(float) * (size_t)K * N);
    float *c = calloc((size_t)M * N, sizeof(float));
    for (long i = 0; i < (long)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)K * N; i++)
        b[i] = (float)(i % 5) * 0.1f;
    const int lda = s->trans_a ? M : K, ldb = s->trans_b ? K : N;
    const double flops = 2.0 * M * N * K;
    int inner = 1;
    for (;;) { /* calibrate */
        double t0 = now_s();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
                        s->trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, lda, b, ldb, 0.0f,
                        c, N);
        if (now_s() - t0 > 0.02 || inner > (1 << 24))
            break;
        inner *= 2;
    }
    double rates[32];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, s->trans_a ? CblasTrans : CblasNoTrans,
                        s->trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, lda, b, ldb, 0.0f,
                        c, N);
        rates[r] = flops * inner / (now_s() - t0) / 1e9;
    }
    qsort(rates, (size_t)reps, sizeof(double), cmp_double);
    free(a), free(b), free(c);
    return rates[reps / 2];
}

/* Seconds of one forward's layer projections over rows tokens (the LM head,
 * one row per sequence, is left out: at a row or a few neither side runs it
 * as a large sgemm, and leaving a cost out only raises the bound). */
static double qwen3_projection_s(int rows, int layers) {
    const int h = 1024, q = 16 * 128, kv = 8 * 128, inter = 3072;
    const shape per_layer[] = {
        {"q", rows, q, h, 0, 1},        {"k", rows, kv, h, 0, 1},
        {"v", rows, kv, h, 0, 1},       {"o", rows, h, q, 0, 1},
        {"gate", rows, inter, h, 0, 1}, {"up", rows, inter, h, 0, 1},
        {"down", rows, h, inter, 0, 1},
    };
    double s = 0;
    for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++) {
        const shape *p = &per_layer[i];
        s += layers * 2.0 * p->M * p->N * p->K / (measure(p, 5) * 1e9);
    }
    return s;
}

static int qwen3_bound(int batch, int prompt_len, int layers) {
    openblas_set_num_threads(2);
    const double prefill = qwen3_projection_s(batch * prompt_len, layers);
    printf("{\"core\": \"%s\", \"batch\": %d, \"prompt_len\": %d, \"layers\": %d, "
           "\"prefill_tok_s_bound\": %.2f}\n",
           blas_core_name(), batch, prompt_len, layers, batch * prompt_len / prefill);
    return 0;
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    if (argc >= 4 && strcmp(argv[1], "--qwen3") == 0)
        return qwen3_bound(atoi(argv[2]), atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 28);
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int reps = quick ? 3 : 7;
    const shape shapes[] = {
        {"square 1024", 1024, 1024, 1024, 0, 0},
        {"control fwd X.Wt (B=128, 64->64)", 128, 64, 64, 0, 1},
        {"control bwd dY.W (B=128, 64->64)", 128, 64, 64, 0, 0},
        {"control bwd dYt.X (B=128, 64->64)", 64, 64, 128, 1, 0},
        {"rollout fwd X.Wt (B=4, 64->64)", 4, 64, 64, 0, 1},
        {"lm fwd X.Wt (BT=1024, 768->2304)", 1024, 2304, 768, 0, 1},
        {"lm bwd dY.W (BT=1024, 2304->768)", 1024, 768, 2304, 0, 0},
        {"lm bwd dYt.X (2304x768, BT=1024)", 2304, 768, 1024, 1, 0},
    };
    printf("OpenBLAS core: %s\n", blas_core_name());
    printf("| shape | M | N | K | GFLOP/s 1 thread | GFLOP/s 2 threads |\n");
    printf("| --- | --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        openblas_set_num_threads(1);
        double one = measure(&shapes[i], reps);
        openblas_set_num_threads(2);
        double two = measure(&shapes[i], reps);
        printf("| %s | %d | %d | %d | %.1f | %.1f |\n", shapes[i].what, shapes[i].M, shapes[i].N,
               shapes[i].K, one, two);
        fflush(stdout);
    }
    return 0;
}
