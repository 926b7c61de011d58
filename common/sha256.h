/* sha256 — SHA-256 (FIPS 180-4), small and dependency-free, for API token
 * hashes and checkpoint digests. */
#ifndef RLHF_SHA256_H
#define RLHF_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t n_bytes;
    uint8_t block[64];
    size_t block_used;
} sha256_ctx;

void sha256_init(sha256_ctx *ctx);
void sha256_update(sha256_ctx *ctx, const void *data, size_t n);
void sha256_final(sha256_ctx *ctx, uint8_t digest[32]);

/* The digest of data as 64 lowercase hex characters and a NUL. */
void sha256_hex(const void *data, size_t n, char hex[65]);

#endif
