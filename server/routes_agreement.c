/* GET /v1/projects/{id}/agreement: how much the project's annotators agree
 * (Krippendorff's alpha, Kendall's W, and per annotator the mean pairwise
 * agreement with the others); the math is agreement.c.
 *
 * Computing it reads every ranking of the project (about a second at
 * 150,000 rankings), so it is cached per project (agreement_cache.h) and
 * computed on a heavy-read worker (defer_slow.h), never on an HTTP thread.
 * A read whose cached answer is current is answered at once; any other
 * goes to a worker, which first checks whether the rankings that arrived
 * since the cached answer concern the project, and computes only if they
 * do. The answer is the same bytes either way. */
#include "agreement_cache.h"
#include "prefs_store.h"
#include "routes.h"

/* The cached answer if it is current for r's project: 1 replied, 0 not
 * cached (or stale), -1 database error. */
static int reply_cached(request *r, enum MHD_Result *replied) {
    agreement_cache *c = r->srv->agreement_cache;
    int64_t now;
    char *text;
    size_t len;
    if (c == NULL)
        return 0;
    if (prefs_rankings_last_id(r->db, &now) != 0)
        return -1;
    if (!agreement_cache_get(c, r->path_id, now, &text, &len))
        return 0;
    *replied = http_reply_json_text(r, 200, text, len);
    return 1;
}

/* On a heavy-read worker. */
static enum MHD_Result agreement_work(request *r) {
    agreement_cache *c = r->srv->agreement_cache;
    enum MHD_Result replied;
    if (c != NULL) { /* did what arrived since the cached answer concern us? */
        const int64_t last = agreement_cache_last(c, r->path_id);
        int64_t now = 0;
        /* One read snapshot (not db_begin: that takes the write lock). */
        int ok = last >= 0 && sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
        if (ok) {
            ok = prefs_rankings_last_id(r->db, &now) == 0 && last <= now &&
                 (last == now || prefs_project_ranked_between(r->db, r->path_id, last, now) == 0);
            db_rollback(r->db);
        }
        if (ok)
            agreement_cache_advance(c, r->path_id, last, now);
        int cached = reply_cached(r, &replied);
        if (cached != 0)
            return cached > 0 ? replied : http_reply_db_error(r);
    }
    int64_t last;
    size_t len;
    char *text = agreement_body_text(r->db, r->path_id, &last, &len);
    if (text == NULL)
        return http_reply_db_error(r);
    if (c != NULL)
        agreement_cache_put(c, r->path_id, last, text, len);
    return http_reply_json_text(r, 200, text, len);
}

enum MHD_Result route_projects_agreement(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    enum MHD_Result replied;
    int cached = reply_cached(r, &replied);
    if (cached != 0)
        return cached > 0 ? replied : http_reply_db_error(r);
    return http_defer_slow(r, r->srv->read_pool, agreement_work);
}
