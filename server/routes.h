/* routes — every endpoint of rlhfd, one handler each, and what handlers
 * use. The route table (path patterns, methods, roles) is route_table.c
 * and every route is described in docs/api.md; the handlers live in one
 * file per resource: routes_health.c, routes_tokens.c, routes_jobs.c (jobs),
 * routes_job_events.c (a job's events, metrics and stream),
 * routes_studies.c (studies: jobs over a grid of hyperparameters),
 * routes_checkpoints.c (checkpoints, their content and generate),
 * routes_datasets.c, routes_files.c and routes_fine_tuning.c (the
 * OpenAI-compatible files and fine-tuning jobs), routes_projects.c,
 * routes_comparisons.c, routes_rankings.c, routes_agreement.c,
 * routes_project_admin.c (a project's settings, members and annotators),
 * routes_exports.c, routes_loops.c (online RLHF loops), routes_models.c (base models, fine-tuned model ids, a
 * checkpoint as a Hugging Face directory), static.c, openapi.c (the OpenAPI
 * document). */
#ifndef RLHF_ROUTES_H
#define RLHF_ROUTES_H

#include "defer_slow.h"
#include "defer_write.h"
#include "idempotency.h"
#include "json_checks.h"
#include "query_params.h"
#include "reply.h"
#include "request.h"
#include "textbuf.h"

enum MHD_Result route_healthz(request *r);
enum MHD_Result route_readyz(request *r);
enum MHD_Result route_metrics(request *r);
enum MHD_Result route_openapi(request *r);

enum MHD_Result route_tokens_create(request *r);
enum MHD_Result route_tokens_list(request *r);
enum MHD_Result route_tokens_revoke(request *r);

enum MHD_Result route_jobs_create(request *r);
enum MHD_Result route_jobs_list(request *r);
enum MHD_Result route_jobs_get(request *r);
enum MHD_Result route_jobs_cancel(request *r);
enum MHD_Result route_jobs_events(request *r);
enum MHD_Result route_jobs_rollouts(request *r);
enum MHD_Result route_jobs_metrics(request *r);
enum MHD_Result route_jobs_stream(request *r);
enum MHD_Result route_jobs_checkpoints(request *r);
enum MHD_Result route_studies_create(request *r);
enum MHD_Result route_studies_list(request *r);
enum MHD_Result route_studies_get(request *r);
enum MHD_Result route_studies_cancel(request *r);
enum MHD_Result route_studies_curves(request *r);
enum MHD_Result route_checkpoints_content(request *r);
enum MHD_Result route_checkpoints_generate(request *r);
enum MHD_Result route_completions(request *r);
enum MHD_Result route_chat_completions(request *r);
enum MHD_Result route_graders_run(request *r);

enum MHD_Result route_loops_create(request *r);
enum MHD_Result route_loops_list(request *r);
enum MHD_Result route_loops_get(request *r);
enum MHD_Result route_loops_cancel(request *r);
enum MHD_Result route_loops_rounds(request *r);

enum MHD_Result route_models_create(request *r);
enum MHD_Result route_models_list(request *r);
enum MHD_Result route_models_get(request *r);
enum MHD_Result route_models_delete(request *r);
enum MHD_Result route_models_file_upload(request *r);
extern const http_upload route_models_file_upload_stream;
enum MHD_Result route_models_complete(request *r);
enum MHD_Result route_checkpoints_hf_tar(request *r);

enum MHD_Result route_datasets_create(request *r);
enum MHD_Result route_datasets_list(request *r);
enum MHD_Result route_datasets_get(request *r);
enum MHD_Result route_datasets_delete(request *r);
enum MHD_Result route_datasets_upload(request *r);
/* DELETE of dataset r->path_id and its rows unless a job names it; as_file:
 * in the words of /v1/files (file_not_found, file_in_use, {id: "file-N",
 * object: "file", deleted}). */
enum MHD_Result datasets_delete(request *r, bool as_file);
extern const http_upload route_datasets_upload_stream;

/* routes_files.c, routes_fine_tuning.c: the OpenAI-compatible surface. */
enum MHD_Result route_files_create(request *r);
extern const http_upload route_files_create_stream;
enum MHD_Result route_files_list(request *r);
enum MHD_Result route_files_get(request *r);
enum MHD_Result route_files_delete(request *r);
enum MHD_Result route_files_content(request *r);
enum MHD_Result route_fine_tuning_create(request *r);
enum MHD_Result route_fine_tuning_list(request *r);
enum MHD_Result route_fine_tuning_get(request *r);
enum MHD_Result route_fine_tuning_cancel(request *r);
enum MHD_Result route_fine_tuning_events(request *r);
enum MHD_Result route_fine_tuning_checkpoints(request *r);

enum MHD_Result route_projects_create(request *r);
enum MHD_Result route_projects_list(request *r);
enum MHD_Result route_projects_get(request *r);
enum MHD_Result route_comparisons_create(request *r);
enum MHD_Result route_comparisons_list(request *r);
enum MHD_Result route_comparisons_next(request *r);
enum MHD_Result route_comparisons_get(request *r);
enum MHD_Result route_rankings_create(request *r);
enum MHD_Result route_rankings_list(request *r);
enum MHD_Result route_rankings_update(request *r);
enum MHD_Result route_rankings_delete(request *r);
enum MHD_Result route_me_rankings(request *r);
enum MHD_Result route_projects_position_bias(request *r);
enum MHD_Result route_projects_quality(request *r);
enum MHD_Result route_pairs_list(request *r);
enum MHD_Result route_comparisons_bulk(request *r);
enum MHD_Result route_pairs_export(request *r);
enum MHD_Result route_rankings_export(request *r);
enum MHD_Result route_projects_agreement(request *r);
/* routes_project_admin.c: settings, members, annotators, retiring. */
enum MHD_Result route_projects_update(request *r);
enum MHD_Result route_project_members_list(request *r);
enum MHD_Result route_project_members_add(request *r);
enum MHD_Result route_project_members_remove(request *r);
enum MHD_Result route_project_annotators_list(request *r);
enum MHD_Result route_project_annotators_exclude(request *r);
enum MHD_Result route_project_annotators_include(request *r);
enum MHD_Result route_comparisons_retire(request *r);
/* routes_exports.c: TRL, OpenAI DPO and CSV exports with filters. */
enum MHD_Result route_projects_export(request *r);
/* Appends to out the lines of an export after *last_id (ctx says which),
 * at most max_rows and stopping once out holds max_bytes; *ended when none
 * are left. 0 or -1. */
typedef int (*export_chunk_fn)(sqlite3 *db, const void *ctx, int64_t *last_id, int max_rows,
                               size_t max_bytes, textbuf *out, bool *ended);
/* Replies 200 with header (may be NULL) and then chunk's lines, streamed;
 * ctx (malloc'd) is freed with the stream. */
enum MHD_Result export_stream_reply(request *r, const char *content_type, const char *header,
                                    export_chunk_fn chunk, void *ctx);

/* static.c: the web client's files (no token). */
enum MHD_Result route_static_index(request *r);
enum MHD_Result route_static_asset(request *r);
/* Whether a path below the web root is acceptable as text: segments that
 * are non-empty, do not start with '.', hold no '\\', ':' or control bytes. */
int static_path_ok(const char *rel);
/* The Content-Type for a file name by its extension. */
const char *static_content_type(const char *path);

#endif
