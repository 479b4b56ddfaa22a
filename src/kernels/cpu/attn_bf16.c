/* attn_bf16.c — the multi-query attention of kernels/attn.h over a cache stored in bfloat16
 * (--kv-type bf16), with the products in bfloat16 too: queries and softmax weights are rounded
 * to bfloat16 and multiplied pairwise by vdpbf16ps (AVX512_BF16), 32 products per instruction
 * where F32 does 16. At long context MLA's attention is compute-bound (16 heads x 1,088
 * multiply-adds per cached position and layer), so this, not the halved bytes, is the gain.
 *
 * The instruction's arithmetic, as this CPU family computes it (tests/unit/test_ops.c checks it
 * against the portable loops bit for bit): lane j of the accumulator adds the odd pair's product
 * and then the even pair's, each exact product added with one rounding (a fused multiply-add),
 * and a result below FLT_MIN in magnitude becomes zero (FTZ); denormal inputs count as zero
 * (DAZ), but none reach it: every value is rounded by op_bf16_round, which flushes them. The
 * AVX2 level (and AVX-512 without BF16) runs the same fused multiply-adds with MXCSR's FTZ and
 * DAZ set for the call; the portable loops flush by hand.
 *
 * Scores: lane l of a 32-element chunk holds elements 2l and 2l + 1 (odd first), the 16 lanes
 * summed as lanes.h says. Accumulation: positions go in pairs (t, t + 1), the pair's products
 * in each output column added t + 1 first; an odd last position pairs with a zero row. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/cpu/lanes.h"
#include "kernels/isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WHALE_X86 1
#include <immintrin.h>
#endif

uint16_t op_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u | 0x00400000u) >> 16); /* NaN stays NaN */
    if ((u & 0x7f800000u) == 0) return (uint16_t)(u >> 16 & 0x8000u);                /* denormal: signed zero */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A fused multiply-add as vdpbf16ps makes it: a denormal accumulator counts as zero (the
 * products' factors are never denormal), and a result too small to be normal is zero. */
static inline float fma_ftz(float a, float b, float c) {
    if (fabsf(c) < FLT_MIN) c = copysignf(0.0f, c);
    float r = fmaf(a, b, c);
    if (fabsf(r) < FLT_MIN) return copysignf(0.0f, r);
    if (fabsf(r) == FLT_MIN) { /* x86 calls a result tiny after rounding it to 24 bits with an
                                  unbounded exponent: just below 2^-126 it is tiny (flushed) though
                                  rounding to the denormals made it FLT_MIN; the double sum is exact */
        double e = (double)a * b + (double)c;
        if (fabs(e) < 0x1p-126 - 0x1p-151) return copysignf(0.0f, r);
    }
    return r;
}

/* ---- portable ------------------------------------------------------------------------------ */

static float dot_bf16(const uint16_t *a, const uint16_t *b, int64_t d) {
    float c[16] = {0};
    for (int64_t i = 0; i < d; i += 32)
        for (int l = 0; l < 16; l++) {
            int64_t e = i + 2 * l, o = e + 1;
            c[l] = fma_ftz(o < d ? bf(a[o]) : 0.0f, o < d ? bf(b[o]) : 0.0f, c[l]);
            c[l] = fma_ftz(e < d ? bf(a[e]) : 0.0f, e < d ? bf(b[e]) : 0.0f, c[l]);
        }
    return lanes16_sum(c);
}

static void scores_portable(float *s, int64_t lds, const uint16_t *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                            int64_t ldk, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t t = 0; t < n_pos; t++) s[h * lds + t] = dot_bf16(q + h * ldq, k + t * ldk, d);
}

static void accum_portable(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp, int64_t n_head, const uint16_t *v,
                           int64_t ldv, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t t = 0; t < n_pos; t += 2) {
            uint32_t w = pp[h * ldp + t / 2];
            float p0 = bf((uint16_t)w), p1 = bf((uint16_t)(w >> 16));
            const uint16_t *r0 = v + t * ldv, *r1 = t + 1 < n_pos ? r0 + ldv : NULL;
            for (int64_t i = 0; i < d; i++) {
                float x = o[h * ldo + i];
                x = fma_ftz(p1, r1 ? bf(r1[i]) : 0.0f, x);
                o[h * ldo + i] = fma_ftz(p0, bf(r0[i]), x);
            }
        }
}

#ifdef WHALE_X86
/* ---- AVX-512 with AVX512_BF16 -------------------------------------------------------------- */

#define AB_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"
#define AB_INLINE __attribute__((target(AB_TARGET))) static inline __attribute__((always_inline))

/* HN heads x TN positions (at most 4 x 4) of scores: 16 vdpbf16ps per 8 loads of 32 values. */
AB_INLINE void score_tile_b(float *s, int64_t lds, const uint16_t *q, int64_t ldq, const uint16_t *k, int64_t ldk,
                            int64_t d, int HN, int TN) {
    __m512 c[4][4];
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) c[a][b] = _mm512_setzero_ps();
    for (int64_t i = 0; i < d; i += 32) {
        __mmask32 m = d - i >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (d - i)) - 1u);
        __m512i kv[4];
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) kv[b] = _mm512_maskz_loadu_epi16(m, k + b * ldk + i);
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            __m512bh x = (__m512bh)_mm512_maskz_loadu_epi16(m, q + a * ldq + i);
#pragma GCC unroll 4
            for (int b = 0; b < TN; b++) c[a][b] = _mm512_dpbf16_ps(c[a][b], x, (__m512bh)kv[b]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) s[a * lds + b] = hsum16(c[a][b]);
}

__attribute__((target(AB_TARGET))) static void scores_b(float *s, int64_t lds, const uint16_t *q, int64_t ldq,
                                                        int64_t n_head, const uint16_t *k, int64_t ldk, int64_t n_pos,
                                                        int64_t d) {
    int64_t t = 0;
    for (; t + 4 <= n_pos; t += 4) {
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) score_tile_b(s + h * lds + t, lds, q + h * ldq, ldq, k + t * ldk, ldk, d, 4, 4);
        for (; h < n_head; h++) score_tile_b(s + h * lds + t, lds, q + h * ldq, ldq, k + t * ldk, ldk, d, 1, 4);
    }
    for (; t < n_pos; t++)
        for (int64_t h = 0; h < n_head; h++)
            score_tile_b(s + h * lds + t, lds, q + h * ldq, ldq, k + t * ldk, ldk, d, 1, 1);
}

/* HN heads x 16*CN output columns (at most 4 x 4) from column i: each pair of positions is
 * interleaved once (vpermw) for all HN heads. */
AB_INLINE void accum_tile_b(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp, const uint16_t *v, int64_t ldv,
                            int64_t n_pos, int64_t i, __mmask16 m, int HN, int CN) {
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) acc[a][c] = _mm512_maskz_loadu_ps(m, o + a * ldo + i + 16 * c);
    for (int64_t t = 0; t < n_pos; t += 2) {
        const uint16_t *r0 = v + t * ldv + i, *r1 = r0 + ldv;
        int two = t + 1 < n_pos;
        __m512i x[4];
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) {
            __m256i a0 = _mm256_maskz_loadu_epi16(m, r0 + 16 * c);
            __m256i a1 = two ? _mm256_maskz_loadu_epi16(m, r1 + 16 * c) : _mm256_setzero_si256();
            x[c] = _mm512_permutexvar_epi16(idx, _mm512_inserti64x4(_mm512_castsi256_si512(a0), a1, 1));
        }
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            __m512bh w = (__m512bh)_mm512_set1_epi32((int)pp[a * ldp + t / 2]);
#pragma GCC unroll 4
            for (int c = 0; c < CN; c++) acc[a][c] = _mm512_dpbf16_ps(acc[a][c], w, (__m512bh)x[c]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) _mm512_mask_storeu_ps(o + a * ldo + i + 16 * c, m, acc[a][c]);
}

__attribute__((target(AB_TARGET))) static void accum_b(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp,
                                                       int64_t n_head, const uint16_t *v, int64_t ldv, int64_t n_pos,
                                                       int64_t d) {
    __mmask16 all = (__mmask16)0xFFFF;
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) {
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) accum_tile_b(o + h * ldo, ldo, pp + h * ldp, ldp, v, ldv, n_pos, i, all, 4, 4);
        for (; h < n_head; h++) accum_tile_b(o + h * ldo, ldo, pp + h * ldp, ldp, v, ldv, n_pos, i, all, 1, 4);
    }
    for (; i < d; i += 16) {
        __mmask16 m = mask16(d - i);
        for (int64_t h = 0; h < n_head; h++)
            accum_tile_b(o + h * ldo, ldo, pp + h * ldp, ldp, v, ldv, n_pos, i, m, 1, 1);
    }
}

/* ---- AVX2: the same fused multiply-adds, FTZ and DAZ from MXCSR ------------------------------ */

#define BY_TARGET "avx2,fma"
#define BY_INLINE __attribute__((target(BY_TARGET))) static inline __attribute__((always_inline))
#define MXCSR_FTZ_DAZ 0x8040u

/* Eight lanes' pairs from 16 values at p (n of them there, the rest zero): odd elements and
 * even elements widened to F32 (a bfloat16 is the high half of its float). */
BY_INLINE void pairs8(const uint16_t *p, int64_t n, __m256 *odd, __m256 *even) {
    __m256i w;
    if (n >= 16) {
        w = _mm256_loadu_si256((const __m256i *)p);
    } else {
        uint16_t t[16] = {0};
        memcpy(t, p, (size_t)(n > 0 ? n : 0) * 2);
        w = _mm256_loadu_si256((const __m256i *)t);
    }
    *odd = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xFFFF0000u)));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* The lanes' sums under FTZ and DAZ, their sum (lanes.h) without, as the other levels add them. */
BY_INLINE float dot_y(const uint16_t *a, const uint16_t *b, int64_t d) {
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | MXCSR_FTZ_DAZ);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 32) {
        __m256 ao, ae, bo, be;
        pairs8(a + i, d - i, &ao, &ae), pairs8(b + i, d - i, &bo, &be);
        lo = _mm256_fmadd_ps(ae, be, _mm256_fmadd_ps(ao, bo, lo));
        pairs8(a + i + 16, d - i - 16, &ao, &ae), pairs8(b + i + 16, d - i - 16, &bo, &be);
        hi = _mm256_fmadd_ps(ae, be, _mm256_fmadd_ps(ao, bo, hi));
    }
    _mm_setcsr(csr);
    return hsum16_y(lo, hi);
}

__attribute__((target(BY_TARGET))) static void scores_y(float *s, int64_t lds, const uint16_t *q, int64_t ldq,
                                                        int64_t n_head, const uint16_t *k, int64_t ldk, int64_t n_pos,
                                                        int64_t d) {
    for (int64_t t = 0; t < n_pos; t++)
        for (int64_t h = 0; h < n_head; h++) s[h * lds + t] = dot_y(q + h * ldq, k + t * ldk, d);
}

/* 8 values of a bfloat16 row from column i, widened. */
BY_INLINE __m256 ld8_b(const uint16_t *r, int64_t i) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(r + i))), 16));
}

__attribute__((target(BY_TARGET))) static void accum_y(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp,
                                                       int64_t n_head, const uint16_t *v, int64_t ldv, int64_t n_pos,
                                                       int64_t d) {
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | MXCSR_FTZ_DAZ);
    int64_t full = d & ~(int64_t)7;
    for (int64_t h = 0; h < n_head; h++) {
        float *out = o + h * ldo;
        for (int64_t i = 0; i < full; i += 8) {
            __m256 acc = _mm256_loadu_ps(out + i);
            for (int64_t t = 0; t < n_pos; t += 2) {
                uint32_t w = pp[h * ldp + t / 2];
                const uint16_t *r0 = v + t * ldv;
                __m256 x1 = t + 1 < n_pos ? ld8_b(r0 + ldv, i) : _mm256_setzero_ps();
                acc = _mm256_fmadd_ps(_mm256_set1_ps(bf((uint16_t)(w >> 16))), x1, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(bf((uint16_t)w)), ld8_b(r0, i), acc);
            }
            _mm256_storeu_ps(out + i, acc);
        }
    }
    _mm_setcsr(csr);
    if (full < d) /* the last 1..7 columns: each its own chain, as portable */
        for (int64_t h = 0; h < n_head; h++)
            for (int64_t t = 0; t < n_pos; t += 2) {
                uint32_t w = pp[h * ldp + t / 2];
                const uint16_t *r0 = v + t * ldv, *r1 = t + 1 < n_pos ? r0 + ldv : NULL;
                for (int64_t i = full; i < d; i++) {
                    float x = fma_ftz(bf((uint16_t)(w >> 16)), r1 ? bf(r1[i]) : 0.0f, o[h * ldo + i]);
                    o[h * ldo + i] = fma_ftz(bf((uint16_t)w), bf(r0[i]), x);
                }
            }
}
#endif

/* ---- dispatch ------------------------------------------------------------------------------ */

enum { BF_PORTABLE, BF_AVX2, BF_NATIVE };

/* Which version runs: vdpbf16ps, the AVX2 emulation (also for AVX-512 without BF16), or C. */
static int bf_level(void) {
#ifdef WHALE_X86
    if (isa_has_avx512_bf16()) return BF_NATIVE;
    if (isa_level_get() >= ISA_AVX2) return BF_AVX2;
#endif
    return BF_PORTABLE;
}

void op_mqa_scores_bf16(float *s, int64_t lds, const uint16_t *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                        int64_t ldk, int64_t n_pos, int64_t d) {
    switch (bf_level()) {
#ifdef WHALE_X86
    case BF_NATIVE: scores_b(s, lds, q, ldq, n_head, k, ldk, n_pos, d); return;
    case BF_AVX2: scores_y(s, lds, q, ldq, n_head, k, ldk, n_pos, d); return;
#endif
    default: scores_portable(s, lds, q, ldq, n_head, k, ldk, n_pos, d);
    }
}

void op_mqa_accum_bf16(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp, int64_t n_head, const uint16_t *v,
                       int64_t ldv, int64_t n_pos, int64_t d) {
    switch (bf_level()) {
#ifdef WHALE_X86
    case BF_NATIVE: accum_b(o, ldo, pp, ldp, n_head, v, ldv, n_pos, d); return;
    case BF_AVX2: accum_y(o, ldo, pp, ldp, n_head, v, ldv, n_pos, d); return;
#endif
    default: accum_portable(o, ldo, pp, ldp, n_head, v, ldv, n_pos, d);
    }
}

void op_mqa_attend_bf16(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                        const uint16_t *k, int64_t ldk, int64_t dk, const uint16_t *v, int64_t ldv, int64_t dv,
                        int64_t n_pos, float *scratch) {
    uint16_t *qb = (uint16_t *)(scratch + n_head * OP_MQA_BLOCK);
    int64_t ldqb = (dk + 1) & ~(int64_t)1;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < dk; i++) qb[h * ldqb + i] = op_bf16_round(q[h * ldq + i]);
    for (int64_t b = 0; b < n_pos; b += OP_MQA_BLOCK) {
        int64_t nb = n_pos - b < OP_MQA_BLOCK ? n_pos - b : OP_MQA_BLOCK;
        op_mqa_scores_bf16(scratch, OP_MQA_BLOCK, qb, ldqb, n_head, k + b * ldk, ldk, nb, dk);
        for (int64_t h = 0; h < n_head; h++) {
            float *s = scratch + h * OP_MQA_BLOCK, mnew = mx[h], sum = 0;
            uint32_t *pp = (uint32_t *)s; /* the weights' pairs, written over the scores read */
            for (int64_t t = 0; t < nb; t++) mnew = s[t] > mnew ? s[t] : mnew;
            if (mnew > mx[h] && l[h] > 0) { /* rescale what was summed under the old max */
                float corr = lanes_exp(mx[h] - mnew);
                for (int64_t i = 0; i < dv; i++) o[h * ldo + i] *= corr;
                l[h] *= corr;
            }
            for (int64_t t = 0; t < nb; t += 2) {
                uint16_t w0 = op_bf16_round(lanes_exp(s[t] - mnew));
                uint16_t w1 = t + 1 < nb ? op_bf16_round(lanes_exp(s[t + 1] - mnew)) : 0;
                sum += bf(w0), sum += bf(w1); /* the weights as rounded: o / l stays an average */
                pp[t / 2] = (uint32_t)w0 | (uint32_t)w1 << 16;
            }
            l[h] += sum;
            mx[h] = mnew;
        }
        op_mqa_accum_bf16(o, ldo, (const uint32_t *)scratch, OP_MQA_BLOCK, n_head, v + b * ldv, ldv, nb, dv);
    }
}
