#include "sft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "chat_template.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "hf_tokenizer.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "train_state.h"

/* ==== hyperparameters ======================================================== */

static const char *const schedule_choices[] = {"cosine", "linear", "constant", NULL};
static const char *const loss_on_choices[] = {"response", "all", NULL};
static const char *const lora_target_choices[] = {"all", "attn", "mlp", NULL};

#define F(name) offsetof(sft_config, name)
static const hparam_def sft_defs[] = {
    {"seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,
     "Seeds initialisation, the data order, the eval split and sampling."},
    {"n_layer", HPARAM_INT, F(n_layer), 4, 1, 96, NULL,
     "Transformer blocks (from scratch; an init checkpoint brings its own)."},
    {"n_head", HPARAM_INT, F(n_head), 4, 1, 128, NULL, "Attention heads; must divide d_model."},
    {"d_model", HPARAM_INT, F(d_model), 128, 8, 8192, NULL, "Width of the residual stream."},
    {"context", HPARAM_INT, F(context), 128, 8, 8192, NULL,
     "Longest sequence; longer examples are truncated. From a model, at most its positions "
     "(max_position_embeddings, GPT-2's n_positions: more is an error) and fewer run as asked "
     "(a checkpoint keeps the model's positions); the default is lowered to them."},
    {"batch_size", HPARAM_INT, F(batch_size), 16, 1, 4096, NULL, "Examples per micro-batch."},
    {"grad_accum_steps", HPARAM_INT, F(grad_accum_steps), 1, 1, 1024, NULL,
     "Micro-batches per optimizer step."},
    {"max_steps", HPARAM_INT, F(max_steps), 0, 0, 1e9, NULL,
     "Optimizer steps to run; 0 = as many as `epochs` takes."},
    {"epochs", HPARAM_INT, F(epochs), 3, 1, 10000, NULL, "Passes over the data (max_steps = 0)."},
    {"learning_rate", HPARAM_FLOAT, F(learning_rate), 1e-3, 0, 1, NULL, "Peak AdamW step size."},
    {"lr_schedule", HPARAM_CHOICE, F(lr_schedule), 0, 0, 0, schedule_choices,
     "Decay after warm-up."},
    {"warmup_steps", HPARAM_INT, F(warmup_steps), 20, 0, 1e9, NULL, "Linear warm-up steps."},
    {"min_lr_ratio", HPARAM_FLOAT, F(min_lr_ratio), 0.1, 0, 1, NULL,
     "Final learning rate as a fraction of the peak."},
    {"weight_decay", HPARAM_FLOAT, F(weight_decay), 0.1, 0, 10, NULL,
     "AdamW decoupled weight decay, on matrices only."},
    {"beta1", HPARAM_FLOAT, F(beta1), 0.9, 0, 0.9999, NULL, "AdamW beta1."},
    {"beta2", HPARAM_FLOAT, F(beta2), 0.95, 0, 0.99999, NULL, "AdamW beta2."},
    {"adam_eps", HPARAM_FLOAT, F(adam_eps), 1e-8, 1e-12, 1, NULL, "AdamW epsilon."},
    {"max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 1.0, 0, 1e6, NULL,
     "Clip the global gradient norm to this."},
    {"loss_on", HPARAM_CHOICE, F(loss_on), 0, 0, 0, loss_on_choices,
     "Train on the response tokens only, or on every token."},
    {"eval_fraction", HPARAM_FLOAT, F(eval_fraction), 0.05, 0, 0.5, NULL,
     "Share of the data held out for eval loss when no eval set is given."},
    {"eval_interval", HPARAM_INT, F(eval_interval), 50, 0, 1e9, NULL,
     "Eval loss every this many steps (0 = only at the end)."},
    {"checkpoint_interval", HPARAM_INT, F(checkpoint_interval), 0, 0, 1e9, NULL,
     "Checkpoint every this many steps (0 = only at the end)."},
    {"sample_interval", HPARAM_INT, F(sample_interval), 100, 0, 1e9, NULL,
     "Log sample generations every this many steps (0 = only at the end)."},
    {"sample_max_tokens", HPARAM_INT, F(sample_max_tokens), 48, 1, 4096, NULL,
     "New tokens per logged sample."},
    {"sample_temperature", HPARAM_FLOAT, F(sample_temperature), 0, 0, 10, NULL,
     "Temperature of logged samples (0 = greedy)."},
    /* LoRA last: a run without it writes the training_state.config of the
     * table before them (state_table), so checkpoints stay as they were. */
    {"lora_r", HPARAM_INT, F(lora_r), 0, 0, 4096, NULL,
     "LoRA rank (0 = full fine-tuning). With LoRA only the adapters train; checkpoints hold the "
     "base and the adapters."},
    {"lora_alpha", HPARAM_FLOAT, F(lora_alpha), 16, 1e-6, 1e6, NULL,
     "LoRA alpha: adapters are scaled by lora_alpha / lora_r."},
    {"lora_targets", HPARAM_CHOICE, F(lora_targets), 0, 0, 0, lora_target_choices,
     "Projections that get adapters: all, attention's, or the MLP's."},
};
#undef F

const hparam_table sft_hparams = {sft_defs, (int)(sizeof sft_defs / sizeof sft_defs[0]),
                                  sizeof(sft_config)};

/* The hyperparameters a checkpoint's training_state.config records: without
 * LoRA the table before the three LoRA keys. */
static const hparam_table sft_hparams_no_lora = {
    sft_defs, (int)(sizeof sft_defs / sizeof sft_defs[0]) - 3, sizeof(sft_config)};

static const hparam_table *state_table(const sft_config *cfg) {
    return cfg->lora_r > 0 ? &sft_hparams : &sft_hparams_no_lora;
}

int sft_validate(const sft_config *cfg, char *err, size_t errlen) {
    if (cfg->d_model % cfg->n_head != 0) {
        snprintf(err, errlen, "hyperparameter 'n_head': %lld does not divide d_model %lld",
                 (long long)cfg->n_head, (long long)cfg->d_model);
        return -1;
    }
    return 0;
}

/* ==== data ==================================================================== */

int64_t sft_tokenize(const tokenizer *tok, const text_pair *ex, bool all_tokens, int32_t *ids,
                     uint8_t *loss_mask, int64_t cap) {
    return sft_tokenize_text(tok, ex, all_tokens, false, ids, loss_mask, cap);
}

int64_t sft_tokenize_text(const tokenizer *tok, const text_pair *ex, bool all_tokens, bool rendered,
                          int32_t *ids, uint8_t *loss_mask, int64_t cap) {
    const int64_t np =
        tokenizer_encode_input(tok, ex->prompt, strlen(ex->prompt), ids, (size_t)cap, rendered);
    if (np < 0)
        return -1;
    const int64_t p = np < cap ? np : cap;
    const int64_t nr = tokenizer_encode(tok, ex->response, strlen(ex->response), ids + p,
                                        (size_t)(cap - p), rendered);
    if (nr < 0)
        return -1;
    int64_t n = p + (nr < cap - p ? nr : cap - p);
    if (n < cap)
        ids[n++] = tok->eot_id;
    /* loss_mask[i] trains the prediction of ids[i + 1]: a response token or
     * the EOT, i.e. targets at positions >= p. */
    for (int64_t i = 0; i < n; i++)
        loss_mask[i] = i + 1 < n && (all_tokens || i + 1 >= p);
    return n;
}

/* The messages of a JSON message list (pointing into root). */
static chat_message *parse_messages(const json_t *root, size_t *n) {
    *n = json_array_size(root);
    chat_message *m = calloc(*n + 1, sizeof *m);
    const json_t *item;
    size_t i;
    json_array_foreach(root, i, item) {
        if (m == NULL)
            break;
        m[i].role = json_string_value(json_object_get(item, "role"));
        m[i].content = json_string_value(json_object_get(item, "content"));
    }
    return m;
}

int64_t sft_tokenize_chat(const tokenizer *tok, const struct chat_template *chat,
                          const text_pair *ex, bool all_tokens, int32_t *ids, uint8_t *loss_mask,
                          int64_t cap, char *err, size_t errlen) {
    const hf_tokenizer *hf = tokenizer_hf(tok);
    if (chat == NULL || hf == NULL) {
        snprintf(err, errlen,
                 "a chat example needs a model directory with tokenizer.json and a "
                 "chat template (tokenizer_config.json)");
        return -1;
    }
    json_t *root = json_loads(ex->messages, 0, NULL);
    size_t n = 0;
    chat_message *m = json_is_array(root) ? parse_messages(root, &n) : NULL;
    int32_t *all = NULL, *prefix = NULL;
    uint8_t *assistant = NULL;
    int64_t count = -1, n_prefix = 0;
    if (m == NULL) {
        snprintf(err, errlen, "the example's messages are not a message list");
        goto out;
    }
    count = chat_template_encode(chat, hf, m, n, false, &all, &assistant, err, errlen);
    if (count >= 0 && ex->first_trained > 0) {
        n_prefix = chat_template_encode(chat, hf, m, (size_t)ex->first_trained, false, &prefix,
                                        NULL, err, errlen);
        count = n_prefix < 0 ? -1 : count;
    }
    if (count < 0)
        goto out;
    count = count < cap ? count : cap;
    for (int64_t i = 0; i < count; i++) {
        ids[i] = all[i];
        loss_mask[i] = i + 1 < count && (all_tokens || (assistant[i + 1] && i + 1 >= n_prefix));
    }
out:
    free(all), free(prefix), free(assistant), free(m);
    json_decref(root);
    return count;
}

typedef struct sft_data {
    int32_t *ids;    /* all examples, concatenated */
    uint8_t *mask;   /* loss mask, aligned with ids */
    int64_t *offset; /* (n + 1) start of each example */
    int64_t n;
    int64_t truncated;  /* examples cut at the context */
    int64_t last_turns; /* chat examples trained as their last turn (no template) */
} sft_data;

static void data_free(sft_data *d) {
    free(d->ids), free(d->mask), free(d->offset);
    memset(d, 0, sizeof *d);
}

/* Tokenizes examples[order[0..n)] into d, each to at most context + 1 ids. */
static int data_build(sft_data *d, const tokenizer *tok, const struct chat_template *chat,
                      const text_pair *examples, const int32_t *order, int64_t n, int64_t context,
                      bool all_tokens, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    const int64_t cap = context + 1;
    d->ids = malloc(sizeof(int32_t) * (size_t)(n * cap));
    d->mask = malloc((size_t)(n * cap));
    d->offset = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!d->ids || !d->mask || !d->offset) {
        snprintf(err, errlen, "out of memory tokenizing %lld examples", (long long)n);
        data_free(d);
        return -1;
    }
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        const text_pair *ex = &examples[order ? order[i] : i];
        d->offset[i] = at;
        char why[400] = "the tokenizer failed";
        /* without a template, a chat example that also holds its last turn
         * as a pair (rlhfd's rows) trains on that */
        const bool last_turn = ex->messages && chat == NULL && ex->response[0] != '\0';
        d->last_turns += last_turn;
        const int64_t k = ex->messages && !last_turn
                              ? sft_tokenize_chat(tok, chat, ex, all_tokens, d->ids + at,
                                                  d->mask + at, cap, why, sizeof why)
                              : sft_tokenize(tok, ex, all_tokens, d->ids + at, d->mask + at, cap);
        if (k < 0) {
            snprintf(err, errlen, "example %lld: %s", (long long)i + 1, why);
            data_free(d);
            return -1;
        }
        d->truncated += k == cap && d->ids[at + k - 1] != tok->eot_id; /* no room for the end */
        at += k;
    }
    d->offset[n] = at;
    d->n = n;
    return 0;
}

/* ==== training ================================================================== */

typedef struct batch_buf {
    int32_t *tokens, *targets; /* (B, T) */
    uint8_t *attn, *loss;      /* (B, T) */
    int B, T;
    int64_t loss_tokens;
} batch_buf;

/* Right-pads examples idx[0..B) of d into a batch; T is the longest input. */
static void make_batch(batch_buf *bb, const sft_data *d, const int64_t *idx, int B) {
    int T = 1;
    for (int b = 0; b < B; b++) {
        const int64_t len = d->offset[idx[b] + 1] - d->offset[idx[b]] - 1;
        T = len > T ? (int)len : T;
    }
    bb->B = B;
    bb->T = T;
    bb->loss_tokens = 0;
    for (int b = 0; b < B; b++) {
        const int64_t start = d->offset[idx[b]];
        const int64_t len = d->offset[idx[b] + 1] - start - 1;
        for (int t = 0; t < T; t++) {
            const int64_t i = (int64_t)b * T + t;
            const int real = t < len;
            bb->tokens[i] = real ? d->ids[start + t] : 0;
            bb->targets[i] = real ? d->ids[start + t + 1] : 0;
            bb->attn[i] = (uint8_t)real;
            bb->loss[i] = real && d->mask[start + t];
            bb->loss_tokens += bb->loss[i];
        }
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The trained targets of examples idx[0..n) of d: what make_batch counts in
 * loss_tokens. Every rank counts the whole micro-batch to weight its shard. */
static int64_t count_loss_tokens(const sft_data *d, const int64_t *idx, int n) {
    int64_t tokens = 0;
    for (int b = 0; b < n; b++)
        for (int64_t i = d->offset[idx[b]]; i < d->offset[idx[b] + 1] - 1; i++)
            tokens += d->mask[i];
    return tokens;
}

/* Token-weighted mean loss over all of d; with data parallelism each rank
 * evaluates its shard of d and the sums are reduced. */
static double evaluate(model *m, const sft_data *d, batch_buf *bb, int B, const dist_comm *dist) {
    double sums[2] = {0.0, 0.0}; /* loss · tokens, tokens */
    int64_t lo, hi;
    dist_shard(d->n, dist_rank(dist), dist_size(dist), &lo, &hi);
    int64_t idx[4096];
    for (int64_t start = lo; start < hi; start += B) {
        const int n = (int)(hi - start < B ? hi - start : B);
        for (int b = 0; b < n; b++)
            idx[b] = start + b;
        make_batch(bb, d, idx, n);
        if (bb->loss_tokens == 0)
            continue;
        model_forward(m, bb->tokens, NULL, bb->attn, bb->B, bb->T, 0, bb->T);
        sums[0] += (double)model_lm_loss(m, bb->targets, bb->loss, 0.0f) * (double)bb->loss_tokens;
        sums[1] += (double)bb->loss_tokens;
    }
    if (dist_allreduce_sum_f64(dist, sums, 2) != 0)
        return NAN;
    return sums[1] > 0 ? sums[0] / sums[1] : NAN;
}

/* Greedy (or sampled) continuations of a few held-out prompts, as events. */
static void log_samples(const model *m, const sft_config *cfg, const sft_inputs *in,
                        const text_pair *const *examples, int shown, int64_t step, rng_state *rng,
                        const train_sink *sink) {
    for (int i = 0; i < shown; i++) {
        int32_t prompt[1024];
        const int64_t np = tokenizer_encode_prompt(
            in->tok, examples[i]->prompt, strlen(examples[i]->prompt), prompt, 1024, false);
        /* as many new tokens as asked, or as the context still holds */
        const int64_t room = model_max_seq_len(m) - np;
        const int64_t max_new = cfg->sample_max_tokens < room ? cfg->sample_max_tokens : room;
        /* an empty prompt (a text or chat row) has nothing to continue */
        if (examples[i]->prompt[0] == '\0' || np < 1 || np > 1024 || max_new < 1)
            continue;
        int32_t *out = malloc(sizeof(int32_t) * (size_t)max_new);
        int32_t len = 0;
        char err[128];
        if (out &&
            model_generate(m, prompt, NULL, 1, (int)np, (float)cfg->sample_temperature, 0, 1.0f,
                           (int)max_new, in->tok->eot_id, rng, out, &len, err, sizeof err) == 0) {
            if (len > 0 && out[len - 1] == in->tok->eot_id)
                len--;
            char text[2048];
            int64_t k = tokenizer_decode(in->tok, out, (size_t)len, text, sizeof text - 1);
            k = k < 0 ? 0 : k > (int64_t)sizeof text - 1 ? (int64_t)sizeof text - 1 : k;
            text[k] = '\0';
            char msg[3072];
            snprintf(msg, sizeof msg, "sample at step %lld: %.900s -> %s", (long long)step,
                     examples[i]->prompt, text);
            const sink_metric data[] = {{"step", (double)step}, {"index", i}};
            sink_event(sink, SINK_LEVEL_INFO, "sample", msg, data, 2);
        }
        free(out);
    }
}

/* Where training is, beyond the weights: what a resume restores. */
typedef struct sft_state {
    int64_t step, epoch, cursor, tokens_seen;
    rng_state data_epoch_start; /* data_rng before this epoch's shuffle */
    rng_state sample;
    float *adam_m, *adam_v; /* (num_params) */
} sft_state;

static int emit_checkpoint(const model *m, const sft_config *cfg, const sft_state *st,
                           bool with_state, const train_sink *sink) {
    char step[24], epoch[24], cursor[24], tokens[24], data_rng[80], sample_rng[80];
    snprintf(step, sizeof step, "%lld", (long long)st->step);
    snprintf(epoch, sizeof epoch, "%lld", (long long)st->epoch);
    snprintf(cursor, sizeof cursor, "%lld", (long long)st->cursor);
    snprintf(tokens, sizeof tokens, "%lld", (long long)st->tokens_seen);
    train_state_format_rng(data_rng, sizeof data_rng, &st->data_epoch_start);
    train_state_format_rng(sample_rng, sizeof sample_rng, &st->sample);
    char *config = train_state_config_text(state_table(cfg), cfg);
    const char *const meta[][2] = {{"rlhfd_job", "sft"},
                                   {"step", step},
                                   {"training_state.epoch", epoch},
                                   {"training_state.cursor", cursor},
                                   {"training_state.tokens_seen", tokens},
                                   {"training_state.data_rng", data_rng},
                                   {"training_state.sample_rng", sample_rng},
                                   {"training_state.config", config ? config : ""}};
    const int64_t np = model_trainable_count(m);
    const safetensors_tensor state[2] = {
        {.name = "training_state.adam_m", .data = st->adam_m, .ndim = 1, .shape = {np}},
        {.name = "training_state.adam_v", .data = st->adam_v, .ndim = 1, .shape = {np}}};
    /* a NULL config (out of memory) fails the state's metadata */
    const int rc = model_sink_checkpoint(sink, st->step, m, meta, with_state ? 8 : 2,
                                         with_state ? state : NULL, with_state ? 2 : 0);
    free(config);
    return rc;
}

/* Restores st (and the model, already loaded from the same file) from a
 * resumable checkpoint written by this job with these hyperparameters. */
static int restore_state(sft_state *st, const safetensors_file *f, const sft_config *cfg,
                         int64_t num_params, char *err, size_t errlen) {
    if (train_state_check_config(f, state_table(cfg), cfg, err, errlen) != 0)
        return -1;
    int ok = 1;
    st->step = train_state_meta_i64(f, "step", &ok);
    st->epoch = train_state_meta_i64(f, "training_state.epoch", &ok);
    st->cursor = train_state_meta_i64(f, "training_state.cursor", &ok);
    st->tokens_seen = train_state_meta_i64(f, "training_state.tokens_seen", &ok);
    ok = ok && train_state_parse_rng(&st->data_epoch_start,
                                     safetensors_metadata_get(f, "training_state.data_rng")) == 0;
    ok = ok && train_state_parse_rng(&st->sample,
                                     safetensors_metadata_get(f, "training_state.sample_rng")) == 0;
    const safetensors_info *mt = safetensors_find(f, "training_state.adam_m");
    const safetensors_info *vt = safetensors_find(f, "training_state.adam_v");
    if (!ok || mt == NULL || vt == NULL) {
        snprintf(err, errlen, "resume: the checkpoint's training state is incomplete");
        return -1;
    }
    if (safetensors_load_f32(mt, st->adam_m, num_params, err, errlen) != 0 ||
        safetensors_load_f32(vt, st->adam_v, num_params, err, errlen) != 0)
        return -1;
    return 0;
}

/* Shuffles the epoch's order of 0..n-1 with r. */
static void shuffle_epoch(int64_t *perm, int64_t n, rng_state *r) {
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        const int64_t j = (int64_t)rng_next_below(r, (uint32_t)i + 1);
        const int64_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
}

/* The job's adapters (lora_r, lora_alpha, lora_targets), A from RNG stream
 * 0xB0000004 of the seed. */
static int job_lora(const sft_config *cfg, model_family family, model_lora *out, char *err,
                    size_t errlen) {
    unsigned targets;
    if (model_lora_targets(family, cfg->lora_targets, &targets, err, errlen) != 0)
        return -1;
    *out = (model_lora){(int)cfg->lora_r, (float)cfg->lora_alpha, targets, (uint64_t)cfg->seed,
                        0xB0000004u};
    return 0;
}

static int init_model(model *m, const sft_config *cfg, const sft_inputs *in, char *err,
                      size_t errlen) {
    const char *path = in->resume_checkpoint ? in->resume_checkpoint : in->init_checkpoint;
    const bool resume_lora = cfg->lora_r > 0 && in->resume_checkpoint != NULL;
    model_lora lora;
    if (path == NULL) {
        const gpt2_config gc = {in->tok->vocab_size, (int)cfg->context, (int)cfg->n_layer,
                                (int)cfg->n_head,    (int)cfg->d_model, false};
        gpt2_model g;
        if (gpt2_init(&g, &gc, err, errlen) != 0)
            return -1;
        rng_state r;
        rng_seed(&r, (uint64_t)cfg->seed, 0xB0000001u);
        gpt2_init_weights(&g, &r);
        model_from_gpt2(m, &g);
    } else {
        /* Adapters attach before a resume checkpoint loads (its own then
         * load into them); on an init checkpoint they are fresh. */
        model_open_options opt = {.max_context = (int)cfg->context};
        model_family family;
        if (resume_lora && (model_source_family(path, &family, err, errlen) != 0 ||
                            job_lora(cfg, family, &lora, err, errlen) != 0))
            return -1;
        opt.lora = resume_lora ? &lora : NULL;
        if (model_load(path, &opt, m, NULL, err, errlen) != 0)
            return -1;
        if (model_vocab_size(m) < in->tok->vocab_size) {
            snprintf(err, errlen,
                     "init checkpoint: vocabulary of %d is smaller than the tokenizer's %d",
                     model_vocab_size(m), in->tok->vocab_size);
            model_free(m);
            return -1;
        }
    }
    if (cfg->lora_r > 0 && !resume_lora &&
        (job_lora(cfg, m->family, &lora, err, errlen) != 0 ||
         model_attach_lora(m, &lora, err, errlen) != 0)) {
        model_free(m);
        return -1;
    }
    if (model_alloc_grads(m, err, errlen) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

/* ==== the session ================================================================ */

struct sft_session {
    const sft_config *cfg;
    const sft_inputs *in;
    const train_sink *sink;
    model m;
    int B;
    bool all_tokens;
    int64_t n_train, total_steps;
    lr_schedule_kind sched;
    rng_state data_rng;
    sft_state st;
    int32_t *order;    /* (n_train + n_eval) the seeded split */
    int64_t *perm_idx; /* (n_train) this epoch's order */
    sft_data train, eval;
    batch_buf bb;
    uint8_t *decay;            /* (num_params) 1 = AdamW decays it */
    const text_pair *shown[2]; /* the prompts samples continue */
    int n_shown;
};

void sft_session_free(sft_session *s) {
    if (s == NULL)
        return;
    free(s->order), free(s->perm_idx), free(s->bb.tokens), free(s->bb.attn);
    free(s->st.adam_m), free(s->st.adam_v), free(s->decay);
    data_free(&s->train);
    data_free(&s->eval);
    model_free(&s->m);
    free(s);
}

int sft_session_init(sft_session **out, const sft_config *cfg, const sft_inputs *in,
                     const train_sink *sink, char *err, size_t errlen) {
    *out = NULL;
    if (sft_validate(cfg, err, errlen) != 0)
        return -1;
    if (in->n_train < 1) {
        snprintf(err, errlen, "no training examples");
        return -1;
    }
    sft_session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (init_model(&s->m, cfg, in, err, errlen) != 0) {
        free(s);
        return -1;
    }
    s->cfg = cfg, s->in = in, s->sink = sink;
    model *m = &s->m;
    const int64_t context = model_max_seq_len(m);
    const int B = s->B = (int)cfg->batch_size;
    s->all_tokens = strcmp(cfg->loss_on, "all") == 0;
    const dist_comm *dist = in->dist;

    /* The split: a seeded shuffle; the tail is held out unless an eval set is given. */
    sft_state *st = &s->st;
    rng_seed(&s->data_rng, (uint64_t)cfg->seed, 0xB0000002u);
    rng_seed(&st->sample, dist_sample_seed((uint64_t)cfg->seed, dist_rank(in->dist)), 0xB0000003u);
    s->order = malloc(sizeof(int32_t) * (size_t)in->n_train);
    s->perm_idx = malloc(sizeof(int64_t) * (size_t)in->n_train);
    if (s->order == NULL || s->perm_idx == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    rng_permutation(&s->data_rng, s->order, (int32_t)in->n_train);
    int64_t n_train = in->n_train, n_eval = 0;
    const text_pair *eval_src = in->eval;
    if (in->eval != NULL) {
        n_eval = in->n_eval;
    } else if (cfg->eval_fraction > 0.0 && in->n_train >= 2) {
        n_eval = (int64_t)(cfg->eval_fraction * (double)in->n_train);
        n_eval = n_eval < 1 ? 1 : n_eval;
        n_train -= n_eval;
        eval_src = in->train;
    }
    s->n_train = n_train;
    if (data_build(&s->train, in->tok, in->chat, in->train, s->order, n_train, context,
                   s->all_tokens, err, errlen))
        goto fail;
    if (n_eval > 0 &&
        data_build(&s->eval, in->tok, in->chat, eval_src, in->eval ? NULL : s->order + n_train,
                   n_eval, context, s->all_tokens, err, errlen))
        goto fail;
    if (sink_warn_truncated(sink, "training examples", s->train.truncated, n_train, "context",
                            context) != 0) {
        snprintf(err, errlen, "cannot report the truncated examples");
        goto fail;
    }
    if (s->train.last_turns + s->eval.last_turns > 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%lld chat examples train on their last turn only (the last user message and "
                 "the answer): the model has no chat template to render the conversation",
                 (long long)(s->train.last_turns + s->eval.last_turns));
        const sink_metric data[] = {
            {"n_examples", (double)(s->train.last_turns + s->eval.last_turns)}};
        if (sink_event(sink, SINK_LEVEL_WARN, "chat_without_template", msg, data, 1) != 0) {
            snprintf(err, errlen, "cannot report the chat examples");
            goto fail;
        }
    }
    /* Samples continue the first held-out prompts (training ones without an eval set). */
    for (; s->n_shown < 2 && s->n_shown < (n_eval > 0 ? n_eval : n_train); s->n_shown++)
        s->shown[s->n_shown] = in->eval     ? &in->eval[s->n_shown]
                               : n_eval > 0 ? &in->train[s->order[n_train + s->n_shown]]
                                            : &in->train[s->order[s->n_shown]];
    const int64_t cap = (int64_t)B * context;
    batch_buf *bb = &s->bb;
    bb->tokens = malloc(sizeof(int32_t) * (size_t)cap * 2);
    bb->targets = bb->tokens + cap;
    bb->attn = malloc((size_t)cap * 2);
    bb->loss = bb->attn + cap;
    const int64_t np = model_trainable_count(m);
    st->adam_m = calloc((size_t)np, sizeof(float));
    st->adam_v = calloc((size_t)np, sizeof(float));
    s->decay = malloc((size_t)np);
    if (!bb->tokens || !bb->attn || !st->adam_m || !st->adam_v || !s->decay ||
        model_reserve(m, B, (int)context, err, errlen) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for training state");
        goto fail;
    }
    model_trainable_decay_mask(m, s->decay);

    const int64_t micro_per_epoch = (n_train + B - 1) / B;
    const int64_t steps_per_epoch =
        (micro_per_epoch + cfg->grad_accum_steps - 1) / cfg->grad_accum_steps;
    s->total_steps = cfg->max_steps > 0 ? cfg->max_steps : steps_per_epoch * cfg->epochs;
    s->sched = (lr_schedule_kind)lr_schedule_from_name(cfg->lr_schedule);
    st->cursor = n_train; /* past the end: the first step shuffles a new epoch */
    if (in->resume_checkpoint != NULL) {
        safetensors_file f;
        if (safetensors_read_file(&f, in->resume_checkpoint, err, errlen) != 0)
            goto fail;
        const int rrc = restore_state(st, &f, cfg, np, err, errlen);
        safetensors_free(&f);
        if (rrc != 0)
            goto fail;
        /* Redo the current epoch's shuffle from its saved start: the same
         * order, and data_rng where the uninterrupted run has it. */
        s->data_rng = st->data_epoch_start;
        shuffle_epoch(s->perm_idx, n_train, &s->data_rng);
    }
    if (dist_size(dist) > 1) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "data parallel on %d ranks: each micro-batch of %d split across them, "
                 "gradients all-reduced every step",
                 dist_size(dist), B);
        const sink_metric data[] = {{"world_size", dist_size(dist)}};
        sink_event(sink, SINK_LEVEL_INFO, "data_parallel", msg, data, 1);
    }
    *out = s;
    return 0;
fail:
    sft_session_free(s);
    return -1;
}

int64_t sft_session_total_steps(const sft_session *s) {
    return s->total_steps;
}

int64_t sft_session_steps_done(const sft_session *s) {
    return s->st.step;
}

bool sft_session_has_eval(const sft_session *s) {
    return s->eval.n > 0;
}

const model *sft_session_model(const sft_session *s) {
    return &s->m;
}

int sft_session_step(sft_session *s, sft_step_result *out, char *err, size_t errlen) {
    const sft_config *cfg = s->cfg;
    const dist_comm *dist = s->in->dist;
    model *m = &s->m;
    sft_state *st = &s->st;
    batch_buf *bb = &s->bb;
    const int B = s->B;
    const int64_t step = st->step;
    const double t0 = now_s();
    model_zero_grad(m);
    /* summed over ranks: loss (token-weighted), tokens, non-finite losses */
    double sums[3] = {0.0, 0.0, 0.0};
    for (int64_t a = 0; a < cfg->grad_accum_steps; a++) {
        int64_t idx[4096];
        int n = 0;
        while (n < B) {
            if (st->cursor >= s->n_train) { /* a new epoch: reshuffle */
                st->data_epoch_start = s->data_rng;
                shuffle_epoch(s->perm_idx, s->n_train, &s->data_rng);
                st->cursor = 0;
                st->epoch++;
            }
            idx[n++] = s->perm_idx[st->cursor++];
        }
        /* This rank's shard of the micro-batch, weighted by its share of
         * the micro-batch's trained tokens: the ranks' gradients then sum
         * to the gradient of the whole micro-batch's mean loss. */
        const int64_t global_tokens = count_loss_tokens(&s->train, idx, n);
        int64_t lo, hi;
        dist_shard(n, dist_rank(dist), dist_size(dist), &lo, &hi);
        if (hi == lo)
            continue;
        make_batch(bb, &s->train, idx + lo, (int)(hi - lo));
        if (bb->loss_tokens == 0)
            continue;
        const double share = (double)bb->loss_tokens / (double)global_tokens;
        model_forward(m, bb->tokens, NULL, bb->attn, bb->B, bb->T, 0, bb->T);
        const float loss =
            model_lm_loss(m, bb->targets, bb->loss, (float)(share / (double)cfg->grad_accum_steps));
        if (!isfinite(loss)) {
            sums[2] += 1.0;
            continue;
        }
        model_backward(m, true, false);
        sums[0] += loss * share;
        sums[1] += (double)bb->B * bb->T;
    }
    const double t_reduce = now_s();
    float *params = model_trainable_params(m), *grads = model_trainable_grads(m);
    const int64_t np = model_trainable_count(m);
    if (dist_allreduce_sum_f32(dist, grads, np) != 0 ||
        dist_allreduce_sum_f64(dist, sums, 3) != 0) {
        snprintf(err, errlen, "reducing the gradients across ranks failed at step %lld",
                 (long long)step + 1);
        return -1;
    }
    if (sums[2] > 0.0) {
        snprintf(err, errlen, "non-finite loss at step %lld", (long long)step + 1);
        return -1;
    }
    const double allreduce_s = now_s() - t_reduce;
    const int64_t step_tokens = (int64_t)sums[1];
    const double grad_norm = grad_clip_global_norm(grads, np, cfg->max_grad_norm);
    const float lr = lr_schedule(s->sched, (float)cfg->learning_rate, step, cfg->warmup_steps,
                                 s->total_steps, (float)cfg->min_lr_ratio);
    const adam_config adamw = {lr, (float)cfg->beta1, (float)cfg->beta2, (float)cfg->adam_eps,
                               (float)cfg->weight_decay};
    adam_step(params, grads, st->adam_m, st->adam_v, s->decay, np, &adamw, step + 1);
    if (dist_check_replicas(dist, params, np, err, errlen) != 0)
        return -1;
    st->tokens_seen += step_tokens;
    st->step = step + 1;
    *out = (sft_step_result){.step = st->step,
                             .epoch = st->epoch,
                             .loss = sums[0] / (double)cfg->grad_accum_steps,
                             .lr = lr,
                             .grad_norm = grad_norm,
                             .tokens = step_tokens,
                             .tokens_seen = st->tokens_seen,
                             .step_s = now_s() - t0,
                             .allreduce_s = allreduce_s};
    return 0;
}

double sft_session_eval(sft_session *s) {
    return s->eval.n > 0 ? evaluate(&s->m, &s->eval, &s->bb, s->B, s->in->dist) : NAN;
}

void sft_session_log_samples(sft_session *s) {
    log_samples(&s->m, s->cfg, s->in, s->shown, s->n_shown, s->st.step, &s->st.sample, s->sink);
}

int sft_session_checkpoint(sft_session *s, bool with_state) {
    return emit_checkpoint(&s->m, s->cfg, &s->st, with_state, s->sink);
}

/* ==== the loop =================================================================== */

int sft_train(const sft_config *cfg, const sft_inputs *in, const train_sink *sink,
              sft_result *result, char *err, size_t errlen) {
    sft_session *s;
    if (sft_session_init(&s, cfg, in, sink, err, errlen) != 0)
        return -1;
    const dist_comm *dist = in->dist;
    const int64_t total_steps = sft_session_total_steps(s);
    const bool has_eval = sft_session_has_eval(s);
    int rc = -1;
    sft_result res = {.eval_loss = NAN};
    const double start = now_s();
    while (sft_session_steps_done(s) < total_steps) {
        if (dist_should_stop(dist, sink)) {
            res.stopped = true;
            break;
        }
        sft_step_result sr;
        if (sft_session_step(s, &sr, err, errlen) != 0)
            goto done;
        const int64_t step = sr.step;
        res.steps = step;
        res.train_loss = sr.loss;
        const bool last = step == total_steps;
        sink_metric mt[12];
        int k = 0;
        mt[k++] = (sink_metric){"epoch", (double)sr.epoch};
        mt[k++] = (sink_metric){"loss", sr.loss};
        mt[k++] = (sink_metric){"lr", sr.lr};
        mt[k++] = (sink_metric){"grad_norm", sr.grad_norm};
        mt[k++] = (sink_metric){"tokens_per_s", (double)sr.tokens / sr.step_s};
        mt[k++] = (sink_metric){"tokens", (double)sr.tokens_seen};
        mt[k++] = (sink_metric){"wall_s", now_s() - start};
        if (dist_size(dist) > 1) /* rank 0's wait in the all-reduce: transfer + imbalance */
            mt[k++] = (sink_metric){"allreduce_s", sr.allreduce_s};
        if (has_eval && (last || (cfg->eval_interval > 0 && step % cfg->eval_interval == 0))) {
            res.eval_loss = sft_session_eval(s);
            mt[k++] = (sink_metric){"eval_loss", res.eval_loss};
            mt[k++] = (sink_metric){"perplexity", exp(res.eval_loss)};
        }
        if (sink_metrics(sink, step, mt, k) != 0) {
            snprintf(err, errlen, "the metrics sink failed");
            goto done;
        }
        if (dist_is_root(dist) &&
            (last || (cfg->sample_interval > 0 && step % cfg->sample_interval == 0)))
            sft_session_log_samples(s);
        if (dist_is_root(dist) && !last && cfg->checkpoint_interval > 0 &&
            step % cfg->checkpoint_interval == 0 && sft_session_checkpoint(s, true) != 0) {
            snprintf(err, errlen, "writing the checkpoint at step %lld failed", (long long)step);
            goto done;
        }
    }
    /* A stopped run keeps its state so it can resume; a finished one is weights only. */
    if (dist_is_root(dist) && sft_session_checkpoint(s, res.stopped) != 0) {
        snprintf(err, errlen, "writing the final checkpoint failed");
        goto done;
    }
    rc = 0;
done:
    if (result)
        *result = res;
    sft_session_free(s);
    return rc;
}
