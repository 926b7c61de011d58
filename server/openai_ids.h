/* openai_ids — the string ids of the OpenAI-compatible surface and the
 * native integer ids they stand for: file-N is dataset N, ftjob-N job N,
 * ftevent-N job event N, ftckpt-N checkpoint N (docs/api.md, "The
 * OpenAI-compatible surface"). And a fine-tuned model's name,
 * ft:BASE:SUFFIX:ftjob-N (job N's final checkpoint), with
 * ft:BASE:SUFFIX:ftjob-N:ftckpt-M for its checkpoint M.
 */
#ifndef RLHF_OPENAI_IDS_H
#define RLHF_OPENAI_IDS_H

#include <stddef.h>
#include <stdint.h>

typedef enum openai_id_kind {
    OPENAI_ID_FILE,  /* "file-" */
    OPENAI_ID_JOB,   /* "ftjob-" */
    OPENAI_ID_EVENT, /* "ftevent-" */
    OPENAI_ID_CKPT,  /* "ftckpt-" */
} openai_id_kind;

/* The prefix of kind ("file-"). */
const char *openai_id_prefix(openai_id_kind kind);
/* "<prefix>N" into out (32 bytes are enough). */
void openai_id_format(char *out, size_t len, openai_id_kind kind, int64_t id);
/* N of "<prefix>N" (N a positive decimal without leading zeros), or -1. */
int64_t openai_id_parse(const char *text, openai_id_kind kind);

/* The longest model name we make or accept. */
enum { OPENAI_MODEL_NAME_BYTES = 256 };

/* job_id's fine_tuned_model, "ft:BASE:SUFFIX:ftjob-N" (suffix may be
 * empty), into out; with checkpoint_id > 0, that checkpoint's name
 * "...:ftckpt-M". BASE is model's own base when model is itself a
 * fine-tuned name. */
void openai_model_name(char *out, size_t len, const char *model, const char *suffix, int64_t job_id,
                       int64_t checkpoint_id);
/* What a fine-tuned name names: 1 with *job_id (and *checkpoint_id, 0 for
 * the job's final checkpoint) when text is "ft:...:ftjob-N[:ftckpt-M]",
 * else 0. */
int openai_model_parse(const char *text, int64_t *job_id, int64_t *checkpoint_id);

#endif
