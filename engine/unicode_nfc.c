/* unicode_nfc — NFC as UAX #15 specifies it: full canonical decomposition,
 * canonical ordering of combining marks, then canonical composition of
 * each mark with the last starter unless a mark of the same or higher class
 * lies between them (blocked). Hangul syllables are computed (UAX #15 /
 * Unicode chapter 3.12), everything else comes from unicode_data.c. */
#include "unicode_nfc.h"

#include "unicode_tables.h"

#define HANGUL_S_BASE  0xAC00u
#define HANGUL_L_BASE  0x1100u
#define HANGUL_V_BASE  0x1161u
#define HANGUL_T_BASE  0x11A7u
#define HANGUL_L_COUNT 19u
#define HANGUL_V_COUNT 21u
#define HANGUL_T_COUNT 28u
#define HANGUL_N_COUNT (HANGUL_V_COUNT * HANGUL_T_COUNT)
#define HANGUL_S_COUNT (HANGUL_L_COUNT * HANGUL_N_COUNT)

/* The value of the range holding cp, or fallback. */
static int range_lookup(const unicode_value_range *ranges, int count, uint32_t cp, int fallback) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < ranges[mid].first)
            hi = mid - 1;
        else if (cp > ranges[mid].last)
            lo = mid + 1;
        else
            return ranges[mid].value;
    }
    return fallback;
}

unicode_category unicode_get_category(uint32_t cp) {
    return (unicode_category)range_lookup(unicode_category_ranges, unicode_category_range_count, cp,
                                          UNICODE_CATEGORY_CN);
}

uint8_t unicode_get_ccc(uint32_t cp) {
    if (cp < 0x300)
        return 0;
    return (uint8_t)range_lookup(unicode_ccc_ranges, unicode_ccc_range_count, cp, 0);
}

int unicode_is_space(uint32_t cp) {
    int lo = 0, hi = unicode_class_range_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < unicode_class_ranges[mid].first)
            hi = mid - 1;
        else if (cp > unicode_class_ranges[mid].last)
            lo = mid + 1;
        else
            return unicode_class_ranges[mid].cls == UNICODE_CLASS_SPACE;
    }
    return 0;
}

static const unicode_decomposition *find_decomposition(uint32_t cp) {
    int lo = 0, hi = unicode_decomposition_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < unicode_decompositions[mid].cp)
            hi = mid - 1;
        else if (cp > unicode_decompositions[mid].cp)
            lo = mid + 1;
        else
            return &unicode_decompositions[mid];
    }
    return NULL;
}

/* The primary composite of (a, b), or 0. */
static uint32_t find_composition(uint32_t a, uint32_t b) {
    if (a - HANGUL_L_BASE < HANGUL_L_COUNT && b - HANGUL_V_BASE < HANGUL_V_COUNT)
        return HANGUL_S_BASE +
               ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
    if (a - HANGUL_S_BASE < HANGUL_S_COUNT && (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 &&
        b - HANGUL_T_BASE - 1 < HANGUL_T_COUNT - 1)
        return a + (b - HANGUL_T_BASE);
    int lo = 0, hi = unicode_composition_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const unicode_composition *c = &unicode_compositions[mid];
        if (a < c->first || (a == c->first && b < c->second))
            hi = mid - 1;
        else if (a > c->first || b > c->second)
            lo = mid + 1;
        else
            return c->composite;
    }
    return 0;
}

/* Appends the full canonical decomposition of cp at out[n..]; returns the new n. */
static size_t decompose(uint32_t cp, uint32_t *out, size_t n) {
    if (cp - HANGUL_S_BASE < HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S_BASE;
        out[n++] = HANGUL_L_BASE + s / HANGUL_N_COUNT;
        out[n++] = HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT;
        if (s % HANGUL_T_COUNT)
            out[n++] = HANGUL_T_BASE + s % HANGUL_T_COUNT;
        return n;
    }
    const unicode_decomposition *d = cp < 0xC0 ? NULL : find_decomposition(cp);
    if (!d) {
        out[n++] = cp;
        return n;
    }
    n = decompose(d->to[0], out, n);
    if (d->to[1])
        n = decompose(d->to[1], out, n);
    return n;
}

size_t unicode_nfc_capacity(size_t n) {
    return 4 * n + 4;
}

size_t unicode_nfc(const uint32_t *in, size_t n, uint32_t *out) {
    /* 1. full canonical decomposition */
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len = decompose(in[i], out, len);
    /* 2. canonical ordering: stable sort of each run of non-starters by class */
    for (size_t i = 1; i < len; i++) {
        uint8_t c = unicode_get_ccc(out[i]);
        if (c == 0)
            continue;
        uint32_t cp = out[i];
        size_t j = i;
        while (j > 0 && unicode_get_ccc(out[j - 1]) > c) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = cp;
    }
    /* 3. canonical composition, in place (the write index never passes the read index) */
    if (len == 0)
        return 0;
    size_t starter = 0, w = 1;
    int starter_valid = unicode_get_ccc(out[0]) == 0;
    int last_ccc = starter_valid ? 0 : 256;
    for (size_t r = 1; r < len; r++) {
        uint32_t cp = out[r];
        int c = unicode_get_ccc(cp);
        /* not blocked: nothing between the starter and cp, or everything between has a lower class
         */
        if (starter_valid && (last_ccc < c || (last_ccc == 0 && w == starter + 1))) {
            uint32_t comp = find_composition(out[starter], cp);
            if (comp) {
                out[starter] = comp;
                continue;
            }
        }
        if (c == 0) {
            starter = w;
            starter_valid = 1;
            last_ccc = 0;
        } else {
            last_ccc = c;
        }
        out[w++] = cp;
    }
    return w;
}
