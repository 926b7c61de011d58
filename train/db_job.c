#include "db_job.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_store.h"
#include "checkpoint_file.h"
#include "dataset_format.h"
#include "db.h"
#include "db_sink.h"
#include "dist_job.h"
#include "jobs.h"
#include "jobs_db.h"
#include "jsonl_data.h"
#include "model.h"
#include "model_dir.h"
#include "safetensors.h"
#include "train_state.h"

static volatile sig_atomic_t stop_signal = 0;

/* A file the worker needed could not be written for want of space or an
 * I/O error (see DB_JOB_EXIT_STORAGE). */
static bool file_storage_failed = false;

static void note_file_errno(int err) {
    if (db_errno_is_storage(err))
        file_storage_failed = true;
}

static void on_stop_signal(int sig) {
    (void)sig;
    stop_signal = 1;
}

static int64_t lease_ms_from_env(void) {
    const char *s = getenv("RLHF_LEASE_MS");
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    return s && *end == '\0' && v >= 100 ? v : 30000;
}

static int64_t metrics_flush_ms_from_env(void) {
    const char *s = getenv("RLHF_METRICS_FLUSH_MS");
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    return s && *end == '\0' && v >= 0 && v <= 60000 ? v : 100;
}

/* ---- heartbeat: renews the lease every lease/4 on its own connection, and
 * commits the metrics that waited flush_ms (train/db_sink.h) ------------- */

typedef struct heartbeat {
    sqlite3 *db;
    int64_t job_id;
    const char *lease_owner;
    int64_t lease_ms, flush_ms;
    atomic_bool cancel_requested;
    atomic_bool lease_lost;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool quit;
    db_sink *sink; /* while training runs; flushed under mutex */
    pthread_t thread;
} heartbeat;

static void renew_lease(heartbeat *hb) {
    bool cancel = false;
    int owned = -1;
    if (db_begin(hb->db) == SQLITE_OK) {
        owned = jobs_db_fence(hb->db, hb->job_id, hb->lease_owner, hb->lease_ms, &cancel);
        if (owned != 1 || db_commit(hb->db) != SQLITE_OK)
            db_rollback(hb->db);
    }
    /* A failed heartbeat (database busy) is retried next tick; only a
     * lease that is demonstrably gone stops training. */
    if (owned == 0)
        atomic_store(&hb->lease_lost, true);
    if (cancel)
        atomic_store(&hb->cancel_requested, true);
}

static void *heartbeat_main(void *arg) {
    heartbeat *hb = arg;
    const int64_t renew_ms = hb->lease_ms / 4;
    const int64_t tick_ms = hb->flush_ms > 0 && hb->flush_ms < renew_ms ? hb->flush_ms : renew_ms;
    int64_t since_renewal = 0;
    pthread_mutex_lock(&hb->mutex);
    while (!hb->quit) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + tick_ms * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&hb->wake, &hb->mutex, &until);
        if (hb->quit)
            break;
        /* A flush is fenced: it renews the lease too. A failed one (busy)
         * is retried next tick; the metrics keep waiting. */
        if (hb->sink != NULL)
            db_sink_flush(hb->sink, hb->db, true);
        if ((since_renewal += tick_ms) >= renew_ms) {
            since_renewal = 0;
            pthread_mutex_unlock(&hb->mutex);
            renew_lease(hb);
            pthread_mutex_lock(&hb->mutex);
        }
    }
    pthread_mutex_unlock(&hb->mutex);
    return NULL;
}

/* ---- what the job trains on: its datasets and project ------------------------ */

/* The rows of one dataset as (prompt, response) pairs (sft; prompts with
 * response ""), or as rankings (preference: chosen ranked above rejected),
 * every string owned. */
typedef struct job_data {
    text_pair *pairs;
    int64_t n_pairs, cap_pairs;
    ranking *rankings;
    int64_t n_rankings, cap_rankings;
    int64_t n_skipped; /* project rankings that order nothing (all ties) */
} job_data;

static void job_data_free(job_data *d) {
    for (int64_t i = 0; i < d->n_pairs; i++) {
        free((char *)d->pairs[i].prompt);
        free((char *)d->pairs[i].response);
        free((char *)d->pairs[i].messages);
    }
    for (int64_t i = 0; i < d->n_rankings; i++) {
        free((char *)d->rankings[i].prompt);
        free((char *)d->rankings[i].prompt_messages);
        for (int k = 0; k < d->rankings[i].k; k++)
            free((char *)d->rankings[i].responses[k]);
    }
    free(d->pairs);
    free(d->rankings);
    memset(d, 0, sizeof *d);
}

/* The whole conversation of an OpenAI chat row as rlhfd stored it: the
 * messages before the last (prompt_messages) and the assistant's last
 * answer (response), as a JSON message list; NULL out of memory. */
static char *stored_conversation(const char *prompt_messages, const char *response) {
    json_t *conv = json_loads(prompt_messages, 0, NULL);
    char *text = NULL;
    if (json_is_array(conv) &&
        json_array_append_new(
            conv, json_pack("{s:s, s:s}", "role", "assistant", "content", response)) == 0)
        text = json_dumps(conv, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(conv);
    return text;
}

/* Adds a (prompt, response) pair; with prompt_messages (an OpenAI chat
 * row's earlier messages) also the whole conversation, which the model's
 * chat template renders and whose every assistant turn trains (sft.h). */
static int job_pairs_add(job_data *d, const char *prompt, const char *response,
                         const char *prompt_messages) {
    if (d->n_pairs == d->cap_pairs) {
        int64_t cap = d->cap_pairs ? 2 * d->cap_pairs : 256;
        text_pair *items = realloc(d->pairs, sizeof *items * (size_t)cap);
        if (items == NULL)
            return -1;
        d->pairs = items, d->cap_pairs = cap;
    }
    char *ps = strdup(prompt), *rs = strdup(response);
    char *ms = prompt_messages ? stored_conversation(prompt_messages, response) : NULL;
    if (ps == NULL || rs == NULL || (prompt_messages != NULL && ms == NULL)) {
        free(ps), free(rs), free(ms);
        return -1;
    }
    d->pairs[d->n_pairs++] = (text_pair){ps, rs, ms, 0};
    return 0;
}

/* A new empty ranking at the end of d, or NULL (out of memory). */
static ranking *job_ranking_push(job_data *d) {
    if (d->n_rankings == d->cap_rankings) {
        int64_t cap = d->cap_rankings ? 2 * d->cap_rankings : 256;
        ranking *items = realloc(d->rankings, sizeof *items * (size_t)cap);
        if (items == NULL)
            return NULL;
        d->rankings = items, d->cap_rankings = cap;
    }
    ranking *rk = &d->rankings[d->n_rankings++];
    *rk = (ranking){0};
    return rk;
}

/* A new ranking of prompt with no responses yet, or NULL (out of memory). */
static ranking *job_ranking_new(job_data *d, const char *prompt) {
    ranking *rk = job_ranking_push(d);
    if (rk != NULL && (rk->prompt = strdup(prompt)) == NULL)
        return NULL;
    return rk;
}

static const char *keep_copy(void *ctx, const char *s) {
    (void)ctx;
    return strdup(s);
}

/* A stored preference row as a ranking in d: st's columns from first are
 * dataset_rows' prompt, response, chosen, rejected, responses, ranks,
 * margin (a pair, or 009's K-wise JSON arrays; rlhfd's upload validated
 * them with common/dataset_format), prompt_messages (an OpenAI row's
 * conversation, which a model's chat template renders). 0, or -1 with why. */
static int job_ranking_from_stored(job_data *d, sqlite3_stmt *st, int first, char *why,
                                   size_t why_len) {
    enum { PROMPT, RESPONSE, CHOSEN, REJECTED, RESPONSES, RANKS, MARGIN, MESSAGES };
    const char *text[MESSAGES + 1];
    for (int i = 0; i <= MESSAGES; i++)
        text[i] = (const char *)sqlite3_column_text(st, first + i);
    const char *pair[2] = {text[CHOSEN], text[REJECTED]};
    const char *kwise[RANKING_MAX_K];
    int pair_ranks[2] = {0, 1}, kwise_ranks[RANKING_MAX_K];
    dataset_row row = {.prompt = text[PROMPT],
                       .has_margin = sqlite3_column_type(st, first + MARGIN) != SQLITE_NULL,
                       .margin = sqlite3_column_double(st, first + MARGIN),
                       .prompt_messages = (char *)text[MESSAGES]};
    json_t *responses = text[RESPONSES] ? json_loads(text[RESPONSES], 0, NULL) : NULL;
    json_t *ranks = text[RANKS] ? json_loads(text[RANKS], 0, NULL) : NULL;
    const size_t k = json_array_size(responses);
    int rc = -1;
    if (pair[0] != NULL && pair[1] != NULL) {
        row.k = 2, row.responses = pair, row.ranks = pair_ranks;
        rc = 0;
    } else if (k >= 2 && k <= RANKING_MAX_K && json_array_size(ranks) == k) {
        row.k = (int)k, row.responses = kwise, row.ranks = kwise_ranks, row.kwise = true;
        rc = 0;
        for (size_t i = 0; i < k; i++) {
            kwise[i] = json_string_value(json_array_get(responses, i));
            kwise_ranks[i] = (int)json_integer_value(json_array_get(ranks, i));
            if (kwise[i] == NULL)
                rc = -1;
        }
    }
    ranking *rk = NULL;
    if (rc != 0)
        snprintf(why, why_len, "has no chosen/rejected pair nor K-wise responses and ranks");
    else if ((rk = job_ranking_push(d)) == NULL || ranking_from_row(&row, rk, keep_copy, NULL) != 0)
        snprintf(why, why_len, "out of memory"), rc = -1;
    json_decref(responses);
    json_decref(ranks);
    return rc;
}

/* Removes the newest ranking (one that orders nothing), counting it. */
static void job_ranking_drop_last(job_data *d) {
    ranking *rk = &d->rankings[--d->n_rankings];
    free((char *)rk->prompt);
    free((char *)rk->prompt_messages);
    for (int k = 0; k < rk->k; k++)
        free((char *)rk->responses[k]);
    d->n_skipped++;
}

/* Adds a response with its rank to rk: 0, or -1 (out of memory, or more
 * than RANKING_MAX_K responses). */
static int job_ranking_add(ranking *rk, const char *response, int rank) {
    if (rk->k >= RANKING_MAX_K)
        return -1;
    char *rs = strdup(response);
    if (rs == NULL)
        return -1;
    rk->responses[rk->k] = rs;
    rk->rank[rk->k++] = rank;
    return 0;
}

/* Reads the job's dataset for purpose ("training" | "validation", as
 * POST /v1/jobs linked it in job_datasets; param is its request field) in
 * upload order into out: sft rows as pairs (an OpenAI chat row as its
 * last turn and its whole conversation), prompts rows as (prompt,
 * answer or ""), preference rows as rankings (of
 * two for TRL and OpenAI rows: the prompt is the last user message; of K
 * for K-wise rows).
 * rlhfd checked the format against the job type when the job was created;
 * it is checked again against what the type reads. A job with no dataset
 * for purpose leaves out empty. 0, or -1 with err. */
static int load_job_dataset(sqlite3 *db, int64_t job_id, const job_type *type, const char *purpose,
                            const char *param, job_data *out, char *err, size_t errlen) {
    const char *want = dataset_format_for_job(type->name); /* NULL: it reads none */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT d.id, d.format, r.line, r.prompt, r.response, r.chosen, "
            "r.rejected, r.responses, r.ranks, r.margin, r.prompt_messages FROM job_datasets j "
            "JOIN datasets d ON d.id = j.dataset_id "
            "JOIN dataset_rows r ON r.dataset_id = d.id "
            "WHERE j.job_id = ?1 AND j.purpose = ?2 ORDER BY r.line",
            -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read %s: %s", param, sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
    int rc;
    bool bad = false;
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const long long dataset = sqlite3_column_int64(st, 0);
        const char *format = (const char *)sqlite3_column_text(st, 1);
        const long long line = sqlite3_column_int64(st, 2);
        const char *prompt = (const char *)sqlite3_column_text(st, 3);
        const char *response = (const char *)sqlite3_column_text(st, 4);
        const char *messages = (const char *)sqlite3_column_text(st, 10);
        char why[128];
        bad = true;
        if (want == NULL || strcmp(format, want) != 0)
            snprintf(err, errlen, "%s: dataset %lld has format %s; %s jobs read %s datasets", param,
                     dataset, format, type->name, want ? want : "no");
        else if (type->data_kind == JOB_DATA_PAIRS && response == NULL)
            snprintf(err, errlen, "%s: dataset %lld line %lld has no response", param, dataset,
                     line);
        else if (type->data_kind == JOB_DATA_RANKINGS) {
            if (job_ranking_from_stored(out, st, 3, why, sizeof why) != 0)
                snprintf(err, errlen, "%s: dataset %lld line %lld %s", param, dataset, line, why);
            else
                bad = false;
        } else if (job_pairs_add(out, prompt, response ? response : "",
                                 strcmp(format, "sft") == 0 ? messages : NULL) != 0)
            snprintf(err, errlen, "out of memory reading %s", param);
        else
            bad = false;
    }
    if (!bad && rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot read %s: %s", param, sqlite3_errmsg(db)), bad = true;
    sqlite3_finalize(st);
    if (!bad)
        return 0;
    job_data_free(out);
    return -1;
}

/* The rankings sql selects (rk.id, prompt, candidate text, rank; ordered by
 * ranking, then candidate position; binding ?i = args[i - 1]) into out,
 * K-wise, with ties; rankings where everything ties order nothing and are
 * counted in out->n_skipped. what names the input in messages. 0, or -1
 * with err. */
static int load_rankings(sqlite3 *db, const char *sql, const int64_t *args, int n_args,
                         const char *what, job_data *out, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read %s: %s", what, sqlite3_errmsg(db));
        return -1;
    }
    for (int i = 0; i < n_args; i++)
        sqlite3_bind_int64(st, i + 1, args[i]);
    int rc;
    int64_t current = 0;
    ranking *rk = NULL;
    bool bad = false;
    char why[160];
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int64_t id = sqlite3_column_int64(st, 0);
        if (id != current) {
            if (rk != NULL && ranking_validate(rk, why, sizeof why) != 0)
                job_ranking_drop_last(out);
            current = id;
            rk = job_ranking_new(out, (const char *)sqlite3_column_text(st, 1));
        }
        const int64_t rank = sqlite3_column_int64(st, 3);
        if (rk == NULL || rank < 0 || rank >= RANKING_MAX_K ||
            job_ranking_add(rk, (const char *)sqlite3_column_text(st, 2), (int)rank) != 0) {
            snprintf(err, errlen,
                     "%s: cannot read ranking %lld (out of memory, or "
                     "more than %d candidates)",
                     what, (long long)id, RANKING_MAX_K);
            bad = true;
        }
    }
    if (!bad && rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot read %s: %s", what, sqlite3_errmsg(db)), bad = true;
    sqlite3_finalize(st);
    if (!bad && rk != NULL && ranking_validate(rk, why, sizeof why) != 0)
        job_ranking_drop_last(out);
    if (!bad)
        return 0;
    job_data_free(out);
    return -1;
}

/* The rankings of annotation project project_id up to ranking id cutoff
 * (fixed when the job was created), straight from the database. Skips and
 * the rankings of annotators an admin excluded from the project (as the
 * exclusions stand when the job reads them: rlhfd's
 * PROJECT_EXCLUDED_RANKING) are left out. 0, or -1 with err. */
static int load_project_rankings(sqlite3 *db, int64_t project_id, int64_t cutoff, job_data *out,
                                 char *err, size_t errlen) {
    const int64_t args[] = {project_id, cutoff};
    return load_rankings(db,
                         "SELECT rk.id, c.prompt, cand.text, e.rank FROM rankings rk "
                         "JOIN comparisons c ON c.id = rk.comparison_id "
                         "JOIN ranking_entries e ON e.ranking_id = rk.id "
                         "JOIN candidates cand ON cand.id = e.candidate_id "
                         "WHERE c.project_id = ?1 AND rk.id <= ?2 AND rk.skipped = 0 "
                         "AND NOT EXISTS (SELECT 1 FROM project_excluded_annotators x WHERE "
                         "x.project_id = c.project_id AND x.token_id = rk.token_id) "
                         "ORDER BY rk.id, cand.position",
                         args, 2, "training_project", out, err, errlen);
}

/* The non-skipped rankings of comparisons first..last of the job's
 * training project that a reward job's initial model scores before
 * training (reward_config.prior_*; the online loop's rm_accuracy: every
 * ranking of the round, as the loop counts them). 0, or -1 with err. */
static int load_prior_rankings(sqlite3 *db, const job_type *type, const void *cfg,
                               int64_t project_id, job_data *out, char *err, size_t errlen) {
    const hparam_def *first = hparams_find(type->hparams, "prior_first_comparison");
    const hparam_def *last = hparams_find(type->hparams, "prior_last_comparison");
    if (first == NULL || last == NULL)
        return 0;
    const int64_t a = *(const int64_t *)((const char *)cfg + first->offset);
    const int64_t b = *(const int64_t *)((const char *)cfg + last->offset);
    if (a == 0 || project_id == 0)
        return 0;
    const int64_t args[] = {project_id, a, b};
    return load_rankings(db,
                         "SELECT rk.id, c.prompt, cand.text, e.rank FROM rankings rk "
                         "JOIN comparisons c ON c.id = rk.comparison_id "
                         "JOIN ranking_entries e ON e.ranking_id = rk.id "
                         "JOIN candidates cand ON cand.id = e.candidate_id "
                         "WHERE c.project_id = ?1 AND rk.comparison_id BETWEEN ?2 AND ?3 "
                         "AND rk.skipped = 0 ORDER BY rk.id, cand.position",
                         args, 3, "prior_first_comparison", out, err, errlen);
}

/* ---- resuming: the job's last checkpoint with training state ------------------ */

/* The checkpoint a requeued job resumes from: the newest one of the job
 * with training state (sft writes one every checkpoint_interval steps and
 * when asked to stop, e.g. by rlhfd's shutdown). Returns 1 with *fd, *id
 * and *step set, 0 if there is none (the job starts over), -1 with err. */
static int find_resume_checkpoint(sqlite3 *db, const char *data_dir, int64_t job_id, int *fd,
                                  int64_t *id, int64_t *step, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, step FROM checkpoints WHERE job_id = ?1 ORDER BY id DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot list checkpoints: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, job_id);
    int found = 0;
    while (found == 0 && sqlite3_step(st) == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *step = sqlite3_column_int64(st, 1);
        int cfd = checkpoint_file_open(db, data_dir, *id, NULL, err, errlen);
        if (cfd < 0)
            note_file_errno(errno), found = -1;
        else if (checkpoint_file_has_training_state(cfd))
            *fd = cfd, found = 1;
        else
            close(cfd);
    }
    sqlite3_finalize(st);
    return found;
}

/* ---- the checkpoints a job starts from ------------------------------------------ */

/* Opens stored checkpoint id (*fd; the engine opens path = /proc/self/fd/N)
 * and checks it is a model checkpoint of either family (with a scalar head
 * when need_head: a reward model). param names the request field in errors.
 * 0, or -1 with err. */
static int checkpoint_to_file(sqlite3 *db, const char *data_dir, int64_t id, const char *param,
                              bool need_head, int *fd, char *path, size_t path_len, char *err,
                              size_t errlen) {
    char why[256];
    *fd = checkpoint_file_open(db, data_dir, id, NULL, why, sizeof why);
    if (*fd < 0) {
        note_file_errno(errno);
        snprintf(err, errlen, "%s: checkpoint %lld: %s", param, (long long)id, why);
        return -1;
    }
    snprintf(path, path_len, "/proc/self/fd/%d", *fd);
    model_shape shape;
    int rc = model_read_shape(path, 0, &shape, why, sizeof why);
    safetensors_file f;
    if (rc == 0 && need_head && (rc = safetensors_read_file(&f, path, why, sizeof why)) == 0) {
        if (safetensors_find(&f, "score.weight") == NULL) {
            snprintf(why, sizeof why, "it has no reward head (score.weight)");
            rc = -1;
        }
        safetensors_free(&f);
    }
    if (rc != 0)
        snprintf(err, errlen, "%s: checkpoint %lld is not a usable model checkpoint: %s", param,
                 (long long)id, why);
    return rc;
}

/* The directory of the registered base model a job's lineage starts from
 * (jobs.base_model_id) into dir: the init weights when the job has no
 * parent checkpoint, and the tokenizer either way. 1 found, 0 the job has
 * none, -1 with err. */
static int base_model_dir(sqlite3 *db, const char *data_dir, int64_t model_id, char *dir,
                          size_t cap, char *err, size_t errlen) {
    if (model_id <= 0)
        return 0;
    char why[256];
    int found = model_dir_path(db, data_dir, model_id, dir, cap, why, sizeof why);
    if (found != 1) {
        snprintf(err, errlen, "model: base model %lld: %s", (long long)model_id,
                 found == 0 ? "no longer registered" : why);
        return -1;
    }
    return 1;
}

/* ---- the job ------------------------------------------------------------- */

/* What the job names besides its hyperparameters. 0, or -1 with err. */
static int load_job_refs(sqlite3 *db, int64_t job_id, job_refs *refs, char *err, size_t errlen) {
    job_row row;
    if (jobs_db_get(db, job_id, &row) != 1) {
        snprintf(err, errlen, "cannot read the job: %s", sqlite3_errmsg(db));
        return -1;
    }
    *refs = row.refs;
    job_row_free(&row);
    return 0;
}

/* The most reward models a job scores with beside its reward_model. */
enum { JOB_MORE_REWARD = 4 };

typedef struct worker_ctx {
    const char *owner;
    int64_t lease_ms;
    const atomic_bool *cancel_requested;
    const char *data_dir; /* the artifact store (checkpoint_file.h) */
} worker_ctx;

/* Validates and loads what the job trains on while the job is
 * validating_files — its datasets or project rankings, the checkpoints it
 * starts from (model, reward_model), and the checkpoint to resume from if
 * an earlier attempt left one — then marks it running and runs it. An
 * input that does not check out fails the job with a message naming the
 * request field. 0, or -1 with err. */
static int run_with_inputs(sqlite3 *db, int64_t job_id, const job_type *type, void *cfg,
                           const train_sink *sink, const worker_ctx *w, char *err, size_t errlen) {
    job_data train = {0}, eval = {0}, prior = {0};
    enum { FD_MODEL, FD_REWARD, FD_RESUME, FD_REF, FD_MORE, N_FDS = FD_MORE + JOB_MORE_REWARD };
    int fds[N_FDS];
    char paths[N_FDS][64];
    const char *more_paths[JOB_MORE_REWARD];
    int64_t more[JOB_MORE_REWARD];
    int n_more = 0;
    for (int i = 0; i < N_FDS; i++)
        fds[i] = -1, paths[i][0] = '\0';
    int64_t resume_id = 0, resume_step = 0;
    job_refs refs;
    int rc = -1;
    if (load_job_refs(db, job_id, &refs, err, errlen) != 0 ||
        load_job_dataset(db, job_id, type, "training", "training_file", &train, err, errlen) != 0 ||
        load_job_dataset(db, job_id, type, "validation", "validation_file", &eval, err, errlen) !=
            0)
        goto done;
    if (refs.project > 0 &&
        load_project_rankings(db, refs.project, refs.ranking_cutoff, &train, err, errlen) != 0)
        goto done;
    if (load_prior_rankings(db, type, cfg, refs.project, &prior, err, errlen) != 0)
        goto done;
    const int64_t n_train = type->data_kind == JOB_DATA_RANKINGS ? train.n_rankings : train.n_pairs;
    if (type->needs_train_data && n_train == 0) {
        snprintf(err, errlen, "%s: %s jobs need training data; this job's has no usable rows",
                 refs.project > 0 ? "training_project" : "training_file", type->name);
        goto done;
    }
    if ((refs.model > 0 &&
         checkpoint_to_file(db, w->data_dir, refs.model, "model", false, &fds[FD_MODEL],
                            paths[FD_MODEL], sizeof paths[0], err, errlen) != 0) ||
        (refs.reward_model > 0 &&
         checkpoint_to_file(db, w->data_dir, refs.reward_model, "reward_model", true,
                            &fds[FD_REWARD], paths[FD_REWARD], sizeof paths[0], err,
                            errlen) != 0) ||
        (refs.ref_model > 0 &&
         checkpoint_to_file(db, w->data_dir, refs.ref_model, "ref_model", false, &fds[FD_REF],
                            paths[FD_REF], sizeof paths[0], err, errlen) != 0))
        goto done;
    if ((n_more = jobs_db_list_reward_models(db, job_id, more, JOB_MORE_REWARD)) < 0) {
        snprintf(err, errlen, "cannot read the job's reward models: %s", sqlite3_errmsg(db));
        goto done;
    }
    for (int i = 0; i < n_more; i++) {
        if (checkpoint_to_file(db, w->data_dir, more[i], "reward_models", true, &fds[FD_MORE + i],
                               paths[FD_MORE + i], sizeof paths[0], err, errlen) != 0)
            goto done;
        more_paths[i] = paths[FD_MORE + i];
    }
    char base_dir[4096];
    const int has_base =
        base_model_dir(db, w->data_dir, refs.base_model, base_dir, sizeof base_dir, err, errlen);
    if (has_base < 0)
        goto done;
    /* the model the job starts from: a checkpoint, else the lineage's registered model */
    const char *init_path = fds[FD_MODEL] >= 0 ? paths[FD_MODEL] : has_base ? base_dir : NULL;
    int found = find_resume_checkpoint(db, w->data_dir, job_id, &fds[FD_RESUME], &resume_id,
                                       &resume_step, err, errlen);
    if (found < 0)
        goto done;
    char message[256];
    snprintf(message, sizeof message,
             "inputs validated: %lld training %s%s, %lld validation; training", (long long)n_train,
             type->data_kind == JOB_DATA_RANKINGS ? "rankings" : "examples",
             train.n_skipped ? " (all-tie rankings left out)" : "",
             (long long)(type->data_kind == JOB_DATA_RANKINGS ? eval.n_rankings : eval.n_pairs));
    json_t *data = json_pack(
        "{s:I, s:I, s:I}", "n_train", (json_int_t)n_train, "n_validation",
        (json_int_t)(type->data_kind == JOB_DATA_RANKINGS ? eval.n_rankings : eval.n_pairs),
        "n_rankings_left_out", (json_int_t)train.n_skipped);
    /* The configuration as it runs, the init model's shape included: what
     * the job shows from now on (and what its checkpoints record). */
    char *resolved = NULL;
    int sized = job_config_from_model(type, cfg, init_path, err, errlen);
    if (sized < 0 ||
        (sized > 0 && ((resolved = train_state_config_text(type->hparams, cfg)) == NULL ||
                       jobs_db_set_config(db, job_id, w->owner, w->lease_ms, resolved) != 0))) {
        if (sized > 0)
            snprintf(err, errlen, "cannot record the resolved configuration: %s",
                     sqlite3_errmsg(db));
        free(resolved);
        json_decref(data);
        goto done;
    }
    free(resolved);
    int marked = jobs_db_mark_running(db, job_id, w->owner, w->lease_ms, message, data);
    json_decref(data);
    if (marked != 0) {
        snprintf(err, errlen, "cannot mark the job running: %s", sqlite3_errmsg(db));
        goto done;
    }
    if (found == 1) {
        snprintf(paths[FD_RESUME], sizeof paths[0], "/proc/self/fd/%d", fds[FD_RESUME]);
        snprintf(message, sizeof message, "resuming from checkpoint %lld at step %lld",
                 (long long)resume_id, (long long)resume_step);
        const sink_metric resumed[] = {{"checkpoint_id", (double)resume_id},
                                       {"step", (double)resume_step}};
        if (sink_event(sink, SINK_LEVEL_INFO, "resumed", message, resumed, 2) != 0) {
            snprintf(err, errlen, "cannot record the resume");
            goto done;
        }
    }
    /* Cancelled or stopped while validating: nothing to train. */
    if (atomic_load(w->cancel_requested) || stop_signal) {
        rc = 0;
        goto done;
    }
    const bool rankings = type->data_kind == JOB_DATA_RANKINGS;
    const job_inputs inputs = {.train = rankings ? NULL : train.pairs,
                               .n_train = rankings ? 0 : train.n_pairs,
                               .eval = !rankings && eval.n_pairs > 0 ? eval.pairs : NULL,
                               .n_eval = rankings ? 0 : eval.n_pairs,
                               .rankings = rankings ? train.rankings : NULL,
                               .n_rankings = rankings ? train.n_rankings : 0,
                               .eval_rankings =
                                   rankings && eval.n_rankings > 0 ? eval.rankings : NULL,
                               .n_eval_rankings = rankings ? eval.n_rankings : 0,
                               .init_checkpoint = init_path,
                               .tokenizer_dir = has_base ? base_dir : NULL,
                               .reward_checkpoint = fds[FD_REWARD] >= 0 ? paths[FD_REWARD] : NULL,
                               .ref_checkpoint = fds[FD_REF] >= 0 ? paths[FD_REF] : NULL,
                               .resume_checkpoint = found == 1 ? paths[FD_RESUME] : NULL,
                               .more_reward_checkpoints = more_paths,
                               .n_more_reward = n_more,
                               .prior_rankings = prior.n_rankings > 0 ? prior.rankings : NULL,
                               .n_prior_rankings = prior.n_rankings,
                               .dist = rlhf_train_dist};
    /* under mpirun the other ranks get the job, data included (dist_job.h) */
    if (dist_job_send(rlhf_train_dist, type, cfg, openblas_get_num_threads(), &inputs, err,
                      errlen) == 0)
        rc = type->run(cfg, &inputs, sink, err, errlen);
done:
    for (int i = 0; i < N_FDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    job_data_free(&train);
    job_data_free(&eval);
    job_data_free(&prior);
    return rc;
}

int rlhf_train_run_db_job(const char *db_path, int64_t job_id) {
    char err[512] = "";
    sqlite3 *db = NULL, *hb_db = NULL;
    if (db_open(db_path, &db, err, sizeof err) != 0 || db_migrate(db, err, sizeof err) != 0 ||
        db_open(db_path, &hb_db, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train: %s\n", err);
        const bool storage = db != NULL && db_failure_is_storage(db_failure_of(db));
        sqlite3_close(db);
        return storage ? DB_JOB_EXIT_STORAGE : DB_JOB_EXIT_USAGE;
    }
    /* The owner names this process uniquely, even across pid reuse, and
     * lets a restarted rlhfd tell whether it still runs. */
    char owner[JOBS_DB_OWNER_BYTES];
    jobs_db_owner_name(owner);
    const int64_t lease_ms = lease_ms_from_env();
    char data_dir[4096];
    checkpoint_file_data_dir(db_path, data_dir, sizeof data_dir);
    if (artifact_store_init(data_dir, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train: %s\n", err);
        sqlite3_close(hb_db);
        sqlite3_close(db);
        return DB_JOB_EXIT_USAGE;
    }

    /* under mpirun rlhfd's child is mpirun, rank 0's parent */
    const int64_t worker_pid = dist_size(rlhf_train_dist) > 1 ? getppid() : getpid();
    job_row job;
    int claimed = jobs_db_claim(db, job_id, owner, lease_ms, worker_pid, &job, err, sizeof err);
    if (claimed != 1) {
        if (claimed == 0)
            fprintf(stderr, "rlhf-train: job %lld is not queued; nothing to run\n",
                    (long long)job_id);
        else
            fprintf(stderr, "rlhf-train: job %lld: %s\n", (long long)job_id, err);
        const bool storage = claimed < 0 && db_failure_is_storage(db_failure_of(db));
        sqlite3_close(hb_db);
        sqlite3_close(db);
        return claimed == 0 ? DB_JOB_EXIT_NOT_CLAIMED
               : storage    ? DB_JOB_EXIT_STORAGE
                            : DB_JOB_EXIT_USAGE;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL); /* what mpirun forwards (server/worker_launch.h) */

    heartbeat hb = {.db = hb_db,
                    .job_id = job_id,
                    .lease_owner = owner,
                    .lease_ms = lease_ms,
                    .flush_ms = metrics_flush_ms_from_env()};
    atomic_init(&hb.cancel_requested, false);
    atomic_init(&hb.lease_lost, false);
    pthread_mutex_init(&hb.mutex, NULL);
    pthread_cond_init(&hb.wake, NULL);
    int hb_started = pthread_create(&hb.thread, NULL, heartbeat_main, &hb) == 0;

    /* The config was validated when the job was created; validate again,
     * because the engine's tables may have changed since. */
    const job_type *type = job_type_find(job.type);
    void *cfg = type ? calloc(1, type->hparams->config_bytes) : NULL;
    json_error_t jerr;
    json_t *config = json_loads(job.config, 0, &jerr);
    int rc = -1;
    bool storage = false; /* rc != 0 because something could not be written */
    if (type == NULL)
        snprintf(err, sizeof err, "unknown job type '%s'", job.type);
    else if (cfg == NULL || config == NULL)
        snprintf(err, sizeof err, "cannot load the job's configuration: %s",
                 config ? "out of memory" : jerr.text);
    else if (job_config_from_json(type, cfg, config, err, sizeof err) == 0) {
        db_sink ds = {.db = db,
                      .job_id = job_id,
                      .lease_owner = owner,
                      .lease_ms = lease_ms,
                      .cancel_requested = &hb.cancel_requested,
                      .lease_lost = &hb.lease_lost,
                      .stop_signal = &stop_signal,
                      .flush_ms = hb.flush_ms,
                      .data_dir = data_dir};
        train_sink sink = db_sink_make(&ds);
        pthread_mutex_lock(&hb.mutex);
        hb.sink = &ds;
        pthread_mutex_unlock(&hb.mutex);
        const worker_ctx w = {owner, lease_ms, &hb.cancel_requested, ds.data_dir};
        rc = run_with_inputs(db, job_id, type, cfg, &sink, &w, err, sizeof err);
        pthread_mutex_lock(&hb.mutex);
        hb.sink = NULL;
        pthread_mutex_unlock(&hb.mutex);
        /* The last updates' metrics, whatever the outcome. */
        if (db_sink_flush(&ds, db, false) != 0 && rc == 0) {
            snprintf(err, sizeof err, "cannot write the last metrics: %s", sqlite3_errmsg(db));
            rc = -1;
        }
        pthread_mutex_lock(&ds.mutex);
        storage = rc != 0 && (ds.storage_failed || file_storage_failed ||
                              db_failure_is_storage(db_failure_of(db)));
        pthread_mutex_unlock(&ds.mutex);
        db_sink_free(&ds);
    }
    json_decref(config);
    free(cfg);
    job_row_free(&job);

    if (hb_started) {
        pthread_mutex_lock(&hb.mutex);
        hb.quit = true;
        pthread_cond_signal(&hb.wake);
        pthread_mutex_unlock(&hb.mutex);
        pthread_join(hb.thread, NULL);
    }
    pthread_mutex_destroy(&hb.mutex);
    pthread_cond_destroy(&hb.wake);

    int exit_code;
    if (atomic_load(&hb.lease_lost)) {
        fprintf(stderr, "rlhf-train: job %lld: lease lost; another worker owns the job now\n",
                (long long)job_id);
        exit_code = DB_JOB_EXIT_LEASE_LOST;
    } else {
        /* A cancel may have been requested after the last heartbeat; the
         * fence in jobs_db_finish cannot see it, so ask once more. */
        bool cancel = atomic_load(&hb.cancel_requested);
        if (!cancel && db_begin(db) == SQLITE_OK) {
            jobs_db_fence(db, job_id, owner, lease_ms, &cancel);
            db_commit(db);
        }
        /* Could not write: not the job's fault, so it goes back to the
         * queue with its attempt (unless it was being cancelled). */
        job_outcome outcome = rc != 0 && storage
                                  ? (cancel ? JOB_OUTCOME_CANCELLED : JOB_OUTCOME_STORAGE)
                              : rc != 0     ? JOB_OUTCOME_FAILED
                              : cancel      ? JOB_OUTCOME_CANCELLED
                              : stop_signal ? JOB_OUTCOME_REQUEUED
                                            : JOB_OUTCOME_SUCCEEDED;
        if (jobs_db_finish(db, job_id, owner, outcome, rc != 0 ? err : NULL) != 0) {
            /* A full disk may refuse even this last write: rlhfd records
             * the storage exit for us (JOB_LOST_STORAGE). */
            const bool no_room = storage || db_failure_is_storage(db_failure_of(db));
            fprintf(stderr, "rlhf-train: job %lld: cannot record the outcome: %s\n",
                    (long long)job_id, sqlite3_errmsg(db));
            exit_code = no_room ? DB_JOB_EXIT_STORAGE : DB_JOB_EXIT_LEASE_LOST;
        } else {
            if (rc != 0)
                fprintf(stderr, "rlhf-train: job %lld %s: %s\n", (long long)job_id,
                        storage ? "could not write" : "failed", err);
            exit_code = storage   ? DB_JOB_EXIT_STORAGE
                        : rc != 0 ? DB_JOB_EXIT_FAILED
                                  : DB_JOB_EXIT_DONE;
        }
    }
    sqlite3_close(hb_db);
    sqlite3_close(db);
    return exit_code;
}

int rlhf_train_db_main(int argc, char **argv) {
    char *end = NULL;
    long long id = argc == 5 && strcmp(argv[3], "--job") == 0 ? strtoll(argv[4], &end, 10) : 0;
    if (argc != 5 || strcmp(argv[1], "--db") != 0 || end == NULL || *end != '\0' || id <= 0) {
        fprintf(stderr, "usage: rlhf-train --db FILE --job ID   (ID a positive integer)\n");
        return DB_JOB_EXIT_USAGE;
    }
    return rlhf_train_run_db_job(argv[2], (int64_t)id);
}
