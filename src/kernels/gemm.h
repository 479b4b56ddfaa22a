/* gemm.h — dense F32 matrix products for training: C (+)= alpha * A * B on float arrays
 * addressed by strides, so a transposed operand is read in place (no transpose pass).
 *
 * Owns: the packed, cache-blocked product (kernels/cpu/gemm.c) and its register-tiled kernels
 * (cpu/gemm_avx2.c; a portable C kernel for every other CPU). Knows nothing about models.
 *
 * Arithmetic contract: every element of C is one chain of fused multiply-adds over k = 0 ..
 * K-1 in order, c = fmaf(alpha * a_ik, b_kj, c), starting from C's value (accumulate) or
 * from +0. The AVX2 kernel and the portable kernel perform exactly these operations, and no
 * element is split between tasks, so the bits depend only on the inputs: not on the CPU's
 * level (kernels/isa.h), the thread count, the tile sizes or the other rows and columns.
 *
 * Precision: GEMM_F32 multiplies the floats as they are; GEMM_BF16 first rounds alpha * a and
 * b to bfloat16 (nearest, ties to even), so every product is exact in F32 and only the sums
 * round. On this generation of kernels BF16 costs the same time as F32 (the operands are
 * rounded while packing; there is no vdpbf16ps kernel yet). */
#ifndef WHALE_KERNELS_GEMM_H
#define WHALE_KERNELS_GEMM_H

#include <stdint.h>

#include "base/threadpool.h"

typedef enum gemm_prec { GEMM_F32 = 0, GEMM_BF16 = 1 } gemm_prec;

/* One product C[M x N] (+)= alpha * A[M x K] * B[K x N]:
 *   a_ik = A[i * a_rs + k * a_cs], b_kj = B[k * b_rs + j * b_cs], c_ij = C[i * ldc + j].
 * accumulate = 1 adds to C; 0 overwrites it (C is not read). M, N or K of 0 is allowed (K = 0
 * with accumulate = 0 zeroes C). tp NULL: the calling thread alone (safe to call from inside
 * a task of another pool run); else the work is split over tp in output tiles. Not reentrant
 * per pool (tp_run). Scratch is per thread and reused; nothing is allocated once it has grown.
 * Aborts only when scratch memory cannot be had. */
void gemm(float *C, int64_t ldc, const float *A, int64_t a_rs, int64_t a_cs, const float *B, int64_t b_rs,
          int64_t b_cs, int64_t M, int64_t N, int64_t K, float alpha, int accumulate, gemm_prec prec, threadpool *tp);

/* x rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as a float. */
float gemm_round_bf16(float x);

/* 1 when the CPU has AVX512_BF16 (the instruction set a BF16 kernel would use), else 0. */
int gemm_cpu_has_bf16(void);

/* The kernel gemm runs now: "avx2" or "portable". */
const char *gemm_kernel_name(void);

/* FLOP/s (2 M N K per product) of the best of repeated n x n x n products over tp, for about
 * `seconds` of wall time (at least one product). The peak MFU is measured against. */
double gemm_measure_flops(int n, gemm_prec prec, threadpool *tp, double seconds);

#endif
