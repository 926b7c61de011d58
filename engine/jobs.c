#include "jobs.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "loop_sample.h"
#include "model.h"
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

/* What a job reads its text with: the tokenizer and, from a model
 * directory, its chat template. */
typedef struct job_text {
    tokenizer tok;
    chat_template tpl;
    bool chat; /* tpl loaded */
} job_text;

static int job_text_open(job_text *t, const job_inputs *in, char *err, size_t errlen) {
    if (job_load_tokenizer(&t->tok, in, err, errlen) != 0)
        return -1;
    t->chat = job_load_chat_template(&t->tpl, &t->tok, in);
    return 0;
}

/* The template, or NULL without one. */
static const chat_template *job_text_template(const job_text *t) {
    return t->chat ? &t->tpl : NULL;
}

static void job_text_close(job_text *t) {
    if (t->chat)
        chat_template_free(&t->tpl);
    tokenizer_free(&t->tok);
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
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    const sft_inputs si = {in->train,
                           in->n_train,
                           in->eval,
                           in->n_eval,
                           &jt.tok,
                           in->init_checkpoint,
                           in->resume_checkpoint,
                           in->dist,
                           job_text_template(&jt)};
    const int rc = sft_train(cfg, &si, sink, NULL, err, errlen);
    job_text_close(&jt);
    return rc;
}

static const char *const sft_headline[] = {"loss", "eval_loss",    "perplexity",
                                           "lr",   "tokens_per_s", NULL};

static const job_type sft_job = {
    .name = "sft",
    .summary = "Supervised fine-tuning of a language model (GPT-2 or Llama family) on (prompt, "
               "response) pairs or chat rows",
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

/* Strings a job rendered. */
typedef struct rendered_texts {
    char **items;
    int64_t n;
} rendered_texts;

static void free_texts(rendered_texts *t) {
    for (int64_t i = 0; i < t->n; i++)
        free(t->items[i]);
    free(t->items);
}

/* Rankings whose rows carry a conversation, rendered by the chat template
 * (tpl NULL: the rankings as they are, prompt = the last user message):
 * the prompt as the conversation with the generation prompt, each response
 * as the rest of the conversation it completes (its content and
 * end-of-turn). Rows without one are copied. *texts collects the rendered
 * strings (free them with free_texts). 0 or -1 with err. */
static int render_rankings(const chat_template *tpl, const ranking *in, int64_t n, ranking **out,
                           rendered_texts *texts, char *err, size_t errlen) {
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
        rk->rendered = true;
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

/* A job's training, held-out and prior rankings, rendered (render_rankings). */
typedef struct job_rankings {
    ranking *train, *eval, *prior;
    rendered_texts texts[3];
} job_rankings;

static int job_rankings_render(job_rankings *r, const job_text *jt, const job_inputs *in, char *err,
                               size_t errlen) {
    memset(r, 0, sizeof *r);
    const chat_template *tpl = job_text_template(jt);
    if (render_rankings(tpl, in->rankings, in->n_rankings, &r->train, &r->texts[0], err, errlen) !=
        0)
        return -1;
    if (in->eval_rankings != NULL && render_rankings(tpl, in->eval_rankings, in->n_eval_rankings,
                                                     &r->eval, &r->texts[1], err, errlen) != 0)
        return -1;
    return in->prior_rankings == NULL
               ? 0
               : render_rankings(tpl, in->prior_rankings, in->n_prior_rankings, &r->prior,
                                 &r->texts[2], err, errlen);
}

static void job_rankings_free(job_rankings *r) {
    free_texts(&r->texts[0]), free_texts(&r->texts[1]), free_texts(&r->texts[2]);
    free(r->train), free(r->eval), free(r->prior);
}

static int reward_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                      size_t errlen) {
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    job_rankings r;
    int rc = job_rankings_render(&r, &jt, in, err, errlen);
    const reward_inputs ri = {.train = r.train,
                              .n_train = in->n_rankings,
                              .eval = r.eval,
                              .n_eval = in->n_eval_rankings,
                              .tok = &jt.tok,
                              .init_checkpoint = in->init_checkpoint,
                              .dist = in->dist,
                              .prior = r.prior,
                              .n_prior = r.prior ? in->n_prior_rankings : 0,
                              .norm_policy = in->ref_checkpoint};
    if (rc == 0)
        rc = reward_train(cfg, &ri, sink, NULL, err, errlen);
    job_rankings_free(&r);
    job_text_close(&jt);
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

/* Prompts rows as the texts a policy continues: prompts[i] is row i's
 * prompt, or its conversation rendered by the template with the generation
 * prompt (kept in texts; rendered[i] says it was). 0 or -1 with err. */
static int render_prompts(const chat_template *tpl, const text_pair *rows, int64_t n,
                          const char **prompts, bool *rendered, rendered_texts *texts, char *err,
                          size_t errlen) {
    for (int64_t i = 0; i < n; i++) {
        prompts[i] = rows[i].prompt;
        rendered[i] = false;
        if (rows[i].messages == NULL)
            continue;
        char **items = realloc(texts->items, sizeof *items * (size_t)(texts->n + 1));
        if (items == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        texts->items = items;
        char *text;
        if (job_render_prompt(tpl, rows[i].messages, &text, err, errlen) != 0) {
            snprintf(err + strlen(err), errlen - strlen(err), " (prompt %lld)", (long long)i + 1);
            return -1;
        }
        prompts[i] = texts->items[texts->n++] = text;
        rendered[i] = true;
    }
    return 0;
}

static int ppo_lm_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                      size_t errlen) {
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    const size_t n = (size_t)(in->n_train > 0 ? in->n_train : 1);
    const char **prompts = malloc(sizeof(char *) * n);
    bool *rendered = malloc(sizeof(bool) * n);
    rendered_texts texts = {0};
    int rc = prompts && rendered ? render_prompts(job_text_template(&jt), in->train, in->n_train,
                                                  prompts, rendered, &texts, err, errlen)
                                 : -1;
    if (prompts == NULL || rendered == NULL)
        snprintf(err, errlen, "out of memory");
    const ppo_lm_inputs pi = {.prompts = prompts,
                              .n_prompts = in->n_train,
                              .prompts_rendered = rendered,
                              .tok = &jt.tok,
                              .policy_checkpoint = in->init_checkpoint,
                              .reward_checkpoint = in->reward_checkpoint,
                              .ref_checkpoint = in->ref_checkpoint,
                              .resume_checkpoint = in->resume_checkpoint,
                              .dist = in->dist};
    if (rc == 0)
        rc = ppo_lm_train(cfg, &pi, sink, NULL, err, errlen);
    free_texts(&texts);
    free(prompts);
    free(rendered);
    job_text_close(&jt);
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
    .reward_model = JOB_REWARD_REQUIRED,
    .data_parallel = 1,
    .validate = ppo_lm_validate_any,
    .run = ppo_lm_run,
};

static int dpo_lm_validate_any(const void *cfg, char *err, size_t errlen) {
    return dpo_lm_validate(cfg, err, errlen);
}

static int dpo_lm_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                      size_t errlen) {
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    job_rankings r;
    int rc = job_rankings_render(&r, &jt, in, err, errlen);
    const dpo_lm_inputs di = {r.train,
                              in->n_rankings,
                              r.eval,
                              in->n_eval_rankings,
                              &jt.tok,
                              in->init_checkpoint,
                              in->resume_checkpoint,
                              in->dist};
    if (rc == 0)
        rc = dpo_lm_train(cfg, &di, sink, NULL, err, errlen);
    job_rankings_free(&r);
    job_text_close(&jt);
    return rc;
}

static const char *const dpo_lm_headline[] = {
    "loss", "rewards/accuracies", "rewards/margins", "eval/rewards/accuracies", "logps/chosen",
    NULL};

static const job_type dpo_lm_job = {
    .name = "dpo",
    .summary = "Direct Preference Optimization of a language model on rankings (sigmoid, IPO, "
               "hinge; label smoothing)",
    .hparams = &dpo_lm_hparams,
    .headline_metrics = dpo_lm_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_RANKINGS,
    .data_parallel = 1,
    .validate = dpo_lm_validate_any,
    .run = dpo_lm_run,
};

/* grpo and rloo: one trainer (grpo_lm.h), the algorithm by job type */
static int grpo_lm_validate_any(const void *cfg, char *err, size_t errlen) {
    return grpo_lm_validate(cfg, err, errlen);
}
static int rloo_lm_validate_any(const void *cfg, char *err, size_t errlen) {
    return rloo_lm_validate(cfg, err, errlen);
}

static int group_pg_run(grpo_algorithm algorithm, const void *cfg, const job_inputs *in,
                        const train_sink *sink, char *err, size_t errlen) {
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    const int64_t n = in->n_train + in->n_eval;
    const char **text = malloc(sizeof(char *) * 2 * (size_t)(n > 0 ? n : 1));
    bool *is_rendered = malloc(sizeof(bool) * (size_t)(n > 0 ? n : 1));
    rendered_texts rendered = {0};
    /* prompts, answers; then the held-out ones */
    const char **prompts = text, **answers = text + n;
    int rc = text && is_rendered ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    for (int64_t i = 0; rc == 0 && i < n; i++)
        answers[i] = i < in->n_train ? in->train[i].response : in->eval[i - in->n_train].response;
    if (rc == 0)
        rc = render_prompts(job_text_template(&jt), in->train, in->n_train, prompts, is_rendered,
                            &rendered, err, errlen);
    if (rc == 0)
        rc = render_prompts(job_text_template(&jt), in->eval, in->n_eval, prompts + in->n_train,
                            is_rendered + in->n_train, &rendered, err, errlen);
    const grpo_lm_inputs gi = {.algorithm = algorithm,
                               .prompts = prompts,
                               .answers = answers,
                               .n_prompts = in->n_train,
                               .eval_prompts = in->n_eval > 0 ? prompts + in->n_train : NULL,
                               .eval_answers = in->n_eval > 0 ? answers + in->n_train : NULL,
                               .n_eval = in->n_eval,
                               .tok = &jt.tok,
                               .policy_checkpoint = in->init_checkpoint,
                               .reward_checkpoint = in->reward_checkpoint,
                               .ref_checkpoint = in->ref_checkpoint,
                               .resume_checkpoint = in->resume_checkpoint,
                               .prompts_rendered = is_rendered,
                               .dist = in->dist};
    if (rc == 0)
        rc = grpo_lm_train(cfg, &gi, sink, NULL, err, errlen);
    free_texts(&rendered);
    free(text);
    free(is_rendered);
    job_text_close(&jt);
    return rc;
}

static int grpo_lm_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                       size_t errlen) {
    return group_pg_run(GRPO_ALGORITHM_GRPO, cfg, in, sink, err, errlen);
}
static int rloo_lm_run(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
                       size_t errlen) {
    return group_pg_run(GRPO_ALGORITHM_RLOO, cfg, in, sink, err, errlen);
}

static const char *const group_pg_headline[] = {
    "reward", "eval/reward", "kl", "frac_reward_zero_std", "completions/mean_length", NULL};

static const job_type grpo_lm_job = {
    .name = "grpo",
    .summary = "GRPO: group-relative policy optimisation of a language model against graders "
               "and/or a reward model",
    .hparams = &grpo_lm_hparams,
    .headline_metrics = group_pg_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_PROMPTS,
    .reward_model = JOB_REWARD_OPTIONAL,
    .data_parallel = 1,
    .validate = grpo_lm_validate_any,
    .run = grpo_lm_run,
};

static const job_type rloo_lm_job = {
    .name = "rloo",
    .summary = "RLOO: REINFORCE with a leave-one-out baseline over k completions, KL in the "
               "reward",
    .hparams = &rloo_lm_hparams,
    .headline_metrics = group_pg_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_PROMPTS,
    .reward_model = JOB_REWARD_OPTIONAL,
    .data_parallel = 1,
    .validate = rloo_lm_validate_any,
    .run = rloo_lm_run,
};

static int loop_sample_validate_any(const void *cfg, char *err, size_t errlen) {
    return loop_sample_validate(cfg, err, errlen);
}

/* The prompts rows as they are (a loop's prompts are plain text: the
 * comparisons it posts show them), scored by reward_checkpoint and the
 * ensemble's other members. */
static int loop_sample_job_run(const void *cfg, const job_inputs *in, const train_sink *sink,
                               char *err, size_t errlen) {
    job_text jt;
    if (job_text_open(&jt, in, err, errlen) != 0)
        return -1;
    const char **prompts = malloc(sizeof(char *) * (size_t)(in->n_train > 0 ? in->n_train : 1));
    const char *rms[LOOP_SAMPLE_MAX_MODELS];
    int n_rm = 0, rc = prompts ? 0 : -1;
    if (prompts == NULL)
        snprintf(err, errlen, "out of memory");
    for (int64_t i = 0; rc == 0 && i < in->n_train; i++)
        prompts[i] = in->train[i].prompt;
    if (in->reward_checkpoint != NULL)
        rms[n_rm++] = in->reward_checkpoint;
    for (int i = 0; i < in->n_more_reward && n_rm < LOOP_SAMPLE_MAX_MODELS; i++)
        rms[n_rm++] = in->more_reward_checkpoints[i];
    const loop_sample_inputs li = {.prompts = prompts,
                                   .n_rows = in->n_train,
                                   .tok = &jt.tok,
                                   .policy_checkpoint = in->init_checkpoint,
                                   .reward_checkpoints = rms,
                                   .n_reward = n_rm};
    if (rc == 0 && in->init_checkpoint == NULL) {
        snprintf(err, errlen, "model: a loop-sample job samples from a model; it has none");
        rc = -1;
    }
    if (rc == 0)
        rc = loop_sample_run(cfg, &li, sink, err, errlen);
    free(prompts);
    job_text_close(&jt);
    return rc;
}

static const char *const loop_sample_headline[] = {"samples", "gold_mean", NULL};

static const job_type loop_sample_job = {
    .name = "loop-sample",
    .summary = "An online loop's round: K responses per prompt from the policy, scored by the "
               "loop's reward models (created by POST /v1/loops)",
    .hparams = &loop_sample_hparams,
    .headline_metrics = loop_sample_headline,
    .needs_train_data = 1,
    .data_kind = JOB_DATA_PROMPTS,
    .reward_model = JOB_REWARD_OPTIONAL,
    .daemon_only = 1,
    .validate = loop_sample_validate_any,
    .run = loop_sample_job_run,
};

const job_type *const job_types[] = {&ppo_control_job, &sft_job,         &reward_job,
                                     &ppo_lm_job,      &dpo_lm_job,      &grpo_lm_job,
                                     &rloo_lm_job,     &loop_sample_job, NULL};

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

int job_config_from_model(const job_type *type, void *cfg, const char *model_path, char *err,
                          size_t errlen) {
    static const char *const shape_rows[] = {"n_layer", "n_head", "d_model", "context"};
    bool sized = false; /* does the table have a row the model decides? */
    for (size_t i = 0; i < sizeof shape_rows / sizeof shape_rows[0]; i++)
        sized |= hparams_find(type->hparams, shape_rows[i]) != NULL;
    if (model_path == NULL || !sized)
        return 0;
    /* the Llama family serves the job's context up to its positions */
    const hparam_def *context = hparams_find(type->hparams, "context");
    const int64_t asked = context ? *(const int64_t *)((const char *)cfg + context->offset) : 0;
    model_shape shape;
    if (model_read_shape(model_path, asked > 0 && asked < INT32_MAX ? (int)asked : 0, &shape, err,
                         errlen) != 0)
        return -1;
    const int64_t values[] = {shape.n_layer, shape.n_head, shape.d_model, shape.context};
    int changed = 0;
    for (size_t i = 0; i < sizeof shape_rows / sizeof shape_rows[0]; i++) {
        const hparam_def *d = hparams_find(type->hparams, shape_rows[i]);
        if (d == NULL || d->type != HPARAM_INT)
            continue;
        int64_t *field = (int64_t *)((char *)cfg + d->offset);
        changed += *field != values[i];
        *field = values[i];
    }
    return changed;
}

int job_check_context(const job_type *type, const void *cfg, const char *model_path, char *err,
                      size_t errlen) {
    const hparam_def *context = hparams_find(type->hparams, "context");
    if (model_path == NULL || context == NULL || context->type != HPARAM_INT)
        return 0;
    const int64_t asked = *(const int64_t *)((const char *)cfg + context->offset);
    /* serving min(asked, its positions): fewer than asked are all it has */
    model_shape shape;
    if (model_read_shape(model_path, asked < INT32_MAX ? (int)asked : INT32_MAX, &shape, err,
                         errlen) != 0)
        return -1;
    if (asked <= shape.context)
        return 0;
    const char *key =
        shape.family == MODEL_FAMILY_LLAMA ? "max_position_embeddings" : "n_positions";
    snprintf(err, errlen,
             "hyperparameter 'context': %lld is more than the model's %d positions (its "
             "config's '%s'); use at most %d",
             (long long)asked, shape.context, key, shape.context);
    return -1;
}
