/* qdot.h — matrix products with the activations quantized to 8 bits: integer dot products
 * against the quantized weight blocks (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), as the fast CPU
 * engines do. A weight byte is read once and its products are summed in integers (AVX2
 * maddubs, AVX-512 VNNI dpbusd); one float multiply-add per 32 elements applies the scales.
 *
 * Activations are quantized once per matrix product, per token, in blocks of 32: a float scale
 * d = max|x| / 127, 32 int8 q = round(x / d), and the sums of each 16 (for the weight types that
 * subtract an offset or a minimum). That is finer than llama.cpp's Q8_K (one scale per 256), and
 * costs about one part in 500 of each activation: the documented tolerance of the fast path.
 *
 * Every (row, token) dot product takes the same sequence of operations whatever the number of
 * tokens in the call, so a sequence's results do not depend on the batch it shares.
 *
 * kernels/cpu/qdot.c: quantization, portable reference dots, the token-tiled driver and the
 * run-time choice among VNNI, AVX2 and portable (tests/unit/test_qdot.c checks each against the
 * reference and against dequantize + float dot). */
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

/* Which implementation runs: 2 AVX-512 VNNI, 1 AVX2, 0 portable. op_qdot_force caps it (tests):
 * -1 lifts the cap. WHALE_NO_SIMD=1 in the environment means portable. */
int op_qdot_level(void);
void op_qdot_force(int level);

#endif
