#include "model_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat_template.h"
#include "gpt2.h"
#include "hf_tokenizer.h"
#include "llama.h"
#include "llama_hf.h"
#include "model.h"
#include "tokenizer.h"

static const char *const llama_families[] = {"llama", "qwen2", "qwen3", "mistral", NULL};

static bool has_file(const char *dir, const char *name) {
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%.4000s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void fail(model_check_result *out, const char *file, const char *why) {
    json_object_set_new(out->errors, file, json_string(why));
}

/* config.json's family, then the weights opened by the family's loader. */
static void check_weights(const char *dir, model_check_result *out) {
    char path[4400], err[512];
    snprintf(path, sizeof path, "%.4000s/config.json", dir);
    json_error_t jerr;
    json_t *config = json_load_file(path, 0, &jerr);
    if (!json_is_object(config)) {
        snprintf(err, sizeof err, "%s", config ? "must be a JSON object" : jerr.text);
        fail(out, "config.json", has_file(dir, "config.json") ? err : "missing");
        json_decref(config);
        return;
    }
    const char *type = json_string_value(json_object_get(config, "model_type"));
    const char *family = type == NULL ? "gpt2" : type;
    bool llama = false;
    for (const char *const *f = llama_families; *f; f++)
        llama |= strcmp(family, *f) == 0;
    if (!llama && strcmp(family, "gpt2") != 0) {
        snprintf(err, sizeof err,
                 "model_type '%.64s' is not a family this build has (gpt2, llama, qwen2, qwen3, "
                 "mistral)",
                 family);
        fail(out, "config.json", err);
        json_decref(config);
        return;
    }
    snprintf(out->family, sizeof out->family, "%s", family);
    json_decref(config);
    const char *weights = has_file(dir, "model.safetensors") ? "model.safetensors"
                          : has_file(dir, "model.safetensors.index.json")
                              ? "model.safetensors.index.json"
                              : NULL;
    if (weights == NULL) {
        fail(out, "model.safetensors", "missing (nor is there a model.safetensors.index.json)");
        return;
    }
    int rc;
    if (llama) {
        llama_model m;
        rc = llama_open_hf_dir(&m, dir, NULL, err, sizeof err);
        if (rc == 0) {
            out->vocab_size = m.cfg.vocab_size;
            llama_free(&m);
        }
    } else {
        gpt2_model m;
        rc = model_open(dir, NULL, &m, NULL, err, sizeof err);
        if (rc == 0) {
            out->vocab_size = m.cfg.vocab_size;
            gpt2_free(&m);
        }
    }
    if (rc != 0)
        fail(out, strstr(err, "config.json") != NULL ? "config.json" : weights, err);
}

static void check_tokenizer(const char *dir, model_check_result *out) {
    char path[4400], err[512];
    if (has_file(dir, "tokenizer.json")) {
        snprintf(path, sizeof path, "%.4000s/tokenizer.json", dir);
        hf_tokenizer *tok = hf_tokenizer_load(path, err, sizeof err);
        if (tok == NULL)
            fail(out, "tokenizer.json", err);
        else if (out->vocab_size > 0 && hf_tokenizer_vocab_size(tok) > out->vocab_size) {
            snprintf(err, sizeof err, "its ids go up to %d; the model's vocabulary has %d",
                     hf_tokenizer_vocab_size(tok) - 1, out->vocab_size);
            fail(out, "tokenizer.json", err);
        }
        hf_tokenizer_free(tok);
    } else if (has_file(dir, "vocab.json") && has_file(dir, "merges.txt")) {
        tokenizer tok;
        char vocab[4400];
        snprintf(vocab, sizeof vocab, "%.4000s/vocab.json", dir);
        snprintf(path, sizeof path, "%.4000s/merges.txt", dir);
        if (tokenizer_load_gpt2(&tok, vocab, path, err, sizeof err) != 0) {
            fail(out, "vocab.json", err);
        } else {
            if (out->vocab_size > 0 && tok.vocab_size > out->vocab_size) {
                snprintf(err, sizeof err, "%d tokens; the model's vocabulary has %d",
                         tok.vocab_size, out->vocab_size);
                fail(out, "vocab.json", err);
            }
            tokenizer_free(&tok);
        }
    } else {
        fail(out, "tokenizer.json", "missing (nor are there GPT-2's vocab.json and merges.txt)");
    }
    if (!has_file(dir, "tokenizer_config.json"))
        return;
    snprintf(path, sizeof path, "%.4000s/tokenizer_config.json", dir);
    json_error_t jerr;
    json_t *tc = json_load_file(path, 0, &jerr);
    if (!json_is_object(tc)) {
        fail(out, "tokenizer_config.json", tc ? "must be a JSON object" : jerr.text);
    } else if (json_object_get(tc, "chat_template") != NULL) {
        chat_template t;
        if (chat_template_load(&t, path, NULL, err, sizeof err) != 0) {
            fail(out, "tokenizer_config.json", err);
        } else {
            snprintf(out->chat_format, sizeof out->chat_format, "%s", chat_format_name(t.format));
            chat_template_free(&t);
        }
    }
    json_decref(tc);
}

int model_check_dir(const char *dir, model_check_result *out) {
    memset(out, 0, sizeof *out);
    out->errors = json_object();
    check_weights(dir, out);
    check_tokenizer(dir, out);
    return json_object_size(out->errors) == 0 ? 0 : -1;
}
