/* grpo.h — the math of GRPO (group relative policy optimization; DeepSeekMath, section 4.1, as
 * used for DeepSeek-R1-Zero) and of its Dr. GRPO variant (Liu et al. 2025, "Understanding
 * R1-Zero-like training"): group advantages, the token-level clipped-ratio objective with the k3
 * KL penalty, and its derivative with respect to each token's log-probability, which becomes the
 * per-token loss weight of the trainer's cross-entropy (train/dense.h, train/deepseek.h).
 * Owns: numbers in, numbers out, for one group at a time. Not here: rollouts, rewards, the
 * engine, the model, the optimizer (the `whale grpo` loop calls those). Checked against PyTorch
 * autograd (tests/golden/make_grpo_goldens.py, tests/unit/test_rl_grpo.c); docs/RL.md, "GRPO".
 *
 * Sign conventions. J is an objective to MAXIMIZE. grpo_objective returns J and dJ[t] = dJ/dlogp_t.
 * The trainer MINIMIZES its loss sum_t w_t * (-logp_t), whose gradient is sum_t w_t *
 * d(-logp_t)/dtheta; passing w_t = dJ[t] (times 1/n_groups when a batch holds several groups and
 * the batch's objective is their mean) therefore gives exactly -dJ/dtheta, the gradient of the loss
 * -J. The weights are constants of the backward pass (as a detached tensor is in PyTorch): the
 * trainer's reported loss is then not -J; J is the one grpo_objective returns. */
#ifndef WHALE_RL_GRPO_H
#define WHALE_RL_GRPO_H

#include <stdint.h>

#include "whale.h"

typedef enum grpo_variant {
    /* A_i = (r_i - mean r) / (std r + adv_eps), std with Bessel's correction (G - 1, as
     * torch.std, TRL's GRPOTrainer and DeepSeekMath's code); J = mean over the group of each
     * response's mean over its tokens. */
    GRPO_STD = 0,
    /* Dr. GRPO: A_i = r_i - mean r (no std); J = the sum over every token of the group / (G x
     * max_len), a constant, so a response's length does not scale its tokens' weight. */
    GRPO_DR = 1,
} grpo_variant;

typedef struct grpo_cfg {
    grpo_variant variant;
    /* epsilon: the ratio is clipped to [1 - eps, 1 + eps] (0.2 in DeepSeekMath and TRL) */
    float clip_eps;
    /* the KL penalty's coefficient (0.04 in DeepSeekMath and TRL; 0: none) */
    float beta;
    /* GRPO_STD: added to the std, so a group of equal rewards gets A = 0 (TRL: 1e-4) */
    float adv_eps;
    /* GRPO_DR: the constant length that divides (the rollouts' maximum new tokens) */
    int max_len;
} grpo_cfg;

/* What a group's objective reports besides J, over the group's response tokens. */
typedef struct grpo_stats {
    /* the share of tokens whose clipped branch was taken: rho < 1 - eps with A < 0, or
     * rho > 1 + eps with A > 0 (TRL's clip_ratio) */
    double clip_frac;
    double kl_mean;   /* the mean of the k3 estimator KL_t */
    int64_t n_tokens; /* the tokens counted (mask set) */
} grpo_stats;

/* Advantages of one group of G rewards into adv[G] (computed in double). GRPO_STD needs G >= 2
 * (a sample std); GRPO_DR takes any G >= 1. Returns 0, or WHALE_E_ARG with a message for a G
 * out of range or a reward that is not finite. */
int grpo_advantages(float *adv, const float *rewards, int G, const grpo_cfg *cfg, whale_err *err);

/* The objective of one group of G responses laid out as rows of L positions: logp, old, ref and
 * mask are [G][L]; mask[i][t] != 0 marks response i's tokens (the others are ignored: their
 * values may be anything, dJ there is 0). logp: log-probabilities of the sampled tokens under the
 * policy being trained (from tr_*_step's logp output); old: under the policy that sampled them
 * (equal to logp on the first update of a batch, so rho = 1); ref: under the reference policy.
 * adv[G] from grpo_advantages. Per token, with rho_t = exp(logp_t - old_t):
 *   term_t = min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) - beta KL_t,
 *   KL_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (k3: unbiased, never negative);
 * GRPO_STD: J = 1/G sum_i 1/|o_i| sum_t term_t (a response with no token adds 0);
 * GRPO_DR:  J = 1/(G max_len) sum_i sum_t term_t.
 * Writes *J, dJ[G][L] = dJ/dlogp_t (when dJ is not NULL):
 *   factor_i x (g_t - beta (1 - exp(ref_t - logp_t))),
 *   g_t = rho_t A_i on the unclipped branch, 0 on the clipped one (the clip is constant there),
 *   factor_i = 1/(G |o_i|) or 1/(G max_len);
 * and *st (when not NULL). Arithmetic in double. Returns 0, or WHALE_E_ARG with a message for a
 * bad shape or configuration (G, L < 1; eps outside [0, 1); beta < 0; GRPO_DR's max_len < 1).
 * Layout: with the group's rows as the trainer's batch rows (L = T, mask = targets >= 0), logp is
 * the step's logp output as it comes and dJ its weights argument as it goes (x 1/n_groups). */
int grpo_objective(double *J, float *dJ, grpo_stats *st, const float *logp, const float *old,
                   const float *ref, const uint8_t *mask, const float *adv, int G, int L,
                   const grpo_cfg *cfg, whale_err *err);

#endif
