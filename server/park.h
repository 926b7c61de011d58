/* park — idle event streams wait here without holding an HTTP thread.
 *
 * rlhfd serves HTTP from a small thread pool (epoll per thread), so a
 * content reader must never sleep. A stream with nothing to send parks its
 * connection (MHD_suspend_connection, from its content reader, then returns
 * 0); one ticker thread resumes every parked connection each tick
 * (--sse-poll-ms), and MHD calls the reader again, which looks for new
 * events and parks again if there are none.
 */
#ifndef RLHF_PARK_H
#define RLHF_PARK_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

typedef struct park park;

park *park_start(int64_t tick_ms, char *err, size_t errlen);
/* Suspends conn until the next tick. Call only from conn's content reader
 * or access handler, and return 0 / no response afterwards. 0 parked; -1
 * the park is closed (shutting down): end the response instead. */
int park_suspend(park *p, struct MHD_Connection *conn);
/* Resumes everything parked, refuses new parking, joins the ticker. */
void park_stop(park *p);

#endif
