/* See demo_gold.h. */
#include "demo_gold.h"

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

bool demo_task_rank(const double *gold, int k, double temperature, rng_state *noise, int *rank) {
    double key[DEMO_TASK_MAX_K];
    for (int j = 0; j < k; j++) {
        const double u = ((double)(rng_next_u64(noise) >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
        key[j] = temperature > 0 ? gold[j] / temperature - log(-log(u)) : gold[j];
    }
    bool strict = false;
    for (int j = 0; j < k; j++) {
        rank[j] = 0;
        for (int l = 0; l < k; l++)
            rank[j] += key[l] > key[j];
        strict |= key[j] != key[0];
    }
    return strict;
}
