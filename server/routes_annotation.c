/* The annotation controls of issue 18 beyond posting a ranking:
 *
 * - PUT /v1/rankings/{id} (edit one's own ranking, same body as the post)
 *   and DELETE /v1/rankings/{id} (withdraw it; a withdrawn skip is how a
 *   skipped comparison is revisited: `next` can serve it again), both
 *   refused once the project is locked (project_is_locked);
 * - GET /v1/me/rankings (?skipped=1: the skips only): the caller's history;
 * - GET /v1/projects/{id}/position_bias: how often the response shown
 *   first wins, against 1/k, with an exact binomial test per k;
 * - GET /v1/projects/{id}/quality: per annotator gold accuracy, agreement
 *   (pairwise and Krippendorff's alpha) and median time per comparison.
 * The two reports read every ranking of the project, so they run on a
 * heavy-read worker (defer_slow.h). The math is annotation_quality.c and
 * agreement.c; the SQL annotation_store.c.
 */
#include <stdlib.h>
#include <string.h>

#include "annotation_store.h"
#include "prefs_store.h"
#include "ranking_input.h"
#include "routes.h"

/* ---- edit and withdraw ------------------------------------------------------------ */

/* The ranking r->path_id is the caller's and its project is not locked: 1
 * (with its comparison and project), else 0 after replying. */
static int own_ranking(request *r, int64_t *comparison_id, int64_t *project_id,
                       enum MHD_Result *replied) {
    int64_t token_id = 0;
    int found = annot_ranking_owner(r->db, r->path_id, &token_id, comparison_id, project_id);
    if (found <= 0) {
        *replied = http_reply_not_found(r, "ranking", found);
        return 0;
    }
    if (token_id != r->token.id) {
        *replied = http_reply_error(r, 403, "not_your_ranking", NULL,
                                    "ranking %lld is another annotator's", (long long)r->path_id);
        return 0;
    }
    int locked = project_is_locked(r->db, *project_id);
    if (locked != 0) {
        *replied = locked < 0 ? http_reply_db_error(r)
                              : http_reply_error(r, 409, "project_locked", NULL,
                                                 "project %lld is locked: its rankings can no "
                                                 "longer change",
                                                 (long long)*project_id);
        return 0;
    }
    return 1;
}

/* In the writer: the checks again (the ranking may have gone meanwhile),
 * then the rewrite. A skip turning into a ranking counts against the
 * overlap like a new ranking. */
static enum MHD_Result ranking_update_run(request *r) {
    const ranking_write *w = r->write_ctx;
    enum MHD_Result replied;
    int64_t comparison_id, project_id;
    if (!own_ranking(r, &comparison_id, &project_id, &replied))
        return replied;
    int found;
    json_t *before = prefs_ranking_get(r->db, r->path_id, &found);
    if (before == NULL)
        return http_reply_not_found(r, "ranking", found);
    const bool was_skip = json_is_true(json_object_get(before, "skipped"));
    json_decref(before);
    if (was_skip && !w->skip) {
        prefs_answer_state s;
        int rc = prefs_answer_state_get(r->db, comparison_id, r->token.id, db_now_ms(), &s);
        free(s.annotator);
        if (rc != 0)
            return http_reply_db_error(r);
        if (s.ranked >= s.overlap)
            return http_reply_error(r, 409, "overlap_reached", NULL,
                                    "comparison %lld already has the %lld rankings its project "
                                    "asks for",
                                    (long long)comparison_id, (long long)s.overlap);
    }
    int64_t n_pairs;
    json_t *labels = ranking_write_labels(w);
    int ok =
        prefs_ranking_replace(r->db, r->path_id, w->skip, ranking_write_note(w), w->ids, w->rank,
                              w->n, &n_pairs) == 0 &&
        annot_ranking_set_extras(r->db, r->path_id, NULL, 0, labels,
                                 w->skip_reason[0] ? w->skip_reason : NULL, -1, db_now_s()) == 0;
    json_decref(labels);
    json_t *ranking = ok ? prefs_ranking_get(r->db, r->path_id, &found) : NULL;
    return ranking ? http_commit_reply(r, 200, ranking) : http_reply_db_error(r);
}

enum MHD_Result route_rankings_update(request *r) {
    enum MHD_Result replied;
    int64_t comparison_id, project_id;
    if (!own_ranking(r, &comparison_id, &project_id, &replied))
        return replied;
    return ranking_input_defer(r, comparison_id, project_id, ranking_update_run);
}

static enum MHD_Result ranking_delete_run(request *r) {
    enum MHD_Result replied;
    int64_t comparison_id, project_id;
    if (!own_ranking(r, &comparison_id, &project_id, &replied))
        return replied;
    if (annot_ranking_delete(r->db, r->path_id) != 0)
        return http_reply_db_error(r);
    return http_commit_reply(r, 200,
                             json_pack("{s:I, s:s, s:I, s:b}", "id", (json_int_t)r->path_id,
                                       "object", "ranking", "comparison_id",
                                       (json_int_t)comparison_id, "deleted", 1));
}

enum MHD_Result route_rankings_delete(request *r) {
    enum MHD_Result replied;
    int64_t comparison_id, project_id;
    if (!own_ranking(r, &comparison_id, &project_id, &replied))
        return replied;
    return http_defer_write(r, ranking_delete_run);
}

/* ---- history ---------------------------------------------------------------------- */

enum MHD_Result route_me_rankings(request *r) {
    const char *skipped = http_query(r, "skipped");
    if (skipped != NULL && strcmp(skipped, "1") != 0 && strcmp(skipped, "0") != 0)
        return http_reply_error(r, 400, "invalid_value", "skipped",
                                "skipped must be 1 (the skips only) or 0");
    const prefs_list *list =
        skipped && strcmp(skipped, "1") == 0 ? &prefs_my_skips : &prefs_my_rankings;
    return http_reply_list(r, list->sql, r->token.id, list->row);
}

/* ---- the reports ------------------------------------------------------------------ */

/* The 95% interval of the reports (z of the normal distribution). */
#define REPORT_Z95 1.959963984540054

static json_t *bias_json(int64_t project_id, const position_bias *b) {
    json_t *by_k = json_array();
    int64_t n = 0, wins = 0;
    double expected = 0;
    for (int k = 2; k <= RANKING_MAX_K; k++) {
        if (b->n[k] == 0)
            continue;
        double lo, hi;
        annotation_wilson(b->first_wins[k], b->n[k], REPORT_Z95, &lo, &hi);
        json_array_append_new(
            by_k, json_pack("{s:i, s:I, s:I, s:f, s:f, s:[f, f], s:f}", "k", k, "n",
                            (json_int_t)b->n[k], "first_wins", (json_int_t)b->first_wins[k],
                            "first_win_rate", (double)b->first_wins[k] / (double)b->n[k],
                            "expected_rate", 1.0 / k, "ci95", lo, hi, "p_value",
                            annotation_binomial_p(b->first_wins[k], b->n[k], 1.0 / k)));
        n += b->n[k], wins += b->first_wins[k], expected += (double)b->n[k] / k;
    }
    return json_pack("{s:s, s:I, s:I, s:I, s:f, s:I, s:o}", "object", "position_bias", "project_id",
                     (json_int_t)project_id, "n_rankings", (json_int_t)n, "first_wins",
                     (json_int_t)wins, "expected_first_wins", expected, "top_ties",
                     (json_int_t)b->top_ties, "by_k", by_k);
}

static enum MHD_Result position_bias_work(request *r) {
    annot_scan s;
    if (annot_scan_read(r->db, r->path_id, &s) != 0)
        return http_reply_db_error(r);
    json_t *body = bias_json(r->path_id, &s.bias);
    annot_scan_free(&s);
    return body ? http_reply_json(r, 200, body) : http_reply_db_error(r);
}

enum MHD_Result route_projects_position_bias(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    return http_defer_slow(r, r->srv->read_pool, position_bias_work);
}

/* A number, or null when undefined. */
static json_t *number_or_null(bool defined, double v) {
    return defined ? json_real(v) : json_null();
}

static json_t *annotator_quality(const agreement *a, size_t i, const char *name,
                                 const annot_annotator *x) {
    const agreement_annotator *g = &a->annotators[i];
    double alpha, median = 0;
    bool has_alpha = agreement_annotator_alpha(a, i, &alpha);
    bool has_median = x != NULL && annotation_median(x->times_ms, x->n_times, &median);
    int64_t n_gold = x ? x->n_gold : 0;
    return json_pack(
        "{s:s, s:I, s:I, s:I, s:{s:I, s:I, s:o, s:o}, s:o, s:I, s:o, s:o, s:I}", "annotator", name,
        "token_id", (json_int_t)g->annotator, "n_ranked", (json_int_t)g->n_ranked, "n_skipped",
        (json_int_t)g->n_skipped, "gold", "n", (json_int_t)n_gold, "top_correct",
        (json_int_t)(x ? x->n_gold_top_correct : 0), "top_accuracy",
        number_or_null(n_gold > 0, n_gold ? (double)x->n_gold_top_correct / (double)n_gold : 0),
        "pair_accuracy", number_or_null(n_gold > 0, n_gold ? x->gold_pair_sum / (double)n_gold : 0),
        "pairwise_agreement",
        number_or_null(g->n_compared > 0,
                       g->n_compared ? g->agreement_sum / (double)g->n_compared : 0),
        "n_compared", (json_int_t)g->n_compared, "alpha", number_or_null(has_alpha, alpha),
        "median_time_ms", number_or_null(has_median, median), "n_timed",
        (json_int_t)(x ? x->n_times : 0));
}

static enum MHD_Result quality_work(request *r) {
    agreement a;
    agreement_init(&a);
    prefs_agreement_counts counts;
    json_t *names = NULL;
    int64_t last;
    annot_scan s = {0};
    int ok = prefs_agreement_read(r->db, r->path_id, true, &a, &counts, &names, &last) == 0 &&
             annot_scan_read(r->db, r->path_id, &s) == 0;
    json_t *body = NULL;
    if (ok) {
        json_t *annotators = json_array();
        for (size_t i = 0; i < a.n_annotators; i++)
            json_array_append_new(
                annotators, annotator_quality(&a, i, json_string_value(json_array_get(names, i)),
                                              annot_scan_find(&s, a.annotators[i].annotator)));
        double alpha;
        bool has_alpha = agreement_alpha(&a, &alpha);
        body = json_pack("{s:s, s:I, s:I, s:I, s:o, s:o, s:o}", "object", "project_quality",
                         "project_id", (json_int_t)r->path_id, "n_rankings",
                         (json_int_t)counts.rankings, "n_skipped", (json_int_t)counts.skipped,
                         "alpha", number_or_null(has_alpha, alpha), "position_bias",
                         bias_json(r->path_id, &s.bias), "annotators", annotators);
    }
    json_decref(names);
    annot_scan_free(&s);
    agreement_free(&a);
    return body ? http_reply_json(r, 200, body) : http_reply_db_error(r);
}

enum MHD_Result route_projects_quality(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    return http_defer_slow(r, r->srv->read_pool, quality_work);
}
