/* rlhf-train — runs one training job. See cli.h for the command line. */
#include "blas_setup.h"
#include "cli.h"

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    return rlhf_train_main(argc, argv);
}
