/* fdot_avx2.c — AVX2+FMA version of the F32-activation matrix kernels (cpu/fdot.c) for F32,
 * F16 and BF16 rows: the same float operations as the portable loops, lane for lane, with a
 * 16-lane chunk held in two 256-bit halves (lanes 0-7, 8-15). One row at a time against up to
 * FY_T tokens; a partial last chunk is copied into zero-padded buffers first. Compiled with
 * target attributes; fdot.c calls it only on CPUs with AVX2, FMA and F16C. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "kernels/ops.h"

#define FY_TARGET "avx2,fma,f16c"
#define FY __attribute__((target(FY_TARGET))) static inline __attribute__((always_inline))
#define FY_T 2 /* 2 tokens x 4 running sums + the weights fill the 16 registers */

enum { TY_F32, TY_F16, TY_BF16 };

FY __m256 fy_w8(int ty, const uint8_t *p) {
    switch (ty) {
    case TY_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    case TY_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    default: return _mm256_loadu_ps((const float *)p);
    }
}

/* acc[t] (lo, hi) += the 16-element chunk of weights at wp against xs[t] + c. */
FY void fy_step(int ty, int T, const uint8_t *wp, const float *const *xs, int64_t c, __m256 acc[FY_T][2]) {
    size_t eb = ty == TY_F32 ? 4 : 2;
    __m256 w0 = fy_w8(ty, wp), w1 = fy_w8(ty, wp + 8 * eb);
    for (int t = 0; t < T; t++) {
        acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[t] + c), acc[t][0]);
        acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[t] + c + 8), acc[t][1]);
    }
}

FY void fy_row(int ty, int T, const uint8_t *w, const float *const *xs, int64_t n, float *out) {
    size_t eb = ty == TY_F32 ? 4 : 2;
    __m256 e[FY_T][2], o[FY_T][2];
    for (int t = 0; t < T; t++) e[t][0] = e[t][1] = o[t][0] = o[t][1] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= n; c += 32) {
        fy_step(ty, T, w + (size_t)c * eb, xs, c, e);
        fy_step(ty, T, w + (size_t)(c + 16) * eb, xs, c + 16, o);
    }
    if (c < n) { /* 1..31 left: zero-padded copies, an even chunk and maybe an odd one */
        int64_t k = n - c;
        uint8_t wt[32 * 4] = {0};
        float xt[FY_T][32] = {{0}};
        const float *xp[FY_T];
        memcpy(wt, w + (size_t)c * eb, (size_t)k * eb);
        for (int t = 0; t < T; t++) {
            memcpy(xt[t], xs[t] + c, (size_t)k * sizeof(float));
            xp[t] = xt[t];
        }
        fy_step(ty, T, wt, xp, 0, e);
        if (k > 16) fy_step(ty, T, wt + 16 * eb, xp, 16, o);
    }
    for (int t = 0; t < T; t++) { /* the 16-lane tree: lanes i + (i + 8), then 4, 2, 1 */
        __m256 a = _mm256_add_ps(_mm256_add_ps(e[t][0], o[t][0]), _mm256_add_ps(e[t][1], o[t][1]));
        __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        b = _mm_add_ps(b, _mm_movehl_ps(b, b));
        b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
        out[t] = _mm_cvtss_f32(b);
    }
}

#define FY_ROWS(tn, ty)                                                                                    \
    __attribute__((target(FY_TARGET))) static void tn##_1(const uint8_t *w, const float *const *xs, int64_t n, \
                                                          float *out) {                                     \
        fy_row(ty, 1, w, xs, n, out);                                                                       \
    }                                                                                                       \
    __attribute__((target(FY_TARGET))) static void tn##_2(const uint8_t *w, const float *const *xs, int64_t n, \
                                                          float *out) {                                     \
        fy_row(ty, 2, w, xs, n, out);                                                                       \
    }
FY_ROWS(f32, TY_F32)
FY_ROWS(f16, TY_F16)
FY_ROWS(bf16, TY_BF16)

typedef void (*fy_fn)(const uint8_t *w, const float *const *xs, int64_t n, float *out);

__attribute__((target(FY_TARGET))) int fdot_avx2_rows(float *Y, int64_t ldy, const void *W, whale_dtype t,
                                                      const float *X, int64_t ldx, int64_t n_in, int64_t n_tok,
                                                      int64_t r0, int64_t r1) {
    fy_fn f1, f2;
    switch (t) {
    case WHALE_DTYPE_F32: f1 = f32_1, f2 = f32_2; break;
    case WHALE_DTYPE_F16: f1 = f16_1, f2 = f16_2; break;
    case WHALE_DTYPE_BF16: f1 = bf16_1, f2 = bf16_2; break;
    default: return -1;
    }
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    for (int64_t b0 = 0; b0 < n_tok; b0 += FY_T) {
        int g = n_tok - b0 < FY_T ? (int)(n_tok - b0) : FY_T;
        const float *xs[FY_T];
        for (int k = 0; k < g; k++) xs[k] = X + (b0 + k) * ldx;
        for (int64_t r = r0; r < r1; r++) {
            float out[FY_T];
            (g == 2 ? f2 : f1)((const uint8_t *)W + (size_t)r * rb, xs, n_in, out);
            for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r] = out[k];
        }
    }
    return 0;
}
#endif
