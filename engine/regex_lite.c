/* regex_lite — a backtracking matcher for tokenizer.json patterns.
 *
 * Parsing builds a tree: an alternation holds sequences, a sequence holds
 * nodes (a character class, a group, a repeat, a lookahead, an anchor).
 * Literals and escapes all become character classes. Matching walks a
 * sequence left to right; where it must choose (an alternation branch, a
 * repeat count) it recurses with a continuation (what to match after the
 * choice) on the C stack, so a failure returns to the last choice point.
 * That gives Perl/Oniguruma/JavaScript leftmost-first semantics. A repeat
 * of a single class — all that tokenizer patterns repeat in practice —
 * counts its run in a loop instead of recursing per character, so long runs
 * of spaces cost no stack. */
#include "regex_lite.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_nfc.h"

#define PROP_CATEGORY    0x1f /* bits 0-4: unicode_category, or PROP_INVALID */
#define PROP_SPACE       0x20
#define PROP_INVALID     31
#define MAX_CODE_POINT   0x10FFFFu
#define STEP_BUDGET      2000000L /* per start position */
#define MAX_DEPTH        4000     /* nested choice points */
#define MAX_PATTERN_NEST 64

/* ---- compiled form ---- */

enum class_item_kind { ITEM_RANGE, ITEM_CATEGORIES, ITEM_SPACE };

typedef struct class_item {
    uint8_t kind;
    bool negate;
    uint32_t lo, hi;     /* ITEM_RANGE, inclusive */
    uint32_t categories; /* ITEM_CATEGORIES: bit (1 << unicode_category) */
} class_item;

typedef struct char_class {
    bool negate;
    int n, cap;
    class_item *items;
} char_class;

enum node_kind {
    NODE_CLASS,
    NODE_GROUP,
    NODE_REPEAT,
    NODE_LOOKAHEAD,
    NODE_ATOMIC,
    NODE_BEGIN,
    NODE_END
};
enum repeat_mode { REPEAT_GREEDY, REPEAT_LAZY, REPEAT_POSSESSIVE };

typedef struct alternation alternation;

typedef struct node {
    uint8_t kind;
    uint8_t mode;       /* NODE_REPEAT: repeat_mode */
    bool negate;        /* NODE_LOOKAHEAD: (?!..) */
    char_class cls;     /* NODE_CLASS, and NODE_REPEAT of one class (child NULL) */
    alternation *child; /* NODE_GROUP, NODE_LOOKAHEAD, NODE_ATOMIC, NODE_REPEAT of a group */
    int min, max;       /* NODE_REPEAT; max < 0: unbounded */
} node;

typedef struct sequence {
    node *items;
    int n, cap;
} sequence;

struct alternation {
    sequence *branches;
    int n, cap;
};

struct regex_lite {
    alternation *root;
};

static void class_free(char_class *c) {
    free(c->items);
}

static void alternation_free(alternation *a) {
    if (!a)
        return;
    for (int b = 0; b < a->n; b++) {
        for (int i = 0; i < a->branches[b].n; i++) {
            class_free(&a->branches[b].items[i].cls);
            alternation_free(a->branches[b].items[i].child);
        }
        free(a->branches[b].items);
    }
    free(a->branches);
    free(a);
}

void regex_lite_free(regex_lite *re) {
    if (!re)
        return;
    alternation_free(re->root);
    free(re);
}

/* ---- parser ---- */

typedef struct parser {
    const char *p;
    size_t pos, len;
    bool icase;
    int nest;
    bool failed;
    char *err;
    size_t errlen;
} parser;

static void parse_fail(parser *ps, const char *fmt, ...) {
    if (ps->failed)
        return;
    ps->failed = true;
    if (!ps->err || !ps->errlen)
        return;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "regex: %s at offset %zu of pattern", msg, ps->pos);
}

static bool at_end(const parser *ps) {
    return ps->pos >= ps->len;
}
static char peek(const parser *ps) {
    return at_end(ps) ? '\0' : ps->p[ps->pos];
}

/* Reads one UTF-8 code point of the pattern. */
static uint32_t next_cp(parser *ps) {
    const unsigned char *s = (const unsigned char *)ps->p + ps->pos;
    size_t left = ps->len - ps->pos;
    uint32_t c = s[0];
    int extra = c < 0x80 ? 0 : c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
    if (extra < 0 || (size_t)extra >= left) {
        parse_fail(ps, "invalid UTF-8");
        ps->pos = ps->len;
        return 0;
    }
    if (extra)
        c &= 0x3Fu >> extra;
    for (int i = 1; i <= extra; i++)
        c = (c << 6) | (s[i] & 0x3F);
    ps->pos += (size_t)extra + 1;
    return c;
}

static void *grow(void *items, int *cap, int need, size_t item_size) {
    if (need <= *cap)
        return items;
    int cap2 = *cap ? *cap * 2 : 4;
    while (cap2 < need)
        cap2 *= 2;
    void *p = realloc(items, (size_t)cap2 * item_size);
    if (p)
        *cap = cap2;
    return p;
}

static bool class_add(parser *ps, char_class *c, class_item item) {
    class_item *items = grow(c->items, &c->cap, c->n + 1, sizeof *items);
    if (!items) {
        parse_fail(ps, "out of memory");
        return false;
    }
    c->items = items;
    c->items[c->n++] = item;
    return true;
}

static bool is_ascii_letter(uint32_t c) {
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* Adds lo..hi, and under (?i) the other case of its ASCII letters. */
static bool class_add_range(parser *ps, char_class *c, uint32_t lo, uint32_t hi) {
    if (!class_add(ps, c, (class_item){.kind = ITEM_RANGE, .lo = lo, .hi = hi}))
        return false;
    if (ps->icase)
        for (uint32_t x = lo; x <= hi && x < 0x80; x++)
            if (is_ascii_letter(x) &&
                !class_add(ps, c, (class_item){.kind = ITEM_RANGE, .lo = x ^ 0x20, .hi = x ^ 0x20}))
                return false;
    return true;
}

#define CAT(x) (1u << UNICODE_CATEGORY_##x)
#define CATS_L (CAT(LU) | CAT(LL) | CAT(LT) | CAT(LM) | CAT(LO))
#define CATS_M (CAT(MN) | CAT(MC) | CAT(ME))
#define CATS_N (CAT(ND) | CAT(NL) | CAT(NO))
#define CATS_P (CAT(PC) | CAT(PD) | CAT(PS) | CAT(PE) | CAT(PI) | CAT(PF) | CAT(PO))
#define CATS_S (CAT(SM) | CAT(SC) | CAT(SK) | CAT(SO))
#define CATS_Z (CAT(ZS) | CAT(ZL) | CAT(ZP))
#define CATS_C (CAT(CC) | CAT(CF) | CAT(CS) | CAT(CO) | CAT(CN))

static const struct {
    const char *name;
    uint32_t categories;
} category_names[] = {
    {"L", CATS_L},    {"Letter", CATS_L},    {"Lu", CAT(LU)},         {"Ll", CAT(LL)},
    {"Lt", CAT(LT)},  {"Lm", CAT(LM)},       {"Lo", CAT(LO)},         {"M", CATS_M},
    {"Mark", CATS_M}, {"Mn", CAT(MN)},       {"Mc", CAT(MC)},         {"Me", CAT(ME)},
    {"N", CATS_N},    {"Number", CATS_N},    {"Nd", CAT(ND)},         {"Nl", CAT(NL)},
    {"No", CAT(NO)},  {"P", CATS_P},         {"Punctuation", CATS_P}, {"Pc", CAT(PC)},
    {"Pd", CAT(PD)},  {"Ps", CAT(PS)},       {"Pe", CAT(PE)},         {"Pi", CAT(PI)},
    {"Pf", CAT(PF)},  {"Po", CAT(PO)},       {"S", CATS_S},           {"Symbol", CATS_S},
    {"Sm", CAT(SM)},  {"Sc", CAT(SC)},       {"Sk", CAT(SK)},         {"So", CAT(SO)},
    {"Z", CATS_Z},    {"Separator", CATS_Z}, {"Zs", CAT(ZS)},         {"Zl", CAT(ZL)},
    {"Zp", CAT(ZP)},  {"C", CATS_C},         {"Other", CATS_C},       {"Cc", CAT(CC)},
    {"Cf", CAT(CF)},  {"Cs", CAT(CS)},       {"Co", CAT(CO)},         {"Cn", CAT(CN)},
};

/* After "\p" or "\P": {Name}, {^Name} or a one-letter name. */
static bool parse_property(parser *ps, bool negate, class_item *out) {
    char name[32];
    size_t n = 0;
    if (peek(ps) == '{') {
        ps->pos++;
        if (peek(ps) == '^') {
            negate = !negate;
            ps->pos++;
        }
        while (!at_end(ps) && peek(ps) != '}' && n + 1 < sizeof name)
            name[n++] = ps->p[ps->pos++];
        if (peek(ps) != '}') {
            parse_fail(ps, "unterminated \\p{...}");
            return false;
        }
        ps->pos++;
    } else if (!at_end(ps)) {
        name[n++] = ps->p[ps->pos++];
    }
    name[n] = '\0';
    for (size_t i = 0; i < sizeof category_names / sizeof category_names[0]; i++)
        if (strcmp(category_names[i].name, name) == 0) {
            *out = (class_item){.kind = ITEM_CATEGORIES,
                                .negate = negate,
                                .categories = category_names[i].categories};
            return true;
        }
    parse_fail(ps, "unsupported Unicode property \\p{%s} (general categories only)", name);
    return false;
}

/* A class escape after '\' (s S d D w W p P): fills *out and returns true;
 * false (nothing consumed) for other escapes. */
static bool parse_class_escape(parser *ps, class_item *out, bool *ok) {
    char c = peek(ps);
    *ok = true;
    switch (c) {
        case 's':
        case 'S':
            ps->pos++;
            *out = (class_item){.kind = ITEM_SPACE, .negate = c == 'S'};
            return true;
        case 'd':
        case 'D':
            ps->pos++;
            *out = (class_item){.kind = ITEM_CATEGORIES, .negate = c == 'D', .categories = CAT(ND)};
            return true;
        case 'w':
        case 'W':
            ps->pos++;
            *out = (class_item){.kind = ITEM_CATEGORIES,
                                .negate = c == 'W',
                                .categories = CATS_L | CATS_M | CAT(ND) | CAT(PC)};
            return true;
        case 'p':
        case 'P':
            ps->pos++;
            *ok = parse_property(ps, c == 'P', out);
            return true;
        default:
            return false;
    }
}

static uint32_t parse_hex(parser *ps, int digits) {
    uint32_t v = 0;
    bool braced = digits < 0;
    if (braced)
        ps->pos++; /* '{' */
    int count = 0;
    while (!at_end(ps) && (braced || count < digits)) {
        char c = peek(ps);
        int d = c >= '0' && c <= '9'                     ? c - '0'
                : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                                         : -1;
        if (d < 0)
            break;
        v = v * 16 + (uint32_t)d;
        ps->pos++;
        if (++count > 8)
            break;
    }
    if (braced) {
        if (peek(ps) != '}')
            parse_fail(ps, "unterminated \\x{...}");
        else
            ps->pos++;
    } else if (count != digits) {
        parse_fail(ps, "expected %d hex digits", digits);
    }
    if (v > MAX_CODE_POINT)
        parse_fail(ps, "code point above U+10FFFF");
    return v;
}

/* A character escape after '\' (the backslash is consumed). */
static uint32_t parse_char_escape(parser *ps) {
    if (at_end(ps)) {
        parse_fail(ps, "pattern ends with a backslash");
        return 0;
    }
    char c = peek(ps);
    switch (c) {
        case 'n':
            ps->pos++;
            return '\n';
        case 'r':
            ps->pos++;
            return '\r';
        case 't':
            ps->pos++;
            return '\t';
        case 'f':
            ps->pos++;
            return '\f';
        case 'v':
            ps->pos++;
            return '\v';
        case 'a':
            ps->pos++;
            return '\a';
        case 'e':
            ps->pos++;
            return 0x1B;
        case '0':
            ps->pos++;
            return 0;
        case 'x':
            ps->pos++;
            return peek(ps) == '{' ? parse_hex(ps, -1) : parse_hex(ps, 2);
        case 'u':
            ps->pos++;
            return parse_hex(ps, 4);
        default:
            break;
    }
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
        parse_fail(ps, "unsupported escape \\%c", c);
        return 0;
    }
    return next_cp(ps);
}

/* After '['. */
static bool parse_class(parser *ps, char_class *cls) {
    if (peek(ps) == '^') {
        cls->negate = true;
        ps->pos++;
    }
    bool first = true;
    while (!ps->failed) {
        if (at_end(ps)) {
            parse_fail(ps, "unterminated character class");
            return false;
        }
        char c = peek(ps);
        if (c == ']' && !first) {
            ps->pos++;
            return true;
        }
        first = false;
        if (c == '[') {
            parse_fail(ps, "nested classes and class set operations are not supported");
            return false;
        }
        uint32_t lo;
        if (c == '\\') {
            ps->pos++;
            class_item item;
            bool ok;
            if (parse_class_escape(ps, &item, &ok)) {
                if (!ok || !class_add(ps, cls, item))
                    return false;
                continue;
            }
            lo = parse_char_escape(ps);
        } else {
            lo = next_cp(ps);
        }
        uint32_t hi = lo;
        if (peek(ps) == '-' && ps->pos + 1 < ps->len && ps->p[ps->pos + 1] != ']') {
            ps->pos++;
            if (peek(ps) == '\\') {
                ps->pos++;
                hi = parse_char_escape(ps);
            } else {
                hi = next_cp(ps);
            }
            if (hi < lo) {
                parse_fail(ps, "class range out of order");
                return false;
            }
        }
        if (!class_add_range(ps, cls, lo, hi))
            return false;
    }
    return false;
}

static alternation *parse_alternation(parser *ps);

static bool parse_int(parser *ps, int *out) {
    if (!(peek(ps) >= '0' && peek(ps) <= '9'))
        return false;
    long v = 0;
    while (peek(ps) >= '0' && peek(ps) <= '9') {
        v = v * 10 + (peek(ps) - '0');
        if (v > 100000) {
            parse_fail(ps, "repeat count too large");
            return false;
        }
        ps->pos++;
    }
    *out = (int)v;
    return true;
}

/* A quantifier after an atom, if there is one: fills min/max/mode and returns true. */
static bool parse_quantifier(parser *ps, int *min, int *max, uint8_t *mode) {
    char c = peek(ps);
    if (c == '?') {
        *min = 0, *max = 1;
    } else if (c == '*') {
        *min = 0, *max = -1;
    } else if (c == '+') {
        *min = 1, *max = -1;
    } else if (c == '{') {
        size_t save = ps->pos;
        ps->pos++;
        if (!parse_int(ps, min)) {
            ps->pos = save; /* a literal '{' */
            return false;
        }
        *max = *min;
        if (peek(ps) == ',') {
            ps->pos++;
            if (!parse_int(ps, max))
                *max = -1;
        }
        if (peek(ps) != '}') {
            parse_fail(ps, "malformed {n,m} quantifier");
            return false;
        }
        if (*max >= 0 && *max < *min) {
            parse_fail(ps, "{n,m} with m < n");
            return false;
        }
    } else {
        return false;
    }
    ps->pos++;
    *mode = REPEAT_GREEDY;
    if (peek(ps) == '?') {
        *mode = REPEAT_LAZY;
        ps->pos++;
    } else if (peek(ps) == '+') {
        *mode = REPEAT_POSSESSIVE;
        ps->pos++;
    }
    return true;
}

/* One atom into *nd. Returns false at the end of the sequence (nothing
 * consumed) or on error; *skip is set for (?i), which yields no node. */
static bool parse_atom(parser *ps, node *nd, bool *skip) {
    *skip = false;
    memset(nd, 0, sizeof *nd);
    char c = peek(ps);
    if (c == '(') {
        ps->pos++;
        uint8_t kind = NODE_GROUP;
        bool negate = false, saved_icase = ps->icase;
        if (peek(ps) == '?') {
            ps->pos++;
            char k = peek(ps);
            if (k == ':') {
                ps->pos++;
            } else if (k == '=' || k == '!') {
                kind = NODE_LOOKAHEAD;
                negate = k == '!';
                ps->pos++;
            } else if (k == '>') {
                kind = NODE_ATOMIC;
                ps->pos++;
            } else if (k == 'i' && ps->pos + 1 < ps->len &&
                       (ps->p[ps->pos + 1] == ':' || ps->p[ps->pos + 1] == ')')) {
                ps->pos += 2;
                if (ps->p[ps->pos - 1] == ')') { /* (?i): the rest of the enclosing group */
                    ps->icase = true;
                    *skip = true;
                    return true;
                }
                ps->icase = true;
            } else if (k == '<') {
                parse_fail(ps, "lookbehind and named groups are not supported");
                return false;
            } else {
                parse_fail(ps, "unsupported group (?%c", k);
                return false;
            }
        }
        if (++ps->nest > MAX_PATTERN_NEST) {
            parse_fail(ps, "groups nested too deeply");
            return false;
        }
        nd->kind = kind;
        nd->negate = negate;
        nd->child = parse_alternation(ps);
        ps->nest--;
        ps->icase = saved_icase;
        if (!nd->child)
            return false;
        if (peek(ps) != ')') {
            parse_fail(ps, "missing )");
            return false;
        }
        ps->pos++;
        return true;
    }
    nd->kind = NODE_CLASS;
    switch (c) {
        case '[':
            ps->pos++;
            return parse_class(ps, &nd->cls);
        case '.':
            ps->pos++;
            nd->cls.negate = true;
            return class_add(ps, &nd->cls,
                             (class_item){.kind = ITEM_RANGE, .lo = '\n', .hi = '\n'});
        case '^':
        case '$':
            ps->pos++;
            nd->kind = c == '^' ? NODE_BEGIN : NODE_END;
            return true;
        case '*':
        case '+':
        case '?':
            parse_fail(ps, "quantifier %c with nothing to repeat", c);
            return false;
        case '\\': {
            ps->pos++;
            char e = peek(ps);
            if (e == 'A' || e == 'z' || e == 'Z') {
                ps->pos++;
                nd->kind = e == 'A' ? NODE_BEGIN : NODE_END;
                return true;
            }
            if (e == 'b' || e == 'B' || e == 'G' || e == 'K' || e == 'k') {
                parse_fail(ps, "unsupported escape \\%c", e);
                return false;
            }
            class_item item;
            bool ok;
            if (parse_class_escape(ps, &item, &ok))
                return ok && class_add(ps, &nd->cls, item);
            uint32_t cp = parse_char_escape(ps);
            return !ps->failed && class_add_range(ps, &nd->cls, cp, cp);
        }
        default: {
            uint32_t cp = next_cp(ps);
            return !ps->failed && class_add_range(ps, &nd->cls, cp, cp);
        }
    }
}

static sequence *parse_sequence(parser *ps, sequence *seq) {
    while (!at_end(ps) && peek(ps) != '|' && peek(ps) != ')') {
        node nd;
        bool skip;
        if (!parse_atom(ps, &nd, &skip)) {
            class_free(&nd.cls);
            alternation_free(nd.child);
            return NULL;
        }
        if (skip)
            continue;
        int min, max;
        uint8_t mode;
        if (parse_quantifier(ps, &min, &max, &mode)) {
            if (nd.kind != NODE_CLASS && nd.kind != NODE_GROUP && nd.kind != NODE_ATOMIC) {
                parse_fail(ps, "quantifier after an anchor or lookahead");
                class_free(&nd.cls);
                alternation_free(nd.child);
                return NULL;
            }
            if (nd.kind == NODE_ATOMIC)
                mode = REPEAT_POSSESSIVE;
            nd.kind = NODE_REPEAT;
            nd.min = min;
            nd.max = max;
            nd.mode = mode;
        }
        if (ps->failed) {
            class_free(&nd.cls);
            alternation_free(nd.child);
            return NULL;
        }
        node *items = grow(seq->items, &seq->cap, seq->n + 1, sizeof *items);
        if (!items) {
            parse_fail(ps, "out of memory");
            class_free(&nd.cls);
            alternation_free(nd.child);
            return NULL;
        }
        seq->items = items;
        seq->items[seq->n++] = nd;
    }
    return seq;
}

static alternation *parse_alternation(parser *ps) {
    alternation *a = calloc(1, sizeof *a);
    if (!a) {
        parse_fail(ps, "out of memory");
        return NULL;
    }
    for (;;) {
        sequence *branches = grow(a->branches, &a->cap, a->n + 1, sizeof *branches);
        if (!branches) {
            parse_fail(ps, "out of memory");
            alternation_free(a);
            return NULL;
        }
        a->branches = branches;
        memset(&a->branches[a->n], 0, sizeof a->branches[a->n]);
        a->n++;
        if (!parse_sequence(ps, &a->branches[a->n - 1])) {
            alternation_free(a);
            return NULL;
        }
        if (peek(ps) != '|')
            return a;
        ps->pos++;
    }
}

regex_lite *regex_lite_compile(const char *pattern, size_t len, char *err, size_t errlen) {
    parser ps = {.p = pattern, .len = len, .err = err, .errlen = errlen};
    regex_lite *re = calloc(1, sizeof *re);
    if (!re) {
        parse_fail(&ps, "out of memory");
        return NULL;
    }
    re->root = parse_alternation(&ps);
    if (re->root && !at_end(&ps))
        parse_fail(&ps, "unbalanced )");
    if (ps.failed || !re->root) {
        parse_fail(&ps, "failed");
        regex_lite_free(re);
        return NULL;
    }
    return re;
}

/* ---- matcher ---- */

uint8_t regex_lite_prop(uint32_t cp) {
    if (cp > MAX_CODE_POINT)
        return PROP_INVALID;
    uint8_t prop;
    if (cp < 0x80) {
        prop = (cp >= 'a' && cp <= 'z')   ? UNICODE_CATEGORY_LL
               : (cp >= 'A' && cp <= 'Z') ? UNICODE_CATEGORY_LU
               : (cp >= '0' && cp <= '9') ? UNICODE_CATEGORY_ND
                                          : (uint8_t)unicode_get_category(cp);
    } else {
        prop = (uint8_t)unicode_get_category(cp);
    }
    if (unicode_is_space(cp))
        prop |= PROP_SPACE;
    return prop;
}

static bool class_matches(const char_class *c, uint32_t cp, uint8_t prop) {
    bool hit = false;
    for (int i = 0; i < c->n && !hit; i++) {
        const class_item *it = &c->items[i];
        bool m;
        switch (it->kind) {
            case ITEM_RANGE:
                m = cp >= it->lo && cp <= it->hi;
                break;
            case ITEM_SPACE:
                m = (prop & PROP_SPACE) != 0;
                break;
            default:
                m = (prop & PROP_CATEGORY) != PROP_INVALID &&
                    (it->categories >> (prop & PROP_CATEGORY) & 1u);
                break;
        }
        hit = m != it->negate;
    }
    return hit != c->negate;
}

/* What to match after a choice: the rest of a sequence, or the next
 * iteration of a repeat of a group. */
typedef struct cont {
    const sequence *seq; /* NULL: a repeat continuation */
    int index;
    const node *repeat;
    int count;
    size_t start; /* where this iteration began (rejects empty iterations) */
    const struct cont *next;
} cont;

typedef struct matcher {
    const uint32_t *cps;
    const uint8_t *props;
    size_t n;
    long budget;
    int depth;
    bool aborted;
} matcher;

static long match_sequence(matcher *m, const sequence *s, int i, size_t pos, const cont *k);

static long match_alternation(matcher *m, const alternation *a, size_t pos, const cont *k) {
    if (++m->depth > MAX_DEPTH) {
        m->aborted = true;
        return -1;
    }
    long r = -1;
    for (int b = 0; b < a->n && !m->aborted; b++) {
        r = match_sequence(m, &a->branches[b], 0, pos, k);
        if (r >= 0)
            break;
    }
    m->depth--;
    return m->aborted ? -1 : r;
}

static long match_continuation(matcher *m, const cont *k, size_t pos);

/* count iterations of nd's group are done; try more or stop, by mode. */
static long match_repeat(matcher *m, const node *nd, int count, size_t pos, const cont *after) {
    cont again = {.repeat = nd, .count = count + 1, .start = pos, .next = after};
    bool more = nd->max < 0 || count < nd->max;
    long r = -1;
    if (nd->mode == REPEAT_LAZY) {
        if (count >= nd->min)
            r = match_continuation(m, after, pos);
        if (r < 0 && more && !m->aborted)
            r = match_alternation(m, nd->child, pos, &again);
        return r;
    }
    if (more)
        r = match_alternation(m, nd->child, pos, &again);
    if (r < 0 && count >= nd->min && !m->aborted)
        r = match_continuation(m, after, pos);
    return r;
}

static long match_continuation(matcher *m, const cont *k, size_t pos) {
    if (!k)
        return (long)pos;
    if (k->seq)
        return match_sequence(m, k->seq, k->index, pos, k->next);
    if (pos == k->start && k->count > k->repeat->min)
        return -1; /* an empty iteration beyond the minimum */
    return match_repeat(m, k->repeat, k->count, pos, k->next);
}

static long match_sequence(matcher *m, const sequence *s, int i, size_t pos, const cont *k) {
    for (;; i++) {
        if (--m->budget < 0) {
            m->aborted = true;
            return -1;
        }
        if (i == s->n)
            return match_continuation(m, k, pos);
        const node *nd = &s->items[i];
        switch (nd->kind) {
            case NODE_CLASS:
                if (pos >= m->n || !class_matches(&nd->cls, m->cps[pos], m->props[pos]))
                    return -1;
                pos++;
                break;
            case NODE_BEGIN:
                if (pos != 0)
                    return -1;
                break;
            case NODE_END:
                if (pos != m->n)
                    return -1;
                break;
            case NODE_GROUP: {
                cont after = {.seq = s, .index = i + 1, .next = k};
                return match_alternation(m, nd->child, pos, &after);
            }
            case NODE_LOOKAHEAD: {
                long r = match_alternation(m, nd->child, pos, NULL);
                if (m->aborted || (r >= 0) == nd->negate)
                    return -1;
                break;
            }
            case NODE_ATOMIC: {
                long r = match_alternation(m, nd->child, pos, NULL);
                if (r < 0)
                    return -1;
                pos = (size_t)r;
                break;
            }
            default: /* NODE_REPEAT */
                if (nd->child) {
                    if (nd->mode == REPEAT_POSSESSIVE) {
                        node greedy = *nd;
                        greedy.mode = REPEAT_GREEDY;
                        long r = match_repeat(m, &greedy, 0, pos, NULL);
                        if (r < 0)
                            return -1;
                        pos = (size_t)r;
                        break;
                    }
                    cont after = {.seq = s, .index = i + 1, .next = k};
                    return match_repeat(m, nd, 0, pos, &after);
                }
                size_t run = 0, limit = nd->max < 0 ? m->n - pos : (size_t)nd->max;
                while (run < limit && pos + run < m->n &&
                       class_matches(&nd->cls, m->cps[pos + run], m->props[pos + run]))
                    run++;
                if (run < (size_t)nd->min)
                    return -1;
                if (nd->mode == REPEAT_POSSESSIVE) {
                    pos += run;
                    break;
                }
                if (++m->depth > MAX_DEPTH) {
                    m->aborted = true;
                    return -1;
                }
                long r = -1;
                if (nd->mode == REPEAT_GREEDY) {
                    for (size_t c = run + 1; c-- > (size_t)nd->min && !m->aborted;)
                        if ((r = match_sequence(m, s, i + 1, pos + c, k)) >= 0)
                            break;
                } else {
                    for (size_t c = (size_t)nd->min; c <= run && !m->aborted; c++)
                        if ((r = match_sequence(m, s, i + 1, pos + c, k)) >= 0)
                            break;
                }
                m->depth--;
                return m->aborted ? -1 : r;
        }
    }
}

int regex_lite_search(const regex_lite *re, const uint32_t *cps, const uint8_t *props, size_t n,
                      size_t start, size_t *match_begin, size_t *match_end, char *err,
                      size_t errlen) {
    matcher m = {.cps = cps, .props = props, .n = n};
    for (size_t s = start; s < n; s++) {
        m.budget = STEP_BUDGET;
        m.depth = 0;
        long r = match_alternation(&m, re->root, s, NULL);
        if (m.aborted) {
            if (err && errlen)
                snprintf(err, errlen,
                         "regex: gave up matching at code point %zu (backtracking limit)", s);
            return -1;
        }
        if (r > (long)s) {
            *match_begin = s;
            *match_end = (size_t)r;
            return 1;
        }
    }
    return 0;
}
