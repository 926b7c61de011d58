#include "prefs_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_store.h"
#include "annotation_store.h"

int prefs_project_exists(sqlite3 *db, int64_t id) {
    return db_row_exists(db, "SELECT 1 FROM projects WHERE id = ?1", id);
}

int prefs_comparison_exists(sqlite3 *db, int64_t id) {
    return db_row_exists(db, "SELECT 1 FROM comparisons WHERE id = ?1", id);
}

int prefs_checkpoint_exists(sqlite3 *db, int64_t id) {
    return db_row_exists(db, "SELECT 1 FROM checkpoints WHERE id = ?1", id);
}

/* ---- projects -------------------------------------------------------------------- */

#define PROJECT_COLUMNS                                                                            \
    "id, name, k, overlap, created_at, n_comparisons, description, locked_at IS NOT NULL, "        \
    "archived_at IS NOT NULL, guidelines, label_schema, lease_seconds, gold_rate"

static json_t *project_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    json_t *label_schema = json_loads((const char *)sqlite3_column_text(st, 10), 0, NULL);
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:I, s:I, s:b, s:b, s:I, s:s, s:o, s:I, s:f, s:I}", "id",
        (json_int_t)sqlite3_column_int64(st, 0), "object", "project", "name",
        (const char *)sqlite3_column_text(st, 1), "description",
        (const char *)sqlite3_column_text(st, 6), "k", (json_int_t)sqlite3_column_int64(st, 2),
        "overlap", (json_int_t)sqlite3_column_int64(st, 3), "locked",
        sqlite3_column_int(st, 7) != 0, "archived", sqlite3_column_int(st, 8) != 0, "n_comparisons",
        (json_int_t)sqlite3_column_int64(st, 5), "guidelines",
        (const char *)sqlite3_column_text(st, 9), "label_schema",
        label_schema ? label_schema : json_null(), "lease_seconds",
        (json_int_t)sqlite3_column_int64(st, 11), "gold_rate", sqlite3_column_double(st, 12),
        "created_at", (json_int_t)sqlite3_column_int64(st, 4));
}

json_t *prefs_project_get(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " PROJECT_COLUMNS " FROM projects WHERE id = ?1", id,
                       project_from_row, found);
}

int64_t prefs_project_insert(sqlite3 *db, const char *name, int64_t k, int64_t overlap) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO projects (name, k, overlap, created_at) VALUES (?1, "
                           "?2, ?3, ?4)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, k);
        sqlite3_bind_int64(st, 3, overlap);
        sqlite3_bind_int64(st, 4, db_now_s());
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    return id;
}

int prefs_project_settings(sqlite3 *db, int64_t id, int64_t *k, int64_t *overlap) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT k, overlap FROM projects WHERE id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *k = sqlite3_column_int64(st, 0), *overlap = sqlite3_column_int64(st, 1);
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ?3: 0 for every project (an admin), else a token id: its projects. */
#define PROJECTS_VISIBLE                                                                           \
    "SELECT " PROJECT_COLUMNS " FROM projects WHERE (?1 = 0 OR id < ?1) AND (?3 = 0 OR id IN "     \
    "(SELECT project_id FROM project_members WHERE token_id = ?3)) "
const prefs_list prefs_projects = {PROJECTS_VISIBLE "AND archived_at IS NULL ORDER BY id DESC "
                                                    "LIMIT ?2",
                                   project_from_row};
const prefs_list prefs_projects_with_archived = {PROJECTS_VISIBLE "ORDER BY id DESC LIMIT ?2",
                                                 project_from_row};

/* ---- comparisons ------------------------------------------------------------------ */

json_t *prefs_comparison_get(sqlite3 *db, int64_t id, int *found) {
    sqlite3_stmt *st = NULL;
    *found = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, project_id, prompt, created_at, n_ranked, retired_at "
                           "IS NOT NULL FROM comparisons WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return NULL;
    }
    json_t *candidates = json_array();
    json_t *c = json_pack(
        "{s:I, s:s, s:I, s:s, s:o, s:I, s:b, s:I}", "id", (json_int_t)id, "object", "comparison",
        "project_id", (json_int_t)sqlite3_column_int64(st, 1), "prompt",
        (const char *)sqlite3_column_text(st, 2), "candidates", candidates, "n_rankings",
        (json_int_t)sqlite3_column_int64(st, 4), "retired", sqlite3_column_int(st, 5) != 0,
        "created_at", (json_int_t)sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db,
                           "SELECT id, text, source, source_checkpoint_id FROM candidates WHERE "
                           "comparison_id = ?1 ORDER BY position",
                           -1, &st, NULL) != SQLITE_OK) {
        json_decref(c);
        *found = -1;
        return NULL;
    }
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(candidates,
                              json_pack("{s:I, s:s, s:s, s:o}", "id",
                                        (json_int_t)sqlite3_column_int64(st, 0), "text",
                                        (const char *)sqlite3_column_text(st, 1), "source",
                                        (const char *)sqlite3_column_text(st, 2), "checkpoint_id",
                                        sqlite3_column_type(st, 3) == SQLITE_NULL
                                            ? json_null()
                                            : json_integer(sqlite3_column_int64(st, 3))));
    sqlite3_finalize(st);
    return c;
}

int64_t prefs_comparison_insert(sqlite3 *db, int64_t project_id, const char *prompt, size_t n,
                                const char *const *texts, const int64_t *checkpoints) {
    sqlite3_stmt *st = db_cached_prepare(db, "INSERT INTO comparisons (project_id, prompt, "
                                             "created_at) VALUES (?1, ?2, ?3)");
    int64_t id = -1;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_text(st, 2, prompt, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now_s());
    if (sqlite3_step(st) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(db);
    db_cached_done(st);
    st = NULL;
    int inserted = id > 0 && (st = db_cached_prepare(db, "INSERT INTO candidates "
                                                         "(comparison_id, position, text, "
                                                         "source, source_checkpoint_id) "
                                                         "VALUES (?1, ?2, ?3, ?4, ?5)")) != NULL;
    for (size_t i = 0; inserted && i < n; i++) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, (int64_t)i);
        sqlite3_bind_text(st, 3, texts[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, checkpoints[i] ? "checkpoint" : "provided", -1, SQLITE_STATIC);
        if (checkpoints[i])
            sqlite3_bind_int64(st, 5, checkpoints[i]);
        else
            sqlite3_bind_null(st, 5);
        inserted = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (st != NULL)
        db_cached_done(st);
    return inserted ? id : -1;
}

static json_t *comparison_item(sqlite3 *db, sqlite3_stmt *st, int64_t project_id) {
    (void)project_id;
    int found;
    return prefs_comparison_get(db, sqlite3_column_int64(st, 0), &found);
}

const prefs_list prefs_comparisons = {
    "SELECT id FROM comparisons WHERE project_id = ?3 AND (?1 = 0 OR id < ?1) "
    "ORDER BY id DESC LIMIT ?2",
    comparison_item};

int prefs_comparison_lease(sqlite3 *db, int64_t id, int64_t token_id, int64_t now_ms,
                           int64_t lease_ms) {
    /* served_ms stays while the annotator's lease lives (asking again is
     * not serving again), so a ranking's time counts from the first serve. */
    sqlite3_stmt *st = db_cached_prepare(
        db, "INSERT INTO comparison_leases (comparison_id, token_id, lease_expires_ms, "
            "served_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET lease_expires_ms = "
            "excluded.lease_expires_ms, served_ms = CASE WHEN lease_expires_ms > ?4 AND "
            "served_ms IS NOT NULL THEN served_ms ELSE ?4 END");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, token_id);
    sqlite3_bind_int64(st, 3, now_ms + lease_ms);
    sqlite3_bind_int64(st, 4, now_ms);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    return ok ? 0 : -1;
}

int prefs_comparison_lease_next(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t overlap,
                                int64_t now_ms, int64_t lease_ms, int64_t *id) {
    /* Walks comparisons_by_rank_count in answer order (schema 007); gold
     * comparisons are served apart (annot_gold_pick). */
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT c.id FROM comparisons c INDEXED BY comparisons_by_rank_count WHERE "
            "c.project_id = ?1 AND c.n_ranked < ?4 AND c.retired_at IS NULL AND c.gold IS NULL AND "
            "NOT EXISTS (SELECT 1 FROM rankings k "
            "WHERE k.comparison_id = c.id AND k.token_id = ?2) AND c.n_ranked + (SELECT "
            "count(*) FROM comparison_leases l WHERE l.comparison_id = c.id AND l.token_id <> ?2 "
            "AND l.lease_expires_ms > ?3) < ?4 ORDER BY c.n_ranked, c.id LIMIT 1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_int64(st, 2, token_id);
    sqlite3_bind_int64(st, 3, now_ms);
    sqlite3_bind_int64(st, 4, overlap);
    int rc = sqlite3_step(st);
    *id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_cached_done(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? 0 : -1;
    return prefs_comparison_lease(db, *id, token_id, now_ms, lease_ms) == 0 ? 1 : -1;
}

int prefs_candidate_ids(sqlite3 *db, int64_t comparison_id, int64_t *ids, size_t *n) {
    /* Only the candidate ids, in position order (a comparison has 2..k). */
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT id FROM candidates WHERE comparison_id = "
                                             "?1 ORDER BY position");
    *n = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, comparison_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (*n < RANKING_MAX_K)
            ids[(*n)++] = sqlite3_column_int64(st, 0);
    db_cached_done(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- rankings --------------------------------------------------------------------- */

static json_t *ranking_order(sqlite3 *db, int64_t ranking_id) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT e.rank, e.candidate_id FROM ranking_entries e "
                                             "JOIN candidates c ON c.id = e.candidate_id WHERE "
                                             "e.ranking_id = ?1 ORDER BY e.rank, c.position");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, ranking_id);
    json_t *order = json_array();
    int64_t last_rank = -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t rank = sqlite3_column_int64(st, 0);
        if (rank != last_rank)
            json_array_append_new(order, json_array());
        last_rank = rank;
        json_array_append_new(json_array_get(order, json_array_size(order) - 1),
                              json_integer(sqlite3_column_int64(st, 1)));
    }
    db_cached_done(st);
    return order;
}

#define RANKING_COLUMNS                                                                            \
    "k.id, k.comparison_id, t.name, k.skipped, k.note, k.created_at, (SELECT count(*) FROM "       \
    "preference_pairs p WHERE p.ranking_id = k.id) FROM rankings k JOIN api_tokens t ON t.id = "   \
    "k.token_id"

json_t *prefs_ranking_json(int64_t id, int64_t comparison_id, const char *annotator, bool skipped,
                           json_t *order, const char *note, int64_t n_pairs, int64_t created_at) {
    return json_pack("{s:I, s:s, s:I, s:s, s:b, s:o, s:o, s:I, s:I}", "id", (json_int_t)id,
                     "object", "ranking", "comparison_id", (json_int_t)comparison_id, "annotator",
                     annotator, "skipped", skipped, "order", order, "note",
                     note ? json_string(note) : json_null(), "n_pairs", (json_int_t)n_pairs,
                     "created_at", (json_int_t)created_at);
}

static json_t *ranking_item(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    json_t *order = ranking_order(db, sqlite3_column_int64(st, 0));
    if (order == NULL)
        return NULL;
    json_t *ranking =
        prefs_ranking_json(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                           (const char *)sqlite3_column_text(st, 2), sqlite3_column_int(st, 3) != 0,
                           order, (const char *)sqlite3_column_text(st, 4),
                           sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 5));
    if (ranking != NULL && annot_ranking_add_extras(db, ranking) != 0) {
        json_decref(ranking);
        return NULL;
    }
    return ranking;
}

const prefs_list prefs_rankings = {"SELECT " RANKING_COLUMNS
                                   " WHERE k.comparison_id = ?3 AND (?1 = 0 OR "
                                   "k.id < ?1) ORDER BY k.id DESC LIMIT ?2",
                                   ranking_item};

json_t *prefs_ranking_get(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " RANKING_COLUMNS " WHERE k.id = ?1", id, ranking_item, found);
}

const prefs_list prefs_my_rankings = {"SELECT " RANKING_COLUMNS
                                      " WHERE k.token_id = ?3 AND (?1 = 0 OR "
                                      "k.id < ?1) ORDER BY k.id DESC LIMIT ?2",
                                      ranking_item};

const prefs_list prefs_my_skips = {"SELECT " RANKING_COLUMNS
                                   " WHERE k.token_id = ?3 AND k.skipped = 1 AND (?1 = 0 OR "
                                   "k.id < ?1) ORDER BY k.id DESC LIMIT ?2",
                                   ranking_item};

/* Steps "INSERT INTO table (cols) VALUES (?, ?, ?), ..." with rows rows of
 * three values (v[3 * i ..]): one statement for the whole ranking instead
 * of one per row. 1 done, 0 failed. */
static int insert_rows(sqlite3 *db, const char *head, const int64_t *v, size_t rows) {
    static const char values[] = " VALUES (?, ?, ?)", more[] = ", (?, ?, ?)";
    char sql[128 + RANKING_MAX_K * (RANKING_MAX_K - 1) / 2 * (sizeof more - 1)];
    const size_t head_len = strlen(head);
    if (rows == 0 || head_len + sizeof values + (rows - 1) * (sizeof more - 1) > sizeof sql)
        return 0;
    memcpy(sql, head, head_len);
    char *end = memcpy(sql + head_len, values, sizeof values - 1);
    end += sizeof values - 1;
    for (size_t i = 1; i < rows; i++, end += sizeof more - 1)
        memcpy(end, more, sizeof more - 1);
    *end = '\0';
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    if (st == NULL)
        return 0;
    for (size_t i = 0; i < 3 * rows; i++)
        sqlite3_bind_int64(st, (int)i + 1, v[i]);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    return ok;
}

/* The entries of ranking id (rank[i] the group of candidate ids[i]) and
 * its pairs: 1 done (*n_pairs), 0 failed. */
static int insert_entries_and_pairs(sqlite3 *db, int64_t id, const int64_t *ids,
                                    const int64_t *rank, size_t n, int64_t *n_pairs) {
    size_t pairs = 0;
    int64_t v[3 * RANKING_MAX_K * (RANKING_MAX_K - 1) / 2] = {0};
    for (size_t i = 0; i < n; i++)
        v[3 * i] = id, v[3 * i + 1] = ids[i], v[3 * i + 2] = rank[i];
    int ok = insert_rows(db, "INSERT INTO ranking_entries (ranking_id, candidate_id, rank)", v, n);
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++)
            if (rank[a] < rank[b])
                v[3 * pairs] = id, v[3 * pairs + 1] = ids[a], v[3 * pairs + 2] = ids[b], pairs++;
    ok = ok && (pairs == 0 || insert_rows(db,
                                          "INSERT INTO preference_pairs (ranking_id, "
                                          "chosen_candidate_id, rejected_candidate_id)",
                                          v, pairs));
    *n_pairs = (int64_t)pairs;
    return ok;
}

/* K-wise -> pairwise: every (better, worse) pair of different ranks. */
int64_t prefs_ranking_insert(sqlite3 *db, int64_t comparison_id, int64_t token_id, bool skip,
                             const char *note, const int64_t *ids, const int64_t *rank, size_t n,
                             const prefs_ranking_extras *extras, int64_t created_at,
                             int64_t *n_pairs) {
    int64_t id = -1;
    sqlite3_stmt *st = db_cached_prepare(
        db,
        "INSERT INTO rankings (comparison_id, token_id, skipped, note, created_at, "
        "shown_order, labels, skip_reason, time_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, comparison_id);
    sqlite3_bind_int64(st, 2, token_id);
    sqlite3_bind_int(st, 3, skip);
    sqlite3_bind_text(st, 4, note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, created_at);
    sqlite3_bind_text(st, 6, extras->shown_order, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, extras->labels, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, extras->skip_reason, -1, SQLITE_STATIC);
    if (extras->time_ms >= 0)
        sqlite3_bind_int64(st, 9, extras->time_ms);
    if (sqlite3_step(st) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(db);
    db_cached_done(st);
    int ok = id > 0 && (skip || insert_entries_and_pairs(db, id, ids, rank, n, n_pairs));
    ok = ok && (st = db_cached_prepare(db, "DELETE FROM comparison_leases WHERE "
                                           "comparison_id = ?1 AND token_id = ?2")) != NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, comparison_id);
        sqlite3_bind_int64(st, 2, token_id);
        ok = sqlite3_step(st) == SQLITE_DONE;
        db_cached_done(st);
    }
    if (skip)
        *n_pairs = 0;
    return ok ? id : -1;
}

int prefs_ranking_replace(sqlite3 *db, int64_t id, bool skip, const char *note, const int64_t *ids,
                          const int64_t *rank, size_t n, int64_t *n_pairs) {
    static const char *const clear[] = {"DELETE FROM preference_pairs WHERE ranking_id = ?1",
                                        "DELETE FROM ranking_entries WHERE ranking_id = ?1"};
    for (size_t i = 0; i < 2; i++) {
        sqlite3_stmt *st = db_cached_prepare(db, clear[i]);
        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, id);
        int ok = sqlite3_step(st) == SQLITE_DONE;
        db_cached_done(st);
        if (!ok)
            return -1;
    }
    sqlite3_stmt *st =
        db_cached_prepare(db, "UPDATE rankings SET skipped = ?2, note = ?3 WHERE id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, skip);
    sqlite3_bind_text(st, 3, note, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    *n_pairs = 0;
    return ok && (skip || insert_entries_and_pairs(db, id, ids, rank, n, n_pairs)) ? 0 : -1;
}

int prefs_answer_state_get(sqlite3 *db, int64_t comparison_id, int64_t token_id, int64_t now_ms,
                           prefs_answer_state *s) {
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT (SELECT count(*) FROM rankings WHERE comparison_id = ?1 AND token_id = ?2), "
            "(SELECT count(*) FROM rankings WHERE comparison_id = ?1 AND skipped = 0), "
            "(SELECT count(*) FROM comparison_leases WHERE comparison_id = ?1 AND token_id = ?2 "
            "AND lease_expires_ms > ?3), (SELECT p.overlap FROM comparisons c JOIN projects p ON "
            "p.id = c.project_id WHERE c.id = ?1), (SELECT name FROM api_tokens WHERE id = ?2)");
    s->annotator = NULL;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, comparison_id);
    sqlite3_bind_int64(st, 2, token_id);
    sqlite3_bind_int64(st, 3, now_ms);
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 4) == SQLITE_TEXT;
    s->mine = sqlite3_column_int64(st, 0), s->ranked = sqlite3_column_int64(st, 1);
    s->leased = sqlite3_column_int64(st, 2), s->overlap = sqlite3_column_int64(st, 3);
    s->annotator = ok ? strdup((const char *)sqlite3_column_text(st, 4)) : NULL;
    db_cached_done(st);
    return s->annotator != NULL ? 0 : -1;
}

/* ---- preference pairs ------------------------------------------------------------- */

static json_t *pair_item(sqlite3 *db, sqlite3_stmt *st, int64_t project_id) {
    (void)db, (void)project_id;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "preference_pair",
                     "comparison_id", (json_int_t)sqlite3_column_int64(st, 1), "ranking_id",
                     (json_int_t)sqlite3_column_int64(st, 2), "annotator",
                     (const char *)sqlite3_column_text(st, 3), "prompt",
                     (const char *)sqlite3_column_text(st, 4), "chosen",
                     (const char *)sqlite3_column_text(st, 5), "rejected",
                     (const char *)sqlite3_column_text(st, 6), "chosen_candidate_id",
                     (json_int_t)sqlite3_column_int64(st, 7), "rejected_candidate_id",
                     (json_int_t)sqlite3_column_int64(st, 8), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 9));
}

const prefs_list prefs_pairs = {
    "SELECT p.id, k.comparison_id, p.ranking_id, t.name, c.prompt, ch.text, "
    "rj.text, p.chosen_candidate_id, p.rejected_candidate_id, k.created_at "
    "FROM preference_pairs p JOIN rankings k ON k.id = p.ranking_id "
    "JOIN comparisons c ON c.id = k.comparison_id "
    "JOIN api_tokens t ON t.id = k.token_id "
    "JOIN candidates ch ON ch.id = p.chosen_candidate_id "
    "JOIN candidates rj ON rj.id = p.rejected_candidate_id "
    "WHERE c.project_id = ?3 AND (?1 = 0 OR p.id < ?1) "
    "ORDER BY p.id DESC LIMIT ?2",
    pair_item};

/* ---- JSONL exports ---------------------------------------------------------------- */

/* A ranking's line: the comparison, its candidates' texts, who, the order
 * (groups of candidate ids, best first; [] for a skip), skip and note. */
static json_t *export_ranking(sqlite3 *db, sqlite3_stmt *st) {
    int64_t id = sqlite3_column_int64(st, 0), comparison = sqlite3_column_int64(st, 1);
    json_t *order = ranking_order(db, id);
    json_t *candidates = json_array();
    sqlite3_stmt *cs = db_cached_prepare(db, "SELECT id, text FROM candidates WHERE "
                                             "comparison_id = ?1 ORDER BY position");
    if (order == NULL || cs == NULL) {
        json_decref(order), json_decref(candidates);
        if (cs)
            db_cached_done(cs);
        return NULL;
    }
    sqlite3_bind_int64(cs, 1, comparison);
    while (sqlite3_step(cs) == SQLITE_ROW)
        json_array_append_new(candidates,
                              json_pack("{s:I, s:s}", "id", (json_int_t)sqlite3_column_int64(cs, 0),
                                        "text", (const char *)sqlite3_column_text(cs, 1)));
    db_cached_done(cs);
    json_t *line = json_pack("{s:I, s:I, s:s, s:o, s:s, s:o, s:b, s:o, s:I}", "ranking_id",
                             (json_int_t)id, "comparison_id", (json_int_t)comparison, "prompt",
                             (const char *)sqlite3_column_text(st, 2), "candidates", candidates,
                             "annotator", (const char *)sqlite3_column_text(st, 3), "order", order,
                             "skipped", sqlite3_column_int(st, 4) != 0, "note",
                             sqlite3_column_type(st, 5) == SQLITE_NULL
                                 ? json_null()
                                 : json_string((const char *)sqlite3_column_text(st, 5)),
                             "created_at", (json_int_t)sqlite3_column_int64(st, 6));
    /* labels, skip_reason, shown_order, time_ms, updated_at (schema 016) */
    json_object_set_new(line, "id", json_integer(id));
    int ok = line != NULL && annot_ranking_add_extras(db, line) == 0;
    json_object_del(line, "id");
    json_object_del(line, "project_id");
    if (!ok) {
        json_decref(line);
        return NULL;
    }
    return line;
}

int prefs_export_chunk(sqlite3 *db, int64_t project_id, int64_t *last_id, int max_rows,
                       size_t max_bytes, textbuf *out, bool *ended) {
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT k.id, k.comparison_id, c.prompt, t.name, k.skipped, k.note, k.created_at "
            "FROM rankings k JOIN comparisons c ON c.id = k.comparison_id JOIN api_tokens t ON "
            "t.id = k.token_id WHERE c.project_id = ?1 AND k.id > ?2 AND NOT "
            "EXISTS (SELECT 1 FROM project_excluded_annotators x WHERE x.project_id = "
            "c.project_id AND x.token_id = k.token_id) ORDER BY k.id LIMIT ?3");
    int ok = st != NULL && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    int rc = SQLITE_DONE, n = 0;
    if (ok) {
        sqlite3_bind_int64(st, 1, project_id);
        sqlite3_bind_int64(st, 2, *last_id);
        sqlite3_bind_int(st, 3, max_rows);
        while (ok && out->len < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            *last_id = sqlite3_column_int64(st, 0);
            n++;
            ok = export_json_line(out, export_ranking(db, st)) == 0;
        }
        ok = ok && (rc == SQLITE_DONE || rc == SQLITE_ROW);
    }
    if (st)
        db_cached_done(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    *ended = n < max_rows && rc == SQLITE_DONE;
    return ok ? 0 : -1;
}

/* ---- agreement -------------------------------------------------------------------- */

int prefs_rankings_last_id(sqlite3 *db, int64_t *id) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT coalesce(max(id), 0) FROM ranking_changes");
    const int ok = st != NULL && sqlite3_step(st) == SQLITE_ROW;
    *id = ok ? sqlite3_column_int64(st, 0) : 0;
    db_cached_done(st);
    return ok ? 0 : -1;
}

int prefs_project_ranked_between(sqlite3 *db, int64_t project_id, int64_t after, int64_t upto) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT 1 FROM ranking_changes WHERE id > ?1 AND id "
                                             "<= ?2 AND project_id = ?3 LIMIT 1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    sqlite3_bind_int64(st, 3, project_id);
    const int rc = sqlite3_step(st);
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int prefs_agreement_read(sqlite3 *db, int64_t project_id, bool with_excluded, agreement *a,
                         prefs_agreement_counts *c, json_t **names, int64_t *last_ranking_id) {
    /* Every ranking entry of the project, comparison by comparison (but
     * those of excluded annotators unless with_excluded); a skip is one
     * row with a NULL position. A read transaction: one snapshot. */
    *c = (prefs_agreement_counts){0};
    *names = json_array();
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        prefs_rankings_last_id(db, last_ranking_id) != 0 ||
        sqlite3_prepare_v2(db,
                           "SELECT c.id, (SELECT count(*) FROM candidates x WHERE "
                           "x.comparison_id = c.id), k.id, k.token_id, k.skipped, cd.position, "
                           "e.rank FROM comparisons c JOIN rankings k ON k.comparison_id = c.id "
                           "LEFT JOIN ranking_entries e ON e.ranking_id = k.id LEFT JOIN "
                           "candidates cd ON cd.id = e.candidate_id WHERE c.project_id = ?1 "
                           "AND (?2 OR NOT EXISTS (SELECT 1 FROM project_excluded_annotators x "
                           "WHERE x.project_id = ?1 AND x.token_id = k.token_id)) ORDER BY "
                           "c.id, k.id",
                           -1, &st, NULL) != SQLITE_OK) {
        db_rollback(db);
        return -1;
    }
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_int(st, 2, with_excluded);
    agreement_ranking *rk = NULL;
    size_t m = 0, cap = 0;
    int64_t comparison = 0, ranking = 0;
    int n = 0, ok = 1, rc;
    while (ok && (rc = sqlite3_step(st)) != SQLITE_DONE) {
        int64_t cid = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        if (rc != SQLITE_ROW) {
            ok = 0;
            break;
        }
        if (cid != comparison) { /* the previous comparison is complete */
            if (m > 0)
                ok = agreement_add_comparison(a, n, rk, m) == 0;
            c->comparisons_ranked += m > 0;
            m = 0, comparison = cid, n = sqlite3_column_int(st, 1);
        }
        int64_t k = sqlite3_column_int64(st, 2), token = sqlite3_column_int64(st, 3);
        if (sqlite3_column_int(st, 4)) {
            ok = ok && agreement_add_skip(a, token) == 0;
            c->skipped++;
            continue;
        }
        if (k != ranking) {
            if (m == cap) {
                cap = cap ? 2 * cap : 16;
                agreement_ranking *grown = realloc(rk, cap * sizeof *rk);
                if (grown == NULL) {
                    ok = 0;
                    break;
                }
                rk = grown;
            }
            memset(&rk[m], 0, sizeof rk[m]);
            rk[m++].annotator = token;
            ranking = k;
            c->rankings++;
        }
        int pos = sqlite3_column_int(st, 5);
        if (pos >= 0 && pos < RANKING_MAX_K)
            rk[m - 1].group[pos] = sqlite3_column_int(st, 6);
    }
    if (ok && m > 0)
        ok = agreement_add_comparison(a, n, rk, m) == 0;
    c->comparisons_ranked += m > 0;
    sqlite3_finalize(st);
    free(rk);
    sqlite3_stmt *name = NULL;
    if (ok && sqlite3_prepare_v2(db, "SELECT name FROM api_tokens WHERE id = ?1", -1, &name,
                                 NULL) != SQLITE_OK)
        ok = 0;
    for (size_t i = 0; ok && i < a->n_annotators; i++) {
        sqlite3_bind_int64(name, 1, a->annotators[i].annotator);
        json_array_append_new(*names, json_string(sqlite3_step(name) == SQLITE_ROW
                                                      ? (const char *)sqlite3_column_text(name, 0)
                                                      : ""));
        sqlite3_reset(name);
    }
    sqlite3_finalize(name);
    db_rollback(db);
    if (!ok) {
        json_decref(*names);
        *names = NULL;
    }
    return ok ? 0 : -1;
}
