#include "cli.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blas_setup.h"
#include "chat_template.h"
#include "hf_tokenizer.h"
#include "cli_sink.h"
#include "demo_eval.h"
#include "demo_task.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "llama_hf.h"
#include "llama_lora.h"
#include "lora.h"
#include "model.h"
#include "safetensors.h"
#include "jsonl_data.h"
#include "db_job.h"
#include "dist_job.h"
#include "jobs.h"

enum { EXIT_TRAINING_FAILED = 1, EXIT_USAGE = 2 };

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int describe(int argc, char **argv);
static int demo_data(int argc, char **argv);
static int demo_rankings(int argc, char **argv);
static int export_hf(int argc, char **argv);
static int tokenize_rows(int argc, char **argv);
static int logprobs_rows(int argc, char **argv);
static int features(int argc, char **argv);

/* The commands beside the job types: name, usage after the name, summary. */
static const struct command {
    const char *name, *args, *summary;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"describe", "[TYPE] [--markdown]",
     "a job type's hyperparameters (JSON; --markdown: docs/hyperparameters.md)", describe},
    {"demo-data", "--out FILE.jsonl [--n N] [--seed S]", "writes the demo task's SFT data",
     demo_data},
    {"demo-rankings",
     "--policy SFT.safetensors --out FILE.jsonl [--n N] [--k 2..9] [--seed S] [--temperature T]",
     "ranks policy samples like a (simulated) annotator", demo_rankings},
    {"demo-eval",
     "--policy CKPT [--ref CKPT] [--reward-model CKPT] [--tokenizer-dir DIR] [--n N] [--seed S] "
     "[--temperature T] [--max-tokens 1..64] [--rankings FILE.jsonl] [--samples-out FILE.jsonl]",
     "measures a policy on the demo task (gold, proxy, KL)", rlhf_demo_eval_main},
    {"export-hf",
     "--checkpoint FILE.safetensors --out DIR [--dtype f32|bf16] [--tokenizer-dir DIR]",
     "writes a checkpoint as a Hugging Face directory (GPT-2 or Llama family; a LoRA "
     "checkpoint merged, with its PEFT adapter)",
     export_hf},
    {"tokenize", "--init DIR [--data FILE.jsonl] [--chat-format chatml|qwen3|llama3|llama2]",
     "prints the token ids of each {\"text\"} or {\"messages\"} row (Hugging Face "
     "tokenizer.json, chat template)",
     tokenize_rows},
    {"logprobs",
     "--init CKPT|HF_DIR [--data FILE.jsonl] [--tokenizer-dir DIR] "
     "[--chat-format chatml|qwen3|llama3|llama2]",
     "prints each row's tokens and log p(token | the tokens before) under the model",
     logprobs_rows},
    {"features", "", "what this build can do: {\"mpi\": library or null}", features},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const char run_options_usage[] =
    "[--config FILE.json] [--threads N] [--checkpoint-dir DIR]\n"
    "           [--data FILE.jsonl] [--eval-data FILE.jsonl] [--init CKPT|HF_DIR]\n"
    "           [--reward-model CKPT] [--resume CKPT] [--tokenizer-dir DIR]\n"
    "           [--quiet] [--<hyperparameter> VALUE]...";

void rlhf_train_command_usage(FILE *out, const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            fprintf(out, "usage: rlhf-train %s %s\n", name, commands[i].args);
}

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: rlhf-train TYPE %s\n"
            "       rlhf-train COMMAND [ARGS]   (`rlhf-train COMMAND --help`)\n"
            "       rlhf-train --db FILE --job ID   (rlhfd's worker: runs job ID of the database)\n"
            "\njob types (`rlhf-train TYPE --help` lists its hyperparameters):\n",
            run_options_usage);
    for (const job_type *const *t = job_types; *t; t++)
        fprintf(out, "  %-14s %s\n", (*t)->name, (*t)->summary);
    fprintf(out, "\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`mpirun -np N rlhf-train TYPE ...` trains data parallel on N ranks (");
    const char *sep = "";
    for (const job_type *const *t = job_types; *t; t++)
        if ((*t)->data_parallel)
            fprintf(out, "%s%s", sep, (*t)->name), sep = ", ";
    fprintf(out, "; built with MPI if `rlhf-train features` names it).\n");
}

/* `rlhf-train TYPE --help`: the usage, the summary and the hyperparameters. */
static void print_type_help(const job_type *type) {
    printf("usage: rlhf-train %s %s\n\n%s.\n\nhyperparameters (--name VALUE, or keys of "
           "--config FILE.json):\n",
           type->name, run_options_usage, type->summary);
    hparams_write_help(type->hparams, "--", stdout);
}

/* 1 if one of argv[2..] asks for help. */
static int wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

static int features(int argc, char **argv) {
    (void)argv;
    if (argc != 2) {
        rlhf_train_command_usage(stderr, "features");
        return EXIT_USAGE;
    }
    /* what this build can do: {"mpi": "Open MPI v4.1.4"} or {"mpi": null} */
    printf("{\"mpi\":%s%s%s}\n", rlhf_train_mpi_library ? "\"" : "",
           rlhf_train_mpi_library ? rlhf_train_mpi_library : "null",
           rlhf_train_mpi_library ? "\"" : "");
    return 0;
}

static int describe(int argc, char **argv) {
    const char *name = NULL;
    int markdown = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0)
            markdown = 1;
        else if (name == NULL)
            name = argv[i];
        else {
            fprintf(stderr, "rlhf-train describe: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    const job_type *only = NULL;
    if (name != NULL && (only = job_type_find(name)) == NULL) {
        fprintf(stderr, "rlhf-train describe: unknown job type '%s'\n", name);
        return EXIT_USAGE;
    }
    if (markdown) {
        printf("# Hyperparameters\n\nGenerated by `rlhf-train describe --markdown` from the tables "
               "in engine/; do not edit by hand (`make docs`).\n");
        for (const job_type *const *t = job_types; *t; t++) {
            if (only && *t != only)
                continue;
            printf("\n## %s\n\n%s.\n\n", (*t)->name, (*t)->summary);
            hparams_write_markdown((*t)->hparams, stdout);
        }
        return 0;
    }
    json_t *out = json_object();
    for (const job_type *const *t = job_types; *t; t++) {
        if (only && *t != only)
            continue;
        json_object_set_new(out, (*t)->name,
                            json_pack("{s:s, s:o}", "summary", (*t)->summary, "hyperparameters",
                                      hparams_describe((*t)->hparams)));
    }
    json_t *shown = only ? json_incref(json_object_get(out, only->name)) : json_incref(out);
    json_dumpf(shown, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(shown);
    json_decref(out);
    return 0;
}

typedef struct run_options {
    const char *config_path;
    const char *checkpoint_dir;
    const char *data_path;      /* --data: training examples (JSONL) */
    const char *eval_data_path; /* --eval-data */
    const char *init_path;      /* --init: starting weights (model_open: a checkpoint or HF dir) */
    const char *resume_path;    /* --resume: a resumable checkpoint of this job */
    const char *reward_path;    /* --reward-model: ppo's reward model */
    const char *tokenizer_dir;  /* --tokenizer-dir: GPT-2 BPE files */
    int threads;
    int quiet;
    bool context_given; /* --context or the config file's "context" */
} run_options;

/* Parses the options of `rlhf-train TYPE ...` into opts and cfg. Flags are
 * applied after the config file whatever their position, so a flag always
 * overrides the file. */
static int parse_run_args(const job_type *type, int argc, char **argv, run_options *opts,
                          void *cfg) {
    char err[512];
    hparams_set_defaults(type->hparams, cfg);
    /* Pass 1: the options that are not hyperparameters, and the config file. */
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--quiet") == 0) {
            opts->quiet = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "rlhf-train: unexpected argument '%s'\n", arg);
            return -1;
        }
        if (strchr(arg, '=') == NULL && value == NULL) {
            fprintf(stderr, "rlhf-train: option '%s' needs a value\n", arg);
            return -1;
        }
        if (strchr(arg, '=') == NULL)
            i++;
        if (strcmp(arg, "--config") == 0)
            opts->config_path = value;
        else if (strcmp(arg, "--checkpoint-dir") == 0)
            opts->checkpoint_dir = value;
        else if (strcmp(arg, "--data") == 0)
            opts->data_path = value;
        else if (strcmp(arg, "--eval-data") == 0)
            opts->eval_data_path = value;
        else if (strcmp(arg, "--init") == 0)
            opts->init_path = value;
        else if (strcmp(arg, "--resume") == 0)
            opts->resume_path = value;
        else if (strcmp(arg, "--reward-model") == 0)
            opts->reward_path = value;
        else if (strcmp(arg, "--tokenizer-dir") == 0)
            opts->tokenizer_dir = value;
        else if (strcmp(arg, "--threads") == 0) {
            char *end;
            long t = strtol(value, &end, 10);
            if (*end != '\0' || t < 1 || t > 256) {
                fprintf(stderr, "rlhf-train: --threads must be an integer in [1, 256], got '%s'\n",
                        value);
                return -1;
            }
            opts->threads = (int)t;
        }
    }
    if (opts->config_path != NULL) {
        json_error_t jerr;
        json_t *obj = json_load_file(opts->config_path, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL) {
            fprintf(stderr, "rlhf-train: %s:%d:%d: %s\n", opts->config_path, jerr.line, jerr.column,
                    jerr.text);
            return -1;
        }
        int rc = hparams_apply_json(type->hparams, cfg, obj, err, sizeof err);
        opts->context_given |= json_object_get(obj, "context") != NULL;
        json_decref(obj);
        if (rc != 0) {
            fprintf(stderr, "rlhf-train: %s: %s\n", opts->config_path, err);
            return -1;
        }
    }
    /* Pass 2: hyperparameter flags, --name VALUE or --name=VALUE. */
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--quiet") == 0)
            continue;
        char name[128];
        const char *eq = strchr(arg, '=');
        const char *value;
        if (eq != NULL) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg + 2);
            value = argv[++i];
        }
        static const char *const run_options_names[] = {
            "config", "checkpoint-dir", "threads",       "data",         "eval-data",
            "init",   "resume",         "tokenizer-dir", "reward-model", NULL};
        int is_option = 0;
        for (const char *const *o = run_options_names; *o; o++)
            is_option |= strcmp(name, *o) == 0;
        if (is_option)
            continue;
        if (hparams_apply_string(type->hparams, cfg, name, value, err, sizeof err) != 0) {
            fprintf(stderr, "rlhf-train: --%s: %s\n", name, err);
            return -1;
        }
        opts->context_given |= strcmp(name, "context") == 0;
    }
    if (type->needs_train_data && opts->data_path == NULL) {
        fprintf(stderr, "rlhf-train: %s needs --data FILE.jsonl\n", type->name);
        return -1;
    }
    if (!type->needs_train_data && (opts->data_path || opts->eval_data_path || opts->init_path ||
                                    opts->tokenizer_dir || opts->reward_path)) {
        fprintf(stderr,
                "rlhf-train: %s takes no --data, --eval-data, --init, --reward-model or "
                "--tokenizer-dir\n",
                type->name);
        return -1;
    }
    if (type->validate(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train: %s\n", err);
        return -1;
    }
    return 0;
}

static int run_job(const job_type *type, int argc, char **argv) {
    void *cfg = calloc(1, type->hparams->config_bytes);
    run_options opts = {.threads = 1};
    char resolve_err[512];
    if (cfg == NULL || parse_run_args(type, argc, argv, &opts, cfg) != 0) {
        free(cfg);
        return EXIT_USAGE;
    }
    /* What the init model sizes (its shape), as the trainer will use it; a
     * context asked for must fit its positions (the default is lowered). */
    const char *model_path = opts.resume_path ? opts.resume_path : opts.init_path;
    if ((opts.context_given &&
         job_check_context(type, cfg, model_path, resolve_err, sizeof resolve_err) != 0) ||
        job_config_from_model(type, cfg, model_path, resolve_err, sizeof resolve_err) < 0) {
        fprintf(stderr, "rlhf-train: %s\n", resolve_err);
        free(cfg);
        return EXIT_USAGE;
    }
    openblas_set_num_threads(opts.threads);
    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL); /* mpirun forwards it to the ranks; rank 0 decides */

    cli_sink cs = {.type = type,
                   .json_out = stdout,
                   .human_out = opts.quiet ? NULL : stderr,
                   .checkpoint_dir = opts.checkpoint_dir,
                   .stop_flag = &stop_requested};
    /* The resolved configuration first, so every run's output says exactly
     * what ran. */
    json_t *resolved = hparams_to_json(type->hparams, cfg);
    json_t *line =
        json_pack("{s:s, s:s, s:o, s:i, s:s}", "event", "config", "job_type", type->name, "config",
                  resolved, "threads", opts.threads, "blas_core", blas_core_name());
    if (dist_size(rlhf_train_dist) > 1)
        json_object_set_new(line, "ranks", json_integer(dist_size(rlhf_train_dist)));
    json_dumpf(line, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    putchar('\n');
    fflush(stdout);
    json_decref(line);

    train_sink sink = cli_sink_make(&cs);
    char err[512] = "";
    text_pairs train = {0}, eval = {0};
    ranking_set rtrain = {0}, reval = {0};
    const int rankings = type->data_kind == JOB_DATA_RANKINGS;
    int load_rc = 0;
    if (opts.data_path)
        load_rc = rankings ? rankings_load_jsonl(&rtrain, opts.data_path, err, sizeof err)
                  : type->data_kind == JOB_DATA_PROMPTS
                      ? prompts_load_jsonl(&train, opts.data_path, err, sizeof err)
                      : text_pairs_load_jsonl(&train, opts.data_path, err, sizeof err);
    if (load_rc == 0 && opts.eval_data_path)
        load_rc = rankings ? rankings_load_jsonl(&reval, opts.eval_data_path, err, sizeof err)
                  : type->data_kind == JOB_DATA_PROMPTS
                      ? prompts_load_jsonl(&eval, opts.eval_data_path, err, sizeof err)
                      : text_pairs_load_jsonl(&eval, opts.eval_data_path, err, sizeof err);
    int rc = -1;
    if (load_rc == 0) {
        const job_inputs inputs = {.train = train.items,
                                   .n_train = train.n,
                                   .eval = eval.items,
                                   .n_eval = eval.n,
                                   .rankings = rtrain.items,
                                   .n_rankings = rtrain.n,
                                   .eval_rankings = reval.items,
                                   .n_eval_rankings = reval.n,
                                   .init_checkpoint = opts.init_path,
                                   .resume_checkpoint = opts.resume_path,
                                   .tokenizer_dir = opts.tokenizer_dir,
                                   .reward_checkpoint = opts.reward_path,
                                   .dist = rlhf_train_dist};
        /* the other ranks of an mpirun get the job now (dist_job.h) */
        load_rc = dist_job_send(rlhf_train_dist, type, cfg, opts.threads, &inputs, err, sizeof err);
        if (load_rc == 0)
            rc = type->run(cfg, &inputs, &sink, err, sizeof err);
    }
    text_pairs_free(&train);
    text_pairs_free(&eval);
    ranking_set_free(&rtrain);
    ranking_set_free(&reval);
    if (load_rc != 0) {
        fprintf(stderr, "rlhf-train: %s\n", err);
        free(cfg);
        return EXIT_USAGE;
    }
    cli_sink_finish(&cs);
    free(cfg);
    if (rc != 0) {
        fprintf(stderr, "rlhf-train: %s failed: %s\n", type->name, err);
        return EXIT_TRAINING_FAILED;
    }
    if (stop_requested && !opts.quiet)
        fprintf(stderr, "rlhf-train: stopped by signal\n");
    return 0;
}

/* rlhf-train demo-data --out FILE.jsonl [--n N] [--seed S]: the demo task's
 * SFT examples (engine/demo_task.h), deterministic for a seed. */
static int demo_data(int argc, char **argv) {
    const char *out_path = NULL;
    long n = 2000, seed = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--out") == 0)
            out_path = argv[i + 1];
        else if (strcmp(argv[i], "--n") == 0)
            n = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtol(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "rlhf-train demo-data: unknown option '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (out_path == NULL || n < 1 || n > 10000000 || (argc - 2) % 2 != 0) {
        rlhf_train_command_usage(stderr, "demo-data");
        return EXIT_USAGE;
    }
    FILE *f = fopen(out_path, "w");
    if (f == NULL) {
        fprintf(stderr, "rlhf-train demo-data: cannot write %s\n", out_path);
        return EXIT_TRAINING_FAILED;
    }
    rng_state rng;
    rng_seed(&rng, (uint64_t)seed, 0xD0000001u);
    for (long i = 0; i < n; i++) {
        char prompt[128], response[256];
        demo_task_example(&rng, prompt, sizeof prompt, response, sizeof response);
        json_t *line = json_pack("{s:s, s:s}", "prompt", prompt, "response", response);
        json_dumpf(line, f, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fputc('\n', f);
        json_decref(line);
    }
    return fclose(f) == 0 ? 0 : EXIT_TRAINING_FAILED;
}

/* rlhf-train demo-rankings --policy SFT.safetensors --out FILE.jsonl [--n N]
 *     [--k K] [--seed S] [--temperature T]: the simulated annotator. For N
 * demo prompts it samples K responses from the policy and ranks them by the
 * hidden gold score (engine/demo_task.h) with Plackett–Luce noise of
 * temperature T (Gumbel-perturbed scores; for K = 2 exactly Bradley–Terry,
 * P(a > b) = σ((g_a - g_b) / T)); T = 0 ranks by the gold score, ties kept. */
static int demo_rankings(int argc, char **argv) {
    const char *policy_path = NULL, *out_path = NULL;
    long n = 500, k = 4, seed = 1;
    double temperature = 0.5;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (strcmp(o, "--policy") == 0)
            policy_path = v;
        else if (strcmp(o, "--out") == 0)
            out_path = v;
        else if (strcmp(o, "--n") == 0)
            n = strtol(v, NULL, 10);
        else if (strcmp(o, "--k") == 0)
            k = strtol(v, NULL, 10);
        else if (strcmp(o, "--seed") == 0)
            seed = strtol(v, NULL, 10);
        else if (strcmp(o, "--temperature") == 0)
            temperature = strtod(v, NULL);
        else {
            fprintf(stderr, "rlhf-train demo-rankings: unknown option '%s'\n", o);
            return EXIT_USAGE;
        }
    }
    if (!policy_path || !out_path || n < 1 || k < 2 || k > RANKING_MAX_K || temperature < 0 ||
        (argc - 2) % 2 != 0) {
        rlhf_train_command_usage(stderr, "demo-rankings");
        return EXIT_USAGE;
    }
    char err[512];
    model m;
    tokenizer tok;
    if (model_load(policy_path, NULL, &m, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train demo-rankings: %s\n", err);
        return EXIT_USAGE;
    }
    if (tokenizer_load_bytes(&tok, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train demo-rankings: %s\n", err);
        model_free(&m);
        return EXIT_USAGE;
    }
    FILE *out = fopen(out_path, "w");
    rng_state rng, noise;
    rng_seed(&rng, (uint64_t)seed, 0xD0000002u);
    rng_seed(&noise, (uint64_t)seed, 0xD0000003u);
    const int rc = out ? 0 : EXIT_TRAINING_FAILED;
    for (long i = 0; i < n && rc == 0; i++) {
        char prompt[128], texts[RANKING_MAX_K][DEMO_TASK_RESPONSE_BYTES];
        int rank[RANKING_MAX_K];
        bool usable = demo_task_annotate(&m, &tok, (int)k, temperature, &rng, &noise, prompt,
                                         sizeof prompt, texts, rank);
        json_t *responses = json_array(), *ranks = json_array();
        for (int j = 0; j < k; j++) {
            json_t *js = json_string(texts[j]); /* NULL: the model wrote invalid UTF-8 */
            usable &= js != NULL;
            json_array_append_new(responses, js ? js : json_string(""));
            json_array_append_new(ranks, json_integer(rank[j]));
        }
        /* an all-tie ranking says nothing, and JSON cannot carry invalid UTF-8: not written */
        if (usable) {
            json_t *line = json_pack("{s:s, s:O, s:O}", "prompt", prompt, "responses", responses,
                                     "ranks", ranks);
            json_dumpf(line, out, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', out);
            json_decref(line);
        }
        json_decref(responses);
        json_decref(ranks);
    }
    const bool closed = out == NULL || fclose(out) == 0;
    tokenizer_free(&tok);
    model_free(&m);
    return closed ? rc : EXIT_TRAINING_FAILED;
}

/* Writes buf (n bytes, or text when n is 0) to dir/name; 0 or -1 with err. */
static int write_file(const char *dir, const char *name, const void *buf, size_t n, char *err,
                      size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *out = fopen(path, "wb");
    int rc = out == NULL;
    if (out != NULL && n == 0)
        rc = fputs(buf, out) < 0 || fputc('\n', out) == EOF;
    else if (out != NULL)
        rc = fwrite(buf, 1, n, out) != n;
    rc |= out != NULL && fclose(out) != 0;
    if (rc != 0)
        snprintf(err, errlen, "cannot write %.480s", path);
    return rc ? -1 : 0;
}

/* A checkpoint trained with LoRA carries its adapters: DIR/adapter/ gets
 * them as PEFT saves them (adapter_model.safetensors, adapter_config.json),
 * for PeftModel.from_pretrained on the base the run started from. They sit
 * in a subdirectory because transformers treats a directory holding an
 * adapter_config.json as an adapter, not as the (merged) model. */
static int export_adapter(const char *in_path, const gpt2_config *gc, const char *out_dir,
                          char *err, size_t errlen) {
    struct stat st;
    if (stat(in_path, &st) != 0 || !S_ISREG(st.st_mode)) /* a HF directory: no adapters */
        return 0;
    safetensors_file f;
    if (safetensors_read_file(&f, in_path, err, errlen) != 0)
        return -1;
    model_lora lora = {0};
    const int has =
        lora_file_info(&f, gc->n_layer, &lora.r, &lora.alpha, &lora.targets, err, errlen);
    safetensors_free(&f);
    if (has <= 0)
        return has;
    /* the adapters attached before loading receive the file's own */
    const model_open_options opt = {.lora = &lora};
    gpt2_model m;
    if (model_open(in_path, &opt, &m, NULL, err, errlen) != 0)
        return -1;
    int rc = 0;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/adapter", out_dir);
    if (rc == 0 && mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %.480s: %s", dir, strerror(errno));
        rc = -1;
    }
    size_t n = 0;
    void *bytes = rc == 0 ? gpt2_lora_serialize(&m, &n) : NULL;
    char *config = rc == 0 ? gpt2_lora_config_json(&m) : NULL;
    if (rc == 0 && (bytes == NULL || config == NULL)) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc == 0)
        rc = write_file(dir, "adapter_model.safetensors", bytes, n, err, errlen);
    if (rc == 0)
        rc = write_file(dir, "adapter_config.json", config, 0, err, errlen);
    free(bytes);
    free(config);
    gpt2_free(&m);
    return rc;
}

/* Copies the tokenizer files of a model directory into out_dir (those present). */
static int copy_tokenizer_files(const char *from, const char *out_dir, char *err, size_t errlen) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", from, names[i]);
        FILE *in = fopen(path, "rb");
        if (in == NULL)
            continue;
        char *buf = NULL;
        size_t n = 0, cap = 0, got;
        do {
            if (n + 65536 > cap) {
                char *grown = realloc(buf, cap = cap * 2 + 65536);
                if (grown == NULL)
                    break;
                buf = grown;
            }
            got = fread(buf + n, 1, cap - n, in);
            n += got;
        } while (got > 0);
        fclose(in);
        const int rc = buf ? write_file(out_dir, names[i], buf, n, err, errlen) : -1;
        if (buf == NULL)
            snprintf(err, errlen, "out of memory copying %.480s", path);
        free(buf);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The Llama family's export (model_export_llama_hf) plus the tokenizer
 * files of tokenizer_dir when given. */
static int export_llama(const char *in_path, const char *out_dir, safetensors_dtype dtype,
                        const char *tokenizer_dir, char *err, size_t errlen) {
    if (model_export_llama_hf(in_path, out_dir, dtype, err, errlen) != 0)
        return -1;
    return tokenizer_dir != NULL ? copy_tokenizer_files(tokenizer_dir, out_dir, err, errlen) : 0;
}

/* rlhf-train export-hf --checkpoint FILE.safetensors --out DIR [--dtype
 * f32|bf16]: a Hugging Face directory that from_pretrained loads. GPT-2:
 * DIR/model.safetensors (weights only: no trainer state; LoRA adapters
 * merged; f32 or bf16) and DIR/config.json (GPT2Config), plus DIR/adapter/
 * when the checkpoint has adapters; the Llama family: export_llama. */
static int export_hf(int argc, char **argv) {
    const char *in_path = NULL, *out_dir = NULL, *dtype_name = "f32", *tokenizer_dir = NULL;
    int bad = (argc - 2) % 2 != 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--checkpoint") == 0)
            in_path = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            out_dir = argv[i + 1];
        else if (strcmp(argv[i], "--dtype") == 0)
            dtype_name = argv[i + 1];
        else if (strcmp(argv[i], "--tokenizer-dir") == 0)
            tokenizer_dir = argv[i + 1];
        else
            bad = 1;
    }
    const bool bf16 = strcmp(dtype_name, "bf16") == 0;
    if (in_path == NULL || out_dir == NULL || bad || (!bf16 && strcmp(dtype_name, "f32") != 0)) {
        rlhf_train_command_usage(stderr, "export-hf");
        return EXIT_USAGE;
    }
    char err[512], path[4200];
    model_family family;
    if (model_source_family(in_path, &family, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train export-hf: %s\n", err);
        return EXIT_USAGE;
    }
    if (family == MODEL_FAMILY_LLAMA) {
        if (export_llama(in_path, out_dir, bf16 ? SAFETENSORS_BF16 : SAFETENSORS_F32, tokenizer_dir,
                         err, sizeof err) != 0) {
            fprintf(stderr, "rlhf-train export-hf: %s\n", err);
            return EXIT_TRAINING_FAILED;
        }
        return 0;
    }
    if (tokenizer_dir != NULL) {
        fprintf(stderr, "rlhf-train export-hf: --tokenizer-dir is for Llama-family checkpoints "
                        "(a GPT-2 tokenizer's vocab.json and merges.txt do not change)\n");
        return EXIT_USAGE;
    }
    gpt2_model m;
    if (model_open(in_path, NULL, &m, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train export-hf: %s\n", err);
        return EXIT_USAGE;
    }
    const gpt2_config gc = m.cfg;
    int rc = 0;
    if (export_adapter(in_path, &gc, out_dir, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train export-hf: %s\n", err);
        gpt2_free(&m);
        return EXIT_TRAINING_FAILED;
    }
    size_t n = 0;
    void *bytes =
        rc == 0 ? gpt2_export_serialize(&m, bf16 ? SAFETENSORS_BF16 : SAFETENSORS_F32, &n) : NULL;
    char *config = gpt2_hf_config_json(&gc);
    FILE *out = NULL;
    if (bytes != NULL && config != NULL) {
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        out = fopen(path, "wb");
        rc = out == NULL || fwrite(bytes, 1, n, out) != n;
        rc |= out != NULL && fclose(out) != 0;
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        out = rc == 0 ? fopen(path, "w") : NULL;
        rc |= out == NULL || fputs(config, out) < 0 || fputc('\n', out) == EOF;
        rc |= out != NULL && fclose(out) != 0;
        if (rc != 0)
            snprintf(err, sizeof err, "cannot write %.480s", path);
    } else if (rc == 0) {
        snprintf(err, sizeof err, "out of memory");
        rc = -1;
    }
    free(bytes);
    free(config);
    gpt2_free(&m);
    if (rc != 0) {
        fprintf(stderr, "rlhf-train export-hf: %s\n", err);
        return EXIT_TRAINING_FAILED;
    }
    return 0;
}

/* rlhf-train tokenize --init DIR [--data FILE.jsonl] [--chat-format NAME]:
 * for each row {"text": ...} prints {"ids": [...]} from DIR/tokenizer.json
 * with the special tokens its post-processor adds; for each row
 * {"messages": [...], "add_generation_prompt": false} the ids of
 * DIR/tokenizer_config.json's chat template (or --chat-format chatml |
 * qwen3 | llama3 | llama2), tokenized as apply_chat_template does (no
 * post-processor: the llama2/llama3 templates write BOS, a template that
 * does not gets none, chat_template_encode). Reads stdin without --data. */
/* What turns rows into ids: DIR's tokenizer.json (NULL when the directory
 * has none: only {"tokens"} rows then) and its chat template, loaded on the
 * first {"messages"} row. */
typedef struct row_reader {
    const char *dir, *format;
    hf_tokenizer *tok;
    chat_template tpl;
    bool have_tpl;
} row_reader;

/* The ids of one row: {"text"} with the post-processor's special tokens,
 * {"messages"} through the chat template, or (allow_tokens) {"tokens"} as
 * given. *ids is malloc'd. Returns the count or -1 with err. */
static int64_t row_ids(row_reader *rr, const json_t *row, bool allow_tokens, int32_t **ids,
                       char *err, size_t errlen) {
    *ids = NULL;
    const json_t *text = json_object_get(row, "text"), *msgs = json_object_get(row, "messages");
    const json_t *given = json_object_get(row, "tokens");
    if (allow_tokens && json_is_array(given)) {
        const size_t n = json_array_size(given);
        *ids = malloc((n + 1) * sizeof **ids);
        if (*ids == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *v = json_array_get(given, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX) {
                snprintf(err, errlen, "\"tokens\"[%zu] is not a token id", i);
                free(*ids), *ids = NULL;
                return -1;
            }
            (*ids)[i] = (int32_t)json_integer_value(v);
        }
        return (int64_t)n;
    }
    if ((json_is_string(text) || json_is_array(msgs)) && rr->tok == NULL) {
        snprintf(err, errlen, "%s has no tokenizer.json: give {\"tokens\": [...]} rows", rr->dir);
        return -1;
    }
    if (json_is_string(text)) {
        int64_t n = hf_tokenizer_encode(rr->tok, json_string_value(text), json_string_length(text),
                                        HF_ENCODE_ADD_SPECIAL, NULL, 0, err, errlen);
        *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof **ids) : NULL;
        if (*ids != NULL)
            hf_tokenizer_encode(rr->tok, json_string_value(text), json_string_length(text),
                                HF_ENCODE_ADD_SPECIAL, *ids, (size_t)n, err, errlen);
        else if (n >= 0)
            n = -1, snprintf(err, errlen, "out of memory");
        return n;
    }
    if (!json_is_array(msgs)) {
        snprintf(err, errlen, "needs a \"text\" string or a \"messages\" array%s",
                 allow_tokens ? " (or a \"tokens\" array)" : "");
        return -1;
    }
    if (!rr->have_tpl) {
        char path[4200];
        snprintf(path, sizeof path, "%s/tokenizer_config.json", rr->dir);
        if (chat_template_load(&rr->tpl, path, rr->format, err, errlen) != 0)
            return -1;
        rr->have_tpl = true;
    }
    const size_t count = json_array_size(msgs);
    chat_message *m = calloc(count + 1, sizeof *m);
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const json_t *item;
    size_t i;
    json_array_foreach(msgs, i, item) {
        m[i].role = json_string_value(json_object_get(item, "role"));
        m[i].content = json_string_value(json_object_get(item, "content"));
    }
    const int64_t n = chat_template_encode(
        &rr->tpl, rr->tok, m, count, json_is_true(json_object_get(row, "add_generation_prompt")),
        ids, NULL, err, errlen);
    free(m);
    return n;
}

/* Opens DIR's tokenizer (required unless optional) and the input. */
static int row_reader_open(row_reader *rr, const char *dir, const char *format, bool optional,
                           const char *data, FILE **in, const char *cmd) {
    char err[1024], path[4200];
    memset(rr, 0, sizeof *rr);
    rr->dir = dir, rr->format = format;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct stat st;
    if (!optional || stat(path, &st) == 0) {
        rr->tok = hf_tokenizer_load(path, err, sizeof err);
        if (rr->tok == NULL) {
            fprintf(stderr, "rlhf-train %s: %s\n", cmd, err);
            return -1;
        }
    }
    *in = data ? fopen(data, "r") : stdin;
    if (*in == NULL) {
        fprintf(stderr, "rlhf-train %s: cannot open %s: %s\n", cmd, data, strerror(errno));
        hf_tokenizer_free(rr->tok);
        return -1;
    }
    return 0;
}

static void row_reader_close(row_reader *rr, FILE *in, const char *data) {
    if (data)
        fclose(in);
    if (rr->have_tpl)
        chat_template_free(&rr->tpl);
    hf_tokenizer_free(rr->tok);
}

/* The rows of in, one call of each_row(ids, n) per row; stops at the first
 * error (by line number). Returns 0 or an exit code. */
static int
for_each_row(row_reader *rr, FILE *in, const char *data, bool allow_tokens, const char *cmd,
             int (*each_row)(void *ctx, const int32_t *ids, int64_t n, char *err, size_t errlen),
             void *ctx) {
    char *line = NULL, err[1024];
    size_t cap = 0;
    int rc = 0;
    for (long lineno = 1; rc == 0 && getline(&line, &cap, in) >= 0; lineno++) {
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        json_error_t jerr;
        json_t *row = json_loads(line, 0, &jerr);
        int32_t *ids = NULL;
        int64_t n = -1;
        if (row == NULL)
            snprintf(err, sizeof err, "%s", jerr.text);
        else
            n = row_ids(rr, row, allow_tokens, &ids, err, sizeof err);
        if (n < 0 || each_row(ctx, ids, n, err, sizeof err) != 0) {
            fprintf(stderr, "rlhf-train %s: %s line %ld: %s\n", cmd, data ? data : "stdin", lineno,
                    err);
            rc = EXIT_TRAINING_FAILED;
        }
        free(ids);
        json_decref(row);
    }
    free(line);
    return rc;
}

static int print_ids(void *ctx, const int32_t *ids, int64_t n, char *err, size_t errlen) {
    (void)ctx, (void)err, (void)errlen;
    fputs("{\"ids\":[", stdout);
    for (int64_t k = 0; k < n; k++)
        printf(k ? ",%d" : "%d", ids[k]);
    fputs("]}\n", stdout);
    return 0;
}

static int tokenize_rows(int argc, char **argv) {
    const char *dir = NULL, *data = NULL, *format = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--init") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else if (strcmp(argv[i], "--chat-format") == 0)
            format = argv[i + 1];
        else
            dir = NULL;
    }
    if (dir == NULL || argc % 2 != 0) {
        rlhf_train_command_usage(stderr, "tokenize");
        return EXIT_USAGE;
    }
    row_reader rr;
    FILE *in;
    if (row_reader_open(&rr, dir, format, false, data, &in, "tokenize") != 0)
        return EXIT_USAGE;
    const int rc = for_each_row(&rr, in, data, false, "tokenize", print_ids, NULL);
    row_reader_close(&rr, in, data);
    return rc;
}

/* One row's log-probabilities under the model: logprobs[i-1] =
 * log p(ids[i] | ids[<i]), printed with the ids. */
static int print_logprobs(void *ctx, const int32_t *ids, int64_t n, char *err, size_t errlen) {
    model *m = ctx;
    const int V = model_vocab_size(m), T = model_max_seq_len(m);
    if (n < 1 || n > T) {
        snprintf(err, errlen, "%lld tokens (the model takes 1..%d)", (long long)n, T);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            snprintf(err, errlen, "token %d is outside the vocabulary of %d", ids[i], V);
            return -1;
        }
    float *logp = malloc(sizeof(float) * (size_t)n);
    if (logp == NULL || model_reserve(m, 1, (int)n, err, errlen) != 0) {
        if (logp == NULL)
            snprintf(err, errlen, "out of memory");
        free(logp);
        return -1;
    }
    if (n > 1) {
        model_forward(m, ids, NULL, NULL, 1, (int)n, 0, (int)n - 1);
        model_token_logprobs(m, ids + 1, logp, NULL);
    }
    fputs("{\"tokens\":[", stdout);
    for (int64_t k = 0; k < n; k++)
        printf(k ? ",%d" : "%d", ids[k]);
    fputs("],\"logprobs\":[", stdout);
    for (int64_t k = 0; k + 1 < n; k++)
        printf(k ? ",%.9g" : "%.9g", (double)logp[k]);
    fputs("]}\n", stdout);
    free(logp);
    return 0;
}

/* rlhf-train logprobs --init MODEL --data FILE.jsonl: for each {"text"},
 * {"messages"} or {"tokens"} row, {"tokens": [ids], "logprobs": [...]} with
 * logprobs[i-1] = log p(tokens[i] | tokens[<i]) under the model (a checkpoint
 * or a Hugging Face directory of either family). */
static int logprobs_rows(int argc, char **argv) {
    const char *init = NULL, *data = NULL, *format = NULL, *tok_dir = NULL;
    int bad = argc % 2 != 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--init") == 0)
            init = argv[i + 1];
        else if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else if (strcmp(argv[i], "--chat-format") == 0)
            format = argv[i + 1];
        else if (strcmp(argv[i], "--tokenizer-dir") == 0)
            tok_dir = argv[i + 1];
        else
            bad = 1;
    }
    if (init == NULL || bad) {
        rlhf_train_command_usage(stderr, "logprobs");
        return EXIT_USAGE;
    }
    char err[1024];
    model m;
    if (model_load(init, NULL, &m, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train logprobs: %s\n", err);
        return EXIT_USAGE;
    }
    struct stat st;
    const char *dir = tok_dir ? tok_dir : stat(init, &st) == 0 && S_ISDIR(st.st_mode) ? init : ".";
    row_reader rr;
    FILE *in;
    if (row_reader_open(&rr, dir, format, tok_dir == NULL, data, &in, "logprobs") != 0) {
        model_free(&m);
        return EXIT_USAGE;
    }
    const int rc = for_each_row(&rr, in, data, true, "logprobs", print_logprobs, &m);
    row_reader_close(&rr, in, data);
    model_free(&m);
    return rc;
}
int rlhf_train_main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    const job_type *type = job_type_find(cmd);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0) {
            if (!wants_help(argc, argv))
                return commands[i].run(argc, argv);
            rlhf_train_command_usage(stdout, cmd);
            printf("%s\n", commands[i].summary);
            return 0;
        }
    if (type != NULL && wants_help(argc, argv)) {
        print_type_help(type);
        return 0;
    }
    if (strcmp(cmd, "--db") == 0)
        return rlhf_train_db_main(argc, argv);
    if (type == NULL) {
        fprintf(stderr, "rlhf-train: unknown job type '%s'\n", cmd);
        print_usage(stderr);
        return EXIT_USAGE;
    }
    return run_job(type, argc, argv);
}
