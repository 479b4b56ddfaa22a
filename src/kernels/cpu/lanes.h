/* lanes.h — the one order in which the attention kernels (attn.c, attn_bf16.c) add their 16
 * lanes of partial sums, as portable C and on AVX-512 and AVX2 registers, so that every level
 * gives the same bits; and their masks for a partial last vector. Internal to kernels/cpu. */
#ifndef WHALE_KERNELS_CPU_LANES_H
#define WHALE_KERNELS_CPU_LANES_H

/* The sum of 16 lanes in the AVX-512 kernels' order: lanes i and i + 8, then halves of 4, 2, 1. */
static inline float lanes16_sum(const float *c) {
    float h[8];
    for (int l = 0; l < 8; l++) h[l] = c[l] + c[l + 8];
    for (int l = 0; l < 4; l++) h[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++) h[l] = h[l] + h[l + 2];
    return h[0] + h[1];
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
