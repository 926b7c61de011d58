#include "test_hf_fixture.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "llama.h"
#include "llama_hf.h"
#include "rng.h"

/* GPT-2's byte alphabet, written independently of the engine's: printable
 * Latin-1 bytes stand for themselves, the rest for U+0100.. in order. */
void test_byte_char_utf8(int b, char out[4]) {
    int next = 256;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE))
            next++;
    unsigned cp = ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
                      ? (unsigned)b
                      : (unsigned)next;
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
    }
}

/* A byte-level tokenizer: id = byte for the 256 byte tokens, then
 * he=256, ll=257, hell=258, hello=259, Ġw=260; added <|end|>=261 (not
 * special), <bos>=262 (special, prepended by the post-processor); NFC; a
 * Qwen-style Split regex, then ByteLevel. merges_as_pairs picks the
 * ["a", "b"] merge format over "a b". */
json_t *test_byte_level_tokenizer_json(bool merges_as_pairs) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        test_byte_char_utf8(b, s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    const char *extra[][3] = {{"h", "e", "he"},
                              {"l", "l", "ll"},
                              {"he", "ll", "hell"},
                              {"hell", "o", "hello"},
                              {"\xc4\xa0", "w", "\xc4\xa0w"}};
    json_t *merges = json_array();
    for (int i = 0; i < 5; i++) {
        json_object_set_new(vocab, extra[i][2], json_integer(256 + i));
        char joined[32];
        snprintf(joined, sizeof joined, "%s %s", extra[i][0], extra[i][1]);
        json_array_append_new(merges, merges_as_pairs ? json_pack("[ss]", extra[i][0], extra[i][1])
                                                      : json_string(joined));
    }
    return json_pack("{s:[{s:i,s:s,s:b,s:b,s:b,s:b,s:b},{s:i,s:s,s:b,s:b,s:b,s:b,s:b}],"
                     "s:{s:s},"
                     "s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]},"
                     "s:{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i],s:[s]}}},"
                     "s:{s:s},"
                     "s:{s:s,s:o,s:o,s:b,s:b}}",
                     "added_tokens", "id", 261, "content", "<|end|>", "single_word", 0, "lstrip", 0,
                     "rstrip", 0, "normalized", 0, "special", 0, "id", 262, "content", "<bos>",
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1, /**/
                     "normalizer", "type", "NFC",                                               /**/
                     "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split",
                     "pattern", "Regex",
                     "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                     "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space",
                     0, "trim_offsets", 0, "use_regex", 0, /**/
                     "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id",
                     "<bos>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "special_tokens",
                     "<bos>", "id", "<bos>", "ids", 262, "tokens", "<bos>", /**/
                     "decoder", "type", "ByteLevel",                        /**/
                     "model", "type", "BPE", "vocab", vocab, "merges", merges, "byte_fallback", 0,
                     "ignore_merges", 0);
}

void test_write_tiny_qwen3_dir(const char *dir, unsigned seed) {
    char err[512], path[4200];
    llama_config c = {.model_type = LLAMA_MODEL_QWEN3,
                      .vocab_size = TEST_TINY_VOCAB,
                      .hidden_size = 16,
                      .intermediate_size = 32,
                      .n_layer = 2,
                      .n_head = 4,
                      .n_kv_head = 2,
                      .head_dim = 8,
                      .max_seq_len = 128,
                      .max_position_embeddings = 128,
                      .rms_norm_eps = 1e-6f,
                      .rope_theta = 1000000.0f,
                      .qk_norm = true,
                      .tie_embeddings = true,
                      .bos_id = -1,
                      .n_eos = 1,
                      .eos_ids = {TEST_TINY_EOS}};
    llama_model m;
    ck_assert_msg(llama_init(&m, &c, err, sizeof err) == 0, "%s", err);
    rng_state r;
    rng_seed(&r, seed, 0x7E57u);
    llama_init_weights(&m, &r);
    /* larger embeddings than N(0, 0.02) so a tiny model's logits differ
     * visibly between tokens */
    for (int64_t i = 0; i < (int64_t)c.vocab_size * c.hidden_size; i++)
        m.params.embed[i] *= 25.0f;
    ck_assert_msg(llama_save_hf_dir(&m, dir, SAFETENSORS_F32, err, sizeof err) == 0, "%s", err);
    llama_free(&m);

    json_t *tok = test_byte_level_tokenizer_json(false);
    json_t *added = json_object_get(tok, "added_tokens");
    const char *chat[] = {"<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 2; i++)
        json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", 263 + i,
                                               "content", chat[i], "single_word", 0, "lstrip", 0,
                                               "rstrip", 0, "normalized", 0, "special", 1));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert_int_eq(json_dump_file(tok, path, 0), 0);
    json_decref(tok);
    json_t *tc = json_pack(
        "{s:s, s:s, s:f}", "eos_token", "<|im_end|>", "chat_template",
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "model_max_length", 131072.0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ck_assert_int_eq(json_dump_file(tc, path, 0), 0);
    json_decref(tc);
}
