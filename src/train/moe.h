/* moe.h — DeepSeekMoE's router in training: the backward pass of the gate weights (selection
 * is ds_route's, in src/model/moe.c: which experts run has no gradient, how much each counts
 * does), the sequence-wise balance loss, and the auxiliary-loss-free bias update. */
#ifndef WHALE_TRAIN_MOE_H
#define WHALE_TRAIN_MOE_H

#include <stdint.h>

/* One token's router: z[N] its logits, score[N] the affinities ds_route computed (sigmoid(z),
 * or softmax(z) when sigmoid = 0), id[K] the chosen experts, w_k = score[id_k] (/ their sum when
 * norm) * scale. Given dw[K] = dL/dw_k, adds dL/dz into dz[N]. */
void tr_gate_bwd(float *dz, const float *dw, const float *score, const int32_t *id, int N, int K, int sigmoid, int norm,
                 float scale);

/* DeepSeek-V3's sequence-wise balance loss over T tokens of one sequence:
 * L = alpha * sum_i f_i P_i, f_i = N / (K T) * (times expert i was chosen), P_i = mean over t of
 * score[t][i] / sum_j score[t][j] (sigmoid affinities). Returns L; adds dL/dz into dz[T][N]
 * (the counts f_i are constants, as in the paper). */
double tr_balance_loss(float *dz, const float *score, const int32_t *id, int T, int N, int K, float alpha);

/* Auxiliary-loss-free balancing: bias[e] += gamma where expert e took fewer than the mean
 * number of tokens, -= gamma where more (sign of mean - load). */
void tr_bias_update(float *bias, const int64_t *load, int N, float gamma);

#endif
