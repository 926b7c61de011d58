/* A fresh rlhfd database with jobs and metric rows, written as a worker
 * writes them, for the tests of the metric pages and the series cache. */
#ifndef RLHF_TEST_METRICS_DB_H
#define RLHF_TEST_METRICS_DB_H

#include <sqlite3.h>
#include <stdint.h>

#include "test_server_util.h"

/* daemon_init(d) and its database, migrated, open. */
sqlite3 *metrics_db_open(test_daemon *d);
/* A ppo-control job with status; its id. */
int64_t metrics_db_seed_job(sqlite3 *db, const char *status);
/* Steps from..to of name in one transaction, INSERT OR REPLACE (as a
 * worker writes them): value base + step / 7. */
void metrics_db_put_rows(sqlite3 *db, int64_t job, const char *name, int64_t from, int64_t to,
                         double base);

#endif
