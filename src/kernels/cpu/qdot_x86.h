/* qdot_x86.h — the x86 integer dot-product kernels of kernels/qdot.h, written once and compiled
 * twice: qdot_avx2.c (QD_TARGET "avx2,fma,f16c", products summed with maddubs + madd) and
 * qdot_vnni.c (AVX-512 VNNI on 256-bit vectors: one dpbusd). The including file defines
 * QD_TARGET, QD_DOT(u8, s8) -> 8 int32 lanes, lane k summing bytes 4k..4k+3 of u * s, and
 * QD_NAME(name).
 *
 * Each kernel takes one weight row and a group of g tokens (1..4): a weight block is unpacked
 * once into registers and multiplied with every token of the group. Each token keeps its own
 * 8-lane float sum and scalar correction, updated in the same order whatever g is. */
#include <immintrin.h>
#include <string.h>

#include "kernels/qdot.h"

#define QD __attribute__((target(QD_TARGET))) static inline
#define QD_MAXG 4

QD float qd_f16(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | p[1] << 8)); }

QD float qd_hsum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles first (elements 0..15), then high (16..31). */
QD __m256i qd_nibbles(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* Byte j (0..31) = 0x10 where bit j of bits is set, else 0. */
QD __m256i qd_bit4(uint32_t bits) {
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                         _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                           0x0101010101010101, 0x0000000000000000));
    __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, sel), sel), _mm256_set1_epi8(0x10));
}

QD __m256i qd_load(const int8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

#define QD_FINISH()                                                                            \
    for (int t = 0; t < g; t++) out[t] = qd_hsum(acc[t]) - corr[t]

#define QD_SETUP()                                                                             \
    __m256 acc[QD_MAXG];                                                                       \
    float corr[QD_MAXG];                                                                       \
    for (int t = 0; t < g; t++) acc[t] = _mm256_setzero_ps(), corr[t] = 0

/* Unsigned weights u (0..2^k) with a per-block float factor f(t) and an offset correction
 * c(t) subtracted: acc += cvt(dot(u, x)) * f; corr += c. */
#define QD_ACCUM(u, xb, f, c)                                                                  \
    for (int t = 0; t < g; t++) {                                                              \
        const qact_block *xb_ = (xb);                                                          \
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(QD_DOT(u, qd_load(xb_->q))), _mm256_set1_ps(f), acc[t]); \
        corr[t] += (c);                                                                        \
    }

QD void QD_NAME(q8_0)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nb, float *out) {
    QD_SETUP();
    for (int64_t i = 0; i < nb; i++, w += 34) {
        float dw = qd_f16(w);
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 2)), aq = _mm256_sign_epi8(q, q);
        for (int t = 0; t < g; t++) { /* signed x signed: |w| times x with w's sign */
            const qact_block *x = xs[t] + i;
            __m256i sx = _mm256_sign_epi8(qd_load(x->q), q);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(QD_DOT(aq, sx)), _mm256_set1_ps(dw * x->d), acc[t]);
        }
    }
    QD_FINISH();
}

QD void QD_NAME(q4_0)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nb, float *out) {
    QD_SETUP();
    for (int64_t i = 0; i < nb; i++, w += 18) {
        float dw = qd_f16(w);
        __m256i q = qd_nibbles(w + 2);
        QD_ACCUM(q, xs[t] + i, dw * xs[t][i].d, 8.0f * dw * xs[t][i].d * (float)(xs[t][i].s16[0] + xs[t][i].s16[1]));
    }
    QD_FINISH();
}

QD void QD_NAME(q5_0)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nb, float *out) {
    QD_SETUP();
    for (int64_t i = 0; i < nb; i++, w += 22) {
        float dw = qd_f16(w);
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        __m256i q = _mm256_or_si256(qd_nibbles(w + 6), qd_bit4(qh));
        QD_ACCUM(q, xs[t] + i, dw * xs[t][i].d, 16.0f * dw * xs[t][i].d * (float)(xs[t][i].s16[0] + xs[t][i].s16[1]));
    }
    QD_FINISH();
}

/* Q4_K / Q5_K (scale, min) pair j of the 12 packed scale bytes. */
QD void qd_k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K (hbits NULL) and Q5_K: eight 32-element groups per 256, each with its own scale and min. */
QD void qd_k45(const uint8_t *w, const qact_block *const *xs, int g, int64_t nsb, float *out, int q5) {
    QD_SETUP();
    const __m256i low = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    size_t bytes = q5 ? 176 : 144;
    for (int64_t s = 0; s < nsb; s++, w += bytes) {
        float d = qd_f16(w), dmin = qd_f16(w + 2);
        const uint8_t *qs = w + (q5 ? 48 : 16);
        __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) {
            int sc, m;
            qd_k_scale_min(w + 4, j, &sc, &m);
            __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));
            __m256i q = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(raw, 4) : raw, low);
            if (q5) q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), one), 4));
            float ds = d * (float)sc, dm = dmin * (float)m;
            int64_t xi = s * 8 + j;
            QD_ACCUM(q, xs[t] + xi, ds * xs[t][xi].d, dm * xs[t][xi].d * (float)(xs[t][xi].s16[0] + xs[t][xi].s16[1]));
        }
    }
    QD_FINISH();
}

QD void QD_NAME(q4_k)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nsb, float *out) {
    qd_k45(w, xs, g, nsb, out, 0);
}

QD void QD_NAME(q5_k)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nsb, float *out) {
    qd_k45(w, xs, g, nsb, out, 1);
}

/* Q6_K: 6-bit unsigned q (offset 32) with an int8 scale per 16 elements, so each 32-element
 * group has two scales: lanes 0..3 of the dot hold elements 0..15, lanes 4..7 elements 16..31. */
QD void QD_NAME(q6_k)(const uint8_t *w, const qact_block *const *xs, int g, int64_t nsb, float *out) {
    QD_SETUP();
    const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(3);
    for (int64_t s = 0; s < nsb; s++, w += 210) {
        float d = qd_f16(w + 208);
        const int8_t *scales = (const int8_t *)(w + 192);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h;
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w + 128 + 32 * h));
            for (int k = 0; k < 4; k++) {
                __m256i lb = _mm256_loadu_si256((const __m256i *)(ql + 32 * (k % 2)));
                __m256i lo = _mm256_and_si256(k < 2 ? lb : _mm256_srli_epi16(lb, 4), low);
                __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), three), 4);
                __m256i q = _mm256_or_si256(lo, hi);
                int sc0 = scales[8 * h + 2 * k], sc1 = scales[8 * h + 2 * k + 1];
                __m256 scv = _mm256_set_ps((float)sc1, (float)sc1, (float)sc1, (float)sc1, (float)sc0, (float)sc0,
                                           (float)sc0, (float)sc0);
                int64_t xi = s * 8 + 4 * h + k;
                for (int t = 0; t < g; t++) {
                    const qact_block *x = xs[t] + xi;
                    float f = d * x->d;
                    __m256 p = _mm256_cvtepi32_ps(QD_DOT(q, qd_load(x->q)));
                    acc[t] = _mm256_fmadd_ps(p, _mm256_mul_ps(scv, _mm256_set1_ps(f)), acc[t]);
                    corr[t] += 32.0f * f * (float)(sc0 * x->s16[0] + sc1 * x->s16[1]);
                }
            }
        }
    }
    QD_FINISH();
}

/* One row against g tokens; n_in elements. Returns 0, or -1 for a type without a kernel. */
__attribute__((target(QD_TARGET))) int QD_NAME(row)(whale_dtype t, const uint8_t *w, const qact_block *const *xs, int g,
                                                   int64_t n_in, float *out) {
    switch (t) {
    case WHALE_DTYPE_Q8_0: QD_NAME(q8_0)(w, xs, g, n_in / 32, out); return 0;
    case WHALE_DTYPE_Q4_0: QD_NAME(q4_0)(w, xs, g, n_in / 32, out); return 0;
    case WHALE_DTYPE_Q5_0: QD_NAME(q5_0)(w, xs, g, n_in / 32, out); return 0;
    case WHALE_DTYPE_Q4_K: QD_NAME(q4_k)(w, xs, g, n_in / 256, out); return 0;
    case WHALE_DTYPE_Q5_K: QD_NAME(q5_k)(w, xs, g, n_in / 256, out); return 0;
    case WHALE_DTYPE_Q6_K: QD_NAME(q6_k)(w, xs, g, n_in / 256, out); return 0;
    default: return -1;
    }
}
