/* actor_critic — the MLP policy and value function of control PPO.
 *
 * Two layouts, chosen by `shared_trunk`:
 *   separate (CleanRL default):  obs → [dense, act] × L → actor head (A)
 *                                obs → [dense, act] × L → critic head (1)
 *   shared:                      obs → [dense, act] × L ─┬→ actor head (A)
 *                                                         └→ critic head (1)
 * All weights live in one flat buffer (params), carved in this order: actor
 * trunk layers, critic trunk layers (separate layout only), actor head,
 * critic head; each layer is weight (OC, C) then bias (OC). Gradients and
 * Adam moments use the same layout, so the optimizer is one loop.
 * Activations for up to max_batch rows are preallocated in ac_acts.
 */
#ifndef RLHF_ACTOR_CRITIC_H
#define RLHF_ACTOR_CRITIC_H

#include <stdbool.h>
#include <stdint.h>

#include "nn.h"
#include "rng.h"

#define AC_MAX_HIDDEN_LAYERS 8

typedef struct ac_dense {
    int64_t w; /* offset of weight (out, in) in the parameter buffer */
    int64_t b; /* offset of bias (out) */
    int in, out;
} ac_dense;

typedef struct ac_model {
    int obs_dim, n_actions, hidden_size, hidden_layers;
    bool shared_trunk;
    activation_kind activation;
    ac_dense actor_trunk[AC_MAX_HIDDEN_LAYERS];
    ac_dense critic_trunk[AC_MAX_HIDDEN_LAYERS]; /* unused when shared_trunk */
    ac_dense actor_head, critic_head;
    int64_t n_params;
} ac_model;

/* Activations of one forward pass, for up to max_batch rows. */
typedef struct ac_acts {
    int max_batch;
    float *actor_pre[AC_MAX_HIDDEN_LAYERS];   /* (B, H) before the activation */
    float *actor_post[AC_MAX_HIDDEN_LAYERS];  /* (B, H) after it */
    float *critic_pre[AC_MAX_HIDDEN_LAYERS];  /* (B, H) separate layout only */
    float *critic_post[AC_MAX_HIDDEN_LAYERS]; /* (B, H) */
    float *logits;                            /* (B, A) */
    float *logp;                              /* (B, A) log-softmax of logits */
    float *values;                            /* (B) */
    float *dlogits;                           /* (B, A) backward scratch */
    float *dvalues;                           /* (B) */
    float *dhidden[2];                        /* (B, H) ping-pong backward scratch */
    float *dtrunk_top;                        /* (B, H) shared-trunk gradient sum */
    float *memory;                            /* the single allocation behind it all */
} ac_acts;

/* Lays out a model; returns 0, or -1 if hidden_layers is out of 1..AC_MAX_HIDDEN_LAYERS. */
int ac_model_init(ac_model *model, int obs_dim, int n_actions, int hidden_size, int hidden_layers,
                  bool shared_trunk, activation_kind activation);
/* Orthogonal init as CleanRL's layer_init: gain sqrt(2) for trunk layers,
 * 0.01 for the actor head, 1.0 for the critic head; biases 0. */
void ac_model_init_params(const ac_model *model, float *params, rng_state *rng);

int ac_acts_init(ac_acts *acts, const ac_model *model, int max_batch);
void ac_acts_free(ac_acts *acts);

/* Forward over B rows of obs (B, obs_dim): fills logits and logp, and values
 * when with_critic (the critic is skipped for greedy evaluation). */
void ac_forward(const ac_model *model, const float *params, ac_acts *acts, const float *obs, int B,
                bool with_critic);
/* Backward from acts->dlogits (B, A) and acts->dvalues (B), which the caller
 * filled; accumulates into grads (same layout as params). */
void ac_backward(const ac_model *model, const float *params, float *grads, ac_acts *acts,
                 const float *obs, int B);

#endif
