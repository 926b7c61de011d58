/* selection-study — do comparisons chosen by uncertainty teach the reward
 * model more per ranking than random ones? (issue 17)
 *
 * On the demo task with the simulated annotator, per seed and per rule
 * (random, uncertainty, disagreement; engine/selection.h):
 *   - the same SFT policy (bench/demo_pipeline.c) samples a pool of
 *     --pool prompts x 4 responses, and a held-out set of --heldout prompts
 *     x 4 responses whose every pair with different gold scores is a test
 *     comparison;
 *   - the same --initial random pairs are labelled by the annotator
 *     (Bradley-Terry on the gold score, temperature --noise);
 *   - --rounds times: reward model(s) trained from the SFT weights on all
 *     labels so far (one model; three seeds for disagreement), their
 *     accuracy on the held-out pairs against the gold order (with
 *     --bootstrap, disagreement's other members learn from resamples of
 *     the labels), then --batch
 *     new pairs chosen from the pool by the rule (at most 2 per prompt, no
 *     pair twice) and labelled;
 *   - the last reward model (member 0) drives PPO from the SFT policy (the
 *     bench's PPO settings), and the policy's mean gold score is measured.
 * Every rule sees the same number of rankings. Prints one line per seed and
 * rule and a summary (mean and min-max over seeds). Minutes per seed.
 *
 *   build/selection-study --seeds 1,2,3
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

enum { K = 4, MAX_MEMBERS = 3, MAX_ROUNDS = 8, MAX_SEEDS = 8 };

typedef struct item {
    char prompt[128];
    char text[DEMO_TASK_RESPONSE_BYTES];
    double gold;
} item;

typedef struct study_args {
    int seeds[MAX_SEEDS], n_seeds;
    int pool, heldout, initial, batch, rounds;
    double noise;
    bool ppo, bootstrap;
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

/* Trains a reward model from the SFT weights on the labelled pairs; its
 * checkpoint lands in k. */
static void train_rm(const demo_pipeline *p, const item *pool, const selection_pair *pairs,
                     const int *winner_first, int n, int seed, keep *k, const char *name) {
    ranking *rk = calloc((size_t)n, sizeof *rk);
    for (int i = 0; i < n; i++) {
        const item *a = &pool[pairs[i].a], *b = &pool[pairs[i].b];
        rk[i] = (ranking){.prompt = a->prompt, .k = 2, .responses = {a->text, b->text}};
        rk[i].rank[0] = winner_first[i] ? 0 : 1;
        rk[i].rank[1] = winner_first[i] ? 1 : 0;
    }
    reward_config rc;
    hparams_set_defaults(&reward_hparams, &rc);
    rc.seed = seed, rc.epochs = 3, rc.learning_rate = 1e-3, rc.eval_interval = 0;
    rc.eval_fraction = 0;
    train_sink sink = keep_sink(k, name);
    const reward_inputs ri = {
        .train = rk, .n_train = n, .tok = &p->tok, .init_checkpoint = p->sft.path};
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
    double gold;                /* PPO policy's mean gold score (NAN without PPO) */
    double kl;
} rule_result;

static void run_rule(const demo_pipeline *p, const study_args *a, int seed, selection_rule rule,
                     const item *pool, const int32_t *group, const item *held,
                     const selection_pair *initial, const int *initial_win, rule_result *out) {
    const int n_pool = a->pool * K, n_held = a->heldout * K;
    const int total = a->initial + a->rounds * a->batch;
    selection_pair *pairs = malloc(sizeof *pairs * (size_t)total);
    int *win = malloc(sizeof(int) * (size_t)total);
    memcpy(pairs, initial, sizeof *pairs * (size_t)a->initial);
    memcpy(win, initial_win, sizeof(int) * (size_t)a->initial);
    int n = a->initial;
    const int members = rule == SELECTION_DISAGREEMENT ? MAX_MEMBERS : 1;
    double *scores = malloc(sizeof(double) * (size_t)members * (size_t)n_pool);
    double *held_scores = malloc(sizeof(double) * (size_t)n_held);
    rng_state choose_rng, label_rng;
    rng_seed(&choose_rng, (uint64_t)seed, 0x5E1EC7u);
    rng_seed(&label_rng, (uint64_t)seed, 0x1ABE1u);
    keep rms[MAX_MEMBERS];
    /* --bootstrap: members after the first learn from a resample (with
     * replacement) of the labels, so their spread measures what the labels
     * leave open (epistemic), not only the training seed's noise. */
    selection_pair *boot = malloc(sizeof *boot * (size_t)total);
    int *boot_win = malloc(sizeof(int) * (size_t)total);
    rng_state boot_rng;
    rng_seed(&boot_rng, (uint64_t)seed, 0xB0075u);
    for (int round = 0;; round++) {
        for (int e = 0; e < members; e++) {
            char name[32];
            snprintf(name, sizeof name, "sel-rm%d", e);
            if (a->bootstrap && e > 0) {
                for (int i = 0; i < n; i++) {
                    const int j = (int)(rng_next_double(&boot_rng) * n);
                    boot[i] = pairs[j], boot_win[i] = win[j];
                }
                train_rm(p, pool, boot, boot_win, n, 1000 * seed + e, &rms[e], name);
            } else
                train_rm(p, pool, pairs, win, n, 1000 * seed + e, &rms[e], name);
        }
        score_items(rms[0].path, &p->tok, held, n_held, held_scores);
        out->acc[round] = heldout_accuracy(held, n_held, held_scores);
        if (round == a->rounds)
            break;
        if (rule != SELECTION_RANDOM)
            for (int e = 0; e < members; e++)
                score_items(rms[e].path, &p->tok, pool, n_pool, scores + (int64_t)e * n_pool);
        const selection_input in = {n_pool, group, members, scores, pairs, n, 2};
        char err[256];
        const int got =
            selection_choose(rule, &in, a->batch, &choose_rng, pairs + n, err, sizeof err);
        if (got != a->batch) {
            fprintf(stderr, "selection: %s (got %d of %d)\n", got < 0 ? err : "too few pairs", got,
                    a->batch);
            exit(1);
        }
        for (int i = n; i < n + got; i++)
            win[i] = annotate(&pool[pairs[i].a], &pool[pairs[i].b], a->noise, &label_rng);
        n += got;
    }
    out->gold = out->kl = NAN;
    if (a->ppo) {
        demo_pipeline q = *p;
        snprintf(q.rm.path, sizeof q.rm.path, "%s", rms[0].path);
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
        remove(rms[e].path);
    free(pairs), free(win), free(scores), free(held_scores), free(boot), free(boot_win);
}

static void parse_args(int argc, char **argv, study_args *a) {
    *a = (study_args){.seeds = {1, 2, 3},
                      .n_seeds = 3,
                      .pool = 400,
                      .heldout = 150,
                      .initial = 100,
                      .batch = 100,
                      .rounds = 4,
                      .noise = 0.5,
                      .ppo = true};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(argv[i], "--seeds") == 0) {
            a->n_seeds = 0;
            for (const char *s = v; *s && a->n_seeds < MAX_SEEDS;
                 s += strcspn(s, ","), s += *s == ',')
                a->seeds[a->n_seeds++] = atoi(s);
            i++;
        } else if (strcmp(argv[i], "--pool") == 0)
            a->pool = atoi(v), i++;
        else if (strcmp(argv[i], "--heldout") == 0)
            a->heldout = atoi(v), i++;
        else if (strcmp(argv[i], "--initial") == 0)
            a->initial = atoi(v), i++;
        else if (strcmp(argv[i], "--batch") == 0)
            a->batch = atoi(v), i++;
        else if (strcmp(argv[i], "--rounds") == 0)
            a->rounds = atoi(v), i++;
        else if (strcmp(argv[i], "--noise") == 0)
            a->noise = atof(v), i++;
        else if (strcmp(argv[i], "--no-ppo") == 0)
            a->ppo = false;
        else if (strcmp(argv[i], "--bootstrap") == 0)
            a->bootstrap = true;
        else {
            fprintf(stderr, "usage: selection-study [--seeds 1,2,3] [--pool 400] [--heldout 150] "
                            "[--initial 100] [--batch 100] [--rounds 4] [--noise 0.5] [--no-ppo] "
                            "[--bootstrap]\n");
            exit(argv[i][2] == 'h' ? 0 : 2);
        }
    }
    if (a->rounds < 1 || a->rounds > MAX_ROUNDS || a->pool < 10 || a->heldout < 10 ||
        a->initial < 2 || a->batch < 1 || !(a->noise > 0)) {
        fprintf(stderr, "selection-study: a setting is out of range\n");
        exit(2);
    }
}

int main(int argc, char **argv) {
    study_args a;
    parse_args(argc, argv, &a);
    demo_pipeline p;
    if (demo_pipeline_build(&p) != 0)
        return 1;
    const double t0 = now_s();
    enum { N_RULES = 3 };
    static rule_result res[MAX_SEEDS][N_RULES];
    printf("selection study: pool %d prompts x %d, held-out %d prompts, %d initial random pairs "
           "+ %d rounds x %d chosen, annotator noise %.2f%s; SFT gold %.3f\n",
           a.pool, K, a.heldout, a.initial, a.rounds, a.batch, a.noise,
           a.bootstrap ? ", bootstrap members" : "", p.gold_sft);
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
        for (int rule = 0; rule < N_RULES; rule++) {
            run_rule(&p, &a, seed, (selection_rule)rule, pool, group, held, initial, initial_win,
                     &res[s][rule]);
            printf("seed %d %-12s held-out accuracy by round:", seed,
                   selection_rule_name((selection_rule)rule));
            for (int k = 0; k <= a.rounds; k++)
                printf(" %.3f", res[s][rule].acc[k]);
            printf("; PPO gold %.3f at KL %.2f (%.0f s so far)\n", res[s][rule].gold,
                   res[s][rule].kl, now_s() - t0);
            fflush(stdout);
        }
        free(group), free(pool), free(held), free(initial), free(initial_win);
    }
    printf("\n| rule | rankings | held-out RM accuracy, mean (min-max) | gain over random, "
           "mean (min-max) | PPO gold, mean (min-max) |\n|---|---:|---:|---:|---:|\n");
    for (int rule = 0; rule < N_RULES; rule++) {
        double acc = 0, lo = 1, hi = 0, gain = 0, glo = 1, ghi = -1, gold = 0, olo = 1e9,
               ohi = -1e9;
        for (int s = 0; s < a.n_seeds; s++) {
            const double x = res[s][rule].acc[a.rounds];
            const double d = x - res[s][SELECTION_RANDOM].acc[a.rounds];
            const double g = res[s][rule].gold;
            acc += x, lo = fmin(lo, x), hi = fmax(hi, x);
            gain += d, glo = fmin(glo, d), ghi = fmax(ghi, d);
            gold += g, olo = fmin(olo, g), ohi = fmax(ohi, g);
        }
        printf("| %s | %d | %.3f (%.3f-%.3f) | %+.3f (%+.3f to %+.3f) | ",
               selection_rule_name((selection_rule)rule), a.initial + a.rounds * a.batch,
               acc / a.n_seeds, lo, hi, gain / a.n_seeds, glo, ghi);
        if (a.ppo)
            printf("%.3f (%.3f-%.3f) |\n", gold / a.n_seeds, olo, ohi);
        else
            printf("- |\n");
    }
    printf("(total %.0f s)\n", now_s() - t0);
    remove(p.sft.path), remove(p.rm.path);
    tokenizer_free(&p.tok);
    return 0;
}
