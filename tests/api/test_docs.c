/* docs/api.md against rlhfd itself. The route table comes from
 * `rlhfd --routes` (the test does not link the daemon's table), and a real
 * daemon answers for the rest:
 * - every route has exactly one "### `METHOD PATH`" section, and every such
 *   section is a route;
 * - the roles a section names first ("No token." / "Admin, viewer." /
 *   "Roles: admin, viewer.") are the roles the daemon lets through, probed
 *   with no token and a token of each role on an id that does not exist
 *   (401 and 403 come before the handler; anything else is past them);
 * - the object every route answers with (its "object", or its list items')
 *   is named as object:"NAME" in its section or in the introduction of its
 *   "## " group: a walk over the whole API makes one real request per route.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

enum { ROLE_ADMIN = 1, ROLE_ANNOTATOR = 2, ROLE_VIEWER = 4 };
static const char *const role_names[] = {"admin", "annotator", "viewer"};

/* docs/api.md, whole (caller frees). */
static char *read_api_doc(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/api.md", test_repo_dir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *doc = malloc(1 << 20);
    size_t n = fread(doc, 1, (1 << 20) - 1, f);
    doc[n] = '\0';
    fclose(f);
    return doc;
}

/* The route table: `rlhfd --routes`, a JSON array of {method, path}. */
static json_t *route_table(void) {
    json_t *routes = rlhfd_routes();
    ck_assert_int_gt(json_array_size(routes), 20);
    return routes;
}

static const char *route_method(json_t *routes, size_t i) {
    return json_string_value(json_object_get(json_array_get(routes, i), "method"));
}
static const char *route_path(json_t *routes, size_t i) {
    return json_string_value(json_object_get(json_array_get(routes, i), "path"));
}

/* The section of METHOD PATH: the text after its heading up to the next
 * heading; asserts there is exactly one. */
static const char *doc_section(const char *doc, const char *method, const char *path, size_t *len) {
    char heading[256];
    snprintf(heading, sizeof heading, "\n### `%s %s`\n", method, path);
    const char *at = strstr(doc, heading);
    ck_assert_msg(at != NULL, "docs/api.md does not document %s %s", method, path);
    ck_assert_msg(strstr(at + 1, heading) == NULL, "docs/api.md documents %s %s twice", method,
                  path);
    const char *body = at + strlen(heading);
    const char *end = strstr(body, "\n#");
    *len = end ? (size_t)(end - body) : strlen(body);
    return body;
}

/* The introduction of the "## " group a section is in: from the group's
 * heading to its first "### ". */
static const char *group_intro(const char *doc, const char *section, size_t *len) {
    const char *group = NULL;
    for (const char *p = doc; (p = strstr(p, "\n## ")) != NULL && p < section; p++)
        group = p + 1;
    ck_assert_ptr_nonnull(group);
    const char *end = strstr(group, "\n### ");
    *len = (size_t)(end - group);
    return group;
}

/* The roles a section names in its first sentence (0: "No token."). */
static int doc_roles(const char *section, const char *what) {
    if (strncmp(section, "No token.", 9) == 0)
        return 0;
    const char *p = section;
    if (strncmp(p, "Roles: ", 7) == 0)
        p += 7;
    int roles = 0;
    for (;;) {
        size_t n = strcspn(p, ",;.");
        int found = 0;
        for (int r = 0; r < 3; r++)
            if (strlen(role_names[r]) == n && strncasecmp(p, role_names[r], n) == 0)
                found = 1 << r;
        ck_assert_msg(found != 0, "%s: the section does not start with its roles: '%.40s'", what,
                      section);
        roles |= found;
        if (p[n] != ',')
            return roles;
        p += n + 1;
        while (*p == ' ' || *p == '\n')
            p++;
    }
}

/* The route's pattern with an id (and a path) that name nothing. */
static void probe_path(const char *pattern, char *out, size_t len) {
    size_t used = 0;
    for (const char *p = pattern; *p && used + 16 < len;) {
        if (strncmp(p, "{id}", 4) == 0)
            used += (size_t)snprintf(out + used, len - used, "999999999"), p += 4;
        else if (strncmp(p, "{path}", 6) == 0)
            used += (size_t)snprintf(out + used, len - used, "missing.js"), p += 6;
        else if (strncmp(p, "{name}", 6) == 0)
            used += (size_t)snprintf(out + used, len - used, "missing.json"), p += 6;
        else
            out[used++] = *p++;
    }
    out[used] = '\0';
}

/* The roles the daemon lets through on method pattern (0: no token needed). */
static int enforced_roles(const test_daemon *d, const char *const tokens[3], const char *method,
                          const char *pattern) {
    char path[256];
    probe_path(pattern, path, sizeof path);
    http_reply *r = http(d, method, path, NULL, NULL, NULL);
    const bool needs_token = r->status == 401;
    if (needs_token)
        expect_error(r, 401, "missing_api_key", NULL);
    reply_free(r);
    if (!needs_token)
        return 0;
    int roles = 0;
    for (int i = 0; i < 3; i++) {
        r = http(d, method, path, tokens[i], NULL, NULL);
        if (r->status == 403)
            expect_error(r, 403, "insufficient_role", NULL);
        else
            roles |= 1 << i;
        reply_free(r);
    }
    return roles;
}

static void roles_text(int roles, char *out, size_t len) {
    snprintf(out, len, "%s", roles ? "" : "no token");
    for (int r = 0; r < 3; r++)
        if (roles & (1 << r))
            snprintf(out + strlen(out), len - strlen(out), "%s%s",
                     out[0] && (roles & ((1 << r) - 1)) ? ", " : "", role_names[r]);
}

/* ---- the walk: one real request per route -------------------------------- */

typedef struct walk {
    const test_daemon *d;
    const char *doc;
    json_t *routes;
    bool *walked;
} walk;

/* Whether text[0..len) names the object: object:"name". */
static bool names_object(const char *text, size_t len, const char *name) {
    char want[96];
    snprintf(want, sizeof want, "object:\"%s\"", name);
    const char *at = strstr(text, want);
    return at != NULL && at < text + len;
}

static void expect_documented(const walk *w, const char *method, const char *pattern,
                              const char *name) {
    size_t n, m;
    const char *section = doc_section(w->doc, method, pattern, &n);
    const char *intro = group_intro(w->doc, section, &m);
    ck_assert_msg(names_object(section, n, name) || names_object(intro, m, name),
                  "%s %s answers object \"%s\"; docs/api.md names it neither in the section nor "
                  "in its group's introduction",
                  method, pattern, name);
}

/* Requests path (an instance of method pattern) as token with body,
 * asserts the status (0: any), and checks that the objects it answers
 * with are documented. Returns the reply (caller frees). */
static http_reply *walk_reply(walk *w, const char *method, const char *pattern, const char *path,
                              http_reply *r, long status);
static http_reply *walk_route(walk *w, const char *method, const char *pattern, const char *path,
                              const char *token, const char *body, long status) {
    return walk_reply(w, method, pattern, path, http(w->d, method, path, token, body, NULL),
                      status);
}

/* walk_route for a request already made (r, to path), e.g. a multipart
 * upload. */
static http_reply *walk_reply(walk *w, const char *method, const char *pattern, const char *path,
                              http_reply *r, long status) {
    size_t i = 0;
    while (i < json_array_size(w->routes) && (strcmp(route_method(w->routes, i), method) != 0 ||
                                              strcmp(route_path(w->routes, i), pattern) != 0))
        i++;
    ck_assert_msg(i < json_array_size(w->routes), "%s %s is not a route", method, pattern);
    w->walked[i] = true;
    if (status != 0)
        ck_assert_msg(r->status == status, "%s %s: %ld %s", method, path, r->status, r->body);
    const char *object = json_string_value(json_object_get(r->json, "object"));
    if (object != NULL && strcmp(object, "list") != 0)
        expect_documented(w, method, pattern, object);
    size_t k;
    json_t *item;
    json_array_foreach(json_object_get(r->json, "data"), k, item) {
        const char *name = json_string_value(json_object_get(item, "object"));
        if (name != NULL)
            expect_documented(w, method, pattern, name);
    }
    return r;
}

/* walk_route for a 200 whose reply is not needed. */
static void walk_ok(walk *w, const char *method, const char *pattern, const char *path,
                    const char *token, const char *body) {
    reply_free(walk_route(w, method, pattern, path, token, body, 200));
}

static int64_t walk_id(walk *w, const char *method, const char *pattern, const char *path,
                       const char *token, const char *body) {
    http_reply *r = walk_route(w, method, pattern, path, token, body, 200);
    const int64_t id = reply_id(r);
    reply_free(r);
    return id;
}

static void walk_api(walk *w, const char *annotator, int64_t annotator_id) {
    const test_daemon *d = w->d;
    const char *admin = d->admin;
    char p[160];
    walk_ok(w, "GET", "/healthz", "/healthz", NULL, NULL);
    walk_ok(w, "GET", "/readyz", "/readyz", NULL, NULL);
    walk_ok(w, "GET", "/metrics", "/metrics", admin, NULL);
    walk_ok(w, "GET", "/openapi.json", "/openapi.json", NULL, NULL);

    const int64_t tmp = walk_id(w, "POST", "/v1/tokens", "/v1/tokens", admin,
                                "{\"name\":\"tmp\",\"role\":\"viewer\"}");
    walk_ok(w, "GET", "/v1/tokens", "/v1/tokens", admin, NULL);
    snprintf(p, sizeof p, "/v1/tokens/%lld/revoke", (long long)tmp);
    walk_ok(w, "POST", "/v1/tokens/{id}/revoke", p, admin, NULL);

    const int64_t job = walk_id(w, "POST", "/v1/jobs", "/v1/jobs", admin, SHORT_JOB);
    reply_free(wait_job(d, job, "succeeded", 1));
    walk_ok(w, "GET", "/v1/jobs", "/v1/jobs", admin, NULL);
    const char *job_routes[] = {"", "/events", "/metrics", "/stream", "/checkpoints", "/rollouts"};
    for (size_t i = 0; i < sizeof job_routes / sizeof job_routes[0]; i++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "/v1/jobs/{id}%s", job_routes[i]);
        snprintf(p, sizeof p, "/v1/jobs/%lld%s", (long long)job, job_routes[i]);
        walk_ok(w, "GET", pattern, p, admin, NULL);
    }
    snprintf(p, sizeof p, "/v1/checkpoints/%lld/content",
             (long long)final_checkpoint(d, job, NULL));
    walk_ok(w, "GET", "/v1/checkpoints/{id}/content", p, admin, NULL);
    walk_ok(w, "POST", "/v1/models", "/v1/models", admin, "{\"id\":\"m\",\"source\":\"upload\"}");
    walk_ok(w, "GET", "/v1/models", "/v1/models", admin, NULL);
    walk_ok(w, "GET", "/v1/models/{name}", "/v1/models/m", admin, NULL);
    /* without its X-Sha256 header */
    reply_free(walk_route(w, "POST", "/v1/models/{name}/files/{name}",
                          "/v1/models/m/files/config.json", admin, "{}", 400));
    walk_ok(w, "POST", "/v1/models/{name}/complete", "/v1/models/m/complete", admin, "{}");
    walk_ok(w, "DELETE", "/v1/models/{name}", "/v1/models/m", admin, NULL);
    snprintf(p, sizeof p, "/v1/jobs/%lld/cancel", (long long)create_job(d, LONG_JOB));
    walk_ok(w, "POST", "/v1/jobs/{id}/cancel", p, admin, NULL);
    const int64_t study = walk_id(w, "POST", "/v1/studies", "/v1/studies", admin,
                                  "{\"name\":\"s\",\"base\":" LONG_JOB ",\"metric\":"
                                  "\"episodic_return\",\"grid\":{\"gamma\":[0.9,0.99]}}");
    walk_ok(w, "GET", "/v1/studies", "/v1/studies", admin, NULL);
    const char *study_routes[] = {"", "/curves"};
    for (size_t i = 0; i < sizeof study_routes / sizeof study_routes[0]; i++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "/v1/studies/{id}%s", study_routes[i]);
        snprintf(p, sizeof p, "/v1/studies/%lld%s", (long long)study, study_routes[i]);
        walk_ok(w, "GET", pattern, p, admin, NULL);
    }
    snprintf(p, sizeof p, "/v1/studies/%lld/cancel", (long long)study);
    walk_ok(w, "POST", "/v1/studies/{id}/cancel", p, admin, NULL);
    const int64_t sft = demo_sft_job(d, TINY_SFT, NULL);
    reply_free(wait_job(d, sft, "succeeded", 1));
    snprintf(p, sizeof p, "/v1/checkpoints/%lld/hf.tar", (long long)final_checkpoint(d, sft, NULL));
    walk_ok(w, "GET", "/v1/checkpoints/{id}/hf.tar", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/checkpoints/%lld/generate",
             (long long)final_checkpoint(d, sft, NULL));
    walk_ok(w, "POST", "/v1/checkpoints/{id}/generate", p, admin,
            "{\"prompt\":\"a\",\"max_tokens\":2}");
    char body[160];
    snprintf(body, sizeof body,
             "{\"model\":\"ft:scratch::ftjob-%lld\",\"prompt\":\"a\",\"max_tokens\":2}",
             (long long)sft);
    walk_ok(w, "POST", "/v1/completions", "/v1/completions", admin, body);
    /* a lineage trained from scratch has no chat template: the documented 400 */
    snprintf(body, sizeof body,
             "{\"model\":\"ft:scratch::ftjob-%lld\",\"messages\":[{\"role\":\"user\",\"content\":"
             "\"a\"}]}",
             (long long)sft);
    reply_free(
        walk_route(w, "POST", "/v1/chat/completions", "/v1/chat/completions", admin, body, 400));
    walk_ok(w, "POST", "/v1/graders/run", "/v1/graders/run", admin,
            "{\"grader\":{\"type\":\"length\",\"max_length\":3},\"model_sample\":\"ab\"}");

    const int64_t ds = walk_id(w, "POST", "/v1/datasets", "/v1/datasets", admin,
                               "{\"name\":\"p\",\"format\":\"prompts\"}");
    walk_ok(w, "GET", "/v1/datasets", "/v1/datasets", admin, NULL);
    snprintf(p, sizeof p, "/v1/datasets/%lld/upload", (long long)ds);
    walk_ok(w, "POST", "/v1/datasets/{id}/upload", p, admin, "{\"prompt\":\"a\"}\n");
    snprintf(p, sizeof p, "/v1/datasets/%lld", (long long)ds);
    walk_ok(w, "GET", "/v1/datasets/{id}", p, admin, NULL);
    walk_ok(w, "DELETE", "/v1/datasets/{id}", p, admin, NULL);

    /* the OpenAI-compatible files and fine-tuning jobs */
    const char *rows = "{\"prompt\":\"2+2?\",\"response\":\"4\"}\n";
    http_reply *up =
        walk_reply(w, "POST", "/v1/files", "/v1/files",
                   upload_file(d, admin, "d.jsonl", rows, strlen(rows), "fine-tune", false), 200);
    char file[32], fp[96];
    snprintf(file, sizeof file, "%s", json_string_value(json_object_get(up->json, "id")));
    reply_free(up);
    walk_ok(w, "GET", "/v1/files", "/v1/files", admin, NULL);
    snprintf(fp, sizeof fp, "/v1/files/%s", file);
    walk_ok(w, "GET", "/v1/files/file-{id}", fp, admin, NULL);
    snprintf(fp, sizeof fp, "/v1/files/%s/content", file);
    walk_ok(w, "GET", "/v1/files/file-{id}/content", fp, admin, NULL);
    char ft_body[160];
    snprintf(ft_body, sizeof ft_body,
             "{\"model\":\"scratch\",\"training_file\":\"%s\",\"hyperparameters\":{"
             "\"n_epochs\":1}}",
             file);
    up = walk_route(w, "POST", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs", admin, ft_body, 200);
    char ft[32];
    snprintf(ft, sizeof ft, "%s", json_string_value(json_object_get(up->json, "id")));
    reply_free(up);
    walk_ok(w, "GET", "/v1/fine_tuning/jobs", "/v1/fine_tuning/jobs", admin, NULL);
    snprintf(fp, sizeof fp, "/v1/fine_tuning/jobs/%s", ft);
    walk_ok(w, "GET", "/v1/fine_tuning/jobs/ftjob-{id}", fp, admin, NULL);
    reply_free(wait_job(d, atoll(ft + 6), "succeeded", 0));
    static const char *const ft_reads[] = {"/events", "/checkpoints"};
    for (int i = 0; i < 2; i++) {
        char pattern[96];
        snprintf(pattern, sizeof pattern, "/v1/fine_tuning/jobs/ftjob-{id}%s", ft_reads[i]);
        snprintf(fp, sizeof fp, "/v1/fine_tuning/jobs/%s%s", ft, ft_reads[i]);
        walk_ok(w, "GET", pattern, fp, admin, NULL);
    }
    snprintf(fp, sizeof fp, "/v1/fine_tuning/jobs/ftjob-%lld/cancel",
             (long long)create_job(d, LONG_JOB));
    walk_ok(w, "POST", "/v1/fine_tuning/jobs/ftjob-{id}/cancel", fp, admin, NULL);
    reply_free(
        walk_route(w, "DELETE", "/v1/files/file-{id}", "/v1/files/file-999999", admin, NULL, 404));

    const int64_t project =
        walk_id(w, "POST", "/v1/projects", "/v1/projects", admin, "{\"name\":\"p\"}");
    walk_ok(w, "GET", "/v1/projects", "/v1/projects", admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld", (long long)project);
    walk_ok(w, "GET", "/v1/projects/{id}", p, admin, NULL);
    walk_ok(w, "PATCH", "/v1/projects/{id}", p, admin, "{\"description\":\"d\"}");
    char member[64];
    snprintf(member, sizeof member, "{\"token_id\":%lld}", (long long)annotator_id);
    snprintf(p, sizeof p, "/v1/projects/%lld/members", (long long)project);
    walk_ok(w, "POST", "/v1/projects/{id}/members", p, admin, member);
    walk_ok(w, "GET", "/v1/projects/{id}/members", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld/comparisons", (long long)project);
    walk_ok(w, "POST", "/v1/projects/{id}/comparisons", p, admin,
            "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    walk_ok(w, "GET", "/v1/projects/{id}/comparisons", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld/comparisons/next", (long long)project);
    http_reply *r =
        walk_route(w, "GET", "/v1/projects/{id}/comparisons/next", p, annotator, NULL, 200);
    const int64_t comparison = reply_id(r);
    char order[96];
    json_t *cands = json_object_get(r->json, "candidates");
    snprintf(order, sizeof order, "{\"order\":[[%lld],[%lld]]}",
             (long long)json_integer_value(json_object_get(json_array_get(cands, 0), "id")),
             (long long)json_integer_value(json_object_get(json_array_get(cands, 1), "id")));
    reply_free(r);
    snprintf(p, sizeof p, "/v1/comparisons/%lld", (long long)comparison);
    walk_ok(w, "GET", "/v1/comparisons/{id}", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/comparisons/%lld/rankings", (long long)comparison);
    r = walk_route(w, "POST", "/v1/comparisons/{id}/rankings", p, annotator, order, 200);
    const int64_t ranking = reply_id(r);
    reply_free(r);
    walk_ok(w, "GET", "/v1/comparisons/{id}/rankings", p, admin, NULL);
    walk_ok(w, "GET", "/v1/me/rankings", "/v1/me/rankings", annotator, NULL);
    snprintf(p, sizeof p, "/v1/rankings/%lld", (long long)ranking);
    walk_ok(w, "PUT", "/v1/rankings/{id}", p, annotator, order);
    walk_ok(w, "DELETE", "/v1/rankings/{id}", p, annotator, NULL);
    const char *project_reads[] = {"pairs",     "pairs.jsonl",   "rankings.jsonl",
                                   "agreement", "position_bias", "quality"};
    for (size_t i = 0; i < sizeof project_reads / sizeof project_reads[0]; i++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "/v1/projects/{id}/%s", project_reads[i]);
        snprintf(p, sizeof p, "/v1/projects/%lld/%s", (long long)project, project_reads[i]);
        walk_ok(w, "GET", pattern, p, admin, NULL);
    }
    snprintf(p, sizeof p, "/v1/projects/%lld/export?format=openai", (long long)project);
    walk_ok(w, "GET", "/v1/projects/{id}/export", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld/annotators", (long long)project);
    walk_ok(w, "GET", "/v1/projects/{id}/annotators", p, admin, NULL);
    static const char *const exclusion[] = {"exclude", "include"};
    for (int i = 0; i < 2; i++) {
        char pattern[64];
        snprintf(pattern, sizeof pattern, "/v1/projects/{id}/annotators/{id}/%s", exclusion[i]);
        snprintf(p, sizeof p, "/v1/projects/%lld/annotators/%lld/%s", (long long)project,
                 (long long)annotator_id, exclusion[i]);
        walk_ok(w, "POST", pattern, p, admin, NULL);
    }
    snprintf(p, sizeof p, "/v1/comparisons/%lld/retire", (long long)comparison);
    walk_ok(w, "POST", "/v1/comparisons/{id}/retire", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld/members/%lld", (long long)project,
             (long long)annotator_id);
    walk_ok(w, "DELETE", "/v1/projects/{id}/members/{id}", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/projects/%lld/comparisons/bulk", (long long)project);
    walk_ok(w, "POST", "/v1/projects/{id}/comparisons/bulk", p, admin,
            "[{\"prompt\":\"q2\",\"candidates\":[{\"text\":\"x\"},{\"text\":\"y\"}]}]");

    /* an online loop on that project, cancelled before it trains */
    const int64_t prompts = demo_dataset(d, "prompts", 4, 1);
    char loop_body[256];
    snprintf(loop_body, sizeof loop_body,
             "{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
             "\"rankings_per_round\":1000}",
             (long long)sft, (long long)project, (long long)prompts);
    const int64_t loop = walk_id(w, "POST", "/v1/loops", "/v1/loops", admin, loop_body);
    walk_ok(w, "GET", "/v1/loops", "/v1/loops", admin, NULL);
    snprintf(p, sizeof p, "/v1/loops/%lld", (long long)loop);
    walk_ok(w, "GET", "/v1/loops/{id}", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/loops/%lld/rounds", (long long)loop);
    walk_ok(w, "GET", "/v1/loops/{id}/rounds", p, admin, NULL);
    snprintf(p, sizeof p, "/v1/loops/%lld/cancel", (long long)loop);
    walk_ok(w, "POST", "/v1/loops/{id}/cancel", p, admin, NULL);

    /* The web client's files: whether or not a client is built here. */
    reply_free(walk_route(w, "GET", "/", "/", NULL, NULL, 0));
    reply_free(walk_route(w, "GET", "/assets/{path}", "/assets/missing.js", NULL, NULL, 0));
}

START_TEST(test_api_docs_match_routes) {
    char *doc = read_api_doc();
    json_t *routes = route_table();
    const size_t n_routes = json_array_size(routes);

    /* Every "### `METHOD PATH`" section is a route. */
    for (const char *p = doc; (p = strstr(p, "\n### `")) != NULL; p++) {
        char method[16], path[128];
        ck_assert_int_eq(sscanf(p, "\n### `%15s %127[^`]`", method, path), 2);
        size_t i = 0;
        while (i < n_routes && (strcmp(route_method(routes, i), method) != 0 ||
                                strcmp(route_path(routes, i), path) != 0))
            i++;
        ck_assert_msg(i < n_routes, "docs/api.md documents %s %s, which is not a route", method,
                      path);
    }

    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    char viewer[128], annotator[128];
    make_token(&d, "vera", "viewer", viewer);
    const int64_t annotator_id = make_token(&d, "anna", "annotator", annotator);
    const char *const tokens[3] = {d.admin, annotator, viewer};
    for (size_t i = 0; i < n_routes; i++) {
        char what[160], documented[64], enforced[64];
        snprintf(what, sizeof what, "%s %s", route_method(routes, i), route_path(routes, i));
        size_t len;
        const char *section =
            doc_section(doc, route_method(routes, i), route_path(routes, i), &len);
        const int want = doc_roles(section, what);
        const int got = enforced_roles(&d, tokens, route_method(routes, i), route_path(routes, i));
        roles_text(want, documented, sizeof documented);
        roles_text(got, enforced, sizeof enforced);
        ck_assert_msg(want == got, "%s: docs/api.md says %s; rlhfd lets through %s", what,
                      documented, enforced);
        int listed = 0;
        size_t k;
        json_t *name;
        json_array_foreach(json_object_get(json_array_get(routes, i), "roles"), k,
                           name) for (int r = 0; r < 3;
                                      r++) if (strcmp(json_string_value(name), role_names[r]) == 0)
            listed |= 1 << r;
        ck_assert_msg(listed == got, "%s: rlhfd --routes lists roles %d; it lets through %s", what,
                      listed, enforced);
    }

    bool *walked = calloc(n_routes, sizeof *walked);
    walk w = {.d = &d, .doc = doc, .routes = routes, .walked = walked};
    walk_api(&w, annotator, annotator_id);
    for (size_t i = 0; i < n_routes; i++)
        ck_assert_msg(walked[i], "the walk has no request for %s %s", route_method(routes, i),
                      route_path(routes, i));
    free(walked);
    daemon_stop(&d);
    daemon_cleanup(&d);
    json_decref(routes);
    free(doc);
}
END_TEST

Suite *docs_suite(void) {
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("docs");
    tcase_add_test(tc, test_api_docs_match_routes);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
