/* project_annotation — a project's annotation settings (schema 016), as
 * POST /v1/projects takes them and a project update takes them again:
 * guidelines (Markdown, at most ANNOTATION_GUIDELINES_MAX_BYTES),
 * label_schema (label_schema.h), lease_seconds (30..86400, default 600)
 * and gold_rate (0..1, default 0).
 */
#ifndef RLHF_PROJECT_ANNOTATION_H
#define RLHF_PROJECT_ANNOTATION_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "reply.h"

typedef struct project_annotation {
    const char *guidelines; /* borrowed from the body */
    json_t *label_schema;   /* owned, normalised */
    int64_t lease_seconds;
    double gold_rate;
} project_annotation;

/* Reads the settings from body; a member body lacks keeps its value in
 * current (a project's JSON, for an update) or gets its default (current
 * NULL). 1 ok (free with project_annotation_free), 0 with e. */
int project_annotation_check(const json_t *body, const json_t *current, project_annotation *a,
                             http_error *e);
/* Stores them on project id (writes). 0 or -1. */
int project_annotation_store(sqlite3 *db, int64_t id, const project_annotation *a);
void project_annotation_free(project_annotation *a);

#endif
