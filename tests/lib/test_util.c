#include "test_util.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "gpt2_checkpoint.h"
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

void load_checkpoint_model(gpt2_model *m, const char *path, bool head) {
    safetensors_file f;
    gpt2_config gc;
    char err[256];
    ck_assert_msg(safetensors_read_file(&f, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gpt2_config_from_checkpoint(&gc, &f, err, sizeof err), 0);
    gc.scalar_head = head;
    ck_assert_int_eq(gpt2_init(m, &gc, err, sizeof err), 0);
    ck_assert_msg(gpt2_checkpoint_load(m, &f, NULL, err, sizeof err) == 0, "%s", err);
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
