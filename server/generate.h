/* generate — sampling from a stored checkpoint or a registered base model
 * inside rlhfd, of either family (GPT-2, Llama-style; engine/model.h), for
 * POST /v1/checkpoints/{id}/generate, the OpenAI-shaped
 * POST /v1/completions and /v1/chat/completions (routes_completions.c),
 * and for comparisons whose candidates the server samples
 * (POST /v1/projects/{id}/comparisons with `sample`).
 *
 * Why in the daemon and not through a worker: a request wants its answer
 * now, and the models this service trains are small; a worker process
 * would reload the checkpoint for every request. What bounds the cost:
 * - a cache of at most --model-cache loaded models (least recently used
 *   first out; a model in use is never freed; with every slot in use a
 *   request loads a private copy and frees it after);
 * - generations run on the generate pool (server/slow_pool.h, started by
 *   main.c): --generate-slots workers, at most --generate-queue waiting
 *   (then 503 server_busy), --generate-per-token queued or running per
 *   token (then 429), a wait of at most --queue-timeout-ms (then 503
 *   queue_timeout), each with Retry-After; POST .../generate suspends its
 *   connection meanwhile (server/defer_slow.h), so no HTTP thread waits;
 * - per request at most GENERATE_MAX_ROWS rows (prompts × n), prompts of at
 *   most the model's context, and max_tokens ≤ GENERATE_MAX_TOKENS and
 *   ≤ context − the longest prompt; so one request's time is bounded by
 *   rows × context decoding steps of the model.
 * Text is tokenized as the lineage was trained: with the tokenizer.json of
 * the registered model the lineage starts from, byte-level for a lineage
 * trained from scratch (jobs.h); chat messages are rendered with that
 * model's chat template (engine/chat_template.h).
 *
 * A route that samples (as POST .../generate does, routes_checkpoints.c):
 * check the body on the HTTP thread, keep what the work needs in
 * r->write_ctx, and end with http_defer_slow(r, r->srv->gen_pool, work);
 * work runs on a generate worker with r->db, calls generate_run and
 * replies as usual. The queue, the per-token limit, the timeout and their
 * 429/503 + Retry-After answers come with it. A streamed reply can run its
 * own function on the pool with slow_pool_submit (slow_pool.h).
 */
#ifndef RLHF_GENERATE_H
#define RLHF_GENERATE_H

#include <jansson.h>
#include <stdint.h>

#include "chat_template.h"
#include "reply.h"
#include "server.h"

enum {
    GENERATE_MAX_PROMPTS = 16,
    GENERATE_MAX_N = 16,
    GENERATE_MAX_ROWS = 64,
    GENERATE_MAX_TOKENS = 1024,
    GENERATE_DEFAULT_TOKENS = 64,
    GENERATE_MAX_STOP = 4,
    GENERATE_MAX_STOP_BYTES = 256,
};

/* New text of row `row` as it is generated (never a partial UTF-8
 * character, never text a stop sequence may still claim). false: the
 * client is gone, end the generation. */
typedef bool (*generate_delta_fn)(void *ctx, int row, const char *text, size_t len);

typedef struct generate_params {
    int64_t checkpoint_id; /* the source: a checkpoint, or */
    int64_t model_id;      /* a registered base model (checkpoint_id 0) */
    int n_prompts;
    const char *prompts[GENERATE_MAX_PROMPTS];
    /* chat: n_messages > 0 renders these (the model's chat template, with
     * the generation prompt) as the one prompt instead of prompts[] */
    const chat_message *messages;
    int n_messages;
    int n_stop; /* a row ends before the first of these strings */
    const char *stop[GENERATE_MAX_STOP];
    bool logprobs;              /* fill generate_output's per-token arrays */
    generate_delta_fn on_delta; /* NULL: no streaming */
    void *delta_ctx;
    int n;          /* completions per prompt */
    int max_tokens; /* 0: min(GENERATE_DEFAULT_TOKENS, what the context leaves) */
    double temperature;
    double top_p;
    uint64_t seed;
} generate_params;

/* Why a request failed: the HTTP status, code, param (may be "") and text,
 * as a check reports it (reply.h). */
typedef http_error generate_error;

/* Reads n, max_tokens, temperature, top_p and seed from obj into p (the
 * defaults for those absent: 1, 0, 1.0, 1.0, a random seed); errors name
 * prefix + key ("sample.n"). 0, or -1 with e. */
int generate_parse_options(const json_t *obj, const char *prefix, generate_params *p,
                           generate_error *e);

/* `prompt` (a string, or an array of 1..GENERATE_MAX_PROMPTS strings; NULL
 * when absent) into p->prompts (borrowed). 0, or -1 with e naming "prompt"
 * or "prompt[i]". */
int generate_parse_prompt(const json_t *prompt, generate_params *p, generate_error *e);

/* One completion: row i answers prompt i / n. */
typedef struct generate_output {
    int n_rows;
    char **texts;  /* (n_rows) NUL-terminated, malloc'd */
    bool *stopped; /* (n_rows) true: ended with EOS or a stop string; false: hit max_tokens */
    int64_t prompt_tokens, completion_tokens;
    /* with params.logprobs: row b's generated tokens (EOS excluded) as
     * text (malloc'd, UTF-8 cleaned) and their log-probabilities */
    int *n_tokens;          /* (n_rows) */
    char ***token_texts;    /* (n_rows)(n_tokens[b]) */
    float **token_logprobs; /* (n_rows)(n_tokens[b]) */
} generate_output;

void generate_output_free(generate_output *out);

/* Samples p->n completions of each prompt from checkpoint p->checkpoint_id
 * or base model p->model_id (read through db) on the calling thread: call
 * it on a generate pool worker. 0, or -1 with e (404 checkpoint_not_found /
 * model_not_found, 400 for prompts or max_tokens that do not fit the
 * model or chat messages for a model without a chat template, 500). */
int generate_run(server *srv, sqlite3 *db, const generate_params *p, generate_output *out,
                 generate_error *e);

/* generate_run on the generate pool for r's token, with the caller's
 * thread waiting for it (r->db lent to the worker meanwhile): for a request
 * that samples inside a bigger write (comparisons with `sample`). Refused
 * or timed out in the queue: -1 with e 429/503 and r->retry_after set. */
int generate_run_pooled(request *r, const generate_params *p, generate_output *out,
                        generate_error *e);

#endif
