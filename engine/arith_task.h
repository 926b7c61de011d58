/* arith_task — a verifiable task that ships with the project: small-integer
 * arithmetic with a checkable answer, for GRPO/RLOO with graders and their
 * end-to-end tests (issue 16).
 *
 * A problem is "a+b=" or (optionally) "a-b=" with a ≥ b, operands in
 * [0, max_operand]; the answer is the decimal result, nothing else: prompt
 * "17+25=", response "42". No spaces, so the byte-level tokenizer
 * (tokenizer_load_bytes) spends one token a character and GPT-2's BPE
 * splits it into numbers and signs.
 *
 * The train/held-out split is a property of the problem, not of the draw:
 * a problem is held out when a hash of (split_seed, a, op, b) falls in the
 * first heldout_fraction of the range, so train and held-out sets are
 * disjoint for every sampling seed, and the same split_seed always gives
 * the same split. Draws are uniform over the problems of a split
 * (rejection sampling from a uniform problem), deterministic for the rng.
 *
 * Files (JSON lines, the formats the uploads accept):
 *   SFT      {"prompt": "17+25=", "response": "42"}: a warm start in which
 *            a chosen fraction of the responses is right and the rest off
 *            by 1 or 2, so an SFT model learns the format and part of the
 *            arithmetic, and RL has headroom.
 *   prompts  {"prompt": "17+25=", "answer": "42"}: what a GRPO/RLOO job and
 *            a held-out evaluation sample from; the grader reads item.answer.
 * The grader (ARITH_TASK_GRADER_JSON) is a regex grader: the whole
 * completion must be one integer (spaces around allowed) equal to the answer.
 */
#ifndef RLHF_ARITH_TASK_H
#define RLHF_ARITH_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rng.h"

typedef struct arith_task_config {
    int32_t max_operand;     /* operands in [0, max_operand]; 1 .. 9999 */
    bool subtraction;        /* also "a-b=" (a ≥ b) besides "a+b=" */
    uint64_t split_seed;     /* which problems are held out */
    double heldout_fraction; /* in (0, 1) */
} arith_task_config;

/* max_operand 99, addition and subtraction, split_seed 16, 20 % held out. */
arith_task_config arith_task_default_config(void);
/* 0, or -1 with a message naming the field ("max_operand: ..."). */
int arith_task_validate(const arith_task_config *cfg, char *err, size_t errlen);

typedef enum arith_split {
    ARITH_SPLIT_TRAIN,
    ARITH_SPLIT_HELDOUT,
} arith_split;

typedef struct arith_problem {
    int32_t a, b;
    char op; /* '+' or '-' */
} arith_problem;

int64_t arith_task_answer(const arith_problem *p);
/* "17+25=" and "42" (NUL-terminated, truncated to cap). */
void arith_task_prompt(const arith_problem *p, char *buf, size_t cap);
void arith_task_answer_text(const arith_problem *p, char *buf, size_t cap);
/* Reads a prompt written by arith_task_prompt back: 0, or -1 if it is not
 * one ("a+b=" or "a-b=" with decimal operands, nothing else). */
int arith_task_parse_prompt(const char *prompt, arith_problem *p);

bool arith_task_is_heldout(const arith_task_config *cfg, const arith_problem *p);
/* A uniform draw among the problems of split. */
void arith_task_draw(const arith_task_config *cfg, arith_split split, rng_state *rng,
                     arith_problem *p);

/* Writes n SFT rows from split train, drawn from (seed); correct_fraction
 * of them (each row independently) carry the right answer, the others the
 * right answer ± 1 or 2 (never negative, never right). 0, or -1 on a write
 * error or a bad argument, with a message. */
int arith_task_write_sft(FILE *out, const arith_task_config *cfg, int64_t n, uint64_t seed,
                         double correct_fraction, char *err, size_t errlen);
/* Writes n prompt rows with their answers from split, drawn from (seed). */
int arith_task_write_prompts(FILE *out, const arith_task_config *cfg, arith_split split, int64_t n,
                             uint64_t seed, char *err, size_t errlen);

/* The task's grader (engine/grader.h): 1 when the completion, spaces
 * trimmed, is an integer equal to item.answer, else 0. */
#define ARITH_TASK_GRADER_JSON                                                                     \
    "{\"type\": \"regex\", \"name\": \"exact_answer\", "                                           \
    "\"input\": \"{{sample.output_text}}\", "                                                      \
    "\"pattern\": \"^[[:space:]]*(-?[0-9]+)[[:space:]]*$\", \"group\": 1, "                        \
    "\"reference\": \"{{item.answer}}\", \"operation\": \"number_eq\"}"

#endif
