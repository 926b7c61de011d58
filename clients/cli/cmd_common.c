/* What the rlhfctl subcommands (cmd_*.c) share: one request printed as a
 * table or as JSON, one page of a list, "/v1/<collection>/<id>" paths from
 * positional arguments, and the sampling options of `checkpoints generate`
 * and `comparisons add --sample-from`. Every cmd_*.c calls down into this
 * file, never into another cmd_*.c. */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rlhfctl.h"

void cmd_print_object(const json_t *reply) {
    table_print_object(stdout, reply);
}

int cmd_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                void (*human)(const json_t *reply)) {
    json_t *reply = NULL;
    int rc = api_request(c, method, path, body, &reply);
    if (rc == RLHFCTL_EXIT_OK)
        output_reply(c, reply, human);
    return rc;
}

int cmd_show_list(const rlhfctl *c, const cli_args *a, const char *path, const char *const *filters,
                  const column *cols, int n_cols) {
    char full[4096];
    size_t used = (size_t)snprintf(full, sizeof full, "%s", path);
    for (const char *const *f = filters; *f; f++) {
        const char *v = cli_opt(a, *f);
        if (v == NULL)
            continue;
        char *escaped = curl_easy_escape(NULL, v, 0);
        used += (size_t)snprintf(full + used, sizeof full - used, "%c%s=%s",
                                 strchr(full, '?') ? '&' : '?', *f, escaped);
        curl_free(escaped);
        if (used >= sizeof full)
            return cli_usage_error("arguments too long");
    }
    json_t *reply = NULL;
    int rc = api_request(c, "GET", full, NULL, &reply);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    if (c->json_output) {
        output_reply(c, reply, NULL);
        return rc;
    }
    cmd_print_page(reply, cols, n_cols, "after", "last_id");
    return rc;
}

void cmd_print_page(json_t *reply, const column *cols, int n_cols, const char *after_option,
                    const char *cursor_key) {
    const json_t *data = json_object_get(reply, "data");
    if (json_array_size(data) == 0)
        puts("(none)");
    else
        table_print(stdout, data, cols, n_cols);
    if (json_is_true(json_object_get(reply, "has_more")))
        printf("(more: --%s %" JSON_INTEGER_FORMAT ")\n", after_option,
               json_integer_value(json_object_get(reply, cursor_key)));
    json_decref(reply);
}

int64_t cmd_id_path(const cli_args *a, int i, const char *what, const char *collection,
                    const char *suffix, char *out, size_t len) {
    int64_t id = cli_parse_id(a->pos[i], what);
    if (id)
        snprintf(out, len, "/v1/%s/%" PRId64 "%s", collection, id, suffix);
    return id;
}

int cmd_request_id(const rlhfctl *c, const cli_args *a, const char *method, const char *what,
                   const char *collection, const char *suffix, void (*human)(const json_t *reply)) {
    char path[96];
    return cmd_id_path(a, 0, what, collection, suffix, path, sizeof path)
               ? cmd_request(c, method, path, NULL, human)
               : RLHFCTL_EXIT_USAGE;
}

int cli_sampling_options(const cli_args *a, json_t *obj) {
    static const struct {
        const char *opt, *key;
        bool integer;
    } opts[] = {{"n", "n", true},
                {"max-tokens", "max_tokens", true},
                {"temperature", "temperature", false},
                {"top-p", "top_p", false},
                {"seed", "seed", true}};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const char *v = cli_opt(a, opts[i].opt);
        if (v == NULL)
            continue;
        json_t *value = json_loads(v, JSON_DECODE_ANY, NULL);
        if (opts[i].integer ? !json_is_integer(value) : !json_is_number(value)) {
            json_decref(value);
            cli_usage_error("--%s wants %s, got '%s'", opts[i].opt,
                            opts[i].integer ? "an integer" : "a number", v);
            return 0;
        }
        json_object_set_new(obj, opts[i].key, value);
    }
    return 1;
}

void cli_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
