/* Reward model: the Bradley–Terry and K-wise losses by hand and by finite
 * differences, ranking validation, and a short run that learns the demo
 * task's hidden preference from simulated rankings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_task.h"
#include "hparams.h"
#include "model.h"
#include "reward.h"
#include "sft.h"
#include "suites.h"
#include "test_util.h"

/* K = 2, r = (1, 0), 0 better: loss = log(1 + e^-1) = 0.3132617,
 * ∂/∂r = (-σ(-1), σ(-1)) = (-0.2689414, 0.2689414).
 * With margin 0.5: log(1 + e^-0.5) = 0.4740770. With centering c = 0.1:
 * + 0.1 · (1² + 0²) / 2 = 0.05, and ∂/∂r0 gains 2 · 0.1 · 1 / 2 = 0.1. */
START_TEST(test_bt_loss_by_hand) {
    ranking rk = {"p", 2, {"a", "b"}, {0, 1}, 0.5f, NULL, false};
    const float r[2] = {1.0f, 0.0f};
    float dr[2] = {0, 0};
    int correct = 0, pairs = 0;
    ck_assert_close(reward_ranking_loss(r, &rk, false, 0.0, dr, 1.0f, &correct, &pairs), 0.3132617,
                    1e-6, 0, "BT loss");
    ck_assert_close(dr[0], -0.2689414, 1e-6, 0, "dr winner");
    ck_assert_close(dr[1], 0.2689414, 1e-6, 0, "dr loser");
    ck_assert_int_eq(correct, 1);
    ck_assert_int_eq(pairs, 1);
    ck_assert_close(reward_ranking_loss(r, &rk, true, 0.0, NULL, 1.0f, NULL, NULL), 0.4740770, 1e-6,
                    0, "with margin");
    dr[0] = dr[1] = 0;
    ck_assert_close(reward_ranking_loss(r, &rk, false, 0.1, dr, 1.0f, NULL, NULL), 0.3632617, 1e-6,
                    0, "with centering");
    ck_assert_close(dr[0], -0.2689414 + 0.1, 1e-6, 0, "centering gradient");
}
END_TEST

/* K = 3 with a tie, ranks (0, 1, 1): two pairs (0>1, 0>2), r = (2, 1, 0):
 *   loss = (log(1+e^-1) + log(1+e^-2)) / 2 = (0.3132617 + 0.1269280) / 2 = 0.2200948
 *   ∂/∂r0 = -(σ(-1) + σ(-2)) / 2 = -(0.2689414 + 0.1192029) / 2 = -0.1940722
 *   ∂/∂r1 = σ(-1) / 2 = 0.1344707,  ∂/∂r2 = σ(-2) / 2 = 0.0596015 */
START_TEST(test_kwise_loss_with_ties_by_hand) {
    ranking rk = {"p", 3, {"a", "b", "c"}, {0, 1, 1}, 0, NULL, false};
    const float r[3] = {2, 1, 0};
    float dr[3] = {0};
    int correct = 0, pairs = 0;
    ck_assert_close(reward_ranking_loss(r, &rk, false, 0.0, dr, 1.0f, &correct, &pairs), 0.2200948,
                    1e-6, 0, "K-wise loss");
    ck_assert_close(dr[0], -0.1940722, 1e-6, 0, "dr0");
    ck_assert_close(dr[1], 0.1344707, 1e-6, 0, "dr1");
    ck_assert_close(dr[2], 0.0596015, 1e-6, 0, "dr2");
    ck_assert_int_eq(pairs, 2);
    ck_assert_int_eq(correct, 2);
}
END_TEST

typedef struct loss_ctx {
    ranking rk;
    float r[5];
} loss_ctx;

static double loss_fd(void *ctx) {
    loss_ctx *c = ctx;
    return reward_ranking_loss(c->r, &c->rk, true, 0.05, NULL, 1.0f, NULL, NULL);
}

START_TEST(test_kwise_loss_finite_differences) {
    loss_ctx c = {{"p", 5, {"a", "b", "c", "d", "e"}, {2, 0, 4, 0, 1}, 0.3f, NULL, false}, {0}};
    rng_state r;
    rng_seed(&r, 3, 0);
    test_fill_uniform(c.r, 5, -2, 2, &r);
    float dr[5] = {0};
    reward_ranking_loss(c.r, &c.rk, true, 0.05, dr, 1.0f, NULL, NULL);
    test_check_gradient("dr", c.r, dr, 5, loss_fd, &c, 1e-3f, 1e-4, 1e-3);
}
END_TEST

START_TEST(test_ranking_validation) {
    char err[256];
    ranking ok = {"p", 2, {"a", "b"}, {1, 0}, 0, NULL, false};
    ck_assert_int_eq(ranking_validate(&ok, err, sizeof err), 0);
    ranking one = {"p", 1, {"a"}, {0}, 0, NULL, false};
    ck_assert_int_eq(ranking_validate(&one, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "2 to 9 responses"));
    ranking ties = {"p", 3, {"a", "b", "c"}, {0, 0, 0}, 0, NULL, false};
    ck_assert_int_eq(ranking_validate(&ties, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "tie"));
    ranking bad = {"p", 2, {"a", "b"}, {0, 2}, 0, NULL, false};
    ck_assert_int_eq(ranking_validate(&bad, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "outside 0..1"));
}
END_TEST

/* ---- learning the demo task's preference ----------------------------------------- */

static int count_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    (void)step, (void)m, (void)n;
    ++*(int *)ctx;
    return 0;
}

/* A sink's last checkpoint, copied. */
typedef struct kept_checkpoint {
    void *bytes;
    size_t n;
} kept_checkpoint;

static int keep_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    kept_checkpoint *k = ctx;
    (void)step;
    free(k->bytes);
    k->bytes = malloc(n);
    memcpy(k->bytes, bytes, n);
    k->n = n;
    return 0;
}

/* Rankings of K = 2..4 responses to demo prompts, ordered by the gold score
 * (a noiseless simulated annotator). A small reward model from scratch must
 * rank held-out pairs far better than chance. */
START_TEST(test_reward_model_learns_gold_preference) {
    enum { N = 400 };
    static char prompts[N][128], responses[N][RANKING_MAX_K][256];
    static ranking rk[N];
    rng_state r;
    rng_seed(&r, 21, 0);
    int n = 0;
    while (n < N) {
        char unused[256];
        demo_task_example(&r, prompts[n], 128, unused, sizeof unused);
        const int k = 2 + (int)rng_next_below(&r, 3);
        double score[RANKING_MAX_K];
        rk[n] = (ranking){.prompt = prompts[n], .k = k};
        for (int i = 0; i < k; i++) {
            demo_task_response(&r, prompts[n], responses[n][i], 256);
            rk[n].responses[i] = responses[n][i];
            score[i] = demo_task_gold_score(prompts[n], responses[n][i]);
        }
        for (int i = 0; i < k; i++) { /* rank = how many score strictly higher */
            rk[n].rank[i] = 0;
            for (int j = 0; j < k; j++)
                rk[n].rank[i] += score[j] > score[i];
        }
        char err[128];
        if (ranking_validate(&rk[n], err, sizeof err) == 0)
            n++; /* all-tie draws say nothing: draw again */
    }
    tokenizer tok;
    char err[256];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    reward_config cfg;
    hparams_set_defaults(&reward_hparams, &cfg);
    cfg.epochs = 10, cfg.learning_rate = 1e-3, cfg.batch_size = 16, cfg.eval_interval = 0;
    cfg.eval_fraction = 0.2, cfg.norm_samples = 16;
    const reward_inputs in = {rk, N, NULL, 0, &tok, NULL, NULL, NULL, 0, NULL};
    int steps = 0;
    train_sink sink = {&steps, count_metrics, NULL, NULL, NULL, NULL, NULL, NULL};
    reward_result res;
    ck_assert_msg(reward_train(&cfg, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(steps, res.steps);
    /* chance is 0.5; the issue-4 benchmark asks 0.8 of an SFT-initialised model */
    ck_assert_msg(res.eval_accuracy > 0.7, "held-out pair accuracy %.3f", res.eval_accuracy);
    ck_assert(isfinite(res.gain) && res.gain > 0);

    /* Five steps driven through a session (evals thrown in) end in the
     * checkpoint, gain and bias of reward_train's five-step run. */
    cfg.max_steps = 5;
    kept_checkpoint by_train = {0}, by_session = {0};
    sink = (train_sink){&by_train, NULL, NULL, keep_checkpoint, NULL, NULL, NULL, NULL};
    ck_assert_msg(reward_train(&cfg, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
    sink = (train_sink){&by_session, NULL, NULL, keep_checkpoint, NULL, NULL, NULL, NULL};
    reward_session *session;
    ck_assert_msg(reward_session_init(&session, &cfg, &in, &sink, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(reward_session_total_steps(session), 5);
    for (int i = 0; i < 5; i++) {
        reward_step_result st;
        ck_assert_msg(reward_session_step(session, &st, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(st.step, i + 1);
        ck_assert(isfinite(st.loss) && st.accuracy >= 0 && st.accuracy <= 1);
        ck_assert(isfinite(reward_session_eval(session).accuracy));
    }
    double gain, bias;
    reward_session_normalize(session, &gain, &bias);
    ck_assert_double_eq(gain, res.gain);
    ck_assert_double_eq(bias, res.bias);
    ck_assert_int_eq(reward_session_checkpoint(session, err, sizeof err), 0);
    reward_session_free(session);
    ck_assert_int_eq(by_session.n, by_train.n);
    ck_assert_msg(memcmp(by_session.bytes, by_train.bytes, by_train.n) == 0,
                  "the session-driven checkpoint differs from reward_train's");
    free(by_train.bytes), free(by_session.bytes);
    tokenizer_free(&tok);
}
END_TEST

/* Three small rankings (ties included; 1 + 2 + 5 = 8 pairs of different
 * rank), and a training set of 8 that cycles through them. */
static const ranking arith_rankings[3] = {
    {"2+2=", 2, {"4", "5"}, {0, 1}, 0, NULL, false},
    {"3+1=", 3, {"4", "four", "7"}, {0, 0, 1}, 0, NULL, false},
    {"1+5=", 4, {"6", "six", "60", "?"}, {0, 1, 1, 2}, 0, NULL, false},
};

static void arith_train_set(ranking train[8]) {
    for (int i = 0; i < 8; i++)
        train[i] = arith_rankings[i % 3];
}

/* The metrics reward_train reports at step 0 (the prior scoring), and
 * whether any came before them. */
typedef struct prior_metrics {
    double correct, pairs, accuracy;
    int before; /* metrics of a step before step 0's: must stay 0 */
    int seen;
} prior_metrics;

static int keep_prior(void *ctx, int64_t step, const sink_metric *m, int n) {
    prior_metrics *p = ctx;
    if (step != 0) {
        p->before += p->seen == 0;
        return 0;
    }
    p->seen++;
    for (int i = 0; i < n; i++) {
        if (strcmp(m[i].name, "prior_correct") == 0)
            p->correct = m[i].value;
        else if (strcmp(m[i].name, "prior_pairs") == 0)
            p->pairs = m[i].value;
        else if (strcmp(m[i].name, "prior_accuracy") == 0)
            p->accuracy = m[i].value;
    }
    return 0;
}

/* reward_inputs.prior: before the first update the initial model scores
 * the prior rankings; pairs are responses of different rank (ties are not
 * pairs: 1 + 2 + 5 = 8 here), and the count of correct ones equals what
 * the online loop's daemon computed before this moved into the job: each
 * response scored alone (prompt + response + EOT) by the same initial
 * model, a pair correct when the better ranked scores strictly higher. */
START_TEST(test_reward_prior_accuracy) {
    const ranking *const prior = arith_rankings;
    static ranking train[8];
    arith_train_set(train);
    tokenizer tok;
    char err[256];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    reward_config cfg;
    hparams_set_defaults(&reward_hparams, &cfg);
    cfg.max_steps = 2, cfg.batch_size = 4, cfg.eval_interval = 0, cfg.norm_samples = 0;
    const reward_inputs in = {train, 8, NULL, 0, &tok, NULL, NULL, prior, 3, NULL};
    prior_metrics got = {0};
    const train_sink sink = {&got, keep_prior, NULL, NULL, NULL, NULL, NULL, NULL};
    ck_assert_msg(reward_train(&cfg, &in, &sink, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(got.seen, 1);
    ck_assert_int_eq(got.before, 0);
    ck_assert_double_eq(got.pairs, 8);

    /* the same initial model (same seed), each response scored alone */
    reward_session *s;
    const train_sink quiet = {0};
    ck_assert_msg(reward_session_init(&s, &cfg, &in, &quiet, err, sizeof err) == 0, "%s", err);
    model *m = (model *)reward_session_model(s);
    int correct = 0;
    for (int i = 0; i < 3; i++) {
        double score[RANKING_MAX_K];
        for (int k = 0; k < prior[i].k; k++) {
            int32_t ids[64];
            uint8_t mask[64];
            const text_pair ex = {prior[i].prompt, prior[i].responses[k], NULL, 0};
            const int64_t n = sft_tokenize(&tok, &ex, true, ids, mask, 64);
            ck_assert(n > 0);
            model_forward(m, ids, NULL, NULL, 1, (int)n, 0, 0);
            score[k] = model_values(m)[n - 1];
        }
        for (int a = 0; a < prior[i].k; a++)
            for (int b = a + 1; b < prior[i].k; b++)
                if (prior[i].rank[a] != prior[i].rank[b])
                    correct += (score[a] - score[b]) * (prior[i].rank[b] - prior[i].rank[a]) > 0;
    }
    reward_session_free(s);
    ck_assert_double_eq(got.correct, correct);
    ck_assert_double_eq_tol(got.accuracy, correct / 8.0, 1e-12);
    tokenizer_free(&tok);
}
END_TEST

/* A checkpoint of the (tiny, from scratch) reward model of seed, trained
 * two steps on rankings, in a new file under /tmp; path gets its name. */
static void write_reward_checkpoint(char path[64], const reward_inputs *in, int64_t seed) {
    reward_config cfg;
    hparams_set_defaults(&reward_hparams, &cfg);
    cfg.max_steps = 2, cfg.batch_size = 4, cfg.eval_interval = 0, cfg.norm_samples = 0;
    cfg.seed = seed;
    kept_checkpoint k = {0};
    const train_sink sink = {&k, NULL, NULL, keep_checkpoint, NULL, NULL, NULL, NULL};
    char err[256];
    ck_assert_msg(reward_train(&cfg, in, &sink, NULL, err, sizeof err) == 0, "%s", err);
    snprintf(path, 64, "/tmp/rlhf-reward-norm-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, k.bytes, k.n), (ssize_t)k.n);
    close(fd);
    free(k.bytes);
}

/* reward_inputs.norm_policy: the normalisation samples come from that
 * model, not from the initial (warm-start) weights. Naming the initial
 * checkpoint itself gives bit-identical gain and bias (the policy is
 * opened and sampled as the session's own weights are); naming another
 * model changes them. */
START_TEST(test_reward_norm_policy) {
    static ranking train[8];
    arith_train_set(train);
    tokenizer tok;
    char err[256], warm[64], other[64];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    reward_inputs in = {train, 8, NULL, 0, &tok, NULL, NULL, NULL, 0, NULL};
    write_reward_checkpoint(warm, &in, 1);
    write_reward_checkpoint(other, &in, 2);

    reward_config cfg;
    hparams_set_defaults(&reward_hparams, &cfg);
    cfg.max_steps = 2, cfg.batch_size = 4, cfg.eval_interval = 0, cfg.norm_samples = 8;
    const train_sink quiet = {0};
    reward_result own, same, moved;
    in.init_checkpoint = warm;
    ck_assert_msg(reward_train(&cfg, &in, &quiet, &own, err, sizeof err) == 0, "%s", err);
    in.norm_policy = warm;
    ck_assert_msg(reward_train(&cfg, &in, &quiet, &same, err, sizeof err) == 0, "%s", err);
    in.norm_policy = other;
    ck_assert_msg(reward_train(&cfg, &in, &quiet, &moved, err, sizeof err) == 0, "%s", err);
    ck_assert_double_eq(same.gain, own.gain);
    ck_assert_double_eq(same.bias, own.bias);
    ck_assert(isfinite(moved.gain) && isfinite(moved.bias));
    ck_assert_msg(moved.gain != own.gain || moved.bias != own.bias,
                  "gain %g bias %g: the same as sampling the initial model", moved.gain,
                  moved.bias);
    in.norm_policy = "/nonexistent/policy.safetensors";
    ck_assert_int_eq(reward_train(&cfg, &in, &quiet, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/policy.safetensors") != NULL, "%s", err);
    unlink(warm), unlink(other);
    tokenizer_free(&tok);
}
END_TEST

Suite *reward_suite(void) {
    Suite *s = suite_create("reward");
    TCase *tc = tcase_create("reward");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_bt_loss_by_hand);
    tcase_add_test(tc, test_kwise_loss_with_ties_by_hand);
    tcase_add_test(tc, test_kwise_loss_finite_differences);
    tcase_add_test(tc, test_ranking_validation);
    tcase_add_test(tc, test_reward_model_learns_gold_preference);
    tcase_add_test(tc, test_reward_prior_accuracy);
    tcase_add_test(tc, test_reward_norm_policy);
    suite_add_tcase(s, tc);
    return s;
}
