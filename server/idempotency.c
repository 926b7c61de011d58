#include "idempotency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "reply.h"

int idempotency_key_valid(const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return 0;
    return n >= 1 && n <= 255;
}

#define IDEMPOTENCY_KEEP_S (24 * 3600)

/* What a key is bound to: method, path and the body's digest. */
static void request_fingerprint(request *r, char hex[65]) {
    sha256_ctx body = r->body_sha256, all;
    uint8_t digest[32];
    sha256_final(&body, digest);
    sha256_init(&all);
    sha256_update(&all, r->method, strlen(r->method));
    sha256_update(&all, " ", 1);
    sha256_update(&all, r->url, strlen(r->url));
    sha256_update(&all, "\n", 1);
    sha256_update(&all, digest, sizeof digest);
    sha256_final(&all, digest);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

int idempotency_replay(request *r, enum MHD_Result *replied) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT request_sha256, status, response FROM idempotency_keys "
                           "WHERE token_id = ?1 AND key = ?2 AND created_at >= ?3",
                           -1, &st, NULL) != SQLITE_OK) {
        *replied = http_reply_db_error(r);
        return -1;
    }
    sqlite3_bind_int64(st, 1, r->token.id);
    sqlite3_bind_text(st, 2, r->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now_s() - IDEMPOTENCY_KEEP_S);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE)
            return 0;
        *replied = http_reply_db_error(r);
        return -1;
    }
    char fingerprint[65];
    request_fingerprint(r, fingerprint);
    if (strcmp(fingerprint, (const char *)sqlite3_column_text(st, 0)) != 0)
        *replied = http_reply_error(
            r, 409, "idempotency_key_reused", "Idempotency-Key",
            "Idempotency-Key '%.64s' was already used for a different request (method, path or "
            "body differ); use a new key for a new request",
            r->idempotency_key);
    else {
        char *text = strdup((const char *)sqlite3_column_text(st, 2));
        *replied =
            text ? http_reply_dumped(r, (unsigned)sqlite3_column_int(st, 1), text, true) : MHD_NO;
    }
    sqlite3_finalize(st);
    return 1;
}

/* Records the answer in the open transaction: 1 stored, 0 the key was taken
 * meanwhile, -1 error. */
static int idempotency_store(request *r, unsigned status, const char *text) {
    char fingerprint[65];
    request_fingerprint(r, fingerprint);
    sqlite3_stmt *st = NULL;
    int64_t now = db_now_s();
    if (sqlite3_prepare_v2(r->db, "DELETE FROM idempotency_keys WHERE created_at < ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now - IDEMPOTENCY_KEEP_S);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE ||
        sqlite3_prepare_v2(r->db,
                           "INSERT INTO idempotency_keys (token_id, key, request_sha256, status, "
                           "response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                           "ON CONFLICT DO NOTHING",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, r->token.id);
    sqlite3_bind_text(st, 2, r->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)status);
    sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc != SQLITE_DONE ? -1 : sqlite3_changes(r->db) == 1;
}

enum MHD_Result http_commit_reply(request *r, unsigned status, json_t *body) {
    char *text = json_dumps(body, HTTP_JSON_DUMP_FLAGS);
    json_decref(body);
    int stored = text == NULL ? -1 : r->idempotency_key ? idempotency_store(r, status, text) : 1;
    if (stored == 1 && (r->in_batch || db_commit(r->db) == SQLITE_OK))
        return http_reply_dumped(r, status, text, false); /* in a batch: the writer commits */
    free(text);
    if (r->in_batch)
        r->batch_rollback = true; /* only this write's savepoint */
    else
        db_rollback(r->db);
    enum MHD_Result replied;
    if (stored == 0 && idempotency_replay(r, &replied) == 1)
        return replied; /* a concurrent request with this key won */
    return http_reply_db_failure(r, db_failure_of(r->db), "the write could not be committed");
}
