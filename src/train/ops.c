/* ops.c — the training ops' reference versions (see ops.h). Sums that decide a value run in
 * a fixed order, so results do not depend on anything but the inputs. */
#include "train/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kernels/ops.h"

/* ---- threads: one pool for the training ops; every op splits its work so that each output
 * value is computed by one task in a fixed order, so results do not depend on the count ---- */

static threadpool *g_pool;
static int g_threads = 0; /* 0: one per CPU */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void pool_init(void) { g_pool = tp_new(g_threads); }

void tr_set_threads(int n) {
    if (!g_pool) g_threads = n; /* before the first op; later calls keep the pool */
}

static void run(int64_t n_tasks, tp_fn fn, void *ctx) {
    pthread_once(&g_once, pool_init);
    if (g_pool && n_tasks > 1) tp_run(g_pool, n_tasks, fn, ctx);
    else
        for (int64_t i = 0; i < n_tasks; i++) fn(ctx, i, 0);
}

/* A = B^T for B rows x cols. */
static void transpose(float *A, const float *B, int rows, int cols) {
    enum { TB = 32 };
    for (int r0 = 0; r0 < rows; r0 += TB)
        for (int c0 = 0; c0 < cols; c0 += TB)
            for (int r = r0; r < r0 + TB && r < rows; r++)
                for (int c = c0; c < c0 + TB && c < cols; c++) A[(size_t)c * rows + r] = B[(size_t)r * cols + c];
}

/* Y[t][r] = dot(W row r, X row t) for t < T, r < R (rows of n floats), over the pool. */
typedef struct mm_job {
    float *Y;
    const float *W, *X;
    int T, R, n, chunk;
} mm_job;

static void mm_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    const mm_job *j = ctx;
    int64_t r0 = task * j->chunk, r1 = r0 + j->chunk < j->R ? r0 + j->chunk : j->R;
    op_matmul_rows(j->Y, j->R, j->W, WHALE_DTYPE_F32, j->X, j->n, j->n, j->T, r0, r1, NULL);
}

static void rows_dot(float *Y, const float *W, const float *X, int T, int R, int n) {
    mm_job j = {Y, W, X, T, R, n, 16};
    if ((int64_t)R * n < 64 * 1024) j.chunk = R; /* small: one task */
    run((R + j.chunk - 1) / j.chunk, mm_task, &j);
}

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
    rows_dot(Y, W, X, T, N, K);
    if (bias)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) Y[(size_t)t * N + n] += bias[n];
}

void tr_matmul_bwd(float *dX, float *dW, float *dbias, const float *dY, const float *X, const float *W, int T, int K,
                   int N) {
    size_t big = (size_t)N * K > (size_t)T * K ? (size_t)N * K : (size_t)T * K;
    float *tmp = malloc(sizeof(float) * (big + (size_t)N * K + (size_t)T * N + (size_t)T * K));
    if (!tmp) abort();
    float *a = tmp + big, *b = a + (size_t)N * K, *c = b + (size_t)T * N;
    if (dX) { /* dX[t][k] += sum_n dY[t][n] W[n][k]: rows of W^T against rows of dY */
        transpose(a, W, N, K);
        rows_dot(tmp, a, dY, T, K, N);
        for (size_t i = 0; i < (size_t)T * K; i++) dX[i] += tmp[i];
    }
    if (dW) { /* dW[n][k] += sum_t dY[t][n] X[t][k]: rows of X^T against rows of dY^T */
        transpose(b, dY, T, N);
        transpose(c, X, T, K);
        rows_dot(tmp, c, b, N, K, T);
        for (size_t i = 0; i < (size_t)N * K; i++) dW[i] += tmp[i];
    }
    if (dbias)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) dbias[n] += dY[(size_t)t * N + n];
    free(tmp);
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

/* Attention runs one task per key/value group (its query heads write only their own rows and
 * the group's own dk, dv rows). */
typedef struct attn_job {
    float *out, *P, *dq, *dk, *dv;
    const float *dout, *Pc, *q, *k, *v;
    int T, Hq, Hkv, dk_, dv_;
    float scale;
} attn_job;

static void attn_fwd_group(const attn_job *job, int g) {
    float *out = job->out, *P = job->P;
    const float *q = job->q, *k = job->k, *v = job->v;
    int T = job->T, Hq = job->Hq, Hkv = job->Hkv, dk = job->dk_, dv = job->dv_, group = Hq / Hkv;
    float scale = job->scale;
    for (int h = g * group; h < (g + 1) * group; h++) {
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

static void attn_fwd_task(void *ctx, int64_t g, int thread) {
    (void)thread;
    attn_fwd_group(ctx, (int)g);
}

void tr_attn_fwd(float *out, float *P, const float *q, const float *k, const float *v, int T, int Hq, int Hkv, int dk,
                 int dv, float scale) {
    attn_job j = {.out = out, .P = P, .q = q, .k = k, .v = v, .T = T, .Hq = Hq, .Hkv = Hkv, .dk_ = dk, .dv_ = dv, .scale = scale};
    run(Hkv, attn_fwd_task, &j);
}

static void attn_bwd_group(const attn_job *job, int g) {
    float *dq = job->dq, *dk_ = job->dk, *dv_ = job->dv;
    const float *dout = job->dout, *P = job->Pc, *q = job->q, *k = job->k, *v = job->v;
    int T = job->T, Hq = job->Hq, Hkv = job->Hkv, dk = job->dk_, dv = job->dv_, group = Hq / Hkv;
    float scale = job->scale;
    for (int h = g * group; h < (g + 1) * group; h++) {
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

static void attn_bwd_task(void *ctx, int64_t g, int thread) {
    (void)thread;
    attn_bwd_group(ctx, (int)g);
}

void tr_attn_bwd(float *dq, float *dk_, float *dv_, const float *dout, const float *P, const float *q, const float *k,
                 const float *v, int T, int Hq, int Hkv, int dk, int dv, float scale) {
    attn_job j = {.dq = dq, .dk = dk_, .dv = dv_, .dout = dout, .Pc = P, .q = q, .k = k, .v = v, .T = T, .Hq = Hq,
                  .Hkv = Hkv, .dk_ = dk, .dv_ = dv, .scale = scale};
    run(Hkv, attn_bwd_task, &j);
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

int tr_batch_check(const int32_t *ids, const int32_t *targets, int n, int V, int *n_targets, whale_err *err) {
    *n_targets = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V || targets[i] >= V) return err_set(err, WHALE_E_ARG, "a token id outside the vocabulary");
        *n_targets += targets[i] >= 0;
    }
    return 0;
}

double tr_seq_loss(float *logits, const int32_t *tg, int T, int V, int n_targets, float loss_scale, float *w) {
    int nb = 0;
    for (int t = 0; t < T; t++) nb += tg[t] >= 0;
    *w = n_targets ? (float)nb / (float)n_targets : 0;
    return *w * tr_cross_entropy(loss_scale ? logits : NULL, logits, tg, T, V, *w * loss_scale);
}
