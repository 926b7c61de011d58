/* See annotation_store.h. */
#include "annotation_store.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "prefs_store.h"

/* ---- projects -------------------------------------------------------------------- */

int annot_project_load(sqlite3 *db, int64_t id, annot_project *p) {
    memset(p, 0, sizeof *p);
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT k, overlap, lease_seconds, gold_rate, "
                                             "label_schema FROM projects WHERE id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        p->k = sqlite3_column_int64(st, 0), p->overlap = sqlite3_column_int64(st, 1);
        p->lease_seconds = sqlite3_column_int64(st, 2);
        p->gold_rate = sqlite3_column_double(st, 3);
        p->label_schema = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
    }
    db_cached_done(st);
    if (rc == SQLITE_ROW && p->label_schema == NULL)
        return -1;
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

void annot_project_free(annot_project *p) {
    json_decref(p->label_schema);
    p->label_schema = NULL;
}

int annot_project_update(sqlite3 *db, int64_t id, const char *guidelines,
                         const json_t *label_schema, int64_t lease_seconds, double gold_rate) {
    char *schema = json_dumps(label_schema, JSON_COMPACT | JSON_PRESERVE_ORDER);
    sqlite3_stmt *st = NULL;
    int ok = schema != NULL &&
             sqlite3_prepare_v2(db,
                                "UPDATE projects SET guidelines = ?2, label_schema = ?3, "
                                "lease_seconds = ?4, gold_rate = ?5 WHERE id = ?1",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, guidelines, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, schema, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, lease_seconds);
        sqlite3_bind_double(st, 5, gold_rate);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    free(schema);
    return ok ? 0 : -1;
}

int project_is_locked(sqlite3 *db, int64_t project_id) {
    return db_row_exists(db, "SELECT 1 FROM projects WHERE id = ?1 AND locked_at IS NOT NULL",
                         project_id);
}

/* ---- comparisons ----------------------------------------------------------------- */

/* A JSON array of groups (arrays) of ids: ids[i] in group[i]. */
static json_t *groups_json(const int64_t *ids, const int *group, size_t n) {
    json_t *order = json_array();
    for (int g = 0; g < (int)n; g++) {
        json_t *members = json_array();
        for (size_t i = 0; i < n; i++)
            if (group[i] == g)
                json_array_append_new(members, json_integer(ids[i]));
        if (json_array_size(members) > 0)
            json_array_append_new(order, members);
        else
            json_decref(members);
    }
    return order;
}

int annot_comparison_set_extras(sqlite3 *db, int64_t comparison_id, const int *gold_group,
                                const json_t *const *metadata, size_t n) {
    int64_t ids[RANKING_MAX_K];
    size_t have;
    if (prefs_candidate_ids(db, comparison_id, ids, &have) != 0 || have != n)
        return -1;
    int ok = 1;
    if (gold_group != NULL) {
        json_t *gold = groups_json(ids, gold_group, n);
        char *text = json_dumps(gold, JSON_COMPACT);
        json_decref(gold);
        sqlite3_stmt *st = db_cached_prepare(db, "UPDATE comparisons SET gold = ?2 WHERE id = ?1");
        ok = text != NULL && st != NULL;
        if (ok) {
            sqlite3_bind_int64(st, 1, comparison_id);
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        if (st)
            db_cached_done(st);
        free(text);
    }
    for (size_t i = 0; ok && metadata != NULL && i < n; i++) {
        if (metadata[i] == NULL)
            continue;
        char *text = json_dumps(metadata[i], JSON_COMPACT | JSON_PRESERVE_ORDER);
        sqlite3_stmt *st =
            db_cached_prepare(db, "UPDATE candidates SET metadata = ?2 WHERE id = ?1");
        ok = text != NULL && st != NULL;
        if (ok) {
            sqlite3_bind_int64(st, 1, ids[i]);
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        if (st)
            db_cached_done(st);
        free(text);
    }
    return ok ? 0 : -1;
}

/* A TEXT column holding JSON as a new reference (NULL column: json null). */
static json_t *column_json(sqlite3_stmt *st, int col) {
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    json_t *v = json_loads((const char *)sqlite3_column_text(st, col), 0, NULL);
    return v ? v : json_null();
}

int annot_comparison_view(sqlite3 *db, json_t *c, int64_t token_id, bool admin, bool shuffle) {
    json_t *candidates = json_object_get(c, "candidates");
    const int64_t id = json_integer_value(json_object_get(c, "id"));
    if (admin) {
        sqlite3_stmt *st = db_cached_prepare(db, "SELECT gold FROM comparisons WHERE id = ?1");
        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, id);
        json_object_set_new(c, "gold",
                            sqlite3_step(st) == SQLITE_ROW ? column_json(st, 0) : json_null());
        db_cached_done(st);
        st = db_cached_prepare(db, "SELECT metadata FROM candidates WHERE id = ?1");
        if (st == NULL)
            return -1;
        size_t i;
        json_t *cand;
        json_array_foreach(candidates, i, cand) {
            sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(cand, "id")));
            json_object_set_new(cand, "metadata",
                                sqlite3_step(st) == SQLITE_ROW ? column_json(st, 0) : json_null());
            sqlite3_reset(st);
        }
        db_cached_done(st);
    } else {
        size_t i;
        json_t *cand;
        json_array_foreach(candidates, i, cand) {
            json_object_del(cand, "source");
            json_object_del(cand, "checkpoint_id");
        }
    }
    if (shuffle) {
        size_t n = json_array_size(candidates), perm[RANKING_MAX_K];
        if (n > RANKING_MAX_K)
            return -1;
        annotation_shuffle(token_id, id, n, perm);
        json_t *shown = json_array(), *ids = json_array();
        for (size_t j = 0; j < n; j++) {
            json_t *cand = json_array_get(candidates, perm[j]);
            json_array_append(shown, cand);
            json_array_append(ids, json_object_get(cand, "id"));
        }
        json_object_set_new(c, "candidates", shown);
        json_object_set_new(c, "shown_order", ids);
    }
    return 0;
}

/* One integer from sql binding ?1, ?2: 1 with *out, 0 no row, -1 error. */
static int one_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t *out) {
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int annot_gold_pick(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t *id) {
    /* The first in the annotator's own order (annotation_gold_rank) of the
     * gold comparisons they have not answered: a project holds a handful. */
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT c.id FROM comparisons c WHERE c.project_id = ?1 AND c.gold IS NOT NULL AND "
            "NOT EXISTS (SELECT 1 FROM rankings k WHERE k.comparison_id = c.id AND k.token_id = "
            "?2)");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_int64(st, 2, token_id);
    int rc, found = 0;
    uint64_t best = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int64_t c = sqlite3_column_int64(st, 0);
        const uint64_t rank = annotation_gold_rank(token_id, c);
        if (!found || rank < best)
            found = 1, best = rank, *id = c;
    }
    db_cached_done(st);
    return rc == SQLITE_DONE ? found : -1;
}

int annot_comparison_project(sqlite3 *db, int64_t comparison_id, int64_t *project_id) {
    return one_int(db, "SELECT project_id FROM comparisons WHERE id = ?1 AND ?2 = 0", comparison_id,
                   0, project_id) == 1
               ? 0
               : -1;
}

int annot_answered_count(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t *n) {
    return one_int(db,
                   "SELECT count(*) FROM rankings k JOIN comparisons c ON c.id = k.comparison_id "
                   "WHERE c.project_id = ?1 AND k.token_id = ?2",
                   project_id, token_id, n) == 1
               ? 0
               : -1;
}

int annot_lease_served_ms(sqlite3 *db, int64_t comparison_id, int64_t token_id,
                          int64_t *served_ms) {
    return one_int(db,
                   "SELECT served_ms FROM comparison_leases WHERE comparison_id = ?1 AND "
                   "token_id = ?2 AND served_ms IS NOT NULL",
                   comparison_id, token_id, served_ms);
}

/* ---- rankings -------------------------------------------------------------------- */

int annot_ranking_set_extras(sqlite3 *db, int64_t ranking_id, const int64_t *shown, size_t n,
                             const json_t *labels, const char *skip_reason, int64_t time_ms,
                             int64_t updated_at) {
    json_t *order = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(order, json_integer(shown[i]));
    char *shown_text = n > 0 ? json_dumps(order, JSON_COMPACT) : NULL;
    char *labels_text = labels ? json_dumps(labels, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(order);
    sqlite3_stmt *st = db_cached_prepare(
        db, "UPDATE rankings SET shown_order = coalesce(?2, shown_order), labels = ?3, "
            "skip_reason = ?4, time_ms = coalesce(?5, time_ms), updated_at = ?6 WHERE id = ?1");
    int ok = st != NULL && (n == 0 || shown_text) && (!labels || labels_text);
    if (ok) {
        sqlite3_bind_int64(st, 1, ranking_id);
        if (shown_text)
            sqlite3_bind_text(st, 2, shown_text, -1, SQLITE_STATIC);
        if (labels_text)
            sqlite3_bind_text(st, 3, labels_text, -1, SQLITE_STATIC);
        if (skip_reason)
            sqlite3_bind_text(st, 4, skip_reason, -1, SQLITE_STATIC);
        if (time_ms >= 0)
            sqlite3_bind_int64(st, 5, time_ms);
        if (updated_at > 0)
            sqlite3_bind_int64(st, 6, updated_at);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    if (st)
        db_cached_done(st);
    free(shown_text), free(labels_text);
    return ok ? 0 : -1;
}

/* The stored text of a JSON column as JSON (NULL: null). */
static json_t *text_json(const char *text) {
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *int_or_null(int64_t v, bool known) {
    return known ? json_integer(v) : json_null();
}

/* The extras as GET shows them, from their stored form (updated_at <= 0:
 * never edited): one function for a read and a new ranking's answer, so
 * the two are the same bytes. */
static void put_extras(json_t *ranking, const prefs_ranking_extras *x, int64_t updated_at,
                       int64_t project_id) {
    json_t *labels = text_json(x->labels);
    json_object_set_new(ranking, "labels", json_is_null(labels) ? json_array() : labels);
    json_object_set_new(ranking, "skip_reason",
                        x->skip_reason ? json_string(x->skip_reason) : json_null());
    json_object_set_new(ranking, "shown_order", text_json(x->shown_order));
    json_object_set_new(ranking, "time_ms", int_or_null(x->time_ms, x->time_ms >= 0));
    json_object_set_new(ranking, "updated_at", int_or_null(updated_at, updated_at > 0));
    json_object_set_new(ranking, "project_id", json_integer(project_id));
}

void annot_ranking_put_extras(json_t *ranking, const prefs_ranking_extras *extras,
                              int64_t project_id) {
    put_extras(ranking, extras, 0, project_id);
}

int annot_ranking_add_extras(sqlite3 *db, json_t *ranking) {
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT k.labels, k.skip_reason, k.shown_order, k.time_ms, k.updated_at, "
            "c.project_id FROM rankings k JOIN comparisons c ON c.id = k.comparison_id WHERE "
            "k.id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, json_integer_value(json_object_get(ranking, "id")));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const prefs_ranking_extras x = {
            (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 0),
            (const char *)sqlite3_column_text(st, 1),
            sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3)};
        put_extras(ranking, &x,
                   sqlite3_column_type(st, 4) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 4),
                   sqlite3_column_int64(st, 5));
    }
    db_cached_done(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

int annot_ranking_owner(sqlite3 *db, int64_t ranking_id, int64_t *token_id, int64_t *comparison_id,
                        int64_t *project_id) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT k.token_id, k.comparison_id, c.project_id "
                                             "FROM rankings k JOIN comparisons c ON c.id = "
                                             "k.comparison_id WHERE k.id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, ranking_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *token_id = sqlite3_column_int64(st, 0), *comparison_id = sqlite3_column_int64(st, 1),
        *project_id = sqlite3_column_int64(st, 2);
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int annot_ranking_delete(sqlite3 *db, int64_t ranking_id) {
    static const char *const sql[] = {
        "DELETE FROM preference_pairs WHERE ranking_id = ?1",
        "DELETE FROM ranking_entries WHERE ranking_id = ?1",
        "DELETE FROM rankings WHERE id = ?1",
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *st = db_cached_prepare(db, sql[i]);
        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, ranking_id);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        db_cached_done(st);
        if (!ok)
            return -1;
    }
    return 0;
}

/* ---- the reports ----------------------------------------------------------------- */

static annot_annotator *scan_annotator(annot_scan *s, int64_t token_id) {
    annot_annotator *a = (annot_annotator *)annot_scan_find(s, token_id);
    if (a != NULL)
        return a;
    annot_annotator *grown = realloc(s->annotators, (s->n_annotators + 1) * sizeof *grown);
    if (grown == NULL)
        return NULL;
    s->annotators = grown;
    a = &s->annotators[s->n_annotators++];
    memset(a, 0, sizeof *a);
    a->token_id = token_id;
    return a;
}

const annot_annotator *annot_scan_find(const annot_scan *s, int64_t token_id) {
    for (size_t i = 0; i < s->n_annotators; i++)
        if (s->annotators[i].token_id == token_id)
            return &s->annotators[i];
    return NULL;
}

void annot_scan_free(annot_scan *s) {
    for (size_t i = 0; i < s->n_annotators; i++)
        free(s->annotators[i].times_ms);
    free(s->annotators);
    memset(s, 0, sizeof *s);
}

/* One ranking of the scan: its candidates (position order) and groups. */
typedef struct scanned {
    int64_t id, token_id, time_ms;
    bool skipped, has_time;
    json_t *shown, *gold; /* owned */
    int64_t cand[RANKING_MAX_K];
    int group[RANKING_MAX_K];
    int n;
} scanned;

/* The group of each of x's candidates in order (a JSON array of groups of
 * candidate ids), into group; -1 for a candidate it does not place. */
static void groups_of(const scanned *x, const json_t *order, int *group) {
    for (int i = 0; i < x->n; i++)
        group[i] = -1;
    size_t g, j;
    json_t *members, *id;
    json_array_foreach(order, g, members) {
        json_array_foreach(members, j, id) {
            for (int i = 0; i < x->n; i++)
                if (x->cand[i] == json_integer_value(id))
                    group[i] = (int)g;
        }
    }
}

static int scan_finish(annot_scan *s, scanned *x) {
    int ok = 1;
    if (x->id != 0 && !x->skipped && x->n >= 2) {
        annot_annotator *a = scan_annotator(s, x->token_id);
        ok = a != NULL;
        int best = RANKING_MAX_K, n_best = 0, first = -1;
        for (int i = 0; i < x->n; i++)
            best = x->group[i] < best ? x->group[i] : best;
        for (int i = 0; i < x->n; i++) {
            n_best += x->group[i] == best;
            if (json_integer_value(json_array_get(x->shown, 0)) == x->cand[i])
                first = i;
        }
        if (json_array_size(x->shown) > 0 && first >= 0) {
            if (n_best == 1)
                position_bias_add(&s->bias, x->n, x->group[first] == best);
            else
                s->bias.top_ties++;
        }
        if (ok && json_is_array(x->gold)) {
            int gold[RANKING_MAX_K];
            bool top;
            groups_of(x, x->gold, gold);
            a->gold_pair_sum += annotation_gold_score(x->n, gold, x->group, &top);
            a->n_gold++, a->n_gold_top_correct += top;
        }
        if (ok && x->has_time) {
            if (a->n_times == a->cap_times) {
                size_t cap = a->cap_times ? 2 * a->cap_times : 16;
                int64_t *grown = realloc(a->times_ms, cap * sizeof *grown);
                ok = grown != NULL;
                if (ok)
                    a->times_ms = grown, a->cap_times = cap;
            }
            if (ok)
                a->times_ms[a->n_times++] = x->time_ms;
        }
    }
    json_decref(x->shown), json_decref(x->gold);
    memset(x, 0, sizeof *x);
    return ok;
}

int annot_scan_read(sqlite3 *db, int64_t project_id, annot_scan *s) {
    memset(s, 0, sizeof *s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    /* Every candidate of every ranking, ranking by ranking, with the
     * candidate's group in it (NULL for a skip). */
    int ok = sqlite3_prepare_v2(
                 db,
                 "SELECT k.id, k.token_id, k.skipped, k.time_ms, k.shown_order, c.gold, cd.id, "
                 "e.rank FROM rankings k JOIN comparisons c ON c.id = k.comparison_id JOIN "
                 "candidates cd ON cd.comparison_id = c.id LEFT JOIN ranking_entries e ON "
                 "e.ranking_id = k.id AND e.candidate_id = cd.id WHERE c.project_id = ?1 ORDER "
                 "BY k.id, cd.position",
                 -1, &st, NULL) == SQLITE_OK;
    scanned x = {0};
    int rc = SQLITE_DONE;
    if (ok) {
        sqlite3_bind_int64(st, 1, project_id);
        while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id != x.id) {
                ok = scan_finish(s, &x);
                x.id = id, x.token_id = sqlite3_column_int64(st, 1);
                x.skipped = sqlite3_column_int(st, 2) != 0;
                x.has_time = sqlite3_column_type(st, 3) != SQLITE_NULL;
                x.time_ms = sqlite3_column_int64(st, 3);
                x.shown = column_json(st, 4), x.gold = column_json(st, 5);
            }
            if (x.n < RANKING_MAX_K) {
                x.cand[x.n] = sqlite3_column_int64(st, 6);
                x.group[x.n++] = sqlite3_column_int(st, 7);
            }
        }
        ok = ok && rc == SQLITE_DONE && scan_finish(s, &x);
    }
    scan_finish(s, &x);
    sqlite3_finalize(st);
    db_rollback(db);
    if (!ok)
        annot_scan_free(s);
    return ok ? 0 : -1;
}
