/* quantize.c — F32 rows to the types Whale writes: F32, F16, BF16, Q8_0, Q4_K, Q6_K.
 * Each writes exactly the block layout dtype.c documents and dequantizes; the scales are
 * chosen from each block's range (no iterative search yet, so Q4_K/Q6_K files from Whale are
 * somewhat less accurate than llama.cpp's for real weights; fine for synthetic ones).
 * dequantize_row is the inverse each of these is tested against. */
#include <math.h>
#include <string.h>

#include "formats/dtype.h"

int quantize_supported(whale_dtype t) {
    return t == WHALE_DTYPE_F32 || t == WHALE_DTYPE_F16 || t == WHALE_DTYPE_BF16 || t == WHALE_DTYPE_Q8_0 ||
           t == WHALE_DTYPE_Q4_K || t == WHALE_DTYPE_Q6_K;
}

static void put_f16(uint8_t *p, float v) {
    uint16_t h = f32_to_fp16(v);
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q4_K (144 bytes per 256): per 32-element group g, x ~ d*sc[g]*q - dmin*m[g], q in 0..15,
 * sc and m 6-bit; a group's minimum (at most 0) is what m*dmin subtracts. */
static void q4_k_block(const float *x, uint8_t *b) {
    float scale[8], minv[8], dmax = 0, mmax = 0;
    for (int g = 0; g < 8; g++) {
        float lo = x[32 * g], hi = x[32 * g];
        for (int l = 1; l < 32; l++) {
            lo = x[32 * g + l] < lo ? x[32 * g + l] : lo;
            hi = x[32 * g + l] > hi ? x[32 * g + l] : hi;
        }
        if (lo > 0) lo = 0;
        scale[g] = (hi - lo) / 15.0f;
        minv[g] = -lo;
        dmax = scale[g] > dmax ? scale[g] : dmax;
        mmax = minv[g] > mmax ? minv[g] : mmax;
    }
    float d = fp16_to_f32(f32_to_fp16(dmax / 63.0f)), dmin = fp16_to_f32(f32_to_fp16(mmax / 63.0f));
    int sc[8], m[8];
    for (int g = 0; g < 8; g++) {
        sc[g] = d > 0 ? clampi((int)lroundf(scale[g] / d), 0, 63) : 0;
        m[g] = dmin > 0 ? clampi((int)lroundf(minv[g] / dmin), 0, 63) : 0;
    }
    put_f16(b, d);
    put_f16(b + 2, dmin);
    uint8_t *s = b + 4, *qs = b + 16;
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
    memset(qs, 0, 128);
    for (int i = 0; i < 256; i++) {
        int g = i / 32, c = i / 64, l = i % 32;
        float ds = d * (float)sc[g];
        int q = ds > 0 ? clampi((int)lroundf((x[i] + dmin * (float)m[g]) / ds), 0, 15) : 0;
        qs[32 * c + l] |= (uint8_t)(g % 2 ? q << 4 : q);
    }
}

/* Q6_K (210 bytes per 256): per 16 elements an int8 scale; x ~ d*sc*(q-32), q in 0..63. */
static void q6_k_block(const float *x, uint8_t *b) {
    float sub[16], amax = 0;
    for (int k = 0; k < 16; k++) {
        float a = 0;
        for (int l = 0; l < 16; l++) a = fabsf(x[16 * k + l]) > a ? fabsf(x[16 * k + l]) : a;
        sub[k] = a / 31.0f;
        amax = sub[k] > amax ? sub[k] : amax;
    }
    float d = fp16_to_f32(f32_to_fp16(amax / 127.0f));
    memset(b, 0, 210);
    put_f16(b + 208, d);
    int8_t sc[16];
    for (int k = 0; k < 16; k++) sc[k] = (int8_t)(d > 0 ? clampi((int)lroundf(sub[k] / d), -127, 127) : 0);
    memcpy(b + 192, sc, 16);
    uint8_t *ql = b, *qh = b + 128;
    for (int i = 0; i < 256; i++) {
        float ds = d * (float)sc[i / 16];
        int q = (ds != 0 ? clampi((int)lroundf(x[i] / ds), -32, 31) : 0) + 32;
        int h = i / 128, s = (i % 128) / 32, l = i % 32;
        ql[64 * h + 32 * (s % 2) + l] |= (uint8_t)(s < 2 ? (q & 15) : (q & 15) << 4);
        qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * s));
    }
}

/* Q8_0: per block of 32, d = max|x| / 127 stored as f16; q = round(x / d) in [-127, 127]. */
static void q8_0_block(const float *x, uint8_t *b) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
    uint16_t h = f32_to_fp16(d);
    b[0] = (uint8_t)(h & 0xff);
    b[1] = (uint8_t)(h >> 8);
    for (int i = 0; i < 32; i++) {
        float v = roundf(x[i] * id);
        b[2 + i] = (uint8_t)(int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
}

int quantize_row(whale_dtype t, const float *src, void *dst, int64_t n) {
    uint8_t *o = dst;
    switch (t) {
    case WHALE_DTYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    case WHALE_DTYPE_F16:
    case WHALE_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = t == WHALE_DTYPE_F16 ? f32_to_fp16(src[i]) : f32_to_bf16(src[i]);
            o[2 * i] = (uint8_t)(h & 0xff);
            o[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    case WHALE_DTYPE_Q8_0:
        if (n % 32) return -1;
        for (int64_t i = 0; i < n / 32; i++) q8_0_block(src + 32 * i, o + 34 * i);
        return 0;
    case WHALE_DTYPE_Q4_K:
    case WHALE_DTYPE_Q6_K:
        if (n % 256) return -1;
        for (int64_t i = 0; i < n / 256; i++) {
            if (t == WHALE_DTYPE_Q4_K) q4_k_block(src + 256 * i, o + 144 * i);
            else q6_k_block(src + 256 * i, o + 210 * i);
        }
        return 0;
    default:
        return -1;
    }
}
