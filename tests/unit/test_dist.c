/* Data parallelism (engine/dist.h, train/dist_job.h, train/dist_mpi.c):
 * the sharding and seed rules by hand, the replica check against a fake
 * two-rank group whose ranks disagree, the job packet rank 0 broadcasts
 * (round trip, damaged packets), and — when rlhf-train is built with MPI —
 * real 2-rank runs under `mpirun --oversubscribe -np 2` on this machine
 * whose loss curves match a 1-rank run with the same global batch. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "dist.h"
#include "dist_job.h"
#include "gpt2.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "worker_launch.h"
#include "test_util.h"

START_TEST(test_dist_shards_tile_the_batch_in_order) {
    /* 10 items over 3 ranks: [0,3) [3,6) [6,10) — sizes differ by at most one */
    const int64_t want[3][2] = {{0, 3}, {3, 6}, {6, 10}};
    for (int r = 0; r < 3; r++) {
        int64_t lo, hi;
        dist_shard(10, r, 3, &lo, &hi);
        ck_assert_int_eq(lo, want[r][0]);
        ck_assert_int_eq(hi, want[r][1]);
    }
    /* fewer items than ranks: some shards are empty, none overlap */
    int64_t next = 0;
    for (int r = 0; r < 4; r++) {
        int64_t lo, hi;
        dist_shard(2, r, 4, &lo, &hi);
        ck_assert_int_eq(lo, next);
        ck_assert_int_ge(hi, lo);
        next = hi;
    }
    ck_assert_int_eq(next, 2);
    /* rank 0 samples with the job's seed, rank r with seed + r·2654435761 */
    ck_assert_uint_eq(dist_sample_seed(7, 0), 7);
    ck_assert_uint_eq(dist_sample_seed(7, 2), 7 + 2 * 2654435761ull);
}
END_TEST

START_TEST(test_dist_single_process_collectives_leave_data_alone) {
    float x[3] = {1.5f, -2.0f, 3.25f};
    double y[2] = {4.0, 5.0};
    ck_assert_int_eq(dist_allreduce_sum_f32(NULL, x, 3), 0);
    ck_assert_int_eq(dist_allreduce_mean_f32(NULL, x, 3), 0);
    ck_assert_int_eq(dist_allreduce_sum_f64(NULL, y, 2), 0);
    ck_assert(x[0] == 1.5f && x[1] == -2.0f && x[2] == 3.25f && y[0] == 4.0 && y[1] == 5.0);
    uint64_t mine = 42, all = 0;
    ck_assert_int_eq(dist_allgather(NULL, &mine, &all, sizeof mine), 0);
    ck_assert_uint_eq(all, 42);
    ck_assert_int_eq(dist_rank(NULL), 0);
    ck_assert_int_eq(dist_size(NULL), 1);
    ck_assert(!dist_should_stop(NULL, NULL));
    char err[256];
    ck_assert_int_eq(dist_check_replicas(NULL, x, 3, err, sizeof err), 0);
}
END_TEST

/* A fake rank 0 of two: "rank 1" holds the same buffer with one word
 * changed (or not), and the mean of a sum is checked by hand. */
typedef struct fake_group {
    const float *other; /* rank 1's parameters */
    int64_t n;
    float other_x[3];
} fake_group;

static int fake_allgather(void *ctx, const void *mine, void *all, size_t n_bytes) {
    fake_group *g = ctx;
    memcpy(all, mine, n_bytes);
    const uint64_t theirs = dist_checksum_f32(g->other, g->n);
    ck_assert_uint_eq(n_bytes, sizeof theirs);
    memcpy((char *)all + n_bytes, &theirs, n_bytes);
    return 0;
}

static int fake_allreduce_f32(void *ctx, float *x, int64_t n) {
    fake_group *g = ctx;
    for (int64_t i = 0; i < n; i++)
        x[i] += g->other_x[i];
    return 0;
}

START_TEST(test_dist_replica_check_names_a_diverged_rank) {
    float params[64], copy[64];
    for (int i = 0; i < 64; i++)
        params[i] = copy[i] = 0.01f * (float)i - 0.3f;
    fake_group g = {copy, 64, {1.0f, 2.0f, 3.0f}};
    const dist_comm d = {.rank = 0,
                         .size = 2,
                         .ctx = &g,
                         .allgather = fake_allgather,
                         .allreduce_sum_f32 = fake_allreduce_f32};
    char err[256] = "";
    ck_assert_int_eq(dist_check_replicas(&d, params, 64, err, sizeof err), 0);
    /* the lowest mantissa bit of one parameter on rank 1 */
    uint32_t w;
    memcpy(&w, &copy[37], 4);
    w ^= 1u;
    memcpy(&copy[37], &w, 4);
    ck_assert_int_eq(dist_check_replicas(&d, params, 64, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "rank 1") != NULL && strstr(err, "diverged") != NULL, "%s", err);
    /* two words swapped: a plain sum would not notice, the checksum does */
    memcpy(copy, params, sizeof copy);
    copy[3] = params[4], copy[4] = params[3];
    ck_assert_int_eq(dist_check_replicas(&d, params, 64, err, sizeof err), -1);
    /* mean over two ranks: (x + other) / 2 */
    float x[3] = {3.0f, 0.0f, -1.0f};
    ck_assert_int_eq(dist_allreduce_mean_f32(&d, x, 3), 0);
    ck_assert(x[0] == 2.0f && x[1] == 1.0f && x[2] == 1.0f);
}
END_TEST

static char *temp_file_with(const char *content, size_t n) {
    char *path = strdup("/tmp/rlhf-test-dist-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, content, n), (ssize_t)n);
    close(fd);
    return path;
}

static char *read_whole(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)size + 1);
    *n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    return buf;
}

START_TEST(test_dist_job_packet_round_trip) {
    const job_type *sft = job_type_find("sft");
    sft_config cfg;
    hparams_set_defaults(sft->hparams, &cfg);
    cfg.batch_size = 7;
    cfg.learning_rate = 3e-4;
    snprintf(cfg.lr_schedule, sizeof cfg.lr_schedule, "linear");
    const text_pair train[2] = {{"p1", "r1", NULL, 0},
                                {"prompt \xc3\xa9", "", "[{\"role\":\"user\"}]", 2}};
    const text_pair eval[1] = {{"ep", "er", NULL, 0}};
    ranking rk = {"rp", 3, {"a", "bb", "ccc"}, {1, 0, 1}, 0.5f, "[]", false};
    const char ckpt[] = "not really a checkpoint\0with a NUL inside";
    char *init = temp_file_with(ckpt, sizeof ckpt);
    char tokdir[] = "/tmp/rlhf-test-dist-tok-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tokdir));
    char path[128];
    snprintf(path, sizeof path, "%s/encoder.json", tokdir);
    FILE *f = fopen(path, "w");
    fputs("{\"a\": 0}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/vocab.bpe", tokdir);
    f = fopen(path, "w");
    fputs("#version: 0.2\n", f);
    fclose(f);
    const job_inputs in = {.train = train,
                           .n_train = 2,
                           .eval = eval,
                           .n_eval = 1,
                           .rankings = &rk,
                           .n_rankings = 1,
                           .init_checkpoint = init,
                           .tokenizer_dir = tokdir};
    unsigned char *bytes = NULL;
    size_t n = 0;
    char err[512] = "";
    ck_assert_int_eq(dist_job_encode(sft, &cfg, 3, &in, &bytes, &n, err, sizeof err), 0);

    const job_type *type = NULL;
    void *got_cfg = NULL;
    int threads = 0;
    job_inputs out;
    dist_job_decoded *dec =
        dist_job_decode(bytes, n, &type, &got_cfg, &threads, &out, err, sizeof err);
    ck_assert_msg(dec != NULL, "%s", err);
    ck_assert_ptr_eq(type, sft);
    ck_assert_int_eq(threads, 3);
    ck_assert_int_eq(memcmp(got_cfg, &cfg, sizeof cfg), 0);
    ck_assert_int_eq(out.n_train, 2);
    ck_assert_str_eq(out.train[1].prompt, "prompt \xc3\xa9");
    ck_assert_str_eq(out.train[1].response, "");
    ck_assert_ptr_null(out.train[0].messages);
    ck_assert_str_eq(out.train[1].messages, "[{\"role\":\"user\"}]"); /* chat rows too */
    ck_assert_int_eq(out.train[1].first_trained, 2);
    ck_assert_ptr_nonnull(out.eval);
    ck_assert_str_eq(out.eval[0].response, "er");
    ck_assert_int_eq(out.n_rankings, 1);
    ck_assert_int_eq(out.rankings[0].k, 3);
    ck_assert_str_eq(out.rankings[0].responses[2], "ccc");
    ck_assert_int_eq(out.rankings[0].rank[1], 0);
    ck_assert(out.rankings[0].margin == 0.5f);
    ck_assert_str_eq(out.rankings[0].prompt_messages, "[]");
    ck_assert_ptr_null(out.eval_rankings);
    ck_assert_ptr_null(out.resume_checkpoint);
    ck_assert_ptr_null(out.reward_checkpoint);
    /* files arrive as files with the same bytes; the tokenizer as a directory */
    size_t got_n;
    char *got = read_whole(out.init_checkpoint, &got_n);
    ck_assert_uint_eq(got_n, sizeof ckpt);
    ck_assert_int_eq(memcmp(got, ckpt, sizeof ckpt), 0);
    free(got);
    snprintf(path, sizeof path, "%s/vocab.bpe", out.tokenizer_dir);
    got = read_whole(path, &got_n);
    ck_assert_str_eq(got, "#version: 0.2\n");
    free(got);
    char received_dir[128];
    snprintf(received_dir, sizeof received_dir, "%s", out.tokenizer_dir);
    dist_job_decoded_free(dec);
    struct stat sb;
    ck_assert_int_ne(stat(received_dir, &sb), 0); /* cleaned up */

    /* Every truncation of the packet is refused with a message, never a crash. */
    for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
        err[0] = '\0';
        dec = dist_job_decode(bytes, cut, &type, &got_cfg, &threads, &out, err, sizeof err);
        ck_assert_msg(dec == NULL, "a packet cut at %zu of %zu bytes was accepted", cut, n);
        ck_assert_msg(err[0] != '\0', "no message for a cut at %zu", cut);
    }
    /* A file rank 0 cannot read is named, and nothing is encoded. */
    const job_inputs missing = {.init_checkpoint = "/nonexistent/x.safetensors"};
    ck_assert_int_eq(dist_job_encode(sft, &cfg, 1, &missing, &bytes, &n, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/x.safetensors") != NULL, "%s", err);

    /* A model directory as the init model (a registered model's lineage)
     * arrives as a directory with every file; as the tokenizer directory,
     * without its weights. */
    free(bytes);
    snprintf(path, sizeof path, "%s/model.safetensors", tokdir);
    f = fopen(path, "w");
    fputs("weights", f);
    fclose(f);
    const job_inputs from_dir = {.init_checkpoint = tokdir, .tokenizer_dir = tokdir};
    ck_assert_int_eq(dist_job_encode(sft, &cfg, 1, &from_dir, &bytes, &n, err, sizeof err), 0);
    dec = dist_job_decode(bytes, n, &type, &got_cfg, &threads, &out, err, sizeof err);
    ck_assert_msg(dec != NULL, "%s", err);
    ck_assert_str_ne(out.init_checkpoint, tokdir);
    const char *const files[] = {"encoder.json", "vocab.bpe", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", out.init_checkpoint, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "%s did not arrive", files[i]);
        snprintf(path, sizeof path, "%s/%s", out.tokenizer_dir, files[i]);
        ck_assert_int_eq(access(path, R_OK) == 0, i < 2);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", out.init_checkpoint);
    got = read_whole(path, &got_n);
    ck_assert_str_eq(got, "weights");
    free(got);
    snprintf(received_dir, sizeof received_dir, "%s", out.init_checkpoint);
    dist_job_decoded_free(dec);
    ck_assert_int_ne(stat(received_dir, &sb), 0); /* cleaned up */

    free(bytes);
    unlink(init);
    free(init);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tokdir, files[i]);
        unlink(path);
    }
    rmdir(tokdir);
}
END_TEST

/* ---- real ranks under mpirun ---------------------------------------------- */

/* Runs argv with stdout to out_path and stderr to err_path; the exit code. */
static int run_to_files(char *const *argv, const char *out_path, const char *err_path) {
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int errfd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(out, 1), dup2(errfd, 2);
        /* mpirun refuses root without these; containers often forbid the
         * cross-memory-attach fast path; Open MPI's own allocations are not
         * ours to leak-check under ASan. */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* "mpi" of `rlhf-train features`, or NULL when built without MPI. */
static bool rlhf_train_has_mpi(const char *dir) {
    char exe[4200], out[4300], errp[4300];
    snprintf(exe, sizeof exe, "%s/rlhf-train", test_build_dir());
    snprintf(out, sizeof out, "%s/features.json", dir);
    snprintf(errp, sizeof errp, "%s/features.err", dir);
    char *argv[] = {exe, "features", NULL};
    ck_assert_int_eq(run_to_files(argv, out, errp), 0);
    json_error_t jerr;
    json_t *j = json_load_file(out, 0, &jerr);
    ck_assert_ptr_nonnull(j);
    const bool mpi = json_is_string(json_object_get(j, "mpi"));
    json_decref(j);
    return mpi;
}

/* The metrics the 1-vs-2-rank comparisons read: sft's and reward's. */
static const char *const loss_keys[] = {"loss", "eval_loss", "accuracy", "eval_accuracy", NULL};

/* Each metric named in keys (NULL-terminated) of the metric lines of a JSONL
 * output, in order, as name@step -> value into names/values; returns the
 * count. Also reports the config line's "ranks" (1 when absent). */
static int read_curve(const char *path, const char *const *keys, char names[][48], double *values,
                      int cap, int *ranks) {
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192];
    int n = 0;
    *ranks = 1;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(j != NULL, "%s: not JSON: %s", path, line);
        if (json_is_string(json_object_get(j, "event")) &&
            strcmp(json_string_value(json_object_get(j, "event")), "config") == 0 &&
            json_object_get(j, "ranks"))
            *ranks = (int)json_integer_value(json_object_get(j, "ranks"));
        const json_int_t step = json_integer_value(json_object_get(j, "step"));
        for (int k = 0; keys[k] && json_object_get(j, "event") == NULL; k++) {
            json_t *v = json_object_get(j, keys[k]);
            if (v && n < cap) {
                snprintf(names[n], 48, "%s@%lld", keys[k], (long long)step);
                values[n++] = json_number_value(v);
            }
        }
        json_decref(j);
    }
    fclose(f);
    return n;
}

/* `[mpirun -np 2] rlhf-train ARGS [extra] --checkpoint-dir ckdir --quiet`
 * with stdout to ckdir/out.jsonl, stderr to ckdir/err.txt; the exit code. */
static int run_ranks(int ranks, char *const *args, const char *extra, const char *ckdir) {
    char exe[4200], out[1300], errp[1300], extra_copy[1300];
    snprintf(exe, sizeof exe, "%s/rlhf-train", test_build_dir());
    snprintf(out, sizeof out, "%s/out.jsonl", ckdir);
    snprintf(errp, sizeof errp, "%s/err.txt", ckdir);
    char *argv[64];
    int k = 0;
    if (ranks == 2) {
        static char *const mpirun[] = {"mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2",
                                       NULL};
        for (int j = 0; mpirun[j]; j++)
            argv[k++] = mpirun[j];
    }
    argv[k++] = exe;
    for (int j = 0; args[j]; j++)
        argv[k++] = args[j];
    if (extra != NULL) { /* "--flag value" */
        snprintf(extra_copy, sizeof extra_copy, "%s", extra);
        char *space = strchr(extra_copy, ' ');
        *space = '\0';
        argv[k++] = extra_copy;
        argv[k++] = space + 1;
    }
    argv[k++] = "--checkpoint-dir";
    argv[k++] = (char *)ckdir;
    argv[k++] = "--quiet";
    argv[k] = NULL;
    return run_to_files(argv, out, errp);
}

static void expect_exit(int code, int want, const char *ckdir, const char *what) {
    if (code != want) {
        char errp[1300];
        snprintf(errp, sizeof errp, "%s/err.txt", ckdir);
        size_t n;
        char *e = read_whole(errp, &n);
        ck_abort_msg("%s exited %d, not %d: %s", what, code, want, e);
    }
}

/* Runs `rlhf-train ARGS` as one process and under mpirun -np 2 (in
 * dir/NAME-1 and dir/NAME-2) and checks that the curves of keys (at least
 * min_points values) and the final weights agree. */
static void compare_one_and_two_ranks(const char *dir, const char *name, char *const *args,
                                      const char *checkpoint, const char *const *keys,
                                      int min_points) {
    char out[2][1300], ckdir[2][600];
    for (int ranks = 1; ranks <= 2; ranks++) {
        const int i = ranks - 1;
        snprintf(ckdir[i], sizeof ckdir[i], "%s/%s-%d", dir, name, ranks);
        ck_assert_int_eq(mkdir(ckdir[i], 0700), 0);
        snprintf(out[i], sizeof out[i], "%s/out.jsonl", ckdir[i]);
        expect_exit(run_ranks(ranks, args, NULL, ckdir[i]), 0, ckdir[i], name);
    }
    char names[2][128][48];
    double values[2][128];
    int ranks[2];
    const int n1 = read_curve(out[0], keys, names[0], values[0], 128, &ranks[0]);
    const int n2 = read_curve(out[1], keys, names[1], values[1], 128, &ranks[1]);
    ck_assert_int_eq(ranks[0], 1);
    ck_assert_int_eq(ranks[1], 2); /* both ranks ran, one reported */
    ck_assert_int_ge(n1, min_points);
    ck_assert_int_eq(n1, n2);
    for (int i = 0; i < n1; i++) {
        ck_assert_str_eq(names[0][i], names[1][i]);
        /* the same sums in another order: float rounding, no more */
        ck_assert_close(values[1][i], values[0][i], 1e-6, 1e-5, names[0][i]);
    }
    /* one checkpoint, written by rank 0, with the same weights */
    char path[2][1300];
    gpt2_model m[2];
    for (int i = 0; i < 2; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", ckdir[i], checkpoint);
        load_checkpoint_model(&m[i], path[i], true); /* a head, if any, is compared too */
    }
    ck_assert_int_eq(m[0].num_params, m[1].num_params);
    /* Not element-wise: a gradient that is zero in exact arithmetic (the
     * key bias: softmax ignores a constant shift) is rounding noise, which
     * Adam's g/sqrt(v) turns into steps of ±lr that differ between runs. */
    double diff2 = 0.0, norm2 = 0.0;
    for (int64_t j = 0; j < m[0].num_params; j++) {
        const double d = (double)m[0].param_memory[j] - m[1].param_memory[j];
        diff2 += d * d;
        norm2 += (double)m[0].param_memory[j] * m[0].param_memory[j];
    }
    ck_assert_msg(sqrt(diff2 / norm2) < 1e-2, "%s: weights differ by %g (relative L2)", name,
                  sqrt(diff2 / norm2));
    gpt2_free(&m[0]);
    gpt2_free(&m[1]);
}

START_TEST(test_dist_two_ranks_match_one_rank) {
    char dir[] = "/tmp/rlhf-test-mpi-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    if (!rlhf_train_has_mpi(dir)) {
        test_skip("rlhf-train was built without MPI (make deps && make MPI=1)");
        return;
    }
    /* SFT: 37 examples, micro-batches of 5 (odd: the ranks' shards differ in
     * size and in tokens) accumulated twice, and held-out eval. */
    char sft_data[4200];
    snprintf(sft_data, sizeof sft_data, "%s/sft.jsonl", dir);
    FILE *f = fopen(sft_data, "w");
    for (int i = 0; i < 37; i++)
        fprintf(f, "{\"prompt\": \"Q%d %.*s?\", \"response\": \"A %.*s.\"}\n", i, 1 + i % 7,
                "abcdefghij", 1 + (i * 3) % 9, "klmnopqrstu");
    fclose(f);
    char *const sft_args[] = {"sft",    "--data",
                              sft_data, "--n-layer",
                              "1",      "--d-model",
                              "16",     "--n-head",
                              "2",      "--context",
                              "32",     "--batch-size",
                              "5",      "--grad-accum-steps",
                              "2",      "--max-steps",
                              "5",      "--eval-interval",
                              "2",      "--eval-fraction",
                              "0.2",    "--sample-interval",
                              "0",      "--learning-rate",
                              "3e-3",   "--warmup-steps",
                              "0",      NULL};
    compare_one_and_two_ranks(dir, "sft", sft_args, "sft-step5.safetensors", loss_keys, 6);

    /* Reward: 3-way rankings from scratch, 7 per step (shards of 3 and 4). */
    char rk_data[4200];
    snprintf(rk_data, sizeof rk_data, "%s/rankings.jsonl", dir);
    f = fopen(rk_data, "w");
    for (int i = 0; i < 30; i++)
        fprintf(f,
                "{\"prompt\": \"P%d\", \"responses\": [\"%.*s\", \"%.*s\", \"x%d\"], "
                "\"ranks\": [%d, %d, 2]}\n",
                i, 1 + i % 5, "yyyyyy", 2 + i % 3, "zzzzz", i, i % 2, 1 - i % 2);
    fclose(f);
    char *const rm_args[] = {"reward", "--data",
                             rk_data,  "--n-layer",
                             "1",      "--d-model",
                             "16",     "--n-head",
                             "2",      "--context",
                             "32",     "--batch-size",
                             "7",      "--max-steps",
                             "4",      "--eval-interval",
                             "2",      "--eval-fraction",
                             "0.2",    "--norm-samples",
                             "0",      "--learning-rate",
                             "3e-3",   "--warmup-steps",
                             "0",      NULL};
    compare_one_and_two_ranks(dir, "reward", rm_args, "reward-step4.safetensors", loss_keys, 6);

    /* PPO on 2 ranks (the SFT and reward models above): ranks sample with
     * different seeds, so no 1-rank twin; instead a resume from the periodic
     * checkpoint on 2 ranks ends bit-identical to the uninterrupted run, and
     * refuses a different rank count. The replicas are compared after every
     * optimizer step (a divergence fails the run). */
    char policy[1300], rm[1300], ck[3][600], from[1400];
    snprintf(policy, sizeof policy, "%s/sft-2/sft-step5.safetensors", dir);
    snprintf(rm, sizeof rm, "%s/reward-2/reward-step4.safetensors", dir);
    char *const ppo_args[] = {"ppo",    "--data",
                              sft_data, "--init",
                              policy,   "--reward-model",
                              rm,       "--total-updates",
                              "4",      "--batch-size",
                              "6",      "--mini-batch-size",
                              "3",      "--response-length",
                              "8",      "--ppo-epochs",
                              "2",      "--checkpoint-interval",
                              "2",      "--sample-interval",
                              "0",      "--learning-rate",
                              "1e-3",   NULL};
    for (int i = 0; i < 3; i++) {
        snprintf(ck[i], sizeof ck[i], "%s/ppo-%d", dir, i);
        ck_assert_int_eq(mkdir(ck[i], 0700), 0);
    }
    expect_exit(run_ranks(2, ppo_args, NULL, ck[0]), 0, ck[0], "ppo on 2 ranks");
    snprintf(from, sizeof from, "--resume %s/ppo-step2.safetensors", ck[0]);
    expect_exit(run_ranks(2, ppo_args, from, ck[1]), 0, ck[1], "ppo resumed on 2 ranks");
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/ppo-step4.safetensors", ck[0]);
    snprintf(b, sizeof b, "%s/ppo-step4.safetensors", ck[1]);
    size_t na, nb;
    char *fa = read_whole(a, &na), *fb = read_whole(b, &nb);
    ck_assert_msg(na == nb && memcmp(fa, fb, na) == 0, "the resumed run's weights differ");
    free(fa), free(fb);
    expect_exit(run_ranks(1, ppo_args, from, ck[2]), 1, ck[2], "ppo resumed on 1 rank");
    snprintf(a, sizeof a, "%s/err.txt", ck[2]);
    char *e = read_whole(a, &na);
    ck_assert_msg(strstr(e, "written by a run on 2 rank(s)") != NULL, "%s", e);
    free(e);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* DPO, GRPO and RLOO on 2 ranks against 1 (an SFT model trained here). DPO
 * shards every batch of pairs; GRPO and RLOO shard the groups, each group
 * sampled from its own stream of the step's seed, so the 2-rank run samples
 * the same completions as the 1-rank run and only the order of the float
 * sums (gradients, losses) differs: the curves agree to 1e-6 + 1e-5
 * relative, as sft's and reward's. (Weights that differ in the last bits
 * could in principle flip a sampled token; on these runs none does, and the
 * check is deterministic.) Then a GRPO run on 2 ranks resumed from its
 * periodic checkpoint ends bit-identical to the uninterrupted one. */
START_TEST(test_dist_preference_methods_match_one_rank) {
    char dir[] = "/tmp/rlhf-test-mpi-pref-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    if (!rlhf_train_has_mpi(dir)) {
        test_skip("rlhf-train was built without MPI (make deps && make MPI=1)");
        return;
    }
    char sft_data[4200], rk_data[4200], sft_dir[4200], policy[4300];
    snprintf(sft_data, sizeof sft_data, "%s/sft.jsonl", dir);
    FILE *f = fopen(sft_data, "w");
    for (int i = 0; i < 24; i++)
        fprintf(f, "{\"prompt\": \"Q%d %.*s?\", \"response\": \"A %.*s.\"}\n", i, 1 + i % 7,
                "abcdefghij", 1 + (i * 3) % 9, "klmnopqrstu");
    fclose(f);
    snprintf(rk_data, sizeof rk_data, "%s/rankings.jsonl", dir);
    f = fopen(rk_data, "w");
    for (int i = 0; i < 30; i++)
        fprintf(f,
                "{\"prompt\": \"P%d\", \"responses\": [\"%.*s\", \"%.*s\", \"x%d\"], "
                "\"ranks\": [%d, %d, 2]}\n",
                i, 1 + i % 5, "yyyyyy", 2 + i % 3, "zzzzz", i, i % 2, 1 - i % 2);
    fclose(f);
    snprintf(sft_dir, sizeof sft_dir, "%s/sft", dir);
    ck_assert_int_eq(mkdir(sft_dir, 0700), 0);
    char *const sft_args[] = {"sft",    "--data",
                              sft_data, "--n-layer",
                              "1",      "--d-model",
                              "16",     "--n-head",
                              "2",      "--context",
                              "32",     "--max-steps",
                              "4",      "--sample-interval",
                              "0",      "--learning-rate",
                              "3e-3",   "--eval-fraction",
                              "0",      NULL};
    expect_exit(run_ranks(1, sft_args, NULL, sft_dir), 0, sft_dir, "sft");
    snprintf(policy, sizeof policy, "%s/sft-step4.safetensors", sft_dir);

    /* DPO: 7 pairs a step (shards of 3 and 4), held-out metrics every 2 */
    static const char *const dpo_keys[] = {"loss",      "rewards/margins", "rewards/accuracies",
                                           "eval/loss", "logps/chosen",    NULL};
    char *const dpo_args[] = {"dpo",   "--data",
                              rk_data, "--init",
                              policy,  "--max_steps",
                              "4",     "--batch_size",
                              "7",     "--learning_rate",
                              "3e-3",  "--eval_interval",
                              "2",     NULL};
    compare_one_and_two_ranks(dir, "dpo", dpo_args, "dpo-step4.safetensors", dpo_keys, 12);

    /* GRPO with a KL (a reference on each rank) and two passes; RLOO.
     * 3 groups a step: shards of 1 and 2 groups. */
    static const char grader[] =
        "{\"type\":\"text_similarity\",\"name\":\"sim\",\"input\":\"{{sample.output_text}}\","
        "\"reference\":\"{{item.answer}}\",\"evaluation_metric\":\"fuzzy_match\"}";
    static const char *const pg_keys[] = {
        "loss", "reward", "reward_std", "kl", "completions/mean_length", NULL};
    char *const grpo_args[] = {"grpo",
                               "--data",
                               sft_data,
                               "--init",
                               policy,
                               "--grader",
                               (char *)grader,
                               "--total_steps",
                               "4",
                               "--prompts_per_step",
                               "3",
                               "--num_generations",
                               "2",
                               "--max_completion_length",
                               "6",
                               "--learning_rate",
                               "3e-3",
                               "--beta",
                               "0.1",
                               "--num_iterations",
                               "2",
                               "--checkpoint_interval",
                               "2",
                               NULL};
    compare_one_and_two_ranks(dir, "grpo", grpo_args, "grpo-step4.safetensors", pg_keys, 20);
    char *const rloo_args[] = {"rloo",
                               "--data",
                               sft_data,
                               "--init",
                               policy,
                               "--grader",
                               (char *)grader,
                               "--total_steps",
                               "4",
                               "--prompts_per_step",
                               "3",
                               "--num_generations",
                               "3",
                               "--max_completion_length",
                               "6",
                               "--learning_rate",
                               "3e-3",
                               "--beta",
                               "0.05",
                               NULL};
    compare_one_and_two_ranks(dir, "rloo", rloo_args, "rloo-step4.safetensors", pg_keys, 20);

    /* GRPO resumed on 2 ranks from the 2-rank run's step-2 checkpoint */
    char ck[600], from[1400], a[1400], b[1400];
    snprintf(ck, sizeof ck, "%s/grpo-resumed", dir);
    ck_assert_int_eq(mkdir(ck, 0700), 0);
    snprintf(from, sizeof from, "--resume %s/grpo-2/grpo-step2.safetensors", dir);
    expect_exit(run_ranks(2, grpo_args, from, ck), 0, ck, "grpo resumed on 2 ranks");
    snprintf(a, sizeof a, "%s/grpo-2/grpo-step4.safetensors", dir);
    snprintf(b, sizeof b, "%s/grpo-step4.safetensors", ck);
    size_t na, nb;
    char *fa = read_whole(a, &na), *fb = read_whole(b, &nb);
    ck_assert_msg(na == nb && memcmp(fa, fb, na) == 0, "the resumed run's weights differ");
    free(fa), free(fb);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* rlhfd: `ranks` is checked when the job is created; with MPI built and a
 * hostfile, a 2-rank sft job runs under mpirun to success. */
START_TEST(test_dist_rlhfd_jobs_with_ranks) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\",\"ranks\":\"2\"}",
                      400, "invalid_type", "ranks");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\",\"ranks\":0}",
                      400, "invalid_value", "ranks");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\",\"ranks\":2}",
                      400, "invalid_value", "ranks"); /* not data parallel */
    http_reply *r =
        http(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"s\",\"format\":\"sft\"}", NULL);
    ck_assert_int_eq(r->status, 200);
    const int64_t ds = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    char rows[8192] = "";
    for (int i = 0; i < 24; i++)
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows),
                 "{\"prompt\":\"q%d\",\"response\":\"a %.*s\"}\n", i, 1 + i % 6, "bcdefgh");
    char path[64], body[512];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)ds);
    r = http_bytes(&d, "POST", path, d.admin, rows, strlen(rows), NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"ranks\":2,\"hyperparameters\":"
             "{\"n_layer\":1,\"d_model\":16,\"n_head\":2,\"context\":32,\"batch_size\":4,"
             "\"max_steps\":3,\"sample_interval\":0,\"eval_fraction\":0}}",
             (long long)ds);
    r = http(&d, "POST", "/v1/jobs", d.admin, body, NULL);
    const bool mpi = worker_launch_mpi_built();
    if (!mpi) {
        /* without MPI the reason names the build */
        expect_error(r, 400, "ranks_unavailable", "ranks");
        ck_assert_msg(strstr(r->body, "MPI") != NULL, "%s", r->body);
        reply_free(r);
        daemon_stop(&d);
        daemon_cleanup(&d);
        test_skip("the rlhfd mpirun job: built without MPI");
        return;
    }
    /* MPI, but no hostfile configured: refused, naming the setting */
    expect_error(r, 400, "ranks_unavailable", "ranks");
    ck_assert_msg(strstr(r->body, "hostfile") != NULL, "%s", r->body);
    reply_free(r);
    daemon_stop(&d);

    char hostfile[128];
    snprintf(hostfile, sizeof hostfile, "%s/hosts", d.dir);
    FILE *f = fopen(hostfile, "w");
    fputs("localhost slots=2\n", f);
    fclose(f);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    daemon_start(&d, "--hostfile", hostfile, NULL);
    r = http(&d, "POST", "/v1/jobs", d.admin, body, NULL);
    ck_assert_msg(r->status == 200, "%s", r->body);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "ranks")), 2);
    const int64_t id = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    http_reply *job = wait_job(&d, id, "succeeded", 0);
    ck_assert_int_eq(job_int(job, "ranks"), 2);
    reply_free(job);
    /* one rank reported: three steps of metrics, and the data_parallel event */
    ck_assert_int_eq(db_int(&d, "SELECT count(DISTINCT step) FROM metrics WHERE job_id = ?1", id),
                     3);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM job_events WHERE job_id = ?1 AND "
                            "code = 'data_parallel'",
                            id),
                     1);
    /* dpo, grpo and rloo on 2 ranks: each to success, then again with mpirun and
     * its ranks SIGKILLed after a periodic checkpoint; attempt 2 resumes on
     * 2 ranks and ends with the uninterrupted run's final checkpoint, byte
     * for byte */
    const int64_t sft = demo_sft_job(&d, TINY_SFT, NULL);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    const int64_t pref = demo_dataset(&d, "preference", 16, 2);
    snprintf(body, sizeof body,
             "{\"type\":\"dpo\",\"training_file\":%lld,\"model\":\"job:%lld\",\"ranks\":2,"
             "\"hyperparameters\":{\"batch_size\":3,\"max_steps\":4,\"learning_rate\":0.001,"
             "\"max_prompt_length\":24,\"max_response_length\":32,\"eval_interval\":2,"
             "\"checkpoint_interval\":2}}",
             (long long)pref, (long long)sft);
    const int64_t dpo = run_and_run_killed(&d, body, 1);
    ck_assert_int_eq(db_int(&d, "SELECT ranks FROM jobs WHERE id = ?1", dpo), 2);
    const int64_t prompts = demo_dataset(&d, "prompts", 12, 5);
    snprintf(body, sizeof body,
             "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\",\"ranks\":2,"
             "\"hyperparameters\":{\"total_steps\":4,\"prompts_per_step\":3,\"num_generations\":2,"
             "\"max_completion_length\":6,\"learning_rate\":0.001,\"checkpoint_interval\":2,"
             "\"grader\":{\"type\":\"string_check\",\"name\":\"says_the\",\"input\":"
             "\"{{sample.output_text}}\",\"reference\":\"The\",\"operation\":\"like\"}}}",
             (long long)prompts, (long long)sft);
    run_and_run_killed(&d, body, 1);
    snprintf(body, sizeof body,
             "{\"type\":\"rloo\",\"training_file\":%lld,\"model\":\"job:%lld\",\"ranks\":2,"
             "\"hyperparameters\":{\"total_steps\":4,\"prompts_per_step\":3,\"num_generations\":2,"
             "\"max_completion_length\":6,\"learning_rate\":0.001,\"checkpoint_interval\":2,"
             "\"grader\":{\"type\":\"string_check\",\"name\":\"says_the\",\"input\":"
             "\"{{sample.output_text}}\",\"reference\":\"The\",\"operation\":\"like\"}}}",
             (long long)prompts, (long long)sft);
    run_and_run_killed(&d, body, 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *dist_suite(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tcase_create("dist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dist_shards_tile_the_batch_in_order);
    tcase_add_test(tc, test_dist_single_process_collectives_leave_data_alone);
    tcase_add_test(tc, test_dist_replica_check_names_a_diverged_rank);
    tcase_add_test(tc, test_dist_job_packet_round_trip);
    tcase_add_test(tc, test_dist_two_ranks_match_one_rank);
    tcase_add_test(tc, test_dist_preference_methods_match_one_rank);
    tcase_add_test(tc, test_dist_rlhfd_jobs_with_ranks);
    suite_add_tcase(s, tc);
    return s;
}
