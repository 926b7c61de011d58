/* sink — how training code reports to whoever runs it.
 *
 * Algorithms never print, write files or touch a database: they call the
 * sink. The CLI's sink prints JSON lines; the daemon's (later) writes to
 * SQLite. Every callback may be NULL. A non-zero return from metrics, event
 * or checkpoint means the sink failed and training must stop with an error.
 */
#ifndef RLHF_SINK_H
#define RLHF_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum sink_level {
    SINK_LEVEL_INFO,
    SINK_LEVEL_WARN,
    SINK_LEVEL_ERROR,
} sink_level;

typedef struct sink_metric {
    const char *name;
    double value;
} sink_metric;

/* One sampled response of a policy-gradient update (ppo, grpo, rloo), token
 * by token: what the algorithm attributed to each response token. Arrays
 * are (n_tokens); a quantity the algorithm does not have is NULL (GRPO and
 * RLOO have no value model). */
typedef struct sink_rollout {
    int sample;           /* its row in the update's batch */
    const char *prompt;   /* decoded */
    const char *response; /* decoded, the tokens' texts joined */
    double score;         /* the response's reward before any KL term */
    int n_tokens;
    const char *const *token_text; /* each token decoded alone (may split a character) */
    const float *logprob;          /* log π(token), at the sampling temperature */
    const float *ref_logprob;      /* log π_ref(token) */
    const float *kl;               /* the KL term the algorithm used for this token */
    const float *value;            /* V(state before the token): PPO only */
    const float *reward;           /* the reward credited to this token */
    const float *advantage;        /* the advantage its log-prob was pushed by */
} sink_rollout;

/* One sampled response of a loop-sample job (loop_sample.h). */
typedef struct sink_sample {
    int prompt_index;     /* which of the job's prompts it answers */
    const char *prompt;   /* as stored */
    const char *response; /* decoded (may end in half a character) */
    double gold;          /* the demo task's gold score of it */
    const double *scores; /* (n_scores) each reward model's normalised score; NAN: untokenizable */
    int n_scores;
} sink_sample;
/* How a trainer writes one checkpoint into a stream (checkpoint_stream):
 * the bytes it would hand checkpoint(), written to out; *n_bytes gets their
 * count. 0 or -1. */
typedef int (*sink_checkpoint_writer)(void *wctx, FILE *out, size_t *n_bytes);

typedef struct train_sink {
    void *ctx;
    /* The metrics of one update, at step (the job's own step counter:
     * env steps for control PPO). */
    int (*metrics)(void *ctx, int64_t step, const sink_metric *metrics, int n);
    /* Something worth a line in the job's log. code is a short machine name
     * ("solved", "early_stop"); data are numbers that go with it. */
    int (*event)(void *ctx, sink_level level, const char *code, const char *message,
                 const sink_metric *data, int n_data);
    /* A checkpoint: a complete safetensors file in memory. */
    int (*checkpoint)(void *ctx, int64_t step, const void *bytes, size_t n_bytes);
    /* Polled between updates: true asks training to stop cleanly. */
    bool (*should_stop)(void *ctx);
    /* A sampled rollout kept for inspection (hyperparameters rollout_samples
     * and rollout_interval say how many and how often). */
    int (*rollout)(void *ctx, int64_t step, const sink_rollout *r);
    /* A job's whole output of samples, in one call (loop-sample): stored
     * all or none, replacing what an earlier attempt stored. */
    int (*samples)(void *ctx, const sink_sample *rows, int n);
    /* Optional, beside checkpoint: the sink opens where the checkpoint goes
     * and calls write(wctx, out, &n) once, so a checkpoint of gigabytes (most
     * of it a frozen base already in memory) is never built whole in memory.
     * A trainer that has a writer prefers this when it is set. */
    int (*checkpoint_stream)(void *ctx, int64_t step, sink_checkpoint_writer write, void *wctx);
} train_sink;

static inline int sink_metrics(const train_sink *sink, int64_t step, const sink_metric *m, int n) {
    return sink && sink->metrics ? sink->metrics(sink->ctx, step, m, n) : 0;
}

static inline int sink_event(const train_sink *sink, sink_level level, const char *code,
                             const char *message, const sink_metric *data, int n_data) {
    return sink && sink->event ? sink->event(sink->ctx, level, code, message, data, n_data) : 0;
}

static inline int sink_checkpoint(const train_sink *sink, int64_t step, const void *bytes,
                                  size_t n_bytes) {
    return sink && sink->checkpoint ? sink->checkpoint(sink->ctx, step, bytes, n_bytes) : 0;
}

/* The warning that n_cut of n_rows `what` ("training examples") were cut
 * at limit_name = limit ("context", 96): a "truncated" event whose data
 * are n_truncated, n_rows and limit_name. Nothing when n_cut is 0. Text
 * that is cut trains on less than it says, so it is never silent. */
static inline int sink_warn_truncated(const train_sink *sink, const char *what, int64_t n_cut,
                                      int64_t n_rows, const char *limit_name, int64_t limit) {
    if (n_cut <= 0)
        return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "%lld of %lld %s were cut at %s %lld (raise it to keep them whole)",
             (long long)n_cut, (long long)n_rows, what, limit_name, (long long)limit);
    const sink_metric data[] = {
        {"n_truncated", (double)n_cut}, {"n_rows", (double)n_rows}, {limit_name, (double)limit}};
    return sink_event(sink, SINK_LEVEL_WARN, "truncated", msg, data, 3);
}

static inline int sink_rollout_report(const train_sink *sink, int64_t step, const sink_rollout *r) {
    return sink && sink->rollout ? sink->rollout(sink->ctx, step, r) : 0;
}

static inline int sink_samples(const train_sink *sink, const sink_sample *rows, int n) {
    return sink && sink->samples ? sink->samples(sink->ctx, rows, n) : 0;
}

static inline bool sink_should_stop(const train_sink *sink) {
    return sink && sink->should_stop ? sink->should_stop(sink->ctx) : false;
}

#endif
