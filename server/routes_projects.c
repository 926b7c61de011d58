/* Projects: POST /v1/projects {name, k, overlap, guidelines, label_schema,
 * lease_seconds, gold_rate}, GET /v1/projects, GET /v1/projects/{id}.
 *
 * A project fixes k (at most k candidates per comparison, 2..9) and an
 * overlap (how many annotators rank each comparison); the annotation
 * settings (project_annotation.c) say what annotators read and label. Its comparisons,
 * rankings and agreement have route files of their own
 * (routes_comparisons.c, routes_rankings.c, routes_agreement.c); the SQL
 * of all of them is prefs_store.c.
 */
#include <string.h>

#include "prefs_store.h"
#include "project_annotation.h"
#include "routes.h"

/* The body's name, k and overlap: 1 ok, 0 with e. */
static int check_project(const json_t *body, const char **name, int64_t *k, int64_t *overlap,
                         http_error *e) {
    static const char *const keys[] = {
        "name", "k", "overlap", "guidelines", "label_schema", "lease_seconds", "gold_rate", NULL};
    *name = json_string_value(json_object_get(body, "name"));
    return json_check_keys(body, keys, "", e) && json_check_name(*name, 256, e) &&
           json_check_int(body, "k", 2, 2, RANKING_MAX_K, k, e) &&
           json_check_int(body, "overlap", 1, 1, PROJECT_MAX_OVERLAP, overlap, e);
}

enum MHD_Result route_projects_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    const char *name;
    int64_t k, overlap;
    http_error e;
    project_annotation a = {0};
    if (!check_project(body, &name, &k, &overlap, &e) ||
        !project_annotation_check(body, NULL, &a, &e))
        replied = http_reply_http_error(r, &e);
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        int64_t id = prefs_project_insert(r->db, name, k, overlap);
        if (id > 0 && project_annotation_store(r->db, id, &a) != 0)
            id = -1;
        json_t *project = id > 0 ? prefs_project_get(r->db, id, NULL) : NULL;
        replied = project ? http_commit_reply(r, 200, project) : http_reply_db_error(r);
    }
    project_annotation_free(&a);
    json_decref(body);
    return replied;
}

/* Admins list every project; other tokens the projects they were granted
 * (project_access.h). Archived projects only with ?include_archived=1. */
enum MHD_Result route_projects_list(request *r) {
    const char *archived = http_query(r, "include_archived");
    if (archived != NULL && strcmp(archived, "0") != 0 && strcmp(archived, "1") != 0)
        return http_reply_error(r, 400, "invalid_value", "include_archived",
                                "include_archived must be 0 or 1");
    const prefs_list *list =
        archived && strcmp(archived, "1") == 0 ? &prefs_projects_with_archived : &prefs_projects;
    return http_reply_list(r, list->sql, r->token.role == AUTH_ROLE_ADMIN ? 0 : r->token.id,
                           list->row);
}

enum MHD_Result route_projects_get(request *r) {
    int found;
    json_t *project = prefs_project_get(r->db, r->path_id, &found);
    return project ? http_reply_json(r, 200, project) : http_reply_not_found(r, "project", found);
}
