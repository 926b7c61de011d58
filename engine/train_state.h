/* train_state — helpers for resumable checkpoints, shared by the trainers.
 *
 * A resumable checkpoint is the model's safetensors file plus the trainer's
 * state: extra tensors under `training_state.` (optimizer moments, …) and
 * `training_state.*` metadata (counters, RNG states, the hyperparameters as
 * JSON). Metadata values are text, so everything here round-trips exactly:
 * integers in decimal, RNG states as four hex words, doubles as C99 hex
 * floats ("%a"). A resume refuses a checkpoint whose stored hyperparameters
 * differ from the job's: the same data and hyperparameters are what make
 * the resumed run bit-identical to an uninterrupted one.
 */
#ifndef RLHF_TRAIN_STATE_H
#define RLHF_TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "hparams.h"
#include "rng.h"
#include "safetensors.h"

/* "%016llx,%016llx,%016llx,%016llx" of the four state words (cap >= 80). */
void train_state_format_rng(char *out, size_t cap, const rng_state *r);
/* Parses what train_state_format_rng wrote; -1 if text is NULL or malformed. */
int train_state_parse_rng(rng_state *r, const char *text);

/* A non-negative decimal integer from metadata key; clears *ok if missing or
 * malformed (and returns 0). */
int64_t train_state_meta_i64(const safetensors_file *f, const char *key, int *ok);
/* A double written with "%a" (exact); clears *ok if missing or malformed. */
double train_state_meta_f64(const safetensors_file *f, const char *key, int *ok);

/* Arrays in metadata, exact and compact enough for a few thousand values:
 * n doubles as "%a" joined by ',', n integers in decimal joined by ',', n
 * RNG states (each as train_state_format_rng) joined by ';'. The format
 * functions return malloc'd text ("" for n = 0), NULL on allocation failure;
 * the parse functions fill exactly n values and return 0, or -1 if text is
 * NULL, malformed or holds another count (x is then partly written). */
char *train_state_format_f64s(const double *x, int64_t n);
int train_state_parse_f64s(double *x, int64_t n, const char *text);
char *train_state_format_i64s(const int64_t *x, int64_t n);
int train_state_parse_i64s(int64_t *x, int64_t n, const char *text);
char *train_state_format_rngs(const rng_state *r, int64_t n);
int train_state_parse_rngs(rng_state *r, int64_t n, const char *text);

/* The config as compact JSON (malloc'd; NULL on allocation failure): what
 * `training_state.config` holds. */
char *train_state_config_text(const hparam_table *table, const void *cfg);

/* Checks that f carries training state (`training_state.config`) written
 * with exactly these hyperparameters. Returns 0, or -1 with err saying the
 * checkpoint has no training state or that the hyperparameters differ. */
int train_state_check_config(const safetensors_file *f, const hparam_table *table, const void *cfg,
                             char *err, size_t errlen);

#endif
