/* POST /v1/checkpoints/{id}/generate: completions sampled from a stored
 * checkpoint, in the shape of OpenAI's legacy completions API
 * (object "text_completion", choices with index, text and finish_reason,
 * usage). The work and its limits are in generate.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "routes.h"

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
