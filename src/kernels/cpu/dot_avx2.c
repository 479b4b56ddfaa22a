/* dot_avx2.c — AVX2+FMA versions of the fused quantized-row dot products in dot.c, chosen at
 * run time (kernels_dot_row_avx2 is called only when the CPU has AVX2 and FMA). Each block's
 * quants are unpacked to 32 int8 with integer ops, widened to floats eight at a time and
 * multiplied into eight running sums. Tested against dequantize_row + op_dot like dot.c. */
#include <immintrin.h>
#include <string.h>

#include "kernels/ops.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float f16(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }

AVX2 static inline float hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* sum_j q[j] * x[j] for 32 int8 q, as an 8-lane vector. */
AVX2 static inline __m256 dot32(const int8_t *q, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < 32; k += 8) {
        __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + k))));
        acc = _mm256_fmadd_ps(qf, _mm256_loadu_ps(x + k), acc);
    }
    return acc;
}

/* The same for 32 int8 held in a register. */
AVX2 static inline __m256 dot32v(__m256i q, const float *x) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 acc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), acc);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), acc);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles first (elements 0..15), then high (16..31). */
AVX2 static inline __m256i nibbles32(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* Byte j (0..31) = 0x10 where bit j of bits is set, else 0. */
AVX2 static inline __m256i bit4_from_bits(uint32_t bits) {
    /* byte j takes byte j/8 of bits, then tests bit j%8 of it */
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                         _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                           0x0101010101010101, 0x0000000000000000));
    __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel);
    return _mm256_and_si256(on, _mm256_set1_epi8(0x10));
}

AVX2 static float dot_q8_0(const uint8_t *b, const float *x, int64_t nb) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32)
        s = _mm256_fmadd_ps(dot32((const int8_t *)b + 2, x), _mm256_set1_ps(f16(b)), s);
    return hsum(s);
}

AVX2 static float dot_q4_0(const uint8_t *b, const float *x, int64_t nb) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 18, x += 32) {
        __m256i q = _mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8));
        s = _mm256_fmadd_ps(dot32v(q, x), _mm256_set1_ps(f16(b)), s);
    }
    return hsum(s);
}

AVX2 static float dot_q5_0(const uint8_t *b, const float *x, int64_t nb) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, b += 22, x += 32) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4); /* little-endian host */
        __m256i q = _mm256_sub_epi8(_mm256_or_si256(nibbles32(b + 6), bit4_from_bits(qh)), _mm256_set1_epi8(16));
        s = _mm256_fmadd_ps(dot32v(q, x), _mm256_set1_ps(f16(b)), s);
    }
    return hsum(s);
}

AVX2 static float dot_q4_k(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++, b += 144, x += 256) {
        float d = f16(b), dmin = f16(b + 2);
        const uint8_t *sc6 = b + 4, *qs = b + 16;
        __m256 acc = _mm256_setzero_ps();
        for (int g = 0; g < 8; g++) {
            int c = g / 2, sc, m;
            if (g < 4) { sc = sc6[g] & 63; m = sc6[g + 4] & 63; }
            else { sc = (sc6[g + 4] & 0xf) | (sc6[g - 4] >> 6) << 4; m = (sc6[g + 4] >> 4) | (sc6[g] >> 6) << 4; }
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i qv = _mm256_and_si256(g % 2 ? _mm256_srli_epi16(raw, 4) : raw, _mm256_set1_epi8(0x0f));
            const float *xg = x + 32 * g;
            __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(xg), _mm256_loadu_ps(xg + 8)),
                                      _mm256_add_ps(_mm256_loadu_ps(xg + 16), _mm256_loadu_ps(xg + 24)));
            acc = _mm256_fmadd_ps(dot32v(qv, xg), _mm256_set1_ps(d * (float)sc), acc);
            acc = _mm256_fnmadd_ps(sx, _mm256_set1_ps(dmin * (float)m), acc);
        }
        s += hsum(acc);
    }
    return s;
}

AVX2 static float dot_q6_k(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    int8_t q[256];
    for (int64_t i = 0; i < nb; i++, b += 210, x += 256) {
        const uint8_t *ql = b, *qh = b + 128;
        float d = f16(b + 208);
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                uint8_t a = ql[64 * h + l], c = ql[64 * h + 32 + l], hb = qh[32 * h + l];
                q[128 * h + l] = (int8_t)(((a & 0xf) | (hb & 3) << 4) - 32);
                q[128 * h + 32 + l] = (int8_t)(((c & 0xf) | ((hb >> 2) & 3) << 4) - 32);
                q[128 * h + 64 + l] = (int8_t)(((a >> 4) | ((hb >> 4) & 3) << 4) - 32);
                q[128 * h + 96 + l] = (int8_t)(((c >> 4) | ((hb >> 6) & 3) << 4) - 32);
            }
        __m256 acc = _mm256_setzero_ps();
        for (int k = 0; k < 16; k++) { /* one int8 scale per 16 elements */
            __m256 sc = _mm256_set1_ps(d * (float)(int8_t)b[192 + k]);
            for (int j = 0; j < 16; j += 8) {
                __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + 16 * k + j))));
                acc = _mm256_fmadd_ps(_mm256_mul_ps(qf, sc), _mm256_loadu_ps(x + 16 * k + j), acc);
            }
        }
        s += hsum(acc);
    }
    return s;
}

AVX2 static float dot_f32(const float *a, const float *x, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(x + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(x + i + 8), s1);
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * x[i];
    return s;
}

AVX2 static float dot_f16(const uint8_t *b, const float *x, int64_t n) {
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        s = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 2 * i))), _mm256_loadu_ps(x + i), s);
    float r = hsum(s);
    for (; i < n; i++) r += f16(b + 2 * i) * x[i];
    return r;
}

/* Returns 1 and sets *out when this type has an AVX2 path. */
int kernels_dot_row_avx2(whale_dtype t, const void *row, const float *x, int64_t n, float *out) {
    const uint8_t *b = row;
    switch (t) {
    case WHALE_DTYPE_F32: *out = dot_f32(row, x, n); return 1;
    case WHALE_DTYPE_F16: *out = dot_f16(b, x, n); return 1;
    case WHALE_DTYPE_Q8_0: *out = dot_q8_0(b, x, n / 32); return 1;
    case WHALE_DTYPE_Q4_0: *out = dot_q4_0(b, x, n / 32); return 1;
    case WHALE_DTYPE_Q5_0: *out = dot_q5_0(b, x, n / 32); return 1;
    case WHALE_DTYPE_Q4_K: *out = dot_q4_k(b, x, n / 256); return 1;
    case WHALE_DTYPE_Q6_K: *out = dot_q6_k(b, x, n / 256); return 1;
    default: return 0;
    }
}

int kernels_have_avx2(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        /* Every AVX2 CPU also has F16C (and clang cannot test for it by name). */
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return have;
}
