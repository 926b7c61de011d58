/* The hyperparameter table: defaults, JSON and flag parsing, all-or-nothing
 * errors that name the key, and the generated docs staying in sync. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "jobs.h"
#include "ppo_control.h"
#include "suites.h"
#include "test_util.h"

static const hparam_table *T = &ppo_control_hparams;

/* Applies JSON text; returns rc and leaves the message in err. */
static int apply(ppo_control_config *cfg, const char *text, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *obj = json_loads(text, 0, &jerr);
    ck_assert_msg(obj != NULL, "bad test JSON: %s", jerr.text);
    int rc = hparams_apply_json(T, cfg, obj, err, errlen);
    json_decref(obj);
    return rc;
}

START_TEST(test_defaults_follow_the_table) {
    ppo_control_config cfg;
    hparams_set_defaults(T, &cfg);
    ck_assert_str_eq(cfg.env, "CartPole-v1");
    ck_assert_int_eq(cfg.num_envs, 4);
    ck_assert_int_eq(cfg.num_steps, 128);
    ck_assert_double_eq(cfg.learning_rate, 2.5e-4);
    ck_assert(cfg.anneal_lr && cfg.norm_adv && cfg.clip_vloss && !cfg.shared_trunk);
    ck_assert_str_eq(cfg.activation, "tanh");
    /* Every row's default lies in its own range. */
    for (int i = 0; i < T->n; i++) {
        const hparam_def *d = &T->defs[i];
        if (d->type == HPARAM_INT || d->type == HPARAM_FLOAT)
            ck_assert_msg(d->default_value >= d->min && d->default_value <= d->max,
                          "default of %s outside its range", d->name);
    }
}
END_TEST

START_TEST(test_json_applies_and_rejects_naming_the_key) {
    ppo_control_config cfg, before;
    char err[256];
    hparams_set_defaults(T, &cfg);
    ck_assert_int_eq(apply(&cfg,
                           "{\"num_envs\": 8, \"gamma\": 0.98, \"anneal_lr\": false, "
                           "\"env\": \"Acrobot-v1\", \"total_steps\": 1e5}",
                           err, sizeof err),
                     0);
    ck_assert_int_eq(cfg.num_envs, 8);
    ck_assert_double_eq(cfg.gamma, 0.98);
    ck_assert(!cfg.anneal_lr);
    ck_assert_str_eq(cfg.env, "Acrobot-v1");
    ck_assert_int_eq(cfg.total_steps, 100000);

    const struct {
        const char *json, *must_mention;
    } bad[] = {
        {"{\"num_env\": 8}", "unknown hyperparameter 'num_env'"},
        {"{\"num_envs\": \"8\"}", "'num_envs' must be an integer"},
        {"{\"num_envs\": 0}", "'num_envs' must be an integer in [1, 4096], got 0"},
        {"{\"num_envs\": 2.5}", "'num_envs'"},
        {"{\"gamma\": 1.5}", "'gamma' must be a number in [0, 1], got 1.5"},
        {"{\"gamma\": true}", "'gamma' must be a number"},
        {"{\"anneal_lr\": 1}", "'anneal_lr' must be true or false"},
        {"{\"activation\": \"sigmoid\"}", "'activation' must be one of tanh, relu, gelu"},
        {"{\"env\": 3}", "'env' must be a string"},
        {"[1, 2]", "JSON object"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        memcpy(&before, &cfg, sizeof cfg);
        /* A good key before the bad one must not be applied either. */
        char text[256];
        if (bad[k].json[0] == '{')
            snprintf(text, sizeof text, "{\"seed\": 99, %s", bad[k].json + 1);
        else
            snprintf(text, sizeof text, "%s", bad[k].json);
        ck_assert_int_eq(apply(&cfg, text, err, sizeof err), -1);
        ck_assert_msg(strstr(err, bad[k].must_mention) != NULL, "'%s' gave '%s'", text, err);
        ck_assert_int_eq(memcmp(&before, &cfg, sizeof cfg), 0);
    }
}
END_TEST

START_TEST(test_flags_parse_against_the_table) {
    ppo_control_config cfg;
    char err[256];
    hparams_set_defaults(T, &cfg);
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "num-envs", "16", err, sizeof err), 0);
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "clip_coef", "0.1", err, sizeof err), 0);
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "norm-adv", "false", err, sizeof err), 0);
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "activation", "relu", err, sizeof err), 0);
    ck_assert_int_eq(cfg.num_envs, 16);
    ck_assert_double_eq(cfg.clip_coef, 0.1);
    ck_assert(!cfg.norm_adv);
    ck_assert_str_eq(cfg.activation, "relu");
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "num-envs", "16x", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'num_envs' must be an integer"));
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "learning-rate", "nan", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'learning_rate'"));
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "norm-adv", "maybe", err, sizeof err), -1);
    ck_assert_int_eq(hparams_apply_string(T, &cfg, "nope", "1", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown hyperparameter 'nope'"));
}
END_TEST

START_TEST(test_describe_lists_every_row) {
    json_t *d = hparams_describe(T);
    ck_assert_int_eq((int)json_array_size(d), T->n);
    json_t *env = json_array_get(d, 0);
    ck_assert_str_eq(json_string_value(json_object_get(env, "name")), "env");
    ck_assert_str_eq(json_string_value(json_object_get(env, "type")), "choice");
    ck_assert_int_ge((int)json_array_size(json_object_get(env, "choices")), 2);
    size_t i;
    json_t *row;
    json_array_foreach(d, i, row) {
        ck_assert_ptr_nonnull(json_object_get(row, "default"));
        ck_assert_int_gt((int)strlen(json_string_value(json_object_get(row, "doc"))), 5);
    }
    json_decref(d);
    /* to_json then apply_json round-trips. */
    ppo_control_config a, b;
    char err[128];
    hparams_set_defaults(T, &a);
    a.num_envs = 7;
    hparams_set_defaults(T, &b);
    json_t *j = hparams_to_json(T, &a);
    ck_assert_int_eq(hparams_apply_json(T, &b, j, err, sizeof err), 0);
    json_decref(j);
    ck_assert_int_eq(memcmp(&a, &b, sizeof a), 0);
}
END_TEST

/* Every env the table offers exists, and every env that exists is offered. */
START_TEST(test_env_choices_match_the_registry) {
    const hparam_def *d = hparams_find(T, "env");
    int n = 0;
    for (const char *const *c = d->choices; *c; c++, n++)
        ck_assert_ptr_nonnull(env_find(*c));
    int m = 0;
    for (const env_spec *const *e = env_all; *e; e++, m++)
        ;
    ck_assert_int_eq(n, m);
}
END_TEST

/* docs/hyperparameters.md is generated from the tables (`make docs`); this
 * fails when someone changes a table and forgets to regenerate. */
START_TEST(test_generated_docs_are_current) {
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/hyperparameters.md", test_repo_dir());
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "missing %s (run make docs)", path);
    static char committed[1 << 16], fresh[1 << 16];
    size_t n = fread(committed, 1, sizeof committed - 1, f);
    fclose(f);
    committed[n] = '\0';
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "%s/rlhf-train describe --markdown", test_build_dir());
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t m = fread(fresh, 1, sizeof fresh - 1, p);
    pclose(p);
    fresh[m] = '\0';
    ck_assert_msg(strcmp(committed, fresh) == 0, "docs/hyperparameters.md is stale: run make docs");
}
END_TEST

Suite *hparams_suite(void) {
    Suite *s = suite_create("hparams");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_defaults_follow_the_table);
    tcase_add_test(tc, test_json_applies_and_rejects_naming_the_key);
    tcase_add_test(tc, test_flags_parse_against_the_table);
    tcase_add_test(tc, test_describe_lists_every_row);
    tcase_add_test(tc, test_env_choices_match_the_registry);
    tcase_add_test(tc, test_generated_docs_are_current);
    suite_add_tcase(s, tc);
    return s;
}
