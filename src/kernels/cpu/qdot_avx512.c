/* qdot_avx512.c — the integer matrix kernels of kernels/qdot.h on full 512-bit AVX-512 VNNI
 * vectors. Decode (one token): the rows one after the other against a panel holding the
 * token's side of every chunk. Several tokens (verification rows, decoding sequences, prefill):
 * two rows at a time against groups of up to 8 tokens laid out once per call, each weight chunk
 * (64 elements) unpacked once per group. Rows longer than the panels (20480 elements): tiles of
 * 4 rows x 4 tokens.
 *
 * Arithmetic, per (row, token) and 64-element chunk (two activation blocks of 32):
 *   weights as unsigned bytes u = q + off (Q8_0: q + 128; Q4_0: the nibble, off 8; Q5_0: off
 *   16; Q6_K: off 32; Q4_K/Q5_K: the raw 4/5-bit q with no offset: their per-group minimum is
 *   applied once per super-block from the activation sums);
 *   p (16 int32 lanes) = dpbusd(-off * sum(a), u, a), lane k summing elements 4k..4k+3, so it
 *   holds exactly the sum of q * a (no saturation: |p| < 2^24);
 *   sum[chunk parity] += float(p) * (weight scale * activation scale), one fused multiply-add;
 *   the result is the fixed tree of qx_hsum over sum[even] + sum[odd].
 * (The groups of several tokens give dpbusd the activations as unsigned bytes, a + 128, and the
 * weights signed, u - off, with -128 * (sum of each 4 weights) as its start: the same integer.)
 * Two sums (even and odd chunks) give a lone row two independent chains. The tile shape
 * changes nothing in that sequence, and the portable (cpu/qdot.c) and AVX2 (cpu/qdot_avx2.c)
 * versions perform it lane for lane: same bits at every level and batch size
 * (tests/unit/test_ops.c, tests/py/test_batch_invariance.py).
 *
 * Compiled with target attributes: the caller (qdot.c) runs these only on a CPU with
 * AVX-512 F/BW/VL/DQ and VNNI. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qdot.h"

#define QX_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi2"
#define QX __attribute__((target(QX_TARGET))) static inline __attribute__((always_inline))
#define QX_FN __attribute__((target(QX_TARGET))) static

/* Activation sums are needed per 32-block by the K-quants with minimums; a token group keeps
 * them on the stack, which bounds the row length this file handles: 65536 elements (wider than
 * any model's FFN; longer rows take the portable path, same bits). 4 x 2048 floats = 32 KiB. */
#define QX_MAX_BLOCKS 2048

/* Decode streams one row after the other; a software prefetch this far ahead of the row being
 * read gained 15-25% from memory on the development machine (4-8 KiB were alike). */
#define QX_PREFETCH 8192

enum { TY_Q8_0, TY_Q4_0, TY_Q5_0, TY_Q4_K, TY_Q5_K, TY_Q6_K };

/* The type's offset: its weights as unsigned bytes are q + off (0 where they are already). */
static inline int qx_off(int ty) {
    return ty == TY_Q8_0 ? 128 : ty == TY_Q4_0 ? 8 : ty == TY_Q5_0 ? 16 : ty == TY_Q6_K ? 32 : 0;
}

/* Bytes per block: of 32 weights for Q8_0, Q4_0, Q5_0; of a 256-weight super-block for K-quants. */
static inline size_t qx_block_bytes(int ty) {
    return ty == TY_Q8_0 ? 34 : ty == TY_Q4_0 ? 18 : ty == TY_Q5_0 ? 22 : ty == TY_Q4_K ? 144 : ty == TY_Q5_K ? 176 : 210;
}

QX float qx_f16(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }

QX float qx_hsum(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* [v0 x 8 | v1 x 8] from lanes 0 and 1 of v. */
QX __m512 qx_pair(__m128 v) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(v));
}

/* Two f16 scales, bb bytes apart, as [d0 x 8 | d1 x 8]. */
QX __m512 qx_scale_pair(const uint8_t *p, size_t bb) {
    __m128i h = _mm_unpacklo_epi16(_mm_loadu_si16(p), _mm_loadu_si16(p + bb));
    return qx_pair(_mm_cvtph_ps(h));
}

/* Activation blocks 2c and 2c+1 of a token: 64 int8, their scales [d x 8 | d x 8], and the
 * offset correction -off * (sum of each 4 a) per lane. `half`: only block 2c (odd block count). */
QX void qx_act(const qact_block *x, int half, int off, __m512i *a, __m512 *ts, __m512i *init) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)x[0].q);
    if (half) {
        *a = _mm512_zextsi256_si512(lo);
        *ts = _mm512_zextps256_ps512(_mm256_set1_ps(x[0].d));
    } else {
        *a = _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)x[1].q), 1);
        *ts = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(x[0].d)), _mm256_set1_ps(x[1].d), 1);
    }
    if (off) *init = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), *a));
    else *init = _mm512_setzero_si512();
}

/* ---- weights: one 64-element chunk as unsigned bytes, and its per-lane scales ------------- */

/* Q4_0 / Q5_0 nibbles of blocks at p and p + bb (qs at offset qo): [lo0 hi0 lo1 hi1] per 16 bytes. */
QX __m512i qx_nibbles2(const uint8_t *p, size_t bb, size_t qo) {
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + qo)))),
                                   _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + bb + qo))), 1);
    const __m512i sh = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0, 0x0004000400040004,
                                        0x0004000400040004, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi16(v, sh), _mm512_set1_epi8(0x0f));
}

/* Blocks 2c, 2c+1 of a 32-element type starting at row byte p (half: block 2c only). */
QX void qx_w32(int ty, const uint8_t *p, int half, __m512i *u, __m512 *rs) {
    switch (ty) {
    case TY_Q8_0: {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(p + 2));
        __m512i v = half ? _mm512_zextsi256_si512(lo)
                         : _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
        *u = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        *rs = qx_scale_pair(p, half ? 0 : 34);
        break;
    }
    case TY_Q4_0:
        *u = qx_nibbles2(p, half ? 0 : 18, 2);
        *rs = qx_scale_pair(p, half ? 0 : 18);
        break;
    case TY_Q5_0: {
        uint32_t h0, h1 = 0;
        memcpy(&h0, p + 2, 4);
        if (!half) memcpy(&h1, p + 24, 4);
        __m512i v = qx_nibbles2(p, half ? 0 : 22, 6);
        *u = _mm512_mask_add_epi8(v, _cvtu64_mask64((uint64_t)h0 | (uint64_t)h1 << 32), v, _mm512_set1_epi8(0x10));
        *rs = qx_scale_pair(p, half ? 0 : 22);
        break;
    }
    default: break;
    }
}

/* Q4_K / Q5_K super-block scales: [d*sc_0..7 | dmin*m_0..7] (16 floats). */
QX __m512 qx_k45_scales(const uint8_t *b) {
    __m128i s = _mm_loadu_si128((const __m128i *)(b + 4)); /* 12 scale bytes (+4 beyond, unused) */
    /* bytes: sc0-3 = s[0..3] & 63; sc4-7 = s[8..11] & 15 | (s[0..3] >> 6) << 4;
     *        m0-3  = s[4..7] & 63; m4-7  = s[8..11] >> 4 | (s[4..7] >> 6) << 4 */
    __m128i a = _mm_shuffle_epi8(s, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    __m128i hi = _mm_shuffle_epi8(s, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    __m128i lowpart = _mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
    __m128i nib = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
    __m128i top = _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x30));
    __m128i v = _mm_or_si128(_mm_or_si128(lowpart, nib), top);
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
    return _mm512_mul_ps(f, qx_pair(_mm_cvtph_ps(_mm_loadu_si32(b)))); /* d, dmin: the first 4 bytes */
}

/* Chunk c (0..3) of a K-quant super-block at b: unsigned bytes and per-lane row scales. */
QX void qx_wk(int ty, const uint8_t *b, int c, __m512 sc, __m512i *u, __m512 *rs) {
    switch (ty) {
    case TY_Q4_K:
    case TY_Q5_K: {
        const uint8_t *qs = b + (ty == TY_Q5_K ? 48 : 16) + 32 * c;
        __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
        const __m512i sh = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0x0004000400040004,
                                            0x0004000400040004, 0, 0, 0, 0);
        v = _mm512_and_si512(_mm512_srlv_epi16(v, sh), _mm512_set1_epi8(0x0f));
        if (ty == TY_Q5_K) {
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16)));
            __m512i bit = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)(1 << (2 * c)))),
                                             _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
            v = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(qh, bit), v, _mm512_set1_epi8(0x10));
        }
        *u = v;
        __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * c)), _mm256_set1_epi32(2 * c + 1), 1);
        *rs = _mm512_permutexvar_ps(idx, sc);
        break;
    }
    case TY_Q6_K: {
        int h = c / 2, s0 = 2 * (c % 2);
        __m512i ql = _mm512_loadu_si512((const void *)(b + 64 * h));
        __m512i lo = _mm512_and_si512(c % 2 ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0f));
        __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)));
        __m512i sh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * s0))),
                                        _mm256_set1_epi16((short)(2 * s0 + 2)), 1);
        __m512i hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh), _mm512_set1_epi8(3)), 4);
        *u = _mm512_or_si512(lo, hi);
        const __m512i idx = _mm512_set_epi32(4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 3, 4 * c + 2, 4 * c + 2, 4 * c + 2,
                                             4 * c + 2, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c + 1, 4 * c, 4 * c, 4 * c, 4 * c);
        *rs = _mm512_permutexvar_ps(idx, sc);
        break;
    }
    default: break;
    }
}

/* Q6_K super-block scales: d * sc_k for the 16 groups of 16. */
QX __m512 qx_q6k_scales(const uint8_t *b) {
    __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192))));
    return _mm512_mul_ps(f, _mm512_set1_ps(qx_f16(b + 208)));
}

/* ---- the tile ------------------------------------------------------------------------------ */

/* Each (row, token) keeps two sums, for even and odd chunks, so that one row alone (decode)
 * has two independent chains of multiply-adds instead of one 4-cycle chain per chunk; the
 * result is hsum(even + odd) in every path. */

/* acc[r][t] += chunk (blocks i, i+1; half: block i only) of R rows x T tokens, 32-element types. */
QX void qx_step32(int ty, int R, int T, const uint8_t *w, size_t rb, const qact_block *const *xs, int64_t i, int half,
                  int off, __m512 acc[4][4]) {
    size_t bb = qx_block_bytes(ty);
    __m512i u[4];
    __m512 rs[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) qx_w32(ty, w + (size_t)r * rb + (size_t)i * bb, half, &u[r], &rs[r]);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m512i a, init;
        __m512 ts;
        qx_act(xs[t] + i, half, off, &a, &ts, &init);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, u[r], a));
            acc[r][t] = _mm512_fmadd_ps(p, _mm512_mul_ps(rs[r], ts), acc[r][t]);
        }
    }
}

/* The same for chunk c (0..3) of super-block s, K-quants (sc: each row's super-block scales). */
QX void qx_stepk(int ty, int R, int T, const uint8_t *w, size_t rb, const qact_block *const *xs, int64_t s, int c,
                 const __m512 *sc, int off, __m512 acc[4][4]) {
    size_t bb = qx_block_bytes(ty);
    __m512i u[4];
    __m512 rs[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) qx_wk(ty, w + (size_t)r * rb + (size_t)s * bb, c, sc[r], &u[r], &rs[r]);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        __m512i a, init;
        __m512 ts;
        qx_act(xs[t] + 8 * s + 2 * c, 0, off, &a, &ts, &init);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, u[r], a));
            acc[r][t] = _mm512_fmadd_ps(p, _mm512_mul_ps(rs[r], ts), acc[r][t]);
        }
    }
}

/* out[r * T + t] = dot(row r, token t) for R rows (rb bytes apart) and T tokens.
 * ds[t]: the token's per-block d * sum(q) (K-quants with minimums only). */
QX void qx_tile(int ty, int R, int T, const uint8_t *w, size_t rb, const qact_block *const *xs, const float *const *ds,
                int64_t n_in, float *out) {
    __m512 even[4][4], odd[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) even[r][t] = odd[r][t] = _mm512_setzero_ps();
    int off = qx_off(ty);
    if (ty <= TY_Q5_0) {
        int64_t nb = n_in / 32;
        for (int64_t i = 0; i < nb; i += 4) {
            qx_step32(ty, R, T, w, rb, xs, i, i + 1 == nb, off, even);
            if (i + 2 < nb) qx_step32(ty, R, T, w, rb, xs, i + 2, i + 3 == nb, off, odd);
        }
    } else {
        size_t bb = qx_block_bytes(ty);
        int64_t nsb = n_in / 256;
        for (int64_t s = 0; s < nsb; s++) {
            __m512 sc[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *b = w + (size_t)r * rb + (size_t)s * bb;
                sc[r] = ty == TY_Q6_K ? qx_q6k_scales(b) : qx_k45_scales(b);
            }
            qx_stepk(ty, R, T, w, rb, xs, s, 0, sc, off, even);
            qx_stepk(ty, R, T, w, rb, xs, s, 1, sc, off, odd);
            qx_stepk(ty, R, T, w, rb, xs, s, 2, sc, off, even);
            qx_stepk(ty, R, T, w, rb, xs, s, 3, sc, off, odd);
            if (ty != TY_Q6_K) { /* minus dmin * m_g * (d_x * sum of x) over the 8 groups */
                const __m512i hi8 = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 14, 13, 12, 11, 10, 9, 8);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    __m512 tsum = _mm512_zextps256_ps512(_mm256_loadu_ps(ds[t] + 8 * s));
#pragma GCC unroll 4
                    for (int r = 0; r < R; r++)
                        even[r][t] = _mm512_fnmadd_ps(_mm512_maskz_permutexvar_ps(0xff, hi8, sc[r]), tsum, even[r][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) out[r * T + t] = qx_hsum(_mm512_add_ps(even[r][t], odd[r][t]));
}

/* One function per (type, rows, tokens): the compiler keeps each tile's sums in registers. */
#define QX_TILE(name, ty, R, T)                                                                            \
    QX_FN void name(const uint8_t *w, size_t rb, const qact_block *const *xs, const float *const *ds,       \
                    int64_t n_in, float *out) {                                                             \
        qx_tile(ty, R, T, w, rb, xs, ds, n_in, out);                                                        \
    }
#define QX_TYPE(tn, ty)                                                                                    \
    QX_TILE(tn##_4x4, ty, 4, 4)                                                                            \
    QX_TILE(tn##_4x3, ty, 4, 3)                                                                            \
    QX_TILE(tn##_4x2, ty, 4, 2)                                                                            \
    QX_TILE(tn##_4x1, ty, 4, 1)                                                                            \
    QX_TILE(tn##_1x4, ty, 1, 4)                                                                            \
    QX_TILE(tn##_1x3, ty, 1, 3)                                                                            \
    QX_TILE(tn##_1x2, ty, 1, 2)                                                                            \
    QX_TILE(tn##_1x1, ty, 1, 1)                                                                            \
    static const qx_tile_fn tn##_tiles[2][4] = {{tn##_1x1, tn##_1x2, tn##_1x3, tn##_1x4},                  \
                                                {tn##_4x1, tn##_4x2, tn##_4x3, tn##_4x4}};

typedef void (*qx_tile_fn)(const uint8_t *w, size_t rb, const qact_block *const *xs, const float *const *ds,
                           int64_t n_in, float *out);

QX_TYPE(q8_0, TY_Q8_0)
QX_TYPE(q4_0, TY_Q4_0)
QX_TYPE(q5_0, TY_Q5_0)
QX_TYPE(q4_k, TY_Q4_K)
QX_TYPE(q5_k, TY_Q5_K)
QX_TYPE(q6_k, TY_Q6_K)

/* ---- decode: one token, one row after the other ---------------------------------------------
 * From memory, rows read one after the other (one sequential stream through the matrix, which
 * the hardware prefetchers follow best) ran twice as fast as four rows side by side, and as
 * rows interleaved segment by segment. With one row in flight the token's side of each chunk
 * (its 64 bytes, scales and offset sums) would be rebuilt for every row, so it is prepared once
 * into a panel on the stack and each row reads it from L1/L2. The per-(row, token) arithmetic
 * is the tile's, operation for operation. */

#define QX_PANEL 320 /* chunks: rows up to 20480 elements (DeepSeek-V3 and Qwen2-7B FFN widths); 60 KiB */

typedef struct qx_panel {
    __m512i a[QX_PANEL], init[QX_PANEL];
    __m512 ts[QX_PANEL];
    __m512 tsum[QX_PANEL / 4]; /* K-quants with minimums: per super-block, d * sum of each block */
    __m512 tda[QX_PANEL / 4];  /* K-quants: per super-block, the block scales lined up with the
                                  weight scales (Q4_K/Q5_K: d_g in lanes g < 8; Q6_K: d_(k/2) in lane k) */
} qx_panel;

/* The nch chunks of token x (nb blocks) into P. */
QX void qx_panel_build(int ty, const qact_block *x, int64_t nb, int64_t nch, qx_panel *P) {
    int off = qx_off(ty);
    for (int64_t k = 0; k < nch; k++) qx_act(x + 2 * k, 2 * k + 1 == nb, off, &P->a[k], &P->ts[k], &P->init[k]);
    if (ty >= TY_Q4_K)
        for (int64_t k = 0; k < nch / 4; k++) {
            float d8[8], d16[16];
            for (int g = 0; g < 8; g++) {
                const qact_block *b = x + 8 * k + g;
                d8[g] = b->d * (float)(b->s16[0] + b->s16[1]);
                d16[2 * g] = d16[2 * g + 1] = b->d;
            }
            P->tsum[k] = _mm512_zextps256_ps512(_mm256_loadu_ps(d8));
            P->tda[k] = ty == TY_Q6_K ? _mm512_loadu_ps(d16) : _mm512_permutexvar_ps(_mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0), _mm512_loadu_ps(d16));
        }
}

/* dot(row, token) with the token's side from P (w: the row's first byte). */
QX float qx_row(int ty, const uint8_t *w, const qx_panel *P, int64_t nch, int64_t nb) {
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    if (ty <= TY_Q5_0) {
        size_t bb = qx_block_bytes(ty);
        for (int64_t k = 0; k < nch; k += 2) {
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                if (j && k + 1 == nch) break;
                const uint8_t *p = w + (size_t)(2 * (k + j)) * bb;
                __m512i u;
                __m512 rs;
                _mm_prefetch((const char *)(p + QX_PREFETCH), _MM_HINT_T0);
                qx_w32(ty, p, 2 * (k + j) + 1 == nb, &u, &rs);
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(P->init[k + j], u, P->a[k + j])),
                                         _mm512_mul_ps(rs, P->ts[k + j]), acc[j]);
            }
        }
    } else {
        size_t bb = qx_block_bytes(ty);
        const __m512i hi8 = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 14, 13, 12, 11, 10, 9, 8);
        for (int64_t k = 0; k < nch / 4; k++) {
            const uint8_t *b = w + (size_t)k * bb;
            for (int l = 0; l < (int)bb; l += 64) _mm_prefetch((const char *)(b + QX_PREFETCH + l), _MM_HINT_T0);
            /* rs * ts of all four chunks at once: the same products, one multiply */
            __m512 sc = ty == TY_Q6_K ? qx_q6k_scales(b) : qx_k45_scales(b), st = _mm512_mul_ps(sc, P->tda[k]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i u;
                __m512 rs;
                qx_wk(ty, b, c, st, &u, &rs);
                __m512i init = ty == TY_Q6_K ? P->init[4 * k + c] : _mm512_setzero_si512();
                acc[c & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(init, u, P->a[4 * k + c])), rs, acc[c & 1]);
            }
            if (ty != TY_Q6_K) acc[0] = _mm512_fnmadd_ps(_mm512_maskz_permutexvar_ps(0xff, hi8, sc), P->tsum[k], acc[0]);
        }
    }
    return qx_hsum(_mm512_add_ps(acc[0], acc[1]));
}

QX void qx_decode(int ty, float *Y, const uint8_t *W, size_t rb, const qact_block *x, int64_t n_in, int64_t r0,
                  int64_t r1) {
    int64_t nb = n_in / 32, nch = (nb + 1) / 2;
    qx_panel P;
    qx_panel_build(ty, x, nb, nch, &P);
    for (int64_t r = r0; r < r1; r++) Y[r] = qx_row(ty, W + (size_t)r * rb, &P, nch, nb);
}

#define QX_DECODE(tn, ty)                                                                                  \
    QX_FN void tn##_decode(float *Y, const uint8_t *W, size_t rb, const qact_block *x, int64_t n_in,        \
                           int64_t r0, int64_t r1) {                                                        \
        qx_decode(ty, Y, W, rb, x, n_in, r0, r1);                                                           \
    }
QX_DECODE(q8_0, TY_Q8_0)
QX_DECODE(q4_0, TY_Q4_0)
QX_DECODE(q5_0, TY_Q5_0)
QX_DECODE(q4_k, TY_Q4_K)
QX_DECODE(q5_k, TY_Q5_K)
QX_DECODE(q6_k, TY_Q6_K)

/* ---- several tokens: verification rows, decoding sequences, prefill -------------------------
 * Past one token the products, not the reading, are the limit: per (row, token, chunk) one
 * dpbusd, a conversion, the product of the two scales and a fused multiply-add. So each chunk
 * of a row is unpacked once for every token of a group of up to QX_GROUP, and the tokens'
 * sides of the chunk (their 64 bytes and the scales as lanes) are laid out once per call, chunk
 * by chunk, in a per-thread buffer, where the tokens of one chunk lie side by side.
 *
 * The two sums of each (row, token) (even and odd chunks, as everywhere in this file) stay in
 * registers: 2 R T sums when that is at most 16, else two sweeps over the row, the even chunks
 * and then the odd ones, with R T sums each. Each sum receives the same operations
 * in the same order as in the tiles and in decode, so the bits are those of every other path.
 * The second sweep reads the row from L1. Against the 4x4 tiles, which this replaced for rows
 * that fit the panels (they spilled their 32 sums and rebuilt each token's side for every 4
 * rows), `whale bench` on the development machine: 0.5B default model pp8 115 -> 190, pp512
 * 185 -> 240; 1.5B Q4_K_M pp8 56 -> 65, pp512 63 -> 70 (bench/model-speed.md). */

#define QX_GROUP 8 /* tokens per group: 2 rows x 8 tokens = 16 sums in registers per sweep */

typedef struct qx_lanes {
    __m512i a;       /* the chunk's 64 activations + 128, as unsigned bytes (0 past a half chunk) */
    __m512 ts;       /* [d(2c) x 8 | d(2c+1) x 8] */
} qx_lanes;

/* A group of T tokens: lanes[k * T + t] (chunk k, token t), mins[s * T + t] (K-quants with
 * minimums: super-block s's d * sum of each block, in lanes 0..7). */
typedef struct qx_group {
    qx_lanes *lanes;
    __m512 *mins;
} qx_group;

static pthread_key_t qx_group_key;
static pthread_once_t qx_group_once = PTHREAD_ONCE_INIT;
static int qx_group_key_ok;

static void qx_group_key_make(void) { qx_group_key_ok = !pthread_key_create(&qx_group_key, free); }

#define QX_GROUP_BYTES ((size_t)QX_GROUP * QX_PANEL * sizeof(qx_lanes) + (size_t)QX_GROUP * (QX_PANEL / 4) * sizeof(__m512))

/* This thread's group buffer (360 KiB, made on first use), or NULL: the caller takes the tiles. */
static void *qx_group_buf(void) {
    pthread_once(&qx_group_once, qx_group_key_make);
    if (!qx_group_key_ok) return NULL;
    void *P = pthread_getspecific(qx_group_key);
    if (!P && (P = aligned_alloc(64, QX_GROUP_BYTES)) && pthread_setspecific(qx_group_key, P)) {
        free(P);
        P = NULL;
    }
    return P;
}

/* The T tokens at X (nb blocks each, nch chunks) into G. */
QX_FN void qx_group_build(int ty, const qact_block *X, int T, int64_t nb, int64_t nch, qx_group *G) {
    for (int t = 0; t < T; t++) {
        const qact_block *x = X + t * nb;
        for (int64_t k = 0; k < nch; k++) {
            qx_lanes *L = &G->lanes[k * T + t];
            __m512i a, zero;
            int half = 2 * k + 1 == nb;
            qx_act(x + 2 * k, half, 0, &a, &L->ts, &zero); /* off 0: no offset sums */
            L->a = _mm512_mask_xor_epi32(a, half ? 0x00ff : 0xffff, a, _mm512_set1_epi8((char)0x80));
        }
        if (ty == TY_Q4_K || ty == TY_Q5_K)
            for (int64_t s = 0; s < nch / 4; s++) {
                float d8[8];
                for (int g = 0; g < 8; g++) d8[g] = x[8 * s + g].d * (float)(x[8 * s + g].s16[0] + x[8 * s + g].s16[1]);
                G->mins[s * T + t] = _mm512_zextps256_ps512(_mm256_loadu_ps(d8));
            }
    }
}

/* acc[r][t] += the products of one chunk: the rows' unsigned bytes u (the weights q + off) and
 * scales rs, the tokens' lanes L[0..T-1]. The roles of dpbusd's operands are swapped here: the
 * activations are unsigned (a + 128) and the weights signed (u - off), so the offset's
 * correction, -128 * (sum of each 4 weights), belongs to the row and is made once for all the
 * tokens. Each product is the same integer, sum of q * a, as in every other path. `half`: the
 * upper 32 bytes are past the row (their activation bytes are 0, their weights made 0 too). */
QX void qx_group_chunk(int R, int T, int off, int half, const __m512i *u, const __m512 *rs, const qx_lanes *L,
                       __m512 acc[2][QX_GROUP]) {
    __m512i w[2], corr[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        w[r] = off ? _mm512_sub_epi8(u[r], _mm512_set1_epi8((char)off)) : u[r];
        if (half) w[r] = _mm512_zextsi256_si512(_mm512_castsi512_si256(w[r]));
        corr[r] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), w[r]));
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        __m512i a = L[t].a;
        __m512 ts = L[t].ts;
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m512 d = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr[r], a, w[r]));
            acc[r][t] = _mm512_fmadd_ps(d, _mm512_mul_ps(rs[r], ts), acc[r][t]);
        }
    }
}

/* A sweep over the chunks k = first, first + step, ...: acc[k & 1][i][t] += row w[i] x token t.
 * step 1: both parities at once (2 R T <= 16 sums); step 2: one parity. */
QX void qx_group_sweep(int ty, int R, int T, int first, int step, const uint8_t *const *w, const qx_group *G,
                       int64_t nch, int64_t nb, __m512 acc[2][2][QX_GROUP]) {
    int off = qx_off(ty);
    if (ty <= TY_Q5_0) {
        size_t bb = qx_block_bytes(ty);
        /* the sums' index must be known when compiling, or they live on the stack: with both
         * parities, chunks go in pairs */
        for (int64_t k = first; k < nch; k += 2) {
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                if (j && (step == 2 || k + 1 == nch)) break;
                int64_t kk = k + j;
                __m512i u[2];
                __m512 rs[2];
#pragma GCC unroll 2
                for (int i = 0; i < R; i++) {
                    const uint8_t *p = w[i] + (size_t)(2 * kk) * bb;
                    if (!first) _mm_prefetch((const char *)(p + QX_PREFETCH), _MM_HINT_T0);
                    qx_w32(ty, p, 2 * kk + 1 == nb, &u[i], &rs[i]);
                }
                qx_group_chunk(R, T, off, 2 * kk + 1 == nb, u, rs, G->lanes + kk * T, acc[step == 2 ? first : j]);
            }
        }
        return;
    }
    size_t bb = qx_block_bytes(ty);
    const __m512i hi8 = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 15, 14, 13, 12, 11, 10, 9, 8);
    for (int64_t s = 0; s < nch / 4; s++) {
        __m512 sc[2];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++) {
            const uint8_t *b = w[i] + (size_t)s * bb;
            if (!first)
                for (int l = 0; l < (int)bb; l += 64) _mm_prefetch((const char *)(b + QX_PREFETCH + l), _MM_HINT_T0);
            sc[i] = ty == TY_Q6_K ? qx_q6k_scales(b) : qx_k45_scales(b);
        }
#pragma GCC unroll 4
        for (int c = first; c < 4; c += step) {
            __m512i u[2];
            __m512 rs[2];
#pragma GCC unroll 2
            for (int i = 0; i < R; i++) qx_wk(ty, w[i] + (size_t)s * bb, c, sc[i], &u[i], &rs[i]);
            qx_group_chunk(R, T, off, 0, u, rs, G->lanes + (4 * s + c) * T, acc[c & 1]);
        }
        if (!first && ty != TY_Q6_K) /* minus dmin * m_g * (d_x * sum of x), after chunk 2 as in the tiles */
#pragma GCC unroll 2
            for (int i = 0; i < R; i++) {
                __m512 mins = _mm512_maskz_permutexvar_ps(0xff, hi8, sc[i]);
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) acc[0][i][t] = _mm512_fnmadd_ps(mins, G->mins[s * T + t], acc[0][i][t]);
            }
    }
}

/* Rows r0..r1 (R at a time; r1 - r0 a multiple of R) against the T tokens of G. */
QX void qx_group_rows(int ty, int R, int T, float *Y, int64_t ldy, const uint8_t *W, size_t rb, const qx_group *G,
                      int64_t nch, int64_t nb, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r += R) {
        const uint8_t *w[2] = {W + (size_t)r * rb, W + (size_t)(r + R - 1) * rb};
        __m512 acc[2][2][QX_GROUP];
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++)
#pragma GCC unroll 2
            for (int i = 0; i < R; i++)
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) acc[p][i][t] = _mm512_setzero_ps();
        if (2 * R * T <= 16) { /* one sweep: every sum in registers */
            qx_group_sweep(ty, R, T, 0, 1, w, G, nch, nb, acc);
        } else {
            qx_group_sweep(ty, R, T, 0, 2, w, G, nch, nb, acc);
            qx_group_sweep(ty, R, T, 1, 2, w, G, nch, nb, acc);
        }
#pragma GCC unroll 2
        for (int i = 0; i < R; i++)
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) Y[t * ldy + r + i] = qx_hsum(_mm512_add_ps(acc[0][i][t], acc[1][i][t]));
    }
}

/* One function per (type, rows, tokens): the branches fold away and the sums stay in registers.
 * Two rows at a time (the unpacking shared by 2 x T products), and one row for a range's odd
 * last row. */
#define QX_GROUP_FN(tn, ty, R, T)                                                                          \
    QX_FN void tn##_g##R##x##T(float *Y, int64_t ldy, const uint8_t *W, size_t rb, const qx_group *G,       \
                               int64_t nch, int64_t nb, int64_t r0, int64_t r1) {                           \
        qx_group_rows(ty, R, T, Y, ldy, W, rb, G, nch, nb, r0, r1);                                         \
    }
#define QX_GROUP_T(tn, ty, T) QX_GROUP_FN(tn, ty, 1, T) QX_GROUP_FN(tn, ty, 2, T)
#define QX_GROUP_TYPE(tn, ty)                                                                              \
    QX_GROUP_T(tn, ty, 2) QX_GROUP_T(tn, ty, 3) QX_GROUP_T(tn, ty, 4) QX_GROUP_T(tn, ty, 5)                 \
    QX_GROUP_T(tn, ty, 6) QX_GROUP_T(tn, ty, 7) QX_GROUP_T(tn, ty, 8)                                       \
    static const qx_group_fn tn##_group[2][QX_GROUP + 1] = {                                               \
        {NULL, NULL, tn##_g1x2, tn##_g1x3, tn##_g1x4, tn##_g1x5, tn##_g1x6, tn##_g1x7, tn##_g1x8},          \
        {NULL, NULL, tn##_g2x2, tn##_g2x3, tn##_g2x4, tn##_g2x5, tn##_g2x6, tn##_g2x7, tn##_g2x8}};
typedef void (*qx_group_fn)(float *Y, int64_t ldy, const uint8_t *W, size_t rb, const qx_group *G, int64_t nch,
                            int64_t nb, int64_t r0, int64_t r1);
QX_GROUP_TYPE(q8_0, TY_Q8_0)
QX_GROUP_TYPE(q4_0, TY_Q4_0)
QX_GROUP_TYPE(q5_0, TY_Q5_0)
QX_GROUP_TYPE(q4_k, TY_Q4_K)
QX_GROUP_TYPE(q5_k, TY_Q5_K)
QX_GROUP_TYPE(q6_k, TY_Q6_K)

/* ---- activations ---------------------------------------------------------------------------- */

/* op_quantize_act for n elements (n a multiple of 32), bit for bit: the same scale, the same
 * products x * (1/d), rounded to nearest even as lrintf does, the same clamp to +-127. */
__attribute__((target(QX_TARGET))) void qdot_avx512_quantize(qact_block *out, const float *x, int64_t n) {
    const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / QACT_BLOCK; b++, x += QACT_BLOCK) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, sign), _mm512_and_ps(v1, sign)));
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        __m512i q0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id))), lo), hi);
        __m512i q1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id))), lo), hi);
        out[b].d = d;
        out[b].s16[0] = (int16_t)_mm512_reduce_add_epi32(q0);
        out[b].s16[1] = (int16_t)_mm512_reduce_add_epi32(q1);
        _mm_storeu_si128((__m128i *)out[b].q, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[b].q + 16), _mm512_cvtepi32_epi8(q1));
    }
}

/* Rows r0..r1 of W against n_tok tokens: one token by decode; more in groups of QX_GROUP
 * (a lone last token by decode); rows past the panels, or without a group buffer, in 4x4 tiles
 * (tokens in groups of 4, rows in groups of 4 within a group). Returns 0, or -1 when the type
 * or the row length is not handled here. */
__attribute__((target(QX_TARGET))) int qdot_avx512_rows(float *Y, int64_t ldy, const void *W, whale_dtype t,
                                                        const qact_block *X, int64_t n_in, int64_t n_tok, int64_t r0,
                                                        int64_t r1) {
    const qx_tile_fn(*tiles)[4];
    void (*decode)(float *, const uint8_t *, size_t, const qact_block *, int64_t, int64_t, int64_t);
    const qx_group_fn(*group)[QX_GROUP + 1];
    int mins = 0, ty;
    switch (t) {
    case WHALE_DTYPE_Q8_0: tiles = q8_0_tiles, decode = q8_0_decode, group = q8_0_group, ty = TY_Q8_0; break;
    case WHALE_DTYPE_Q4_0: tiles = q4_0_tiles, decode = q4_0_decode, group = q4_0_group, ty = TY_Q4_0; break;
    case WHALE_DTYPE_Q5_0: tiles = q5_0_tiles, decode = q5_0_decode, group = q5_0_group, ty = TY_Q5_0; break;
    case WHALE_DTYPE_Q4_K: tiles = q4_k_tiles, decode = q4_k_decode, group = q4_k_group, ty = TY_Q4_K, mins = 1; break;
    case WHALE_DTYPE_Q5_K: tiles = q5_k_tiles, decode = q5_k_decode, group = q5_k_group, ty = TY_Q5_K, mins = 1; break;
    case WHALE_DTYPE_Q6_K: tiles = q6_k_tiles, decode = q6_k_decode, group = q6_k_group, ty = TY_Q6_K; break;
    default: return -1;
    }
    int64_t nb = n_in / QACT_BLOCK;
    if (nb > QX_MAX_BLOCKS || n_in % QACT_BLOCK) return -1;
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    if (n_tok == 1 && (nb + 1) / 2 <= QX_PANEL) {
        decode(Y, W, rb, X, n_in, r0, r1);
        return 0;
    }
    int64_t nch = (nb + 1) / 2;
    void *buf = nch <= QX_PANEL ? qx_group_buf() : NULL;
    if (buf) { /* groups of QX_GROUP tokens; rows two at a time */
        qx_group G = {buf, (__m512 *)((char *)buf + (size_t)QX_GROUP * QX_PANEL * sizeof(qx_lanes))};
        for (int64_t t0 = 0; t0 < n_tok; t0 += QX_GROUP) {
            int T = n_tok - t0 < QX_GROUP ? (int)(n_tok - t0) : QX_GROUP;
            float *y = Y + t0 * ldy;
            if (T == 1) { /* the last group's lone token */
                decode(y, W, rb, X + t0 * nb, n_in, r0, r1);
                continue;
            }
            qx_group_build(ty, X + t0 * nb, T, nb, nch, &G);
            int64_t mid = r0 + (r1 - r0) / 2 * 2;
            group[1][T](y, ldy, W, rb, &G, nch, nb, r0, mid);
            if (mid < r1) group[0][T](y, ldy, W, rb, &G, nch, nb, mid, r1);
        }
        return 0;
    }
    float dsum[4][QX_MAX_BLOCKS];
    for (int64_t b0 = 0; b0 < n_tok; b0 += 4) {
        int g = n_tok - b0 < 4 ? (int)(n_tok - b0) : 4;
        const qact_block *xs[4];
        const float *ds[4];
        for (int k = 0; k < g; k++) {
            xs[k] = X + (b0 + k) * nb;
            ds[k] = dsum[k];
            if (mins)
                for (int64_t i = 0; i < nb; i++) dsum[k][i] = xs[k][i].d * (float)(xs[k][i].s16[0] + xs[k][i].s16[1]);
        }
        float out[16];
        int64_t r = r0;
        for (; n_tok >= 4 && r + 4 <= r1; r += 4) {
            tiles[1][g - 1]((const uint8_t *)W + (size_t)r * rb, rb, xs, ds, n_in, out);
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r + i] = out[i * g + k];
        }
        for (; r < r1; r++) {
            tiles[0][g - 1]((const uint8_t *)W + (size_t)r * rb, rb, xs, ds, n_in, out);
            for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r] = out[k];
        }
    }
    return 0;
}
#endif
