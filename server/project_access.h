/* project_access — who may see and rank which project, and the states
 * that close a project or comparison to new work (schema 015).
 *
 * Admin tokens see every project. Annotator and viewer tokens see only
 * the projects they were granted (project_members), in the member role
 * they were granted there: every route whose path starts with
 * /v1/projects/{id} or /v1/comparisons/{id} is checked here, once, after
 * the token and before the handler, so a new route under those paths is
 * covered without a line of its own (tests/api/test_project_access.c
 * walks the route table). A project that is locked takes no rankings and
 * hands out no comparisons; an archived one is read-only; a retired
 * comparison takes no rankings.
 */
#ifndef RLHF_PROJECT_ACCESS_H
#define RLHF_PROJECT_ACCESS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "prefs_store.h"
#include "request.h"

/* What closes a comparison (or a project) to new rankings. */
typedef enum project_state {
    PROJECT_STATE_OPEN = 0,
    PROJECT_STATE_LOCKED,   /* projects.locked_at: no new rankings, no leases */
    PROJECT_STATE_ARCHIVED, /* projects.archived_at: read-only, hidden from lists */
    PROJECT_STATE_RETIRED,  /* comparisons.retired_at: no longer ranked or served */
} project_state;

/* For r's route, after its token was checked: 1 if the caller may go on;
 * 0 with *replied after answering 403 project_access_denied (not a member,
 * or a viewer member on a route that ranks), 409 project_locked,
 * project_archived or comparison_retired, or 500. A project or comparison
 * that does not exist is left to the handler (404). May acquire r->db. */
int project_access_check(request *r, enum MHD_Result *replied);

/* Whether comparison_id may take a ranking now, read in the caller's
 * transaction (the writer re-checks what project_access_check saw, so a
 * lock committed in between wins): its state, or -1 on error; *project_id
 * receives its project. */
int project_access_rank_state(sqlite3 *db, int64_t comparison_id, int64_t *project_id);
/* Replies 409 naming state (not PROJECT_STATE_OPEN) of project_id or
 * comparison_id. */
enum MHD_Result project_access_reply_closed(request *r, project_state state, int64_t project_id,
                                            int64_t comparison_id);

/* ---- the SQL of members, exclusions and retiring (routes_project_admin.c) */
/* Newest-first lists (prefs_store.h) scoped to a project: its members
 * ({id: token id, token_id, name, role, token_role, revoked, created_at})
 * and its annotators (every token that ranked in it or is excluded from
 * it: {id: token id, name, n_rankings, excluded, revoked}). */
extern const prefs_list project_members_list;
extern const prefs_list project_annotators_list;
/* Token id's role and whether it is revoked: 1, 0 (none) or -1. */
int project_access_token(sqlite3 *db, int64_t id, auth_role *role, bool *revoked);
/* Makes token_id a member of project_id in role ('annotator' or
 * 'viewer'), or changes its role (writes): 0 or -1. */
int project_access_grant(sqlite3 *db, int64_t project_id, int64_t token_id, const char *role);
/* The membership as JSON; NULL with *found (may be NULL) 0 or -1. */
json_t *project_access_member(sqlite3 *db, int64_t project_id, int64_t token_id, int *found);
/* Ends the membership (writes): 1, 0 (none) or -1. */
int project_access_revoke(sqlite3 *db, int64_t project_id, int64_t token_id);
/* Excludes token_id's rankings of project_id from exports and training,
 * or includes them again (writes): 0 or -1. */
int project_access_set_excluded(sqlite3 *db, int64_t project_id, int64_t token_id, bool excluded);
/* token_id as an annotator of project_id (JSON as in the list), or NULL. */
json_t *project_access_annotator(sqlite3 *db, int64_t project_id, int64_t token_id);
/* Retires comparison_id and ends its leases (writes): 1, 0 (none) or -1. */
int project_access_retire(sqlite3 *db, int64_t comparison_id);
/* The SQL condition "ranking k of comparison c is by an annotator excluded
 * from c's project", for the exports (train/db_job.c, which does not link
 * the server, says the same for the jobs that read a project's rankings). */
#define PROJECT_EXCLUDED_RANKING                                                                   \
    "EXISTS (SELECT 1 FROM project_excluded_annotators x WHERE x.project_id = c.project_id AND "   \
    "x.token_id = k.token_id)"

#endif
