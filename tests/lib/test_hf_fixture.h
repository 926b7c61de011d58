/* Hugging Face model directories for tests, made by hand: a byte-level
 * tokenizer.json and a tiny Qwen3 model directory around it (config.json,
 * model.safetensors, generation_config.json, tokenizer.json,
 * tokenizer_config.json with a ChatML template), so the trainers can run
 * end to end on a Llama-family model without downloading one. */
#ifndef RLHF_TEST_HF_FIXTURE_H
#define RLHF_TEST_HF_FIXTURE_H

#include <jansson.h>
#include <stdbool.h>

/* GPT-2's byte alphabet character of byte b as UTF-8 (NUL-terminated). */
void test_byte_char_utf8(int b, char out[4]);

/* A byte-level tokenizer: id = byte for the 256 byte tokens, then
 * he=256, ll=257, hell=258, hello=259, Ġw=260; added <|end|>=261 (not
 * special), <bos>=262 (special, prepended by the post-processor); NFC; a
 * Qwen-style Split regex, then ByteLevel. merges_as_pairs picks the
 * ["a", "b"] merge format over "a b". */
json_t *test_byte_level_tokenizer_json(bool merges_as_pairs);

/* Vocabulary and EOS of the tiny model: the tokenizer's 263 ids plus
 * <|im_start|>=263 and <|im_end|>=264 (special added tokens). */
enum { TEST_TINY_VOCAB = 265, TEST_TINY_EOS = 264 };

/* Writes a tiny Qwen3 model (2 layers, hidden 16, 4 query / 2 KV heads,
 * head_dim 8, q/k norm, tied embeddings, random weights from seed) with the
 * tokenizer above, eos <|im_end|> and a ChatML chat template into dir (which
 * must exist). Fails the test on error. */
void test_write_tiny_qwen3_dir(const char *dir, unsigned seed);

#endif
