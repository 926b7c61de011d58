#include "arith_task.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

arith_task_config arith_task_default_config(void) {
    return (arith_task_config){99, true, 16, 0.2};
}

int arith_task_validate(const arith_task_config *cfg, char *err, size_t errlen) {
    if (cfg->max_operand < 1 || cfg->max_operand > 9999)
        snprintf(err, errlen, "max_operand: must be in [1, 9999]");
    else if (!(cfg->heldout_fraction > 0 && cfg->heldout_fraction < 1))
        snprintf(err, errlen, "heldout_fraction: must be in (0, 1)");
    else
        return 0;
    return -1;
}

int64_t arith_task_answer(const arith_problem *p) {
    return p->op == '-' ? (int64_t)p->a - p->b : (int64_t)p->a + p->b;
}

void arith_task_prompt(const arith_problem *p, char *buf, size_t cap) {
    snprintf(buf, cap, "%" PRId32 "%c%" PRId32 "=", p->a, p->op, p->b);
}

void arith_task_answer_text(const arith_problem *p, char *buf, size_t cap) {
    snprintf(buf, cap, "%" PRId64, arith_task_answer(p));
}

/* A run of 1 to 4 decimal digits at *s (no sign, no leading '+'). */
static int read_operand(const char **s, int32_t *out) {
    const char *start = *s;
    int32_t v = 0;
    while (isdigit((unsigned char)**s) && *s - start < 5)
        v = v * 10 + (*(*s)++ - '0');
    if (*s == start || *s - start > 4)
        return -1;
    *out = v;
    return 0;
}

int arith_task_parse_prompt(const char *prompt, arith_problem *p) {
    const char *s = prompt;
    if (read_operand(&s, &p->a) != 0 || (*s != '+' && *s != '-'))
        return -1;
    p->op = *s++;
    if (read_operand(&s, &p->b) != 0 || strcmp(s, "=") != 0)
        return -1;
    return 0;
}

/* splitmix64's finaliser: a well-mixed 64-bit hash of x. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

bool arith_task_is_heldout(const arith_task_config *cfg, const arith_problem *p) {
    const uint64_t key =
        ((uint64_t)(uint32_t)p->a << 32) | ((uint64_t)(uint32_t)p->b << 1) | (p->op == '-');
    const uint64_t h = mix64(mix64(cfg->split_seed) ^ key);
    return (double)(h >> 11) * 0x1.0p-53 < cfg->heldout_fraction;
}

void arith_task_draw(const arith_task_config *cfg, arith_split split, rng_state *rng,
                     arith_problem *p) {
    const uint32_t n = (uint32_t)cfg->max_operand + 1;
    do {
        p->op = cfg->subtraction && rng_next_below(rng, 2) == 1 ? '-' : '+';
        p->a = (int32_t)rng_next_below(rng, n);
        p->b = (int32_t)rng_next_below(rng, n);
        if (p->op == '-' && p->a < p->b) { /* a - b with a ≥ b: order the pair */
            const int32_t t = p->a;
            p->a = p->b, p->b = t;
        }
    } while (arith_task_is_heldout(cfg, p) != (split == ARITH_SPLIT_HELDOUT));
}

/* One JSON line {"prompt": ..., key: value}; our strings need no escaping. */
static int write_row(FILE *out, const char *prompt, const char *key, const char *value) {
    return fprintf(out, "{\"prompt\": \"%s\", \"%s\": \"%s\"}\n", prompt, key, value) < 0 ? -1 : 0;
}

int arith_task_write_sft(FILE *out, const arith_task_config *cfg, int64_t n, uint64_t seed,
                         double correct_fraction, char *err, size_t errlen) {
    if (arith_task_validate(cfg, err, errlen) != 0)
        return -1;
    if (!(correct_fraction >= 0 && correct_fraction <= 1)) {
        snprintf(err, errlen, "correct_fraction: must be in [0, 1]");
        return -1;
    }
    rng_state problems, answers;
    rng_seed(&problems, seed, 0xA817A001u);
    rng_seed(&answers, seed, 0xA817A002u);
    for (int64_t i = 0; i < n; i++) {
        arith_problem p;
        arith_task_draw(cfg, ARITH_SPLIT_TRAIN, &problems, &p);
        int64_t answer = arith_task_answer(&p);
        if (rng_next_double(&answers) >= correct_fraction) {
            const int64_t offset = 1 + (int64_t)rng_next_below(&answers, 2);
            const bool down = rng_next_below(&answers, 2) == 0 && answer - offset >= 0;
            answer += down ? -offset : offset;
        }
        char prompt[32], response[32];
        arith_task_prompt(&p, prompt, sizeof prompt);
        snprintf(response, sizeof response, "%" PRId64, answer);
        if (write_row(out, prompt, "response", response) != 0) {
            snprintf(err, errlen, "writing the SFT rows: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}

int arith_task_write_prompts(FILE *out, const arith_task_config *cfg, arith_split split, int64_t n,
                             uint64_t seed, char *err, size_t errlen) {
    if (arith_task_validate(cfg, err, errlen) != 0)
        return -1;
    rng_state problems;
    rng_seed(&problems, seed, split == ARITH_SPLIT_HELDOUT ? 0xA817A004u : 0xA817A003u);
    for (int64_t i = 0; i < n; i++) {
        arith_problem p;
        arith_task_draw(cfg, split, &problems, &p);
        char prompt[32], answer[32];
        arith_task_prompt(&p, prompt, sizeof prompt);
        arith_task_answer_text(&p, answer, sizeof answer);
        if (write_row(out, prompt, "answer", answer) != 0) {
            snprintf(err, errlen, "writing the prompt rows: %s", strerror(errno));
            return -1;
        }
    }
    return 0;
}
