/* docs/openapi.json as the tests use it: see openapi_check.h. */
#include "openapi_check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"
#include "openapi.h"
#include "route_table.h"

static json_t *doc;
static pthread_once_t doc_once = PTHREAD_ONCE_INIT;

static void parse_doc(void) {
    json_error_t err;
    doc = json_loadb(openapi_json, openapi_json_len, JSON_REJECT_DUPLICATES, &err);
    if (doc == NULL)
        fprintf(stderr, "docs/openapi.json, line %d: %s\n", err.line, err.text);
}

const json_t *openapi_doc(void) {
    pthread_once(&doc_once, parse_doc);
    return doc;
}

/* x itself, or what its "$ref" names. */
static const json_t *deref(const json_t *root, const json_t *x) {
    const json_t *ref = json_object_get(x, "$ref");
    return ref != NULL ? json_schema_resolve(root, json_string_value(ref)) : x;
}

/* The parameter of op in "path" called name (NULL if undeclared). */
static const json_t *path_parameter(const json_t *root, const json_t *op, const char *name,
                                    size_t n) {
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(op, "parameters"), i, p) {
        p = deref(root, p);
        const char *pname = json_string_value(json_object_get(p, "name"));
        const char *in = json_string_value(json_object_get(p, "in"));
        if (pname != NULL && in != NULL && strcmp(in, "path") == 0 && strlen(pname) == n &&
            strncmp(pname, name, n) == 0)
            return p;
    }
    return NULL;
}

void openapi_route_pattern(const json_t *root, const char *path, const json_t *op, char *out,
                           size_t len) {
    size_t used = 0;
    for (const char *p = path; *p && used + 8 < len;) {
        const char *close = *p == '{' ? strchr(p, '}') : NULL;
        if (close == NULL) {
            out[used++] = *p++;
            continue;
        }
        const size_t n = (size_t)(close - p - 1);
        const json_t *param = path_parameter(root, op, p + 1, n);
        const json_t *schema = deref(root, json_object_get(param, "schema"));
        const char *type = json_string_value(json_object_get(schema, "type"));
        const char *as = type != NULL && strcmp(type, "integer") == 0 ? "{id}"
                         : n == 4 && strncmp(p + 1, "path", 4) == 0   ? "{path}"
                                                                      : "{name}";
        used += (size_t)snprintf(out + used, len - used, "%s", as);
        p = close + 1;
    }
    out[used] = '\0';
}

const json_t *openapi_operation(const json_t *root, const char *method, const char *pattern) {
    char lower[16];
    size_t i = 0;
    for (; method[i] && i + 1 < sizeof lower; i++)
        lower[i] = (char)(method[i] >= 'A' && method[i] <= 'Z' ? method[i] + 32 : method[i]);
    lower[i] = '\0';
    const char *path;
    const json_t *item;
    json_object_foreach((json_t *)json_object_get(root, "paths"), path, item) {
        const json_t *op = json_object_get(item, lower);
        if (op == NULL)
            continue;
        char mapped[256];
        openapi_route_pattern(root, path, op, mapped, sizeof mapped);
        if (strcmp(mapped, pattern) == 0)
            return op;
    }
    return NULL;
}

/* The path of target, percent-decoded as libmicrohttpd hands it to rlhfd. */
static void target_path(const char *target, char *out, size_t len) {
    size_t used = 0;
    for (const char *p = target; *p && *p != '?' && used + 1 < len; p++) {
        unsigned hex;
        if (p[0] == '%' && sscanf(p + 1, "%2x", &hex) == 1 && p[1] && p[2])
            out[used++] = (char)hex, p += 2;
        else
            out[used++] = *p;
    }
    out[used] = '\0';
}

/* The response of op for status: "NNN", then "NXX", then (for an error
 * status only: "default" is the error object) "default". */
static const json_t *response_for(const json_t *root, const json_t *op, long status) {
    const json_t *responses = json_object_get(op, "responses");
    char key[24];
    snprintf(key, sizeof key, "%ld", status);
    const json_t *r = json_object_get(responses, key);
    if (r == NULL) {
        snprintf(key, sizeof key, "%ldXX", status / 100);
        r = json_object_get(responses, key);
    }
    if (r == NULL && status >= 400)
        r = json_object_get(responses, "default");
    return r != NULL ? deref(root, r) : NULL;
}

static bool is_json_type(const char *media) {
    return strcmp(media, "application/json") == 0;
}

/* Server-Sent Events against the media type's "x-sse-events" (event name
 * -> schema of its data; a data that is not JSON is checked as a JSON
 * string, so {"const": "[DONE]"} takes OpenAI's last chunk). Only whole
 * events (ended by a blank line) are read; comments and id: are skipped. */
static bool sse_ok(const json_t *root, const json_t *events, const char *body, size_t body_len,
                   const char *what, char *why, size_t len) {
    const char *p = body, *end = body + body_len;
    for (int index = 0; p < end; index++) {
        const char *stop = strstr(p, "\n\n");
        if (stop == NULL || stop >= end)
            return true;
        char name[64] = "message";
        char *data = calloc(1, (size_t)(stop - p) + 1);
        size_t data_len = 0;
        bool has_data = false;
        for (const char *line = p; line < stop;) {
            const char *eol = memchr(line, '\n', (size_t)(stop - line));
            const size_t n = eol != NULL ? (size_t)(eol - line) : (size_t)(stop - line);
            if (n > 7 && strncmp(line, "event: ", 7) == 0)
                snprintf(name, sizeof name, "%.*s", (int)(n - 7), line + 7);
            else if (n >= 5 && strncmp(line, "data:", 5) == 0) {
                const size_t skip = n > 5 && line[5] == ' ' ? 6 : 5;
                if (has_data)
                    data[data_len++] = '\n';
                memcpy(data + data_len, line + skip, n - skip);
                data_len += n - skip;
                has_data = true;
            }
            line += n + 1;
        }
        p = stop + 2;
        if (!has_data) {
            free(data);
            continue;
        }
        const json_t *schema = json_object_get(events, name);
        json_t *value = json_loadb(data, data_len, JSON_DECODE_ANY, NULL);
        if (value == NULL)
            value = json_stringn(data, data_len);
        free(data);
        char fault[512] = "";
        const bool ok =
            schema != NULL && json_schema_validate(root, schema, value, fault, sizeof fault);
        json_decref(value);
        if (!ok) {
            snprintf(why, len, "%s: its event %d (event: %s) %s%s", what, index, name,
                     schema == NULL ? "is not in the document's x-sse-events" : "does not match: ",
                     fault);
            return false;
        }
    }
    return true;
}

/* JSONL (application/x-ndjson): every line against the media type's
 * "x-jsonl-item" schema. */
static bool jsonl_ok(const json_t *root, const json_t *item, const char *body, size_t body_len,
                     const char *what, char *why, size_t len) {
    size_t line_no = 1;
    for (const char *p = body, *end = body + body_len; p < end; line_no++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const size_t n = eol != NULL ? (size_t)(eol - p) : (size_t)(end - p);
        json_error_t err;
        json_t *value = json_loadb(p, n, 0, &err);
        char fault[512] = "";
        const bool ok =
            value != NULL && json_schema_validate(root, item, value, fault, sizeof fault);
        json_decref(value);
        if (!ok) {
            snprintf(why, len, "%s: its line %zu %s%s: %.200s", what, line_no,
                     value == NULL ? "is not JSON: " : "does not match x-jsonl-item: ",
                     value == NULL ? err.text : fault, p);
            return false;
        }
        p += n + 1;
    }
    return true;
}

bool openapi_reply_ok(const json_t *root, const char *method, const char *target, long status,
                      const char *content_type, const char *body, size_t body_len,
                      const json_t *json, bool truncated, char *why, size_t len) {
    if (root == NULL) {
        snprintf(why, len, "docs/openapi.json does not parse");
        return false;
    }
    char path[1024], media[128];
    target_path(target, path, sizeof path);
    snprintf(media, sizeof media, "%.*s", (int)strcspn(content_type, "; "), content_type);
    int64_t id, sub_id;
    bool path_known;
    const http_route *route = route_table_match(method, path, &id, &sub_id, &path_known);
    const char *pattern = NULL;
    const json_t *response;
    char what[320];
    if (route != NULL) {
        const char *m;
        http_route_at(route_table_index(route), &m, &pattern);
        const json_t *op = openapi_operation(root, method, pattern);
        if (op == NULL) {
            snprintf(why, len,
                     "%s %s answered %s %s, a route docs/openapi.json does not describe (add it: "
                     "docs/api.md, \"The OpenAPI document\")",
                     method, target, method, pattern);
            return false;
        }
        snprintf(what, sizeof what, "%s %s (docs/openapi.json: %s %s) answered %ld", method, target,
                 method, pattern, status);
        response = response_for(root, op, status);
    } else {
        /* No route: rlhfd must have refused it with an error. */
        snprintf(what, sizeof what, "%s %s (no route) answered %ld", method, target, status);
        if (status < 400) {
            snprintf(why, len, "%s, but only an error can answer a target that is no route", what);
            return false;
        }
        response = json_object_get(json_object_get(root, "components"), "responses");
        response = json_object_get(response, "Error");
    }
    if (response == NULL) {
        snprintf(why, len, "%s: docs/openapi.json gives it no \"%ld\" response", what, status);
        return false;
    }
    if (body_len == 0)
        return true; /* 304, or a body the status forbids */
    const json_t *content = json_object_get(response, "content");
    const json_t *entry = json_object_get(content, media);
    if (entry == NULL)
        entry = json_object_get(content, "*/*");
    if (entry == NULL) {
        snprintf(why, len, "%s with Content-Type %s, which the document does not give it", what,
                 content_type[0] ? content_type : "(none)");
        return false;
    }
    if (truncated)
        return true;
    const json_t *events = json_object_get(entry, "x-sse-events");
    if (events != NULL)
        return sse_ok(root, events, body, body_len, what, why, len);
    const json_t *item = json_object_get(entry, "x-jsonl-item");
    if (item != NULL)
        return jsonl_ok(root, item, body, body_len, what, why, len);
    if (!is_json_type(media))
        return true;
    if (json == NULL) {
        snprintf(why, len, "%s: the body is not JSON, yet its Content-Type is %s", what,
                 content_type);
        return false;
    }
    const json_t *schema = json_object_get(entry, "schema");
    char fault[512];
    if (schema != NULL && !json_schema_validate(root, schema, json, fault, sizeof fault)) {
        char *text = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(why, len, "%s, a body that does not match its schema: %s\nbody: %.600s", what,
                 fault, text ? text : "?");
        free(text);
        return false;
    }
    return true;
}
