/* Every Check suite of the test binary; tests/lib/test_main.c runs them all. */
#ifndef RLHF_TEST_SUITES_H
#define RLHF_TEST_SUITES_H

#include <check.h>

/* The file test_skip appends to (set by test_main). */
#define TEST_SKIP_FILE_ENV "RLHF_TEST_SKIP_FILE"

Suite *rng_suite(void);
Suite *env_suite(void);
Suite *nn_suite(void);
Suite *optim_suite(void);
Suite *ppo_control_suite(void);
Suite *hparams_suite(void);
Suite *rlhf_train_suite(void);
Suite *gpt2_suite(void);
Suite *server_suite(void);
Suite *server_data_suite(void);
Suite *server_limits_suite(void);
Suite *server_rlhf_suite(void);
Suite *safetensors_suite(void);
Suite *tokenizer_suite(void);
Suite *sft_suite(void);
Suite *reward_suite(void);
Suite *rlhfctl_suite(void);
Suite *rlhf_ppo_suite(void);
Suite *ppo_lm_suite(void);
Suite *pipeline_suite(void);
Suite *lora_suite(void);
Suite *server_static_suite(void);
Suite *dist_suite(void);
Suite *server_prefs_suite(void);
Suite *metrics_page_suite(void);
Suite *dpo_suite(void);
Suite *grader_suite(void);
Suite *arith_task_suite(void);

#endif
