/* mhd_errors — libmicrohttpd's own error answers (malformed request or
 * header line, bad Content-Length or chunking, unsupported HTTP version,
 * a head too large for its memory) rewritten in rlhfd's JSON error shape.
 * How, and why it has to be done this way: mhd_errors.c.
 */
#ifndef RLHF_MHD_ERRORS_H
#define RLHF_MHD_ERRORS_H

#include <stddef.h>

/* 0 if libmicrohttpd's own functions are found behind rlhfd's, else -1
 * with err set. */
int mhd_errors_install(char *err, size_t errlen);

#endif
