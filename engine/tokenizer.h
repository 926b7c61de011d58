/* tokenizer — text ↔ token ids for the language models.
 *
 * Two vocabularies:
 *   - byte-level: ids 0..255 are the raw bytes, special tokens follow
 *     (<|endoftext|> = TOKENIZER_BYTES_EOT_ID = 256). No files needed.
 *   - GPT-2 byte-level BPE, exactly as OpenAI's encoder.py: the text is split
 *     by the pattern
 *         's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     (matched by hand; \p{L}, \p{N} and \s as in Python's `regex` module,
 *     tables in unicode_tables.c), and each piece's UTF-8 bytes are merged by
 *     BPE rank. Loaded from vocab.json + merges.txt (Hugging Face names) or
 *     encoder.json + vocab.bpe (OpenAI names): the same two formats.
 *
 * Text is bytes, not necessarily valid UTF-8. Invalid UTF-8 never fails:
 * each byte that does not start a well-formed sequence counts as one
 * character of class "other" (as if decoded with Python's surrogateescape)
 * and still maps to its byte token, so decode(encode(x)) == x for any bytes.
 *
 * Special tokens (<|endoftext|>, and any added with tokenizer_add_special)
 * are recognised in text only when encode's allow_special is true; the text
 * is then split at each occurrence first, as tiktoken's allowed_special and
 * Hugging Face's added tokens do, so "a <|endoftext|>b" encodes "a ", EOT,
 * "b". With allow_special false the same characters are ordinary text.
 *
 * A loaded tokenizer is read-only: encode and decode may run concurrently
 * from several threads.
 */
#ifndef RLHF_TOKENIZER_H
#define RLHF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKENIZER_EOT_TEXT     "<|endoftext|>"
#define TOKENIZER_BYTES_EOT_ID 256

/* Negative results of tokenizer_encode / tokenizer_decode. */
typedef enum tokenizer_error {
    TOKENIZER_ERROR_NOMEM = -1,    /* out of memory */
    TOKENIZER_ERROR_BAD_ID = -2,   /* decode: an id outside [0, vocab_size) */
    TOKENIZER_ERROR_TOO_LONG = -3, /* encode: one pre-token piece over INT32_MAX bytes */
    TOKENIZER_ERROR_ENCODE = -4,   /* encode: a Hugging Face tokenizer failed (tokenizer_load_hf) */
} tokenizer_error;

typedef struct tokenizer {
    int32_t vocab_size;            /* ids are 0 .. vocab_size-1; read-only */
    int32_t eot_id;                /* <|endoftext|>; read-only */
    struct tokenizer_vocab *vocab; /* private */
} tokenizer;

/* Each loader fills *tok and returns 0, or returns -1 with a message in
 * err[errlen] (err may be NULL) and leaves *tok empty (safe to free). */
int tokenizer_load_bytes(tokenizer *tok, char *err, size_t errlen);
/* GPT-2 BPE from vocab.json/encoder.json ({"token": id}) and
 * merges.txt/vocab.bpe ("#version" line, then one "left right" merge a line,
 * rank = line order). Every single byte must be a token, every merge's two
 * halves and their concatenation must be tokens. <|endoftext|> keeps its id
 * from the vocabulary (50256 for GPT-2), or is appended if absent. */
int tokenizer_load_gpt2(tokenizer *tok, const char *vocab_json_path, const char *merges_txt_path,
                        char *err, size_t errlen);
/* A Hugging Face model directory's tokenizer (hf_tokenizer.h) behind this
 * interface: DIR/tokenizer.json, with eot_id = the id of
 * DIR/tokenizer_config.json's eos_token. encode never runs the file's
 * post-processor (encode_prompt adds its BOS; callers add EOT as with the
 * other vocabularies);
 * allow_special false reads special added tokens' text as ordinary text.
 * tokenizer_token_bytes gives the token's spelling (raw bytes for
 * byte-level vocabularies, "▁the" or "<0x0A>" for SentencePiece ones);
 * decode runs the file's decoder. tokenizer_add_special is refused: the
 * file lists its special tokens. */
int tokenizer_load_hf(tokenizer *tok, const char *model_dir, char *err, size_t errlen);
/* The Hugging Face tokenizer behind tok, or NULL for the other vocabularies. */
const struct hf_tokenizer *tokenizer_hf(const tokenizer *tok);
void tokenizer_free(tokenizer *tok);

/* Makes text[0..len) a special token: the id it already has in the
 * vocabulary, or a new id (vocab_size grows by one). Returns the id, or -1
 * with a message in err (empty text, out of memory). */
int32_t tokenizer_add_special(tokenizer *tok, const char *text, size_t len, char *err,
                              size_t errlen);

/* Encodes text[0..len) and returns the number of ids the whole text takes.
 * Writes the first min(result, cap) of them to out_ids, so a result > cap
 * means the buffer was too small: call again with cap >= result (out_ids
 * may be NULL when cap is 0, to size a buffer). Negative: tokenizer_error. */
int64_t tokenizer_encode(const tokenizer *tok, const char *text, size_t len, int32_t *out_ids,
                         size_t cap, bool allow_special);
/* The same for text that starts a model's input (a prompt, a training
 * example), as Hugging Face's tokenizer(text) with add_special_tokens=True
 * encodes it: first the ids a Hugging Face tokenizer's post-processor puts
 * before the text (BOS for Llama 2/3 and Mistral; none for GPT-2, Qwen
 * and the other vocabularies), unless the text's own ids already begin
 * with them (a chat template's rendering that writes BOS, read with
 * allow_special: transformers would double the BOS there). Ids the
 * post-processor puts after the text (an EOS some tokenizers append) are
 * not added: callers end sequences themselves. */
int64_t tokenizer_encode_prompt(const tokenizer *tok, const char *text, size_t len,
                                int32_t *out_ids, size_t cap, bool allow_special);

/* The start of a model's input, by where its text came from: rendered by
 * a chat template (rendered), as transformers' apply_chat_template(
 * tokenize=True) encodes it — special tokens written in it are those
 * tokens, and no post-processor ids (a template that wants BOS writes it);
 * else plain text, as tokenizer_encode_prompt without special tokens. */
int64_t tokenizer_encode_input(const tokenizer *tok, const char *text, size_t len, int32_t *out_ids,
                               size_t cap, bool rendered);

/* Concatenates the bytes of ids[0..n) and returns their total length,
 * writing the first min(result, cap) bytes to out (no terminating NUL; the
 * bytes need not be valid UTF-8 when the ids split a character). A result
 * > cap means out was too small. Negative: tokenizer_error. */
int64_t tokenizer_decode(const tokenizer *tok, const int32_t *ids, size_t n, char *out, size_t cap);

/* The bytes of token id (not NUL-terminated) and their count in *len, or
 * NULL for an id outside [0, vocab_size). */
const char *tokenizer_token_bytes(const tokenizer *tok, int32_t id, size_t *len);

#endif
