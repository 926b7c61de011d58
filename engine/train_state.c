#include "train_state.h"

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
