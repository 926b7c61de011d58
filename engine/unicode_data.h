/* unicode_data — general categories, canonical combining classes and
 * canonical (de)compositions, generated into unicode_data.c by
 * engine/tools/gen_unicode_data.py. Used by regex_lite.c (\p{..} classes)
 * and unicode_nfc.c (NFC). */
#ifndef RLHF_UNICODE_DATA_H
#define RLHF_UNICODE_DATA_H

#include <stdint.h>

/* Unicode general categories; UNICODE_CATEGORY_CN (unassigned) is 0. */
typedef enum unicode_category {
    UNICODE_CATEGORY_CN = 0,
    UNICODE_CATEGORY_LU,
    UNICODE_CATEGORY_LL,
    UNICODE_CATEGORY_LT,
    UNICODE_CATEGORY_LM,
    UNICODE_CATEGORY_LO,
    UNICODE_CATEGORY_MN,
    UNICODE_CATEGORY_MC,
    UNICODE_CATEGORY_ME,
    UNICODE_CATEGORY_ND,
    UNICODE_CATEGORY_NL,
    UNICODE_CATEGORY_NO,
    UNICODE_CATEGORY_PC,
    UNICODE_CATEGORY_PD,
    UNICODE_CATEGORY_PS,
    UNICODE_CATEGORY_PE,
    UNICODE_CATEGORY_PI,
    UNICODE_CATEGORY_PF,
    UNICODE_CATEGORY_PO,
    UNICODE_CATEGORY_SM,
    UNICODE_CATEGORY_SC,
    UNICODE_CATEGORY_SK,
    UNICODE_CATEGORY_SO,
    UNICODE_CATEGORY_ZS,
    UNICODE_CATEGORY_ZL,
    UNICODE_CATEGORY_ZP,
    UNICODE_CATEGORY_CC,
    UNICODE_CATEGORY_CF,
    UNICODE_CATEGORY_CS,
    UNICODE_CATEGORY_CO,
    UNICODE_CATEGORY_COUNT,
} unicode_category;

typedef struct unicode_value_range {
    uint32_t first, last; /* inclusive */
    uint8_t value;
} unicode_value_range;

typedef struct unicode_decomposition {
    uint32_t cp;
    uint32_t to[2]; /* one level of canonical decomposition; to[1] = 0 for a singleton */
} unicode_decomposition;

typedef struct unicode_composition {
    uint32_t first, second, composite;
} unicode_composition;

/* All sorted by code point (compositions by (first, second)), disjoint. */
extern const unicode_value_range unicode_category_ranges[]; /* value: unicode_category */
extern const int unicode_category_range_count;
extern const unicode_value_range unicode_ccc_ranges[]; /* value: combining class, nonzero */
extern const int unicode_ccc_range_count;
extern const unicode_decomposition unicode_decompositions[];
extern const int unicode_decomposition_count;
extern const unicode_composition unicode_compositions[];
extern const int unicode_composition_count;
extern const char unicode_data_version[];

#endif
