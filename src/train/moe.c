/* moe.c — the router's gradients and balancing (see moe.h). */
#include "train/moe.h"

#include <stdlib.h>
#include <string.h>

/* dL/dz from dL/dscore for the chosen experts (ds zero elsewhere). */
static void score_bwd(float *dz, const float *ds_chosen, const float *score, const int32_t *id, int N, int K, int sigmoid) {
    if (sigmoid) {
        for (int k = 0; k < K; k++) {
            float s = score[id[k]];
            dz[id[k]] += ds_chosen[k] * s * (1 - s);
        }
        return;
    }
    double dot = 0; /* softmax: dz_e = s_e (ds_e - sum_j s_j ds_j) */
    for (int k = 0; k < K; k++) dot += (double)score[id[k]] * ds_chosen[k];
    for (int e = 0; e < N; e++) dz[e] -= score[e] * (float)dot;
    for (int k = 0; k < K; k++) dz[id[k]] += score[id[k]] * ds_chosen[k];
}

void tr_gate_bwd(float *dz, const float *dw, const float *score, const int32_t *id, int N, int K, int sigmoid, int norm,
                 float scale) {
    float ds[256];
    if (K > 256) abort();
    if (norm) { /* w_k = s_k / S * scale: ds_k = scale (dw_k / S - sum_j dw_j s_j / S^2) */
        double S = 0, dot = 0;
        for (int k = 0; k < K; k++) S += score[id[k]], dot += (double)dw[k] * score[id[k]];
        S += 1e-20;
        for (int k = 0; k < K; k++) ds[k] = (float)(scale * (dw[k] / S - dot / (S * S)));
    } else {
        for (int k = 0; k < K; k++) ds[k] = dw[k] * scale;
    }
    score_bwd(dz, ds, score, id, N, K, sigmoid);
}

double tr_balance_loss(float *dz, const float *score, const int32_t *id, int T, int N, int K, float alpha) {
    double *f = calloc((size_t)N, sizeof *f), *P = calloc((size_t)N, sizeof *P);
    if (!f || !P) abort();
    for (int t = 0; t < T; t++)
        for (int k = 0; k < K; k++) f[id[(size_t)t * K + k]] += (double)N / ((double)K * T);
    for (int t = 0; t < T; t++) {
        const float *s = score + (size_t)t * N;
        double Z = 0;
        for (int e = 0; e < N; e++) Z += s[e];
        for (int e = 0; e < N; e++) P[e] += s[e] / Z / T;
        if (dz) { /* g_e = alpha f_e / T into s' = s / Z, then through the normalization and the sigmoid */
            double dot = 0;
            for (int e = 0; e < N; e++) dot += alpha * f[e] / T * (s[e] / Z);
            for (int e = 0; e < N; e++) {
                double ds = (alpha * f[e] / T - dot) / Z;
                dz[(size_t)t * N + e] += (float)(ds * s[e] * (1 - s[e]));
            }
        }
    }
    double L = 0;
    for (int e = 0; e < N; e++) L += alpha * f[e] * P[e];
    free(f);
    free(P);
    return L;
}

void tr_bias_update(float *bias, const int64_t *load, int N, float gamma) {
    double mean = 0;
    for (int e = 0; e < N; e++) mean += (double)load[e];
    mean /= N;
    for (int e = 0; e < N; e++) {
        if ((double)load[e] < mean) bias[e] += gamma;
        else if ((double)load[e] > mean) bias[e] -= gamma;
    }
}
