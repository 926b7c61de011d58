#include "model_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact_store.h"

static void links_dir(const char *data_dir, int64_t model_id, char *out, size_t cap) {
    snprintf(out, cap, "%.4000s/models/%lld", data_dir, (long long)model_id);
}

void model_dir_remove(const char *data_dir, int64_t model_id) {
    char dir[4200];
    links_dir(data_dir, model_id, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[4500];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%.255s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Makes dir/name a link to the object sha256 (replacing what was there). */
static int link_file(const char *data_dir, const char *dir, const char *name, const char *sha256,
                     char *err, size_t errlen) {
    char link_path[4500], target[4200], tmp[4600];
    snprintf(link_path, sizeof link_path, "%s/%.255s", dir, name);
    artifact_store_path(data_dir, sha256, target, sizeof target);
    char have[4200];
    ssize_t n = readlink(link_path, have, sizeof have - 1);
    if (n >= 0) {
        have[n] = '\0';
        if (strcmp(have, target) == 0)
            return 0;
    }
    snprintf(tmp, sizeof tmp, "%s.link-tmp", link_path);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link_path) != 0) {
        snprintf(err, errlen, "cannot link %.1000s: %s", link_path, strerror(errno));
        return -1;
    }
    return 0;
}

int model_dir_path(sqlite3 *db, const char *data_dir, int64_t model_id, char *out, size_t cap,
                   char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT source, path FROM models WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "cannot read model %lld: %s", (long long)model_id,
                 sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, model_id);
    int step = sqlite3_step(st);
    bool upload = false;
    if (step == SQLITE_ROW) {
        upload = strcmp((const char *)sqlite3_column_text(st, 0), "upload") == 0;
        if (!upload)
            snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW) {
        if (step != SQLITE_DONE)
            snprintf(err, errlen, "cannot read model %lld: %s", (long long)model_id,
                     sqlite3_errmsg(db));
        return step == SQLITE_DONE ? 0 : -1;
    }
    if (!upload)
        return 1;
    char dir[4200], models[4200];
    snprintf(models, sizeof models, "%.4000s/models", data_dir);
    links_dir(data_dir, model_id, dir, sizeof dir);
    if ((mkdir(models, 0755) != 0 && errno != EEXIST) ||
        (mkdir(dir, 0755) != 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cannot create %.3000s: %s", dir, strerror(errno));
        return -1;
    }
    if (sqlite3_prepare_v2(db, "SELECT name, sha256 FROM model_files WHERE model_id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read model %lld's files: %s", (long long)model_id,
                 sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, model_id);
    int rc = 1;
    while (rc == 1 && (step = sqlite3_step(st)) == SQLITE_ROW)
        if (link_file(data_dir, dir, (const char *)sqlite3_column_text(st, 0),
                      (const char *)sqlite3_column_text(st, 1), err, errlen) != 0)
            rc = -1;
    if (rc == 1 && step != SQLITE_DONE) {
        snprintf(err, errlen, "cannot read model %lld's files: %s", (long long)model_id,
                 sqlite3_errmsg(db));
        rc = -1;
    }
    sqlite3_finalize(st);
    if (rc == 1)
        snprintf(out, cap, "%s", dir);
    return rc;
}
