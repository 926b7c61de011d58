/* POST /v1/graders/run — scores one model sample with a grader
 * (engine/grader.h), so a grader can be tried before a job trains on it:
 * OpenAI's /fine_tuning/alpha/graders/run shape. A grader is a small,
 * bounded computation over the request body (itself capped), so it runs
 * on the HTTP thread. */
#include <jansson.h>
#include <stdio.h>

#include "grader.h"
#include "json_checks.h"
#include "reply.h"
#include "routes.h"

/* The "grader ..." path of a grader error ("grader.graders[1].operation:
 * must be ...") as the reply's param: the text before the first ':'. */
static void error_param(const char *err, char *param, size_t len) {
    size_t n = 0;
    while (err[n] != '\0' && err[n] != ':' && err[n] != ' ' && n + 1 < len)
        n++;
    snprintf(param, len, "%.*s", (int)n, err);
}

enum MHD_Result route_graders_run(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"grader", "model_sample", "item", NULL};
    const json_t *spec = json_object_get(body, "grader");
    const json_t *sample = json_object_get(body, "model_sample");
    const json_t *item = json_object_get(body, "item");
    grader *g = NULL;
    char err[512], param[160];
    if (!http_check_keys(r, body, keys, &replied))
        ;
    else if (spec == NULL)
        replied = http_reply_error(r, 400, "missing_required_parameter", "grader",
                                   "grader is required: a grader object");
    else if (sample == NULL || !json_is_string(sample))
        replied =
            http_reply_error(r, 400, sample ? "invalid_type" : "missing_required_parameter",
                             "model_sample", "model_sample must be a string: the output to grade");
    else if (item != NULL && !json_is_object(item))
        replied = http_reply_error(r, 400, "invalid_type", "item",
                                   "item must be an object: the dataset row the grader reads");
    else if ((g = grader_parse(spec, "grader", err, sizeof err)) == NULL) {
        error_param(err, param, sizeof param);
        replied = http_reply_error(r, 400, "invalid_grader", param, "%s", err);
    } else {
        const int n_parts = grader_part_count(g);
        double score, parts[64];
        const grader_sample s = {json_string_value(json_object_get(item, "prompt")),
                                 json_string_value(sample)};
        if (n_parts > 64 || grader_score_parts(g, &s, item, &score, parts, err, sizeof err) != 0) {
            error_param(err, param, sizeof param);
            replied = http_reply_error(r, 400, "grader_failed", param, "%s",
                                       n_parts > 64 ? "grader: more than 64 sub-graders" : err);
        } else {
            json_t *sub = json_object();
            for (int i = 0; i < n_parts; i++)
                json_object_set_new(sub, grader_part_name(g, i), json_real(parts[i]));
            replied = http_reply_json(r, 200,
                                      json_pack("{s:s, s:f, s:o, s:{s:s, s:s}}", "object",
                                                "grader_run", "reward", score, "sub_rewards", sub,
                                                "metadata", "name", grader_name(g), "type",
                                                json_string_value(json_object_get(spec, "type"))));
        }
    }
    grader_free(g);
    json_decref(body);
    return replied;
}
