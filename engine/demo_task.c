#include "demo_task.h"

#include "reward.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const subjects[] = {"cat",      "dog",     "river",   "city",    "garden",
                                       "book",     "song",    "teacher", "train",   "forest",
                                       "market",   "lamp",    "storm",   "kitchen", "bridge",
                                       "painting", "village", "robot",   "ocean",   "letter"};
static const char *const positive[] = {"bright", "kind",   "warm",     "lovely",
                                       "calm",   "gentle", "cheerful", "wonderful"};
static const char *const negative[] = {"dull",   "cold",   "grim",   "noisy",
                                       "gloomy", "broken", "dreary", "awful"};
static const char *const neutral[] = {"small", "old",   "green", "tall",
                                      "quiet", "round", "heavy", "distant"};
static const char *const prompt_forms[] = {"Describe the %s.", "Tell me about the %s.",
                                           "What is the %s like?"};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *any_adjective(rng_state *rng) {
    const uint32_t i = rng_next_below(rng, 24);
    return i < 8 ? positive[i] : i < 16 ? negative[i - 8] : neutral[i - 16];
}

static void describe(rng_state *rng, const char *s, char *response, size_t response_cap) {
    const char *a = any_adjective(rng), *b = any_adjective(rng);
    if (rng_next_below(rng, 2) == 0)
        snprintf(response, response_cap, "The %s is %s and %s.", s, a, b);
    else
        snprintf(response, response_cap, "The %s is %s, %s and %s.", s, a, b, any_adjective(rng));
}

void demo_task_example(rng_state *rng, char *prompt, size_t prompt_cap, char *response,
                       size_t response_cap) {
    const char *s = subjects[rng_next_below(rng, COUNT(subjects))];
    snprintf(prompt, prompt_cap, prompt_forms[rng_next_below(rng, COUNT(prompt_forms))], s);
    describe(rng, s, response, response_cap);
}

/* The subject the prompt asks about, or NULL. */
static const char *prompt_subject(const char *prompt) {
    for (int i = 0; i < COUNT(subjects); i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "the %s", subjects[i]);
        const char *at = strstr(prompt, needle);
        if (at != NULL && !isalpha((unsigned char)at[strlen(needle)]))
            return subjects[i];
    }
    return NULL;
}

void demo_task_response(rng_state *rng, const char *prompt, char *response, size_t response_cap) {
    const char *s = prompt_subject(prompt);
    describe(rng, s ? s : "thing", response, response_cap);
}

static int is_word(const char *w, size_t n, const char *const *list, int count) {
    for (int i = 0; i < count; i++)
        if (strlen(list[i]) == n && strncmp(list[i], w, n) == 0)
            return 1;
    return 0;
}

double demo_task_gold_score(const char *prompt, const char *response) {
    double score = 0.0;
    for (const char *p = response; *p;) {
        while (*p && !isalpha((unsigned char)*p))
            p++;
        const char *w = p;
        while (*p && isalpha((unsigned char)*p))
            p++;
        const size_t n = (size_t)(p - w);
        score += is_word(w, n, positive, COUNT(positive));
        score -= is_word(w, n, negative, COUNT(negative));
    }
    const char *s = prompt_subject(prompt);
    char form[64];
    snprintf(form, sizeof form, "The %s is ", s ? s : "");
    if (s == NULL || strncmp(response, form, strlen(form)) != 0)
        score -= 2.0;
    return score;
}

double demo_task_sample_tokens(const model *m, const tokenizer *tok, const char *prompt,
                               float temperature, int max_new, rng_state *rng, char *text,
                               size_t text_cap, int32_t *ids, int *n_prompt, int *n_gen) {
    *n_prompt = 0, *n_gen = 0;
    const int64_t np = tokenizer_encode(tok, prompt, strlen(prompt), ids, 256, false);
    const int64_t room = model_max_seq_len(m) - np;
    max_new = max_new < 64 ? max_new : 64;
    if (np < 1 || np > 256 || room < 1 || max_new < 1)
        return NAN;
    int32_t *gen = ids + np;
    int32_t len = 0;
    char err[128];
    if (model_generate(m, ids, NULL, 1, (int)np, temperature, 0, 1.0f,
                       room < max_new ? (int)room : max_new, tok->eot_id, rng, gen, &len, err,
                       sizeof err) != 0)
        return NAN;
    *n_prompt = (int)np, *n_gen = (int)len;
    if (len > 0 && gen[len - 1] == tok->eot_id)
        len--;
    int64_t n = tokenizer_decode(tok, gen, (size_t)len, text, text_cap - 1);
    n = n < 0 ? 0 : n > (int64_t)text_cap - 1 ? (int64_t)text_cap - 1 : n;
    text[n] = '\0';
    return demo_task_gold_score(prompt, text);
}

double demo_task_sample(const model *m, const tokenizer *tok, const char *prompt, float temperature,
                        rng_state *rng, char *text, size_t text_cap) {
    int32_t ids[256 + 64];
    int np, ng;
    return demo_task_sample_tokens(m, tok, prompt, temperature, 64, rng, text, text_cap, ids, &np,
                                   &ng);
}

double demo_task_mean_gold(const model *m, const tokenizer *tok, int n, uint64_t seed) {
    rng_state prompts, sampling;
    rng_seed(&prompts, seed, 1);
    rng_seed(&sampling, seed, 2);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        char prompt[128], unused[256], text[256];
        demo_task_example(&prompts, prompt, sizeof prompt, unused, sizeof unused);
        sum += demo_task_sample(m, tok, prompt, 1.0f, &sampling, text, sizeof text);
    }
    return sum / n;
}

bool demo_task_annotate(const model *m, const tokenizer *tok, int k, double temperature,
                        rng_state *rng, rng_state *noise, char *prompt, size_t prompt_cap,
                        char (*responses)[DEMO_TASK_RESPONSE_BYTES], int *rank) {
    char unused[256];
    demo_task_example(rng, prompt, prompt_cap, unused, sizeof unused);
    double key[RANKING_MAX_K];
    bool sampled = true;
    for (int j = 0; j < k; j++) {
        const double gold =
            demo_task_sample(m, tok, prompt, 1.0f, rng, responses[j], DEMO_TASK_RESPONSE_BYTES);
        sampled &= !isnan(gold);
        const double u = ((double)(rng_next_u64(noise) >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
        key[j] = temperature > 0 ? gold / temperature - log(-log(u)) : gold;
    }
    bool strict = false;
    for (int j = 0; j < k; j++) {
        rank[j] = 0;
        for (int l = 0; l < k; l++)
            rank[j] += key[l] > key[j];
        strict |= key[j] != key[0];
    }
    return sampled && strict;
}
