/* distill.h — R1's distillation data: a teacher's verified reasoning traces (rejection sampling).
 *
 * DeepSeek-R1's SFT data and its distilled models came from sampling a strong model on problems
 * and keeping only the replies a rule (or a judge) found correct. Here: K samples per problem of a
 * task's training split from any model Whale runs (rl/eval.h's batched path), each verified by
 * the task's verifier; the correct ones that kept the think-then-answer format become chat
 * examples, {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line, the
 * shape `whale train --sft` reads (train/sft.h). The user message is the problem as the chat
 * prompt of `whale eval` words it, so a student trained on the file is evaluated on the prompt it
 * learned. With the plain prompt (the problem alone, as a user asks) a teacher that does not
 * think in tags has its replies re-formatted as reasoning then answer (rl_reformat_plain), and
 * replies with no reasoning left are not kept: R1's cold-start data, made from a model's own
 * readable answers. Owns choosing and writing the examples; not the sampling (eval.h) or the training. */
#ifndef WHALE_RL_DISTILL_H
#define WHALE_RL_DISTILL_H

#include <stdint.h>

#include "rl/eval.h"

typedef struct rl_distill_stats {
    int64_t problems, samples;  /* asked */
    int64_t correct, formatted; /* of the samples */
    int64_t kept;               /* examples written (at most per_problem per problem, no repeats) */
    int64_t problems_kept;      /* problems with at least one example */
    double seconds, tokens_per_s;
} rl_distill_stats;

/* Sample teacher m on p (its split, n problems, K samples, temperature ...; mode must resolve to
 * chat: the examples are conversations), keep the verified replies (correct and well formatted;
 * identical replies once; at most per_problem per problem, <= 0: all) and write them to out_path
 * as JSONL (replaced atomically: written beside it, then renamed). Returns 0 with *st, or a
 * negative code with err set (the evaluation's, WHALE_E_IO for the file, WHALE_E_ARG for the
 * r1zero prompt). p->mode: chat or plain. */
int rl_distill_run(whale_model *m, const rl_task *t, const rl_eval_params *p, int per_problem,
                   const char *out_path, rl_eval_progress progress, void *ctx, rl_distill_stats *st,
                   whale_err *err);

#endif
