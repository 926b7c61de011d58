/* selection-study — do comparisons chosen by uncertainty teach the reward
 * model more per ranking than random ones? (issue 17)
 *
 * On the demo task with the simulated annotator, per seed and per rule of
 * --rules (random, uncertainty, disagreement from engine/selection.h, and
 * the study-only mixed):
 *   - the same SFT policy (bench/demo_pipeline.c) samples a pool of
 *     --pool prompts x 4 responses, and a held-out set of --heldout prompts
 *     x 4 responses whose every pair with different gold scores is a test
 *     comparison;
 *   - the same --initial random pairs are labelled by the annotator
 *     (Bradley-Terry on the gold score, temperature --noise);
 *   - --rounds times: reward model(s) trained for --epochs epochs on all
 *     labels so far (one model; three seeds for disagreement), their
 *     accuracy on the held-out pairs against the gold order (with
 *     --bootstrap, disagreement's other members learn from resamples of
 *     the labels), then --batch new pairs chosen from the pool by the rule
 *     (at most 2 per prompt, no pair twice) and labelled. Each round's
 *     models start from the SFT weights (retrained from scratch), or with
 *     --warm-start each member continues from its own model of the round
 *     before (as the daemon's online loop, server/loops.h: the previous
 *     checkpoint is the reward job's init_checkpoint). Warm-started, each
 *     member is then re-normalised so the pool's SFT samples score mean 0,
 *     sd 1: the reward job normalises on samples of its initial model,
 *     which from round 2 on is the previous reward model, not the SFT
 *     policy (left alone, the final models' scores of SFT samples drift
 *     off mean 0, sd 1, and PPO's reward scale with them: bench/RESULTS.md);
 *   - mixed: half the batch (rounded up) by uncertainty, the rest random,
 *     the per-prompt cap over the whole batch;
 *   - the last reward model (member 0) drives PPO from the SFT policy (the
 *     bench's PPO settings, the seed's PPO seed for every rule), and the
 *     policy's mean gold score is measured (--no-ppo skips it).
 * Every rule sees the same number of rankings. Prints one line per seed and
 * rule (accuracy after each round; the final model's mean and sd on the
 * held-out SFT samples, which its normalisation should make 0 and 1), then a
 * summary: per rule the mean±sd of the final held-out accuracy, the gain
 * over random PAIRED by seed (mean±sd, a 95% t interval, the seeds where the
 * rule beat random) and the same for the PPO gold score, and how many round
 * models fell to ≤ 0.60 accuracy. Minutes per seed.
 *
 *   build/selection-study --seeds 1,2,3
 *   build/selection-study --seeds 1-5 --rules random,uncertainty,mixed,disagreement \
 *       --bootstrap --warm-start --noise 0.5
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_pipeline.h"
#include "demo_task.h"
#include "model.h"
#include "reward.h"
#include "selection.h"

enum { K = 4, MAX_MEMBERS = 3, MAX_ROUNDS = 8, MAX_SEEDS = 16 };

/* The study's rules: engine/selection.h's (same values) and mixed. */
typedef enum study_rule {
    RULE_RANDOM = SELECTION_RANDOM,
    RULE_UNCERTAINTY = SELECTION_UNCERTAINTY,
    RULE_DISAGREEMENT = SELECTION_DISAGREEMENT,
    RULE_MIXED,
    N_RULES
} study_rule;

static const char *const rule_names[N_RULES] = {"random", "uncertainty", "disagreement", "mixed"};

typedef struct item {
    char prompt[128];
    char text[DEMO_TASK_RESPONSE_BYTES];
    double gold;
} item;

typedef struct study_args {
    int seeds[MAX_SEEDS], n_seeds;
    study_rule rules[N_RULES];
    int n_rules;
    int pool, heldout, initial, batch, rounds, epochs;
    double noise;
    bool ppo, bootstrap, warm_start;
} study_args;

/* n prompts x K samples of the policy at path, prompts from stream. */
static item *sample_items(const char *path, const tokenizer *tok, int n, uint64_t seed,
                          uint64_t stream, int32_t *group) {
    model m;
    char err[256];
    if (model_load(path, NULL, &m, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    item *it = calloc((size_t)n * K, sizeof *it);
    rng_state prompts, sampling;
    rng_seed(&prompts, seed, stream);
    rng_seed(&sampling, seed, stream + 1);
    for (int p = 0; p < n; p++) {
        char prompt[128], unused[256];
        demo_task_example(&prompts, prompt, sizeof prompt, unused, sizeof unused);
        for (int j = 0; j < K; j++) {
            item *x = &it[p * K + j];
            snprintf(x->prompt, sizeof x->prompt, "%s", prompt);
            x->gold = demo_task_sample(&m, tok, prompt, 1.0f, &sampling, x->text, sizeof x->text);
            if (group != NULL)
                group[p * K + j] = p;
        }
    }
    model_free(&m);
    return it;
}

/* The reward model at path's normalised score of every item. */
static void score_items(const char *path, const tokenizer *tok, const item *it, int n,
                        double *out) {
    gpt2_model rm;
    model_info info;
    const model_open_options opt = {.scalar_head = true, .require_head = true};
    char err[256];
    if (model_open(path, &opt, &rm, &info, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    const int cap = rm.cfg.max_seq_len;
    int32_t *row = malloc(sizeof(int32_t) * (size_t)cap);
    for (int i = 0; i < n; i++) {
        int64_t T =
            tokenizer_encode(tok, it[i].prompt, strlen(it[i].prompt), row, (size_t)cap, false);
        T += tokenizer_encode(tok, it[i].text, strlen(it[i].text), row + T, (size_t)(cap - T),
                              false);
        if (T >= cap)
            T = cap - 1;
        row[T++] = tok->eot_id;
        if (gpt2_reserve(&rm, 1, (int)T, err, sizeof err) != 0) {
            fprintf(stderr, "reserve: %s\n", err);
            exit(1);
        }
        const gpt2_batch b = {row, NULL, NULL, 1, (int)T};
        gpt2_forward(&rm, &b, false);
        out[i] = info.reward_gain * rm.acts.values[T - 1] + info.reward_bias;
    }
    free(row);
    gpt2_free(&rm);
}

/* Trains a reward model from the checkpoint at init (the SFT weights, or
 * with --warm-start the member's previous reward model) on the labelled
 * pairs for epochs epochs; its checkpoint lands in k. */
static void train_rm(const demo_pipeline *p, const item *pool, const selection_pair *pairs,
                     const int *winner_first, int n, int seed, int epochs, const char *init,
                     keep *k, const char *name) {
    ranking *rk = calloc((size_t)n, sizeof *rk);
    for (int i = 0; i < n; i++) {
        const item *a = &pool[pairs[i].a], *b = &pool[pairs[i].b];
        rk[i] = (ranking){.prompt = a->prompt, .k = 2, .responses = {a->text, b->text}};
        rk[i].rank[0] = winner_first[i] ? 0 : 1;
        rk[i].rank[1] = winner_first[i] ? 1 : 0;
    }
    reward_config rc;
    hparams_set_defaults(&reward_hparams, &rc);
    rc.seed = seed, rc.epochs = epochs, rc.learning_rate = 1e-3, rc.eval_interval = 0;
    rc.eval_fraction = 0;
    train_sink sink = keep_sink(k, name);
    const reward_inputs ri = {.train = rk, .n_train = n, .tok = &p->tok, .init_checkpoint = init};
    reward_result res;
    char err[512];
    if (reward_train(&rc, &ri, &sink, &res, err, sizeof err) != 0) {
        fprintf(stderr, "reward: %s\n", err);
        exit(1);
    }
    free(rk);
}

/* The annotator: Bradley-Terry on the gold scores at temperature noise. */
static int annotate(const item *a, const item *b, double noise, rng_state *rng) {
    const double p = 1.0 / (1.0 + exp(-(a->gold - b->gold) / noise));
    return rng_next_double(rng) < p;
}

/* Share of held-out pairs (different gold) the scores order as gold does. */
static double heldout_accuracy(const item *h, int n, const double *s) {
    int right = 0, total = 0;
    for (int p = 0; p < n / K; p++)
        for (int i = 0; i < K; i++)
            for (int j = i + 1; j < K; j++) {
                const item *a = &h[p * K + i], *b = &h[p * K + j];
                if (isnan(a->gold) || isnan(b->gold) || a->gold == b->gold)
                    continue;
                total++;
                right += (a->gold > b->gold) == (s[p * K + i] > s[p * K + j]);
            }
    return total ? (double)right / total : NAN;
}

typedef struct rule_result {
    double acc[MAX_ROUNDS + 1]; /* held-out accuracy after each training */
    double held_mean, held_sd;  /* the final model's scores of the held-out items */
    double gold;                /* PPO policy's mean gold score (NAN without PPO) */
    double kl;
} rule_result;

/* mixed: m - m/2 pairs by uncertainty, then random ones, at most
 * in->max_per_group per prompt over the whole batch. in->exclude must end
 * where out begins (the pairs so far, then this batch), so the random half
 * never repeats a pair the uncertainty half took. */
static int choose_mixed(const selection_input *in, int m, rng_state *rng, selection_pair *out,
                        char *err, size_t errlen) {
    const int first = selection_choose(SELECTION_UNCERTAINTY, in, m - m / 2, rng, out, err, errlen);
    if (first < 0)
        return -1;
    selection_input rest = *in;
    rest.n_exclude = in->n_exclude + first;
    rest.max_per_group = 0; /* the cap is applied below, counting the first half */
    const int cap = in->n_items * (K - 1) / 2 + 1; /* every same-prompt pair */
    selection_pair *shuffled = malloc(sizeof *shuffled * (size_t)cap);
    int *taken = calloc((size_t)in->n_items, sizeof(int)); /* per group (< n_items) */
    if (shuffled == NULL || taken == NULL) {
        free(shuffled), free(taken);
        snprintf(err, errlen, "mixed: out of memory");
        return -1;
    }
    const int n = selection_choose(SELECTION_RANDOM, &rest, cap, rng, shuffled, err, errlen);
    for (int i = 0; i < first; i++)
        taken[in->group[out[i].a]]++;
    int got = first;
    for (int i = 0; i < n && got < m; i++) {
        const int g = in->group[shuffled[i].a];
        if (in->max_per_group > 0 && taken[g] >= in->max_per_group)
            continue;
        taken[g]++;
        out[got++] = shuffled[i];
    }
    free(shuffled), free(taken);
    return n < 0 ? -1 : got;
}

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : NAN;
}

/* --warm-start: a reward job normalises its model on samples of its
 * INITIAL model (reward.h), which after the first round is the previous
 * reward model, not the SFT policy. So the checkpoint at path is
 * re-normalised here: the pool's SFT samples, which it scores s (n) under
 * its stored gain and bias, get mean 0 and sd 1 (as the job's own
 * normalisation, population sd); s is updated to the new scores. */
static void renormalise(const char *path, double *s, int n) {
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += s[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (s[i] - mean) * (s[i] - mean);
    const double sd = sqrt(fmax(var / n, 1e-12));
    model m;
    model_info info;
    const model_open_options opt = {.scalar_head = true, .require_head = true};
    char err[256];
    if (model_load(path, &opt, &m, &info, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    char gain[32], bias[32], tmp[80];
    snprintf(gain, sizeof gain, "%.9g", info.reward_gain / sd);
    snprintf(bias, sizeof bias, "%.9g", (info.reward_bias - mean) / sd);
    const char *const meta[][2] = {
        {"rlhfd_job", "reward"}, {"reward_gain", gain}, {"reward_bias", bias}};
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    size_t bytes;
    if (f == NULL || model_write_checkpoint(&m, meta, 3, NULL, 0, f, &bytes) != 0 ||
        fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "%s: cannot rewrite the normalisation\n", path);
        exit(1);
    }
    model_free(&m);
    for (int i = 0; i < n; i++)
        s[i] = (s[i] - mean) / sd;
}

static void run_rule(const demo_pipeline *p, const study_args *a, int seed, study_rule rule,
                     const item *pool, const int32_t *group, const item *held,
                     const selection_pair *initial, const int *initial_win, rule_result *out) {
    const int n_pool = a->pool * K, n_held = a->heldout * K;
    const int total = a->initial + a->rounds * a->batch;
    selection_pair *pairs = malloc(sizeof *pairs * (size_t)total);
    int *win = malloc(sizeof(int) * (size_t)total);
    memcpy(pairs, initial, sizeof *pairs * (size_t)a->initial);
    memcpy(win, initial_win, sizeof(int) * (size_t)a->initial);
    int n = a->initial;
    const int members = rule == RULE_DISAGREEMENT ? MAX_MEMBERS : 1;
    double *scores = malloc(sizeof(double) * (size_t)members * (size_t)n_pool);
    double *held_scores = malloc(sizeof(double) * (size_t)n_held);
    rng_state choose_rng, label_rng;
    rng_seed(&choose_rng, (uint64_t)seed, 0x5E1EC7u);
    rng_seed(&label_rng, (uint64_t)seed, 0x1ABE1u);
    /* each member's checkpoint by round parity: with --warm-start round r
     * trains from round r - 1's file into the other one */
    keep rms[2][MAX_MEMBERS];
    /* --bootstrap: members after the first learn from a resample (with
     * replacement) of the labels, so their spread measures what the labels
     * leave open (epistemic), not only the training seed's noise. */
    selection_pair *boot = malloc(sizeof *boot * (size_t)total);
    int *boot_win = malloc(sizeof(int) * (size_t)total);
    rng_state boot_rng;
    rng_seed(&boot_rng, (uint64_t)seed, 0xB0075u);
    keep *cur = rms[0];
    for (int round = 0;; round++) {
        cur = rms[round & 1];
        keep *prev = rms[(round + 1) & 1];
        for (int e = 0; e < members; e++) {
            char name[32];
            snprintf(name, sizeof name, "sel-rm%d%c", e, 'a' + (round & 1));
            const char *init = a->warm_start && round > 0 ? prev[e].path : p->sft.path;
            if (a->bootstrap && e > 0) {
                for (int i = 0; i < n; i++) {
                    const int j = (int)(rng_next_double(&boot_rng) * n);
                    boot[i] = pairs[j], boot_win[i] = win[j];
                }
                train_rm(p, pool, boot, boot_win, n, 1000 * seed + e, a->epochs, init, &cur[e],
                         name);
            } else
                train_rm(p, pool, pairs, win, n, 1000 * seed + e, a->epochs, init, &cur[e], name);
            if (round > 0)
                remove(prev[e].path);
            double *own = scores + (int64_t)e * n_pool;
            if (a->warm_start) {
                score_items(cur[e].path, &p->tok, pool, n_pool, own);
                renormalise(cur[e].path, own, n_pool);
            } else if (rule != RULE_RANDOM && round < a->rounds)
                score_items(cur[e].path, &p->tok, pool, n_pool, own);
        }
        score_items(cur[0].path, &p->tok, held, n_held, held_scores);
        out->acc[round] = heldout_accuracy(held, n_held, held_scores);
        if (round == a->rounds)
            break;
        const selection_input in = {n_pool, group, members, scores, pairs, n, 2};
        char err[256];
        const int got = rule == RULE_MIXED
                            ? choose_mixed(&in, a->batch, &choose_rng, pairs + n, err, sizeof err)
                            : selection_choose((selection_rule)rule, &in, a->batch, &choose_rng,
                                               pairs + n, err, sizeof err);
        if (got != a->batch) {
            fprintf(stderr, "selection: %s (got %d of %d)\n", got < 0 ? err : "too few pairs", got,
                    a->batch);
            exit(1);
        }
        for (int i = n; i < n + got; i++)
            win[i] = annotate(&pool[pairs[i].a], &pool[pairs[i].b], a->noise, &label_rng);
        n += got;
    }
    mean_sd(held_scores, n_held, &out->held_mean, &out->held_sd);
    out->gold = out->kl = NAN;
    if (a->ppo) {
        demo_pipeline q = *p;
        snprintf(q.rm.path, sizeof q.rm.path, "%s", cur[0].path);
        ppo_lm_config pc;
        demo_pipeline_ppo_config(&pc, seed);
        keep ppo;
        demo_ppo_run run;
        if (demo_pipeline_ppo(&q, &pc, &ppo, &run) != 0)
            exit(1);
        out->gold = run.gold, out->kl = run.res.last_kl;
        remove(ppo.path);
    }
    for (int e = 0; e < members; e++)
        remove(cur[e].path);
    free(pairs), free(win), free(scores), free(held_scores), free(boot), free(boot_win);
}

static void usage_exit(int code) {
    fprintf(stderr,
            "usage: selection-study [--seeds 1,2,3 | 1-5] "
            "[--rules random,uncertainty,disagreement[,mixed]] [--pool 400] [--heldout 150] "
            "[--initial 100] [--batch 100] [--rounds 4] [--epochs 3] [--noise 0.5] "
            "[--warm-start] [--bootstrap] [--no-ppo]\n");
    exit(code);
}

/* "1,2,3" or "1-5" or a mix ("1-3,7"). */
static void parse_seeds(const char *v, study_args *a) {
    a->n_seeds = 0;
    for (const char *s = v; *s; s += *s == ',') {
        char *end;
        const long lo = strtol(s, &end, 10);
        long hi = lo;
        if (end == s)
            usage_exit(2);
        if (*end == '-') {
            const char *h = end + 1;
            hi = strtol(h, &end, 10);
            if (end == h || hi < lo)
                usage_exit(2);
        }
        for (long x = lo; x <= hi; x++) {
            if (a->n_seeds == MAX_SEEDS) {
                fprintf(stderr, "selection-study: at most %d seeds\n", MAX_SEEDS);
                exit(2);
            }
            a->seeds[a->n_seeds++] = (int)x;
        }
        s = end;
        if (*s != ',' && *s != '\0')
            usage_exit(2);
    }
}

static void parse_rules(const char *v, study_args *a) {
    a->n_rules = 0;
    for (const char *s = v; *s; s += *s == ',') {
        const size_t len = strcspn(s, ",");
        int found = -1;
        for (int r = 0; r < N_RULES; r++)
            if (strlen(rule_names[r]) == len && strncmp(s, rule_names[r], len) == 0)
                found = r;
        for (int i = 0; i < a->n_rules; i++)
            if ((int)a->rules[i] == found)
                found = -1; /* twice */
        if (found < 0) {
            fprintf(stderr, "selection-study: --rules: unknown or repeated rule '%.*s'\n", (int)len,
                    s);
            exit(2);
        }
        a->rules[a->n_rules++] = (study_rule)found;
        s += len;
    }
    if (a->n_rules == 0)
        usage_exit(2);
}

static void parse_args(int argc, char **argv, study_args *a) {
    *a = (study_args){.seeds = {1, 2, 3},
                      .n_seeds = 3,
                      .rules = {RULE_RANDOM, RULE_UNCERTAINTY, RULE_DISAGREEMENT},
                      .n_rules = 3,
                      .pool = 400,
                      .heldout = 150,
                      .initial = 100,
                      .batch = 100,
                      .rounds = 4,
                      .epochs = 3,
                      .noise = 0.5,
                      .ppo = true};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--seeds") == 0)
            parse_seeds(v, a), i++;
        else if (strcmp(argv[i], "--rules") == 0)
            parse_rules(v, a), i++;
        else if (strcmp(argv[i], "--pool") == 0)
            a->pool = atoi(v), i++;
        else if (strcmp(argv[i], "--heldout") == 0)
            a->heldout = atoi(v), i++;
        else if (strcmp(argv[i], "--initial") == 0)
            a->initial = atoi(v), i++;
        else if (strcmp(argv[i], "--batch") == 0)
            a->batch = atoi(v), i++;
        else if (strcmp(argv[i], "--rounds") == 0)
            a->rounds = atoi(v), i++;
        else if (strcmp(argv[i], "--epochs") == 0)
            a->epochs = atoi(v), i++;
        else if (strcmp(argv[i], "--noise") == 0)
            a->noise = atof(v), i++;
        else if (strcmp(argv[i], "--no-ppo") == 0)
            a->ppo = false;
        else if (strcmp(argv[i], "--bootstrap") == 0)
            a->bootstrap = true;
        else if (strcmp(argv[i], "--warm-start") == 0)
            a->warm_start = true;
        else
            usage_exit(strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? 0 : 2);
    }
    if (a->rounds < 1 || a->rounds > MAX_ROUNDS || a->pool < 10 || a->heldout < 10 ||
        a->initial < 2 || a->batch < 1 || a->epochs < 1 || a->n_seeds < 1 || !(a->noise > 0)) {
        fprintf(stderr, "selection-study: a setting is out of range\n");
        exit(2);
    }
}

/* The 97.5% quantile of Student's t with df degrees of freedom: a table to
 * 30, then the Cornish-Fisher expansion about z = 1.96 (within 0.001). */
static double t975(int df) {
    static const double t[] = {NAN,   12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365,
                               2.306, 2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                               2.120, 2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069,
                               2.064, 2.060,  2.056, 2.052, 2.048, 2.045, 2.042};
    if (df < 1)
        return NAN;
    if (df <= 30)
        return t[df];
    const double z = 1.959964, z3 = z * z * z, z5 = z3 * z * z, v = df;
    return z + (z3 + z) / (4 * v) + (5 * z5 + 16 * z3 + 3 * z) / (96 * v * v);
}

/* "mean±sd (min-max)" of x over n seeds. */
static void print_level(const double *x, int n) {
    double mean, sd, lo = INFINITY, hi = -INFINITY;
    mean_sd(x, n, &mean, &sd);
    for (int i = 0; i < n; i++)
        lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
    printf(" %.3f±%.3f (%.3f-%.3f) |", mean, sd, lo, hi);
}

/* The paired gain d over n seeds: "mean±sd | lo..hi | better/n". */
static void print_gain(const double *d, int n) {
    double mean, sd;
    mean_sd(d, n, &mean, &sd);
    const double half = n > 1 ? t975(n - 1) * sd / sqrt(n) : NAN;
    int better = 0;
    for (int i = 0; i < n; i++)
        better += d[i] > 0;
    printf(" %+.3f±%.3f | %+.3f..%+.3f | %d/%d |", mean, sd, mean - half, mean + half, better, n);
}

int main(int argc, char **argv) {
    study_args a;
    parse_args(argc, argv, &a);
    demo_pipeline p;
    if (demo_pipeline_build(&p) != 0)
        return 1;
    const double t0 = now_s();
    static rule_result res[MAX_SEEDS][N_RULES];
    printf("selection study: pool %d prompts x %d, held-out %d prompts, %d initial random pairs "
           "+ %d rounds x %d chosen, annotator noise %.2f, %d reward epochs a round, %s%s; "
           "SFT gold %.3f\nrules:",
           a.pool, K, a.heldout, a.initial, a.rounds, a.batch, a.noise, a.epochs,
           a.warm_start ? "warm start (each member from its previous round's model)"
                        : "retrained from the SFT weights every round",
           a.bootstrap ? ", bootstrap members" : "", p.gold_sft);
    for (int r = 0; r < a.n_rules; r++)
        printf(" %s", rule_names[a.rules[r]]);
    printf("; seeds:");
    for (int s = 0; s < a.n_seeds; s++)
        printf(" %d", a.seeds[s]);
    printf("\n");
    fflush(stdout);
    for (int s = 0; s < a.n_seeds; s++) {
        const int seed = a.seeds[s];
        int32_t *group = malloc(sizeof(int32_t) * (size_t)a.pool * K);
        item *pool = sample_items(p.sft.path, &p.tok, a.pool, (uint64_t)seed, 10, group);
        item *held = sample_items(p.sft.path, &p.tok, a.heldout, (uint64_t)seed, 20, NULL);
        selection_pair *initial = malloc(sizeof *initial * (size_t)a.initial);
        int *initial_win = malloc(sizeof(int) * (size_t)a.initial);
        rng_state r, labels;
        rng_seed(&r, (uint64_t)seed, 30);
        rng_seed(&labels, (uint64_t)seed, 31);
        const selection_input in = {a.pool * K, group, 0, NULL, NULL, 0, 2};
        char err[256];
        if (selection_choose(SELECTION_RANDOM, &in, a.initial, &r, initial, err, sizeof err) !=
            a.initial) {
            fprintf(stderr, "initial pairs: %s\n", err);
            return 1;
        }
        for (int i = 0; i < a.initial; i++)
            initial_win[i] = annotate(&pool[initial[i].a], &pool[initial[i].b], a.noise, &labels);
        for (int k = 0; k < a.n_rules; k++) {
            const study_rule rule = a.rules[k];
            rule_result *x = &res[s][rule];
            run_rule(&p, &a, seed, rule, pool, group, held, initial, initial_win, x);
            printf("seed %d %-12s held-out accuracy by round:", seed, rule_names[rule]);
            for (int j = 0; j <= a.rounds; j++)
                printf(" %.3f", x->acc[j]);
            printf("; held-out scores mean %+.2f sd %.2f; PPO gold %.3f at KL %.2f (%.0f s so "
                   "far)\n",
                   x->held_mean, x->held_sd, x->gold, x->kl, now_s() - t0);
            fflush(stdout);
        }
        free(group), free(pool), free(held), free(initial), free(initial_win);
    }
    const int n = a.n_seeds;
    bool has_random = false;
    for (int k = 0; k < a.n_rules; k++)
        has_random |= a.rules[k] == RULE_RANDOM;
    printf("\n%d seeds, %d rankings per rule; gains are paired by seed (the rule's final value "
           "minus random's), 95%% interval mean ± t(%d)·sd/√n, 'better' = seeds where the rule "
           "beat random\n\n",
           n, a.initial + a.rounds * a.batch, n - 1);
    printf("| rule | held-out RM accuracy, mean±sd (min-max) | gain vs random | 95%% interval | "
           "better |%s\n|---|---:|---:|---:|---:|%s\n",
           a.ppo ? " PPO gold, mean±sd (min-max) | gold gain vs random | 95% interval | better |"
                 : "",
           a.ppo ? "---:|---:|---:|---:|" : "");
    for (int k = 0; k < a.n_rules; k++) {
        const study_rule rule = a.rules[k];
        double acc[MAX_SEEDS], d_acc[MAX_SEEDS], gold[MAX_SEEDS], d_gold[MAX_SEEDS];
        for (int s = 0; s < n; s++) {
            acc[s] = res[s][rule].acc[a.rounds], gold[s] = res[s][rule].gold;
            d_acc[s] = acc[s] - res[s][RULE_RANDOM].acc[a.rounds];
            d_gold[s] = gold[s] - res[s][RULE_RANDOM].gold;
        }
        printf("| %s%s |", rule_names[rule],
               rule == RULE_DISAGREEMENT && a.bootstrap ? " (bootstrap)" : "");
        print_level(acc, n);
        if (has_random && rule != RULE_RANDOM)
            print_gain(d_acc, n);
        else
            printf(" - | - | - |");
        if (a.ppo) {
            print_level(gold, n);
            if (has_random && rule != RULE_RANDOM)
                print_gain(d_gold, n);
            else
                printf(" - | - | - |");
        }
        printf("\n");
    }
    /* round 0's model learnt only the shared initial pairs: the same for every rule */
    printf("\nreward models of rounds 1-%d at or below 0.60 held-out accuracy (of %d seeds x %d):",
           a.rounds, n, a.rounds);
    for (int k = 0; k < a.n_rules; k++) {
        const study_rule rule = a.rules[k];
        int low = 0;
        double worst = 1;
        for (int s = 0; s < n; s++)
            for (int j = 1; j <= a.rounds; j++)
                low += res[s][rule].acc[j] <= 0.60, worst = fmin(worst, res[s][rule].acc[j]);
        printf(" %s %d (lowest %.3f)%s", rule_names[rule], low, worst,
               k + 1 < a.n_rules ? ";" : "\n");
    }
    printf("(total %.0f s)\n", now_s() - t0);
    remove(p.sft.path), remove(p.rm.path);
    tokenizer_free(&p.tok);
    return 0;
}
