/* ops.h — the training ops: each forward op with its backward, on plain row-major F32 arrays.
 * The forward ops compute what the inference model computes (src/model), written here for
 * training: they keep what the backward pass needs, and each backward op takes the gradient of
 * the loss with respect to the op's output (d*) and ADDS the gradients of its inputs into the
 * given buffers (so a tensor used twice collects both). Shapes: T rows (tokens), the rest as
 * named. Every backward op is checked against finite differences in double precision
 * (tests/unit/test_train_ops.c). Matrix products, attention's included, run on the blocked
 * product of kernels/gemm.h (one arithmetic on every CPU) over a thread pool. */
#ifndef WHALE_TRAIN_OPS_H
#define WHALE_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

/* Threads for the ops (0: one per CPU), before the first op runs. Results are the same bits
 * for any count: each output value is one task's, summed in a fixed order. */
void tr_set_threads(int n);

/* Precision of the ops' matrix products (linear layers and attention; kernels/gemm.h):
 * TR_F32 (the default) or TR_BF16 (operands rounded to bfloat16, products summed in F32; the
 * weights and everything else stay F32). Set before a step, not during one. */
enum { TR_F32 = 0, TR_BF16 = 1 };
void tr_set_precision(int p);
int tr_precision(void);
/* TR_BF16 when the CPU has AVX512_BF16, else TR_F32 (the choice for `whale train`). */
int tr_precision_default(void);
/* "f32" or "bf16"; tr_precision_parse gives the value of such a name, or -1. */
const char *tr_precision_name(int p);
int tr_precision_parse(const char *s);

/* FLOP/s of the ops' matrix product at the precision in force on this machine and pool: the
 * best of repeated 256^3 products for about 0.15 s, measured once per precision and cached.
 * The peak `whale train` reports MFU against (bench_gemm measures the same at more sizes). */
double tr_peak_flops(void);

/* out[t] = table[ids[t]] (rows of width d). */
void tr_embed_fwd(float *out, const float *table, const int32_t *ids, int T, int d);
/* dtable[ids[t]] += dout[t]. */
void tr_embed_bwd(float *dtable, const float *dout, const int32_t *ids, int T, int d);

/* RMSNorm: y = x / rms(x) * w, rms = sqrt(mean(x^2) + eps); inv_rms[t] is saved for the
 * backward pass. */
void tr_rmsnorm_fwd(float *y, float *inv_rms, const float *x, const float *w, int T, int d, float eps);
void tr_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *inv_rms,
                    int T, int d);

/* Y[T x N] = X[T x K] * W^T, W as N rows of K (the layout of a GGUF weight and of
 * nn.Linear.weight); bias (N, may be NULL) added. */
void tr_matmul_fwd(float *Y, const float *X, const float *W, const float *bias, int T, int K, int N);
/* dX += dY * W, dW += dY^T * X, dbias += sum over rows of dY; any of dX, dW, dbias may be NULL. */
void tr_matmul_bwd(float *dX, float *dW, float *dbias, const float *dY, const float *X, const float *W, int T, int K,
                   int N);

/* A low-rank adapter beside a projection (LoRA): Y[T x N] += Z B^T with Z[T x r] = s X A^T,
 * A [r x K], B [N x r]; Z is kept for the backward pass. */
void tr_lora_fwd(float *Y, float *Z, const float *X, const float *A, const float *B, float s, int T, int K, int N,
                 int r);
/* dB += dY^T Z, dZ = s dY B (scratch, set), dA += dZ^T X, dX += dZ A; dX may be NULL. */
void tr_lora_bwd(float *dX, float *dA, float *dB, float *dZ, const float *dY, const float *X, const float *Z,
                 const float *A, const float *B, float s, int T, int K, int N, int r);

/* Rotary position embedding on x[T][n_heads][head_dim], the first rot_dim dims of each head,
 * in place. neox = 1: pairs (i, i + rot_dim/2) (Qwen2, Llama); neox = 0: pairs (2i, 2i+1)
 * (GPT-J, DeepSeek's interleaved rope). theta_i = pos * base^(-2i/rot_dim) * freq_scale[i] (freq
 * scale NULL: 1), cos/sin scaled by mscale (YaRN's attention factor; 1 otherwise). The backward
 * op is the same rotation by -theta (an orthogonal map's transpose), applied to dx in place. */
void tr_rope(float *x, const int32_t *pos, int T, int n_heads, int head_dim, int rot_dim, float base,
             const float *freq_scale, float mscale, int neox, int inverse);

/* Causal attention with grouped queries, one sequence of T tokens: q[T][Hq][dk], k[T][Hkv][dk],
 * v[T][Hkv][dv] -> out[T][Hq][dv], softmax(q.k * scale) over positions <= t. Hq a multiple of
 * Hkv (query head h reads key/value head h / (Hq/Hkv)). P[Hq][T][T] keeps the probabilities for
 * the backward pass (memory T*T*Hq floats: training contexts are short). */
void tr_attn_fwd(float *out, float *P, const float *q, const float *k, const float *v, int T, int Hq, int Hkv, int dk,
                 int dv, float scale);
void tr_attn_bwd(float *dq, float *dk_, float *dv_, const float *dout, const float *P, const float *q, const float *k,
                 const float *v, int T, int Hq, int Hkv, int dk, int dv, float scale);

/* SwiGLU: h = silu(g) * u, elementwise over n. */
void tr_swiglu_fwd(float *h, const float *g, const float *u, size_t n);
void tr_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n);

/* Cross-entropy of logits[T][V] against targets (-1: no loss at that row), in one of two forms:
 * - tw NULL (pre-training, SFT): the mean over the rows with a target; when dlogits is not NULL
 *   it is SET (not added) to the gradient of weight x the mean, weight * (softmax - onehot) /
 *   n_targets, zero on ignored rows. Returns the mean.
 * - tw[T] given (a per-row loss weight, e.g. GRPO's dJ/dlogp): the weighted sum
 *   sum_t tw[t] * -log p_t over the rows with a target; dlogits SET to weight * tw[t] *
 *   (softmax - onehot). Returns the weighted sum (no division).
 * logp (T floats, or NULL) receives log p_t, the log-probability of row t's target under these
 * logits (0 on rows without one), computed alongside the loss. dlogits may be logits itself. */
double tr_cross_entropy(float *dlogits, float *logp, const float *logits, const int32_t *targets, const float *tw, int T,
                        int V, float weight);

/* A batch of n token ids with their targets (-1: none): WHALE_E_ARG for an id or target outside
 * the vocabulary of V; the targets' count into *n_targets. */
int tr_batch_check(const int32_t *ids, const int32_t *targets, int n, int V, int *n_targets, whale_err *err);

/* One sequence's share of its batch's loss: *w = its targets / the batch's n_targets. tw NULL:
 * returns *w x its mean cross-entropy (its share of the batch mean); tw given: returns its
 * weighted sum (tr_cross_entropy), the batch's loss being the sum of those. Unless loss_scale
 * is 0 (forward only), logits become the gradient of loss_scale x that return value. logp as in
 * tr_cross_entropy. */
double tr_seq_loss(float *logits, float *logp, const int32_t *tg, const float *tw, int T, int V, int n_targets,
                   float loss_scale, float *w);

#endif
