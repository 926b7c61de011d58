/* annotation_store — the SQL of issue 18's annotation controls (schema
 * 016): project guidelines, label schema, lease length and gold rate; gold
 * answers and candidate metadata; what a ranking records besides its order
 * (shown order, labels, skip reason, time); and the scans the position-bias
 * and quality reports read. prefs_store.c keeps the rest of the preference
 * tables. Callers own the transactions; functions that write say so.
 */
#ifndef RLHF_ANNOTATION_STORE_H
#define RLHF_ANNOTATION_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agreement.h"
#include "annotation_quality.h"
#include "prefs_store.h"
#include "ranking_limits.h"

#define ANNOTATION_GUIDELINES_MAX_BYTES (64 * 1024)
#define ANNOTATION_LEASE_MIN_S          30
#define ANNOTATION_LEASE_MAX_S          86400

/* The settings `next` and a ranking post need. label_schema is owned. */
typedef struct annot_project {
    int64_t k, overlap, lease_seconds;
    double gold_rate;
    json_t *label_schema;
} annot_project;
/* 1 found, 0 none, -1 error. */
int annot_project_load(sqlite3 *db, int64_t id, annot_project *p);
void annot_project_free(annot_project *p);
/* Sets a project's guidelines, label schema (validated), lease and gold
 * rate (writes). 0 or -1. */
int annot_project_update(sqlite3 *db, int64_t id, const char *guidelines,
                         const json_t *label_schema, int64_t lease_seconds, double gold_rate);

/* Whether a project's rankings are frozen (no edits, withdrawals or new
 * rankings): 1 yes, 0 no, -1 error (PATCH /v1/projects/{id} locks one). */
int project_is_locked(sqlite3 *db, int64_t project_id);

/* Stores a comparison's gold answer (group[i] the group of its i-th
 * candidate, 0 best) and its candidates' metadata (metadata[i] NULL: none)
 * (writes). 0 or -1. */
int annot_comparison_set_extras(sqlite3 *db, int64_t comparison_id, const int *gold_group,
                                const json_t *const *metadata, size_t n);
/* Edits c (a comparison's JSON, prefs_comparison_get) for its reader:
 * admins get each candidate's metadata and the gold answer ("gold", null
 * for none); others lose every sign of where a candidate came from
 * (source, checkpoint_id) and of gold. shuffle: candidates in the order
 * annotation_shuffle gives token_id, with "shown_order" (their ids). 0 or
 * -1. */
int annot_comparison_view(sqlite3 *db, json_t *c, int64_t token_id, bool admin, bool shuffle);

/* The project of a comparison (which exists). 0 or -1. */
int annot_comparison_project(sqlite3 *db, int64_t comparison_id, int64_t *project_id);
/* Picks a gold comparison of the project token_id has not answered (the
 * first in the annotator's own order, annotation_gold_rank): 1 with *id,
 * 0 none, -1 error. */
int annot_gold_pick(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t *id);
/* How many comparisons of the project token_id has answered. 0 or -1. */
int annot_answered_count(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t *n);
/* When token_id's lease of the comparison was served (its served_ms): 1
 * with *served_ms, 0 no lease, -1 error. */
int annot_lease_served_ms(sqlite3 *db, int64_t comparison_id, int64_t token_id, int64_t *served_ms);

/* The extras of a ranking (writes): shown order (candidate ids as shown,
 * n of them; n 0: unknown), labels (NULL: none), skip reason (NULL: none),
 * time_ms (< 0: unknown), updated_at (0: not an edit). 0 or -1. */
int annot_ranking_set_extras(sqlite3 *db, int64_t ranking_id, const int64_t *shown, size_t n,
                             const json_t *labels, const char *skip_reason, int64_t time_ms,
                             int64_t updated_at);
/* Adds the extras to a ranking's JSON (labels, skip_reason, shown_order,
 * time_ms, updated_at, project_id). 0 or -1. */
int annot_ranking_add_extras(sqlite3 *db, json_t *ranking);
/* The same for a ranking just inserted with these extras (no re-read). */
void annot_ranking_put_extras(json_t *ranking, const prefs_ranking_extras *extras,
                              int64_t project_id);
/* Who owns a ranking and where it is: 1, 0 (none) or -1. */
int annot_ranking_owner(sqlite3 *db, int64_t ranking_id, int64_t *token_id, int64_t *comparison_id,
                        int64_t *project_id);
/* Deletes a ranking with its entries and pairs (writes). 0 or -1. */
int annot_ranking_delete(sqlite3 *db, int64_t ranking_id);

/* ---- the reports */
/* Per annotator: gold answers and median time (agreement.c has the rest). */
typedef struct annot_annotator {
    int64_t token_id;
    int64_t n_gold, n_gold_top_correct;
    double gold_pair_sum;
    int64_t *times_ms; /* served -> ranked of each ranking that knows it */
    size_t n_times, cap_times;
} annot_annotator;
typedef struct annot_scan {
    position_bias bias;
    annot_annotator *annotators;
    size_t n_annotators;
} annot_scan;
/* Reads every ranking of project_id (one read transaction) into s (zeroed
 * here; free with annot_scan_free). 0 or -1. */
int annot_scan_read(sqlite3 *db, int64_t project_id, annot_scan *s);
void annot_scan_free(annot_scan *s);
/* s's entry for token_id, or NULL. */
const annot_annotator *annot_scan_find(const annot_scan *s, int64_t token_id);

#endif
