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

static enum MHD_Result reply_generate_error(request *r, const generate_error *e) {
    return http_reply_error(r, e->status, e->code, e->param[0] ? e->param : NULL, "%s", e->message);
}

enum MHD_Result route_checkpoints_generate(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"prompt", "n",    "max_tokens", "temperature",
                                       "top_p",  "seed", NULL};
    generate_params p = {.checkpoint_id = r->path_id};
    generate_error e = {0};
    const json_t *prompt = json_object_get(body, "prompt");
    if (!http_check_keys(r, body, keys, &replied)) {
        json_decref(body);
        return replied;
    }
    if (prompt == NULL)
        replied = http_reply_error(r, 400, "missing_required_parameter", "prompt",
                                   "prompt is required: a string, or an array of 1..%d strings",
                                   GENERATE_MAX_PROMPTS);
    else if (json_is_string(prompt))
        p.prompts[p.n_prompts++] = json_string_value(prompt);
    else if (!json_is_array(prompt) || json_array_size(prompt) < 1 ||
             json_array_size(prompt) > GENERATE_MAX_PROMPTS)
        replied = http_reply_error(
            r, 400, json_is_array(prompt) ? "invalid_value" : "invalid_type", "prompt",
            "prompt must be a string, or an array of 1..%d strings", GENERATE_MAX_PROMPTS);
    else
        for (size_t i = 0; i < json_array_size(prompt); i++) {
            const json_t *s = json_array_get(prompt, i);
            if (!json_is_string(s)) {
                char param[32];
                snprintf(param, sizeof param, "prompt[%zu]", i);
                replied =
                    http_reply_error(r, 400, "invalid_type", param, "%s must be a string", param);
                p.n_prompts = 0;
                break;
            }
            p.prompts[p.n_prompts++] = json_string_value(s);
        }
    if (p.n_prompts == 0) {
        json_decref(body);
        return replied;
    }
    generate_output out;
    if (generate_parse_options(body, "", &p, &e) != 0 ||
        generate_run(r->srv, r->db, &p, &out, &e) != 0) {
        json_decref(body);
        return reply_generate_error(r, &e);
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
