#include "route_table.h"

#include <stdlib.h>
#include <string.h>

#include "routes.h"

#define READERS    (AUTH_ROLE_ADMIN | AUTH_ROLE_VIEWER)
#define ANNOTATORS (AUTH_ROLE_ADMIN | AUTH_ROLE_ANNOTATOR)
#define EVERYONE   (AUTH_ROLE_ADMIN | AUTH_ROLE_ANNOTATOR | AUTH_ROLE_VIEWER)
#define CREATES    true /* honours Idempotency-Key */

static const http_route routes[] = {
    {"GET", "/healthz", 0, route_healthz, false, NULL},
    {"GET", "/readyz", 0, route_readyz, false, NULL},
    {"GET", "/metrics", READERS, route_metrics, false, NULL},
    {"GET", "/openapi.json", 0, route_openapi, false, NULL},
    {"POST", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_create, CREATES, NULL},
    {"GET", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_list, false, NULL},
    {"POST", "/v1/tokens/{id}/revoke", AUTH_ROLE_ADMIN, route_tokens_revoke, false, NULL},
    {"POST", "/v1/jobs", AUTH_ROLE_ADMIN, route_jobs_create, CREATES, NULL},
    {"GET", "/v1/jobs", READERS, route_jobs_list, false, NULL},
    {"GET", "/v1/jobs/{id}", READERS, route_jobs_get, false, NULL},
    {"POST", "/v1/jobs/{id}/cancel", AUTH_ROLE_ADMIN, route_jobs_cancel, false, NULL},
    {"GET", "/v1/jobs/{id}/events", READERS, route_jobs_events, false, NULL},
    {"GET", "/v1/jobs/{id}/rollouts", READERS, route_jobs_rollouts, false, NULL},
    {"GET", "/v1/jobs/{id}/metrics", READERS, route_jobs_metrics, false, NULL},
    {"GET", "/v1/jobs/{id}/stream", READERS, route_jobs_stream, false, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints", READERS, route_jobs_checkpoints, false, NULL},
    {"POST", "/v1/studies", AUTH_ROLE_ADMIN, route_studies_create, CREATES, NULL},
    {"GET", "/v1/studies", READERS, route_studies_list, false, NULL},
    {"GET", "/v1/studies/{id}", READERS, route_studies_get, false, NULL},
    {"POST", "/v1/studies/{id}/cancel", AUTH_ROLE_ADMIN, route_studies_cancel, false, NULL},
    {"GET", "/v1/studies/{id}/curves", READERS, route_studies_curves, false, NULL},
    {"POST", "/v1/loops", AUTH_ROLE_ADMIN, route_loops_create, CREATES, NULL},
    {"GET", "/v1/loops", READERS, route_loops_list, false, NULL},
    {"GET", "/v1/loops/{id}", READERS, route_loops_get, false, NULL},
    {"POST", "/v1/loops/{id}/cancel", AUTH_ROLE_ADMIN, route_loops_cancel, false, NULL},
    {"GET", "/v1/loops/{id}/rounds", READERS, route_loops_rounds, false, NULL},
    {"GET", "/v1/checkpoints/{id}/content", READERS, route_checkpoints_content, false, NULL},
    {"POST", "/v1/checkpoints/{id}/generate", READERS, route_checkpoints_generate, false, NULL},
    {"POST", "/v1/completions", READERS, route_completions, false, NULL},
    {"POST", "/v1/chat/completions", READERS, route_chat_completions, false, NULL},
    {"POST", "/v1/graders/run", READERS, route_graders_run, false, NULL},
    {"POST", "/v1/datasets", AUTH_ROLE_ADMIN, route_datasets_create, CREATES, NULL},
    {"GET", "/v1/datasets", READERS, route_datasets_list, false, NULL},
    {"GET", "/v1/datasets/{id}", READERS, route_datasets_get, false, NULL},
    {"DELETE", "/v1/datasets/{id}", AUTH_ROLE_ADMIN, route_datasets_delete, false, NULL},
    {"POST", "/v1/datasets/{id}/upload", AUTH_ROLE_ADMIN, route_datasets_upload, CREATES,
     &route_datasets_upload_stream},
    {"GET", "/v1/checkpoints/{id}/hf.tar", READERS, route_checkpoints_hf_tar, false, NULL},
    {"POST", "/v1/models", AUTH_ROLE_ADMIN, route_models_create, CREATES, NULL},
    {"GET", "/v1/models", READERS, route_models_list, false, NULL},
    {"GET", "/v1/models/{name}", READERS, route_models_get, false, NULL},
    {"DELETE", "/v1/models/{name}", AUTH_ROLE_ADMIN, route_models_delete, false, NULL},
    {"POST", "/v1/models/{name}/files/{name}", AUTH_ROLE_ADMIN, route_models_file_upload, false,
     &route_models_file_upload_stream},
    {"POST", "/v1/models/{name}/complete", AUTH_ROLE_ADMIN, route_models_complete, false, NULL},

    {"POST", "/v1/files", AUTH_ROLE_ADMIN, route_files_create, CREATES, &route_files_create_stream},
    {"GET", "/v1/files", READERS, route_files_list, false, NULL},
    {"GET", "/v1/files/file-{id}", READERS, route_files_get, false, NULL},
    {"DELETE", "/v1/files/file-{id}", AUTH_ROLE_ADMIN, route_files_delete, false, NULL},
    {"GET", "/v1/files/file-{id}/content", READERS, route_files_content, false, NULL},
    {"POST", "/v1/fine_tuning/jobs", AUTH_ROLE_ADMIN, route_fine_tuning_create, CREATES, NULL},
    {"GET", "/v1/fine_tuning/jobs", READERS, route_fine_tuning_list, false, NULL},
    {"GET", "/v1/fine_tuning/jobs/ftjob-{id}", READERS, route_fine_tuning_get, false, NULL},
    {"POST", "/v1/fine_tuning/jobs/ftjob-{id}/cancel", AUTH_ROLE_ADMIN, route_fine_tuning_cancel,
     false, NULL},
    {"GET", "/v1/fine_tuning/jobs/ftjob-{id}/events", READERS, route_fine_tuning_events, false,
     NULL},
    {"GET", "/v1/fine_tuning/jobs/ftjob-{id}/checkpoints", READERS, route_fine_tuning_checkpoints,
     false, NULL},
    {"POST", "/v1/projects", AUTH_ROLE_ADMIN, route_projects_create, CREATES, NULL},
    {"GET", "/v1/projects", EVERYONE, route_projects_list, false, NULL},
    {"GET", "/v1/projects/{id}", EVERYONE, route_projects_get, false, NULL},
    {"PATCH", "/v1/projects/{id}", AUTH_ROLE_ADMIN, route_projects_update, false, NULL},
    {"GET", "/v1/projects/{id}/members", AUTH_ROLE_ADMIN, route_project_members_list, false, NULL},
    {"POST", "/v1/projects/{id}/members", AUTH_ROLE_ADMIN, route_project_members_add, false, NULL},
    {"DELETE", "/v1/projects/{id}/members/{id}", AUTH_ROLE_ADMIN, route_project_members_remove,
     false, NULL},
    {"GET", "/v1/projects/{id}/annotators", AUTH_ROLE_ADMIN, route_project_annotators_list, false,
     NULL},
    {"POST", "/v1/projects/{id}/annotators/{id}/exclude", AUTH_ROLE_ADMIN,
     route_project_annotators_exclude, false, NULL},
    {"POST", "/v1/projects/{id}/annotators/{id}/include", AUTH_ROLE_ADMIN,
     route_project_annotators_include, false, NULL},
    {"POST", "/v1/projects/{id}/comparisons", AUTH_ROLE_ADMIN, route_comparisons_create, CREATES,
     NULL},
    {"GET", "/v1/projects/{id}/comparisons", EVERYONE, route_comparisons_list, false, NULL},
    {"GET", "/v1/projects/{id}/comparisons/next", ANNOTATORS, route_comparisons_next, false, NULL},
    {"GET", "/v1/projects/{id}/pairs", READERS, route_pairs_list, false, NULL},
    {"POST", "/v1/projects/{id}/comparisons/bulk", AUTH_ROLE_ADMIN, route_comparisons_bulk, CREATES,
     NULL},
    {"GET", "/v1/projects/{id}/pairs.jsonl", READERS, route_pairs_export, false, NULL},
    {"GET", "/v1/projects/{id}/rankings.jsonl", READERS, route_rankings_export, false, NULL},
    {"GET", "/v1/projects/{id}/agreement", READERS, route_projects_agreement, false, NULL},
    {"GET", "/v1/projects/{id}/export", READERS, route_projects_export, false, NULL},
    {"GET", "/v1/comparisons/{id}", EVERYONE, route_comparisons_get, false, NULL},
    {"POST", "/v1/comparisons/{id}/retire", AUTH_ROLE_ADMIN, route_comparisons_retire, false, NULL},
    {"POST", "/v1/comparisons/{id}/rankings", ANNOTATORS, route_rankings_create, CREATES, NULL},
    {"GET", "/v1/comparisons/{id}/rankings", READERS, route_rankings_list, false, NULL},
    {"PUT", "/v1/rankings/{id}", ANNOTATORS, route_rankings_update, false, NULL},
    {"DELETE", "/v1/rankings/{id}", ANNOTATORS, route_rankings_delete, false, NULL},
    {"GET", "/v1/me/rankings", ANNOTATORS, route_me_rankings, false, NULL},
    {"GET", "/v1/projects/{id}/position_bias", READERS, route_projects_position_bias, false, NULL},
    {"GET", "/v1/projects/{id}/quality", AUTH_ROLE_ADMIN, route_projects_quality, false, NULL},
    {"GET", "/", 0, route_static_index, false, NULL},
    {"GET", "/assets/{path}", 0, route_static_asset, false, NULL},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* The expensive reads: generation, the agreement, the exports (JSONL,
 * checkpoint files) and the metric pages. */
bool route_table_expensive(const http_route *route) {
    enum MHD_Result (*const expensive[])(request *) = {
        route_checkpoints_generate, route_completions,         route_chat_completions,
        route_projects_agreement,   route_pairs_export,        route_rankings_export,
        route_checkpoints_content,  route_jobs_metrics,        route_studies_curves,
        route_projects_export, route_projects_position_bias,
        route_projects_quality,
    };
    for (size_t i = 0; i < sizeof expensive / sizeof expensive[0]; i++)
        if (route->handler == expensive[i])
            return true;
    return false;
}

size_t http_route_count(void) {
    return N_ROUTES;
}

void http_route_at(size_t i, const char **method, const char **pattern) {
    *method = routes[i].method;
    *pattern = routes[i].pattern;
}

int http_route_roles(size_t i) {
    return routes[i].roles;
}

bool http_route_creates(size_t i) {
    return routes[i].creates;
}

/* A {name} segment: a model or file name (the handler reads it from the
 * URL and checks it further). */
static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == ':';
}

/* Matches url against pattern; ids[0] and ids[1] receive its first and
 * second {id} segments, or -1 when their digits are beyond int64 (the
 * caller refuses it: 400, never clamped). */
static bool pattern_matches(const char *pattern, const char *url, int64_t ids[2]) {
    int n_ids = 0;
    while (*pattern && *url) {
        if (strcmp(pattern, "{path}") == 0)
            return true; /* a final {path}: the rest, checked by its handler */
        if (strncmp(pattern, "{name}", 6) == 0) {
            const char *start = url;
            while (name_char(*url))
                url++;
            if (url == start || (*url != '/' && *url != '\0'))
                return false;
            pattern += 6;
            continue;
        }
        if (strncmp(pattern, "{id}", 4) == 0) {
            size_t n = strcspn(url, "/");
            if (*url < '1' || *url > '9' || strspn(url, "0123456789") != n)
                return false;
            int64_t *id = &ids[n_ids < 2 ? n_ids++ : 1];
            if (!http_parse_int64(url, n, 1, INT64_MAX, id))
                *id = -1;
            pattern += 4, url += n;
        } else if (*pattern++ != *url++) {
            return false;
        }
    }
    return *pattern == '\0' && *url == '\0';
}

const http_route *route_table_match(const char *method, const char *url, int64_t *id,
                                    int64_t *sub_id, bool *path_known) {
    *path_known = false;
    for (size_t i = 0; i < N_ROUTES; i++) {
        int64_t matched[2] = {0, 0};
        if (!pattern_matches(routes[i].pattern, url, matched))
            continue;
        *path_known = true;
        if (strcmp(routes[i].method, method) == 0) {
            *id = matched[0], *sub_id = matched[1];
            return &routes[i];
        }
    }
    return NULL;
}

size_t route_table_index(const http_route *route) {
    return (size_t)(route - routes);
}
