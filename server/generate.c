/* Sampling from stored checkpoints in the daemon: the model cache and the
 * request limits described in generate.h. */
#include "generate.h"

#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint_file.h"

#include "defer_slow.h"
#include "gpt2.h"
#include "model.h"
#include "rng.h"
#include "tokenizer.h"

/* ---- options ------------------------------------------------------------------ */

/* An optional number member in [lo, hi]: 1 ok (dflt if absent), 0 with e. */
static int get_number(const json_t *obj, const char *prefix, const char *key, bool integer,
                      double dflt, double lo, double hi, double *out, generate_error *e) {
    char param[64];
    snprintf(param, sizeof param, "%s%s", prefix, key);
    const json_t *v = json_object_get(obj, key);
    *out = dflt;
    if (v == NULL)
        return 1;
    if (integer ? !json_is_integer(v) : !json_is_number(v)) {
        http_error_set(e, 400, "invalid_type", param, "%s must be %s", param,
                       integer ? "an integer" : "a number");
        return 0;
    }
    *out = json_number_value(v);
    if (!(*out >= lo && *out <= hi)) {
        http_error_set(e, 400, "invalid_value", param, "%s must be in [%g, %g]", param, lo, hi);
        return 0;
    }
    return 1;
}

int generate_parse_options(const json_t *obj, const char *prefix, generate_params *p,
                           generate_error *e) {
    double n, max_tokens, temperature, top_p, seed;
    if (!get_number(obj, prefix, "n", true, 1, 1, GENERATE_MAX_N, &n, e) ||
        !get_number(obj, prefix, "max_tokens", true, 0, 1, GENERATE_MAX_TOKENS, &max_tokens, e) ||
        !get_number(obj, prefix, "temperature", false, 1.0, 0, 2, &temperature, e) ||
        !get_number(obj, prefix, "top_p", false, 1.0, 0, 1, &top_p, e) ||
        !get_number(obj, prefix, "seed", true, -1, 0, 9007199254740991.0, &seed, e))
        return -1;
    if (top_p <= 0) {
        char param[64];
        snprintf(param, sizeof param, "%stop_p", prefix);
        http_error_set(e, 400, "invalid_value", param, "%s must be in (0, 1]", param);
        return -1;
    }
    p->n = (int)n;
    p->max_tokens = (int)max_tokens;
    p->temperature = temperature;
    p->top_p = top_p;
    if (seed >= 0)
        p->seed = (uint64_t)seed;
    else if (getrandom(&p->seed, sizeof p->seed, 0) != (ssize_t)sizeof p->seed)
        p->seed = (uint64_t)time(NULL);
    /* A random seed within what a request may give (0 .. 2^53 - 1), so the
     * seed a reply reports can be sent back to repeat it. */
    p->seed &= (UINT64_C(1) << 53) - 1;
    return 0;
}

/* ---- the model cache and the slots ------------------------------------------ */

typedef struct cached_model {
    int64_t checkpoint_id; /* 0: empty entry */
    gpt2_model model;
    int refs;
    uint64_t last_used;
} cached_model;

static struct {
    pthread_mutex_t mutex;
    cached_model *entries;
    int n_entries;
    uint64_t clock;
    tokenizer tok;
    int tok_ok;
} G = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t G_once = PTHREAD_ONCE_INIT;
static const rlhfd_config *G_cfg;

static void generate_init(void) {
    G.n_entries = (int)G_cfg->model_cache;
    G.entries = G.n_entries > 0 ? calloc((size_t)G.n_entries, sizeof *G.entries) : NULL;
    if (G.entries == NULL)
        G.n_entries = 0;
    G.tok_ok = tokenizer_load_bytes(&G.tok, NULL, 0) == 0;
    /* Generations run on the generate pool's generate_slots workers; each
     * uses as many BLAS threads as a worker does. */
    openblas_set_num_threads((int)G_cfg->threads_per_job);
}

/* A model to sample from: a cache entry (entry != NULL) or a private copy. */
typedef struct model_handle {
    cached_model *entry;
    gpt2_model private_model;
    const gpt2_model *m;
} model_handle;

/* Reads checkpoint id (from the artifact store or its row) into m (LM head
 * only). 0, or -1 with e. */
static int load_checkpoint(sqlite3 *db, int64_t id, gpt2_model *m, generate_error *e) {
    char why[512], path[64];
    bool found = false;
    const int fd = checkpoint_file_open(db, G_cfg->data_dir, id, &found, why, sizeof why);
    if (fd < 0) {
        if (found)
            http_error_set(e, 500, "artifact_unreadable", NULL, "%s", why);
        else
            http_error_set(e, 404, "checkpoint_not_found", NULL,
                           "no checkpoint %lld with stored content", (long long)id);
        return -1;
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    const int rc = model_open(path, NULL, m, NULL, why, sizeof why);
    close(fd);
    if (rc != 0)
        http_error_set(e, 400, "invalid_checkpoint", NULL,
                       "checkpoint %lld cannot be loaded as a GPT-2 model: %.300s", (long long)id,
                       why);
    return rc;
}

static int model_acquire(sqlite3 *db, int64_t id, model_handle *h, generate_error *e) {
    memset(h, 0, sizeof *h);
    pthread_mutex_lock(&G.mutex);
    for (int i = 0; i < G.n_entries; i++)
        if (G.entries[i].checkpoint_id == id) {
            h->entry = &G.entries[i];
            h->entry->refs++;
            h->entry->last_used = ++G.clock;
            h->m = &h->entry->model;
            pthread_mutex_unlock(&G.mutex);
            return 0;
        }
    pthread_mutex_unlock(&G.mutex);
    /* Loaded outside the lock; a concurrent load of the same id is dropped
     * below in favour of the one cached first. */
    gpt2_model m;
    if (load_checkpoint(db, id, &m, e) != 0)
        return -1;
    pthread_mutex_lock(&G.mutex);
    cached_model *slot = NULL;
    for (int i = 0; i < G.n_entries; i++) {
        cached_model *c = &G.entries[i];
        if (c->checkpoint_id == id) {
            slot = c;
            break;
        }
        if (c->refs == 0 &&
            (slot == NULL || (slot->checkpoint_id != 0 &&
                              (c->checkpoint_id == 0 || c->last_used < slot->last_used))))
            slot = c;
    }
    if (slot != NULL && slot->checkpoint_id == id) {
        gpt2_free(&m);
    } else if (slot != NULL) {
        if (slot->checkpoint_id != 0)
            gpt2_free(&slot->model);
        slot->checkpoint_id = id;
        slot->model = m;
    }
    if (slot != NULL) {
        slot->refs++;
        slot->last_used = ++G.clock;
        h->entry = slot;
        h->m = &slot->model;
    } else { /* every entry in use (or no cache): this request's own copy */
        h->private_model = m;
        h->m = &h->private_model;
    }
    pthread_mutex_unlock(&G.mutex);
    return 0;
}

static void model_release(model_handle *h) {
    if (h->entry != NULL) {
        pthread_mutex_lock(&G.mutex);
        h->entry->refs--;
        pthread_mutex_unlock(&G.mutex);
    } else if (h->m != NULL) {
        gpt2_free(&h->private_model);
    }
    h->m = NULL;
}

/* ---- generation ------------------------------------------------------------- */

void generate_output_free(generate_output *out) {
    for (int i = 0; i < out->n_rows && out->texts; i++)
        free(out->texts[i]);
    free(out->texts);
    free(out->stopped);
    memset(out, 0, sizeof *out);
}

int generate_run(server *srv, sqlite3 *db, const generate_params *p, generate_output *out,
                 generate_error *e) {
    return generate_run_cfg(&srv->cfg, db, p, out, e);
}

int generate_run_cfg(const rlhfd_config *cfg, sqlite3 *db, const generate_params *p,
                     generate_output *out, generate_error *e) {
    G_cfg = cfg;
    pthread_once(&G_once, generate_init);
    memset(out, 0, sizeof *out);
    if (!G.tok_ok) {
        http_error_set(e, 500, "server_error", NULL, "the byte-level tokenizer did not load");
        return -1;
    }
    const int B = p->n_prompts * p->n;
    if (p->n_prompts < 1 || p->n_prompts > GENERATE_MAX_PROMPTS || p->n < 1 ||
        B > GENERATE_MAX_ROWS) {
        http_error_set(e, 400, "invalid_value", "n",
                       "prompts × n must be at most %d (got %d prompts × %d)", GENERATE_MAX_ROWS,
                       p->n_prompts, p->n);
        return -1;
    }
    model_handle h;
    if (model_acquire(db, p->checkpoint_id, &h, e) != 0)
        return -1;
    const int context = h.m->cfg.max_seq_len;
    int32_t *ids[GENERATE_MAX_PROMPTS] = {0};
    int64_t lens[GENERATE_MAX_PROMPTS];
    int P = 0, rc = -1;
    int32_t *prompts = NULL, *gen = NULL, *gen_len = NULL;
    uint8_t *mask = NULL;
    char *bytes = NULL;
    for (int i = 0; i < p->n_prompts; i++) {
        char param[32];
        snprintf(param, sizeof param, p->n_prompts > 1 ? "prompt[%d]" : "prompt", i);
        const size_t len = strlen(p->prompts[i]);
        lens[i] = tokenizer_encode(&G.tok, p->prompts[i], len, NULL, 0, false);
        if (lens[i] < 1 || lens[i] >= context) {
            http_error_set(e, 400, lens[i] < 1 ? "invalid_value" : "context_length_exceeded", param,
                           lens[i] < 1 ? "%s is empty or cannot be tokenized"
                                       : "%s takes %lld tokens; the model's context is %d, and at "
                                         "least one token must be left to generate",
                           param, (long long)lens[i], context);
            goto done;
        }
        if ((ids[i] = malloc(sizeof(int32_t) * (size_t)lens[i])) == NULL)
            goto oom;
        tokenizer_encode(&G.tok, p->prompts[i], len, ids[i], (size_t)lens[i], false);
        P = lens[i] > P ? (int)lens[i] : P;
    }
    const int room = context - P;
    const int N = p->max_tokens > 0                ? p->max_tokens
                  : room < GENERATE_DEFAULT_TOKENS ? room
                                                   : GENERATE_DEFAULT_TOKENS;
    if (N > room) {
        http_error_set(e, 400, "context_length_exceeded", "max_tokens",
                       "max_tokens %d does not fit: the longest prompt takes %d of the model's %d "
                       "positions, leaving %d",
                       N, P, context, room);
        goto done;
    }
    prompts = malloc(sizeof(int32_t) * (size_t)B * (size_t)P);
    mask = calloc((size_t)B * (size_t)P, 1);
    gen = malloc(sizeof(int32_t) * (size_t)B * (size_t)N);
    gen_len = calloc((size_t)B, sizeof(int32_t));
    bytes = malloc((size_t)N * 16 + 1);
    out->texts = calloc((size_t)B, sizeof(char *));
    out->stopped = calloc((size_t)B, sizeof(bool));
    if (!prompts || !mask || !gen || !gen_len || !bytes || !out->texts || !out->stopped)
        goto oom;
    out->n_rows = B;
    for (int b = 0; b < B; b++) { /* left-padded: every prompt ends at column P - 1 */
        const int i = b / p->n, pad = P - (int)lens[i];
        for (int t = 0; t < P; t++) {
            prompts[b * P + t] = t < pad ? G.tok.eot_id : ids[i][t - pad];
            mask[b * P + t] = t >= pad;
        }
        out->prompt_tokens += lens[i];
    }
    const gpt2_sample_config sc = {(float)p->temperature, 0, (float)p->top_p, N, G.tok.eot_id};
    rng_state rng;
    rng_seed(&rng, p->seed, 0x6E6E);
    char why[256];
    if (gpt2_generate(h.m, prompts, mask, B, P, &sc, &rng, gen, gen_len, why, sizeof why) != 0) {
        http_error_set(e, 500, "generation_failed", NULL, "%s", why);
        goto done;
    }
    for (int b = 0; b < B; b++) {
        int len = gen_len[b];
        out->completion_tokens += len;
        out->stopped[b] = len > 0 && gen[b * N + len - 1] == G.tok.eot_id;
        len -= out->stopped[b];
        int64_t nb =
            tokenizer_decode(&G.tok, gen + (size_t)b * N, (size_t)len, bytes, (size_t)N * 16);
        nb = nb < 0 ? 0 : nb > (int64_t)N * 16 ? (int64_t)N * 16 : nb;
        if ((out->texts[b] = db_utf8_clean(bytes, (size_t)nb)) == NULL)
            goto oom;
    }
    rc = 0;
    goto done;
oom:
    http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
done:
    model_release(&h);
    for (int i = 0; i < p->n_prompts; i++)
        free(ids[i]);
    free(prompts), free(mask), free(gen), free(gen_len), free(bytes);
    if (rc != 0)
        generate_output_free(out);
    return rc;
}

/* ---- on the generate pool, for a caller that waits ------------------------ */

typedef struct pooled_call {
    pthread_mutex_t mutex;
    pthread_cond_t done_cond;
    bool done;
    request *r;
    const generate_params *p;
    generate_output *out;
    generate_error *e;
    int rc;
} pooled_call;

static void pooled_run(void *ctx, slow_pool_outcome outcome) {
    pooled_call *c = ctx;
    if (outcome == SLOW_POOL_RUN) {
        c->rc = generate_run(c->r->srv, c->r->db, c->p, c->out, c->e);
    } else {
        c->r->retry_after =
            outcome == SLOW_POOL_EXPIRED ? slow_pool_retry_after(c->r->srv->gen_pool) : 1;
        http_error_set(c->e, 503, outcome == SLOW_POOL_EXPIRED ? "queue_timeout" : "shutting_down",
                       NULL, "the request waited too long for a generate worker; retry later");
    }
    pthread_mutex_lock(&c->mutex);
    c->done = true;
    pthread_cond_signal(&c->done_cond);
    pthread_mutex_unlock(&c->mutex);
}

int generate_run_pooled(request *r, const generate_params *p, generate_output *out,
                        generate_error *e) {
    memset(out, 0, sizeof *out);
    pooled_call c = {.r = r, .p = p, .out = out, .e = e, .rc = -1};
    pthread_mutex_init(&c.mutex, NULL);
    pthread_cond_init(&c.done_cond, NULL);
    int64_t retry_after = 0;
    const int refusal =
        slow_pool_submit(r->srv->gen_pool, r->token.id, pooled_run, &c, &retry_after);
    if (refusal != 0) {
        char why[160];
        slow_pool_refusal_text(r->srv->gen_pool, refusal, why, sizeof why);
        r->retry_after = retry_after;
        http_error_set(e, refusal == SLOW_POOL_OWNER_LIMIT ? 429 : 503,
                       refusal == SLOW_POOL_OWNER_LIMIT ? "concurrency_limit_exceeded"
                       : refusal == SLOW_POOL_STOPPED   ? "shutting_down"
                                                        : "server_busy",
                       NULL, "%s; retry after %lld s", why, (long long)retry_after);
    } else {
        pthread_mutex_lock(&c.mutex);
        while (!c.done)
            pthread_cond_wait(&c.done_cond, &c.mutex);
        pthread_mutex_unlock(&c.mutex);
    }
    pthread_mutex_destroy(&c.mutex);
    pthread_cond_destroy(&c.done_cond);
    return refusal != 0 ? -1 : c.rc;
}
