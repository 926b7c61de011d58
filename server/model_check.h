/* model_check — is a Hugging Face model directory one rlhfd can train and
 * serve? Checked as a whole, as POST /v1/models registers it:
 *
 *   config.json            parses; model_type names a family the engine has
 *                          (gpt2: engine/model.h; llama, qwen2, qwen3,
 *                          mistral: engine/llama_hf.h)
 *   model*.safetensors     every tensor the family needs, by HF name and
 *                          shape (opening the weights does this)
 *   tokenizer.json         loads (engine/hf_tokenizer.h), and its ids fit
 *                          the weights' vocabulary; GPT-2's vocab.json +
 *                          merges.txt are taken instead
 *   tokenizer_config.json  its chat_template, when it has one, is a format
 *                          engine/chat_template.h renders
 *
 * What is wrong is said per file: a JSON object of file name -> why. */
#ifndef RLHF_MODEL_CHECK_H
#define RLHF_MODEL_CHECK_H

#include <jansson.h>

typedef struct model_check_result {
    char family[16];      /* "gpt2", "llama", ... when config.json is usable */
    char chat_format[16]; /* "chatml", ...; "" without a chat template */
    int vocab_size;       /* the weights' (0 when they did not open) */
    json_t *errors;       /* {file: why}; empty when the model is usable */
} model_check_result;

/* Checks dir into out (out->errors is a new object; json_decref it).
 * Returns 0 usable, -1 not (out->errors says why). */
int model_check_dir(const char *dir, model_check_result *out);

#endif
