#include "prometheus.h"

#include <stdatomic.h>

#include "route_table.h"

#define MAX_ROUTES 64 /* the table's size is checked against it */
#define MIN_STATUS 100
#define N_STATUS   500 /* 100..599 */

/* Upper bounds in microseconds: 1 ms .. 10 s, the range between a cached
 * read and a slow upload; longer requests (streams) land in +Inf. */
static const int64_t bucket_us[] = {1000,   2500,   5000,    10000,   25000,   50000,   100000,
                                    250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define N_BUCKETS (sizeof bucket_us / sizeof bucket_us[0])

/* Slot MAX_ROUTES is "unmatched". */
static atomic_uint_fast64_t requests[MAX_ROUTES + 1][N_STATUS];
static atomic_uint_fast64_t duration_buckets[MAX_ROUTES + 1][N_BUCKETS + 1];
static atomic_uint_fast64_t duration_sum_us[MAX_ROUTES + 1];

void prometheus_record_request(int route, unsigned status, int64_t duration_us) {
    int slot = route >= 0 && route < MAX_ROUTES ? route : MAX_ROUTES;
    if (status >= MIN_STATUS && status < MIN_STATUS + N_STATUS)
        atomic_fetch_add(&requests[slot][status - MIN_STATUS], 1);
    size_t b = 0;
    while (b < N_BUCKETS && duration_us > bucket_us[b])
        b++;
    atomic_fetch_add(&duration_buckets[slot][b], 1);
    atomic_fetch_add(&duration_sum_us[slot], (uint_fast64_t)(duration_us > 0 ? duration_us : 0));
}

static void route_label(size_t slot, char *out, size_t len) {
    const char *method, *pattern;
    if (slot >= http_route_count() || slot == MAX_ROUTES) {
        snprintf(out, len, "unmatched");
        return;
    }
    http_route_at(slot, &method, &pattern);
    snprintf(out, len, "%s %s", method, pattern);
}

void prometheus_write_requests(FILE *out) {
    size_t n_routes = http_route_count();
    if (n_routes > MAX_ROUTES)
        n_routes = MAX_ROUTES;
    fputs("# HELP rlhfd_http_requests_total HTTP requests answered, by route and status.\n"
          "# TYPE rlhfd_http_requests_total counter\n",
          out);
    char label[160];
    for (size_t slot = 0; slot <= MAX_ROUTES; slot++) {
        if (slot == n_routes)
            slot = MAX_ROUTES;
        route_label(slot, label, sizeof label);
        for (int s = 0; s < N_STATUS; s++) {
            uint64_t n = atomic_load(&requests[slot][s]);
            if (n > 0)
                fprintf(out, "rlhfd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", label,
                        s + MIN_STATUS, (unsigned long long)n);
        }
    }
    fputs("# HELP rlhfd_http_request_duration_seconds Time from the request's headers to the "
          "end of its response, by route.\n"
          "# TYPE rlhfd_http_request_duration_seconds histogram\n",
          out);
    for (size_t slot = 0; slot <= MAX_ROUTES; slot++) {
        if (slot == n_routes)
            slot = MAX_ROUTES;
        route_label(slot, label, sizeof label);
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cumulative += atomic_load(&duration_buckets[slot][b]);
            if (b < N_BUCKETS)
                fprintf(out,
                        "rlhfd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                        "%llu\n",
                        label, (double)bucket_us[b] / 1e6, (unsigned long long)cumulative);
            else
                fprintf(out,
                        "rlhfd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                        "%llu\n",
                        label, (unsigned long long)cumulative);
        }
        fprintf(out, "rlhfd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
                (double)atomic_load(&duration_sum_us[slot]) / 1e6);
        fprintf(out, "rlhfd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label,
                (unsigned long long)cumulative);
    }
}
