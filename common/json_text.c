#include "json_text.h"

#include <stdio.h>
#include <string.h>

int json_real_text(double v, char *out) {
    int n = snprintf(out, 32, "%.15g", v);
    if (strchr(out, '.') == NULL && strchr(out, 'e') == NULL) {
        out[n++] = '.';
        out[n++] = '0';
        out[n] = '\0';
    }
    char *e = strchr(out, 'e');
    if (e != NULL) { /* "1e+20" -> "1e20", "1e-05" -> "1e-5" */
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(out + n - end) + 1);
            n -= (int)(end - start);
        }
    }
    return n;
}

bool json_plain_string(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\')
                return false;
            i++;
            continue;
        }
        size_t len;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += len;
    }
    return true;
}
