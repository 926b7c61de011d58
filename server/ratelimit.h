/* ratelimit — a token bucket per API token for writes (POST, DELETE):
 * `rate` writes per second refill a bucket of `burst`. In memory, per
 * process; a restart refills every bucket. */
#ifndef RLHF_RATELIMIT_H
#define RLHF_RATELIMIT_H

#include <stdint.h>

typedef struct rate_limiter rate_limiter;

/* rate 0: unlimited (take always allows). NULL on out of memory. */
rate_limiter *rate_limiter_new(int64_t rate, int64_t burst);
/* Takes one write for token_id at now_ms (monotonic; a stamp before the
 * previous take refills nothing). 0 allowed; else the whole seconds until
 * one write will be allowed (for Retry-After, >= 1). */
int64_t rate_limiter_take(rate_limiter *l, int64_t token_id, int64_t now_ms);
void rate_limiter_free(rate_limiter *l);

#endif
