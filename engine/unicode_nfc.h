/* unicode_nfc — Unicode Normalization Form C (UAX #15) and the property
 * look-ups the Hugging Face tokenizer needs, over code points. Tables:
 * unicode_data.c (Unicode 15.0); \s is the White_Space property of
 * unicode_tables.c. */
#ifndef RLHF_UNICODE_NFC_H
#define RLHF_UNICODE_NFC_H

#include <stddef.h>
#include <stdint.h>

#include "unicode_data.h"

/* General category of cp (UNICODE_CATEGORY_CN for unassigned code points
 * and for anything above U+10FFFF). */
unicode_category unicode_get_category(uint32_t cp);
/* Canonical combining class of cp (0 for starters). */
uint8_t unicode_get_ccc(uint32_t cp);
/* 1 when cp has the White_Space property. */
int unicode_is_space(uint32_t cp);

/* Writes NFC(in[0..n)) to out and returns its length. Canonical
 * decomposition can lengthen the text before composition shortens it: out
 * needs room for unicode_nfc_capacity(n) code points. Values above U+10FFFF
 * (callers use them for invalid UTF-8 bytes) pass through unchanged and
 * act as starters. */
size_t unicode_nfc(const uint32_t *in, size_t n, uint32_t *out);
size_t unicode_nfc_capacity(size_t n);

#endif
