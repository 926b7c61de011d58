#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "gpt2_checkpoint.h"
#include "model.h"
#include "safetensors.h"
#include "suites.h"

const char *test_build_dir(void) {
    static char dir[PATH_MAX];
    if (dir[0] == '\0') {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        ck_assert_int_gt(n, 0);
        exe[n] = '\0';
        snprintf(dir, sizeof dir, "%s", dirname(exe));
    }
    return dir;
}

const char *test_repo_dir(void) {
    static char dir[PATH_MAX];
    if (dir[0] == '\0') {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s", test_build_dir());
        snprintf(dir, sizeof dir, "%s", dirname(tmp));
    }
    return dir;
}

void test_check_gradient(const char *what, float *x, const float *grad, int n, test_loss_fn loss,
                         void *ctx, float h, double abs_tol, double rel_tol) {
    for (int i = 0; i < n; i++) {
        const float saved = x[i];
        x[i] = saved + h;
        const double up = loss(ctx);
        x[i] = saved - h;
        const double down = loss(ctx);
        x[i] = saved;
        const double numeric = (up - down) / (2.0 * (double)h);
        ck_assert_msg(fabs(grad[i] - numeric) <= abs_tol + rel_tol * fabs(numeric),
                      "%s[%d]: analytic %.7g vs numeric %.7g", what, i, grad[i], numeric);
    }
}

void test_write_random_gpt2(char *path, const gpt2_config *gc, uint64_t seed, const char *gain,
                            bool nan_head) {
    gpt2_model m;
    char err[256];
    ck_assert_msg(gpt2_init(&m, gc, err, sizeof err) == 0, "%s", err);
    rng_state r;
    rng_seed(&r, seed, 0);
    gpt2_init_weights(&m, &r);
    if (nan_head)
        m.params.headw[0] = NAN;
    const char *const meta[][2] = {{"reward_gain", gain}, {"reward_bias", "0.5"}};
    size_t n = 0;
    void *bytes = gpt2_checkpoint_serialize(&m, meta, gc->scalar_head ? 2 : 0, NULL, 0, &n);
    ck_assert_ptr_nonnull(bytes);
    strcpy(path, "/tmp/rlhf-test-model-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    free(bytes);
    gpt2_free(&m);
}

float *test_fixture_tensor(const safetensors_file *f, const char *name, int64_t n) {
    const safetensors_info *t = safetensors_find(f, name);
    ck_assert_msg(t != NULL, "fixture has no tensor '%s'", name);
    ck_assert_msg(t->n_elements == n, "fixture tensor '%s' has %lld elements, expected %lld", name,
                  (long long)t->n_elements, (long long)n);
    float *out = malloc(sizeof(float) * (size_t)n);
    char err[512];
    ck_assert_msg(safetensors_load_f32(t, out, n, err, sizeof err) == 0, "%s", err);
    return out;
}

int test_fixture_meta_int(const safetensors_file *f, const char *key) {
    const char *v = safetensors_metadata_get(f, key);
    ck_assert_msg(v != NULL, "fixture metadata lacks %s", key);
    return atoi(v);
}

double test_max_rel_diff(const float *a, const float *b, int64_t n) {
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0.0 ? diff / scale : diff;
}

void load_checkpoint_model(gpt2_model *m, const char *path, bool head) {
    char err[512];
    const model_open_options opt = {.scalar_head = head};
    ck_assert_msg(model_open(path, &opt, m, NULL, err, sizeof err) == 0, "%s: %s", path, err);
}

void test_write_stock_hf_weights(const char *src, const char *dst, const char *drop,
                                 const char *swap) {
    safetensors_file f;
    char err[512];
    ck_assert_msg(safetensors_read_file(&f, src, err, sizeof err) == 0, "%s", err);
    safetensors_tensor *t = calloc((size_t)f.n_tensors, sizeof *t);
    float **data = calloc((size_t)f.n_tensors, sizeof *data);
    ck_assert(t != NULL && data != NULL);
    int n = 0;
    for (int i = 0; i < f.n_tensors; i++) {
        const safetensors_info *info = &f.tensors[i];
        if (drop != NULL && strcmp(info->name, drop) == 0)
            continue;
        data[n] = malloc(sizeof(float) * (size_t)(info->n_elements ? info->n_elements : 1));
        ck_assert_ptr_nonnull(data[n]);
        ck_assert_msg(safetensors_load_f32(info, data[n], info->n_elements, err, sizeof err) == 0,
                      "%s", err);
        t[n] = (safetensors_tensor){.name = info->name, .data = data[n], .ndim = info->ndim};
        memcpy(t[n].shape, info->shape, sizeof(int64_t) * (size_t)info->ndim);
        if (swap != NULL && strcmp(info->name, swap) == 0) {
            ck_assert_int_eq(info->ndim, 2);
            t[n].shape[0] = info->shape[1], t[n].shape[1] = info->shape[0];
        }
        n++;
    }
    const char *const meta[][2] = {{"format", "pt"}};
    size_t n_bytes = 0;
    void *bytes = safetensors_serialize(t, n, meta, 1, &n_bytes);
    ck_assert_ptr_nonnull(bytes);
    FILE *out = fopen(dst, "wb");
    ck_assert_msg(out != NULL, "cannot write %s", dst);
    ck_assert_int_eq(fwrite(bytes, 1, n_bytes, out), n_bytes);
    ck_assert_int_eq(fclose(out), 0);
    free(bytes);
    for (int i = 0; i < n; i++)
        free(data[i]);
    free(data);
    free(t);
    safetensors_free(&f);
}

void test_skip_at(const char *test, const char *fmt, ...) {
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: SKIPPED: %s\n", test, why);
    /* Check runs each test in a child process: the record goes through a file
     * (one O_APPEND write per line, so concurrent tests do not interleave). */
    const char *path = getenv(TEST_SKIP_FILE_ENV);
    if (path == NULL)
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s: %s\n", test, why);
    int fd = open(path, O_WRONLY | O_APPEND);
    if (fd >= 0) {
        ck_assert_int_eq(write(fd, line, (size_t)n), n);
        close(fd);
    }
}

int test_checkpoints_add(void *ctx, int64_t step, const void *bytes, size_t n) {
    test_checkpoints *c = ctx;
    void *copy = malloc(n);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, bytes, n);
    if (step == c->keep_step && c->kept == NULL) {
        c->kept = malloc(n), c->n_kept = n;
        ck_assert_ptr_nonnull(c->kept);
        memcpy(c->kept, bytes, n);
    }
    free(c->last);
    c->last = copy, c->n_last = n;
    return 0;
}

void test_checkpoints_free(test_checkpoints *c) {
    free(c->last), free(c->kept);
    memset(c, 0, sizeof *c);
}

void test_save_temp(char *path, const void *bytes, size_t n) {
    strcpy(path, "/tmp/rlhf-test-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

int test_count_files(const char *dir, const char *sub) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    DIR *d = opendir(path);
    ck_assert_msg(d != NULL, "%s: cannot open", path);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}
