/* optim.h — the optimizer side of training: AdamW (decoupled weight decay, as
 * torch.optim.AdamW computes it), the learning-rate schedules, and gradient clipping by the
 * global norm. F32 parameters and state; sums in double, in a fixed order. */
#ifndef WHALE_TRAIN_OPTIM_H
#define WHALE_TRAIN_OPTIM_H

#include <stddef.h>

typedef struct tr_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} tr_adamw;

/* One step (step counts from 1) on n parameters p with gradients g and moments m, v (zero at
 * the start). decay: 0 for parameters without weight decay (norms, biases). */
void tr_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long step, const tr_adamw *c, int decay);

typedef enum { TR_LR_COSINE, TR_LR_WSD } tr_lr_kind;
/* The learning rate at step (0-based) of total: linear warmup over `warmup` steps to peak, then
 * cosine to min_lr (TR_LR_COSINE), or flat then a linear decay to min_lr over the last
 * decay_frac of the steps (TR_LR_WSD, warmup-stable-decay). */
float tr_lr_at(long step, long total, long warmup, float peak, float min_lr, tr_lr_kind kind, float decay_frac);

/* The L2 norm of the gradients given as n_bufs arrays, then, when it is above max_norm (> 0),
 * every gradient scaled by max_norm / (norm + 1e-6) (torch.nn.utils.clip_grad_norm_). Returns
 * the norm before clipping. */
double tr_clip_grad_norm(float *const *bufs, const size_t *lens, int n_bufs, double max_norm);

#endif
