/* ops.c — the training ops' reference versions (see ops.h). Sums that decide a value run in
 * a fixed order, so results do not depend on anything but the inputs. */
#include "train/ops.h"

#include <math.h>
#include <string.h>

void tr_embed_fwd(float *out, const float *table, const int32_t *ids, int T, int d) {
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * d, table + (size_t)ids[t] * d, sizeof(float) * (size_t)d);
}

void tr_embed_bwd(float *dtable, const float *dout, const int32_t *ids, int T, int d) {
    for (int t = 0; t < T; t++) {
        float *row = dtable + (size_t)ids[t] * d;
        const float *g = dout + (size_t)t * d;
        for (int i = 0; i < d; i++) row[i] += g[i];
    }
}

void tr_rmsnorm_fwd(float *y, float *inv_rms, const float *x, const float *w, int T, int d, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / d + eps));
        inv_rms[t] = r;
        for (int i = 0; i < d; i++) y[(size_t)t * d + i] = xr[i] * r * w[i];
    }
}

void tr_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *inv_rms,
                    int T, int d) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * d, *g = dy + (size_t)t * d;
        float r = inv_rms[t];
        double dot = 0; /* sum_j dy_j w_j x_j */
        for (int i = 0; i < d; i++) dot += (double)g[i] * w[i] * xr[i];
        float c = (float)(dot * r * r * r / d);
        for (int i = 0; i < d; i++) {
            if (dw) dw[i] += g[i] * xr[i] * r;
            if (dx) dx[(size_t)t * d + i] += g[i] * w[i] * r - xr[i] * c;
        }
    }
}

void tr_matmul_fwd(float *Y, const float *X, const float *W, const float *bias, int T, int K, int N) {
    for (int t = 0; t < T; t++) {
        const float *x = X + (size_t)t * K;
        for (int n = 0; n < N; n++) {
            const float *w = W + (size_t)n * K;
            float s = 0;
            for (int k = 0; k < K; k++) s += x[k] * w[k];
            Y[(size_t)t * N + n] = s + (bias ? bias[n] : 0);
        }
    }
}

void tr_matmul_bwd(float *dX, float *dW, float *dbias, const float *dY, const float *X, const float *W, int T, int K,
                   int N) {
    for (int t = 0; t < T; t++) {
        const float *g = dY + (size_t)t * N, *x = X + (size_t)t * K;
        float *dx = dX ? dX + (size_t)t * K : NULL;
        for (int n = 0; n < N; n++) {
            float gn = g[n];
            if (gn == 0) continue;
            const float *w = W + (size_t)n * K;
            if (dx)
                for (int k = 0; k < K; k++) dx[k] += gn * w[k];
            if (dW) {
                float *dw = dW + (size_t)n * K;
                for (int k = 0; k < K; k++) dw[k] += gn * x[k];
            }
            if (dbias) dbias[n] += gn;
        }
    }
}

void tr_rope(float *x, const int32_t *pos, int T, int n_heads, int head_dim, int rot_dim, float base,
             const float *freq_scale, float mscale, int neox, int inverse) {
    int half = rot_dim / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double inv_freq = pow((double)base, -2.0 * i / rot_dim) * (freq_scale ? freq_scale[i] : 1.0f);
            double th = (double)pos[t] * inv_freq * (inverse ? -1 : 1);
            float c = (float)cos(th) * mscale, s = (float)sin(th) * mscale;
            for (int h = 0; h < n_heads; h++) {
                float *hx = x + ((size_t)t * n_heads + h) * head_dim;
                float *a = neox ? &hx[i] : &hx[2 * i], *b = neox ? &hx[i + half] : &hx[2 * i + 1];
                float a0 = *a, b0 = *b;
                *a = a0 * c - b0 * s;
                *b = a0 * s + b0 * c;
            }
        }
}

void tr_attn_fwd(float *out, float *P, const float *q, const float *k, const float *v, int T, int Hq, int Hkv, int dk,
                 int dv, float scale) {
    int group = Hq / Hkv;
    for (int h = 0; h < Hq; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            const float *qt = q + ((size_t)t * Hq + h) * dk;
            float *p = P + ((size_t)h * T + t) * T;
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++) {
                const float *kj = k + ((size_t)j * Hkv + g) * dk;
                float s = 0;
                for (int i = 0; i < dk; i++) s += qt[i] * kj[i];
                p[j] = s * scale;
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0;
            for (int j = 0; j <= t; j++) sum += p[j] = expf(p[j] - mx);
            float inv = (float)(1.0 / sum);
            for (int j = 0; j <= t; j++) p[j] *= inv;
            for (int j = t + 1; j < T; j++) p[j] = 0;
            float *o = out + ((size_t)t * Hq + h) * dv;
            memset(o, 0, sizeof(float) * (size_t)dv);
            for (int j = 0; j <= t; j++) {
                const float *vj = v + ((size_t)j * Hkv + g) * dv;
                for (int i = 0; i < dv; i++) o[i] += p[j] * vj[i];
            }
        }
    }
}

void tr_attn_bwd(float *dq, float *dk_, float *dv_, const float *dout, const float *P, const float *q, const float *k,
                 const float *v, int T, int Hq, int Hkv, int dk, int dv, float scale) {
    int group = Hq / Hkv;
    for (int h = 0; h < Hq; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            const float *p = P + ((size_t)h * T + t) * T, *go = dout + ((size_t)t * Hq + h) * dv;
            const float *qt = q + ((size_t)t * Hq + h) * dk;
            /* sum_j P_tj dP_tj, dP_tj = dout_t . v_j */
            double s = 0;
            for (int j = 0; j <= t; j++) {
                const float *vj = v + ((size_t)j * Hkv + g) * dv;
                float d = 0;
                for (int i = 0; i < dv; i++) d += go[i] * vj[i];
                s += (double)p[j] * d;
            }
            for (int j = 0; j <= t; j++) {
                const float *vj = v + ((size_t)j * Hkv + g) * dv, *kj = k + ((size_t)j * Hkv + g) * dk;
                float d = 0;
                for (int i = 0; i < dv; i++) d += go[i] * vj[i];
                float ds = p[j] * (d - (float)s) * scale;
                if (dv_) {
                    float *dvj = dv_ + ((size_t)j * Hkv + g) * dv;
                    for (int i = 0; i < dv; i++) dvj[i] += p[j] * go[i];
                }
                if (dq) {
                    float *dqt = dq + ((size_t)t * Hq + h) * dk;
                    for (int i = 0; i < dk; i++) dqt[i] += ds * kj[i];
                }
                if (dk_) {
                    float *dkj = dk_ + ((size_t)j * Hkv + g) * dk;
                    for (int i = 0; i < dk; i++) dkj[i] += ds * qt[i];
                }
            }
        }
    }
}

static inline float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

void tr_swiglu_fwd(float *h, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = g[i] * sigm(g[i]) * u[i];
}

void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = sigm(g[i]), silu = g[i] * s;
        if (du) du[i] += dh[i] * silu;
        if (dg) dg[i] += dh[i] * u[i] * (s + g[i] * s * (1 - s));
    }
}

double tr_cross_entropy(float *dlogits, const float *logits, const int32_t *targets, int T, int V, float weight) {
    int n = 0;
    for (int t = 0; t < T; t++) n += targets[t] >= 0;
    double loss = 0;
    for (int t = 0; t < T; t++) {
        const float *z = logits + (size_t)t * V;
        float *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        if (targets[t] < 0 || n == 0) {
            if (dz) memset(dz, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float mx = z[0];
        for (int i = 1; i < V; i++) if (z[i] > mx) mx = z[i];
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)z[i] - mx);
        double lse = mx + log(sum);
        loss += lse - z[targets[t]];
        if (dz) {
            float c = weight / (float)n;
            for (int i = 0; i < V; i++) dz[i] = (float)(exp((double)z[i] - lse)) * c;
            dz[targets[t]] -= c;
        }
    }
    return n ? loss / n : 0;
}
