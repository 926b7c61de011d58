/* The safetensors reader and writer: round trips, dtype conversion against
 * hand-computed bit patterns, a file laid out as Hugging Face's writer does
 * (tests/reference/make_safetensors_fixture.py), and every rejection path with
 * its message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "suites.h"
#include "test_util.h"

/* A file from a header given as text (not padded) and data_len bytes of data
 * (0, 1, 2, ...). free() it. */
static unsigned char *make_file(const char *header, size_t data_len, size_t *n) {
    const size_t header_len = strlen(header);
    *n = 8 + header_len + data_len;
    unsigned char *bytes = malloc(*n);
    ck_assert_ptr_nonnull(bytes);
    for (int b = 0; b < 8; b++)
        bytes[b] = (unsigned char)((uint64_t)header_len >> (8 * b));
    memcpy(bytes + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++)
        bytes[8 + header_len + i] = (unsigned char)i;
    return bytes;
}

/* Parses bytes and expects failure with code rc and a message containing want. */
static void expect_bytes_rejected(const void *bytes, size_t n, int rc, const char *want) {
    safetensors_file f;
    char err[512] = "";
    const int got = safetensors_parse(&f, bytes, n, err, sizeof err);
    ck_assert_msg(got == rc, "expected rc %d, got %d (%s) for \"%s\"", rc, got, err, want);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
    ck_assert_int_eq(f.n_tensors, 0);
    ck_assert_ptr_null(f.bytes);
    safetensors_free(&f); /* harmless on a failed parse */
}

static void expect_rejected(const char *header, size_t data_len, int rc, const char *want) {
    size_t n;
    unsigned char *bytes = make_file(header, data_len, &n);
    expect_bytes_rejected(bytes, n, rc, want);
    free(bytes);
}

static void parse_ok(safetensors_file *f, const void *bytes, size_t n) {
    char err[512] = "";
    const int rc = safetensors_parse(f, bytes, n, err, sizeof err);
    ck_assert_msg(rc == SAFETENSORS_OK, "rc %d: %s", rc, err);
}

static float from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint32_t to_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return bits;
}

/* ---- round trips */

START_TEST(test_safetensors_round_trip) {
    float w[6] = {1.5f, -2.25f, 0.0f, 3e-39f /* subnormal */, INFINITY, -7.0f};
    float b[3] = {0.125f, NAN, -0.0f};
    float s[1] = {42.0f};
    const safetensors_tensor tensors[] = {
        {"h.0.attn.c_attn.weight", w, 2, {2, 3}},
        {"h.0.attn.c_attn.bias", b, 1, {3}},
        {"scale", s, 0, {0}},
        {"empty", NULL, 3, {2, 0, 5}},
    };
    const char *const meta[][2] = {{"format", "pt"}, {"n_layer", "12"}, {"note", "ünïcode ✓"}};
    size_t n = 0;
    void *bytes = safetensors_serialize(tensors, 4, meta, 3, &n);
    ck_assert_ptr_nonnull(bytes);
    ck_assert_int_eq(((unsigned char *)bytes)[0] % 8, 0); /* header padded to 8 */
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes); /* the file keeps its own copy */
    ck_assert_int_eq(f.n_tensors, 4);
    ck_assert_int_eq(f.n_metadata, 3);
    ck_assert_str_eq(safetensors_metadata_get(&f, "format"), "pt");
    ck_assert_str_eq(safetensors_metadata_get(&f, "n_layer"), "12");
    ck_assert_str_eq(safetensors_metadata_get(&f, "note"), "ünïcode ✓");
    ck_assert_ptr_null(safetensors_metadata_get(&f, "missing"));
    /* file order: the writer's order */
    for (int i = 0; i < 4; i++)
        ck_assert_str_eq(f.tensors[i].name, tensors[i].name);

    const safetensors_info *t = safetensors_find(&f, "h.0.attn.c_attn.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, SAFETENSORS_F32);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_int_eq(t->n_elements, 6);
    ck_assert_uint_eq(t->n_bytes, 24);
    float out[6];
    char err[256];
    ck_assert_int_eq(safetensors_load_f32(t, out, 6, err, sizeof err), SAFETENSORS_OK);
    ck_assert_mem_eq(out, w, sizeof w);

    t = safetensors_find(&f, "h.0.attn.c_attn.bias");
    ck_assert_int_eq(safetensors_load_f32(t, out, 3, err, sizeof err), SAFETENSORS_OK);
    ck_assert_mem_eq(out, b, sizeof b); /* NaN and -0 bit for bit */

    t = safetensors_find(&f, "scale");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(t->n_elements, 1);
    ck_assert_int_eq(safetensors_load_f32(t, out, 1, err, sizeof err), SAFETENSORS_OK);
    ck_assert_float_eq(out[0], 42.0f);

    t = safetensors_find(&f, "empty");
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->n_elements, 0);
    ck_assert_uint_eq(t->n_bytes, 0);
    ck_assert_int_eq(safetensors_load_f32(t, out, 0, err, sizeof err), SAFETENSORS_OK);

    ck_assert_ptr_null(safetensors_find(&f, "h.0.attn"));
    ck_assert_ptr_null(safetensors_find(&f, ""));
    safetensors_free(&f);
    safetensors_free(&f); /* twice is harmless */
}
END_TEST

/* Many tensors: lookup by name finds each one whatever the header order. */
START_TEST(test_safetensors_find_among_many) {
    enum { N = 300 };
    static char names[N][32];
    static float values[N];
    safetensors_tensor tensors[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layer.%d.w", (i * 7919) % N);
        values[i] = (float)i;
        tensors[i] = (safetensors_tensor){names[i], &values[i], 1, {1}};
    }
    size_t n = 0;
    void *bytes = safetensors_serialize(tensors, N, NULL, 0, &n);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_int_eq(f.n_metadata, 0);
    for (int i = 0; i < N; i++) {
        const safetensors_info *t = safetensors_find(&f, names[i]);
        ck_assert_ptr_nonnull(t);
        float v;
        ck_assert_int_eq(safetensors_load_f32(t, &v, 1, NULL, 0), SAFETENSORS_OK);
        ck_assert_float_eq(v, (float)i);
    }
    safetensors_free(&f);
}
END_TEST

/* Metadata alone (no tensors), with more and longer entries than a model config needs. */
START_TEST(test_safetensors_metadata_only) {
    enum { N = 500 };
    static char keys[N][16];
    static char value[70000];
    const char *meta[N][2];
    memset(value, 'x', sizeof value - 1);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        meta[i][0] = keys[i];
        meta[i][1] = i == 7 ? value : keys[i];
    }
    size_t n = 0;
    void *bytes = safetensors_serialize(NULL, 0, (const char *const(*)[2])meta, N, &n);
    ck_assert_ptr_nonnull(bytes);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_int_eq(f.n_tensors, 0);
    ck_assert_int_eq(f.n_metadata, N);
    ck_assert_str_eq(safetensors_metadata_get(&f, "key499"), "key499");
    ck_assert_uint_eq(strlen(safetensors_metadata_get(&f, "key7")), sizeof value - 1);
    ck_assert_str_eq(f.metadata[3].key, "key3"); /* header order */
    safetensors_free(&f);

    bytes = safetensors_serialize(NULL, 0, NULL, 0, &n); /* HF's test_empty: "{}" + 6 spaces */
    ck_assert_uint_eq(n, 16);
    ck_assert_mem_eq((char *)bytes + 8, "{}      ", 8);
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_int_eq(f.n_tensors + f.n_metadata, 0);
    safetensors_free(&f);
}
END_TEST

START_TEST(test_safetensors_write_bf16) {
    /* 1.00390625 = 1 + 2^-8 is halfway between BF16 1.0 and 1.0078125: ties to even (1.0);
     * 1.01171875 = 1 + 3 x 2^-8 is halfway between 1.0078125 (odd) and 1.015625: up. */
    const float x[6] = {1.0f, -2.5f, 1.00390625f, 1.01171875f, INFINITY, NAN};
    const uint16_t want[6] = {0x3f80, 0xc020, 0x3f80, 0x3f82, 0x7f80, 0x7fc0};
    const safetensors_tensor t = {"w", x, 2, {2, 3}};
    size_t n = 0;
    void *bytes = safetensors_serialize_as(&t, 1, NULL, 0, SAFETENSORS_BF16, &n);
    ck_assert_ptr_nonnull(bytes);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    const safetensors_info *w = safetensors_find(&f, "w");
    ck_assert_int_eq(w->dtype, SAFETENSORS_BF16);
    ck_assert_uint_eq(w->n_bytes, 12);
    const unsigned char *raw = w->data;
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq((unsigned)(raw[2 * i] | raw[2 * i + 1] << 8), want[i]);
    float out[6];
    ck_assert_int_eq(safetensors_load_f32(w, out, 6, NULL, 0), SAFETENSORS_OK);
    ck_assert_float_eq(out[2], 1.0f);
    ck_assert_float_eq(out[3], 1.015625f);
    ck_assert(isnan(out[5]));
    safetensors_free(&f);
    ck_assert_ptr_null(safetensors_serialize_as(&t, 1, NULL, 0, SAFETENSORS_F16, &n));
}
END_TEST

/* safetensors_write_as streams exactly the bytes safetensors_serialize_as
 * builds, F32 and BF16, metadata included, for a tensor longer than the
 * writer's BF16 buffer (65,536 floats); bad input and a failing stream are
 * -1. */
START_TEST(test_safetensors_write_streams_the_same_bytes) {
    enum { BIG = 3 * 65536 + 5 };
    float *big = malloc(sizeof(float) * BIG);
    for (int i = 0; i < BIG; i++)
        big[i] = (float)i * 1.00390625f - 1000.0f; /* BF16 rounding ties appear */
    const float small[3] = {1.0f, -2.5f, NAN};
    const safetensors_tensor ts[3] = {
        {"big", big, 2, {3, 65537}}, {"empty", NULL, 1, {0}}, {"small", small, 1, {3}}};
    ck_assert_int_eq(3 * 65537, BIG - 2);
    const char *const meta[2][2] = {{"format", "pt"}, {"note", "streamed"}};
    static const safetensors_dtype dtypes[2] = {SAFETENSORS_F32, SAFETENSORS_BF16};
    for (int d = 0; d < 2; d++) {
        size_t n_mem = 0, n_file = 0;
        void *mem = safetensors_serialize_as(ts, 3, meta, 2, dtypes[d], &n_mem);
        ck_assert_ptr_nonnull(mem);
        FILE *f = tmpfile();
        ck_assert_int_eq(safetensors_write_as(f, ts, 3, meta, 2, dtypes[d], &n_file), 0);
        ck_assert_uint_eq(n_file, n_mem);
        ck_assert_int_eq(ftell(f), (long)n_mem);
        rewind(f);
        unsigned char *back = malloc(n_mem);
        ck_assert_uint_eq(fread(back, 1, n_mem, f), n_mem);
        ck_assert(memcmp(back, mem, n_mem) == 0);
        fclose(f);
        free(back), free(mem);
    }
    const safetensors_tensor dup[2] = {{"w", small, 1, {3}}, {"w", small, 1, {3}}};
    size_t n = 0;
    FILE *f = tmpfile();
    ck_assert_int_eq(safetensors_write_as(f, dup, 2, NULL, 0, SAFETENSORS_F32, &n), -1);
    ck_assert_int_eq(safetensors_write_as(f, ts, 3, NULL, 0, SAFETENSORS_F16, &n), -1);
    fclose(f);
    FILE *ro = fopen("/dev/null", "r"); /* not open for writing: every write fails */
    ck_assert_int_eq(safetensors_write_as(ro, ts, 3, NULL, 0, SAFETENSORS_F32, &n), -1);
    fclose(ro);
    free(big);
}
END_TEST

START_TEST(test_safetensors_writer_rejects_bad_input) {
    const float x[2] = {1, 2};
    const char *const meta_ok[][2] = {{"k", "v"}};
    const char *const meta_twice[][2] = {{"k", "v"}, {"k", "w"}};
    const char *const meta_null[][2] = {{"k", NULL}};
    const char *const meta_bad_utf8[][2] = {{"k", "\xff"}};
    size_t n = 0;
    const safetensors_tensor twice[] = {{"a", x, 1, {1}}, {"a", x, 1, {1}}};
    ck_assert_ptr_null(safetensors_serialize(twice, 2, meta_ok, 1, &n));
    const safetensors_tensor bad[][1] = {
        {{NULL, x, 1, {2}}},       {{"", x, 1, {2}}},          {{"__metadata__", x, 1, {2}}},
        {{"neg", x, 1, {-2}}},     {{"ndim", x, 9, {2}}},      {{"ndim", x, -1, {2}}},
        {{"\xc3\x28", x, 1, {2}}}, {{"nodata", NULL, 1, {2}}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(safetensors_serialize(bad[i], 1, NULL, 0, &n) == NULL, "case %zu", i);
    ck_assert_ptr_null(safetensors_serialize(NULL, 0, meta_twice, 2, &n));
    ck_assert_ptr_null(safetensors_serialize(NULL, 0, meta_null, 1, &n));
    ck_assert_ptr_null(safetensors_serialize(NULL, 0, meta_bad_utf8, 1, &n));
}
END_TEST

/* ---- conversion to F32 */

/* A one-tensor info over raw little-endian bytes. */
static safetensors_info raw_info(safetensors_dtype dtype, const void *data, int64_t n) {
    return (safetensors_info){.name = "t",
                              .dtype = dtype,
                              .ndim = 1,
                              .shape = {n},
                              .n_elements = n,
                              .data = data,
                              .n_bytes = (size_t)n * safetensors_dtype_size(dtype)};
}

START_TEST(test_safetensors_f16_to_f32) {
    static const struct {
        uint16_t f16;
        uint32_t f32;
    } cases[] = {
        {0x3c00, 0x3f800000}, /* 1.0 */
        {0xc000, 0xc0000000}, /* -2.0 */
        {0x7bff, 0x477fe000}, /* 65504, the largest finite */
        {0x0001, 0x33800000}, /* 2^-24 = 5.96e-8, the smallest subnormal */
        {0x03ff, 0x387fc000}, /* 1023 x 2^-24, the largest subnormal */
        {0x8001, 0xb3800000}, /* -2^-24 */
        {0x0400, 0x38800000}, /* 2^-14, the smallest normal */
        {0x3555, 0x3eaaa000}, /* 0.33325195 */
        {0x0000, 0x00000000}, /* +0 */
        {0x8000, 0x80000000}, /* -0 */
        {0x7c00, 0x7f800000}, /* +inf */
        {0xfc00, 0xff800000}, /* -inf */
        {0x7e00, 0x7fc00000}, /* quiet NaN */
        {0x7c01, 0x7f802000}, /* signalling NaN, payload kept */
    };
    enum { N = sizeof cases / sizeof cases[0] };
    unsigned char raw[2 * N + 1];
    for (int i = 0; i < N; i++) { /* at an odd address: the data need not be aligned */
        raw[1 + 2 * i] = (unsigned char)(cases[i].f16 & 0xff);
        raw[2 + 2 * i] = (unsigned char)(cases[i].f16 >> 8);
    }
    const safetensors_info t = raw_info(SAFETENSORS_F16, raw + 1, N);
    float out[N];
    ck_assert_int_eq(safetensors_load_f32(&t, out, N, NULL, 0), SAFETENSORS_OK);
    for (int i = 0; i < N; i++)
        ck_assert_msg(to_bits(out[i]) == cases[i].f32, "F16 0x%04x -> 0x%08x, expected 0x%08x",
                      cases[i].f16, to_bits(out[i]), cases[i].f32);
    ck_assert_float_eq(out[2], 65504.0f);
    ck_assert_double_eq_tol(out[3], 5.96e-8, 1e-10);
}
END_TEST

START_TEST(test_safetensors_bf16_and_f64_to_f32) {
    const uint16_t bf16[] = {0x3f80, 0xc040, 0x7f7f, 0x0001, 0xff80, 0x7fc1};
    const uint32_t want[] = {0x3f800000, 0xc0400000, 0x7f7f0000,
                             0x00010000, 0xff800000, 0x7fc10000};
    const safetensors_info t = raw_info(SAFETENSORS_BF16, bf16, 6);
    float out[6];
    ck_assert_int_eq(safetensors_load_f32(&t, out, 6, NULL, 0), SAFETENSORS_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(to_bits(out[i]), want[i]); /* the top half of an F32 */
    ck_assert_float_eq(out[0], 1.0f);
    ck_assert_float_eq(out[1], -3.0f);

    const double f64[] = {1.0, -0.1, 1e300, -1e300, 1e-300, 3.4028234663852886e38};
    const safetensors_info d = raw_info(SAFETENSORS_F64, f64, 6);
    ck_assert_int_eq(safetensors_load_f32(&d, out, 6, NULL, 0), SAFETENSORS_OK);
    ck_assert_float_eq(out[0], 1.0f);
    ck_assert_uint_eq(to_bits(out[1]), 0xbdcccccd); /* -0.1 rounded to nearest */
    ck_assert(isinf(out[2]) && out[2] > 0);
    ck_assert(isinf(out[3]) && out[3] < 0);
    ck_assert_float_eq(out[4], 0.0f);
    ck_assert_float_eq(out[5], from_bits(0x7f7fffff)); /* FLT_MAX */
}
END_TEST

START_TEST(test_safetensors_load_rejects_integers_and_wrong_size) {
    const int32_t ints[2] = {1, 2};
    char err[256];
    const safetensors_dtype no_float[] = {SAFETENSORS_I32, SAFETENSORS_I64, SAFETENSORS_U8,
                                          SAFETENSORS_BOOL, SAFETENSORS_F8_E4M3};
    float out[2];
    for (size_t i = 0; i < sizeof no_float / sizeof no_float[0]; i++) {
        const safetensors_info t = raw_info(no_float[i], ints, 1);
        ck_assert_int_eq(safetensors_load_f32(&t, out, 1, err, sizeof err),
                         SAFETENSORS_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(err, "does not convert to F32"));
        ck_assert_ptr_nonnull(strstr(err, safetensors_dtype_name(no_float[i])));
    }
    const safetensors_info t = raw_info(SAFETENSORS_F32, ints, 2);
    ck_assert_int_eq(safetensors_load_f32(&t, out, 3, err, sizeof err),
                     SAFETENSORS_ERR_SIZE_MISMATCH);
    ck_assert_str_eq(err, "tensor 't': 2 elements, expected 3");

    const int64_t want_shape[2] = {2, 1};
    ck_assert_int_eq(safetensors_check_shape(&t, 1, (const int64_t[]){2}, err, sizeof err),
                     SAFETENSORS_OK);
    ck_assert_int_eq(safetensors_check_shape(&t, 2, want_shape, err, sizeof err),
                     SAFETENSORS_ERR_SIZE_MISMATCH);
    ck_assert_str_eq(err, "tensor 't': shape [2], expected [2, 1]");
}
END_TEST

/* ---- a file laid out by Hugging Face's writer */

START_TEST(test_safetensors_reads_hf_layout_fixture) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/safetensors/mixed.safetensors", test_repo_dir());
    safetensors_file f;
    char err[512];
    const int rc = safetensors_read_file(&f, path, err, sizeof err);
    ck_assert_msg(rc == SAFETENSORS_OK, "%s", err);
    ck_assert_uint_eq(f.header_bytes % 8, 0);
    ck_assert_str_eq(safetensors_metadata_get(&f, "format"), "pt");
    /* HF order: F32 first, then BF16, then F16; by name within a dtype */
    const char *order[] = {"scale",           "wte.weight", "h.0.ln_1.bias",
                           "h.0.ln_1.weight", "empty",      "h.0.attn.c_attn.weight"};
    ck_assert_int_eq(f.n_tensors, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_str_eq(f.tensors[i].name, order[i]);

    float out[12];
    const safetensors_info *t = safetensors_find(&f, "wte.weight");
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(safetensors_load_f32(t, out, 12, err, sizeof err), SAFETENSORS_OK);
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(out[i], 0.25f * (float)i - 1.0f);

    t = safetensors_find(&f, "scale");
    ck_assert_int_eq(t->ndim, 0);
    ck_assert_int_eq(safetensors_load_f32(t, out, 1, err, sizeof err), SAFETENSORS_OK);
    ck_assert_float_eq(out[0], 42.0f);

    t = safetensors_find(&f, "h.0.attn.c_attn.weight");
    ck_assert_int_eq(t->dtype, SAFETENSORS_F16);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 4);
    ck_assert_int_eq(safetensors_load_f32(t, out, 8, err, sizeof err), SAFETENSORS_OK);
    const float f16_want[8] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0.5f, -0.0f, INFINITY, 0x1p-14f};
    ck_assert_mem_eq(out, f16_want, sizeof f16_want);

    t = safetensors_find(&f, "h.0.ln_1.weight");
    ck_assert_int_eq(t->dtype, SAFETENSORS_BF16);
    ck_assert_int_eq(safetensors_load_f32(t, out, 4, err, sizeof err), SAFETENSORS_OK);
    const float bf16_want[4] = {1.0f, -1.5f, 0x1p100f, 0x1p-133f};
    ck_assert_mem_eq(out, bf16_want, sizeof bf16_want);

    t = safetensors_find(&f, "empty");
    ck_assert_int_eq(t->n_elements, 0);
    ck_assert_int_eq(t->shape[0], 0);
    ck_assert_int_eq(t->shape[1], 3);
    safetensors_free(&f);
}
END_TEST

/* The exact bytes HF's own tests assert its writer produces (tensor.rs,
 * test_serialization), and its docs example with an I32 tensor. */
START_TEST(test_safetensors_reads_hf_test_vectors) {
    size_t n;
    unsigned char *bytes = make_file(
        "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}", 24, &n);
    ck_assert_uint_eq(bytes[0], 64);
    const float values[6] = {0, 1, 2, 3, 4, 5};
    memcpy(bytes + n - 24, values, 24);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    float out[6];
    ck_assert_int_eq(safetensors_load_f32(safetensors_find(&f, "attn.0"), out, 6, NULL, 0),
                     SAFETENSORS_OK);
    ck_assert_mem_eq(out, values, sizeof values);
    safetensors_free(&f);

    bytes =
        make_file("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, &n);
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_int_eq(f.tensors[0].dtype, SAFETENSORS_I32);
    ck_assert_uint_eq(f.tensors[0].n_bytes, 16);
    safetensors_free(&f);
}
END_TEST

/* What HF accepts beyond our own writer's output: trailing whitespace,
 * "__metadata__": null, unknown fields in an entry, every dtype name,
 * tensors listed out of offset order. */
START_TEST(test_safetensors_accepts_what_hf_accepts) {
    size_t n;
    unsigned char *bytes =
        make_file("{\"b\":{\"data_offsets\":[2,10],\"shape\":[2],\"dtype\":\"I32\",\"x\":[1]},"
                  "\"__metadata__\":null,"
                  "\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}\n\t  ",
                  10, &n);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_int_eq(f.n_metadata, 0);
    ck_assert_str_eq(f.tensors[0].name, "a");
    ck_assert_str_eq(f.tensors[1].name, "b");
    ck_assert_ptr_eq(f.tensors[1].data, (const unsigned char *)f.tensors[0].data + 2);
    safetensors_free(&f);

    for (int d = 0; d < SAFETENSORS_DTYPE_COUNT; d++) {
        char header[160];
        const size_t size = safetensors_dtype_size((safetensors_dtype)d);
        snprintf(header, sizeof header,
                 "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 safetensors_dtype_name((safetensors_dtype)d), 3 * size);
        bytes = make_file(header, 3 * size, &n);
        parse_ok(&f, bytes, n);
        free(bytes);
        ck_assert_int_eq(f.tensors[0].dtype, d);
        safetensors_free(&f);
    }
}
END_TEST

/* ---- rejections */

START_TEST(test_safetensors_rejects_bad_framing) {
    expect_bytes_rejected("", 0, SAFETENSORS_ERR_HEADER_TOO_SMALL,
                          "file has 0 bytes, fewer than the 8 of the header length");
    expect_bytes_rejected("\x02\0\0\0\0\0\0", 7, SAFETENSORS_ERR_HEADER_TOO_SMALL,
                          "file has 7 bytes");
    unsigned char big[16] = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}; /* 100000001 */
    expect_bytes_rejected(big, sizeof big, SAFETENSORS_ERR_HEADER_TOO_LARGE,
                          "header length 100000001 is over the limit of 100000000 bytes");
    memset(big, 0xff, 8);
    expect_bytes_rejected(big, sizeof big, SAFETENSORS_ERR_HEADER_TOO_LARGE,
                          "header length 18446744073709551615 is over the limit");
    unsigned char past[12] = {5, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    expect_bytes_rejected(past, sizeof past, SAFETENSORS_ERR_HEADER_LENGTH,
                          "header length 5 runs past the end of the 12-byte file");
    unsigned char empty_header[8] = {0};
    expect_bytes_rejected(empty_header, 8, SAFETENSORS_ERR_HEADER_START,
                          "header does not start with '{'");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_header_text) {
    expect_rejected(" {}", 0, SAFETENSORS_ERR_HEADER_START, "header does not start with '{'");
    expect_rejected("[]", 0, SAFETENSORS_ERR_HEADER_START, "does not start with '{'");
    expect_rejected("{\"a\xff\":1}", 0, SAFETENSORS_ERR_HEADER_UTF8,
                    "header is not valid UTF-8 (byte 3 of the header)");
    expect_rejected("{\"\xc0\xaf\":1}", 0, SAFETENSORS_ERR_HEADER_UTF8, "byte 2"); /* overlong */
    expect_rejected("{\"\xed\xa0\x80\":1}", 0, SAFETENSORS_ERR_HEADER_UTF8,
                    "byte 2"); /* surrogate */
    expect_rejected("{\"\xf4\x90\x80\x80\":1}", 0, SAFETENSORS_ERR_HEADER_UTF8, "byte 2");
    expect_rejected("{\"\xe2\x82\":1}", 0, SAFETENSORS_ERR_HEADER_UTF8, "byte 2"); /* truncated */
    expect_rejected("{\"a\":{\"dtype\":\"F32\"", 0, SAFETENSORS_ERR_HEADER_JSON,
                    "header is not valid JSON");
    expect_rejected("{}x", 0, SAFETENSORS_ERR_HEADER_JSON, "end of file expected");
    size_t n;
    unsigned char *nul = make_file("{}  ", 0, &n);
    nul[10] = '\0'; /* NUL padding is not whitespace */
    expect_bytes_rejected(nul, n, SAFETENSORS_ERR_HEADER_JSON, "header is not valid JSON");
    free(nul);
    expect_rejected("{\"a\\u0000b\":{}}", 0, SAFETENSORS_ERR_HEADER_JSON, "NUL byte");
}
END_TEST

START_TEST(test_safetensors_rejects_duplicates) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, SAFETENSORS_ERR_DUPLICATE, "duplicate key 'a' in the header (byte 57");
    expect_rejected("{\"transformer.h.11.mlp.c_proj.weight\":{},"
                    "\"transformer.h.11.mlp.c_proj.weight\":{}}",
                    0, SAFETENSORS_ERR_DUPLICATE,
                    "duplicate key 'transformer.h.11.mlp.c_proj.weight'");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\"}}", 0, SAFETENSORS_ERR_DUPLICATE,
                    "duplicate key 'dtype'");
    expect_rejected("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, SAFETENSORS_ERR_DUPLICATE,
                    "duplicate key 'k'");
    expect_rejected("{\"q\\\"\":{},\"q\\\"\":{}}", 0, SAFETENSORS_ERR_DUPLICATE,
                    "duplicate key 'q\\\"'"); /* the raw text, escapes as written */
}
END_TEST

START_TEST(test_safetensors_rejects_bad_metadata) {
    expect_rejected("{\"__metadata__\":[\"a\"]}", 0, SAFETENSORS_ERR_METADATA,
                    "__metadata__ must be an object of strings, got an array");
    expect_rejected("{\"__metadata__\":{\"n_layer\":12}}", 0, SAFETENSORS_ERR_METADATA,
                    "__metadata__ 'n_layer': value must be a string, got a number");
    expect_rejected("{\"__metadata__\":{\"cfg\":{\"a\":\"b\"}}}", 0, SAFETENSORS_ERR_METADATA,
                    "__metadata__ 'cfg': value must be a string, got an object");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_entries) {
    expect_rejected("{\"\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_TENSOR, "a tensor has an empty name");
    expect_rejected("{\"w\":[1,2]}", 0, SAFETENSORS_ERR_TENSOR,
                    "tensor 'w': entry must be an object, got an array");
    expect_rejected("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SAFETENSORS_ERR_TENSOR,
                    "tensor 'w': missing 'dtype'");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SAFETENSORS_ERR_TENSOR,
                    "tensor 'w': missing 'shape'");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, SAFETENSORS_ERR_TENSOR,
                    "tensor 'w': missing 'data_offsets'");
    expect_rejected("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_TENSOR, "tensor 'w': 'dtype' must be a string, got a number");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_TENSOR, "tensor 'w': 'shape' must be an array, got a number");
}
END_TEST

START_TEST(test_safetensors_rejects_unknown_dtype) {
    expect_rejected("{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
                    SAFETENSORS_ERR_DTYPE, "tensor 'w': unknown dtype 'F4'");
    expect_rejected("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_DTYPE, "tensor 'w': unknown dtype 'f32'");
    expect_rejected("{\"w\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_DTYPE, "unknown dtype ''");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_shapes) {
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]}}", 4,
                    SAFETENSORS_ERR_SHAPE, "tensor 'w': shape[1] = -3 is negative");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
                    SAFETENSORS_ERR_SHAPE, "tensor 'w': shape[0] must be an integer, got a number");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                    SAFETENSORS_ERR_SHAPE, "shape[0] must be an integer, got a string");
    expect_rejected(
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
        SAFETENSORS_ERR_SHAPE, "tensor 'w': shape has 9 dimensions, more than the 8 supported");
    expect_rejected("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,1]}}",
                    1, SAFETENSORS_ERR_SHAPE,
                    "tensor 'w': the element count of shape [4294967296, 4294967296] overflows "
                    "64 bits");
    /* elements fit, bytes do not: 2^62 x 4 */
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
                    "\"data_offsets\":[0,1]}}",
                    1, SAFETENSORS_ERR_SHAPE,
                    "tensor 'w': the byte size of shape [4611686018427387904] of F32 overflows");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
                    "\"data_offsets\":[0,4]}}",
                    4, SAFETENSORS_ERR_HEADER_JSON, "too big integer");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_offsets) {
    expect_rejected(
        "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
        12, SAFETENSORS_ERR_OFFSETS,
        "tensor 'h.0.attn.c_attn.weight': data_offsets [0, 12] do not match shape [2, 2] of F32 "
        "(16 bytes)");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                    SAFETENSORS_ERR_OFFSETS,
                    "tensor 'w': data_offsets [0, 8] run past the 4-byte data section");
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
                    SAFETENSORS_ERR_OFFSETS,
                    "tensor 'w': data_offsets [8, 4] end before they begin");
    const char *malformed[] = {"[0]", "[0,4,8]", "[-4,0]", "[0,\"4\"]", "{\"0\":4}", "[0,4.0]"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        char header[128];
        snprintf(header, sizeof header,
                 "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":%s}}", malformed[i]);
        expect_rejected(header, 4, SAFETENSORS_ERR_OFFSETS,
                        "tensor 'w': data_offsets must be [begin, end] with two non-negative "
                        "integers");
    }
    /* the end is checked against the data section before any arithmetic on it */
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                    "\"data_offsets\":[9223372036854775804,9223372036854775807]}}",
                    4, SAFETENSORS_ERR_OFFSETS, "run past the 4-byte data section");
}
END_TEST

START_TEST(test_safetensors_rejects_bad_layout) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                    12, SAFETENSORS_ERR_LAYOUT,
                    "tensor 'b': data_offsets [8, 12] leave bytes [4, 8) of the data section "
                    "unused");
    expect_rejected("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                    SAFETENSORS_ERR_LAYOUT, "leave bytes [0, 4) of the data section unused");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, SAFETENSORS_ERR_LAYOUT,
                    "tensor 'b': data_offsets [4, 8] overlap tensor 'a' at [0, 8]");
    /* two tensors on the same bytes */
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"y\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    4, SAFETENSORS_ERR_LAYOUT,
                    "tensor 'y': data_offsets [0, 4] overlap tensor 'x'");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6,
                    SAFETENSORS_ERR_LAYOUT,
                    "the tensors cover 4 bytes but the data section has 6 (bytes after the last "
                    "tensor)");
    expect_rejected("{}", 1, SAFETENSORS_ERR_LAYOUT, "the tensors cover 0 bytes");
    /* zero-byte tensors may share an offset */
    size_t n;
    unsigned char *bytes =
        make_file("{\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"e2\":{\"dtype\":\"F16\",\"shape\":[3,0],\"data_offsets\":[4,4]}}",
                  4, &n);
    safetensors_file f;
    parse_ok(&f, bytes, n);
    free(bytes);
    ck_assert_str_eq(f.tensors[0].name, "a");
    safetensors_free(&f);
}
END_TEST

START_TEST(test_safetensors_read_file_errors) {
    safetensors_file f;
    char err[512];
    ck_assert_int_eq(safetensors_read_file(&f, "/nonexistent/x.safetensors", err, sizeof err),
                     SAFETENSORS_ERR_IO);
    ck_assert_str_eq(err, "/nonexistent/x.safetensors: No such file or directory");
    ck_assert_int_eq(safetensors_read_file(&f, "/tmp", err, sizeof err), SAFETENSORS_ERR_IO);
    ck_assert_str_eq(err, "/tmp: not a regular file");

    char path[] = "/tmp/rlhf-st-XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n;
    unsigned char *bytes =
        make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, &n);
    ck_assert_int_eq(write(fd, bytes, n - 1), (ssize_t)(n - 1)); /* one byte short */
    close(fd);
    free(bytes);
    ck_assert_int_eq(safetensors_read_file(&f, path, err, sizeof err), SAFETENSORS_ERR_OFFSETS);
    char want[256];
    snprintf(want, sizeof want, "%s: tensor 'w': data_offsets [0, 8] run past the 7-byte", path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    unlink(path);
}
END_TEST

/* Every proper prefix of a valid file is rejected, and flipping any byte
 * never crashes (under ASan this checks no read leaves the buffer). */
START_TEST(test_safetensors_truncations_and_corruptions) {
    float x[5] = {1, 2, 3, 4, 5};
    const safetensors_tensor tensors[] = {{"a", x, 2, {2, 2}}, {"b", x + 4, 1, {1}}};
    const char *const meta[][2] = {{"k", "v"}};
    size_t n = 0;
    unsigned char *bytes = safetensors_serialize(tensors, 2, meta, 1, &n);
    safetensors_file f;
    char err[512];
    for (size_t len = 0; len < n; len++) {
        ck_assert_msg(safetensors_parse(&f, bytes, len, err, sizeof err) != SAFETENSORS_OK,
                      "prefix of %zu bytes accepted", len);
        ck_assert(err[0] != '\0');
    }
    int accepted = 0;
    for (size_t i = 0; i < n; i++)
        for (int bit = 0; bit < 8; bit++) {
            bytes[i] ^= (unsigned char)(1u << bit);
            if (safetensors_parse(&f, bytes, n, err, sizeof err) == SAFETENSORS_OK) {
                accepted++; /* e.g. a flipped data bit, or a name changed to another valid one */
                safetensors_free(&f);
            }
            bytes[i] ^= (unsigned char)(1u << bit);
        }
    ck_assert_int_ge(accepted, 20 * 8); /* at least every data bit */
    free(bytes);
}
END_TEST

Suite *safetensors_suite(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_safetensors_round_trip);
    tcase_add_test(tc, test_safetensors_find_among_many);
    tcase_add_test(tc, test_safetensors_metadata_only);
    tcase_add_test(tc, test_safetensors_write_bf16);
    tcase_add_test(tc, test_safetensors_write_streams_the_same_bytes);
    tcase_add_test(tc, test_safetensors_writer_rejects_bad_input);
    tcase_add_test(tc, test_safetensors_f16_to_f32);
    tcase_add_test(tc, test_safetensors_bf16_and_f64_to_f32);
    tcase_add_test(tc, test_safetensors_load_rejects_integers_and_wrong_size);
    tcase_add_test(tc, test_safetensors_reads_hf_layout_fixture);
    tcase_add_test(tc, test_safetensors_reads_hf_test_vectors);
    tcase_add_test(tc, test_safetensors_accepts_what_hf_accepts);
    tcase_add_test(tc, test_safetensors_rejects_bad_framing);
    tcase_add_test(tc, test_safetensors_rejects_bad_header_text);
    tcase_add_test(tc, test_safetensors_rejects_duplicates);
    tcase_add_test(tc, test_safetensors_rejects_bad_metadata);
    tcase_add_test(tc, test_safetensors_rejects_bad_entries);
    tcase_add_test(tc, test_safetensors_rejects_unknown_dtype);
    tcase_add_test(tc, test_safetensors_rejects_bad_shapes);
    tcase_add_test(tc, test_safetensors_rejects_bad_offsets);
    tcase_add_test(tc, test_safetensors_rejects_bad_layout);
    tcase_add_test(tc, test_safetensors_read_file_errors);
    tcase_add_test(tc, test_safetensors_truncations_and_corruptions);
    suite_add_tcase(s, tc);
    return s;
}
