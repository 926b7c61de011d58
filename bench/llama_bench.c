/* llama_bench — prompt prefill and KV-cache sampling of the Llama-family
 * engine at Qwen3-0.6B's shape (28 layers, hidden 1024, 16 query / 8 KV
 * heads, head_dim 128, q/k norm, intermediate 3072, vocab 151936, tied),
 * random weights. bench/llama_torch.py is the plain-PyTorch twin and
 * bench/bench_llama.py runs both side by side.
 *
 * Per rep (after one warm-up): llama_prefill of B prompts of P tokens (logits
 * of the last column only), then N decode steps, each sampling a token per
 * row (temperature 1, gpt2_sample_tokens) and feeding it back. One JSON line:
 * median seconds and tokens/s of each phase.
 *
 *   build/llama-bench [--batch 1] [--prompt-len 32] [--new-tokens 16]
 *                     [--layers 28] [--vocab 151936] [--threads 2] [--reps 3]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_setup.h"
#include "gpt2.h"
#include "llama.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    int B = 1, P = 32, N = 16, L = 28, V = 151936, threads = 2, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        const int v = atoi(argv[i + 1]);
        if (strcmp(a, "--batch") == 0)
            B = v;
        else if (strcmp(a, "--prompt-len") == 0)
            P = v;
        else if (strcmp(a, "--new-tokens") == 0)
            N = v;
        else if (strcmp(a, "--layers") == 0)
            L = v;
        else if (strcmp(a, "--vocab") == 0)
            V = v;
        else if (strcmp(a, "--threads") == 0)
            threads = v;
        else if (strcmp(a, "--reps") == 0)
            reps = v;
        else {
            fprintf(stderr, "llama-bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (B < 1 || P < 1 || N < 1 || L < 1 || V < 2 || reps < 1 || reps > 64) {
        fprintf(stderr, "llama-bench: sizes must be positive (reps 1..64)\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    llama_config c = {0};
    c.model_type = LLAMA_MODEL_QWEN3;
    c.vocab_size = V;
    c.hidden_size = 1024;
    c.intermediate_size = 3072;
    c.n_layer = L;
    c.n_head = 16;
    c.n_kv_head = 8;
    c.head_dim = 128;
    c.max_seq_len = c.max_position_embeddings = P + N;
    c.rms_norm_eps = 1e-6f;
    c.rope_theta = 1e6f;
    c.qk_norm = true;
    c.tie_embeddings = true;
    c.bos_id = -1;
    llama_model m;
    char err[256];
    if (llama_init(&m, &c, err, sizeof err) != 0) {
        fprintf(stderr, "llama-bench: %s\n", err);
        return 1;
    }
    rng_state rng;
    rng_seed(&rng, 1, 0);
    llama_init_weights(&m, &rng);
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)B * (size_t)P);
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    for (int i = 0; i < B * P; i++)
        prompts[i] = (int32_t)((1103515245u * (unsigned)i + 12345u) % (unsigned)V);
    const gpt2_sample_config sc = {1.0f, 0, 1.0f, N, -1};
    double prefill_s[65], decode_s[65];
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 is the warm-up */
        llama_kv_cache cache;
        if (llama_kv_cache_init(&cache, &c, B, P + N, err, sizeof err) != 0) {
            fprintf(stderr, "llama-bench: %s\n", err);
            return 1;
        }
        const double t0 = now_s();
        if (llama_prefill(&m, &cache, prompts, NULL, P, err, sizeof err) != 0) {
            fprintf(stderr, "llama-bench: %s\n", err);
            return 1;
        }
        const double t1 = now_s();
        for (int s = 0; s < N; s++) {
            gpt2_sample_tokens(next, cache.logits, B, V, &sc, &rng);
            if (s < N - 1)
                llama_decode_step(&m, &cache, next, NULL, P + s, true);
        }
        const double t2 = now_s();
        llama_kv_cache_free(&cache);
        if (rep > 0) {
            prefill_s[rep - 1] = t1 - t0;
            decode_s[rep - 1] = t2 - t1;
        }
    }
    const double pf = median(prefill_s, reps), dc = median(decode_s, reps);
    printf("{\"impl\": \"rlhfd\", \"batch\": %d, \"prompt_len\": %d, \"new_tokens\": %d, "
           "\"layers\": %d, \"vocab\": %d, \"threads\": %d, \"reps\": %d, \"prefill_s\": %.4f, "
           "\"prefill_tok_s\": %.1f, \"decode_s\": %.4f, \"decode_tok_s\": %.2f, \"blas_core\": "
           "\"%s\"}\n",
           B, P, N, L, V, threads, reps, pf, (double)B * P / pf, dc, (double)B * N / dc,
           blas_core_name());
    free(prompts);
    free(next);
    llama_free(&m);
    return 0;
}
