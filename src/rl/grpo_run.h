/* grpo_run.h — the `whale grpo` loop: DeepSeek-R1-Zero's reinforcement learning on a model that
 * whale train holds (train/trainer.h's tr_model, dense or DeepSeek, whole or with LoRA).
 *
 * One step: the current policy is written out (a checkpoint directory; with LoRA its adapters)
 * and opened by the engine through whale.h; P problems of the task's training split, G samples
 * each, are generated in one batch (rl/eval.h's rl_eval_run, the same path `whale eval` and the
 * server use) and judged by the task's verifier (rl/verify.h): reward = correct + format_weight x
 * format_ok. Each group's advantages, the clipped-ratio objective with its k3 KL penalty and its
 * derivative per token come from rl/grpo.h; the derivative is the per-token weight of the
 * trainer's cross-entropy, whose backward pass then gives -dJ/dtheta; AdamW takes mu steps on
 * the batch. The old policy's and the reference's log-probabilities are computed by the same
 * trainer forward pass as the policy's (the reference: the starting weights, or with LoRA the
 * base with its adapters switched off), so the ratio is exactly 1 on the first update and the KL
 * exactly 0 at the start; the engine's quantized kernels would add noise to both.
 *
 * Owns the loop, its metrics.jsonl and checkpoints. Not here: problems and verdicts (task.h,
 * verify.h), generation (whale.h), the objective's math (grpo.h), the model (train/). */
#ifndef WHALE_RL_GRPO_RUN_H
#define WHALE_RL_GRPO_RUN_H

#include <stdint.h>

#include "rl/grpo.h"
#include "rl/task.h"
#include "train/optim.h"
#include "train/trainer.h"

typedef struct rl_grpo_info {
    long step, steps;
    double reward, accuracy, format_rate, response_len; /* over the step's P x G samples */
    double kl, clip_frac, grad_norm;                    /* the last update's */
    float lr;
    double heldout; /* held-out accuracy (greedy) when evaluated at this step, else -1 */
    double t_gen, t_logp, t_backward, t_eval;
    double gen_tokens_per_s;
    const char *sample; /* one reply of the step (borrowed, valid during the callback) */
} rl_grpo_info;

typedef struct rl_grpo_opts {
    const char *out_dir;
    const char *tokenizer; /* a tokenizer.json for the policy directory (NULL: none needed) */
    const rl_task *task;
    uint64_t task_seed;
    int prompt_mode;    /* rl/eval.h's enum rl_prompt_mode */
    int prompts, group; /* P problems x G samples per step */
    long steps;
    int mu; /* optimizer steps per batch of rollouts */
    float temperature, top_p;
    int64_t max_tokens;
    float format_weight; /* the format reward's weight beside accuracy's 1 */
    grpo_cfg g;
    tr_adamw adam;
    float clip, min_lr_frac;
    long warmup;
    long eval_every; /* held-out accuracy every N steps (and at the first and last); 0: never */
    int64_t eval_n;  /* held-out problems */
    long save_every; /* 0: only at the end */
    int n_parallel;  /* sequences the engine decodes at once */
    int resume;      /* continue from out_dir's newest checkpoint: the same steps as a run never
                        stopped (rollouts are seeded by step; the engine's output is the same
                        alone or batched; the reference stays the starting model) */
    uint64_t seed;
    void (*on_step)(void *ctx, const rl_grpo_info *s);
    void (*on_note)(void *ctx, const char *msg);
    void *hook_ctx;
} rl_grpo_opts;

/* R1-Zero's and TRL's choices where they fit a small CPU run: P 8, G 8, mu 1, temperature 1,
 * top-p 1, 256 new tokens, format weight 0.2, eps 0.2, beta 0.04, lr 1e-5 constant after a
 * warmup of 10%, weight decay 0, clip 1, eval every 10 steps on 50 problems. */
void rl_grpo_opts_default(rl_grpo_opts *o);

/* Run o->steps steps on m (loaded, trained in place), writing o->out_dir/metrics.jsonl, the
 * rollouts' policy o->out_dir/policy/ and checkpoints o->out_dir/step-NNNNNN/. Returns 0, or a
 * negative code with err set. */
int rl_grpo_run(tr_model *m, const rl_grpo_opts *o, whale_err *err);

#endif
