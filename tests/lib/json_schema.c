/* A JSON Schema subset over jansson: see json_schema.h. */
#include "json_schema.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct check {
    const json_t *root;
    char *why;
    size_t len;
    int depth; /* of $refs, so a schema that refers to itself forever ends */
} check;

static bool fail(check *c, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(check *c, const char *at, const char *fmt, ...) {
    int n = snprintf(c->why, c->len, "%s: ", at);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->len)
        vsnprintf(c->why + n, c->len - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

const json_t *json_schema_resolve(const json_t *root, const char *ref) {
    if (ref == NULL || ref[0] != '#')
        return NULL;
    const json_t *at = root;
    for (const char *p = ref + 1; *p == '/' && at != NULL;) {
        p++;
        char key[256];
        size_t n = 0;
        for (; *p && *p != '/' && n + 1 < sizeof key; p++)
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1'))
                key[n++] = p[1] == '0' ? '~' : '/', p++;
            else
                key[n++] = *p;
        key[n] = '\0';
        at = json_object_get(at, key);
    }
    return at;
}

static const char *type_of(const json_t *v) {
    switch (json_typeof(v)) {
        case JSON_OBJECT:
            return "object";
        case JSON_ARRAY:
            return "array";
        case JSON_STRING:
            return "string";
        case JSON_INTEGER:
            return "integer";
        case JSON_REAL:
            return "number";
        case JSON_TRUE:
        case JSON_FALSE:
            return "boolean";
        default:
            return "null";
    }
}

/* Whether v is of the JSON Schema type name (an integer is a number too). */
static bool is_type(const json_t *v, const char *name) {
    const char *t = type_of(v);
    return strcmp(t, name) == 0 || (strcmp(name, "number") == 0 && json_is_integer(v));
}

static bool check_type(check *c, const json_t *type, const json_t *v, const char *at) {
    if (json_is_string(type)) {
        if (!is_type(v, json_string_value(type)))
            return fail(c, at, "%s expected, got %s", json_string_value(type), type_of(v));
        return true;
    }
    size_t i;
    const json_t *name;
    json_array_foreach(type, i, name) if (is_type(v, json_string_value(name))) return true;
    char *names = json_dumps(type, JSON_COMPACT);
    fail(c, at, "one of %s expected, got %s", names, type_of(v));
    free(names);
    return false;
}

static bool check_pattern(check *c, const char *pattern, const json_t *v, const char *at) {
    if (!json_is_string(v))
        return true;
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        return fail(c, at, "the schema's pattern %s does not compile", pattern);
    const bool ok = regexec(&re, json_string_value(v), 0, NULL, 0) == 0;
    regfree(&re);
    return ok ? true : fail(c, at, "\"%s\" does not match %s", json_string_value(v), pattern);
}

static bool validate(check *c, const json_t *schema, const json_t *v, const char *at);

/* How many of the schemas in list v matches (the last failure in c->why). */
static size_t count_matches(check *c, const json_t *list, const json_t *v, const char *at) {
    size_t i, n = 0;
    const json_t *sub;
    json_array_foreach(list, i, sub) n += validate(c, sub, v, at);
    return n;
}

static bool check_object(check *c, const json_t *schema, const json_t *v, const char *at) {
    if (!json_is_object(v))
        return true;
    char child[512];
    size_t i;
    const json_t *name;
    json_array_foreach(json_object_get(schema, "required"), i, name) {
        if (json_object_get(v, json_string_value(name)) == NULL)
            return fail(c, at, "\"%s\" is missing", json_string_value(name));
    }
    const json_t *props = json_object_get(schema, "properties");
    const json_t *extra = json_object_get(schema, "additionalProperties");
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        snprintf(child, sizeof child, "%s.%s", at, key);
        const json_t *sub = json_object_get(props, key);
        if (sub == NULL && json_is_false(extra))
            return fail(c, at, "\"%s\" is not in the schema (additionalProperties: false)", key);
        if (sub == NULL && json_is_object(extra))
            sub = extra;
        if (sub != NULL && !validate(c, sub, value, child))
            return false;
    }
    return true;
}

static bool check_array(check *c, const json_t *schema, const json_t *v, const char *at) {
    if (!json_is_array(v))
        return true;
    const json_t *min = json_object_get(schema, "minItems");
    const json_t *max = json_object_get(schema, "maxItems");
    if (min != NULL && (json_int_t)json_array_size(v) < json_integer_value(min))
        return fail(c, at, "%zu items, fewer than %lld", json_array_size(v),
                    (long long)json_integer_value(min));
    if (max != NULL && (json_int_t)json_array_size(v) > json_integer_value(max))
        return fail(c, at, "%zu items, more than %lld", json_array_size(v),
                    (long long)json_integer_value(max));
    const json_t *items = json_object_get(schema, "items");
    if (items == NULL)
        return true;
    char child[512];
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item) {
        snprintf(child, sizeof child, "%s[%zu]", at, i);
        if (!validate(c, items, item, child))
            return false;
    }
    return true;
}

static bool check_bounds(check *c, const json_t *schema, const json_t *v, const char *at) {
    if (!json_is_number(v))
        return true;
    const json_t *min = json_object_get(schema, "minimum");
    const json_t *max = json_object_get(schema, "maximum");
    if (min != NULL && json_number_value(v) < json_number_value(min))
        return fail(c, at, "%g is below %g", json_number_value(v), json_number_value(min));
    if (max != NULL && json_number_value(v) > json_number_value(max))
        return fail(c, at, "%g is above %g", json_number_value(v), json_number_value(max));
    return true;
}

/* Keywords this validator checks, and annotations it may ignore. */
static bool known_keyword(const char *key) {
    static const char *const known[] = {
        "type",        "properties",
        "required",    "additionalProperties",
        "items",       "enum",
        "const",       "minimum",
        "maximum",     "minItems",
        "maxItems",    "pattern",
        "$ref",        "oneOf",
        "anyOf",       "allOf",
        "description", "title",
        "format",      "examples",
        "default",     "deprecated",
        "$comment",    "readOnly",
        "writeOnly",   "contentMediaType",
    };
    if (strncmp(key, "x-", 2) == 0)
        return true;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(key, known[i]) == 0)
            return true;
    return false;
}

static bool validate(check *c, const json_t *schema, const json_t *v, const char *at) {
    if (json_is_true(schema))
        return true;
    if (!json_is_object(schema))
        return fail(c, at, "the schema is not an object");
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)schema, key, value) {
        if (!known_keyword(key))
            return fail(c, at, "the schema uses \"%s\", which this validator does not check", key);
    }
    const json_t *ref = json_object_get(schema, "$ref");
    if (ref != NULL) {
        const json_t *target = json_schema_resolve(c->root, json_string_value(ref));
        if (target == NULL)
            return fail(c, at, "$ref %s names nothing", json_string_value(ref));
        if (c->depth > 64)
            return fail(c, at, "$refs nest deeper than 64");
        c->depth++;
        const bool ok = validate(c, target, v, at);
        c->depth--;
        if (!ok)
            return false;
    }
    const json_t *type = json_object_get(schema, "type");
    if (type != NULL && !check_type(c, type, v, at))
        return false;
    const json_t *list = json_object_get(schema, "enum");
    if (list != NULL) {
        size_t i;
        const json_t *option;
        bool found = false;
        json_array_foreach(list, i, option) found |= json_equal(option, v);
        if (!found) {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            fail(c, at, "%s is not one of the enum", text);
            free(text);
            return false;
        }
    }
    const json_t *konst = json_object_get(schema, "const");
    if (konst != NULL && !json_equal(konst, v))
        return fail(c, at, "not the const %s",
                    json_string_value(konst) ? json_string_value(konst) : "value");
    const json_t *pattern = json_object_get(schema, "pattern");
    if (pattern != NULL && !check_pattern(c, json_string_value(pattern), v, at))
        return false;
    if (!check_bounds(c, schema, v, at) || !check_object(c, schema, v, at) ||
        !check_array(c, schema, v, at))
        return false;
    if ((list = json_object_get(schema, "allOf")) != NULL &&
        count_matches(c, list, v, at) != json_array_size(list))
        return false;
    if ((list = json_object_get(schema, "anyOf")) != NULL && count_matches(c, list, v, at) == 0)
        return false;
    if ((list = json_object_get(schema, "oneOf")) != NULL) {
        const size_t n = count_matches(c, list, v, at);
        if (n == 0)
            return false;
        if (n > 1)
            return fail(c, at, "matches %zu of oneOf's schemas, not exactly one", n);
    }
    return true;
}

bool json_schema_validate(const json_t *root, const json_t *schema, const json_t *instance,
                          char *why, size_t len) {
    check c = {.root = root, .why = why, .len = len, .depth = 0};
    if (len > 0)
        why[0] = '\0';
    return validate(&c, schema, instance, "$");
}
