/* tokenizer_bench — GPT-2 BPE encode throughput of engine/tokenizer.c on one
 * corpus file, for bench/tokenizer_bench.js, which runs it beside the npm
 * package gpt-3-encoder. One process is one sample: the corpus is encoded
 * line by line (each line on its own, without its newline), `passes` times
 * in a row (no cache in our tokenizer, so every pass does the full work), and
 * each pass's seconds are printed as one JSON line:
 *
 *   build/tokenizer-bench ENCODER_JSON VOCAB_BPE CORPUS PASSES
 *   {"side": "c", "pass": 1, "bytes": 281000, "ids": 61000, "checksum": 123, "seconds": 0.01}
 *
 * checksum (sum of id * (position + 1) mod 2^32) lets the runner check that
 * both sides produced the same ids.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s ENCODER_JSON VOCAB_BPE CORPUS PASSES\n", argv[0]);
        return 2;
    }
    tokenizer tok;
    char err[512];
    if (tokenizer_load_gpt2(&tok, argv[1], argv[2], err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    FILE *f = fopen(argv[3], "rb");
    if (f == NULL) {
        perror(argv[3]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    /* ids <= bytes: every token is at least one byte */
    int32_t *ids = malloc(((size_t)size + 1) * sizeof *ids);
    if (text == NULL || ids == NULL || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", argv[3]);
        return 1;
    }
    fclose(f);
    const int passes = atoi(argv[4]);
    for (int pass = 1; pass <= passes; pass++) {
        const double t0 = now_s();
        int64_t n = 0;
        for (long start = 0; start < size;) {
            const char *eol = memchr(text + start, '\n', (size_t)(size - start));
            const long end = eol != NULL ? eol - text : size;
            const int64_t k = tokenizer_encode(&tok, text + start, (size_t)(end - start), ids + n,
                                               (size_t)(size + 1 - n), false);
            if (k < 0) {
                fprintf(stderr, "encode failed: %lld\n", (long long)k);
                return 1;
            }
            n += k;
            start = end + 1;
        }
        const double seconds = now_s() - t0;
        uint32_t checksum = 0;
        for (int64_t i = 0; i < n; i++)
            checksum += (uint32_t)ids[i] * (uint32_t)(i + 1);
        printf("{\"side\": \"c\", \"pass\": %d, \"bytes\": %ld, \"ids\": %lld, \"checksum\": %u, "
               "\"seconds\": %.6f}\n",
               pass, size, (long long)n, checksum, seconds);
    }
    free(ids);
    free(text);
    tokenizer_free(&tok);
    return 0;
}
