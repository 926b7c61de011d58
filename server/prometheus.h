/* prometheus — request counters and latency histograms for GET /metrics, kept
 * in memory (lock-free atomics) since the daemon started, written out in the
 * Prometheus text exposition format. The gauges (queue depth, running jobs,
 * database size) are read at scrape time by the route itself. */
#ifndef RLHF_PROMETHEUS_H
#define RLHF_PROMETHEUS_H

#include <stdint.h>
#include <stdio.h>

/* One finished request: route is its index in the route table, or -1 when
 * no route matched; status 0 if no response was queued. */
void prometheus_record_request(int route, unsigned status, int64_t duration_us);

/* rlhfd_http_requests_total{route,status} and
 * rlhfd_http_request_duration_seconds{route} (histogram), every route of the
 * table labelled "METHOD PATTERN", unmatched requests as "unmatched". */
void prometheus_write_requests(FILE *out);

#endif
