#include "export_store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "project_access.h"

/* Comparison c is not a gold comparison (schema 016: gold holds its known
 * answer, NULL for an ordinary comparison). */
#define EXPORT_NOT_GOLD "c.gold IS NULL"

/* Rankings k1 and k2 of comparison c both count for its agreement. */
#define AGREEMENT_RANKING(k)                                                                       \
    k ".skipped = 0 AND NOT EXISTS (SELECT 1 FROM project_excluded_annotators x WHERE "            \
      "x.project_id = c.project_id AND x.token_id = " k ".token_id)"

/* The agreement of comparison c (export_store.h); NULL when it has fewer
 * than two rankings. sign(a - b) is (a > b) - (a < b). */
#define COMPARISON_AGREEMENT                                                                       \
    "(SELECT avg((e1a.rank > e1b.rank) - (e1a.rank < e1b.rank) = (e2a.rank > e2b.rank) - "         \
    "(e2a.rank < e2b.rank)) FROM rankings k1 JOIN rankings k2 ON k2.comparison_id = "              \
    "k1.comparison_id AND k2.id > k1.id JOIN ranking_entries e1a ON e1a.ranking_id = k1.id JOIN "  \
    "ranking_entries e1b ON e1b.ranking_id = k1.id AND e1b.candidate_id > e1a.candidate_id JOIN "  \
    "ranking_entries e2a ON e2a.ranking_id = k2.id AND e2a.candidate_id = e1a.candidate_id JOIN "  \
    "ranking_entries e2b ON e2b.ranking_id = k2.id AND e2b.candidate_id = e1b.candidate_id WHERE " \
    "k1.comparison_id = c.id AND " AGREEMENT_RANKING("k1") " AND " AGREEMENT_RANKING("k2") ")"

static const char export_sql[] =
    "SELECT p.id, c.id, k.id, t.name, c.prompt, ch.text, rj.text, k.created_at, c.retired_at IS "
    "NOT NULL FROM preference_pairs p JOIN rankings k ON k.id = p.ranking_id "
    "JOIN comparisons c ON c.id = k.comparison_id JOIN api_tokens t ON t.id = k.token_id "
    "JOIN candidates ch ON ch.id = p.chosen_candidate_id "
    "JOIN candidates rj ON rj.id = p.rejected_candidate_id "
    "WHERE c.project_id = ?1 AND p.id > ?2 AND NOT " PROJECT_EXCLUDED_RANKING " "
    "AND (?4 IS NULL OR k.token_id IN (SELECT value FROM json_each(?4))) "
    "AND (?5 IS NULL OR k.token_id NOT IN (SELECT value FROM json_each(?5))) "
    "AND (?6 = 0 OR k.created_at >= ?6) AND (?7 = 0 OR k.created_at <= ?7) "
    "AND (?8 = 0 OR c.retired_at IS NULL) AND (?9 = 0 OR " EXPORT_NOT_GOLD ") "
    "AND (?10 IS NULL OR " COMPARISON_AGREEMENT " >= ?10) ORDER BY p.id LIMIT ?3";

enum {
    COL_PAIR,
    COL_COMPARISON,
    COL_RANKING,
    COL_ANNOTATOR,
    COL_PROMPT,
    COL_CHOSEN,
    COL_REJECTED,
    COL_CREATED_AT,
    COL_RETIRED
};

static const char *text_at(sqlite3_stmt *st, int col) {
    return (const char *)sqlite3_column_text(st, col);
}

const char *export_header(export_format format) {
    return format == EXPORT_FORMAT_CSV
               ? "pair_id,comparison_id,ranking_id,annotator,prompt,chosen,rejected,created_at,"
                 "retired\n"
               : NULL;
}

/* s as one CSV field (RFC 4180): quoted when it holds a comma, quote or
 * line break, quotes doubled. */
static void csv_field(textbuf *out, const char *s) {
    if (strpbrk(s, ",\"\r\n") == NULL) {
        textbuf_puts(out, s);
        return;
    }
    textbuf_put(out, "\"", 1);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        textbuf_put(out, s, (size_t)(q - s) + 1);
        textbuf_put(out, "\"", 1);
    }
    textbuf_puts(out, s);
    textbuf_put(out, "\"", 1);
}

static void csv_line(textbuf *out, sqlite3_stmt *st) {
    for (int col = COL_PAIR; col <= COL_RETIRED; col++) {
        if (col > COL_PAIR)
            textbuf_put(out, ",", 1);
        if (col == COL_RETIRED)
            textbuf_puts(out, sqlite3_column_int(st, col) ? "true" : "false");
        else
            csv_field(out, text_at(st, col));
    }
    textbuf_put(out, "\n", 1);
}

/* [{"role": role, "content": text}] */
static json_t *messages(const char *role, const char *text) {
    return json_pack("[{s:s, s:s}]", "role", role, "content", text);
}

static json_t *json_row(export_format format, sqlite3_stmt *st) {
    const char *prompt = text_at(st, COL_PROMPT), *chosen = text_at(st, COL_CHOSEN),
               *rejected = text_at(st, COL_REJECTED);
    switch (format) {
        case EXPORT_FORMAT_TRL:
            return json_pack("{s:s, s:s, s:s}", "prompt", prompt, "chosen", chosen, "rejected",
                             rejected);
        case EXPORT_FORMAT_TRL_CONVERSATION:
            return json_pack("{s:o, s:o, s:o}", "prompt", messages("user", prompt), "chosen",
                             messages("assistant", chosen), "rejected",
                             messages("assistant", rejected));
        case EXPORT_FORMAT_OPENAI:
            return json_pack("{s:{s:o}, s:o, s:o}", "input", "messages", messages("user", prompt),
                             "preferred_output", messages("assistant", chosen),
                             "non_preferred_output", messages("assistant", rejected));
        case EXPORT_FORMAT_CSV:
            break;
    }
    return NULL;
}

/* One pair's line into out: 0, or -1. */
static int export_line(textbuf *out, export_format format, sqlite3_stmt *st) {
    if (format == EXPORT_FORMAT_CSV) {
        csv_line(out, st);
        return out->failed ? -1 : 0;
    }
    return export_json_line(out, json_row(format, st));
}

int export_json_line(textbuf *out, json_t *line) {
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    if (text != NULL) {
        textbuf_puts(out, text);
        textbuf_put(out, "\n", 1);
    }
    free(text);
    return text != NULL && !out->failed ? 0 : -1;
}

int export_chunk(sqlite3 *db, const export_filter *f, int64_t *last_id, int max_rows,
                 size_t max_bytes, textbuf *out, bool *ended) {
    sqlite3_stmt *st = db_cached_prepare(db, export_sql);
    int ok = st != NULL && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    int rc = SQLITE_DONE, n = 0;
    if (ok) {
        sqlite3_bind_int64(st, 1, f->project_id);
        sqlite3_bind_int64(st, 2, *last_id);
        sqlite3_bind_int(st, 3, max_rows);
        sqlite3_bind_text(st, 4, f->annotators, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, f->exclude_annotators, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, f->since);
        sqlite3_bind_int64(st, 7, f->until);
        sqlite3_bind_int(st, 8, f->exclude_retired);
        sqlite3_bind_int(st, 9, f->exclude_gold);
        if (f->has_min_agreement)
            sqlite3_bind_double(st, 10, f->min_agreement);
        else
            sqlite3_bind_null(st, 10);
        while (ok && out->len < max_bytes && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            *last_id = sqlite3_column_int64(st, COL_PAIR);
            n++;
            ok = export_line(out, f->format, st) == 0;
        }
        ok = ok && (rc == SQLITE_DONE || rc == SQLITE_ROW);
    }
    if (st)
        db_cached_done(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    *ended = n < max_rows && rc == SQLITE_DONE;
    return ok ? 0 : -1;
}
