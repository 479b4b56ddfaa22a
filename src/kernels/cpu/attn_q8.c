/* attn_q8.c — the multi-query attention of kernels/attn.h over a cache of int8 rows with
 * per-row scales (--kv-type q8, MLA latent caches): a quarter of the F32 cache's bytes, and the
 * products in integers, 64 per vpdpbusd (AVX-512 VNNI) where F32 does 16 per instruction.
 *
 * A row (op_q8_row) holds n int8 values in two segments, [0, split) and [split, n), each
 * quantized with its own scale (max |x| / 127), then the two scales as floats: MLA's latent c
 * and its rope key differ in range. Queries are quantized the same way per head and segment.
 * A score is the two segments' integer dot products, each scaled by the query's and the row's
 * scales. The weighted sum takes the first segment as the value (MLA's latent): the weights
 * p_t x scale_t of a block of positions are quantized to 0..255 against their largest, the
 * integer sums over the block's positions are exact, and one multiply-add per output adds the
 * block to o. The softmax sum l is of the unquantized weights.
 *
 * Every level gives the same bits: the integer sums are exact in any order, and the float
 * steps around them (the scores' scaling, the softmax, the block's multiply-add) are the same
 * scalar or lane-wise operations. The AVX-512 level scores 16 positions per vector from rows
 * transposed in registers (lane p: position p; no horizontal sums), and for the weighted sum
 * interleaves each block's rows by 4 positions (vpdpbusd adds 4 adjacent byte products), both
 * once for all heads. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/attn.h"
#include "kernels/cpu/lanes.h"
#include "kernels/isa.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WHALE_X86 1
#include <immintrin.h>
#endif

#define Q8_BLOCK OP_MQA_BLOCK
#define PAD64(n) (((n) + 63) & ~(int64_t)63)

#ifdef WHALE_X86
static int q8_segment_x(int8_t *dst, const float *x, int64_t n, float *scale);
#endif

/* x's n values as int8 against scale max |x| / 127 (0 for a zero segment); returns the scale.
 * A NaN or infinite value makes the scale NaN, so that it reaches the output as it would from
 * an F32 cache. */
static float q8_segment(int8_t *dst, const float *x, int64_t n) {
    float s;
#ifdef WHALE_X86
    if (isa_level_get() == ISA_AVX512 && q8_segment_x(dst, x, n, &s)) return s;
#endif
    float amax = 0;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        bad |= !isfinite(x[i]);
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    }
    if (bad || !(amax > 0)) {
        memset(dst, 0, (size_t)n);
        return bad ? NAN : 0;
    }
    s = amax / 127.0f;
    for (int64_t i = 0; i < n; i++) {
        long v = lrintf(x[i] / s);
        dst[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    return s;
}

void op_q8_row(uint8_t *row, const float *x, int64_t n, int64_t split) {
    float sc[2];
    sc[0] = q8_segment((int8_t *)row, x, split);
    sc[1] = q8_segment((int8_t *)row + split, x + split, n - split);
    memcpy(row + n, sc, sizeof sc);
}

void op_q8_row_get(float *x, const uint8_t *row, int64_t n, int64_t split) {
    float sc[2];
    memcpy(sc, row + n, sizeof sc);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((const int8_t *)row)[i] * sc[i < split ? 0 : 1];
}

/* The scratch's parts (bytes from its start; floats and ints 4-aligned). */
typedef struct q8_ws {
    float *s;        /* (n_head, Q8_BLOCK) scores */
    float *mn;       /* (n_head) the running max with the block's scores (NaN scores skipped) */
    int8_t *q;       /* (n_head, ldq) quantized queries: segment 1 at 0, segment 2 at PAD64(split) */
    int64_t ldq;
    float *qs;       /* (n_head, 2) their scales */
    int32_t *qsum;   /* (n_head, 2) their sums (the AVX-512 level's unsigned-operand correction) */
    uint8_t *w;      /* (n_head, Q8_BLOCK) a block's quantized weights */
    float *ws;       /* (n_head) their scales */
    float *rs;       /* (2, Q8_BLOCK) the block's row scales, segment by segment */
    uint32_t *tq;    /* (Q8_BLOCK / 4, PAD64(split)) rows interleaved by 4 positions (AVX-512) */
    void *tk;        /* (PAD64(split) + PAD64(dk - split)) / 4 vectors: 16 rows transposed (AVX-512) */
} q8_ws;

static q8_ws q8_carve(float *scratch, int64_t n_head, int64_t dk, int64_t split) {
    q8_ws w;
    char *p = (char *)scratch;
    w.s = (float *)p, p += 4 * n_head * Q8_BLOCK;
    w.mn = (float *)p, p += 4 * n_head;
    w.ldq = PAD64(split) + PAD64(dk - split);
    w.q = (int8_t *)p, p += n_head * w.ldq;
    w.qs = (float *)p, p += 4 * 2 * n_head;
    w.qsum = (int32_t *)p, p += 4 * 2 * n_head;
    w.w = (uint8_t *)p, p += n_head * Q8_BLOCK;
    w.ws = (float *)p, p += 4 * n_head;
    w.rs = (float *)p, p += 4 * 2 * Q8_BLOCK;
    w.tq = (uint32_t *)p, p += 4 * (Q8_BLOCK / 4) * PAD64(split);
    w.tk = (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63); /* 64 bytes spare in the size below */
    return w;
}

int64_t op_mqa_scratch_q8(int64_t n_head, int64_t dk, int64_t split) {
    int64_t bytes = 4 * n_head * Q8_BLOCK + 4 * n_head + n_head * (PAD64(split) + PAD64(dk - split)) + 4 * 4 * n_head +
                    n_head * Q8_BLOCK + 4 * n_head + 4 * 2 * Q8_BLOCK + 4 * (Q8_BLOCK / 4) * PAD64(split) +
                    16 * (PAD64(split) + PAD64(dk - split)) + 64;
    return (bytes + 3) / 4;
}

/* ---- portable ------------------------------------------------------------------------------ */

static int32_t idot(const int8_t *a, const int8_t *b, int64_t n) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

/* The scores w->s (n_head, Q8_BLOCK) of the block: each segment's integer dot product times the
 * query's and the row's scales, the two added; w->mn[h]: the larger of mx[h] and the head's
 * scores. */
static void scores_portable(const q8_ws *w, const float *mx, int64_t n_head, const uint8_t *rows,
                            int64_t row_bytes, int64_t dk, int64_t split, int64_t nb) {
    for (int64_t h = 0; h < n_head; h++) {
        float m = mx[h];
        for (int64_t t = 0; t < nb; t++) {
            const int8_t *r = (const int8_t *)(rows + t * row_bytes), *q = w->q + h * w->ldq;
            float x0 = (float)idot(q, r, split) * w->qs[2 * h] * w->rs[t];
            float x1 = (float)idot(q + PAD64(split), r + split, dk - split) * w->qs[2 * h + 1] * w->rs[Q8_BLOCK + t];
            float x = w->s[h * Q8_BLOCK + t] = x0 + x1;
            m = x > m ? x : m;
        }
        w->mn[h] = m;
    }
}

/* A head's block of weights: p_t = e^(s_t - m) summed in 16 lanes (position t in lane t % 16,
 * lanes.h's order), then w_t = p_t x (row scale) quantized to 0..255 against max w / 255. */
static void weights_portable(const float *s, const float *rs, int64_t nb, float m, float *sum, uint8_t *wq, float *ws) {
    float c[16] = {0}, w[Q8_BLOCK], wmax = 0;
    for (int64_t t = 0; t < nb; t++) {
        float p = lanes_exp(s[t] - m);
        c[t % 16] += p;
        w[t] = p * rs[t];
        wmax = w[t] > wmax ? w[t] : wmax;
    }
    *sum = lanes16_sum(c);
    *ws = wmax > 0 ? wmax / 255.0f : 0;
    memset(wq, 0, Q8_BLOCK);
    for (int64_t t = 0; *ws > 0 && t < nb; t++) {
        long v = lrintf(w[t] / *ws);
        wq[t] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
    }
}

static void accum_portable(float *o, int64_t ldo, const q8_ws *w, int64_t n_head, const uint8_t *rows,
                           int64_t row_bytes, int64_t split, int64_t nb) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < split; i++) {
            int32_t s = 0;
            for (int64_t t = 0; t < nb; t++)
                s += (int32_t)w->w[h * Q8_BLOCK + t] * ((const int8_t *)(rows + t * row_bytes))[i];
            o[h * ldo + i] = fmaf(w->ws[h], (float)s, o[h * ldo + i]);
        }
}

#ifdef WHALE_X86
/* ---- AVX-512 VNNI ---------------------------------------------------------------------------- */

#define AQ_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"
#define AQ_INLINE __attribute__((target(AQ_TARGET))) static inline __attribute__((always_inline))

/* q8_segment's operations 16 values at a time (the same division, rounded to nearest even as
 * lrintf rounds); returns 0 and leaves the rare segments (NaN, infinity, all zero) to it. */
__attribute__((target(AQ_TARGET))) static int q8_segment_x(int8_t *dst, const float *x, int64_t n, float *scale) {
    const __m512 fmax = _mm512_set1_ps(3.40282347e38f);
    __m512 amax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = mask16(n - i);
        __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(k, x + i));
        bad |= _mm512_mask_cmp_ps_mask(k, a, fmax, _CMP_NLE_UQ); /* NaN or infinite */
        amax = _mm512_max_ps(amax, a);
    }
    float m = _mm512_reduce_max_ps(amax); /* a max: exact in any order */
    if (bad || !(m > 0)) return 0;
    float s = m / 127.0f;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = mask16(n - i);
        __m512i v = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(k, x + i), _mm512_set1_ps(s)));
        v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
        _mm_mask_storeu_epi8(dst + i, k, _mm512_cvtepi32_epi8(v));
    }
    *scale = s;
    return 1;
}

/* Up to 16 positions' rows transposed for scoring: tk[j] lane p holds bytes 4j..4j+3 of position
 * p's row (+128: vpdpbusd takes unsigned bytes; 128 x sum(q) comes off after), the first
 * segment's PAD64(split) / 4 words, then the second's. Absent positions and bytes past a
 * segment read as zero (128 after the flip) against zero query bytes: nothing added. Scoring
 * then needs no horizontal sums: lane p of a head's sum is position p's dot product. */
__attribute__((target(AQ_TARGET))) static void transpose_x(__m512i *tk, const uint8_t *rows, int64_t row_bytes,
                                                           int64_t dk, int64_t split, int64_t np) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int seg = 0; seg < 2; seg++) {
        int64_t off = seg ? split : 0, len = seg ? dk - split : split;
        __m512i *out = tk + (seg ? PAD64(split) / 4 : 0);
        for (int64_t i = 0; i < len; i += 64) {
            __mmask64 m = mask64(len - i);
            __m512i r[16], t[16], u[16];
            for (int p = 0; p < 16; p++)
                r[p] = _mm512_xor_si512(p < np ? _mm512_maskz_loadu_epi8(m, rows + p * row_bytes + off + i)
                                               : _mm512_setzero_si512(), flip);
            /* per 128-bit lane L: pairs of rows, then quads: u[4a + k] lane L = word 4L + k of rows 4a..4a+3 */
            for (int p = 0; p < 16; p += 2) {
                t[p] = _mm512_unpacklo_epi32(r[p], r[p + 1]);
                t[p + 1] = _mm512_unpackhi_epi32(r[p], r[p + 1]);
            }
            for (int a = 0; a < 4; a++) {
                u[4 * a] = _mm512_unpacklo_epi64(t[4 * a], t[4 * a + 2]);
                u[4 * a + 1] = _mm512_unpackhi_epi64(t[4 * a], t[4 * a + 2]);
                u[4 * a + 2] = _mm512_unpacklo_epi64(t[4 * a + 1], t[4 * a + 3]);
                u[4 * a + 3] = _mm512_unpackhi_epi64(t[4 * a + 1], t[4 * a + 3]);
            }
            /* a 4 x 4 transpose of 128-bit lanes: word 4L + k of all 16 rows */
            for (int k = 0; k < 4; k++) {
                __m512i A0 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(1, 0, 1, 0));
                __m512i A1 = _mm512_shuffle_i32x4(u[k], u[4 + k], _MM_SHUFFLE(3, 2, 3, 2));
                __m512i B0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(1, 0, 1, 0));
                __m512i B1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(3, 2, 3, 2));
                __m512i *o = out + i / 4 + k;
                _mm512_storeu_si512(o, _mm512_shuffle_i32x4(A0, B0, _MM_SHUFFLE(2, 0, 2, 0)));
                _mm512_storeu_si512(o + 4, _mm512_shuffle_i32x4(A0, B0, _MM_SHUFFLE(3, 1, 3, 1)));
                _mm512_storeu_si512(o + 8, _mm512_shuffle_i32x4(A1, B1, _MM_SHUFFLE(2, 0, 2, 0)));
                _mm512_storeu_si512(o + 12, _mm512_shuffle_i32x4(A1, B1, _MM_SHUFFLE(3, 1, 3, 1)));
            }
        }
    }
}

/* HN heads' integer dot products with the 16 transposed positions over nw words of one
 * segment: lane p of out[a] = sum over the segment of q x row p (the flip taken off). */
AQ_INLINE void score_heads_q(__m512i *out, const __m512i *tk, int64_t nw, const int8_t *q, int64_t ldq,
                             const int32_t *qsum, int seg, int HN) {
    __m512i c[16];
#pragma GCC unroll 16
    for (int a = 0; a < HN; a++) c[a] = _mm512_setzero_si512();
    for (int64_t j = 0; j < nw; j++) {
        __m512i k = _mm512_loadu_si512(tk + j);
#pragma GCC unroll 16
        for (int a = 0; a < HN; a++) {
            int32_t q4;
            memcpy(&q4, q + a * ldq + 4 * j, 4);
            c[a] = _mm512_dpbusd_epi32(c[a], k, _mm512_set1_epi32(q4));
        }
    }
#pragma GCC unroll 16
    for (int a = 0; a < HN; a++) out[a] = _mm512_sub_epi32(c[a], _mm512_set1_epi32(128 * qsum[2 * a + seg]));
}

/* The scores of the block (scores_portable's operations, 16 positions at a time). */
__attribute__((target(AQ_TARGET))) static void scores_x(const q8_ws *w, const float *mx, int64_t n_head,
                                                        const uint8_t *rows, int64_t row_bytes, int64_t dk,
                                                        int64_t split, int64_t nb) {
    int64_t n0 = PAD64(split) / 4, n1 = PAD64(dk - split) / 4;
    __m512i *tk = w->tk;
    for (int64_t h = 0; h < n_head; h++) w->mn[h] = mx[h];
    for (int64_t t = 0; t < nb; t += 16) {
        int64_t np = nb - t < 16 ? nb - t : 16;
        __mmask16 km = mask16(np);
        transpose_x(tk, rows + t * row_bytes, row_bytes, dk, split, np);
        __m512 rs0 = _mm512_maskz_loadu_ps(km, w->rs + t), rs1 = _mm512_maskz_loadu_ps(km, w->rs + Q8_BLOCK + t);
        for (int64_t h = 0; h < n_head; h += 8) {
            int hn = n_head - h < 8 ? (int)(n_head - h) : 8;
            __m512i d0[16], d1[16];
            const int8_t *q = w->q + h * w->ldq;
            if (hn == 8) {
                score_heads_q(d0, tk, n0, q, w->ldq, w->qsum + 2 * h, 0, 8);
                score_heads_q(d1, tk + n0, n1, q + PAD64(split), w->ldq, w->qsum + 2 * h, 1, 8);
            } else
                for (int a = 0; a < hn; a++) {
                    score_heads_q(d0 + a, tk, n0, q + a * w->ldq, w->ldq, w->qsum + 2 * (h + a), 0, 1);
                    score_heads_q(d1 + a, tk + n0, n1, q + a * w->ldq + PAD64(split), w->ldq,
                                  w->qsum + 2 * (h + a), 1, 1);
                }
            for (int a = 0; a < hn; a++) {
                __m512 x0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d0[a]), _mm512_set1_ps(w->qs[2 * (h + a)])), rs0);
                __m512 x1 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(d1[a]), _mm512_set1_ps(w->qs[2 * (h + a) + 1])), rs1);
                __m512 x = _mm512_add_ps(x0, x1);
                _mm512_mask_storeu_ps(w->s + (h + a) * Q8_BLOCK + t, km, x);
                /* max(x, m) gives m where x is NaN or equal, as the portable comparison does (a
                 * zero max may differ in its sign across the lanes' order: nothing after the max
                 * tells -0 from +0) */
                __m512 m = _mm512_mask_max_ps(_mm512_set1_ps(w->mn[h + a]), km, x, _mm512_set1_ps(w->mn[h + a]));
                w->mn[h + a] = _mm512_reduce_max_ps(m);
            }
        }
    }
}

/* weights_portable's operations, 16 positions at a time. */
__attribute__((target(AQ_TARGET))) static void weights_x(const float *s, const float *rs, int64_t nb, float m,
                                                         float *sum, uint8_t *wq, float *ws) {
    __m512 acc = _mm512_setzero_ps(), wv[Q8_BLOCK / 16], wmax = _mm512_setzero_ps();
    for (int64_t t = 0; t < nb; t += 16) {
        __mmask16 k = mask16(nb - t);
        __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + t), _mm512_set1_ps(m));
        __m512 p = _mm512_maskz_mov_ps(k, lanes_exp16(x));
        acc = _mm512_add_ps(acc, p);
        wv[t / 16] = _mm512_mul_ps(p, _mm512_maskz_loadu_ps(k, rs + t));
        wmax = _mm512_max_ps(wmax, wv[t / 16]);
    }
    *sum = hsum16(acc);
    float mw = _mm512_reduce_max_ps(wmax); /* a max: exact in any order */
    *ws = mw > 0 ? mw / 255.0f : 0;
    memset(wq, 0, Q8_BLOCK);
    if (!(*ws > 0)) return;
    for (int64_t t = 0; t < nb; t += 16) {
        __mmask16 k = mask16(nb - t);
        __m512i v = _mm512_cvtps_epi32(_mm512_div_ps(wv[t / 16], _mm512_set1_ps(*ws))); /* nearest, as lrintf */
        v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_setzero_si512()), _mm512_set1_epi32(255));
        _mm_mask_storeu_epi8(wq + t, k, _mm512_cvtepi32_epi8(v));
    }
}

/* The block's first segments interleaved by 4 positions: tq[g * ldt + i] holds value i of
 * positions 4g .. 4g + 3 (zero past nb), in column order, for vpdpbusd. */
__attribute__((target(AQ_TARGET))) static void interleave_x(uint32_t *tq, int64_t ldt, const uint8_t *rows,
                                                            int64_t row_bytes, int64_t split, int64_t nb) {
    for (int64_t g = 0; g * 4 < nb; g++)
        for (int64_t i = 0; i < split; i += 64) {
            __mmask64 m = mask64(split - i);
            __m512i r[4];
            for (int b = 0; b < 4; b++)
                r[b] = 4 * g + b < nb ? _mm512_maskz_loadu_epi8(m, rows + (4 * g + b) * row_bytes + i)
                                      : _mm512_setzero_si512();
            /* per 128-bit lane L: bytes then pairs interleaved give columns 16L+0..3, +4..7, +8..11, +12..15 */
            __m512i lo01 = _mm512_unpacklo_epi8(r[0], r[1]), hi01 = _mm512_unpackhi_epi8(r[0], r[1]);
            __m512i lo23 = _mm512_unpacklo_epi8(r[2], r[3]), hi23 = _mm512_unpackhi_epi8(r[2], r[3]);
            __m512i A = _mm512_unpacklo_epi16(lo01, lo23), B = _mm512_unpackhi_epi16(lo01, lo23);
            __m512i C = _mm512_unpacklo_epi16(hi01, hi23), D = _mm512_unpackhi_epi16(hi01, hi23);
            /* a 4 x 4 transpose of 128-bit lanes puts the columns in order */
            __m512i AB0 = _mm512_shuffle_i32x4(A, B, _MM_SHUFFLE(1, 0, 1, 0));
            __m512i AB1 = _mm512_shuffle_i32x4(A, B, _MM_SHUFFLE(3, 2, 3, 2));
            __m512i CD0 = _mm512_shuffle_i32x4(C, D, _MM_SHUFFLE(1, 0, 1, 0));
            __m512i CD1 = _mm512_shuffle_i32x4(C, D, _MM_SHUFFLE(3, 2, 3, 2));
            __m512i n[4] = {_mm512_shuffle_i32x4(AB0, CD0, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(AB0, CD0, _MM_SHUFFLE(3, 1, 3, 1)),
                            _mm512_shuffle_i32x4(AB1, CD1, _MM_SHUFFLE(2, 0, 2, 0)),
                            _mm512_shuffle_i32x4(AB1, CD1, _MM_SHUFFLE(3, 1, 3, 1))};
            for (int c = 0; c < 4 && i + 16 * c < split; c++) {
                int64_t left = split - i - 16 * c;
                __mmask16 km = mask16(left);
                _mm512_mask_storeu_epi32(tq + g * ldt + i + 16 * c, km, n[c]);
            }
        }
}

/* HN heads x 16*CN output columns from column i over the block's interleaved rows. */
AQ_INLINE void accum_tile_q(float *o, int64_t ldo, const uint8_t *wq, const float *ws, const uint32_t *tq, int64_t ldt,
                            int64_t ng, int64_t i, __mmask16 m, int HN, int CN) {
    __m512i acc[4][4];
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) acc[a][c] = _mm512_setzero_si512();
    for (int64_t g = 0; g < ng; g++) {
        __m512i x[4];
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) x[c] = _mm512_maskz_loadu_epi32(m, tq + g * ldt + i + 16 * c);
#pragma GCC unroll 4
        for (int a = 0; a < HN; a++) {
            uint32_t w4;
            memcpy(&w4, wq + a * Q8_BLOCK + 4 * g, 4);
            __m512i wb = _mm512_set1_epi32((int)w4);
#pragma GCC unroll 4
            for (int c = 0; c < CN; c++) acc[a][c] = _mm512_dpbusd_epi32(acc[a][c], wb, x[c]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < HN; a++)
#pragma GCC unroll 4
        for (int c = 0; c < CN; c++) {
            float *dst = o + a * ldo + i + 16 * c;
            __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(ws[a]), _mm512_cvtepi32_ps(acc[a][c]),
                                       _mm512_maskz_loadu_ps(m, dst));
            _mm512_mask_storeu_ps(dst, m, r);
        }
}

__attribute__((target(AQ_TARGET))) static void accum_x(float *o, int64_t ldo, const q8_ws *w, int64_t n_head,
                                                       const uint8_t *rows, int64_t row_bytes, int64_t split,
                                                       int64_t nb) {
    int64_t ldt = PAD64(split), ng = (nb + 3) / 4;
    interleave_x(w->tq, ldt, rows, row_bytes, split, nb);
    __mmask16 all = (__mmask16)0xFFFF;
    int64_t i = 0;
    for (; i + 64 <= split; i += 64) {
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4)
            accum_tile_q(o + h * ldo, ldo, w->w + h * Q8_BLOCK, w->ws + h, w->tq, ldt, ng, i, all, 4, 4);
        for (; h < n_head; h++)
            accum_tile_q(o + h * ldo, ldo, w->w + h * Q8_BLOCK, w->ws + h, w->tq, ldt, ng, i, all, 1, 4);
    }
    for (; i < split; i += 16) {
        __mmask16 m = mask16(split - i);
        for (int64_t h = 0; h < n_head; h++)
            accum_tile_q(o + h * ldo, ldo, w->w + h * Q8_BLOCK, w->ws + h, w->tq, ldt, ng, i, m, 1, 1);
    }
}
#endif

/* ---- the attention ------------------------------------------------------------------------ */

void op_mqa_q8_queries(float *scratch, const float *q, int64_t ldq, int64_t n_head, int64_t dk, int64_t split) {
    q8_ws w = q8_carve(scratch, n_head, dk, split);
    for (int64_t h = 0; h < n_head; h++) {
        int8_t *qh = w.q + h * w.ldq;
        memset(qh, 0, (size_t)w.ldq);
        w.qs[2 * h] = q8_segment(qh, q + h * ldq, split);
        w.qs[2 * h + 1] = q8_segment(qh + PAD64(split), q + h * ldq + split, dk - split);
        int32_t s0 = 0, s1 = 0;
        for (int64_t i = 0; i < split; i++) s0 += qh[i];
        for (int64_t i = 0; i < dk - split; i++) s1 += qh[PAD64(split) + i];
        w.qsum[2 * h] = s0, w.qsum[2 * h + 1] = s1;
    }
}

void op_mqa_attend_q8(float *o, int64_t ldo, float *mx, float *l, int64_t n_head, const uint8_t *rows,
                      int64_t row_bytes, int64_t dk, int64_t split, int64_t n_pos, float *scratch) {
    q8_ws w = q8_carve(scratch, n_head, dk, split);
#ifdef WHALE_X86
    int vnni = isa_level_get() == ISA_AVX512;
#endif
    for (int64_t b = 0; b < n_pos; b += Q8_BLOCK) {
        int64_t nb = n_pos - b < Q8_BLOCK ? n_pos - b : Q8_BLOCK;
        const uint8_t *blk = rows + b * row_bytes;
        for (int64_t t = 0; t < nb; t++) {
            float sc[2];
            memcpy(sc, blk + t * row_bytes + dk, sizeof sc);
            w.rs[t] = sc[0], w.rs[Q8_BLOCK + t] = sc[1];
        }
#ifdef WHALE_X86
        if (vnni) scores_x(&w, mx, n_head, blk, row_bytes, dk, split, nb);
        else
#endif
            scores_portable(&w, mx, n_head, blk, row_bytes, dk, split, nb);
        for (int64_t h = 0; h < n_head; h++) {
            float *s = w.s + h * Q8_BLOCK, mnew = w.mn[h], sum = 0;
            if (mnew > mx[h] && l[h] > 0) { /* rescale what was summed under the old max */
                float corr = lanes_exp(mx[h] - mnew);
                for (int64_t i = 0; i < split; i++) o[h * ldo + i] *= corr;
                l[h] *= corr;
            }
            uint8_t *wq = w.w + h * Q8_BLOCK;
#ifdef WHALE_X86
            if (vnni) weights_x(s, w.rs, nb, mnew, &sum, wq, w.ws + h);
            else
#endif
                weights_portable(s, w.rs, nb, mnew, &sum, wq, w.ws + h);
            l[h] += sum;
            mx[h] = mnew;
        }
#ifdef WHALE_X86
        if (vnni) accum_x(o, ldo, &w, n_head, blk, row_bytes, split, nb);
        else
#endif
            accum_portable(o, ldo, &w, n_head, blk, row_bytes, split, nb);
    }
}
