/* rlhfctl: global flags, configuration, the command table and the help.
 *
 * The server URL and token come from, in order of precedence: --url /
 * --token, then RLHFD_URL / RLHFD_TOKEN, then the config file
 * ($RLHFCTL_CONFIG, else ~/.config/rlhfctl/config.json: {"url", "token"}),
 * then the default URL http://127.0.0.1:8080 (rlhfd's default --listen).
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jobs.h"
#include "rlhfctl.h"

#define DEFAULT_URL "http://127.0.0.1:8080"

typedef struct command {
    const char *group;
    const char *verb; /* NULL: the group is the command (`rank`) */
    const char *args; /* the usage after the command's name */
    const char *summary;
    int min_pos, max_pos;
    const char *value_opts; /* space-separated option names that take a value */
    const char *flag_opts;  /* space-separated flags */
    command_fn fn;
} command;

static const command commands[] = {
    {"status", NULL, "", "is rlhfd up and ready? (GET /readyz; needs no token)", 0, 0, "", "",
     cmd_status},
    {"models", "add", "DIR [--name NAME]",
     "register the model directory DIR (under one of rlhfd's --model-root; relative to one, or "
     "absolute)",
     1, 1, "name", "", cmd_models_add},
    {"models", "upload", "DIR [--name NAME]",
     "upload a Hugging Face model directory file by file (sha256-checked), then check it", 1, 1,
     "name", "", cmd_models_upload},
    {"models", "list", "", "base and fine-tuned models", 0, 0, "", "", cmd_models_list},
    {"models", "show", "NAME", "one model (a registered id or an ft: id)", 1, 1, "", "",
     cmd_models_show},
    {"models", "delete", "NAME", "delete a registered model no job uses", 1, 1, "", "",
     cmd_models_delete},
    {"datasets", "create", "NAME --format sft|preference|prompts [--file FILE.jsonl]",
     "create a dataset (and upload FILE into it)", 1, 1, "format file", "", cmd_datasets_create},
    {"datasets", "upload", "ID FILE.jsonl",
     "upload JSONL into an empty dataset (streamed; - = stdin)", 2, 2, "", "", cmd_datasets_upload},
    {"datasets", "list", "[--format F] [--limit N] [--after ID]", "list datasets, newest first", 0,
     0, "format limit after", "", cmd_datasets_list},
    {"datasets", "show", "ID", "one dataset", 1, 1, "", "", cmd_datasets_show},
    {"datasets", "delete", "ID", "delete a dataset no job uses", 1, 1, "", "", cmd_datasets_delete},
    {"projects", "create", "NAME [--k 2..9] [--overlap N]", "create a preference project", 1, 1,
     "k overlap", "", cmd_projects_create},
    {"projects", "list", "[--limit N] [--after ID]", "list preference projects", 0, 0,
     "limit after", "", cmd_projects_list},
    {"projects", "show", "ID", "one project", 1, 1, "", "", cmd_projects_show},
    {"projects", "grant", "ID TOKEN_ID [--role annotator|viewer]",
     "let an annotator or viewer token see (and, as an annotator, rank in) a project", 2, 2, "role",
     "", cmd_projects_grant},
    {"projects", "pairs", "ID [--limit N] [--after ID]", "training-ready preference pairs", 1, 1,
     "limit after", "", cmd_projects_pairs},
    {"projects", "export", "ID [--rankings] [-o|--output FILE]",
     "JSONL: TRL pairs (for `datasets upload`), or --rankings the raw rankings", 1, 1, "output o",
     "rankings", cmd_projects_export},
    {"projects", "agreement", "ID",
     "inter-annotator agreement: Krippendorff's alpha, Kendall's W, per annotator", 1, 1, "", "",
     cmd_projects_agreement},
    {"comparisons", "add",
     "PROJECT --prompt TEXT (--candidate TEXT --candidate TEXT... | --sample-from CHECKPOINT "
     "[--n N] [--max-tokens N] [--temperature T] [--top-p P] [--seed S])",
     "add a comparison with 2..k candidates (given, or sampled by rlhfd from a checkpoint)", 1, 1,
     "prompt candidate sample-from n max-tokens temperature top-p seed", "", cmd_comparisons_add},
    {"comparisons", "bulk", "PROJECT FILE",
     "add many comparisons from a JSON array or JSONL (- = stdin), all or nothing", 2, 2, "", "",
     cmd_comparisons_bulk},
    {"comparisons", "list", "PROJECT [--limit N] [--after ID]", "a project's comparisons", 1, 1,
     "limit after", "", cmd_comparisons_list},
    {"comparisons", "show", "ID", "one comparison with its candidates", 1, 1, "", "",
     cmd_comparisons_show},
    {"comparisons", "next", "PROJECT", "lease the next comparison for you to rank (10 minutes)", 1,
     1, "", "", cmd_comparisons_next},
    {"comparisons", "rankings", "ID", "the raw rankings of a comparison", 1, 1, "", "",
     cmd_comparisons_rankings},
    {"rank", NULL, "COMPARISON GROUP... [--note TEXT] | COMPARISON --skip [--note TEXT]",
     "rank candidates, best group first; a GROUP is candidate ids, ties joined by '=' "
     "(rank 7 12 13=14)",
     1, CLI_MAX_ARGS, "note", "skip", cmd_rank},
    {"annotate", NULL, "PROJECT --simulate demo [--noise T] [--seed S] [--max N]",
     "the simulated annotator: rank a project's comparisons by the demo task's gold score with "
     "Plackett-Luce noise, through the annotation API, until none is left",
     1, 1, "simulate noise seed max", "", cmd_annotate},
    {"jobs", "submit",
     "TYPE [--set KEY=VALUE]... [--hyperparameters FILE.json] [--max-attempts N] "
     "[--training-file ID] [--validation-file ID] [--training-project ID] [--model MODEL] "
     "[--reward-model CKPT] [--ranks N] [--watch]   (CKPT: a checkpoint id or job:N; MODEL: "
     "a CKPT or a model id of `models list`; N: data-parallel worker processes)",
     "submit a job (VALUE is JSON, else a string)", 1, 1,
     "set hyperparameters max-attempts training-file validation-file training-project model "
     "reward-model ranks",
     "watch", cmd_jobs_submit},
    {"jobs", "list", "[--status S] [--type T] [--limit N] [--after ID]", "list jobs, newest first",
     0, 0, "status type limit after", "", cmd_jobs_list},
    {"jobs", "show", "ID", "one job with its resolved hyperparameters", 1, 1, "", "",
     cmd_jobs_show},
    {"jobs", "cancel", "ID", "cancel a job (a running one checkpoints and stops)", 1, 1, "", "",
     cmd_jobs_cancel},
    {"jobs", "logs", "ID", "the job's events, oldest first", 1, 1, "", "", cmd_jobs_logs},
    {"jobs", "metrics", "ID [--names a,b] [--after-step S] [--limit N]",
     "a job's metrics by step (default names: the job type's headline metrics)", 1, 1,
     "names after-step limit", "", cmd_jobs_metrics},
    {"jobs", "watch", "ID [--since EVENT_ID] [--retries N]",
     "follow the job live until it ends; exit code = its outcome", 1, 1, "since retries", "",
     cmd_jobs_watch},
    {"studies", "submit", "FILE.json [--name NAME] [--watch]",
     "submit a study: a base job over a grid or list of variations x seeds (examples/studies/)", 1,
     1, "name", "watch", cmd_studies_submit},
    {"studies", "watch", "ID",
     "follow a study until its jobs end, then its summary; exit code 0 if all succeeded", 1, 1, "",
     "", cmd_studies_watch},
    {"studies", "show", "ID [--markdown]",
     "a study's jobs and summary table (final and best metric, wall time; mean and std over "
     "seeds)",
     1, 1, "", "markdown", cmd_studies_show},
    {"studies", "list", "[--limit N] [--after ID]", "list studies, newest first", 0, 0,
     "limit after", "", cmd_studies_list},
    {"studies", "cancel", "ID", "cancel every unfinished job of a study", 1, 1, "", "",
     cmd_studies_cancel},
    {"loops", "create",
     "[FILE.json] [--model CKPT] [--project ID] [--prompts ID] [--reward-model CKPT] "
     "[--set KEY=VALUE]... [--name NAME] [--watch]   (FILE: a POST /v1/loops body; the options "
     "override it; KEY may be OBJECT.KEY: --set policy_hyperparameters.kl_coef=0.2)",
     "create an online RLHF loop: rounds of sample -> comparisons -> rankings -> reward model "
     "-> policy (docs/online_loop.md)",
     0, 1, "model project prompts reward-model set name", "watch", cmd_loops_create},
    {"loops", "watch", "ID",
     "follow a loop round by round until it ends (it waits for rankings: rank, or `annotate "
     "--simulate demo`); exit code 0 if it succeeded",
     1, 1, "", "", cmd_loops_watch},
    {"loops", "show", "ID [--markdown]",
     "a loop and its signals per round: rankings, RM accuracy on them, agreement, proxy, KL, "
     "gold",
     1, 1, "", "markdown", cmd_loops_show},
    {"loops", "list", "[--limit N] [--after ID]", "list loops, newest first", 0, 0, "limit after",
     "", cmd_loops_list},
    {"loops", "cancel", "ID", "cancel a running loop (and the job its round runs)", 1, 1, "", "",
     cmd_loops_cancel},
    {"checkpoints", "list", "JOB", "a job's checkpoints", 1, 1, "", "", cmd_checkpoints_list},
    {"checkpoints", "download", "ID [-o|--output FILE]",
     "save a checkpoint's safetensors, checking its sha256", 1, 1, "output o", "",
     cmd_checkpoints_download},
    {"checkpoints", "generate",
     "ID --prompt TEXT [--prompt TEXT]... [--n N] [--max-tokens N] [--temperature T] "
     "[--top-p P] [--seed S]",
     "sample completions from a checkpoint (rlhfd runs the model)", 1, 1,
     "prompt n max-tokens temperature top-p seed", "", cmd_checkpoints_generate},
    {"chat", NULL,
     "MODEL [--system TEXT] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]",
     "chat with a model (an id `models list` shows): each line of stdin is your turn, the "
     "answer streams back (POST /v1/chat/completions)",
     1, 1, "system max-tokens temperature top-p seed", "", cmd_chat},
    {"tokens", "create", "NAME --role admin|annotator|viewer",
     "create an API token (its secret is shown once)", 1, 1, "role", "", cmd_tokens_create},
    {"tokens", "list", "", "token names and roles (never secrets)", 0, 0, "", "", cmd_tokens_list},
    {"tokens", "revoke", "ID", "revoke a token: it gets 401 from now on", 1, 1, "", "",
     cmd_tokens_revoke},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command *current_command;

static void print_command_usage(FILE *out, const command *cmd) {
    fprintf(out, "usage: rlhfctl %s%s%s %s\n", cmd->group, cmd->verb ? " " : "",
            cmd->verb ? cmd->verb : "", cmd->args);
}

static void print_help(FILE *out) {
    fputs("rlhfctl — the command-line client of rlhfd\n\n"
          "usage: rlhfctl [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]\n\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", commands[i].group, commands[i].verb ? " " : "",
                 commands[i].verb ? commands[i].verb : "");
        fprintf(out, "  %-22s %s\n", name, commands[i].summary);
    }
    fputs("\n`rlhfctl COMMAND --help` shows a command's arguments.\n\n"
          "global flags (anywhere on the line):\n"
          "  --url URL      rlhfd's address (default " DEFAULT_URL ")\n"
          "  --token TOKEN  API token (Authorization: Bearer)\n"
          "  --json         print the server's JSON instead of tables\n\n"
          "URL and token: flags, then RLHFD_URL / RLHFD_TOKEN, then the config file\n"
          "$RLHFCTL_CONFIG or ~/.config/rlhfctl/config.json ({\"url\": ..., \"token\": ...}).\n\n"
          "exit codes:\n"
          "  0  success (jobs / studies / loops watch: it succeeded)\n"
          "  1  jobs / studies / loops watch: the job, a study's job or the loop failed or\n"
          "     was cancelled\n"
          "  2  usage: bad arguments, config file or local file\n"
          "  3  API error: the server refused the request (its message, code and param shown)\n"
          "  4  network error: rlhfd could not be reached or the connection broke\n\n"
          "not in rlhfd yet, so not here: token revocation, reading a dataset's rows back.\n",
          out);
}

/* `jobs submit --help`: the hyperparameters of job type only (every type
 * when NULL or unknown), from the engine's tables (engine/jobs.h). */
static void print_hyperparameters(const char *only) {
    const job_type *one = only ? job_type_find(only) : NULL;
    for (const job_type *const *t = job_types; *t; t++) {
        if (one != NULL && *t != one)
            continue;
        printf("\n%s: %s.\nhyperparameters (--set KEY=VALUE):\n", (*t)->name, (*t)->summary);
        hparams_write_help((*t)->hparams, "", stdout);
    }
}

/* ---- argument parsing --------------------------------------------------------------- */

static int word_in(const char *list, const char *word, size_t len) {
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n == len && strncmp(p, word, len) == 0)
            return 1;
        p += n;
        p += *p == ' ';
    }
    return 0;
}

int cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("rlhfctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (current_command)
        print_command_usage(stderr, current_command);
    else
        fputs("`rlhfctl --help` lists the commands.\n", stderr);
    return RLHFCTL_EXIT_USAGE;
}

/* argv → a (positional arguments and the command's options); returns
 * RLHFCTL_EXIT_OK or a usage error. */
static int cli_parse(const command *cmd, int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0 || (arg[1] >= '0' && arg[1] <= '9')) {
            if (a->n_pos == CLI_MAX_ARGS)
                return cli_usage_error("too many arguments");
            a->pos[a->n_pos++] = arg;
            continue;
        }
        const char *name = arg + 1 + (arg[1] == '-');
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = NULL;
        if (word_in(cmd->value_opts, name, len)) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return cli_usage_error("%s needs a value", arg);
        } else if (!word_in(cmd->flag_opts, name, len) || eq) {
            return cli_usage_error("unknown option %s", arg);
        }
        if (a->n_opts == CLI_MAX_ARGS)
            return cli_usage_error("too many options");
        a->opts[a->n_opts].name = strndup(name, len);
        a->opts[a->n_opts++].value = value;
    }
    if (a->n_pos < cmd->min_pos)
        return cli_usage_error("missing arguments");
    if (a->n_pos > cmd->max_pos)
        return cli_usage_error("unexpected argument '%s'", a->pos[cmd->max_pos]);
    return RLHFCTL_EXIT_OK;
}

static void cli_args_free(cli_args *a) {
    for (int i = 0; i < a->n_opts; i++)
        free((char *)a->opts[i].name);
}

const char *cli_opt(const cli_args *a, const char *name) {
    const char *v = NULL;
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            v = a->opts[i].value;
    return v;
}

int cli_flag(const cli_args *a, const char *name) {
    for (int i = 0; i < a->n_opts; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            return 1;
    return 0;
}

int cli_opt_all(const cli_args *a, const char *name, const char **out, int max) {
    int n = 0;
    for (int i = 0; i < a->n_opts && n < max; i++)
        if (strcmp(a->opts[i].name, name) == 0)
            out[n++] = a->opts[i].value;
    return n;
}

int64_t cli_parse_id(const char *text, const char *what) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0) {
        cli_usage_error("%s must be a positive integer, got '%s'", what, text);
        return 0;
    }
    return v;
}

/* ---- configuration --------------------------------------------------------------- */

/* Reads url and token from the config file, if there is one; the strings
 * point into *root (caller decrefs). */
static int config_load(json_t **root, const char **url, const char **token) {
    const char *explicit_path = getenv("RLHFCTL_CONFIG");
    char path[4096];
    if (explicit_path && *explicit_path)
        snprintf(path, sizeof path, "%s", explicit_path);
    else if (getenv("HOME"))
        snprintf(path, sizeof path, "%s/.config/rlhfctl/config.json", getenv("HOME"));
    else
        return RLHFCTL_EXIT_OK;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT && !(explicit_path && *explicit_path))
            return RLHFCTL_EXIT_OK; /* the default file is optional */
        fprintf(stderr, "rlhfctl: cannot read config file %s: %s\n", path, strerror(errno));
        return RLHFCTL_EXIT_USAGE;
    }
    json_error_t jerr;
    *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!json_is_object(*root)) {
        fprintf(stderr, "rlhfctl: config file %s: %s\n", path,
                *root ? "must be a JSON object" : jerr.text);
        return RLHFCTL_EXIT_USAGE;
    }
    const char *key;
    json_t *value;
    json_object_foreach(*root, key, value) {
        const char **slot = strcmp(key, "url") == 0     ? url
                            : strcmp(key, "token") == 0 ? token
                                                        : NULL;
        if (slot == NULL || !json_is_string(value)) {
            fprintf(stderr, "rlhfctl: config file %s: %s '%s' (keys: url, token; strings)\n", path,
                    slot ? "not a string:" : "unknown key", key);
            return RLHFCTL_EXIT_USAGE;
        }
        *slot = json_string_value(value);
    }
    return RLHFCTL_EXIT_OK;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* ---- main ------------------------------------------------------------------------ */

static const command *command_find(const char *group, const char *verb) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0 &&
            (commands[i].verb == NULL || (verb && strcmp(commands[i].verb, verb) == 0)))
            return &commands[i];
    return NULL;
}

static int group_exists(const char *group) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0)
            return 1;
    return 0;
}

static void print_group_help(FILE *out, const char *group) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0) {
            print_command_usage(out, &commands[i]);
            fprintf(out, "         %s\n", commands[i].summary);
        }
}

int main(int argc, char **argv) {
    /* Global flags may stand anywhere; what is left is COMMAND [ARGS]. */
    const char *flag_url = NULL, *flag_token = NULL;
    int json_output = 0, help = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    for (int i = 1; i < argc; i++) {
        const char **slot = strcmp(argv[i], "--url") == 0     ? &flag_url
                            : strcmp(argv[i], "--token") == 0 ? &flag_token
                                                              : NULL;
        if (slot) {
            if (i + 1 == argc) {
                free(rest);
                return cli_usage_error("%s needs a value", argv[i]);
            }
            *slot = argv[++i];
        } else if (strncmp(argv[i], "--url=", 6) == 0) {
            flag_url = argv[i] + 6;
        } else if (strncmp(argv[i], "--token=", 8) == 0) {
            flag_token = argv[i] + 8;
        } else if (strcmp(argv[i], "--json") == 0) {
            json_output = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help = 1;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    int rc = RLHFCTL_EXIT_OK;
    const command *cmd = NULL;
    if (n_rest == 0 || (strcmp(rest[0], "help") == 0 && n_rest == 1)) {
        print_help(n_rest || help ? stdout : stderr);
        rc = n_rest || help ? RLHFCTL_EXIT_OK : RLHFCTL_EXIT_USAGE;
    } else if ((cmd = command_find(rest[0], n_rest > 1 ? rest[1] : NULL)) == NULL) {
        if (group_exists(rest[0]) && (help || n_rest == 1)) {
            print_group_help(help ? stdout : stderr, rest[0]);
            rc = help ? RLHFCTL_EXIT_OK : RLHFCTL_EXIT_USAGE;
        } else if (group_exists(rest[0])) {
            rc = cli_usage_error("unknown command '%s %s'", rest[0], rest[1]);
        } else {
            rc = cli_usage_error("unknown command '%s'", rest[0]);
        }
    } else if (help) {
        print_command_usage(stdout, cmd);
        printf("  %s\n", cmd->summary);
        if (cmd->fn == cmd_jobs_submit) /* TYPE's hyperparameters, or every type's */
            print_hyperparameters(n_rest > 2 ? rest[2] : NULL);
    } else {
        current_command = cmd;
        int skip = cmd->verb ? 2 : 1;
        cli_args args;
        json_t *config = NULL;
        const char *config_url = NULL, *config_token = NULL;
        rc = cli_parse(cmd, n_rest - skip, rest + skip, &args);
        if (rc == RLHFCTL_EXIT_OK)
            rc = config_load(&config, &config_url, &config_token);
        if (rc == RLHFCTL_EXIT_OK) {
            const char *url = flag_url                    ? flag_url
                              : env_nonempty("RLHFD_URL") ? env_nonempty("RLHFD_URL")
                              : config_url                ? config_url
                                                          : DEFAULT_URL;
            const char *token = flag_token                    ? flag_token
                                : env_nonempty("RLHFD_TOKEN") ? env_nonempty("RLHFD_TOKEN")
                                                              : config_token;
            char *trimmed = strdup(url);
            size_t len = strlen(trimmed);
            while (len > 0 && trimmed[len - 1] == '/')
                trimmed[--len] = '\0';
            rlhfctl c = {.url = trimmed, .token = token, .json_output = json_output};
            curl_global_init(CURL_GLOBAL_DEFAULT);
            rc = cmd->fn(&c, &args);
            curl_global_cleanup();
            free(trimmed);
        }
        json_decref(config);
        cli_args_free(&args);
    }
    free(rest);
    return rc;
}
