/* libFuzzer target for Hugging Face tokenizer.json files and their regexes
 * (tests/fuzz/README.md).
 *
 * Byte 0 picks the mode. 'R': the rest is a regex pattern, a newline, and
 * a text; the pattern is compiled by regex_lite and every match in the text
 * is found: each must be non-empty, inside the text and after the last.
 * Otherwise: the rest is a tokenizer.json, optionally a NUL byte and a text
 * to encode; when hf_tokenizer accepts the file, the text is encoded with
 * and without the post-processor and special tokens, every id must be
 * inside the vocabulary, and the ids must decode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hf_tokenizer.h"
#include "regex_lite.h"

static void check(int ok) {
    if (!ok)
        __builtin_trap();
}

static void fuzz_regex(const char *data, size_t size) {
    const char *nl = memchr(data, '\n', size);
    size_t plen = nl ? (size_t)(nl - data) : size;
    char err[256];
    regex_lite *re = regex_lite_compile(data, plen, err, sizeof err);
    if (!re)
        return;
    const unsigned char *text = nl ? (const unsigned char *)nl + 1 : (const unsigned char *)"";
    size_t tlen = nl ? size - plen - 1 : 0;
    uint32_t *cps = malloc((tlen + 1) * sizeof *cps);
    uint8_t *props = malloc(tlen + 1);
    check(cps && props);
    for (size_t i = 0; i < tlen; i++) { /* bytes as Latin-1 and above-Unicode values */
        cps[i] = text[i] < 0xF8 ? text[i] * 37u % 0x3000u : 0x110000u + text[i];
        props[i] = regex_lite_prop(cps[i]);
    }
    size_t pos = 0, b, e;
    int rc;
    while ((rc = regex_lite_search(re, cps, props, tlen, pos, &b, &e, err, sizeof err)) == 1) {
        check(b >= pos && e > b && e <= tlen);
        pos = e;
    }
    check(rc == 0 || rc == -1);
    free(cps);
    free(props);
    regex_lite_free(re);
}

static void fuzz_tokenizer(const char *data, size_t size) {
    const char *nul = memchr(data, '\0', size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? nul + 1 : "Hello, world! 123 \xe4\xbd\xa0\xe5\xa5\xbd \xff\xfe <s>";
    size_t tlen = nul ? size - jlen - 1 : strlen(text);
    char err[512];
    hf_tokenizer *tok = hf_tokenizer_load_json(data, jlen, err, sizeof err);
    if (!tok)
        return;
    int32_t vocab = hf_tokenizer_vocab_size(tok);
    for (int flags = 0; flags < 4; flags++) {
        int64_t n = hf_tokenizer_encode(tok, text, tlen, flags, NULL, 0, err, sizeof err);
        if (n < 0)
            continue;
        int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
        check(ids != NULL);
        check(hf_tokenizer_encode(tok, text, tlen, flags, ids, (size_t)n, err, sizeof err) == n);
        for (int64_t i = 0; i < n; i++)
            check(ids[i] >= 0 && ids[i] < vocab);
        int64_t len = hf_tokenizer_decode(tok, ids, (size_t)n, flags & 1, NULL, 0, err, sizeof err);
        check(len >= 0);
        free(ids);
    }
    hf_tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    if (data[0] == 'R')
        fuzz_regex((const char *)data + 1, size - 1);
    else
        fuzz_tokenizer((const char *)data + 1, size - 1);
    return 0;
}
