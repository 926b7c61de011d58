#include "blas_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

const char *blas_core_name(void) {
    return openblas_get_corename();
}

static const char *better_core(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    return NULL;
}

void blas_ensure_fast_kernels(char **argv) {
    const char *off = getenv("RLHF_BLAS_AUTOCORE");
    if ((off && strcmp(off, "0") == 0) || getenv("OPENBLAS_CORETYPE") != NULL)
        return;
    if (strcmp(openblas_get_corename(), "Prescott") != 0)
        return;
    const char *core = better_core();
    if (core == NULL)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr,
            "warning: could not re-execute with OPENBLAS_CORETYPE=%s; "
            "OpenBLAS keeps its slow Prescott kernels\n",
            core);
    unsetenv("OPENBLAS_CORETYPE");
}
