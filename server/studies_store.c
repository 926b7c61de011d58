/* See studies_store.h. */
#include "studies_store.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* ---- writing (in the create transaction) ----------------------------------- */

int64_t studies_store_insert(sqlite3 *db, const study_new *study) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO studies (name, job_type, metric, goal, spec, created_at, "
                           "created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, study->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, study->job_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, study->metric, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, study->goal, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, study->spec, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, db_now_s());
    if (study->created_by > 0)
        sqlite3_bind_int64(st, 7, study->created_by);
    if (sqlite3_step(st) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(db);
    sqlite3_finalize(st);
    return id;
}

int studies_store_add_variation(sqlite3 *db, int64_t study, int64_t variation, const char *label,
                                const char *hyperparameters_json) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO study_variations (study_id, variation, label, "
                           "hyperparameters) VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, study);
    sqlite3_bind_int64(st, 2, variation);
    sqlite3_bind_text(st, 3, label, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hyperparameters_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int studies_store_add_job(sqlite3 *db, int64_t study, int64_t variation, int64_t seed,
                          int64_t job_id) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO study_jobs (study_id, variation, seed, job_id) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, study);
    sqlite3_bind_int64(st, 2, variation);
    sqlite3_bind_int64(st, 3, seed);
    sqlite3_bind_int64(st, 4, job_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- status ------------------------------------------------------------------ */

static const char *const job_statuses[] = {"queued",    "validating_files", "running",
                                           "succeeded", "failed",           "cancelled"};
enum { N_STATUSES = 6 };

/* The study's status from its jobs' counts (job_statuses order): queued
 * while no job has started or ended, running while any is unfinished; once
 * all ended: succeeded if all did, else cancelled if any was cancelled,
 * else failed. */
static const char *study_status(const int64_t counts[N_STATUSES]) {
    const int64_t queued = counts[0], started = counts[1] + counts[2];
    const int64_t ended = counts[3] + counts[4] + counts[5];
    if (queued + started > 0)
        return started + ended > 0 ? "running" : "queued";
    return counts[4] + counts[5] == 0 ? "succeeded" : counts[5] > 0 ? "cancelled" : "failed";
}

/* Adds "status" and "job_counts" of study id to obj. 0 or -1. */
static int add_status(sqlite3 *db, int64_t id, json_t *obj) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT j.status, count(*) FROM study_jobs sj JOIN jobs j ON j.id = "
                           "sj.job_id WHERE sj.study_id = ?1 GROUP BY j.status",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int64_t counts[N_STATUSES] = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        for (int i = 0; i < N_STATUSES; i++)
            if (strcmp((const char *)sqlite3_column_text(st, 0), job_statuses[i]) == 0)
                counts[i] = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return -1;
    json_t *by = json_object();
    for (int i = 0; i < N_STATUSES; i++)
        json_object_set_new(by, job_statuses[i], json_integer(counts[i]));
    json_object_set_new(obj, "status", json_string(study_status(counts)));
    json_object_set_new(obj, "job_counts", by);
    return 0;
}

/* ---- the study object ---------------------------------------------------------- */

json_t *studies_store_row_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    const int64_t id = sqlite3_column_int64(st, 0);
    json_t *spec = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
    json_t *out = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:O*, s:O*, s:I}", "id", (json_int_t)id,
                            "object", "study", "name", (const char *)sqlite3_column_text(st, 1),
                            "type", (const char *)sqlite3_column_text(st, 2), "metric",
                            (const char *)sqlite3_column_text(st, 3), "goal",
                            (const char *)sqlite3_column_text(st, 4), "base",
                            json_object_get(spec, "base"), "seeds", json_object_get(spec, "seeds"),
                            "created_at", (json_int_t)sqlite3_column_int64(st, 6));
    json_decref(spec);
    if (out != NULL && add_status(db, id, out) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* Mean and sample standard deviation (n - 1; null below 2 values) of
 * x[0..n) as "<name>_mean" and "<name>_std" of row; nulls when n is 0. */
static void add_mean_std(json_t *row, const char *name, const double *x, int n) {
    double mean = 0, ss = 0;
    for (int i = 0; i < n; i++)
        mean += x[i] / n;
    for (int i = 0; i < n; i++)
        ss += (x[i] - mean) * (x[i] - mean);
    char key[64];
    snprintf(key, sizeof key, "%s_mean", name);
    json_object_set_new(row, key, n > 0 ? json_real(mean) : json_null());
    snprintf(key, sizeof key, "%s_std", name);
    json_object_set_new(row, key, n > 1 ? json_real(sqrt(ss / (n - 1))) : json_null());
}

/* One variation's runs, gathered for its summary row. */
typedef struct variation_runs {
    int n, cap;
    double *final, *best, *wall_s;
} variation_runs;

static int runs_push(variation_runs *v, double final, double best, double wall_s) {
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 16;
        double *f = realloc(v->final, cap * sizeof *f);
        if (f != NULL)
            v->final = f;
        double *b = realloc(v->best, cap * sizeof *b);
        if (b != NULL)
            v->best = b;
        double *w = realloc(v->wall_s, cap * sizeof *w);
        if (w != NULL)
            v->wall_s = w;
        if (f == NULL || b == NULL || w == NULL)
            return -1;
        v->cap = cap;
    }
    v->final[v->n] = final, v->best[v->n] = best, v->wall_s[v->n] = wall_s;
    v->n++;
    return 0;
}

/* The summary row of one variation: over its succeeded runs that logged
 * the metric, mean and std of the final value (at the last step), of the
 * best value (max or min over the steps, by goal) and of the wall time. */
static json_t *summary_row(json_t *variation, variation_runs *v) {
    json_t *row = json_pack("{s:O, s:O, s:i}", "variation", json_object_get(variation, "variation"),
                            "label", json_object_get(variation, "label"), "runs", v->n);
    add_mean_std(row, "final", v->final, v->n);
    add_mean_std(row, "best", v->best, v->n);
    add_mean_std(row, "wall_s", v->wall_s, v->n);
    free(v->final), free(v->best), free(v->wall_s);
    memset(v, 0, sizeof *v);
    return row;
}

/* Adds "variations", "jobs" and "summary" of study id to out. 0 or -1. */
static int add_jobs_and_summary(sqlite3 *db, int64_t id, const char *metric, bool maximize,
                                json_t *out) {
    json_t *variations = json_array(), *jobs = json_array(), *summary = json_array();
    json_object_set_new(out, "variations", variations);
    json_object_set_new(out, "jobs", jobs);
    json_object_set_new(out, "summary", summary);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT variation, label, hyperparameters FROM study_variations "
                           "WHERE study_id = ?1 ORDER BY variation",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(
            variations,
            json_pack("{s:I, s:s, s:o*}", "variation", (json_int_t)sqlite3_column_int64(st, 0),
                      "label", (const char *)sqlite3_column_text(st, 1), "hyperparameters",
                      json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL)));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return -1;
    /* Per job: the value at its last step, and its best value. */
    if (sqlite3_prepare_v2(
            db,
            "SELECT sj.variation, sj.seed, sj.job_id, j.status, j.started_at, j.finished_at, "
            "(SELECT value FROM metrics m WHERE m.job_id = sj.job_id AND m.name = ?2 "
            " ORDER BY step DESC LIMIT 1), "
            "(SELECT CASE WHEN ?3 THEN max(value) ELSE min(value) END FROM metrics m "
            " WHERE m.job_id = sj.job_id AND m.name = ?2) "
            "FROM study_jobs sj JOIN jobs j ON j.id = sj.job_id WHERE sj.study_id = ?1 "
            "ORDER BY sj.variation, sj.seed",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, metric, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, maximize);
    variation_runs runs = {0};
    int64_t current = 0;
    int failed = 0;
    while (!failed && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int64_t variation = sqlite3_column_int64(st, 0);
        const char *status = (const char *)sqlite3_column_text(st, 3);
        const bool has_final = sqlite3_column_type(st, 6) != SQLITE_NULL;
        json_array_append_new(
            jobs,
            json_pack("{s:I, s:I, s:I, s:s, s:o, s:o}", "id",
                      (json_int_t)sqlite3_column_int64(st, 2), "variation", (json_int_t)variation,
                      "seed", (json_int_t)sqlite3_column_int64(st, 1), "status", status, "final",
                      has_final ? json_real(sqlite3_column_double(st, 6)) : json_null(), "best",
                      has_final ? json_real(sqlite3_column_double(st, 7)) : json_null()));
        while (current < variation && (size_t)current < json_array_size(variations))
            json_array_append_new(summary,
                                  summary_row(json_array_get(variations, current++), &runs));
        if (strcmp(status, "succeeded") == 0 && has_final)
            failed = runs_push(&runs, sqlite3_column_double(st, 6), sqlite3_column_double(st, 7),
                               (double)(sqlite3_column_int64(st, 5) - sqlite3_column_int64(st, 4)));
    }
    sqlite3_finalize(st);
    while ((size_t)current < json_array_size(variations))
        json_array_append_new(summary, summary_row(json_array_get(variations, current++), &runs));
    free(runs.final), free(runs.best), free(runs.wall_s);
    return !failed && rc == SQLITE_DONE ? 0 : -1;
}

json_t *studies_store_load(sqlite3 *db, int64_t id, int *found) {
    json_t *out = db_load_row(db, "SELECT " STUDIES_STORE_COLUMNS " FROM studies WHERE id = ?1", id,
                              studies_store_row_json, found);
    if (out == NULL) {
        if (*found == 1)
            *found = -1;
        return NULL;
    }
    const char *metric = json_string_value(json_object_get(out, "metric"));
    const bool maximize = strcmp(json_string_value(json_object_get(out, "goal")), "max") == 0;
    if (add_jobs_and_summary(db, id, metric, maximize, out) != 0) {
        json_decref(out);
        *found = -1;
        return NULL;
    }
    return out;
}

int studies_store_job_ids(sqlite3 *db, int64_t id, int64_t **ids) {
    sqlite3_stmt *st = NULL;
    *ids = NULL;
    if (sqlite3_prepare_v2(db, "SELECT job_id FROM study_jobs WHERE study_id = ?1 ORDER BY job_id",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            int64_t *grown = realloc(*ids, cap * sizeof *grown);
            if (grown == NULL)
                break;
            *ids = grown;
        }
        (*ids)[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    return n;
}

/* ---- curves ---------------------------------------------------------------------- */

json_t *studies_store_curves(sqlite3 *db, int64_t id, const char *metric) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT v.variation, v.label, m.step, avg(m.value), min(m.value), "
                           "max(m.value), count(m.value) FROM study_variations v "
                           "LEFT JOIN study_jobs sj ON sj.study_id = v.study_id AND "
                           "sj.variation = v.variation LEFT JOIN metrics m ON m.job_id = "
                           "sj.job_id AND m.name = ?2 WHERE v.study_id = ?1 "
                           "GROUP BY v.variation, m.step ORDER BY v.variation, m.step",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, metric, -1, SQLITE_STATIC);
    json_t *variations = json_array(), *steps = NULL;
    int64_t current = -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int64_t variation = sqlite3_column_int64(st, 0);
        if (variation != current) {
            steps = json_array();
            json_array_append_new(variations,
                                  json_pack("{s:I, s:s, s:o}", "variation", (json_int_t)variation,
                                            "label", (const char *)sqlite3_column_text(st, 1),
                                            "steps", steps));
            current = variation;
        }
        if (sqlite3_column_int64(st, 6) == 0) /* no job of the variation logged the metric */
            continue;
        json_array_append_new(steps, json_pack("{s:I, s:f, s:f, s:f, s:I}", "step",
                                               (json_int_t)sqlite3_column_int64(st, 2), "mean",
                                               sqlite3_column_double(st, 3), "min",
                                               sqlite3_column_double(st, 4), "max",
                                               sqlite3_column_double(st, 5), "n",
                                               (json_int_t)sqlite3_column_int64(st, 6)));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(variations);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:o}", "object", "study.curves", "metric", metric, "variations",
                     variations);
}
