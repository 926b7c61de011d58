/* The test binary: every suite in suites.h, run with Check.
 *
 *   build/run-tests            all suites
 *   build/run-tests env nn     only the named suites (an unknown name is an
 *                              error: the list of names is printed)
 *
 * RLHF_TEST_SCALE=asan (set by `make test-asan`) lets slow tests shrink their
 * work where the sanitizers make them several times slower.
 *
 * A test that cannot run here (no MPI, no IPv6 loopback, no npm) calls
 * test_skip (test_util.h) and returns: Check counts it as passed, so the
 * skips are collected in a file beside the run and reported after Check's
 * own summary, in the closing line "N passed, N failed, N skipped".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_setup.h"
#include "suites.h"

typedef struct named_suite {
    const char *name;
    Suite *(*make)(void);
} named_suite;

static const named_suite all_suites[] = {
    /* unit/: one module each */
    {"rng", rng_suite},
    {"nn", nn_suite},
    {"optim", optim_suite},
    {"env", env_suite},
    {"ppo_control", ppo_control_suite},
    {"rlhf_ppo", rlhf_ppo_suite},
    {"hparams", hparams_suite},
    {"safetensors", safetensors_suite},
    {"tokenizer", tokenizer_suite},
    {"gpt2", gpt2_suite},
    {"lora", lora_suite},
    {"sft", sft_suite},
    {"reward", reward_suite},
    {"ppo_lm", ppo_lm_suite},
    {"dist", dist_suite},
    {"metrics_page", metrics_page_suite},
    {"jobs_db", jobs_db_suite},
    {"dataset_format", dataset_format_suite},
    {"token_cache", token_cache_suite},
    {"series_cache", series_cache_suite},
    {"db", db_suite},
    {"sha256", sha256_suite},
    {"artifact_store", artifact_store_suite},
    {"writer", writer_suite},
    {"db_sink", db_sink_suite},
    {"agreement", agreement_suite},
    {"json_schema", json_schema_suite},
    {"annotation_quality", annotation_quality_suite},
    {"ratelimit", ratelimit_suite},
    {"openai_ids", openai_ids_suite},

    {"slow_pool", slow_pool_suite},
    {"dpo", dpo_suite},
    {"dpo_lm", dpo_lm_suite},
    {"grpo_lm", grpo_lm_suite},
    {"grader", grader_suite},
    {"arith_task", arith_task_suite},
    {"llama", llama_suite},
    {"hf_tokenizer", hf_tokenizer_suite},
    {"selection", selection_suite},
    {"loop_sample", loop_sample_suite},
    /* system/: the programs as processes, the in-process pipeline */
    {"rlhf_train", rlhf_train_suite},
    {"worker", worker_suite},
    {"pipeline", pipeline_suite},
    {"rlhfctl", rlhfctl_suite},
    {"help", help_suite},
    /* api/: a real rlhfd over HTTP, one resource (or concern) each */
    {"requests", requests_suite},
    {"hostile", hostile_suite},
    {"daemon", daemon_suite},
    {"tokens", tokens_suite},
    {"jobs", jobs_suite},
    {"studies", studies_suite},
    {"job_stream", job_stream_suite},
    {"checkpoints", checkpoints_suite},
    {"models", models_suite},
    {"completions", completions_suite},

    {"slow_reads", slow_reads_suite},
    {"rlhf_jobs", rlhf_jobs_suite},
    {"loops", loops_suite},
    {"graders", graders_suite},
    {"datasets", datasets_suite},
    {"comparisons", comparisons_suite},
    {"exports", exports_suite},
    {"project_access", project_access_suite},
    {"project_admin", project_admin_suite},
    {"project_exports", project_exports_suite},
    {"annotation", annotation_suite},
    {"durability", durability_suite},
    {"disk", disk_suite},
    {"prometheus", prometheus_suite},
    {"docs", docs_suite},
    {"openai", openai_suite},
    {"openapi", openapi_suite},
    {"static", static_suite},
    {"wal", wal_suite},
};
enum { N_SUITES = sizeof all_suites / sizeof all_suites[0] };

static const named_suite *find_suite(const char *name) {
    for (size_t i = 0; i < N_SUITES; i++)
        if (strcmp(all_suites[i].name, name) == 0)
            return &all_suites[i];
    return NULL;
}

/* Prints the skips recorded in path and returns their count. */
static int report_skips(const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int n = 0;
    char line[1024];
    while (fgets(line, sizeof line, f) != NULL) {
        printf("SKIPPED: %s", line);
        n++;
    }
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
    for (int i = 1; i < argc; i++)
        if (find_suite(argv[i]) == NULL) {
            fprintf(stderr, "run-tests: no suite named '%s'; the suites are:", argv[i]);
            for (size_t j = 0; j < N_SUITES; j++)
                fprintf(stderr, " %s", all_suites[j].name);
            fprintf(stderr, "\n");
            return 2;
        }

    char skip_path[] = "/tmp/rlhf-test-skips-XXXXXX";
    int fd = mkstemp(skip_path);
    if (fd < 0) {
        perror("run-tests: mkstemp");
        return 2;
    }
    close(fd);
    setenv(TEST_SKIP_FILE_ENV, skip_path, 1);

    SRunner *runner = NULL;
    for (size_t i = 0; i < N_SUITES; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc && !wanted; a++)
            wanted = strcmp(argv[a], all_suites[i].name) == 0;
        if (!wanted)
            continue;
        Suite *s = all_suites[i].make();
        if (runner == NULL)
            runner = srunner_create(s);
        else
            srunner_add_suite(runner, s);
    }
    srunner_run_all(runner, CK_NORMAL);
    const int run = srunner_ntests_run(runner);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    fflush(stdout);
    const int skipped = report_skips(skip_path);
    unlink(skip_path);
    printf("%d passed, %d failed, %d skipped\n", run - failed - skipped, failed, skipped);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
