/* hf_tokenizer — tokenizer.json's pipeline, in the order the Rust library
 * runs it: added tokens split the raw text into sections; each section is
 * normalised, pre-tokenised into pieces, and each piece BPE-encoded; the
 * post-processor adds special tokens around the whole. Every component of
 * the file is compiled at load time into a flat list of steps. */
#include "hf_tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regex_lite.h"
#include "unicode_nfc.h"

/* Code points at and above this stand for invalid UTF-8 bytes (cp - base). */
#define INVALID_BYTE_BASE 0x110000u
#define METASPACE_DEFAULT 0x2581u /* ▁ */
#define MAX_STEPS         16
#define MAX_TEMPLATE      16
_Static_assert(MAX_TEMPLATE * 4 <= HF_TOKENIZER_MAX_PREFIX, "a template's prefix fits");

/* GPT-2's pre-tokenisation pattern: what ByteLevel's use_regex applies. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ================================================================ errors */

__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t errlen,
                                                            const char *fmt, ...) {
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ======================================================= growable arrays */

typedef struct cp_buf {
    uint32_t *v;
    size_t n, cap;
} cp_buf;

typedef struct byte_buf {
    char *v;
    size_t n, cap;
} byte_buf;

typedef struct id_buf {
    int32_t *v;
    size_t n, cap;
} id_buf;

static int reserve(void **v, size_t *cap, size_t need, size_t item) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*v, c * item);
    if (!p)
        return -1;
    *v = p;
    *cap = c;
    return 0;
}

static int cp_append(cp_buf *b, const uint32_t *c, size_t n) {
    if (reserve((void **)&b->v, &b->cap, b->n + n, sizeof *b->v))
        return -1;
    if (n)
        memcpy(b->v + b->n, c, n * sizeof *c);
    b->n += n;
    return 0;
}

static int bytes_append(byte_buf *b, const char *s, size_t n) {
    if (reserve((void **)&b->v, &b->cap, b->n + n + 1, 1))
        return -1;
    if (n)
        memcpy(b->v + b->n, s, n);
    b->n += n;
    return 0;
}

static int id_push(id_buf *b, int32_t id) {
    if (reserve((void **)&b->v, &b->cap, b->n + 1, sizeof *b->v))
        return -1;
    b->v[b->n++] = id;
    return 0;
}

/* ================================================================= UTF-8 */

/* Decodes one well-formed UTF-8 sequence at s[0..n); an ill-formed byte
 * becomes INVALID_BYTE_BASE + byte, length 1. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    uint32_t c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        goto invalid;
    uint32_t v = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto invalid;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF))) ||
        (len == 4 && (v < 0x10000 || v > 0x10FFFF)))
        goto invalid;
    *cp = v;
    return len;
invalid:
    *cp = INVALID_BYTE_BASE + c;
    return 1;
}

static size_t utf8_put(uint32_t cp, char out[4]) {
    if (cp >= INVALID_BYTE_BASE) {
        out[0] = (char)(cp - INVALID_BYTE_BASE);
        return 1;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int utf8_to_cps(const char *s, size_t n, cp_buf *out) {
    out->n = 0;
    if (reserve((void **)&out->v, &out->cap, n + 1, sizeof *out->v))
        return -1;
    for (size_t i = 0; i < n;)
        i += utf8_next((const uint8_t *)s + i, n - i, &out->v[out->n++]);
    return 0;
}

static int cps_to_utf8(const uint32_t *c, size_t n, byte_buf *out) {
    out->n = 0;
    if (reserve((void **)&out->v, &out->cap, 4 * n + 1, 1))
        return -1;
    for (size_t i = 0; i < n; i++)
        out->n += utf8_put(c[i], out->v + out->n);
    return 0;
}

/* GPT-2's byte ↔ printable character table (bytes_to_unicode in
 * encoder.py): printable Latin-1 bytes stand for themselves, the other 68
 * bytes for U+0100 onwards, in byte order. */
static void byte_level_alphabet(uint32_t char_of_byte[256]) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        char_of_byte[b] = printable ? (uint32_t)b : next++;
    }
}

/* ============================================================ hash maps */

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t hash_pair(uint64_t key) { /* splitmix64's finaliser */
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ull;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebull;
    return key ^ (key >> 31);
}

typedef struct merge_slot {
    uint64_t key; /* left << 32 | right */
    int32_t rank; /* -1: empty slot */
    int32_t merged;
} merge_slot;

static uint64_t table_size(size_t n) {
    uint64_t size = 16;
    while (size < 2 * (uint64_t)n)
        size *= 2;
    return size;
}

/* ========================================================== the compiled file */

enum norm_kind { NORM_NFC, NORM_PREPEND, NORM_REPLACE };
enum pre_kind { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE };
enum split_behavior {
    SPLIT_ISOLATED,
    SPLIT_REMOVED,
    SPLIT_MERGED_PREVIOUS,
    SPLIT_MERGED_NEXT,
    SPLIT_CONTIGUOUS
};
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
enum dec_kind {
    DEC_BYTE_LEVEL,
    DEC_METASPACE,
    DEC_REPLACE,
    DEC_BYTE_FALLBACK,
    DEC_FUSE,
    DEC_STRIP
};

/* A literal or regex pattern (Split, Replace). */
typedef struct pattern {
    regex_lite *re; /* NULL: the literal below */
    cp_buf literal;
} pattern;

typedef struct norm_step {
    uint8_t kind;
    pattern pat; /* NORM_REPLACE */
    cp_buf text; /* NORM_PREPEND: the prefix; NORM_REPLACE: the replacement */
} norm_step;

typedef struct pre_step {
    uint8_t kind;
    pattern pat;           /* PRE_SPLIT; PRE_BYTE_LEVEL with use_regex: GPT-2's */
    uint8_t behavior;      /* PRE_SPLIT */
    bool invert;           /* PRE_SPLIT */
    bool add_prefix_space; /* PRE_BYTE_LEVEL */
    bool split;            /* PRE_METASPACE */
    uint8_t prepend;       /* PRE_METASPACE */
    uint32_t replacement;  /* PRE_METASPACE */
} pre_step;

typedef struct dec_step {
    uint8_t kind;
    byte_buf from, to; /* DEC_REPLACE: UTF-8 pattern and content; DEC_STRIP: from = content */
    int start, stop;   /* DEC_STRIP */
    uint8_t prepend;   /* DEC_METASPACE */
    uint32_t replacement;
} dec_step;

typedef struct template_item {
    bool sequence; /* the encoded text; else the special token ids below */
    int32_t ids[4];
    int n_ids;
} template_item;

typedef struct added_token {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip;
} added_token;

struct hf_tokenizer {
    int32_t vocab_size;
    /* the model's vocabulary: token id's bytes are model_bytes[off[id] .. off[id]+len[id]),
     * raw bytes for byte-level models (Ġ → 0x20), UTF-8 otherwise; len < 0: no such token */
    char *model_bytes;
    int64_t *off;
    int32_t *len;
    int32_t *id_slots; /* open addressing: model token bytes → id, -1 empty */
    uint64_t id_mask;
    merge_slot *merges;
    uint64_t merge_mask;
    bool byte_level;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id;                 /* -1: none */
    int32_t byte_id[256];           /* byte-level: the token of each byte */
    int32_t fallback_id[256];       /* byte_fallback: <0xNN>, -1 if missing */
    uint32_t char_of_byte[256];     /* byte-level alphabet */
    int16_t byte_of_char[256 + 68]; /* its inverse, -1 for other characters */

    added_token *added;
    int n_added;
    int32_t *added_of_id;        /* (vocab_size) index into added, -1 */
    int16_t *added_by_byte[256]; /* indices into added by first byte, longest first, -1 ends */

    norm_step norm[MAX_STEPS];
    int n_norm;
    pre_step pre[MAX_STEPS];
    int n_pre;
    dec_step dec[MAX_STEPS];
    int n_dec;
    template_item post[MAX_TEMPLATE];
    int n_post; /* 0: no template */
};

static void pattern_free(pattern *p) {
    regex_lite_free(p->re);
    free(p->literal.v);
}

void hf_tokenizer_free(hf_tokenizer *tok) {
    if (!tok)
        return;
    free(tok->model_bytes);
    free(tok->off);
    free(tok->len);
    free(tok->id_slots);
    free(tok->merges);
    for (int i = 0; i < tok->n_added; i++)
        free(tok->added[i].content);
    free(tok->added);
    free(tok->added_of_id);
    for (int b = 0; b < 256; b++)
        free(tok->added_by_byte[b]);
    for (int i = 0; i < tok->n_norm; i++) {
        pattern_free(&tok->norm[i].pat);
        free(tok->norm[i].text.v);
    }
    for (int i = 0; i < tok->n_pre; i++)
        pattern_free(&tok->pre[i].pat);
    for (int i = 0; i < tok->n_dec; i++) {
        free(tok->dec[i].from.v);
        free(tok->dec[i].to.v);
    }
    free(tok);
}

int32_t hf_tokenizer_vocab_size(const hf_tokenizer *tok) {
    return tok->vocab_size;
}

static int32_t model_find(const hf_tokenizer *tok, const char *s, size_t n) {
    for (uint64_t i = hash_bytes(s, n) & tok->id_mask;; i = (i + 1) & tok->id_mask) {
        int32_t id = tok->id_slots[i];
        if (id < 0)
            return -1;
        if ((size_t)tok->len[id] == n && memcmp(tok->model_bytes + tok->off[id], s, n) == 0)
            return id;
    }
}

static const merge_slot *merge_find(const hf_tokenizer *tok, int32_t left, int32_t right) {
    if (!tok->merges)
        return NULL;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint64_t i = hash_pair(key) & tok->merge_mask;; i = (i + 1) & tok->merge_mask) {
        const merge_slot *s = &tok->merges[i];
        if (s->rank < 0)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* A token as spelled in tokenizer.json → the bytes the model map holds
 * (byte-level: each alphabet character back to its byte). Returns -1 when
 * a byte-level spelling has a character outside the alphabet. */
static int token_to_model_bytes(const hf_tokenizer *tok, const char *s, size_t n, byte_buf *out) {
    out->n = 0;
    if (!tok->byte_level)
        return bytes_append(out, s, n);
    if (reserve((void **)&out->v, &out->cap, n + 1, 1))
        return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (cp >= 256 + 68 || tok->byte_of_char[cp] < 0)
            return -1;
        out->v[out->n++] = (char)tok->byte_of_char[cp];
    }
    return 0;
}

int32_t hf_tokenizer_token_to_id(const hf_tokenizer *tok, const char *token) {
    size_t n = strlen(token);
    for (int i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && memcmp(tok->added[i].content, token, n) == 0)
            return tok->added[i].id;
    byte_buf b = {0};
    int32_t id = -1;
    if (token_to_model_bytes(tok, token, n, &b) == 0)
        id = model_find(tok, b.v ? b.v : "", b.n);
    free(b.v);
    return id;
}

const char *hf_tokenizer_token_bytes(const hf_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size)
        return NULL;
    if (tok->added_of_id[id] >= 0) {
        *len = tok->added[tok->added_of_id[id]].len;
        return tok->added[tok->added_of_id[id]].content;
    }
    if (tok->len[id] < 0)
        return NULL;
    *len = (size_t)tok->len[id];
    return tok->model_bytes + tok->off[id];
}

bool hf_tokenizer_is_special(const hf_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->vocab_size && tok->added_of_id[id] >= 0 &&
           tok->added[tok->added_of_id[id]].special;
}

/* ================================================================ loading */

typedef struct loader {
    hf_tokenizer *tok;
    char *err;
    size_t errlen;
} loader;

static const char *type_of(json_t *obj) {
    return json_string_value(json_object_get(obj, "type"));
}

static int unsupported(loader *ld, const char *what, json_t *obj) {
    const char *type = type_of(obj);
    set_error(ld->err, ld->errlen, "tokenizer.json: %s type '%s' is not supported", what,
              type ? type : "(missing)");
    return -1;
}

static int nomem(loader *ld) {
    set_error(ld->err, ld->errlen, "tokenizer.json: out of memory");
    return -1;
}

static bool get_bool(json_t *obj, const char *key, bool fallback) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_boolean_value(v) : fallback;
}

static int string_to_cps(loader *ld, const char *s, cp_buf *out) {
    if (utf8_to_cps(s, strlen(s), out))
        return nomem(ld);
    return 0;
}

/* {"String": "..."} or {"Regex": "..."} */
static int load_pattern(loader *ld, json_t *obj, const char *owner, pattern *p) {
    json_t *pat = json_object_get(obj, "pattern");
    const char *lit = json_string_value(json_object_get(pat, "String"));
    const char *rx = json_string_value(json_object_get(pat, "Regex"));
    if (lit)
        return string_to_cps(ld, lit, &p->literal);
    if (!rx) {
        set_error(ld->err, ld->errlen, "tokenizer.json: %s has no pattern String or Regex", owner);
        return -1;
    }
    char msg[256];
    p->re = regex_lite_compile(rx, strlen(rx), msg, sizeof msg);
    if (!p->re) {
        set_error(ld->err, ld->errlen, "tokenizer.json: %s pattern: %s", owner, msg);
        return -1;
    }
    return 0;
}

static int load_normalizer(loader *ld, json_t *obj) {
    hf_tokenizer *tok = ld->tok;
    if (json_is_null(obj) || !obj)
        return 0;
    const char *type = type_of(obj);
    if (!type)
        return unsupported(ld, "normalizer", obj);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(obj, "normalizers"), *item;
        size_t i;
        json_array_foreach(list, i, item) if (load_normalizer(ld, item)) return -1;
        return 0;
    }
    if (tok->n_norm == MAX_STEPS) {
        set_error(ld->err, ld->errlen, "tokenizer.json: more than %d normalizers", MAX_STEPS);
        return -1;
    }
    norm_step *st = &tok->norm[tok->n_norm++];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "NFC") == 0) {
        st->kind = NORM_NFC;
        return 0;
    }
    if (strcmp(type, "Prepend") == 0) {
        st->kind = NORM_PREPEND;
        const char *s = json_string_value(json_object_get(obj, "prepend"));
        return s ? string_to_cps(ld, s, &st->text)
                 : unsupported(ld, "normalizer (no prepend)", obj);
    }
    if (strcmp(type, "Replace") == 0) {
        st->kind = NORM_REPLACE;
        const char *s = json_string_value(json_object_get(obj, "content"));
        if (!s)
            return unsupported(ld, "normalizer (no content)", obj);
        if (string_to_cps(ld, s, &st->text))
            return -1;
        return load_pattern(ld, obj, "Replace normalizer", &st->pat);
    }
    tok->n_norm--;
    return unsupported(ld, "normalizer", obj);
}

static int load_prepend_scheme(loader *ld, json_t *obj, uint8_t *out) {
    const char *scheme = json_string_value(json_object_get(obj, "prepend_scheme"));
    if (!scheme) { /* older files: add_prefix_space */
        *out = get_bool(obj, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
        return 0;
    }
    if (strcmp(scheme, "always") == 0)
        *out = PREPEND_ALWAYS;
    else if (strcmp(scheme, "first") == 0)
        *out = PREPEND_FIRST;
    else if (strcmp(scheme, "never") == 0)
        *out = PREPEND_NEVER;
    else {
        set_error(ld->err, ld->errlen,
                  "tokenizer.json: Metaspace prepend_scheme '%s' is not supported", scheme);
        return -1;
    }
    return 0;
}

static int load_replacement(loader *ld, json_t *obj, uint32_t *out) {
    const char *r = json_string_value(json_object_get(obj, "replacement"));
    *out = METASPACE_DEFAULT;
    if (!r)
        return 0;
    uint32_t cp;
    size_t n = strlen(r);
    if (n == 0 || utf8_next((const uint8_t *)r, n, &cp) != n || cp >= INVALID_BYTE_BASE) {
        set_error(ld->err, ld->errlen,
                  "tokenizer.json: Metaspace replacement must be one character");
        return -1;
    }
    *out = cp;
    return 0;
}

static int load_pre_tokenizer(loader *ld, json_t *obj) {
    hf_tokenizer *tok = ld->tok;
    if (json_is_null(obj) || !obj)
        return 0;
    const char *type = type_of(obj);
    if (!type)
        return unsupported(ld, "pre_tokenizer", obj);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(obj, "pretokenizers"), *item;
        size_t i;
        json_array_foreach(list, i, item) if (load_pre_tokenizer(ld, item)) return -1;
        return 0;
    }
    if (tok->n_pre == MAX_STEPS) {
        set_error(ld->err, ld->errlen, "tokenizer.json: more than %d pre-tokenizers", MAX_STEPS);
        return -1;
    }
    pre_step *st = &tok->pre[tok->n_pre++];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "Split") == 0) {
        st->kind = PRE_SPLIT;
        st->invert = get_bool(obj, "invert", false);
        const char *b = json_string_value(json_object_get(obj, "behavior"));
        static const char *names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (b && strcmp(b, names[i]) == 0)
                found = i;
        if (found < 0) {
            set_error(ld->err, ld->errlen, "tokenizer.json: Split behavior '%s' is not supported",
                      b ? b : "(missing)");
            return -1;
        }
        st->behavior = (uint8_t)found;
        return load_pattern(ld, obj, "Split pre_tokenizer", &st->pat);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        st->kind = PRE_BYTE_LEVEL;
        st->add_prefix_space = get_bool(obj, "add_prefix_space", true);
        if (get_bool(obj, "use_regex", true)) {
            char msg[256];
            st->pat.re = regex_lite_compile(GPT2_PATTERN, strlen(GPT2_PATTERN), msg, sizeof msg);
            if (!st->pat.re)
                return nomem(ld);
        }
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        st->kind = PRE_METASPACE;
        st->split = get_bool(obj, "split", true);
        if (load_replacement(ld, obj, &st->replacement))
            return -1;
        return load_prepend_scheme(ld, obj, &st->prepend);
    }
    tok->n_pre--;
    return unsupported(ld, "pre_tokenizer", obj);
}

static int load_decoder(loader *ld, json_t *obj) {
    hf_tokenizer *tok = ld->tok;
    if (json_is_null(obj) || !obj)
        return 0;
    const char *type = type_of(obj);
    if (!type)
        return unsupported(ld, "decoder", obj);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(obj, "decoders"), *item;
        size_t i;
        json_array_foreach(list, i, item) if (load_decoder(ld, item)) return -1;
        return 0;
    }
    if (tok->n_dec == MAX_STEPS) {
        set_error(ld->err, ld->errlen, "tokenizer.json: more than %d decoders", MAX_STEPS);
        return -1;
    }
    dec_step *st = &tok->dec[tok->n_dec++];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "ByteLevel") == 0) {
        st->kind = DEC_BYTE_LEVEL;
        return 0;
    }
    if (strcmp(type, "ByteFallback") == 0) {
        st->kind = DEC_BYTE_FALLBACK;
        return 0;
    }
    if (strcmp(type, "Fuse") == 0) {
        st->kind = DEC_FUSE;
        return 0;
    }
    if (strcmp(type, "Metaspace") == 0) {
        st->kind = DEC_METASPACE;
        if (load_replacement(ld, obj, &st->replacement))
            return -1;
        return load_prepend_scheme(ld, obj, &st->prepend);
    }
    if (strcmp(type, "Replace") == 0) {
        st->kind = DEC_REPLACE;
        json_t *pat = json_object_get(obj, "pattern");
        const char *from = json_string_value(json_object_get(pat, "String"));
        const char *to = json_string_value(json_object_get(obj, "content"));
        if (!from || !*from || !to) {
            set_error(
                ld->err, ld->errlen,
                "tokenizer.json: Replace decoder needs a non-empty String pattern and content "
                "(Regex patterns are not supported in decoders)");
            return -1;
        }
        if (bytes_append(&st->from, from, strlen(from)) || bytes_append(&st->to, to, strlen(to)))
            return nomem(ld);
        return 0;
    }
    if (strcmp(type, "Strip") == 0) {
        st->kind = DEC_STRIP;
        const char *c = json_string_value(json_object_get(obj, "content"));
        st->start = (int)json_integer_value(json_object_get(obj, "start"));
        st->stop = (int)json_integer_value(json_object_get(obj, "stop"));
        if (!c || !*c || st->start < 0 || st->stop < 0) {
            set_error(ld->err, ld->errlen,
                      "tokenizer.json: Strip decoder needs content, start, stop");
            return -1;
        }
        return bytes_append(&st->from, c, strlen(c)) ? nomem(ld) : 0;
    }
    tok->n_dec--;
    return unsupported(ld, "decoder", obj);
}

static int template_add(loader *ld, template_item item) {
    hf_tokenizer *tok = ld->tok;
    if (tok->n_post == MAX_TEMPLATE) {
        set_error(ld->err, ld->errlen, "tokenizer.json: post_processor template too long");
        return -1;
    }
    tok->post[tok->n_post++] = item;
    return 0;
}

/* Bert/Roberta: "cls": ["[CLS]", 101] */
static int load_named_id(loader *ld, json_t *obj, const char *key, template_item *item) {
    json_t *pair = json_object_get(obj, key);
    json_t *id = json_array_get(pair, 1);
    if (!json_is_integer(id)) {
        set_error(ld->err, ld->errlen, "tokenizer.json: post_processor '%s' must be [token, id]",
                  key);
        return -1;
    }
    *item = (template_item){.ids = {(int32_t)json_integer_value(id)}, .n_ids = 1};
    return 0;
}

static int load_post_processor(loader *ld, json_t *obj) {
    hf_tokenizer *tok = ld->tok;
    if (json_is_null(obj) || !obj)
        return 0;
    const char *type = type_of(obj);
    if (!type)
        return unsupported(ld, "post_processor", obj);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(obj, "processors"), *item;
        size_t i;
        json_array_foreach(list, i, item) if (load_post_processor(ld, item)) return -1;
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return 0; /* offsets only */
    if (tok->n_post) {
        set_error(ld->err, ld->errlen, "tokenizer.json: more than one template post_processor");
        return -1;
    }
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        template_item cls, sep;
        if (load_named_id(ld, obj, "cls", &cls) || load_named_id(ld, obj, "sep", &sep))
            return -1;
        return template_add(ld, cls) || template_add(ld, (template_item){.sequence = true}) ||
               template_add(ld, sep);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return unsupported(ld, "post_processor", obj);
    json_t *single = json_object_get(obj, "single"),
           *specials = json_object_get(obj, "special_tokens");
    json_t *piece;
    size_t i;
    json_array_foreach(single, i, piece) {
        json_t *seq = json_object_get(piece, "Sequence");
        json_t *sp = json_object_get(piece, "SpecialToken");
        if (seq) {
            if (template_add(ld, (template_item){.sequence = true}))
                return -1;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        json_t *ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
        template_item item = {0};
        json_t *id;
        size_t k;
        json_array_foreach(ids, k, id) {
            if (k >= 4 || !json_is_integer(id)) {
                set_error(ld->err, ld->errlen,
                          "tokenizer.json: TemplateProcessing token '%s': bad ids",
                          name ? name : "?");
                return -1;
            }
            item.ids[item.n_ids++] = (int32_t)json_integer_value(id);
        }
        if (!name || item.n_ids == 0) {
            set_error(
                ld->err, ld->errlen,
                "tokenizer.json: TemplateProcessing special token '%s' is not in special_tokens",
                name ? name : "(missing)");
            return -1;
        }
        if (template_add(ld, item))
            return -1;
    }
    return 0;
}

static int uses_byte_level(json_t *obj, const char *list_key) {
    const char *type = type_of(obj);
    if (!type)
        return 0;
    if (strcmp(type, "ByteLevel") == 0)
        return 1;
    json_t *list = json_object_get(obj, list_key), *item;
    size_t i;
    json_array_foreach(list, i, item) if (uses_byte_level(item, list_key)) return 1;
    return 0;
}

/* ---- the two big members, model.vocab and model.merges ----
 * jansson builds a node per value, and a 150k-token vocabulary with its
 * merges would cost most of a second that way. These functions scan the
 * raw text instead; every other member of the file goes through jansson. */

typedef struct scan {
    const char *p, *begin, *end;
} scan;

typedef struct text_range {
    const char *begin, *end; /* begin NULL: absent */
} text_range;

static void scan_ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static bool scan_char(scan *s, char c) {
    scan_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

static int scan_hex4(scan *s, uint32_t *out) {
    if (s->end - s->p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *s->p++;
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* A JSON string, decoded to UTF-8 into out. */
static int scan_string(scan *s, byte_buf *out) {
    out->n = 0;
    if (!scan_char(s, '"'))
        return -1;
    for (;;) {
        const char *q = s->p;
        while (q < s->end && *q != '"' && *q != '\\')
            q++;
        if (q >= s->end || bytes_append(out, s->p, (size_t)(q - s->p)))
            return -1;
        s->p = q + 1;
        if (*q == '"')
            return 0;
        if (s->p >= s->end)
            return -1;
        char e = *s->p++, c;
        uint32_t cp, lo;
        char buf[4];
        switch (e) {
            case '"':
            case '\\':
            case '/':
                c = e;
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            case 'u':
                if (scan_hex4(s, &cp))
                    return -1;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                        return -1;
                    s->p += 2;
                    if (scan_hex4(s, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return -1;
                }
                if (bytes_append(out, buf, utf8_put(cp, buf)))
                    return -1;
                continue;
            default:
                return -1;
        }
        if (bytes_append(out, &c, 1))
            return -1;
    }
}

/* Skips one JSON value (not checking it: jansson or the scanners above
 * read whatever is kept). */
static int scan_skip(scan *s) {
    scan_ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p != '{' && *s->p != '[' && *s->p != '"') {
        while (s->p < s->end && !strchr(",}] \t\r\n", *s->p))
            s->p++;
        return 0;
    }
    int depth = 0;
    do {
        if (s->p >= s->end)
            return -1;
        char c = *s->p++;
        if (c == '"') {
            while (s->p < s->end && *s->p != '"')
                s->p += *s->p == '\\' ? 2 : 1;
            if (s->p >= s->end)
                return -1;
            s->p++;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    } while (depth > 0);
    return 0;
}

/* The members of the object at s: those named in fast_keys become text
 * ranges (fast[i]), every other one a jansson value in into. */
static int scan_object(loader *ld, scan *s, const char *what, json_t *into,
                       const char *const *fast_keys, int n_fast, text_range *fast) {
    byte_buf key = {0};
    int rc = -1;
    if (!scan_char(s, '{'))
        goto bad;
    if (scan_char(s, '}'))
        goto done;
    for (;;) {
        if (scan_string(s, &key) || !scan_char(s, ':'))
            goto bad;
        key.v[key.n] = '\0';
        scan_ws(s);
        const char *begin = s->p;
        if (scan_skip(s))
            goto bad;
        int f = -1;
        for (int i = 0; i < n_fast; i++)
            if (strcmp(key.v, fast_keys[i]) == 0)
                f = i;
        if (f >= 0) {
            fast[f] = (text_range){begin, s->p};
        } else {
            json_error_t jerr;
            json_t *v = json_loadb(begin, (size_t)(s->p - begin), JSON_DECODE_ANY, &jerr);
            if (!v) {
                set_error(ld->err, ld->errlen, "tokenizer.json: %s.%s: %s", what, key.v, jerr.text);
                goto fail;
            }
            json_object_set_new(into, key.v, v);
        }
        if (scan_char(s, ','))
            continue;
        if (scan_char(s, '}'))
            goto done;
        goto bad;
    }
done:
    rc = 0;
    goto fail;
bad:
    set_error(ld->err, ld->errlen, "tokenizer.json: %s: malformed JSON near byte %td", what,
              s->p - s->begin);
fail:
    free(key.v);
    return rc;
}

typedef struct vocab_entry {
    int64_t off;
    int32_t len, id;
} vocab_entry;

/* vocab {"token": id, ...}: the model map and the id → bytes table. */
static int load_vocab(loader *ld, text_range r, json_t *added) {
    hf_tokenizer *tok = ld->tok;
    scan s = {r.begin, r.begin, r.end};
    byte_buf key = {0}, bytes = {0}, conv = {0};
    vocab_entry *entries = NULL;
    size_t n = 0, cap = 0;
    int64_t max_id = -1;
    int rc = -1;
    if (!scan_char(&s, '{'))
        goto bad;
    if (!scan_char(&s, '}'))
        for (;;) {
            if (scan_string(&s, &key) || !scan_char(&s, ':'))
                goto bad;
            scan_ws(&s);
            int64_t id = 0;
            const char *digits = s.p;
            while (s.p < s.end && *s.p >= '0' && *s.p <= '9' && id < INT32_MAX)
                id = id * 10 + (*s.p++ - '0');
            if (s.p == digits || id >= INT32_MAX / 2) {
                set_error(ld->err, ld->errlen,
                          "tokenizer.json: vocab id of '%.*s' is not a valid id", (int)key.n,
                          key.v);
                goto fail;
            }
            /* a byte-level file's token outside the alphabet keeps its UTF-8 */
            const byte_buf *tb = &key;
            if (tok->byte_level && token_to_model_bytes(tok, key.v, key.n, &conv) == 0)
                tb = &conv;
            if (reserve((void **)&entries, &cap, n + 1, sizeof *entries))
                goto nomem;
            entries[n++] = (vocab_entry){(int64_t)bytes.n, (int32_t)tb->n, (int32_t)id};
            if (bytes_append(&bytes, tb->v, tb->n))
                goto nomem;
            if (id > max_id)
                max_id = id;
            if (scan_char(&s, ','))
                continue;
            if (scan_char(&s, '}'))
                break;
            goto bad;
        }
    json_t *a;
    size_t i;
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= INT32_MAX / 2 ||
            !json_is_string(json_object_get(a, "content"))) {
            set_error(ld->err, ld->errlen,
                      "tokenizer.json: added_tokens[%zu] needs an id and content", i);
            goto fail;
        }
        if (json_integer_value(id) > max_id)
            max_id = json_integer_value(id);
    }
    tok->vocab_size = (int32_t)(max_id + 1);
    size_t nid = (size_t)tok->vocab_size;
    tok->off = malloc((nid + 1) * sizeof *tok->off);
    tok->len = malloc((nid + 1) * sizeof *tok->len);
    tok->added_of_id = malloc((nid + 1) * sizeof *tok->added_of_id);
    tok->id_mask = table_size(n) - 1;
    tok->id_slots = malloc((tok->id_mask + 1) * sizeof *tok->id_slots);
    if (!tok->off || !tok->len || !tok->added_of_id || !tok->id_slots)
        goto nomem;
    for (size_t k = 0; k < nid; k++) {
        tok->len[k] = -1;
        tok->added_of_id[k] = -1;
    }
    memset(tok->id_slots, 0xff, (tok->id_mask + 1) * sizeof *tok->id_slots);
    tok->model_bytes = bytes.v ? bytes.v : malloc(1);
    bytes.v = NULL;
    if (!tok->model_bytes)
        goto nomem;
    for (size_t k = 0; k < n; k++) {
        int32_t id = entries[k].id;
        const char *t = tok->model_bytes + entries[k].off;
        if (tok->len[id] >= 0) {
            set_error(ld->err, ld->errlen, "tokenizer.json: vocab id %d appears twice", id);
            goto fail;
        }
        uint64_t slot = hash_bytes(t, (size_t)entries[k].len) & tok->id_mask;
        for (; tok->id_slots[slot] >= 0; slot = (slot + 1) & tok->id_mask) {
            int32_t other = tok->id_slots[slot];
            if (tok->len[other] == entries[k].len &&
                memcmp(tok->model_bytes + tok->off[other], t, (size_t)entries[k].len) == 0) {
                set_error(ld->err, ld->errlen,
                          "tokenizer.json: vocab ids %d and %d are the same token", other, id);
                goto fail;
            }
        }
        tok->off[id] = entries[k].off;
        tok->len[id] = entries[k].len;
        tok->id_slots[slot] = id;
    }
    rc = 0;
    goto fail;
nomem:
    set_error(ld->err, ld->errlen, "tokenizer.json: out of memory");
    goto fail;
bad:
    set_error(ld->err, ld->errlen,
              "tokenizer.json: model.vocab: malformed JSON near byte %td of the member",
              s.p - s.begin);
fail:
    free(key.v);
    free(bytes.v);
    free(conv.v);
    free(entries);
    return rc;
}

static int compare_added_by_length(const void *a, const void *b, void *ctx) {
    const added_token *added = ctx;
    size_t la = added[*(const int16_t *)a].len, lb = added[*(const int16_t *)b].len;
    return la < lb ? 1 : la > lb ? -1 : 0;
}

static int load_added_tokens(loader *ld, json_t *added) {
    hf_tokenizer *tok = ld->tok;
    size_t n = json_array_size(added);
    if (n > INT16_MAX) {
        set_error(ld->err, ld->errlen, "tokenizer.json: more than %d added tokens", INT16_MAX);
        return -1;
    }
    tok->added = calloc(n + 1, sizeof *tok->added);
    if (!tok->added)
        return nomem(ld);
    json_t *a;
    size_t i;
    int count[256] = {0};
    json_array_foreach(added, i, a) {
        added_token *t = &tok->added[tok->n_added];
        const char *content = json_string_value(json_object_get(a, "content"));
        t->len = strlen(content);
        if (t->len == 0) {
            set_error(ld->err, ld->errlen, "tokenizer.json: added_tokens[%zu] has empty content",
                      i);
            return -1;
        }
        if (get_bool(a, "single_word", false)) {
            set_error(ld->err, ld->errlen,
                      "tokenizer.json: added token '%s': single_word is not supported", content);
            return -1;
        }
        t->content = strdup(content);
        if (!t->content)
            return nomem(ld);
        t->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        t->special = get_bool(a, "special", false);
        t->lstrip = get_bool(a, "lstrip", false);
        t->rstrip = get_bool(a, "rstrip", false);
        tok->added_of_id[t->id] = tok->n_added++;
        count[(uint8_t)content[0]]++;
    }
    for (int b = 0; b < 256; b++) {
        if (!count[b])
            continue;
        tok->added_by_byte[b] = malloc((size_t)(count[b] + 1) * sizeof(int16_t));
        if (!tok->added_by_byte[b])
            return nomem(ld);
        int k = 0;
        for (int t = 0; t < tok->n_added; t++)
            if ((uint8_t)tok->added[t].content[0] == b)
                tok->added_by_byte[b][k++] = (int16_t)t;
        tok->added_by_byte[b][k] = -1;
        qsort_r(tok->added_by_byte[b], (size_t)k, sizeof(int16_t), compare_added_by_length,
                tok->added);
    }
    return 0;
}

/* One merge, left + right; rank = its index in the list. joined and
 * right_bytes are scratch buffers. */
static int add_merge(loader *ld, const byte_buf *left, const byte_buf *right, int32_t rank,
                     byte_buf *joined, byte_buf *right_bytes) {
    hf_tokenizer *tok = ld->tok;
    int32_t ids[3] = {-1, -1, -1};
    if (token_to_model_bytes(tok, left->v, left->n, joined) == 0 &&
        token_to_model_bytes(tok, right->v, right->n, right_bytes) == 0) {
        ids[0] = model_find(tok, joined->v, joined->n);
        ids[1] = model_find(tok, right_bytes->v, right_bytes->n);
        if (bytes_append(joined, right_bytes->v, right_bytes->n))
            return nomem(ld);
        ids[2] = model_find(tok, joined->v, joined->n);
    }
    if (ids[0] < 0 || ids[1] < 0 || ids[2] < 0) {
        set_error(ld->err, ld->errlen,
                  "tokenizer.json: merge %d (%.*s + %.*s): %s is not in the vocabulary", rank,
                  (int)left->n, left->v, (int)right->n, right->v,
                  ids[0] < 0   ? "the left part"
                  : ids[1] < 0 ? "the right part"
                               : "the merged token");
        return -1;
    }
    uint64_t key = (uint64_t)(uint32_t)ids[0] << 32 | (uint32_t)ids[1];
    for (uint64_t s = hash_pair(key) & tok->merge_mask;; s = (s + 1) & tok->merge_mask) {
        merge_slot *slot = &tok->merges[s];
        if (slot->rank < 0) {
            *slot = (merge_slot){.key = key, .rank = rank, .merged = ids[2]};
            return 0;
        }
        if (slot->key == key)
            return 0; /* a repeated merge keeps its first (lowest) rank */
    }
}

/* merges: ["left right", ...] or [["left", "right"], ...] */
static int load_merges(loader *ld, text_range r) {
    hf_tokenizer *tok = ld->tok;
    /* an upper bound on the count, to size the table once */
    size_t bound = 1;
    for (const char *p = r.begin; p < r.end; p++)
        bound += *p == ',';
    tok->merge_mask = table_size(bound) - 1;
    tok->merges = malloc((tok->merge_mask + 1) * sizeof *tok->merges);
    if (!tok->merges)
        return nomem(ld);
    for (uint64_t i = 0; i <= tok->merge_mask; i++)
        tok->merges[i].rank = -1;
    if (!r.begin)
        return 0;
    scan s = {r.begin, r.begin, r.end};
    byte_buf left = {0}, right = {0}, joined = {0}, right_bytes = {0};
    int rc = -1;
    int32_t rank = 0;
    if (!scan_char(&s, '['))
        goto bad;
    if (!scan_char(&s, ']'))
        for (;; rank++) {
            if (rank == INT32_MAX)
                goto bad;
            scan_ws(&s);
            if (s.p < s.end && *s.p == '[') {
                s.p++;
                if (scan_string(&s, &left) || !scan_char(&s, ',') || scan_string(&s, &right) ||
                    !scan_char(&s, ']'))
                    goto bad;
            } else {
                if (scan_string(&s, &left))
                    goto bad;
                char *space = memchr(left.v, ' ', left.n);
                if (!space || memchr(space + 1, ' ', left.n - (size_t)(space + 1 - left.v))) {
                    set_error(ld->err, ld->errlen,
                              "tokenizer.json: merge %d '%.*s' is not \"left right\"", rank,
                              (int)left.n, left.v);
                    goto fail;
                }
                right.n = 0;
                if (bytes_append(&right, space + 1, left.n - (size_t)(space + 1 - left.v)))
                    goto fail;
                left.n = (size_t)(space - left.v);
            }
            if (add_merge(ld, &left, &right, rank, &joined, &right_bytes))
                goto fail;
            if (scan_char(&s, ','))
                continue;
            if (scan_char(&s, ']'))
                break;
            goto bad;
        }
    rc = 0;
    goto fail;
bad:
    set_error(ld->err, ld->errlen,
              "tokenizer.json: model.merges: malformed near byte %td of the member", s.p - s.begin);
fail:
    free(left.v);
    free(right.v);
    free(joined.v);
    free(right_bytes.v);
    return rc;
}

static int load_model(loader *ld, json_t *model, text_range vocab, text_range merges,
                      json_t *added) {
    hf_tokenizer *tok = ld->tok;
    const char *type = type_of(model);
    if (!type && (vocab.begin || merges.begin))
        type = "BPE"; /* older files leave the type out */
    if (!type || strcmp(type, "BPE") != 0)
        return unsupported(ld, "model", model);
    json_t *v = json_object_get(model, "continuing_subword_prefix");
    json_t *w = json_object_get(model, "end_of_word_suffix");
    if ((json_is_string(v) && *json_string_value(v)) ||
        (json_is_string(w) && *json_string_value(w))) {
        set_error(
            ld->err, ld->errlen,
            "tokenizer.json: BPE continuing_subword_prefix / end_of_word_suffix are not supported");
        return -1;
    }
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0) {
        set_error(ld->err, ld->errlen, "tokenizer.json: BPE dropout is not supported");
        return -1;
    }
    tok->byte_fallback = get_bool(model, "byte_fallback", false);
    tok->fuse_unk = get_bool(model, "fuse_unk", false);
    tok->ignore_merges = get_bool(model, "ignore_merges", false);
    if (!vocab.begin) {
        set_error(ld->err, ld->errlen, "tokenizer.json: model.vocab is missing");
        return -1;
    }
    if (load_vocab(ld, vocab, added))
        return -1;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    tok->unk_id = -1;
    if (unk) {
        byte_buf b = {0};
        if (token_to_model_bytes(tok, unk, strlen(unk), &b) == 0)
            tok->unk_id = model_find(tok, b.v ? b.v : "", b.n);
        free(b.v);
        if (tok->unk_id < 0) {
            set_error(ld->err, ld->errlen,
                      "tokenizer.json: unk_token '%s' is not in the vocabulary", unk);
            return -1;
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b, name[8];
        tok->byte_id[b] = tok->byte_level ? model_find(tok, &c, 1) : -1;
        if (tok->byte_level && tok->byte_id[b] < 0) {
            set_error(ld->err, ld->errlen,
                      "tokenizer.json: byte-level vocabulary has no token for byte 0x%02X", b);
            return -1;
        }
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->fallback_id[b] = model_find(tok, name, 6);
    }
    return load_merges(ld, merges);
}

static hf_tokenizer *load_text(const char *text, size_t len, char *err, size_t errlen) {
    hf_tokenizer *tok = calloc(1, sizeof *tok);
    json_t *root = json_object(), *model = json_object();
    loader ld = {.tok = tok, .err = err, .errlen = errlen};
    if (!tok || !root || !model) {
        set_error(err, errlen, "tokenizer.json: out of memory");
        goto fail;
    }
    byte_level_alphabet(tok->char_of_byte);
    memset(tok->byte_of_char, 0xff, sizeof tok->byte_of_char);
    for (int b = 0; b < 256; b++)
        tok->byte_of_char[tok->char_of_byte[b]] = (int16_t)b;
    static const char *const top_keys[] = {"model"}, *const model_keys[] = {"vocab", "merges"};
    text_range model_range = {0}, big[2] = {{0}};
    scan s = {text, text, text + len};
    if (scan_object(&ld, &s, "(top level)", root, top_keys, 1, &model_range))
        goto fail;
    scan_ws(&s);
    if (s.p != s.end) {
        set_error(err, errlen, "tokenizer.json: text after the top-level object");
        goto fail;
    }
    if (!model_range.begin) {
        set_error(err, errlen, "tokenizer.json: no model");
        goto fail;
    }
    scan ms = {model_range.begin, text, model_range.end};
    if (scan_object(&ld, &ms, "model", model, model_keys, 2, big))
        goto fail;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    json_t *dec = json_object_get(root, "decoder");
    tok->byte_level = uses_byte_level(pre, "pretokenizers") || uses_byte_level(dec, "decoders");
    json_t *added = json_object_get(root, "added_tokens");
    if (load_model(&ld, model, big[0], big[1], added) || load_added_tokens(&ld, added) ||
        load_normalizer(&ld, json_object_get(root, "normalizer")) || load_pre_tokenizer(&ld, pre) ||
        load_decoder(&ld, dec) || load_post_processor(&ld, json_object_get(root, "post_processor")))
        goto fail;
    for (int i = 0; i < tok->n_post; i++)
        for (int k = 0; k < tok->post[i].n_ids; k++)
            if (tok->post[i].ids[k] < 0 || tok->post[i].ids[k] >= tok->vocab_size) {
                set_error(err, errlen,
                          "tokenizer.json: post_processor id %d is outside the vocabulary",
                          tok->post[i].ids[k]);
                goto fail;
            }
    json_decref(root);
    json_decref(model);
    return tok;
fail:
    json_decref(root);
    json_decref(model);
    hf_tokenizer_free(tok);
    return NULL;
}

hf_tokenizer *hf_tokenizer_load_json(const char *json, size_t len, char *err, size_t errlen) {
    return load_text(json, len, err, errlen);
}

hf_tokenizer *hf_tokenizer_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        text = malloc((size_t)size + 1);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        set_error(err, errlen, "%s: cannot read%s", path, text ? "" : " (out of memory?)");
        free(text);
        fclose(f);
        return NULL;
    }
    fclose(f);
    hf_tokenizer *tok = load_text(text, (size_t)size, err, errlen);
    free(text);
    if (!tok && err && errlen) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        set_error(err, errlen, "%s: %s", path, msg);
    }
    return tok;
}

/* ================================================================ encoding */

typedef struct span {
    size_t begin, len;
} span;

/* Pieces of text after a pre-tokenisation step, each in its own stretch of text. */
typedef struct piece_set {
    cp_buf text;
    span *v;
    size_t n, cap;
} piece_set;

typedef struct bpe_workspace {
    int32_t *sym, *prev, *next;
    uint64_t *heap;
    size_t cap, heap_len;
} bpe_workspace;

typedef struct segment {
    size_t begin, end;
    bool is_match;
} segment;

typedef struct encoder {
    const hf_tokenizer *tok;
    struct {
        segment *v;
        size_t n, cap;
    } segs;
    id_buf ids;
    cp_buf cps, scratch;
    byte_buf bytes, sym_bytes;
    uint8_t *props;
    size_t props_cap;
    piece_set sets[2];
    bpe_workspace w;
    bool at_text_start; /* the section starts at byte 0 of the input */
    char *err;
    size_t errlen;
} encoder;

static void encoder_free(encoder *e) {
    free(e->segs.v);
    free(e->ids.v);
    free(e->cps.v);
    free(e->scratch.v);
    free(e->bytes.v);
    free(e->sym_bytes.v);
    free(e->props);
    for (int i = 0; i < 2; i++) {
        free(e->sets[i].text.v);
        free(e->sets[i].v);
    }
    free(e->w.sym);
    free(e->w.prev);
    free(e->w.next);
    free(e->w.heap);
}

static int enc_nomem(encoder *e) {
    set_error(e->err, e->errlen, "tokenizer: out of memory");
    return -1;
}

static int piece_add(encoder *e, piece_set *ps, const uint32_t *prefix, size_t np,
                     const uint32_t *c, size_t n) {
    if (np + n == 0)
        return 0;
    if (reserve((void **)&ps->v, &ps->cap, ps->n + 1, sizeof *ps->v))
        return enc_nomem(e);
    ps->v[ps->n++] = (span){ps->text.n, np + n};
    if (cp_append(&ps->text, prefix, np) || cp_append(&ps->text, c, n))
        return enc_nomem(e);
    return 0;
}

static int segment_push(encoder *e, size_t begin, size_t end, bool is_match) {
    if (reserve((void **)&e->segs.v, &e->segs.cap, e->segs.n + 1, sizeof *e->segs.v))
        return enc_nomem(e);
    e->segs.v[e->segs.n++] = (segment){begin, end, is_match};
    return 0;
}

/* Finds the next occurrence of pattern p in c[from..n). 1 found, 0 none, -1 error. */
static int pattern_find(encoder *e, const pattern *p, const uint32_t *c, size_t n, size_t from,
                        size_t *b, size_t *end) {
    if (p->re) {
        if (reserve((void **)&e->props, &e->props_cap, n + 1, 1))
            return enc_nomem(e);
        if (from == 0)
            for (size_t i = 0; i < n; i++)
                e->props[i] = regex_lite_prop(c[i]);
        return regex_lite_search(p->re, c, e->props, n, from, b, end, e->err, e->errlen);
    }
    size_t m = p->literal.n;
    if (m == 0)
        return 0;
    for (size_t i = from; i + m <= n; i++)
        if (memcmp(c + i, p->literal.v, m * sizeof *c) == 0) {
            *b = i;
            *end = i + m;
            return 1;
        }
    return 0;
}

/* Replace normaliser over e->cps (into e->scratch, then swapped back). */
static int normalize_replace(encoder *e, const norm_step *st) {
    e->scratch.n = 0;
    size_t pos = 0, b, end;
    for (;;) {
        int rc = pattern_find(e, &st->pat, e->cps.v, e->cps.n, pos, &b, &end);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (cp_append(&e->scratch, e->cps.v + pos, b - pos) ||
            cp_append(&e->scratch, st->text.v, st->text.n))
            return enc_nomem(e);
        pos = end;
    }
    if (cp_append(&e->scratch, e->cps.v + pos, e->cps.n - pos))
        return enc_nomem(e);
    cp_buf t = e->cps;
    e->cps = e->scratch;
    e->scratch = t;
    return 0;
}

static int normalize(encoder *e) {
    const hf_tokenizer *tok = e->tok;
    for (int i = 0; i < tok->n_norm; i++) {
        const norm_step *st = &tok->norm[i];
        if (st->kind == NORM_NFC) {
            if (reserve((void **)&e->scratch.v, &e->scratch.cap, unicode_nfc_capacity(e->cps.n),
                        sizeof *e->scratch.v))
                return enc_nomem(e);
            e->scratch.n = unicode_nfc(e->cps.v, e->cps.n, e->scratch.v);
            cp_buf t = e->cps;
            e->cps = e->scratch;
            e->scratch = t;
        } else if (st->kind == NORM_PREPEND) {
            if (e->cps.n == 0)
                continue;
            e->scratch.n = 0;
            if (cp_append(&e->scratch, st->text.v, st->text.n) ||
                cp_append(&e->scratch, e->cps.v, e->cps.n))
                return enc_nomem(e);
            cp_buf t = e->cps;
            e->cps = e->scratch;
            e->scratch = t;
        } else if (normalize_replace(e, st)) {
            return -1;
        }
    }
    return 0;
}

/* Split by pattern with one of the Rust library's delimiter behaviours
 * (normalizer.rs, split): the text is cut into gaps and matches, then
 * matches stand alone (Isolated), go (Removed), join the piece before
 * (MergedWithPrevious) or after (MergedWithNext), or runs of matches join
 * (Contiguous). */
static int split_piece(encoder *e, const pre_step *st, const uint32_t *c, size_t n,
                       piece_set *out) {
    size_t pos = 0, b, end;
    e->segs.n = 0;
    bool invert = st->kind == PRE_SPLIT && st->invert;
    while (pos < n) {
        int rc = pattern_find(e, &st->pat, c, n, pos, &b, &end);
        if (rc < 0)
            return -1;
        if (rc == 0)
            b = end = n;
        if (b > pos && segment_push(e, pos, b, invert))
            return -1;
        if (end > b && segment_push(e, b, end, !invert))
            return -1;
        pos = end;
    }
    uint8_t behavior = st->kind == PRE_SPLIT ? st->behavior : SPLIT_ISOLATED;
    segment *sg = e->segs.v;
    size_t ns = e->segs.n, k = 0; /* k: pieces kept, folded in place */
    if (behavior == SPLIT_MERGED_NEXT) {
        bool next_match = false;
        for (size_t i = ns; i-- > 0;) {
            if (sg[i].is_match && !next_match && k > 0)
                sg[ns - k].begin = sg[i].begin; /* joins the piece after it */
            else
                sg[ns - ++k] = sg[i];
            next_match = sg[i].is_match;
        }
        memmove(sg, sg + ns - k, k * sizeof *sg);
    } else {
        bool prev_match = false;
        for (size_t i = 0; i < ns; i++) {
            bool keep = true, join = false;
            if (behavior == SPLIT_REMOVED)
                keep = !sg[i].is_match;
            else if (behavior == SPLIT_MERGED_PREVIOUS)
                join = sg[i].is_match && !prev_match && k > 0;
            else if (behavior == SPLIT_CONTIGUOUS)
                join = sg[i].is_match == prev_match && k > 0;
            prev_match = sg[i].is_match;
            if (join)
                sg[k - 1].end = sg[i].end;
            else if (keep)
                sg[k++] = sg[i];
        }
    }
    for (size_t i = 0; i < k; i++)
        if (piece_add(e, out, NULL, 0, c + sg[i].begin, sg[i].end - sg[i].begin))
            return -1;
    return 0;
}

static int pre_tokenize_piece(encoder *e, const pre_step *st, const uint32_t *c, size_t n,
                              bool first, piece_set *out) {
    if (st->kind == PRE_SPLIT)
        return split_piece(e, st, c, n, out);
    if (st->kind == PRE_BYTE_LEVEL) {
        if (st->add_prefix_space && (n == 0 || c[0] != ' ')) {
            static const uint32_t space = ' ';
            e->scratch.n = 0;
            if (cp_append(&e->scratch, &space, 1) || cp_append(&e->scratch, c, n))
                return enc_nomem(e);
            c = e->scratch.v;
            n = e->scratch.n;
        }
        if (!st->pat.re)
            return piece_add(e, out, NULL, 0, c, n);
        return split_piece(e, st, c, n, out);
    }
    /* PRE_METASPACE: spaces become the replacement, maybe one is prepended,
     * then the piece splits before each replacement (MergedWithNext). */
    e->scratch.n = 0;
    bool prepend = (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && first)) &&
                   !(n > 0 && (c[0] == ' ' || c[0] == st->replacement));
    if (prepend && cp_append(&e->scratch, &st->replacement, 1))
        return enc_nomem(e);
    for (size_t i = 0; i < n; i++)
        if (cp_append(&e->scratch, c[i] == ' ' ? &st->replacement : &c[i], 1))
            return enc_nomem(e);
    if (!st->split)
        return piece_add(e, out, NULL, 0, e->scratch.v, e->scratch.n);
    size_t begin = 0;
    for (size_t i = 1; i <= e->scratch.n; i++)
        if (i == e->scratch.n || e->scratch.v[i] == st->replacement) {
            if (piece_add(e, out, NULL, 0, e->scratch.v + begin, i - begin))
                return -1;
            begin = i;
        }
    return 0;
}

/* ---- BPE ---- */

static int workspace_reserve(encoder *e, size_t n) {
    bpe_workspace *w = &e->w;
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *sym = realloc(w->sym, cap * sizeof *sym);
    if (sym)
        w->sym = sym;
    int32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (prev)
        w->prev = prev;
    int32_t *next = realloc(w->next, cap * sizeof *next);
    if (next)
        w->next = next;
    uint64_t *heap = realloc(w->heap, 2 * cap * sizeof *heap);
    if (heap)
        w->heap = heap;
    if (!sym || !prev || !next || !heap)
        return enc_nomem(e);
    w->cap = cap;
    return 0;
}

static void heap_push(bpe_workspace *w, uint64_t key) {
    size_t i = w->heap_len++;
    while (i > 0 && w->heap[(i - 1) / 2] > key) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = key;
}

static uint64_t heap_pop(bpe_workspace *w) {
    uint64_t top = w->heap[0], last = w->heap[--w->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= w->heap_len)
            break;
        if (child + 1 < w->heap_len && w->heap[child + 1] < w->heap[child])
            child++;
        if (w->heap[child] >= last)
            break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (w->heap_len > 0)
        w->heap[i] = last;
    return top;
}

static void push_pair(const hf_tokenizer *tok, bpe_workspace *w, int32_t left) {
    if (left < 0 || w->next[left] < 0)
        return;
    const merge_slot *m = merge_find(tok, w->sym[left], w->sym[w->next[left]]);
    if (m)
        heap_push(w, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)left);
}

/* Initial symbols of a piece: bytes (byte-level), or characters with byte
 * fallback / unk (SentencePiece style). */
static int initial_symbols(encoder *e, const char *s, size_t n, int32_t *count) {
    const hf_tokenizer *tok = e->tok;
    bpe_workspace *w = &e->w;
    if (workspace_reserve(e, n + 1))
        return -1;
    int32_t k = 0;
    if (tok->byte_level) {
        for (size_t i = 0; i < n; i++)
            w->sym[k++] = tok->byte_id[(uint8_t)s[i]];
        *count = k;
        return 0;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_next((const uint8_t *)s + i, n - i, &cp);
        int32_t id = cp >= INVALID_BYTE_BASE ? -1 : model_find(tok, s + i, len);
        if (id >= 0) {
            w->sym[k++] = id;
        } else {
            bool fell_back = tok->byte_fallback;
            for (size_t j = 0; j < len && fell_back; j++)
                fell_back = tok->fallback_id[(uint8_t)s[i + j]] >= 0;
            if (fell_back) {
                for (size_t j = 0; j < len; j++)
                    w->sym[k++] = tok->fallback_id[(uint8_t)s[i + j]];
            } else if (tok->unk_id >= 0) {
                if (!(tok->fuse_unk && k > 0 && w->sym[k - 1] == tok->unk_id))
                    w->sym[k++] = tok->unk_id;
            } else {
                set_error(
                    e->err, e->errlen,
                    "tokenizer: '%.*s' is not in the vocabulary and the model has neither byte "
                    "fallback nor an unk token",
                    (int)len, s + i);
                return -1;
            }
        }
        i += len;
    }
    *count = k;
    return 0;
}

/* BPE of one piece, as the Rust library's word merge: repeatedly merge the
 * adjacent pair of lowest rank, the leftmost among equals (a heap of
 * rank << 32 | left position; stale entries fail the re-check). */
static int bpe_piece(encoder *e, const uint32_t *c, size_t n) {
    const hf_tokenizer *tok = e->tok;
    if (cps_to_utf8(c, n, &e->sym_bytes))
        return enc_nomem(e);
    const char *s = e->sym_bytes.v;
    size_t len = e->sym_bytes.n;
    if (len >= INT32_MAX) {
        set_error(e->err, e->errlen, "tokenizer: a pre-token piece over 2 GB");
        return -1;
    }
    if (tok->ignore_merges) {
        int32_t id = model_find(tok, s, len);
        if (id >= 0)
            return id_push(&e->ids, id) ? enc_nomem(e) : 0;
    }
    int32_t count;
    if (initial_symbols(e, s, len, &count))
        return -1;
    bpe_workspace *w = &e->w;
    for (int32_t i = 0; i < count; i++) {
        w->prev[i] = i - 1;
        w->next[i] = i + 1 < count ? i + 1 : -1;
    }
    w->heap_len = 0;
    for (int32_t i = 0; i + 1 < count; i++)
        push_pair(tok, w, i);
    while (w->heap_len > 0) {
        uint64_t top = heap_pop(w);
        int32_t left = (int32_t)(uint32_t)top, right = w->next[left];
        if (w->sym[left] < 0 || right < 0)
            continue;
        const merge_slot *m = merge_find(tok, w->sym[left], w->sym[right]);
        if (!m || (uint32_t)m->rank != (uint32_t)(top >> 32))
            continue;
        w->sym[left] = m->merged;
        w->sym[right] = -1;
        w->next[left] = w->next[right];
        if (w->next[right] >= 0)
            w->prev[w->next[right]] = left;
        push_pair(tok, w, w->prev[left]);
        push_pair(tok, w, left);
    }
    for (int32_t i = count ? 0 : -1; i >= 0; i = w->next[i])
        if (id_push(&e->ids, w->sym[i]))
            return enc_nomem(e);
    return 0;
}

/* One stretch of text between added tokens. */
static int encode_section(encoder *e, const char *s, size_t n) {
    const hf_tokenizer *tok = e->tok;
    if (n == 0)
        return 0;
    if (utf8_to_cps(s, n, &e->cps))
        return enc_nomem(e);
    if (normalize(e))
        return -1;
    if (e->cps.n == 0)
        return 0;
    piece_set *cur = &e->sets[0], *next = &e->sets[1];
    cur->n = cur->text.n = 0;
    if (piece_add(e, cur, NULL, 0, e->cps.v, e->cps.n))
        return -1;
    for (int i = 0; i < tok->n_pre; i++) {
        next->n = next->text.n = 0;
        for (size_t p = 0; p < cur->n; p++)
            if (pre_tokenize_piece(e, &tok->pre[i], cur->text.v + cur->v[p].begin, cur->v[p].len,
                                   e->at_text_start && p == 0, next))
                return -1;
        piece_set *t = cur;
        cur = next;
        next = t;
    }
    for (size_t p = 0; p < cur->n; p++)
        if (bpe_piece(e, cur->text.v + cur->v[p].begin, cur->v[p].len))
            return -1;
    return 0;
}

static bool is_ascii_space(char c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The leftmost, then longest, added token in text[from..n): its index, or -1. */
static int find_added(const hf_tokenizer *tok, const char *text, size_t n, size_t from,
                      bool split_special, size_t *at) {
    for (size_t p = from; p < n; p++) {
        const int16_t *cand = tok->added_by_byte[(uint8_t)text[p]];
        if (!cand)
            continue;
        for (; *cand >= 0; cand++) {
            const added_token *t = &tok->added[*cand];
            if (t->len <= n - p && memcmp(text + p, t->content, t->len) == 0 &&
                !(split_special && t->special)) {
                *at = p;
                return *cand;
            }
        }
    }
    return -1;
}

int hf_tokenizer_prefix(const hf_tokenizer *tok, int32_t ids[HF_TOKENIZER_MAX_PREFIX]) {
    int n = 0;
    for (int k = 0; k < tok->n_post && !tok->post[k].sequence; k++)
        for (int i = 0; i < tok->post[k].n_ids; i++)
            ids[n++] = tok->post[k].ids[i];
    return n;
}

int64_t hf_tokenizer_encode(const hf_tokenizer *tok, const char *text, size_t len, int flags,
                            int32_t *out_ids, size_t cap, char *err, size_t errlen) {
    encoder e = {.tok = tok, .err = err, .errlen = errlen};
    int rc = 0;
    size_t pos = 0;
    while (pos <= len && rc == 0) {
        size_t at = len;
        int t = find_added(tok, text, len, pos, flags & HF_ENCODE_SPLIT_SPECIAL, &at);
        size_t section_end = at, next = len + 1;
        if (t >= 0) {
            const added_token *a = &tok->added[t];
            next = at + a->len;
            if (a->lstrip)
                while (section_end > pos && is_ascii_space(text[section_end - 1]))
                    section_end--;
            if (a->rstrip)
                while (next < len && is_ascii_space(text[next]))
                    next++;
        }
        e.at_text_start = pos == 0;
        rc = encode_section(&e, text + pos, section_end - pos);
        if (rc == 0 && t >= 0 && id_push(&e.ids, tok->added[t].id))
            rc = enc_nomem(&e);
        pos = next;
    }
    int64_t total = -1;
    if (rc == 0) {
        const template_item *items = tok->post;
        int n_items = flags & HF_ENCODE_ADD_SPECIAL ? tok->n_post : 0;
        total = 0;
        if (n_items == 0) {
            int32_t prefix[HF_TOKENIZER_MAX_PREFIX];
            const int np = flags & HF_ENCODE_ADD_PREFIX ? hf_tokenizer_prefix(tok, prefix) : 0;
            /* (np 0: nothing to add; e.ids.v may then be NULL, which
             * memcmp must not see even for 0 bytes.) */
            const bool has_prefix =
                np == 0 || ((size_t)np <= e.ids.n &&
                            memcmp(e.ids.v, prefix, sizeof *prefix * (size_t)np) == 0);
            for (int i = 0; !has_prefix && i < np; i++, total++)
                if ((uint64_t)total < cap)
                    out_ids[total] = prefix[i];
            for (size_t i = 0; i < e.ids.n; i++, total++)
                if ((uint64_t)total < cap)
                    out_ids[total] = e.ids.v[i];
        }
        for (int k = 0; k < n_items; k++) {
            const int32_t *src = items[k].sequence ? e.ids.v : items[k].ids;
            size_t n = items[k].sequence ? e.ids.n : (size_t)items[k].n_ids;
            for (size_t i = 0; i < n; i++, total++)
                if ((uint64_t)total < cap)
                    out_ids[total] = src[i];
        }
    }
    encoder_free(&e);
    return total;
}

/* ================================================================ decoding */

typedef struct piece_list {
    byte_buf *v;
    size_t n, cap;
} piece_list;

static void piece_list_free(piece_list *l) {
    for (size_t i = 0; i < l->cap; i++)
        free(l->v[i].v);
    free(l->v);
}

static int piece_list_push(piece_list *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t old = l->cap;
        if (reserve((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
            return -1;
        memset(l->v + old, 0, (l->cap - old) * sizeof *l->v);
    }
    l->v[l->n].n = 0;
    if (bytes_append(&l->v[l->n], s, n))
        return -1;
    l->n++;
    return 0;
}

/* Replaces every from[0..nf) in b by to[0..nt). */
static int replace_bytes(byte_buf *b, const char *from, size_t nf, const char *to, size_t nt,
                         byte_buf *tmp) {
    if (b->n < nf || !memmem(b->v, b->n, from, nf))
        return 0;
    tmp->n = 0;
    for (size_t i = 0; i < b->n;) {
        if (i + nf <= b->n && memcmp(b->v + i, from, nf) == 0) {
            if (bytes_append(tmp, to, nt))
                return -1;
            i += nf;
        } else {
            if (bytes_append(tmp, b->v + i, 1))
                return -1;
            i++;
        }
    }
    byte_buf t = *b;
    *b = *tmp;
    *tmp = t;
    return 0;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int decode_step(const dec_step *st, piece_list *l, byte_buf *tmp) {
    char rep[4];
    size_t nrep;
    switch (st->kind) {
        case DEC_BYTE_LEVEL: /* the model's tokens are raw bytes already */
            return 0;
        case DEC_REPLACE:
            for (size_t i = 0; i < l->n; i++)
                if (replace_bytes(&l->v[i], st->from.v, st->from.n, st->to.v, st->to.n, tmp))
                    return -1;
            return 0;
        case DEC_METASPACE:
            nrep = utf8_put(st->replacement, rep);
            for (size_t i = 0; i < l->n; i++) {
                if (replace_bytes(&l->v[i], rep, nrep, " ", 1, tmp))
                    return -1;
                byte_buf *b = &l->v[i];
                if (i == 0 && st->prepend != PREPEND_NEVER && b->n > 0 && b->v[0] == ' ') {
                    memmove(b->v, b->v + 1, b->n - 1);
                    b->n--;
                }
            }
            return 0;
        case DEC_BYTE_FALLBACK:
            for (size_t i = 0; i < l->n; i++) {
                byte_buf *b = &l->v[i];
                if (b->n == 6 && memcmp(b->v, "<0x", 3) == 0 && b->v[5] == '>' &&
                    hex_digit(b->v[3]) >= 0 && hex_digit(b->v[4]) >= 0) {
                    b->v[0] = (char)(hex_digit(b->v[3]) * 16 + hex_digit(b->v[4]));
                    b->n = 1;
                }
            }
            return 0;
        case DEC_FUSE:
            for (size_t i = 1; i < l->n; i++)
                if (bytes_append(&l->v[0], l->v[i].v, l->v[i].n))
                    return -1;
            if (l->n > 1)
                l->n = 1;
            return 0;
        default: /* DEC_STRIP */
            for (size_t i = 0; i < l->n; i++) {
                byte_buf *b = &l->v[i];
                size_t k = st->from.n, begin = 0, end = b->n;
                for (int s = 0;
                     s < st->start && end - begin >= k && memcmp(b->v + begin, st->from.v, k) == 0;
                     s++)
                    begin += k;
                for (int s = 0;
                     s < st->stop && end - begin >= k && memcmp(b->v + end - k, st->from.v, k) == 0;
                     s++)
                    end -= k;
                memmove(b->v, b->v + begin, end - begin);
                b->n = end - begin;
            }
            return 0;
    }
}

int64_t hf_tokenizer_decode(const hf_tokenizer *tok, const int32_t *ids, size_t n,
                            bool skip_special, char *out, size_t cap, char *err, size_t errlen) {
    piece_list l = {0};
    byte_buf tmp = {0};
    int64_t total = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->vocab_size || (tok->added_of_id[id] < 0 && tok->len[id] < 0)) {
            set_error(err, errlen, "tokenizer: token id %d is not in the vocabulary (size %d)", id,
                      tok->vocab_size);
            goto done;
        }
        const added_token *a = tok->added_of_id[id] >= 0 ? &tok->added[tok->added_of_id[id]] : NULL;
        if (a && a->special && skip_special)
            continue;
        if (a ? piece_list_push(&l, a->content, a->len)
              : piece_list_push(&l, tok->model_bytes + tok->off[id], (size_t)tok->len[id]))
            goto nomem;
    }
    for (int k = 0; k < tok->n_dec; k++)
        if (decode_step(&tok->dec[k], &l, &tmp))
            goto nomem;
    total = 0;
    for (size_t i = 0; i < l.n; i++) {
        for (size_t j = 0; j < l.v[i].n; j++, total++)
            if ((uint64_t)total < cap)
                out[total] = l.v[i].v[j];
    }
    goto done;
nomem:
    set_error(err, errlen, "tokenizer: out of memory");
done:
    piece_list_free(&l);
    free(tmp.v);
    return total;
}
