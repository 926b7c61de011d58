/* blas_trace — where a program's BLAS time goes, by call shape.
 *
 * An LD_PRELOAD shim over cblas_sgemm and cblas_sgemv (our engine) and
 * sgemm_ and sgemv_ (PyTorch's entry points): it times every call
 * and, at exit, prints to stderr one line per distinct shape (transposes,
 * M, N, K) with the call count, total seconds and GFLOP/s, slowest first,
 * then the total. It is how bench/README.md's profile of the GPT-2 engine
 * attributes BLAS time to layers (the shapes name them: attention is
 * T x T x head_size, the LM head involves the vocabulary, ...), which
 * perf cannot do here because OpenBLAS's frames carry no unwind info.
 *
 *   cc -O2 -shared -fPIC -std=c11 -D_GNU_SOURCE bench/blas_trace.c -ldl \
 *      -o build/blas-trace.so
 *   LD_PRELOAD=build/blas-trace.so build/gpt2-bench --size M ...
 */
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct trace_entry {
    char kind; /* 'g' cblas_sgemm, 'v' cblas_sgemv, 'G' sgemm_, 'V' sgemv_ */
    int trans_a, trans_b, M, N, K;
    long calls;
    double seconds, flops;
} trace_entry;

enum { MAX_ENTRIES = 4096 };
static trace_entry entries[MAX_ENTRIES];
static int n_entries;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The real function: next in the global scope, or in OpenBLAS itself when
 * the caller's library was dlopen'ed locally (PyTorch's libtorch is). */
static void *real_symbol(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (f == NULL) {
        void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        f = lib ? dlsym(lib, name) : NULL;
    }
    if (f == NULL) {
        fprintf(stderr, "blas_trace: cannot find %s\n", name);
        abort();
    }
    return f;
}

static void record(char kind, int ta, int tb, int M, int N, int K, double seconds, double flops) {
    for (int i = 0; i < n_entries; i++) {
        trace_entry *e = &entries[i];
        if (e->kind == kind && e->trans_a == ta && e->trans_b == tb && e->M == M && e->N == N &&
            e->K == K) {
            e->calls++, e->seconds += seconds, e->flops += flops;
            return;
        }
    }
    if (n_entries < MAX_ENTRIES)
        entries[n_entries++] = (trace_entry){kind, ta, tb, M, N, K, 1, seconds, flops};
}

typedef void (*sgemm_fn)(const CBLAS_ORDER, const CBLAS_TRANSPOSE, const CBLAS_TRANSPOSE,
                         const blasint, const blasint, const blasint, const float, const float *,
                         const blasint, const float *, const blasint, const float, float *,
                         const blasint);
typedef void (*sgemv_fn)(const CBLAS_ORDER, const CBLAS_TRANSPOSE, const blasint, const blasint,
                         const float, const float *, const blasint, const float *, const blasint,
                         const float, float *, const blasint);

void cblas_sgemm(const CBLAS_ORDER order, const CBLAS_TRANSPOSE ta, const CBLAS_TRANSPOSE tb,
                 const blasint M, const blasint N, const blasint K, const float alpha,
                 const float *A, const blasint lda, const float *B, const blasint ldb,
                 const float beta, float *C, const blasint ldc) {
    static sgemm_fn real;
    if (real == NULL)
        real = (sgemm_fn)real_symbol("cblas_sgemm");
    const double t0 = now_s();
    real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    record('g', ta == CblasTrans, tb == CblasTrans, M, N, K, now_s() - t0, 2.0 * M * N * K);
}

void cblas_sgemv(const CBLAS_ORDER order, const CBLAS_TRANSPOSE ta, const blasint M,
                 const blasint N, const float alpha, const float *A, const blasint lda,
                 const float *X, const blasint incx, const float beta, float *Y,
                 const blasint incy) {
    static sgemv_fn real;
    if (real == NULL)
        real = (sgemv_fn)real_symbol("cblas_sgemv");
    const double t0 = now_s();
    real(order, ta, M, N, alpha, A, lda, X, incx, beta, Y, incy);
    record('v', ta == CblasTrans, 0, M, N, 1, now_s() - t0, 2.0 * M * N);
}

/* The Fortran entry points (column-major), which PyTorch calls, so the
 * reference can be traced too; recorded as (M, N, K) of that call. */
typedef void (*f_sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                           const float *, const float *, const int *, const float *, const int *,
                           const float *, float *, const int *);
typedef void (*f_sgemv_fn)(const char *, const int *, const int *, const float *, const float *,
                           const int *, const float *, const int *, const float *, float *,
                           const int *);

void sgemm_(const char *ta, const char *tb, const int *M, const int *N, const int *K,
            const float *alpha, const float *A, const int *lda, const float *B, const int *ldb,
            const float *beta, float *C, const int *ldc) {
    static f_sgemm_fn real;
    if (real == NULL)
        real = (f_sgemm_fn)real_symbol("sgemm_");
    const double t0 = now_s();
    real(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    record('G', *ta != 'N' && *ta != 'n', *tb != 'N' && *tb != 'n', *M, *N, *K, now_s() - t0,
           2.0 * *M * *N * *K);
}

void sgemv_(const char *ta, const int *M, const int *N, const float *alpha, const float *A,
            const int *lda, const float *X, const int *incx, const float *beta, float *Y,
            const int *incy) {
    static f_sgemv_fn real;
    if (real == NULL)
        real = (f_sgemv_fn)real_symbol("sgemv_");
    const double t0 = now_s();
    real(ta, M, N, alpha, A, lda, X, incx, beta, Y, incy);
    record('V', *ta != 'N' && *ta != 'n', 0, *M, *N, 1, now_s() - t0, 2.0 * *M * *N);
}

static int by_seconds_desc(const void *a, const void *b) {
    const double x = ((const trace_entry *)a)->seconds, y = ((const trace_entry *)b)->seconds;
    return (x < y) - (x > y);
}

__attribute__((destructor)) static void report(void) {
    qsort(entries, (size_t)n_entries, sizeof entries[0], by_seconds_desc);
    double total = 0.0;
    for (int i = 0; i < n_entries; i++)
        total += entries[i].seconds;
    fprintf(stderr, "blas_trace: %.3f s in BLAS over %d shapes\n", total, n_entries);
    fprintf(stderr, "blas_trace: %-5s %2s %2s %7s %7s %7s %9s %9s %6s %8s\n", "call", "tA", "tB",
            "M", "N", "K", "calls", "seconds", "share", "GFLOP/s");
    for (int i = 0; i < n_entries && i < 40; i++) {
        const trace_entry *e = &entries[i];
        fprintf(stderr, "blas_trace: %-6s %2d %2d %7d %7d %7d %9ld %9.3f %5.1f%% %8.1f\n",
                e->kind == 'g'   ? "sgemm"
                : e->kind == 'v' ? "sgemv"
                : e->kind == 'G' ? "sgemm_"
                                 : "sgemv_",
                e->trans_a, e->trans_b, e->M, e->N, e->K, e->calls, e->seconds,
                100.0 * e->seconds / total, e->flops / e->seconds / 1e9);
    }
}
