/* fdot_avx512.c — AVX-512 version of the F32-activation matrix kernels (cpu/fdot.c), for F32,
 * F16 and BF16 weight rows: the same float operations as the portable loops there, 16 lanes to
 * a register (a chunk of 16 elements is one fused multiply-add per row and token, into the
 * even- or odd-chunk sum).
 *
 * Prefill: tiles of FX_R rows x FX_T tokens, each weight chunk converted once per tile and
 * each activation chunk loaded once per tile (12 multiply-adds per 7 loads), the row taken
 * FX_KB elements at a time so that the tokens' activations stay in L1 (float activations are
 * 4 bytes an element: without the blocking the tiles waited on L2). Decode: one row after the
 * other (one sequential stream through the matrix; see cpu/qdot_avx512.c) with a software
 * prefetch ahead. Compiled with target attributes; fdot.c calls it only on AVX-512. */
#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/ops.h"

#define FX_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define FX __attribute__((target(FX_TARGET))) static inline __attribute__((always_inline))
#define FX_FN __attribute__((target(FX_TARGET))) static
#define FX_R 4 /* rows and tokens of a tile (other shapes, 2x6 and 3x4, measured slower) */
#define FX_T 3
#define FX_PREFETCH 4096 /* bytes ahead of the row being read, decode */
#define FX_KB 1024       /* prefill: elements of a row per pass (6 tokens x 4 KiB of activations fit L1) */
#define FX_ROWS 32       /* prefill: rows whose sums wait between passes (12 KiB for 3 tokens) */

enum { TY_F32, TY_F16, TY_BF16 };

FX float fx_hsum(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* Weights i .. i+15 of a row as floats (lanes outside m: 0). */
FX __m512 fx_w(int ty, const uint8_t *row, int64_t i, __mmask16 m) {
    switch (ty) {
    case TY_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
    case TY_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)), 16));
    default: return _mm512_maskz_loadu_ps(m, row + 4 * i);
    }
}

/* acc[r][t] += chunk at element c (lanes m) of R rows x T tokens. */
FX void fx_step(int ty, int R, int T, const uint8_t *w, size_t rb, const float *X, int64_t ldx, int64_t c, __mmask16 m,
                __m512 acc[FX_R][FX_T]) {
    __m512 wv[FX_R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) wv[r] = fx_w(ty, w + (size_t)r * rb, c, m);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        __m512 xv = _mm512_maskz_loadu_ps(m, X + t * ldx + c);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* Elements [k0, k1) of R rows x T tokens (k0 a multiple of 32; k1 = n or a multiple of 32)
 * added to the sums in acc (acc[(r * T + t) * 2 + parity]); with out, the finished results
 * out[r * T + t] instead. */
FX void fx_tile(int ty, int R, int T, const uint8_t *w, size_t rb, const float *X, int64_t ldx, int64_t k0, int64_t k1,
                int64_t n, __m512 *acc, float *out) {
    __m512 e[FX_R][FX_T], o[FX_R][FX_T];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            e[r][t] = acc ? acc[(r * T + t) * 2] : _mm512_setzero_ps();
            o[r][t] = acc ? acc[(r * T + t) * 2 + 1] : _mm512_setzero_ps();
        }
    int64_t c = k0;
    for (; c + 32 <= k1; c += 32) {
        if (R == 1) _mm_prefetch((const char *)(w + (size_t)c * (ty == TY_F32 ? 4 : 2) + FX_PREFETCH), _MM_HINT_T0);
        fx_step(ty, R, T, w, rb, X, ldx, c, 0xffff, e);
        fx_step(ty, R, T, w, rb, X, ldx, c + 16, 0xffff, o);
    }
    if (c < k1) { /* 1..31 elements left: an even chunk, maybe an odd one */
        int64_t k = k1 - c;
        fx_step(ty, R, T, w, rb, X, ldx, c, k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << k) - 1), e);
        if (k > 16) fx_step(ty, R, T, w, rb, X, ldx, c + 16, (__mmask16)((1u << (k - 16)) - 1), o);
    }
    (void)n;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            if (out) out[r * T + t] = fx_hsum(_mm512_add_ps(e[r][t], o[r][t]));
            else acc[(r * T + t) * 2] = e[r][t], acc[(r * T + t) * 2 + 1] = o[r][t];
        }
}

typedef void (*fx_tile_fn)(const uint8_t *w, size_t rb, const float *X, int64_t ldx, int64_t k0, int64_t k1,
                           int64_t n, __m512 *acc, float *out);

#define FX_TILE(name, ty, R, T)                                                                            \
    FX_FN void name(const uint8_t *w, size_t rb, const float *X, int64_t ldx, int64_t k0, int64_t k1, int64_t n, \
                    __m512 *acc, float *out) {                                                              \
        fx_tile(ty, R, T, w, rb, X, ldx, k0, k1, n, acc, out);                                              \
    }
/* A type's tiles: 4 rows x 1..3 tokens, and single rows. */
#define FX_TYPE(tn, ty)                                                                                    \
    FX_TILE(tn##_41, ty, 4, 1)                                                                             \
    FX_TILE(tn##_42, ty, 4, 2)                                                                             \
    FX_TILE(tn##_43, ty, 4, 3)                                                                             \
    FX_TILE(tn##_11, ty, 1, 1)                                                                             \
    FX_TILE(tn##_12, ty, 1, 2)                                                                             \
    FX_TILE(tn##_13, ty, 1, 3)                                                                             \
    static const fx_tile_fn tn##_tiles[2][3] = {{tn##_11, tn##_12, tn##_13}, {tn##_41, tn##_42, tn##_43}};

FX_TYPE(f32, TY_F32)
FX_TYPE(f16, TY_F16)
FX_TYPE(bf16, TY_BF16)

/* Rows r0..r1 of W against n_tok tokens: 0, or -1 for a type not handled here. Fewer than
 * FX_T tokens: one row at a time (a single stream); more: 4-row tiles per group of tokens. */
__attribute__((target(FX_TARGET))) int fdot_avx512_rows(float *Y, int64_t ldy, const void *W, whale_dtype t,
                                                        const float *X, int64_t ldx, int64_t n_in, int64_t n_tok,
                                                        int64_t r0, int64_t r1) {
    if (n_tok <= 0 || r1 <= r0) return 0; /* nothing to compute */
    const fx_tile_fn(*tiles)[3];
    const int rm = FX_R, tm = FX_T;
    switch (t) {
    case WHALE_DTYPE_F32: tiles = f32_tiles; break;
    case WHALE_DTYPE_F16: tiles = f16_tiles; break;
    case WHALE_DTYPE_BF16: tiles = bf16_tiles; break;
    default: return -1;
    }
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    if (n_tok < 3) { /* decode: one row after the other, all of it at once */
        for (int64_t r = r0; r < r1; r++) {
            float out[2];
            tiles[0][n_tok - 1]((const uint8_t *)W + (size_t)r * rb, rb, X, ldx, 0, n_in, n_in, NULL, out);
            for (int k = 0; k < n_tok; k++) Y[k * ldy + r] = out[k];
        }
        return 0;
    }
    /* prefill: per token group and block of rows, the row in blocks of FX_KB elements, so the
     * group's activations for a block stay in L1 while the rows' tiles go by; the tiles' sums
     * wait in acc between blocks (the chunks still come in order: the same arithmetic) */
    __m512 acc[FX_ROWS * FX_T * 2];
    for (int64_t b0 = 0; b0 < n_tok; b0 += tm) {
        int g = n_tok - b0 < tm ? (int)(n_tok - b0) : tm;
        const float *Xg = X + b0 * ldx;
        for (int64_t q0 = r0; q0 < r1; q0 += FX_ROWS) {
            int64_t q1 = r1 - q0 < FX_ROWS ? r1 : q0 + FX_ROWS;
            for (int64_t i = 0; i < (q1 - q0) * g * 2; i++) acc[i] = _mm512_setzero_ps();
            for (int64_t k0 = 0; k0 < n_in; k0 += FX_KB) {
                int64_t k1 = n_in - k0 < FX_KB ? n_in : k0 + FX_KB, r = q0;
                int last = k1 == n_in;
                float out[FX_R * FX_T];
                for (; r + rm <= q1; r += rm) {
                    tiles[1][g - 1]((const uint8_t *)W + (size_t)r * rb, rb, Xg, ldx, k0, k1, n_in,
                                    acc + (r - q0) * g * 2, last ? out : NULL);
                    if (last)
                        for (int i = 0; i < rm; i++)
                            for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r + i] = out[i * g + k];
                }
                for (; r < q1; r++) {
                    tiles[0][g - 1]((const uint8_t *)W + (size_t)r * rb, rb, Xg, ldx, k0, k1, n_in,
                                    acc + (r - q0) * g * 2, last ? out : NULL);
                    if (last)
                        for (int k = 0; k < g; k++) Y[(b0 + k) * ldy + r] = out[k];
                }
            }
        }
    }
    return 0;
}
#endif
