/* optim.c — AdamW, learning-rate schedules, gradient clipping (see optim.h). */
#include "train/optim.h"

#include <math.h>

void tr_adamw_step(float *p, const float *g, float *m, float *v, size_t n, long step, const tr_adamw *c, int decay) {
    /* torch.optim.AdamW (foreach=False): p *= 1 - lr*wd; m, v updated; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    float step_size = (float)(c->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float shrink = decay ? 1.0f - c->lr * c->weight_decay : 1.0f;
    for (size_t i = 0; i < n; i++) {
        p[i] *= shrink;
        m[i] += (1.0f - c->beta1) * (g[i] - m[i]); /* torch's lerp */
        v[i] = v[i] * c->beta2 + g[i] * g[i] * (1.0f - c->beta2);
        float denom = sqrtf(v[i]) / bc2_sqrt + c->eps;
        p[i] -= step_size * m[i] / denom;
    }
}

float tr_lr_at(long step, long total, long warmup, float peak, float min_lr, tr_lr_kind kind, float decay_frac) {
    if (warmup > 0 && step < warmup) return peak * (float)(step + 1) / (float)warmup;
    if (total <= warmup) return peak;
    if (kind == TR_LR_WSD) {
        long decay = lround((double)total * decay_frac), start = total - decay;
        if (step < start || decay <= 0) return peak;
        double f = (double)(step - start + 1) / (double)decay;
        return (float)(peak + (min_lr - peak) * (f > 1 ? 1 : f));
    }
    double f = (double)(step - warmup) / (double)(total - warmup);
    if (f > 1) f = 1;
    return (float)(min_lr + 0.5 * (peak - min_lr) * (1 + cos(M_PI * f)));
}

double tr_clip_grad_norm(float *const *bufs, const size_t *lens, int n_bufs, double max_norm) {
    double ss = 0;
    for (int b = 0; b < n_bufs; b++)
        for (size_t i = 0; i < lens[b]; i++) ss += (double)bufs[b][i] * bufs[b][i];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float s = (float)(max_norm / (norm + 1e-6));
        for (int b = 0; b < n_bufs; b++)
            for (size_t i = 0; i < lens[b]; i++) bufs[b][i] *= s;
    }
    return norm;
}
