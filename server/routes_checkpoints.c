/* Checkpoints: a job's checkpoints (GET /v1/jobs/{id}/checkpoints), one
 * checkpoint's safetensors file (GET /v1/checkpoints/{id}/content), and
 * completions sampled from one (POST /v1/checkpoints/{id}/generate, in the
 * shape of OpenAI's legacy completions API: object "text_completion",
 * choices with index, text and finish_reason, usage; the work and its
 * limits are in generate.c). The SQL is in checkpoints_store.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoints_store.h"
#include "generate.h"
#include "job_json.h"
#include "routes.h"

/* ---- GET /v1/jobs/{id}/checkpoints ----------------------------------------------- */

enum MHD_Result route_jobs_checkpoints(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied) ||
        !job_require(r, &replied))
        return replied;
    return http_reply_page(r, checkpoints_store_page_sql, after, limit, r->path_id,
                           checkpoints_store_json);
}

/* ---- GET /v1/checkpoints/{id}/content: the safetensors file ------------------------ */

enum MHD_Result route_checkpoints_content(request *r) {
    checkpoint_content c;
    char err[512];
    int found =
        checkpoints_store_content(r->db, r->srv->cfg.data_dir, r->path_id, &c, err, sizeof err);
    if (found < 0)
        return http_reply_error(r, 500, "artifact_unreadable", NULL, "checkpoint %lld: %s",
                                (long long)r->path_id, err);
    if (found == 0)
        return http_reply_error(r, 404, "checkpoint_not_found", NULL,
                                "no checkpoint %lld with stored content", (long long)r->path_id);
    /* streamed from the file; MHD closes it */
    struct MHD_Response *resp = MHD_create_response_from_fd64(c.n_bytes, c.fd);
    if (resp == NULL) {
        close(c.fd);
        return MHD_NO;
    }
    char disposition[128];
    snprintf(disposition, sizeof disposition,
             "attachment; filename=\"job%lld-step%lld.safetensors\"", (long long)c.job_id,
             (long long)c.step);
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", disposition);
    MHD_add_response_header(resp, "x-checkpoint-sha256", c.sha256);
    return http_queue(r, 200, resp);
}

/* ---- POST /v1/checkpoints/{id}/generate ---------------------------------------------- */

/* Reads the body into p (prompts borrowed from *body, which the caller
 * frees). 1, or 0 answered in *replied. */
static int generate_parse(request *r, json_t **body, generate_params *p, enum MHD_Result *replied) {
    if ((*body = http_body_object(r, replied)) == NULL)
        return 0;
    static const char *const keys[] = {"prompt", "n",    "max_tokens", "temperature",
                                       "top_p",  "seed", NULL};
    *p = (generate_params){.checkpoint_id = r->path_id};
    generate_error e = {0};
    if (!http_check_keys(r, *body, keys, replied))
        return 0;
    if (generate_parse_prompt(json_object_get(*body, "prompt"), p, &e) != 0 ||
        generate_parse_options(*body, "", p, &e) != 0) {
        *replied = http_reply_http_error(r, &e);
        return 0;
    }
    return 1;
}

/* On a generate worker: the body again (checked already; the seed as the
 * handler drew it, in r->write_ctx), the sampling, the reply. */
static enum MHD_Result generate_work(request *r) {
    enum MHD_Result replied;
    json_t *body = NULL;
    generate_params p;
    if (!generate_parse(r, &body, &p, &replied)) {
        json_decref(body);
        return replied;
    }
    p.seed = *(const uint64_t *)r->write_ctx;
    generate_output out;
    generate_error e = {0};
    if (generate_run(r->srv, r->db, &p, &out, &e) != 0) {
        json_decref(body);
        return http_reply_http_error(r, &e);
    }
    json_t *choices = json_array();
    for (int b = 0; b < out.n_rows; b++)
        json_array_append_new(choices, json_pack("{s:i, s:i, s:s, s:s}", "index", b, "prompt_index",
                                                 b / p.n, "text", out.texts[b], "finish_reason",
                                                 out.stopped[b] ? "stop" : "length"));
    json_t *reply = json_pack(
        "{s:s, s:I, s:I, s:I, s:o, s:{s:I, s:I, s:I}}", "object", "text_completion", "created",
        (json_int_t)db_now_s(), "model", (json_int_t)r->path_id, "seed", (json_int_t)p.seed,
        "choices", choices, "usage", "prompt_tokens", (json_int_t)out.prompt_tokens,
        "completion_tokens", (json_int_t)out.completion_tokens, "total_tokens",
        (json_int_t)(out.prompt_tokens + out.completion_tokens));
    generate_output_free(&out);
    json_decref(body);
    return http_reply_json(r, 200, reply);
}

/* Checks the body here, so a bad request never waits in the queue; the
 * sampling runs on the generate pool (generate.h). */
enum MHD_Result route_checkpoints_generate(request *r) {
    enum MHD_Result replied;
    json_t *body = NULL;
    generate_params p;
    const int ok = generate_parse(r, &body, &p, &replied);
    json_decref(body);
    if (!ok)
        return replied;
    uint64_t *seed = malloc(sizeof *seed);
    if (seed == NULL)
        return http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    *seed = p.seed;
    r->write_ctx = seed;
    return http_defer_slow(r, r->srv->gen_pool, generate_work);
}
