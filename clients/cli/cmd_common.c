/* What the rlhfctl subcommands (cmd_*.c) share: one request printed as a
 * table or as JSON, one page of a list, "/v1/<collection>/<id>" paths from
 * positional arguments, the sampling options of `checkpoints generate`
 * and `comparisons add --sample-from`, --set KEY=VALUE and id / model
 * options, and JSON files of request bodies. Every cmd_*.c calls down into this
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

int cli_set_options(const cli_args *a, const char *opt, json_t *obj) {
    const char *sets[CLI_MAX_ARGS];
    const int n = cli_opt_all(a, opt, sets, CLI_MAX_ARGS);
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(sets[i], '=');
        const char *dot = memchr(sets[i], '.', eq ? (size_t)(eq - sets[i]) : 0);
        if (eq == NULL || eq == sets[i] || dot == sets[i] || (dot && dot + 1 == eq)) {
            cli_usage_error("--%s wants KEY=VALUE (or OBJECT.KEY=VALUE), got '%s'", opt, sets[i]);
            return 0;
        }
        json_t *into = obj;
        if (dot) {
            char outer[256];
            snprintf(outer, sizeof outer, "%.*s", (int)(dot - sets[i]), sets[i]);
            into = json_object_get(obj, outer);
            if (into == NULL) {
                into = json_object();
                json_object_set_new(obj, outer, into);
            } else if (!json_is_object(into)) {
                cli_usage_error("--%s %s: %s is not an object", opt, sets[i], outer);
                return 0;
            }
        }
        const char *name = dot ? dot + 1 : sets[i];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - name), name);
        json_t *value = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        json_object_set_new(into, key, value ? value : json_string(eq + 1));
    }
    return 1;
}

int cli_id_option(const cli_args *a, const char *opt, json_t *obj, const char *key) {
    const char *v = cli_opt(a, opt);
    if (v == NULL)
        return 1;
    int64_t id = cli_parse_id(v, opt);
    if (id == 0)
        return 0;
    json_object_set_new(obj, key, json_integer(id));
    return 1;
}

int cli_model_option(const cli_args *a, const char *opt, json_t *obj, const char *key) {
    const char *v = cli_opt(a, opt);
    if (v == NULL)
        return 1;
    if (v[0] != '\0' && strspn(v, "0123456789") == strlen(v))
        return cli_id_option(a, opt, obj, key);
    json_object_set_new(obj, key, json_string(v));
    return 1;
}

json_t *cli_load_object(const char *file, const char *what) {
    json_error_t jerr;
    json_t *obj = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        if (obj)
            fprintf(stderr, "rlhfctl: %s: must hold a JSON object (%s)\n", file, what);
        else
            fprintf(stderr, "rlhfctl: %s: line %d: %s\n", file, jerr.line, jerr.text);
        json_decref(obj);
        return NULL;
    }
    return obj;
}

void cli_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
