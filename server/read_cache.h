/* read_cache — the old name of the series cache (series_cache.h), kept
 * only while server/routes_jobs.c still says read_cache; the token cache
 * is token_cache.h. Delete this file, and the read_cache member of server
 * (server.h), when routes_jobs.c uses series_cache.h. */
#ifndef RLHF_READ_CACHE_H
#define RLHF_READ_CACHE_H

#include "series_cache.h"

typedef series_cache read_cache;

static inline int read_cache_series_serve(read_cache *c, sqlite3 *db, int64_t job_id,
                                          const char *name, int64_t after_step, int64_t limit,
                                          char **out, size_t *len) {
    return series_cache_serve(c, db, job_id, name, after_step, limit, out, len);
}

#endif
