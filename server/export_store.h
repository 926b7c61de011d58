/* export_store — a project's preference pairs as training files: TRL's
 * preference format (standard and conversational), OpenAI's DPO format,
 * and CSV, with filters (docs/api.md, GET /v1/projects/{id}/export). The
 * rankings of annotators an admin excluded from the project are never
 * exported (project_access.h).
 */
#ifndef RLHF_EXPORT_STORE_H
#define RLHF_EXPORT_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "textbuf.h"

typedef enum export_format {
    EXPORT_FORMAT_TRL,              /* {prompt, chosen, rejected}: strings */
    EXPORT_FORMAT_TRL_CONVERSATION, /* the same as lists of {role, content} */
    EXPORT_FORMAT_OPENAI, /* {input: {messages}, preferred_output, non_preferred_output} */
    EXPORT_FORMAT_CSV,    /* a header line, then one line per pair with its provenance */
} export_format;

/* What to export of a project. */
typedef struct export_filter {
    int64_t project_id;
    export_format format;
    const char *annotators;         /* a JSON array of token ids to keep, or NULL: all */
    const char *exclude_annotators; /* a JSON array of token ids to leave out, or NULL */
    int64_t since, until;           /* the ranking's created_at in [since, until]; 0: open */
    bool has_min_agreement;
    double min_agreement; /* only comparisons whose agreement (below) is at least this */
    bool exclude_retired; /* leave out retired comparisons */
    bool exclude_gold;    /* leave out gold comparisons (HOOK: h-quality's gold flag) */
} export_filter;

/* A comparison's agreement, for min_agreement: over every two non-skipped
 * rankings of it (by annotators not excluded) and every two of its
 * candidates, the fraction where both rankings order the two the same way
 * (better, worse, or tied). A comparison with fewer than two such rankings
 * has none, and is left out whenever min_agreement is given. */

/* line (stolen; NULL: a failure upstream) as one compact JSONL line into
 * out, members in order: 0, or -1. rankings.jsonl writes its lines so too. */
int export_json_line(textbuf *out, json_t *line);

/* The export's first line (CSV's header), or NULL. */
const char *export_header(export_format format);

/* Appends to out the lines of f's pairs with id > *last_id, in id order,
 * at most max_rows of them and stopping once out holds max_bytes; *last_id
 * becomes the last id read, *ended whether none are left. One read
 * transaction. 0 or -1. */
int export_chunk(sqlite3 *db, const export_filter *f, int64_t *last_id, int max_rows,
                 size_t max_bytes, textbuf *out, bool *ended);

#endif
