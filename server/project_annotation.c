/* See project_annotation.h. */
#include "project_annotation.h"

#include <string.h>

#include "annotation_store.h"
#include "json_checks.h"
#include "label_schema.h"

/* body's member key, else current's, else NULL. */
static const json_t *member(const json_t *body, const json_t *current, const char *key) {
    const json_t *v = json_object_get(body, key);
    return v != NULL ? v : json_object_get(current, key);
}

int project_annotation_check(const json_t *body, const json_t *current, project_annotation *a,
                             http_error *e) {
    memset(a, 0, sizeof *a);
    const json_t *guidelines = member(body, current, "guidelines");
    const json_t *lease = member(body, current, "lease_seconds");
    const json_t *rate = member(body, current, "gold_rate");
    if (guidelines != NULL && (!json_is_string(guidelines) ||
                               json_string_length(guidelines) > ANNOTATION_GUIDELINES_MAX_BYTES))
        return http_error_set(e, 400, "invalid_value", "guidelines",
                              "guidelines must be a Markdown string of at most %d bytes",
                              ANNOTATION_GUIDELINES_MAX_BYTES);
    a->guidelines = guidelines ? json_string_value(guidelines) : "";
    a->lease_seconds = 600;
    if (lease != NULL &&
        (!json_is_integer(lease) || json_integer_value(lease) < ANNOTATION_LEASE_MIN_S ||
         json_integer_value(lease) > ANNOTATION_LEASE_MAX_S))
        return http_error_set(e, 400, "invalid_value", "lease_seconds",
                              "lease_seconds must be an integer in %d..%d", ANNOTATION_LEASE_MIN_S,
                              ANNOTATION_LEASE_MAX_S);
    if (lease != NULL)
        a->lease_seconds = json_integer_value(lease);
    if (rate != NULL &&
        (!json_is_number(rate) || json_number_value(rate) < 0 || json_number_value(rate) > 1))
        return http_error_set(e, 400, "invalid_value", "gold_rate",
                              "gold_rate must be a number in 0..1 (the fraction of `next` "
                              "answers that are gold comparisons)");
    a->gold_rate = rate ? json_number_value(rate) : 0;
    return label_schema_check(member(body, current, "label_schema"), &a->label_schema, e);
}

int project_annotation_store(sqlite3 *db, int64_t id, const project_annotation *a) {
    return annot_project_update(db, id, a->guidelines, a->label_schema, a->lease_seconds,
                                a->gold_rate);
}

void project_annotation_free(project_annotation *a) {
    json_decref(a->label_schema);
    a->label_schema = NULL;
}
