/* Tokenizers: the byte-level vocabulary, and GPT-2 BPE on the real GPT-2
 * vocabulary against the ids of OpenAI's encoder.py as reproduced by the npm
 * package gpt-3-encoder (tests/fixtures/gpt2_tokenizer/, written by
 * tests/reference/gpt2_tokenizer_fixture.js). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"
#include "suites.h"
#include "test_util.h"
#include "tokenizer.h"

/* ------------------------------------------------------------- helpers */

static void fixture_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/tests/fixtures/gpt2_tokenizer/%s", test_repo_dir(), name);
}

static void load_real_gpt2(tokenizer *tok) {
    char vocab[4096], merges[4096], err[512];
    fixture_path(vocab, sizeof vocab, "encoder.json");
    fixture_path(merges, sizeof merges, "vocab.bpe");
    ck_assert_msg(tokenizer_load_gpt2(tok, vocab, merges, err, sizeof err) == 0, "%s", err);
}

/* Encodes text, sizing the buffer with a first call. Caller frees. */
static int32_t *encode_all(const tokenizer *tok, const char *text, size_t len, bool allow_special,
                           int64_t *n) {
    *n = tokenizer_encode(tok, text, len, NULL, 0, allow_special);
    ck_assert_int_ge(*n, 0);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(tokenizer_encode(tok, text, len, ids, (size_t)*n, allow_special), *n);
    return ids;
}

/* decode(ids) == text[0..len). */
static void assert_decodes_to(const tokenizer *tok, const int32_t *ids, int64_t n, const char *text,
                              size_t len) {
    char *out = malloc(len + 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(tokenizer_decode(tok, ids, (size_t)n, out, len), (int64_t)len);
    ck_assert_msg(memcmp(out, text, len) == 0, "decode(encode(\"%.*s\")) differs", (int)len, text);
    free(out);
}

static void assert_ids_eq(const int32_t *got, int64_t n, const json_t *expected, const char *what,
                          const char *text) {
    ck_assert_msg((size_t)n == json_array_size(expected), "%s \"%s\": %lld ids, expected %zu", what,
                  text, (long long)n, json_array_size(expected));
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == json_integer_value(json_array_get(expected, (size_t)i)),
                      "%s \"%s\": id %lld is %d, expected %lld", what, text, (long long)i, got[i],
                      (long long)json_integer_value(json_array_get(expected, (size_t)i)));
}

/* A scratch directory for hand-made vocabulary files, removed by
 * scratch_dir_remove. */
typedef struct scratch_dir {
    char path[256];
} scratch_dir;

static void scratch_dir_make(scratch_dir *d) {
    snprintf(d->path, sizeof d->path, "/tmp/rlhf-tokenizer-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->path));
}

/* Writes bytes[0..len) to dir/name and puts the full path in out. */
static void scratch_write(const scratch_dir *d, const char *name, const char *bytes, size_t len,
                          char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", d->path, name);
    FILE *f = fopen(out, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void scratch_dir_remove(const scratch_dir *d, const char *const *names, int n) {
    char path[512];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", d->path, names[i]);
        unlink(path);
    }
    rmdir(d->path);
}

/* --------------------------------------------------------- byte-level */

/* ids are the bytes themselves; EOT follows them; random bytes (including
 * invalid UTF-8 and NULs) survive the round trip. */
START_TEST(test_bytes_round_trip_random) {
    tokenizer tok;
    char err[256];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    ck_assert_int_eq(tok.vocab_size, 257);
    ck_assert_int_eq(tok.eot_id, TOKENIZER_BYTES_EOT_ID);
    size_t len;
    const char *eot = tokenizer_token_bytes(&tok, tok.eot_id, &len);
    ck_assert_uint_eq(len, strlen(TOKENIZER_EOT_TEXT));
    ck_assert(memcmp(eot, TOKENIZER_EOT_TEXT, len) == 0);
    rng_state rng;
    rng_seed(&rng, 11, 0);
    char text[2048];
    int32_t ids[2048];
    for (int trial = 0; trial < 200; trial++) {
        const size_t n = rng_next_below(&rng, sizeof text);
        for (size_t i = 0; i < n; i++)
            text[i] = (char)rng_next_below(&rng, 256);
        ck_assert_int_eq(tokenizer_encode(&tok, text, n, ids, 2048, true), (int64_t)n);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(ids[i], (uint8_t)text[i]);
        assert_decodes_to(&tok, ids, (int64_t)n, text, n);
    }
    tokenizer_free(&tok);
}
END_TEST

/* ----------------------------------------------- GPT-2 vs the reference */

/* Every corpus text encodes to encoder.py's ids (with allow_special to the
 * split-at-<|endoftext|> ids) and decodes back to itself. */
START_TEST(test_gpt2_matches_reference_ids) {
    tokenizer tok;
    load_real_gpt2(&tok);
    char path[4096];
    fixture_path(path, sizeof path, "expected.json");
    json_error_t jerr;
    json_t *corpus = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(corpus != NULL, "%s: %s", path, jerr.text);
    ck_assert_uint_gt(json_array_size(corpus), 200);
    size_t index;
    json_t *entry;
    json_array_foreach(corpus, index, entry) {
        const json_t *text_json = json_object_get(entry, "text");
        const char *text = json_string_value(text_json);
        const size_t len = json_string_length(text_json);
        const json_t *with_special = json_object_get(entry, "ids_allow_special");
        int64_t n;
        int32_t *ids = encode_all(&tok, text, len, false, &n);
        assert_ids_eq(ids, n, json_object_get(entry, "ids"), "encode", text);
        assert_decodes_to(&tok, ids, n, text, len);
        free(ids);
        ids = encode_all(&tok, text, len, true, &n);
        assert_ids_eq(ids, n, with_special ? with_special : json_object_get(entry, "ids"),
                      "encode allow_special", text);
        assert_decodes_to(&tok, ids, n, text, len);
        free(ids);
    }
    json_decref(corpus);
    tokenizer_free(&tok);
}
END_TEST

/* Known ids of the GPT-2 vocabulary. */
START_TEST(test_gpt2_vocabulary) {
    tokenizer tok;
    load_real_gpt2(&tok);
    ck_assert_int_eq(tok.vocab_size, 50257);
    ck_assert_int_eq(tok.eot_id, 50256);
    size_t len;
    const char *bytes = tokenizer_token_bytes(&tok, 262, &len);
    ck_assert(len == 4 && memcmp(bytes, " the", 4) == 0);
    bytes = tokenizer_token_bytes(&tok, 187, &len); /* spelled "ÿ" in encoder.json */
    ck_assert(len == 1 && (uint8_t)bytes[0] == 0xff);
    bytes = tokenizer_token_bytes(&tok, 50256, &len);
    ck_assert(len == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0);
    ck_assert_ptr_null(tokenizer_token_bytes(&tok, 50257, &len));
    ck_assert_ptr_null(tokenizer_token_bytes(&tok, -1, &len));
    tokenizer_free(&tok);
}
END_TEST

/* Invalid UTF-8: each ill-formed byte is a character of class "other" and
 * keeps its byte token. Expected ids from encoder.py on the text decoded with
 * errors="surrogateescape". */
START_TEST(test_gpt2_invalid_utf8) {
    static const struct {
        const char *text;
        int32_t ids[8];
        int n;
    } cases[] = {
        {"a\xff"
         "b",
         {64, 187, 65},
         3},
        {"caf\xe9!", {66, 1878, 165, 0}, 4},           /* Latin-1 é */
        {"\xe2\x82 x", {158, 224, 2124}, 3},           /* truncated sequence */
        {"\xed\xa0\x80z", {169, 254, 222, 89}, 4},     /* UTF-8 surrogate */
        {"\xc0\xaf", {124, 107}, 2},                   /* overlong '/' */
        {"\xf4\x90\x80\x80", {176, 238, 222, 222}, 4}, /* above U+10FFFF */
        {" \xff\xfe", {220, 187, 186}, 3},
        {"\x80"
         "abc",
         {222, 39305},
         2},
    };
    tokenizer tok;
    load_real_gpt2(&tok);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t len = strlen(cases[c].text);
        int64_t n;
        int32_t *ids = encode_all(&tok, cases[c].text, len, false, &n);
        ck_assert_int_eq(n, cases[c].n);
        for (int i = 0; i < cases[c].n; i++)
            ck_assert_int_eq(ids[i], cases[c].ids[i]);
        assert_decodes_to(&tok, ids, n, cases[c].text, len);
        free(ids);
    }
    tokenizer_free(&tok);
}
END_TEST

/* Long pieces: 'a' x 30000 is 7500 "aaaa" (24794) as in encoder.py (checked
 * there at 3000), a 30000-space run is 29999 spaces (220; GPT-2 has no
 * multi-space tokens) then " x" (2124). Quadratic merging would take minutes. */
START_TEST(test_gpt2_long_pieces) {
    tokenizer tok;
    load_real_gpt2(&tok);
    const size_t len = 30000;
    char *text = malloc(len + 2);
    ck_assert_ptr_nonnull(text);
    memset(text, 'a', len);
    int64_t n;
    int32_t *ids = encode_all(&tok, text, len, false, &n);
    ck_assert_int_eq(n, (int64_t)len / 4);
    for (int64_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], 24794);
    free(ids);
    memset(text, ' ', len);
    text[len] = 'x';
    ids = encode_all(&tok, text, len + 1, false, &n);
    ck_assert_int_eq(n, (int64_t)len);
    for (int64_t i = 0; i + 1 < n; i++)
        ck_assert_int_eq(ids[i], 220);
    ck_assert_int_eq(ids[n - 1], 2124);
    assert_decodes_to(&tok, ids, n, text, len + 1);
    free(ids);
    free(text);
    tokenizer_free(&tok);
}
END_TEST

/* ------------------------------------------------------ special tokens */

/* <|endoftext|> is one id only with allow_special; added specials are
 * recognised too, the longest at the same place wins, and re-adding returns
 * the same id. */
START_TEST(test_special_tokens) {
    tokenizer tok;
    char err[256];
    load_real_gpt2(&tok);
    const char *text = "a<|endoftext|>b";
    int32_t ids[16];
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), ids, 16, true), 3);
    ck_assert_int_eq(ids[0], 64);
    ck_assert_int_eq(ids[1], 50256);
    ck_assert_int_eq(ids[2], 65);
    const int64_t plain = tokenizer_encode(&tok, text, strlen(text), ids, 16, false);
    ck_assert_int_gt(plain, 3);
    for (int64_t i = 0; i < plain; i++)
        ck_assert_int_ne(ids[i], 50256);

    ck_assert_int_eq(tokenizer_add_special(&tok, "<|endoftext|>", 13, err, sizeof err), 50256);
    ck_assert_int_eq(tokenizer_add_special(&tok, "<|end", 5, err, sizeof err), 50257);
    ck_assert_int_eq(tokenizer_add_special(&tok, "<|pad|>", 7, err, sizeof err), 50258);
    ck_assert_int_eq(tokenizer_add_special(&tok, "<|pad|>", 7, err, sizeof err), 50258);
    ck_assert_int_eq(tok.vocab_size, 50259);
    ck_assert_int_eq(tokenizer_add_special(&tok, "", 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "empty"));
    text = "<|pad|><|end<|endoftext|>";
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), ids, 16, true), 3);
    ck_assert_int_eq(ids[0], 50258);
    ck_assert_int_eq(ids[1], 50257);
    ck_assert_int_eq(ids[2], 50256);
    int64_t n = tokenizer_encode(&tok, text, strlen(text), ids, 16, true);
    assert_decodes_to(&tok, ids, n, text, strlen(text));
    tokenizer_free(&tok);

    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    text = "hi<|endoftext|>";
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), ids, 16, true), 3);
    ck_assert_int_eq(ids[2], TOKENIZER_BYTES_EOT_ID);
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), ids, 16, false), 15);
    tokenizer_free(&tok);
}
END_TEST

/* ------------------------------------------------------------ buffers */

/* encode returns the full count and fills only cap ids; decode likewise;
 * a bad id is TOKENIZER_ERROR_BAD_ID. */
START_TEST(test_small_buffers) {
    tokenizer tok;
    load_real_gpt2(&tok);
    const char *text = "The quick brown fox";
    int32_t all[8], some[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), all, 8, false), 4);
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), NULL, 0, false), 4);
    ck_assert_int_eq(tokenizer_encode(&tok, text, strlen(text), some, 2, false), 4);
    ck_assert_int_eq(some[0], all[0]);
    ck_assert_int_eq(some[1], all[1]);
    ck_assert_int_eq(some[2], -7);
    ck_assert_int_eq(tokenizer_encode(&tok, "", 0, some, 8, true), 0);

    char out[8];
    memset(out, '#', sizeof out);
    ck_assert_int_eq(tokenizer_decode(&tok, all, 4, out, 5), (int64_t)strlen(text));
    ck_assert(memcmp(out, "The q#", 6) == 0);
    ck_assert_int_eq(tokenizer_decode(&tok, all, 4, NULL, 0), (int64_t)strlen(text));
    const int32_t bad[2] = {all[0], 50257};
    ck_assert_int_eq(tokenizer_decode(&tok, bad, 2, out, sizeof out), TOKENIZER_ERROR_BAD_ID);
    const int32_t negative[1] = {-1};
    ck_assert_int_eq(tokenizer_decode(&tok, negative, 1, out, sizeof out), TOKENIZER_ERROR_BAD_ID);
    tokenizer_free(&tok);
}
END_TEST

/* ------------------------------------------- merge order, custom merges */

/* With the real vocabulary ("a" 64, "aa" 7252, "aaa" 46071, "aaaa" 24794)
 * and hand-written merges, "aaaa" and "aaaaa" encode as in encoder.py: each
 * round merges every occurrence of the lowest-ranked pair, left to right.
 * With [aa a, a a] that makes "aaaa" aa|aa, where merging one occurrence at a
 * time would give aaa|a. The files' names do not matter (merges.txt here). */
START_TEST(test_merge_order) {
    char vocab[4096], merges[512], err[512];
    fixture_path(vocab, sizeof vocab, "encoder.json");
    scratch_dir d;
    scratch_dir_make(&d);
    static const struct {
        const char *merges;
        int n4, n5;
        int32_t ids4[4], ids5[5];
    } cases[] = {
        {"#version: 0.2\na a\n", 2, 3, {7252, 7252}, {7252, 7252, 64}},
        {"#version: 0.2\na a\naa aa\n", 1, 2, {24794}, {24794, 64}},
        {"#version: 0.2\naa a\na a\n", 2, 2, {7252, 7252}, {7252, 46071}},
        {"aa a\r\n\r\na a", 2, 2, {7252, 7252}, {7252, 46071}}, /* no header, CRLF, blank */
        {"", 4, 5, {64, 64, 64, 64}, {64, 64, 64, 64, 64}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        scratch_write(&d, "merges.txt", cases[c].merges, strlen(cases[c].merges), merges,
                      sizeof merges);
        tokenizer tok;
        ck_assert_msg(tokenizer_load_gpt2(&tok, vocab, merges, err, sizeof err) == 0, "%s", err);
        int32_t ids[8];
        ck_assert_int_eq(tokenizer_encode(&tok, "aaaa", 4, ids, 8, false), cases[c].n4);
        for (int i = 0; i < cases[c].n4; i++)
            ck_assert_int_eq(ids[i], cases[c].ids4[i]);
        ck_assert_int_eq(tokenizer_encode(&tok, "aaaaa", 5, ids, 8, false), cases[c].n5);
        for (int i = 0; i < cases[c].n5; i++)
            ck_assert_int_eq(ids[i], cases[c].ids5[i]);
        tokenizer_free(&tok);
    }
    const char *names[] = {"merges.txt"};
    scratch_dir_remove(&d, names, 1);
}
END_TEST

/* ------------------------------------------------------------- errors */

/* Loads vocab text + merges text written to scratch files and expects
 * failure with a message containing want. */
static void assert_load_fails(const scratch_dir *d, const char *vocab_text, size_t vocab_len,
                              const char *merges_text, const char *want) {
    char vocab[512], merges[512], err[512] = "";
    if (vocab_text != NULL)
        scratch_write(d, "vocab.json", vocab_text, vocab_len, vocab, sizeof vocab);
    else
        fixture_path(vocab, sizeof vocab, "encoder.json");
    scratch_write(d, "merges.txt", merges_text, strlen(merges_text), merges, sizeof merges);
    tokenizer tok;
    ck_assert_int_eq(tokenizer_load_gpt2(&tok, vocab, merges, err, sizeof err), -1);
    ck_assert_msg(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
    ck_assert_ptr_null(tok.vocab);
    tokenizer_free(&tok); /* safe after a failed load */
}

START_TEST(test_load_errors) {
    char vocab[4096], merges[4096], err[512];
    tokenizer tok;
    fixture_path(vocab, sizeof vocab, "encoder.json");
    fixture_path(merges, sizeof merges, "vocab.bpe");
    ck_assert_int_eq(tokenizer_load_gpt2(&tok, "/nonexistent/vocab.json", merges, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/vocab.json"));
    ck_assert_int_eq(tokenizer_load_gpt2(&tok, vocab, "/nonexistent/merges.txt", err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/merges.txt: No such file"));
    ck_assert_int_eq(tokenizer_load_gpt2(&tok, vocab, merges, NULL, 0), 0); /* err optional */
    tokenizer_free(&tok);

    scratch_dir d;
    scratch_dir_make(&d);
    /* truncated encoder.json: its first 1000 bytes */
    FILE *f = fopen(vocab, "rb");
    ck_assert_ptr_nonnull(f);
    char head[1000];
    ck_assert_uint_eq(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    assert_load_fails(&d, head, sizeof head, "", "vocab.json:1:");
    const char *bad_json = "{\"a\": 0,, }";
    assert_load_fails(&d, bad_json, strlen(bad_json), "", "vocab.json:1:");
    const char *not_object = "[1, 2]";
    assert_load_fails(&d, not_object, strlen(not_object), "", "expected a non-empty JSON object");
    const char *bad_id = "{\"a\": \"zero\"}";
    assert_load_fails(&d, bad_id, strlen(bad_id), "", "token \"a\": id must be an integer");
    const char *big_id = "{\"a\": 0, \"b\": 2}";
    assert_load_fails(&d, big_id, strlen(big_id), "",
                      "token \"b\": id must be an integer in [0, 2)");
    const char *dup_id = "{\"a\": 0, \"b\": 0}";
    assert_load_fails(&d, dup_id, strlen(dup_id), "", "share id 0");
    const char *dup_key = "{\"a\": 0, \"a\": 1}";
    assert_load_fails(&d, dup_key, strlen(dup_key), "", "duplicate object key");
    const char *alien = "{\"\\u4e2d\": 0}";
    assert_load_fails(&d, alien, strlen(alien), "", "U+4E2D, outside GPT-2's byte alphabet");
    const char *few = "{\"a\": 0}";
    assert_load_fails(&d, few, strlen(few), "", "no token for byte 0x00");

    /* merges against the real vocabulary */
    assert_load_fails(&d, NULL, 0, "#version: 0.2\nĠ t\nĠ zzzzqqq\n",
                      "merges.txt:3: token \"zzzzqqq\" is not in the vocabulary");
    assert_load_fails(&d, NULL, 0, "#version: 0.2\nĠ t h\n",
                      "merges.txt:2: expected two tokens separated by one space");
    assert_load_fails(&d, NULL, 0, "#version: 0.2\nĠt\n",
                      "merges.txt:2: expected two tokens separated by one space");
    assert_load_fails(&d, NULL, 0, "#version: 0.2\nq x\n",
                      "merges.txt:2: merged token \"qx\" is not in the vocabulary");
    assert_load_fails(&d, NULL, 0, "a \xff\n", "merges.txt:1: \"\xff\" is not valid UTF-8");
    assert_load_fails(&d, NULL, 0, "a \xe4\xb8\xad\n", "U+4E2D, outside GPT-2's byte alphabet");
    const char *names[] = {"vocab.json", "merges.txt"};
    scratch_dir_remove(&d, names, 2);
}
END_TEST

Suite *tokenizer_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bytes_round_trip_random);
    tcase_add_test(tc, test_gpt2_matches_reference_ids);
    tcase_add_test(tc, test_gpt2_vocabulary);
    tcase_add_test(tc, test_gpt2_invalid_utf8);
    tcase_add_test(tc, test_gpt2_long_pieces);
    tcase_add_test(tc, test_special_tokens);
    tcase_add_test(tc, test_small_buffers);
    tcase_add_test(tc, test_merge_order);
    tcase_add_test(tc, test_load_errors);
    suite_add_tcase(s, tc);
    return s;
}
