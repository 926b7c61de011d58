/* gpt2_bench — throughput and memory of our GPT-2 engine at one size.
 *
 * Measures, in one process and in this order:
 *   1. training tokens/s: forward + masked LM loss + backward + AdamW step
 *      (weight decay on matrices only), warm-up steps then the median of
 *      timed steps; peak RSS right after, against the memory the config
 *      implies (params + grads + 2 Adam moments + activations);
 *   2. the cblas_sgemm ceiling at the same thread count (a large square
 *      product and the LM-head shapes of this batch) and the training MFU
 *      against it;
 *   3. sampling tokens/s with the KV cache (gpt2_generate, temperature 1,
 *      no top-k/top-p, no EOS) at each requested batch size.
 * Output: one JSON object a line on stdout. bench/gpt2_torch.py measures
 * the same things on a PyTorch twin; bench/bench_gpt2.py runs both.
 *
 * Model FLOPs per training step (the formula MFU uses):
 *     6 · N · tokens  +  6 · L · T · C · tokens
 * N = gpt2_num_params (all parameters, the tied wte/LM head included, as
 * nanoGPT's estimate_mfu; position embeddings, LayerNorms and biases make
 * the count slightly generous), tokens = B · T per step. The second term is
 * causal attention: QKᵀ and P·V cost 2 · T · C multiply-adds per token and
 * layer over the full T × T square, half of it below the diagonal, times 3
 * for forward + backward: 6 · L · T · C per token (PaLM's 12 · L · T · C
 * without the causal halving; our engine computes the full square, so the
 * hardware does more than this count credits).
 *
 * Data: the same deterministic token stream as bench/gpt2_torch.py,
 * token(i) = (i · 2654435761) mod V; row b of the training batch is
 * tokens b·(T+1) .. b·(T+1)+T, inputs the first T, targets the last T; the
 * loss mask leaves out the first T/4 positions of every row (an SFT
 * prompt). Prompts for sampling are the first P tokens of each row.
 *
 *   build/gpt2-bench --size S|M|L [--batch 8] [--vocab 50257] [--threads N]
 *                    [--train-warmup 2] [--train-steps 5] [--prompt-len 16]
 *                    [--new-tokens 128] [--sample-batches 1,16]
 *                    [--sample-reps 1] [--gemm-square 2048] [--no-gemm]
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "blas_setup.h"
#include "gpt2.h"
#include "optim.h"
#include "rng.h"

/* ==== options ================================================================= */

typedef struct bench_size {
    const char *name;
    int n_layer, d_model, n_head, ctx;
} bench_size;

static const bench_size BENCH_SIZES[] = {
    {"S", 4, 128, 4, 128},
    {"M", 6, 256, 8, 256},
    {"L", 8, 512, 8, 256},
};

enum { MAX_SAMPLE_BATCHES = 8 };

typedef struct bench_options {
    const bench_size *size;
    int batch, vocab, threads;
    int train_warmup, train_steps;
    int prompt_len, new_tokens, sample_reps;
    int sample_batches[MAX_SAMPLE_BATCHES], n_sample_batches;
    int gemm_square; /* 0: skip the sgemm ceiling (and MFU) */
} bench_options;

static void usage(FILE *f) {
    fprintf(f, "usage: gpt2-bench --size S|M|L [--batch 8] [--vocab 50257] [--threads N]\n"
               "                  [--train-warmup 2] [--train-steps 5] [--prompt-len 16]\n"
               "                  [--new-tokens 128] [--sample-batches 1,16] [--sample-reps 1]\n"
               "                  [--gemm-square 2048] [--no-gemm]\n"
               "--threads: OpenBLAS threads (default: OpenBLAS's own, i.e. "
               "OPENBLAS_NUM_THREADS). --train-steps 0 or --sample-batches '' skip a phase.\n");
}

static int parse_int(const char *text, int lo, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < lo || v > 1 << 30)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_batches(const char *text, bench_options *o) {
    o->n_sample_batches = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (o->n_sample_batches == MAX_SAMPLE_BATCHES ||
            parse_int(tok, 1, &o->sample_batches[o->n_sample_batches]) != 0)
            return -1;
        o->n_sample_batches++;
    }
    return 0;
}

static int parse_options(int argc, char **argv, bench_options *o) {
    *o = (bench_options){NULL, 8, 50257, 0, 2, 5, 16, 128, 1, {1, 16}, 2, 2048};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-gemm") == 0) {
            o->gemm_square = 0;
            continue;
        } else if (v == NULL) {
            rc = -1;
        } else if (strcmp(a, "--size") == 0) {
            o->size = NULL;
            for (size_t s = 0; s < sizeof BENCH_SIZES / sizeof BENCH_SIZES[0]; s++)
                if (strcmp(v, BENCH_SIZES[s].name) == 0)
                    o->size = &BENCH_SIZES[s];
            rc = o->size ? 0 : -1;
        } else if (strcmp(a, "--batch") == 0) {
            rc = parse_int(v, 1, &o->batch);
        } else if (strcmp(a, "--vocab") == 0) {
            rc = parse_int(v, 2, &o->vocab);
        } else if (strcmp(a, "--threads") == 0) {
            rc = parse_int(v, 1, &o->threads);
        } else if (strcmp(a, "--train-warmup") == 0) {
            rc = parse_int(v, 0, &o->train_warmup);
        } else if (strcmp(a, "--train-steps") == 0) {
            rc = parse_int(v, 0, &o->train_steps);
        } else if (strcmp(a, "--prompt-len") == 0) {
            rc = parse_int(v, 1, &o->prompt_len);
        } else if (strcmp(a, "--new-tokens") == 0) {
            rc = parse_int(v, 1, &o->new_tokens);
        } else if (strcmp(a, "--sample-batches") == 0) {
            rc = parse_batches(v, o);
        } else if (strcmp(a, "--sample-reps") == 0) {
            rc = parse_int(v, 1, &o->sample_reps);
        } else if (strcmp(a, "--gemm-square") == 0) {
            rc = parse_int(v, 1, &o->gemm_square);
        } else {
            rc = -1;
        }
        if (rc != 0) {
            fprintf(stderr, "gpt2-bench: bad or incomplete option '%s'\n", a);
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->size == NULL) {
        fprintf(stderr, "gpt2-bench: --size S|M|L is required\n");
        usage(stderr);
        return -1;
    }
    if (o->prompt_len >= o->size->ctx) {
        fprintf(stderr, "gpt2-bench: --prompt-len must be below the context (%d)\n", o->size->ctx);
        return -1;
    }
    if (o->new_tokens > o->size->ctx - o->prompt_len) /* "128 new tokens or up to ctx" */
        o->new_tokens = o->size->ctx - o->prompt_len;
    return 0;
}

/* ==== helpers ================================================================== */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int64_t peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

static void *check_alloc(size_t bytes, const char *what) {
    void *p = calloc(1, bytes);
    if (p == NULL) {
        fprintf(stderr, "gpt2-bench: out of memory for %s (%zu bytes)\n", what, bytes);
        exit(1);
    }
    return p;
}

/* The token stream both benchmark programs use: (i · 2654435761) mod V. */
static int32_t stream_token(int64_t i, int V) {
    return (int32_t)(((uint64_t)i * 2654435761u) % (uint64_t)V);
}

/* Floats of the activations of a (B, T) batch, from the config alone. It
 * restates gpt2_reserve's table (engine/gpt2.c) by the meaning of each
 * buffer, so main() can check the two agree. */
static int64_t implied_activation_floats(const gpt2_config *c, int64_t B, int64_t T) {
    const int64_t L = c->n_layer, C = c->d_model, NH = c->n_head, V = c->vocab_size, BT = B * T;
    const int64_t per_layer = BT * C * 7       /* ln1 atty attproj residual2 ln2 fcproj residual3 */
                              + BT * 3 * C     /* qkv */
                              + BT * 4 * C * 2 /* fch, fch_gelu */
                              + BT * 4         /* ln1/ln2 mean and rstd */
                              + B * NH * T * T;                     /* attention probabilities */
    const int64_t once = BT * C * 2                                 /* encoded, lnf */
                         + BT * 2                                   /* lnf mean, rstd */
                         + BT * V                                   /* logits, then dlogits */
                         + BT * 2                                   /* values, dvalues */
                         + BT * C * 3 + BT * 3 * C + BT * 4 * C * 2 /* backward scratch */
                         + T * T;                                   /* datt */
    return L * per_layer + once;
}

/* ==== sgemm ceiling ================================================================ */

typedef struct gemm_shape {
    const char *what;
    int M, N, K;
    int trans_a, trans_b;
} gemm_shape;

/* Best GFLOP/s of 5 timings, each of enough repetitions to last >= 0.1 s: a
 * ceiling, so the best, not the median (on a shared machine a neighbour's
 * burst only ever lowers a timing). */
static double gemm_gflops(const gemm_shape *s) {
    const int64_t M = s->M, N = s->N, K = s->K;
    float *a = check_alloc(sizeof(float) * (size_t)(M * K), "sgemm A");
    float *b = check_alloc(sizeof(float) * (size_t)(K * N), "sgemm B");
    float *c = check_alloc(sizeof(float) * (size_t)(M * N), "sgemm C");
    for (int64_t i = 0; i < M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < K * N; i++)
        b[i] = (float)(i % 5) * 0.1f;
    const int lda = s->trans_a ? s->M : s->K, ldb = s->trans_b ? s->K : s->N;
    const CBLAS_TRANSPOSE ta = s->trans_a ? CblasTrans : CblasNoTrans;
    const CBLAS_TRANSPOSE tb = s->trans_b ? CblasTrans : CblasNoTrans;
    int inner = 1;
    for (;;) { /* calibrate (this is also the warm-up) */
        const double t0 = now_s();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, a, lda, b, ldb, 0.0f, c,
                        s->N);
        if (now_s() - t0 > 0.1 || inner >= 1 << 20)
            break;
        inner *= 2;
    }
    enum { REPS = 5 };
    double rates[REPS];
    for (int r = 0; r < REPS; r++) {
        const double t0 = now_s();
        for (int i = 0; i < inner; i++)
            cblas_sgemm(CblasRowMajor, ta, tb, s->M, s->N, s->K, 1.0f, a, lda, b, ldb, 0.0f, c,
                        s->N);
        rates[r] = 2.0 * (double)M * (double)N * (double)K * inner / (now_s() - t0) / 1e9;
    }
    free(a), free(b), free(c);
    double best = 0.0;
    for (int r = 0; r < REPS; r++)
        best = rates[r] > best ? rates[r] : best;
    return best;
}

/* Prints one line per shape; returns the highest rate (the peak MFU uses). */
static double measure_gemm_peak(const bench_options *o, int BT) {
    const int V = o->vocab, C = o->size->d_model;
    const gemm_shape shapes[] = {
        {"square", o->gemm_square, o->gemm_square, o->gemm_square, 0, 0},
        {"lm head fwd X.Wt", BT, V, C, 0, 1},
        {"lm head bwd dY.W", BT, C, V, 0, 0},
        {"lm head bwd dYt.X", V, C, BT, 1, 0},
        {"mlp fc fwd X.Wt", BT, 4 * C, C, 0, 1},
    };
    double peak = 0.0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const double g = gemm_gflops(&shapes[i]);
        printf("{\"event\":\"sgemm\",\"shape\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,"
               "\"threads\":%d,\"gflops\":%.2f}\n",
               shapes[i].what, shapes[i].M, shapes[i].N, shapes[i].K, openblas_get_num_threads(),
               g);
        peak = g > peak ? g : peak;
    }
    fflush(stdout);
    return peak;
}

/* ==== training ===================================================================== */

/* The phases of one training step, timed separately (where time goes). */
enum { PHASE_FORWARD, PHASE_LOSS, PHASE_ZERO_GRAD, PHASE_BACKWARD, PHASE_ADAMW, NUM_PHASES };
static const char *const PHASE_NAMES[NUM_PHASES] = {"forward", "lm_loss", "zero_grad", "backward",
                                                    "adamw"};

typedef struct train_result {
    double step_s;              /* median */
    double min_s, max_s;        /* over the timed steps */
    double phase_s[NUM_PHASES]; /* median of each phase */
    double first_loss, last_loss;
    int64_t peak_rss_bytes;
} train_result;

static train_result measure_training(gpt2_model *m, const bench_options *o) {
    const int B = o->batch, T = o->size->ctx, V = o->vocab, BT = B * T;
    const int64_t n = m->num_params;
    int32_t *tokens = check_alloc(sizeof(int32_t) * (size_t)BT, "tokens");
    int32_t *targets = check_alloc(sizeof(int32_t) * (size_t)BT, "targets");
    uint8_t *loss_mask = check_alloc((size_t)BT, "loss mask");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t i = (int64_t)b * (T + 1) + t;
            tokens[b * T + t] = stream_token(i, V);
            targets[b * T + t] = stream_token(i + 1, V);
            loss_mask[b * T + t] = t >= T / 4;
        }
    float *adam_m = check_alloc(sizeof(float) * (size_t)n, "Adam m");
    float *adam_v = check_alloc(sizeof(float) * (size_t)n, "Adam v");
    uint8_t *decay = check_alloc((size_t)n, "decay mask");
    gpt2_decay_mask(&m->cfg, decay);
    /* nanoGPT's AdamW settings; the values do not change the work done */
    const adam_config adamw = {6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f};
    const gpt2_batch batch = {tokens, NULL, NULL, B, T};

    const int total = o->train_warmup + o->train_steps;
    const int steps = o->train_steps;
    double *times = check_alloc(sizeof(double) * (size_t)steps * (NUM_PHASES + 1), "timings");
    double *phase_times = times + steps; /* (NUM_PHASES, steps) */
    train_result r = {0};
    for (int step = 0; step < total; step++) {
        double t[NUM_PHASES + 1];
        t[0] = now_s();
        gpt2_forward(m, &batch, true);
        t[1] = now_s();
        const float loss = gpt2_lm_loss(m, targets, loss_mask, 1.0f);
        t[2] = now_s();
        gpt2_zero_grad(m);
        t[3] = now_s();
        gpt2_backward(m, true, false);
        t[4] = now_s();
        adam_step(m->param_memory, m->grad_memory, adam_m, adam_v, decay, n, &adamw, step + 1);
        t[5] = now_s();
        if (step == 0)
            r.first_loss = loss;
        r.last_loss = loss;
        const int i = step - o->train_warmup;
        if (i < 0)
            continue;
        times[i] = t[NUM_PHASES] - t[0];
        for (int ph = 0; ph < NUM_PHASES; ph++)
            phase_times[ph * steps + i] = t[ph + 1] - t[ph];
    }
    r.peak_rss_bytes = peak_rss_bytes();
    for (int ph = 0; ph < NUM_PHASES; ph++)
        r.phase_s[ph] = median(phase_times + ph * steps, steps);
    r.step_s = median(times, steps); /* sorts times */
    r.min_s = times[0];
    r.max_s = times[steps - 1];
    free(times), free(tokens), free(targets), free(loss_mask);
    free(adam_m), free(adam_v), free(decay);
    return r;
}

/* ==== sampling ====================================================================== */

/* Median seconds of o->sample_reps gpt2_generate calls of B rows, after a
 * short warm-up call. Returns -1 on error. */
static double measure_sampling(const gpt2_model *m, const bench_options *o, int B) {
    const int P = o->prompt_len, N = o->new_tokens, V = o->vocab;
    int32_t *prompts = check_alloc(sizeof(int32_t) * (size_t)B * P, "prompts");
    int32_t *out = check_alloc(sizeof(int32_t) * (size_t)B * N, "samples");
    int32_t *out_len = check_alloc(sizeof(int32_t) * (size_t)B, "sample lengths");
    for (int b = 0; b < B; b++)
        for (int p = 0; p < P; p++)
            prompts[b * P + p] = stream_token((int64_t)b * (o->size->ctx + 1) + p, V);
    rng_state rng;
    rng_seed(&rng, 1, 7);
    char err[256];
    gpt2_sample_config sc = {1.0f, 0, 1.0f, N < 8 ? N : 8, -1}; /* temperature 1, no EOS */
    double times[64], result = -1.0;
    const int reps = o->sample_reps < 64 ? o->sample_reps : 64;
    if (gpt2_generate(m, prompts, NULL, B, P, &sc, &rng, out, out_len, err, sizeof err) != 0)
        goto fail;
    sc.max_new_tokens = N;
    for (int r = 0; r < reps; r++) {
        const double t0 = now_s();
        if (gpt2_generate(m, prompts, NULL, B, P, &sc, &rng, out, out_len, err, sizeof err) != 0)
            goto fail;
        times[r] = now_s() - t0;
        for (int b = 0; b < B; b++)
            if (out_len[b] != N) {
                snprintf(err, sizeof err, "row %d produced %d tokens, not %d", b, out_len[b], N);
                goto fail;
            }
    }
    result = median(times, reps);
    goto done;
fail:
    fprintf(stderr, "gpt2-bench: sampling at batch %d: %s\n", B, err);
done:
    free(prompts), free(out), free(out_len);
    return result;
}

/* ==== main ========================================================================== */

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    bench_options o;
    if (parse_options(argc, argv, &o) != 0)
        return 2;
    if (o.threads > 0)
        openblas_set_num_threads(o.threads);
    const bench_size *sz = o.size;
    const gpt2_config cfg = {o.vocab, sz->ctx, sz->n_layer, sz->n_head, sz->d_model, false};
    const int B = o.batch, T = sz->ctx;
    const int64_t rss_before_model = peak_rss_bytes();

    char err[256];
    gpt2_model m;
    if (gpt2_init(&m, &cfg, err, sizeof err) != 0 ||
        (o.train_steps > 0 && gpt2_reserve(&m, B, T, err, sizeof err) != 0)) {
        fprintf(stderr, "gpt2-bench: %s\n", err);
        return 1;
    }
    rng_state rng;
    rng_seed(&rng, 1, 0);
    gpt2_init_weights(&m, &rng);
    const int64_t N = m.num_params;
    printf("{\"event\":\"config\",\"side\":\"ours\",\"size\":\"%s\",\"vocab\":%d,\"n_layer\":%d,"
           "\"d_model\":%d,\"n_head\":%d,\"ctx\":%d,\"batch\":%d,\"seq_len\":%d,"
           "\"params\":%lld,\"prompt_len\":%d,\"new_tokens\":%d,\"train_warmup\":%d,"
           "\"train_steps\":%d,\"sample_reps\":%d,\"openblas_threads\":%d,"
           "\"openblas_core\":\"%s\",\"dtype\":\"fp32\"}\n",
           sz->name, o.vocab, sz->n_layer, sz->d_model, sz->n_head, sz->ctx, B, T, (long long)N,
           o.prompt_len, o.new_tokens, o.train_warmup, o.train_steps, o.sample_reps,
           openblas_get_num_threads(), blas_core_name());
    fflush(stdout);

    train_result tr = {0};
    if (o.train_steps > 0) {
        tr = measure_training(&m, &o);
        const int64_t act_floats = implied_activation_floats(&cfg, B, T);
        const int64_t allocated = (m.acts.datt + (int64_t)T * T) - m.acts.memory;
        const int64_t implied = 4 * (4 * N) + 4 * act_floats; /* params, grads, m, v */
        printf("{\"event\":\"memory\",\"peak_rss_bytes\":%lld,\"implied_bytes\":%lld,"
               "\"ratio\":%.3f,\"params_bytes\":%lld,\"grads_bytes\":%lld,"
               "\"adam_bytes\":%lld,\"activations_bytes\":%lld,"
               "\"activations_allocated_bytes\":%lld,\"decay_mask_bytes\":%lld,"
               "\"rss_before_model_bytes\":%lld}\n",
               (long long)tr.peak_rss_bytes, (long long)implied,
               (double)tr.peak_rss_bytes / (double)implied, (long long)(4 * N), (long long)(4 * N),
               (long long)(8 * N), (long long)(4 * act_floats), (long long)(4 * allocated),
               (long long)N, (long long)rss_before_model);
        if (allocated != act_floats)
            fprintf(stderr,
                    "gpt2-bench: warning: gpt2_reserve allocated %lld activation floats, the "
                    "config implies %lld (engine/gpt2.c changed? update this benchmark)\n",
                    (long long)allocated, (long long)act_floats);
        fflush(stdout);
    }

    const double peak_gflops = o.gemm_square > 0 ? measure_gemm_peak(&o, B * T) : 0.0;

    if (o.train_steps > 0) {
        const double tokens = (double)B * T;
        const double flops =
            6.0 * (double)N * tokens + 6.0 * sz->n_layer * (double)T * sz->d_model * tokens;
        const double achieved = flops / tr.step_s / 1e9;
        printf("{\"event\":\"train\",\"tokens_per_step\":%.0f,\"step_s_median\":%.5f,"
               "\"step_s_min\":%.5f,\"step_s_max\":%.5f,\"tokens_per_s\":%.1f,"
               "\"model_flops_per_step\":%.6g,\"model_gflops_per_s\":%.2f,"
               "\"peak_gflops\":%.2f,\"mfu\":%.4f,\"first_loss\":%.5f,\"last_loss\":%.5f}\n",
               tokens, tr.step_s, tr.min_s, tr.max_s, tokens / tr.step_s, flops, achieved,
               peak_gflops, peak_gflops > 0 ? achieved / peak_gflops : 0.0, tr.first_loss,
               tr.last_loss);
        printf("{\"event\":\"train_phases\"");
        for (int ph = 0; ph < NUM_PHASES; ph++)
            printf(",\"%s_s\":%.5f", PHASE_NAMES[ph], tr.phase_s[ph]);
        printf("}\n");
        fflush(stdout);
    }

    int rc = 0;
    for (int i = 0; i < o.n_sample_batches; i++) {
        const int SB = o.sample_batches[i];
        const double s = measure_sampling(&m, &o, SB);
        if (s < 0) {
            rc = 1;
            continue;
        }
        printf("{\"event\":\"sample\",\"batch\":%d,\"prompt_len\":%d,\"new_tokens\":%d,"
               "\"seconds_median\":%.5f,\"tokens_per_s\":%.1f}\n",
               SB, o.prompt_len, o.new_tokens, s, (double)SB * o.new_tokens / s);
        fflush(stdout);
    }
    gpt2_free(&m);
    return rc;
}
