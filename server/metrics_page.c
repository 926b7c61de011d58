#include "metrics_page.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json_text.h"
#include "reply.h"

/* ---- rows ------------------------------------------------------------------ */

/* One metrics row, for sorting the rows of several names into steps. */
typedef struct metric_row {
    int64_t step;
    const char *name; /* in names */
    double value;
    bool null;
} metric_row;

static int metric_row_cmp(const void *a, const void *b) {
    const metric_row *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* With names, each name is one range scan of the primary key (job_id, name,
 * step) with LIMIT limit + 1 (a step has at most one row per name, so the
 * first limit + 1 steps are among those rows), merged here: a page costs
 * O(names x limit) whatever the series length. Sorted by (step, name);
 * SQLITE_DONE on success. */
static int collect_rows(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                        const json_t *names, metric_row **out, size_t *count) {
    metric_row *rows = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT step, name, value FROM metrics WHERE "
                                             "job_id = ?1 AND name = ?2 AND step > ?3 "
                                             "ORDER BY step LIMIT ?4");
    int rc = st ? SQLITE_DONE : SQLITE_ERROR;
    size_t i;
    json_t *name;
    json_array_foreach((json_t *)names, i, name) {
        if (rc != SQLITE_OK && rc != SQLITE_DONE)
            break;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_text(st, 2, json_string_value(name), -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, after_step);
        sqlite3_bind_int64(st, 4, limit + 1);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                metric_row *grown = realloc(rows, cap * sizeof *rows);
                if (grown == NULL) {
                    rc = SQLITE_NOMEM;
                    break;
                }
                rows = grown;
            }
            rows[n++] = (metric_row){sqlite3_column_int64(st, 0), json_string_value(name),
                                     sqlite3_column_double(st, 2),
                                     sqlite3_column_type(st, 2) == SQLITE_NULL};
        }
    }
    if (st != NULL)
        db_cached_done(st);
    if (rc != SQLITE_DONE) {
        free(rows);
        return rc;
    }
    if (n > 1) /* qsort(NULL, 0) is undefined */
        qsort(rows, n, sizeof *rows, metric_row_cmp);
    *out = rows, *count = n;
    return SQLITE_DONE;
}

/* ---- the general path ------------------------------------------------------ */

/* Up to limit + 1 whole steps after after_step, oldest first, as
 * [{step, metrics: {name: value}}]; NULL on a database error. Without
 * names, the (job_id, step) index is walked until limit + 1 steps are
 * complete. */
static json_t *page_data(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                         const json_t *names) {
    metric_row *rows = NULL;
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_DONE;
    if (names != NULL &&
        collect_rows(db, job_id, after_step, limit, names, &rows, &n) != SQLITE_DONE)
        return NULL;
    json_t *data = json_array();
    json_t *current = NULL;
    int64_t current_step = 0;
    if (names == NULL) {
        rc = sqlite3_prepare_v2(db,
                                "SELECT step, name, value FROM metrics WHERE job_id = ?1 AND "
                                "step > ?2 ORDER BY step, name",
                                -1, &st, NULL);
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_int64(st, 2, after_step);
    }
    for (size_t i = 0;; i++) {
        metric_row row;
        if (names != NULL) {
            if (i == n)
                break;
            row = rows[i];
        } else {
            if (rc != SQLITE_OK && rc != SQLITE_ROW)
                break;
            if ((rc = sqlite3_step(st)) != SQLITE_ROW)
                break;
            row = (metric_row){
                sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                sqlite3_column_double(st, 2), sqlite3_column_type(st, 2) == SQLITE_NULL};
        }
        if (current == NULL || row.step != current_step) {
            if ((int64_t)json_array_size(data) == limit + 1)
                break;
            current = json_object();
            current_step = row.step;
            json_array_append_new(
                data, json_pack("{s:I, s:o}", "step", (json_int_t)row.step, "metrics", current));
        }
        json_object_set_new(current, row.name, row.null ? json_null() : json_real(row.value));
    }
    free(rows);
    if (names == NULL) {
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            json_decref(data);
            return NULL;
        }
    }
    /* the limit + 1-th step may be incomplete: it only signals has_more */
    return data;
}

int metrics_page_json(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                      const json_t *names, char **out, size_t *len) {
    json_t *data = page_data(db, job_id, after_step, limit, names);
    if (data == NULL)
        return -1;
    bool has_more = json_array_size(data) > (size_t)limit;
    if (has_more)
        json_array_remove(data, (size_t)limit);
    json_t *body = http_list(data, has_more, "step");
    char *text = json_dumps(body, HTTP_JSON_DUMP_FLAGS);
    json_decref(body);
    if (text == NULL)
        return -1;
    size_t n = strlen(text);
    char *grown = realloc(text, n + 2);
    if (grown == NULL) {
        free(text);
        return -1;
    }
    grown[n] = '\n';
    grown[n + 1] = '\0';
    *out = grown, *len = n + 1;
    return 0;
}

/* ---- the fast path --------------------------------------------------------- */

static void put_value(textbuf *b, const metric_row *row) {
    if (row->null) {
        textbuf_put(b, "null", 4);
        return;
    }
    char real[32];
    textbuf_put(b, real, (size_t)json_real_text(row->value, real));
}

#define LIST_OPEN "{\"object\":\"list\",\"data\":["

/* Closes the list b opened with LIST_OPEN and its items. */
static int finish_list(textbuf *b, size_t n_items, int64_t first, int64_t last, bool has_more,
                       char **out, size_t *len) {
    textbuf_puts(b, "],\"first_step\":");
    if (n_items > 0)
        textbuf_int(b, first);
    else
        textbuf_puts(b, "null");
    textbuf_puts(b, ",\"last_step\":");
    if (n_items > 0)
        textbuf_int(b, last);
    else
        textbuf_puts(b, "null");
    textbuf_puts(b, has_more ? ",\"has_more\":true}\n" : ",\"has_more\":false}\n");
    if (b->failed) {
        free(b->p);
        return -1;
    }
    *out = b->p, *len = b->len;
    return 0;
}

int metrics_page_fast(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                      const json_t *names, char **out, size_t *len) {
    if (names == NULL)
        return 0; /* every name: the general path walks the step index */
    size_t i;
    json_t *name;
    json_array_foreach((json_t *)names, i, name) {
        if (!json_plain_string(json_string_value(name), json_string_length(name)))
            return 0;
    }
    metric_row *rows = NULL;
    size_t n = 0;
    if (collect_rows(db, job_id, after_step, limit, names, &rows, &n) != SQLITE_DONE)
        return -1;
    for (i = 0; i < n; i++)
        if (!rows[i].null && !isfinite(rows[i].value)) {
            free(rows);
            return 0; /* jansson leaves such a key out; so does the general path */
        }
    textbuf items = {0};
    textbuf_puts(&items, LIST_OPEN);
    size_t steps = 0;
    int64_t first = 0, last = 0;
    bool has_more = false;
    for (i = 0; i < n; i++) {
        const metric_row *row = &rows[i];
        bool new_step = i == 0 || row->step != rows[i - 1].step;
        if (new_step) {
            if ((int64_t)steps == limit) {
                has_more = true;
                break;
            }
            if (steps > 0)
                textbuf_put(&items, "}},", 3);
            textbuf_put(&items, "{\"step\":", 8);
            textbuf_int(&items, row->step);
            textbuf_put(&items, ",\"metrics\":{", 12);
            if (steps == 0)
                first = row->step;
            last = row->step;
            steps++;
        } else if (strcmp(row->name, rows[i - 1].name) == 0) {
            continue; /* names listed twice: one key, as in a JSON object */
        } else {
            textbuf_put(&items, ",", 1);
        }
        textbuf_put(&items, "\"", 1);
        textbuf_puts(&items, row->name);
        textbuf_put(&items, "\":", 2);
        put_value(&items, row);
    }
    if (steps > 0)
        textbuf_put(&items, "}}", 2);
    free(rows);
    return finish_list(&items, steps, first, last, has_more, out, len) == 0 ? 1 : -1;
}

/* ---- a job's series --------------------------------------------------------- */

static void series_account(metrics_series *s) {
    s->bytes = sizeof *s + s->text.cap + s->cap * (sizeof *s->steps + sizeof *s->off) +
               (s->name ? strlen(s->name) + 1 : 0);
}

/* Room for n more steps: 0, or -1 out of memory (s unchanged). */
static int series_reserve(metrics_series *s, size_t more) {
    if (s->off == NULL || s->n + more > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->n + more)
            cap *= 2;
        int64_t *steps = realloc(s->steps, cap * sizeof *steps);
        if (steps == NULL)
            return -1;
        s->steps = steps;
        size_t *off = realloc(s->off, (cap + 1) * sizeof *off);
        if (off == NULL)
            return -1;
        if (s->off == NULL)
            off[0] = 0;
        s->off = off, s->cap = cap;
    }
    return 0;
}

/* Appends one step after the last: 1, 0 not finite (nothing appended), -1
 * out of memory. */
static int series_push(metrics_series *s, const metric_row *row) {
    if (!row->null && !isfinite(row->value))
        return 0;
    if (series_reserve(s, 1) != 0)
        return -1;
    textbuf *t = &s->text;
    textbuf_put(t, "{\"step\":", 8);
    textbuf_int(t, row->step);
    textbuf_put(t, ",\"metrics\":{\"", 13);
    textbuf_puts(t, row->name);
    textbuf_put(t, "\":", 2);
    put_value(t, row);
    textbuf_put(t, "}}", 2);
    if (t->failed)
        return -1;
    s->steps[s->n++] = row->step;
    s->off[s->n] = t->len;
    return 1;
}

int metrics_series_fetch(sqlite3 *db, int64_t job_id, const char *name, bool all,
                         int64_t after_step, metrics_series *tail, char *status, int64_t *epoch) {
    memset(tail, 0, sizeof *tail);
    tail->job_id = job_id;
    /* One statement: the job row and the rows after after_step come from
     * one read snapshot, so a worker's commit is seen whole or not at all.
     * The plan is a rowid lookup of the job, then a range of the primary
     * key (job_id, name, step): rows come in step order without a sort. */
    sqlite3_stmt *st = db_cached_prepare(
        db, all ? "SELECT j.status, j.metrics_epoch, m.step, m.value FROM jobs AS j "
                  "LEFT JOIN metrics AS m ON m.job_id = j.id AND m.name = ?2 "
                  "WHERE j.id = ?1 ORDER BY m.step"
                : "SELECT j.status, j.metrics_epoch, m.step, m.value FROM jobs AS j "
                  "LEFT JOIN metrics AS m ON m.job_id = j.id AND m.name = ?2 AND m.step > ?3 "
                  "WHERE j.id = ?1 ORDER BY m.step");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (!all)
        sqlite3_bind_int64(st, 3, after_step);
    int rc, ok = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (ok == 0) {
            snprintf(status, 16, "%s", (const char *)sqlite3_column_text(st, 0));
            *epoch = sqlite3_column_int64(st, 1);
            ok = 1;
        }
        if (sqlite3_column_type(st, 2) == SQLITE_NULL)
            break; /* the job has no rows here (LEFT JOIN's one row) */
        metric_row row = {sqlite3_column_int64(st, 2), name, sqlite3_column_double(st, 3),
                          sqlite3_column_type(st, 3) == SQLITE_NULL};
        if (ok == 1 && tail->n > 0 && row.step <= tail->steps[tail->n - 1]) {
            ok = -1; /* cannot happen: the primary key orders them */
            break;
        }
        int pushed = series_push(tail, &row);
        if (pushed <= 0) {
            ok = pushed == 0 ? 2 : -1;
            break;
        }
    }
    if (ok >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        ok = -1;
    db_cached_done(st);
    if (ok == 1 && series_reserve(tail, 0) != 0) /* off[0] exists even when empty */
        ok = -1;
    if (ok <= 0)
        metrics_series_free(tail);
    else
        series_account(tail);
    return ok;
}

int metrics_series_load(sqlite3 *db, int64_t job_id, const char *name, metrics_series *s) {
    memset(s, 0, sizeof *s);
    if (!json_plain_string(name, strlen(name)))
        return 0;
    char status[16];
    int64_t epoch;
    int rc = metrics_series_fetch(db, job_id, name, true, 0, s, status, &epoch);
    if (rc == 0) /* no such job: no rows, as its pages say */
        rc = series_reserve(s, 0) == 0 ? 1 : -1;
    s->job_id = job_id;
    if (rc == 1 && (s->name = strdup(name)) == NULL)
        rc = -1;
    if (rc != 1) {
        metrics_series_free(s);
        return rc == 2 ? 0 : -1;
    }
    series_account(s);
    return 1;
}

int metrics_series_append(metrics_series *s, const metrics_series *tail) {
    size_t from = 0; /* tail's first step after s's last */
    if (s->n > 0)
        while (from < tail->n && tail->steps[from] <= s->steps[s->n - 1])
            from++;
    size_t more = tail->n - from;
    if (more == 0)
        return 0;
    if (series_reserve(s, more) != 0)
        return -1;
    size_t base = s->text.len, start = tail->off[from];
    textbuf_put(&s->text, tail->text.p + start, tail->off[tail->n] - start);
    if (s->text.failed) {
        s->text.failed = false; /* textbuf_put leaves the buffer as it was */
        return -1;
    }
    for (size_t i = from; i < tail->n; i++) {
        s->steps[s->n] = tail->steps[i];
        s->off[++s->n] = base + (tail->off[i + 1] - start);
    }
    series_account(s);
    return 0;
}

void metrics_series_free(metrics_series *s) {
    free(s->name);
    free(s->steps);
    free(s->off);
    free(s->text.p);
    memset(s, 0, sizeof *s);
}

int metrics_series_page(const metrics_series *s, int64_t after_step, int64_t limit, char **out,
                        size_t *len) {
    size_t lo = 0, hi = s->n; /* the first step > after_step */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->steps[mid] <= after_step)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = s->n - lo > (size_t)limit ? lo + (size_t)limit : s->n;
    textbuf items = {0};
    textbuf_puts(&items, LIST_OPEN);
    for (size_t i = lo; i < end; i++) {
        if (i > lo)
            textbuf_put(&items, ",", 1);
        textbuf_put(&items, s->text.p + s->off[i], s->off[i + 1] - s->off[i]);
    }
    return finish_list(&items, end - lo, lo < end ? s->steps[lo] : 0,
                       lo < end ? s->steps[end - 1] : 0, end < s->n, out, len);
}
