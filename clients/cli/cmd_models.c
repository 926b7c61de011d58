/* rlhfctl models: register a model directory on the server, upload one
 * file by file (each with its SHA-256, then checked as a whole by the
 * server), list, show and delete models (docs/api.md, Models). */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rlhfctl.h"
#include "sha256.h"

static const column model_cols[] = {
    {"ID", "id", COLUMN_KIND_TEXT},         {"STATUS", "status", COLUMN_KIND_TEXT},
    {"FAMILY", "family", COLUMN_KIND_TEXT}, {"CHAT", "chat_format", COLUMN_KIND_TEXT},
    {"PARENT", "parent", COLUMN_KIND_TEXT}, {"CREATED", "created", COLUMN_KIND_TIME},
};

/* --name, else the directory's last component. */
static const char *model_name(const cli_args *a, char *buf, size_t cap) {
    const char *name = cli_opt(a, "name");
    if (name != NULL)
        return name;
    snprintf(buf, cap, "%s", a->pos[0]);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = '\0';
    return basename(buf);
}

int cmd_models_add(const rlhfctl *c, const cli_args *a) {
    char buf[4096];
    json_t *body = json_pack("{s:s, s:s}", "id", model_name(a, buf, sizeof buf), "path", a->pos[0]);
    int rc = cmd_request(c, "POST", "/v1/models", body, cmd_print_object);
    json_decref(body);
    return rc;
}

/* The SHA-256 of the file at path as hex; 0, or -1 (errno). */
static int file_sha256(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    sha256_ctx ctx;
    sha256_init(&ctx);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(&ctx, buf, n);
    const int failed = ferror(f);
    fclose(f);
    uint8_t digest[32];
    sha256_final(&ctx, digest);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return failed ? -1 : 0;
}

/* The files of a Hugging Face directory the server takes. */
static int is_model_file(const char *name) {
    static const char *const ends[] = {".json", ".txt", ".safetensors", ".model", NULL};
    if (name[0] == '.')
        return 0;
    for (const char *const *e = ends; *e; e++) {
        size_t n = strlen(name), k = strlen(*e);
        if (n > k && strcmp(name + n - k, *e) == 0)
            return 1;
    }
    return 0;
}

int cmd_models_upload(const rlhfctl *c, const cli_args *a) {
    char buf[4096], path[8200], api_path[512];
    const char *dir = a->pos[0];
    const char *name = model_name(a, buf, sizeof buf);
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "rlhfctl: cannot read %s: %s\n", dir, strerror(errno));
        return RLHFCTL_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:s, s:s}", "id", name, "source", "upload"), *reply = NULL;
    int rc = api_request(c, "POST", "/v1/models", body, &reply);
    json_decref(body);
    json_decref(reply);
    struct dirent *e;
    while (rc == RLHFCTL_EXIT_OK && (e = readdir(d)) != NULL) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!is_model_file(e->d_name) || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        char sha[65], header[96];
        if (file_sha256(path, sha) != 0) {
            fprintf(stderr, "rlhfctl: cannot read %s: %s\n", path, strerror(errno));
            rc = RLHFCTL_EXIT_USAGE;
            break;
        }
        snprintf(header, sizeof header, "X-Sha256: %s", sha);
        snprintf(api_path, sizeof api_path, "/v1/models/%s/files/%s", name, e->d_name);
        reply = NULL;
        rc = api_upload(c, api_path, path, header, &reply);
        json_decref(reply);
        if (rc == RLHFCTL_EXIT_OK && !c->json_output)
            fprintf(stderr, "uploaded %s (%lld bytes)\n", e->d_name, (long long)st.st_size);
    }
    closedir(d);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    snprintf(api_path, sizeof api_path, "/v1/models/%s/complete", name);
    body = json_object();
    rc = api_request(c, "POST", api_path, body, &reply);
    json_decref(body);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    const char *status = json_string_value(json_object_get(reply, "status"));
    const int failed = status == NULL || strcmp(status, "ready") != 0;
    output_reply(c, reply, cmd_print_object);
    return failed ? RLHFCTL_EXIT_API : RLHFCTL_EXIT_OK;
}

int cmd_models_list(const rlhfctl *c, const cli_args *a) {
    static const char *const no_filters[] = {NULL};
    return cmd_show_list(c, a, "/v1/models", no_filters, model_cols,
                         sizeof model_cols / sizeof model_cols[0]);
}

/* GET or DELETE /v1/models/NAME. */
static int model_request(const rlhfctl *c, const cli_args *a, const char *method) {
    char path[512];
    snprintf(path, sizeof path, "/v1/models/%s", a->pos[0]);
    return cmd_request(c, method, path, NULL, cmd_print_object);
}

int cmd_models_show(const rlhfctl *c, const cli_args *a) {
    return model_request(c, a, "GET");
}

int cmd_models_delete(const rlhfctl *c, const cli_args *a) {
    return model_request(c, a, "DELETE");
}
