/* safetensors — the checkpoint format (Hugging Face safetensors):
 *   8 bytes little-endian header length N, N bytes of JSON header
 *   {"__metadata__": {str: str}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}},
 *   then the raw little-endian tensor bytes, offsets relative to the end of
 *   the header. The header is padded with spaces to a multiple of 8 bytes so
 *   tensor data stays aligned.
 *
 * Reading validates the whole file before handing out a single pointer, with
 * the rules of Hugging Face's reference reader (safetensors/src/tensor.rs,
 * SafeTensors::read_metadata and Metadata::validate):
 *   - the header length is at most SAFETENSORS_MAX_HEADER_BYTES and fits in
 *     the file after the 8-byte length field;
 *   - the header is valid UTF-8, starts with '{' and is one JSON object with
 *     no key given twice;
 *   - "__metadata__", if present, maps strings to strings;
 *   - every other key is a non-empty tensor name whose entry has a known
 *     "dtype", a "shape" of at most SAFETENSORS_MAX_DIMS non-negative integers
 *     whose byte size fits in 64 bits, and "data_offsets" [begin, end] inside
 *     the data section with end - begin = elements x dtype size;
 *   - sorted by offset, the tensors tile the data section exactly: no gap, no
 *     overlap, no trailing bytes.
 * Other keys inside a tensor entry are ignored, as Hugging Face does.
 *
 *   safetensors_file f;
 *   if (safetensors_read_file(&f, path, err, sizeof err) != SAFETENSORS_OK) ...
 *   const safetensors_info *w = safetensors_find(&f, "wte.weight");
 *   safetensors_load_f32(w, params, V * C, err, sizeof err);
 *   safetensors_free(&f);
 */
#ifndef RLHF_SAFETENSORS_H
#define RLHF_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SAFETENSORS_MAX_DIMS 8
/* The reference implementation's limit (MAX_HEADER_SIZE, 100 MB). */
#define SAFETENSORS_MAX_HEADER_BYTES 100000000

/* Every dtype of the format with a whole number of bytes per element. Only
 * the floating-point ones up to 64 bits convert to F32. */
typedef enum safetensors_dtype {
    SAFETENSORS_F32 = 0,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_F64,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_I64,
    SAFETENSORS_I32,
    SAFETENSORS_I16,
    SAFETENSORS_I8,
    SAFETENSORS_U64,
    SAFETENSORS_U32,
    SAFETENSORS_U16,
    SAFETENSORS_U8,
    SAFETENSORS_BOOL,
    SAFETENSORS_DTYPE_COUNT
} safetensors_dtype;

/* Return codes of the fallible functions; the message goes to err. */
typedef enum safetensors_status {
    SAFETENSORS_OK = 0,
    SAFETENSORS_ERR_IO,               /* the file cannot be opened or read */
    SAFETENSORS_ERR_NOMEM,            /* an allocation failed */
    SAFETENSORS_ERR_HEADER_TOO_SMALL, /* fewer than the 8 bytes of the length field */
    SAFETENSORS_ERR_HEADER_TOO_LARGE, /* header length over SAFETENSORS_MAX_HEADER_BYTES */
    SAFETENSORS_ERR_HEADER_LENGTH,    /* header length runs past the end of the file */
    SAFETENSORS_ERR_HEADER_UTF8,      /* header is not valid UTF-8 */
    SAFETENSORS_ERR_HEADER_START,     /* header does not start with '{' */
    SAFETENSORS_ERR_HEADER_JSON,      /* header is not one JSON object */
    SAFETENSORS_ERR_DUPLICATE,        /* a key appears twice in one JSON object */
    SAFETENSORS_ERR_METADATA,         /* "__metadata__" is not a string -> string map */
    SAFETENSORS_ERR_TENSOR,           /* empty name, entry or field missing or mistyped */
    SAFETENSORS_ERR_DTYPE,            /* unknown dtype */
    SAFETENSORS_ERR_SHAPE,            /* negative, too many dimensions, size overflows */
    SAFETENSORS_ERR_OFFSETS,          /* data_offsets out of the data section or != shape */
    SAFETENSORS_ERR_LAYOUT,           /* tensors leave a gap, overlap or miss trailing bytes */
    SAFETENSORS_ERR_UNSUPPORTED,      /* dtype does not convert to F32 */
    SAFETENSORS_ERR_SIZE_MISMATCH     /* element count or shape differs from the expected one */
} safetensors_status;

/* One tensor of a parsed file. data points into the file's bytes: valid
 * until safetensors_free, little-endian, and not necessarily aligned (the
 * format does not require writers to pad the header); read it with memcpy or
 * safetensors_load_f32. */
typedef struct safetensors_info {
    const char *name;
    safetensors_dtype dtype;
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    int64_t n_elements; /* product of shape; 1 for a scalar (ndim 0) */
    const void *data;
    size_t n_bytes; /* n_elements x safetensors_dtype_size(dtype) */
} safetensors_info;

typedef struct safetensors_metadata_entry {
    const char *key;
    const char *value;
} safetensors_metadata_entry;

/* A parsed file. Iterate with tensors[0..n_tensors) (ascending data offset,
 * i.e. file order) and metadata[0..n_metadata) (header order). The rest is
 * private storage. */
typedef struct safetensors_file {
    int n_tensors;
    safetensors_info *tensors;
    int n_metadata;
    safetensors_metadata_entry *metadata;
    size_t header_bytes; /* N, the JSON header length */
    unsigned char *bytes;
    size_t n_bytes;
    void *header_json; /* owns the name and metadata strings */
    int *by_name;      /* (n_tensors) indices into tensors, sorted by name */
} safetensors_file;

/* Validates n bytes holding a whole file and fills f with a private copy
 * (the caller keeps bytes). On failure f needs no free and err says which
 * rule which tensor or field broke, e.g. "tensor 'h.0.attn.c_attn.weight':
 * data_offsets [0, 12] do not match shape [2, 2] of F32 (16 bytes)". */
int safetensors_parse(safetensors_file *f, const void *bytes, size_t n, char *err, size_t errlen);

/* safetensors_parse of the file at path, read into memory (not mmap'd, so a
 * file truncated by another process while loaded cannot SIGBUS us). The
 * message starts with the path. */
int safetensors_read_file(safetensors_file *f, const char *path, char *err, size_t errlen);

/* Releases what parse/read_file allocated; f may be zeroed or freed twice. */
void safetensors_free(safetensors_file *f);

/* The tensor called name, or NULL. O(log n_tensors). */
const safetensors_info *safetensors_find(const safetensors_file *f, const char *name);

/* The "__metadata__" value of key, or NULL. */
const char *safetensors_metadata_get(const safetensors_file *f, const char *key);

/* "F32", "BF16", ... and the bytes per element. */
const char *safetensors_dtype_name(safetensors_dtype dtype);
size_t safetensors_dtype_size(safetensors_dtype dtype);

/* Copies t's elements into out[0..n_expected) as F32: F32 as is, F16 and
 * BF16 exactly (subnormals, infinities and NaN payloads kept), F64 rounded to
 * nearest (beyond +-FLT_MAX to +-inf). Fails with SIZE_MISMATCH if t has
 * another element count, UNSUPPORTED for integer, bool and F8 dtypes. */
int safetensors_load_f32(const safetensors_info *t, float *out, int64_t n_expected, char *err,
                         size_t errlen);

/* Checks t has exactly the given shape; on mismatch SIZE_MISMATCH with a
 * message showing both, e.g. "tensor 'w': shape [768, 2304], expected
 * [2304, 768]". */
int safetensors_check_shape(const safetensors_info *t, int ndim, const int64_t *shape, char *err,
                            size_t errlen);

/* ---- writing */

typedef struct safetensors_tensor {
    const char *name;
    const float *data; /* F32, product of shape elements */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
} safetensors_tensor;

/* A complete F32 safetensors file in one malloc'd buffer (free() it): the
 * header lists "__metadata__" (the n_meta {key, value} string pairs, any
 * number, omitted when n_meta is 0) and then the n tensors (n may be 0) in
 * the given order, with their data in that order. NULL on allocation failure
 * or invalid input: a NULL, empty, repeated or "__metadata__" name, a NULL or
 * repeated metadata key, a NULL value, a string that is not UTF-8, a
 * negative dimension or more than SAFETENSORS_MAX_DIMS, or a header over
 * SAFETENSORS_MAX_HEADER_BYTES. */
void *safetensors_serialize(const safetensors_tensor *tensors, int n, const char *const (*meta)[2],
                            int n_meta, size_t *n_bytes);

/* The same with every tensor stored as dtype: SAFETENSORS_F32, or
 * SAFETENSORS_BF16 (each float rounded to nearest even, NaN kept NaN) to
 * halve the file. */
void *safetensors_serialize_as(const safetensors_tensor *tensors, int n,
                               const char *const (*meta)[2], int n_meta, safetensors_dtype dtype,
                               size_t *n_bytes);

/* The same file written to out as it is encoded, never whole in memory (a
 * model of gigabytes needs no second copy to be saved): F32 straight from the
 * tensors, BF16 through a small buffer. *n_bytes gets the file's size.
 * 0, or -1 on invalid input (as above) or a write error. */
int safetensors_write_as(FILE *out, const safetensors_tensor *tensors, int n,
                         const char *const (*meta)[2], int n_meta, safetensors_dtype dtype,
                         size_t *n_bytes);

#endif
