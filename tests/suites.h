/* Every Check suite of the test binary; tests/test_main.c runs them all. */
#ifndef RLHF_TEST_SUITES_H
#define RLHF_TEST_SUITES_H

#include <check.h>

Suite *rng_suite(void);
Suite *env_suite(void);
Suite *nn_suite(void);
Suite *optim_suite(void);
Suite *ppo_suite(void);
Suite *hparams_suite(void);
Suite *cli_suite(void);
Suite *gpt2_suite(void);
Suite *server_suite(void);
Suite *server_data_suite(void);
Suite *server_limits_suite(void);
Suite *server_rlhf_suite(void);
Suite *safetensors_suite(void);
Suite *tokenizer_suite(void);
Suite *hf_tokenizer_suite(void);
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

#endif
