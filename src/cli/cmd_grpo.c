/* cmd_grpo.c — `whale grpo`: DeepSeek-R1-Zero's reinforcement learning (GRPO with rule-based
 * rewards) on a model whale train can hold. Parsing and printing only: the loop is rl/grpo_run.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl/eval.h"
#include "rl/grpo_run.h"
#include "rl/task.h"
#include "train/load.h"
#include "train/ops.h"

static void usage(FILE *f) {
    char names[256];
    rl_task_names(names, sizeof names);
    fprintf(
        f,
        "usage: whale grpo -m MODEL --task NAME|FILE.jsonl -o RUN_DIR [--lora-rank R | --full] "
        "[options]\n\n"
        "Reinforcement learning as DeepSeek-R1-Zero did it: for each step, P problems of the "
        "task's\n"
        "training split, G replies to each sampled by the engine in one batch, rewards from the "
        "task's\n"
        "verifier (correct answer: 1, think-then-answer format: --format-reward), advantages "
        "within each\n"
        "group, and the clipped-ratio objective with a KL penalty to the starting model (GRPO). "
        "The\n"
        "reply format is R1-Zero's (<think> ... </think> then the answer) or the model's chat "
        "format.\n"
        "Writes RUN_DIR/metrics.jsonl (reward, accuracy, format, response_len, kl, clip_frac, the "
        "time\n"
        "split; heldout_accuracy when evaluated), RUN_DIR/step-NNNNNN/ checkpoints (with LoRA: "
        "the\n"
        "adapters, as PEFT saves them) and RUN_DIR/summary.json (held-out accuracy before and "
        "after).\n"
        "`whale train plot RUN_DIR` draws the curves; docs/RL.md explains it all.\n\n"
        "  -m MODEL            a model whale train loads: a Hugging Face directory (a whale train\n"
        "                      checkpoint), or a GGUF of a dense model\n"
        "  --task T            %s,\n"
        "                      or a JSONL file (whale eval)\n"
        "  --full              train every weight (the default)\n"
        "  --lora-rank R       train LoRA adapters of rank R instead (dense models; --lora-alpha "
        "A,\n"
        "                      default 2R; --lora-targets as whale train)\n"
        "  --steps N           steps (default 100)\n"
        "  --prompts P         problems per step (default 8)\n"
        "  --group G           replies per problem (default 8)\n"
        "  --mu M              optimizer steps per batch of replies (default 1)\n"
        "  --max-tokens N      new tokens per reply (default 256)\n"
        "  --temp T            sampling temperature of the replies (default 1.0)\n"
        "  --format-reward W   the format reward's weight beside correctness's 1 (default 0.2)\n"
        "  --beta B            KL penalty (default 0.04; 0: none, and no reference pass)\n"
        "  --clip-eps E        the ratio's clip (default 0.2)\n"
        "  --dr-grpo           Dr. GRPO: no std in the advantages, no length normalization\n"
        "  --lr LR             peak learning rate (default 1e-5; constant after a 10%% warmup)\n"
        "  --prompt MODE       chat, r1zero, plain (the problem alone; see whale eval --help) or\n"
        "                      auto (default: chat when the model has a chat format)\n"
        "  --eval-every N      held-out accuracy (greedy) every N steps (default 10; 0: never)\n"
        "  --eval-n N          held-out problems (default 50)\n"
        "  --save-every N      a checkpoint every N steps (default: at the end)\n"
        "  --parallel N        sequences the engine decodes at once (default 8)\n"
        "  --threads N         threads (default: one per CPU)\n"
        "  --seed S            sampling and adapters' start (default 1)\n"
        "  --resume            continue from RUN_DIR's newest checkpoint (the same steps as a run\n"
        "                      never stopped)\n",
        names);
}

typedef struct ui {
    int tty;
    double t_start;
} ui;

static void on_note(void *ctx, const char *msg) {
    ui *u = ctx;
    fprintf(stderr, "%swhale grpo: %s\n", u->tty ? "\r\033[K" : "", msg);
}

static void on_step(void *ctx, const rl_grpo_info *s) {
    (void)ctx;
    char held[48] = "";
    if (s->heldout >= 0) snprintf(held, sizeof held, "  held-out %.1f%%", 100 * s->heldout);
    fprintf(stderr,
            "step %ld/%ld  reward %.3f  acc %.1f%%  format %.1f%%  len %.0f  kl %.4f  clip %.3f%s  "
            "gen %.1fs (%.0f tok/s) logp %.1fs backward %.1fs\n",
            s->step, s->steps, s->reward, 100 * s->accuracy, 100 * s->format_rate, s->response_len,
            s->kl, s->clip_frac, held, s->t_gen, s->gen_tokens_per_s, s->t_logp, s->t_backward);
}

int cmd_grpo(int argc, char **argv) {
    rl_grpo_opts o;
    rl_grpo_opts_default(&o);
    const char *model = NULL, *task = NULL, *lora_targets = "all", *prompt = "auto";
    tr_lora lora = {0};
    int threads = 0, full = 0, rank_given = 0, alpha_given = 0, lora_targets_given = 0;
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
            task = v;
        else if (ARG("-o") || ARG("--out"))
            o.out_dir = v;
        else if (!strcmp(a, "--full"))
            full = 1;
        else if (ARG("--lora-rank"))
            lora.rank = atoi(v), rank_given = 1;
        else if (ARG("--lora-alpha"))
            lora.alpha = (float)atof(v), alpha_given = 1;
        else if (ARG("--lora-targets"))
            lora_targets = v, lora_targets_given = 1;
        else if (ARG("--steps"))
            o.steps = atol(v);
        else if (ARG("--prompts"))
            o.prompts = atoi(v);
        else if (ARG("--group"))
            o.group = atoi(v);
        else if (ARG("--mu"))
            o.mu = atoi(v);
        else if (ARG("--max-tokens"))
            o.max_tokens = atoll(v);
        else if (ARG("--temp"))
            o.temperature = (float)atof(v);
        else if (ARG("--format-reward"))
            o.format_weight = (float)atof(v);
        else if (ARG("--beta"))
            o.g.beta = (float)atof(v);
        else if (ARG("--clip-eps"))
            o.g.clip_eps = (float)atof(v);
        else if (!strcmp(a, "--dr-grpo"))
            o.g.variant = GRPO_DR;
        else if (ARG("--lr"))
            o.adam.lr = (float)atof(v);
        else if (ARG("--prompt"))
            prompt = v;
        else if (ARG("--eval-every"))
            o.eval_every = atol(v);
        else if (ARG("--eval-n"))
            o.eval_n = atoll(v);
        else if (ARG("--save-every"))
            o.save_every = atol(v);
        else if (ARG("--parallel"))
            o.n_parallel = atoi(v);
        else if (ARG("--threads"))
            threads = atoi(v);
        else if (ARG("--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--resume"))
            o.resume = 1;
        else {
            fprintf(stderr, "whale grpo: bad option '%s' (see --help)\n", a);
            return 2;
        }
#undef ARG
    }
    if (!model || !task || !o.out_dir) {
        fprintf(stderr, "whale grpo: needs -m MODEL, --task T and -o RUN_DIR (see --help)\n");
        return 2;
    }
    /* every number in its range, named when it is not (a silently odd value wastes a run) */
    const char *bad = o.steps < 1             ? "--steps must be at least 1"
                      : o.prompts < 1         ? "--prompts must be at least 1"
                      : o.group < 2           ? "--group must be at least 2 (advantages compare replies to one problem)"
                      : o.mu < 1              ? "--mu must be at least 1"
                      : o.max_tokens < 1      ? "--max-tokens must be at least 1"
                      : !(o.temperature > 0 && isfinite(o.temperature))
                          ? "--temp must be above 0 (at 0 every reply to a problem is the same: nothing to compare)"
                      : !(o.adam.lr > 0 && isfinite(o.adam.lr)) ? "--lr must be above 0"
                      : !(o.g.beta >= 0 && isfinite(o.g.beta))  ? "--beta must be 0 or more"
                      : !(o.g.clip_eps > 0 && o.g.clip_eps < 1) ? "--clip-eps must be between 0 and 1"
                      : !isfinite(o.format_weight)              ? "--format-reward must be a number"
                      : o.eval_every < 0 || o.save_every < 0    ? "--eval-every and --save-every are 0 or more"
                      : o.eval_n < 1                            ? "--eval-n must be at least 1"
                      : o.n_parallel < 1                        ? "--parallel must be at least 1"
                      : threads < 0                             ? "--threads must be 0 (all) or more"
                      : rank_given && (lora.rank < 1 || lora.rank > TR_LORA_MAX_RANK)
                          ? "--lora-rank must be 1 to 1024"
                      : !rank_given && (alpha_given || lora_targets_given)
                          ? "--lora-alpha and --lora-targets need --lora-rank"
                      : alpha_given && !(lora.alpha > 0 && isfinite(lora.alpha)) ? "--lora-alpha must be above 0"
                                                                                 : NULL;
    if (bad) {
        fprintf(stderr, "whale grpo: %s\n", bad);
        return 2;
    }
    if (full && lora.rank) {
        fprintf(stderr, "whale grpo: --full and --lora-rank exclude each other\n");
        return 2;
    }
    if ((o.prompt_mode = rl_prompt_mode_parse(prompt)) < 0) {
        fprintf(stderr, "whale grpo: --prompt is chat, r1zero or auto, not '%s'\n", prompt);
        return 2;
    }
    whale_err err = {0};
    if (lora.rank) {
        if (tr_lora_targets_parse(lora_targets, &lora.targets, &err)) {
            fprintf(stderr, "whale grpo: %s\n", err.msg);
            return 2;
        }
        if (!alpha_given) lora.alpha = 2.0f * (float)lora.rank;
    }
    const rl_task *t;
    rl_task *loaded_task;
    if (rl_task_open(task, &t, &loaded_task, &err)) {
        fprintf(stderr, "whale grpo: %s\n", err.msg);
        return 1;
    }
    o.task = t;
    char path[4200], tok[4300];
    if (whale_model_resolve(model, path, sizeof path, &err)) {
        fprintf(stderr, "whale grpo: %s\n", err.msg);
        rl_task_free(loaded_task);
        return 1;
    }
    if (access(path, F_OK)) {
        fprintf(stderr, "whale grpo: %s: no such file or directory\n", path);
        rl_task_free(loaded_task);
        return 1;
    }
    snprintf(tok, sizeof tok, "%s/tokenizer.json", path);
    if (!access(tok, R_OK))
        o.tokenizer = tok;
    else if (!lora.rank) { /* the written-out policy must carry a vocabulary for the engine */
        fprintf(
            stderr,
            "whale grpo: %s has no tokenizer.json beside it: training the whole model needs a "
            "Hugging Face directory (whale train checkpoints are); for a GGUF use --lora-rank R\n",
            path);
        rl_task_free(loaded_task);
        return 1;
    }
    if (threads > 0) tr_set_threads(threads);
    tr_loaded L;
    int rc = tr_loaded_open(&L, path, lora.rank ? &lora : NULL, o.seed, &err);
    if (!rc) {
        if (L.deepseek)
            L.ds.c.mtp_weight = 0, L.ds.c.balance_alpha = 0; /* the policy gradient alone */
        size_t trainable = 0;
        for (int i = 0; i < L.model.P->n_t; i++)
            trainable += L.model.P->t[i].frozen ? 0 : L.model.P->t[i].n;
        fprintf(stderr,
                "whale grpo: %s, %.2fM parameters, %.3fM trained%s; task %s; %d problems x %d "
                "replies per step, "
                "%ld steps\n",
                path, (double)L.model.P->n / 1e6, (double)trainable / 1e6,
                lora.rank ? " (LoRA)" : "", rl_task_name(t), o.prompts, o.group, o.steps);
        ui u = {.tty = isatty(2)};
        o.on_step = on_step, o.on_note = on_note, o.hook_ctx = &u;
        rc = rl_grpo_run(&L.model, &o, &err);
    }
    if (rc)
        fprintf(stderr, "whale grpo: %s\n", err.msg);
    else
        printf("%s/step-%06ld\n", o.out_dir, o.steps);
    tr_loaded_free(&L);
    rl_task_free(loaded_task);
    return rc ? 1 : 0;
}
