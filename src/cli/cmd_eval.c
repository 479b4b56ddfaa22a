/* cmd_eval.c — `whale eval`: a model's accuracy on a verifiable task (src/rl). Parsing and
 * printing only: the evaluation is rl_eval_run; the model is reached through whale.h. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "base/utf8.h"
#include "rl/eval.h"
#include "rl/task.h"
#include "whale.h"

int cmd_eval(int argc, char **argv); /* main.c's table (cli.h) */

/* Characters of a reply --show prints before cutting it. */
#define EVAL_SHOW_MAX_CHARS 600

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: whale eval [-m MODEL] [--lora ADAPTER] --task NAME|FILE.jsonl [options]\n\n"
        "Measure a model on a task whose answers a program can check: each problem's replies are\n"
        "sampled through the engine (all at once, batched), their answers taken from after "
        "</think>\n"
        "(or <answer>...</answer>) and verified. Prints pass@1, maj@K, the format rate, mean\n"
        "reasoning and answer lengths and the speed.\n\n"
        "  --task T              a built-in task (below), or a JSONL file with one problem a "
        "line:\n"
        "                        {\"prompt\": \"...\", \"answer\": \"42\", \"verifier\": "
        "\"number\"|\"exact\"|\"regex\"}\n"
        "  --split test|train    which split of a built-in task (default test, the held-out one)\n"
        "  --n N                 problems (default 50; a file: at most its lines)\n"
        "  --samples K           replies per problem (default 1); maj@K votes over them\n"
        "  --temp T              temperature (default 0 with one sample, else 0.6; top-p 0.95)\n"
        "  --max-tokens M        tokens per reply (default 512)\n"
        "  --seed S              sampling seed (default 0): the same seed gives the same replies\n"
        "  --task-seed S         which problems a built-in task draws (default 0)\n"
        "  --lora ADAPTER        apply a LoRA adapter (PEFT layout: whale train --lora-rank, whale grpo)\n"
        "  --parallel P          sequences decoding at once (default 4)\n"
        "  --prompt MODE         chat: the model's chat format; r1zero: R1-Zero's plain-text\n"
        "                        template (\"... User: PROBLEM Assistant: <think>\"; the reply\n"
        "                        ends at its first </answer>); plain: the problem alone, as\n"
        "                        a user asks it, an untagged reply's last paragraph read as\n"
        "                        its answer; auto (default): chat when the model has a chat\n"
        "                        format, else r1zero\n"
        "  -t N                  threads (default: one per CPU)\n"
        "  --json                one JSON object on standard output instead of the table\n"
        "  --show N              also print the first N replies with their verdicts\n\n"
        "built-in tasks:\n");
    for (int i = 0; rl_task_builtin(i); i++)
        fprintf(f, "  %-12s %s\n", rl_task_name(rl_task_builtin(i)),
                rl_task_about(rl_task_builtin(i)));
    fprintf(f,
            "\nAn answer is the LAST number after </think> (number verifier); more than %d numbers "
            "there is a\n"
            "list of guesses and wrong; a reply whose <think> is never closed has no answer. See "
            "docs/RL.md.\n",
            RL_ANSWER_MAX_NUMBERS);
}

static void on_progress(void *ctx, int64_t done, int64_t total) {
    (void)total;
    progress_update(ctx, (double)done);
}

/* A number option's value in [lo, hi]; -1 with a message otherwise. */
static int num(const char *a, const char *v, double lo, double hi, double *d) {
    char *end;
    if (!v) {
        fprintf(stderr, "whale eval: %s needs a value\n", a);
        return -1;
    }
    *d = strtod(v, &end);
    if (end == v || *end || *d < lo || *d > hi) {
        fprintf(stderr, "whale eval: %s takes a number from %g to %g, not '%s'\n", a, lo, hi, v);
        return -1;
    }
    return 0;
}

static void print_sample(const rl_eval_result *r, int64_t x) {
    const rl_sample *s = &r->s[x];
    const rl_item *it = &r->items[x / r->samples];
    printf("--- problem %lld, sample %lld: %s%s\n", (long long)(x / r->samples),
           (long long)(x % r->samples), s->v.correct ? "correct" : "wrong",
           s->v.format_ok ? "" : " (format broken)");
    printf("problem:   %s\nreference: %s\n", it->prompt, it->ref.answer);
    printf("answer:    %.*s\n", s->v.has_answer ? (int)utf8_prefix(s->text + s->v.ans_off, s->v.ans_len, 200) : 0,
           s->v.has_answer ? s->text + s->v.ans_off : "");
    int cut = s->len > EVAL_SHOW_MAX_CHARS;
    printf("reply (%lld tokens, %s):\n%.*s%s\n", (long long)s->n_gen, s->finish ? s->finish : "?",
           (int)utf8_prefix(s->text, s->len, EVAL_SHOW_MAX_CHARS), s->text, cut ? " [...]" : "");
}

static void print_json(const rl_eval_result *r, const char *model, const char *lora, const char *task,
                       int split, uint64_t seed, int64_t max_tokens, int parallel, int64_t show) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model ? model : "default");
    if (lora) cJSON_AddStringToObject(j, "lora", lora); /* results with and without tell apart */
    cJSON_AddStringToObject(j, "task", task);
    cJSON_AddStringToObject(j, "split", split == RL_SPLIT_TEST ? "test" : "train");
    cJSON_AddStringToObject(j, "prompt", rl_prompt_mode_name(r->mode));
    cJSON_AddNumberToObject(j, "n", (double)r->n);
    cJSON_AddNumberToObject(j, "samples", r->samples);
    cJSON_AddNumberToObject(j, "temperature",
                            round(r->temperature * 1e6) / 1e6); /* 0.8, not 0.800000011920929 */
    cJSON_AddNumberToObject(j, "seed", (double)seed);
    cJSON_AddNumberToObject(j, "max_tokens", (double)max_tokens);
    cJSON_AddNumberToObject(j, "parallel", parallel);
    cJSON_AddNumberToObject(j, "pass_at_1", r->pass1);
    char key[32];
    snprintf(key, sizeof key, "maj_at_%d", r->samples);
    cJSON_AddNumberToObject(j, key, r->maj);
    cJSON_AddNumberToObject(j, "maj_at_k", r->maj);
    cJSON_AddNumberToObject(j, "format_rate", r->format_rate);
    cJSON_AddNumberToObject(j, "answered_rate", r->answered_rate);
    cJSON_AddNumberToObject(j, "mean_reasoning_tokens", r->mean_think);
    cJSON_AddNumberToObject(j, "mean_answer_tokens", r->mean_answer);
    cJSON_AddNumberToObject(j, "mean_completion_tokens", r->mean_gen);
    cJSON_AddNumberToObject(j, "prompt_tokens", (double)r->n_prompt_tokens);
    cJSON_AddNumberToObject(j, "completion_tokens", (double)r->n_gen_tokens);
    cJSON_AddNumberToObject(j, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    int64_t total = r->n * r->samples;
    cJSON *arr = cJSON_AddArrayToObject(j, "examples");
    for (int64_t x = 0; x < total && x < show; x++) {
        const rl_sample *s = &r->s[x];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "problem", (double)(x / r->samples));
        cJSON_AddStringToObject(o, "prompt", r->items[x / r->samples].prompt);
        cJSON_AddStringToObject(o, "reference", r->items[x / r->samples].ref.answer);
        cJSON_AddStringToObject(o, "reply", s->text ? s->text : "");
        cJSON_AddStringToObject(o, "answer", s->v.norm);
        cJSON_AddBoolToObject(o, "correct", s->v.correct);
        cJSON_AddBoolToObject(o, "format_ok", s->v.format_ok);
        cJSON_AddNumberToObject(o, "tokens", (double)s->n_gen);
        cJSON_AddItemToArray(arr, o);
    }
    char *txt = cJSON_PrintUnformatted(j);
    if (txt) puts(txt);
    free(txt);
    cJSON_Delete(j);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *task_arg = NULL, *lora = NULL;
    int json = 0, threads = 0;
    int64_t show = 0;
    rl_eval_params p;
    rl_eval_params_default(&p);
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKE(lo, hi)                                                                               \
    do {                                                                                           \
        if (num(a, v, lo, hi, &d)) return 2;                                                       \
        i++;                                                                                       \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) {
            model = v;
            i++;
        } else if (!strcmp(a, "--task") && v) {
            task_arg = v;
            i++;
        } else if (!strcmp(a, "--lora") && v) {
            lora = v;
            i++;
        } else if (!strcmp(a, "--split") && v) {
            if (strcmp(v, "test") && strcmp(v, "train")) {
                fprintf(stderr, "whale eval: --split takes test or train\n");
                return 2;
            }
            p.split = !strcmp(v, "test") ? RL_SPLIT_TEST : RL_SPLIT_TRAIN;
            i++;
        } else if (!strcmp(a, "--prompt") && v) {
            int mode = rl_prompt_mode_parse(v);
            if (mode < 0) {
                fprintf(stderr, "whale eval: --prompt takes chat, r1zero or auto, not '%s'\n", v);
                return 2;
            }
            p.mode = mode;
            i++;
        } else if (!strcmp(a, "--n")) {
            TAKE(1, RL_EVAL_MAX_SAMPLES);
            p.n = (int64_t)d;
        } else if (!strcmp(a, "--samples")) {
            TAKE(1, 1024);
            p.samples = (int)d;
        } else if (!strcmp(a, "--temp")) {
            TAKE(0, 100);
            p.temperature = (float)d;
        } else if (!strcmp(a, "--max-tokens")) {
            TAKE(1, 1 << 20);
            p.max_tokens = (int64_t)d;
        } else if (!strcmp(a, "--seed")) {
            TAKE(0, 9.0e15);
            p.seed = (uint64_t)d;
        } else if (!strcmp(a, "--task-seed")) {
            TAKE(0, 9.0e15);
            p.task_seed = (uint64_t)d;
        } else if (!strcmp(a, "--parallel")) {
            TAKE(1, 256);
            p.n_parallel = (int)d;
        } else if (!strcmp(a, "-t")) {
            TAKE(1, 1024);
            threads = (int)d;
        } else if (!strcmp(a, "--show")) {
            TAKE(0, RL_EVAL_MAX_SAMPLES);
            show = (int64_t)d;
        } else {
            fprintf(stderr, "whale eval: bad option '%s' (see whale eval --help)\n", a);
            return 2;
        }
#undef TAKE
    }
    if (!task_arg) {
        char names[256];
        rl_task_names(names, sizeof names);
        fprintf(stderr, "whale eval: give --task NAME (%s) or --task FILE.jsonl\n", names);
        return 2;
    }
    whale_err err = {0};
    const rl_task *task;
    rl_task *loaded;
    if (rl_task_open(task_arg, &task, &loaded, &err)) {
        fprintf(stderr, "whale eval: %s\n", err.msg);
        return err.code == WHALE_E_NOTFOUND ? 2 : 1;
    }
    whale_model *m = NULL;
    rl_eval_result r = {0};
    int rc = 1;
    whale_model_params mp = {.n_threads = threads, .progress = !json && isatty(2)};
    if (whale_model_open(&m, model, &mp, &err)) {
        fprintf(stderr, "whale eval: %s%s\n", err.msg,
                model ? "" : " (run `make run` or scripts/setup to fetch the default model)");
        goto done;
    }
    if (lora && whale_model_lora(m, lora, &err)) {
        fprintf(stderr, "whale eval: %s\n", err.msg);
        goto done;
    }
    progress bar;
    int64_t n_total = p.n * p.samples;
    if (rl_task_size(task, p.split) >= 0 && p.n > rl_task_size(task, p.split))
        n_total = rl_task_size(task, p.split) * p.samples;
    progress_begin(&bar, "eval", (double)n_total, 0);
    int erc = rl_eval_run(m, task, &p, json ? NULL : on_progress, &bar, &r, &err);
    if (!json) progress_end(&bar);
    if (erc) {
        fprintf(stderr, "whale eval: %s\n", err.msg);
        goto done;
    }
    if (json) {
        print_json(&r, model, lora, rl_task_name(task), p.split, p.seed, p.max_tokens, p.n_parallel,
                   show);
    } else {
        for (int64_t x = 0; x < r.n * r.samples && x < show; x++) print_sample(&r, x);
        whale_model_info mi;
        whale_model_info_get(m, &mi);
        const char *slash = strrchr(mi.path, '/');
        printf("task %s (%s split), model %s%s%s, prompt %s\n", rl_task_name(task),
               p.split == RL_SPLIT_TEST ? "test" : "train", slash ? slash + 1 : mi.path,
               lora ? " + LoRA " : "", lora ? lora : "", rl_prompt_mode_name(r.mode));
        printf("%lld problems x %d sample%s, temperature %g, at most %lld tokens each\n",
               (long long)r.n, r.samples, r.samples == 1 ? "" : "s", r.temperature,
               (long long)p.max_tokens);
        printf("  %-22s %6.1f%%\n", "pass@1", 100 * r.pass1);
        char lab[32];
        snprintf(lab, sizeof lab, "maj@%d", r.samples);
        printf("  %-22s %6.1f%%\n", lab, 100 * r.maj);
        printf("  %-22s %6.1f%%\n", "format", 100 * r.format_rate);
        printf("  %-22s %6.1f%%\n", "answered", 100 * r.answered_rate);
        printf("  %-22s %6.1f tokens\n", "reasoning (mean)", r.mean_think);
        printf("  %-22s %6.1f tokens\n", "answer (mean)", r.mean_answer);
        printf("  %-22s %6.1f tokens/s (%lld tokens, %d parallel, %.1f s)\n", "speed",
               r.tokens_per_s, (long long)r.n_gen_tokens, p.n_parallel, r.seconds);
    }
    rc = 0;
done:
    rl_eval_result_free(&r);
    whale_model_close(m);
    rl_task_free(loaded);
    return rc;
}
