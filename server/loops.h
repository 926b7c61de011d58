/* loops — the online RLHF loop (POST /v1/loops, routes_loops.c): its
 * tables (schema/013_loops.sql) and the step the scheduler takes every tick.
 *
 * A loop runs rounds. Each round, in phases stored in loops.phase:
 *   sampling    a `loop-sample` job (engine/loop_sample.h) draws K responses
 *               per prompt from the current policy in the worker pool and
 *               scores them with the loop's reward model(s); once it
 *               succeeded, the selection rule (engine/selection.h) chooses
 *               pairs from its samples, posted into the project as
 *               comparisons. One transaction: the comparisons, the
 *               loop_rounds row and the move to annotating.
 *   annotating  waits for rankings_per_round rankings of the round's
 *               comparisons, or the deadline; then inserts `ensemble` reward
 *               jobs on all the project's rankings so far (seeds + 0, 1, ...;
 *               member e warm-started from the previous member e, member 0
 *               from the previous reward model, which first scores the NEW
 *               rankings: rm_accuracy), rows of loop_reward_members.
 *   reward      once they all succeeded: inserts the policy job (ppo / grpo
 *               on the prompts against member 0, or dpo on the project's
 *               rankings) from the current policy.
 *   policy      once that job succeeded: reads proxy score and KL from its
 *               metrics; with `gold`, a loop-sample job draws the new
 *               policy's answers to the evaluation prompts for the demo
 *               task's gold score; then the next round, or the end: all
 *               `rounds` ran, or the `plateau` rule (loops_plateau) says so.
 * Every move is one transaction fenced on (id, round, phase, 'running'), so
 * work done before a crash and not committed is redone, and committed work
 * (a job inserted, comparisons posted) never twice.
 */
#ifndef RLHF_LOOPS_H
#define RLHF_LOOPS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "server.h"

/* Advances every running loop as far as it can go now (each phase move its
 * own transaction). Errors that are the loop's (a job failed) end the loop
 * as failed; database errors are said on stderr and retried next tick.
 * Returns how many moves were made. */
int loops_tick(sqlite3 *db, const rlhfd_config *cfg);

/* The plateau stop rule over a loop's rounds so far: values[i] is round
 * i + 1's metric (gold or proxy score; NAN: none, which is no
 * improvement). A round improves when its value exceeds the best before it
 * by more than min_delta; the rule says stop when the last patience rounds
 * (patience >= 1) all failed to improve. */
bool loops_plateau(const double *values, int n, int patience, double min_delta);

/* The most jobs a loop's round runs at once: its reward ensemble. */
enum { LOOPS_MAX_ROUND_JOBS = 3 };

/* Cancels loop id in one transaction: a running loop becomes cancelled
 * (the tick moves only running loops) and jobs receives the jobs its round
 * runs (the rest 0), for the caller to cancel. */
typedef enum loop_cancel_result {
    LOOP_CANCEL_ERROR = -1,
    LOOP_CANCEL_NO_LOOP,
    LOOP_CANCEL_DONE,    /* was running: cancelled now */
    LOOP_CANCEL_ALREADY, /* was cancelled already */
    LOOP_CANCEL_ENDED,   /* succeeded or failed */
} loop_cancel_result;
loop_cancel_result loops_cancel(sqlite3 *db, int64_t id, int64_t jobs[LOOPS_MAX_ROUND_JOBS]);

/* The loop object of the API (GET /v1/loops/{id}); NULL with *found 0
 * (none) or -1. */
json_t *loops_get(sqlite3 *db, int64_t id, int *found);
/* A row of loops_list_sql as the loop object. */
json_t *loops_row_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope);
/* A row of loops_rounds_sql as the round object. */
json_t *loops_round_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope);
extern const char loops_list_sql[];   /* newest first; ?1 after, ?2 limit + 1 */
extern const char loops_rounds_sql[]; /* loop ?3's rounds, newest first; ?1 after (a round) */

#endif
