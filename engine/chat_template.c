/* chat_template — native renderers of the Jinja chat templates that
 * Qwen, Llama 3 and Llama 2 ship; each function below follows its template
 * statement by statement (quoted in the comments). */
#include "chat_template.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode_nfc.h"

__attribute__((format(printf, 3, 4))) static void set_error(char *err, size_t errlen,
                                                            const char *fmt, ...) {
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const char *const FORMAT_NAMES[] = {"chatml", "qwen3", "llama3", "llama2"};

const char *chat_format_name(chat_format f) {
    return FORMAT_NAMES[f];
}

static const char HOW_TO_CHOOSE[] = "set chat_format to chatml, qwen3, llama3 or llama2 to render "
                                    "one of the formats this build knows";

void chat_template_free(chat_template *t) {
    free(t->default_system);
    free(t->bos_token);
    free(t->eos_token);
    memset(t, 0, sizeof *t);
}

/* The default system prompt of a ChatML template: the text of a string
 * literal '<|im_start|>system\n...<|im_end|>' (Qwen2/Qwen2.5 write one in
 * the branch for conversations without a system turn), unescaped. */
static int find_default_system(const char *tpl, char **out) {
    static const char marker[] = "<|im_start|>system\\n";
    *out = NULL;
    for (const char *p = strstr(tpl, marker); p; p = strstr(p + 1, marker)) {
        const char *b = p + strlen(marker), *e = strstr(b, "<|im_end|>");
        if (!e || *b == '\'' || *b == '"' || memchr(b, '\'', (size_t)(e - b)) ||
            memchr(b, '"', (size_t)(e - b)))
            continue;
        char *s = malloc((size_t)(e - b) + 1);
        if (!s)
            return -1;
        size_t n = 0;
        for (const char *q = b; q < e; q++) {
            if (*q == '\\' && q + 1 < e) {
                q++;
                s[n++] = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q;
            } else {
                s[n++] = *q;
            }
        }
        s[n] = '\0';
        *out = s;
        return 0;
    }
    return 0;
}

/* Which format a template text is, by the markers each family's templates
 * carry; -1 with a message otherwise. */
static int detect(const char *tpl, chat_format *f, char *err, size_t errlen) {
    if (strstr(tpl, "<|im_start|>")) {
        if (strstr(tpl, "<think>")) {
            if (strstr(tpl, "last_query_index") && strstr(tpl, "reasoning_content")) {
                *f = CHAT_FORMAT_QWEN3;
                return 0;
            }
            set_error(
                err, errlen,
                "chat_template: a ChatML template with <think> handling other than Qwen3's; %s",
                HOW_TO_CHOOSE);
            return -1;
        }
        *f = CHAT_FORMAT_CHATML;
        return 0;
    }
    if (strstr(tpl, "<|start_header_id|>") && strstr(tpl, "<|eot_id|>")) {
        if (strstr(tpl, "Cutting Knowledge Date") || strstr(tpl, "Environment: ipython")) {
            set_error(
                err, errlen,
                "chat_template: a Llama 3.1+ template (date and tools preamble) is not rendered "
                "natively; %s (llama3 renders the plain Llama 3 format without that preamble)",
                HOW_TO_CHOOSE);
            return -1;
        }
        *f = CHAT_FORMAT_LLAMA3;
        return 0;
    }
    if (strstr(tpl, "[INST]") && strstr(tpl, "<<SYS>>")) {
        *f = CHAT_FORMAT_LLAMA2;
        return 0;
    }
    set_error(err, errlen, "chat_template: not a ChatML, Llama 3 or Llama 2 template; %s",
              HOW_TO_CHOOSE);
    return -1;
}

int chat_template_init(chat_template *t, const char *template_text, const char *format_name,
                       const char *bos_token, const char *eos_token, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (format_name && *format_name) {
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(format_name, FORMAT_NAMES[i]) == 0)
                found = i;
        if (found < 0) {
            set_error(err, errlen,
                      "chat_format '%s' is unknown; use chatml, qwen3, llama3 or llama2",
                      format_name);
            return -1;
        }
        t->format = (chat_format)found;
    } else if (!template_text) {
        set_error(err, errlen, "no chat_template in tokenizer_config.json; %s", HOW_TO_CHOOSE);
        return -1;
    } else if (detect(template_text, &t->format, err, errlen)) {
        return -1;
    }
    if (template_text && t->format == CHAT_FORMAT_LLAMA3)
        t->always_generation_prompt = !strstr(template_text, "add_generation_prompt");
    t->bos_token = strdup(bos_token ? bos_token : "");
    t->eos_token = strdup(eos_token ? eos_token : "");
    if (!t->bos_token || !t->eos_token ||
        (template_text && t->format == CHAT_FORMAT_CHATML &&
         find_default_system(template_text, &t->default_system))) {
        chat_template_free(t);
        set_error(err, errlen, "chat_template: out of memory");
        return -1;
    }
    return 0;
}

/* bos_token / eos_token: a string or an AddedToken object {"content": ...}. */
static const char *token_text(json_t *v) {
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_string_value(v);
}

int chat_template_load(chat_template *t, const char *path, const char *format_name, char *err,
                       size_t errlen) {
    json_error_t jerr;
    /* as reals: model_max_length is often 1e30, beyond jansson's integers */
    json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!root) {
        memset(t, 0, sizeof *t);
        set_error(err, errlen, "%s: line %d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    json_t *tpl = json_object_get(root, "chat_template");
    if (json_is_array(
            tpl)) { /* [{"name": "default", "template": ...}, {"name": "tool_use", ...}] */
        json_t *item, *found = NULL;
        size_t i;
        json_array_foreach(tpl, i, item) {
            if (json_is_string(json_object_get(item, "name")) &&
                strcmp(json_string_value(json_object_get(item, "name")), "default") == 0)
                found = json_object_get(item, "template");
        }
        tpl = found;
    }
    char msg[400];
    int rc = chat_template_init(t, json_string_value(tpl), format_name,
                                token_text(json_object_get(root, "bos_token")),
                                token_text(json_object_get(root, "eos_token")), msg, sizeof msg);
    if (rc)
        set_error(err, errlen, "%s: %s", path, msg);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- rendering */

typedef struct out_text {
    char *v;
    size_t n, cap;
    chat_span *spans;
    size_t n_spans, cap_spans;
    bool failed;
} out_text;

static void put(out_text *o, const char *s, size_t n) {
    if (o->failed)
        return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + n + 1)
            cap *= 2;
        char *v = realloc(o->v, cap);
        if (!v) {
            o->failed = true;
            return;
        }
        o->v = v;
        o->cap = cap;
    }
    memcpy(o->v + o->n, s, n);
    o->n += n;
    o->v[o->n] = '\0';
}

static void puts_(out_text *o, const char *s) {
    put(o, s, strlen(s));
}

static void span_begin(out_text *o) {
    if (o->failed)
        return;
    if (o->n_spans == o->cap_spans) {
        size_t cap = o->cap_spans ? 2 * o->cap_spans : 8;
        chat_span *s = realloc(o->spans, cap * sizeof *s);
        if (!s) {
            o->failed = true;
            return;
        }
        o->spans = s;
        o->cap_spans = cap;
    }
    o->spans[o->n_spans++] = (chat_span){o->n, o->n};
}

static void span_end(out_text *o) {
    if (!o->failed)
        o->spans[o->n_spans - 1].end = o->n;
}

/* Jinja's trim / str.strip() as @huggingface/jinja runs them (JavaScript's
 * trim: White_Space except U+0085, and U+FEFF). */
static bool is_trim_space(uint32_t cp) {
    return cp == 0xFEFF || (cp != 0x85 && unicode_is_space(cp));
}

static size_t utf8_char_at(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = u[0] < 0x80 ? 1 : u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 1;
    if (len > n)
        len = 1;
    uint32_t v = len == 1 ? u[0] : u[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++)
        v = (v << 6) | (u[i] & 0x3F);
    *cp = v;
    return len;
}

/* s[*b .. *e) with trimmed ends. */
static void trim(const char *s, size_t *b, size_t *e) {
    uint32_t cp;
    while (*b < *e) {
        size_t len = utf8_char_at(s + *b, *e - *b, &cp);
        if (!is_trim_space(cp))
            break;
        *b += len;
    }
    while (*e > *b) {
        size_t k = *e - 1;
        while (k > *b && ((unsigned char)s[k] & 0xC0) == 0x80)
            k--;
        utf8_char_at(s + k, *e - k, &cp);
        if (!is_trim_space(cp))
            break;
        *e = k;
    }
}

static void put_trimmed(out_text *o, const char *s) {
    size_t b = 0, e = strlen(s);
    trim(s, &b, &e);
    put(o, s + b, e - b);
}

static int check_roles(const chat_message *m, size_t n, char *err, size_t errlen) {
    for (size_t i = 0; i < n; i++) {
        if (!m[i].role || !m[i].content) {
            set_error(err, errlen, "messages[%zu]: needs a role and a content string", i);
            return -1;
        }
        if (strcmp(m[i].role, "system") && strcmp(m[i].role, "user") &&
            strcmp(m[i].role, "assistant")) {
            set_error(err, errlen,
                      "messages[%zu]: role '%s' is not rendered (system, user and assistant are)",
                      i, m[i].role);
            return -1;
        }
    }
    return 0;
}

static bool is_role(const chat_message *m, const char *role) {
    return strcmp(m->role, role) == 0;
}

/* {{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }} */
static void render_chatml(const chat_template *t, const chat_message *m, size_t n, bool gen,
                          out_text *o) {
    size_t first = 0;
    if (t->default_system) {
        puts_(o, "<|im_start|>system\n");
        if (n > 0 && is_role(&m[0], "system")) {
            puts_(o, m[0].content);
            first = 1;
        } else {
            puts_(o, t->default_system);
        }
        puts_(o, "<|im_end|>\n");
    }
    for (size_t i = first; i < n; i++) {
        bool assistant = is_role(&m[i], "assistant");
        puts_(o, "<|im_start|>");
        puts_(o, m[i].role);
        puts_(o, "\n");
        if (assistant)
            span_begin(o);
        puts_(o, m[i].content);
        puts_(o, "<|im_end|>");
        if (assistant)
            span_end(o);
        puts_(o, "\n");
    }
    if (gen)
        puts_(o, "<|im_start|>assistant\n");
}

/* Python's s.lstrip('\n') / rstrip('\n') on s[*b .. *e). */
static void strip_newlines(const char *s, size_t *b, size_t *e, bool left, bool right) {
    while (left && *b < *e && s[*b] == '\n')
        (*b)++;
    while (right && *e > *b && s[*e - 1] == '\n')
        (*e)--;
}

static const char *find_last(const char *s, size_t n, const char *needle) {
    const char *last = NULL;
    size_t k = strlen(needle);
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), needle, k)); p++)
        last = p;
    return last;
}

/* Qwen3's template, without tools. */
static void render_qwen3(const chat_message *m, size_t n, bool gen, out_text *o) {
    /* {%- if messages[0].role == 'system' %} '<|im_start|>system\n' + content + '<|im_end|>\n' */
    if (n > 0 && is_role(&m[0], "system")) {
        puts_(o, "<|im_start|>system\n");
        puts_(o, m[0].content);
        puts_(o, "<|im_end|>\n");
    }
    /* last_query_index: the last user turn that is not a wrapped <tool_response> */
    size_t last_query = n - 1;
    for (size_t k = n; k-- > 0;) {
        const char *c = m[k].content;
        size_t len = strlen(c);
        bool tool_response = strncmp(c, "<tool_response>", 15) == 0 && len >= 16 &&
                             strcmp(c + len - 16, "</tool_response>") == 0;
        if (is_role(&m[k], "user") && !tool_response) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = m[i].content;
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i > 0)) {
            puts_(o, "<|im_start|>");
            puts_(o, m[i].role);
            puts_(o, "\n");
            puts_(o, c);
            puts_(o, "<|im_end|>\n");
            continue;
        }
        if (!is_role(&m[i], "assistant"))
            continue;
        /* content.split('</think>')[-1].lstrip('\n'), and the reasoning:
         * content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
        size_t len = strlen(c), cb = 0, ce = len, rb = 0, re = 0;
        const char *close_last = find_last(c, len, "</think>");
        if (close_last) {
            cb = (size_t)(close_last - c) + 8;
            strip_newlines(c, &cb, &ce, true, false);
            re = (size_t)(strstr(c, "</think>") - c);
            strip_newlines(c, &rb, &re, false, true);
            const char *open_last = find_last(c, re, "<think>");
            rb = open_last ? (size_t)(open_last - c) + 7 : 0;
            strip_newlines(c, &rb, &re, true, false);
        }
        puts_(o, "<|im_start|>assistant\n");
        span_begin(o);
        if (i > last_query && (i == n - 1 || re > rb)) {
            /* '<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n')
             */
            strip_newlines(c, &rb, &re, true, true);
            strip_newlines(c, &cb, &ce, true, false);
            puts_(o, "<think>\n");
            put(o, c + rb, re - rb);
            puts_(o, "\n</think>\n\n");
        }
        put(o, c + cb, ce - cb);
        puts_(o, "<|im_end|>");
        span_end(o);
        puts_(o, "\n");
    }
    if (gen)
        puts_(o, "<|im_start|>assistant\n");
}

/* {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'
 *    + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}bos_token + content */
static void render_llama3(const chat_template *t, const chat_message *m, size_t n, bool gen,
                          out_text *o) {
    for (size_t i = 0; i < n; i++) {
        bool assistant = is_role(&m[i], "assistant");
        if (i == 0)
            puts_(o, t->bos_token);
        puts_(o, "<|start_header_id|>");
        puts_(o, m[i].role);
        puts_(o, "<|end_header_id|>\n\n");
        if (assistant)
            span_begin(o);
        put_trimmed(o, m[i].content);
        puts_(o, "<|eot_id|>");
        if (assistant)
            span_end(o);
    }
    if (gen || t->always_generation_prompt)
        puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama-2-chat: the system turn goes into the first user turn;
 * user: bos_token + '[INST] ' + content.strip() + ' [/INST]'
 * assistant: ' ' + content.strip() + ' ' + eos_token */
static int render_llama2(const chat_template *t, const chat_message *m, size_t n, out_text *o,
                         char *err, size_t errlen) {
    const char *system = NULL;
    size_t first = 0;
    if (n > 0 && is_role(&m[0], "system")) {
        system = m[0].content;
        first = 1;
    }
    for (size_t i = first; i < n; i++) {
        size_t k = i - first;
        if (is_role(&m[i], "user") != (k % 2 == 0) || is_role(&m[i], "system")) {
            set_error(err, errlen,
                      "Conversation roles must alternate user/assistant/user/assistant/... "
                      "(llama2 chat format, messages[%zu])",
                      i);
            return -1;
        }
        if (is_role(&m[i], "user")) {
            puts_(o, t->bos_token);
            puts_(o, "[INST] ");
            if (k == 0 && system) {
                /* ('<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + content).strip() */
                out_text joined = {0};
                puts_(&joined, "<<SYS>>\n");
                puts_(&joined, system);
                puts_(&joined, "\n<</SYS>>\n\n");
                puts_(&joined, m[i].content);
                if (joined.failed)
                    o->failed = true;
                else
                    put_trimmed(o, joined.v);
                free(joined.v);
            } else {
                put_trimmed(o, m[i].content);
            }
            puts_(o, " [/INST]");
        } else {
            puts_(o, " ");
            span_begin(o);
            put_trimmed(o, m[i].content);
            puts_(o, " ");
            puts_(o, t->eos_token);
            span_end(o);
        }
    }
    return 0;
}

int chat_template_render(const chat_template *t, const chat_message *messages, size_t n,
                         bool add_generation_prompt, char **text, size_t *text_len,
                         chat_span **spans, size_t *n_spans, char *err, size_t errlen) {
    *text = NULL;
    if (spans) {
        *spans = NULL;
        *n_spans = 0;
    }
    if (check_roles(messages, n, err, errlen))
        return -1;
    out_text o = {0};
    puts_(&o, "");
    int rc = 0;
    switch (t->format) {
        case CHAT_FORMAT_CHATML:
            render_chatml(t, messages, n, add_generation_prompt, &o);
            break;
        case CHAT_FORMAT_QWEN3:
            render_qwen3(messages, n, add_generation_prompt, &o);
            break;
        case CHAT_FORMAT_LLAMA3:
            render_llama3(t, messages, n, add_generation_prompt, &o);
            break;
        default:
            rc = render_llama2(t, messages, n, &o, err, errlen);
            break;
    }
    if (rc == 0 && o.failed) {
        set_error(err, errlen, "chat_template: out of memory");
        rc = -1;
    }
    if (rc) {
        free(o.v);
        free(o.spans);
        return -1;
    }
    *text = o.v;
    *text_len = o.n;
    if (spans) {
        *spans = o.spans;
        *n_spans = o.n_spans;
    } else {
        free(o.spans);
    }
    return 0;
}

/* -------------------------------------------------------------- encoding */

/* Encodes text[0..len) (no post-processor) into a malloc'd array. */
static int64_t encode_alloc(const hf_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                            char *err, size_t errlen) {
    *ids = NULL;
    int64_t n = hf_tokenizer_encode(tok, text, len, 0, NULL, 0, err, errlen);
    if (n < 0)
        return -1;
    *ids = malloc(((size_t)n + 1) * sizeof **ids);
    if (!*ids) {
        set_error(err, errlen, "chat_template: out of memory");
        return -1;
    }
    return hf_tokenizer_encode(tok, text, len, 0, *ids, (size_t)n, err, errlen);
}

/* How many leading ids of full[0..n) the tokenization of text[0..prefix)
 * shares; *straddles tells whether full[k] begins before byte prefix (the
 * two tokenizations agree on k ids, so on their bytes, and the prefix's
 * own tokenization has more ids left: full[k] starts inside it and runs
 * past its end). */
static int64_t common_prefix(const hf_tokenizer *tok, const char *text, size_t prefix,
                             const int32_t *full, int64_t n, bool *straddles, char *err,
                             size_t errlen) {
    int32_t *ids;
    int64_t m = encode_alloc(tok, text, prefix, &ids, err, errlen);
    if (m < 0)
        return -1;
    int64_t k = 0;
    while (k < m && k < n && ids[k] == full[k])
        k++;
    free(ids);
    *straddles = k < m && k < n;
    return k;
}

int64_t chat_template_encode(const chat_template *t, const hf_tokenizer *tok,
                             const chat_message *messages, size_t n, bool add_generation_prompt,
                             int32_t **ids, uint8_t **assistant_mask, char *err, size_t errlen) {
    char *text;
    size_t len, n_spans;
    chat_span *spans;
    *ids = NULL;
    if (assistant_mask)
        *assistant_mask = NULL;
    if (chat_template_render(t, messages, n, add_generation_prompt, &text, &len,
                             assistant_mask ? &spans : NULL, &n_spans, err, errlen))
        return -1;
    int64_t count = encode_alloc(tok, text, len, ids, err, errlen);
    if (count >= 0 && assistant_mask) {
        *assistant_mask = calloc((size_t)count + 1, 1);
        if (!*assistant_mask) {
            set_error(err, errlen, "chat_template: out of memory");
            count = -1;
        }
        for (size_t s = 0; s < n_spans && count >= 0; s++) {
            bool straddles;
            int64_t b =
                common_prefix(tok, text, spans[s].begin, *ids, count, &straddles, err, errlen);
            int64_t e = b < 0 ? -1
                              : common_prefix(tok, text, spans[s].end, *ids, count, &straddles, err,
                                              errlen);
            if (b < 0 || e < 0) {
                count = -1;
                break;
            }
            if (straddles) /* ">\n" when <|im_end|> is plain text to the tokenizer */
                e++;
            for (int64_t k = b; k < e; k++)
                (*assistant_mask)[k] = 1;
        }
        free(spans);
    }
    free(text);
    if (count < 0) {
        free(*ids);
        *ids = NULL;
        if (assistant_mask) {
            free(*assistant_mask);
            *assistant_mask = NULL;
        }
    }
    return count;
}
