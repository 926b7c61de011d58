/* hparams — one declarative table of hyperparameters per job type.
 *
 * The table is the single source of truth: the CLI parses flags and config
 * files against it, the daemon validates job requests against it,
 * `rlhf-train describe` prints it as JSON, and docs/hyperparameters.md is
 * generated from it. Each row names a field of the job's config struct (by
 * offset), its type, default, inclusive allowed range (or choices) and a
 * one-line doc. Field storage: HPARAM_INT → int64_t, HPARAM_FLOAT → double,
 * HPARAM_BOOL → bool, HPARAM_CHOICE → char[HPARAM_CHOICE_BYTES], HPARAM_JSON →
 * char[HPARAM_JSON_BYTES]: a JSON value (a grader object) kept as compact
 * text, "" by default; a JSON string is kept as its text. What the text
 * must hold is the job's validator's business.
 */
#ifndef RLHF_HPARAMS_H
#define RLHF_HPARAMS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#define HPARAM_CHOICE_BYTES 32
#define HPARAM_JSON_BYTES   4096

typedef enum hparam_type {
    HPARAM_INT,
    HPARAM_FLOAT,
    HPARAM_BOOL,
    HPARAM_CHOICE,
    HPARAM_JSON,
} hparam_type;

typedef struct hparam_def {
    const char *name;
    hparam_type type;
    size_t offset;
    double default_value;       /* INT, FLOAT, BOOL (0/1) */
    double min, max;            /* INT, FLOAT: inclusive */
    const char *const *choices; /* CHOICE: NULL-terminated; the first is the default */
    const char *doc;
} hparam_def;

typedef struct hparam_table {
    const hparam_def *defs;
    int n;
    size_t config_bytes; /* sizeof the config struct */
} hparam_table;

/* Fills every field of cfg with its default. */
void hparams_set_defaults(const hparam_table *table, void *cfg);

/* Applies every key of the JSON object obj onto cfg. All-or-nothing: on any
 * unknown key, wrong type or out-of-range value cfg is left unchanged, the
 * message (naming the key) goes to err, and the return is -1. */
int hparams_apply_json(const hparam_table *table, void *cfg, const json_t *obj, char *err,
                       size_t errlen);

/* Applies one value given as text (a command-line flag). name may use '-'
 * for '_'. Same error contract as hparams_apply_json. */
int hparams_apply_string(const hparam_table *table, void *cfg, const char *name, const char *value,
                         char *err, size_t errlen);

/* The row called name ('-' or '_'), or NULL. */
const hparam_def *hparams_find(const hparam_table *table, const char *name);

/* The resolved configuration as a JSON object (new reference). */
json_t *hparams_to_json(const hparam_table *table, const void *cfg);
/* The table itself as a JSON array of {name, type, default, min, max,
 * choices, doc} (new reference). */
json_t *hparams_describe(const hparam_table *table);
/* The table as a Markdown table, for docs/. */
void hparams_write_markdown(const hparam_table *table, FILE *out);
/* The table for a terminal (`--help`): per row `<prefix>name TYPE (default
 * D; allowed)` and its description on the next line; prefix "--" for
 * rlhf-train's flags, "" for rlhfctl's --set KEY=VALUE. */
void hparams_write_help(const hparam_table *table, const char *prefix, FILE *out);

#endif
