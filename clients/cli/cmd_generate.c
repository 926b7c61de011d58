/* rlhfctl checkpoints generate: completions sampled by rlhfd from a
 * checkpoint (POST /v1/checkpoints/{id}/generate); rlhfctl chat: a
 * conversation with a model, streamed (POST /v1/chat/completions). */
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

/* ---- rlhfctl chat MODEL -------------------------------------------------------------- */

/* One streamed answer: its text as it arrives (printed and kept), and
 * whether [DONE] came. */
typedef struct chat_answer {
    char *text;
    size_t len;
    bool done, failed;
} chat_answer;

static int on_chat_event(void *ctx, const sse_event *ev) {
    chat_answer *ans = ctx;
    if (strcmp(ev->data, "[DONE]") == 0) {
        ans->done = true;
        return SSE_STOP;
    }
    json_t *chunk = json_loads(ev->data, 0, NULL);
    const json_t *error = json_object_get(chunk, "error");
    if (error != NULL) {
        fprintf(stderr, "rlhfctl: %s (%s)\n", json_string_value(json_object_get(error, "message")),
                json_string_value(json_object_get(error, "code")));
        ans->failed = true;
    }
    const char *piece = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta"), "content"));
    if (piece != NULL && *piece) {
        const size_t n = strlen(piece);
        char *grown = realloc(ans->text, ans->len + n + 1);
        if (grown != NULL) {
            memcpy(grown + ans->len, piece, n + 1);
            ans->text = grown;
            ans->len += n;
        }
        fputs(piece, stdout);
        fflush(stdout);
    }
    json_decref(chunk);
    return SSE_CONTINUE;
}

int cmd_chat(const rlhfctl *c, const cli_args *a) {
    json_t *body = json_pack("{s:s, s:[], s:b}", "model", a->pos[0], "messages", "stream", 1);
    json_t *messages = json_object_get(body, "messages");
    if (!cli_sampling_options(a, body)) {
        json_decref(body);
        return RLHFCTL_EXIT_USAGE;
    }
    json_object_del(body, "n"); /* one answer a turn */
    const char *system = cli_opt(a, "system");
    if (system != NULL)
        json_array_append_new(messages,
                              json_pack("{s:s, s:s}", "role", "system", "content", system));
    char line[65536];
    int rc = RLHFCTL_EXIT_OK;
    while (rc == RLHFCTL_EXIT_OK && fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", line));
        chat_answer ans = {0};
        char err[512] = "";
        rc = api_stream_request(c, "POST", "/v1/chat/completions", body, 0, on_chat_event, &ans,
                                err, sizeof err);
        if (rc == RLHFCTL_EXIT_OK && (!ans.done || ans.failed)) {
            rc = RLHFCTL_EXIT_API;
        } else if (rc == RLHFCTL_EXIT_NETWORK) {
            fprintf(stderr, "rlhfctl: %s\n", err);
        }
        fputc('\n', stdout);
        fflush(stdout);
        json_array_append_new(messages, json_pack("{s:s, s:s%}", "role", "assistant", "content",
                                                  ans.text ? ans.text : "", ans.len));
        free(ans.text);
    }
    json_decref(body);
    return rc;
}
