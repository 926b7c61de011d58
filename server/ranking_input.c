/* See ranking_input.h. */
#include "ranking_input.h"

#include <stdlib.h>
#include <string.h>

#include "annotation_store.h"
#include "defer_write.h"
#include "json_checks.h"
#include "prefs_store.h"
#include "label_schema.h"
#include "ranking_order.h"

static const char *const skip_reasons[] = {"unclear_prompt", "cannot_judge", "offensive", "other",
                                           NULL};

ranking_write *ranking_input_parse(sqlite3 *db, const json_t *body, int64_t project_id,
                                   const int64_t *ids, size_t n, http_error *e) {
    static const char *const keys[] = {"order", "skip", "note", "labels", "skip_reason", NULL};
    json_t *order = json_object_get(body, "order");
    json_t *skip_v = json_object_get(body, "skip");
    json_t *note_v = json_object_get(body, "note");
    json_t *reason_v = json_object_get(body, "skip_reason");
    json_t *labels = json_object_get(body, "labels");
    const bool skip = json_is_true(skip_v);
    const char *note = json_string_value(note_v);
    const char *reason = json_string_value(reason_v);
    int64_t rank[RANKING_MAX_K] = {0};
    if (!json_check_keys(body, keys, "", e))
        return NULL;
    if (skip_v != NULL && (!json_is_boolean(skip_v) || (skip && order != NULL)))
        return http_error_set(e, 400, "invalid_value", "skip",
                              "skip must be a boolean, and true only without order"),
               NULL;
    if (!skip && order == NULL)
        return http_error_set(e, 400, "missing_required_parameter", "order",
                              "order is required (or skip: true)"),
               NULL;
    if (note_v != NULL && !json_is_null(note_v) &&
        (!json_is_string(note_v) || json_string_length(note_v) > RANKING_MAX_NOTE))
        return http_error_set(e, 400, "invalid_value", "note",
                              "note must be a string of at most %d bytes", RANKING_MAX_NOTE),
               NULL;
    if (reason_v != NULL && !json_is_null(reason_v) &&
        (!skip || !http_one_of(reason, skip_reasons)))
        return http_error_set(e, 400, "invalid_value", "skip_reason",
                              "skip_reason goes with skip: true and is one of unclear_prompt, "
                              "cannot_judge, offensive, other"),
               NULL;
    if (!skip && !ranking_check_order(order, "order", ids, n, rank, e))
        return NULL;
    annot_project p;
    int found = annot_project_load(db, project_id, &p);
    if (found <= 0)
        return http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db)), NULL;
    int ok = label_schema_check_labels(p.label_schema, labels, ids, n, skip, e);
    annot_project_free(&p);
    if (!ok)
        return NULL;
    char *labels_text = labels && json_array_size(labels) > 0
                            ? json_dumps(labels, JSON_COMPACT | JSON_PRESERVE_ORDER)
                            : NULL;
    const size_t note_len = note ? strlen(note) : 0;
    const size_t labels_len = labels_text ? strlen(labels_text) : 0;
    ranking_write *w = calloc(1, sizeof *w + note_len + labels_len + 2);
    *e = (http_error){0};
    if (w != NULL) {
        memcpy(w->ids, ids, n * sizeof *ids);
        memcpy(w->rank, rank, sizeof rank);
        w->n = n, w->skip = skip, w->has_note = note != NULL, w->has_labels = labels_text != NULL;
        if (reason)
            strncpy(w->skip_reason, reason, sizeof w->skip_reason - 1);
        if (note)
            memcpy(w->text, note, note_len);
        w->labels_at = note_len + 1;
        if (labels_text)
            memcpy(w->text + w->labels_at, labels_text, labels_len);
    }
    free(labels_text);
    return w;
}

enum MHD_Result ranking_input_defer(request *r, int64_t comparison_id, int64_t project_id,
                                    enum MHD_Result (*run)(request *r)) {
    enum MHD_Result replied;
    int64_t ids[RANKING_MAX_K];
    size_t n;
    int locked = project_is_locked(r->db, project_id);
    if (locked != 0)
        return locked < 0 ? http_reply_db_error(r)
                          : http_reply_error(r, 409, "project_locked", NULL,
                                             "project %lld is locked: its rankings can no "
                                             "longer change",
                                             (long long)project_id);
    if (prefs_candidate_ids(r->db, comparison_id, ids, &n) != 0)
        return http_reply_db_error(r);
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    http_error e;
    ranking_write *w = ranking_input_parse(r->db, body, project_id, ids, n, &e);
    json_decref(body);
    if (w == NULL)
        return e.status ? http_reply_http_error(r, &e) : MHD_NO;
    w->comparison_id = comparison_id;
    r->write_ctx = w;
    return http_defer_write(r, run);
}

const char *ranking_write_note(const ranking_write *w) {
    return w->has_note ? w->text : NULL;
}

json_t *ranking_write_labels(const ranking_write *w) {
    return w->has_labels ? json_loads(w->text + w->labels_at, 0, NULL) : NULL;
}
