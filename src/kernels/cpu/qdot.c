/* qdot.c — activations quantized to 8 bits and integer dot products against quantized weight
 * rows (kernels/qdot.h): the quantizer, the portable reference of every kernel, and the call of
 * the level in force (kernels/isa.h): AVX-512 VNNI (cpu/qdot_avx512.c), AVX2 (cpu/qdot_avx2.c)
 * or portable. All three compute the same float operations lane for lane: the same bits on
 * every CPU. */
#include <math.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/qdot.h"

int op_qdot_supported(whale_dtype t) {
    return t == WHALE_DTYPE_Q8_0 || t == WHALE_DTYPE_Q4_0 || t == WHALE_DTYPE_Q5_0 || t == WHALE_DTYPE_Q4_K ||
           t == WHALE_DTYPE_Q5_K || t == WHALE_DTYPE_Q6_K;
}

#if defined(__x86_64__)
void qdot_avx512_quantize(qact_block *out, const float *x, int64_t n);
void qdot_avx2_quantize(qact_block *out, const float *x, int64_t n);
#endif

void op_quantize_act(qact_block *out, const float *x, int64_t n) {
#if defined(__x86_64__)
    isa_level level = isa_level_get();
    if (level != ISA_SCALAR) {
        (level == ISA_AVX512 ? qdot_avx512_quantize : qdot_avx2_quantize)(out, x, n);
        return;
    }
#endif
    for (int64_t b = 0; b < n / QACT_BLOCK; b++, x += QACT_BLOCK) {
        float amax = 0;
        for (int i = 0; i < QACT_BLOCK; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < QACT_BLOCK; i++) {
            int q = (int)lrintf(x[i] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            out[b].q[i] = (int8_t)q;
            if (i < 16) s0 += q;
            else s1 += q;
        }
        out[b].d = d;
        out[b].s16[0] = (int16_t)s0;
        out[b].s16[1] = (int16_t)s1;
    }
}

/* ---- portable reference ------------------------------------------------------------------
 * The reference computes exactly what the AVX-512 kernels compute, lane for lane, so every
 * level gives the same bits (a model's output does not depend on the CPU it runs on, and the
 * tests compare levels for equality). A row is taken in chunks of 64 elements (two activation
 * blocks); a chunk is 16 lanes of 4 elements:
 *   p = float(the exact integer sum of q * a over the lane's 4 elements)
 *   sum[chunk parity][lane] = fmaf(p, rs * ts, ...)    rs: the weight's scale for the lane,
 *                                                      ts: the activation block's d
 * K-quants with minimums then subtract (dmin * m_g) * (d_x * sum of the block) in lane g of
 * the even sums, once per super-block. The result is the sum of the 32 lane sums in the fixed
 * tree of qx_hsum (kernels/cpu/qdot_avx512.c). */

static float rd_f16(const uint8_t *p) { return fp16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

typedef struct lanes {
    float even[16], odd[16];
} lanes;

/* Chunk k: q (64 signed weight values) against a (64 activations), lane scales rs, ts. */
static void lanes_chunk(lanes *L, int64_t k, const int *q, const int8_t *a, const float *rs, const float *ts) {
    float *acc = k % 2 ? L->odd : L->even;
    for (int l = 0; l < 16; l++) {
        int32_t dot = 0;
        for (int j = 4 * l; j < 4 * l + 4; j++) dot += q[j] * a[j];
        acc[l] = fmaf((float)dot, rs[l] * ts[l], acc[l]);
    }
}

static float lanes_sum(const lanes *L) {
    float v[16], h[8];
    for (int l = 0; l < 16; l++) v[l] = L->even[l] + L->odd[l];
    for (int l = 0; l < 8; l++) h[l] = v[l] + v[l + 8];
    for (int l = 0; l < 4; l++) h[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++) h[l] = h[l] + h[l + 2];
    return h[0] + h[1];
}

static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Weight value j (0..31) of a 32-element block, offset removed. */
static int q32(whale_dtype t, const uint8_t *b, int j) {
    if (t == WHALE_DTYPE_Q8_0) return (int8_t)b[2 + j];
    const uint8_t *qs = b + (t == WHALE_DTYPE_Q5_0 ? 6 : 2);
    int v = j < 16 ? qs[j] & 0xf : qs[j - 16] >> 4;
    if (t == WHALE_DTYPE_Q4_0) return v - 8;
    uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    return (v | (int)((qh >> j) & 1) << 4) - 16;
}

/* dot(row, x) for n elements, as the AVX-512 kernels compute it. */
static float dot_portable(whale_dtype t, const uint8_t *w, const qact_block *x, int64_t n) {
    lanes L;
    memset(&L, 0, sizeof L);
    int q[64];
    int8_t a[64];
    float rs[16], ts[16];
    if (t == WHALE_DTYPE_Q8_0 || t == WHALE_DTYPE_Q4_0 || t == WHALE_DTYPE_Q5_0) {
        size_t bb = t == WHALE_DTYPE_Q8_0 ? 34 : t == WHALE_DTYPE_Q4_0 ? 18 : 22;
        int64_t nb = n / 32;
        for (int64_t k = 0; 2 * k < nb; k++) {
            const uint8_t *b0 = w + (size_t)(2 * k) * bb;
            int half = 2 * k + 1 == nb; /* odd block count: the second half of the chunk is zero */
            const uint8_t *b1 = half ? b0 : b0 + bb;
            for (int j = 0; j < 32; j++) {
                q[j] = q32(t, b0, j), a[j] = x[2 * k].q[j];
                q[32 + j] = half ? 0 : q32(t, b1, j), a[32 + j] = half ? 0 : x[2 * k + 1].q[j];
            }
            for (int l = 0; l < 8; l++) {
                rs[l] = rd_f16(b0), rs[8 + l] = rd_f16(b1);
                ts[l] = x[2 * k].d, ts[8 + l] = half ? 0.0f : x[2 * k + 1].d;
            }
            lanes_chunk(&L, k, q, a, rs, ts);
        }
        return lanes_sum(&L);
    }
    int q6 = t == WHALE_DTYPE_Q6_K, q5 = t == WHALE_DTYPE_Q5_K;
    size_t bb = q6 ? 210 : q5 ? 176 : 144;
    for (int64_t s = 0; s < n / 256; s++, w += bb) {
        const qact_block *xs = x + 8 * s;
        float scale[16]; /* Q4_K/Q5_K: d*sc_g (g < 8), dmin*m_g (8 + g); Q6_K: d*sc_k per 16 */
        if (q6) {
            for (int k = 0; k < 16; k++) scale[k] = (float)(int8_t)w[192 + k] * rd_f16(w + 208);
        } else {
            for (int g = 0; g < 8; g++) {
                int sc, m;
                k_scale_min(w + 4, g, &sc, &m);
                scale[g] = (float)sc * rd_f16(w), scale[8 + g] = (float)m * rd_f16(w + 2);
            }
        }
        for (int c = 0; c < 4; c++) {
            for (int j = 0; j < 64; j++) {
                int e = 64 * c + j, g = e / 32, l = e % 32;
                if (q6) {
                    int h = e / 128, sub = (e % 128) / 32;
                    uint8_t lb = w[64 * h + 32 * (sub % 2) + l];
                    int lo = sub < 2 ? lb & 0xf : lb >> 4, hi = (w[128 + 32 * h + l] >> (2 * sub)) & 3;
                    q[j] = (lo | hi << 4) - 32;
                } else {
                    const uint8_t *qs = w + (q5 ? 48 : 16);
                    q[j] = g % 2 ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xf;
                    if (q5) q[j] |= ((w[16 + l] >> g) & 1) << 4;
                }
                a[j] = xs[g].q[l];
            }
            for (int l = 0; l < 16; l++) {
                rs[l] = q6 ? scale[4 * c + l / 4] : scale[2 * c + l / 8];
                ts[l] = xs[2 * c + l / 8].d;
            }
            lanes_chunk(&L, c, q, a, rs, ts);
        }
        if (!q6)
            for (int g = 0; g < 8; g++)
                L.even[g] = fmaf(-scale[8 + g], xs[g].d * (float)(xs[g].s16[0] + xs[g].s16[1]), L.even[g]);
    }
    return lanes_sum(&L);
}

/* ---- dispatch and driver ------------------------------------------------------------------- */

#if defined(__x86_64__)
int qdot_avx2_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const qact_block *X, int64_t n_in,
                   int64_t n_tok, int64_t r0, int64_t r1);
int qdot_avx512_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const qact_block *X, int64_t n_in,
                     int64_t n_tok, int64_t r0, int64_t r1);
#endif

void op_matmul_rows_q(float *Y, int64_t ldy, const void *W, whale_dtype t, const qact_block *X, int64_t n_in,
                      int64_t n_tok, int64_t r0, int64_t r1) {
#if defined(__x86_64__)
    isa_level level = isa_level_get();
    if (level == ISA_AVX512 && !qdot_avx512_rows(Y, ldy, W, t, X, n_in, n_tok, r0, r1)) return;
    if (level == ISA_AVX2 && !qdot_avx2_rows(Y, ldy, W, t, X, n_in, n_tok, r0, r1)) return;
#endif
    /* portable, and rows too long for the AVX-512 kernels' buffers: the same bits, slowly */
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    int64_t nb = n_in / QACT_BLOCK;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t b = 0; b < n_tok; b++)
            Y[b * ldy + r] = dot_portable(t, (const uint8_t *)W + (size_t)r * rb, X + b * nb, n_in);
}
