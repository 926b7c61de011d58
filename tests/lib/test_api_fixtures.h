/* Resources the api suites (tests/api/) make through rlhfd's API: jobs,
 * datasets (plain and from the demo task), final checkpoints, raw event
 * streams. Every helper asserts what it relies on. */
#ifndef RLHF_TEST_API_FIXTURES_H
#define RLHF_TEST_API_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpt2.h"
#include "test_server_util.h"
#include "tokenizer.h"

/* ---- ppo-control jobs ---------------------------------------------------- */

/* Minutes of training: long enough to be cancelled or killed mid-way, short
 * enough that a worker orphaned by a failed test ends by itself. */
#define LONG_JOB  "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":5000000}}"
#define SHORT_JOB "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":2048}}"

/* POST /v1/jobs with body, asserting 200 and status queued: the job's id. */
int64_t create_job(const test_daemon *d, const char *body);
/* Polls until the job has at least one metrics row. */
void wait_metrics(const test_daemon *d, int64_t id);
/* A job created from body, awaited until it runs and has reported metrics:
 * a worker is mid-training when this returns. */
int64_t start_running_job(const test_daemon *d, const char *body);
/* POST /v1/jobs/{id}/cancel; returns the reply (caller frees). */
http_reply *cancel_job(const test_daemon *d, int64_t id);
/* Polls until no process has pid. */
void wait_pid_gone(pid_t pid);

/* ---- datasets and jobs on them ------------------------------------------- */

/* Uploads len bytes to dataset id; returns the reply (caller frees). */
http_reply *upload_dataset(const test_daemon *d, int64_t id, const char *body, size_t len,
                           const char *extra_header);
/* POST /v1/files: a multipart form with the part file (filename, len
 * bytes of content) and, unless NULL, purpose, before the file when
 * purpose_first; returns the reply (caller frees). */
http_reply *upload_file(const test_daemon *d, const char *token, const char *filename,
                        const char *content, size_t len, const char *purpose, bool purpose_first);
/* upload_file of the text as "data.jsonl", purpose fine-tune: asserts 200
 * and returns N of its id "file-N". */
int64_t openai_file(const test_daemon *d, const char *jsonl);

/* A dataset of format with the JSONL text uploaded; returns its id. */
int64_t create_dataset(const test_daemon *d, const char *format, const char *jsonl);

/* A tiny model, so a job takes well under a second: 40 steps, a periodic
 * (resumable) checkpoint every 4. */
#define TINY_SFT_HYPERPARAMETERS                                                                   \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":40,\"checkpoint_interval\":4,\"eval_interval\":10,\"sample_interval\":0,"       \
    "\"sample_max_tokens\":8}"
/* An sft dataset of n arithmetic rows, uploaded; returns its id. */
int64_t sft_dataset(const test_daemon *d, const char *name, int n);
/* POST /v1/jobs with {"type":"sft", <fields>, "hyperparameters": TINY}. */
int64_t create_sft_job(const test_daemon *d, const char *fields);

/* Hyperparameters for the demo task (engine/demo_task.h): 20 sft steps. */
#define TINY_SFT                                                                                   \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":20,\"learning_rate\":0.003,\"eval_interval\":0,\"sample_interval\":0,"          \
    "\"checkpoint_interval\":10}"
/* Long enough that greedy samples differ by prompt (about 1 s). */
#define SAMPLING_SFT                                                                               \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":150,\"learning_rate\":0.01,\"eval_interval\":0,\"sample_interval\":0,"          \
    "\"checkpoint_interval\":100}"
#define TINY_REWARD                                                                                \
    "{\"batch_size\":4,\"max_steps\":6,\"eval_interval\":3,\"norm_samples\":4,"                    \
    "\"norm_max_tokens\":8}"
#define TINY_PPO                                                                                   \
    "{\"total_updates\":2,\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,"                \
    "\"response_length\":8,\"sample_interval\":0}"

/* n rows of the demo task in the given format, as JSONL (caller frees):
 * sft {"prompt","response"}; prompts {"prompt"}; preference (TRL) with the
 * better of two responses by the hidden gold score as chosen. */
char *demo_jsonl(const char *format, int n, uint64_t seed);
/* A dataset of n rows of the demo task in format, uploaded: its id. */
int64_t demo_dataset(const test_daemon *d, const char *format, int n, uint64_t seed);
/* An sft job on a fresh 64-row demo dataset (its id in *data if not NULL)
 * with the given hyperparameters JSON: the job's id. */
int64_t demo_sft_job(const test_daemon *d, const char *hyperparameters, int64_t *data);

/* The route table as `rlhfd --routes` prints it: a JSON array of
 * {method, path, roles} (caller frees). */
json_t *rlhfd_routes(void);

/* Grants token_id (an annotator or viewer token) project in its own role,
 * as the admin (POST /v1/projects/{id}/members); asserts 200. */
void grant_project(const test_daemon *d, int64_t project, int64_t token_id);
/* grant_project for every live annotator and viewer token (at most 100):
 * for tests about something else than access. */
void grant_project_all(const test_daemon *d, int64_t project);

/* A daemon without a write rate limit and a project (k 2, overlap 1): its
 * id, and its comparisons' path in cpath. */
int64_t daemon_with_project(test_daemon *d, char cpath[96]);

/* The ranking body {"order":[[id of best],[id of worst]]} of a two-response
 * comparison (its JSON as any caller sees it: annotators get the responses
 * in their own shuffled order), naming the responses by their text. */
void order_by_text(const json_t *comparison, const char *best, const char *worst, char *out,
                   size_t len);

/* ---- checkpoints --------------------------------------------------------- */

/* Runs the POST /v1/jobs body twice: a reference job to success, then the
 * same job with its worker (and, under mpirun, its ranks) SIGKILLed once it
 * runs with min_checkpoints checkpoints; attempt 2 must end with the reference's final checkpoint,
 * byte for byte, having resumed exactly when there was a checkpoint.
 * Returns the reference job's id. */
int64_t run_and_run_killed(const test_daemon *d, const char *body, int64_t min_checkpoints);

/* The job's checkpoint of kind "final" as the API lists it: its id, and
 * its sha256 into sha256 unless NULL. Asserts there is exactly one. */
int64_t final_checkpoint(const test_daemon *d, int64_t job, char sha256[65]);
/* GET /v1/jobs/{job}/checkpoints?limit=100, asserted 200 (caller frees). */
http_reply *job_checkpoints(const test_daemon *d, int64_t job);
/* The checkpoint's bytes (caller frees). */
http_reply *checkpoint_content(const test_daemon *d, int64_t id);
/* The model of stored checkpoint id (LM head), loaded here independently
 * of rlhfd (caller gpt2_free's it). */
void checkpoint_model(const test_daemon *d, int64_t id, gpt2_model *m);
/* Greedy continuation of prompt by m, up to n tokens, as text. */
void checkpoint_greedy(const gpt2_model *m, const tokenizer *tok, const char *prompt, int n,
                       char *out, size_t cap);

/* ---- raw connections ----------------------------------------------------- */

/* The integer member key of the reply's JSON. */
int64_t reply_int(http_reply *r, const char *key);
/* A worker program that never claims its job: the job stays queued, so its
 * event stream stays open; it exits on the scheduler's SIGTERM. Its path
 * into path. */
void write_idle_worker(const test_daemon *d, char *path, size_t len);
/* A raw HTTP/1.1 GET on a new connection to the daemon (IPv4); returns the
 * socket after the status line and headers were read into head. */
int open_stream(const test_daemon *d, const char *path, const char *token, char *head, size_t len);
/* Reads until the server closes, appending to out; closes fd. */
void read_to_close(int fd, char *out, size_t len);

/* ---- models ------------------------------------------------------------------ */

/* Writes bytes[0..n) to dir/name; asserts. */
void test_write_file_in(const char *dir, const char *name, const void *bytes, size_t n);
/* Makes dir a Hugging Face GPT-2 directory: 257 tokens (the bytes and
 * <|endoftext|>, a byte-level tokenizer.json), 2 layers of width 16,
 * context 64, random weights from seed; chat: tokenizer_config.json has a
 * ChatML template. */
void test_write_hf_model_dir(const char *dir, uint64_t seed, bool chat);
/* The members of a ustar archive tar[0..len) (one top directory, files
 * at most one subdirectory deep) written into dir, their names below the
 * top directory into names: how many. */
size_t test_untar(const char *tar, size_t len, const char *dir, char names[][64], int cap);
/* Asserts that every tensor of the safetensors file at path is stored as
 * BF16 (its header says "BF16") and that got[0..n), the weights it loaded
 * as, are want[0..n) rounded to bfloat16 by hand (to nearest, ties to
 * even: within 2^-8 relative, and not all unchanged). */
void expect_bf16_export(const char *path, const float *got, const float *want, int64_t n);
/* Starts d with a --model-root holding model directory `name` (into path):
 * the tiny GPT-2 directory, or the tiny Qwen3 one (test_hf_fixture.h);
 * registers it (POST /v1/models). */
void daemon_with_model(test_daemon *d, const char *name, bool llama, char *path, size_t cap);

#endif
