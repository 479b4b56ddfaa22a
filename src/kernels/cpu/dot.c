/* dot.c — dot products of one quantized weight row with an F32 vector, computed block by
 * block without writing the dequantized row out (the decode path: one token, every weight
 * byte read once). Plain C with fixed-length inner loops the compiler vectorizes; types without
 * a fused loop here dequantize one block at a time into a stack buffer. Tested against
 * dequantize_row + op_dot (tests/unit/test_kernels.c). */
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

/* Float sums may not be reordered by the compiler, so each loop keeps LANES independent
 * partial sums: that is what lets it use vector registers (and fixes the summation order). */
#define LANES 8

static float lanes_sum(const float *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static float f16(const uint8_t *p) { return fp16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* Q8_0: 34-byte blocks {d f16, q int8[32]}: sum d * q * x. */
static float dot_q8_0(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32) {
        float acc[LANES] = {0};
        for (int j = 0; j < 32; j += LANES)
            for (int k = 0; k < LANES; k++) acc[k] += (float)(int8_t)b[2 + j + k] * x[j + k];
        s += lanes_sum(acc) * f16(b);
    }
    return s;
}

/* Q4_0: 18-byte blocks {d f16, qs[16]}: elements j and j+16 are the low and high nibbles of qs[j], minus 8. */
static float dot_q4_0(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++, b += 18, x += 32) {
        float acc[LANES] = {0};
        for (int j = 0; j < 16; j += LANES)
            for (int k = 0; k < LANES; k++)
                acc[k] += (float)((b[2 + j + k] & 0xf) - 8) * x[j + k] + (float)((b[2 + j + k] >> 4) - 8) * x[j + k + 16];
        s += lanes_sum(acc) * f16(b);
    }
    return s;
}

/* Q5_0: 22-byte blocks {d f16, qh u32, qs[16]}: as Q4_0 with a fifth bit from qh, minus 16. */
static float dot_q5_0(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++, b += 22, x += 32) {
        uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        const uint8_t *qs = b + 6;
        float acc[LANES] = {0};
        for (int j = 0; j < 16; j += LANES)
            for (int k = 0; k < LANES; k++) {
                int lo = (qs[j + k] & 0xf) | (int)((qh >> (j + k)) & 1) << 4;
                int hi = (qs[j + k] >> 4) | (int)((qh >> (j + k + 16)) & 1) << 4;
                acc[k] += (float)(lo - 16) * x[j + k] + (float)(hi - 16) * x[j + k + 16];
            }
        s += lanes_sum(acc) * f16(b);
    }
    return s;
}

/* Q4_K: 144-byte super-blocks of 256 (layout in formats/dtype.c): per 32-element group g,
 * x = d*sc[g]*q - dmin*m[g], so the group contributes d*sc*sum(q*x) - dmin*m*sum(x). */
static float dot_q4_k(const uint8_t *b, const float *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++, b += 144, x += 256) {
        float d = f16(b), dmin = f16(b + 2);
        const uint8_t *sc6 = b + 4, *qs = b + 16;
        for (int c = 0; c < 4; c++) {
            for (int half = 0; half < 2; half++) {
                int g = 2 * c + half, sc, m;
                if (g < 4) { sc = sc6[g] & 63; m = sc6[g + 4] & 63; }
                else { sc = (sc6[g + 4] & 0xf) | (sc6[g - 4] >> 6) << 4; m = (sc6[g + 4] >> 4) | (sc6[g] >> 6) << 4; }
                const float *xg = x + 32 * g;
                float qx[LANES] = {0}, sx[LANES] = {0};
                for (int l = 0; l < 32; l += LANES)
                    for (int k = 0; k < LANES; k++) {
                        int q = half ? qs[32 * c + l + k] >> 4 : qs[32 * c + l + k] & 0xf;
                        qx[k] += (float)q * xg[l + k];
                        sx[k] += xg[l + k];
                    }
                s += d * (float)sc * lanes_sum(qx) - dmin * (float)m * lanes_sum(sx);
            }
        }
    }
    return s;
}

static float dot_f16(const uint8_t *b, const float *x, int64_t n) {
    float s0 = 0, s1 = 0;
    int64_t i = 0;
    for (; i + 2 <= n; i += 2) {
        s0 += f16(b + 2 * i) * x[i];
        s1 += f16(b + 2 * i + 2) * x[i + 1];
    }
    if (i < n) s0 += f16(b + 2 * i) * x[i];
    return s0 + s1;
}

static float dot_bf16(const uint8_t *b, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)(b[2 * i] | b[2 * i + 1] << 8) << 16;
        float w;
        memcpy(&w, &u, 4);
        s += w * x[i];
    }
    return s;
}

int kernels_dot_row_avx2(whale_dtype t, const void *row, const float *x, int64_t n, float *out);
int kernels_have_avx2(void);

/* Set WHALE_NO_SIMD=1 to force the portable loops (comparisons, debugging). */
static int use_simd(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("WHALE_NO_SIMD");
        v = !(e && *e && *e != '0') && kernels_have_avx2();
    }
    return v;
}

float op_dot_row(whale_dtype t, const void *row, const float *x, int64_t n) {
    const uint8_t *b = row;
    float r;
    if (use_simd() && kernels_dot_row_avx2(t, row, x, n, &r)) return r;
    switch (t) {
    case WHALE_DTYPE_F32: return op_dot(row, x, n);
    case WHALE_DTYPE_F16: return dot_f16(b, x, n);
    case WHALE_DTYPE_BF16: return dot_bf16(b, x, n);
    case WHALE_DTYPE_Q8_0: return dot_q8_0(b, x, n / 32);
    case WHALE_DTYPE_Q4_0: return dot_q4_0(b, x, n / 32);
    case WHALE_DTYPE_Q5_0: return dot_q5_0(b, x, n / 32);
    case WHALE_DTYPE_Q4_K: return dot_q4_k(b, x, n / 256);
    default: {
        const dtype_info *di = dtype_get(t);
        float buf[256];
        float s = 0;
        int64_t be = di->block_elems;
        int64_t per = be >= 256 ? 1 : 256 / be; /* blocks per stack buffer */
        for (int64_t i = 0; i < n; i += per * be) {
            int64_t k = n - i < per * be ? n - i : per * be;
            dequantize_row(t, b + (size_t)(i / be) * di->block_bytes, buf, k);
            s += op_dot(buf, x + i, k);
        }
        return s;
    }
    }
}
