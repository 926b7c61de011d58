/* hf_tokenizer — Hugging Face tokenizer.json, as the Rust `tokenizers`
 * library runs it, for the BPE models people fine-tune:
 *
 *   - byte-level BPE (GPT-2, Qwen2/Qwen3, Llama 3): NFC normaliser, Split
 *     pre-tokenisers with the file's own regex (regex_lite.h), the ByteLevel
 *     pre-tokeniser/decoder, `ignore_merges`;
 *   - SentencePiece-style BPE (Llama 2, Mistral, TinyLlama): Prepend /
 *     Replace normalisers or the Metaspace pre-tokeniser, ▁ for spaces,
 *     byte fallback to <0xNN> tokens, unk (fused or not);
 *   - added tokens (special or not) matched in the raw text before anything
 *     else, longest first at the leftmost position, with lstrip/rstrip;
 *   - post-processors TemplateProcessing (e.g. BOS), Bert/Roberta, ByteLevel
 *     and Sequence; decoders ByteLevel, Metaspace, Replace, ByteFallback,
 *     Fuse, Strip and Sequence. Merges in either format ("a b" strings or
 *     ["a", "b"] pairs).
 *
 * Any other component type (or option that changes results, such as
 * Split's invert) is a load error naming it, e.g. "tokenizer.json:
 * pre_tokenizer type 'Digits' is not supported".
 *
 * Text is bytes and need not be valid UTF-8. Each byte that does not start
 * a well-formed UTF-8 sequence is one "character" that no \p{..} class or
 * \s matches (only negated classes do) and that NFC leaves alone; BPE then
 * sees the raw byte: byte-level models encode it with that byte's token,
 * SentencePiece models with byte fallback's <0xNN> (or unk). So
 * decode(encode(x)) == x for byte-level models for any bytes. (Hugging Face's
 * libraries cannot take such input at all: Python and JavaScript strings
 * are Unicode.)
 *
 * Differences from the Rust library, none of which the supported models'
 * files exercise: added tokens with "normalized": true are matched in the
 * raw text, not the normalised text; (?i) and lstrip/rstrip know ASCII
 * only. Decoding ByteFallback keeps the raw bytes of <0xNN> runs that are
 * not valid UTF-8 (Rust writes U+FFFD per byte), so decode round-trips.
 *
 * A loaded tokenizer is read-only: encode and decode may run concurrently. */
#ifndef RLHF_HF_TOKENIZER_H
#define RLHF_HF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hf_tokenizer hf_tokenizer;

/* Loads tokenizer.json from a path, or from json[0..len). Returns NULL with
 * a message in err on failure. */
hf_tokenizer *hf_tokenizer_load(const char *path, char *err, size_t errlen);
hf_tokenizer *hf_tokenizer_load_json(const char *json, size_t len, char *err, size_t errlen);
void hf_tokenizer_free(hf_tokenizer *tok);

/* 1 + the largest id of the model's vocabulary and the added tokens. */
int32_t hf_tokenizer_vocab_size(const hf_tokenizer *tok);

/* The id of a token spelled as in tokenizer.json (e.g. "<|im_end|>",
 * "Ġthe", "▁the", "<0x0A>"), or -1. */
int32_t hf_tokenizer_token_to_id(const hf_tokenizer *tok, const char *token);
/* The bytes of token id in *len: the raw bytes for byte-level models, the
 * UTF-8 spelling otherwise (▁ for a space, "<0x0A>" for a fallback byte),
 * an added token's content; NULL for an id with no token. */
const char *hf_tokenizer_token_bytes(const hf_tokenizer *tok, int32_t id, size_t *len);
/* Whether id is an added token marked "special". */
bool hf_tokenizer_is_special(const hf_tokenizer *tok, int32_t id);

enum {
    /* run the post-processor (e.g. prepend BOS), as add_special_tokens=True */
    HF_ENCODE_ADD_SPECIAL = 1,
    /* treat the text of special added tokens as ordinary text (Hugging
     * Face's split_special_tokens=True): for untrusted text */
    HF_ENCODE_SPLIT_SPECIAL = 2,
    /* only the post-processor's ids before the text (hf_tokenizer_prefix:
     * BOS), and not when the text's own ids already begin with them (a
     * chat template's rendering that writes BOS): a prompt as
     * add_special_tokens=True encodes it, without a double BOS */
    HF_ENCODE_ADD_PREFIX = 4,
};

/* The ids the post-processor puts before the text of a single sequence
 * (BOS for Llama 2/3 and Mistral; none for GPT-2 and Qwen): their count,
 * written to ids (a template holds at most 16 items of at most 4 ids). */
#define HF_TOKENIZER_MAX_PREFIX 64
int hf_tokenizer_prefix(const hf_tokenizer *tok, int32_t ids[HF_TOKENIZER_MAX_PREFIX]);

/* Encodes text[0..len) and returns the number of ids it takes; writes the
 * first min(result, cap) to out_ids (out_ids may be NULL when cap is 0).
 * flags: HF_ENCODE_*. Returns -1 with a message in err on failure (out of
 * memory, a character the vocabulary cannot spell without unk or byte
 * fallback, a pathological regex). */
int64_t hf_tokenizer_encode(const hf_tokenizer *tok, const char *text, size_t len, int flags,
                            int32_t *out_ids, size_t cap, char *err, size_t errlen);

/* Decodes ids[0..n) through the file's decoder and returns the byte length
 * of the text, writing the first min(result, cap) bytes to out (no NUL).
 * skip_special drops special added tokens. -1 with a message in err for an
 * unknown id or out of memory. */
int64_t hf_tokenizer_decode(const hf_tokenizer *tok, const int32_t *ids, size_t n,
                            bool skip_special, char *out, size_t cap, char *err, size_t errlen);

#endif
