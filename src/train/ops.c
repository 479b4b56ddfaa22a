/* ops.c — the training ops' reference versions (see ops.h). Sums that decide a value run in
 * a fixed order, so results do not depend on anything but the inputs. */
#include "train/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "kernels/gemm.h"

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

/* ---- precision of the matrix products (kernels/gemm.h): F32 unless set ---- */

static int g_prec = TR_F32;

void tr_set_precision(int p) { g_prec = p == TR_BF16 ? TR_BF16 : TR_F32; }
int tr_precision(void) { return g_prec; }
int tr_precision_default(void) { return gemm_cpu_has_bf16() ? TR_BF16 : TR_F32; }
const char *tr_precision_name(int p) { return p == TR_BF16 ? "bf16" : "f32"; }
int tr_precision_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "f32")) return TR_F32;
    if (!strcmp(s, "bf16")) return TR_BF16;
    return -1;
}

static gemm_prec prec(void) { return g_prec == TR_BF16 ? GEMM_BF16 : GEMM_F32; }

static threadpool *pool(void) {
    pthread_once(&g_once, pool_init);
    return g_pool;
}

double tr_peak_flops(void) {
    static double peak[2];
    int p = g_prec == TR_BF16;
    if (!peak[p]) peak[p] = gemm_measure_flops(256, prec(), pool(), 0.15);
    return peak[p];
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
    /* Y = X W^T: B(k, n) = W[n][k] read in place */
    gemm(Y, N, X, K, 1, W, 1, K, T, N, K, 1.0f, 0, prec(), pool());
    if (bias)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) Y[(size_t)t * N + n] += bias[n];
}

void tr_matmul_bwd(float *dX, float *dW, float *dbias, const float *dY, const float *X, const float *W, int T, int K,
                   int N) {
    if (dX) /* dX[t][k] += sum_n dY[t][n] W[n][k] */
        gemm(dX, K, dY, N, 1, W, K, 1, T, K, N, 1.0f, 1, prec(), pool());
    if (dW) /* dW[n][k] += sum_t dY[t][n] X[t][k]: A(n, t) = dY[t][n] read in place */
        gemm(dW, K, dY, 1, N, X, K, 1, N, K, T, 1.0f, 1, prec(), pool());
    if (dbias)
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) dbias[n] += dY[(size_t)t * N + n];
}

void tr_lora_fwd(float *Y, float *Z, const float *X, const float *A, const float *B, float s, int T, int K, int N,
                 int r) {
    gemm(Z, r, X, K, 1, A, 1, K, T, r, K, s, 0, prec(), pool()); /* Z = s X A^T */
    gemm(Y, N, Z, r, 1, B, 1, r, T, N, r, 1.0f, 1, prec(), pool()); /* Y += Z B^T */
}

void tr_lora_bwd(float *dX, float *dA, float *dB, float *dZ, const float *dY, const float *X, const float *Z,
                 const float *A, const float *B, float s, int T, int K, int N, int r) {
    gemm(dB, r, dY, 1, N, Z, r, 1, N, r, T, 1.0f, 1, prec(), pool()); /* dB[n][j] += sum_t dY[t][n] Z[t][j] */
    gemm(dZ, r, dY, N, 1, B, r, 1, T, r, N, s, 0, prec(), pool());    /* dZ[t][j] = s sum_n dY[t][n] B[n][j] */
    gemm(dA, K, dZ, 1, r, X, K, 1, r, K, T, 1.0f, 1, prec(), pool()); /* dA[j][k] += sum_t dZ[t][j] X[t][k] */
    if (dX) gemm(dX, K, dZ, r, 1, A, K, 1, T, K, r, 1.0f, 1, prec(), pool()); /* dX[t][k] += sum_j dZ[t][j] A[j][k] */
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

/* Causal blocks: rows r0 .. r0+ATT_BQ-1 of a head's scores need keys 0 .. r0+ATT_BQ-1 only,
 * so each product runs over that block's keys (3/4 of the full square at T = 128 instead of
 * all of it). Products are single-threaded gemm calls: the parallelism is the group tasks. */
#define ATT_BQ 32

static void attn_fwd_group(const attn_job *job, int g) {
    const float *q = job->q, *k = job->k, *v = job->v;
    int T = job->T, Hq = job->Hq, Hkv = job->Hkv, dk = job->dk_, dv = job->dv_, group = Hq / Hkv;
    gemm_prec pr = prec();
    const float *kg = k + (size_t)g * dk, *vg = v + (size_t)g * dv;
    for (int h = g * group; h < (g + 1) * group; h++) {
        float *P = job->P + (size_t)h * T * T, *oh = job->out + (size_t)h * dv;
        const float *qh = q + (size_t)h * dk;
        for (int r0 = 0; r0 < T; r0 += ATT_BQ) { /* P = scale q k^T */
            int r1 = r0 + ATT_BQ < T ? r0 + ATT_BQ : T;
            gemm(P + (size_t)r0 * T, T, qh + (size_t)r0 * Hq * dk, (int64_t)Hq * dk, 1, kg, 1, (int64_t)Hkv * dk,
                 r1 - r0, r1, dk, job->scale, 0, pr, NULL);
        }
        for (int t = 0; t < T; t++) { /* softmax over keys <= t */
            float *p = P + (size_t)t * T, mx = -INFINITY;
            for (int j = 0; j <= t; j++) mx = p[j] > mx ? p[j] : mx;
            double sum = 0;
            for (int j = 0; j <= t; j++) sum += p[j] = expf(p[j] - mx);
            float inv = (float)(1.0 / sum);
            for (int j = 0; j <= t; j++) p[j] *= inv;
            for (int j = t + 1; j < T; j++) p[j] = 0;
        }
        for (int r0 = 0; r0 < T; r0 += ATT_BQ) { /* out = P v */
            int r1 = r0 + ATT_BQ < T ? r0 + ATT_BQ : T;
            gemm(oh + (size_t)r0 * Hq * dv, (int64_t)Hq * dv, P + (size_t)r0 * T, T, 1, vg, (int64_t)Hkv * dv, 1, r1 - r0,
                 dv, r1, 1.0f, 0, pr, NULL);
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

/* dP = dout v^T, dS = P (dP - rowsum(P dP)) scale, then dq += dS k, dk += dS^T q, dv += P^T dout;
 * dS is zero above the diagonal, so the transposed products start at the block's first row. */
static void attn_bwd_group(const attn_job *job, int g) {
    const float *q = job->q, *k = job->k, *v = job->v, *dout = job->dout;
    int T = job->T, Hq = job->Hq, Hkv = job->Hkv, dk = job->dk_, dv = job->dv_, group = Hq / Hkv;
    gemm_prec pr = prec();
    const float *kg = k + (size_t)g * dk, *vg = v + (size_t)g * dv;
    int64_t qs = (int64_t)Hq * dk, ks = (int64_t)Hkv * dk, os = (int64_t)Hq * dv, vs = (int64_t)Hkv * dv;
    float *dS = malloc(sizeof(float) * (size_t)T * (size_t)T);
    if (!dS) abort();
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *P = job->Pc + (size_t)h * T * T, *qh = q + (size_t)h * dk, *goh = dout + (size_t)h * dv;
        for (int r0 = 0; r0 < T; r0 += ATT_BQ) {
            int r1 = r0 + ATT_BQ < T ? r0 + ATT_BQ : T;
            gemm(dS + (size_t)r0 * T, T, goh + (size_t)r0 * os, os, 1, vg, 1, vs, r1 - r0, r1, dv, 1.0f, 0, pr, NULL);
        }
        for (int t = 0; t < T; t++) {
            const float *p = P + (size_t)t * T;
            float *d = dS + (size_t)t * T;
            double s = 0;
            for (int j = 0; j <= t; j++) s += (double)p[j] * d[j];
            for (int j = 0; j <= t; j++) d[j] = p[j] * (d[j] - (float)s) * job->scale;
            for (int j = t + 1; j < T; j++) d[j] = 0;
        }
        for (int r0 = 0; r0 < T; r0 += ATT_BQ) {
            int r1 = r0 + ATT_BQ < T ? r0 + ATT_BQ : T, n = r1 - r0;
            if (job->dq)
                gemm(job->dq + (size_t)h * dk + (size_t)r0 * qs, qs, dS + (size_t)r0 * T, T, 1, kg, ks, 1, n, dk, r1, 1.0f,
                     1, pr, NULL);
            if (job->dk) /* rows r0..r1 of dk over queries t >= r0 */
                gemm(job->dk + (size_t)g * dk + (size_t)r0 * ks, ks, dS + (size_t)r0 * T + r0, 1, T,
                     qh + (size_t)r0 * qs, qs, 1, n, dk, T - r0, 1.0f, 1, pr, NULL);
            if (job->dv)
                gemm(job->dv + (size_t)g * dv + (size_t)r0 * vs, vs, P + (size_t)r0 * T + r0, 1, T,
                     goh + (size_t)r0 * os, os, 1, n, dv, T - r0, 1.0f, 1, pr, NULL);
        }
    }
    free(dS);
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

double tr_cross_entropy(float *dlogits, float *logp, const float *logits, const int32_t *targets, const float *tw, int T,
                        int V, float weight) {
    int n = 0;
    for (int t = 0; t < T; t++) n += targets[t] >= 0;
    double loss = 0;
    for (int t = 0; t < T; t++) {
        const float *z = logits + (size_t)t * V;
        float *dz = dlogits ? dlogits + (size_t)t * V : NULL;
        if (targets[t] < 0 || n == 0) {
            if (dz) memset(dz, 0, sizeof(float) * (size_t)V);
            if (logp) logp[t] = 0;
            continue;
        }
        float mx = z[0];
        for (int i = 1; i < V; i++) if (z[i] > mx) mx = z[i];
        double sum = 0;
        for (int i = 0; i < V; i++) sum += exp((double)z[i] - mx);
        double lse = mx + log(sum);
        if (logp) logp[t] = (float)(z[targets[t]] - lse);
        /* without weights the rows' losses are summed then divided by n; with, each is weighted */
        loss += tw ? tw[t] * (lse - z[targets[t]]) : lse - z[targets[t]];
        if (dz) {
            float c = tw ? weight * tw[t] : weight / (float)n;
            for (int i = 0; i < V; i++) dz[i] = (float)(exp((double)z[i] - lse)) * c;
            dz[targets[t]] -= c;
        }
    }
    return tw || !n ? loss : loss / n;
}

int tr_batch_check(const int32_t *ids, const int32_t *targets, int n, int V, int *n_targets, whale_err *err) {
    *n_targets = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V || targets[i] >= V) return err_set(err, WHALE_E_ARG, "a token id outside the vocabulary");
        *n_targets += targets[i] >= 0;
    }
    return 0;
}

double tr_seq_loss(float *logits, float *logp, const int32_t *tg, const float *tw, int T, int V, int n_targets,
                   float loss_scale, float *w) {
    int nb = 0;
    for (int t = 0; t < T; t++) nb += tg[t] >= 0;
    *w = n_targets ? (float)nb / (float)n_targets : 0;
    if (tw) return tr_cross_entropy(loss_scale ? logits : NULL, logp, logits, tg, tw, T, V, loss_scale);
    return *w * tr_cross_entropy(loss_scale ? logits : NULL, logp, logits, tg, NULL, T, V, *w * loss_scale);
}
