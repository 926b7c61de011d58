#include "json_checks.h"

#include <stdio.h>
#include <string.h>

#include "reply.h"

/* ---- JSON within limits ----------------------------------------------------- */

/* Nesting depth of the text, outside strings, so a deep document is refused
 * before the parser recurses into it. */
static int json_depth_exceeds(const char *text, size_t len, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return 1;
        } else if (c == ']' || c == '}')
            depth--;
    }
    return 0;
}

/* Finds a string (value or key) longer than the limit; its path into param. */
static int json_string_too_long(const json_t *v, char *param, size_t paramlen) {
    size_t used = strlen(param);
    if (json_is_string(v))
        return json_string_length(v) > HTTP_JSON_MAX_STRING;
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach((json_t *)v, i, item) {
            snprintf(param + used, paramlen - used, "[%zu]", i);
            if (json_string_too_long(item, param, paramlen))
                return 1;
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item) {
            snprintf(param + used, paramlen - used, "%s%.64s", used ? "." : "", key);
            if (strlen(key) > HTTP_JSON_MAX_STRING || json_string_too_long(item, param, paramlen))
                return 1;
        }
    }
    param[used] = '\0';
    return 0;
}

json_t *http_json_parse(const char *text, size_t len, char *err, size_t errlen, char *param,
                        size_t paramlen) {
    param[0] = '\0';
    if (json_depth_exceeds(text, len, HTTP_JSON_MAX_DEPTH)) {
        snprintf(err, errlen, "JSON nested deeper than %d levels", HTTP_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        snprintf(err, errlen, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    if (json_string_too_long(v, param, paramlen)) {
        snprintf(err, errlen, "%s is longer than %d bytes", param[0] ? param : "a string",
                 HTTP_JSON_MAX_STRING);
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ---- request bodies ------------------------------------------------------------ */

json_t *http_body_object(request *r, enum MHD_Result *replied) {
    char err[256], param[256];
    json_t *obj = r->body_len > 0
                      ? http_json_parse(r->body, r->body_len, err, sizeof err, param, sizeof param)
                      : NULL;
    if (obj == NULL) {
        *replied =
            r->body_len == 0 ? http_reply_error(r, 400, "invalid_json", NULL,
                                                "the request body must be a JSON object")
            : param[0]
                ? http_reply_error(r, 400, "string_too_long", param, "the request body: %s", err)
                : http_reply_error(r, 400, "invalid_json", NULL, "the request body is %s", err);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        *replied = http_reply_error(r, 400, "invalid_json", NULL,
                                    "the request body must be a JSON object");
        return NULL;
    }
    return obj;
}

bool http_one_of(const char *s, const char *const *list) {
    while (s != NULL && *list != NULL && strcmp(*list, s) != 0)
        list++;
    return s != NULL && *list != NULL;
}

int json_check_keys(const json_t *obj, const char *const *allowed, const char *prefix,
                    http_error *e) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (!http_one_of(key, allowed)) {
            char param[sizeof e->param];
            snprintf(param, sizeof param, "%s%s", prefix, key);
            return http_error_set(e, 400, "unknown_parameter", param, "unknown parameter '%.64s'",
                                  param);
        }
    }
    return 1;
}

int json_check_name(const char *name, size_t max_bytes, http_error *e) {
    if (name != NULL && name[0] != '\0' && strlen(name) <= max_bytes)
        return 1;
    return http_error_set(e, 400, "invalid_value", "name",
                          "name must be a non-empty string of at most %zu bytes", max_bytes);
}

int json_check_int(const json_t *obj, const char *key, int64_t dflt, int64_t lo, int64_t hi,
                   int64_t *out, http_error *e) {
    json_t *v = json_object_get(obj, key);
    *out = v ? json_integer_value(v) : dflt;
    if (v != NULL && (!json_is_integer(v) || *out < lo || *out > hi))
        return http_error_set(e, 400, json_is_integer(v) ? "invalid_value" : "invalid_type", key,
                              "%s must be an integer in [%lld, %lld]", key, (long long)lo,
                              (long long)hi);
    return 1;
}

int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied) {
    http_error e;
    if (json_check_keys(obj, allowed, "", &e))
        return 1;
    *replied = http_reply_http_error(r, &e);
    return 0;
}

int http_check_name(request *r, const char *name, size_t max_bytes, enum MHD_Result *replied) {
    http_error e;
    if (json_check_name(name, max_bytes, &e))
        return 1;
    *replied = http_reply_http_error(r, &e);
    return 0;
}
