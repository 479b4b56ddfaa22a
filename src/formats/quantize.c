/* quantize.c — F32 rows to the types `whale convert` writes: F32, F16, BF16, Q8_0.
 * (The K-quants need a search for good scales; they come with `whale quantize`.)
 * dequantize_row (dtype.c) is the inverse each of these is tested against. */
#include <math.h>
#include <string.h>

#include "formats/dtype.h"

int quantize_supported(whale_dtype t) {
    return t == WHALE_DTYPE_F32 || t == WHALE_DTYPE_F16 || t == WHALE_DTYPE_BF16 || t == WHALE_DTYPE_Q8_0;
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
    default:
        return -1;
    }
}
