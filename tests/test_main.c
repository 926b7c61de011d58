/* The test binary: every suite in suites.h, run with Check.
 *
 *   build/run-tests            all suites
 *   build/run-tests env nn     only the named suites
 *
 * RLHF_TEST_SCALE=asan (set by `make test-asan`) lets slow tests shrink their
 * work where the sanitizers make them several times slower.
 */
#include <stdlib.h>
#include <string.h>

#include "blas_setup.h"
#include "suites.h"

typedef struct named_suite {
    const char *name;
    Suite *(*make)(void);
} named_suite;

static const named_suite all_suites[] = {
    {"rng", rng_suite},
    {"nn", nn_suite},
    {"optim", optim_suite},
    {"ppo", ppo_suite},
    {"hparams", hparams_suite},
    {"cli", cli_suite},
    {"gpt2", gpt2_suite},
    {"server", server_suite},
    {"server_data", server_data_suite},
    {"server_limits", server_limits_suite},
    {"server_rlhf", server_rlhf_suite},
    {"safetensors", safetensors_suite},
    {"tokenizer", tokenizer_suite},
    {"hf_tokenizer", hf_tokenizer_suite},
    {"sft", sft_suite},
    {"reward", reward_suite},
    {"rlhfctl", rlhfctl_suite},
    {"rlhf_ppo", rlhf_ppo_suite},
    {"ppo_lm", ppo_lm_suite},
    {"pipeline", pipeline_suite},
    {"dist", dist_suite},
    {"server_prefs", server_prefs_suite},
    {"env", env_suite},
    {"lora", lora_suite},
    {"server_static", server_static_suite},
    {"metrics_page", metrics_page_suite},
};

static int wanted(const char *name, int argc, char **argv) {
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    SRunner *runner = NULL;
    for (size_t i = 0; i < sizeof all_suites / sizeof all_suites[0]; i++) {
        if (!wanted(all_suites[i].name, argc, argv))
            continue;
        Suite *s = all_suites[i].make();
        if (runner == NULL)
            runner = srunner_create(s);
        else
            srunner_add_suite(runner, s);
    }
    if (runner == NULL)
        return EXIT_FAILURE;
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
