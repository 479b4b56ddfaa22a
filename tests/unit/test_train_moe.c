/* test_train_moe.c — the router's training pieces (src/train/moe.h): the gate weights'
 * backward pass through ds_route's own choice (V3: sigmoid, group-limited, normalized, scaled;
 * V2: softmax, not normalized) and the sequence-wise balance loss, each against finite
 * differences of a double-precision reference with the choice held fixed; the bias update's
 * direction. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model/model_impl.h"
#include "train/moe.h"

enum { N = 16, K = 4, T = 7 };
static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static double urand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 52) - 1.0;
}

static void affinities(const double *z, double *s, int sigmoid) {
    if (sigmoid) {
        for (int e = 0; e < N; e++) s[e] = 1 / (1 + exp(-z[e]));
        return;
    }
    double mx = z[0], sum = 0;
    for (int e = 1; e < N; e++) mx = fmax(mx, z[e]);
    for (int e = 0; e < N; e++) sum += s[e] = exp(z[e] - mx);
    for (int e = 0; e < N; e++) s[e] /= sum;
}

/* sum_k r_k w_k(z) with the experts id fixed */
static double gate_loss(const double *z, const int32_t *id, const double *r, int sigmoid, int norm, double scale) {
    double s[N], S = 0, L = 0;
    affinities(z, s, sigmoid);
    for (int k = 0; k < K; k++) S += s[id[k]];
    for (int k = 0; k < K; k++) L += r[k] * s[id[k]] / (norm ? S + 1e-20 : 1) * scale;
    return L;
}

static void check_gate(int sigmoid, int norm, float scale) {
    model_hparams hp = {0};
    hp.n_expert = N, hp.n_expert_used = K, hp.n_expert_group = sigmoid ? 4 : 1, hp.n_group_used = sigmoid ? 2 : 0;
    hp.expert_weights_scale = scale, hp.expert_weights_norm = norm;
    hp.gating = sigmoid ? MOE_GATING_SIGMOID : MOE_GATING_SOFTMAX;
    float z[N], bias[N], score[N], w[K], dz[N] = {0}, dw[K];
    double zd[N], r[K];
    for (int e = 0; e < N; e++) zd[e] = z[e] = (float)(urand() * 3), bias[e] = (float)(urand() * 0.5);
    for (int k = 0; k < K; k++) r[k] = dw[k] = (float)urand();
    int32_t id[K];
    ds_route(&hp, sigmoid ? bias : NULL, z, score, id, w);
    /* ds_route's weights are the formula's */
    double s[N], S = 0;
    affinities(zd, s, sigmoid);
    for (int k = 0; k < K; k++) S += s[id[k]];
    for (int k = 0; k < K; k++) CHECKF(fabs(w[k] - s[id[k]] / (norm ? S : 1) * scale) < 1e-5, "w[%d]", k);
    tr_gate_bwd(dz, dw, score, id, N, K, sigmoid, norm, scale);
    for (int e = 0; e < N; e++) {
        double h = 1e-5, z0 = zd[e];
        zd[e] = z0 + h;
        double lp = gate_loss(zd, id, r, sigmoid, norm, scale);
        zd[e] = z0 - h;
        double lm = gate_loss(zd, id, r, sigmoid, norm, scale);
        zd[e] = z0;
        double num = (lp - lm) / (2 * h);
        CHECKF(fabs(dz[e] - num) <= 1e-5 + 1e-3 * fabs(num), "sigmoid %d norm %d: dz[%d] %g vs %g", sigmoid, norm, e,
               dz[e], num);
    }
}

static void test_gate_bwd(void) {
    check_gate(1, 1, 2.5f); /* DeepSeek-V3 */
    check_gate(1, 0, 1.0f);
    check_gate(0, 0, 1.0f); /* DeepSeek-V2 */
    check_gate(0, 1, 1.0f);
}

static double bal_loss(const double *z, const int32_t *id, double alpha) {
    double f[N] = {0}, P[N] = {0}, L = 0;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) f[id[t * K + k]] += (double)N / (K * T);
    for (int t = 0; t < T; t++) {
        double s[N], Z = 0;
        affinities(z + t * N, s, 1);
        for (int e = 0; e < N; e++) Z += s[e];
        for (int e = 0; e < N; e++) P[e] += s[e] / Z / T;
    }
    for (int e = 0; e < N; e++) L += alpha * f[e] * P[e];
    return L;
}

static void test_balance_loss(void) {
    float score[T * N], dz[T * N] = {0};
    double zd[T * N];
    int32_t id[T * K];
    for (int t = 0; t < T; t++) {
        for (int e = 0; e < N; e++) zd[t * N + e] = urand() * 3, score[t * N + e] = (float)(1 / (1 + exp(-zd[t * N + e])));
        for (int k = 0; k < K; k++) id[t * K + k] = (int32_t)((t * 5 + k * 3) % N); /* any fixed choice */
    }
    double L = tr_balance_loss(dz, score, id, T, N, K, 0.01f);
    CHECKF(fabs(L - bal_loss(zd, id, 0.01)) < 1e-8, "loss %g vs %g", L, bal_loss(zd, id, 0.01));
    int bad = 0;
    for (int i = 0; i < T * N; i++) {
        double h = 1e-5, z0 = zd[i];
        zd[i] = z0 + h;
        double lp = bal_loss(zd, id, 0.01);
        zd[i] = z0 - h;
        double lm = bal_loss(zd, id, 0.01);
        zd[i] = z0;
        double num = (lp - lm) / (2 * h);
        if (!(fabs(dz[i] - num) <= 1e-7 + 1e-3 * fabs(num)) && bad++ < 3) fprintf(stderr, "  dz[%d] %g vs %g\n", i, dz[i], num);
    }
    CHECK(bad == 0);
    /* perfectly even loads with even affinities: the loss is alpha (its minimum, sum f_i P_i = 1) */
    int32_t even[N]; /* N / K tokens, each taking K experts: every expert once */
    float flat[N / K * N];
    for (int e = 0; e < N; e++) even[e] = e;
    for (int i = 0; i < N / K * N; i++) flat[i] = 0.5f;
    CHECK(fabs(tr_balance_loss(NULL, flat, even, N / K, N, K, 1.0f) - 1.0) < 1e-6);
}

static void test_bias_update(void) {
    float bias[4] = {0, 0, 0, 0};
    int64_t load[4] = {10, 2, 4, 0}; /* mean 4 */
    tr_bias_update(bias, load, 4, 0.001f);
    CHECK(bias[0] == -0.001f && bias[1] == 0.001f && bias[2] == 0 && bias[3] == 0.001f);
}

int main(void) {
    RUN(test_gate_bwd);
    RUN(test_balance_loss);
    RUN(test_bias_update);
    return check_report("test_train_moe");
}
