/* regex_lite — the regular expressions of Hugging Face tokenizer.json files
 * (Split pre-tokenisers, Replace normalisers), matched over code points
 * with backtracking and the leftmost-first semantics of Oniguruma (what the
 * Rust tokenizers library uses) and JavaScript.
 *
 * Supported: literals and escapes (\r \n \t \f \v \0 \xNN \x{N..} \uNNNN,
 * escaped punctuation), '.', classes [..] and [^..] with ranges, \p{..} /
 * \P{..} general categories (L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No P.. S..
 * Z.. C.., long names such as Letter too), \s \S (White_Space) \d \D (Nd)
 * \w \W (letters, marks, Nd, Pc) inside and outside classes, groups (..)
 * (?:..) (?i:..) (?i) (case-insensitive for ASCII letters), alternation,
 * quantifiers ? * + {n} {n,} {n,m} each greedy, lazy (?) or possessive (+),
 * atomic groups (?>..), lookahead (?=..) (?!..), anchors ^ $ \A \z.
 * Anything else is a compile error naming it: backreferences, lookbehind,
 * named groups, Unicode scripts (\p{Han}), class set operations.
 *
 * Text is code points plus a property byte each (regex_lite_props);
 * values above U+10FFFF stand for invalid UTF-8 bytes: they belong to no
 * category and are not white space, so only negated classes and '.' match
 * them. A compiled regex is read-only and may be shared between threads. */
#ifndef RLHF_REGEX_LITE_H
#define RLHF_REGEX_LITE_H

#include <stddef.h>
#include <stdint.h>

typedef struct regex_lite regex_lite;

/* Compiles the UTF-8 pattern[0..len). Returns NULL with a message in err
 * (naming the unsupported construct and its offset) on failure. */
regex_lite *regex_lite_compile(const char *pattern, size_t len, char *err, size_t errlen);
void regex_lite_free(regex_lite *re);

/* The property byte of cp that regex_lite_search reads beside it. */
uint8_t regex_lite_prop(uint32_t cp);

/* Finds the leftmost match in cps[0..n) that starts at or after start and
 * is not empty. Returns 1 and sets [*match_begin, *match_end), 0 when there
 * is none, -1 when the match needed more than a fixed backtracking budget
 * (a pathological pattern; the message goes to err). */
int regex_lite_search(const regex_lite *re, const uint32_t *cps, const uint8_t *props, size_t n,
                      size_t start, size_t *match_begin, size_t *match_end, char *err,
                      size_t errlen);

#endif
