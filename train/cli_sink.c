#include "cli_sink.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifact_store.h"

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_print_number(FILE *out, double v) {
    if (!isfinite(v))
        fputs("null", out);
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        fprintf(out, "%.0f", v);
    else
        fprintf(out, "%.10g", v);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static int utf8_valid_len(const unsigned char *s) {
    const unsigned c = s[0];
    int n;
    unsigned cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    return cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : n;
}

/* A JSON string; bytes that are not UTF-8 (a model's sample can split a
 * character) become U+FFFD, so every line stays valid JSON. */
static void print_json_string(FILE *out, const char *s) {
    fputc('"', out);
    while (*s) {
        const unsigned char c = (unsigned char)*s;
        const int n = utf8_valid_len((const unsigned char *)s);
        if (n == 0) {
            fputs("\\ufffd", out);
            s++;
        } else if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            s++;
        } else if (c < 0x20) {
            fprintf(out, "\\u%04x", c);
            s++;
        } else {
            fwrite(s, 1, (size_t)n, out);
            s += n;
        }
    }
    fputc('"', out);
}

static void print_pairs(FILE *out, const sink_metric *m, int n) {
    for (int i = 0; i < n; i++) {
        fputc(',', out);
        print_json_string(out, m[i].name);
        fputc(':', out);
        cli_print_number(out, m[i].value);
    }
}

static int cli_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    cli_sink *cs = ctx;
    fprintf(cs->json_out, "{\"step\":%lld", (long long)step);
    print_pairs(cs->json_out, m, n);
    fputs("}\n", cs->json_out);
    fflush(cs->json_out);
    /* The human line at most four times a second: a fast job would
     * otherwise scroll thousands of lines past. The JSON has every update,
     * and cli_sink_finish prints the last line if it was held back. */
    int used = snprintf(cs->human_line, sizeof cs->human_line, "%s step %lld", cs->type->name,
                        (long long)step);
    for (const char *const *h = cs->type->headline_metrics; *h; h++)
        for (int i = 0; i < n && used < (int)sizeof cs->human_line; i++)
            if (strcmp(m[i].name, *h) == 0 && strcmp(*h, "global_step") != 0)
                used += snprintf(cs->human_line + used, sizeof cs->human_line - (size_t)used,
                                 "  %s %.4g", *h, m[i].value);
    cs->human_line_pending = 1;
    const double now = monotonic_s();
    if (now - cs->last_human_s >= 0.25) {
        cs->last_human_s = now;
        cli_sink_finish(cs);
    }
    return ferror(cs->json_out) ? -1 : 0;
}

static const char *level_name(sink_level level) {
    return level == SINK_LEVEL_ERROR ? "error" : level == SINK_LEVEL_WARN ? "warn" : "info";
}

static int cli_event(void *ctx, sink_level level, const char *code, const char *message,
                     const sink_metric *data, int n_data) {
    cli_sink *cs = ctx;
    fputs("{\"event\":", cs->json_out);
    print_json_string(cs->json_out, code);
    fputs(",\"level\":", cs->json_out);
    print_json_string(cs->json_out, level_name(level));
    fputs(",\"message\":", cs->json_out);
    print_json_string(cs->json_out, message);
    print_pairs(cs->json_out, data, n_data);
    fputs("}\n", cs->json_out);
    fflush(cs->json_out);
    /* warnings and errors reach a person even with --quiet */
    FILE *human = cs->human_out ? cs->human_out : level != SINK_LEVEL_INFO ? stderr : NULL;
    if (human)
        fprintf(human, "[%s] %s\n", level_name(level), message);
    return ferror(cs->json_out) ? -1 : 0;
}

/* write(wctx, f) into a temporary name, fsync, then rename: a reader never
 * sees a half-written checkpoint. */
static int cli_checkpoint_stream(void *ctx, int64_t step, sink_checkpoint_writer write,
                                 void *wctx) {
    cli_sink *cs = ctx;
    if (cs->checkpoint_dir == NULL)
        return 0;
    char tmp[sizeof cs->last_checkpoint + 8];
    snprintf(cs->last_checkpoint, sizeof cs->last_checkpoint, "%s/%s-step%lld.safetensors",
             cs->checkpoint_dir, cs->type->name, (long long)step);
    snprintf(tmp, sizeof tmp, "%s.tmp", cs->last_checkpoint);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        fprintf(stderr, "rlhf-train: cannot write checkpoint %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    size_t n_bytes = 0;
    int ok = write(wctx, f, &n_bytes) == 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, cs->last_checkpoint) != 0) {
        fprintf(stderr, "rlhf-train: cannot write checkpoint %s: %s\n", cs->last_checkpoint,
                strerror(errno));
        unlink(tmp);
        return -1;
    }
    fprintf(cs->json_out, "{\"event\":\"checkpoint\",\"level\":\"info\",\"step\":%lld,\"path\":",
            (long long)step);
    print_json_string(cs->json_out, cs->last_checkpoint);
    fprintf(cs->json_out, ",\"bytes\":%zu}\n", n_bytes);
    fflush(cs->json_out);
    return 0;
}

/* A loop-sample job's samples: a JSON line each. */
static int cli_samples(void *ctx, const sink_sample *rows, int n) {
    cli_sink *cs = ctx;
    for (int i = 0; i < n; i++) {
        fprintf(cs->json_out, "{\"sample\":%d,\"prompt_index\":%d,\"prompt\":", i,
                rows[i].prompt_index);
        print_json_string(cs->json_out, rows[i].prompt);
        fputs(",\"response\":", cs->json_out);
        print_json_string(cs->json_out, rows[i].response);
        fputs(",\"gold\":", cs->json_out);
        cli_print_number(cs->json_out, rows[i].gold);
        fputs(",\"scores\":[", cs->json_out);
        for (int e = 0; e < rows[i].n_scores; e++) {
            if (e > 0)
                fputc(',', cs->json_out);
            cli_print_number(cs->json_out, rows[i].scores[e]);
        }
        fputs("]}\n", cs->json_out);
    }
    fflush(cs->json_out);
    return ferror(cs->json_out) ? -1 : 0;
}

static int cli_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n_bytes) {
    artifact_bytes b = {bytes, n_bytes};
    return cli_checkpoint_stream(ctx, step, artifact_write_bytes, &b);
}

static bool cli_should_stop(void *ctx) {
    cli_sink *cs = ctx;
    return cs->stop_flag != NULL && *cs->stop_flag != 0;
}

void cli_sink_finish(cli_sink *cs) {
    if (cs->human_out && cs->human_line_pending)
        fprintf(cs->human_out, "%s\n", cs->human_line);
    cs->human_line_pending = 0;
}

train_sink cli_sink_make(cli_sink *cs) {
    return (train_sink){
        cs,          cli_metrics,          cli_event, cli_checkpoint, cli_should_stop, NULL,
        cli_samples, cli_checkpoint_stream};
}
