/* unicode_tables — the code-point classes of GPT-2's pre-tokenisation regex
 * (\p{L}, \p{N}, \s), generated into unicode_tables.c by
 * engine/tools/gen_unicode_tables.py. Used by tokenizer.c. */
#ifndef RLHF_UNICODE_TABLES_H
#define RLHF_UNICODE_TABLES_H

#include <stdint.h>

typedef enum unicode_class {
    UNICODE_CLASS_OTHER = 0, /* none of the three (also: invalid UTF-8 bytes) */
    UNICODE_CLASS_LETTER,    /* \p{L}: Lu Ll Lt Lm Lo */
    UNICODE_CLASS_NUMBER,    /* \p{N}: Nd Nl No */
    UNICODE_CLASS_SPACE,     /* \s: the White_Space property */
} unicode_class;

typedef struct unicode_range {
    uint32_t first, last; /* inclusive */
    uint8_t cls;          /* unicode_class */
} unicode_range;

/* Sorted by first, disjoint; code points in no range are UNICODE_CLASS_OTHER. */
extern const unicode_range unicode_class_ranges[];
extern const int unicode_class_range_count;
extern const char unicode_tables_version[]; /* e.g. "15.0.0" */

#endif
