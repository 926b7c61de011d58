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
#include "db.h"
#include "jobs.h"
#include "model.h"
#include "model_dir.h"
#include "models_store.h"
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

int generate_parse_prompt(const json_t *prompt, generate_params *p, http_error *e) {
    if (prompt == NULL) {
        http_error_set(e, 400, "missing_required_parameter", "prompt", "prompt is required");
        return -1;
    }
    if (json_is_string(prompt)) {
        p->prompts[p->n_prompts++] = json_string_value(prompt);
        return 0;
    }
    if (!json_is_array(prompt) || json_array_size(prompt) < 1 ||
        json_array_size(prompt) > GENERATE_MAX_PROMPTS) {
        http_error_set(e, 400, json_is_array(prompt) ? "invalid_value" : "invalid_type", "prompt",
                       "prompt must be a string or an array of 1..%d strings",
                       GENERATE_MAX_PROMPTS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(prompt); i++) {
        const json_t *s = json_array_get(prompt, i);
        if (!json_is_string(s)) {
            char param[32];
            snprintf(param, sizeof param, "prompt[%zu]", i);
            http_error_set(e, 400, "invalid_type", param, "%s must be a string", param);
            return -1;
        }
        p->prompts[p->n_prompts++] = json_string_value(s);
    }
    return 0;
}

/* ---- the model cache and the slots ------------------------------------------ */

/* A model ready to sample from, with how its lineage reads and writes text. */
typedef struct loaded_model {
    model m;
    tokenizer tok;      /* the base model's tokenizer.json, or byte-level */
    bool has_template;  /* chat needs it */
    chat_template tmpl; /* the base model's chat template */
    int32_t eos_id; /* the tokenizer's end of text (the Llama family also stops at its config's) */
} loaded_model;

/* Cache key: a checkpoint id, or minus a base model's id. */
typedef struct cached_model {
    int64_t key; /* 0: empty entry */
    loaded_model lm;
    int refs;
    uint64_t last_used;
} cached_model;

static struct {
    pthread_mutex_t mutex;
    cached_model *entries;
    int n_entries;
    uint64_t clock;
} G = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t G_once = PTHREAD_ONCE_INIT;
static const rlhfd_config *G_cfg;

static void generate_init(void) {
    G.n_entries = (int)G_cfg->model_cache;
    G.entries = G.n_entries > 0 ? calloc((size_t)G.n_entries, sizeof *G.entries) : NULL;
    if (G.entries == NULL)
        G.n_entries = 0;
    /* Generations run on the generate pool's generate_slots workers; each
     * uses as many BLAS threads as a worker does. */
    openblas_set_num_threads((int)G_cfg->threads_per_job);
}

static void loaded_model_free(loaded_model *lm) {
    model_free(&lm->m);
    tokenizer_free(&lm->tok);
    if (lm->has_template)
        chat_template_free(&lm->tmpl);
    memset(lm, 0, sizeof *lm);
}

/* The tokenizer and chat template of base model base_id (0: byte-level, no
 * template), loaded as the lineage's jobs load them (job_load_tokenizer).
 * 0, or -1 with e. */
static int load_text_side(sqlite3 *db, int64_t base_id, loaded_model *lm, generate_error *e) {
    char dir[4096], why[512], path[4200], format[32] = "";
    const int found =
        base_id > 0 ? model_dir_path(db, G_cfg->data_dir, base_id, dir, sizeof dir, why, sizeof why)
                    : 0;
    if (found < 0) {
        http_error_set(e, 500, "artifact_unreadable", NULL, "%s", why);
        return -1;
    }
    const job_inputs in = {.tokenizer_dir = found ? dir : NULL};
    if (job_load_tokenizer(&lm->tok, &in, why, sizeof why) != 0) {
        http_error_set(e, 500, "invalid_model", NULL, "the model's tokenizer: %s", why);
        return -1;
    }
    lm->eos_id = lm->tok.eot_id;
    if (found && tokenizer_hf(&lm->tok) != NULL) {
        models_store_chat_format(db, base_id, format, sizeof format);
        snprintf(path, sizeof path, "%.4000s/tokenizer_config.json", dir);
        lm->has_template = chat_template_load(&lm->tmpl, path, format, why, sizeof why) == 0;
    }
    return 0;
}

/* Reads checkpoint key (> 0; from the artifact store or its row, adapters
 * merged) or base model -key into lm. 0, or -1 with e. */
static int load_model(sqlite3 *db, int64_t key, loaded_model *lm, generate_error *e) {
    char why[512], path[4096];
    memset(lm, 0, sizeof *lm);
    int fd = -1;
    int64_t base_id = -key;
    if (key > 0) {
        bool found = false;
        fd = checkpoint_file_open(db, G_cfg->data_dir, key, &found, why, sizeof why);
        if (fd < 0) {
            if (found)
                http_error_set(e, 500, "artifact_unreadable", NULL, "%s", why);
            else
                http_error_set(e, 404, "checkpoint_not_found", NULL,
                               "no checkpoint %lld with stored content", (long long)key);
            return -1;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        base_id = models_store_checkpoint_base(db, key);
    } else {
        const int found =
            model_dir_path(db, G_cfg->data_dir, base_id, path, sizeof path, why, sizeof why);
        if (found != 1) {
            if (found < 0)
                http_error_set(e, 500, "artifact_unreadable", NULL, "%s", why);
            else
                http_error_set(e, 404, "model_not_found", NULL, "no model %lld",
                               (long long)base_id);
            return -1;
        }
    }
    const int rc = model_load(path, NULL, &lm->m, NULL, why, sizeof why);
    if (fd >= 0)
        close(fd);
    if (rc != 0) {
        http_error_set(e, 400, "invalid_checkpoint", NULL, "%s %lld cannot be loaded: %.300s",
                       key > 0 ? "checkpoint" : "model", (long long)(key > 0 ? key : -key), why);
        return -1;
    }
    if (load_text_side(db, base_id, lm, e) != 0) {
        loaded_model_free(lm);
        return -1;
    }
    return 0;
}

/* A model to sample from: a cache entry (entry != NULL) or a private copy. */
typedef struct model_handle {
    cached_model *entry;
    loaded_model private_model;
    const loaded_model *lm;
} model_handle;

static int model_acquire(sqlite3 *db, int64_t key, model_handle *h, generate_error *e) {
    memset(h, 0, sizeof *h);
    pthread_mutex_lock(&G.mutex);
    for (int i = 0; i < G.n_entries; i++)
        if (G.entries[i].key == key) {
            h->entry = &G.entries[i];
            h->entry->refs++;
            h->entry->last_used = ++G.clock;
            h->lm = &h->entry->lm;
            pthread_mutex_unlock(&G.mutex);
            return 0;
        }
    pthread_mutex_unlock(&G.mutex);
    /* Loaded outside the lock; a concurrent load of the same key is dropped
     * below in favour of the one cached first. */
    loaded_model lm;
    if (load_model(db, key, &lm, e) != 0)
        return -1;
    pthread_mutex_lock(&G.mutex);
    cached_model *slot = NULL;
    for (int i = 0; i < G.n_entries; i++) {
        cached_model *c = &G.entries[i];
        if (c->key == key) {
            slot = c;
            break;
        }
        if (c->refs == 0 &&
            (slot == NULL || (slot->key != 0 && (c->key == 0 || c->last_used < slot->last_used))))
            slot = c;
    }
    if (slot != NULL && slot->key == key) {
        loaded_model_free(&lm);
    } else if (slot != NULL) {
        if (slot->key != 0)
            loaded_model_free(&slot->lm);
        slot->key = key;
        slot->lm = lm;
    }
    if (slot != NULL) {
        slot->refs++;
        slot->last_used = ++G.clock;
        h->entry = slot;
        h->lm = &slot->lm;
    } else { /* every entry in use (or no cache): this request's own copy */
        h->private_model = lm;
        h->lm = &h->private_model;
    }
    pthread_mutex_unlock(&G.mutex);
    return 0;
}

static void model_release(model_handle *h) {
    if (h->entry != NULL) {
        pthread_mutex_lock(&G.mutex);
        h->entry->refs--;
        pthread_mutex_unlock(&G.mutex);
    } else if (h->lm != NULL) {
        loaded_model_free(&h->private_model);
    }
    h->lm = NULL;
}

/* ---- text as it is generated ------------------------------------------------- */

/* One row's tokens so far, its text, and how much of it went out. */
typedef struct row_text {
    int32_t *ids;
    int n_ids;
    char *text; /* decoded ids (cap bytes) */
    int64_t len, cap, sent;
    bool ended_by_stop;
} row_text;

typedef struct sampling {
    const generate_params *p;
    const loaded_model *lm;
    row_text *rows;
    size_t hold; /* bytes a stop string may still claim: longest stop − 1 */
    bool cancelled;
} sampling;

/* The length of text[0..n) without an incomplete UTF-8 character at its end. */
static int64_t utf8_complete_prefix(const char *text, int64_t n) {
    int64_t i = n;
    for (int back = 0; i > 0 && back < 4; back++) {
        const unsigned char c = (unsigned char)text[i - 1];
        if ((c & 0xC0) != 0x80) { /* the last lead byte: is its character whole? */
            const int need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
            return n - (i - 1) >= need ? n : i - 1;
        }
        i--;
    }
    return n;
}

/* Sends what of row's text is final (everything when the row ended). */
static void row_flush(sampling *s, int b, bool ended) {
    row_text *row = &s->rows[b];
    int64_t upto = ended ? row->len : row->len - (int64_t)s->hold;
    if (!ended)
        upto = utf8_complete_prefix(row->text, upto < 0 ? 0 : upto);
    if (upto <= row->sent)
        return;
    if (s->p->on_delta != NULL && !s->cancelled &&
        !s->p->on_delta(s->p->delta_ctx, b, row->text + row->sent, (size_t)(upto - row->sent)))
        s->cancelled = true;
    row->sent = upto;
}

static bool on_token(void *ctx, int b, int32_t token, float logprob) {
    (void)logprob;
    sampling *s = ctx;
    row_text *row = &s->rows[b];
    const bool eos = model_is_eos(&s->lm->m, s->lm->eos_id, token);
    if (!eos) {
        row->ids[row->n_ids++] = token;
        int64_t n = tokenizer_decode(&s->lm->tok, row->ids, (size_t)row->n_ids, row->text,
                                     (size_t)row->cap);
        row->len = n < 0 ? 0 : n > row->cap ? row->cap : n;
        for (int i = 0; i < s->p->n_stop; i++) {
            const char *hit =
                memmem(row->text, (size_t)row->len, s->p->stop[i], strlen(s->p->stop[i]));
            if (hit != NULL) {
                row->len = hit - row->text;
                row->ended_by_stop = true;
            }
        }
    }
    const bool ended = eos || row->ended_by_stop;
    row_flush(s, b, ended);
    return !ended && !s->cancelled;
}

/* ---- generation ------------------------------------------------------------- */

void generate_output_free(generate_output *out) {
    for (int i = 0; i < out->n_rows && out->texts; i++)
        free(out->texts[i]);
    for (int i = 0; i < out->n_rows && out->token_texts; i++) {
        for (int j = 0; out->token_texts[i] && j < out->n_tokens[i]; j++)
            free(out->token_texts[i][j]);
        free(out->token_texts[i]);
    }
    for (int i = 0; i < out->n_rows && out->token_logprobs; i++)
        free(out->token_logprobs[i]);
    free(out->texts);
    free(out->stopped);
    free(out->n_tokens);
    free(out->token_texts);
    free(out->token_logprobs);
    memset(out, 0, sizeof *out);
}

/* The ids of prompt i (or of the rendered chat) into *ids: their count, or
 * -1 with e. */
static int64_t encode_prompt(const generate_params *p, const loaded_model *lm, int i, int32_t **ids,
                             generate_error *e) {
    char why[512];
    *ids = NULL;
    if (p->n_messages > 0) {
        const hf_tokenizer *hf = tokenizer_hf(&lm->tok);
        if (!lm->has_template || hf == NULL) {
            http_error_set(e, 400, "invalid_request_error", "model",
                           "this model has no chat template (its lineage starts from no "
                           "registered model with tokenizer_config.json's chat_template); use "
                           "/v1/completions");
            return -1;
        }
        const int64_t n = chat_template_encode(&lm->tmpl, hf, p->messages, (size_t)p->n_messages,
                                               true, ids, NULL, why, sizeof why);
        if (n < 0)
            http_error_set(e, 400, "invalid_value", "messages", "messages: %s", why);
        return n;
    }
    char param[32];
    snprintf(param, sizeof param, p->n_prompts > 1 ? "prompt[%d]" : "prompt", i);
    const size_t len = strlen(p->prompts[i]);
    /* An empty prompt on a tokenizer that puts BOS first is BOS alone, and
     * generates from there (as vLLM does); without one there is nothing to
     * continue. */
    const int64_t n = tokenizer_encode_prompt(&lm->tok, p->prompts[i], len, NULL, 0, false);
    if (n == 0) {
        http_error_set(e, 400, "invalid_value", param,
                       "%s is empty and this model's tokenizer puts no BOS token first: give at "
                       "least one token of text to continue",
                       param);
        return -1;
    }
    if (n < 0) {
        http_error_set(e, 400, "invalid_value", param, "%s cannot be tokenized", param);
        return -1;
    }
    if ((*ids = malloc(sizeof(int32_t) * (size_t)n)) == NULL) {
        http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
        return -1;
    }
    tokenizer_encode_prompt(&lm->tok, p->prompts[i], len, *ids, (size_t)n, false);
    return n;
}

/* Row b's per-token texts and log-probs into out. 0 or -1 (out of memory). */
static int fill_logprobs(const loaded_model *lm, const row_text *row, const float *lp,
                         generate_output *out, int b) {
    out->n_tokens[b] = row->n_ids;
    out->token_texts[b] = calloc((size_t)row->n_ids + 1, sizeof(char *));
    out->token_logprobs[b] = malloc(sizeof(float) * ((size_t)row->n_ids + 1));
    if (out->token_texts[b] == NULL || out->token_logprobs[b] == NULL)
        return -1;
    for (int j = 0; j < row->n_ids; j++) {
        char piece[256];
        int64_t n = tokenizer_decode(&lm->tok, row->ids + j, 1, piece, sizeof piece);
        n = n < 0 ? 0 : n > (int64_t)sizeof piece ? (int64_t)sizeof piece : n;
        if ((out->token_texts[b][j] = db_utf8_clean(piece, (size_t)n)) == NULL)
            return -1;
        out->token_logprobs[b][j] = lp[j];
    }
    return 0;
}

int generate_run(server *srv, sqlite3 *db, const generate_params *p, generate_output *out,
                 generate_error *e) {
    G_cfg = &srv->cfg;
    pthread_once(&G_once, generate_init);
    memset(out, 0, sizeof *out);
    const int n_prompts = p->n_messages > 0 ? 1 : p->n_prompts;
    const int B = n_prompts * p->n;
    if (n_prompts < 1 || n_prompts > GENERATE_MAX_PROMPTS || p->n < 1 || B > GENERATE_MAX_ROWS) {
        http_error_set(e, 400, "invalid_value", "n",
                       "prompts × n must be at most %d (got %d prompts × %d)", GENERATE_MAX_ROWS,
                       n_prompts, p->n);
        return -1;
    }
    model_handle h;
    if (model_acquire(db, p->checkpoint_id > 0 ? p->checkpoint_id : -p->model_id, &h, e) != 0)
        return -1;
    const loaded_model *lm = h.lm;
    const int context = model_max_seq_len(&lm->m);
    int32_t *ids[GENERATE_MAX_PROMPTS] = {0};
    int64_t lens[GENERATE_MAX_PROMPTS];
    int P = 0, rc = -1;
    int32_t *prompts = NULL, *gen = NULL, *gen_len = NULL;
    float *logprobs = NULL;
    uint8_t *mask = NULL;
    sampling s = {.p = p, .lm = lm};
    for (int i = 0; i < n_prompts; i++) {
        if ((lens[i] = encode_prompt(p, lm, i, &ids[i], e)) < 0)
            goto done;
        if (lens[i] >= context) {
            const char *param = p->n_messages > 0 ? "messages" : "prompt";
            http_error_set(e, 400, "context_length_exceeded", param,
                           "%s takes %lld tokens; the model's context is %d, and at least one "
                           "token must be left to generate",
                           param, (long long)lens[i], context);
            goto done;
        }
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
    for (int i = 0; i < p->n_stop; i++) {
        const size_t n = strlen(p->stop[i]);
        s.hold = n - 1 > s.hold ? n - 1 : s.hold;
    }
    prompts = malloc(sizeof(int32_t) * (size_t)B * (size_t)P);
    mask = calloc((size_t)B * (size_t)P, 1);
    gen = malloc(sizeof(int32_t) * (size_t)B * (size_t)N);
    gen_len = calloc((size_t)B, sizeof(int32_t));
    logprobs = malloc(sizeof(float) * (size_t)B * (size_t)N);
    s.rows = calloc((size_t)B, sizeof *s.rows);
    out->texts = calloc((size_t)B, sizeof(char *));
    out->stopped = calloc((size_t)B, sizeof(bool));
    if (!prompts || !mask || !gen || !gen_len || !logprobs || !s.rows || !out->texts ||
        !out->stopped)
        goto oom;
    out->n_rows = B;
    for (int b = 0; b < B; b++) {
        s.rows[b].cap = (int64_t)N * 32 + 64;
        s.rows[b].ids = malloc(sizeof(int32_t) * (size_t)N);
        s.rows[b].text = malloc((size_t)s.rows[b].cap);
        if (s.rows[b].ids == NULL || s.rows[b].text == NULL)
            goto oom;
    }
    for (int b = 0; b < B; b++) { /* left-padded: every prompt ends at column P - 1 */
        const int i = b / p->n, pad = P - (int)lens[i];
        for (int t = 0; t < P; t++) {
            prompts[b * P + t] = t < pad ? (lm->eos_id >= 0 ? lm->eos_id : 0) : ids[i][t - pad];
            mask[b * P + t] = t >= pad;
        }
        out->prompt_tokens += lens[i];
    }
    rng_state rng;
    rng_seed(&rng, p->seed, 0x6E6E);
    char why[256];
    if (model_generate_stream(&lm->m, prompts, mask, B, P, (float)p->temperature, 0,
                              (float)p->top_p, N, lm->eos_id, &rng, gen, gen_len, logprobs,
                              on_token, &s, why, sizeof why) != 0) {
        http_error_set(e, 500, "generation_failed", NULL, "%s", why);
        goto done;
    }
    for (int b = 0; b < B; b++) /* what a row held back for a stop string that never came */
        row_flush(&s, b, true);
    if (p->logprobs) {
        out->n_tokens = calloc((size_t)B, sizeof(int));
        out->token_texts = calloc((size_t)B, sizeof(char **));
        out->token_logprobs = calloc((size_t)B, sizeof(float *));
        if (!out->n_tokens || !out->token_texts || !out->token_logprobs)
            goto oom;
    }
    for (int b = 0; b < B; b++) {
        const row_text *row = &s.rows[b];
        out->completion_tokens += gen_len[b];
        out->stopped[b] = row->ended_by_stop || row->n_ids < gen_len[b]; /* a stop string or EOS */
        if ((out->texts[b] = db_utf8_clean(row->text, (size_t)row->len)) == NULL)
            goto oom;
        if (p->logprobs && fill_logprobs(lm, row, logprobs + (int64_t)b * N, out, b) != 0)
            goto oom;
    }
    rc = 0;
    goto done;
oom:
    http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
done:
    model_release(&h);
    for (int i = 0; i < n_prompts; i++)
        free(ids[i]);
    for (int b = 0; s.rows && b < B; b++)
        free(s.rows[b].ids), free(s.rows[b].text);
    free(s.rows);
    free(prompts), free(mask), free(gen), free(gen_len), free(logprobs);
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
