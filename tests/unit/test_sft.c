/* SFT: tokenization and loss masks by hand, the LR schedule by hand, the
 * demo task's gold score, and a short run that learns the demo task. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "demo_task.h"
#include "gpt2.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "sft.h"
#include "suites.h"
#include "test_hf_fixture.h"
#include "test_util.h"

START_TEST(test_sft_tokenize_masks_the_prompt) {
    tokenizer tok;
    char err[128];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    const text_pair ex = {"ab", "cd", NULL, 0};
    int32_t ids[16];
    uint8_t mask[16];
    /* ids a b c d EOT; mask[i] trains the prediction of ids[i+1]:
     * b (prompt) no, c d EOT yes, nothing after EOT. */
    ck_assert_int_eq(sft_tokenize(&tok, &ex, false, ids, mask, 16), 5);
    const int32_t want_ids[5] = {'a', 'b', 'c', 'd', TOKENIZER_BYTES_EOT_ID};
    const uint8_t want_mask[5] = {0, 1, 1, 1, 0};
    ck_assert_int_eq(memcmp(ids, want_ids, sizeof want_ids), 0);
    ck_assert_int_eq(memcmp(mask, want_mask, sizeof want_mask), 0);
    ck_assert_int_eq(sft_tokenize(&tok, &ex, true, ids, mask, 16), 5);
    ck_assert_int_eq(mask[0], 1); /* loss on every token */
    /* Truncated at cap: no room for the EOT. */
    ck_assert_int_eq(sft_tokenize(&tok, &ex, false, ids, mask, 3), 3);
    ck_assert_int_eq(ids[2], 'c');
    tokenizer_free(&tok);
}
END_TEST

/* warm-up 10 then cosine to 0.1·lr at step 110:
 *   step 0 → lr/10, step 9 → lr, step 60 (half way) → 0.1 + 0.9·0.5 = 0.55·lr,
 *   step 110 and later → 0.1·lr; linear half way → 0.55·lr too; constant → lr. */
START_TEST(test_lr_schedule_by_hand) {
    const float lr = 1e-3f;
    ck_assert_close(lr_schedule(LR_SCHEDULE_COSINE, lr, 0, 10, 110, 0.1f), 1e-4, 0, 1e-6, "w0");
    ck_assert_close(lr_schedule(LR_SCHEDULE_COSINE, lr, 9, 10, 110, 0.1f), 1e-3, 0, 1e-6, "w9");
    ck_assert_close(lr_schedule(LR_SCHEDULE_COSINE, lr, 60, 10, 110, 0.1f), 5.5e-4, 0, 1e-6, "c");
    ck_assert_close(lr_schedule(LR_SCHEDULE_COSINE, lr, 35, 10, 110, 0.1f),
                    1e-4 + 9e-4 * 0.5 * (1 + cos(M_PI * 0.25)), 0, 1e-6, "cos quarter");
    ck_assert_close(lr_schedule(LR_SCHEDULE_COSINE, lr, 200, 10, 110, 0.1f), 1e-4, 0, 1e-6, "end");
    ck_assert_close(lr_schedule(LR_SCHEDULE_LINEAR, lr, 60, 10, 110, 0.1f), 5.5e-4, 0, 1e-6, "lin");
    ck_assert_close(lr_schedule(LR_SCHEDULE_LINEAR, lr, 35, 10, 110, 0.1f), 7.75e-4, 0, 1e-6, "lq");
    ck_assert_close(lr_schedule(LR_SCHEDULE_CONSTANT, lr, 60, 10, 110, 0.1f), 1e-3, 0, 1e-6, "k");
    ck_assert_int_eq(lr_schedule_from_name("cosine"), LR_SCHEDULE_COSINE);
    ck_assert_int_eq(lr_schedule_from_name("step"), -1);
}
END_TEST

START_TEST(test_demo_task_gold_score) {
    ck_assert_double_eq(demo_task_gold_score("Describe the cat.", "The cat is warm and kind."), 2);
    ck_assert_double_eq(demo_task_gold_score("Describe the cat.", "The cat is grim, old and kind."),
                        0);
    /* wrong subject or form: -2 */
    ck_assert_double_eq(demo_task_gold_score("Describe the cat.", "The dog is warm and kind."), 0);
    ck_assert_double_eq(demo_task_gold_score("What is the ocean like?", "warm warm warm"), 1);
    /* whole words only: "kindle" is not "kind" */
    ck_assert_double_eq(demo_task_gold_score("Describe the lamp.", "The lamp is kindle."), 0);
    /* generated examples are well-formed and deterministic per seed */
    rng_state a, b;
    rng_seed(&a, 5, 0);
    rng_seed(&b, 5, 0);
    for (int i = 0; i < 100; i++) {
        char p1[128], r1[256], p2[128], r2[256];
        demo_task_example(&a, p1, sizeof p1, r1, sizeof r1);
        demo_task_example(&b, p2, sizeof p2, r2, sizeof r2);
        ck_assert_str_eq(r1, r2);
        const double s = demo_task_gold_score(p1, r1);
        ck_assert_msg(s >= -3 && s <= 3, "'%s' -> '%s' scored %g", p1, r1, s);
    }
}
END_TEST

/* ---- a short run on the demo task ------------------------------------------------- */

typedef struct sft_recording {
    int steps, stop_after; /* stop_after 0: never */
    double first_loss, last_eval;
    int samples, checkpoints;
    void *last_checkpoint;
    size_t last_checkpoint_bytes;
} sft_recording;

static int rec_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    sft_recording *r = ctx;
    r->steps++;
    for (int i = 0; i < n; i++) {
        if (step == 1 && strcmp(m[i].name, "loss") == 0)
            r->first_loss = m[i].value;
        if (strcmp(m[i].name, "eval_loss") == 0)
            r->last_eval = m[i].value;
    }
    return 0;
}

static int rec_event(void *ctx, sink_level level, const char *code, const char *message,
                     const sink_metric *data, int n) {
    sft_recording *r = ctx;
    (void)level, (void)message, (void)data, (void)n;
    r->samples += strcmp(code, "sample") == 0;
    return 0;
}

static int rec_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    sft_recording *r = ctx;
    (void)step;
    r->checkpoints++;
    free(r->last_checkpoint);
    r->last_checkpoint = malloc(n);
    memcpy(r->last_checkpoint, bytes, n);
    r->last_checkpoint_bytes = n;
    return 0;
}

static bool rec_should_stop(void *ctx) {
    sft_recording *r = ctx;
    return r->stop_after > 0 && r->steps >= r->stop_after;
}

/* From scratch, a 2-layer model learns the demo task's format: held-out
 * loss falls from ~ln(257) to under 1 nat/token, and its greedy
 * answers to unseen prompts have the gold form "The <subject> is ...". */
START_TEST(test_sft_learns_the_demo_task) {
    enum { N = 600 };
    static char prompts[N][128], responses[N][256];
    text_pair ex[N];
    rng_state r;
    rng_seed(&r, 9, 0);
    for (int i = 0; i < N; i++) {
        demo_task_example(&r, prompts[i], 128, responses[i], 256);
        ex[i] = (text_pair){prompts[i], responses[i], NULL, 0};
    }
    tokenizer tok;
    char err[256];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    sft_config cfg;
    hparams_set_defaults(&sft_hparams, &cfg);
    cfg.n_layer = 2, cfg.d_model = 64, cfg.n_head = 4, cfg.context = 64;
    cfg.max_steps = 300, cfg.batch_size = 16, cfg.learning_rate = 3e-3, cfg.warmup_steps = 10;
    cfg.eval_interval = 0, cfg.sample_interval = 0;
    const sft_inputs in = {ex, N, NULL, 0, &tok, NULL, NULL, NULL, NULL};
    sft_recording rec = {0};
    train_sink sink = {&rec, rec_metrics, rec_event, rec_checkpoint, rec_should_stop,
                       NULL, NULL,        NULL};
    sft_result res;
    ck_assert_msg(sft_train(&cfg, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(res.steps, 300);
    ck_assert_double_gt(rec.first_loss, 4.0);
    ck_assert_msg(res.eval_loss < 1.0, "held-out loss %.3f after 300 steps", res.eval_loss);
    ck_assert_int_eq(rec.samples, 2);
    ck_assert_int_eq(rec.checkpoints, 1);

    /* The checkpoint reloads, and greedy answers to fresh prompts are well-formed. */
    gpt2_model m;
    ck_assert_msg(model_open_bytes(rec.last_checkpoint, rec.last_checkpoint_bytes, NULL, &m, NULL,
                                   err, sizeof err) == 0,
                  "%s", err);
    int well_formed = 0;
    rng_state fresh;
    rng_seed(&fresh, 777, 0);
    for (int i = 0; i < 10; i++) {
        char prompt[128], unused[256], answer[256];
        demo_task_example(&fresh, prompt, sizeof prompt, unused, sizeof unused);
        int32_t ids[128], out[64], len;
        const int64_t np = tokenizer_encode(&tok, prompt, strlen(prompt), ids, 128, false);
        const gpt2_sample_config sc = {0.0f, 0, 1.0f, (int)(64 - np), tok.eot_id};
        ck_assert_int_eq(
            gpt2_generate(&m, ids, NULL, 1, (int)np, &sc, &fresh, out, &len, err, sizeof err), 0);
        if (len > 0 && out[len - 1] == tok.eot_id)
            len--;
        const int64_t k = tokenizer_decode(&tok, out, (size_t)len, answer, sizeof answer - 1);
        answer[k < 0 ? 0 : k] = '\0';
        well_formed += demo_task_gold_score(prompt, answer) > -2.5; /* has "The <subject> is" */
    }
    ck_assert_msg(well_formed >= 8, "only %d of 10 greedy answers well-formed", well_formed);
    gpt2_free(&m);
    free(rec.last_checkpoint);
    tokenizer_free(&tok);
}
END_TEST

static void run_sft(const sft_config *cfg, const sft_inputs *in, sft_recording *rec) {
    train_sink sink = {rec,  rec_metrics, rec_event, rec_checkpoint, rec_should_stop,
                       NULL, NULL,        NULL};
    char err[512];
    ck_assert_msg(sft_train(cfg, in, &sink, NULL, err, sizeof err) == 0, "%s", err);
}

/* Stopped after k steps and resumed from the checkpoint it wrote, a run ends
 * with a final checkpoint byte-identical to the uninterrupted run's: mid-epoch
 * (k = 17) and exactly at an epoch boundary (k = 24: 190 examples / 8). */
START_TEST(test_sft_resume_is_bit_identical) {
    enum { N = 200 };
    static char prompts[N][128], responses[N][256];
    text_pair ex[N];
    rng_state r;
    rng_seed(&r, 12, 0);
    for (int i = 0; i < N; i++) {
        demo_task_example(&r, prompts[i], 128, responses[i], 256);
        ex[i] = (text_pair){prompts[i], responses[i], NULL, 0};
    }
    tokenizer tok;
    char err[512];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    sft_config cfg;
    hparams_set_defaults(&sft_hparams, &cfg);
    cfg.n_layer = 1, cfg.d_model = 32, cfg.n_head = 2, cfg.context = 64, cfg.batch_size = 8;
    cfg.max_steps = 40, cfg.warmup_steps = 5, cfg.eval_interval = 10, cfg.sample_interval = 15;
    sft_inputs in = {ex, N, NULL, 0, &tok, NULL, NULL, NULL, NULL};
    sft_recording whole = {0};
    run_sft(&cfg, &in, &whole);
    ck_assert_int_eq(whole.steps, 40);

    /* The same run driven step by step through a session, with evals and a
     * checkpoint with state thrown in where sft_train has none: the same
     * final eval loss and the same final checkpoint, byte for byte. */
    sft_recording driven = {0};
    train_sink driven_sink = {&driven, rec_metrics, rec_event, rec_checkpoint,
                              NULL,    NULL,        NULL,      NULL};
    sft_session *session;
    ck_assert_msg(sft_session_init(&session, &cfg, &in, &driven_sink, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(sft_session_total_steps(session), 40);
    ck_assert(sft_session_has_eval(session));
    for (int64_t i = 0; i < 40; i++) {
        sft_step_result sr;
        ck_assert_msg(sft_session_step(session, &sr, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(sr.step, i + 1);
        ck_assert_int_eq(sft_session_steps_done(session), i + 1);
        ck_assert(isfinite(sr.loss) && sr.tokens > 0);
        if (i % 7 == 3)
            ck_assert(isfinite(sft_session_eval(session)));
        if (i == 20)
            ck_assert_int_eq(sft_session_checkpoint(session, true), 0);
    }
    ck_assert_double_eq(sft_session_eval(session), whole.last_eval);
    ck_assert_int_eq(sft_session_checkpoint(session, false), 0);
    sft_session_free(session);
    ck_assert_int_eq(driven.last_checkpoint_bytes, whole.last_checkpoint_bytes);
    ck_assert_msg(
        memcmp(driven.last_checkpoint, whole.last_checkpoint, whole.last_checkpoint_bytes) == 0,
        "the session-driven run's final checkpoint differs from sft_train's");
    free(driven.last_checkpoint);

    const int stops[2] = {17, 24};
    for (int k = 0; k < 2; k++) {
        sft_recording first = {.stop_after = stops[k]};
        run_sft(&cfg, &in, &first);
        ck_assert_int_eq(first.steps, stops[k]);
        char path[] = "/tmp/rlhf-resume-XXXXXX";
        const int fd = mkstemp(path);
        ck_assert_int_eq(write(fd, first.last_checkpoint, first.last_checkpoint_bytes),
                         (ssize_t)first.last_checkpoint_bytes);
        close(fd);
        in.resume_checkpoint = path;
        sft_recording rest = {0};
        run_sft(&cfg, &in, &rest);
        ck_assert_int_eq(rest.steps, 40 - stops[k]);
        ck_assert_int_eq(rest.last_checkpoint_bytes, whole.last_checkpoint_bytes);
        ck_assert_msg(
            memcmp(rest.last_checkpoint, whole.last_checkpoint, whole.last_checkpoint_bytes) == 0,
            "resumed at step %d: final weights differ", stops[k]);
        /* Other hyperparameters cannot resume this checkpoint. */
        sft_config other = cfg;
        other.learning_rate *= 2;
        train_sink sink = {&rest, rec_metrics, rec_event, rec_checkpoint, NULL, NULL, NULL, NULL};
        ck_assert_int_eq(sft_train(&other, &in, &sink, NULL, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "hyperparameters differ"));
        unlink(path);
        in.resume_checkpoint = NULL;
        free(first.last_checkpoint);
        free(rest.last_checkpoint);
    }
    /* A finished run's final checkpoint is weights only: it cannot resume. */
    char path[] = "/tmp/rlhf-resume-XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_eq(write(fd, whole.last_checkpoint, whole.last_checkpoint_bytes),
                     (ssize_t)whole.last_checkpoint_bytes);
    close(fd);
    in.resume_checkpoint = path;
    train_sink sink = {&whole, rec_metrics, rec_event, rec_checkpoint, NULL, NULL, NULL, NULL};
    ck_assert_int_eq(sft_train(&cfg, &in, &sink, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no training state"));
    unlink(path);
    free(whole.last_checkpoint);
    tokenizer_free(&tok);
}
END_TEST

/* Text a chat template rendered (a job's conversational prompt, ranking or
 * preference pair) is tokenized as apply_chat_template does: its special
 * tokens are tokens and no post-processor <bos> (the tiny Qwen3 fixture's
 * tokenizer.json puts one first); plain text gets <bos> and its special
 * tokens' text stays text. */
START_TEST(test_rendered_text_gets_no_bos) {
    char dir[] = "/tmp/rlhf-test-rendered-XXXXXX", err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    test_write_tiny_qwen3_dir(dir, 3);
    tokenizer tok;
    ck_assert_msg(tokenizer_load_hf(&tok, dir, err, sizeof err) == 0, "%s", err);
    const char *prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    int32_t chat[64], plain[64], ids[128];
    uint8_t mask[128];
    const int64_t nc = tokenizer_encode(&tok, prompt, strlen(prompt), chat, 64, true);
    const int64_t np = tokenizer_encode_prompt(&tok, prompt, strlen(prompt), plain, 64, false);
    ck_assert_int_gt(nc, 0);
    ck_assert_int_eq(plain[0], 262);
    ck_assert_int_ne(chat[0], 262);
    int32_t got[64];
    ck_assert_int_eq(tokenizer_encode_input(&tok, prompt, strlen(prompt), got, 64, true), nc);
    ck_assert(memcmp(got, chat, sizeof *got * (size_t)nc) == 0);
    ck_assert_int_eq(tokenizer_encode_input(&tok, prompt, strlen(prompt), got, 64, false), np);
    ck_assert(memcmp(got, plain, sizeof *got * (size_t)np) == 0);
    /* the reward model's and DPO's rows (sft_tokenize_text) */
    const text_pair ex = {prompt, "hello<|im_end|>", NULL, 0};
    const int64_t n = sft_tokenize_text(&tok, &ex, true, true, ids, mask, 128);
    ck_assert_int_gt(n, nc);
    ck_assert(memcmp(ids, chat, sizeof *ids * (size_t)nc) == 0);
    ck_assert_int_gt(sft_tokenize_text(&tok, &ex, true, false, ids, mask, 128), np);
    ck_assert_int_eq(ids[0], 262);
    tokenizer_free(&tok);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A chat example through the tiny Qwen3 directory's ChatML template: the
 * trained targets are exactly the assistant turns' content and <|im_end|>
 * (not the "\n" after it, nor the header; no <bos>: ChatML writes none), and
 * with TRL's conversational rows only the completion's turns. */
START_TEST(test_sft_tokenize_chat_trains_assistant_turns) {
    char dir[] = "/tmp/rlhf-test-chat-XXXXXX", err[512], path[4200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    test_write_tiny_qwen3_dir(dir, 3);
    tokenizer tok;
    ck_assert_msg(tokenizer_load_hf(&tok, dir, err, sizeof err) == 0, "%s", err);
    chat_template tpl;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ck_assert_msg(chat_template_load(&tpl, path, NULL, err, sizeof err) == 0, "%s", err);
    const char *msgs = "[{\"role\":\"user\",\"content\":\"hi\"},"
                       "{\"role\":\"assistant\",\"content\":\"hello\"},"
                       "{\"role\":\"user\",\"content\":\"well\"},"
                       "{\"role\":\"assistant\",\"content\":\"low\"}]";
    /* the rendered text, cut where each trained span starts and ends */
    const char *pieces[] = {
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "hello<|im_end|>",
        "\n<|im_start|>user\nwell<|im_end|>\n<|im_start|>assistant\n", "low<|im_end|>", "\n"};
    /* the fixture's tokenizer.json puts <bos> first, but ChatML does not
     * write it and apply_chat_template runs no post-processor: none */
    int32_t want[128];
    int trained_from[5], n_want = 0;
    for (int k = 0; k < 5; k++) {
        trained_from[k] = n_want;
        n_want += (int)tokenizer_encode(&tok, pieces[k], strlen(pieces[k]), want + n_want,
                                        (size_t)(128 - n_want), true);
    }
    for (int first = 0; first < 3; first += 2) {
        const text_pair ex = {"", "", msgs, first};
        int32_t ids[128];
        uint8_t mask[128];
        const int64_t n =
            sft_tokenize_chat(&tok, &tpl, &ex, false, ids, mask, 128, err, sizeof err);
        ck_assert_msg(n == n_want, "%lld ids, want %d (%s)", (long long)n, n_want, err);
        for (int i = 0; i < n_want; i++) {
            ck_assert_int_eq(ids[i], want[i]);
            /* target i + 1 trains when it is in piece 1 (first 0 only) or piece 3 */
            const int t = i + 1;
            const bool in1 = t >= trained_from[1] && t < trained_from[2];
            const bool in3 = t >= trained_from[3] && t < trained_from[4];
            ck_assert_msg(mask[i] == ((in1 && first == 0) || in3), "first %d: target %d", first, t);
        }
    }
    const text_pair no_chat = {"", "", msgs, 0};
    int32_t ids[8];
    uint8_t mask[8];
    ck_assert_int_eq(sft_tokenize_chat(&tok, NULL, &no_chat, false, ids, mask, 8, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "chat template"));
    chat_template_free(&tpl);
    tokenizer_free(&tok);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *sft_suite(void) {
    Suite *s = suite_create("sft");
    TCase *tc = tcase_create("sft");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_sft_tokenize_masks_the_prompt);
    tcase_add_test(tc, test_sft_tokenize_chat_trains_assistant_turns);
    tcase_add_test(tc, test_rendered_text_gets_no_bos);
    tcase_add_test(tc, test_lr_schedule_by_hand);
    tcase_add_test(tc, test_demo_task_gold_score);
    tcase_add_test(tc, test_sft_learns_the_demo_task);
    tcase_add_test(tc, test_sft_resume_is_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}
