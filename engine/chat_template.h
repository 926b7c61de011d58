/* chat_template — the chat formats of tokenizer_config.json's Jinja
 * `chat_template`, rendered natively (no Jinja interpreter):
 *
 *   chatml  <|im_start|>ROLE\nCONTENT<|im_end|>\n per message; a default
 *           system prompt when the template has one (Qwen2/Qwen2.5 style);
 *   qwen3   ChatML with Qwen3's thinking rules: an assistant turn after the
 *           last user turn that is the last message, or carries
 *           <think>..</think> reasoning, is written as
 *           <think>\nREASONING\n</think>\n\nANSWER; earlier turns drop it;
 *   llama3  [BOS]<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *           with CONTENT trimmed (Meta-Llama-3-*-Instruct);
 *   llama2  [BOS][INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER [EOS]...
 *           (Llama-2-*-chat-hf), roles must alternate user/assistant.
 *
 * The format is recognised from the template text (chat_template_detect),
 * or named explicitly ("chatml", "qwen3", "llama3", "llama2"; the
 * `chat_format` setting). tests/test_hf_tokenizer.c checks every format
 * against @huggingface/jinja rendering the real templates. Roles are
 * system, user and assistant; tools are not rendered. */
#ifndef RLHF_CHAT_TEMPLATE_H
#define RLHF_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hf_tokenizer.h"

typedef enum chat_format {
    CHAT_FORMAT_CHATML,
    CHAT_FORMAT_QWEN3,
    CHAT_FORMAT_LLAMA3,
    CHAT_FORMAT_LLAMA2,
} chat_format;

typedef struct chat_template {
    chat_format format;
    /* llama3: Meta's first template appends the assistant header even
     * without add_generation_prompt */
    bool always_generation_prompt;
    char *default_system; /* chatml: used when messages[0] is not a system turn; or NULL */
    char *bos_token;      /* from tokenizer_config.json; "" if none */
    char *eos_token;
} chat_template;

typedef struct chat_message {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} chat_message;

/* A byte range [begin, end) of rendered text. */
typedef struct chat_span {
    size_t begin, end;
} chat_span;

/* Fills *t from a template text. format_name NULL or "" recognises the
 * format from template_text; otherwise it names it (template_text may then
 * be NULL). bos/eos may be NULL. Returns 0, or -1 with a message in err
 * that says how to choose a format when the template is not recognised. */
int chat_template_init(chat_template *t, const char *template_text, const char *format_name,
                       const char *bos_token, const char *eos_token, char *err, size_t errlen);
/* The same from a tokenizer_config.json file (chat_template, bos_token,
 * eos_token; a template list uses its "default" entry). */
int chat_template_load(chat_template *t, const char *tokenizer_config_path, const char *format_name,
                       char *err, size_t errlen);
void chat_template_free(chat_template *t);
const char *chat_format_name(chat_format f);

/* Renders messages[0..n). *text gets a malloc'd NUL-terminated string
 * (*text_len bytes). When spans is not NULL, *spans gets a malloc'd array
 * of the assistant turns' ranges — from the first byte of the turn's
 * content to the end of its end-of-turn token (<|im_end|>, <|eot_id|>,
 * </s>), the text a model is trained to produce — and *n_spans their
 * count. Returns 0, or -1 with a message in err (unknown role, roles out
 * of order for llama2, out of memory). */
int chat_template_render(const chat_template *t, const chat_message *messages, size_t n,
                         bool add_generation_prompt, char **text, size_t *text_len,
                         chat_span **spans, size_t *n_spans, char *err, size_t errlen);

/* Renders and tokenizes as transformers' apply_chat_template(tokenize=True)
 * does: added tokens matched, and no post-processor (add_special_tokens=
 * False). A template that wants BOS writes it (llama2, llama3: exactly
 * one); one that does not (chatml chosen for a Llama tokenizer) gets none.
 * *ids gets the malloc'd ids; when assistant_mask is not NULL it gets a
 * malloc'd byte per id, 1 for the ids of assistant turns. A token is an
 * assistant token when it is not in the tokenization of the text before
 * the turn's content (the longest common prefix of the two tokenizations),
 * or begins inside the turn; so a token that straddles the start
 * (SentencePiece's "▁Answer") or the end (">\n" of a <|im_end|> that is
 * plain text to a Llama tokenizer) counts as the assistant's, as
 * transformers' return_assistant_tokens_mask counts every token with a
 * character in the turn. Returns the number of ids, or -1 with a message. */
int64_t chat_template_encode(const chat_template *t, const hf_tokenizer *tok,
                             const chat_message *messages, size_t n, bool add_generation_prompt,
                             int32_t **ids, uint8_t **assistant_mask, char *err, size_t errlen);

#endif
