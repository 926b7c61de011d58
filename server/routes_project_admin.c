/* A project's administration: PATCH /v1/projects/{id} (its settings and
 * its locked / archived states), its members (GET, POST
 * /v1/projects/{id}/members, DELETE .../members/{token_id}), its
 * annotators and their exclusion from exports and training (GET
 * .../annotators, POST .../annotators/{token_id}/exclude and /include),
 * and POST /v1/comparisons/{id}/retire. Admin only (route_table.c); what
 * members may do is checked by project_access.c, and the SQL is there too.
 */
#include <stdio.h>
#include <string.h>

#include "prefs_store.h"
#include "project_annotation.h"
#include "project_access.h"
#include "routes.h"

/* In the open transaction: commits and replies 200 with body (stolen), or
 * (body NULL: a write or the read back failed) rolls back and replies the
 * database error. */
static enum MHD_Result commit_reply(request *r, json_t *body) {
    if (body != NULL)
        return http_commit_reply(r, 200, body);
    enum MHD_Result replied = http_reply_db_error(r);
    db_rollback(r->db);
    return replied;
}

/* ---- PATCH /v1/projects/{id} ----------------------------------------------------- */

/* An updatable field: the body member, its column of projects, and how it
 * is checked. k is not updatable (comparisons hold up to k candidates). */
typedef enum project_field_kind {
    PROJECT_FIELD_TEXT,  /* a string of lo..hi bytes */
    PROJECT_FIELD_INT,   /* an integer in lo..hi */
    PROJECT_FIELD_STATE, /* a boolean; its column holds when it was set (NULL: unset) */
} project_field_kind;

typedef struct project_field {
    const char *name, *column;
    project_field_kind kind;
    int64_t lo, hi;
} project_field;

#define PROJECT_MAX_DESCRIPTION (64 * 1024)

/* The annotation settings (guidelines, label_schema, lease_seconds,
 * gold_rate) are checked and stored as one by project_annotation.c, the
 * same code a create uses: see annotation_keys below. */
static const project_field project_fields[] = {
    {"name", "name", PROJECT_FIELD_TEXT, 1, 256},
    {"description", "description", PROJECT_FIELD_TEXT, 0, PROJECT_MAX_DESCRIPTION},
    {"overlap", "overlap", PROJECT_FIELD_INT, 1, PROJECT_MAX_OVERLAP},
    {"locked", "locked_at", PROJECT_FIELD_STATE, 0, 1},
    {"archived", "archived_at", PROJECT_FIELD_STATE, 0, 1},
};
#define N_PROJECT_FIELDS (sizeof project_fields / sizeof project_fields[0])

static const char *const annotation_keys[] = {"guidelines", "label_schema", "lease_seconds",
                                              "gold_rate"};
#define N_ANNOTATION_KEYS (sizeof annotation_keys / sizeof annotation_keys[0])

static bool is_annotation_key(const char *key) {
    for (size_t i = 0; i < N_ANNOTATION_KEYS; i++)
        if (strcmp(annotation_keys[i], key) == 0)
            return true;
    return false;
}

static bool has_annotation_key(const json_t *body) {
    for (size_t i = 0; i < N_ANNOTATION_KEYS; i++)
        if (json_object_get(body, annotation_keys[i]) != NULL)
            return true;
    return false;
}

/* value against f: 1 ok, 0 with e. */
static int check_field(const project_field *f, const json_t *value, http_error *e) {
    switch (f->kind) {
        case PROJECT_FIELD_TEXT:
            if (!json_is_string(value) || json_string_length(value) < (size_t)f->lo ||
                json_string_length(value) > (size_t)f->hi)
                return http_error_set(e, 400, "invalid_value", f->name,
                                      "%s must be a string of %lld..%lld bytes", f->name,
                                      (long long)f->lo, (long long)f->hi);
            return 1;
        case PROJECT_FIELD_INT:
            if (!json_is_integer(value) || json_integer_value(value) < f->lo ||
                json_integer_value(value) > f->hi)
                return http_error_set(e, 400, "invalid_value", f->name,
                                      "%s must be an integer in %lld..%lld", f->name,
                                      (long long)f->lo, (long long)f->hi);
            return 1;
        case PROJECT_FIELD_STATE:
            if (!json_is_boolean(value))
                return http_error_set(e, 400, "invalid_type", f->name, "%s must be true or false",
                                      f->name);
            return 1;
    }
    return 0;
}

/* Every member of body is an updatable field with a valid value: 1, or 0
 * with e. */
static int check_patch(const json_t *body, http_error *e) {
    const char *key;
    json_t *value;
    if (json_object_size(body) == 0)
        return http_error_set(e, 400, "missing_required_parameter", NULL,
                              "give at least one field to update: name, description, overlap, "
                              "locked, archived, guidelines, label_schema, lease_seconds, "
                              "gold_rate");
    json_object_foreach((json_t *)body, key, value) {
        if (is_annotation_key(key))
            continue; /* project_annotation_check */
        size_t i = 0;
        while (i < N_PROJECT_FIELDS && strcmp(project_fields[i].name, key) != 0)
            i++;
        if (i == N_PROJECT_FIELDS)
            return http_error_set(e, 400, "unknown_parameter", key,
                                  "%s is not an updatable field of a project (name, description, "
                                  "overlap, locked, archived, guidelines, label_schema, "
                                  "lease_seconds, gold_rate)",
                                  key);
        if (!check_field(&project_fields[i], value, e))
            return 0;
    }
    return 1;
}

/* Sets f of project id to value, in the open transaction: 0 or -1. A state
 * keeps the time it was first set while it stays set. */
static int update_field(sqlite3 *db, int64_t id, const project_field *f, const json_t *value) {
    char sql[160];
    snprintf(sql, sizeof sql,
             f->kind == PROJECT_FIELD_STATE
                 ? "UPDATE projects SET %s = CASE WHEN ?1 THEN coalesce(%s, ?3) END WHERE id = ?2"
                 : "UPDATE projects SET %s = ?1 WHERE id = ?2",
             f->column, f->column);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (f->kind == PROJECT_FIELD_TEXT)
        sqlite3_bind_text(st, 1, json_string_value(value), -1, SQLITE_STATIC);
    else if (f->kind == PROJECT_FIELD_INT)
        sqlite3_bind_int64(st, 1, json_integer_value(value));
    else
        sqlite3_bind_int(st, 1, json_is_true(value)), sqlite3_bind_int64(st, 3, db_now_s());
    sqlite3_bind_int64(st, 2, id);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

/* The body of a request about r's project: NULL after replying 404 (no
 * such project), 400 (not a JSON object) or 500. */
static json_t *project_body(request *r, enum MHD_Result *replied) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0) {
        *replied = http_reply_not_found(r, "project", found);
        return NULL;
    }
    return http_body_object(r, replied);
}

enum MHD_Result route_projects_update(request *r) {
    enum MHD_Result replied;
    json_t *body = project_body(r, &replied);
    if (body == NULL)
        return replied;
    http_error e;
    if (!check_patch(body, &e)) {
        json_decref(body);
        return http_reply_http_error(r, &e);
    }
    if (db_begin(r->db) != SQLITE_OK) {
        json_decref(body);
        return http_reply_db_error(r);
    }
    int ok = 1;
    if (has_annotation_key(body)) { /* checked against the project as it is in this transaction */
        json_t *current = prefs_project_get(r->db, r->path_id, NULL);
        project_annotation a;
        int valid = current != NULL && project_annotation_check(body, current, &a, &e);
        json_decref(current);
        if (current != NULL && !valid) {
            db_rollback(r->db);
            json_decref(body);
            return http_reply_http_error(r, &e);
        }
        ok = current != NULL && project_annotation_store(r->db, r->path_id, &a) == 0;
        if (current != NULL)
            project_annotation_free(&a);
    }
    for (size_t i = 0; ok && i < N_PROJECT_FIELDS; i++) {
        const json_t *value = json_object_get(body, project_fields[i].name);
        ok = value == NULL || update_field(r->db, r->path_id, &project_fields[i], value) == 0;
    }
    json_decref(body);
    return commit_reply(r, ok ? prefs_project_get(r->db, r->path_id, NULL) : NULL);
}

/* ---- members ---------------------------------------------------------------------- */

enum MHD_Result route_project_members_list(request *r) {
    return http_reply_list_of(r, "project", prefs_project_exists(r->db, r->path_id),
                              project_members_list.sql, project_members_list.row);
}

/* The body {token_id, role?} against the token it names: 1 with *token_id
 * and *role (role defaults to the token's own; a viewer token can only be
 * a viewer, and an admin needs no grant), or 0 with e. */
static int check_member(sqlite3 *db, const json_t *body, int64_t *token_id, const char **role,
                        http_error *e) {
    static const char *const keys[] = {"token_id", "role", NULL};
    const json_t *role_v = json_object_get(body, "role");
    const char *role_name = json_string_value(role_v);
    if (!json_check_keys(body, keys, "", e))
        return 0;
    if (json_object_get(body, "token_id") == NULL)
        return http_error_set(e, 400, "missing_required_parameter", "token_id",
                              "token_id (the id of the annotator or viewer token to grant) is "
                              "required");
    if (!json_check_int(body, "token_id", 0, 1, INT64_MAX, token_id, e))
        return 0;
    if (role_v != NULL && (role_name == NULL || (strcmp(role_name, "annotator") != 0 &&
                                                 strcmp(role_name, "viewer") != 0)))
        return http_error_set(e, 400, "invalid_value", "role",
                              "role must be 'annotator' or 'viewer'");
    auth_role token_role = AUTH_ROLE_NONE;
    bool revoked = false;
    int found = project_access_token(db, *token_id, &token_role, &revoked);
    if (found < 0)
        return http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db));
    if (found == 0 || revoked)
        return http_error_set(e, 400, "token_not_found", "token_id", "no live token %lld",
                              (long long)*token_id);
    if (token_role == AUTH_ROLE_ADMIN)
        return http_error_set(e, 400, "invalid_value", "token_id",
                              "token %lld is an admin: admins see every project without a grant",
                              (long long)*token_id);
    if (token_role == AUTH_ROLE_VIEWER && role_name && strcmp(role_name, "viewer") != 0)
        return http_error_set(e, 400, "invalid_value", "role",
                              "token %lld is a viewer: it can only be granted 'viewer'",
                              (long long)*token_id);
    *role = role_name ? role_name : auth_role_name(token_role);
    return 1;
}

/* POST /v1/projects/{id}/members {token_id, role?}: grants (or changes) a
 * token's membership. */
enum MHD_Result route_project_members_add(request *r) {
    enum MHD_Result replied;
    json_t *body = project_body(r, &replied);
    if (body == NULL)
        return replied;
    http_error e;
    int64_t token_id = 0;
    const char *role = NULL;
    if (!check_member(r->db, body, &token_id, &role, &e))
        replied = http_reply_http_error(r, &e);
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else
        replied = commit_reply(r, project_access_grant(r->db, r->path_id, token_id, role) == 0
                                      ? project_access_member(r->db, r->path_id, token_id, NULL)
                                      : NULL);
    json_decref(body);
    return replied;
}

/* DELETE /v1/projects/{id}/members/{token_id}: the token loses the project;
 * its rankings stay. */
enum MHD_Result route_project_members_remove(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int removed = project_access_revoke(r->db, r->path_id, r->path_sub_id);
    if (removed <= 0) {
        enum MHD_Result replied =
            removed < 0 ? http_reply_db_error(r)
                        : http_reply_error(r, 404, "member_not_found", NULL,
                                           "token %lld is not a member of project %lld",
                                           (long long)r->path_sub_id, (long long)r->path_id);
        db_rollback(r->db);
        return replied;
    }
    return http_commit_reply(r, 200,
                             json_pack("{s:I, s:s, s:I, s:b}", "id", (json_int_t)r->path_sub_id,
                                       "object", "project_member", "project_id",
                                       (json_int_t)r->path_id, "deleted", 1));
}

/* ---- annotators and their exclusion ---------------------------------------------- */

enum MHD_Result route_project_annotators_list(request *r) {
    return http_reply_list_of(r, "project", prefs_project_exists(r->db, r->path_id),
                              project_annotators_list.sql, project_annotators_list.row);
}

static enum MHD_Result set_excluded(request *r, bool excluded) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    auth_role role;
    bool revoked; /* a revoked annotator's rankings can be excluded too */
    found = project_access_token(r->db, r->path_sub_id, &role, &revoked);
    if (found <= 0)
        return found < 0 ? http_reply_db_error(r)
                         : http_reply_error(r, 404, "token_not_found", NULL, "no token %lld",
                                            (long long)r->path_sub_id);
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    return commit_reply(
        r, project_access_set_excluded(r->db, r->path_id, r->path_sub_id, excluded) == 0
               ? project_access_annotator(r->db, r->path_id, r->path_sub_id)
               : NULL);
}

/* POST .../annotators/{token_id}/exclude: the token's rankings of this
 * project are left out of its exports and of the reward/DPO jobs that
 * train on it (from their next read); include brings them back. */
enum MHD_Result route_project_annotators_exclude(request *r) {
    return set_excluded(r, true);
}

enum MHD_Result route_project_annotators_include(request *r) {
    return set_excluded(r, false);
}

/* ---- POST /v1/comparisons/{id}/retire -------------------------------------------- */

/* The comparison is no longer handed out by next nor ranked (its live
 * leases end); its rankings stay, flagged in the exports. Retiring twice
 * keeps the first time. */
enum MHD_Result route_comparisons_retire(request *r) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int retired = project_access_retire(r->db, r->path_id);
    int found = retired;
    json_t *c = retired > 0 ? prefs_comparison_get(r->db, r->path_id, &found) : NULL;
    if (c == NULL) {
        enum MHD_Result replied = http_reply_not_found(r, "comparison", found);
        db_rollback(r->db);
        return replied;
    }
    return http_commit_reply(r, 200, c);
}
