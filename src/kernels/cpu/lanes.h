/* lanes.h — the one order in which the attention kernels (attn.c, attn_bf16.c) add their 16
 * lanes of partial sums, as portable C and on AVX-512 and AVX2 registers, so that every level
 * gives the same bits; their masks for a partial last vector; and e^x as every level computes
 * it (softmax weights, SwiGLU). Internal to kernels/cpu. */
#ifndef WHALE_KERNELS_CPU_LANES_H
#define WHALE_KERNELS_CPU_LANES_H

#include <math.h>

/* The sum of 16 lanes in the AVX-512 kernels' order: lanes i and i + 8, then halves of 4, 2, 1. */
static inline float lanes16_sum(const float *c) {
    float h[8];
    for (int l = 0; l < 8; l++) h[l] = c[l] + c[l + 8];
    for (int l = 0; l < 4; l++) h[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++) h[l] = h[l] + h[l + 2];
    return h[0] + h[1];
}

/* e^x the same at every level: n = the integer nearest x log2 e, r = x - n ln 2 in two fused
 * steps (ln 2 as a short high part and the rest), e^r by its Taylor polynomial of degree 6 on
 * |r| <= ln(2)/2, times 2^n; ~3e-7 relative. 0 below -80 and for NaN; +inf above 88 (so that
 * 2^n stays a normal float, which the AVX2 level builds from its bits). libm's expf would tie
 * the bits to the C library, and a vector level would call it once per value. The scalar form's
 * nearbyintf rounds as the vector forms do (to nearest, ties to even) only under the default
 * rounding mode, which nothing in Whale changes. */
#define LANES_EXP_MIN (-80.0f)
#define LANES_EXP_MAX 88.0f
#define LANES_LOG2E 1.44269504f
#define LANES_LN2_HI 0.693145751953125f /* 0x1.62e4p-1: n x LN2_HI is exact */
#define LANES_LN2_LO 1.42860677e-6f     /* ln 2 - LN2_HI */
static const float lanes_exp_c[7] = {1.0f, 1.0f, 0.5f, 1.66666672e-1f, 4.16666679e-2f, 8.33333377e-3f, 1.38888892e-3f};

static inline float lanes_exp(float x) {
    if (!(x >= LANES_EXP_MIN)) return 0;
    if (x > LANES_EXP_MAX) return INFINITY;
    float n = nearbyintf(x * LANES_LOG2E), r = fmaf(n, -LANES_LN2_LO, fmaf(n, -LANES_LN2_HI, x)), p = lanes_exp_c[6];
    for (int k = 5; k >= 0; k--) p = fmaf(p, r, lanes_exp_c[k]);
    return ldexpf(p, (int)n);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdint.h>

/* The first n of 16 (or 64) lanes, all of them for n >= 16 (64): a loop's last, partial vector. */
static inline __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }
static inline __mmask64 mask64(int64_t n) { return n >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << n) - 1; }

/* lanes16_sum on a register (not _mm512_reduce_add_ps, whose order is the compiler's). */
__attribute__((target("avx512f,avx512dq"))) static inline __attribute__((always_inline)) float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* lanes_exp of 16 lanes. */
__attribute__((target("avx512f,avx512dq"))) static inline __attribute__((always_inline)) __m512 lanes_exp16(__m512 x) {
    __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(LANES_EXP_MIN), _CMP_GE_OQ);
    __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(LANES_EXP_MAX), _CMP_GT_OQ);
    __m512 xc = _mm512_min_ps(x, _mm512_set1_ps(LANES_EXP_MAX));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(LANES_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LANES_LN2_LO), _mm512_fnmadd_ps(n, _mm512_set1_ps(LANES_LN2_HI), xc));
    __m512 p = _mm512_set1_ps(lanes_exp_c[6]);
    for (int j = 5; j >= 0; j--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(lanes_exp_c[j]));
    p = _mm512_maskz_mov_ps(ok, _mm512_scalef_ps(p, n));
    return _mm512_mask_mov_ps(p, big, _mm512_set1_ps(INFINITY));
}

/* lanes_exp of 8 lanes. */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline)) __m256 lanes_exp8(__m256 x) {
    __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(LANES_EXP_MIN), _CMP_GE_OQ);
    __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(LANES_EXP_MAX), _CMP_GT_OQ);
    __m256 xc = _mm256_min_ps(x, _mm256_set1_ps(LANES_EXP_MAX));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LANES_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LANES_LN2_LO), _mm256_fnmadd_ps(n, _mm256_set1_ps(LANES_LN2_HI), xc));
    __m256 p = _mm256_set1_ps(lanes_exp_c[6]);
    for (int j = 5; j >= 0; j--) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(lanes_exp_c[j]));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    p = _mm256_and_ps(ok, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
    return _mm256_blendv_ps(p, _mm256_set1_ps(INFINITY), big);
}

/* lanes16_sum of the halves lo (lanes 0-7), hi (8-15): i and i + 8 first, then 4, 2, 1. */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) float hsum16_y(__m256 lo, __m256 hi) {
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}
#endif

#endif
