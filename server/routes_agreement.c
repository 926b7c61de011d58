/* GET /v1/projects/{id}/agreement: how much the project's annotators agree
 * (Krippendorff's alpha, Kendall's W, and per annotator the mean pairwise
 * agreement with the others); the math is agreement.c. */
#include "prefs_store.h"
#include "routes.h"

enum MHD_Result route_projects_agreement(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    agreement a;
    agreement_init(&a);
    prefs_agreement_counts n;
    json_t *names;
    if (prefs_agreement_read(r->db, r->path_id, &a, &n, &names) != 0) {
        agreement_free(&a);
        return http_reply_db_error(r);
    }
    json_t *annotators = json_array();
    for (size_t i = 0; i < a.n_annotators; i++) {
        const agreement_annotator *x = &a.annotators[i];
        json_array_append_new(
            annotators,
            json_pack("{s:s, s:I, s:I, s:I, s:o}", "annotator",
                      json_string_value(json_array_get(names, i)), "n_ranked",
                      (json_int_t)x->n_ranked, "n_skipped", (json_int_t)x->n_skipped, "n_compared",
                      (json_int_t)x->n_compared, "mean_pair_agreement",
                      x->n_compared ? json_real(x->agreement_sum / (double)x->n_compared)
                                    : json_null()));
    }
    json_decref(names);
    double alpha = 0;
    bool has_alpha = agreement_alpha(&a, &alpha);
    json_t *body = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:{s:s, s:o, s:I}, s:{s:o, s:I}, s:o}", "object", "agreement",
        "project_id", (json_int_t)r->path_id, "n_comparisons_ranked",
        (json_int_t)n.comparisons_ranked, "n_rankings", (json_int_t)n.rankings, "n_skipped",
        (json_int_t)n.skipped, "krippendorff_alpha", "metric", "ordinal", "value",
        has_alpha ? json_real(alpha) : json_null(), "n_units", (json_int_t)a.n_units, "kendall_w",
        "mean", a.n_w ? json_real(a.w_sum / (double)a.n_w) : json_null(), "n_comparisons",
        (json_int_t)a.n_w, "annotators", annotators);
    agreement_free(&a);
    return http_reply_json(r, 200, body);
}
