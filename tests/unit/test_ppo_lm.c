/* The PPO job for language models (engine/ppo_lm.c) on tiny random models:
 * resume (in process, and rlhf-train killed with SIGKILL then resumed) ends
 * bit-identical to an uninterrupted run; the value model starts as the
 * reward model and only the value loss trains it; a NaN reward fails the job
 * after non_finite_patience skipped updates; gradient accumulation equals one
 * big minibatch. Each run is a few milliseconds. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "ppo_lm.h"
#include "safetensors.h"
#include "suites.h"
#include "test_hf_fixture.h"
#include "test_util.h"

static const char *const prompts[] = {"ab", "hello", "x", "a cat", "Zq", "the end"};
enum { N_PROMPTS = 6 };

/* A tiny GPT-2 written to a temp file (head: a reward model, with gain and
 * bias metadata). nan_head poisons the scalar head; huge_gain makes every
 * score overflow to infinity. */
static void write_model(char *path, const tokenizer *tok, bool head, uint64_t seed, bool nan_head,
                        bool huge_gain) {
    const gpt2_config gc = {tok->vocab_size, 24, 1, 2, 16, head};
    test_write_random_gpt2(path, &gc, seed, huge_gain ? "1e39" : "2.0", nan_head);
}

typedef struct fixture {
    tokenizer tok;
    char sft[64], rm[64];
} fixture;

static void fixture_init(fixture *fx, bool nan_head, bool huge_gain) {
    char err[256];
    ck_assert_int_eq(tokenizer_load_bytes(&fx->tok, err, sizeof err), 0);
    write_model(fx->sft, &fx->tok, false, 11, false, false);
    write_model(fx->rm, &fx->tok, true, 12, nan_head, huge_gain);
}

static void fixture_free(fixture *fx) {
    unlink(fx->sft), unlink(fx->rm);
    tokenizer_free(&fx->tok);
}

static void small_config(ppo_lm_config *c) {
    hparams_set_defaults(&ppo_lm_hparams, c);
    c->total_updates = 5, c->batch_size = 4, c->mini_batch_size = 2, c->ppo_epochs = 2;
    c->response_length = 6, c->learning_rate = 3e-3, c->sample_interval = 2;
    c->target_kl = 0.5, c->kl_horizon = 100; /* adaptive β: its state must resume too */
}

/* Records every checkpoint and metric; can ask to stop after some updates. */
typedef struct recording {
    int64_t stop_after; /* 0 = never */
    int64_t updates;
    int events_non_finite;
    int events_truncated;
    double truncated[3]; /* the last "truncated" event's n_truncated, n_rows, limit */
    int n_ckpt;
    int64_t ckpt_step[16];
    void *ckpt[16];
    size_t ckpt_bytes[16];
    double policy_loss[16], value_loss[16], kl[16];
} recording;

static int rec_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    recording *r = ctx;
    r->updates = step;
    for (int i = 0; i < n && step < 16; i++) {
        if (strcmp(m[i].name, "loss/policy_avg") == 0)
            r->policy_loss[step] = m[i].value;
        if (strcmp(m[i].name, "loss/value_avg") == 0)
            r->value_loss[step] = m[i].value;
        if (strcmp(m[i].name, "objective/kl") == 0)
            r->kl[step] = m[i].value;
    }
    return 0;
}

static int rec_event(void *ctx, sink_level level, const char *code, const char *message,
                     const sink_metric *data, int n) {
    recording *r = ctx;
    (void)level, (void)message;
    r->events_non_finite += strcmp(code, "non_finite") == 0;
    if (strcmp(code, "truncated") == 0) {
        ck_assert_int_eq(n, 3);
        r->events_truncated++;
        for (int i = 0; i < 3; i++)
            r->truncated[i] = data[i].value;
    }
    return 0;
}

static int rec_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    recording *r = ctx;
    ck_assert_int_lt(r->n_ckpt, 16);
    r->ckpt_step[r->n_ckpt] = step;
    r->ckpt[r->n_ckpt] = malloc(n);
    memcpy(r->ckpt[r->n_ckpt], bytes, n);
    r->ckpt_bytes[r->n_ckpt++] = n;
    return 0;
}

static bool rec_should_stop(void *ctx) {
    recording *r = ctx;
    return r->stop_after > 0 && r->updates >= r->stop_after;
}

static void rec_free(recording *r) {
    for (int i = 0; i < r->n_ckpt; i++)
        free(r->ckpt[i]);
}

static int run(const ppo_lm_config *c, const ppo_lm_inputs *in, recording *rec, char *err,
               size_t errlen) {
    const train_sink sink = {rec,  rec_metrics, rec_event, rec_checkpoint, rec_should_stop,
                             NULL, NULL,        NULL};
    return ppo_lm_train(c, in, &sink, NULL, err, errlen);
}

static void run_ok(const ppo_lm_config *c, const ppo_lm_inputs *in, recording *rec) {
    char err[512];
    ck_assert_msg(run(c, in, rec, err, sizeof err) == 0, "%s", err);
}

static void save(char *path, const void *bytes, size_t n) {
    strcpy(path, "/tmp/rlhf-ppo-lm-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

static void assert_same_final(const recording *a, const recording *b, const char *what) {
    const int i = a->n_ckpt - 1, j = b->n_ckpt - 1;
    ck_assert_int_eq(a->ckpt_step[i], b->ckpt_step[j]);
    ck_assert_msg(a->ckpt_bytes[i] == b->ckpt_bytes[j] &&
                      memcmp(a->ckpt[i], b->ckpt[j], a->ckpt_bytes[i]) == 0,
                  "%s: the final checkpoints differ", what);
}

/* The KL reference: by default the policy's init, so the first rollout's
 * KL is exactly 0 (the same weights score the same tokens); with
 * ref_checkpoint another model, so it is not. With LoRA a separate
 * reference is refused, naming why. */
START_TEST(test_ppo_lm_ref_checkpoint) {
    fixture fx;
    fixture_init(&fx, false, false);
    char other[64];
    write_model(other, &fx.tok, false, 13, false, false);
    ppo_lm_config c;
    small_config(&c);
    c.total_updates = 1;
    ppo_lm_inputs in = {.prompts = prompts,
                        .n_prompts = N_PROMPTS,
                        .tok = &fx.tok,
                        .policy_checkpoint = fx.sft,
                        .reward_checkpoint = fx.rm};
    recording same = {0}, apart = {0}, lora = {0};
    run_ok(&c, &in, &same);
    ck_assert(same.kl[1] == 0.0);
    in.ref_checkpoint = other;
    run_ok(&c, &in, &apart);
    ck_assert_msg(fabs(apart.kl[1]) > 1e-3, "KL to another model: %g", apart.kl[1]);
    c.lora_r = 2;
    char err[512];
    ck_assert_int_eq(run(&c, &in, &lora, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "lora_r 0"));
    rec_free(&same), rec_free(&apart), rec_free(&lora);
    unlink(other);
    fixture_free(&fx);
}
END_TEST

/* Resumed from the periodic checkpoint at update k (k = 1..4), or from the
 * one a stop request wrote, the run ends byte-identical to the
 * uninterrupted one — for both value models. 6 prompts in batches of 4: the
 * resume points fall mid-way through a prompt order and at its end. */
START_TEST(test_ppo_lm_resume_is_bit_identical) {
    fixture fx;
    fixture_init(&fx, false, false);
    static const char *const kinds[] = {"reward_model", "policy_head"};
    for (int v = 0; v < 2; v++) {
        ppo_lm_config c;
        small_config(&c);
        c.checkpoint_interval = 1;
        snprintf(c.value_model, sizeof c.value_model, "%s", kinds[v]);
        ppo_lm_inputs in = {.prompts = prompts,
                            .n_prompts = N_PROMPTS,
                            .tok = &fx.tok,
                            .policy_checkpoint = fx.sft,
                            .reward_checkpoint = fx.rm};
        recording whole = {0};
        run_ok(&c, &in, &whole);
        ck_assert_int_eq(whole.n_ckpt, 5); /* updates 1-4 with state, then the final one */
        for (int k = 1; k <= 4; k++) {
            char path[64];
            save(path, whole.ckpt[k - 1], whole.ckpt_bytes[k - 1]);
            in.resume_checkpoint = path;
            recording rest = {0};
            run_ok(&c, &in, &rest);
            ck_assert_int_eq(rest.n_ckpt, 5 - k);
            assert_same_final(&whole, &rest, kinds[v]);
            rec_free(&rest);
            unlink(path);
            in.resume_checkpoint = NULL;
        }
        /* A stop request: the checkpoint it writes carries the state. */
        ppo_lm_config c0 = c;
        recording first = {.stop_after = 2}, whole0 = {0};
        c0.checkpoint_interval = 0;
        run_ok(&c0, &in, &whole0);
        run_ok(&c0, &in, &first);
        ck_assert_int_eq(first.n_ckpt, 1);
        ck_assert_int_eq(first.ckpt_step[0], 2);
        char path[64];
        save(path, first.ckpt[0], first.ckpt_bytes[0]);
        in.resume_checkpoint = path;
        recording rest = {0};
        run_ok(&c0, &in, &rest);
        assert_same_final(&whole0, &rest, "stopped and resumed");
        /* Other hyperparameters cannot resume it; neither can a final checkpoint. */
        char err[512];
        ppo_lm_config other = c0;
        other.clip_coef = 0.3;
        ck_assert_int_eq(run(&other, &in, &rest, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "hyperparameters differ"));
        unlink(path);
        save(path, whole0.ckpt[0], whole0.ckpt_bytes[0]);
        ck_assert_int_eq(run(&c0, &in, &rest, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "no training state"));
        unlink(path);
        rec_free(&whole), rec_free(&first), rec_free(&rest), rec_free(&whole0);
    }
    fixture_free(&fx);
}
END_TEST

/* Prompts longer than the room the context leaves (24 - response_length 6
 * = 18 byte tokens) keep their start, and the run says how many were cut:
 * 18 bytes fit exactly, 19 and 40 do not. */
START_TEST(test_ppo_lm_warns_of_cut_prompts) {
    fixture fx;
    fixture_init(&fx, false, false);
    ppo_lm_config c;
    small_config(&c);
    c.total_updates = 1;
    static const char *const long_prompts[] = {"ab", "eighteen bytes. ok", "nineteen bytes, cut",
                                               "forty bytes of prompt, which is cut here"};
    ck_assert_int_eq(strlen(long_prompts[1]), 18);
    ck_assert_int_eq(strlen(long_prompts[2]), 19);
    ck_assert_int_eq(strlen(long_prompts[3]), 40);
    const ppo_lm_inputs in = {.prompts = long_prompts,
                              .n_prompts = 4,
                              .tok = &fx.tok,
                              .policy_checkpoint = fx.sft,
                              .reward_checkpoint = fx.rm};
    recording rec = {0};
    run_ok(&c, &in, &rec);
    ck_assert_int_eq(rec.events_truncated, 1);
    ck_assert(rec.truncated[0] == 2 && rec.truncated[1] == 4 && rec.truncated[2] == 18);
    /* none cut: no warning */
    recording quiet = {0};
    const ppo_lm_inputs short_in = {.prompts = prompts,
                                    .n_prompts = N_PROMPTS,
                                    .tok = &fx.tok,
                                    .policy_checkpoint = fx.sft,
                                    .reward_checkpoint = fx.rm};
    run_ok(&c, &short_in, &quiet);
    ck_assert_int_eq(quiet.events_truncated, 0);
    rec_free(&rec), rec_free(&quiet);
    fixture_free(&fx);
}
END_TEST

/* The reward model, run independently on the first rollout's sequences. */
typedef struct rm_check {
    gpt2_model rm;
    int checked;
} rm_check;

static void check_first_rollout(void *ctx, const ppo_lm_rollout_view *r) {
    rm_check *c = ctx;
    if (r->update != 1)
        return;
    char err[128];
    ck_assert_int_eq(gpt2_reserve(&c->rm, r->B, r->S, err, sizeof err), 0);
    const gpt2_batch b = {r->seq, r->positions, r->seq_mask, r->B, r->S};
    gpt2_forward(&c->rm, &b, false);
    for (int i = 0; i < r->B; i++) {
        /* the job scores the rollout a micro-batch of rows at a time: the
         * sgemm shapes differ from this whole-batch forward, so rounding may */
        for (int t = 0; t < r->N; t++)
            ck_assert_close(r->values[i * r->N + t],
                            c->rm.acts.values[(int64_t)i * r->S + r->P + t - 1], 1e-6, 1e-6,
                            "value vs the reward model's output");
        /* the score: gain 2, bias 0.5 on the last token's raw output */
        const int last = r->P + r->len[i] - 1;
        const double raw = c->rm.acts.values[(int64_t)i * r->S + last];
        const double eos_penalty = r->len[i] == r->N && r->seq[(int64_t)i * r->S + last] != 256
                                       ? 1.0
                                       : 0.0; /* 256: the byte tokenizer's EOT */
        ck_assert_close(r->score[i], 2.0 * raw + 0.5 - eos_penalty, 1e-6, 1e-6, "score");
    }
    c->checked = 1;
}

/* With value_model = reward_model: at update 1 the values are the reward
 * model's raw outputs at the positions predicting each response token; the
 * policy has no scalar head; with vf_coef = 0 the value model does not move
 * and the policy trains exactly as with vf_coef = 1 (value gradients stay in
 * the value model). With policy_head, vf_coef does change the policy. */
START_TEST(test_ppo_lm_value_model_from_reward_model) {
    fixture fx;
    fixture_init(&fx, false, false);
    ck_assert_int_eq(fx.tok.eot_id, 256);
    rm_check chk = {0};
    load_checkpoint_model(&chk.rm, fx.rm, true);
    ppo_lm_config c;
    small_config(&c);
    c.total_updates = 2, c.checkpoint_interval = 1;
    ck_assert_str_eq(c.value_model, "reward_model"); /* the default */
    ppo_lm_inputs in = {.prompts = prompts,
                        .n_prompts = N_PROMPTS,
                        .tok = &fx.tok,
                        .policy_checkpoint = fx.sft,
                        .reward_checkpoint = fx.rm,
                        .observe_rollout = check_first_rollout,
                        .observe_ctx = &chk};
    recording r1 = {0}, r0 = {0};
    run_ok(&c, &in, &r1);
    ck_assert_int_eq(chk.checked, 1);
    in.observe_rollout = NULL;
    c.vf_coef = 0;
    run_ok(&c, &in, &r0);
    safetensors_file f0, f1;
    char err[256];
    ck_assert_int_eq(safetensors_parse(&f0, r0.ckpt[0], r0.ckpt_bytes[0], err, sizeof err), 0);
    ck_assert_int_eq(safetensors_parse(&f1, r1.ckpt[0], r1.ckpt_bytes[0], err, sizeof err), 0);
    ck_assert_ptr_null(safetensors_find(&f1, "score.weight")); /* the policy has no head */
    /* vf_coef = 0: the value model is still the reward model, bit for bit */
    const int64_t nv = chk.rm.num_params;
    float *v0 = malloc(sizeof(float) * (size_t)nv), *v1 = malloc(sizeof(float) * (size_t)nv);
    const safetensors_info *t0 = safetensors_find(&f0, "training_state.value_params");
    const safetensors_info *t1 = safetensors_find(&f1, "training_state.value_params");
    ck_assert_ptr_nonnull(t0);
    ck_assert_int_eq(safetensors_load_f32(t0, v0, nv, err, sizeof err), 0);
    ck_assert_int_eq(safetensors_load_f32(t1, v1, nv, err, sizeof err), 0);
    ck_assert(memcmp(v0, chk.rm.param_memory, sizeof(float) * (size_t)nv) == 0);
    ck_assert(memcmp(v1, chk.rm.param_memory, sizeof(float) * (size_t)nv) != 0);
    /* ...and the policy is the same whatever vf_coef */
    gpt2_model p0, p1;
    char path[64];
    save(path, r0.ckpt[0], r0.ckpt_bytes[0]);
    load_checkpoint_model(&p0, path, false);
    unlink(path);
    save(path, r1.ckpt[0], r1.ckpt_bytes[0]);
    load_checkpoint_model(&p1, path, false);
    unlink(path);
    ck_assert(memcmp(p0.param_memory, p1.param_memory, sizeof(float) * (size_t)p0.num_params) == 0);
    /* The same comparison with the value head on the policy: it differs. */
    snprintf(c.value_model, sizeof c.value_model, "policy_head");
    recording h0 = {0}, h1 = {0};
    run_ok(&c, &in, &h0);
    c.vf_coef = 1;
    run_ok(&c, &in, &h1);
    gpt2_model q0, q1;
    save(path, h0.ckpt[0], h0.ckpt_bytes[0]);
    load_checkpoint_model(&q0, path, true);
    unlink(path);
    save(path, h1.ckpt[0], h1.ckpt_bytes[0]);
    load_checkpoint_model(&q1, path, true);
    unlink(path);
    ck_assert(memcmp(q0.param_memory, q1.param_memory, sizeof(float) * (size_t)q0.num_params) != 0);
    gpt2_free(&q0), gpt2_free(&q1);
    free(v0), free(v1);
    gpt2_free(&p0), gpt2_free(&p1), gpt2_free(&chk.rm);
    safetensors_free(&f0), safetensors_free(&f1);
    rec_free(&r0), rec_free(&r1), rec_free(&h0), rec_free(&h1);
    fixture_free(&fx);
}
END_TEST

/* Rewards that overflow to infinity (a reward gain of 1e39): every update is
 * skipped and reported, and after non_finite_patience of them the job fails
 * saying why. A reward model whose head is NaN is refused before training. */
START_TEST(test_ppo_lm_non_finite_reward_fails_after_patience) {
    fixture fx;
    fixture_init(&fx, false, true);
    static const char *const kinds[] = {"reward_model", "policy_head"};
    ppo_lm_config c;
    ppo_lm_inputs in = {.prompts = prompts,
                        .n_prompts = N_PROMPTS,
                        .tok = &fx.tok,
                        .policy_checkpoint = fx.sft,
                        .reward_checkpoint = fx.rm};
    char err[512] = "";
    for (int v = 0; v < 2; v++) {
        small_config(&c);
        c.total_updates = 10, c.non_finite_patience = 3, c.checkpoint_interval = 1;
        snprintf(c.value_model, sizeof c.value_model, "%s", kinds[v]);
        recording r = {0};
        ck_assert_int_eq(run(&c, &in, &r, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "3 non-finite updates in a row") != NULL, "%s", err);
        ck_assert_ptr_nonnull(strstr(err, "reward-model score"));
        ck_assert_int_eq(r.events_non_finite, 3);
        ck_assert_int_eq(r.updates, 0); /* no metrics for skipped updates */
        /* the weights stayed finite: the periodic checkpoints before the failure exist */
        ck_assert_int_eq(r.n_ckpt, 2);
        rec_free(&r);
    }
    fixture_free(&fx);
    fixture_init(&fx, true, false);
    in.tok = &fx.tok, in.policy_checkpoint = fx.sft, in.reward_checkpoint = fx.rm;
    recording r = {0};
    ck_assert_int_eq(run(&c, &in, &r, err, sizeof err), -1);
    ck_assert_str_eq(err, "the reward model's weights are not finite");
    ck_assert_int_eq(r.n_ckpt, 0);
    fixture_free(&fx);
}
END_TEST

/* mini_batch_size 4 as 1, 2 or 4 micro-batches: the same losses and, after
 * 3 updates of 2 epochs, the same weights to float tolerance — and those
 * weights moved far more than the tolerance. */
START_TEST(test_ppo_lm_gradient_accumulation_matches_one_minibatch) {
    fixture fx;
    fixture_init(&fx, false, false);
    ppo_lm_config c;
    small_config(&c);
    c.total_updates = 3, c.batch_size = 8, c.mini_batch_size = 4, c.sample_interval = 0;
    const ppo_lm_inputs in = {.prompts = prompts,
                              .n_prompts = N_PROMPTS,
                              .tok = &fx.tok,
                              .policy_checkpoint = fx.sft,
                              .reward_checkpoint = fx.rm};
    gpt2_model sft, m[3];
    load_checkpoint_model(&sft, fx.sft, false);
    recording r[3] = {{0}};
    const int steps[3] = {1, 2, 4};
    for (int i = 0; i < 3; i++) {
        c.gradient_accumulation_steps = steps[i];
        run_ok(&c, &in, &r[i]);
        char path[64];
        save(path, r[i].ckpt[0], r[i].ckpt_bytes[0]);
        load_checkpoint_model(&m[i], path, false);
        unlink(path);
    }
    double moved = 0;
    for (int64_t j = 0; j < sft.num_params; j++)
        moved = fmax(moved, fabs(m[0].param_memory[j] - sft.param_memory[j]));
    ck_assert_msg(moved > 1e-3, "the policy barely moved (%g)", moved);
    for (int i = 1; i < 3; i++) {
        for (int u = 1; u <= 3; u++) {
            ck_assert_close(r[i].policy_loss[u], r[0].policy_loss[u], 1e-6, 1e-4, "policy loss");
            ck_assert_close(r[i].value_loss[u], r[0].value_loss[u], 1e-6, 1e-4, "value loss");
        }
        for (int64_t j = 0; j < sft.num_params; j++)
            ck_assert_close(m[i].param_memory[j], m[0].param_memory[j], 2e-5, 0,
                            "weights with gradient accumulation");
    }
    ppo_lm_config bad = c;
    bad.gradient_accumulation_steps = 3;
    char err[256];
    ck_assert_int_eq(ppo_lm_validate(&bad, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "gradient_accumulation_steps"));
    for (int i = 0; i < 3; i++)
        gpt2_free(&m[i]), rec_free(&r[i]);
    gpt2_free(&sft);
    fixture_free(&fx);
}
END_TEST

/* ---- rlhf-train ppo killed with SIGKILL, then --resume ------------------------------ */

static pid_t spawn_train(const char *const *args, int *out_fd) {
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    char exe[4200];
    snprintf(exe, sizeof exe, "%s/rlhf-train", test_build_dir());
    const pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]), close(out[1]);
        char *argv[48];
        int i = 0;
        argv[i++] = exe;
        for (; args[i - 1] && i < 47; i++)
            argv[i] = (char *)args[i - 1];
        argv[i] = NULL;
        execv(exe, argv);
        _exit(127);
    }
    close(out[1]);
    *out_fd = out[0];
    return pid;
}

/* Runs to the end; returns the exit status. */
static int run_train(const char *const *args) {
    int fd;
    const pid_t pid = spawn_train(args, &fd);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*n);
    ck_assert_int_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* `rlhf-train ppo` with init, rm and the extra arguments (NULL-ended), run
 * whole (200 updates, a checkpoint every 40), killed with SIGKILL right after
 * its first checkpoint, then resumed from that file: the resumed run's final
 * checkpoint equals the uninterrupted run's, byte for byte. */
static void check_killed_and_resumed(const char *init, const char *rm, const char *const *extra) {
    char dir[] = "/tmp/rlhf-ppo-cli-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char data[128], d_whole[128], d_killed[128], d_resumed[128];
    snprintf(data, sizeof data, "%s/prompts.jsonl", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < N_PROMPTS; i++)
        fprintf(f, "{\"prompt\": \"%s\"}\n", prompts[i]);
    fclose(f);
    snprintf(d_whole, sizeof d_whole, "%s/whole", dir);
    snprintf(d_killed, sizeof d_killed, "%s/killed", dir);
    snprintf(d_resumed, sizeof d_resumed, "%s/resumed", dir);
    ck_assert_int_eq(mkdir(d_whole, 0700), 0);
    ck_assert_int_eq(mkdir(d_killed, 0700), 0);
    ck_assert_int_eq(mkdir(d_resumed, 0700), 0);
    const char *const common[] = {"ppo",   "--init",
                                  init,    "--reward-model",
                                  rm,      "--data",
                                  data,    "--total-updates",
                                  "200",   "--batch-size",
                                  "4",     "--mini-batch-size",
                                  "2",     "--response-length",
                                  "6",     "--learning-rate",
                                  "0.003", "--target-kl",
                                  "0.5",   "--checkpoint-interval",
                                  "40",    "--quiet"};
    enum { N_COMMON = sizeof common / sizeof common[0], CAP = N_COMMON + 16 };
    /* common + extra + --checkpoint-dir d (+ --resume path) */
    const char *args[CAP];
    int n = 0;
    for (int i = 0; i < N_COMMON; i++)
        args[n++] = common[i];
    for (int i = 0; extra[i] != NULL; i++)
        args[n++] = extra[i];
    ck_assert_int_lt(n + 5, CAP);
    args[n] = "--checkpoint-dir", args[n + 2] = NULL;
    args[n + 1] = d_whole;
    ck_assert_int_eq(run_train(args), 0);

    /* Killed as soon as its first checkpoint (update 40) is announced — awaited,
     * not slept on. Once we stop reading, the child blocks on its full stdout
     * pipe (64 KiB: about 90 metric lines) long before update 200, so the kill
     * always lands mid-run. */
    args[n + 1] = d_killed;
    int fd;
    const pid_t pid = spawn_train(args, &fd);
    FILE *out = fdopen(fd, "r");
    char line[8192], ckpt[256] = "";
    while (ckpt[0] == '\0' && fgets(line, sizeof line, out)) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j != NULL, "not JSON: %s", line);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && strcmp(ev, "checkpoint") == 0)
            snprintf(ckpt, sizeof ckpt, "%s", json_string_value(json_object_get(j, "path")));
        json_decref(j);
    }
    ck_assert_msg(ckpt[0] != '\0', "no checkpoint announced");
    kill(pid, SIGKILL);
    fclose(out);
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_ptr_nonnull(strstr(ckpt, "ppo-step40.safetensors"));

    args[n + 1] = d_resumed;
    args[n + 2] = "--resume", args[n + 3] = ckpt, args[n + 4] = NULL;
    ck_assert_int_eq(run_train(args), 0);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/ppo-step200.safetensors", d_whole);
    snprintf(b, sizeof b, "%s/ppo-step200.safetensors", d_resumed);
    size_t na, nb;
    void *ba = read_all(a, &na), *bb = read_all(b, &nb);
    ck_assert_msg(na == nb && memcmp(ba, bb, na) == 0,
                  "the resumed run's final checkpoint differs from the uninterrupted run's");
    free(ba), free(bb);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

START_TEST(test_cli_ppo_killed_and_resumed_is_bit_identical) {
    fixture fx;
    fixture_init(&fx, false, false);
    const char *const none[] = {NULL};
    check_killed_and_resumed(fx.sft, fx.rm, none);
    fixture_free(&fx);
}
END_TEST

/* The same for LoRA PPO on a tiny Qwen3 (a Hugging Face directory as policy
 * and reward model): the checkpoints the CLI streams to its files (the value
 * model's adapters on the reward model's shared base) resume exactly. */
START_TEST(test_cli_ppo_lora_llama_killed_and_resumed_is_bit_identical) {
    char dir[] = "/tmp/rlhf-ppo-qwen3-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    test_write_tiny_qwen3_dir(dir, 5);
    const char *const lora[] = {"--lora-r",     "2", "--lora-alpha", "4", "--value-model",
                                "reward_model", NULL};
    check_killed_and_resumed(dir, dir, lora);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *ppo_lm_suite(void) {
    Suite *s = suite_create("ppo_lm");
    TCase *tc = tcase_create("ppo_lm");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_ppo_lm_ref_checkpoint);
    tcase_add_test(tc, test_ppo_lm_resume_is_bit_identical);
    tcase_add_test(tc, test_ppo_lm_warns_of_cut_prompts);
    tcase_add_test(tc, test_ppo_lm_value_model_from_reward_model);
    tcase_add_test(tc, test_ppo_lm_non_finite_reward_fails_after_patience);
    tcase_add_test(tc, test_ppo_lm_gradient_accumulation_matches_one_minibatch);
    tcase_add_test(tc, test_cli_ppo_killed_and_resumed_is_bit_identical);
    tcase_add_test(tc, test_cli_ppo_lora_llama_killed_and_resumed_is_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}
