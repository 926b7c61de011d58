#include "textbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void textbuf_put(textbuf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->p, cap);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->p = grown, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void textbuf_puts(textbuf *b, const char *s) {
    textbuf_put(b, s, strlen(s));
}

void textbuf_int(textbuf *b, int64_t v) {
    char digits[24];
    textbuf_put(b, digits, (size_t)snprintf(digits, sizeof digits, "%lld", (long long)v));
}
