/* attn.c — multi-query attention kernels (kernels/attn.h): scores of many heads against shared
 * key rows, and the probability-weighted sum of shared value rows, in three versions: AVX-512,
 * AVX2 (with FMA and F16C) and portable loops; the level in force picks one at each call
 * (kernels/isa.h: WHALE_ISA=scalar|avx2|avx512, WHALE_NO_SIMD=1 or isa_force() lower it).
 *
 * Scores: tiles of 4 heads x 4 positions on AVX-512 (16 fused multiply-adds per 8 loads), 2 x 2
 * on AVX2 (its 16 registers). Accumulation: tiles of 4 heads x 64 output columns (AVX-512) or
 * 4 x 16 (AVX2) held in registers while the positions stream by. Key and value rows may be F32
 * or half floats (a KV cache in F16), widened as they are loaded; one source serves both,
 * specialized per type at compile time.
 *
 * All three compute the same float operations (16 lanes of fused multiply-adds summed in one
 * fixed tree, AVX2 holding the 16 lanes in two halves; each output column's multiply-adds in
 * position order), so they give the same bits and a model's output does not depend on the CPU
 * (tests/unit/test_ops.c compares them with memcmp). */
#include <math.h>
#include <string.h>

#include "formats/dtype.h"
#include "kernels/attn.h"
#include "kernels/isa.h"
#include "kernels/cpu/lanes.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WHALE_X86 1
#include <immintrin.h>
#endif

/* Element i of a key or value row: F32, or F16 (kv caches stored in half precision). */
static inline float elem(const void *row, int f16, int64_t i) {
    return f16 ? fp16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

/* dot(a, row) over d elements as 16 lanes of fused multiply-adds (lane l: elements l, l+16, ...;
 * a partial last chunk adds 0 * 0 in its empty lanes, as the masked loads do). */
static float dot16(const float *a, const void *row, int f16, int64_t d) {
    float c[16] = {0};
    for (int64_t i = 0; i < d; i += 16)
        for (int l = 0; l < 16; l++) {
            int in = i + l < d;
            c[l] = fmaf(in ? a[i + l] : 0.0f, in ? elem(row, f16, i + l) : 0.0f, c[l]);
        }
    return lanes16_sum(c);
}

/* Rows are `ld` elements apart; the element size follows f16. */
static inline const void *row_at(const void *base, int f16, int64_t ld, int64_t t) {
    return (const char *)base + (size_t)(t * ld) * (f16 ? 2 : 4);
}

static void scores_portable(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const void *k, int f16,
                            int64_t ldk, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t t = 0; t < n_pos; t++) s[h * lds + t] = dot16(q + h * ldq, row_at(k, f16, ldk, t), f16, d);
}

static void accum_portable(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const void *v, int f16,
                           int64_t ldv, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++) {
        float *out = o + h * ldo;
        for (int64_t t = 0; t < n_pos; t++) {
            float w = p[h * ldp + t];
            const void *row = row_at(v, f16, ldv, t);
            for (int64_t i = 0; i < d; i++) out[i] = fmaf(w, elem(row, f16, i), out[i]);
        }
    }
}

#ifdef WHALE_X86
#define AT_TARGET "avx512f,avx512bw,avx512vl,avx512dq"
#define AT_INLINE __attribute__((target(AT_TARGET))) static inline __attribute__((always_inline))

/* 16 elements of a row from element i (masked): F32, or F16 widened with vcvtph2ps. */
AT_INLINE __m512 ld16(const void *row, int f16, int64_t i, __mmask16 m) {
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
    return _mm512_maskz_loadu_ps(m, (const float *)row + i);
}

/* One (heads x positions) tile of scores, HN heads by TN positions (at most 4 x 4): 16 products
 * per 8 loads in the full tile; each product's lanes and order as dot16. */
AT_INLINE void score_tile(float *s, int64_t lds, const float *q, int64_t ldq, const void *k, int f16, int64_t ldk,
                          int64_t d, int HN, int TN) {
    int64_t full = d & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u), all = (__mmask16)0xFFFF;
    __m512 c[4][4];
    const void *kk[4];
#pragma GCC unroll 4
    for (int b = 0; b < TN; b++) kk[b] = row_at(k, f16, ldk, b);
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) c[a][b] = _mm512_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
        __m512 kv[4];
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) kv[b] = ld16(kk[b], f16, i, all);
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            __m512 x = _mm512_loadu_ps(q + a * ldq + i);
#pragma GCC unroll 4
            for (int b = 0; b < TN; b++) c[a][b] = _mm512_fmadd_ps(x, kv[b], c[a][b]);
        }
    }
    if (tail)
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            __m512 x = _mm512_maskz_loadu_ps(tail, q + a * ldq + full);
#pragma GCC unroll 4
            for (int b = 0; b < TN; b++) c[a][b] = _mm512_fmadd_ps(x, ld16(kk[b], f16, full, tail), c[a][b]);
        }
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int b = 0; b < TN; b++) s[a * lds + b] = hsum16(c[a][b]);
}

AT_INLINE void scores_avx512(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const void *k, int f16,
                             int64_t ldk, int64_t n_pos, int64_t d) {
    int64_t t = 0;
    for (; t + 4 <= n_pos; t += 4) {
        const void *kt = row_at(k, f16, ldk, t);
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) score_tile(s + h * lds + t, lds, q + h * ldq, ldq, kt, f16, ldk, d, 4, 4);
        for (; h < n_head; h++) score_tile(s + h * lds + t, lds, q + h * ldq, ldq, kt, f16, ldk, d, 1, 4);
    }
    for (; t < n_pos; t++)
        for (int64_t h = 0; h < n_head; h++)
            score_tile(s + h * lds + t, lds, q + h * ldq, ldq, row_at(k, f16, ldk, t), f16, ldk, d, 1, 1);
}

/* HN heads x 16*CN output columns from column i: the positions stream by once for all of them. */
AT_INLINE void accum_tile(float *o, int64_t ldo, const float *p, int64_t ldp, const void *v, int f16, int64_t ldv,
                          int64_t n_pos, int64_t i, __mmask16 m, int HN, int CN) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) acc[a][c] = _mm512_maskz_loadu_ps(m, o + a * ldo + i + 16 * c);
    for (int64_t t = 0; t < n_pos; t++) {
        const void *row = row_at(v, f16, ldv, t);
        __m512 r[4];
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) r[c] = ld16(row, f16, i + 16 * c, m);
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            __m512 w = _mm512_set1_ps(p[a * ldp + t]);
#pragma GCC unroll 4
            for (int c = 0; c < CN; c++) acc[a][c] = _mm512_fmadd_ps(w, r[c], acc[a][c]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) _mm512_mask_storeu_ps(o + a * ldo + i + 16 * c, m, acc[a][c]);
}

AT_INLINE void accum_avx512(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const void *v, int f16,
                            int64_t ldv, int64_t n_pos, int64_t d) {
    __mmask16 all = (__mmask16)0xFFFF;
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) { /* 4 heads x 64 columns: 16 products per 8 loads */
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) accum_tile(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, all, 4, 4);
        for (; h < n_head; h++) accum_tile(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, all, 1, 4);
    }
    for (; i < d; i += 16) {
        __mmask16 m = mask16(d - i);
        for (int64_t h = 0; h < n_head; h++) accum_tile(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, m, 1, 1);
    }
}

/* The entry points, one per storage type, so each is compiled with its loads fixed. */
__attribute__((target(AT_TARGET))) static void scores_x(float *s, int64_t lds, const float *q, int64_t ldq,
                                                        int64_t n_head, const void *k, int f16, int64_t ldk,
                                                        int64_t n_pos, int64_t d) {
    if (f16) scores_avx512(s, lds, q, ldq, n_head, k, 1, ldk, n_pos, d);
    else scores_avx512(s, lds, q, ldq, n_head, k, 0, ldk, n_pos, d);
}

__attribute__((target(AT_TARGET))) static void accum_x(float *o, int64_t ldo, const float *p, int64_t ldp,
                                                       int64_t n_head, const void *v, int f16, int64_t ldv,
                                                       int64_t n_pos, int64_t d) {
    if (f16) accum_avx512(o, ldo, p, ldp, n_head, v, 1, ldv, n_pos, d);
    else accum_avx512(o, ldo, p, ldp, n_head, v, 0, ldv, n_pos, d);
}


/* ---- AVX2 (with FMA and F16C): the same lanes as two 256-bit halves (lanes 0-7, 8-15) ------ */

#define AY_TARGET "avx2,fma,f16c"
#define AY_INLINE __attribute__((target(AY_TARGET))) static inline __attribute__((always_inline))

/* 8 elements of a row from element i: F32, or F16 widened with vcvtph2ps. */
AY_INLINE __m256 ld8(const void *row, int f16, int64_t i) {
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    return _mm256_loadu_ps((const float *)row + i);
}

/* One tile of HN heads x TN positions (at most 2 x 2: 8 sums of two halves fill the 16
 * registers with the loads). A partial last chunk is copied into zero-padded buffers: its empty
 * lanes add 0 * 0, as the masked loads of the AVX-512 version do. */
AY_INLINE void score_tile_y(float *s, int64_t lds, const float *q, int64_t ldq, const void *k, int f16, int64_t ldk,
                            int64_t d, int HN, int TN) {
    int64_t full = d & ~(int64_t)15;
    __m256 c[2][2][2];
    const void *kk[2];
    for (int b = 0; b < TN; b++) kk[b] = row_at(k, f16, ldk, b);
    for (int a = 0; a < HN; a++)
        for (int b = 0; b < TN; b++) c[a][b][0] = c[a][b][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < full; i += 16) {
        __m256 kv[2][2];
        for (int b = 0; b < TN; b++) kv[b][0] = ld8(kk[b], f16, i), kv[b][1] = ld8(kk[b], f16, i + 8);
        for (int a = 0; a < HN; a++) {
            __m256 x0 = _mm256_loadu_ps(q + a * ldq + i), x1 = _mm256_loadu_ps(q + a * ldq + i + 8);
            for (int b = 0; b < TN; b++) {
                c[a][b][0] = _mm256_fmadd_ps(x0, kv[b][0], c[a][b][0]);
                c[a][b][1] = _mm256_fmadd_ps(x1, kv[b][1], c[a][b][1]);
            }
        }
    }
    if (full < d) {
        float qt[2][16] = {{0}}, kt[2][16] = {{0}};
        for (int a = 0; a < HN; a++) memcpy(qt[a], q + a * ldq + full, sizeof(float) * (size_t)(d - full));
        for (int b = 0; b < TN; b++)
            for (int64_t j = 0; j < d - full; j++) kt[b][j] = elem(kk[b], f16, full + j);
        for (int a = 0; a < HN; a++)
            for (int b = 0; b < TN; b++) {
                c[a][b][0] = _mm256_fmadd_ps(_mm256_loadu_ps(qt[a]), _mm256_loadu_ps(kt[b]), c[a][b][0]);
                c[a][b][1] = _mm256_fmadd_ps(_mm256_loadu_ps(qt[a] + 8), _mm256_loadu_ps(kt[b] + 8), c[a][b][1]);
            }
    }
    for (int a = 0; a < HN; a++)
        for (int b = 0; b < TN; b++) s[a * lds + b] = hsum16_y(c[a][b][0], c[a][b][1]);
}

AY_INLINE void scores_avx2(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const void *k, int f16,
                           int64_t ldk, int64_t n_pos, int64_t d) {
    int64_t t = 0;
    for (; t + 2 <= n_pos; t += 2) {
        const void *kt = row_at(k, f16, ldk, t);
        int64_t h = 0;
        for (; h + 2 <= n_head; h += 2) score_tile_y(s + h * lds + t, lds, q + h * ldq, ldq, kt, f16, ldk, d, 2, 2);
        for (; h < n_head; h++) score_tile_y(s + h * lds + t, lds, q + h * ldq, ldq, kt, f16, ldk, d, 1, 2);
    }
    for (; t < n_pos; t++)
        for (int64_t h = 0; h < n_head; h++)
            score_tile_y(s + h * lds + t, lds, q + h * ldq, ldq, row_at(k, f16, ldk, t), f16, ldk, d, 1, 1);
}

/* HN heads (at most 4) x 8*CN output columns (CN at most 2) from column i. */
AY_INLINE void accum_tile_y(float *o, int64_t ldo, const float *p, int64_t ldp, const void *v, int f16, int64_t ldv,
                            int64_t n_pos, int64_t i, int HN, int CN) {
    __m256 acc[4][2];
    for (int a = 0; a < HN; a++)
        for (int c = 0; c < CN; c++) acc[a][c] = _mm256_loadu_ps(o + a * ldo + i + 8 * c);
    for (int64_t t = 0; t < n_pos; t++) {
        const void *row = row_at(v, f16, ldv, t);
        __m256 r[2];
        for (int c = 0; c < CN; c++) r[c] = ld8(row, f16, i + 8 * c);
        for (int a = 0; a < HN; a++) {
            __m256 w = _mm256_set1_ps(p[a * ldp + t]);
            for (int c = 0; c < CN; c++) acc[a][c] = _mm256_fmadd_ps(w, r[c], acc[a][c]);
        }
    }
    for (int a = 0; a < HN; a++)
        for (int c = 0; c < CN; c++) _mm256_storeu_ps(o + a * ldo + i + 8 * c, acc[a][c]);
}

AY_INLINE void accum_avx2(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const void *v, int f16,
                          int64_t ldv, int64_t n_pos, int64_t d) {
    int64_t i = 0;
    for (; i + 16 <= d; i += 16) { /* 4 heads x 16 columns: 8 sums, 2 loads and a broadcast */
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) accum_tile_y(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, 4, 2);
        for (; h < n_head; h++) accum_tile_y(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, 1, 2);
    }
    for (; i + 8 <= d; i += 8)
        for (int64_t h = 0; h < n_head; h++) accum_tile_y(o + h * ldo, ldo, p + h * ldp, ldp, v, f16, ldv, n_pos, i, 1, 1);
    for (int64_t h = 0; i < d && h < n_head; h++) /* the last 1..7 columns: each its own chain, as portable */
        for (int64_t t = 0; t < n_pos; t++) {
            float w = p[h * ldp + t];
            const void *row = row_at(v, f16, ldv, t);
            for (int64_t j = i; j < d; j++) o[h * ldo + j] = fmaf(w, elem(row, f16, j), o[h * ldo + j]);
        }
}

__attribute__((target(AY_TARGET))) static void scores_y(float *s, int64_t lds, const float *q, int64_t ldq,
                                                        int64_t n_head, const void *k, int f16, int64_t ldk,
                                                        int64_t n_pos, int64_t d) {
    if (f16) scores_avx2(s, lds, q, ldq, n_head, k, 1, ldk, n_pos, d);
    else scores_avx2(s, lds, q, ldq, n_head, k, 0, ldk, n_pos, d);
}

__attribute__((target(AY_TARGET))) static void accum_y(float *o, int64_t ldo, const float *p, int64_t ldp,
                                                       int64_t n_head, const void *v, int f16, int64_t ldv,
                                                       int64_t n_pos, int64_t d) {
    if (f16) accum_avx2(o, ldo, p, ldp, n_head, v, 1, ldv, n_pos, d);
    else accum_avx2(o, ldo, p, ldp, n_head, v, 0, ldv, n_pos, d);
}

/* weights_portable, 16 positions at a time. */
__attribute__((target(AT_TARGET))) static float weights_x(float *s, int64_t nb, float m) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t t = 0; t < nb; t += 16) {
        __mmask16 k = mask16(nb - t);
        __m512 p = _mm512_maskz_mov_ps(k, lanes_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + t), _mm512_set1_ps(m))));
        _mm512_mask_storeu_ps(s + t, k, p);
        acc = _mm512_add_ps(acc, p);
    }
    return hsum16(acc);
}

/* weights_portable in two halves of 8 lanes; a partial last 16 through a buffer padded with
 * -inf (weight 0). */
__attribute__((target(AY_TARGET))) static float weights_y(float *s, int64_t nb, float m) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t t = 0; t < nb; t += 16) {
        float buf[16], *x = s + t;
        int64_t n = nb - t < 16 ? nb - t : 16;
        if (n < 16) {
            for (int i = 0; i < 16; i++) buf[i] = i < n ? x[i] : -INFINITY;
            x = buf;
        }
        __m256 p0 = lanes_exp8(_mm256_sub_ps(_mm256_loadu_ps(x), _mm256_set1_ps(m)));
        __m256 p1 = lanes_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + 8), _mm256_set1_ps(m)));
        _mm256_storeu_ps(x, p0), _mm256_storeu_ps(x + 8, p1);
        if (n < 16) memcpy(s + t, buf, (size_t)n * sizeof *s);
        lo = _mm256_add_ps(lo, p0), hi = _mm256_add_ps(hi, p1);
    }
    return hsum16_y(lo, hi);
}
#endif

static void scores_any(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const void *k, int f16,
                       int64_t ldk, int64_t n_pos, int64_t d) {
#ifdef WHALE_X86
    isa_level level = isa_level_get();
    if (level == ISA_AVX512) {
        scores_x(s, lds, q, ldq, n_head, k, f16, ldk, n_pos, d);
        return;
    }
    if (level == ISA_AVX2) {
        scores_y(s, lds, q, ldq, n_head, k, f16, ldk, n_pos, d);
        return;
    }
#endif
    scores_portable(s, lds, q, ldq, n_head, k, f16, ldk, n_pos, d);
}

static void accum_any(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const void *v, int f16,
                      int64_t ldv, int64_t n_pos, int64_t d) {
#ifdef WHALE_X86
    isa_level level = isa_level_get();
    if (level == ISA_AVX512) {
        accum_x(o, ldo, p, ldp, n_head, v, f16, ldv, n_pos, d);
        return;
    }
    if (level == ISA_AVX2) {
        accum_y(o, ldo, p, ldp, n_head, v, f16, ldv, n_pos, d);
        return;
    }
#endif
    accum_portable(o, ldo, p, ldp, n_head, v, f16, ldv, n_pos, d);
}

void op_mqa_scores(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const float *k, int64_t ldk,
                   int64_t n_pos, int64_t d) {
    scores_any(s, lds, q, ldq, n_head, k, 0, ldk, n_pos, d);
}

void op_mqa_scores_f16(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                       int64_t ldk, int64_t n_pos, int64_t d) {
    scores_any(s, lds, q, ldq, n_head, k, 1, ldk, n_pos, d);
}

void op_mqa_accum(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const float *v, int64_t ldv,
                  int64_t n_pos, int64_t d) {
    accum_any(o, ldo, p, ldp, n_head, v, 0, ldv, n_pos, d);
}

void op_mqa_accum_f16(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const uint16_t *v,
                      int64_t ldv, int64_t n_pos, int64_t d) {
    accum_any(o, ldo, p, ldp, n_head, v, 1, ldv, n_pos, d);
}

/* s[t] = e^(s[t] - m) for t < nb (lanes_exp); returns their sum, position t in lane t % 16
 * (lanes.h's order), the same at every level. */
static float weights_portable(float *s, int64_t nb, float m) {
    float c[16] = {0};
    for (int64_t t = 0; t < nb; t++) c[t % 16] += s[t] = lanes_exp(s[t] - m);
    return lanes16_sum(c);
}

static float weights_any(float *s, int64_t nb, float m) {
#ifdef WHALE_X86
    isa_level level = isa_level_get();
    if (level == ISA_AVX512) return weights_x(s, nb, m);
    if (level == ISA_AVX2) return weights_y(s, nb, m);
#endif
    return weights_portable(s, nb, m);
}

void op_mqa_attend_t(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                     const void *k, int64_t ldk, int64_t dk, const void *v, int64_t ldv, int64_t dv, int64_t n_pos,
                     int type, float *scratch) {
    if (type == OP_KV_BF16) {
        op_mqa_attend_bf16(o, ldo, mx, l, q, ldq, n_head, k, ldk, dk, v, ldv, dv, n_pos, scratch);
        return;
    }
    int f16 = type == OP_KV_F16;
    for (int64_t b = 0; b < n_pos; b += OP_MQA_BLOCK) {
        int64_t nb = n_pos - b < OP_MQA_BLOCK ? n_pos - b : OP_MQA_BLOCK;
        scores_any(scratch, OP_MQA_BLOCK, q, ldq, n_head, row_at(k, f16, ldk, b), f16, ldk, nb, dk);
        for (int64_t h = 0; h < n_head; h++) {
            float *s = scratch + h * OP_MQA_BLOCK, mnew = mx[h];
            for (int64_t t = 0; t < nb; t++) mnew = s[t] > mnew ? s[t] : mnew;
            if (mnew > mx[h] && l[h] > 0) { /* rescale what was summed under the old max */
                float corr = lanes_exp(mx[h] - mnew);
                for (int64_t i = 0; i < dv; i++) o[h * ldo + i] *= corr;
                l[h] *= corr;
            }
            l[h] += weights_any(s, nb, mnew);
            mx[h] = mnew;
        }
        accum_any(o, ldo, scratch, OP_MQA_BLOCK, n_head, row_at(v, f16, ldv, b), f16, ldv, nb, dv);
    }
}

void op_mqa_attend(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                   const float *k, int64_t ldk, int64_t dk, const float *v, int64_t ldv, int64_t dv, int64_t n_pos,
                   float *scratch) {
    op_mqa_attend_t(o, ldo, mx, l, q, ldq, n_head, k, ldk, dk, v, ldv, dv, n_pos, OP_KV_F32, scratch);
}
