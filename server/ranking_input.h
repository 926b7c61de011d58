/* ranking_input — the body of a ranking, as POST /v1/comparisons/{id}/
 * rankings takes it and PUT /v1/rankings/{id} takes it again: {order,
 * note, labels} or {skip: true, skip_reason, note}, checked against the
 * comparison's candidates and its project's label schema (label_schema.h).
 * The result is one allocation, for a handler's write_ctx.
 */
#ifndef RLHF_RANKING_INPUT_H
#define RLHF_RANKING_INPUT_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ranking_limits.h"
#include "reply.h"
#include "request.h"

#define RANKING_MAX_NOTE 4096

typedef struct ranking_write {
    int64_t comparison_id;                           /* set by the caller */
    int64_t ids[RANKING_MAX_K], rank[RANKING_MAX_K]; /* candidate ids[i] in group rank[i] */
    size_t n;
    bool skip, has_note, has_labels;
    char skip_reason[24]; /* "" none */
    size_t labels_at;     /* offset of the labels' JSON in text */
    char text[];          /* note, NUL, labels JSON, NUL */
} ranking_write;

/* Validates body against the candidates ids[0..n) of a comparison of
 * project_id. The new write (free with free()), or NULL with e (e->status
 * 0: out of memory). */
ranking_write *ranking_input_parse(sqlite3 *db, const json_t *body, int64_t project_id,
                                   const int64_t *ids, size_t n, http_error *e);
/* What both ranking writes (post, edit) do before the writer: refuse a
 * locked project (409 project_locked), parse r's body against the
 * comparison's candidates, and hand the write (w->comparison_id set) to
 * the group-commit writer's run. */
enum MHD_Result ranking_input_defer(request *r, int64_t comparison_id, int64_t project_id,
                                    enum MHD_Result (*run)(request *r));
/* The note (NULL: none) and labels (a new reference, NULL: none). */
const char *ranking_write_note(const ranking_write *w);
json_t *ranking_write_labels(const ranking_write *w);

#endif
