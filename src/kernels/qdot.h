/* qdot.h — matrix products with the activations quantized to 8 bits: integer dot products
 * against the quantized weight blocks (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K) as they lie in the
 * file, as the fast CPU engines do. Products are summed in integers (AVX-512 VNNI dpbusd, AVX2
 * maddubs + madd), and one float multiply-add per 64 elements applies both scales.
 *
 * Activations are quantized once per matrix product, per token, in blocks of 32: a float scale
 * d = max|x| / 127, 32 int8 q = round(x / d), and the sums of each 16 (for the weight types that
 * subtract an offset or a minimum). That is finer than llama.cpp's Q8_K (one scale per 256), and
 * costs about one part in 500 of each activation: the documented tolerance of the fast path.
 *
 * One arithmetic, lane for lane, at every level (cpu/qdot.c describes it): a (row, token)
 * result is the same bits on every CPU, whatever the number of tokens in the call and the row
 * range, so a sequence's results do not depend on the batch it shares.
 *
 * Which version runs is the level of kernels/isa.h, read at each call (AVX-512 needs F, BW, VL,
 * DQ and VNNI; AVX2 needs FMA and F16C): WHALE_ISA=scalar|avx2|avx512 or WHALE_NO_SIMD=1 in the
 * environment, or isa_force() in tests and benchmarks, lower it. Every level gives the same bits.
 *
 * kernels/cpu/qdot.c: quantization, the portable reference and the call of the level in force;
 * cpu/qdot_avx512.c: a one-row stream (decode), pairs of rows against groups of up to 8 tokens
 * (verification, batches, prefill) and 4x4 tiles (rows past 20480 elements) on 512-bit vectors;
 * cpu/qdot_avx2.c: the same lanes in 256-bit halves. Tests: tests/unit/test_ops.c
 * (every level against the reference and each other bit for bit, odd shapes, batch invariance,
 * guard bytes). */
#ifndef WHALE_KERNELS_QDOT_H
#define WHALE_KERNELS_QDOT_H

#include <stdint.h>

#include "formats/dtype.h"

#define QACT_BLOCK 32

typedef struct qact_block {
    float d;          /* scale */
    int16_t s16[2];   /* sum of q[0..15], of q[16..31] */
    int8_t q[32];
} qact_block;

/* 1 if weights of type t have an integer dot product here. */
int op_qdot_supported(whale_dtype t);

/* x (n elements, n a multiple of 32) -> n/32 blocks. */
void op_quantize_act(qact_block *out, const float *x, int64_t n);

/* Y[b*ldy + r] = dot(row r of W, token b) for r0 <= r < r1 and b < n_tok; token b's activations
 * are the n_in/32 blocks at X + b * (n_in/32). W rows of n_in elements of type t. */
void op_matmul_rows_q(float *Y, int64_t ldy, const void *W, whale_dtype t, const qact_block *X, int64_t n_in,
                      int64_t n_tok, int64_t r0, int64_t r1);

#endif
