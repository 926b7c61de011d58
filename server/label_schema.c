#include "label_schema.h"

#include <stdio.h>
#include <string.h>

#include "json_checks.h"
#include "ranking_limits.h"

/* name is a non-empty string of at most LABEL_SCHEMA_MAX_NAME bytes. */
static int check_label_name(const json_t *name, const char *param, http_error *e) {
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) > LABEL_SCHEMA_MAX_NAME)
        return http_error_set(e, 400, "invalid_value", param,
                              "%s must be a non-empty string of at most %d bytes", param,
                              LABEL_SCHEMA_MAX_NAME);
    return 1;
}

/* Whether array holds a string equal to s among its first n items. */
static int has_string(const json_t *array, size_t n, const char *s) {
    for (size_t i = 0; i < n && i < json_array_size(array); i++)
        if (strcmp(json_string_value(json_array_get(array, i)), s) == 0)
            return 1;
    return 0;
}

/* obj (named param) is an object with only the keys allowed (what: how
 * the message describes it). 1 ok, 0 with e. */
static int check_object(const json_t *obj, const char *const *allowed, const char *param,
                        const char *what, http_error *e) {
    if (!json_is_object(obj))
        return http_error_set(e, 400, "invalid_type", param, "%s must be an object %s", param,
                              what);
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s.", param);
    return json_check_keys(obj, allowed, prefix, e);
}

static int check_rating_def(const json_t *def, size_t i, json_t *names, json_t *ratings,
                            http_error *e) {
    static const char *const keys[] = {"name", "min", "max", "required", NULL};
    char param[96];
    snprintf(param, sizeof param, "label_schema.ratings[%zu]", i);
    if (!check_object(def, keys, param, "{name, min, max, required}", e))
        return 0;
    json_t *name = json_object_get(def, "name");
    snprintf(param, sizeof param, "label_schema.ratings[%zu].name", i);
    if (!check_label_name(name, param, e))
        return 0;
    if (has_string(names, i, json_string_value(name)))
        return http_error_set(e, 400, "invalid_value", param, "%s '%s' is given twice", param,
                              json_string_value(name));
    int64_t lo, hi;
    if (!json_check_int(def, "min", 1, -100, 100, &lo, e) ||
        !json_check_int(def, "max", 7, -100, 100, &hi, e)) {
        char key[8];
        snprintf(key, sizeof key, "%.7s", e->param);
        snprintf(e->param, sizeof e->param, "label_schema.ratings[%zu].%s", i, key);
        return 0;
    }
    snprintf(param, sizeof param, "label_schema.ratings[%zu].max", i);
    if (hi <= lo || hi - lo + 1 > LABEL_SCHEMA_MAX_POINTS)
        return http_error_set(e, 400, "invalid_value", param,
                              "%s must be above min, with at most %d points on the scale", param,
                              LABEL_SCHEMA_MAX_POINTS);
    json_t *required = json_object_get(def, "required");
    snprintf(param, sizeof param, "label_schema.ratings[%zu].required", i);
    if (required != NULL && !json_is_boolean(required))
        return http_error_set(e, 400, "invalid_type", param, "%s must be a boolean", param);
    json_array_append(names, name);
    json_array_append_new(ratings,
                          json_pack("{s:O, s:I, s:I, s:b}", "name", name, "min", (json_int_t)lo,
                                    "max", (json_int_t)hi, "required", json_is_true(required)));
    return 1;
}

int label_schema_check(const json_t *schema, json_t **out, http_error *e) {
    static const char *const keys[] = {"ratings", "flags", NULL};
    *out = NULL;
    if (schema != NULL && !json_is_object(schema))
        return http_error_set(e, 400, "invalid_type", "label_schema",
                              "label_schema must be an object {ratings, flags}");
    if (schema != NULL && !json_check_keys(schema, keys, "label_schema.", e))
        return 0;
    json_t *ratings_in = json_object_get(schema, "ratings");
    json_t *flags_in = json_object_get(schema, "flags");
    if (ratings_in != NULL &&
        (!json_is_array(ratings_in) || json_array_size(ratings_in) > LABEL_SCHEMA_MAX_RATINGS))
        return http_error_set(e, 400, "invalid_value", "label_schema.ratings",
                              "label_schema.ratings must be an array of at most %d ratings",
                              LABEL_SCHEMA_MAX_RATINGS);
    if (flags_in != NULL &&
        (!json_is_array(flags_in) || json_array_size(flags_in) > LABEL_SCHEMA_MAX_FLAGS))
        return http_error_set(e, 400, "invalid_value", "label_schema.flags",
                              "label_schema.flags must be an array of at most %d names",
                              LABEL_SCHEMA_MAX_FLAGS);
    json_t *names = json_array(), *ratings = json_array(), *flags = json_array();
    int ok = 1;
    for (size_t i = 0; ok && i < json_array_size(ratings_in); i++)
        ok = check_rating_def(json_array_get(ratings_in, i), i, names, ratings, e);
    for (size_t i = 0; ok && i < json_array_size(flags_in); i++) {
        char param[64];
        snprintf(param, sizeof param, "label_schema.flags[%zu]", i);
        json_t *flag = json_array_get(flags_in, i);
        ok = check_label_name(flag, param, e);
        if (ok && has_string(flags, i, json_string_value(flag)))
            ok = http_error_set(e, 400, "invalid_value", param, "%s '%s' is given twice", param,
                                json_string_value(flag));
        if (ok)
            json_array_append(flags, flag);
    }
    json_decref(names);
    if (!ok) {
        json_decref(ratings), json_decref(flags);
        return 0;
    }
    *out = json_pack("{s:o, s:o}", "ratings", ratings, "flags", flags);
    return 1;
}

/* The schema's rating called name, or NULL. */
static const json_t *rating_def(const json_t *schema, const char *name) {
    size_t i;
    json_t *def;
    json_array_foreach(json_object_get(schema, "ratings"), i, def) {
        if (strcmp(json_string_value(json_object_get(def, "name")), name) == 0)
            return def;
    }
    return NULL;
}

/* One item of labels: {candidate_id, ratings, flags}. seen[c] marks the
 * candidates already labelled. */
static int check_label(const json_t *schema, const json_t *item, size_t i, const int64_t *ids,
                       size_t n, int *seen, http_error *e) {
    static const char *const keys[] = {"candidate_id", "ratings", "flags", NULL};
    char param[128];
    snprintf(param, sizeof param, "labels[%zu]", i);
    if (!check_object(item, keys, param, "{candidate_id, ratings, flags}", e))
        return 0;
    json_t *cid = json_object_get(item, "candidate_id");
    size_t c = 0;
    while (c < n && !(json_is_integer(cid) && json_integer_value(cid) == ids[c]))
        c++;
    snprintf(param, sizeof param, "labels[%zu].candidate_id", i);
    if (c == n)
        return http_error_set(e, 400, "unknown_candidate", param,
                              "%s must be a candidate id of this comparison", param);
    if (seen[c]++)
        return http_error_set(e, 400, "duplicate_candidate", param,
                              "candidate %lld is labelled more than once", (long long)ids[c]);
    json_t *ratings = json_object_get(item, "ratings");
    snprintf(param, sizeof param, "labels[%zu].ratings", i);
    if (ratings != NULL && !json_is_object(ratings))
        return http_error_set(e, 400, "invalid_type", param,
                              "%s must be an object {rating name: integer}", param);
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)ratings, name, v) {
        snprintf(param, sizeof param, "labels[%zu].ratings.%.64s", i, name);
        const json_t *def = rating_def(schema, name);
        if (def == NULL)
            return http_error_set(e, 400, "unknown_rating", param,
                                  "%s: the project has no rating called '%.64s'", param, name);
        json_int_t lo = json_integer_value(json_object_get(def, "min"));
        json_int_t hi = json_integer_value(json_object_get(def, "max"));
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
            return http_error_set(e, 400, "invalid_value", param,
                                  "%s must be an integer in %lld..%lld", param, (long long)lo,
                                  (long long)hi);
    }
    size_t j;
    json_t *def;
    json_array_foreach(json_object_get(schema, "ratings"), j, def) {
        const char *rname = json_string_value(json_object_get(def, "name"));
        if (json_is_true(json_object_get(def, "required")) &&
            json_object_get(ratings, rname) == NULL) {
            snprintf(param, sizeof param, "labels[%zu].ratings.%s", i, rname);
            return http_error_set(e, 400, "missing_required_parameter", param,
                                  "%s is required for every candidate", param);
        }
    }
    json_t *flags = json_object_get(item, "flags");
    snprintf(param, sizeof param, "labels[%zu].flags", i);
    if (flags != NULL && !json_is_array(flags))
        return http_error_set(e, 400, "invalid_type", param, "%s must be an array of flag names",
                              param);
    const json_t *allowed = json_object_get(schema, "flags");
    json_array_foreach(flags, j, v) {
        snprintf(param, sizeof param, "labels[%zu].flags[%zu]", i, j);
        if (!json_is_string(v) ||
            !has_string(allowed, json_array_size(allowed), json_string_value(v)))
            return http_error_set(e, 400, "unknown_flag", param,
                                  "%s is not one of the project's flags", param);
        if (has_string(flags, j, json_string_value(v)))
            return http_error_set(e, 400, "invalid_value", param, "%s is given twice", param);
    }
    return 1;
}

int label_schema_check_labels(const json_t *schema, const json_t *labels, const int64_t *ids,
                              size_t n, int skip, http_error *e) {
    int seen[RANKING_MAX_K] = {0};
    if (labels != NULL && skip)
        return http_error_set(e, 400, "invalid_value", "labels", "a skip takes no labels");
    if (labels != NULL && (!json_is_array(labels) || json_array_size(labels) > n))
        return http_error_set(e, 400, "invalid_type", "labels",
                              "labels must be an array of at most one {candidate_id, ratings, "
                              "flags} per candidate");
    for (size_t i = 0; i < json_array_size(labels); i++)
        if (!check_label(schema, json_array_get(labels, i), i, ids, n, seen, e))
            return 0;
    if (skip)
        return 1;
    size_t j;
    json_t *def;
    json_array_foreach(json_object_get(schema, "ratings"), j, def) {
        if (!json_is_true(json_object_get(def, "required")))
            continue;
        for (size_t c = 0; c < n; c++)
            if (!seen[c])
                return http_error_set(e, 400, "missing_required_parameter", "labels",
                                      "every candidate needs the rating '%s' (candidate %lld "
                                      "has none)",
                                      json_string_value(json_object_get(def, "name")),
                                      (long long)ids[c]);
    }
    return 1;
}
