/* docs/openapi.json against the code (docs/api.md, "The OpenAPI document"):
 * - every route of server/route_table.c is in it, once, with its roles
 *   (x-roles, and security: [] exactly for the routes without a token)
 *   and the Idempotency-Key header exactly where the route honours it,
 *   and it describes nothing else; a failure lists every route it lacks;
 * - rlhfd serves it at GET /openapi.json without a token, byte for byte
 *   the checked-in file;
 * - @readme/openapi-parser (tests/npm) finds it valid, and finds a broken
 *   copy invalid (skipped without node or the npm modules);
 * - the reply check every api suite goes through (tests/lib/openapi_check.h)
 *   refuses a real reply once its shape drifts: a key missing, one extra,
 *   a wrong type or enum value, another media type, a stream event or a
 *   JSONL line that does not match, a success on a path that is no route,
 *   a route the document lacks. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "json_schema.h"
#include "openapi_check.h"
#include "route_table.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* ---- the route table ------------------------------------------------------ */

static const struct {
    int bit;
    const char *name;
} roles[] = {
    {AUTH_ROLE_ADMIN, "admin"}, {AUTH_ROLE_ANNOTATOR, "annotator"}, {AUTH_ROLE_VIEWER, "viewer"}};

/* The auth_role bits of an operation's x-roles; -1 if it has none or names
 * something else. */
static int operation_roles(const json_t *op) {
    const json_t *list = json_object_get(op, "x-roles");
    if (!json_is_array(list))
        return -1;
    int bits = 0;
    size_t i;
    const json_t *name;
    json_array_foreach(list, i, name) {
        int bit = 0;
        for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++)
            if (json_is_string(name) && strcmp(json_string_value(name), roles[r].name) == 0)
                bit = roles[r].bit;
        if (bit == 0 || (bits & bit))
            return -1;
        bits |= bit;
    }
    return bits;
}

static void roles_json(int bits, char *out, size_t len) {
    size_t used = (size_t)snprintf(out, len, "[");
    for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++)
        if (bits & roles[r].bit)
            used += (size_t)snprintf(out + used, len - used, "%s\"%s\"", used > 1 ? ", " : "",
                                     roles[r].name);
    snprintf(out + used, len - used, "]");
}

/* Whether op lists the Idempotency-Key header. */
static bool takes_idempotency_key(const json_t *doc, const json_t *op) {
    size_t i;
    const json_t *p;
    json_array_foreach(json_object_get(op, "parameters"), i, p) {
        const json_t *ref = json_object_get(p, "$ref");
        if (ref != NULL)
            p = json_schema_resolve(doc, json_string_value(ref));
        if (json_is_string(json_object_get(p, "name")) &&
            strcmp(json_string_value(json_object_get(p, "name")), "Idempotency-Key") == 0)
            return true;
    }
    return false;
}

/* Appends a line to the report. */
static void report(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(char *out, size_t len, const char *fmt, ...) {
    size_t used = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    if (used + 1 < len)
        vsnprintf(out + used, len - used, fmt, ap);
    va_end(ap);
}

START_TEST(test_openapi_matches_route_table) {
    const json_t *doc = openapi_doc();
    ck_assert_msg(doc != NULL, "docs/openapi.json does not parse");
    char *faults = calloc(1, 1 << 16);
    const size_t cap = 1 << 16;
    for (size_t i = 0; i < http_route_count(); i++) {
        const char *method, *pattern;
        http_route_at(i, &method, &pattern);
        const json_t *op = openapi_operation(doc, method, pattern);
        if (op == NULL) {
            report(faults, cap,
                   "\n- %s %s (server/route_table.c) is missing from docs/openapi.json: add it "
                   "under \"paths\" (docs/api.md, \"The OpenAPI document\")",
                   method, pattern);
            continue;
        }
        const int want = http_route_roles(i), got = operation_roles(op);
        char want_text[64];
        roles_json(want, want_text, sizeof want_text);
        if (got != want)
            report(faults, cap, "\n- %s %s: x-roles must be %s (the route table's roles)", method,
                   pattern, want_text);
        if (takes_idempotency_key(doc, op) != http_route_creates(i))
            report(faults, cap, "\n- %s %s: %s", method, pattern,
                   http_route_creates(i)
                       ? "honours Idempotency-Key: list #/components/parameters/IdempotencyKey"
                       : "ignores Idempotency-Key: do not list it");
        const json_t *security = json_object_get(op, "security");
        const bool open = json_is_array(security) && json_array_size(security) == 0;
        if (open != (want == 0))
            report(faults, cap, "\n- %s %s: %s", method, pattern,
                   want == 0 ? "needs no token: give it \"security\": []"
                             : "needs a token: it must not have \"security\": []");
    }
    /* Nothing else: every operation is a route, once. */
    const char *path;
    const json_t *item;
    int operations = 0;
    json_object_foreach((json_t *)json_object_get(doc, "paths"), path, item) {
        const char *key;
        const json_t *op;
        json_object_foreach((json_t *)item, key, op) {
            char method[16], pattern[256];
            size_t n = 0;
            for (; key[n] && n + 1 < sizeof method; n++)
                method[n] = (char)(key[n] >= 'a' && key[n] <= 'z' ? key[n] - 32 : key[n]);
            method[n] = '\0';
            operations++;
            openapi_route_pattern(doc, path, op, pattern, sizeof pattern);
            size_t i = 0;
            const char *m = NULL, *p = NULL;
            for (; i < http_route_count(); i++) {
                http_route_at(i, &m, &p);
                if (strcmp(m, method) == 0 && strcmp(p, pattern) == 0)
                    break;
            }
            if (i == http_route_count())
                report(faults, cap,
                       "\n- docs/openapi.json describes %s %s (route pattern %s), which is not a "
                       "route of server/route_table.c",
                       method, path, pattern);
        }
    }
    ck_assert_msg(faults[0] == '\0', "docs/openapi.json and the route table differ:%s", faults);
    ck_assert_int_eq(operations, (int)http_route_count());
    free(faults);
}
END_TEST

/* ---- served --------------------------------------------------------------- */

/* docs/openapi.json's bytes (caller frees); *len their count. */
static char *read_doc_file(size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/openapi.json", test_repo_dir());
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *text = malloc(1 << 20);
    *len = fread(text, 1, 1 << 20, f);
    fclose(f);
    return text;
}

START_TEST(test_openapi_served_without_token) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    http_reply *r = expect_ok(http(&d, "GET", "/openapi.json", NULL, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/json");
    size_t len;
    char *file = read_doc_file(&len);
    ck_assert_msg(r->body_len == len && memcmp(r->body, file, len) == 0,
                  "GET /openapi.json (%zu bytes) is not docs/openapi.json (%zu bytes): rebuild",
                  r->body_len, len);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "openapi")), "3.1.0");
    free(file);
    reply_free(r);
    /* A token changes nothing, and other methods are refused. */
    r = expect_ok(http(&d, "GET", "/openapi.json", d.admin, NULL, NULL));
    reply_free(r);
    call_expect_error(&d, "POST", "/openapi.json", d.admin, "{}", 405, "method_not_allowed", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- the npm validator ---------------------------------------------------- */

/* node tests/openapi/lint.mjs file: its exit code; its stdout into out. */
static int lint(const char *node, const char *file, char *out, size_t len) {
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/openapi/lint.mjs", test_repo_dir());
    char *const argv[] = {(char *)node, script, (char *)file, NULL};
    return run_output(argv, out, len, true);
}

START_TEST(test_openapi_lint) {
    char node[4096], missing[4200];
    if (!find_node_package("@readme/openapi-parser", node, sizeof node, missing, sizeof missing)) {
        test_skip("%s", missing);
        return;
    }
    char file[4096], out[512];
    snprintf(file, sizeof file, "%s/docs/openapi.json", test_repo_dir());
    ck_assert_msg(lint(node, file, out, sizeof out) == 0,
                  "@readme/openapi-parser finds docs/openapi.json invalid (its errors are above)");
    ck_assert_msg(strncmp(out, "valid: rlhfd", 12) == 0, "lint.mjs said: %s", out);

    /* A broken copy (a path parameter undeclared) must fail: the linter
     * really checks. */
    json_t *broken = json_deep_copy(openapi_doc());
    json_t *get =
        json_object_get(json_object_get(json_object_get(broken, "paths"), "/v1/jobs/{id}"), "get");
    ck_assert_ptr_nonnull(get);
    json_object_del(get, "parameters");
    char copy[] = "/tmp/rlhfd-openapi-XXXXXX";
    int fd = mkstemp(copy);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(json_dumpfd(broken, fd, 0), 0);
    close(fd);
    json_decref(broken);
    printf("openapi lint: a broken copy (its errors follow on stderr):\n");
    fflush(stdout);
    ck_assert_msg(lint(node, copy, out, sizeof out) != 0,
                  "@readme/openapi-parser accepts a document with an undeclared path parameter");
    unlink(copy);
}
END_TEST

/* ---- drift ---------------------------------------------------------------- */

/* Whether the reply check accepts json as method target's 200 JSON reply. */
static bool accepts(const json_t *doc, const char *method, const char *target, long status,
                    const char *type, const json_t *json, char *why, size_t len) {
    char *text = json_dumps(json, JSON_COMPACT);
    const bool ok = openapi_reply_ok(doc, method, target, status, type, text, strlen(text), json,
                                     false, why, len);
    free(text);
    return ok;
}

/* The check refuses job with key changed by edit, naming want. */
static void expect_drift(const json_t *job, const char *key, json_t *value, const char *want) {
    json_t *copy = json_deep_copy(job);
    if (value != NULL)
        json_object_set_new(copy, key, value);
    else
        json_object_del(copy, key);
    char why[2048];
    ck_assert_msg(!accepts(openapi_doc(), "GET", "/v1/jobs/1", 200, "application/json", copy, why,
                           sizeof why),
                  "a job with %s changed passes the check", key);
    ck_assert_msg(strstr(why, want) != NULL, "the check says '%s', not '%s'", why, want);
    json_decref(copy);
}

START_TEST(test_openapi_refuses_drift) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    http_reply *r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, LONG_JOB, NULL));
    const json_t *doc = openapi_doc();
    char why[2048];
    ck_assert_msg(
        accepts(doc, "GET", "/v1/jobs/1", 200, "application/json", r->json, why, sizeof why), "%s",
        why);
    expect_drift(r->json, "status", NULL, "\"status\" is missing");
    expect_drift(r->json, "status", json_string("paused"), "$.status: \"paused\" is not one of");
    expect_drift(r->json, "id", json_string("1"), "$.id: integer expected, got string");
    expect_drift(r->json, "surprise", json_true(), "\"surprise\" is not in the schema");
    expect_drift(r->json, "error", json_pack("{s:i}", "message", 3),
                 "$.error.message: string expected, got integer");
    expect_drift(r->json, "started_at", json_real(1.5),
                 "$.started_at: one of [\"integer\",\"null\"] expected, got number");

    /* The same body on a route whose reply is another object. */
    ck_assert(
        !accepts(doc, "GET", "/v1/datasets/1", 200, "application/json", r->json, why, sizeof why));
    /* A media type the document does not give that reply. */
    ck_assert(!accepts(doc, "GET", "/v1/jobs/1", 200, "text/plain", r->json, why, sizeof why));
    ck_assert_msg(strstr(why, "Content-Type text/plain") != NULL, "%s", why);
    /* A stream's events, each against its x-sse-events schema. */
    static const char *const streams[][2] = {
        {"id: 1\nevent: message\ndata: {\"id\":1}\n\n", "event: message) does not match: $: \""},
        {": keep-alive\n\nevent: surprise\ndata: {}\n\n", "(event: surprise) is not in"},
        {"event: end\ndata: {\"status\":\"paused\"}\n\n", "$.status: \"paused\" is not one"},
    };
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        ck_assert_msg(!openapi_reply_ok(doc, "GET", "/v1/jobs/1/stream", 200, "text/event-stream",
                                        streams[i][0], strlen(streams[i][0]), NULL, false, why,
                                        sizeof why),
                      "stream %zu passes", i);
        ck_assert_msg(strstr(why, streams[i][1]) != NULL, "'%s' lacks '%s'", why, streams[i][1]);
    }
    const char *end = ": keep-alive\n\nevent: end\ndata: {\"status\":\"cancelled\"}\n\n";
    ck_assert_msg(openapi_reply_ok(doc, "GET", "/v1/jobs/1/stream", 200, "text/event-stream", end,
                                   strlen(end), NULL, false, why, sizeof why),
                  "%s", why);
    /* JSONL exports, line by line against x-jsonl-item. */
    static const char *const lines[][2] = {
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"p\"}\n",
         "its line 2 does not match x-jsonl-item: $: \"chosen\" is missing"},
        {"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\nnot json\n",
         "its line 2 is not JSON"},
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        ck_assert(!openapi_reply_ok(doc, "GET", "/v1/projects/1/pairs.jsonl", 200,
                                    "application/x-ndjson", lines[i][0], strlen(lines[i][0]), NULL,
                                    false, why, sizeof why));
        ck_assert_msg(strstr(why, lines[i][1]) != NULL, "'%s' lacks '%s'", why, lines[i][1]);
    }
    /* A success on a path that is no route; an error there is fine. */
    ck_assert(
        !accepts(doc, "GET", "/v1/nothing", 200, "application/json", r->json, why, sizeof why));
    http_reply *e = http(&d, "GET", "/v1/nothing", d.admin, NULL, NULL);
    expect_error(e, 404, "unknown_route", NULL);
    ck_assert(
        accepts(doc, "GET", "/v1/nothing", 404, "application/json", e->json, why, sizeof why));
    /* An error reply on a route must be the error object. */
    json_t *bad_error = json_pack("{s:s}", "error", "no");
    ck_assert(
        !accepts(doc, "GET", "/v1/jobs/1", 404, "application/json", bad_error, why, sizeof why));
    json_decref(bad_error);
    reply_free(e);
    /* A route the document lacks. */
    json_t *lacking = json_deep_copy(doc);
    json_object_del(json_object_get(json_object_get(lacking, "paths"), "/v1/jobs/{id}"), "get");
    ck_assert(
        !accepts(lacking, "GET", "/v1/jobs/1", 200, "application/json", r->json, why, sizeof why));
    ck_assert_msg(strstr(why, "GET /v1/jobs/{id}, a route docs/openapi.json does not describe"),
                  "%s", why);
    json_decref(lacking);
    reply_free(r);
    reply_free(cancel_job(&d, 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *openapi_suite(void) {
    Suite *s = suite_create("openapi");
    TCase *tc = tcase_create("openapi");
    tcase_add_test(tc, test_openapi_matches_route_table);
    tcase_add_test(tc, test_openapi_served_without_token);
    tcase_add_test(tc, test_openapi_lint);
    tcase_add_test(tc, test_openapi_refuses_drift);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
