#include "openai_ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const prefixes[] = {[OPENAI_ID_FILE] = "file-",
                                       [OPENAI_ID_JOB] = "ftjob-",
                                       [OPENAI_ID_EVENT] = "ftevent-",
                                       [OPENAI_ID_CKPT] = "ftckpt-"};

const char *openai_id_prefix(openai_id_kind kind) {
    return prefixes[kind];
}

void openai_id_format(char *out, size_t len, openai_id_kind kind, int64_t id) {
    snprintf(out, len, "%s%lld", prefixes[kind], (long long)id);
}

/* A positive decimal of s[0..n) without leading zeros (fits int64), or -1. */
static int64_t parse_decimal(const char *s, size_t n) {
    if (n == 0 || n > 18 || s[0] < '1' || s[0] > '9')
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int64_t openai_id_parse(const char *text, openai_id_kind kind) {
    const size_t n = strlen(prefixes[kind]);
    if (text == NULL || strncmp(text, prefixes[kind], n) != 0)
        return -1;
    return parse_decimal(text + n, strlen(text + n));
}

/* BASE of "ft:BASE:...", else model itself. */
static void base_of(const char *model, char *out, size_t len) {
    if (strncmp(model, "ft:", 3) == 0) {
        const char *end = strchr(model + 3, ':');
        snprintf(out, len, "%.*s", (int)(end ? end - model - 3 : (long)strlen(model + 3)),
                 model + 3);
    } else {
        snprintf(out, len, "%s", model);
    }
}

void openai_model_name(char *out, size_t len, const char *model, const char *suffix, int64_t job_id,
                       int64_t checkpoint_id) {
    char base[OPENAI_MODEL_NAME_BYTES];
    base_of(model, base, sizeof base);
    int used =
        snprintf(out, len, "ft:%s:%s:ftjob-%lld", base, suffix ? suffix : "", (long long)job_id);
    if (checkpoint_id > 0 && used > 0 && (size_t)used < len)
        snprintf(out + used, len - (size_t)used, ":ftckpt-%lld", (long long)checkpoint_id);
}

int openai_model_parse(const char *text, int64_t *job_id, int64_t *checkpoint_id) {
    if (text == NULL || strncmp(text, "ft:", 3) != 0)
        return 0;
    *checkpoint_id = 0;
    const char *last = strrchr(text, ':');
    if ((*checkpoint_id = openai_id_parse(last + 1, OPENAI_ID_CKPT)) > 0) {
        const char *job = last - 1;
        while (job > text && *job != ':')
            job--;
        *job_id = strncmp(job + 1, "ftjob-", 6) == 0
                      ? parse_decimal(job + 7, (size_t)(last - job - 7))
                      : -1;
    } else {
        *checkpoint_id = 0;
        *job_id = openai_id_parse(last + 1, OPENAI_ID_JOB);
    }
    return *job_id > 0;
}
