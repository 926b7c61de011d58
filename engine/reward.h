/* reward — a reward model trained on human rankings (Bradley–Terry).
 *
 * The model is a GPT-2-family transformer with a scalar head read at the last
 * token of prompt + response + <|endoftext|> (gpt2.h), initialised from an
 * SFT checkpoint. A ranking orders K = 2..9 responses to one prompt, ties
 * allowed; as InstructGPT (Ouyang et al. 2022, §3.5) all C(K, 2) pairs of a
 * ranking form one batch element — one forward per completion — and the
 * loss is averaged over its pairs:
 *     loss(ranking) = mean over pairs (w better than l) of
 *                     -log σ(r_w - r_l - margin) + c · mean_k r_k²
 * (margin: Llama 2's optional margin; c: the reward-centering term of
 * Eisenstein et al. 2023, TRL's center_rewards_coefficient). Tied responses
 * form no pair.
 *
 * After training, rewards are normalised so that responses sampled from the
 * SFT policy score mean 0, std 1 (Ziegler et al. 2019): the gain and bias
 * are stored in the checkpoint metadata (reward_gain, reward_bias) and the
 * scalar head is NOT changed, so the raw model stays the trained one.
 */
#ifndef RLHF_REWARD_H
#define RLHF_REWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "gpt2.h"
#include "hparams.h"
#include "ranking_limits.h"
#include "sink.h"
#include "tokenizer.h"

/* One human judgement: K responses to a prompt and the rank of each
 * (0 = best; equal ranks are ties). */
typedef struct ranking {
    const char *prompt;
    int k;
    const char *responses[RANKING_MAX_K];
    int rank[RANKING_MAX_K];
    float margin; /* added to the BT logit's threshold when use_margin (0 otherwise) */
    /* the conversation before the responses (an OpenAI message list as JSON
     * text) when the row had one; the job renders it with the chat
     * template, else prompt is its last user message */
    const char *prompt_messages;
    /* prompt and responses are the chat template's rendering of it (the
     * job's): tokenized as apply_chat_template does (tokenizer_encode_input) */
    bool rendered;
} ranking;

typedef struct reward_config {
    int64_t seed;
    int64_t n_layer, n_head, d_model, context; /* from scratch only (tests); else the init's */
    int64_t batch_size;                        /* rankings per step */
    int64_t max_steps;
    int64_t epochs;
    double learning_rate;
    char lr_schedule[HPARAM_CHOICE_BYTES];
    int64_t warmup_steps;
    double min_lr_ratio;
    double weight_decay;
    double max_grad_norm;
    bool use_margin;
    double center_coef;
    double eval_fraction;
    int64_t eval_interval;
    int64_t norm_samples; /* SFT-policy samples for the gain/bias normalisation (0 = skip) */
    int64_t norm_max_tokens;
    /* Comparisons whose rankings the worker loads as reward_inputs.prior
     * (0: none; the online loop sets them) */
    int64_t prior_first_comparison, prior_last_comparison;
} reward_config;

extern const hparam_table reward_hparams;

typedef struct reward_inputs {
    const ranking *train;
    int64_t n_train;
    const ranking *eval; /* NULL: hold out eval_fraction */
    int64_t n_eval;
    const tokenizer *tok;
    const char *init_checkpoint; /* the SFT model; NULL = from scratch (tests) */
    const dist_comm *dist;       /* data parallelism (dist.h); NULL = one process */
    /* Scored by the initial model before the first update (the online loop:
     * the previous reward model on a round's new rankings); its pair
     * accuracy is reported at step 0 as prior_correct of prior_pairs. */
    const ranking *prior;
    int64_t n_prior;
    /* The policy whose samples the reward is normalised on; NULL: the
     * initial model's weights. A warm-started reward model (the online
     * loop's rounds after the first) starts from the previous reward model,
     * whose language-model weights drifted while it learned to score: the
     * loop names the SFT checkpoint here, as the first round samples it. */
    const char *norm_policy;
} reward_inputs;

typedef struct reward_result {
    int64_t steps;
    double train_accuracy, eval_accuracy, eval_loss;
    double gain, bias; /* normalisation (1, 0 when skipped) */
} reward_result;

int reward_validate(const reward_config *cfg, char *err, size_t errlen);
/* The whole run: a loop over the session below that reports metrics every
 * step (held-out loss and accuracy every eval_interval and at the end),
 * then normalises and writes the one checkpoint. */
int reward_train(const reward_config *cfg, const reward_inputs *in, const train_sink *sink,
                 reward_result *result, char *err, size_t errlen);

/* ---- one step at a time ----------------------------------------------------
 * reward_train drives these; so can other loops. cfg, in and sink must
 * outlive the session; with data parallelism every rank calls the same
 * sequence. */
typedef struct reward_session reward_session;

typedef struct reward_step_result {
    int64_t step; /* optimizer steps done, this one included */
    double loss, accuracy, margin, reward_mean, reward_std; /* of the step's rankings */
    double grad_norm, lr;                                   /* grad_norm before clipping */
} reward_step_result;

typedef struct reward_eval_result {
    double loss, accuracy; /* NAN without held-out rankings */
} reward_eval_result;

/* Validates the rankings, opens the model (init_checkpoint with a scalar
 * head, or from scratch), samples the SFT policy for the normalisation
 * (rank 0, norm_samples), tokenizes and splits the rankings, allocates the
 * optimizer state. */
int reward_session_init(reward_session **s, const reward_config *cfg, const reward_inputs *in,
                        const train_sink *sink, char *err, size_t errlen);
int64_t reward_session_total_steps(const reward_session *s);
int64_t reward_session_steps_done(const reward_session *s);
/* One AdamW step on the next batch_size rankings (a new epoch reshuffles). */
int reward_session_step(reward_session *s, reward_step_result *out, char *err, size_t errlen);
bool reward_session_has_eval(const reward_session *s);
reward_eval_result reward_session_eval(reward_session *s);
/* Gain and bias that give the SFT policy's samples mean 0, std 1 (Ziegler
 * et al. 2019; 1 and 0 without samples), posted as a "reward_normalised"
 * event; the checkpoint carries them. */
void reward_session_normalize(reward_session *s, double *gain, double *bias);
/* The reward model through the sink (rank 0; other ranks do nothing). */
int reward_session_checkpoint(reward_session *s, char *err, size_t errlen);
const struct model *reward_session_model(const reward_session *s);
void reward_session_free(reward_session *s);

/* Bradley–Terry loss of one ranking from its K rewards r: returns the
 * loss above (NAN if the ranking has no strict pair) and, when dr is not
 * NULL, adds scale · ∂loss/∂r_k to dr[k]. correct/pairs count pairs the
 * rewards already order right. */
double reward_ranking_loss(const float *r, const ranking *rk, bool use_margin, double center_coef,
                           float *dr, float scale, int *correct, int *pairs);

/* Checks a ranking: K in 2..9, ranks in 0..K-1, at least one strict pair.
 * Returns 0 or -1 with a message naming the field. */
int ranking_validate(const ranking *rk, char *err, size_t errlen);

#endif
