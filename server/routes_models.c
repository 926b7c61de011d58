/* Models: base models registered from a directory under a --model-root or
 * uploaded file by file (POST /v1/models, POST /v1/models/{name}/files/
 * {name}, POST /v1/models/{name}/complete), listed with the fine-tuned ones
 * as OpenAI model objects (GET /v1/models[/{name}]), deleted when no job
 * uses them; and a checkpoint as a Hugging Face directory in a tar
 * (GET /v1/checkpoints/{id}/hf.tar). The SQL is in models_store.c, the
 * check of a model directory in model_check.c, the files in the artifact
 * store (common/artifact_store.h).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact_store.h"
#include "checkpoint_file.h"
#include "gpt2_checkpoint.h"
#include "lora.h"
#include "model.h"
#include "model_check.h"
#include "model_dir.h"
#include "models_store.h"
#include "routes.h"
#include "textbuf.h"

#define MODEL_NAME_MAX 64

/* ---- names ----------------------------------------------------------------------- */

/* Segment `index` (0-based, after "/v1/") of r's URL into out. */
static void url_segment(const request *r, int index, char *out, size_t cap) {
    const char *p = r->url + strlen("/v1/");
    for (int i = 0; i < index && p != NULL; i++)
        p = (p = strchr(p, '/')) ? p + 1 : NULL;
    size_t n = p ? strcspn(p, "/") : 0;
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p ? p : "");
}

/* A registered model's name: 1..64 of [A-Za-z0-9._-], not starting with
 * '.' or '-' (so never "ft:..." nor a path). */
static bool model_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > MODEL_NAME_MAX || name[0] == '.' || name[0] == '-')
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-')
            return false;
    return true;
}

/* A file of a Hugging Face directory: a plain name ending in .json, .txt,
 * .safetensors or .model (SentencePiece). */
static bool model_file_name_ok(const char *name) {
    static const char *const ends[] = {".json", ".txt", ".safetensors", ".model", NULL};
    if (!model_name_ok(name))
        return false;
    for (const char *const *e = ends; *e; e++) {
        size_t n = strlen(name), k = strlen(*e);
        if (n > k && strcmp(name + n - k, *e) == 0)
            return true;
    }
    return false;
}

static enum MHD_Result reply_no_model(request *r, const char *name) {
    return http_reply_error(r, 404, "model_not_found", NULL, "no model '%s'", name);
}

/* ---- POST /v1/models: a directory under a model root ---------------------------- */

/* Resolves path (absolute, or relative to a root) to a directory inside
 * one of the roots (after symbolic links) into out. 0, or -1 with why. */
static int resolve_in_roots(const char *roots, const char *path, char *out, char *why,
                            size_t whylen) {
    if (roots[0] == '\0') {
        snprintf(why, whylen, "this server has no --model-root; models can only be uploaded");
        return -1;
    }
    for (const char *c = path; *c; c++)
        if (c[0] == '.' && c[1] == '.' && (c == path || c[-1] == '/') &&
            (c[2] == '/' || c[2] == '\0')) {
            snprintf(why, whylen, "path must not contain '..'");
            return -1;
        }
    bool found_any = false;
    const char *root = roots;
    while (*root) {
        size_t n = strcspn(root, "\n");
        char root_text[4096], root_real[PATH_MAX], candidate[8400], real[PATH_MAX];
        snprintf(root_text, sizeof root_text, "%.*s", (int)n, root);
        root += n + (root[n] == '\n');
        if (realpath(root_text, root_real) == NULL)
            continue;
        if (path[0] == '/')
            snprintf(candidate, sizeof candidate, "%s", path);
        else
            snprintf(candidate, sizeof candidate, "%s/%s", root_real, path);
        if (realpath(candidate, real) == NULL)
            continue;
        found_any = true;
        size_t k = strlen(root_real);
        if (strncmp(real, root_real, k) == 0 && (real[k] == '/' || real[k] == '\0')) {
            struct stat st;
            if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
                snprintf(why, whylen, "'%.200s' is not a directory", path);
                return -1;
            }
            snprintf(out, PATH_MAX, "%s", real);
            return 0;
        }
    }
    snprintf(why, whylen,
             found_any ? "'%.200s' resolves outside every --model-root (symbolic links are "
                         "followed)"
                       : "'%.200s' does not exist under any --model-root",
             path);
    return -1;
}

/* "file: why; file: why" of a check's errors. */
static void errors_text(const json_t *errors, char *out, size_t cap) {
    size_t used = 0;
    const char *file;
    json_t *why;
    out[0] = '\0';
    json_object_foreach((json_t *)errors, file, why) {
        int k = snprintf(out + used, cap - used, "%s%s: %s", used ? "; " : "", file,
                         json_string_value(why));
        if (k < 0 || (size_t)k >= cap - used)
            break;
        used += (size_t)k;
    }
}

static enum MHD_Result reply_invalid_model(request *r, json_t *errors) {
    char text[2048];
    errors_text(errors, text, sizeof text);
    return http_reply_error_with(r, 400, "model_invalid", NULL, json_pack("{s:o}", "files", errors),
                                 "the model is not usable: %s", text);
}

static enum MHD_Result insert_and_reply(request *r, const char *name, const char *source,
                                        const char *path, const char *status,
                                        const model_check_result *check) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    int64_t id =
        models_store_insert(r->db, name, source, path, status, check ? check->family : NULL,
                            check ? check->chat_format : NULL, r->token.id);
    if (id < 0) {
        const bool taken = sqlite3_extended_errcode(r->db) == SQLITE_CONSTRAINT_UNIQUE;
        enum MHD_Result replied =
            taken ? http_reply_error(r, 409, "model_exists", "id", "a model '%s' exists", name)
                  : http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    json_t *body = models_store_json(r->db, id);
    if (body == NULL) {
        enum MHD_Result replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    return http_commit_reply(r, 200, body);
}

enum MHD_Result route_models_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"id", "path", "source", NULL};
    const char *name = json_string_value(json_object_get(body, "id"));
    const json_t *path = json_object_get(body, "path");
    const char *source = json_string_value(json_object_get(body, "source"));
    if (!http_check_keys(r, body, keys, &replied)) {
    } else if (name == NULL || !model_name_ok(name)) {
        replied =
            http_reply_error(r, 400, name ? "invalid_value" : "missing_required_parameter", "id",
                             "id must be 1..%d characters of A-Z a-z 0-9 . _ - (not "
                             "starting with . or -)",
                             MODEL_NAME_MAX);
    } else if (source == NULL && json_object_get(body, "source") != NULL) {
        replied = http_reply_error(r, 400, "invalid_type", "source", "source must be a string");
    } else if (source != NULL && strcmp(source, "upload") != 0 &&
               strcmp(source, "directory") != 0) {
        replied = http_reply_error(r, 400, "invalid_value", "source",
                                   "source must be \"directory\" (with path) or \"upload\"");
    } else if (source != NULL && strcmp(source, "upload") == 0) {
        replied = path ? http_reply_error(r, 400, "invalid_value", "path",
                                          "an upload takes no path; send its files to "
                                          "POST /v1/models/%s/files/{name}",
                                          name)
                       : insert_and_reply(r, name, "upload", NULL, "uploading", NULL);
    } else if (!json_is_string(path)) {
        replied = http_reply_error(
            r, 400, path ? "invalid_type" : "missing_required_parameter", "path",
            "path must be a directory under a --model-root (or give \"source\": \"upload\")");
    } else {
        char real[PATH_MAX], why[512];
        model_check_result check;
        if (resolve_in_roots(r->srv->cfg.model_root, json_string_value(path), real, why,
                             sizeof why) != 0)
            replied = http_reply_error(r, 400, "invalid_path", "path", "path: %s", why);
        else if (model_check_dir(real, &check) != 0)
            replied = reply_invalid_model(r, check.errors);
        else {
            json_decref(check.errors);
            replied = insert_and_reply(r, name, "directory", real, "ready", &check);
        }
    }
    json_decref(body);
    return replied;
}

/* ---- GET /v1/models[/{name}], DELETE ------------------------------------------- */

enum MHD_Result route_models_list(request *r) {
    json_t *data = models_store_list(r->db);
    if (data == NULL)
        return http_reply_db_error(r);
    return http_reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

enum MHD_Result route_models_get(request *r) {
    char name[256];
    url_segment(r, 1, name, sizeof name);
    model_row row;
    int found = models_store_find(r->db, name, &row);
    json_t *body = NULL;
    int64_t checkpoint;
    if (found == 1)
        body = models_store_json(r->db, row.id);
    else if (found == 0 && (found = models_store_find_ft(r->db, name, &body, &checkpoint)) == 0)
        return reply_no_model(r, name);
    if (found < 0 || body == NULL)
        return http_reply_db_error(r);
    return http_reply_json(r, 200, body);
}

enum MHD_Result route_models_delete(request *r) {
    char name[256];
    url_segment(r, 1, name, sizeof name);
    if (strncmp(name, "ft:", 3) == 0)
        return http_reply_error(r, 400, "invalid_value", NULL,
                                "'%s' is a fine-tuned model: its job's checkpoints are kept with "
                                "the job",
                                name);
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    model_row row;
    int found = models_store_find(r->db, name, &row);
    int64_t job = 0;
    int deleted = found == 1 ? models_store_delete(r->db, row.id, &job) : found;
    if (deleted != 1) {
        db_rollback(r->db);
        return deleted < 0    ? http_reply_db_error(r)
               : deleted == 0 ? reply_no_model(r, name)
                              : http_reply_error(r, 409, "model_in_use", NULL,
                                                 "model '%s' is used by job %lld (and its "
                                                 "checkpoints) and cannot be deleted",
                                                 name, (long long)job);
    }
    if (db_commit(r->db) != SQLITE_OK) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    /* its files are now unreferenced: artifact collection removes them */
    if (strcmp(row.source, "upload") == 0)
        model_dir_remove(r->srv->cfg.data_dir, row.id);
    return http_reply_json(
        r, 200, json_pack("{s:s, s:s, s:b}", "id", name, "object", "model", "deleted", 1));
}

/* ---- POST /v1/models/{name}/files/{name}: one file of an upload, streamed --------- */

typedef struct file_upload {
    artifact_writer w;
    int64_t model_id;
    char file[128];
    char expected_sha256[65];
    bool failed;
    char why[512];
} file_upload;

static int64_t model_file_max_bytes(const request *r) {
    return r->srv->cfg.max_model_file_bytes;
}

static bool hex64(const char *s) {
    if (s == NULL || strlen(s) != 64)
        return false;
    for (const char *c = s; *c; c++)
        if (!isxdigit((unsigned char)*c))
            return false;
    return true;
}

static int file_upload_begin(request *r, enum MHD_Result *replied) {
    char name[256], file[256];
    url_segment(r, 1, name, sizeof name);
    url_segment(r, 3, file, sizeof file);
    const char *sha = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sha256");
    model_row row;
    int found = models_store_find(r->db, name, &row);
    if (found <= 0) {
        *replied = found < 0 ? http_reply_db_error(r) : reply_no_model(r, name);
        return 0;
    }
    if (strcmp(row.source, "upload") != 0 || strcmp(row.status, "uploading") != 0) {
        *replied =
            http_reply_error(r, 409, "model_not_uploading", NULL,
                             "model '%s' is %s; files go to a model created with "
                             "\"source\": \"upload\" before it is completed",
                             name, strcmp(row.source, "upload") ? "a directory" : row.status);
        return 0;
    }
    if (!model_file_name_ok(file)) {
        *replied = http_reply_error(r, 400, "invalid_file_name", NULL,
                                    "'%s' is not a model file name (a plain name ending in .json, "
                                    ".txt, .safetensors or .model)",
                                    file);
        return 0;
    }
    if (!hex64(sha)) {
        *replied = http_reply_error(r, 400, "missing_required_parameter", "X-Sha256",
                                    "the X-Sha256 header must give the file's SHA-256 (64 hex "
                                    "digits)");
        return 0;
    }
    file_upload *u = calloc(1, sizeof *u);
    char err[512];
    if (u == NULL ||
        artifact_writer_open(&u->w, r->srv->cfg.data_dir,
                             (uint64_t)r->srv->cfg.max_model_file_bytes, err, sizeof err) != 0) {
        free(u);
        *replied = http_reply_error(r, 500, "artifact_write_failed", NULL, "%s",
                                    u ? err : "out of memory");
        return 0;
    }
    u->model_id = row.id;
    snprintf(u->file, sizeof u->file, "%.*s", MODEL_NAME_MAX, file); /* checked above */
    for (int i = 0; i < 64; i++)
        u->expected_sha256[i] = (char)tolower((unsigned char)sha[i]);
    r->upload = u;
    return 1;
}

static void file_upload_data(request *r, const char *bytes, size_t n) {
    file_upload *u = r->upload;
    if (!u->failed && artifact_writer_write(&u->w, bytes, n, u->why, sizeof u->why) != 0)
        u->failed = true;
}

static void file_upload_free(request *r) {
    file_upload *u = r->upload;
    if (u == NULL)
        return;
    artifact_writer_abort(&u->w);
    free(u);
    r->upload = NULL;
}

const http_upload route_models_file_upload_stream = {file_upload_begin, file_upload_data,
                                                     file_upload_free, model_file_max_bytes};

enum MHD_Result route_models_file_upload(request *r) {
    file_upload *u = r->upload;
    if (u->failed)
        return u->w.too_large
                   ? http_reply_error(r, 413, "file_too_large", NULL, "%s: %s", u->file, u->why)
                   : http_reply_error(r, 500, "artifact_write_failed", NULL, "%s: %s", u->file,
                                      u->why);
    char sha[65], err[512];
    const uint64_t n_bytes = u->w.n_bytes;
    sha256_ctx peek = u->w.sha;
    uint8_t digest[32];
    sha256_final(&peek, digest);
    for (int i = 0; i < 32; i++)
        snprintf(sha + 2 * i, 3, "%02x", digest[i]);
    if (strcmp(sha, u->expected_sha256) != 0)
        return http_reply_error(r, 400, "sha256_mismatch", "X-Sha256",
                                "%s: the body's SHA-256 is %s, X-Sha256 says %s", u->file, sha,
                                u->expected_sha256);
    if (artifact_writer_commit(&u->w, sha, err, sizeof err) != 0)
        return http_reply_error(r, 500, "artifact_write_failed", NULL, "%s: %s", u->file, err);
    /* the file is durable; now the row that references it */
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    model_row row;
    char name[256];
    url_segment(r, 1, name, sizeof name);
    int found = models_store_find(r->db, name, &row);
    if (found != 1 || row.id != u->model_id || strcmp(row.status, "uploading") != 0) {
        db_rollback(r->db);
        return found < 0 ? http_reply_db_error(r)
                         : http_reply_error(r, 409, "model_not_uploading", NULL,
                                            "model '%s' changed during the upload", name);
    }
    if (models_store_put_file(r->db, u->model_id, u->file, sha, (int64_t)n_bytes) != 0) {
        enum MHD_Result replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    return http_commit_reply(r, 200,
                             json_pack("{s:s, s:s, s:s, s:I, s:s}", "object", "model.file", "model",
                                       name, "name", u->file, "size_bytes", (json_int_t)n_bytes,
                                       "sha256", sha));
}

/* ---- POST /v1/models/{name}/complete: check the upload as a whole ---------------- */

enum MHD_Result route_models_complete(request *r) {
    char name[256], dir[4096], err[512];
    url_segment(r, 1, name, sizeof name);
    model_row row;
    int found = models_store_find(r->db, name, &row);
    if (found <= 0)
        return found < 0 ? http_reply_db_error(r) : reply_no_model(r, name);
    if (strcmp(row.source, "upload") != 0 || strcmp(row.status, "uploading") != 0)
        return http_reply_error(r, 409, "model_not_uploading", NULL, "model '%s' is %s", name,
                                strcmp(row.source, "upload") ? "a directory" : row.status);
    if (model_dir_path(r->db, r->srv->cfg.data_dir, row.id, dir, sizeof dir, err, sizeof err) != 1)
        return http_reply_error(r, 500, "artifact_unreadable", NULL, "%s", err);
    model_check_result check;
    const bool ok = model_check_dir(dir, &check) == 0;
    if (db_begin(r->db) != SQLITE_OK) {
        json_decref(check.errors);
        return http_reply_db_error(r);
    }
    json_t *body = NULL;
    if (models_store_set_status(r->db, row.id, ok ? "ready" : "failed", check.family,
                                check.chat_format, ok ? NULL : check.errors) != 0 ||
        (body = models_store_json(r->db, row.id)) == NULL) {
        json_decref(check.errors);
        enum MHD_Result replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    json_decref(check.errors);
    return http_commit_reply(r, 200, body);
}

/* ---- GET /v1/checkpoints/{id}/hf.tar ---------------------------------------------- */

/* One regular file: a 512-byte ustar header, the bytes, zero padding. */
static void tar_add(textbuf *t, const char *name, const void *bytes, size_t n) {
    char h[512] = {0};
    snprintf(h, 100, "%s", name);
    snprintf(h + 100, 8, "0000644");
    snprintf(h + 108, 8, "0000000");
    snprintf(h + 116, 8, "0000000");
    snprintf(h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf(h + 136, 12, "%011llo", (unsigned long long)db_now_s());
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    textbuf_put(t, h, 512);
    textbuf_put(t, bytes, n);
    static const char zeros[512] = {0};
    if (n % 512)
        textbuf_put(t, zeros, 512 - n % 512);
}

/* dir/file as prefix/file, when it can be read: true if added. */
static bool tar_add_file(textbuf *t, const char *prefix, const char *dir, const char *file) {
    char path[4400], name[200];
    snprintf(path, sizeof path, "%.4000s/%s", dir, file);
    FILE *in = fopen(path, "rb");
    if (in == NULL)
        return false;
    char *text = NULL;
    long n = 0;
    bool added = false;
    if (fseek(in, 0, SEEK_END) == 0 && (n = ftell(in)) > 0 && fseek(in, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n)) != NULL && fread(text, 1, (size_t)n, in) == (size_t)n) {
        snprintf(name, sizeof name, "%s/%s", prefix, file);
        tar_add(t, name, text, (size_t)n);
        added = true;
    }
    free(text);
    fclose(in);
    return added;
}

/* The tokenizer files of the lineage's base model, beside the weights
 * (generation_config.json unless the export wrote its own). */
static void tar_add_tokenizer(textbuf *t, const char *prefix, const char *dir,
                              bool generation_config) {
    static const char *const files[] = {"tokenizer.json",
                                        "tokenizer_config.json",
                                        "special_tokens_map.json",
                                        "generation_config.json",
                                        "vocab.json",
                                        "merges.txt",
                                        NULL};
    for (const char *const *f = files; *f; f++)
        if (generation_config || strcmp(*f, "generation_config.json") != 0)
            tar_add_file(t, prefix, dir, *f);
}

/* A Llama-family checkpoint at path: exported as rlhf-train export-hf does
 * (model_export_llama_hf) into a scratch directory under the data
 * directory, whose files go into the tar, then removed. 0, or -1 with err. */
static int tar_add_llama(textbuf *t, const char *prefix, const char *path, const char *data_dir,
                         safetensors_dtype dtype, char *err, size_t errlen) {
    static const char *const files[] = {"config.json",
                                        "generation_config.json",
                                        "model.safetensors",
                                        "adapter/adapter_config.json",
                                        "adapter/adapter_model.safetensors",
                                        NULL};
    char dir[4096], sub[4200];
    snprintf(dir, sizeof dir, "%.4000s/export-XXXXXX", data_dir);
    if (mkdtemp(dir) == NULL) {
        snprintf(err, errlen, "cannot create a scratch directory in %.400s: %s", data_dir,
                 strerror(errno));
        return -1;
    }
    const int rc = model_export_llama_hf(path, dir, dtype, err, errlen);
    for (const char *const *f = files; *f; f++) {
        if (rc == 0)
            tar_add_file(t, prefix, dir, *f);
        snprintf(sub, sizeof sub, "%s/%s", dir, *f);
        unlink(sub);
    }
    snprintf(sub, sizeof sub, "%s/adapter", dir);
    rmdir(sub);
    rmdir(dir);
    return rc;
}

/* The adapters a checkpoint file carries (a LoRA job's): 1 with *lora
 * set, 0 none. */
static int checkpoint_lora(const char *path, model_lora *lora) {
    safetensors_file f;
    gpt2_config cfg;
    char err[256];
    if (safetensors_read_file(&f, path, err, sizeof err) != 0)
        return 0;
    memset(lora, 0, sizeof *lora);
    const int has = gpt2_config_from_checkpoint(&cfg, &f, err, sizeof err) == 0 &&
                    lora_file_info(&f, cfg.n_layer, &lora->r, &lora->alpha, &lora->targets, err,
                                   sizeof err) == 1;
    safetensors_free(&f);
    return has;
}

/* prefix/adapter/: the checkpoint's adapters as a PEFT directory (for the
 * model the job started from). 0, or -1 with err. */
static int tar_add_adapter(textbuf *t, const char *prefix, const char *path, const model_lora *lora,
                           char *err, size_t errlen) {
    const model_open_options opt = {.lora = lora};
    gpt2_model m;
    if (model_open(path, &opt, &m, NULL, err, errlen) != 0)
        return -1;
    size_t n = 0;
    void *weights = gpt2_lora_serialize(&m, &n);
    char *config = gpt2_lora_config_json(&m);
    gpt2_free(&m);
    char name[160];
    if (weights != NULL && config != NULL) {
        snprintf(name, sizeof name, "%s/adapter/adapter_config.json", prefix);
        tar_add(t, name, config, strlen(config));
        snprintf(name, sizeof name, "%s/adapter/adapter_model.safetensors", prefix);
        tar_add(t, name, weights, n);
    } else {
        t->failed = true;
    }
    free(weights);
    free(config);
    return 0;
}

/* A GPT-2 checkpoint at path: config.json and model.safetensors (adapters
 * merged, in dtype), and a LoRA job's adapters unmerged in adapter/. 0, or
 * -1 with err. */
static int tar_add_gpt2(textbuf *t, const char *prefix, const char *path, safetensors_dtype dtype,
                        char *err, size_t errlen) {
    gpt2_model m;
    if (model_open(path, NULL, &m, NULL, err, errlen) != 0) /* LoRA adapters merged */
        return -1;
    size_t n_weights = 0;
    void *weights = gpt2_export_serialize(&m, dtype, &n_weights);
    char *config = gpt2_hf_config_json(&m.cfg);
    gpt2_free(&m);
    char name[128];
    t->failed |= weights == NULL || config == NULL;
    snprintf(name, sizeof name, "%s/config.json", prefix);
    if (!t->failed)
        tar_add(t, name, config, strlen(config));
    snprintf(name, sizeof name, "%s/model.safetensors", prefix);
    if (!t->failed)
        tar_add(t, name, weights, n_weights);
    free(weights);
    free(config);
    /* a LoRA job's checkpoint: also its adapters, unmerged */
    model_lora lora;
    if (checkpoint_lora(path, &lora) && tar_add_adapter(t, prefix, path, &lora, err, errlen) != 0) {
        const size_t len = strlen(err);
        snprintf(err + len, errlen - len, " (its adapters)");
        return -1;
    }
    return 0;
}

enum MHD_Result route_checkpoints_hf_tar(request *r) {
    char err[512], path[64], base_dir[4096];
    const char *dtype_name = http_query(r, "dtype");
    safetensors_dtype dtype = SAFETENSORS_F32;
    if (dtype_name != NULL && strcmp(dtype_name, "bf16") == 0)
        dtype = SAFETENSORS_BF16;
    else if (dtype_name != NULL && strcmp(dtype_name, "f32") != 0)
        return http_reply_error(r, 400, "invalid_value", "dtype",
                                "dtype must be f32 (the default) or bf16");
    bool found = false;
    const int fd =
        checkpoint_file_open(r->db, r->srv->cfg.data_dir, r->path_id, &found, err, sizeof err);
    if (fd < 0)
        return found ? http_reply_error(r, 500, "artifact_unreadable", NULL, "%s", err)
                     : http_reply_error(r, 404, "checkpoint_not_found", NULL, "no checkpoint %lld",
                                        (long long)r->path_id);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "checkpoint-%lld", (long long)r->path_id);
    textbuf t = {0}; /* a ustar archive, built in memory */
    model_family family = MODEL_FAMILY_GPT2;
    int rc = model_source_family(path, &family, err, sizeof err);
    if (rc == 0)
        rc = family == MODEL_FAMILY_LLAMA
                 ? tar_add_llama(&t, prefix, path, r->srv->cfg.data_dir, dtype, err, sizeof err)
                 : tar_add_gpt2(&t, prefix, path, dtype, err, sizeof err);
    if (rc != 0) {
        close(fd);
        free(t.p);
        return http_reply_error(r, 400, "invalid_checkpoint", NULL,
                                "checkpoint %lld cannot be exported: %s", (long long)r->path_id,
                                err);
    }
    close(fd);
    const int64_t base = models_store_checkpoint_base(r->db, r->path_id);
    if (base > 0 && model_dir_path(r->db, r->srv->cfg.data_dir, base, base_dir, sizeof base_dir,
                                   err, sizeof err) == 1)
        tar_add_tokenizer(&t, prefix, base_dir, family != MODEL_FAMILY_LLAMA);
    static const char end[1024] = {0};
    textbuf_put(&t, end, sizeof end);
    if (t.failed) {
        free(t.p);
        return http_reply_error(r, 500, "out_of_memory", NULL, "cannot build the archive");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(t.len, t.p, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(t.p);
        return MHD_NO;
    }
    char disposition[128];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"%s.tar\"", prefix);
    MHD_add_response_header(resp, "Content-Type", "application/x-tar");
    MHD_add_response_header(resp, "Content-Disposition", disposition);
    return http_queue(r, 200, resp);
}
