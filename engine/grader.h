/* grader — reward functions as data: OpenAI's reinforcement fine-tuning
 * grader objects (and two of our own), parsed from JSON, validated before a
 * job starts, then scoring sampled completions against dataset rows.
 *
 * A grader is a JSON object with a "type", an optional "name" and the
 * fields of its type; any other field is an error. Every error names the
 * field by its path from the root the caller gives ("grader.graders[1].
 * operation: must be one of eq, ne, like, ilike").
 *
 *   string_check     {"input", "reference", "operation"}       OpenAI
 *       1 or 0: eq  input == reference;  ne  input != reference;
 *       like  input contains reference;  ilike  the same ignoring ASCII case.
 *   text_similarity  {"input", "reference", "evaluation_metric"} OpenAI
 *       fuzzy_match  the InDel ratio 2·LCS(a, b) / (|a| + |b|) over bytes
 *                    (1 for two empty strings): rapidfuzz's fuzz.ratio / 100,
 *                    which for ASCII is difflib's ratio too.
 *       bleu         sentence BLEU-4 of input against the one reference:
 *                    whitespace tokens, uniform weights, clipped n-gram
 *                    precisions p_n with add-one smoothing for n ≥ 2
 *                    (p_n = (m_n + 1) / (t_n + 1), Lin & Och 2004; p_1
 *                    unsmoothed, so no unigram match gives 0), brevity
 *                    penalty exp(1 - r/c) when c < r; an empty input gives 0.
 *       (OpenAI's other metrics — cosine, gleu, meteor, rouge_* — are refused.)
 *   (OpenAI's python and label_model graders are refused: the engine runs
 *   no user code and no LLM judge; regex covers most python graders.)
 *   regex            {"input", "pattern", "group", "reference", "operation"}  ours
 *       The first match of pattern in input (POSIX extended regular
 *       expressions as glibc's regcomp(REG_EXTENDED) reads them: use [0-9]
 *       or [[:digit:]], not \d; glibc also knows \s \S \w \W), its capture
 *       group (default 1, or 0 if the pattern has no group) compared with the
 *       reference by operation: eq (default), ne, like, ilike as above, or
 *       number_eq (both read as decimal numbers, equal as doubles; a capture
 *       that is not a number scores 0). No match scores 0.
 *       The number after "####":  "pattern": "####[[:space:]]*(-?[0-9]+)".
 *   length           {"input", "unit", "min_length", "max_length", "penalty"}  ours
 *       1 inside [min_length, max_length] (unit "bytes" (default) or
 *       "words"; max_length optional), else max(0, 1 - penalty·d) with d the
 *       units outside the range.
 *   score_model      {"model", "input", "range"}                 OpenAI (a reward model here)
 *       The trainer's grader_score_fn scores (sample prompt, rendered input)
 *       with the reward model named by "model" (a checkpoint reference the
 *       trainer resolves); clamped to "range" [lo, hi] when given.
 *   multi            {"graders", "calculate_output"}             OpenAI
 *       graders: an object of named graders (OpenAI's form), or an array of
 *       graders each with a "name"; calculate_output: a formula over those
 *       names with numbers, + - * / ^ (right-associative), unary minus,
 *       parentheses and min(a, b, ...), max(...), abs, floor, ceil, exp,
 *       sqrt, log — e.g. "0.7 * correct + 0.3 * length". A result that is
 *       not finite is an error.
 *
 * "input" defaults to "{{sample.output_text}}" where a type has one; the
 * other template fields are required. Templates (OpenAI's): text with
 * {{ namespace.path }} substitutions, spaces inside the braces allowed.
 * Namespaces: sample.output_text (the completion), sample.output_json.<path>
 * (the completion parsed as JSON; a completion that is not JSON scores 0),
 * item.<path> (the dataset row). A path is keys separated by dots, each
 * followed by any number of [index]: item.answers[0].text. Strings are
 * substituted as they are, other JSON values as compact JSON. A row
 * without the field is an error (bad data), not a 0.
 *
 * A parsed grader is read-only while scoring: several threads may score
 * with it at once (regexec is thread-safe; the score callback must be too).
 */
#ifndef RLHF_GRADER_H
#define RLHF_GRADER_H

#include <jansson.h>
#include <stddef.h>

typedef struct grader grader;

/* What is being graded: OpenAI's "sample" namespace plus the prompt, which
 * a reward model needs. */
typedef struct grader_sample {
    const char *prompt;      /* may be NULL (then "" is given to score_model) */
    const char *output_text; /* the sampled completion */
} grader_sample;

/* Scores text as the answer to prompt with the reward model named model
 * (the string of the score_model grader's "model" field). 0 with *score
 * set, or -1 with a message in err. */
typedef int (*grader_score_fn)(void *ctx, const char *model, const char *prompt, const char *text,
                               double *score, char *err, size_t errlen);

/* Parses and validates spec; path names it in messages ("grader" if NULL).
 * NULL with a message in err on any error. */
grader *grader_parse(const json_t *spec, const char *path, char *err, size_t errlen);
/* The same from JSON text. */
grader *grader_parse_text(const char *json_text, const char *path, char *err, size_t errlen);
void grader_free(grader *g);

/* The "name" field (or the type's name when absent). */
const char *grader_name(const grader *g);

/* The reward models the grader's score_model graders name, in order of
 * appearance (duplicates kept): what the trainer must load before scoring. */
int grader_model_count(const grader *g);
const char *grader_model(const grader *g, int i);

/* Sets the callback every score_model grader inside g calls. */
void grader_set_score_fn(grader *g, grader_score_fn fn, void *ctx);

/* Scores one completion against one dataset row (item: a JSON object, or
 * NULL when no template reads item). 0 with *score set, or -1 with a
 * message naming the field (a row without a referenced field, a score_model
 * without a callback or whose callback failed, a formula that is not
 * finite). */
int grader_score(const grader *g, const grader_sample *sample, const json_t *item, double *score,
                 char *err, size_t errlen);

/* The named parts of a score, for per-grader metrics (TRL logs
 * rewards/<name>/mean): the sub-graders of a multi grader at the top, by
 * the names its formula uses; any other grader is one part, its name. */
int grader_part_count(const grader *g);
const char *grader_part_name(const grader *g, int i);
/* grader_score that also writes each part's score to
 * parts[0 .. grader_part_count(g)) (parts may be NULL). */
int grader_score_parts(const grader *g, const grader_sample *sample, const json_t *item,
                       double *score, double *parts, char *err, size_t errlen);

/* The text-similarity measures, for tests and for callers. */
double grader_fuzzy_ratio(const char *a, const char *b);
double grader_bleu(const char *hypothesis, const char *reference);

#endif
