/* libFuzzer target for the safetensors reader (tests/fuzz/README.md).
 *
 * Every input goes through safetensors_parse. When it is accepted, every
 * tensor is looked up by name and loaded as F32 where its dtype allows, and
 * the convertible tensors are written back with safetensors_serialize and
 * parsed again: the writer must accept whatever the reader accepted, and the
 * round trip must keep every value bit for bit; written as BF16 instead,
 * every value must come back rounded to BF16's 8 significant bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static void check(int ok) {
    if (!ok)
        __builtin_trap();
}

/* y is x rounded to bfloat16 (8 significant bits, nearest). */
static int is_bf16_rounding(float x, float y) {
    if (isnan(x))
        return isnan(y);
    if (isinf(x))
        return x == y;
    if (isinf(y)) /* rounded up past the largest finite BF16, 0x1.fep127 */
        return fabsf(x) >= 0x1.ffp127f && signbit(x) == signbit(y);
    /* half an ulp: relative for normals, 2^-134 absolute among subnormals */
    return fabsf(y - x) <= fmaxf(fabsf(x) * 0x1p-8f, 0x1p-134f);
}

static void check_bf16_round_trip(const safetensors_tensor *tensors, int n,
                                  const char *const (*meta)[2], int n_meta) {
    size_t n_bytes = 0;
    void *bytes = safetensors_serialize_as(tensors, n, meta, n_meta, SAFETENSORS_BF16, &n_bytes);
    check(bytes != NULL);
    safetensors_file g;
    char err[512];
    check(safetensors_parse(&g, bytes, n_bytes, err, sizeof err) == SAFETENSORS_OK);
    for (int i = 0; i < n; i++) {
        const safetensors_info *t = safetensors_find(&g, tensors[i].name);
        check(t != NULL && t->dtype == SAFETENSORS_BF16);
        float *y = malloc((size_t)t->n_elements * sizeof(float) + 1);
        check(y != NULL);
        check(safetensors_load_f32(t, y, t->n_elements, err, sizeof err) == SAFETENSORS_OK);
        for (int64_t k = 0; k < t->n_elements; k++)
            check(is_bf16_rounding(tensors[i].data[k], y[k]));
        free(y);
    }
    safetensors_free(&g);
    free(bytes);
}

static void round_trip(const safetensors_file *f, float *const *values) {
    safetensors_tensor *tensors = calloc((size_t)f->n_tensors + 1, sizeof *tensors);
    const char *(*meta)[2] = calloc((size_t)f->n_metadata + 1, sizeof *meta);
    check(tensors != NULL && meta != NULL);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_info *t = &f->tensors[i];
        if (values[i] == NULL)
            continue;
        tensors[n] = (safetensors_tensor){t->name, values[i], t->ndim, {0}};
        memcpy(tensors[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    for (int i = 0; i < f->n_metadata; i++) {
        meta[i][0] = f->metadata[i].key;
        meta[i][1] = f->metadata[i].value;
    }
    size_t n_bytes = 0;
    void *bytes =
        safetensors_serialize(tensors, n, (const char *const(*)[2])meta, f->n_metadata, &n_bytes);
    check(bytes != NULL);
    safetensors_file g;
    char err[512];
    check(safetensors_parse(&g, bytes, n_bytes, err, sizeof err) == SAFETENSORS_OK);
    check(g.n_tensors == n && g.n_metadata == f->n_metadata);
    for (int i = 0; i < n; i++) {
        const safetensors_info *t = safetensors_find(&g, tensors[i].name);
        check(t != NULL && t->dtype == SAFETENSORS_F32 && t->ndim == tensors[i].ndim);
        check(t->n_bytes == 0 || memcmp(t->data, tensors[i].data, t->n_bytes) == 0);
    }
    for (int i = 0; i < f->n_metadata; i++)
        check(strcmp(safetensors_metadata_get(&g, meta[i][0]), meta[i][1]) == 0);
    safetensors_free(&g);
    free(bytes);
    check_bf16_round_trip(tensors, n, (const char *const(*)[2])meta, f->n_metadata);
    free(meta);
    free(tensors);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    safetensors_file f;
    char err[512];
    if (safetensors_parse(&f, data, size, err, sizeof err) != SAFETENSORS_OK) {
        check(err[0] != '\0');
        return 0;
    }
    float **values = calloc((size_t)f.n_tensors + 1, sizeof *values);
    check(values != NULL);
    for (int i = 0; i < f.n_tensors; i++) {
        const safetensors_info *t = &f.tensors[i];
        check(safetensors_find(&f, t->name) == t);
        values[i] = malloc((size_t)t->n_elements * sizeof(float) + 1);
        check(values[i] != NULL);
        if (safetensors_load_f32(t, values[i], t->n_elements, err, sizeof err) != SAFETENSORS_OK) {
            free(values[i]);
            values[i] = NULL;
        }
    }
    for (int i = 0; i < f.n_metadata; i++)
        check(safetensors_metadata_get(&f, f.metadata[i].key) != NULL);
    round_trip(&f, values);
    for (int i = 0; i < f.n_tensors; i++)
        free(values[i]);
    free(values);
    safetensors_free(&f);
    return 0;
}
