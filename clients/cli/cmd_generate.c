/* rlhfctl checkpoints generate: completions sampled by rlhfd from a
 * checkpoint (POST /v1/checkpoints/{id}/generate). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlhfctl.h"

static void print_completions(const json_t *reply) {
    const json_t *choices = json_object_get(reply, "choices");
    const bool many = json_array_size(choices) > 1;
    size_t i;
    const json_t *choice;
    json_array_foreach(choices, i, choice) {
        if (many)
            printf("--- %zu (prompt %lld, %s)\n", i,
                   (long long)json_integer_value(json_object_get(choice, "prompt_index")),
                   json_string_value(json_object_get(choice, "finish_reason")));
        printf("%s\n", json_string_value(json_object_get(choice, "text")));
    }
}

int cmd_checkpoints_generate(const rlhfctl *c, const cli_args *a) {
    const char *prompts[CLI_MAX_ARGS];
    const int n = cli_opt_all(a, "prompt", prompts, CLI_MAX_ARGS);
    if (n == 0)
        return cli_usage_error("--prompt TEXT is required (repeat it for several prompts)");
    char path[96];
    if (!cmd_id_path(a, 0, "checkpoint ID", "checkpoints", "/generate", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    json_t *body = json_object();
    if (n == 1)
        json_object_set_new(body, "prompt", json_string(prompts[0]));
    else {
        json_t *list = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(list, json_string(prompts[i]));
        json_object_set_new(body, "prompt", list);
    }
    int rc = RLHFCTL_EXIT_USAGE;
    if (cli_sampling_options(a, body))
        rc = cmd_request(c, "POST", path, body, print_completions);
    json_decref(body);
    return rc;
}
