#include "jsonl_data.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void text_pairs_free(text_pairs *p) {
    for (int64_t i = 0; i < p->n_strings; i++)
        free(p->strings[i]);
    free(p->strings);
    free(p->items);
    memset(p, 0, sizeof *p);
}

static char *keep(text_pairs *p, const char *s) {
    char *copy = strdup(s);
    if (copy != NULL)
        p->strings[p->n_strings++] = copy;
    return copy;
}

/* Checks one parsed line; on success appends it. */
static int add_line(text_pairs *p, json_t *obj, const char *path, int64_t line, char *err,
                    size_t errlen) {
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "%s:%lld: expected a JSON object", path, (long long)line);
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "prompt") != 0 && strcmp(key, "response") != 0 &&
            strcmp(key, "text") != 0) {
            snprintf(err, errlen, "%s:%lld: unknown field '%.64s' (expected prompt and response, "
                     "or text)", path, (long long)line, key);
            return -1;
        }
        if (!json_is_string(v)) {
            snprintf(err, errlen, "%s:%lld: field '%s' must be a string", path, (long long)line,
                     key);
            return -1;
        }
    }
    json_t *text = json_object_get(obj, "text");
    json_t *prompt = json_object_get(obj, "prompt"), *response = json_object_get(obj, "response");
    if (text != NULL && (prompt != NULL || response != NULL)) {
        snprintf(err, errlen, "%s:%lld: give either text, or prompt and response", path,
                 (long long)line);
        return -1;
    }
    if (text == NULL && (prompt == NULL || response == NULL)) {
        snprintf(err, errlen, "%s:%lld: missing field '%s'", path, (long long)line,
                 prompt == NULL ? "prompt" : "response");
        return -1;
    }
    const char *ps = text ? "" : keep(p, json_string_value(prompt));
    const char *rs = keep(p, json_string_value(text ? text : response));
    if (ps == NULL || rs == NULL) {
        snprintf(err, errlen, "out of memory reading %s", path);
        return -1;
    }
    p->items[p->n++] = (text_pair){ps, rs};
    return 0;
}

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int64_t cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t number = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &line_cap, f)) >= 0) {
        number++;
        size_t n = (size_t)len;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        if (n == 0)
            continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 256;
            text_pair *items = realloc(out->items, sizeof *items * (size_t)cap);
            char **strings = realloc(out->strings, sizeof *strings * (size_t)cap * 2);
            if (items) out->items = items;
            if (strings) out->strings = strings;
            if (!items || !strings) {
                snprintf(err, errlen, "out of memory reading %s", path);
                rc = -1;
                break;
            }
        }
        json_error_t jerr;
        json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL) {
            snprintf(err, errlen, "%s:%lld: %s", path, (long long)number, jerr.text);
            rc = -1;
            break;
        }
        rc = add_line(out, obj, path, number, err, errlen);
        json_decref(obj);
    }
    free(line);
    fclose(f);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no examples", path);
        rc = -1;
    }
    if (rc != 0)
        text_pairs_free(out);
    return rc;
}
