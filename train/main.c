/* rlhf-train — runs one training job. See cli.h for the command line. */
#include "cli.h"

int main(int argc, char **argv) {
    return rlhf_train_main(argc, argv);
}
