/* rlhfctl's human output: aligned tables of list replies, key/value blocks
 * of single objects, and --json pass-through. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rlhfctl.h"

#define ONELINE_MAX_CHARS 48

/* obj's value at key; "a.b" reaches into nested objects. */
static const json_t *value_at(const json_t *obj, const char *key) {
    char part[128];
    while (obj && *key) {
        size_t n = strcspn(key, ".");
        snprintf(part, sizeof part, "%.*s", (int)n, key);
        obj = json_object_get(obj, part);
        key += n + (key[n] == '.');
    }
    return obj;
}

/* Cuts text to max_chars UTF-8 characters (not bytes), newlines as spaces. */
static void one_line(const char *text, char *buf, size_t len, int max_chars) {
    size_t used = 0;
    int chars = 0;
    for (const char *p = text; *p && used + 4 < len; p++) {
        const unsigned char ch = (unsigned char)*p;
        if ((ch & 0xC0) != 0x80 && ++chars > max_chars) {
            memcpy(buf + used, "...", 3);
            used += 3;
            break;
        }
        buf[used++] = ch == '\n' || ch == '\r' || ch == '\t' ? ' ' : (char)ch;
    }
    buf[used] = '\0';
}

const char *table_format(const json_t *obj, const column *col, char *buf, size_t len) {
    const json_t *v = value_at(obj, col->key);
    if (v == NULL || json_is_null(v)) {
        snprintf(buf, len, "-");
    } else if (col->kind == COLUMN_KIND_TIME && json_is_integer(v)) {
        time_t t = (time_t)json_integer_value(v);
        struct tm tm;
        strftime(buf, len, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    } else if (col->kind == COLUMN_KIND_BYTES && json_is_integer(v)) {
        double b = (double)json_integer_value(v);
        const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        int u = 0;
        while (b >= 1024 && u < 4)
            b /= 1024, u++;
        snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    } else if (json_is_string(v)) {
        if (col->kind == COLUMN_KIND_ONELINE)
            one_line(json_string_value(v), buf, len, ONELINE_MAX_CHARS);
        else
            snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, len, "%.6g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
    } else {
        char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        one_line(text ? text : "?", buf, len, ONELINE_MAX_CHARS);
        free(text);
    }
    return buf;
}

/* Display width: UTF-8 characters (close enough for the text we print). */
static int text_width(const char *s) {
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

void table_print(FILE *out, const json_t *rows, const column *cols, int n_cols) {
    int width[32] = {0};
    char cell[512];
    for (int j = 0; j < n_cols && j < 32; j++)
        width[j] = text_width(cols[j].header);
    size_t i;
    const json_t *row;
    json_array_foreach(rows, i, row) {
        for (int j = 0; j < n_cols && j < 32; j++) {
            int w = text_width(table_format(row, &cols[j], cell, sizeof cell));
            if (w > width[j])
                width[j] = w;
        }
    }
    for (int j = 0; j < n_cols; j++)
        fprintf(out, "%s%s%*s", j ? "  " : "", cols[j].header,
                j + 1 < n_cols ? width[j] - text_width(cols[j].header) : 0, "");
    fputc('\n', out);
    json_array_foreach(rows, i, row) {
        for (int j = 0; j < n_cols; j++) {
            table_format(row, &cols[j], cell, sizeof cell);
            fprintf(out, "%s%s%*s", j ? "  " : "", cell,
                    j + 1 < n_cols ? width[j] - text_width(cell) : 0, "");
        }
        fputc('\n', out);
    }
}

void table_print_object(FILE *out, const json_t *obj) {
    int key_width = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if ((int)strlen(key) > key_width)
            key_width = (int)strlen(key);
    }
    json_object_foreach((json_t *)obj, key, v) {
        const int time_key = strcmp(key, "created_at") == 0 || strcmp(key, "started_at") == 0 ||
                             strcmp(key, "finished_at") == 0 ||
                             strcmp(key, "lease_expires_at") == 0;
        column col = {key, key,
                      time_key                         ? COLUMN_KIND_TIME
                      : strcmp(key, "size_bytes") == 0 ? COLUMN_KIND_BYTES
                                                       : COLUMN_KIND_TEXT};
        if (json_is_object(v) || json_is_array(v)) {
            char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            fprintf(out, "%-*s  %s\n", key_width, key, text ? text : "?");
            free(text);
        } else {
            char cell[4096];
            fprintf(out, "%-*s  %s\n", key_width, key, table_format(obj, &col, cell, sizeof cell));
        }
    }
}

void output_reply(const rlhfctl *c, json_t *reply, void (*human)(const json_t *reply)) {
    if (c->json_output || human == NULL) {
        json_dumpf(reply, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else {
        human(reply);
    }
    json_decref(reply);
}
