/* attn.c — multi-query attention kernels (kernels/attn.h): scores of many heads against shared
 * key rows, and the probability-weighted sum of shared value rows, with an AVX-512 version
 * picked at run time and portable loops beside it.
 *
 * Scores: four positions at a time, so each query load feeds four fused multiply-adds and each
 * key row is read once per head from L1. Accumulation: 64 output columns of one head held in
 * four registers while the positions stream by.
 *
 * The portable loops compute the same float operations as the AVX-512 ones (16 lanes of fused
 * multiply-adds summed in one fixed tree; each output column's multiply-adds in position
 * order), so both give the same bits and a model's output does not depend on the CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dtype.h"
#include "kernels/attn.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WHALE_X86 1
#include <immintrin.h>
#endif

static int g_force_portable;

void op_mqa_force_portable(int on) { g_force_portable = on; }

/* The sum of 16 lanes in the AVX-512 kernels' order: lanes i and i + 8, then halves of 4, 2, 1. */
static float lanes16_sum(const float *c) {
    float h[8];
    for (int l = 0; l < 8; l++) h[l] = c[l] + c[l + 8];
    for (int l = 0; l < 4; l++) h[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++) h[l] = h[l] + h[l + 2];
    return h[0] + h[1];
}

/* dot(a, b) over d elements as 16 lanes of fused multiply-adds (lane l: elements l, l+16, ...;
 * a partial last chunk adds 0 * 0 in its empty lanes, as the masked loads do). */
static float dot16(const float *a, const float *b, const uint16_t *b16, int64_t d) {
    float c[16] = {0};
    for (int64_t i = 0; i < d; i += 16)
        for (int l = 0; l < 16; l++) {
            int in = i + l < d;
            float x = in ? a[i + l] : 0.0f, y = !in ? 0.0f : b16 ? fp16_to_f32(b16[i + l]) : b[i + l];
            c[l] = fmaf(x, y, c[l]);
        }
    return lanes16_sum(c);
}

static void scores_portable(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const float *k,
                            int64_t ldk, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t t = 0; t < n_pos; t++) s[h * lds + t] = dot16(q + h * ldq, k + t * ldk, NULL, d);
}

static void scores_f16_portable(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                                int64_t ldk, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t t = 0; t < n_pos; t++) s[h * lds + t] = dot16(q + h * ldq, NULL, k + t * ldk, d);
}

static void accum_portable(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const float *v,
                           int64_t ldv, int64_t n_pos, int64_t d) {
    for (int64_t h = 0; h < n_head; h++) {
        float *out = o + h * ldo;
        for (int64_t t = 0; t < n_pos; t++) {
            float w = p[h * ldp + t];
            const float *row = v + t * ldv;
            for (int64_t i = 0; i < d; i++) out[i] = fmaf(w, row[i], out[i]);
        }
    }
}

#ifdef WHALE_X86
/* lanes16_sum on a register (not _mm512_reduce_add_ps, whose order is the compiler's). */
__attribute__((target("avx512f,avx512dq"))) static inline float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

__attribute__((target("avx512f,avx512dq"))) static void scores_avx512(float *s, int64_t lds, const float *q, int64_t ldq,
                                                             int64_t n_head, const float *k, int64_t ldk,
                                                             int64_t n_pos, int64_t d) {
    int64_t full = d & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u);
    int64_t t = 0;
    for (; t + 4 <= n_pos; t += 4) {
        const float *k0 = k + t * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        int64_t h = 0;
        for (; h + 4 <= n_head; h += 4) { /* 4 heads x 4 positions: 16 products per 8 loads */
            __m512 c[4][4];
#pragma GCC unroll 4
            for (int a = 0; a < 4; a++)
#pragma GCC unroll 4
                for (int b = 0; b < 4; b++) c[a][b] = _mm512_setzero_ps();
            const float *kk[4] = {k0, k1, k2, k3};
            for (int64_t i = 0; i < full; i += 16) {
                __m512 kv[4];
#pragma GCC unroll 4
                for (int b = 0; b < 4; b++) kv[b] = _mm512_loadu_ps(kk[b] + i);
#pragma GCC unroll 4
                for (int a = 0; a < 4; a++) {
                    __m512 x = _mm512_loadu_ps(q + (h + a) * ldq + i);
#pragma GCC unroll 4
                    for (int b = 0; b < 4; b++) c[a][b] = _mm512_fmadd_ps(x, kv[b], c[a][b]);
                }
            }
            if (tail)
#pragma GCC unroll 4
                for (int a = 0; a < 4; a++) {
                    __m512 x = _mm512_maskz_loadu_ps(tail, q + (h + a) * ldq + full);
#pragma GCC unroll 4
                    for (int b = 0; b < 4; b++) c[a][b] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, kk[b] + full), c[a][b]);
                }
#pragma GCC unroll 4
            for (int a = 0; a < 4; a++)
#pragma GCC unroll 4
                for (int b = 0; b < 4; b++) s[(h + a) * lds + t + b] = hsum16(c[a][b]);
        }
        for (; h < n_head; h++) {
            const float *a = q + h * ldq;
            __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t i = 0; i < full; i += 16) {
                __m512 x = _mm512_loadu_ps(a + i);
                c0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + i), c0);
                c1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k1 + i), c1);
                c2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k2 + i), c2);
                c3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k3 + i), c3);
            }
            if (tail) {
                __m512 x = _mm512_maskz_loadu_ps(tail, a + full);
                c0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k0 + full), c0);
                c1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k1 + full), c1);
                c2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k2 + full), c2);
                c3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(tail, k3 + full), c3);
            }
            float *o = s + h * lds + t;
            o[0] = hsum16(c0);
            o[1] = hsum16(c1);
            o[2] = hsum16(c2);
            o[3] = hsum16(c3);
        }
    }
    for (; t < n_pos; t++) {
        const float *k0 = k + t * ldk;
        for (int64_t h = 0; h < n_head; h++) {
            const float *a = q + h * ldq;
            __m512 c0 = _mm512_setzero_ps();
            for (int64_t i = 0; i < full; i += 16) c0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(k0 + i), c0);
            if (tail)
                c0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + full), _mm512_maskz_loadu_ps(tail, k0 + full), c0);
            s[h * lds + t] = hsum16(c0);
        }
    }
}

/* Half-float keys: each 16-wide chunk widened with vcvtph2ps (AVX-512F) before the multiply. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m512 ld16(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) static void scores_f16_avx512(
    float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const uint16_t *k, int64_t ldk, int64_t n_pos,
    int64_t d) {
    int64_t full = d & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u), all = (__mmask16)0xFFFF;
    int64_t t = 0;
    for (; t + 4 <= n_pos; t += 4) {
        const uint16_t *k0 = k + t * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        for (int64_t h = 0; h < n_head; h++) {
            const float *a = q + h * ldq;
            __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t i = 0; i < full; i += 16) {
                __m512 x = _mm512_loadu_ps(a + i);
                c0 = _mm512_fmadd_ps(x, ld16(k0 + i, all), c0);
                c1 = _mm512_fmadd_ps(x, ld16(k1 + i, all), c1);
                c2 = _mm512_fmadd_ps(x, ld16(k2 + i, all), c2);
                c3 = _mm512_fmadd_ps(x, ld16(k3 + i, all), c3);
            }
            if (tail) {
                __m512 x = _mm512_maskz_loadu_ps(tail, a + full);
                c0 = _mm512_fmadd_ps(x, ld16(k0 + full, tail), c0);
                c1 = _mm512_fmadd_ps(x, ld16(k1 + full, tail), c1);
                c2 = _mm512_fmadd_ps(x, ld16(k2 + full, tail), c2);
                c3 = _mm512_fmadd_ps(x, ld16(k3 + full, tail), c3);
            }
            float *o = s + h * lds + t;
            o[0] = hsum16(c0);
            o[1] = hsum16(c1);
            o[2] = hsum16(c2);
            o[3] = hsum16(c3);
        }
    }
    for (; t < n_pos; t++) {
        const uint16_t *k0 = k + t * ldk;
        for (int64_t h = 0; h < n_head; h++) {
            const float *a = q + h * ldq;
            __m512 c0 = _mm512_setzero_ps();
            for (int64_t i = 0; i < full; i += 16) c0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), ld16(k0 + i, all), c0);
            if (tail) c0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + full), ld16(k0 + full, tail), c0);
            s[h * lds + t] = hsum16(c0);
        }
    }
}

__attribute__((target("avx512f"))) static void accum_avx512(float *o, int64_t ldo, const float *p, int64_t ldp,
                                                            int64_t n_head, const float *v, int64_t ldv,
                                                            int64_t n_pos, int64_t d) {
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) {
        int64_t h0 = 0;
        for (; h0 + 4 <= n_head; h0 += 4) { /* 4 heads x 64 lanes: 16 products per 8 loads */
            __m512 acc[4][4];
#pragma GCC unroll 4
            for (int a = 0; a < 4; a++)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[a][c] = _mm512_loadu_ps(o + (h0 + a) * ldo + i + 16 * c);
            for (int64_t t = 0; t < n_pos; t++) {
                const float *row = v + t * ldv + i;
                __m512 r[4];
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) r[c] = _mm512_loadu_ps(row + 16 * c);
#pragma GCC unroll 4
                for (int a = 0; a < 4; a++) {
                    __m512 w = _mm512_set1_ps(p[(h0 + a) * ldp + t]);
#pragma GCC unroll 4
                    for (int c = 0; c < 4; c++) acc[a][c] = _mm512_fmadd_ps(w, r[c], acc[a][c]);
                }
            }
#pragma GCC unroll 4
            for (int a = 0; a < 4; a++)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) _mm512_storeu_ps(o + (h0 + a) * ldo + i + 16 * c, acc[a][c]);
        }
        for (int64_t h = h0; h < n_head; h++) {
            float *out = o + h * ldo + i;
            const float *ph = p + h * ldp;
            __m512 a0 = _mm512_loadu_ps(out), a1 = _mm512_loadu_ps(out + 16);
            __m512 a2 = _mm512_loadu_ps(out + 32), a3 = _mm512_loadu_ps(out + 48);
            for (int64_t t = 0; t < n_pos; t++) {
                __m512 w = _mm512_set1_ps(ph[t]);
                const float *row = v + t * ldv + i;
                a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row), a0);
                a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 16), a1);
                a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 32), a2);
                a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(row + 48), a3);
            }
            _mm512_storeu_ps(out, a0);
            _mm512_storeu_ps(out + 16, a1);
            _mm512_storeu_ps(out + 32, a2);
            _mm512_storeu_ps(out + 48, a3);
        }
    }
    for (; i < d; i += 16) {
        __mmask16 m = d - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (d - i)) - 1u);
        for (int64_t h = 0; h < n_head; h++) {
            float *out = o + h * ldo + i;
            __m512 a0 = _mm512_maskz_loadu_ps(m, out);
            for (int64_t t = 0; t < n_pos; t++)
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[h * ldp + t]), _mm512_maskz_loadu_ps(m, v + t * ldv + i), a0);
            _mm512_mask_storeu_ps(out, m, a0);
        }
    }
}

static int have_avx512(void) {
    static int have = -1;
    if (have < 0) {
        const char *e = getenv("WHALE_NO_SIMD");
        have = !(e && *e && strcmp(e, "0")) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
    }
    return have && !g_force_portable;
}
#endif

void op_mqa_scores(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const float *k, int64_t ldk,
                   int64_t n_pos, int64_t d) {
#ifdef WHALE_X86
    if (have_avx512()) {
        scores_avx512(s, lds, q, ldq, n_head, k, ldk, n_pos, d);
        return;
    }
#endif
    scores_portable(s, lds, q, ldq, n_head, k, ldk, n_pos, d);
}

void op_mqa_scores_f16(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                       int64_t ldk, int64_t n_pos, int64_t d) {
#ifdef WHALE_X86
    if (have_avx512()) {
        scores_f16_avx512(s, lds, q, ldq, n_head, k, ldk, n_pos, d);
        return;
    }
#endif
    scores_f16_portable(s, lds, q, ldq, n_head, k, ldk, n_pos, d);
}

void op_mqa_accum(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const float *v, int64_t ldv,
                  int64_t n_pos, int64_t d) {
#ifdef WHALE_X86
    if (have_avx512()) {
        accum_avx512(o, ldo, p, ldp, n_head, v, ldv, n_pos, d);
        return;
    }
#endif
    accum_portable(o, ldo, p, ldp, n_head, v, ldv, n_pos, d);
}

void op_mqa_attend(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                   const float *k, int64_t ldk, int64_t dk, const float *v, int64_t ldv, int64_t dv, int64_t n_pos,
                   float *scratch) {
    for (int64_t b = 0; b < n_pos; b += OP_MQA_BLOCK) {
        int64_t nb = n_pos - b < OP_MQA_BLOCK ? n_pos - b : OP_MQA_BLOCK;
        op_mqa_scores(scratch, OP_MQA_BLOCK, q, ldq, n_head, k + b * ldk, ldk, nb, dk);
        for (int64_t h = 0; h < n_head; h++) {
            float *s = scratch + h * OP_MQA_BLOCK, mnew = mx[h], sum = 0;
            for (int64_t t = 0; t < nb; t++) mnew = s[t] > mnew ? s[t] : mnew;
            if (mnew > mx[h] && l[h] > 0) { /* rescale what was summed under the old max */
                float corr = expf(mx[h] - mnew);
                for (int64_t i = 0; i < dv; i++) o[h * ldo + i] *= corr;
                l[h] *= corr;
            }
            for (int64_t t = 0; t < nb; t++) sum += s[t] = expf(s[t] - mnew);
            l[h] += sum;
            mx[h] = mnew;
        }
        op_mqa_accum(o, ldo, scratch, OP_MQA_BLOCK, n_head, v + b * ldv, ldv, nb, dv);
    }
}
