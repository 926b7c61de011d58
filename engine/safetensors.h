/* safetensors — the checkpoint format (Hugging Face safetensors):
 *   8 bytes little-endian header length N, N bytes of JSON header
 *   {"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}},
 *   then the raw little-endian tensor bytes, offsets relative to the end of
 *   the header. The header is padded with spaces to a multiple of 8 bytes so
 *   tensor data stays aligned.
 */
#ifndef RLHF_SAFETENSORS_H
#define RLHF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SAFETENSORS_MAX_DIMS 4

typedef struct safetensors_tensor {
    const char *name;
    const float *data; /* F32 */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
} safetensors_tensor;

/* A complete F32 safetensors file in one malloc'd buffer (free() it), with
 * metadata given as n_meta {key, value} string pairs. NULL on allocation
 * failure or a malformed tensor list. */
void *safetensors_serialize(const safetensors_tensor *tensors, int n, const char *const (*meta)[2],
                            int n_meta, size_t *n_bytes);

#endif
