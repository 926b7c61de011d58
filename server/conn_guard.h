/* conn_guard — connection hygiene: how many connections rlhfd holds, from
 * whom, and how long each may take to send its request.
 *
 * Every connection is counted when libmicrohttpd accepts it (its
 * MHD_OPTION_NOTIFY_CONNECTION callback). A connection is *admitted* while
 * fewer than max_connections are admitted in all and fewer than
 * max_connections_per_ip from its address; otherwise it is *spare*: it may
 * still ask /healthz or /readyz, every other request gets 503 (over the
 * total) or 429 (over its address's share) with Retry-After (http.c asks
 * conn_guard_admission). At most spare_connections spare connections are
 * held; a new one pushes out the oldest spare connection that has not sent
 * its headers yet, with a 503 written to it, so a flood cannot take the
 * spare room from a health probe that sends its request at once.
 *
 * Deadlines: a connection has header_timeout_ms to send a request line and
 * headers (counted from when it connected or its previous reply was sent,
 * so this also bounds keep-alive idleness) and body_timeout_ms for each
 * piece of a body. One watchdog thread cuts a connection past its deadline:
 * it writes a 408 and shuts the socket down, and libmicrohttpd closes it
 * (the fd stays libmicrohttpd's; the guard's lock is held from the check to
 * the shutdown and by the close notification, which comes before the fd is
 * closed). Replies being sent have no deadline here (streams can be long);
 * libmicrohttpd's idle timeout covers a reader that stops reading.
 */
#ifndef RLHF_CONN_GUARD_H
#define RLHF_CONN_GUARD_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

typedef struct conn_guard conn_guard;

typedef enum conn_admission {
    CONN_ADMISSION_ADMITTED,
    CONN_ADMISSION_OVER_IP,    /* its address holds max_connections_per_ip */
    CONN_ADMISSION_OVER_TOTAL, /* max_connections are held */
} conn_admission;

/* What the connection is expected to send next (its deadline). */
typedef enum conn_stage {
    CONN_STAGE_HEADERS, /* header_timeout_ms from now */
    CONN_STAGE_BODY,    /* body_timeout_ms from now (each piece) */
    CONN_STAGE_REPLY,   /* no deadline */
} conn_stage;

/* The Retry-After of every connection-limit answer. */
#define CONN_GUARD_RETRY_AFTER_S 1

/* Starts the watchdog. NULL with err on failure. */
conn_guard *conn_guard_start(const rlhfd_config *cfg, char *err, size_t errlen);
/* Joins the watchdog and frees the guard (after MHD_stop_daemon). */
void conn_guard_stop(conn_guard *g);
/* The most connections libmicrohttpd must hold for the guard to see every
 * one (MHD_OPTION_CONNECTION_LIMIT). */
unsigned conn_guard_mhd_limit(const rlhfd_config *cfg);

/* MHD_OPTION_NOTIFY_CONNECTION's callback (cls: the guard). */
void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);
/* The connection's admission (ADMITTED for a connection the guard does not
 * know). */
conn_admission conn_guard_admission(struct MHD_Connection *conn);
/* Sets the connection's deadline for what it sends next. */
void conn_guard_expect(struct MHD_Connection *conn, conn_stage stage);

#endif
