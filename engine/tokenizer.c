#include "tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf_tokenizer.h"
#include "unicode_tables.h"

/* A pair (left id, right id) → the merge's rank and the id of the merged
 * token. rank < 0 marks an empty slot. */
typedef struct merge_slot {
    uint64_t key; /* left << 32 | right */
    int32_t rank;
    int32_t merged;
} merge_slot;

struct tokenizer_vocab {
    char *bytes;        /* every token's bytes back to back */
    int64_t n_bytes;    /* used */
    int64_t cap_bytes;  /* allocated */
    int64_t *offset;    /* (cap_tokens + 1) token id is bytes[offset[id], offset[id+1]) */
    int32_t cap_tokens; /* allocated; tokenizer.vocab_size are used */
    int32_t *id_slots;  /* (id_mask + 1) open addressing: token bytes → id, -1 = empty */
    uint64_t id_mask;
    merge_slot *merge_slots; /* (merge_mask + 1) open addressing, NULL without merges */
    uint64_t merge_mask;
    int32_t byte_id[256];     /* the token of each single byte */
    uint8_t ascii_class[128]; /* unicode_class of code points 0..127, the common case */
    int32_t *special_ids;     /* (n_special) */
    int n_special;
    hf_tokenizer *hf; /* tokenizer_load_hf: everything above is unused */
};

/* ---------------------------------------------------------------- errors */

__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t errlen,
                                                            const char *fmt, ...) {
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------- vocabulary store */

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

/* splitmix64's finaliser: spreads the two ids over all bits. */
static uint64_t hash_pair(uint64_t key) {
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ull;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebull;
    return key ^ (key >> 31);
}

static const char *token_at(const struct tokenizer_vocab *v, int32_t id, size_t *len) {
    *len = (size_t)(v->offset[id + 1] - v->offset[id]);
    return v->bytes + v->offset[id];
}

/* The id of the token with these bytes, or -1. */
static int32_t vocab_find(const struct tokenizer_vocab *v, const char *s, size_t len) {
    for (uint64_t i = hash_bytes(s, len) & v->id_mask;; i = (i + 1) & v->id_mask) {
        int32_t id = v->id_slots[i];
        if (id < 0)
            return -1;
        size_t n;
        const char *t = token_at(v, id, &n);
        if (n == len && memcmp(t, s, len) == 0)
            return id;
    }
}

static void id_slots_insert(struct tokenizer_vocab *v, int32_t id) {
    size_t len;
    const char *s = token_at(v, id, &len);
    uint64_t i = hash_bytes(s, len) & v->id_mask;
    while (v->id_slots[i] >= 0)
        i = (i + 1) & v->id_mask;
    v->id_slots[i] = id;
}

/* Rebuilds the byte → id table for ids 0..n_ids-1, with room for one more
 * at a load factor of at most 1/2. */
static int id_slots_resize(struct tokenizer_vocab *v, int32_t n_ids) {
    uint64_t size = 64;
    while (size < 2 * ((uint64_t)n_ids + 1))
        size *= 2;
    int32_t *slots = malloc(size * sizeof *slots);
    if (slots == NULL)
        return -1;
    memset(slots, 0xff, size * sizeof *slots);
    free(v->id_slots);
    v->id_slots = slots;
    v->id_mask = size - 1;
    for (int32_t id = 0; id < n_ids; id++)
        id_slots_insert(v, id);
    return 0;
}

/* Appends a token (the caller checked it is new) and returns its id, or -1
 * when out of memory. */
static int32_t vocab_append(tokenizer *tok, const char *s, size_t len) {
    struct tokenizer_vocab *v = tok->vocab;
    const int32_t id = tok->vocab_size;
    if (id == INT32_MAX - 1)
        return -1;
    if (id + 1 > v->cap_tokens) {
        int32_t cap = v->cap_tokens > 0 ? v->cap_tokens : 512;
        while (cap < id + 1)
            cap = cap > INT32_MAX / 2 ? INT32_MAX - 1 : cap * 2;
        int64_t *offset = realloc(v->offset, ((size_t)cap + 1) * sizeof *offset);
        if (offset == NULL)
            return -1;
        if (v->offset == NULL)
            offset[0] = 0;
        v->offset = offset;
        v->cap_tokens = cap;
    }
    if (v->n_bytes + (int64_t)len > v->cap_bytes) {
        int64_t cap = v->cap_bytes > 0 ? v->cap_bytes : 4096;
        while (cap < v->n_bytes + (int64_t)len)
            cap *= 2;
        char *bytes = realloc(v->bytes, (size_t)cap);
        if (bytes == NULL)
            return -1;
        v->bytes = bytes;
        v->cap_bytes = cap;
    }
    if (2 * ((uint64_t)id + 1) > v->id_mask + 1 && id_slots_resize(v, id) != 0)
        return -1;
    memcpy(v->bytes + v->n_bytes, s, len);
    v->n_bytes += (int64_t)len;
    v->offset[id + 1] = v->n_bytes;
    tok->vocab_size = id + 1;
    id_slots_insert(v, id);
    return id;
}

static const merge_slot *merge_find(const struct tokenizer_vocab *v, int32_t left, int32_t right) {
    if (v->merge_slots == NULL)
        return NULL;
    const uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint64_t i = hash_pair(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const merge_slot *slot = &v->merge_slots[i];
        if (slot->rank < 0)
            return NULL;
        if (slot->key == key)
            return slot;
    }
}

/* Inserts or, for a pair seen before, re-ranks: encoder.py builds its ranks
 * with dict(zip(merges, range(...))), where a later duplicate wins. The table
 * has room for every merge (sized by the caller). */
static void merge_insert(struct tokenizer_vocab *v, int32_t left, int32_t right, int32_t rank,
                         int32_t merged) {
    const uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint64_t i = hash_pair(key) & v->merge_mask;
    while (v->merge_slots[i].rank >= 0 && v->merge_slots[i].key != key)
        i = (i + 1) & v->merge_mask;
    v->merge_slots[i] = (merge_slot){.key = key, .rank = rank, .merged = merged};
}

/* ------------------------------------------------------------ Unicode */

/* Length (1..4) of the UTF-8 sequence at s[0..n) and its code point in *cp,
 * well-formed per Unicode Table 3-7; an ill-formed byte is a sequence of
 * length 1 with *cp = UINT32_MAX. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    const uint8_t b0 = s[0];
    *cp = UINT32_MAX;
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b0 >= 0xc2 && b0 <= 0xdf)
        len = 2;
    else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3;
        lo = b0 == 0xe0 ? 0xa0 : 0x80; /* no overlongs */
        hi = b0 == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4;
        lo = b0 == 0xf0 ? 0x90 : 0x80; /* no overlongs */
        hi = b0 == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
    } else
        return 1;
    if (n < len || s[1] < lo || s[1] > hi)
        return 1;
    uint32_t c = b0 & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if (k > 1 && (s[k] & 0xc0) != 0x80)
            return 1;
        c = c << 6 | (s[k] & 0x3f);
    }
    *cp = c;
    return len;
}

static unicode_class class_of_code_point(uint32_t cp) {
    int lo = 0, hi = unicode_class_range_count - 1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        if (cp < unicode_class_ranges[mid].first)
            hi = mid - 1;
        else if (cp > unicode_class_ranges[mid].last)
            lo = mid + 1;
        else
            return (unicode_class)unicode_class_ranges[mid].cls;
    }
    return UNICODE_CLASS_OTHER;
}

/* The class of the character at s[i] (i < n) and its length in *len. */
static inline unicode_class char_class(const struct tokenizer_vocab *v, const uint8_t *s, size_t n,
                                       size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        return (unicode_class)v->ascii_class[s[i]];
    }
    uint32_t cp;
    *len = utf8_decode(s + i, n - i, &cp);
    return cp == UINT32_MAX ? UNICODE_CLASS_OTHER : class_of_code_point(cp);
}

/* --------------------------------------------------- pre-tokenisation */

/* The end of the piece of s[0..n) that starts at i < n: the match of
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * at i, alternatives tried in this order as a backtracking regex would. */
static size_t piece_end(const struct tokenizer_vocab *v, const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        const uint8_t c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd')
            return i + 2;
        if (i + 2 < n) {
            const uint8_t d = s[i + 2];
            if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l'))
                return i + 3;
        }
    }
    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ : an optional space, then a run of one class. */
    const size_t j = i + (s[i] == ' ' && i + 1 < n);
    size_t len;
    const unicode_class cls = char_class(v, s, n, j, &len);
    if (cls != UNICODE_CLASS_SPACE) {
        size_t e = j + len;
        while (e < n && char_class(v, s, n, e, &len) == cls)
            e += len;
        return e;
    }
    /* \s+(?!\S) takes a whitespace run that ends the text, or all of a run
     * but its last character when a non-space follows (that character then
     * starts the next piece, e.g. as the space of " word"); a run of one
     * character followed by a non-space is left to \s+. */
    size_t e = i, last = i;
    while (e < n && char_class(v, s, n, e, &len) == UNICODE_CLASS_SPACE) {
        last = e;
        e += len;
    }
    return e == n || last == i ? e : last;
}

/* ------------------------------------------------------------------ BPE */

/* Scratch memory of one encode call, grown to the longest piece. */
typedef struct bpe_workspace {
    size_t cap;      /* symbols */
    int32_t *sym;    /* (cap) token id of each symbol, -1 once merged into its left neighbour */
    int32_t *prev;   /* (cap) previous live symbol or -1 */
    int32_t *next;   /* (cap) next live symbol or -1 */
    int32_t *merged; /* (cap) symbols that took a merge in the current round */
    uint64_t *heap;  /* (3 cap) min-heap of rank << 32 | left symbol */
    size_t heap_len;
    void *memory;
} bpe_workspace;

static int workspace_reserve(bpe_workspace *w, size_t n) {
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap > 0 ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    void *memory = malloc(cap * (4 * sizeof(int32_t) + 3 * sizeof(uint64_t)));
    if (memory == NULL)
        return -1;
    free(w->memory);
    w->memory = memory;
    w->cap = cap;
    w->heap = memory;
    w->sym = (int32_t *)(w->heap + 3 * cap);
    w->prev = w->sym + cap;
    w->next = w->prev + cap;
    w->merged = w->next + cap;
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
    const uint64_t top = w->heap[0];
    const uint64_t last = w->heap[--w->heap_len];
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

/* Queues the pair starting at symbol left, if it has a merge. */
static void push_pair(const struct tokenizer_vocab *v, bpe_workspace *w, int32_t left) {
    if (left < 0 || w->next[left] < 0)
        return;
    const merge_slot *m = merge_find(v, w->sym[left], w->sym[w->next[left]]);
    if (m != NULL)
        heap_push(w, (uint64_t)m->rank << 32 | (uint32_t)left);
}

typedef struct id_sink {
    int32_t *out;
    size_t cap;
    int64_t count; /* ids produced, also past cap */
} id_sink;

static inline void sink_push(id_sink *sink, int32_t id) {
    if ((uint64_t)sink->count < sink->cap)
        sink->out[sink->count] = id;
    sink->count++;
}

/* BPE of one piece, as encoder.py's bpe(): while some adjacent pair has a
 * merge, take the lowest rank and merge all its occurrences left to right.
 * Here each round pops that rank's pairs from a heap in position order
 * (stale entries fail the re-check), so a piece of m bytes costs
 * O(m log m) rather than encoder.py's O(m^2). A merge creates pairs that
 * contain the new, longer token, so never another pair of the same rank:
 * the round is complete once its rank leaves the heap top. */
static int bpe_encode_piece(const struct tokenizer_vocab *v, const uint8_t *piece, size_t m,
                            bpe_workspace *w, id_sink *sink) {
    if (m == 1) {
        sink_push(sink, v->byte_id[piece[0]]);
        return 0;
    }
    if (m > INT32_MAX)
        return TOKENIZER_ERROR_TOO_LONG;
    if (workspace_reserve(w, m) != 0)
        return TOKENIZER_ERROR_NOMEM;
    const int32_t n = (int32_t)m;
    for (int32_t i = 0; i < n; i++) {
        w->sym[i] = v->byte_id[piece[i]];
        w->prev[i] = i - 1;
        w->next[i] = i + 1 < n ? i + 1 : -1;
    }
    w->heap_len = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        push_pair(v, w, i);
    while (w->heap_len > 0) {
        const uint32_t rank = (uint32_t)(w->heap[0] >> 32);
        int32_t n_merged = 0;
        while (w->heap_len > 0 && (uint32_t)(w->heap[0] >> 32) == rank) {
            const int32_t left = (int32_t)(uint32_t)heap_pop(w);
            const int32_t right = w->next[left];
            if (w->sym[left] < 0 || right < 0)
                continue;
            const merge_slot *pair = merge_find(v, w->sym[left], w->sym[right]);
            if (pair == NULL || (uint32_t)pair->rank != rank)
                continue;
            w->sym[left] = pair->merged;
            w->sym[right] = -1;
            w->next[left] = w->next[right];
            if (w->next[right] >= 0)
                w->prev[w->next[right]] = left;
            w->merged[n_merged++] = left;
        }
        for (int32_t k = 0; k < n_merged; k++) {
            push_pair(v, w, w->prev[w->merged[k]]);
            push_pair(v, w, w->merged[k]);
        }
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        sink_push(sink, w->sym[i]);
    return 0;
}

/* Pre-tokenises and BPE-encodes text without special tokens. */
static int encode_ordinary(const struct tokenizer_vocab *v, const uint8_t *s, size_t n,
                           bpe_workspace *w, id_sink *sink) {
    for (size_t i = 0; i < n;) {
        const size_t e = piece_end(v, s, n, i);
        const int rc = bpe_encode_piece(v, s + i, e - i, w, sink);
        if (rc != 0)
            return rc;
        i = e;
    }
    return 0;
}

/* ------------------------------------------------------------ public API */

int64_t tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t *out_ids,
                         size_t cap, bool allow_special) {
    const struct tokenizer_vocab *v = tok->vocab;
    if (v->hf != NULL) {
        int64_t n = hf_tokenizer_encode(
            v->hf, text, len, allow_special ? 0 : HF_ENCODE_SPLIT_SPECIAL, out_ids, cap, NULL, 0);
        return n < 0 ? TOKENIZER_ERROR_ENCODE : n;
    }
    const uint8_t *s = (const uint8_t *)text;
    id_sink sink = {.out = out_ids, .cap = cap, .count = 0};
    bpe_workspace w = {0};
    /* next_at[k]: where special token k next occurs at or after pos (len
     * when it does not), -1 until searched. */
    int64_t *next_at = NULL;
    const int n_special = allow_special ? v->n_special : 0;
    if (n_special > 0) {
        next_at = malloc((size_t)n_special * sizeof *next_at);
        if (next_at == NULL)
            return TOKENIZER_ERROR_NOMEM;
        for (int k = 0; k < n_special; k++)
            next_at[k] = -1;
    }
    int rc = 0;
    size_t pos = 0;
    while (pos < len && rc == 0) {
        size_t seg_end = len, special_len = 0;
        int32_t special = -1;
        for (int k = 0; k < n_special; k++) {
            size_t sp_len;
            const char *sp = token_at(v, v->special_ids[k], &sp_len);
            if (next_at[k] < (int64_t)pos) {
                const char *hit = memmem(text + pos, len - pos, sp, sp_len);
                next_at[k] = hit != NULL ? hit - text : (int64_t)len;
            }
            /* earliest wins; at the same place the longest */
            if ((size_t)next_at[k] < seg_end ||
                (special >= 0 && (size_t)next_at[k] == seg_end && sp_len > special_len)) {
                seg_end = (size_t)next_at[k];
                special = v->special_ids[k];
                special_len = sp_len;
            }
        }
        rc = encode_ordinary(v, s + pos, seg_end - pos, &w, &sink);
        if (special >= 0)
            sink_push(&sink, special);
        pos = seg_end + special_len;
    }
    free(w.memory);
    free(next_at);
    return rc != 0 ? rc : sink.count;
}

int64_t tokenizer_encode_prompt(const tokenizer *tok, const char *text, size_t len,
                                int32_t *out_ids, size_t cap, bool allow_special) {
    const struct tokenizer_vocab *v = tok->vocab;
    if (v->hf == NULL)
        return tokenizer_encode(tok, text, len, out_ids, cap, allow_special);
    const int flags = HF_ENCODE_ADD_PREFIX | (allow_special ? 0 : HF_ENCODE_SPLIT_SPECIAL);
    const int64_t n = hf_tokenizer_encode(v->hf, text, len, flags, out_ids, cap, NULL, 0);
    return n < 0 ? TOKENIZER_ERROR_ENCODE : n;
}

int64_t tokenizer_encode_input(const tokenizer *tok, const char *text, size_t len, int32_t *out_ids,
                               size_t cap, bool rendered) {
    return rendered ? tokenizer_encode(tok, text, len, out_ids, cap, true)
                    : tokenizer_encode_prompt(tok, text, len, out_ids, cap, false);
}

int64_t tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, char *out,
                         size_t cap) {
    if (tok->vocab->hf != NULL) {
        int64_t bytes = hf_tokenizer_decode(tok->vocab->hf, ids, n, false, out, cap, NULL, 0);
        return bytes < 0 ? TOKENIZER_ERROR_BAD_ID : bytes;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size)
            return TOKENIZER_ERROR_BAD_ID;
        size_t len;
        const char *bytes = token_at(tok->vocab, ids[i], &len);
        if ((uint64_t)total < cap)
            memcpy(out + total, bytes, len < cap - (size_t)total ? len : cap - (size_t)total);
        total += (int64_t)len;
    }
    return total;
}

const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size)
        return NULL;
    if (tok->vocab->hf != NULL)
        return hf_tokenizer_token_bytes(tok->vocab->hf, id, len);
    return token_at(tok->vocab, id, len);
}

int32_t tokenizer_add_special(tokenizer *tok, const char *text, size_t len, char *err,
                              size_t errlen) {
    struct tokenizer_vocab *v = tok->vocab;
    if (v->hf != NULL) {
        set_error(err, errlen,
                  "special token: a Hugging Face tokenizer's come from its tokenizer.json");
        return -1;
    }
    if (len == 0) {
        set_error(err, errlen, "special token: empty text");
        return -1;
    }
    int32_t id = vocab_find(v, text, len);
    for (int k = 0; id >= 0 && k < v->n_special; k++)
        if (v->special_ids[k] == id)
            return id;
    int32_t *specials = realloc(v->special_ids, ((size_t)v->n_special + 1) * sizeof *specials);
    if (specials == NULL) {
        set_error(err, errlen, "special token: out of memory");
        return -1;
    }
    v->special_ids = specials;
    if (id < 0 && (id = vocab_append(tok, text, len)) < 0) {
        set_error(err, errlen, "special token: out of memory");
        return -1;
    }
    v->special_ids[v->n_special++] = id;
    return id;
}

void tokenizer_free(tokenizer *tok) {
    struct tokenizer_vocab *v = tok->vocab;
    if (v != NULL) {
        free(v->bytes);
        free(v->offset);
        free(v->id_slots);
        free(v->merge_slots);
        free(v->special_ids);
        hf_tokenizer_free(v->hf);
        free(v);
    }
    *tok = (tokenizer){.vocab = NULL, .vocab_size = 0, .eot_id = -1};
}

/* --------------------------------------------------------------- loading */

/* An empty vocabulary with the ASCII class table filled in. */
static int tokenizer_init_empty(tokenizer *tok, char *err, size_t errlen) {
    *tok = (tokenizer){.vocab = calloc(1, sizeof(struct tokenizer_vocab)), .eot_id = -1};
    if (tok->vocab == NULL || id_slots_resize(tok->vocab, 0) != 0) {
        tokenizer_free(tok);
        set_error(err, errlen, "tokenizer: out of memory");
        return -1;
    }
    for (uint32_t c = 0; c < 128; c++)
        tok->vocab->ascii_class[c] = (uint8_t)class_of_code_point(c);
    return 0;
}

int tokenizer_load_bytes(tokenizer *tok, char *err, size_t errlen) {
    if (tokenizer_init_empty(tok, err, errlen) != 0)
        return -1;
    for (int b = 0; b < 256; b++) {
        const char byte = (char)b;
        if ((tok->vocab->byte_id[b] = vocab_append(tok, &byte, 1)) < 0) {
            tokenizer_free(tok);
            set_error(err, errlen, "tokenizer: out of memory");
            return -1;
        }
    }
    tok->eot_id =
        tokenizer_add_special(tok, TOKENIZER_EOT_TEXT, strlen(TOKENIZER_EOT_TEXT), err, errlen);
    if (tok->eot_id < 0) {
        tokenizer_free(tok);
        return -1;
    }
    return 0;
}

/* GPT-2 spells each byte as one printable character, bytes_to_unicode() in
 * encoder.py: the printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') as
 * themselves, the other 68 as U+0100.. in byte order. This fills the
 * inverse: byte_of[cp] for cp < 0x144, -1 where cp spells no byte. */
enum { GPT2_ALPHABET_END = 0x144 };

static void gpt2_byte_alphabet(int16_t byte_of[GPT2_ALPHABET_END]) {
    for (int cp = 0; cp < GPT2_ALPHABET_END; cp++)
        byte_of[cp] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        byte_of[printable ? b : 256 + n++] = (int16_t)b;
    }
}

/* Decodes a token spelled in the GPT-2 byte alphabet (UTF-8 text[0..len))
 * into out (room for len bytes: each character is at least one byte).
 * Returns the byte count, or -1 with the offending code point in *bad. */
static int64_t gpt2_unspell(const int16_t byte_of[GPT2_ALPHABET_END], const char *text, size_t len,
                            char *out, uint32_t *bad) {
    const uint8_t *s = (const uint8_t *)text;
    int64_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_decode(s + i, len - i, &cp);
        if (cp >= GPT2_ALPHABET_END || byte_of[cp] < 0) {
            *bad = cp;
            return -1;
        }
        out[n++] = (char)byte_of[cp];
    }
    return n;
}

/* Reads vocab.json / encoder.json: ids must be exactly 0..N-1. */
static int load_gpt2_vocab(tokenizer *tok, const int16_t byte_of[GPT2_ALPHABET_END],
                           const char *path, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line > 0)
            set_error(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        else
            set_error(err, errlen, "%s", jerr.text);
        return -1;
    }
    int rc = -1;
    const char **spelling = NULL;
    char *scratch = NULL;
    const size_t n = json_is_object(root) ? json_object_size(root) : 0;
    if (!json_is_object(root) || n == 0 || n >= INT32_MAX / 2) {
        set_error(err, errlen, "%s: expected a non-empty JSON object {\"token\": id}", path);
        goto done;
    }
    spelling = calloc(n, sizeof *spelling);
    if (spelling == NULL) {
        set_error(err, errlen, "%s: out of memory", path);
        goto done;
    }
    const char *key;
    json_t *value;
    size_t longest = 0;
    json_object_foreach(root, key, value) {
        const json_int_t id = json_is_integer(value) ? json_integer_value(value) : -1;
        if (id < 0 || (size_t)id >= n) {
            set_error(err, errlen, "%s: token \"%s\": id must be an integer in [0, %zu)", path, key,
                      n);
            goto done;
        }
        if (spelling[id] != NULL) {
            set_error(err, errlen, "%s: tokens \"%s\" and \"%s\" share id %lld", path, spelling[id],
                      key, (long long)id);
            goto done;
        }
        spelling[id] = key;
        if (strlen(key) > longest)
            longest = strlen(key);
    }
    scratch = malloc(longest + 1);
    if (scratch == NULL) {
        set_error(err, errlen, "%s: out of memory", path);
        goto done;
    }
    for (size_t id = 0; id < n; id++) {
        uint32_t bad;
        const int64_t len =
            gpt2_unspell(byte_of, spelling[id], strlen(spelling[id]), scratch, &bad);
        if (len < 0) {
            set_error(err, errlen, "%s: token \"%s\" has U+%04X, outside GPT-2's byte alphabet",
                      path, spelling[id], bad);
            goto done;
        }
        if (vocab_find(tok->vocab, scratch, (size_t)len) >= 0) {
            set_error(err, errlen, "%s: token \"%s\" appears twice", path, spelling[id]);
            goto done;
        }
        if (vocab_append(tok, scratch, (size_t)len) < 0) {
            set_error(err, errlen, "%s: out of memory", path);
            goto done;
        }
    }
    rc = 0;
done:
    free(scratch);
    free(spelling);
    json_decref(root);
    return rc;
}

/* The whole file in a malloc'd buffer with a NUL after its *len bytes. */
static char *read_whole_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_error(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL)
            free(buf);
        buf = bigger;
        cap *= 2;
    }
    const bool failed = buf == NULL || ferror(f);
    fclose(f);
    if (failed) {
        set_error(err, errlen, "%s: %s", path, buf == NULL ? "out of memory" : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads merges.txt / vocab.bpe: an optional "#version" first line, then one
 * merge "left right" a line (both halves spelled in the byte alphabet),
 * rank = order. Blank lines are skipped, a CR before LF is ignored. */
static int load_gpt2_merges(tokenizer *tok, const int16_t byte_of[GPT2_ALPHABET_END],
                            const char *path, char *err, size_t errlen) {
    struct tokenizer_vocab *v = tok->vocab;
    size_t size;
    char *text = read_whole_file(path, &size, err, errlen);
    if (text == NULL)
        return -1;
    int rc = -1;
    size_t n_lines = 1;
    for (size_t i = 0; i < size; i++)
        n_lines += text[i] == '\n';
    uint64_t slots = 64;
    while (slots < 2 * n_lines)
        slots *= 2;
    char *scratch = malloc(size + 1); /* a line's two halves, decoded back to back */
    v->merge_slots = malloc(slots * sizeof *v->merge_slots);
    if (scratch == NULL || v->merge_slots == NULL) {
        set_error(err, errlen, "%s: out of memory", path);
        goto done;
    }
    memset(v->merge_slots, 0xff, slots * sizeof *v->merge_slots);
    v->merge_mask = slots - 1;
    int32_t rank = 0;
    int line_no = 0;
    for (char *line = text; line < text + size;) {
        char *eol = memchr(line, '\n', (size_t)(text + size - line));
        if (eol == NULL)
            eol = text + size;
        char *next_line = eol + (eol < text + size);
        line_no++;
        if (eol > line && eol[-1] == '\r')
            eol--;
        const size_t line_len = (size_t)(eol - line);
        if (line_len == 0 || (line_no == 1 && line_len >= 8 && memcmp(line, "#version", 8) == 0)) {
            line = next_line;
            continue;
        }
        char *space = memchr(line, ' ', line_len);
        if (space == NULL || space == line || space + 1 == eol ||
            memchr(space + 1, ' ', (size_t)(eol - space - 1)) != NULL) {
            set_error(err, errlen, "%s:%d: expected two tokens separated by one space: \"%.*s\"",
                      path, line_no, (int)line_len, line);
            goto done;
        }
        const char *half[2] = {line, space + 1};
        const size_t half_len[2] = {(size_t)(space - line), (size_t)(eol - space - 1)};
        int32_t id[2];
        int64_t len[2];
        for (int h = 0; h < 2; h++) {
            uint32_t bad;
            len[h] = gpt2_unspell(byte_of, half[h], half_len[h], scratch + (h ? len[0] : 0), &bad);
            if (len[h] < 0 && bad == UINT32_MAX) {
                set_error(err, errlen, "%s:%d: \"%.*s\" is not valid UTF-8", path, line_no,
                          (int)half_len[h], half[h]);
                goto done;
            }
            if (len[h] < 0) {
                set_error(err, errlen, "%s:%d: \"%.*s\" has U+%04X, outside GPT-2's byte alphabet",
                          path, line_no, (int)half_len[h], half[h], bad);
                goto done;
            }
            id[h] = vocab_find(v, scratch + (h ? len[0] : 0), (size_t)len[h]);
            if (id[h] < 0) {
                set_error(err, errlen, "%s:%d: token \"%.*s\" is not in the vocabulary", path,
                          line_no, (int)half_len[h], half[h]);
                goto done;
            }
        }
        const int32_t merged = vocab_find(v, scratch, (size_t)(len[0] + len[1]));
        if (merged < 0) {
            set_error(err, errlen, "%s:%d: merged token \"%.*s%.*s\" is not in the vocabulary",
                      path, line_no, (int)half_len[0], half[0], (int)half_len[1], half[1]);
            goto done;
        }
        merge_insert(v, id[0], id[1], rank++, merged);
        line = next_line;
    }
    rc = 0;
done:
    free(scratch);
    free(text);
    return rc;
}

int tokenizer_load_gpt2(tokenizer *tok, const char *vocab_json_path, const char *merges_txt_path,
                        char *err, size_t errlen) {
    if (tokenizer_init_empty(tok, err, errlen) != 0)
        return -1;
    int16_t byte_of[GPT2_ALPHABET_END];
    gpt2_byte_alphabet(byte_of);
    if (load_gpt2_vocab(tok, byte_of, vocab_json_path, err, errlen) != 0)
        goto fail;
    for (int b = 0; b < 256; b++) {
        const char byte = (char)b;
        tok->vocab->byte_id[b] = vocab_find(tok->vocab, &byte, 1);
        if (tok->vocab->byte_id[b] < 0) {
            set_error(err, errlen, "%s: no token for byte 0x%02X", vocab_json_path, b);
            goto fail;
        }
    }
    if (load_gpt2_merges(tok, byte_of, merges_txt_path, err, errlen) != 0)
        goto fail;
    tok->eot_id =
        tokenizer_add_special(tok, TOKENIZER_EOT_TEXT, strlen(TOKENIZER_EOT_TEXT), err, errlen);
    if (tok->eot_id < 0)
        goto fail;
    return 0;
fail:
    tokenizer_free(tok);
    return -1;
}

/* ------------------------------------------------- Hugging Face directories */

int tokenizer_load_hf(tokenizer *tok, const char *model_dir, char *err, size_t errlen) {
    if (tokenizer_init_empty(tok, err, errlen) != 0)
        return -1;
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_dir);
    tok->vocab->hf = hf_tokenizer_load(path, err, errlen);
    if (tok->vocab->hf == NULL) {
        tokenizer_free(tok);
        return -1;
    }
    tok->vocab_size = hf_tokenizer_vocab_size(tok->vocab->hf);
    /* eos_token: a string or an AddedToken object; model_max_length is
     * often 1e30, beyond jansson's integers, hence reals */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", model_dir);
    json_error_t jerr;
    json_t *config = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
    json_t *eos = json_object_get(config, "eos_token");
    if (json_is_object(eos))
        eos = json_object_get(eos, "content");
    if (json_is_string(eos))
        tok->eot_id = hf_tokenizer_token_to_id(tok->vocab->hf, json_string_value(eos));
    if (tok->eot_id < 0) {
        if (config == NULL)
            set_error(err, errlen, "%s: %s", path, jerr.text);
        else
            set_error(err, errlen, "%s: eos_token %s", path,
                      json_is_string(eos) ? "is not in tokenizer.json" : "is missing");
        json_decref(config);
        tokenizer_free(tok);
        return -1;
    }
    json_decref(config);
    return 0;
}

const struct hf_tokenizer *tokenizer_hf(const tokenizer *tok) {
    return tok->vocab->hf;
}
