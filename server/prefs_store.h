/* prefs_store — the preference tables (projects, comparisons, candidates,
 * comparison_leases, rankings, ranking_entries, preference_pairs): every
 * SQL statement the preference routes run, and the JSON of their rows. The
 * callers own the transactions; functions that write say so.
 */
#ifndef RLHF_PREFS_STORE_H
#define RLHF_PREFS_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agreement.h"
#include "db.h"
#include "ranking_limits.h"
#include "textbuf.h"

/* The most annotators a project may ask to rank each comparison. */
#define PROJECT_MAX_OVERLAP 100

/* A newest-first list for http_reply_list: sql binds ?1 = after (0: from
 * the newest), ?2 = limit + 1, ?3 = scope (the project or comparison id);
 * row makes a row into its JSON. */
typedef struct prefs_list {
    const char *sql;
    db_row_json row;
} prefs_list;
/* scope: 0 (every project) or a token id (the projects it was granted) */
extern const prefs_list prefs_projects;               /* not archived */
extern const prefs_list prefs_projects_with_archived; /* archived too */
extern const prefs_list prefs_comparisons;            /* scope: project */
extern const prefs_list prefs_rankings;               /* scope: comparison */
extern const prefs_list prefs_my_rankings;            /* scope: token (the caller's own) */
extern const prefs_list prefs_my_skips;               /* scope: token, skips only */
extern const prefs_list prefs_pairs;                  /* scope: project */

/* Existence: 1, 0, or -1 on error. */
int prefs_project_exists(sqlite3 *db, int64_t id);
int prefs_comparison_exists(sqlite3 *db, int64_t id);
int prefs_checkpoint_exists(sqlite3 *db, int64_t id);

/* ---- projects */
/* Inserts a project (in the open transaction): its id, or -1. */
int64_t prefs_project_insert(sqlite3 *db, const char *name, int64_t k, int64_t overlap);
/* The project as JSON; NULL with *found (may be NULL) 0 (none) or -1. */
json_t *prefs_project_get(sqlite3 *db, int64_t id, int *found);
/* The project's k and overlap: 1, 0 (none) or -1. */
int prefs_project_settings(sqlite3 *db, int64_t id, int64_t *k, int64_t *overlap);

/* ---- comparisons */
/* Inserts a comparison of project_id and its n candidates (texts[i];
 * checkpoints[i] > 0: sampled from that checkpoint, 0: provided), in the
 * open transaction: its id, or -1. */
int64_t prefs_comparison_insert(sqlite3 *db, int64_t project_id, const char *prompt, size_t n,
                                const char *const *texts, const int64_t *checkpoints);
/* The comparison with its candidates and how many ranked it; NULL with
 * *found 0 (none) or -1. */
json_t *prefs_comparison_get(sqlite3 *db, int64_t id, int *found);
/* Picks the comparison of project_id to lease token_id next (one it has
 * not answered, not retired, not gold, below overlap counting others' live
 * leases at now_ms, least-ranked first) and leases it until now_ms + lease_ms
 * (writes): 1 with *id, 0 none left, -1 error. */
int prefs_comparison_lease_next(sqlite3 *db, int64_t project_id, int64_t token_id, int64_t overlap,
                                int64_t now_ms, int64_t lease_ms, int64_t *id);
/* Leases comparison id to token_id until now_ms + lease_ms, noting when it
 * was served unless a live lease already did (writes). 0 or -1. */
int prefs_comparison_lease(sqlite3 *db, int64_t id, int64_t token_id, int64_t now_ms,
                           int64_t lease_ms);
/* The candidate ids of a comparison in position order (at most
 * RANKING_MAX_K): 0 (*n = 0: no such comparison) or -1. */
int prefs_candidate_ids(sqlite3 *db, int64_t comparison_id, int64_t *ids, size_t *n);

/* ---- rankings */
/* What decides whether token_id may still answer comparison_id: its own
 * rankings, the comparison's non-skipped ones, its live lease, the
 * project's overlap, and its name (annotator, malloc'd). 0 or -1. */
typedef struct prefs_answer_state {
    int64_t mine, ranked, leased, overlap;
    char *annotator;
} prefs_answer_state;
int prefs_answer_state_get(sqlite3 *db, int64_t comparison_id, int64_t token_id, int64_t now_ms,
                           prefs_answer_state *s);
/* What a new ranking records besides its order (schema 016), as stored:
 * the candidate ids in the order shown (JSON text), the labels (JSON
 * text), the skip reason (each NULL: none) and the time from being served
 * to answering (< 0: unknown). */
typedef struct prefs_ranking_extras {
    const char *shown_order, *labels, *skip_reason;
    int64_t time_ms;
} prefs_ranking_extras;
/* Inserts a ranking (a skip, or rank[i] the group of candidate ids[i])
 * with its extras, its entries and its pairs (every (better, worse) pair
 * of different groups), and ends token_id's lease (writes): the id (and
 * *n_pairs), or -1. */
int64_t prefs_ranking_insert(sqlite3 *db, int64_t comparison_id, int64_t token_id, bool skip,
                             const char *note, const int64_t *ids, const int64_t *rank, size_t n,
                             const prefs_ranking_extras *extras, int64_t created_at,
                             int64_t *n_pairs);
/* The ranking as GET shows it; NULL with *found 0 (none) or -1. */
json_t *prefs_ranking_get(sqlite3 *db, int64_t id, int *found);
/* Rewrites ranking id as a skip or the order rank[i] of candidate ids[i]
 * (entries and pairs replaced) with note (writes). 0 (*n_pairs) or -1. */
int prefs_ranking_replace(sqlite3 *db, int64_t id, bool skip, const char *note, const int64_t *ids,
                          const int64_t *rank, size_t n, int64_t *n_pairs);
/* A ranking as the API shows it (order stolen; note NULL: none). */
json_t *prefs_ranking_json(int64_t id, int64_t comparison_id, const char *annotator, bool skipped,
                           json_t *order, const char *note, int64_t n_pairs, int64_t created_at);

/* ---- exports */
/* Appends to out the rankings.jsonl lines of project_id's rankings (those
 * of annotators excluded from it left out) with id > *last_id, in id
 * order, at most max_rows of them and stopping once out holds max_bytes;
 * *last_id becomes the last id written, *ended whether no rows are left.
 * One read transaction. 0 or -1. (The pair exports: export_store.h.) */
int prefs_export_chunk(sqlite3 *db, int64_t project_id, int64_t *last_id, int max_rows,
                       size_t max_bytes, textbuf *out, bool *ended);

/* ---- agreement */
typedef struct prefs_agreement_counts {
    int64_t comparisons_ranked, rankings, skipped;
} prefs_agreement_counts;
/* Feeds every ranking of project_id to a (initialised by the caller) and
 * counts them; with_excluded false leaves out the rankings of annotators
 * excluded from the project (the agreement, as the exports do), true keeps
 * them (the quality report, where an admin excludes and includes); *names (a JSON array) gets the
 * token name of each of a->annotators in order; *last_ranking_id the highest ranking change id of
 * the whole table in the same snapshot (what the agreement cache keys on). One read transaction. 0
 * or -1. */
int prefs_agreement_read(sqlite3 *db, int64_t project_id, bool with_excluded, agreement *a,
                         prefs_agreement_counts *c, json_t **names, int64_t *last_ranking_id);
/* The highest ranking change id (ranking_changes, schema 016: every
 * insert, edit and delete of a ranking appends one; 0: none), into *id. A
 * project's rankings are unchanged between two reads of this id exactly
 * when no change with an id in between belongs to it. 0 or -1. */
int prefs_rankings_last_id(sqlite3 *db, int64_t *id);
/* Whether a ranking change with an id in (after, upto] belongs to
 * project_id: 1 yes, 0 no, -1 error. Costs a walk over that range. */
int prefs_project_ranked_between(sqlite3 *db, int64_t project_id, int64_t after, int64_t upto);

#endif
