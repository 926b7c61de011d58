#include "jobs.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "ppo_control.h"

static int ppo_control_validate_any(const void *cfg, char *err, size_t errlen) {
    return ppo_control_validate(cfg, err, errlen);
}

static int ppo_control_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                           size_t errlen) {
    return ppo_control_train_resume(cfg, in->resume_checkpoint, sink, NULL, err, errlen);
}

static const char *const ppo_control_headline[] = {
    "global_step", "episodic_return",    "eval_return", "approx_kl",
    "clipfrac",    "explained_variance", "sps",         NULL};

static const job_type ppo_control_job = {
    .name = "ppo-control",
    .summary = "PPO on a classic-control environment (CartPole-v1, Acrobot-v1)",
    .hparams = &ppo_control_hparams,
    .headline_metrics = ppo_control_headline,
    .validate = ppo_control_validate_any,
    .run = ppo_control_run,
};

/* Whether dir holds a Hugging Face tokenizer.json. */
static bool has_tokenizer_json(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    return access(path, R_OK) == 0;
}

int job_load_tokenizer(tokenizer *tok, const job_inputs *in, char *err, size_t errlen) {
    /* a model directory brings its own tokenizer */
    const char *hf = in->tokenizer_dir ? in->tokenizer_dir : in->init_checkpoint;
    if (hf != NULL && has_tokenizer_json(hf))
        return tokenizer_load_hf(tok, hf, err, errlen);
    if (in->tokenizer_dir == NULL)
        return tokenizer_load_bytes(tok, err, errlen);
    char vocab[4096], merges[4096];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", in->tokenizer_dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", in->tokenizer_dir);
    if (access(vocab, R_OK) != 0) { /* OpenAI's names for the same two files */
        snprintf(vocab, sizeof vocab, "%s/encoder.json", in->tokenizer_dir);
        snprintf(merges, sizeof merges, "%s/vocab.bpe", in->tokenizer_dir);
    }
    return tokenizer_load_gpt2(tok, vocab, merges, err, errlen);
}

static int sft_validate_any(const void *cfg, char *err, size_t errlen) {
    return sft_validate(cfg, err, errlen);
}

/* The chat template of the model directory a Hugging Face tokenizer came
 * from (its tokenizer_config.json). Returns true when there is one. */
static bool job_load_chat_template(chat_template *tpl, const tokenizer *tok, const job_inputs *in) {
    const char *dir = in->tokenizer_dir ? in->tokenizer_dir : in->init_checkpoint;
    if (tokenizer_hf(tok) == NULL || dir == NULL)
        return false;
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    return chat_template_load(tpl, path, NULL, err, sizeof err) == 0;
}

/* A conversation (a JSON message list) rendered by the template. */
static int job_render_messages(const chat_template *tpl, const char *messages_json,
                               bool generation_prompt, char **text, char *err, size_t errlen) {
    if (tpl == NULL) {
        snprintf(err, errlen,
                 "a conversational prompt needs a model directory with a chat "
                 "template (tokenizer_config.json)");
        return -1;
    }
    json_t *root = json_loads(messages_json, 0, NULL);
    const size_t n = json_array_size(root);
    chat_message *m = calloc(n + 1, sizeof *m);
    int rc = -1;
    if (m != NULL) {
        const json_t *item;
        size_t i;
        json_array_foreach(root, i, item) {
            m[i].role = json_string_value(json_object_get(item, "role"));
            m[i].content = json_string_value(json_object_get(item, "content"));
        }
        size_t len;
        rc =
            chat_template_render(tpl, m, n, generation_prompt, text, &len, NULL, NULL, err, errlen);
    } else {
        snprintf(err, errlen, "out of memory");
    }
    free(m);
    json_decref(root);
    return rc;
}

/* A conversational prompt as the text the policy continues: the template's
 * rendering with the generation prompt. */
static int job_render_prompt(const chat_template *tpl, const char *messages_json, char **text,
                             char *err, size_t errlen) {
    return job_render_messages(tpl, messages_json, true, text, err, errlen);
}

static int sft_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                   size_t errlen) {
    tokenizer tok;
    if (job_load_tokenizer(&tok, in, err, errlen) != 0)
        return -1;
    chat_template tpl;
    const bool chat = job_load_chat_template(&tpl, &tok, in);
    const sft_inputs si = {
        in->train,           in->n_train,           in->eval, in->n_eval,        &tok,
        in->init_checkpoint, in->resume_checkpoint, in->dist, chat ? &tpl : NULL};
    const int rc = sft_train(cfg, &si, sink, NULL, err, errlen);
    if (chat)
        chat_template_free(&tpl);
    tokenizer_free(&tok);
    return rc;
}

static const char *const sft_headline[] = {"loss", "eval_loss",    "perplexity",
                                           "lr",   "tokens_per_s", NULL};

static const job_type sft_job = {
    .name = "sft",
    .summary = "Supervised fine-tuning of a GPT-2-family model on (prompt, response) pairs",
    .hparams = &sft_hparams,
    .headline_metrics = sft_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_PAIRS,
    .data_parallel = 1,
    .validate = sft_validate_any,
    .run = sft_run,
};

static int reward_validate_any(const void *cfg, char *err, size_t errlen) {
    return reward_validate(cfg, err, errlen);
}

/* Rankings whose rows carry a conversation, rendered by the chat template
 * (tpl NULL: the rankings as they are, prompt = the last user message):
 * the prompt as the conversation with the generation prompt, each response
 * as the rest of the conversation it completes (its content and
 * end-of-turn). Rows without one are copied. *texts collects the rendered
 * strings (free them with free_texts). 0 or -1 with err. */
typedef struct rendered_texts {
    char **items;
    int64_t n;
} rendered_texts;

static void free_texts(rendered_texts *t) {
    for (int64_t i = 0; i < t->n; i++)
        free(t->items[i]);
    free(t->items);
}

static int render_rankings(const chat_template *tpl, const ranking *in, int64_t n, ranking **out,
                           rendered_texts *texts, bool *any, char *err, size_t errlen) {
    *out = calloc((size_t)(n > 0 ? n : 1), sizeof **out);
    texts->items = calloc((size_t)(n > 0 ? n : 1) * (RANKING_MAX_K + 1), sizeof *texts->items);
    texts->n = 0;
    if (*out == NULL || texts->items == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        ranking *rk = &(*out)[i];
        *rk = in[i];
        if (in[i].prompt_messages == NULL || tpl == NULL)
            continue; /* without a template: the last user message, as the row gave it */
        *any = true;
        char *prompt;
        if (job_render_prompt(tpl, in[i].prompt_messages, &prompt, err, errlen) != 0)
            return -1;
        texts->items[texts->n++] = prompt;
        rk->prompt = prompt;
        const size_t np = strlen(prompt);
        for (int k = 0; k < rk->k; k++) {
            /* the conversation with this answer appended, rendered whole */
            json_t *conv = json_loads(in[i].prompt_messages, 0, NULL);
            json_array_append_new(
                conv, json_pack("{s:s, s:s}", "role", "assistant", "content", in[i].responses[k]));
            char *conv_text = json_dumps(conv, JSON_COMPACT);
            json_decref(conv);
            char *full = NULL;
            const int rc =
                conv_text ? job_render_messages(tpl, conv_text, false, &full, err, errlen) : -1;
            free(conv_text);
            if (rc != 0)
                return -1;
            if (strncmp(full, prompt, np) != 0) {
                snprintf(err, errlen,
                         "ranking %lld: the chat template renders the prompt "
                         "differently once an answer follows",
                         (long long)i + 1);
                free(full);
                return -1;
            }
            memmove(full, full + np, strlen(full + np) + 1);
            texts->items[texts->n++] = full;
            rk->responses[k] = full;
        }
    }
    return 0;
}

static int reward_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                      size_t errlen) {
    tokenizer tok;
    if (job_load_tokenizer(&tok, in, err, errlen) != 0)
        return -1;
    chat_template tpl;
    const bool chat = job_load_chat_template(&tpl, &tok, in);
    ranking *train = NULL, *eval = NULL;
    rendered_texts t1 = {0}, t2 = {0};
    bool any = false;
    int rc = render_rankings(chat ? &tpl : NULL, in->rankings, in->n_rankings, &train, &t1, &any,
                             err, errlen);
    if (rc == 0 && in->eval_rankings != NULL)
        rc = render_rankings(chat ? &tpl : NULL, in->eval_rankings, in->n_eval_rankings, &eval, &t2,
                             &any, err, errlen);
    const reward_inputs ri = {train, in->n_rankings,      eval,     in->n_eval_rankings,
                              &tok,  in->init_checkpoint, in->dist, any};
    if (rc == 0)
        rc = reward_train(cfg, &ri, sink, NULL, err, errlen);
    free_texts(&t1), free_texts(&t2);
    free(train), free(eval);
    if (chat)
        chat_template_free(&tpl);
    tokenizer_free(&tok);
    return rc;
}

static const char *const reward_headline[] = {"loss",   "accuracy",   "eval_accuracy",
                                              "margin", "reward_std", NULL};

static const job_type reward_job = {
    .name = "reward",
    .summary = "Reward model on human rankings (Bradley-Terry over K-wise rankings)",
    .hparams = &reward_hparams,
    .headline_metrics = reward_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_RANKINGS,
    .data_parallel = 1,
    .validate = reward_validate_any,
    .run = reward_run,
};

static int ppo_lm_validate_any(const void *cfg, char *err, size_t errlen) {
    return ppo_lm_validate(cfg, err, errlen);
}

static int ppo_lm_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                      size_t errlen) {
    tokenizer tok;
    if (job_load_tokenizer(&tok, in, err, errlen) != 0)
        return -1;
    const char **prompts = malloc(sizeof(char *) * (size_t)(in->n_train > 0 ? in->n_train : 1));
    if (prompts == NULL) {
        tokenizer_free(&tok);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* conversational prompts: rendered by the chat template, generation prompt added */
    chat_template tpl;
    const bool chat = job_load_chat_template(&tpl, &tok, in);
    char **rendered = calloc((size_t)(in->n_train > 0 ? in->n_train : 1), sizeof *rendered);
    int rc = rendered ? 0 : -1;
    bool any_chat = false;
    for (int64_t i = 0; rc == 0 && i < in->n_train; i++) {
        prompts[i] = in->train[i].prompt;
        if (in->train[i].messages == NULL)
            continue;
        any_chat = true;
        rc =
            job_render_prompt(chat ? &tpl : NULL, in->train[i].messages, &rendered[i], err, errlen);
        if (rc != 0)
            snprintf(err + strlen(err), errlen - strlen(err), " (prompt %lld)", (long long)i + 1);
        prompts[i] = rendered[i];
    }
    if (rendered == NULL)
        snprintf(err, errlen, "out of memory");
    const ppo_lm_inputs pi = {.prompts = prompts,
                              .n_prompts = in->n_train,
                              .prompts_special = any_chat,
                              .tok = &tok,
                              .policy_checkpoint = in->init_checkpoint,
                              .reward_checkpoint = in->reward_checkpoint,
                              .resume_checkpoint = in->resume_checkpoint,
                              .dist = in->dist};
    if (rc == 0)
        rc = ppo_lm_train(cfg, &pi, sink, NULL, err, errlen);
    for (int64_t i = 0; rendered && i < in->n_train; i++)
        free(rendered[i]);
    free(rendered);
    free(prompts);
    if (chat)
        chat_template_free(&tpl);
    tokenizer_free(&tok);
    return rc;
}

static const char *const ppo_lm_headline[] = {"objective/scores",          "objective/kl",
                                              "objective/kl_coef",         "policy/clipfrac_avg",
                                              "tokens/responses_len_mean", NULL};

static const job_type ppo_lm_job = {
    .name = "ppo",
    .summary = "RLHF PPO of a language model against a reward model, KL-penalised to the SFT model",
    .hparams = &ppo_lm_hparams,
    .headline_metrics = ppo_lm_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_PROMPTS,
    .data_parallel = 1,
    .validate = ppo_lm_validate_any,
    .run = ppo_lm_run,
};

const job_type *const job_types[] = {&ppo_control_job, &sft_job, &reward_job, &ppo_lm_job, NULL};

const job_type *job_type_find(const char *name) {
    for (const job_type *const *t = job_types; *t; t++)
        if (strcmp((*t)->name, name) == 0)
            return *t;
    return NULL;
}

int job_config_from_json(const job_type *type, void *cfg, const json_t *obj, char *err,
                         size_t errlen) {
    hparams_set_defaults(type->hparams, cfg);
    if (obj != NULL && hparams_apply_json(type->hparams, cfg, obj, err, errlen) != 0)
        return -1;
    return type->validate(cfg, err, errlen);
}
