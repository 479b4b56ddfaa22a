/* ref.c — scalar reference implementations of the ops in kernels/ops.h. Plain loops the
 * compiler may vectorize; every faster kernel is tested against these. */
#include <math.h>

#include "kernels/ops.h"

/* Up to this many tokens, decoding a weight row per token costs less than writing it out. */
#define MATMUL_FUSED_MAX_TOKENS 2

float op_dot(const float *a, const float *b, int64_t n) {
    /* Eight partial sums: better rounding than one long chain, and the compiler may keep them
     * in one vector register (it may not reorder a single float sum). */
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void op_matmul_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx,
                    int64_t n_in, int64_t n_tok, int64_t r0, int64_t r1, float *scratch) {
    size_t row_bytes = 0;
    dtype_bytes(t, n_in, &row_bytes);
    const unsigned char *w = W;
    if (n_tok <= MATMUL_FUSED_MAX_TOKENS) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t b = 0; b < n_tok; b++)
                Y[b * ldy + r] = op_dot_row(t, w + (size_t)r * row_bytes, X + b * ldx, n_in);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *row;
        if (t == WHALE_DTYPE_F32) {
            row = (const float *)(w + (size_t)r * row_bytes);
        } else {
            dequantize_row(t, w + (size_t)r * row_bytes, scratch, n_in);
            row = scratch;
        }
        for (int64_t b = 0; b < n_tok; b++) Y[b * ldy + r] = op_dot_row(WHALE_DTYPE_F32, row, X + b * ldx, n_in);
    }
}

void op_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void op_rope(float *x, int64_t n_rot, int64_t pos, const float *inv_freq, rope_style style) {
    int64_t half = n_rot / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = (float)pos * inv_freq[i];
        float c = cosf(a), s = sinf(a);
        int64_t i0 = style == ROPE_NEOX ? i : 2 * i;
        int64_t i1 = style == ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * c - x1 * s;
        x[i1] = x0 * s + x1 * c;
    }
}

void op_softmax(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void op_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void op_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
