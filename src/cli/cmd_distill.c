/* cmd_distill.c — `whale distill`: a teacher's verified reasoning traces as SFT data (R1's
 * rejection sampling). Parsing and printing only: the work is rl/distill.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "rl/distill.h"
#include "rl/task.h"

static void usage(FILE *f) {
    char names[256];
    rl_task_names(names, sizeof names);
    fprintf(
        f,
        "usage: whale distill -m TEACHER --task NAME|FILE.jsonl -o TRACES.jsonl [options]\n\n"
        "Samples the teacher (any model Whale runs) K times on N problems of the task's training "
        "split,\n"
        "keeps the replies its verifier finds correct and in the think-then-answer format "
        "(rejection\n"
        "sampling, as DeepSeek-R1's SFT data was made), and writes them as conversations, one\n"
        "{\"messages\": [user, assistant]} per line. Then train a student on them and measure "
        "it:\n\n"
        "  whale distill -m qwen2.5-coder-1.5b --task word_en --n 400 --samples 4 -o traces.jsonl\n"
        "  whale train --from default --sft traces.jsonl --lora-rank 16 --lr 2e-4 --steps 200 -o "
        "runs/student\n"
        "  whale merge -m default --lora runs/student/step-000200 -o student.gguf\n"
        "  whale eval -m student.gguf --task word_en      # beside: whale eval -m default / -m "
        "TEACHER\n\n"
        "  -m MODEL            the teacher (name or path; it needs a chat format)\n"
        "  --task T            %s, or a JSONL task file\n"
        "  -o FILE             the traces (JSONL; replaced when it exists)\n"
        "  --n N               problems (default 200)\n"
        "  --samples K         replies per problem (default 4)\n"
        "  --per-problem N     keep at most N replies of a problem (default 1; 0: every distinct "
        "one)\n"
        "  --prompt MODE       chat (default): the problem and an instruction to think in tags;\n"
        "                      plain: the problem alone, as a user asks it, the reply read as\n"
        "                      reasoning then its last paragraph as the answer and written so\n"
        "                      (<think> ... </think> answer): a cold start from a model's own\n"
        "                      answers, as R1's was\n"
        "  --temp T            sampling temperature (default 0.6)\n"
        "  --max-tokens N      per reply (default 512)\n"
        "  --parallel N        sequences decoding at once (default 4)\n"
        "  --threads N         threads (default: one per CPU)\n"
        "  --seed S            sampling seed (default 1)\n"
        "  --task-seed S       which problems (default 0)\n",
        names);
}

static void on_progress(void *ctx, int64_t done, int64_t total) {
    (void)total;
    progress_update(ctx, (double)done);
}

int cmd_distill(int argc, char **argv) {
    const char *model = NULL, *task_arg = NULL, *out = NULL;
    rl_eval_params p;
    rl_eval_params_default(&p);
    p.split = RL_SPLIT_TRAIN, p.n = 200, p.samples = 4, p.temperature = 0.6f,
    p.mode = RL_PROMPT_CHAT, p.seed = 1;
    int per_problem = 1, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
#define ARG(flag) (!strcmp(a, flag) && v && ++i)
        if (ARG("-m") || ARG("--model"))
            model = v;
        else if (ARG("--task"))
            task_arg = v;
        else if (ARG("-o") || ARG("--out"))
            out = v;
        else if (ARG("--n"))
            p.n = atoll(v);
        else if (ARG("--samples"))
            p.samples = atoi(v);
        else if (ARG("--per-problem"))
            per_problem = atoi(v);
        else if (ARG("--prompt")) {
            p.mode = rl_prompt_mode_parse(v);
            if (p.mode != RL_PROMPT_CHAT && p.mode != RL_PROMPT_PLAIN) {
                fprintf(stderr, "whale distill: --prompt takes chat or plain, not '%s'\n", v);
                return 2;
            }
        } else if (ARG("--temp"))
            p.temperature = (float)atof(v);
        else if (ARG("--max-tokens"))
            p.max_tokens = atoll(v);
        else if (ARG("--parallel"))
            p.n_parallel = atoi(v);
        else if (ARG("--threads"))
            threads = atoi(v);
        else if (ARG("--seed"))
            p.seed = strtoull(v, NULL, 10);
        else if (ARG("--task-seed"))
            p.task_seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "whale distill: bad option '%s' (see --help)\n", a);
            return 2;
        }
#undef ARG
    }
    if (p.max_tokens < 1 || per_problem < 0 || !(p.temperature >= 0 && isfinite(p.temperature))) {
        fprintf(stderr, "whale distill: --max-tokens must be at least 1, --per-problem 0 or more, --temp 0 or more\n");
        return 2;
    }
    if (!model || !task_arg || !out || p.n < 1 || p.samples < 1) {
        fprintf(stderr, "whale distill: needs -m TEACHER, --task T and -o FILE (and --n, --samples "
                        ">= 1; see --help)\n");
        return 2;
    }
    whale_err err = {0};
    const rl_task *task;
    rl_task *loaded;
    if (rl_task_open(task_arg, &task, &loaded, &err)) {
        fprintf(stderr, "whale distill: %s\n", err.msg);
        return 1;
    }
    whale_model *m = NULL;
    whale_model_params mp = {.n_threads = threads, .progress = isatty(2)};
    int rc = 1;
    if (whale_model_open(&m, model, &mp, &err)) {
        fprintf(stderr, "whale distill: %s\n", err.msg);
        rl_task_free(loaded);
        return 1;
    }
    progress bar;
    int64_t size = rl_task_size(task, p.split), n = size >= 0 && p.n > size ? size : p.n;
    progress_begin(&bar, "distill", (double)(n * p.samples), 0);
    rl_distill_stats st;
    int drc = rl_distill_run(m, task, &p, per_problem, out, on_progress, &bar, &st, &err);
    progress_end(&bar);
    if (drc)
        fprintf(stderr, "whale distill: %s\n", err.msg);
    else {
        printf("%s: %lld examples from %lld of %lld problems (%lld of %lld replies correct, %lld "
               "well formatted; "
               "%.0f s, %.1f tokens/s)\n",
               out, (long long)st.kept, (long long)st.problems_kept, (long long)st.problems,
               (long long)st.correct, (long long)st.samples, (long long)st.formatted, st.seconds,
               st.tokens_per_s);
        rc = 0;
        if (!st.kept) { /* an empty file is written (the run's honest result), but say so */
            fprintf(stderr, "whale distill: no reply was both correct and well formatted: %s is empty\n", out);
            rc = 1;
        }
    }
    whale_model_close(m);
    rl_task_free(loaded);
    return rc;
}
