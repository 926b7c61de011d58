#include "dist_job.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const dist_comm *rlhf_train_dist = NULL;
const char *rlhf_train_mpi_library = NULL;

static bool job_sent = false;

/* ---- the packet: a flat little-endian-agnostic byte string -----------------
 * Every rank runs the same binary on the same architecture (mpirun starts
 * one executable), so integers go as their native bytes. Strings carry their
 * NUL, so the decoded pointers point into the packet itself. */

enum { PACKET_VERSION = 3 }; /* 3: the KL reference checkpoint, model directories */
/* The most files a shipped directory holds (a model directory: config,
 * tokenizer files, safetensors shards and their index). */
enum { DIST_DIR_MAX_FILES = 32 };
static const uint64_t ABSENT = UINT64_MAX;

typedef struct packet {
    unsigned char *p;
    size_t n, cap;
    int failed;
} packet;

static void put(packet *b, const void *data, size_t n) {
    if (b->failed)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_u64(packet *b, uint64_t v) {
    put(b, &v, sizeof v);
}

static void put_str(packet *b, const char *s) {
    if (s == NULL) {
        put_u64(b, ABSENT);
        return;
    }
    const size_t n = strlen(s) + 1;
    put_u64(b, n);
    put(b, s, n);
}

/* The whole file at path (absent when path is NULL). */
static int put_file(packet *b, const char *path, char *err, size_t errlen) {
    if (path == NULL) {
        put_u64(b, ABSENT);
        return 0;
    }
    FILE *f = fopen(path, "rb");
    long size = -1;
    if (f != NULL && fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (f == NULL || size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot read %.400s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    char *data = malloc((size_t)size + 1);
    const int ok = data != NULL && fread(data, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok) {
        snprintf(err, errlen, "cannot read %.400s%s", path, data ? "" : ": out of memory");
        free(data);
        return -1;
    }
    put_u64(b, (uint64_t)size);
    put(b, data, (size_t)size);
    free(data);
    return 0;
}

static void put_pairs(packet *b, const text_pair *items, int64_t n) {
    put_u64(b, (uint64_t)n);
    for (int64_t i = 0; i < n; i++) {
        put_str(b, items[i].prompt);
        put_str(b, items[i].response);
        put_str(b, items[i].messages);
        put_u64(b, (uint64_t)items[i].first_trained);
    }
}

static void put_rankings(packet *b, const ranking *items, int64_t n) {
    put_u64(b, (uint64_t)n);
    for (int64_t i = 0; i < n; i++) {
        put_str(b, items[i].prompt);
        put_u64(b, (uint64_t)items[i].k);
        for (int k = 0; k < items[i].k; k++) {
            put_str(b, items[i].responses[k]);
            put_u64(b, (uint64_t)(int64_t)items[i].rank[k]);
        }
        put(b, &items[i].margin, sizeof items[i].margin);
        put_str(b, items[i].prompt_messages);
    }
}

/* Whether path is a directory (a Hugging Face model directory as
 * init_checkpoint, rather than a checkpoint file). */
static bool is_dir(const char *path) {
    struct stat st;
    return path != NULL && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every regular file directly in dir, by name (absent when dir is NULL):
 * a Hugging Face model directory, or a tokenizer directory (GPT-2's BPE
 * files or tokenizer.json and tokenizer_config.json), whose weights
 * (*.safetensors) stay behind unless with_weights. The receiving rank
 * writes them into a directory of its own (get_dir). */
static int put_dir(packet *b, const char *dir, bool with_weights, char *err, size_t errlen) {
    if (dir == NULL) {
        put_u64(b, ABSENT);
        return 0;
    }
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        snprintf(err, errlen, "cannot read the directory %.400s: %s", dir, strerror(errno));
        return -1;
    }
    char names[DIST_DIR_MAX_FILES][256], path[4400];
    uint64_t n = 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(dh)) != NULL;) {
        const size_t len = strlen(e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || len >= sizeof names[0] || stat(path, &st) != 0 ||
            !S_ISREG(st.st_mode) ||
            (!with_weights && len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0))
            continue;
        if (n == DIST_DIR_MAX_FILES) {
            snprintf(err, errlen, "%.400s has more than %d files to send the other ranks", dir,
                     DIST_DIR_MAX_FILES);
            rc = -1;
        } else
            memcpy(names[n++], e->d_name, len + 1);
    }
    closedir(dh);
    put_u64(b, n);
    for (uint64_t i = 0; rc == 0 && i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        put_str(b, names[i]);
        rc = put_file(b, path, err, errlen);
    }
    return rc;
}

int dist_job_encode(const job_type *type, const void *cfg, int threads, const job_inputs *in,
                    unsigned char **bytes, size_t *n_bytes, char *err, size_t errlen) {
    packet b = {0};
    put_u64(&b, PACKET_VERSION);
    put_str(&b, type->name);
    put_u64(&b, (uint64_t)threads);
    put_u64(&b, type->hparams->config_bytes);
    put(&b, cfg, type->hparams->config_bytes);
    put_pairs(&b, in->train, in->n_train);
    put_pairs(&b, in->eval, in->eval ? in->n_eval : 0);
    put_u64(&b, in->eval != NULL);
    put_rankings(&b, in->rankings, in->n_rankings);
    put_rankings(&b, in->eval_rankings, in->eval_rankings ? in->n_eval_rankings : 0);
    put_u64(&b, in->eval_rankings != NULL);
    /* the init model: a checkpoint file, or a registered model's directory */
    const bool init_dir = is_dir(in->init_checkpoint);
    put_u64(&b, init_dir);
    int rc = init_dir ? put_dir(&b, in->init_checkpoint, true, err, errlen)
                      : put_file(&b, in->init_checkpoint, err, errlen);
    rc = rc ? rc : put_file(&b, in->resume_checkpoint, err, errlen);
    rc = rc ? rc : put_file(&b, in->reward_checkpoint, err, errlen);
    rc = rc ? rc : put_file(&b, in->ref_checkpoint, err, errlen);
    rc = rc ? rc : put_dir(&b, in->tokenizer_dir, false, err, errlen);
    if (rc == 0 && b.failed) {
        snprintf(err, errlen, "out of memory packing the job for the other ranks");
        rc = -1;
    }
    if (rc != 0) {
        free(b.p);
        return -1;
    }
    *bytes = b.p;
    *n_bytes = b.n;
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

struct dist_job_decoded {
    unsigned char *bytes; /* the packet: strings point into it */
    size_t n, at;
    int bad;
    void *cfg;
    text_pair *train, *eval;
    ranking *rankings, *eval_rankings;
    int fds[4];
    char paths[4][32];
    /* the directories received: [0] the init model's, [1] the tokenizer's */
    struct {
        char path[64];
        char files[DIST_DIR_MAX_FILES][128];
        int n;
    } dirs[2];
};

static uint64_t get_u64(dist_job_decoded *d) {
    uint64_t v = 0;
    if (d->at + sizeof v > d->n)
        d->bad = 1;
    else
        memcpy(&v, d->bytes + d->at, sizeof v), d->at += sizeof v;
    return v;
}

static const void *get(dist_job_decoded *d, uint64_t n) {
    if (d->bad || n > d->n - d->at) {
        d->bad = 1;
        return NULL;
    }
    const void *p = d->bytes + d->at;
    d->at += n;
    return p;
}

static const char *get_str(dist_job_decoded *d) {
    const uint64_t n = get_u64(d);
    if (n == ABSENT)
        return NULL;
    const char *s = get(d, n);
    if (s == NULL || n == 0 || s[n - 1] != '\0') {
        d->bad = 1;
        return NULL;
    }
    return s;
}

static text_pair *get_pairs(dist_job_decoded *d, int64_t *n) {
    const uint64_t count = get_u64(d);
    if (d->bad || count > d->n / 16) {
        d->bad = 1;
        return NULL;
    }
    *n = (int64_t)count;
    text_pair *items = calloc(count ? count : 1, sizeof *items);
    if (items == NULL) {
        d->bad = 1;
        return NULL;
    }
    for (uint64_t i = 0; i < count && !d->bad; i++) {
        items[i].prompt = get_str(d);
        items[i].response = get_str(d);
        items[i].messages = get_str(d);
        items[i].first_trained = (int)get_u64(d);
    }
    return items;
}

static ranking *get_rankings(dist_job_decoded *d, int64_t *n) {
    const uint64_t count = get_u64(d);
    if (d->bad || count > d->n / 16) {
        d->bad = 1;
        return NULL;
    }
    *n = (int64_t)count;
    ranking *items = calloc(count ? count : 1, sizeof *items);
    if (items == NULL) {
        d->bad = 1;
        return NULL;
    }
    for (uint64_t i = 0; i < count && !d->bad; i++) {
        items[i].prompt = get_str(d);
        const uint64_t k = get_u64(d);
        if (k > RANKING_MAX_K) {
            d->bad = 1;
            break;
        }
        items[i].k = (int)k;
        for (uint64_t j = 0; j < k; j++) {
            items[i].responses[j] = get_str(d);
            items[i].rank[j] = (int)(int64_t)get_u64(d);
        }
        const void *margin = get(d, sizeof items[i].margin);
        if (margin)
            memcpy(&items[i].margin, margin, sizeof items[i].margin);
        items[i].prompt_messages = get_str(d);
    }
    return items;
}

static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        const ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* A file of the packet as an unlinked temporary file; *path is
 * /proc/self/fd/N, or NULL when the file was absent. */
static int get_file(dist_job_decoded *d, int slot, const char **path, char *err, size_t errlen) {
    *path = NULL;
    const uint64_t n = get_u64(d);
    if (n == ABSENT || d->bad)
        return 0;
    const void *data = get(d, n);
    if (data == NULL)
        return 0;
    const char *dir = getenv("TMPDIR");
    char name[4096];
    snprintf(name, sizeof name, "%s/rlhf-train-rank-XXXXXX", dir && *dir ? dir : "/tmp");
    const int fd = mkstemp(name);
    if (fd < 0 || (unlink(name), write_all(fd, data, n)) != 0) {
        snprintf(err, errlen, "cannot write a temporary file in %.300s: %s",
                 dir && *dir ? dir : "/tmp", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    d->fds[slot] = fd;
    snprintf(d->paths[slot], sizeof d->paths[slot], "/proc/self/fd/%d", fd);
    *path = d->paths[slot];
    return 0;
}

/* A directory of the packet (put_dir) written into a temporary directory
 * of this rank's, dirs[slot]; *dir_out is its path, or NULL when absent. */
static int get_dir(dist_job_decoded *d, int slot, const char **dir_out, char *err, size_t errlen) {
    *dir_out = NULL;
    const uint64_t n = get_u64(d);
    if (n == ABSENT || d->bad)
        return 0;
    if (n > DIST_DIR_MAX_FILES) {
        d->bad = 1;
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    char *path = d->dirs[slot].path;
    snprintf(path, sizeof d->dirs[slot].path, "%s/rlhf-train-dir-XXXXXX",
             tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(path) == NULL) {
        snprintf(err, errlen, "cannot create a temporary directory: %s", strerror(errno));
        path[0] = '\0';
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *name = get_str(d);
        const uint64_t size = get_u64(d);
        const void *data = size == ABSENT ? NULL : get(d, size);
        if (name == NULL || data == NULL || strchr(name, '/') != NULL || name[0] == '.' ||
            strlen(name) > 60) {
            d->bad = 1;
            return 0;
        }
        char file[128];
        snprintf(file, sizeof file, "%s/%s", path, name);
        memcpy(d->dirs[slot].files[d->dirs[slot].n++], file, sizeof file);
        FILE *f = fopen(file, "wb");
        const int ok = f != NULL && fwrite(data, 1, size, f) == size;
        if (f == NULL || fclose(f) != 0 || !ok) {
            snprintf(err, errlen, "cannot write %s: %s", file, strerror(errno));
            return -1;
        }
    }
    *dir_out = path;
    return 0;
}

void dist_job_decoded_free(dist_job_decoded *d) {
    if (d == NULL)
        return;
    for (int i = 0; i < 4; i++)
        if (d->fds[i] >= 0)
            close(d->fds[i]);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < d->dirs[k].n; i++)
            unlink(d->dirs[k].files[i]);
        if (d->dirs[k].path[0])
            rmdir(d->dirs[k].path);
    }
    free(d->train), free(d->eval), free(d->rankings), free(d->eval_rankings);
    free(d->cfg), free(d->bytes);
    free(d);
}

dist_job_decoded *dist_job_decode(const unsigned char *bytes, size_t n_bytes, const job_type **type,
                                  void **cfg, int *threads, job_inputs *in, char *err,
                                  size_t errlen) {
    dist_job_decoded *d = calloc(1, sizeof *d);
    if (d == NULL || (d->bytes = malloc(n_bytes ? n_bytes : 1)) == NULL) {
        free(d);
        snprintf(err, errlen, "out of memory for the job from rank 0");
        return NULL;
    }
    memcpy(d->bytes, bytes, n_bytes);
    d->n = n_bytes;
    d->fds[0] = d->fds[1] = d->fds[2] = d->fds[3] = -1;
    memset(in, 0, sizeof *in);
    const uint64_t version = get_u64(d);
    const char *name = get_str(d);
    *type = name ? job_type_find(name) : NULL;
    *threads = (int)get_u64(d);
    const uint64_t cfg_bytes = get_u64(d);
    const void *cfg_data = get(d, cfg_bytes);
    if (d->bad || version != PACKET_VERSION || *type == NULL ||
        cfg_bytes != (*type)->hparams->config_bytes || cfg_data == NULL) {
        snprintf(err, errlen,
                 "the job from rank 0 does not match this rlhf-train (a different build on "
                 "another machine?)");
        dist_job_decoded_free(d);
        return NULL;
    }
    d->cfg = malloc(cfg_bytes);
    if (d->cfg)
        memcpy(d->cfg, cfg_data, cfg_bytes);
    d->train = get_pairs(d, &in->n_train);
    d->eval = get_pairs(d, &in->n_eval);
    const int has_eval = get_u64(d) != 0;
    d->rankings = get_rankings(d, &in->n_rankings);
    d->eval_rankings = get_rankings(d, &in->n_eval_rankings);
    const int has_eval_rankings = get_u64(d) != 0;
    in->train = d->train;
    in->eval = has_eval ? d->eval : NULL;
    in->rankings = d->rankings;
    in->eval_rankings = has_eval_rankings ? d->eval_rankings : NULL;
    int rc = d->cfg ? 0 : -1;
    const bool init_dir = get_u64(d) != 0;
    rc = rc         ? rc
         : init_dir ? get_dir(d, 0, &in->init_checkpoint, err, errlen)
                    : get_file(d, 0, &in->init_checkpoint, err, errlen);
    rc = rc ? rc : get_file(d, 1, &in->resume_checkpoint, err, errlen);
    rc = rc ? rc : get_file(d, 2, &in->reward_checkpoint, err, errlen);
    rc = rc ? rc : get_file(d, 3, &in->ref_checkpoint, err, errlen);
    rc = rc ? rc : get_dir(d, 1, &in->tokenizer_dir, err, errlen);
    if (rc == 0 && (d->bad || d->at != d->n)) {
        snprintf(err, errlen, "the job from rank 0 arrived damaged");
        rc = -1;
    } else if (rc != 0 && d->cfg == NULL)
        snprintf(err, errlen, "out of memory for the job from rank 0");
    if (rc != 0) {
        dist_job_decoded_free(d);
        return NULL;
    }
    *cfg = d->cfg;
    return d;
}

/* ---- the protocol ---------------------------------------------------------- */

/* What rank 0 broadcasts first: a job of n_bytes follows, or none. */
typedef struct packet_header {
    int64_t has_job;
    int64_t exit_code;
    uint64_t n_bytes;
} packet_header;

int dist_job_send(const dist_comm *d, const job_type *type, const void *cfg, int threads,
                  const job_inputs *in, char *err, size_t errlen) {
    if (dist_size(d) < 2)
        return 0;
    if (!type->data_parallel) {
        snprintf(err, errlen,
                 "%s jobs run in one process, not data parallel: run it without mpirun",
                 type->name);
        return -1;
    }
    unsigned char *bytes = NULL;
    size_t n = 0;
    if (dist_job_encode(type, cfg, threads, in, &bytes, &n, err, errlen) != 0)
        return -1;
    packet_header h = {1, 0, n};
    int rc = dist_broadcast(d, &h, sizeof h, 0);
    rc = rc ? rc : dist_broadcast(d, bytes, n, 0);
    free(bytes);
    job_sent = true;
    if (rc != 0)
        snprintf(err, errlen, "broadcasting the job to the other ranks failed");
    return rc;
}

void dist_job_send_none(const dist_comm *d, int exit_code) {
    if (dist_size(d) < 2 || job_sent)
        return;
    packet_header h = {0, exit_code, 0};
    dist_broadcast(d, &h, sizeof h, 0);
    job_sent = true;
}

bool dist_job_was_sent(void) {
    return job_sent;
}

int dist_job_follow(const dist_comm *d, bool *failed) {
    *failed = true;
    /* Only rank 0 decides when to stop (dist_should_stop): a SIGTERM or
     * SIGUSR2 that mpirun forwards to every rank must not end a follower. */
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    packet_header h;
    if (dist_broadcast(d, &h, sizeof h, 0) != 0) {
        fprintf(stderr, "rlhf-train rank %d: receiving the job from rank 0 failed\n", d->rank);
        return 1;
    }
    if (!h.has_job) {
        *failed = false;
        return (int)h.exit_code;
    }
    unsigned char *bytes = malloc(h.n_bytes ? h.n_bytes : 1);
    char err[512] = "";
    if (bytes == NULL || dist_broadcast(d, bytes, h.n_bytes, 0) != 0) {
        fprintf(stderr, "rlhf-train rank %d: receiving the job from rank 0 failed\n", d->rank);
        free(bytes);
        return 1;
    }
    const job_type *type = NULL;
    void *cfg = NULL;
    int threads = 1;
    job_inputs in;
    dist_job_decoded *dec =
        dist_job_decode(bytes, h.n_bytes, &type, &cfg, &threads, &in, err, sizeof err);
    free(bytes);
    if (dec == NULL) {
        fprintf(stderr, "rlhf-train rank %d: %s\n", d->rank, err);
        return 1;
    }
    if (threads > 0)
        openblas_set_num_threads(threads);
    in.dist = d;
    const int rc = type->run(cfg, &in, NULL, err, sizeof err);
    dist_job_decoded_free(dec);
    if (rc != 0) {
        fprintf(stderr, "rlhf-train rank %d: %s failed: %s\n", d->rank, type->name, err);
        return 1;
    }
    *failed = false;
    return 0;
}
