/* test_train_ops.c — every training op's backward pass (src/train/ops.h) against finite
 * differences of an independent double-precision forward written here, on odd shapes. The
 * loss is L = sum_i r_i * y_i for fixed random r, so dL/dy = r; each input element's
 * derivative is (L(x+h) - L(x-h)) / 2h in double precision and must match the op's float
 * gradient within |a - n| <= 2e-4 + 2e-3 |n|. The float forward must match the double one
 * within 2e-5 relative to the output's scale. The cross-entropy is checked in both forms (the
 * mean; per-row weights) with its log-probabilities. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train/ops.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static double urand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 52) - 1.0;
}
static float *frand(size_t n, double scale) {
    float *a = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) a[i] = (float)(urand() * scale);
    return a;
}
static double *todouble(const float *a, size_t n) {
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}

/* A double-precision loss of the op's inputs, with one input array perturbed in place. */
typedef double (*loss_fn)(void *ctx);

/* Compare grad (float, from the backward op) with central differences of f over x[0..n). At
 * most max_checks elements (spread over the array) are checked. */
static int check_grad(const char *what, double *x, size_t n, const float *grad, loss_fn f, void *ctx, int max_checks) {
    const double h = 1e-5;
    int bad = 0;
    size_t step = n > (size_t)max_checks ? n / (size_t)max_checks : 1;
    for (size_t i = 0; i < n; i += step) {
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = f(ctx);
        x[i] = x0 - h;
        double lm = f(ctx);
        x[i] = x0;
        double num = (lp - lm) / (2 * h);
        if (!(fabs(grad[i] - num) <= 2e-4 + 2e-3 * fabs(num))) {
            if (bad++ < 3) fprintf(stderr, "  %s[%zu]: backward %.7g, finite difference %.7g\n", what, i, grad[i], num);
        }
    }
    return bad;
}

static double max_abs_diff(const float *a, const double *b, size_t n, double *scale) {
    double m = 0, s = 1e-12;
    for (size_t i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > m) m = fabs(a[i] - b[i]);
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    *scale = s;
    return m;
}

static double dot_r(const double *y, const double *r, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += y[i] * r[i];
    return s;
}

/* ---- RMSNorm ---- */
typedef struct { double *x, *w, *r, *y; int T, d; double eps; } rms_ctx;
static void rms_ref(rms_ctx *c) {
    for (int t = 0; t < c->T; t++) {
        double ss = 0;
        for (int i = 0; i < c->d; i++) ss += c->x[t * c->d + i] * c->x[t * c->d + i];
        double r = 1 / sqrt(ss / c->d + c->eps);
        for (int i = 0; i < c->d; i++) c->y[t * c->d + i] = c->x[t * c->d + i] * r * c->w[i];
    }
}
static double rms_loss(void *p) {
    rms_ctx *c = p;
    rms_ref(c);
    return dot_r(c->y, c->r, (size_t)c->T * c->d);
}

static void test_rmsnorm(void) {
    int T = 5, d = 37;
    size_t n = (size_t)T * d;
    float *x = frand(n, 2), *w = frand((size_t)d, 1.5), *r = frand(n, 1), y[5 * 37], inv[5];
    float *dx = calloc(n, sizeof(float)), *dw = calloc((size_t)d, sizeof(float));
    tr_rmsnorm_fwd(y, inv, x, w, T, d, 1e-6f);
    tr_rmsnorm_bwd(dx, dw, r, x, w, inv, T, d);
    rms_ctx c = {todouble(x, n), todouble(w, (size_t)d), todouble(r, n), malloc(sizeof(double) * n), T, d, 1e-6};
    rms_ref(&c);
    double sc, m = max_abs_diff(y, c.y, n, &sc);
    CHECKF(m <= 2e-5 * sc, "forward off by %g", m);
    CHECK(check_grad("rmsnorm dx", c.x, n, dx, rms_loss, &c, 400) == 0);
    CHECK(check_grad("rmsnorm dw", c.w, (size_t)d, dw, rms_loss, &c, 400) == 0);
    free(x), free(w), free(r), free(dx), free(dw), free(c.x), free(c.w), free(c.r), free(c.y);
}

/* ---- matmul ---- */
typedef struct { double *X, *W, *b, *r, *Y; int T, K, N; } mm_ctx;
static double mm_loss(void *p) {
    mm_ctx *c = p;
    for (int t = 0; t < c->T; t++)
        for (int n = 0; n < c->N; n++) {
            double s = c->b ? c->b[n] : 0;
            for (int k = 0; k < c->K; k++) s += c->X[t * c->K + k] * c->W[n * c->K + k];
            c->Y[t * c->N + n] = s;
        }
    return dot_r(c->Y, c->r, (size_t)c->T * c->N);
}

static void test_matmul(void) {
    int T = 7, K = 19, N = 13;
    float *X = frand((size_t)T * K, 1), *W = frand((size_t)N * K, 1), *b = frand((size_t)N, 1), *r = frand((size_t)T * N, 1);
    float *Y = malloc(sizeof(float) * T * N), *dX = calloc((size_t)T * K, 4), *dW = calloc((size_t)N * K, 4),
          *db = calloc((size_t)N, 4);
    tr_matmul_fwd(Y, X, W, b, T, K, N);
    tr_matmul_bwd(dX, dW, db, r, X, W, T, K, N);
    mm_ctx c = {todouble(X, (size_t)T * K), todouble(W, (size_t)N * K), todouble(b, (size_t)N), todouble(r, (size_t)T * N),
                malloc(sizeof(double) * T * N), T, K, N};
    mm_loss(&c);
    double sc, m = max_abs_diff(Y, c.Y, (size_t)T * N, &sc);
    CHECKF(m <= 2e-5 * sc, "forward off by %g", m);
    CHECK(check_grad("matmul dX", c.X, (size_t)T * K, dX, mm_loss, &c, 400) == 0);
    CHECK(check_grad("matmul dW", c.W, (size_t)N * K, dW, mm_loss, &c, 400) == 0);
    CHECK(check_grad("matmul db", c.b, (size_t)N, db, mm_loss, &c, 400) == 0);
    /* gradients accumulate: a second backward call doubles them */
    float *dX2 = malloc(sizeof(float) * T * K);
    memcpy(dX2, dX, sizeof(float) * T * K);
    tr_matmul_bwd(dX2, NULL, NULL, r, X, W, T, K, N);
    int acc = 1;
    for (int i = 0; i < T * K; i++) acc &= fabsf(dX2[i] - 2 * dX[i]) <= 1e-5f * (1 + fabsf(dX[i]));
    CHECK(acc);
    free(X), free(W), free(b), free(r), free(Y), free(dX), free(dW), free(db), free(dX2);
    free(c.X), free(c.W), free(c.b), free(c.r), free(c.Y);
}

/* ---- LoRA: Y = s X A^T B^T (added to whatever Y held) ---- */
typedef struct { double *X, *A, *B, *r, *Y; double s; int T, K, N, R; } lora_ctx;
static double lora_loss(void *p) {
    lora_ctx *c = p;
    for (int t = 0; t < c->T; t++)
        for (int n = 0; n < c->N; n++) {
            double y = 0;
            for (int j = 0; j < c->R; j++) {
                double z = 0;
                for (int k = 0; k < c->K; k++) z += c->X[t * c->K + k] * c->A[j * c->K + k];
                y += c->s * z * c->B[n * c->R + j];
            }
            c->Y[t * c->N + n] = y;
        }
    return dot_r(c->Y, c->r, (size_t)c->T * c->N);
}

static void test_lora(void) {
    int T = 7, K = 19, N = 13, R = 3;
    float s = 2.5f;
    float *X = frand((size_t)T * K, 1), *A = frand((size_t)R * K, 1), *B = frand((size_t)N * R, 1), *r = frand((size_t)T * N, 1);
    float *Y = calloc((size_t)T * N, 4), *Z = malloc(sizeof(float) * T * R), *dZ = malloc(sizeof(float) * T * R);
    float *dX = calloc((size_t)T * K, 4), *dA = calloc((size_t)R * K, 4), *dB = calloc((size_t)N * R, 4);
    tr_lora_fwd(Y, Z, X, A, B, s, T, K, N, R);
    tr_lora_bwd(dX, dA, dB, dZ, r, X, Z, A, B, s, T, K, N, R);
    lora_ctx c = {todouble(X, (size_t)T * K), todouble(A, (size_t)R * K), todouble(B, (size_t)N * R), todouble(r, (size_t)T * N),
                  malloc(sizeof(double) * T * N), s, T, K, N, R};
    lora_loss(&c);
    double sc, m = max_abs_diff(Y, c.Y, (size_t)T * N, &sc);
    CHECKF(m <= 2e-5 * sc, "forward off by %g", m);
    CHECK(check_grad("lora dX", c.X, (size_t)T * K, dX, lora_loss, &c, 400) == 0);
    CHECK(check_grad("lora dA", c.A, (size_t)R * K, dA, lora_loss, &c, 400) == 0);
    CHECK(check_grad("lora dB", c.B, (size_t)N * R, dB, lora_loss, &c, 400) == 0);
    free(X), free(A), free(B), free(r), free(Y), free(Z), free(dZ), free(dX), free(dA), free(dB);
    free(c.X), free(c.A), free(c.B), free(c.r), free(c.Y);
}

/* ---- RoPE ---- */
typedef struct { double *x, *r, *y; const int32_t *pos; int T, H, hd, rot, neox; double base, ms; const float *fs; } rope_ctx;
static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->H * c->hd;
    memcpy(c->y, c->x, sizeof(double) * n);
    for (int t = 0; t < c->T; t++)
        for (int h = 0; h < c->H; h++)
            for (int i = 0; i < c->rot / 2; i++) {
                double th = c->pos[t] * pow(c->base, -2.0 * i / c->rot) * (c->fs ? c->fs[i] : 1.0);
                double *row = c->y + ((size_t)t * c->H + h) * c->hd;
                int ia = c->neox ? i : 2 * i, ib = c->neox ? i + c->rot / 2 : 2 * i + 1;
                double a = row[ia], b = row[ib];
                row[ia] = c->ms * (a * cos(th) - b * sin(th));
                row[ib] = c->ms * (a * sin(th) + b * cos(th));
            }
    return dot_r(c->y, c->r, n);
}

static void test_rope(void) {
    int T = 6, H = 3, hd = 10, rot = 6;
    size_t n = (size_t)T * H * hd;
    int32_t pos[6] = {0, 1, 2, 7, 30, 1000};
    float fs[3] = {1.0f, 0.5f, 0.25f};
    for (int neox = 0; neox <= 1; neox++) {
        float *x = frand(n, 1), *r = frand(n, 1), *y = malloc(sizeof(float) * n), *dx = malloc(sizeof(float) * n);
        memcpy(y, x, sizeof(float) * n);
        tr_rope(y, pos, T, H, hd, rot, 10000.0f, fs, 1.25f, neox, 0);
        memcpy(dx, r, sizeof(float) * n); /* backward: the inverse rotation of dL/dy */
        tr_rope(dx, pos, T, H, hd, rot, 10000.0f, fs, 1.25f, neox, 1);
        rope_ctx c = {todouble(x, n), todouble(r, n), malloc(sizeof(double) * n), pos, T, H, hd, rot, neox, 10000.0, 1.25, fs};
        rope_loss(&c);
        double sc, m = max_abs_diff(y, c.y, n, &sc);
        CHECKF(m <= 2e-5 * sc, "neox %d: forward off by %g", neox, m);
        CHECKF(check_grad("rope dx", c.x, n, dx, rope_loss, &c, 400) == 0, "neox %d", neox);
        free(x), free(r), free(y), free(dx), free(c.x), free(c.r), free(c.y);
    }
}

/* ---- attention ---- */
typedef struct { double *q, *k, *v, *r, *o; int T, Hq, Hkv, dk, dv; double scale; } at_ctx;
static double at_loss(void *p) {
    at_ctx *c = p;
    int group = c->Hq / c->Hkv;
    double *s = malloc(sizeof(double) * (size_t)c->T);
    for (int h = 0; h < c->Hq; h++)
        for (int t = 0; t < c->T; t++) {
            int g = h / group;
            double mx = -1e300, sum = 0;
            for (int j = 0; j <= t; j++) {
                double d = 0;
                for (int i = 0; i < c->dk; i++) d += c->q[((size_t)t * c->Hq + h) * c->dk + i] * c->k[((size_t)j * c->Hkv + g) * c->dk + i];
                s[j] = d * c->scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j <= t; j++) sum += s[j] = exp(s[j] - mx);
            for (int i = 0; i < c->dv; i++) {
                double o = 0;
                for (int j = 0; j <= t; j++) o += s[j] / sum * c->v[((size_t)j * c->Hkv + g) * c->dv + i];
                c->o[((size_t)t * c->Hq + h) * c->dv + i] = o;
            }
        }
    free(s);
    return dot_r(c->o, c->r, (size_t)c->T * c->Hq * c->dv);
}

static void test_attention(void) {
    int T = 9, Hq = 4, Hkv = 2, dk = 5, dv = 3;
    size_t nq = (size_t)T * Hq * dk, nk = (size_t)T * Hkv * dk, nv = (size_t)T * Hkv * dv, no = (size_t)T * Hq * dv;
    float scale = 1.0f / sqrtf((float)dk) * 1.7f;
    float *q = frand(nq, 1), *k = frand(nk, 1), *v = frand(nv, 1), *r = frand(no, 1), *o = malloc(sizeof(float) * no);
    float *P = malloc(sizeof(float) * Hq * T * T), *dq = calloc(nq, 4), *dk_ = calloc(nk, 4), *dv_ = calloc(nv, 4);
    tr_attn_fwd(o, P, q, k, v, T, Hq, Hkv, dk, dv, scale);
    tr_attn_bwd(dq, dk_, dv_, r, P, q, k, v, T, Hq, Hkv, dk, dv, scale);
    at_ctx c = {todouble(q, nq), todouble(k, nk), todouble(v, nv), todouble(r, no), malloc(sizeof(double) * no),
                T, Hq, Hkv, dk, dv, scale};
    at_loss(&c);
    double sc, m = max_abs_diff(o, c.o, no, &sc);
    CHECKF(m <= 2e-5 * sc, "forward off by %g", m);
    CHECK(check_grad("attn dq", c.q, nq, dq, at_loss, &c, 400) == 0);
    CHECK(check_grad("attn dk", c.k, nk, dk_, at_loss, &c, 400) == 0);
    CHECK(check_grad("attn dv", c.v, nv, dv_, at_loss, &c, 400) == 0);
    /* causal: the first position's output is v_0 of its group exactly */
    CHECK(fabsf(o[0] - v[0]) < 1e-6f);
    free(q), free(k), free(v), free(r), free(o), free(P), free(dq), free(dk_), free(dv_);
    free(c.q), free(c.k), free(c.v), free(c.r), free(c.o);
}

/* ---- SwiGLU ---- */
typedef struct { double *g, *u, *r; size_t n; } sw_ctx;
static double sw_loss(void *p) {
    sw_ctx *c = p;
    double s = 0;
    for (size_t i = 0; i < c->n; i++) s += c->g[i] / (1 + exp(-c->g[i])) * c->u[i] * c->r[i];
    return s;
}

static void test_swiglu(void) {
    size_t n = 101;
    float *g = frand(n, 4), *u = frand(n, 2), *r = frand(n, 1), *h = malloc(sizeof(float) * n);
    float *dg = calloc(n, 4), *du = calloc(n, 4);
    tr_swiglu_fwd(h, g, u, n);
    tr_swiglu_bwd(dg, du, r, g, u, n);
    sw_ctx c = {todouble(g, n), todouble(u, n), todouble(r, n), n};
    CHECK(check_grad("swiglu dg", c.g, n, dg, sw_loss, &c, 400) == 0);
    CHECK(check_grad("swiglu du", c.u, n, du, sw_loss, &c, 400) == 0);
    free(g), free(u), free(r), free(h), free(dg), free(du), free(c.g), free(c.u), free(c.r);
}

/* ---- embedding ---- */
typedef struct { double *tab, *r; const int32_t *ids; int T, d; } em_ctx;
static double em_loss(void *p) {
    em_ctx *c = p;
    double s = 0;
    for (int t = 0; t < c->T; t++)
        for (int i = 0; i < c->d; i++) s += c->tab[(size_t)c->ids[t] * c->d + i] * c->r[(size_t)t * c->d + i];
    return s;
}

static void test_embedding(void) {
    int V = 11, d = 7, T = 8;
    int32_t ids[8] = {3, 0, 10, 3, 3, 5, 0, 9}; /* repeats: gradients add */
    float *tab = frand((size_t)V * d, 1), *r = frand((size_t)T * d, 1), *out = malloc(sizeof(float) * T * d);
    float *dt = calloc((size_t)V * d, 4);
    tr_embed_fwd(out, tab, ids, T, d);
    CHECK(!memcmp(out + 3 * d, tab + 3 * d, sizeof(float) * d));
    tr_embed_bwd(dt, r, ids, T, d);
    em_ctx c = {todouble(tab, (size_t)V * d), todouble(r, (size_t)T * d), ids, T, d};
    CHECK(check_grad("embedding", c.tab, (size_t)V * d, dt, em_loss, &c, 400) == 0);
    free(tab), free(r), free(out), free(dt), free(c.tab), free(c.r);
}

/* ---- cross-entropy ---- */
/* tw NULL: w x the mean over the rows with a target; else w x sum_t tw[t] x the row's loss */
typedef struct { double *z; const int32_t *tg; int T, V; double w; const float *tw; } ce_ctx;
static double ce_loss(void *p) {
    ce_ctx *c = p;
    double L = 0;
    int n = 0;
    for (int t = 0; t < c->T; t++) {
        if (c->tg[t] < 0) continue;
        double s = 0;
        for (int i = 0; i < c->V; i++) s += exp(c->z[(size_t)t * c->V + i]);
        L += (c->tw ? c->tw[t] : 1) * (log(s) - c->z[(size_t)t * c->V + c->tg[t]]);
        n++;
    }
    return (c->tw ? L : L / n) * c->w;
}

static void test_cross_entropy(void) {
    int T = 6, V = 23;
    int32_t tg[6] = {4, -1, 22, 0, 4, -1};
    float *z = frand((size_t)T * V, 5), *dz = malloc(sizeof(float) * T * V);
    z[7] = 60.0f; /* a large logit: the loss stays finite */
    double L = tr_cross_entropy(dz, NULL, z, tg, NULL, T, V, 0.3f);
    ce_ctx c = {todouble(z, (size_t)T * V), tg, T, V, 0.3, NULL};
    CHECKF(fabs(L * 0.3 - ce_loss(&c)) <= 1e-6 * fabs(L), "loss %g vs %g", L * 0.3, ce_loss(&c));
    CHECK(check_grad("cross-entropy", c.z, (size_t)T * V, dz, ce_loss, &c, 400) == 0);
    int zero = 1;
    for (int i = 0; i < V; i++) zero &= dz[V + i] == 0; /* an ignored row */
    CHECK(zero);
    free(z), free(dz), free(c.z);
}

/* Per-row weights of both signs (GRPO's dJ/dlogp), and the log-probabilities alongside. */
static void test_cross_entropy_weighted(void) {
    int T = 6, V = 23;
    int32_t tg[6] = {4, -1, 22, 0, 4, -1};
    float tw[6] = {0.7f, 9.0f, -0.4f, 0.0f, 1.3f, -2.0f}; /* rows 1 and 5 have no target */
    float *z = frand((size_t)T * V, 5), *dz = malloc(sizeof(float) * T * V), logp[6];
    z[7] = 60.0f;
    double L = tr_cross_entropy(dz, logp, z, tg, tw, T, V, 0.3f);
    ce_ctx c = {todouble(z, (size_t)T * V), tg, T, V, 0.3, tw};
    CHECKF(fabs(L * 0.3 - ce_loss(&c)) <= 1e-6 * fabs(L), "loss %g vs %g", L * 0.3, ce_loss(&c));
    CHECK(check_grad("weighted cross-entropy", c.z, (size_t)T * V, dz, ce_loss, &c, 400) == 0);
    for (int t = 0; t < T; t++) {
        double s = 0, want = 0;
        for (int i = 0; i < V && tg[t] >= 0; i++) s += exp(c.z[(size_t)t * V + i]);
        if (tg[t] >= 0) want = c.z[(size_t)t * V + tg[t]] - log(s);
        CHECKF(fabs(logp[t] - want) <= 1e-5 * fmax(1, fabs(want)), "row %d: logp %g, want %g", t, logp[t], want);
    }
    int zero = 1;
    for (int i = 0; i < V; i++) zero &= dz[V + i] == 0 && dz[(size_t)3 * V + i] == 0; /* no target; weight 0 */
    CHECK(zero);
    free(z), free(dz), free(c.z);
}

int main(void) {
    RUN(test_embedding);
    RUN(test_rmsnorm);
    RUN(test_matmul);
    RUN(test_lora);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_swiglu);
    RUN(test_cross_entropy);
    RUN(test_cross_entropy_weighted);
    return check_report("test_train_ops");
}
