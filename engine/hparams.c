#include "hparams.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Compares a table name with a user-supplied one, treating '-' as '_'. */
static bool name_matches(const char *table_name, const char *user_name) {
    for (; *table_name && *user_name; table_name++, user_name++) {
        char c = *user_name == '-' ? '_' : *user_name;
        if (c != *table_name)
            return false;
    }
    return *table_name == *user_name;
}

const hparam_def *hparams_find(const hparam_table *table, const char *name) {
    for (int i = 0; i < table->n; i++)
        if (name_matches(table->defs[i].name, name))
            return &table->defs[i];
    return NULL;
}

static void *field(void *cfg, const hparam_def *def) {
    return (char *)cfg + def->offset;
}

static const void *field_const(const void *cfg, const hparam_def *def) {
    return (const char *)cfg + def->offset;
}

void hparams_set_defaults(const hparam_table *table, void *cfg) {
    memset(cfg, 0, table->config_bytes);
    for (int i = 0; i < table->n; i++) {
        const hparam_def *d = &table->defs[i];
        switch (d->type) {
            case HPARAM_INT:
                *(int64_t *)field(cfg, d) = (int64_t)d->default_value;
                break;
            case HPARAM_FLOAT:
                *(double *)field(cfg, d) = d->default_value;
                break;
            case HPARAM_BOOL:
                *(bool *)field(cfg, d) = d->default_value != 0.0;
                break;
            case HPARAM_CHOICE:
                snprintf(field(cfg, d), HPARAM_CHOICE_BYTES, "%s", d->choices[0]);
                break;
            case HPARAM_JSON: /* memset left "" */
                break;
        }
    }
}

/* Keeps text as a JSON hyperparameter's value, if it fits. */
static int set_json_text(const hparam_def *d, void *cfg, const char *text, char *err,
                         size_t errlen) {
    if (strlen(text) >= HPARAM_JSON_BYTES) {
        snprintf(err, errlen, "hyperparameter '%s' is longer than %d bytes", d->name,
                 HPARAM_JSON_BYTES - 1);
        return -1;
    }
    snprintf(field(cfg, d), HPARAM_JSON_BYTES, "%s", text);
    return 0;
}

/* ---- typed setters shared by the JSON and string paths ------------------ */

static void format_number(char *buf, size_t len, double v) {
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%g", v);
}

static int range_error(const hparam_def *d, const char *kind, const char *got, char *err,
                       size_t errlen) {
    char lo[32], hi[32];
    format_number(lo, sizeof lo, d->min);
    format_number(hi, sizeof hi, d->max);
    snprintf(err, errlen, "hyperparameter '%s' must be %s in [%s, %s], got %s", d->name, kind, lo,
             hi, got);
    return -1;
}

static int set_int(const hparam_def *d, void *cfg, double v, const char *got, char *err,
                   size_t errlen) {
    if (!isfinite(v) || v != floor(v) || v < d->min || v > d->max)
        return range_error(d, "an integer", got, err, errlen);
    *(int64_t *)field(cfg, d) = (int64_t)v;
    return 0;
}

static int set_float(const hparam_def *d, void *cfg, double v, const char *got, char *err,
                     size_t errlen) {
    if (!isfinite(v) || v < d->min || v > d->max)
        return range_error(d, "a number", got, err, errlen);
    *(double *)field(cfg, d) = v;
    return 0;
}

static int set_choice(const hparam_def *d, void *cfg, const char *v, char *err, size_t errlen) {
    for (const char *const *c = d->choices; *c; c++)
        if (strcmp(*c, v) == 0) {
            snprintf(field(cfg, d), HPARAM_CHOICE_BYTES, "%s", v);
            return 0;
        }
    size_t used = (size_t)snprintf(err, errlen, "hyperparameter '%s' must be one of", d->name);
    for (const char *const *c = d->choices; *c && used < errlen; c++)
        used +=
            (size_t)snprintf(err + used, errlen - used, "%s %s", c == d->choices ? "" : ",", *c);
    if (used < errlen)
        snprintf(err + used, errlen - used, "; got '%.64s'", v);
    return -1;
}

static int type_error(const hparam_def *d, const char *want, char *err, size_t errlen) {
    snprintf(err, errlen, "hyperparameter '%s' must be %s", d->name, want);
    return -1;
}

static int apply_json_value(const hparam_def *d, void *cfg, const json_t *v, char *err,
                            size_t errlen) {
    char got[64];
    switch (d->type) {
        case HPARAM_INT:
            if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);
                snprintf(got, sizeof got, "%lld", (long long)i);
                return set_int(d, cfg, (double)i, got, err, errlen);
            }
            if (json_is_real(v)) {
                format_number(got, sizeof got, json_real_value(v));
                return set_int(d, cfg, json_real_value(v), got, err, errlen);
            }
            return type_error(d, "an integer", err, errlen);
        case HPARAM_FLOAT:
            if (!json_is_number(v))
                return type_error(d, "a number", err, errlen);
            format_number(got, sizeof got, json_number_value(v));
            return set_float(d, cfg, json_number_value(v), got, err, errlen);
        case HPARAM_BOOL:
            if (!json_is_boolean(v))
                return type_error(d, "true or false", err, errlen);
            *(bool *)field(cfg, d) = json_is_true(v);
            return 0;
        case HPARAM_CHOICE:
            if (!json_is_string(v))
                return type_error(d, "a string", err, errlen);
            return set_choice(d, cfg, json_string_value(v), err, errlen);
        case HPARAM_JSON: {
            if (json_is_string(v))
                return set_json_text(d, cfg, json_string_value(v), err, errlen);
            char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
            const int rc = text ? set_json_text(d, cfg, text, err, errlen)
                                : type_error(d, "a JSON value", err, errlen);
            free(text);
            return rc;
        }
    }
    return -1;
}

static int unknown_error(const char *name, char *err, size_t errlen) {
    snprintf(err, errlen, "unknown hyperparameter '%.64s'", name);
    return -1;
}

int hparams_apply_json(const hparam_table *table, void *cfg, const json_t *obj, char *err,
                       size_t errlen) {
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "the configuration must be a JSON object");
        return -1;
    }
    void *scratch = malloc(table->config_bytes);
    if (scratch == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(scratch, cfg, table->config_bytes);
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach((json_t *)obj, key, value) {
        const hparam_def *d = hparams_find(table, key);
        rc = d ? apply_json_value(d, scratch, value, err, errlen) : unknown_error(key, err, errlen);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        memcpy(cfg, scratch, table->config_bytes);
    free(scratch);
    return rc;
}

static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0)
            return *out = true, 0;
        if (strcmp(s, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

int hparams_apply_string(const hparam_table *table, void *cfg, const char *name, const char *value,
                         char *err, size_t errlen) {
    const hparam_def *d = hparams_find(table, name);
    if (d == NULL)
        return unknown_error(name, err, errlen);
    char got[80];
    snprintf(got, sizeof got, "'%.64s'", value);
    if (d->type == HPARAM_CHOICE)
        return set_choice(d, cfg, value, err, errlen);
    if (d->type == HPARAM_JSON)
        return set_json_text(d, cfg, value, err, errlen);
    if (d->type == HPARAM_BOOL) {
        bool b;
        if (parse_bool(value, &b) != 0)
            return type_error(d, "true or false", err, errlen);
        *(bool *)field(cfg, d) = b;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0' || errno == ERANGE)
        return type_error(d, d->type == HPARAM_INT ? "an integer" : "a number", err, errlen);
    return d->type == HPARAM_INT ? set_int(d, cfg, v, got, err, errlen)
                                 : set_float(d, cfg, v, got, err, errlen);
}

/* ---- description ----------------------------------------------------------- */

static const char *type_name(hparam_type t) {
    switch (t) {
        case HPARAM_INT:
            return "int";
        case HPARAM_FLOAT:
            return "float";
        case HPARAM_BOOL:
            return "bool";
        case HPARAM_CHOICE:
            return "choice";
        case HPARAM_JSON:
            return "json";
    }
    return "?";
}

static json_t *value_json(const hparam_def *d, const void *cfg) {
    switch (d->type) {
        case HPARAM_INT:
            return json_integer(*(const int64_t *)field_const(cfg, d));
        case HPARAM_FLOAT:
            return json_real(*(const double *)field_const(cfg, d));
        case HPARAM_BOOL:
            return json_boolean(*(const bool *)field_const(cfg, d));
        case HPARAM_CHOICE:
            return json_string((const char *)field_const(cfg, d));
        case HPARAM_JSON: { /* the value itself when the text is JSON, else the text */
            const char *text = field_const(cfg, d);
            json_t *v = text[0] ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
            return v ? v : json_string(text);
        }
    }
    return json_null();
}

json_t *hparams_to_json(const hparam_table *table, const void *cfg) {
    json_t *obj = json_object();
    for (int i = 0; i < table->n; i++)
        json_object_set_new(obj, table->defs[i].name, value_json(&table->defs[i], cfg));
    return obj;
}

static json_t *default_json(const hparam_def *d) {
    switch (d->type) {
        case HPARAM_INT:
            return json_integer((json_int_t)d->default_value);
        case HPARAM_FLOAT:
            return json_real(d->default_value);
        case HPARAM_BOOL:
            return json_boolean(d->default_value != 0.0);
        case HPARAM_CHOICE:
            return json_string(d->choices[0]);
        case HPARAM_JSON:
            return json_string("");
    }
    return json_null();
}

json_t *hparams_describe(const hparam_table *table) {
    json_t *arr = json_array();
    for (int i = 0; i < table->n; i++) {
        const hparam_def *d = &table->defs[i];
        json_t *row = json_object();
        json_object_set_new(row, "name", json_string(d->name));
        json_object_set_new(row, "type", json_string(type_name(d->type)));
        json_object_set_new(row, "default", default_json(d));
        if (d->type == HPARAM_INT) {
            json_object_set_new(row, "min", json_integer((json_int_t)d->min));
            json_object_set_new(row, "max", json_integer((json_int_t)d->max));
        } else if (d->type == HPARAM_FLOAT) {
            json_object_set_new(row, "min", json_real(d->min));
            json_object_set_new(row, "max", json_real(d->max));
        } else if (d->type == HPARAM_CHOICE) {
            json_t *choices = json_array();
            for (const char *const *c = d->choices; *c; c++)
                json_array_append_new(choices, json_string(*c));
            json_object_set_new(row, "choices", choices);
        }
        json_object_set_new(row, "doc", json_string(d->doc));
        json_array_append_new(arr, row);
    }
    return arr;
}

/* Row d's default and what it allows, as text ("1", "0 … 4294967295"). */
static void describe_values(const hparam_def *d, char *def, size_t def_len, char *allowed,
                            size_t allowed_len) {
    char lo[32], hi[32];
    size_t at = 0;
    switch (d->type) {
        case HPARAM_INT:
        case HPARAM_FLOAT:
            format_number(def, def_len, d->default_value);
            format_number(lo, sizeof lo, d->min);
            format_number(hi, sizeof hi, d->max);
            snprintf(allowed, allowed_len, "%s … %s", lo, hi);
            break;
        case HPARAM_BOOL:
            snprintf(def, def_len, "%s", d->default_value != 0.0 ? "true" : "false");
            snprintf(allowed, allowed_len, "true, false");
            break;
        case HPARAM_CHOICE:
            snprintf(def, def_len, "%s", d->choices[0]);
            allowed[0] = '\0';
            for (const char *const *c = d->choices; *c && at < allowed_len; c++)
                at += (size_t)snprintf(allowed + at, allowed_len - at, "%s%s",
                                       c == d->choices ? "" : ", ", *c);
            break;
        case HPARAM_JSON:
            snprintf(def, def_len, "(none)");
            snprintf(allowed, allowed_len, "a JSON value");
            break;
    }
}

void hparams_write_markdown(const hparam_table *table, FILE *out) {
    fprintf(out, "| name | type | default | allowed | description |\n");
    fprintf(out, "| --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < table->n; i++) {
        const hparam_def *d = &table->defs[i];
        char def[48], allowed[256];
        describe_values(d, def, sizeof def, allowed, sizeof allowed);
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", d->name, type_name(d->type), def, allowed,
                d->doc);
    }
}

void hparams_write_help(const hparam_table *table, const char *prefix, FILE *out) {
    for (int i = 0; i < table->n; i++) {
        const hparam_def *d = &table->defs[i];
        char def[48], allowed[256];
        describe_values(d, def, sizeof def, allowed, sizeof allowed);
        fprintf(out, "  %s%s %s (default %s; %s)\n      %s\n", prefix, d->name, type_name(d->type),
                def, allowed, d->doc);
    }
}
