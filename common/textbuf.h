/* textbuf — a growable text buffer, always NUL-terminated. An allocation
 * failure sets failed and leaves the text as it was; later puts do nothing,
 * so a caller checks failed once, at the end. */
#ifndef RLHF_TEXTBUF_H
#define RLHF_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct textbuf {
    char *p; /* NULL until the first put; free() it */
    size_t len, cap;
    bool failed; /* out of memory */
} textbuf;

void textbuf_put(textbuf *b, const char *s, size_t n);
void textbuf_puts(textbuf *b, const char *s);
/* v in decimal. */
void textbuf_int(textbuf *b, int64_t v);

#endif
