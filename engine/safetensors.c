#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int64_t element_count(const safetensors_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

void *safetensors_serialize(const safetensors_tensor *tensors, int n, const char *const (*meta)[2],
                            int n_meta, size_t *n_bytes) {
    json_t *header = json_object();
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++)
            json_object_set_new(m, meta[i][0], json_string(meta[i][1]));
        json_object_set_new(header, "__metadata__", m);
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const safetensors_tensor *t = &tensors[i];
        if (t->ndim < 0 || t->ndim > SAFETENSORS_MAX_DIMS || json_object_get(header, t->name)) {
            json_decref(header);
            return NULL;
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        const int64_t bytes = element_count(t) * (int64_t)sizeof(float);
        json_t *entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                  "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        json_object_set_new(header, t->name, entry);
        offset += bytes;
    }
    char *text = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(header);
    if (text == NULL)
        return NULL;
    const size_t text_len = strlen(text);
    const size_t padded = (text_len + 7) & ~(size_t)7;
    const size_t total = 8 + padded + (size_t)offset;
    unsigned char *out = malloc(total);
    if (out == NULL) {
        free(text);
        return NULL;
    }
    for (int b = 0; b < 8; b++)
        out[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(out + 8, text, text_len);
    memset(out + 8 + text_len, ' ', padded - text_len);
    free(text);
    unsigned char *data = out + 8 + padded;
    for (int i = 0; i < n; i++) {
        const size_t bytes = (size_t)element_count(&tensors[i]) * sizeof(float);
        memcpy(data, tensors[i].data, bytes); /* x86-64 is little-endian, as the format */
        data += bytes;
    }
    *n_bytes = total;
    return out;
}
