#include "project_access.h"

#include <string.h>

#include "reply.h"
#include "route_table.h"
#include "routes.h"

/* What a route's {id} names: nothing of a project, a project, or a
 * comparison (whose project is looked up). */
typedef enum access_scope {
    ACCESS_SCOPE_NONE,
    ACCESS_SCOPE_PROJECT,
    ACCESS_SCOPE_COMPARISON,
} access_scope;

static access_scope route_scope(const http_route *route) {
    if (strncmp(route->pattern, "/v1/projects/{id}", 17) == 0)
        return ACCESS_SCOPE_PROJECT;
    if (strncmp(route->pattern, "/v1/comparisons/{id}", 20) == 0)
        return ACCESS_SCOPE_COMPARISON;
    return ACCESS_SCOPE_NONE;
}

/* The routes that add a ranking or lease a comparison for one: closed by
 * a lock. */
static bool route_ranks(const http_route *route) {
    return route->handler == route_comparisons_next || route->handler == route_rankings_create;
}

/* The routes that change who may work on a project or how it is set up:
 * the only writes an archived project takes (so it can be unarchived). */
static bool route_configures(const http_route *route) {
    enum MHD_Result (*const configures[])(request *) = {
        route_projects_update,
        route_project_members_add,
        route_project_members_remove,
        route_project_annotators_exclude,
        route_project_annotators_include,
    };
    for (size_t i = 0; i < sizeof configures / sizeof configures[0]; i++)
        if (route->handler == configures[i])
            return true;
    return false;
}

static bool route_writes(const http_route *route) {
    return strcmp(route->method, "GET") != 0 || route_ranks(route);
}

enum MHD_Result project_access_reply_closed(request *r, project_state state, int64_t project_id,
                                            int64_t comparison_id) {
    switch (state) {
        case PROJECT_STATE_LOCKED:
            return http_reply_error(r, 409, "project_locked", NULL,
                                    "project %lld is locked: it takes no new rankings (an admin "
                                    "unlocks it with PATCH /v1/projects/%lld {\"locked\": false})",
                                    (long long)project_id, (long long)project_id);
        case PROJECT_STATE_ARCHIVED:
            return http_reply_error(
                r, 409, "project_archived", NULL,
                "project %lld is archived: it is read-only (an admin unarchives "
                "it with PATCH /v1/projects/%lld {\"archived\": false})",
                (long long)project_id, (long long)project_id);
        case PROJECT_STATE_RETIRED:
            return http_reply_error(r, 409, "comparison_retired", NULL,
                                    "comparison %lld is retired: it takes no new rankings",
                                    (long long)comparison_id);
        case PROJECT_STATE_OPEN:
            break;
    }
    return http_reply_error(r, 500, "internal_error", NULL, "project %lld is open",
                            (long long)project_id);
}

/* The project behind r's {id}, its state flags and the caller's member
 * role (AUTH_ROLE_NONE: not a member): 1, 0 (no such project or
 * comparison) or -1. */
typedef struct access_row {
    int64_t project_id;
    bool locked, archived, retired;
    auth_role member_role;
} access_row;

static int access_row_read(request *r, access_scope scope, access_row *a) {
    sqlite3_stmt *st = db_cached_prepare(
        r->db, scope == ACCESS_SCOPE_PROJECT
                   ? "SELECT p.id, p.locked_at IS NOT NULL, p.archived_at IS NOT NULL, 0, (SELECT "
                     "m.role FROM project_members m WHERE m.project_id = p.id AND m.token_id = "
                     "?2) FROM projects p WHERE p.id = ?1"
                   : "SELECT p.id, p.locked_at IS NOT NULL, p.archived_at IS NOT NULL, "
                     "c.retired_at IS NOT NULL, (SELECT m.role FROM project_members m WHERE "
                     "m.project_id = p.id AND m.token_id = ?2) FROM comparisons c JOIN projects "
                     "p ON p.id = c.project_id WHERE c.id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_int64(st, 2, r->token.id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        a->project_id = sqlite3_column_int64(st, 0);
        a->locked = sqlite3_column_int(st, 1) != 0;
        a->archived = sqlite3_column_int(st, 2) != 0;
        a->retired = sqlite3_column_int(st, 3) != 0;
        const char *role = (const char *)sqlite3_column_text(st, 4);
        a->member_role = role ? auth_role_parse(role) : AUTH_ROLE_NONE;
    }
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int project_access_check(request *r, enum MHD_Result *replied) {
    const access_scope scope = route_scope(r->route);
    if (scope == ACCESS_SCOPE_NONE)
        return 1;
    if (r->db == NULL)
        r->db = db_pool_acquire(&r->srv->pool);
    access_row a = {0};
    int found = access_row_read(r, scope, &a);
    if (found <= 0) {
        if (found < 0)
            *replied = http_reply_db_error(r);
        return found == 0; /* none: the handler answers 404 */
    }
    if (r->token.role != AUTH_ROLE_ADMIN && (a.member_role & r->route->roles) == 0) {
        *replied = http_reply_error(
            r, 403, "project_access_denied", NULL,
            a.member_role == AUTH_ROLE_NONE
                ? "this token has not been granted project %lld (an admin grants it with POST "
                  "/v1/projects/%lld/members)"
                : "this token is a viewer of project %lld: it cannot rank there (an admin makes "
                  "it an annotator with POST /v1/projects/%lld/members)",
            (long long)a.project_id, (long long)a.project_id);
        return 0;
    }
    project_state closed = PROJECT_STATE_OPEN;
    if (a.archived && route_writes(r->route) && !route_configures(r->route))
        closed = PROJECT_STATE_ARCHIVED;
    else if (a.locked && route_ranks(r->route))
        closed = PROJECT_STATE_LOCKED;
    else if (a.retired && route_ranks(r->route))
        closed = PROJECT_STATE_RETIRED;
    if (closed == PROJECT_STATE_OPEN)
        return 1;
    *replied = project_access_reply_closed(r, closed, a.project_id, r->path_id);
    return 0;
}

int project_access_rank_state(sqlite3 *db, int64_t comparison_id, int64_t *project_id) {
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT p.id, p.archived_at IS NOT NULL, p.locked_at IS NOT NULL, c.retired_at IS NOT "
            "NULL FROM comparisons c JOIN projects p ON p.id = c.project_id WHERE c.id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, comparison_id);
    int state = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *project_id = sqlite3_column_int64(st, 0);
        state = sqlite3_column_int(st, 1)   ? PROJECT_STATE_ARCHIVED
                : sqlite3_column_int(st, 2) ? PROJECT_STATE_LOCKED
                : sqlite3_column_int(st, 3) ? PROJECT_STATE_RETIRED
                                            : PROJECT_STATE_OPEN;
    }
    db_cached_done(st);
    return state;
}

/* ---- members ---------------------------------------------------------------------- */

#define MEMBER_COLUMNS                                                                             \
    "m.token_id, t.name, m.role, t.role, t.revoked_at IS NOT NULL, m.created_at, m.project_id "    \
    "FROM project_members m JOIN api_tokens t ON t.id = m.token_id"

static json_t *member_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    return json_pack(
        "{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:b, s:I}", "id",
        (json_int_t)sqlite3_column_int64(st, 0), "object", "project_member", "project_id",
        (json_int_t)sqlite3_column_int64(st, 6), "token_id",
        (json_int_t)sqlite3_column_int64(st, 0), "name", (const char *)sqlite3_column_text(st, 1),
        "role", (const char *)sqlite3_column_text(st, 2), "token_role",
        (const char *)sqlite3_column_text(st, 3), "revoked", sqlite3_column_int(st, 4) != 0,
        "created_at", (json_int_t)sqlite3_column_int64(st, 5));
}

const prefs_list project_members_list = {"SELECT " MEMBER_COLUMNS
                                         " WHERE m.project_id = ?3 AND (?1 = 0 OR m.token_id < "
                                         "?1) ORDER BY m.token_id DESC LIMIT ?2",
                                         member_from_row};

int project_access_token(sqlite3 *db, int64_t id, auth_role *role, bool *revoked) {
    sqlite3_stmt *st =
        db_cached_prepare(db, "SELECT role, revoked_at IS NOT NULL FROM api_tokens WHERE id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *role = auth_role_parse((const char *)sqlite3_column_text(st, 0));
        *revoked = sqlite3_column_int(st, 1) != 0;
    }
    db_cached_done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Steps sql with ?1 = a, ?2 = b and ?3 = text, or now when text is NULL
 * (sql need not use them all): the rows it changed, or -1. */
static int step_change(sqlite3 *db, const char *sql, int64_t a, int64_t b, const char *text) {
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    if (text != NULL)
        sqlite3_bind_text(st, 3, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 3, db_now_s());
    int rc = sqlite3_step(st);
    db_cached_done(st);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -1;
}

int project_access_grant(sqlite3 *db, int64_t project_id, int64_t token_id, const char *role) {
    return step_change(db,
                       "INSERT INTO project_members (project_id, token_id, role, created_at) "
                       "VALUES (?1, ?2, ?3, unixepoch()) ON CONFLICT DO UPDATE SET role = "
                       "excluded.role",
                       project_id, token_id, role) < 0
               ? -1
               : 0;
}

json_t *project_access_member(sqlite3 *db, int64_t project_id, int64_t token_id, int *found) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT " MEMBER_COLUMNS
                                             " WHERE m.project_id = ?1 AND m.token_id = ?2");
    if (found)
        *found = -1;
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_int64(st, 2, token_id);
    int rc = sqlite3_step(st);
    json_t *member = rc == SQLITE_ROW ? member_from_row(db, st, 0) : NULL;
    if (found)
        *found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    db_cached_done(st);
    return member;
}

int project_access_revoke(sqlite3 *db, int64_t project_id, int64_t token_id) {
    return step_change(db, "DELETE FROM project_members WHERE project_id = ?1 AND token_id = ?2",
                       project_id, token_id, NULL);
}

/* ---- annotators and their exclusion ---------------------------------------------- */

/* ?3 (or ?1 for one token): the project; the token's column is t. */
#define ANNOTATOR_COLUMNS(project)                                                                 \
    "t.id, t.name, (SELECT count(*) FROM rankings k JOIN comparisons c ON c.id = "                 \
    "k.comparison_id WHERE c.project_id = " project " AND k.token_id = t.id), EXISTS (SELECT 1 "   \
    "FROM project_excluded_annotators x WHERE x.project_id = " project " AND x.token_id = t.id), " \
    "t.revoked_at IS NOT NULL FROM api_tokens t"

static json_t *annotator_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t project_id) {
    (void)db;
    return json_pack("{s:I, s:s, s:I, s:s, s:I, s:b, s:b}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "project_annotator",
                     "project_id", (json_int_t)project_id, "name",
                     (const char *)sqlite3_column_text(st, 1), "n_rankings",
                     (json_int_t)sqlite3_column_int64(st, 2), "excluded",
                     sqlite3_column_int(st, 3) != 0, "revoked", sqlite3_column_int(st, 4) != 0);
}

const prefs_list project_annotators_list = {
    "SELECT " ANNOTATOR_COLUMNS("?3") " WHERE (t.id IN (SELECT k.token_id FROM rankings k JOIN "
                                      "comparisons c ON c.id = k.comparison_id WHERE c.project_id "
                                      "= ?3) OR t.id IN (SELECT token_id FROM "
                                      "project_excluded_annotators WHERE project_id = ?3)) AND "
                                      "(?1 = 0 OR t.id < ?1) ORDER BY t.id DESC LIMIT ?2",
    annotator_from_row};

int project_access_set_excluded(sqlite3 *db, int64_t project_id, int64_t token_id, bool excluded) {
    return step_change(db,
                       excluded ? "INSERT INTO project_excluded_annotators (project_id, token_id, "
                                  "excluded_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
                                : "DELETE FROM project_excluded_annotators WHERE project_id = ?1 "
                                  "AND token_id = ?2",
                       project_id, token_id, NULL) < 0
               ? -1
               : 0;
}

json_t *project_access_annotator(sqlite3 *db, int64_t project_id, int64_t token_id) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT " ANNOTATOR_COLUMNS("?1") " WHERE t.id = ?2");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, project_id);
    sqlite3_bind_int64(st, 2, token_id);
    json_t *a = sqlite3_step(st) == SQLITE_ROW ? annotator_from_row(db, st, project_id) : NULL;
    db_cached_done(st);
    return a;
}

/* ---- retiring a comparison ------------------------------------------------------- */

int project_access_retire(sqlite3 *db, int64_t comparison_id) {
    int n = step_change(db,
                        "UPDATE comparisons SET retired_at = coalesce(retired_at, ?3) WHERE id = "
                        "?1",
                        comparison_id, 0, NULL);
    if (n <= 0)
        return n;
    return step_change(db, "DELETE FROM comparison_leases WHERE comparison_id = ?1", comparison_id,
                       0, NULL) < 0
               ? -1
               : 1;
}
