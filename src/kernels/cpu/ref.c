/* ref.c — scalar implementations of the small ops in kernels/ops.h (norm, rope, softmax,
 * SwiGLU, add, dot). Plain loops the compiler may vectorize; SwiGLU, whose e^x libm would
 * compute one value at a time, has AVX-512 and AVX2 versions giving the same bits (lanes.h's
 * e^x). The weight-matrix products live in cpu/fdot.c (F32 activations) and cpu/qdot.c (8-bit
 * activations). */
#include <math.h>

#include "kernels/cpu/lanes.h"
#include "kernels/isa.h"
#include "kernels/ops.h"

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

/* out = gate x sigmoid(gate) x up, as g / (1 + e^-g) x up at every level. */
static void swiglu_portable(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + lanes_exp(-g)) * up[i];
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq"))) static int64_t swiglu_x(float *out, const float *gate, const float *up,
                                                                    int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 e = lanes_exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), _mm512_loadu_ps(up + i)));
    }
    return i;
}

__attribute__((target("avx2,fma"))) static int64_t swiglu_y(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = lanes_exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(up + i)));
    }
    return i;
}
#endif

void op_swiglu(float *out, const float *gate, const float *up, int64_t n) {
    int64_t i = 0; /* the vectors' count; the rest in portable C, the same operations */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    isa_level level = isa_level_get();
    if (level == ISA_AVX512) i = swiglu_x(out, gate, up, n);
    else if (level == ISA_AVX2) i = swiglu_y(out, gate, up, n);
#endif
    swiglu_portable(out + i, gate + i, up + i, n - i);
}

void op_add(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
