/* rlhf-train demo-eval --policy CKPT [--ref CKPT] [--reward-model CKPT]
 *     [--n N] [--seed S] [--temperature T] [--max-tokens M]
 *     [--rankings FILE.jsonl] [--samples-out FILE.jsonl]
 *
 * Measures a policy on the demo task (engine/demo_task.h). It samples N
 * responses to fresh demo prompts (the same prompts for every policy at the
 * same seed, so SFT and PPO are compared on paired prompts) and prints one
 * JSON object on stdout:
 *   gold_mean, gold_std      the hidden gold score (demo_task_gold_score)
 *   proxy_mean, proxy_std    the reward model's score, normalised by its
 *                            stored reward_gain / reward_bias (what PPO sees,
 *                            before PPO's missing-EOS penalty)
 *   kl_mean, kl_std          KL(policy ‖ ref) per sequence, estimated on the
 *                            samples as Σ_t log π(y_t) − log π_ref(y_t): the
 *                            k1 quantity `ppo` reports as objective/kl
 *   eos_fraction             samples that ended with <|endoftext|>
 *   response_tokens_mean     sampled tokens per response, EOT included
 * and with --rankings (demo-rankings output, e.g. a held-out set) the reward
 * model's pair accuracy against the gold score recomputed from the texts
 * (rm_accuracy_gold over rm_pairs_gold pairs of different gold score) and
 * against the file's own ranks (rm_accuracy_ranks).
 *
 * Why these choices:
 * - Sampling is demo_task_sample_tokens, the draw demo-rankings and the
 *   pipeline test use; log-probs are of logits / T (as ppo computes them) so
 *   the KL matches the one PPO reports for the same temperature.
 * - The proxy is read where ppo reads it: the reward model's scalar head at
 *   the last sampled token (the EOT when one came). Ranked responses are
 *   scored as the reward model was trained on them: prompt + response + EOT.
 * - Standard deviations are sample standard deviations (n − 1).
 * - One sequence at a time: the demo models are small and N is a few
 *   hundred, so batching would buy little and cost padding logic.
 */
#include "demo_eval.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli.h"
#include "demo_task.h"
#include "model.h"
#include "jsonl_data.h"
#include "reward.h"
#include "sft.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, MAX_IDS = 256 + 64 };

static void usage(void) {
    rlhf_train_command_usage(stderr, "demo-eval");
}

/* Loads a checkpoint; with_head keeps its scalar head (a reward model) and
 * reads its normalisation. Returns 0 or -1 with err naming the file. */
static int load(model *m, const char *path, bool with_head, double *gain, double *bias, char *err,
                size_t errlen) {
    char inner[400];
    const model_open_options opt = {.scalar_head = with_head, .require_head = with_head};
    model_info info;
    int rc = model_load(path, &opt, m, &info, inner, sizeof inner);
    const int T = rc == 0 && model_max_seq_len(m) < MAX_IDS ? model_max_seq_len(m) : MAX_IDS;
    if (rc == 0 && (rc = model_reserve(m, 1, T, inner, sizeof inner)) != 0)
        model_free(m);
    if (rc == 0 && gain != NULL)
        *gain = info.reward_gain, *bias = info.reward_bias;
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, inner);
    return rc;
}

/* Σ log p(ids[t] | ids[..t)) at temperature 1 / inv_temp over t in
 * [n_prompt, n): the log-probability of the response given the prompt. */
static double response_logprob(model *m, const int32_t *ids, int n_prompt, int n, float inv_temp) {
    int32_t targets[MAX_IDS];
    float logp[MAX_IDS];
    model_forward(m, ids, NULL, NULL, 1, n, 0, n);
    float *logits = model_logits(m);
    if (inv_temp != 1.0f)
        for (int64_t i = 0; i < (int64_t)n * model_vocab_size(m); i++)
            logits[i] *= inv_temp;
    for (int t = 0; t < n; t++)
        targets[t] = t + 1 < n ? ids[t + 1] : 0;
    model_token_logprobs(m, targets, logp, NULL);
    double sum = 0.0;
    for (int t = n_prompt - 1; t < n - 1; t++)
        sum += logp[t];
    return sum;
}

/* The normalised reward of ids[0..n) (the scalar head at the last token). */
static double reward_of(model *rm, const int32_t *ids, int n, double gain, double bias) {
    model_forward(rm, ids, NULL, NULL, 1, n, 0, 0);
    return gain * model_values(rm)[n - 1] + bias;
}

typedef struct moments {
    double sum, sum2;
    long n;
} moments;

static void add(moments *m, double x) {
    m->sum += x, m->sum2 += x * x, m->n++;
}
static double mean_of(const moments *m) {
    return m->n ? m->sum / (double)m->n : NAN;
}
static double std_of(const moments *m) {
    if (m->n < 2)
        return NAN;
    const double mu = m->sum / (double)m->n;
    return sqrt(fmax(0.0, (m->sum2 - (double)m->n * mu * mu) / (double)(m->n - 1)));
}

/* Pair accuracy of the reward model on rankings: against the gold score of
 * each response text, and against the file's ranks. */
static int rankings_accuracy(model *rm, const tokenizer *tok, const char *path, json_t *out,
                             char *err, size_t errlen) {
    ranking_set set = {0};
    char inner[400];
    if (rankings_load_jsonl(&set, path, inner, sizeof inner) != 0) {
        snprintf(err, errlen, "%s: %s", path, inner);
        return -1;
    }
    long pairs_gold = 0, right_gold = 0, pairs_rank = 0, right_rank = 0;
    int32_t ids[MAX_IDS];
    uint8_t mask[MAX_IDS];
    const int64_t cap = model_max_seq_len(rm) < MAX_IDS ? model_max_seq_len(rm) : MAX_IDS;
    for (int64_t i = 0; i < set.n; i++) {
        const ranking *rk = &set.items[i];
        double r[RANKING_MAX_K], g[RANKING_MAX_K];
        for (int k = 0; k < rk->k; k++) {
            const text_pair ex = {rk->prompt, rk->responses[k], NULL, 0};
            const int64_t n = sft_tokenize(tok, &ex, true, ids, mask, cap);
            if (n < 1) {
                snprintf(err, errlen, "%s: ranking %lld: the tokenizer failed", path,
                         (long long)i + 1);
                ranking_set_free(&set);
                return -1;
            }
            r[k] = reward_of(rm, ids, (int)n, 1.0, 0.0);
            g[k] = demo_task_gold_score(rk->prompt, rk->responses[k]);
        }
        for (int a = 0; a < rk->k; a++)
            for (int b = a + 1; b < rk->k; b++) {
                if (g[a] != g[b]) {
                    pairs_gold++;
                    right_gold += (r[a] - r[b]) * (g[a] - g[b]) > 0;
                }
                if (rk->rank[a] != rk->rank[b]) {
                    pairs_rank++;
                    right_rank += (r[a] - r[b]) * (double)(rk->rank[b] - rk->rank[a]) > 0;
                }
            }
    }
    json_object_set_new(out, "rankings", json_integer(set.n));
    json_object_set_new(out, "rm_pairs_gold", json_integer(pairs_gold));
    json_object_set_new(out, "rm_accuracy_gold",
                        pairs_gold ? json_real((double)right_gold / (double)pairs_gold)
                                   : json_null());
    json_object_set_new(out, "rm_pairs_ranks", json_integer(pairs_rank));
    json_object_set_new(out, "rm_accuracy_ranks",
                        pairs_rank ? json_real((double)right_rank / (double)pairs_rank)
                                   : json_null());
    ranking_set_free(&set);
    return 0;
}

static json_t *real_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

int rlhf_demo_eval_main(int argc, char **argv) {
    const char *tokenizer_dir = NULL;
    const char *policy_path = NULL, *ref_path = NULL, *rm_path = NULL, *rankings_path = NULL,
               *samples_path = NULL;
    long n = 200, seed = 1, max_tokens = 64;
    double temperature = 1.0;
    if ((argc - 2) % 2 != 0) {
        usage();
        return EXIT_USAGE;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        char *end = NULL;
        if (strcmp(o, "--policy") == 0)
            policy_path = v;
        else if (strcmp(o, "--ref") == 0)
            ref_path = v;
        else if (strcmp(o, "--reward-model") == 0)
            rm_path = v;
        else if (strcmp(o, "--rankings") == 0)
            rankings_path = v;
        else if (strcmp(o, "--samples-out") == 0)
            samples_path = v;
        else if (strcmp(o, "--tokenizer-dir") == 0)
            tokenizer_dir = v;
        else if (strcmp(o, "--n") == 0 || strcmp(o, "--seed") == 0 ||
                 strcmp(o, "--max-tokens") == 0) {
            const long x = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0') {
                fprintf(stderr, "rlhf-train demo-eval: %s needs an integer, got '%s'\n", o, v);
                return EXIT_USAGE;
            }
            if (strcmp(o, "--n") == 0)
                n = x;
            else if (strcmp(o, "--seed") == 0)
                seed = x;
            else
                max_tokens = x;
        } else if (strcmp(o, "--temperature") == 0) {
            temperature = strtod(v, &end);
            if (*v == '\0' || *end != '\0') {
                fprintf(stderr, "rlhf-train demo-eval: --temperature needs a number, got '%s'\n",
                        v);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "rlhf-train demo-eval: unknown option '%s'\n", o);
            usage();
            return EXIT_USAGE;
        }
    }
    if (policy_path == NULL || n < 1 || n > 1000000 || seed < 0 || max_tokens < 1 ||
        max_tokens > 64 || !(temperature >= 0.01 && temperature <= 10.0)) {
        fprintf(stderr, "rlhf-train demo-eval: needs --policy; --n in [1, 1e6], --seed >= 0, "
                        "--max-tokens in [1, 64], --temperature in [0.01, 10]\n");
        usage();
        return EXIT_USAGE;
    }
    if (rankings_path != NULL && rm_path == NULL) {
        fprintf(stderr, "rlhf-train demo-eval: --rankings needs --reward-model\n");
        return EXIT_USAGE;
    }
    openblas_set_num_threads(1);
    char err[1024];
    model policy = {0}, ref = {0}, rm = {0};
    int have_ref = 0, have_rm = 0, rc = EXIT_USAGE;
    double gain = 1.0, bias = 0.0;
    tokenizer tok;
    int have_tok = 0;
    FILE *samples = NULL;
    json_t *out = NULL;
    if (load(&policy, policy_path, false, NULL, NULL, err, sizeof err) != 0)
        goto fail;
    if (ref_path != NULL) {
        if (load(&ref, ref_path, false, NULL, NULL, err, sizeof err) != 0)
            goto fail;
        have_ref = 1;
        if (model_vocab_size(&ref) != model_vocab_size(&policy)) {
            snprintf(err, sizeof err, "--ref %s has vocabulary %d, the policy %d", ref_path,
                     model_vocab_size(&ref), model_vocab_size(&policy));
            goto fail;
        }
    }
    if (rm_path != NULL) {
        if (load(&rm, rm_path, true, &gain, &bias, err, sizeof err) != 0)
            goto fail;
        have_rm = 1;
    }
    /* like demo-rankings and the demo's sft: the byte-level tokenizer, or
     * a model directory's tokenizer.json (--tokenizer-dir, or the policy's
     * own directory) */
    struct stat st;
    if (tokenizer_dir == NULL && stat(policy_path, &st) == 0 && S_ISDIR(st.st_mode))
        tokenizer_dir = policy_path;
    char tok_json[4200];
    snprintf(tok_json, sizeof tok_json, "%s/tokenizer.json", tokenizer_dir ? tokenizer_dir : ".");
    const bool hf = tokenizer_dir != NULL && stat(tok_json, &st) == 0;
    if ((hf ? tokenizer_load_hf(&tok, tokenizer_dir, err, sizeof err)
            : tokenizer_load_bytes(&tok, err, sizeof err)) != 0)
        goto fail;
    have_tok = 1;
    const int pv = model_vocab_size(&policy), rv = have_rm ? model_vocab_size(&rm) : pv;
    if (hf ? (tok.vocab_size > pv || rv != pv) : (pv != tok.vocab_size || rv != tok.vocab_size)) {
        snprintf(err, sizeof err, "the %s tokenizer has vocabulary %d; the policy has %d%s",
                 hf ? "model directory's" : "demo task's byte-level", tok.vocab_size, pv,
                 rv != pv || (!hf && rv != tok.vocab_size) ? ", and the reward model differs" : "");
        goto fail;
    }
    if (samples_path != NULL && (samples = fopen(samples_path, "w")) == NULL) {
        snprintf(err, sizeof err, "cannot write %s", samples_path);
        rc = EXIT_FAILED;
        goto fail;
    }
    rng_state prompts, sampling;
    rng_seed(&prompts, (uint64_t)seed, 0xD0000004u);
    rng_seed(&sampling, (uint64_t)seed, 0xD0000005u);
    moments gold = {0}, proxy = {0}, kl = {0}, tokens = {0};
    long eos = 0, skipped = 0;
    const float inv_temp = (float)(1.0 / temperature);
    for (long i = 0; i < n; i++) {
        char prompt[128], unused[256], text[512];
        int32_t ids[MAX_IDS];
        int np = 0, ng = 0;
        demo_task_example(&prompts, prompt, sizeof prompt, unused, sizeof unused);
        const double g =
            demo_task_sample_tokens(&policy, &tok, prompt, (float)temperature, (int)max_tokens,
                                    &sampling, text, sizeof text, ids, &np, &ng);
        if (isnan(g) || ng < 1) {
            skipped++;
            continue;
        }
        add(&gold, g);
        add(&tokens, ng);
        const int ended = ids[np + ng - 1] == tok.eot_id;
        eos += ended;
        double k = NAN, p = NAN;
        if (have_ref && np + ng <= model_max_seq_len(&ref) && np + ng <= MAX_IDS) {
            k = response_logprob(&policy, ids, np, np + ng, inv_temp) -
                response_logprob(&ref, ids, np, np + ng, inv_temp);
            add(&kl, k);
        }
        if (have_rm && np + ng <= model_max_seq_len(&rm) && np + ng <= MAX_IDS) {
            p = reward_of(&rm, ids, np + ng, gain, bias);
            add(&proxy, p);
        }
        if (samples != NULL) {
            /* a response that is not valid UTF-8 is written as null */
            json_t *line =
                json_pack("{s:s, s:o?, s:f, s:o, s:o, s:b, s:i}", "prompt", prompt, "response",
                          json_string(text), "gold", g, "proxy", real_or_null(p), "kl",
                          real_or_null(k), "eos", ended, "tokens", ng);
            if (line == NULL || json_dumpf(line, samples, JSON_COMPACT | JSON_PRESERVE_ORDER) != 0)
                rc = EXIT_FAILED;
            fputc('\n', samples);
            json_decref(line);
        }
    }
    out = json_object();
    json_object_set_new(out, "event", json_string("demo_eval"));
    json_object_set_new(out, "policy", json_string(policy_path));
    json_object_set_new(out, "n", json_integer(gold.n));
    json_object_set_new(out, "skipped", json_integer(skipped));
    json_object_set_new(out, "seed", json_integer(seed));
    json_object_set_new(out, "temperature", json_real(temperature));
    json_object_set_new(out, "max_tokens", json_integer(max_tokens));
    json_object_set_new(out, "gold_mean", real_or_null(mean_of(&gold)));
    json_object_set_new(out, "gold_std", real_or_null(std_of(&gold)));
    json_object_set_new(out, "proxy_mean", real_or_null(mean_of(&proxy)));
    json_object_set_new(out, "proxy_std", real_or_null(std_of(&proxy)));
    json_object_set_new(out, "kl_mean", real_or_null(mean_of(&kl)));
    json_object_set_new(out, "kl_std", real_or_null(std_of(&kl)));
    json_object_set_new(out, "eos_fraction",
                        gold.n ? json_real((double)eos / (double)gold.n) : json_null());
    json_object_set_new(out, "response_tokens_mean", real_or_null(mean_of(&tokens)));
    if (rankings_path != NULL &&
        rankings_accuracy(&rm, &tok, rankings_path, out, err, sizeof err) != 0)
        goto fail;
    if (samples != NULL) {
        const int bad = fclose(samples) != 0;
        samples = NULL;
        if (bad || rc == EXIT_FAILED) {
            snprintf(err, sizeof err, "writing %s failed", samples_path);
            rc = EXIT_FAILED;
            goto fail;
        }
    }
    json_dumpf(out, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(out);
    model_free(&policy), model_free(&ref), model_free(&rm); /* a zeroed model frees nothing */
    tokenizer_free(&tok);
    return 0;
fail:
    fprintf(stderr, "rlhf-train demo-eval: %s\n", err);
    if (samples != NULL)
        fclose(samples);
    json_decref(out);
    model_free(&policy), model_free(&ref), model_free(&rm);
    if (have_tok)
        tokenizer_free(&tok);
    return rc;
}
