/* Resources the api suites make through rlhfd's API (test_api_fixtures.h). */

#include "test_api_fixtures.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "demo_task.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "rng.h"
#include "safetensors.h"
#include "model.h"
#include "test_hf_fixture.h"
#include "test_util.h"

int64_t create_job(const test_daemon *d, const char *body) {
    http_reply *r = http(d, "POST", "/v1/jobs", d->admin, body, NULL);
    ck_assert_msg(r->status == 200, "create job: %ld %s", r->status, r->body);
    int64_t id = json_integer_value(json_object_get(r->json, "id"));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "queued");
    reply_free(r);
    return id;
}

/* Polls until the job has at least one metrics row. */
void wait_metrics(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?limit=1", (long long)id);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
        size_t n = json_array_size(json_object_get(r->json, "data"));
        reply_free(r);
        if (n > 0)
            return;
        ck_assert_msg(now_ms() < deadline, "job %lld wrote no metrics", (long long)id);
        pause_ms(20);
    }
}

/* A job created from body, awaited until it runs and has reported metrics:
 * a worker is mid-training when this returns. */
int64_t start_running_job(const test_daemon *d, const char *body) {
    const int64_t id = create_job(d, body);
    reply_free(wait_job(d, id, "running", 1));
    wait_metrics(d, id);
    return id;
}

/* POST /v1/jobs/{id}/cancel; returns the reply (caller frees). */
http_reply *cancel_job(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)id);
    return http(d, "POST", path, d->admin, NULL, NULL);
}

void wait_pid_gone(pid_t pid) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (kill(pid, 0) == 0) {
        ck_assert_msg(now_ms() < deadline, "pid %d did not exit", (int)pid);
        pause_ms(20);
    }
}

/* Uploads len bytes to dataset id; returns the reply (caller frees). */
http_reply *upload_dataset(const test_daemon *d, int64_t id, const char *body, size_t len,
                           const char *extra_header) {
    char path[64];
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    return http_bytes(d, "POST", path, d->admin, body, len, extra_header);
}

http_reply *upload_file(const test_daemon *d, const char *token, const char *filename,
                        const char *content, size_t len, const char *purpose, bool purpose_first) {
    static const char boundary[] = "rlhfd-test-boundary-7MA4YWxk";
    char head[512], part[256];
    snprintf(head, sizeof head,
             "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
             "Content-Type: application/jsonl\r\n\r\n",
             boundary, filename);
    part[0] = '\0';
    if (purpose != NULL)
        snprintf(part, sizeof part,
                 "--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n%s\r\n", boundary,
                 purpose);
    char *body = malloc(len + 2048);
    size_t n = 0;
    if (purpose_first)
        n += (size_t)sprintf(body + n, "%s", part);
    n += (size_t)sprintf(body + n, "%s", head);
    memcpy(body + n, content, len);
    n += len;
    n += (size_t)sprintf(body + n, "\r\n%s--%s--\r\n", purpose_first ? "" : part, boundary);
    char type[128];
    snprintf(type, sizeof type, "Content-Type: multipart/form-data; boundary=%s", boundary);
    http_reply *r = http_bytes(d, "POST", "/v1/files", token, body, n, type);
    free(body);
    return r;
}

int64_t openai_file(const test_daemon *d, const char *jsonl) {
    http_reply *r =
        expect_ok(upload_file(d, d->admin, "data.jsonl", jsonl, strlen(jsonl), "fine-tune", false));
    const char *id = json_string_value(json_object_get(r->json, "id"));
    ck_assert_msg(id != NULL && strncmp(id, "file-", 5) == 0, "%s", r->body);
    const int64_t n = atoll(id + 5);
    reply_free(r);
    return n;
}

/* An sft dataset of n rows, uploaded; returns its id. */
int64_t sft_dataset(const test_daemon *d, const char *name, int n) {
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"format\":\"sft\"}", name);
    int64_t id = create(d, "/v1/datasets", d->admin, body);
    char *file = malloc((size_t)n * 128);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(file + len,
                               "{\"prompt\":\"What is %d plus %d?\",\"response\":\"%d\"}\n", i,
                               i % 7, i + i % 7);
    http_reply *r = expect_ok(upload_dataset(d, id, file, len, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), n);
    reply_free(r);
    free(file);
    return id;
}

/* POST /v1/jobs with {"type":"sft", <fields>, "hyperparameters": TINY}. */
int64_t create_sft_job(const test_daemon *d, const char *fields) {
    char body[1024];
    snprintf(body, sizeof body, "{\"type\":\"sft\",%s,\"hyperparameters\":%s}", fields,
             TINY_SFT_HYPERPARAMETERS);
    return create(d, "/v1/jobs", d->admin, body);
}

http_reply *job_checkpoints(const test_daemon *d, int64_t job) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/checkpoints?limit=100", (long long)job);
    return expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
}

/* The job's checkpoint of kind "final": its id and sha256. */
int64_t final_checkpoint(const test_daemon *d, int64_t job, char sha256[65]) {
    http_reply *r = job_checkpoints(d, job);
    int64_t id = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r->json, "data"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "final") == 0) {
            ck_assert_int_eq(id, 0);
            id = json_integer_value(json_object_get(c, "id"));
            if (sha256 != NULL)
                snprintf(sha256, 65, "%s", json_string_value(json_object_get(c, "sha256")));
        }
    }
    ck_assert_msg(id > 0, "job %lld has no final checkpoint: %s", (long long)job, r->body);
    reply_free(r);
    return id;
}

/* The checkpoint's bytes (caller frees). */
http_reply *checkpoint_content(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    ck_assert_int_lt(r->body_len, sizeof r->body - 1); /* not truncated */
    return r;
}

/* A dataset of format with the JSONL text uploaded; returns its id. */
int64_t create_dataset(const test_daemon *d, const char *format, const char *jsonl) {
    char body[128], path[64];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"format\":\"%s\"}", format, format);
    const int64_t id = create(d, "/v1/datasets", d->admin, body);
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    reply_free(expect_ok(http_bytes(d, "POST", path, d->admin, jsonl, strlen(jsonl), NULL)));
    return id;
}

/* n rows of the demo task in the given format, as JSONL (caller frees):
 * sft {"prompt","response"}; prompts {"prompt"}; preference (TRL) with the
 * better of two responses by the hidden gold score as chosen. */
char *demo_jsonl(const char *format, int n, uint64_t seed) {
    rng_state rng;
    rng_seed(&rng, seed, 0);
    char *out = malloc((size_t)n * 512), prompt[128], a[256], b[256];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        demo_task_example(&rng, prompt, sizeof prompt, a, sizeof a);
        json_t *row;
        if (strcmp(format, "sft") == 0)
            row = json_pack("{s:s, s:s}", "prompt", prompt, "response", a);
        else if (strcmp(format, "prompts") == 0)
            row = json_pack("{s:s}", "prompt", prompt);
        else {
            demo_task_response(&rng, prompt, b, sizeof b);
            const bool a_better =
                demo_task_gold_score(prompt, a) >= demo_task_gold_score(prompt, b);
            row = json_pack("{s:s, s:s, s:s}", "prompt", prompt, "chosen", a_better ? a : b,
                            "rejected", a_better ? b : a);
        }
        char *text = json_dumps(row, JSON_COMPACT);
        len += (size_t)sprintf(out + len, "%s\n", text);
        free(text);
        json_decref(row);
    }
    return out;
}

/* A dataset of n rows of the demo task in format, uploaded: its id. */
int64_t demo_dataset(const test_daemon *d, const char *format, int n, uint64_t seed) {
    char *text = demo_jsonl(format, n, seed);
    const int64_t id = create_dataset(d, format, text);
    free(text);
    return id;
}

/* An sft job on a fresh 64-row demo dataset (its id in *data if not NULL)
 * with the given hyperparameters JSON: the job's id. */
int64_t demo_sft_job(const test_daemon *d, const char *hyperparameters, int64_t *data) {
    const int64_t sft_data = demo_dataset(d, "sft", 64, 1);
    if (data != NULL)
        *data = sft_data;
    char body[1024];
    snprintf(body, sizeof body, "{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":%s}",
             (long long)sft_data, hyperparameters);
    return create(d, "/v1/jobs", d->admin, body);
}

int64_t reply_int(http_reply *r, const char *key) {
    return json_integer_value(json_object_get(r->json, key));
}

/* A worker that never claims its job: the job stays queued, so its event
 * stream stays open; it exits on the scheduler's SIGTERM. */
void write_idle_worker(const test_daemon *d, char *path, size_t len) {
    snprintf(path, len, "%s/idle-worker.sh", d->dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#!/bin/sh\nexec sleep 60\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0755), 0);
}

/* A raw HTTP/1.1 GET on a new connection to the daemon (IPv4); returns the
 * socket after the status line and headers were read into head. */
int open_stream(const test_daemon *d, const char *path, const char *token, char *head, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(
        req, sizeof req,
        "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n\r\n", path,
        token);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t used = 0;
    head[0] = '\0';
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (strstr(head, "\r\n\r\n") == NULL) {
        ck_assert_msg(now_ms() < deadline, "no response headers: '%s'", head);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fd, head + used, len - 1 - used);
        ck_assert_int_gt(got, 0);
        used += (size_t)got;
        head[used] = '\0';
    }
    return fd;
}

/* Reads until the server closes; the text into out. */
void read_to_close(int fd, char *out, size_t len) {
    size_t used = strlen(out);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        ck_assert_msg(now_ms() < deadline, "the stream did not end: '%s'", out);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fd, out + used, len - 1 - used);
        if (got <= 0)
            break;
        used += (size_t)got;
        out[used] = '\0';
    }
    close(fd);
}

/* A daemon without a write rate limit and a project (k 2, overlap 1): its
 * id, and its comparisons' path in cpath. */
json_t *rlhfd_routes(void) {
    char rlhfd[4096], cmd[4200];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    snprintf(cmd, sizeof cmd, "'%s' --routes", rlhfd);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    json_error_t jerr;
    json_t *routes = json_loadf(p, 0, &jerr);
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(json_is_array(routes), "rlhfd --routes: %s", jerr.text);
    return routes;
}

void grant_project(const test_daemon *d, int64_t project, int64_t token_id) {
    char path[96], body[64];
    snprintf(path, sizeof path, "/v1/projects/%lld/members", (long long)project);
    snprintf(body, sizeof body, "{\"token_id\":%lld}", (long long)token_id);
    reply_free(expect_ok(http(d, "POST", path, d->admin, body, NULL)));
}

void grant_project_all(const test_daemon *d, int64_t project) {
    http_reply *r = expect_ok(http(d, "GET", "/v1/tokens?limit=100", d->admin, NULL, NULL));
    size_t i;
    json_t *token;
    json_array_foreach(json_object_get(r->json, "data"), i, token) {
        const char *role = json_string_value(json_object_get(token, "role"));
        if (strcmp(role, "admin") != 0 && json_is_null(json_object_get(token, "revoked_at")))
            grant_project(d, project, json_integer_value(json_object_get(token, "id")));
    }
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
}

int64_t daemon_with_project(test_daemon *d, char cpath[96]) {
    daemon_init(d);
    daemon_start(d, "--write-rate", "0", NULL);
    http_reply *r = expect_ok(
        http(d, "POST", "/v1/projects", d->admin, "{\"name\":\"p\",\"k\":2,\"overlap\":1}", NULL));
    const int64_t project = reply_int(r, "id");
    reply_free(r);
    snprintf(cpath, 96, "/v1/projects/%lld/comparisons", (long long)project);
    return project;
}

/* SIGKILLs the worker and its children: a job with ranks > 1 records
 * mpirun as its worker, whose children are the ranks (killed first, so
 * none outlives it). */
static void kill_worker_and_ranks(pid_t worker) {
    DIR *proc = opendir("/proc");
    ck_assert_ptr_nonnull(proc);
    struct dirent *e;
    while ((e = readdir(proc)) != NULL) {
        const long pid = strtol(e->d_name, NULL, 10);
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = pid > 0 ? fopen(path, "r") : NULL;
        if (f == NULL)
            continue;
        const size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *after_name = strrchr(stat, ')'); /* "pid (comm) state ppid ..." */
        char state;
        long ppid;
        if (after_name && sscanf(after_name + 1, " %c %ld", &state, &ppid) == 2 &&
            ppid == (long)worker)
            kill((pid_t)pid, SIGKILL);
    }
    closedir(proc);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
}

/* Runs body twice: a reference job to success, then the same job with its
 * worker SIGKILLed once it runs (with min_checkpoints checkpoints). Attempt
 * 2 must end with the reference's final checkpoint, byte for byte, having
 * resumed exactly when there was a checkpoint to resume from. Returns the
 * reference. */
int64_t run_and_run_killed(const test_daemon *d, const char *body, int64_t min_checkpoints) {
    const int64_t reference = create(d, "/v1/jobs", d->admin, body);
    reply_free(wait_job(d, reference, "succeeded", 1));
    ck_assert(!has_event(d, reference, "resumed"));
    const int64_t job = create(d, "/v1/jobs", d->admin, body);
    pid_t worker;
    sqlite3 *lock = hold_running_job(d, job, min_checkpoints, &worker);
    kill_worker_and_ranks(worker);
    release_job(lock);
    reply_free(wait_job(d, job, "succeeded", 2));
    char want[65], got[65];
    final_checkpoint(d, reference, want);
    final_checkpoint(d, job, got);
    ck_assert_str_eq(got, want);
    ck_assert(has_event(d, job, "resumed") == (min_checkpoints > 0));
    return reference;
}

/* ---- models ----------------------------------------------------------------- */

void test_write_file_in(const char *dir, const char *name, const void *bytes, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_int_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static const char chatml_template[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\\n' }}{% endif %}";

/* GPT-2's bytes_to_unicode: byte b's character in a byte-level vocabulary. */
static void byte_char(int b, char out[4]) {
    static int code[256];
    if (code['!'] == 0) {
        int n = 0;
        for (int i = 0; i < 256; i++)
            code[i] =
                (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE ? i : 256 + n++;
    }
    const int c = code[b];
    if (c < 0x80)
        out[0] = (char)c, out[1] = '\0';
    else
        out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F)), out[2] = '\0';
}

void test_write_hf_model_dir(const char *dir, uint64_t seed, bool chat) {
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    const gpt2_config cfg = {257, 64, 2, 2, 16, false};
    gpt2_model m;
    char err[256];
    ck_assert_int_eq(gpt2_init(&m, &cfg, err, sizeof err), 0);
    rng_state r;
    rng_seed(&r, seed, 0);
    gpt2_init_weights(&m, &r);
    size_t n;
    void *weights = gpt2_checkpoint_serialize(&m, NULL, 0, NULL, 0, &n);
    test_write_file_in(dir, "model.safetensors", weights, n);
    free(weights);
    char *config = gpt2_hf_config_json(&cfg);
    test_write_file_in(dir, "config.json", config, strlen(config));
    free(config);
    gpt2_free(&m);
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_char(b, s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_t *tok =
        json_pack("{s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:b, s:b, s:b}, s:n, "
                  "s:{s:s}, s:{s:s, s:o, s:[], s:b, s:b}}",
                  "added_tokens", "id", 256, "content", "<|endoftext|>", "single_word", 0, "lstrip",
                  0, "rstrip", 0, "normalized", 0, "special", 1, "normalizer", "pre_tokenizer",
                  "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0,
                  "post_processor", "decoder", "type", "ByteLevel", "model", "type", "BPE", "vocab",
                  vocab, "merges", "byte_fallback", 0, "ignore_merges", 0);
    char *text = json_dumps(tok, JSON_INDENT(1));
    test_write_file_in(dir, "tokenizer.json", text, strlen(text));
    free(text);
    json_decref(tok);
    json_t *tc = json_pack("{s:s}", "eos_token", "<|endoftext|>");
    if (chat)
        json_object_set_new(tc, "chat_template", json_string(chatml_template));
    text = json_dumps(tc, 0);
    test_write_file_in(dir, "tokenizer_config.json", text, strlen(text));
    free(text);
    json_decref(tc);
}

void checkpoint_model(const test_daemon *d, int64_t id, gpt2_model *m) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    char err[256];
    ck_assert_msg(model_open_bytes(r->body, r->body_len, NULL, m, NULL, err, sizeof err) == 0, "%s",
                  err);
    reply_free(r);
}

void checkpoint_greedy(const gpt2_model *m, const tokenizer *tok, const char *prompt, int n,
                       char *out, size_t cap) {
    int32_t ids[128], gen[128], len = 0;
    const int64_t np = tokenizer_encode(tok, prompt, strlen(prompt), ids, 128, false);
    const gpt2_sample_config sc = {0.0f, 0, 1.0f, n, tok->eot_id};
    rng_state rng;
    rng_seed(&rng, 1, 0);
    char err[128];
    ck_assert_int_eq(gpt2_generate(m, ids, NULL, 1, (int)np, &sc, &rng, gen, &len, err, sizeof err),
                     0);
    if (len > 0 && gen[len - 1] == tok->eot_id)
        len--;
    int64_t nb = tokenizer_decode(tok, gen, (size_t)len, out, cap - 1);
    out[nb] = '\0';
}

void daemon_with_model(test_daemon *d, const char *name, bool llama, char *path, size_t cap) {
    daemon_init(d);
    char root[160], body[1024];
    snprintf(root, sizeof root, "%s/models", d->dir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    snprintf(path, cap, "%s/%s", root, name);
    if (llama) {
        ck_assert_int_eq(mkdir(path, 0755), 0);
        test_write_tiny_qwen3_dir(path, 3);
    } else {
        test_write_hf_model_dir(path, 5, true);
    }
    daemon_start(d, "--model-root", root, NULL);
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"path\":\"%s\"}", name, name);
    reply_free(expect_ok(http(d, "POST", "/v1/models", d->admin, body, NULL)));
}

/* x rounded to bfloat16, nearest with ties to even (x finite). */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

void expect_bf16_export(const char *path, const float *got, const float *want, int64_t n) {
    safetensors_file f;
    char err[256];
    ck_assert_msg(safetensors_read_file(&f, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_gt(f.n_tensors, 0);
    for (int i = 0; i < f.n_tensors; i++)
        ck_assert_msg(f.tensors[i].dtype == SAFETENSORS_BF16, "%s: tensor %s is not BF16", path,
                      f.tensors[i].name);
    /* the header's own words */
    char header[64];
    snprintf(header, sizeof header, "\"dtype\":\"BF16\"");
    ck_assert_ptr_nonnull(memmem(f.bytes + 8, f.header_bytes, header, strlen(header)));
    safetensors_free(&f);
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(got[i] == bf16_round(want[i]), "weight %lld: %.9g exported as %.9g",
                      (long long)i, want[i], got[i]);
        ck_assert(fabsf(got[i] - want[i]) <= fabsf(want[i]) * 0x1p-8f);
        changed += got[i] != want[i];
    }
    ck_assert_int_gt(changed, 0);
}

size_t test_untar(const char *tar, size_t len, const char *dir, char names[][64], int cap) {
    size_t off = 0;
    int n = 0;
    while (off + 512 <= len && tar[off] != '\0' && n < cap) {
        const char *h = tar + off;
        const size_t size = (size_t)strtoull(h + 124, NULL, 8);
        const char *slash = strchr(h, '/');
        ck_assert_ptr_nonnull(slash);
        snprintf(names[n++], 64, "%s", slash + 1);
        ck_assert_uint_le(off + 512 + size, len);
        const char *sub = strchr(slash + 1, '/');
        if (sub != NULL) { /* one level of subdirectory (adapter/) */
            char subdir[512];
            snprintf(subdir, sizeof subdir, "%s/%.*s", dir, (int)(sub - slash - 1), slash + 1);
            mkdir(subdir, 0755);
        }
        test_write_file_in(dir, slash + 1, h + 512, size);
        off += 512 + (size + 511) / 512 * 512;
    }
    return (size_t)n;
}

static long long candidate_id_of(const json_t *comparison, const char *text) {
    const json_t *cands = json_object_get(comparison, "candidates");
    for (size_t i = 0; i < json_array_size(cands); i++) {
        const json_t *c = json_array_get(cands, i);
        if (strcmp(json_string_value(json_object_get(c, "text")), text) == 0)
            return (long long)json_integer_value(json_object_get(c, "id"));
    }
    ck_abort_msg("no response '%s' in the comparison", text);
    return 0;
}

void order_by_text(const json_t *comparison, const char *best, const char *worst, char *out,
                   size_t len) {
    snprintf(out, len, "{\"order\":[[%lld],[%lld]]}", candidate_id_of(comparison, best),
             candidate_id_of(comparison, worst));
}
