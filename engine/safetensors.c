#include "safetensors.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format is little-endian; we copy tensor bytes as they are. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors.c assumes little-endian");

#define METADATA_KEY "__metadata__"
/* Names and strings quoted in messages are cut here so one message stays readable. */
#define QUOTE_MAX 200

/* ---- dtypes */

static const struct {
    const char *name;
    size_t size;
} dtype_table[SAFETENSORS_DTYPE_COUNT] = {
    [SAFETENSORS_F32] = {"F32", 4},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_F64] = {"F64", 8},
    [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1}, [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1},
    [SAFETENSORS_I64] = {"I64", 8},         [SAFETENSORS_I32] = {"I32", 4},
    [SAFETENSORS_I16] = {"I16", 2},         [SAFETENSORS_I8] = {"I8", 1},
    [SAFETENSORS_U64] = {"U64", 8},         [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_U16] = {"U16", 2},         [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_BOOL] = {"BOOL", 1},
};

const char *safetensors_dtype_name(safetensors_dtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

size_t safetensors_dtype_size(safetensors_dtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

static int dtype_from_name(const char *name, safetensors_dtype *dtype) {
    for (int d = 0; d < SAFETENSORS_DTYPE_COUNT; d++)
        if (strcmp(name, dtype_table[d].name) == 0) {
            *dtype = (safetensors_dtype)d;
            return 0;
        }
    return -1;
}

/* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
static float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    const uint32_t exponent = (h >> 10) & 0x1f;
    const uint32_t mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0x1f) /* inf or NaN, payload kept */
        bits = sign | 0x7f800000u | (mantissa << 13);
    else if (exponent != 0) /* normal: rebias 15 -> 127 */
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    else { /* zero or subnormal: mantissa x 2^-24, exact in F32 */
        const float magnitude = (float)mantissa * 0x1p-24f;
        memcpy(&bits, &magnitude, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* bfloat16 is the top half of an F32. */
static float bf16_to_f32(uint16_t b) {
    const uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even on the 16 dropped bits; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x0040);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* ---- messages */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* "[2, 3]" into buf. */
static const char *format_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
        case JSON_OBJECT:
            return "an object";
        case JSON_ARRAY:
            return "an array";
        case JSON_STRING:
            return "a string";
        case JSON_INTEGER:
        case JSON_REAL:
            return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
            return "a boolean";
        case JSON_NULL:
            return "null";
    }
    return "?";
}

/* ---- reading */

/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or n. Rejects
 * what Rust's str::from_utf8 rejects: overlong forms, surrogates, code points
 * above U+10FFFF, truncated sequences (Unicode 15, table 3-7). */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        size_t len;
        unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else
            return i;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
        i += len;
    }
    return n;
}

/* Jansson reports a repeated key only by position, just past the key's
 * closing quote. Copies the raw key text into buf, or "" if the position is
 * not where we expect. An unescaped quote is preceded by an even number of
 * backslashes, so the opening quote is the first such one going back. */
static const char *duplicate_key_text(char *buf, size_t len, const char *header, size_t n,
                                      size_t position) {
    buf[0] = '\0';
    if (position < 2 || position > n || header[position - 1] != '"')
        return buf;
    for (size_t q = position - 1; q-- > 0;) {
        if (header[q] != '"')
            continue;
        size_t backslashes = 0;
        while (backslashes < q && header[q - 1 - backslashes] == '\\')
            backslashes++;
        if (backslashes % 2 == 0) {
            const size_t key_len = position - 2 - q;
            snprintf(buf, len, "%.*s", (int)(key_len < QUOTE_MAX ? key_len : QUOTE_MAX),
                     header + q + 1);
            return buf;
        }
    }
    return buf;
}

static int parse_metadata(safetensors_file *f, json_t *meta, char *err, size_t errlen) {
    if (json_is_null(meta)) /* Option<HashMap> in the reference reader */
        return SAFETENSORS_OK;
    if (!json_is_object(meta))
        return fail(err, errlen, SAFETENSORS_ERR_METADATA,
                    "__metadata__ must be an object of strings, got %s", json_type_name(meta));
    const size_t count = json_object_size(meta);
    f->metadata = calloc(count ? count : 1, sizeof *f->metadata);
    if (f->metadata == NULL)
        return fail(err, errlen, SAFETENSORS_ERR_NOMEM, "out of memory for %zu metadata entries",
                    count);
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return fail(err, errlen, SAFETENSORS_ERR_METADATA,
                        "__metadata__ '%.*s': value must be a string, got %s", QUOTE_MAX, key,
                        json_type_name(value));
        f->metadata[f->n_metadata++] = (safetensors_metadata_entry){key, json_string_value(value)};
    }
    return SAFETENSORS_OK;
}

/* Reads a JSON integer >= 0 into *out; -1 if v is not an integer, -2 if negative. */
static int get_nonnegative(const json_t *v, int64_t *out) {
    if (!json_is_integer(v))
        return -1;
    const json_int_t x = json_integer_value(v);
    if (x < 0)
        return -2;
    *out = (int64_t)x;
    return 0;
}

/* Fills t from one header entry, checking everything that does not depend on
 * the other tensors. data_offsets go to begin/end; data is set later. */
static int parse_tensor(safetensors_info *t, int64_t *begin, int64_t *end, const char *name,
                        json_t *entry, uint64_t data_bytes, char *err, size_t errlen) {
    const int Q = QUOTE_MAX;
    if (name[0] == '\0')
        return fail(err, errlen, SAFETENSORS_ERR_TENSOR, "a tensor has an empty name");
    t->name = name;
    if (!json_is_object(entry))
        return fail(err, errlen, SAFETENSORS_ERR_TENSOR,
                    "tensor '%.*s': entry must be an object, got %s", Q, name,
                    json_type_name(entry));
    const char *fields[] = {"dtype", "shape", "data_offsets"};
    for (int i = 0; i < 3; i++)
        if (json_object_get(entry, fields[i]) == NULL)
            return fail(err, errlen, SAFETENSORS_ERR_TENSOR, "tensor '%.*s': missing '%s'", Q, name,
                        fields[i]);

    json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return fail(err, errlen, SAFETENSORS_ERR_TENSOR,
                    "tensor '%.*s': 'dtype' must be a string, got %s", Q, name,
                    json_type_name(dtype));
    if (dtype_from_name(json_string_value(dtype), &t->dtype) != 0)
        return fail(err, errlen, SAFETENSORS_ERR_DTYPE, "tensor '%.*s': unknown dtype '%.*s'", Q,
                    name, Q, json_string_value(dtype));
    const char *dtype_name = dtype_table[t->dtype].name;

    json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape))
        return fail(err, errlen, SAFETENSORS_ERR_TENSOR,
                    "tensor '%.*s': 'shape' must be an array, got %s", Q, name,
                    json_type_name(shape));
    if (json_array_size(shape) > SAFETENSORS_MAX_DIMS)
        return fail(err, errlen, SAFETENSORS_ERR_SHAPE,
                    "tensor '%.*s': shape has %zu dimensions, more than the %d supported", Q, name,
                    json_array_size(shape), SAFETENSORS_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    char shape_text[SAFETENSORS_MAX_DIMS * 24];
    /* Element count and byte size in 64 bits, failing on the first overflow
     * as the reference does (checked_mul over the dimensions in order). */
    uint64_t elements = 1;
    for (int d = 0; d < t->ndim; d++) {
        const int rc = get_nonnegative(json_array_get(shape, (size_t)d), &t->shape[d]);
        if (rc == -1)
            return fail(err, errlen, SAFETENSORS_ERR_SHAPE,
                        "tensor '%.*s': shape[%d] must be an integer, got %s", Q, name, d,
                        json_type_name(json_array_get(shape, (size_t)d)));
        if (rc == -2)
            return fail(err, errlen, SAFETENSORS_ERR_SHAPE,
                        "tensor '%.*s': shape[%d] = %" JSON_INTEGER_FORMAT " is negative", Q, name,
                        d, json_integer_value(json_array_get(shape, (size_t)d)));
        if (__builtin_mul_overflow(elements, (uint64_t)t->shape[d], &elements) ||
            elements > INT64_MAX)
            return fail(err, errlen, SAFETENSORS_ERR_SHAPE,
                        "tensor '%.*s': the element count of shape %s overflows 64 bits", Q, name,
                        format_shape(shape_text, sizeof shape_text, d + 1, t->shape));
    }
    format_shape(shape_text, sizeof shape_text, t->ndim, t->shape);
    uint64_t bytes;
    if (__builtin_mul_overflow(elements, (uint64_t)dtype_table[t->dtype].size, &bytes) ||
        bytes > INT64_MAX)
        return fail(err, errlen, SAFETENSORS_ERR_SHAPE,
                    "tensor '%.*s': the byte size of shape %s of %s overflows 64 bits", Q, name,
                    shape_text, dtype_name);
    t->n_elements = (int64_t)elements;
    t->n_bytes = (size_t)bytes;

    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        get_nonnegative(json_array_get(offsets, 0), begin) != 0 ||
        get_nonnegative(json_array_get(offsets, 1), end) != 0)
        return fail(err, errlen, SAFETENSORS_ERR_OFFSETS,
                    "tensor '%.*s': data_offsets must be [begin, end] with two non-negative "
                    "integers",
                    Q, name);
    if (*end < *begin)
        return fail(err, errlen, SAFETENSORS_ERR_OFFSETS,
                    "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] end before they begin",
                    Q, name, *begin, *end);
    if ((uint64_t)*end > data_bytes)
        return fail(err, errlen, SAFETENSORS_ERR_OFFSETS,
                    "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64 "] run past the %" PRIu64
                    "-byte data section",
                    Q, name, *begin, *end, data_bytes);
    if ((uint64_t)(*end - *begin) != bytes)
        return fail(err, errlen, SAFETENSORS_ERR_OFFSETS,
                    "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64
                    "] do not match shape %s of %s (%" PRIu64 " bytes)",
                    Q, name, *begin, *end, shape_text, dtype_name, bytes);
    return SAFETENSORS_OK;
}

typedef struct tensor_span {
    int64_t begin, end;
    const char *name;
    int index;
} tensor_span;

/* By offset, then name so tensors of zero bytes sharing an offset sort the same every time. */
static int compare_spans(const void *a, const void *b) {
    const tensor_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_span_names(const void *a, const void *b) {
    return strcmp(((const tensor_span *)a)->name, ((const tensor_span *)b)->name);
}

/* HF Metadata::validate: sorted by offset, each tensor starts where the
 * previous one ended and the last ends at the end of the data section.
 * Leaves spans in that order. */
static int check_layout(tensor_span *spans, int n, uint64_t data_bytes, char *err, size_t errlen) {
    qsort(spans, (size_t)n, sizeof *spans, compare_spans);
    int64_t covered = 0;
    for (int i = 0; i < n; i++) {
        const tensor_span *s = &spans[i];
        const char *name = s->name;
        if (s->begin > covered)
            return fail(err, errlen, SAFETENSORS_ERR_LAYOUT,
                        "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64
                        "] leave bytes [%" PRId64 ", %" PRId64 ") of the data section unused",
                        QUOTE_MAX, name, s->begin, s->end, covered, s->begin);
        if (s->begin < covered) {
            const tensor_span *p = &spans[i - 1]; /* covered > 0 only after a tensor */
            return fail(err, errlen, SAFETENSORS_ERR_LAYOUT,
                        "tensor '%.*s': data_offsets [%" PRId64 ", %" PRId64
                        "] overlap tensor '%.*s' at [%" PRId64 ", %" PRId64 "]",
                        QUOTE_MAX, name, s->begin, s->end, QUOTE_MAX, p->name, p->begin, p->end);
        }
        covered = s->end;
    }
    if ((uint64_t)covered != data_bytes)
        return fail(err, errlen, SAFETENSORS_ERR_LAYOUT,
                    "the tensors cover %" PRId64 " bytes but the data section has %" PRIu64
                    " (bytes after the last tensor)",
                    covered, data_bytes);
    return SAFETENSORS_OK;
}

/* Parses f->bytes[0..f->n_bytes), which f already owns. */
static int parse_owned(safetensors_file *f, char *err, size_t errlen) {
    const size_t n = f->n_bytes;
    if (n < 8)
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_TOO_SMALL,
                    "file has %zu bytes, fewer than the 8 of the header length", n);
    uint64_t header_len = 0;
    for (int b = 7; b >= 0; b--)
        header_len = (header_len << 8) | f->bytes[b];
    if (header_len > SAFETENSORS_MAX_HEADER_BYTES)
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_TOO_LARGE,
                    "header length %" PRIu64 " is over the limit of %d bytes", header_len,
                    SAFETENSORS_MAX_HEADER_BYTES);
    if (header_len > n - 8)
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_LENGTH,
                    "header length %" PRIu64 " runs past the end of the %zu-byte file", header_len,
                    n);
    const char *header = (const char *)f->bytes + 8;
    f->header_bytes = (size_t)header_len;
    const size_t bad = utf8_invalid_at((const unsigned char *)header, f->header_bytes);
    if (bad < f->header_bytes)
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_UTF8,
                    "header is not valid UTF-8 (byte %zu of the header)", bad);
    if (f->header_bytes == 0 || header[0] != '{')
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_START, "header does not start with '{'");

    json_error_t jerr;
    json_t *root = json_loadb(header, f->header_bytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (json_error_code(&jerr) == json_error_duplicate_key) {
            char key[QUOTE_MAX + 1];
            return fail(
                err, errlen, SAFETENSORS_ERR_DUPLICATE,
                "duplicate key '%s' in the header (byte %d of the header)",
                duplicate_key_text(key, sizeof key, header, f->header_bytes, (size_t)jerr.position),
                jerr.position);
        }
        return fail(err, errlen, SAFETENSORS_ERR_HEADER_JSON,
                    "header is not valid JSON: %s (byte %d of the header)", jerr.text,
                    jerr.position);
    }
    f->header_json = root;
    assert(json_is_object(root)); /* jansson decodes only arrays and objects; it began with '{' */

    const uint64_t data_bytes = n - 8 - header_len;
    size_t count = json_object_size(root);
    json_t *meta = json_object_get(root, METADATA_KEY);
    if (meta != NULL) {
        count--;
        const int rc = parse_metadata(f, meta, err, errlen);
        if (rc != SAFETENSORS_OK)
            return rc;
    }
    /* count < INT_MAX: an entry takes over 30 header bytes, the header at most 1e8 */
    const size_t slots = count ? count : 1;
    safetensors_info *parsed = calloc(slots, sizeof *parsed); /* header order */
    tensor_span *spans = calloc(slots, sizeof *spans);
    f->tensors = calloc(slots, sizeof *f->tensors);
    f->by_name = calloc(slots, sizeof *f->by_name);
    int rc = SAFETENSORS_OK;
    if (parsed == NULL || spans == NULL || f->tensors == NULL || f->by_name == NULL)
        rc = fail(err, errlen, SAFETENSORS_ERR_NOMEM, "out of memory for %zu tensors", count);
    const char *name;
    json_t *entry;
    int n_parsed = 0;
    json_object_foreach(root, name, entry) {
        if (rc != SAFETENSORS_OK)
            break;
        if (entry == meta)
            continue;
        const int i = n_parsed++;
        spans[i] = (tensor_span){.name = name, .index = i};
        rc = parse_tensor(&parsed[i], &spans[i].begin, &spans[i].end, name, entry, data_bytes, err,
                          errlen);
    }
    if (rc == SAFETENSORS_OK)
        rc = check_layout(spans, n_parsed, data_bytes, err, errlen);
    if (rc == SAFETENSORS_OK) {
        const unsigned char *data = f->bytes + 8 + header_len;
        for (int i = 0; i < n_parsed; i++) {
            f->tensors[i] = parsed[spans[i].index];
            f->tensors[i].data = data + spans[i].begin;
            spans[i].index = i;
        }
        f->n_tensors = n_parsed;
        qsort(spans, (size_t)n_parsed, sizeof *spans, compare_span_names);
        for (int i = 0; i < n_parsed; i++)
            f->by_name[i] = spans[i].index;
    }
    free(parsed);
    free(spans);
    return rc;
}

void safetensors_free(safetensors_file *f) {
    free(f->tensors);
    free(f->metadata);
    free(f->by_name);
    free(f->bytes);
    json_decref(f->header_json);
    memset(f, 0, sizeof *f);
}

/* Takes ownership of bytes (malloc'd); on failure frees everything. */
static int parse_and_own(safetensors_file *f, unsigned char *bytes, size_t n, char *err,
                         size_t errlen) {
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->n_bytes = n;
    const int rc = parse_owned(f, err, errlen);
    if (rc != SAFETENSORS_OK)
        safetensors_free(f);
    return rc;
}

int safetensors_parse(safetensors_file *f, const void *bytes, size_t n, char *err, size_t errlen) {
    unsigned char *copy = malloc(n ? n : 1);
    if (copy == NULL) {
        memset(f, 0, sizeof *f);
        return fail(err, errlen, SAFETENSORS_ERR_NOMEM, "out of memory for a %zu-byte file", n);
    }
    if (n > 0)
        memcpy(copy, bytes, n);
    return parse_and_own(f, copy, n, err, errlen);
}

int safetensors_read_file(safetensors_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, SAFETENSORS_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    const int stat_rc = fstat(fd, &st);
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        const char *why = stat_rc != 0 ? strerror(errno) : "not a regular file";
        close(fd);
        return fail(err, errlen, SAFETENSORS_ERR_IO, "%s: %s", path, why);
    }
    const size_t n = (size_t)st.st_size;
    unsigned char *bytes = malloc(n ? n : 1);
    if (bytes == NULL) {
        close(fd);
        return fail(err, errlen, SAFETENSORS_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        const ssize_t r = read(fd, bytes + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            const int e = errno;
            close(fd);
            free(bytes);
            return fail(err, errlen, SAFETENSORS_ERR_IO, "%s: %s after %zu of %zu bytes", path,
                        r == 0 ? "file shrank while reading" : strerror(e), got, n);
        }
        got += (size_t)r;
    }
    close(fd);
    char why[512];
    const int rc = parse_and_own(f, bytes, n, why, sizeof why);
    if (rc != SAFETENSORS_OK)
        return fail(err, errlen, rc, "%s: %s", path, why);
    return SAFETENSORS_OK;
}

const safetensors_info *safetensors_find(const safetensors_file *f, const char *name) {
    int lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        const int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0)
            return &f->tensors[f->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *safetensors_metadata_get(const safetensors_file *f, const char *key) {
    for (int i = 0; i < f->n_metadata; i++)
        if (strcmp(f->metadata[i].key, key) == 0)
            return f->metadata[i].value;
    return NULL;
}

int safetensors_check_shape(const safetensors_info *t, int ndim, const int64_t *shape, char *err,
                            size_t errlen) {
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (same)
        return SAFETENSORS_OK;
    char have[SAFETENSORS_MAX_DIMS * 24], want[SAFETENSORS_MAX_DIMS * 24];
    return fail(err, errlen, SAFETENSORS_ERR_SIZE_MISMATCH, "tensor '%.*s': shape %s, expected %s",
                QUOTE_MAX, t->name, format_shape(have, sizeof have, t->ndim, t->shape),
                format_shape(want, sizeof want, ndim > SAFETENSORS_MAX_DIMS ? 0 : ndim, shape));
}

int safetensors_load_f32(const safetensors_info *t, float *out, int64_t n_expected, char *err,
                         size_t errlen) {
    if (t->n_elements != n_expected)
        return fail(err, errlen, SAFETENSORS_ERR_SIZE_MISMATCH,
                    "tensor '%.*s': %" PRId64 " elements, expected %" PRId64, QUOTE_MAX, t->name,
                    t->n_elements, n_expected);
    const size_t size = safetensors_dtype_size(t->dtype);
    if (size == 0 || t->n_bytes / size != (size_t)t->n_elements || t->n_bytes % size != 0)
        return fail(err, errlen, SAFETENSORS_ERR_SIZE_MISMATCH,
                    "tensor '%.*s': %zu bytes do not hold %" PRId64 " elements of %s", QUOTE_MAX,
                    t->name, t->n_bytes, t->n_elements, safetensors_dtype_name(t->dtype));
    const unsigned char *in = t->data;
    const size_t n = (size_t)t->n_elements;
    switch (t->dtype) {
        case SAFETENSORS_F32:
            if (n > 0)
                memcpy(out, in, n * 4);
            return SAFETENSORS_OK;
        case SAFETENSORS_F16:
        case SAFETENSORS_BF16:
            for (size_t i = 0; i < n; i++) {
                const uint16_t h = (uint16_t)(in[2 * i] | in[2 * i + 1] << 8);
                out[i] = t->dtype == SAFETENSORS_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
            return SAFETENSORS_OK;
        case SAFETENSORS_F64:
            for (size_t i = 0; i < n; i++) {
                double d;
                memcpy(&d, in + 8 * i, 8);
                out[i] = (float)d; /* IEEE rounding: finite beyond FLT_MAX becomes inf */
            }
            return SAFETENSORS_OK;
        default:
            return fail(err, errlen, SAFETENSORS_ERR_UNSUPPORTED,
                        "tensor '%.*s': dtype %s does not convert to F32 (only F32, F16, BF16 "
                        "and F64 do)",
                        QUOTE_MAX, t->name, safetensors_dtype_name(t->dtype));
    }
}

/* ---- writing */

/* Element count of a writer tensor, or -1 if its shape is invalid. */
static int64_t element_count(const safetensors_tensor *t) {
    if (t->ndim < 0 || t->ndim > SAFETENSORS_MAX_DIMS)
        return -1;
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || __builtin_mul_overflow(n, t->shape[d], &n))
            return -1;
    return n;
}

/* The JSON header, or NULL if the input is invalid. *data_bytes gets the
 * size of the data section. */
static json_t *build_header(const safetensors_tensor *tensors, int n, const char *const (*meta)[2],
                            int n_meta, safetensors_dtype dtype, int64_t *data_bytes) {
    json_t *header = json_object();
    if (header == NULL)
        return NULL;
    if (n_meta > 0) {
        json_t *m = json_object();
        if (json_object_set_new(header, METADATA_KEY, m) != 0)
            goto fail;
        for (int i = 0; i < n_meta; i++) {
            if (meta[i][0] == NULL || meta[i][1] == NULL || json_object_get(m, meta[i][0]))
                goto fail;
            if (json_object_set_new(m, meta[i][0], json_string(meta[i][1])) != 0)
                goto fail; /* not UTF-8, or out of memory */
        }
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const safetensors_tensor *t = &tensors[i];
        const int64_t count = element_count(t);
        if (t->name == NULL || t->name[0] == '\0' || strcmp(t->name, METADATA_KEY) == 0 ||
            json_object_get(header, t->name) || count < 0 || (count > 0 && t->data == NULL))
            goto fail;
        int64_t end;
        if (__builtin_mul_overflow(count, (int64_t)dtype_table[dtype].size, &end) ||
            __builtin_add_overflow(offset, end, &end))
            goto fail;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_table[dtype].name, "shape",
                                  shape, "data_offsets", (json_int_t)offset, (json_int_t)end);
        if (json_object_set_new(header, t->name, entry) != 0)
            goto fail; /* not UTF-8, or out of memory */
        offset = end;
    }
    *data_bytes = offset;
    return header;
fail:
    json_decref(header);
    return NULL;
}

/* The header as the file holds it: the 8-byte length, then the JSON padded
 * with spaces to a multiple of 8 (malloc'd, *header_bytes long); NULL on
 * invalid input. *data_bytes gets the size of the data section. */
static unsigned char *header_block(const safetensors_tensor *tensors, int n,
                                   const char *const (*meta)[2], int n_meta,
                                   safetensors_dtype dtype, size_t *header_bytes,
                                   int64_t *data_bytes) {
    if (dtype != SAFETENSORS_F32 && dtype != SAFETENSORS_BF16)
        return NULL;
    json_t *header = build_header(tensors, n, meta, n_meta, dtype, data_bytes);
    if (header == NULL)
        return NULL;
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(header);
    if (text == NULL)
        return NULL;
    const size_t text_len = strlen(text);
    const size_t padded = (text_len + 7) & ~(size_t)7;
    unsigned char *out = padded <= SAFETENSORS_MAX_HEADER_BYTES ? malloc(8 + padded) : NULL;
    if (out != NULL) {
        for (int b = 0; b < 8; b++)
            out[b] = (unsigned char)((uint64_t)padded >> (8 * b));
        memcpy(out + 8, text, text_len);
        memset(out + 8 + text_len, ' ', padded - text_len);
        *header_bytes = 8 + padded;
    }
    free(text);
    return out;
}

/* count floats of x as dtype into out (little-endian, as the format and the host) */
static void encode_floats(unsigned char *out, const float *x, size_t count,
                          safetensors_dtype dtype) {
    if (dtype == SAFETENSORS_F32) {
        memcpy(out, x, count * 4);
        return;
    }
    for (size_t k = 0; k < count; k++) {
        const uint16_t b = f32_to_bf16(x[k]);
        out[2 * k] = (unsigned char)(b & 0xff);
        out[2 * k + 1] = (unsigned char)(b >> 8);
    }
}

void *safetensors_serialize_as(const safetensors_tensor *tensors, int n,
                               const char *const (*meta)[2], int n_meta, safetensors_dtype dtype,
                               size_t *n_bytes) {
    size_t head = 0;
    int64_t data_bytes = 0;
    unsigned char *header = header_block(tensors, n, meta, n_meta, dtype, &head, &data_bytes);
    unsigned char *out = header ? malloc(head + (size_t)data_bytes) : NULL;
    if (out == NULL) {
        free(header);
        return NULL;
    }
    memcpy(out, header, head);
    free(header);
    unsigned char *data = out + head;
    for (int i = 0; i < n; i++) {
        const size_t count = (size_t)element_count(&tensors[i]);
        if (count > 0)
            encode_floats(data, tensors[i].data, count, dtype);
        data += count * dtype_table[dtype].size;
    }
    *n_bytes = head + (size_t)data_bytes;
    return out;
}

int safetensors_write_as(FILE *out, const safetensors_tensor *tensors, int n,
                         const char *const (*meta)[2], int n_meta, safetensors_dtype dtype,
                         size_t *n_bytes) {
    size_t head = 0;
    int64_t data_bytes = 0;
    unsigned char *header = header_block(tensors, n, meta, n_meta, dtype, &head, &data_bytes);
    if (header == NULL)
        return -1;
    bool ok = fwrite(header, 1, head, out) == head;
    free(header);
    /* F32 goes out straight from the tensors; BF16 through a bounded buffer */
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = dtype == SAFETENSORS_BF16 ? malloc(2 * CHUNK) : NULL;
    ok = ok && (dtype == SAFETENSORS_F32 || buf != NULL);
    for (int i = 0; ok && i < n; i++) {
        const size_t count = (size_t)element_count(&tensors[i]);
        if (dtype == SAFETENSORS_F32) {
            ok = count == 0 || fwrite(tensors[i].data, 4, count, out) == count;
            continue;
        }
        for (size_t k = 0; ok && k < count; k += CHUNK) {
            const size_t m = count - k < CHUNK ? count - k : CHUNK;
            encode_floats(buf, tensors[i].data + k, m, dtype);
            ok = fwrite(buf, 2, m, out) == m;
        }
    }
    free(buf);
    if (ok)
        *n_bytes = head + (size_t)data_bytes;
    return ok ? 0 : -1;
}

void *safetensors_serialize(const safetensors_tensor *tensors, int n, const char *const (*meta)[2],
                            int n_meta, size_t *n_bytes) {
    return safetensors_serialize_as(tensors, n, meta, n_meta, SAFETENSORS_F32, n_bytes);
}
