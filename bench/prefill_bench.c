/* prefill_bench — gpt2_prefill against the step-by-step prompt feed it
 * replaced in gpt2_generate, in one process, on the PPO rollout's shape.
 *
 * Per rep, interleaved: (a) the prompt fed as P calls of gpt2_decode_step
 * (the old gpt2_generate; want_logits only at the last column), (b)
 * gpt2_prefill, (c) N decode steps with logits after it (the decode part of
 * generation, identical before and after; sampling left out). Prints the
 * medians, prefill old/new, and the generation estimate (a + c) / (b + c).
 * Random weights (uniform ±0.02), left-padded prompts (row b padded by
 * b mod 8 columns), prompts from a fixed LCG; one JSON object on stdout.
 *
 *   build/prefill-bench [--size S|M|L] [--batch 16] [--prompt-len 32]
 *                       [--new-tokens 32] [--vocab 50257] [--threads 2] [--reps 5]
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpt2.h"

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
    const char *size = "M";
    int B = 16, P = 32, N = 32, V = 50257, threads = 2, reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--size") == 0)
            size = v;
        else if (strcmp(a, "--batch") == 0)
            B = atoi(v);
        else if (strcmp(a, "--prompt-len") == 0)
            P = atoi(v);
        else if (strcmp(a, "--new-tokens") == 0)
            N = atoi(v);
        else if (strcmp(a, "--vocab") == 0)
            V = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(a, "--reps") == 0)
            reps = atoi(v);
        else {
            fprintf(stderr, "prefill-bench: unknown option %s\n", a);
            return 2;
        }
    }
    gpt2_config cfg = {V, 256, 6, 8, 256, false}; /* M as bench/gpt2_bench.c */
    if (strcmp(size, "S") == 0)
        cfg.max_seq_len = 128, cfg.n_layer = 4, cfg.n_head = 4, cfg.d_model = 128;
    else if (strcmp(size, "L") == 0)
        cfg.max_seq_len = 256, cfg.n_layer = 8, cfg.n_head = 8, cfg.d_model = 512;
    else if (strcmp(size, "M") != 0) {
        fprintf(stderr, "prefill-bench: --size S, M or L\n");
        return 2;
    }
    if (B < 1 || P < 1 || N < 1 || P + N > cfg.max_seq_len || reps < 1 || reps > 99 || V < 2) {
        fprintf(stderr, "prefill-bench: bad sizes (P + N must fit %d)\n", cfg.max_seq_len);
        return 2;
    }
    openblas_set_num_threads(threads);
    char err[256];
    gpt2_model m;
    if (gpt2_init(&m, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "prefill-bench: %s\n", err);
        return 1;
    }
    uint64_t s = 12345;
    for (int64_t i = 0; i < m.num_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m.param_memory[i] = ((float)(s >> 40) / (float)(1u << 24) - 0.5f) * 0.04f;
    }
    for (int i = 0; i < cfg.d_model; i++)
        m.params.ln1w[i] = m.params.ln2w[i] = m.params.lnfw[i] = 1.0f;
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)(B * P + 2 * B)), *col = prompts + B * P;
    int32_t *next = col + B;
    uint8_t *mask = malloc((size_t)(B * P + B)), *real = mask + B * P;
    if (prompts == NULL || mask == NULL)
        return 1;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < P; t++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            prompts[b * P + t] = (int32_t)((s >> 33) % (uint64_t)V);
            mask[b * P + t] = t >= b % 8;
        }
        next[b] = (int32_t)(b * 7 % V);
        real[b] = 1;
    }
    double t_old[100], t_new[100], t_dec[100];
    gpt2_kv_cache c;
    if (gpt2_kv_cache_init(&c, &cfg, B, P + N, err, sizeof err) != 0) {
        fprintf(stderr, "prefill-bench: %s\n", err);
        return 1;
    }
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        gpt2_kv_cache_free(&c);
        gpt2_kv_cache_init(&c, &cfg, B, P + N, err, sizeof err);
        double t0 = now_s();
        for (int t = 0; t < P; t++) {
            for (int b = 0; b < B; b++)
                col[b] = prompts[b * P + t], real[b] = mask[b * P + t];
            gpt2_decode_step(&m, &c, col, real, t, t == P - 1);
        }
        const double a = now_s() - t0;
        gpt2_kv_cache_free(&c);
        gpt2_kv_cache_init(&c, &cfg, B, P + N, err, sizeof err);
        t0 = now_s();
        if (gpt2_prefill(&m, &c, prompts, mask, P, err, sizeof err) != 0) {
            fprintf(stderr, "prefill-bench: %s\n", err);
            return 1;
        }
        const double bt = now_s() - t0;
        for (int b = 0; b < B; b++)
            real[b] = 1;
        t0 = now_s();
        for (int k = 0; k < N; k++)
            gpt2_decode_step(&m, &c, next, real, P + k, true);
        const double d = now_s() - t0;
        if (r >= 0)
            t_old[r] = a, t_new[r] = bt, t_dec[r] = d;
    }
    const double mo = median(t_old, reps), mn = median(t_new, reps), md = median(t_dec, reps);
    printf("{\"size\":\"%s\",\"batch\":%d,\"prompt_len\":%d,\"new_tokens\":%d,\"threads\":%d,"
           "\"reps\":%d,\"prefill_steps_s\":%.4f,\"prefill_batched_s\":%.4f,\"decode_s\":%.4f,"
           "\"prefill_old_over_new\":%.2f,\"generation_old_over_new\":%.2f}\n",
           size, B, P, N, threads, reps, mo, mn, md, mo / mn, (mo + md) / (mn + md));
    gpt2_kv_cache_free(&c);
    free(prompts);
    free(mask);
    gpt2_free(&m);
    return 0;
}
