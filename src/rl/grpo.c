/* grpo.c — GRPO's advantages, objective and its per-token derivative (see grpo.h for the
 * formulas and the sign conventions). Plain loops in double over one group: the group is a few
 * thousand tokens, against a model's forward and backward over the same tokens. */
#include "rl/grpo.h"

#include <math.h>

#include "base/err.h"

int grpo_advantages(float *adv, const float *rewards, int G, const grpo_cfg *cfg, whale_err *err) {
    int dr = cfg->variant == GRPO_DR;
    if (G < (dr ? 1 : 2))
        return err_set(err, WHALE_E_ARG,
                       "a group of %d responses: GRPO's advantages need at least %d (a sample std)",
                       G, dr ? 1 : 2);
    double mean = 0;
    for (int i = 0; i < G; i++) {
        if (!isfinite(rewards[i]))
            return err_set(err, WHALE_E_ARG, "reward %d of the group is not a finite number", i);
        mean += rewards[i];
    }
    mean /= G;
    double div = 1;
    if (!dr) { /* sample std (G - 1), as torch.std and TRL; adv_eps keeps equal rewards at A = 0 */
        double ss = 0;
        for (int i = 0; i < G; i++) ss += ((double)rewards[i] - mean) * ((double)rewards[i] - mean);
        div = sqrt(ss / (G - 1)) + cfg->adv_eps;
    }
    for (int i = 0; i < G; i++) adv[i] = (float)(((double)rewards[i] - mean) / div);
    return 0;
}

int grpo_objective(double *J, float *dJ, grpo_stats *st, const float *logp, const float *old,
                   const float *ref, const uint8_t *mask, const float *adv, int G, int L,
                   const grpo_cfg *cfg, whale_err *err) {
    int dr = cfg->variant == GRPO_DR;
    if (G < 1 || L < 1)
        return err_set(err, WHALE_E_ARG, "a group of %d responses of %d positions", G, L);
    if (!(cfg->clip_eps >= 0 && cfg->clip_eps < 1))
        return err_set(err, WHALE_E_ARG, "clip epsilon %g outside [0, 1)", cfg->clip_eps);
    if (!(cfg->beta >= 0)) return err_set(err, WHALE_E_ARG, "KL coefficient %g below 0", cfg->beta);
    if (dr && cfg->max_len < 1)
        return err_set(err, WHALE_E_ARG, "Dr. GRPO needs the constant max length (got %d)",
                       cfg->max_len);
    double lo = 1.0 - cfg->clip_eps, hi = 1.0 + cfg->clip_eps, beta = cfg->beta;
    double sum = 0, kl_sum = 0;
    int64_t n_tok = 0, n_clip = 0;
    for (int i = 0; i < G; i++) {
        size_t row = (size_t)i * L;
        int len = 0;
        for (int t = 0; t < L; t++) len += mask[row + t] != 0;
        /* the aggregation: J = sum_i factor_i sum_t term_t */
        double factor = dr ? 1.0 / ((double)G * cfg->max_len) : 1.0 / ((double)G * (len ? len : 1));
        double A = adv[i], resp = 0;
        for (int t = 0; t < L; t++) {
            if (!mask[row + t]) {
                if (dJ) dJ[row + t] = 0;
                continue;
            }
            double lp = logp[row + t], rho = exp(lp - old[row + t]), d = (double)ref[row + t] - lp,
                   e = exp(d);
            double kl = e - d - 1;
            /* min(rho A, clip(rho) A): the clipped branch is the smaller exactly when the clip
             * bites in the direction A pushes; there it is constant in logp */
            int clipped = (A > 0 && rho > hi) || (A < 0 && rho < lo);
            double surr = clipped ? (A > 0 ? hi : lo) * A : rho * A;
            resp += surr - beta * kl;
            kl_sum += kl;
            n_clip += clipped;
            n_tok++;
            /* d term / d logp: rho A (unclipped; also where the two branches tie) or 0, and
             * -beta dKL/dlogp = -beta (1 - exp(ref - logp)) */
            if (dJ) dJ[row + t] = (float)(factor * ((clipped ? 0 : rho * A) - beta * (1 - e)));
        }
        sum += factor * resp;
    }
    *J = sum;
    if (st) {
        st->n_tokens = n_tok;
        st->clip_frac = n_tok ? (double)n_clip / (double)n_tok : 0;
        st->kl_mean = n_tok ? kl_sum / (double)n_tok : 0;
    }
    return 0;
}
