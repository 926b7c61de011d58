/* Every Check suite of the test binary; tests/lib/test_main.c runs them all. */
#ifndef RLHF_TEST_SUITES_H
#define RLHF_TEST_SUITES_H

#include <check.h>

/* The file test_skip appends to (set by test_main). */
#define TEST_SKIP_FILE_ENV "RLHF_TEST_SKIP_FILE"

/* unit/ */
Suite *rng_suite(void);
Suite *artifact_store_suite(void);
Suite *nn_suite(void);
Suite *optim_suite(void);
Suite *env_suite(void);
Suite *ppo_control_suite(void);
Suite *rlhf_ppo_suite(void);
Suite *hparams_suite(void);
Suite *safetensors_suite(void);
Suite *tokenizer_suite(void);
Suite *gpt2_suite(void);
Suite *lora_suite(void);
Suite *sft_suite(void);
Suite *reward_suite(void);
Suite *ppo_lm_suite(void);
Suite *dist_suite(void);
Suite *metrics_page_suite(void);
Suite *jobs_db_suite(void);
Suite *dataset_format_suite(void);
Suite *token_cache_suite(void);
Suite *series_cache_suite(void);
Suite *db_suite(void);
Suite *sha256_suite(void);
Suite *writer_suite(void);
Suite *db_sink_suite(void);
Suite *agreement_suite(void);
Suite *json_schema_suite(void);
Suite *annotation_quality_suite(void);
Suite *annotation_suite(void);
Suite *ratelimit_suite(void);
Suite *slow_pool_suite(void);
Suite *dpo_suite(void);
Suite *dpo_lm_suite(void);
Suite *grpo_lm_suite(void);
Suite *grader_suite(void);
Suite *arith_task_suite(void);
Suite *llama_suite(void);
Suite *hf_tokenizer_suite(void);
Suite *selection_suite(void);
Suite *loop_sample_suite(void);
/* system/ */
Suite *rlhf_train_suite(void);
Suite *worker_suite(void);
Suite *pipeline_suite(void);
Suite *rlhfctl_suite(void);
Suite *help_suite(void);
/* api/ */
Suite *requests_suite(void);
Suite *hostile_suite(void);
Suite *daemon_suite(void);
Suite *tokens_suite(void);
Suite *jobs_suite(void);
Suite *studies_suite(void);
Suite *job_stream_suite(void);
Suite *checkpoints_suite(void);
Suite *models_suite(void);
Suite *completions_suite(void);

Suite *slow_reads_suite(void);
Suite *rlhf_jobs_suite(void);
Suite *loops_suite(void);
Suite *graders_suite(void);
Suite *datasets_suite(void);
Suite *comparisons_suite(void);
Suite *exports_suite(void);
Suite *project_access_suite(void);
Suite *project_admin_suite(void);
Suite *project_exports_suite(void);
Suite *durability_suite(void);
Suite *disk_suite(void);
Suite *prometheus_suite(void);
Suite *docs_suite(void);
Suite *openai_suite(void);
Suite *openapi_suite(void);
Suite *openai_ids_suite(void);
Suite *static_suite(void);
Suite *wal_suite(void);

#endif
