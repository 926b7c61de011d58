/* loops — the online RLHF loop's tick and its rows. See loops.h for the
 * phases; schema/013_loops.sql for the tables. */
#include "loops.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"
#include "db.h"
#include "jobs.h"
#include "jobs_db.h"
#include "job_create.h"
#include "loop_sample.h"
#include "models_store.h"
#include "prefs_store.h"
#include "selection.h"

enum {
    LOOP_MAX_PROMPTS = LOOP_SAMPLE_MAX_PROMPTS,
    LOOP_MAX_K = LOOP_SAMPLE_MAX_K,
    LOOP_MAX_MEMBERS = LOOP_SAMPLE_MAX_MODELS
};
_Static_assert((int)LOOPS_MAX_ROUND_JOBS >= (int)LOOP_MAX_MEMBERS,
               "a round's jobs: its reward ensemble");

/* A running loop as the tick reads it. */
typedef struct loop_state {
    int64_t id, round, project, prompts, sft, policy, reward;
    int64_t sample_job; /* the pending loop-sample job, 0: none */
    char phase[16];
    json_t *config;
} loop_state;

static int64_t cfg_int(const loop_state *l, const char *key) {
    return json_integer_value(json_object_get(l->config, key));
}

static const char *cfg_str(const loop_state *l, const char *key) {
    return json_string_value(json_object_get(l->config, key));
}

/* ---- reading ------------------------------------------------------------------ */

static int loop_read(sqlite3 *db, int64_t id, loop_state *l) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT round, phase, config, project_id, prompts_dataset_id, "
                           "sft_checkpoint_id, policy_checkpoint_id, "
                           "coalesce(reward_checkpoint_id, 0), coalesce(sample_job_id, 0) "
                           "FROM loops WHERE id = ?1 AND status = 'running'",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *l = (loop_state){.id = id,
                          .round = sqlite3_column_int64(st, 0),
                          .project = sqlite3_column_int64(st, 3),
                          .prompts = sqlite3_column_int64(st, 4),
                          .sft = sqlite3_column_int64(st, 5),
                          .policy = sqlite3_column_int64(st, 6),
                          .reward = sqlite3_column_int64(st, 7),
                          .sample_job = sqlite3_column_int64(st, 8)};
        snprintf(l->phase, sizeof l->phase, "%s", (const char *)sqlite3_column_text(st, 1));
        l->config = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
        if (l->config == NULL)
            rc = SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* In the transaction: the loop is still running at the round and phase
 * the tick read. 1 yes, 0 no, -1 error. */
static int fence(sqlite3 *db, const loop_state *l) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM loops WHERE id = ?1 AND round = ?2 AND phase = ?3 AND "
                           "status = 'running'",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, l->id);
    sqlite3_bind_int64(st, 2, l->round);
    sqlite3_bind_text(st, 3, l->phase, -1, SQLITE_STATIC);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Opens the move's transaction, fenced: 1 open (the loop is where the tick
 * read it), 0 not (it moved or ended meanwhile: nothing to do), -2 error. */
static int begin_move(sqlite3 *db, const loop_state *l) {
    if (db_begin(db) != SQLITE_OK)
        return -2;
    const int f = fence(db, l);
    if (f != 1)
        db_rollback(db);
    return f == 1 ? 1 : f == 0 ? 0 : -2;
}

/* Commits the move if its writes went (ok), else rolls it back: 1 moved,
 * -2 error. */
static int end_move(sqlite3 *db, bool ok) {
    if (ok && db_commit(db) == SQLITE_OK)
        return 1;
    db_rollback(db);
    return -2;
}

/* Runs sql with the integer/real/text/null arguments fmt describes ('i'
 * int64, 'r' double (NaN: NULL), 's' text (NULL: NULL)). 0 or -1. */
static int exec(sqlite3 *db, const char *sql, const char *fmt, ...) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    for (int i = 0; fmt[i]; i++) {
        if (fmt[i] == 'i')
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        else if (fmt[i] == 'r') {
            const double x = va_arg(ap, double);
            if (isfinite(x))
                sqlite3_bind_double(st, i + 1, x);
        } else {
            const char *s = va_arg(ap, const char *);
            if (s != NULL)
                sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

/* The first integer of sql's first row (binding ?1 = a, ?2 = b); dflt
 * when there is no row or it is NULL. */
static int64_t query_int(sqlite3 *db, const char *sql, int64_t a, int64_t b, int64_t dflt) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return dflt;
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    int64_t v = dflt;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* ---- reward models ------------------------------------------------------------- */

/* The reward models that score a round's samples: the members of the
 * newest round that trained its ensemble (member 0, the loop's reward
 * model, first), or the loop's initial reward model before any; at most
 * max: their checkpoint ids, and how many. */
static int loop_members(sqlite3 *db, const loop_state *l, int64_t *ids, int max) {
    int n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT checkpoint_id FROM loop_reward_members WHERE loop_id = ?1 AND "
                           "checkpoint_id IS NOT NULL AND round = (SELECT max(round) FROM "
                           "loop_reward_members WHERE loop_id = ?1 AND checkpoint_id IS NOT "
                           "NULL) ORDER BY member",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, l->id);
    while (n < max && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (n == 0 && l->reward > 0)
        ids[n++] = l->reward;
    return n;
}

/* Reward models trained per round (`ensemble`; 1 for a loop stored before
 * the setting existed). */
static int ensemble_size(const loop_state *l) {
    const int64_t n = cfg_int(l, "ensemble");
    return n >= 1 && n <= LOOP_MAX_MEMBERS ? (int)n : 1;
}

/* ---- moves ---------------------------------------------------------------------- */

/* Ends the loop as failed with message (its own transaction). */
static void loop_fail(sqlite3 *db, const loop_state *l, const char *message) {
    if (begin_move(db, l) == 1)
        end_move(db, exec(db,
                          "UPDATE loops SET status = 'failed', error = ?2, finished_at = ?3 "
                          "WHERE id = ?1",
                          "isi", l->id, message, db_now_s()) == 0);
}

/* In the transaction: phase ← phase (and round). */
static int move_to(sqlite3 *db, const loop_state *l, int64_t round, const char *phase) {
    return exec(db, "UPDATE loops SET round = ?2, phase = ?3 WHERE id = ?1", "iis", l->id, round,
                phase);
}

/* In the transaction: inserts a job of type with config (resolved
 * hyperparameters, JSON text) and refs, in the lineage of the loop's SFT
 * model sft; links dataset (0: none) for training. Its id, or -1. */
static int64_t insert_job_text(sqlite3 *db, const rlhfd_config *cfg, const char *type,
                               const char *config, job_refs refs, int64_t dataset, int64_t sft) {
    refs.base_model = models_store_checkpoint_base(db, sft);
    const job_new job = {.type = type,
                         .config = config,
                         .max_attempts = cfg->max_attempts,
                         .refs = refs,
                         .ranks = 1};
    int64_t id = jobs_db_insert(db, &job);
    if (id > 0 && dataset > 0 && jobs_db_link_dataset(db, id, "training", dataset) != 0)
        id = -1;
    return id;
}

/* The same with the loop's hyperparameters of key (reward_hyperparameters,
 * policy_hyperparameters). */
static int64_t insert_job(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l,
                          const char *type, const char *key, job_refs refs, int64_t dataset) {
    char *config = json_dumps(json_object_get(l->config, key), JSON_COMPACT | JSON_PRESERVE_ORDER);
    const int64_t id = config ? insert_job_text(db, cfg, type, config, refs, dataset, l->sft) : -1;
    free(config);
    return id;
}

/* In the transaction: member e of the round's reward ensemble, warm-started
 * as refs say, with the reward hyperparameters' seed (1 by default) + e;
 * with prior_first > 0 it first scores the rankings of comparisons
 * prior_first..prior_last with its initial model (reward_config.prior_*).
 * Recorded in loop_reward_members (and, member 0, as the round's
 * reward_job_id). 0 or -1. */
static int insert_reward_job(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l,
                             job_refs refs, int e, int64_t prior_first, int64_t prior_last) {
    json_t *hp = json_deep_copy(json_object_get(l->config, "reward_hyperparameters"));
    if (hp != NULL) /* the loop's to set, not the request's */
        json_object_del(hp, "prior_first_comparison"), json_object_del(hp, "prior_last_comparison");
    const json_t *seed = hp ? json_object_get(hp, "seed") : NULL;
    const json_int_t member_seed = (json_is_integer(seed) ? json_integer_value(seed) : 1) + e;
    bool ok = hp != NULL &&
              (e == 0 || json_object_set_new(hp, "seed", json_integer(member_seed)) == 0) &&
              (prior_first == 0 ||
               (json_object_set_new(hp, "prior_first_comparison", json_integer(prior_first)) == 0 &&
                json_object_set_new(hp, "prior_last_comparison", json_integer(prior_last)) == 0));
    char *config = ok ? json_dumps(hp, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(hp);
    const int64_t job = config ? insert_job_text(db, cfg, "reward", config, refs, 0, l->sft) : -1;
    free(config);
    ok = job > 0 &&
         exec(db,
              "INSERT INTO loop_reward_members (loop_id, round, member, job_id) VALUES (?1, ?2, "
              "?3, ?4)",
              "iiii", l->id, l->round, (int64_t)e, job) == 0 &&
         (e > 0 || exec(db,
                        "UPDATE loop_rounds SET reward_job_id = ?3 WHERE loop_id = ?1 AND round "
                        "= ?2",
                        "iii", l->id, l->round, job) == 0);
    return ok ? 0 : -1;
}

/* Where job job_id of the loop's round is: 1 succeeded (with a final
 * checkpoint when need_checkpoint: *checkpoint), 0 still going, -1 failed
 * (the loop is failed with the job's error), -2 database error. */
static int loop_job_state(sqlite3 *db, const loop_state *l, int64_t job_id, bool need_checkpoint,
                          int64_t *checkpoint) {
    job_row job;
    const int found = jobs_db_get(db, job_id, &job);
    if (found < 0)
        return -2;
    if (found == 0) {
        loop_fail(db, l, "the round's job is gone");
        return -1;
    }
    int rc = 0;
    const bool succeeded = strcmp(job.status, "succeeded") == 0;
    if (succeeded && (job.final_checkpoint > 0 || !need_checkpoint)) {
        *checkpoint = job.final_checkpoint;
        rc = 1;
    } else if (succeeded || strcmp(job.status, "failed") == 0 ||
               strcmp(job.status, "cancelled") == 0) {
        char err[700];
        snprintf(err, sizeof err, "round %lld: %s job %lld %s%s%.500s", (long long)l->round,
                 job.type, (long long)job_id, succeeded ? "left no final checkpoint" : job.status,
                 job.error ? ": " : "", job.error ? job.error : "");
        loop_fail(db, l, err);
        rc = -1;
    }
    job_row_free(&job);
    return rc;
}

/* ---- the loop-sample jobs (engine/loop_sample.h) --------------------------------- */

/* The seed of a loop-sample job's draw, from the loop's seed, the round and
 * the purpose (1: the round's samples; 2: the evaluation, at round 0 so
 * every round's policy answers the same draw). */
static int64_t draw_seed(const loop_state *l, int64_t round, int64_t purpose) {
    return cfg_int(l, "seed") * 1000003 + round * 7919 + purpose * 104729;
}

/* In the transaction: a loop-sample job of checkpoint drawing k responses
 * to n prompts of the loop's dataset from row offset with seed, scored by
 * members (n_members: the first as its reward_model), made the loop's
 * pending sample job. 0 or -1. */
static int insert_sample_job(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l,
                             int64_t checkpoint, int64_t offset, int64_t n, int64_t k, int64_t seed,
                             const int64_t *members, int n_members) {
    json_t *hp = json_pack("{s:I, s:I, s:I, s:I, s:f, s:I}", "prompt_offset", (json_int_t)offset,
                           "n_prompts", (json_int_t)n, "samples_per_prompt", (json_int_t)k,
                           "max_tokens", (json_int_t)cfg_int(l, "max_tokens"), "temperature",
                           json_real_value(json_object_get(l->config, "temperature")), "seed",
                           (json_int_t)seed);
    char *config = hp ? json_dumps(hp, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(hp);
    const job_refs refs = {.model = checkpoint, .reward_model = n_members > 0 ? members[0] : 0};
    const int64_t job =
        config ? insert_job_text(db, cfg, "loop-sample", config, refs, l->prompts, l->sft) : -1;
    free(config);
    int rc = job > 0 ? 0 : -1;
    for (int e = 1; rc == 0 && e < n_members; e++)
        rc = jobs_db_add_reward_model(db, job, e, members[e]);
    if (rc == 0)
        rc = exec(db, "UPDATE loops SET sample_job_id = ?2 WHERE id = ?1", "ii", l->id, job);
    return rc;
}

/* The reward models that score a round's samples: none for `random` or
 * before any reward model (round 1 without an initial one), the current
 * one for `uncertainty` (and for `disagreement` with only one so far),
 * the latest ensemble (loop_members) for `disagreement`. How many, into
 * members. */
static int scoring_members(sqlite3 *db, const loop_state *l, int64_t *members) {
    const int rule = selection_rule_from_name(cfg_str(l, "selection"));
    const int n = loop_members(db, l, members, LOOP_MAX_MEMBERS);
    return rule == SELECTION_RANDOM ? 0 : rule == SELECTION_UNCERTAINTY || n < 2 ? (n > 0) : n;
}

/* The rule a round used, from how many reward models scored its samples. */
static selection_rule round_rule(int n_scores) {
    return n_scores == 0   ? SELECTION_RANDOM
           : n_scores == 1 ? SELECTION_UNCERTAINTY
                           : SELECTION_DISAGREEMENT;
}

/* What a loop-sample job stored (job_samples), row i answering
 * prompts[group[i]]; scores member-major ([e * n + i]; NAN: none). */
typedef struct loop_samples {
    int n, n_prompts, n_scores;
    char *texts[LOOP_MAX_PROMPTS * LOOP_MAX_K];
    char *prompts[LOOP_MAX_PROMPTS];
    int32_t group[LOOP_MAX_PROMPTS * LOOP_MAX_K];
    double scores[LOOP_MAX_MEMBERS * LOOP_MAX_PROMPTS * LOOP_MAX_K];
    double gold;
} loop_samples;

static void loop_samples_free(loop_samples *s) {
    for (int i = 0; i < s->n; i++)
        free(s->texts[i]);
    for (int i = 0; i < s->n_prompts; i++)
        free(s->prompts[i]);
    s->n = s->n_prompts = 0;
}

/* Reads job's samples into s (free with loop_samples_free): how many, or
 * -1 with err (none, or not in the shape loop-sample stores). */
static int read_samples(sqlite3 *db, int64_t job, loop_samples *s, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    memset(s, 0, sizeof *s);
    if (sqlite3_prepare_v2(db,
                           "SELECT prompt_index, prompt, response, gold, scores FROM job_samples "
                           "WHERE job_id = ?1 ORDER BY idx",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the samples of job %lld: %s", (long long)job,
                 sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, job);
    int rc, bad = 0;
    json_t *scores[LOOP_MAX_PROMPTS * LOOP_MAX_K] = {0};
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int p = sqlite3_column_int(st, 0);
        bad = s->n == LOOP_MAX_PROMPTS * LOOP_MAX_K || p < 0 || p >= LOOP_MAX_PROMPTS ||
              p > s->n_prompts;
        if (!bad && p == s->n_prompts)
            s->prompts[s->n_prompts++] = strdup((const char *)sqlite3_column_text(st, 1));
        if (bad)
            break;
        s->group[s->n] = p;
        s->gold += sqlite3_column_double(st, 3);
        scores[s->n] = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
        s->texts[s->n++] = strdup((const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    s->n_scores = s->n > 0 ? (int)json_array_size(scores[0]) : 0;
    bad |= rc != SQLITE_DONE || s->n == 0 || s->n_scores > LOOP_MAX_MEMBERS;
    for (int i = 0; i < s->n; i++) {
        bad |= s->texts[i] == NULL || (int)json_array_size(scores[i]) != s->n_scores;
        for (int e = 0; !bad && e < s->n_scores; e++) {
            const json_t *v = json_array_get(scores[i], (size_t)e);
            s->scores[e * s->n + i] = json_is_number(v) ? json_number_value(v) : NAN;
        }
        json_decref(scores[i]);
    }
    for (int i = 0; i < s->n_prompts; i++)
        bad |= s->prompts[i] == NULL;
    if (bad) {
        snprintf(err, errlen, "job %lld stored no usable samples", (long long)job);
        loop_samples_free(s);
        return -1;
    }
    s->gold /= s->n;
    return s->n;
}

/* sampling → annotating: a loop-sample job draws the round's samples in
 * the worker pool (inserted on the first tick of the phase); once it
 * succeeded, choose the pairs and post them. 1 moved, 0 not, -1 failed
 * (the loop is failed). */
static int step_sampling(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l) {
    const int64_t P = cfg_int(l, "prompts_per_round"), K = cfg_int(l, "samples_per_prompt");
    if (l->sample_job == 0) {
        int64_t members[LOOP_MAX_MEMBERS];
        const int n_members = scoring_members(db, l, members);
        const int open = begin_move(db, l);
        if (open != 1)
            return open;
        return end_move(db, insert_sample_job(db, cfg, l, l->policy, (l->round - 1) * P, P, K,
                                              draw_seed(l, l->round, 1), members, n_members) == 0);
    }
    int64_t unused;
    int rc = loop_job_state(db, l, l->sample_job, false, &unused);
    if (rc != 1)
        return rc;
    selection_pair exclude[LOOP_MAX_PROMPTS * LOOP_MAX_K * LOOP_MAX_K / 2];
    char err[600];
    int moved = -1, n_exclude = 0;
    selection_pair *chosen = NULL;
    int64_t overlap = 1, k_project = 2;
    loop_samples s;
    if (read_samples(db, l->sample_job, &s, err, sizeof err) < 0)
        goto fail;
    if (s.n != P * K || s.n_prompts != P) {
        snprintf(err, sizeof err, "job %lld stored %d samples of %d prompts; the round wants %lld",
                 (long long)l->sample_job, s.n, s.n_prompts, (long long)(P * K));
        goto fail;
    }
    if (prefs_project_settings(db, l->project, &k_project, &overlap) != 1) {
        snprintf(err, sizeof err, "the project %lld is gone", (long long)l->project);
        goto fail;
    }
    for (int i = 0; i < s.n; i++)
        for (int j = i + 1; j < s.n && s.group[j] == s.group[i]; j++)
            if (strcmp(s.texts[i], s.texts[j]) == 0) /* nothing to compare */
                exclude[n_exclude++] = (selection_pair){i, j};
    const selection_rule rule = round_rule(s.n_scores);
    const int64_t wanted = cfg_int(l, "rankings_per_round");
    const int m = (int)((wanted + overlap - 1) / overlap);
    chosen = calloc((size_t)m, sizeof *chosen);
    rng_state rng;
    rng_seed(&rng, (uint64_t)cfg_int(l, "seed"), 0x100Bu + (uint32_t)l->round);
    const selection_input in = {.n_items = s.n,
                                .group = s.group,
                                .n_members = s.n_scores,
                                .scores = s.n_scores > 0 ? s.scores : NULL,
                                .exclude = exclude,
                                .n_exclude = n_exclude,
                                .max_per_group = (m + (int)P - 1) / (int)P + 1};
    const int n_chosen =
        chosen ? selection_choose(rule, &in, m, &rng, chosen, err, sizeof err) : -1;
    if (n_chosen < 0)
        goto fail;
    moved = begin_move(db, l);
    if (moved != 1)
        goto done;
    int64_t first = 0, last = 0;
    bool ok = true;
    for (int c = 0; ok && c < n_chosen; c++) {
        const char *pair[2] = {s.texts[chosen[c].a], s.texts[chosen[c].b]};
        const int64_t from[2] = {l->policy, l->policy};
        const int64_t id =
            prefs_comparison_insert(db, l->project, s.prompts[s.group[chosen[c].a]], 2, pair, from);
        ok = id > 0;
        first = first ? first : id;
        last = id;
    }
    ok = ok &&
         exec(db,
              "INSERT INTO loop_rounds (loop_id, round, selection, policy_checkpoint_id, samples, "
              "sample_gold, comparisons, first_comparison_id, last_comparison_id, deadline_ms, "
              "created_at, sample_job_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, nullif(?8, 0), "
              "nullif(?9, 0), ?10, ?11, ?12)",
              "iisiiriiiiii", l->id, l->round, selection_rule_name(rule), l->policy, (int64_t)s.n,
              json_is_true(json_object_get(l->config, "gold")) ? s.gold : NAN, (int64_t)n_chosen,
              first, last, db_now_ms() + 1000 * cfg_int(l, "deadline_seconds"), db_now_s(),
              l->sample_job) == 0 &&
         exec(db, "UPDATE loops SET sample_job_id = NULL WHERE id = ?1", "i", l->id) == 0 &&
         move_to(db, l, l->round, "annotating") == 0;
    moved = end_move(db, ok);
    goto done;
fail:
    loop_fail(db, l, err);
    moved = -1;
done:
    free(chosen);
    loop_samples_free(&s);
    return moved;
}

/* The newest ranking of the project a reward job on it trains up to, 0 if
 * none (jobs_project_ranking_cutoff). */
static int64_t ranking_cutoff(sqlite3 *db, int64_t project) {
    int64_t cutoff = 0;
    return jobs_project_ranking_cutoff(db, project, &cutoff) == 1 ? cutoff : 0;
}

/* The project's Krippendorff alpha now; NAN when undefined. */
static double project_alpha(sqlite3 *db, int64_t project) {
    agreement a;
    agreement_init(&a);
    prefs_agreement_counts c;
    json_t *names = NULL;
    int64_t last_id;
    double alpha = NAN;
    if (prefs_agreement_read(db, project, false, &a, &c, &names, &last_id) != 0 ||
        !agreement_alpha(&a, &alpha))
        alpha = NAN;
    json_decref(names);
    agreement_free(&a);
    return alpha;
}

bool loops_plateau(const double *values, int n, int patience, double min_delta) {
    double best = -INFINITY;
    int since = 0; /* rounds since the last improvement */
    for (int i = 0; i < n; i++) {
        if (isfinite(values[i]) && values[i] > best + min_delta)
            best = values[i], since = 0;
        else
            since++;
    }
    return patience > 0 && since >= patience;
}

/* In the transaction: whether the loop's `plateau` rule says stop after
 * its rounds so far (their gold_score or proxy_score, oldest first). */
static bool plateau_reached(sqlite3 *db, const loop_state *l) {
    const json_t *rule = json_object_get(l->config, "plateau");
    if (!json_is_object(rule))
        return false;
    const bool gold = strcmp(json_string_value(json_object_get(rule, "metric")), "gold") == 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           gold ? "SELECT gold_score FROM loop_rounds WHERE loop_id = ?1 ORDER BY "
                                  "round"
                                : "SELECT proxy_score FROM loop_rounds WHERE loop_id = ?1 ORDER "
                                  "BY round",
                           -1, &st, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_int64(st, 1, l->id);
    double values[128];
    int n = 0;
    while (n < 128 && sqlite3_step(st) == SQLITE_ROW)
        values[n++] =
            sqlite3_column_type(st, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return loops_plateau(values, n, (int)json_integer_value(json_object_get(rule, "patience")),
                         json_number_value(json_object_get(rule, "min_delta")));
}

/* Finishes the round (in the transaction): the next one, or the end, with
 * why: all `rounds` ran, or the `plateau` rule. */
static int next_round(sqlite3 *db, const loop_state *l) {
    if (exec(db, "UPDATE loop_rounds SET finished_at = ?3 WHERE loop_id = ?1 AND round = ?2", "iii",
             l->id, l->round, db_now_s()) != 0)
        return -1;
    const char *reason = l->round >= cfg_int(l, "rounds") ? "rounds"
                         : plateau_reached(db, l)         ? "plateau"
                                                          : NULL;
    if (reason == NULL)
        return move_to(db, l, l->round + 1, "sampling");
    return exec(db,
                "UPDATE loops SET phase = 'done', status = 'succeeded', stop_reason = ?3, "
                "finished_at = ?2 WHERE id = ?1",
                "iis", l->id, db_now_s(), reason);
}

/* annotating → reward once the rankings are in (or the deadline passed). */
static int step_annotating(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l) {
    const int64_t first = query_int(
        db, "SELECT first_comparison_id FROM loop_rounds WHERE loop_id = ?1 AND round = ?2", l->id,
        l->round, 0);
    const int64_t last = query_int(
        db, "SELECT last_comparison_id FROM loop_rounds WHERE loop_id = ?1 AND round = ?2", l->id,
        l->round, 0);
    const int64_t deadline =
        query_int(db, "SELECT deadline_ms FROM loop_rounds WHERE loop_id = ?1 AND round = ?2",
                  l->id, l->round, 0);
    const char *count_sql = "SELECT count(*) FROM rankings WHERE comparison_id BETWEEN ?1 AND ?2 "
                            "AND skipped = 0";
    const int64_t have = query_int(db, count_sql, first, last, 0);
    /* wanted, or all the posted comparisons can give (fewer were posted
     * when the samples ran out of distinct pairs) */
    int64_t k = 2, overlap = 1;
    prefs_project_settings(db, l->project, &k, &overlap);
    const int64_t posted = last - first + 1;
    const int64_t wanted = cfg_int(l, "rankings_per_round") < posted * overlap
                               ? cfg_int(l, "rankings_per_round")
                               : posted * overlap;
    if (first > 0 && have < wanted && db_now_ms() < deadline)
        return 0;
    const double alpha = project_alpha(db, l->project);
    const int open = begin_move(db, l);
    if (open != 1)
        return open;
    /* counted again under the write lock: the stored count is the one the
     * reward job's cutoff includes */
    const int64_t rankings = first > 0 ? query_int(db, count_sql, first, last, 0) : 0;
    const int64_t cutoff = ranking_cutoff(db, l->project);
    bool ok = exec(db,
                   "UPDATE loop_rounds SET rankings = ?3, agreement = ?4 WHERE loop_id = ?1 AND "
                   "round = ?2",
                   "iiir", l->id, l->round, rankings, alpha) == 0;
    if (ok && cutoff == 0) /* nothing to train on yet: the next round */
        ok = next_round(db, l) == 0;
    else if (ok) {
        job_refs refs = {.project = l->project, .ranking_cutoff = cutoff};
        for (int e = 0; ok && e < ensemble_size(l); e++) {
            /* member e from member e of the last round that trained one */
            const int64_t last_member = query_int(
                db,
                "SELECT checkpoint_id FROM loop_reward_members WHERE loop_id = ?1 AND member = "
                "?2 AND checkpoint_id IS NOT NULL ORDER BY round DESC LIMIT 1",
                l->id, e, 0);
            refs.model = e == 0 && l->reward > 0 ? l->reward
                         : last_member > 0       ? last_member
                                                 : l->sft;
            /* a warm-started member is normalised on the SFT policy's
             * samples, as the first round's is, not on what its previous
             * reward model's language-model weights would write */
            refs.ref_model = refs.model != l->sft ? l->sft : 0;
            /* what the previous reward model would have said of the NEW
             * rankings: member 0 scores them before its first update */
            ok = insert_reward_job(db, cfg, l, refs, e, e == 0 && l->reward > 0 ? first : 0,
                                   last) == 0;
        }
        ok = ok && move_to(db, l, l->round, "reward") == 0;
    }
    return end_move(db, ok);
}

/* The job of the round's column (reward_job_id, policy_job_id): as
 * loop_job_state, with *checkpoint its final one. */
static int round_job(sqlite3 *db, const loop_state *l, const char *column, int64_t *job_id,
                     int64_t *checkpoint) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM loop_rounds WHERE loop_id = ?1 AND round = ?2",
             column);
    *job_id = query_int(db, sql, l->id, l->round, 0);
    return loop_job_state(db, l, *job_id, true, checkpoint);
}

/* The newest value of the first of names the job reported; NAN if none. */
static double last_metric(sqlite3 *db, int64_t job, const char *const *names) {
    for (; *names; names++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT value FROM metrics WHERE job_id = ?1 AND name = ?2 ORDER "
                               "BY step DESC LIMIT 1",
                               -1, &st, NULL) != SQLITE_OK)
            return NAN;
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_text(st, 2, *names, -1, SQLITE_STATIC);
        double v = NAN;
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
            v = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
        if (!isnan(v))
            return v;
    }
    return NAN;
}

/* reward → policy once the reward job succeeded. */
static int step_reward(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l) {
    /* every member of the round's ensemble succeeded (member 0 first) */
    int64_t jobs[LOOP_MAX_MEMBERS], members[LOOP_MAX_MEMBERS];
    int n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT job_id FROM loop_reward_members WHERE loop_id = ?1 AND round = "
                           "?2 ORDER BY member",
                           -1, &st, NULL) != SQLITE_OK)
        return -2;
    sqlite3_bind_int64(st, 1, l->id);
    sqlite3_bind_int64(st, 2, l->round);
    while (n < LOOP_MAX_MEMBERS && sqlite3_step(st) == SQLITE_ROW)
        jobs[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (n == 0)
        return -2;
    for (int e = 0; e < n; e++) {
        const int rc = loop_job_state(db, l, jobs[e], true, &members[e]);
        if (rc != 1)
            return rc;
    }
    const int64_t job = jobs[0], rm = members[0];
    /* the previous reward model's accuracy on the round's new rankings, as
     * the job measured it before training (none without a previous one) */
    static const char *const correct_name[] = {"prior_correct", NULL};
    static const char *const pairs_name[] = {"prior_pairs", NULL};
    const double correct = last_metric(db, job, correct_name),
                 pairs = last_metric(db, job, pairs_name);
    const int open = begin_move(db, l);
    if (open != 1)
        return open;
    const char *optimizer = cfg_str(l, "optimizer");
    job_refs refs = {.model = l->policy};
    int64_t dataset = 0;
    if (strcmp(optimizer, "dpo") == 0) {
        refs.project = l->project;
        refs.ranking_cutoff = ranking_cutoff(db, l->project);
    } else {
        /* from the last policy, KL-penalised towards the original SFT model */
        refs.reward_model = rm;
        refs.ref_model = l->policy != l->sft ? l->sft : 0;
        dataset = l->prompts;
    }
    const int64_t policy_job =
        insert_job(db, cfg, l, optimizer, "policy_hyperparameters", refs, dataset);
    bool ok = policy_job > 0 &&
              exec(db,
                   "UPDATE loop_rounds SET reward_checkpoint_id = ?3, policy_job_id = ?4, "
                   "rm_accuracy = ?5, rm_pairs = ?6 WHERE loop_id = ?1 AND round = ?2",
                   "iiiirr", l->id, l->round, rm, policy_job, pairs > 0 ? correct / pairs : NAN,
                   pairs) == 0 &&
              exec(db, "UPDATE loops SET reward_checkpoint_id = ?2 WHERE id = ?1", "ii", l->id,
                   rm) == 0 &&
              move_to(db, l, l->round, "policy") == 0;
    for (int e = 0; ok && e < n; e++)
        ok = exec(db,
                  "UPDATE loop_reward_members SET checkpoint_id = ?4 WHERE loop_id = ?1 AND "
                  "round = ?2 AND member = ?3",
                  "iiii", l->id, l->round, (int64_t)e, members[e]) == 0;
    return end_move(db, ok);
}

/* policy → the next round (or done) once the policy job succeeded; with
 * `gold`, after a loop-sample job drew the new policy's answers to the
 * first eval_prompts prompts (eval_samples each, the same draw every round)
 * for the demo task's gold score. */
static int step_policy(sqlite3 *db, const rlhfd_config *cfg, const loop_state *l) {
    int64_t job, policy = 0;
    int rc = round_job(db, l, "policy_job_id", &job, &policy);
    if (rc != 1)
        return rc;
    double gold = NAN;
    if (json_is_true(json_object_get(l->config, "gold"))) {
        if (l->sample_job == 0) {
            const int open = begin_move(db, l);
            if (open != 1)
                return open;
            /* A loop stored before eval_samples existed drew one answer a prompt. */
            const int64_t k = cfg_int(l, "eval_samples") > 0 ? cfg_int(l, "eval_samples") : 1;
            return end_move(db, insert_sample_job(db, cfg, l, policy, 0, cfg_int(l, "eval_prompts"),
                                                  k, draw_seed(l, 0, 2), NULL, 0) == 0);
        }
        int64_t unused;
        if ((rc = loop_job_state(db, l, l->sample_job, false, &unused)) != 1)
            return rc;
        loop_samples s;
        char err[600];
        if (read_samples(db, l->sample_job, &s, err, sizeof err) < 0) {
            loop_fail(db, l, err);
            return -1;
        }
        gold = s.gold;
        loop_samples_free(&s);
    }
    static const char *const proxy_names[] = {"objective/scores", "rewards/reward_model/mean",
                                              "rewards/margins", NULL};
    static const char *const kl_names[] = {"objective/kl", "kl", NULL};
    const double proxy = last_metric(db, job, proxy_names), kl = last_metric(db, job, kl_names);
    const int open = begin_move(db, l);
    if (open != 1)
        return open;
    bool ok =
        exec(db,
             "UPDATE loop_rounds SET new_policy_checkpoint_id = ?3, proxy_score = ?4, kl = "
             "?5, gold_score = ?6, eval_job_id = nullif(?7, 0) WHERE loop_id = ?1 AND "
             "round = ?2",
             "iiirrri", l->id, l->round, policy, proxy, kl, gold, l->sample_job) == 0 &&
        exec(db, "UPDATE loops SET policy_checkpoint_id = ?2, sample_job_id = NULL WHERE id = ?1",
             "ii", l->id, policy) == 0 &&
        next_round(db, l) == 0;
    return end_move(db, ok);
}

/* One move of loop id: 1 moved, 0 nothing to do, <0 failed or error. */
static int loop_step(sqlite3 *db, const rlhfd_config *cfg, int64_t id) {
    loop_state l;
    int rc = loop_read(db, id, &l);
    if (rc != 1)
        return rc == 0 ? 0 : -2;
    if (strcmp(l.phase, "sampling") == 0)
        rc = step_sampling(db, cfg, &l);
    else if (strcmp(l.phase, "annotating") == 0)
        rc = step_annotating(db, cfg, &l);
    else if (strcmp(l.phase, "reward") == 0)
        rc = step_reward(db, cfg, &l);
    else if (strcmp(l.phase, "policy") == 0)
        rc = step_policy(db, cfg, &l);
    else
        rc = 0;
    json_decref(l.config);
    return rc;
}

int loops_tick(sqlite3 *db, const rlhfd_config *cfg) {
    int64_t ids[64];
    int n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT id FROM loops WHERE status = 'running' ORDER BY id LIMIT 64",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    while (n < 64 && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    int moves = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 8; k++) { /* as far as it goes now */
            const int rc = loop_step(db, cfg, ids[i]);
            if (rc == -2)
                fprintf(stderr, "rlhfd: loop %lld: cannot advance it yet: %s\n", (long long)ids[i],
                        sqlite3_errmsg(db));
            if (rc != 1)
                break;
            moves++;
        }
    return moves;
}

loop_cancel_result loops_cancel(sqlite3 *db, int64_t id, int64_t jobs[LOOPS_MAX_ROUND_JOBS]) {
    for (int i = 0; i < LOOPS_MAX_ROUND_JOBS; i++)
        jobs[i] = 0;
    if (db_begin(db) != SQLITE_OK)
        return LOOP_CANCEL_ERROR;
    /* the pending loop-sample job, the round's reward ensemble, or its
     * policy job */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT l.status, j.id FROM loops l LEFT JOIN loop_rounds lr ON lr.loop_id = l.id "
            "AND lr.round = l.round LEFT JOIN jobs j ON j.id = l.sample_job_id OR "
            "(l.sample_job_id IS NULL AND ((l.phase = 'policy' AND j.id = lr.policy_job_id) OR "
            "(l.phase = 'reward' AND j.id IN (SELECT job_id FROM loop_reward_members m WHERE "
            "m.loop_id = l.id AND m.round = l.round)))) WHERE l.id = ?1 ORDER BY j.id",
            -1, &st, NULL) != SQLITE_OK) {
        db_rollback(db);
        return LOOP_CANCEL_ERROR;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc, n = 0;
    char status[16] = "";
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        if (n < LOOPS_MAX_ROUND_JOBS && sqlite3_column_int64(st, 1) > 0)
            jobs[n++] = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    loop_cancel_result out = rc != SQLITE_DONE ? LOOP_CANCEL_ERROR
                             : status[0]       ? LOOP_CANCEL_DONE
                                               : LOOP_CANCEL_NO_LOOP;
    if (out == LOOP_CANCEL_DONE && strcmp(status, "cancelled") == 0)
        out = LOOP_CANCEL_ALREADY;
    else if (out == LOOP_CANCEL_DONE && strcmp(status, "running") != 0)
        out = LOOP_CANCEL_ENDED;
    if (out != LOOP_CANCEL_DONE)
        for (int i = 0; i < LOOPS_MAX_ROUND_JOBS; i++)
            jobs[i] = 0;
    const bool ok =
        out != LOOP_CANCEL_DONE ||
        exec(db, "UPDATE loops SET status = 'cancelled', finished_at = ?2 WHERE id = ?1", "ii", id,
             db_now_s()) == 0;
    return out != LOOP_CANCEL_ERROR && end_move(db, ok) == 1 ? out : LOOP_CANCEL_ERROR;
}

/* ---- JSON ------------------------------------------------------------------------ */

const char loops_list_sql[] =
    "SELECT id, name, status, phase, round, config, project_id, prompts_dataset_id, "
    "sft_checkpoint_id, policy_checkpoint_id, reward_checkpoint_id, error, created_at, "
    "finished_at, stop_reason FROM loops WHERE (?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2";

static json_t *int_or_null(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL
               ? json_null()
               : json_integer(sqlite3_column_int64(st, col));
}

static json_t *real_or_null(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL ? json_null()
                                                       : json_real(sqlite3_column_double(st, col));
}

static json_t *text_or_null(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL
               ? json_null()
               : json_string((const char *)sqlite3_column_text(st, col));
}

const char loops_rounds_sql[] =
    "SELECT round, selection, policy_checkpoint_id, samples, sample_gold, comparisons, "
    "first_comparison_id, last_comparison_id, deadline_ms, rankings, rm_accuracy, rm_pairs, "
    "agreement, reward_job_id, reward_checkpoint_id, policy_job_id, new_policy_checkpoint_id, "
    "proxy_score, kl, gold_score, created_at, finished_at, "
    "(SELECT count(*) FROM rankings WHERE comparison_id BETWEEN first_comparison_id AND "
    "last_comparison_id AND skipped = 0), sample_job_id, eval_job_id, (SELECT "
    "json_group_array(json_object('member', member, 'job', job_id, 'checkpoint', "
    "checkpoint_id)) FROM (SELECT * FROM loop_reward_members m WHERE m.loop_id = "
    "loop_rounds.loop_id AND m.round = loop_rounds.round ORDER BY member)) FROM loop_rounds WHERE "
    "loop_id = ?3 AND (?1 = 0 OR "
    "round < ?1) ORDER BY round DESC LIMIT ?2";

json_t *loops_round_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db;
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("loop.round"));
    json_object_set_new(o, "id", json_integer(sqlite3_column_int64(st, 0)));
    json_object_set_new(o, "loop", json_integer(scope));
    json_object_set_new(o, "round", json_integer(sqlite3_column_int64(st, 0)));
    json_object_set_new(o, "selection", text_or_null(st, 1));
    json_object_set_new(o, "policy_checkpoint", int_or_null(st, 2));
    json_object_set_new(o, "samples", int_or_null(st, 3));
    json_object_set_new(o, "sample_gold_score", real_or_null(st, 4));
    json_object_set_new(o, "comparisons", int_or_null(st, 5));
    json_object_set_new(o, "first_comparison", int_or_null(st, 6));
    json_object_set_new(o, "last_comparison", int_or_null(st, 7));
    json_object_set_new(o, "deadline_ms", int_or_null(st, 8));
    /* until the round's annotation ends: how many so far */
    json_object_set_new(o, "rankings",
                        sqlite3_column_type(st, 9) == SQLITE_NULL
                            ? json_integer(sqlite3_column_int64(st, 22))
                            : json_integer(sqlite3_column_int64(st, 9)));
    json_object_set_new(o, "rm_accuracy", real_or_null(st, 10));
    json_object_set_new(o, "rm_pairs", int_or_null(st, 11));
    json_object_set_new(o, "agreement", real_or_null(st, 12));
    json_object_set_new(o, "reward_job", int_or_null(st, 13));
    json_object_set_new(o, "reward_checkpoint", int_or_null(st, 14));
    json_object_set_new(o, "policy_job", int_or_null(st, 15));
    json_object_set_new(o, "new_policy_checkpoint", int_or_null(st, 16));
    json_object_set_new(o, "proxy_score", real_or_null(st, 17));
    json_object_set_new(o, "kl", real_or_null(st, 18));
    json_object_set_new(o, "gold_score", real_or_null(st, 19));
    json_object_set_new(o, "created_at", int_or_null(st, 20));
    json_object_set_new(o, "finished_at", int_or_null(st, 21));
    json_object_set_new(o, "sample_job", int_or_null(st, 23));
    json_object_set_new(o, "eval_job", int_or_null(st, 24));
    const char *members = (const char *)sqlite3_column_text(st, 25);
    json_t *list = members ? json_loads(members, 0, NULL) : NULL;
    json_object_set_new(o, "reward_members", list ? list : json_array());
    return o;
}

/* Every round of loop id, oldest first (a loop has at most 100). */
static json_t *rounds_of(sqlite3 *db, int64_t id) {
    json_t *all = json_array();
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, loops_rounds_sql, -1, &st, NULL) != SQLITE_OK) {
        json_decref(all);
        return NULL;
    }
    sqlite3_bind_int64(st, 1, 0);
    sqlite3_bind_int64(st, 2, 1000);
    sqlite3_bind_int64(st, 3, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_insert_new(all, 0, loops_round_json(db, st, id));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(all);
        return NULL;
    }
    return all;
}

json_t *loops_row_json(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    const int64_t id = sqlite3_column_int64(st, 0);
    json_t *config = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
    json_t *rounds = rounds_of(db, id);
    if (config == NULL || rounds == NULL) {
        json_decref(config);
        json_decref(rounds);
        return NULL;
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "object", json_string("loop"));
    json_object_set_new(o, "name", text_or_null(st, 1));
    json_object_set_new(o, "status", text_or_null(st, 2));
    json_object_set_new(o, "phase", text_or_null(st, 3));
    json_object_set_new(o, "round", int_or_null(st, 4));
    json_object_set_new(o, "config", config);
    json_object_set_new(o, "project", int_or_null(st, 6));
    json_object_set_new(o, "prompts", int_or_null(st, 7));
    json_object_set_new(o, "model", int_or_null(st, 8));
    json_object_set_new(o, "policy_checkpoint", int_or_null(st, 9));
    json_object_set_new(o, "reward_checkpoint", int_or_null(st, 10));
    json_object_set_new(o, "error", text_or_null(st, 11));
    json_object_set_new(o, "created_at", int_or_null(st, 12));
    json_object_set_new(o, "finished_at", int_or_null(st, 13));
    json_object_set_new(o, "stop_reason", text_or_null(st, 14));
    json_object_set_new(o, "rounds", rounds);
    return o;
}

json_t *loops_get(sqlite3 *db, int64_t id, int *found) {
    static const char sql[] =
        "SELECT id, name, status, phase, round, config, project_id, prompts_dataset_id, "
        "sft_checkpoint_id, policy_checkpoint_id, reward_checkpoint_id, error, created_at, "
        "finished_at, stop_reason FROM loops WHERE id = ?1";
    return db_load_row(db, sql, id, loops_row_json, found);
}
