/* Helpers shared by the test files. */
#ifndef RLHF_TEST_UTIL_H
#define RLHF_TEST_UTIL_H

#include <check.h>
#include <math.h>
#include <stddef.h>

#include "gpt2.h"
#include "rng.h"
#include "safetensors.h"

/* Fills x with U(lo, hi) draws. */
static inline void test_fill_uniform(float *x, size_t n, float lo, float hi, rng_state *rng) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_next_uniform(rng, lo, hi);
}

/* |a - b| <= abs_tol + rel_tol * max(|a|, |b|), with a message naming what. */
#define ck_assert_close(a, b, abs_tol, rel_tol, what)                                              \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        double tol_ = (abs_tol) + (rel_tol)*fmax(fabs(a_), fabs(b_));                              \
        ck_assert_msg(fabs(a_ - b_) <= tol_, "%s: %.9g vs %.9g (tol %.3g)", (what), a_, b_, tol_); \
    } while (0)

/* How many entries dir/sub holds (. and .. and dot files not counted);
 * asserts that it opens. */
int test_count_files(const char *dir, const char *sub);

/* Directory holding the test binary (build/), for finding rlhf-train and
 * the repository root (its parent). */
const char *test_build_dir(void);
const char *test_repo_dir(void);

/* m from the checkpoint at path through model_open (scalar head if head:
 * the file's, else zeros); asserts. */
void load_checkpoint_model(gpt2_model *m, const char *path, bool head);

/* A random GPT-2 (config gc, weights from seed) written to a new file
 * under /tmp; path (64 bytes) receives its name. With a head it carries
 * reward_gain = gain and reward_bias = 0.5 metadata; nan_head poisons the
 * head's first weight. Asserts. */
void test_write_random_gpt2(char *path, const gpt2_config *gc, uint64_t seed, const char *gain,
                            bool nan_head);

/* Tensor name of a PyTorch fixture file as n floats (malloc'd); asserts
 * that it exists with n elements. */
float *test_fixture_tensor(const safetensors_file *f, const char *name, int64_t n);
/* The integer metadata key of a fixture file; asserts it is there. */
int test_fixture_meta_int(const safetensors_file *f, const char *key);
/* max |a - b| over n, relative to max |b| (the tensor's own scale). */
double test_max_rel_diff(const float *a, const float *b, int64_t n);

/* Writes the tensors of the safetensors file src to dst as a stock Hugging
 * Face upload has them: the same names, shapes and values (as F32), and
 * only {"format": "pt"} as metadata. The tensor called drop (NULL = none)
 * is left out; the one called swap (NULL = none, 2-D) gets its two
 * dimensions swapped. dst may be src. Asserts. */
void test_write_stock_hf_weights(const char *src, const char *dst, const char *drop,
                                 const char *swap);

/* Checks analytic gradients grad[0..n) of loss(ctx) with respect to x[0..n)
 * against central differences with step h, evaluated in place (x is
 * restored). Asserts |analytic - numeric| <= abs_tol + rel_tol * |numeric|. */
typedef double (*test_loss_fn)(void *ctx);
void test_check_gradient(const char *what, float *x, const float *grad, int n, test_loss_fn loss,
                         void *ctx, float h, double abs_tol, double rel_tol);

/* Records that the running test could not do its work here (why, printf-style);
 * the caller returns after it. The run ends with the skips listed by test name
 * and counted ("N passed, N failed, N skipped"; tests/lib/test_main.c), never
 * as silent passes. */
#define test_skip(...) test_skip_at(__func__, __VA_ARGS__)
void test_skip_at(const char *test, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Keeps a trainer's checkpoints in memory: the last one, and the first one
 * written at step keep_step (0 = none). */
typedef struct test_checkpoints {
    int64_t keep_step;
    void *last, *kept;
    size_t n_last, n_kept;
} test_checkpoints;
/* A train_sink checkpoint callback; ctx is a test_checkpoints. */
int test_checkpoints_add(void *ctx, int64_t step, const void *bytes, size_t n);
void test_checkpoints_free(test_checkpoints *c);
/* Writes n bytes to a new file /tmp/rlhf-test-XXXXXX; its path into path
 * (at least 32 bytes). */
void test_save_temp(char *path, const void *bytes, size_t n);

#endif
