/* metrics_page — the body of GET /v1/jobs/{id}/metrics, rendered two ways.
 *
 * metrics_page_json is the general path (jansson objects dumped with
 * HTTP_JSON_DUMP_FLAGS, reply.h), the definition of the reply. metrics_page_fast
 * writes the same bytes straight from SQLite's columns into one buffer: no
 * jansson objects, and reals formatted by json_real_text (common/json_text.h), which reproduces
 * jansson's JSON_REAL_PRECISION(15) text exactly. The fast path declines
 * (returns 0) whenever it could differ: a name that JSON must escape or that
 * is not UTF-8, a value that is not finite (jansson drops those keys). Tests
 * (tests/unit/test_metrics_page.c) compare the two byte for byte.
 *
 * metrics_series is the cache of a job's series of one name
 * (server/series_cache.h): every step pre-rendered by the same code, so a page
 * is one copy of a contiguous run of steps; a running job's series grows by
 * appending the rows after its last step (metrics_series_fetch, _append).
 */
#ifndef RLHF_METRICS_PAGE_H
#define RLHF_METRICS_PAGE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "textbuf.h"

/* names: a JSON array of strings, or NULL for every name. The body, with
 * its trailing newline, into *out (malloc'ed) and *len. 0 ok, -1 database
 * error or out of memory. */
int metrics_page_json(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                      const json_t *names, char **out, size_t *len);
/* The same bytes, fast: 1 rendered, 0 declined (use metrics_page_json),
 * -1 database error or out of memory. */
int metrics_page_fast(sqlite3 *db, int64_t job_id, int64_t after_step, int64_t limit,
                      const json_t *names, char **out, size_t *len);

/* One name's series (or the tail of one), rendered: step i's item is
 * text.p[off[i], off[i + 1]) without separators; steps ascending. */
typedef struct metrics_series {
    int64_t job_id;
    char *name;
    size_t n, cap; /* steps, and room for them */
    int64_t *steps;
    size_t *off; /* n + 1 */
    textbuf text;
    size_t bytes; /* what it holds in memory, roughly */
} metrics_series;
/* Loads job_id's series of name: 1 ok, 0 not cacheable (a value that is not
 * finite, or a name the fast path declines), -1 database error. */
int metrics_series_load(sqlite3 *db, int64_t job_id, const char *name, metrics_series *s);
/* What the running-job cache reads (server/series_cache.h), with ONE
 * statement, so from one snapshot: the job's status (16 bytes) and
 * metrics_epoch, and its rows of name with step > after_step (every row
 * when all) rendered into *tail (initialised here; tail->name stays NULL).
 * name must pass json_plain_string. 1 ok, 2 ok but a value is not finite
 * (*tail is then incomplete: not cacheable), 0 no such job, -1 database
 * error or out of memory. */
int metrics_series_fetch(sqlite3 *db, int64_t job_id, const char *name, bool all,
                         int64_t after_step, metrics_series *tail, char *status, int64_t *epoch);
/* Appends the steps of tail after s's last step (tail's steps ascending).
 * 0 ok, -1 out of memory (s unchanged). */
int metrics_series_append(metrics_series *s, const metrics_series *tail);
void metrics_series_free(metrics_series *s);
/* The page of s after after_step with at most limit steps, identical to
 * metrics_page_json with names = [s->name]. 0 ok, -1 out of memory. */
int metrics_series_page(const metrics_series *s, int64_t after_step, int64_t limit, char **out,
                        size_t *len);

#endif
