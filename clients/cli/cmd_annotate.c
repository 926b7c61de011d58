/* annotate PROJECT --simulate demo: the simulated annotator over HTTP.
 *
 * It does what a person on the annotator page does, through the same API
 * and with the caller's (annotator) token: lease the project's next
 * comparison, rank its candidates, post the ranking; until nothing is left
 * to rank or --max rankings were posted. The judgement is the demo task's
 * (engine/demo_gold.h): each candidate's hidden gold score with
 * Plackett–Luce noise of temperature --noise (0: by gold alone, ties kept),
 * drawn from --seed over the candidates in text order (so the same
 * comparisons in the same order get the same rankings whatever order the
 * server shows them in). This is what drives the online RLHF loop in tests and
 * in `make demo` without a person. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_gold.h"
#include "rlhfctl.h"

int cmd_annotate(const rlhfctl *c, const cli_args *a) {
    const int64_t project = cli_parse_id(a->pos[0], "project ID");
    const char *simulate = cli_opt(a, "simulate");
    const char *noise_text = cli_opt(a, "noise"), *seed_text = cli_opt(a, "seed");
    const char *max_text = cli_opt(a, "max");
    char *end = NULL;
    const double noise = noise_text ? strtod(noise_text, &end) : 0.5;
    if (project <= 0)
        return RLHFCTL_EXIT_USAGE;
    if (simulate == NULL || strcmp(simulate, "demo") != 0)
        return cli_usage_error("--simulate demo is required: the only simulated annotator is the "
                               "demo task's (a person ranks on the web page or with `rank`)");
    if (noise_text && (*end != '\0' || !(noise >= 0) || noise > 1e6))
        return cli_usage_error("--noise must be a number >= 0 (the Plackett-Luce temperature)");
    const long long max = max_text ? strtoll(max_text, &end, 10) : -1;
    if (max_text && (*end != '\0' || max < 0))
        return cli_usage_error("--max must be a count >= 0");
    const unsigned long long seed = seed_text ? strtoull(seed_text, &end, 10) : 1;
    if (seed_text && *end != '\0')
        return cli_usage_error("--seed must be an unsigned integer");
    rng_state rng;
    rng_seed(&rng, seed, 0xA770u);
    char next_path[96];
    snprintf(next_path, sizeof next_path, "/v1/projects/%lld/comparisons/next", (long long)project);
    long long posted = 0;
    int rc = RLHFCTL_EXIT_OK;
    while (max < 0 || posted < max) {
        json_t *cmp = NULL;
        long status = 0;
        rc = api_request_status(c, "GET", next_path, NULL, &cmp, &status);
        const char *code =
            json_string_value(json_object_get(json_object_get(cmp, "error"), "code"));
        if (rc != RLHFCTL_EXIT_OK) {
            const bool done = status == 404 && code && strcmp(code, "no_comparison_available") == 0;
            if (!done && status != 0)
                fprintf(stderr, "rlhfctl: GET %s: HTTP %ld %s\n", next_path, status,
                        code ? code : "");
            json_decref(cmp);
            if (done)
                rc = RLHFCTL_EXIT_OK;
            break;
        }
        const char *prompt = json_string_value(json_object_get(cmp, "prompt"));
        const json_t *cands = json_object_get(cmp, "candidates");
        const size_t k = json_array_size(cands);
        const json_int_t id = json_integer_value(json_object_get(cmp, "id"));
        if (prompt == NULL || k < 2 || k > DEMO_TASK_MAX_K || id <= 0) {
            fprintf(stderr, "rlhfctl: comparison %lld has no prompt or 2..%d candidates\n",
                    (long long)id, DEMO_TASK_MAX_K);
            json_decref(cmp);
            rc = RLHFCTL_EXIT_API;
            break;
        }
        /* The noise is drawn over the candidates sorted by text, not in the
         * order shown: the server shuffles that order per annotator token
         * and comparison id, so the same texts would get other draws in
         * another project (and the same loop twice, other rankings). */
        const char *texts[DEMO_TASK_MAX_K];
        size_t by_text[DEMO_TASK_MAX_K];
        for (size_t j = 0; j < k; j++) {
            const char *text = json_string_value(json_object_get(json_array_get(cands, j), "text"));
            texts[j] = text ? text : "";
            size_t at = j; /* insertion sort: k <= DEMO_TASK_MAX_K */
            for (; at > 0 && strcmp(texts[by_text[at - 1]], texts[j]) > 0; at--)
                by_text[at] = by_text[at - 1];
            by_text[at] = j;
        }
        double gold[DEMO_TASK_MAX_K];
        int sorted_rank[DEMO_TASK_MAX_K], rank[DEMO_TASK_MAX_K];
        for (size_t j = 0; j < k; j++)
            gold[j] = demo_task_gold_score(prompt, texts[by_text[j]]);
        demo_task_rank(gold, (int)k, noise, &rng, sorted_rank);
        for (size_t j = 0; j < k; j++)
            rank[by_text[j]] = sorted_rank[j];
        /* groups best first: candidates of rank 0, then the next rank, ... */
        json_t *order = json_array();
        for (int r = 0; r < (int)k; r++) {
            json_t *group = json_array();
            for (size_t j = 0; j < k; j++)
                if (rank[j] == r)
                    json_array_append(group, json_object_get(json_array_get(cands, j), "id"));
            if (json_array_size(group) > 0)
                json_array_append(order, group);
            json_decref(group);
        }
        json_t *body = json_pack("{s:o}", "order", order);
        char path[96];
        snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)id);
        rc = api_request(c, "POST", path, body, NULL);
        json_decref(body);
        json_decref(cmp);
        if (rc != RLHFCTL_EXIT_OK)
            break;
        posted++;
    }
    if (c->json_output)
        printf("{\"object\":\"annotation_run\",\"project_id\":%lld,\"rankings_posted\":%lld}\n",
               (long long)project, posted);
    else
        printf("%lld rankings posted to project %lld\n", posted, (long long)project);
    return rc;
}
