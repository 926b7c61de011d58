#include "grader.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================
 * The parsed form
 * ========================================================================== */

typedef enum grader_kind {
    GRADER_STRING_CHECK,
    GRADER_TEXT_SIMILARITY,
    GRADER_REGEX,
    GRADER_LENGTH,
    GRADER_SCORE_MODEL,
    GRADER_MULTI,
} grader_kind;

static const char *const kind_names[] = {"string_check", "text_similarity", "regex",
                                         "length",       "score_model",     "multi"};
enum { N_KINDS = 6 };

typedef enum compare_op { OP_EQ, OP_NE, OP_LIKE, OP_ILIKE, OP_NUMBER_EQ } compare_op;
static const char *const op_names[] = {"eq", "ne", "like", "ilike", "number_eq"};

typedef enum similarity_metric { METRIC_FUZZY_MATCH, METRIC_BLEU } similarity_metric;

/* calculate_output, compiled: a tree of nodes. */
typedef enum expr_kind {
    EXPR_NUMBER,
    EXPR_VAR,
    EXPR_NEG,
    EXPR_ADD,
    EXPR_SUB,
    EXPR_MUL,
    EXPR_DIV,
    EXPR_POW,
    EXPR_CALL,
} expr_kind;

typedef struct expr {
    expr_kind kind;
    double number;      /* EXPR_NUMBER */
    int var;            /* EXPR_VAR: index of the sub-grader */
    int fn;             /* EXPR_CALL: index into fn_names */
    int n_args;         /* EXPR_CALL; 1 for NEG, 2 for the binary operators */
    struct expr **args; /* (n_args) */
} expr;

static const char *const fn_names[] = {"min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log"};
enum { N_FNS = 8, FN_VARIADIC = 2 /* min and max take 1 or more */ };

struct grader {
    grader_kind kind;
    char *name;
    char *path; /* where it sits in the spec, for runtime messages */
    char *input, *reference;
    compare_op op;
    similarity_metric metric;
    regex_t re; /* regex, when re_compiled */
    bool re_compiled;
    int group;
    bool unit_words;
    double min_length, max_length, penalty; /* max_length < 0: none */
    char *model;
    bool has_range;
    double range[2];
    int n_sub;
    grader **sub;
    char **sub_names;
    expr *formula;
    grader_score_fn score_fn;
    void *score_ctx;
};

/* ============================================================================
 * Small helpers
 * ========================================================================== */

static char *dup_string(const char *s) {
    const size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* err = "<path>.<field>: <message>" (field may be NULL). Returns -1. */
static int fail(char *err, size_t errlen, const char *path, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *path, const char *field, const char *fmt,
                ...) {
    if (err == NULL || errlen == 0)
        return -1;
    int n =
        field ? snprintf(err, errlen, "%s.%s: ", path, field) : snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static bool ascii_icontains(const char *hay, const char *needle) {
    const size_t n = strlen(needle);
    for (const char *p = hay;; p++) {
        if (strncasecmp(p, needle, n) == 0)
            return true;
        if (*p == '\0')
            return false;
    }
}

/* A whole string as a decimal number (surrounding spaces allowed; no hex,
 * inf or nan, which strtod alone would take). */
static bool parse_number(const char *s, double *out) {
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0' || s[strspn(s, "0123456789+-.eE \t\r\n")] != '\0')
        return false;
    *out = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0' && isfinite(*out);
}

static double compare(compare_op op, const char *a, const char *b) {
    double x, y;
    switch (op) {
        case OP_EQ:
            return strcmp(a, b) == 0;
        case OP_NE:
            return strcmp(a, b) != 0;
        case OP_LIKE:
            return strstr(a, b) != NULL;
        case OP_ILIKE:
            return ascii_icontains(a, b);
        case OP_NUMBER_EQ:
            return parse_number(a, &x) && parse_number(b, &y) && x == y;
    }
    return 0;
}

/* ============================================================================
 * Templates: "{{ sample.output_text }}", "{{item.answers[0].text}}"
 * ========================================================================== */

/* A variable's path: segments "key" or "[index]" after the namespace. */
static int check_path(const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (p[i] == '.') {
            i++;
            const size_t start = i;
            while (i < n && p[i] != '.' && p[i] != '[')
                i++;
            if (i == start)
                return -1;
        } else if (p[i] == '[') {
            i++;
            const size_t start = i;
            while (i < n && isdigit((unsigned char)p[i]))
                i++;
            if (i == start || i >= n || p[i] != ']')
                return -1;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* The variable between the braces, spaces trimmed: [*start, *start + *len). */
static void trim(const char **start, size_t *len) {
    while (*len > 0 && isspace((unsigned char)**start))
        (*start)++, (*len)--;
    while (*len > 0 && isspace((unsigned char)(*start)[*len - 1]))
        (*len)--;
}

static bool has_prefix(const char *v, size_t n, const char *prefix) {
    const size_t k = strlen(prefix);
    return n >= k && memcmp(v, prefix, k) == 0;
}

static int check_template(const char *t, const char *path, const char *field, char *err,
                          size_t errlen) {
    for (const char *p = t; (p = strstr(p, "{{")) != NULL;) {
        const char *close = strstr(p + 2, "}}");
        if (close == NULL)
            return fail(err, errlen, path, field, "\"{{\" at byte %td is never closed", p - t);
        const char *v = p + 2;
        size_t n = (size_t)(close - v);
        trim(&v, &n);
        const char *rest = NULL;
        if (n == strlen("sample.output_text") && has_prefix(v, n, "sample.output_text"))
            rest = v + n;
        else if (has_prefix(v, n, "sample.output_json"))
            rest = v + strlen("sample.output_json");
        else if (has_prefix(v, n, "item.") || has_prefix(v, n, "item["))
            rest = v + strlen("item");
        if (rest == NULL)
            return fail(err, errlen, path, field,
                        "unknown variable {{%.*s}} (use sample.output_text, "
                        "sample.output_json.<path> or item.<path>)",
                        (int)n, v);
        if (check_path(rest, (size_t)(v + n - rest)) != 0)
            return fail(err, errlen, path, field, "malformed path in {{%.*s}}", (int)n, v);
        p = close + 2;
    }
    return 0;
}

/* A growing string. */
typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static int strbuf_add(strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (grown == NULL)
            return -1;
        b->s = grown, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* What one scoring call knows. */
typedef struct score_ctx {
    const grader_sample *sample;
    const json_t *item;
    json_t *output_json; /* parsed on first use */
    bool output_json_tried;
    bool sample_unparseable; /* set when a template needed output_json and it was not JSON */
} score_ctx;

/* Follows path (".key", "[i]" segments) from root; NULL when absent. */
static const json_t *follow(const json_t *root, const char *p, size_t n) {
    size_t i = 0;
    while (root != NULL && i < n) {
        if (p[i] == '.') {
            const size_t start = ++i;
            while (i < n && p[i] != '.' && p[i] != '[')
                i++;
            char key[256];
            if (i - start >= sizeof key || !json_is_object(root))
                return NULL;
            memcpy(key, p + start, i - start);
            key[i - start] = '\0';
            root = json_object_get(root, key);
        } else {
            const size_t idx = (size_t)strtoull(p + i + 1, NULL, 10);
            while (p[i] != ']')
                i++;
            i++;
            root = json_is_array(root) ? json_array_get(root, idx) : NULL;
        }
    }
    return root;
}

/* Renders template t into a fresh string (*out, caller frees): 0, 1 when
 * the sample is not JSON and a variable needed it (score 0), -1 on error. */
static int render(const char *t, score_ctx *ctx, const char *path, const char *field, char **out,
                  char *err, size_t errlen) {
    strbuf b = {0};
    if (strbuf_add(&b, "", 0) != 0)
        return fail(err, errlen, path, field, "out of memory");
    const char *p = t;
    for (const char *open; (open = strstr(p, "{{")) != NULL;) {
        const char *close = strstr(open + 2, "}}");
        const char *v = open + 2;
        size_t n = (size_t)(close - v);
        trim(&v, &n);
        if (strbuf_add(&b, p, (size_t)(open - p)) != 0)
            goto oom;
        p = close + 2;
        const json_t *value = NULL;
        const char *text = NULL;
        if (has_prefix(v, n, "sample.output_text")) {
            text = ctx->sample->output_text ? ctx->sample->output_text : "";
        } else if (has_prefix(v, n, "sample.output_json")) {
            if (!ctx->output_json_tried) {
                ctx->output_json_tried = true;
                ctx->output_json =
                    json_loads(ctx->sample->output_text ? ctx->sample->output_text : "",
                               JSON_DECODE_ANY, NULL);
            }
            const size_t k = strlen("sample.output_json");
            value = ctx->output_json ? follow(ctx->output_json, v + k, n - k) : NULL;
            if (value == NULL) { /* not JSON, or without the field: the sample's fault */
                ctx->sample_unparseable = true;
                free(b.s);
                return 1;
            }
        } else {
            const size_t k = strlen("item");
            value = ctx->item ? follow(ctx->item, v + k, n - k) : NULL;
            if (value == NULL) {
                free(b.s);
                return fail(err, errlen, path, field, "{{%.*s}}: the dataset row has no such field",
                            (int)n, v);
            }
        }
        if (text == NULL && json_is_string(value))
            text = json_string_value(value);
        if (text != NULL) {
            if (strbuf_add(&b, text, strlen(text)) != 0)
                goto oom;
        } else {
            char *dumped = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
            const int rc = dumped ? strbuf_add(&b, dumped, strlen(dumped)) : -1;
            free(dumped);
            if (rc != 0)
                goto oom;
        }
    }
    if (strbuf_add(&b, p, strlen(p)) != 0)
        goto oom;
    *out = b.s;
    return 0;
oom:
    free(b.s);
    return fail(err, errlen, path, field, "out of memory");
}

/* ============================================================================
 * Text similarity
 * ========================================================================== */

double grader_fuzzy_ratio(const char *a, const char *b) {
    const size_t n = strlen(a), m = strlen(b);
    if (n + m == 0)
        return 1.0;
    /* LCS length by the classic two-row dynamic programme. */
    size_t *prev = calloc(m + 1, sizeof *prev), *cur = calloc(m + 1, sizeof *cur);
    if (prev == NULL || cur == NULL) {
        free(prev), free(cur);
        return NAN;
    }
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++)
            cur[j] = a[i - 1] == b[j - 1]   ? prev[j - 1] + 1
                     : prev[j] > cur[j - 1] ? prev[j]
                                            : cur[j - 1];
        size_t *t = prev;
        prev = cur, cur = t;
    }
    const double lcs = (double)prev[m];
    free(prev), free(cur);
    return 2.0 * lcs / (double)(n + m);
}

/* Whitespace tokens of s as (start, length) pairs; returns the count. */
typedef struct token {
    const char *s;
    size_t n;
} token;

static size_t tokenize_words(const char *s, token **out) {
    size_t count = 0, cap = 16;
    token *t = malloc(cap * sizeof *t);
    while (t != NULL && *s) {
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            break;
        const char *w = s;
        while (*s && !isspace((unsigned char)*s))
            s++;
        if (count == cap) {
            token *grown = realloc(t, (cap *= 2) * sizeof *t);
            if (grown == NULL) {
                free(t);
                t = NULL;
                break;
            }
            t = grown;
        }
        t[count++] = (token){w, (size_t)(s - w)};
    }
    *out = t;
    return t ? count : 0;
}

static bool ngram_equal(const token *a, const token *b, int n) {
    for (int k = 0; k < n; k++)
        if (a[k].n != b[k].n || memcmp(a[k].s, b[k].s, a[k].n) != 0)
            return false;
    return true;
}

/* Σ over the hypothesis' distinct n-grams of min(count in hyp, count in ref). */
static size_t clipped_matches(const token *h, size_t c, const token *r, size_t rn, int n) {
    size_t matches = 0;
    for (size_t i = 0; i + (size_t)n <= c; i++) {
        bool first = true; /* count each distinct n-gram once, at its first occurrence */
        for (size_t j = 0; j < i && first; j++)
            first = !ngram_equal(&h[j], &h[i], n);
        if (!first)
            continue;
        size_t in_h = 0, in_r = 0;
        for (size_t j = i; j + (size_t)n <= c; j++)
            in_h += ngram_equal(&h[j], &h[i], n);
        for (size_t j = 0; j + (size_t)n <= rn; j++)
            in_r += ngram_equal(&r[j], &h[i], n);
        matches += in_h < in_r ? in_h : in_r;
    }
    return matches;
}

double grader_bleu(const char *hypothesis, const char *reference) {
    token *h, *r;
    const size_t c = tokenize_words(hypothesis, &h), rn = tokenize_words(reference, &r);
    double score = 0.0;
    if (h != NULL && r != NULL && c > 0) {
        double log_sum = 0.0;
        for (int n = 1; n <= 4; n++) {
            const double m = (double)clipped_matches(h, c, r, rn, n);
            const double t = c + 1 > (size_t)n ? (double)(c + 1 - (size_t)n) : 0.0;
            if (n == 1 && m == 0) {
                log_sum = -INFINITY;
                break;
            }
            log_sum += n == 1 ? log(m / t) : log((m + 1.0) / (t + 1.0));
        }
        const double bp = c < rn ? exp(1.0 - (double)rn / (double)c) : 1.0;
        score = isinf(log_sum) ? 0.0 : bp * exp(log_sum / 4.0);
    }
    free(h), free(r);
    return score;
}

/* ============================================================================
 * calculate_output: a recursive-descent parser
 * ========================================================================== */

typedef struct formula_parser {
    const char *text, *p;
    const grader *multi; /* its sub_names are the variables */
    const char *path;
    char *err;
    size_t errlen;
    int failed;
} formula_parser;

static void expr_free(expr *e) {
    if (e == NULL)
        return;
    for (int i = 0; i < e->n_args; i++)
        expr_free(e->args[i]);
    free(e->args);
    free(e);
}

static expr *expr_new(expr_kind kind, int n_args) {
    expr *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->kind = kind;
    if (n_args > 0 && (e->args = calloc((size_t)n_args, sizeof *e->args)) == NULL) {
        free(e);
        return NULL;
    }
    e->n_args = n_args;
    return e;
}

static expr *formula_error(formula_parser *fp, const char *what) {
    if (!fp->failed)
        fail(fp->err, fp->errlen, fp->path, "calculate_output", "%s at position %td", what,
             fp->p - fp->text);
    fp->failed = 1;
    return NULL;
}

static void skip_space(formula_parser *fp) {
    while (isspace((unsigned char)*fp->p))
        fp->p++;
}

static expr *parse_sum(formula_parser *fp);

static expr *binary(formula_parser *fp, expr_kind kind, expr *left, expr *right) {
    if (left == NULL || right == NULL) {
        expr_free(left), expr_free(right);
        return fp->failed ? NULL : formula_error(fp, "out of memory");
    }
    expr *e = expr_new(kind, 2);
    if (e == NULL) {
        expr_free(left), expr_free(right);
        return formula_error(fp, "out of memory");
    }
    e->args[0] = left, e->args[1] = right;
    return e;
}

static expr *parse_call(formula_parser *fp, int fn) {
    fp->p++; /* '(' */
    expr *e = expr_new(EXPR_CALL, 0);
    if (e == NULL)
        return formula_error(fp, "out of memory");
    e->fn = fn;
    for (;;) {
        expr *arg = parse_sum(fp);
        if (arg == NULL) {
            expr_free(e);
            return NULL;
        }
        expr **grown = realloc(e->args, (size_t)(e->n_args + 1) * sizeof *grown);
        if (grown == NULL) {
            expr_free(arg), expr_free(e);
            return formula_error(fp, "out of memory");
        }
        e->args = grown;
        e->args[e->n_args++] = arg;
        skip_space(fp);
        if (*fp->p == ',') {
            fp->p++;
            continue;
        }
        if (*fp->p != ')') {
            expr_free(e);
            return formula_error(fp, "expected ',' or ')'");
        }
        fp->p++;
        break;
    }
    if (fn >= FN_VARIADIC && e->n_args != 1) {
        expr_free(e);
        char what[64];
        snprintf(what, sizeof what, "%s takes one argument", fn_names[fn]);
        return formula_error(fp, what);
    }
    return e;
}

static expr *parse_primary(formula_parser *fp) {
    skip_space(fp);
    const char *start = fp->p;
    if (*fp->p == '(') {
        fp->p++;
        expr *e = parse_sum(fp);
        skip_space(fp);
        if (e != NULL && *fp->p != ')') {
            expr_free(e);
            return formula_error(fp, "expected ')'");
        }
        fp->p++;
        return e;
    }
    if (isdigit((unsigned char)*fp->p) || *fp->p == '.') {
        char *end;
        const double v = strtod(fp->p, &end);
        if (end == fp->p)
            return formula_error(fp, "malformed number");
        fp->p = end;
        expr *e = expr_new(EXPR_NUMBER, 0);
        if (e == NULL)
            return formula_error(fp, "out of memory");
        e->number = v;
        return e;
    }
    if (isalpha((unsigned char)*fp->p) || *fp->p == '_') {
        while (isalnum((unsigned char)*fp->p) || *fp->p == '_')
            fp->p++;
        const size_t n = (size_t)(fp->p - start);
        skip_space(fp);
        if (*fp->p == '(') {
            for (int f = 0; f < N_FNS; f++)
                if (strlen(fn_names[f]) == n && memcmp(fn_names[f], start, n) == 0)
                    return parse_call(fp, f);
            fp->p = start;
            return formula_error(fp, "unknown function (use min, max, abs, floor, ceil, exp, "
                                     "sqrt, log)");
        }
        for (int i = 0; i < fp->multi->n_sub; i++)
            if (strlen(fp->multi->sub_names[i]) == n &&
                memcmp(fp->multi->sub_names[i], start, n) == 0) {
                expr *e = expr_new(EXPR_VAR, 0);
                if (e == NULL)
                    return formula_error(fp, "out of memory");
                e->var = i;
                return e;
            }
        fp->p = start;
        char what[160];
        snprintf(what, sizeof what, "'%.*s' names no grader in graders", (int)(n < 64 ? n : 64),
                 start);
        return formula_error(fp, what);
    }
    return formula_error(fp, *fp->p ? "unexpected character" : "unexpected end");
}

static expr *parse_unary(formula_parser *fp);

/* power := primary ('^' unary)?   (so 2^-1 and 2^3^2 = 2^9 work) */
static expr *parse_power(formula_parser *fp) {
    expr *base = parse_primary(fp);
    skip_space(fp);
    if (base == NULL || *fp->p != '^')
        return base;
    fp->p++;
    return binary(fp, EXPR_POW, base, parse_unary(fp));
}

static expr *parse_unary(formula_parser *fp) {
    skip_space(fp);
    if (*fp->p == '-') {
        fp->p++;
        expr *inner = parse_unary(fp);
        if (inner == NULL)
            return NULL;
        expr *e = expr_new(EXPR_NEG, 1);
        if (e == NULL) {
            expr_free(inner);
            return formula_error(fp, "out of memory");
        }
        e->args[0] = inner;
        return e;
    }
    if (*fp->p == '+')
        fp->p++;
    return parse_power(fp);
}

static expr *parse_product(formula_parser *fp) {
    expr *left = parse_unary(fp);
    for (;;) {
        skip_space(fp);
        if (left == NULL || (*fp->p != '*' && *fp->p != '/'))
            return left;
        const expr_kind k = *fp->p++ == '*' ? EXPR_MUL : EXPR_DIV;
        left = binary(fp, k, left, parse_unary(fp));
    }
}

static expr *parse_sum(formula_parser *fp) {
    expr *left = parse_product(fp);
    for (;;) {
        skip_space(fp);
        if (left == NULL || (*fp->p != '+' && *fp->p != '-'))
            return left;
        const expr_kind k = *fp->p++ == '+' ? EXPR_ADD : EXPR_SUB;
        left = binary(fp, k, left, parse_product(fp));
    }
}

static double expr_eval(const expr *e, const double *vars) {
    double a, b;
    switch (e->kind) {
        case EXPR_NUMBER:
            return e->number;
        case EXPR_VAR:
            return vars[e->var];
        case EXPR_NEG:
            return -expr_eval(e->args[0], vars);
        case EXPR_CALL:
            a = expr_eval(e->args[0], vars);
            switch (e->fn) {
                case 0: /* min */
                case 1: /* max */
                    for (int i = 1; i < e->n_args; i++) {
                        b = expr_eval(e->args[i], vars);
                        a = e->fn == 0 ? (b < a ? b : a) : (b > a ? b : a);
                    }
                    return a;
                case 2:
                    return fabs(a);
                case 3:
                    return floor(a);
                case 4:
                    return ceil(a);
                case 5:
                    return exp(a);
                case 6:
                    return sqrt(a);
                default:
                    return log(a);
            }
        default:
            break;
    }
    a = expr_eval(e->args[0], vars), b = expr_eval(e->args[1], vars);
    switch (e->kind) {
        case EXPR_ADD:
            return a + b;
        case EXPR_SUB:
            return a - b;
        case EXPR_MUL:
            return a * b;
        case EXPR_DIV:
            return a / b;
        default:
            return pow(a, b);
    }
}

/* ============================================================================
 * Parsing and validation
 * ========================================================================== */

void grader_free(grader *g) {
    if (g == NULL)
        return;
    if (g->re_compiled)
        regfree(&g->re);
    for (int i = 0; i < g->n_sub; i++) {
        grader_free(g->sub[i]);
        free(g->sub_names[i]);
    }
    free(g->sub), free(g->sub_names);
    expr_free(g->formula);
    free(g->name), free(g->path), free(g->input), free(g->reference), free(g->model);
    free(g);
}

/* Refuses any field of spec not in allowed (NULL-terminated; type and name
 * are always allowed). */
static int check_fields(const json_t *spec, const char *const *allowed, const char *path,
                        const char *type, char *err, size_t errlen) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)spec, key, value) {
        bool ok = strcmp(key, "type") == 0 || strcmp(key, "name") == 0;
        for (int i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok)
            return fail(err, errlen, path, key, "unknown field for a %s grader", type);
    }
    return 0;
}

/* A required (or, with fallback, optional) template field, checked. */
static int take_template(const json_t *spec, const char *field, const char *fallback, char **out,
                         const char *path, char *err, size_t errlen) {
    const json_t *v = json_object_get(spec, field);
    if (v == NULL && fallback == NULL)
        return fail(err, errlen, path, field, "is required");
    if (v != NULL && !json_is_string(v))
        return fail(err, errlen, path, field, "must be a string");
    const char *t = v ? json_string_value(v) : fallback;
    if (check_template(t, path, field, err, errlen) != 0)
        return -1;
    if ((*out = dup_string(t)) == NULL)
        return fail(err, errlen, path, field, "out of memory");
    return 0;
}

/* An enumerated string field: the index of its value in names[0..n), or -1. */
static int take_choice(const json_t *spec, const char *field, const char *const *names, int n,
                       int fallback, const char *path, char *err, size_t errlen) {
    const json_t *v = json_object_get(spec, field);
    if (v == NULL && fallback >= 0)
        return fallback;
    if (v != NULL && json_is_string(v))
        for (int i = 0; i < n; i++)
            if (strcmp(json_string_value(v), names[i]) == 0)
                return i;
    char list[256] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    if (v == NULL)
        fail(err, errlen, path, field, "is required (one of %s)", list);
    else
        fail(err, errlen, path, field, "must be one of %s", list);
    return -1;
}

/* An optional number field ≥ min: 0 (with *out set or left alone), or -1. */
static int take_number(const json_t *spec, const char *field, double min, bool integer, double *out,
                       const char *path, char *err, size_t errlen) {
    const json_t *v = json_object_get(spec, field);
    if (v == NULL)
        return 0;
    if (!json_is_number(v) || (integer && !json_is_integer(v)))
        return fail(err, errlen, path, field, "must be %s", integer ? "an integer" : "a number");
    const double x = json_number_value(v);
    if (!(x >= min) || !isfinite(x))
        return fail(err, errlen, path, field, "must be >= %g", min);
    *out = x;
    return 0;
}

static grader *parse_at(const json_t *spec, const char *path, char *err, size_t errlen);

static int parse_multi(grader *g, const json_t *spec, const char *path, char *err, size_t errlen) {
    static const char *const allowed[] = {"graders", "calculate_output", NULL};
    if (check_fields(spec, allowed, path, "multi", err, errlen) != 0)
        return -1;
    const json_t *subs = json_object_get(spec, "graders");
    const size_t n = json_is_object(subs)  ? json_object_size(subs)
                     : json_is_array(subs) ? json_array_size(subs)
                                           : 0;
    if (subs == NULL)
        return fail(err, errlen, path, "graders", "is required");
    if (!json_is_object(subs) && !json_is_array(subs))
        return fail(err, errlen, path, "graders", "must be an object of named graders or an array");
    if (n == 0)
        return fail(err, errlen, path, "graders", "must not be empty");
    g->sub = calloc(n, sizeof *g->sub);
    g->sub_names = calloc(n, sizeof *g->sub_names);
    if (g->sub == NULL || g->sub_names == NULL)
        return fail(err, errlen, path, "graders", "out of memory");
    const char *key;
    const json_t *value;
    void *iter = json_is_object(subs) ? json_object_iter((json_t *)subs) : NULL;
    for (size_t i = 0; i < n; i++) {
        char sub_path[512];
        if (json_is_object(subs)) {
            key = json_object_iter_key(iter);
            value = json_object_iter_value(iter);
            iter = json_object_iter_next((json_t *)subs, iter);
            snprintf(sub_path, sizeof sub_path, "%s.graders.%s", path, key);
        } else {
            value = json_array_get(subs, i);
            snprintf(sub_path, sizeof sub_path, "%s.graders[%zu]", path, i);
            const json_t *name = json_is_object(value) ? json_object_get(value, "name") : NULL;
            if (json_is_object(value) && !json_is_string(name))
                return fail(err, errlen, sub_path, "name",
                            "is required in an array of graders (the formula refers to it)");
            key = name ? json_string_value(name) : "";
        }
        bool identifier = isalpha((unsigned char)key[0]) || key[0] == '_';
        for (const char *c = key; *c && identifier; c++)
            identifier = isalnum((unsigned char)*c) || *c == '_';
        if (!identifier && json_is_object(value))
            return fail(err, errlen, path, "graders",
                        "'%s' is not a name a formula can use (letters, digits, _)", key);
        for (int j = 0; j < g->n_sub; j++)
            if (strcmp(g->sub_names[j], key) == 0)
                return fail(err, errlen, path, "graders", "two graders are named '%s'", key);
        g->sub[i] = parse_at(value, sub_path, err, errlen);
        if (g->sub[i] == NULL)
            return -1;
        g->n_sub++;
        if ((g->sub_names[i] = dup_string(key)) == NULL)
            return fail(err, errlen, path, "graders", "out of memory");
    }
    const json_t *formula = json_object_get(spec, "calculate_output");
    if (formula == NULL)
        return fail(err, errlen, path, "calculate_output", "is required");
    if (!json_is_string(formula))
        return fail(err, errlen, path, "calculate_output", "must be a string");
    formula_parser fp = {
        json_string_value(formula), json_string_value(formula), g, path, err, errlen, 0};
    g->formula = parse_sum(&fp);
    skip_space(&fp);
    if (g->formula != NULL && *fp.p != '\0') {
        expr_free(g->formula);
        g->formula = formula_error(&fp, "unexpected text after the formula");
    }
    return g->formula == NULL ? -1 : 0;
}

static grader *parse_at(const json_t *spec, const char *path, char *err, size_t errlen) {
    if (!json_is_object(spec)) {
        fail(err, errlen, path, NULL, "must be a grader object");
        return NULL;
    }
    const json_t *type = json_object_get(spec, "type");
    if (type == NULL) {
        fail(err, errlen, path, "type", "is required");
        return NULL;
    }
    int kind = -1;
    for (int i = 0; i < N_KINDS && json_is_string(type); i++)
        if (strcmp(json_string_value(type), kind_names[i]) == 0)
            kind = i;
    if (kind < 0 && json_is_string(type) &&
        (strcmp(json_string_value(type), "python") == 0 ||
         strcmp(json_string_value(type), "label_model") == 0)) {
        fail(err, errlen, path, "type",
             "%s graders are not supported here (no user code, no LLM judge); use regex, "
             "string_check, text_similarity, length, score_model or multi",
             json_string_value(type));
        return NULL;
    }
    if (kind < 0) {
        fail(err, errlen, path, "type",
             "must be one of string_check, text_similarity, regex, length, score_model, multi");
        return NULL;
    }
    const json_t *name = json_object_get(spec, "name");
    if (name != NULL && !json_is_string(name)) {
        fail(err, errlen, path, "name", "must be a string");
        return NULL;
    }
    grader *g = calloc(1, sizeof *g);
    if (g == NULL ||
        (g->name = dup_string(name ? json_string_value(name) : kind_names[kind])) == NULL ||
        (g->path = dup_string(path)) == NULL) {
        grader_free(g);
        fail(err, errlen, path, NULL, "out of memory");
        return NULL;
    }
    g->kind = (grader_kind)kind;
    g->max_length = -1;
    int rc = 0;
    switch (g->kind) {
        case GRADER_STRING_CHECK: {
            static const char *const allowed[] = {"input", "reference", "operation", NULL};
            rc = check_fields(spec, allowed, path, "string_check", err, errlen);
            if (rc == 0)
                rc = take_template(spec, "input", NULL, &g->input, path, err, errlen);
            if (rc == 0)
                rc = take_template(spec, "reference", NULL, &g->reference, path, err, errlen);
            const int op =
                rc ? -1 : take_choice(spec, "operation", op_names, 4, -1, path, err, errlen);
            rc = rc ? rc : op < 0 ? -1 : 0;
            g->op = (compare_op)op;
            break;
        }
        case GRADER_TEXT_SIMILARITY: {
            static const char *const allowed[] = {"input", "reference", "evaluation_metric", NULL};
            static const char *const metrics[] = {"fuzzy_match", "bleu"};
            rc = check_fields(spec, allowed, path, "text_similarity", err, errlen);
            if (rc == 0)
                rc = take_template(spec, "input", NULL, &g->input, path, err, errlen);
            if (rc == 0)
                rc = take_template(spec, "reference", NULL, &g->reference, path, err, errlen);
            const int m =
                rc ? -1 : take_choice(spec, "evaluation_metric", metrics, 2, -1, path, err, errlen);
            rc = rc ? rc : m < 0 ? -1 : 0;
            g->metric = (similarity_metric)m;
            break;
        }
        case GRADER_REGEX: {
            static const char *const allowed[] = {"input",     "pattern",   "group",
                                                  "reference", "operation", NULL};
            rc = check_fields(spec, allowed, path, "regex", err, errlen);
            if (rc == 0)
                rc = take_template(spec, "input", "{{sample.output_text}}", &g->input, path, err,
                                   errlen);
            if (rc == 0)
                rc = take_template(spec, "reference", NULL, &g->reference, path, err, errlen);
            const int op =
                rc ? -1 : take_choice(spec, "operation", op_names, 5, OP_EQ, path, err, errlen);
            rc = rc ? rc : op < 0 ? -1 : 0;
            g->op = (compare_op)op;
            const json_t *pattern = json_object_get(spec, "pattern");
            if (rc == 0 && !json_is_string(pattern))
                rc = fail(err, errlen, path, "pattern",
                          pattern ? "must be a string" : "is required");
            if (rc == 0) {
                const int re_rc = regcomp(&g->re, json_string_value(pattern), REG_EXTENDED);
                if (re_rc != 0) {
                    char why[128];
                    regerror(re_rc, &g->re, why, sizeof why);
                    rc = fail(err, errlen, path, "pattern",
                              "not a POSIX extended regular expression: %s", why);
                    break;
                }
                g->re_compiled = true;
                double group = g->re.re_nsub > 0 ? 1 : 0;
                rc = take_number(spec, "group", 0, true, &group, path, err, errlen);
                if (rc == 0 && group > 9)
                    rc = fail(err, errlen, path, "group", "must be at most 9");
                if (rc == 0 && group > (double)g->re.re_nsub)
                    rc = fail(err, errlen, path, "group", "is %g but the pattern has %zu group%s",
                              group, g->re.re_nsub, g->re.re_nsub == 1 ? "" : "s");
                g->group = (int)group;
            }
            break;
        }
        case GRADER_LENGTH: {
            static const char *const allowed[] = {"input",      "unit",    "min_length",
                                                  "max_length", "penalty", NULL};
            static const char *const units[] = {"bytes", "words"};
            rc = check_fields(spec, allowed, path, "length", err, errlen);
            if (rc == 0)
                rc = take_template(spec, "input", "{{sample.output_text}}", &g->input, path, err,
                                   errlen);
            const int unit = rc ? -1 : take_choice(spec, "unit", units, 2, 0, path, err, errlen);
            rc = rc ? rc : unit < 0 ? -1 : 0;
            g->unit_words = unit == 1;
            g->penalty = 1.0;
            if (rc == 0)
                rc = take_number(spec, "min_length", 0, true, &g->min_length, path, err, errlen);
            if (rc == 0)
                rc = take_number(spec, "max_length", 0, true, &g->max_length, path, err, errlen);
            if (rc == 0)
                rc = take_number(spec, "penalty", 0, false, &g->penalty, path, err, errlen);
            if (rc == 0 && json_object_get(spec, "min_length") == NULL &&
                json_object_get(spec, "max_length") == NULL)
                rc = fail(err, errlen, path, "min_length",
                          "a length grader needs min_length, max_length or both");
            if (rc == 0 && g->max_length >= 0 && g->max_length < g->min_length)
                rc = fail(err, errlen, path, "max_length", "must be >= min_length (%g)",
                          g->min_length);
            break;
        }
        case GRADER_SCORE_MODEL: {
            static const char *const allowed[] = {"model", "input", "range", NULL};
            rc = check_fields(spec, allowed, path, "score_model", err, errlen);
            if (rc == 0)
                rc = take_template(spec, "input", "{{sample.output_text}}", &g->input, path, err,
                                   errlen);
            const json_t *model = json_object_get(spec, "model");
            if (rc == 0 && (!json_is_string(model) || json_string_length(model) == 0))
                rc = fail(err, errlen, path, "model",
                          model ? "must be a non-empty string" : "is required");
            if (rc == 0 && (g->model = dup_string(json_string_value(model))) == NULL)
                rc = fail(err, errlen, path, "model", "out of memory");
            const json_t *range = json_object_get(spec, "range");
            if (rc == 0 && range != NULL) {
                const json_t *lo = json_array_get(range, 0), *hi = json_array_get(range, 1);
                if (json_array_size(range) != 2 || !json_is_number(lo) || !json_is_number(hi) ||
                    !(json_number_value(lo) < json_number_value(hi)))
                    rc = fail(err, errlen, path, "range", "must be [low, high] with low < high");
                g->has_range = true;
                g->range[0] = json_number_value(lo), g->range[1] = json_number_value(hi);
            }
            break;
        }
        case GRADER_MULTI:
            rc = parse_multi(g, spec, path, err, errlen);
            break;
    }
    if (rc != 0) {
        grader_free(g);
        return NULL;
    }
    return g;
}

grader *grader_parse(const json_t *spec, const char *path, char *err, size_t errlen) {
    return parse_at(spec, path ? path : "grader", err, errlen);
}

grader *grader_parse_text(const char *json_text, const char *path, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *spec = json_loads(json_text, 0, &jerr);
    if (spec == NULL) {
        fail(err, errlen, path ? path : "grader", NULL, "not JSON: %s (line %d, column %d)",
             jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    grader *g = grader_parse(spec, path, err, errlen);
    json_decref(spec);
    return g;
}

const char *grader_name(const grader *g) {
    return g->name;
}

int grader_model_count(const grader *g) {
    int n = g->kind == GRADER_SCORE_MODEL;
    for (int k = 0; k < g->n_sub; k++)
        n += grader_model_count(g->sub[k]);
    return n;
}

const char *grader_model(const grader *g, int i) {
    if (g->kind == GRADER_SCORE_MODEL)
        return i == 0 ? g->model : NULL;
    for (int k = 0; k < g->n_sub; k++) {
        const int here = grader_model_count(g->sub[k]);
        if (i >= 0 && i < here)
            return grader_model(g->sub[k], i);
        i -= here;
    }
    return NULL;
}

void grader_set_score_fn(grader *g, grader_score_fn fn, void *ctx) {
    g->score_fn = fn, g->score_ctx = ctx;
    for (int i = 0; i < g->n_sub; i++)
        grader_set_score_fn(g->sub[i], fn, ctx);
}

/* ============================================================================
 * Scoring
 * ========================================================================== */

static size_t count_units(const char *s, bool words) {
    if (!words)
        return strlen(s);
    size_t n = 0;
    for (bool in_word = false; *s; s++) {
        const bool space = isspace((unsigned char)*s);
        n += !space && !in_word;
        in_word = !space;
    }
    return n;
}

/* Scores g; parts (may be NULL) receives a multi's sub-scores. */
static int score_at(const grader *g, score_ctx *ctx, double *score, double *parts, char *err,
                    size_t errlen) {
    char *input = NULL, *reference = NULL;
    int rc = 0;
    if (g->input != NULL)
        rc = render(g->input, ctx, g->path, "input", &input, err, errlen);
    if (rc == 0 && g->reference != NULL)
        rc = render(g->reference, ctx, g->path, "reference", &reference, err, errlen);
    if (rc == 1) { /* the sample is not the JSON a template needs */
        free(input), free(reference);
        *score = 0.0;
        return 0;
    }
    if (rc != 0) {
        free(input), free(reference);
        return -1;
    }
    switch (g->kind) {
        case GRADER_STRING_CHECK:
            *score = compare(g->op, input, reference);
            break;
        case GRADER_TEXT_SIMILARITY:
            *score = g->metric == METRIC_BLEU ? grader_bleu(input, reference)
                                              : grader_fuzzy_ratio(input, reference);
            if (isnan(*score))
                rc = fail(err, errlen, g->path, NULL, "out of memory");
            break;
        case GRADER_REGEX: {
            regmatch_t m[10]; /* group ≤ 9, checked when parsed */
            *score = 0.0;
            if (regexec(&g->re, input, (size_t)g->group + 1, m, 0) == 0 && m[g->group].rm_so >= 0) {
                input[m[g->group].rm_eo] = '\0';
                if (g->op == OP_NUMBER_EQ) {
                    double unused;
                    if (!parse_number(reference, &unused)) {
                        rc = fail(err, errlen, g->path, "reference", "'%s' is not a number",
                                  reference);
                        break;
                    }
                }
                *score = compare(g->op, input + m[g->group].rm_so, reference);
            }
            break;
        }
        case GRADER_LENGTH: {
            const double n = (double)count_units(input, g->unit_words);
            const double d = n < g->min_length                         ? g->min_length - n
                             : g->max_length >= 0 && n > g->max_length ? n - g->max_length
                                                                       : 0.0;
            *score = fmax(0.0, 1.0 - g->penalty * d);
            break;
        }
        case GRADER_SCORE_MODEL: {
            if (g->score_fn == NULL) {
                rc = fail(err, errlen, g->path, "model",
                          "no reward-model scorer was given for '%s'", g->model);
                break;
            }
            char why[256] = "";
            const char *prompt = ctx->sample->prompt ? ctx->sample->prompt : "";
            if (g->score_fn(g->score_ctx, g->model, prompt, input, score, why, sizeof why) != 0) {
                rc = fail(err, errlen, g->path, "model", "'%s': %s", g->model, why);
                break;
            }
            if (g->has_range)
                *score = fmin(fmax(*score, g->range[0]), g->range[1]);
            break;
        }
        case GRADER_MULTI: {
            double vars[64], *v = g->n_sub <= 64 ? vars : malloc((size_t)g->n_sub * sizeof *v);
            if (v == NULL) {
                rc = fail(err, errlen, g->path, NULL, "out of memory");
                break;
            }
            for (int i = 0; i < g->n_sub && rc == 0; i++)
                rc = score_at(g->sub[i], ctx, &v[i], NULL, err, errlen);
            if (rc == 0 && parts != NULL)
                memcpy(parts, v, (size_t)g->n_sub * sizeof *v);
            if (rc == 0) {
                *score = expr_eval(g->formula, v);
                if (!isfinite(*score))
                    rc = fail(err, errlen, g->path, "calculate_output",
                              "the result is not a finite number (%g)", *score);
            }
            if (v != vars)
                free(v);
            break;
        }
    }
    free(input), free(reference);
    return rc;
}

int grader_part_count(const grader *g) {
    return g->kind == GRADER_MULTI ? g->n_sub : 1;
}

const char *grader_part_name(const grader *g, int i) {
    if (i < 0 || i >= grader_part_count(g))
        return NULL;
    return g->kind == GRADER_MULTI ? g->sub_names[i] : g->name;
}

int grader_score_parts(const grader *g, const grader_sample *sample, const json_t *item,
                       double *score, double *parts, char *err, size_t errlen) {
    score_ctx ctx = {sample, item, NULL, false, false};
    const int rc = score_at(g, &ctx, score, parts, err, errlen);
    json_decref(ctx.output_json);
    if (rc == 0 && parts != NULL && g->kind != GRADER_MULTI)
        parts[0] = *score;
    return rc;
}

int grader_score(const grader *g, const grader_sample *sample, const json_t *item, double *score,
                 char *err, size_t errlen) {
    return grader_score_parts(g, sample, item, score, NULL, err, errlen);
}
