#include "train_state.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

void train_state_format_rng(char *out, size_t cap, const rng_state *r) {
    snprintf(out, cap, "%016llx,%016llx,%016llx,%016llx", (unsigned long long)r->s[0],
             (unsigned long long)r->s[1], (unsigned long long)r->s[2], (unsigned long long)r->s[3]);
}

int train_state_parse_rng(rng_state *r, const char *text) {
    unsigned long long s[4];
    if (text == NULL || sscanf(text, "%llx,%llx,%llx,%llx", &s[0], &s[1], &s[2], &s[3]) != 4)
        return -1;
    for (int i = 0; i < 4; i++)
        r->s[i] = s[i];
    return 0;
}

int64_t train_state_meta_i64(const safetensors_file *f, const char *key, int *ok) {
    const char *v = safetensors_metadata_get(f, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (v == NULL || *end != '\0' || x < 0) {
        *ok = 0;
        return 0;
    }
    return x;
}

double train_state_meta_f64(const safetensors_file *f, const char *key, int *ok) {
    const char *v = safetensors_metadata_get(f, key);
    char *end;
    const double x = v ? strtod(v, &end) : 0.0;
    if (v == NULL || end == v || *end != '\0') {
        *ok = 0;
        return 0.0;
    }
    return x;
}

/* Formats n items of at most item_cap bytes each with fmt_item, joined by sep. */
static char *format_list(int64_t n, size_t item_cap, char sep,
                         void (*fmt_item)(char *out, size_t cap, const void *x, int64_t i),
                         const void *x) {
    if (n < 0 || (uint64_t)n > SIZE_MAX / (item_cap + 1) - 1)
        return NULL;
    char *out = malloc((size_t)n * (item_cap + 1) + 1), *p = out;
    if (out == NULL)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (i > 0)
            *p++ = sep;
        fmt_item(p, item_cap, x, i);
        p += strlen(p);
    }
    *p = '\0';
    return out;
}

static void fmt_f64(char *out, size_t cap, const void *x, int64_t i) {
    snprintf(out, cap, "%a", ((const double *)x)[i]);
}

static void fmt_i64(char *out, size_t cap, const void *x, int64_t i) {
    snprintf(out, cap, "%lld", (long long)((const int64_t *)x)[i]);
}

static void fmt_rng(char *out, size_t cap, const void *x, int64_t i) {
    train_state_format_rng(out, cap, (const rng_state *)x + i);
}

char *train_state_format_f64s(const double *x, int64_t n) {
    return format_list(n, 32, ',', fmt_f64, x);
}

char *train_state_format_i64s(const int64_t *x, int64_t n) {
    return format_list(n, 24, ',', fmt_i64, x);
}

char *train_state_format_rngs(const rng_state *r, int64_t n) {
    return format_list(n, 80, ';', fmt_rng, r);
}

/* Walks n items of text separated by sep, calling parse_item on each (a
 * NUL-terminated copy); -1 on a count mismatch or a bad item. */
static int parse_list(const char *text, int64_t n, char sep,
                      int (*parse_item)(const char *item, void *x, int64_t i), void *x) {
    if (text == NULL || n < 0)
        return -1;
    if (n == 0)
        return text[0] == '\0' ? 0 : -1;
    const char *p = text;
    for (int64_t i = 0; i < n; i++) {
        const char *end = strchr(p, sep);
        if (end == NULL)
            end = p + strlen(p);
        if ((i + 1 < n) != (*end == sep))
            return -1;
        char item[96];
        const size_t len = (size_t)(end - p);
        if (len == 0 || len >= sizeof item)
            return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        if (parse_item(item, x, i) != 0)
            return -1;
        p = end + 1;
    }
    return 0;
}

static int parse_f64(const char *item, void *x, int64_t i) {
    char *end;
    ((double *)x)[i] = strtod(item, &end);
    return *end == '\0' ? 0 : -1;
}

static int parse_i64(const char *item, void *x, int64_t i) {
    char *end;
    errno = 0;
    ((int64_t *)x)[i] = strtoll(item, &end, 10);
    return *end == '\0' && errno == 0 ? 0 : -1;
}

static int parse_rng(const char *item, void *x, int64_t i) {
    return train_state_parse_rng((rng_state *)x + i, item);
}

int train_state_parse_f64s(double *x, int64_t n, const char *text) {
    return parse_list(text, n, ',', parse_f64, x);
}

int train_state_parse_i64s(int64_t *x, int64_t n, const char *text) {
    return parse_list(text, n, ',', parse_i64, x);
}

int train_state_parse_rngs(rng_state *r, int64_t n, const char *text) {
    return parse_list(text, n, ';', parse_rng, r);
}

char *train_state_config_text(const hparam_table *table, const void *cfg) {
    json_t *j = hparams_to_json(table, cfg);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    return text;
}

int train_state_check_config(const safetensors_file *f, const hparam_table *table, const void *cfg,
                             char *err, size_t errlen) {
    const char *saved = safetensors_metadata_get(f, "training_state.config");
    if (saved == NULL) {
        snprintf(err, errlen,
                 "resume: the checkpoint has no training state (only periodic and "
                 "stopped-run checkpoints can resume)");
        return -1;
    }
    char *now = train_state_config_text(table, cfg);
    const int same = now != NULL && strcmp(now, saved) == 0;
    free(now);
    if (!same) {
        snprintf(err, errlen, "resume: the hyperparameters differ from the checkpoint's (%.300s)",
                 saved);
        return -1;
    }
    return 0;
}
