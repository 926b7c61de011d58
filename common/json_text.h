/* json_text — writing JSON text without building jansson objects, byte for
 * byte as jansson would write it, for the paths that render many values
 * straight into a buffer (server/metrics_page.h). */
#ifndef RLHF_JSON_TEXT_H
#define RLHF_JSON_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* A finite double as jansson prints it with JSON_REAL_PRECISION(15):
 * "%.15g", ".0" appended when there is neither '.' nor 'e', and no '+' or
 * leading zeros in the exponent. out holds at least 32 bytes; returns the
 * length. */
int json_real_text(double v, char *out);

/* Whether s (n bytes) can be written between quotes as it is: valid UTF-8
 * with nothing JSON escapes ('"', '\\', control characters). */
bool json_plain_string(const char *s, size_t n);

#endif
