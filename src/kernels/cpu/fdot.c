/* fdot.c — weight rows against F32 activations (op_matmul_rows, op_dot_row in kernels/ops.h):
 * the path of F32/F16/BF16 weights and of the types without an integer kernel (kernels/qdot.h),
 * which are dequantized one row at a time into the caller's scratch.
 *
 * One arithmetic for every level, tile shape and batch: a row is taken in chunks of 16
 * elements, element i in lane i % 16; each lane keeps two sums, for even and odd chunks,
 *   sum[chunk parity][lane] = fmaf(w_i, x_i, ...)   (a partial last chunk adds 0 * 0)
 * and the result is the sum of the 32 lane sums in a fixed tree: even + odd, then lanes i and
 * i + 8, halves of 4, 2, 1. The AVX-512 (cpu/fdot_avx512.c) and AVX2 (cpu/fdot_avx2.c) kernels
 * perform exactly these operations, so every CPU gives the same bits, and a token's result does
 * not depend on the tokens computed beside it. This file holds the portable version and calls
 * the version of the level in force (kernels/isa.h: AVX-512, AVX2 or portable; WHALE_ISA=
 * scalar|avx2|avx512, WHALE_NO_SIMD=1 or isa_force() lower it). */
#include <math.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/ops.h"

#define FD_PIECE 256 /* op_dot_row dequantizes this many elements at a time onto the stack */

typedef struct fd_lanes {
    float even[16], odd[16];
} fd_lanes;

static float fd_sum(const fd_lanes *L) {
    float v[16], h[8];
    for (int l = 0; l < 16; l++) v[l] = L->even[l] + L->odd[l];
    for (int l = 0; l < 8; l++) h[l] = v[l] + v[l + 8];
    for (int l = 0; l < 4; l++) h[l] = h[l] + h[l + 4];
    for (int l = 0; l < 2; l++) h[l] = h[l] + h[l + 2];
    return h[0] + h[1];
}

static float fd_weight(whale_dtype t, const void *row, int64_t i) {
    const uint8_t *b = row;
    switch (t) {
    case WHALE_DTYPE_F16: return fp16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
    case WHALE_DTYPE_BF16: return bf16_to_f32((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
    default: {
        float v;
        memcpy(&v, b + 4 * i, 4);
        return v;
    }
    }
}

/* Elements [i0, i0 + n) of a row (F32/F16/BF16; i0 a multiple of 16) into L. */
static void fd_accumulate(fd_lanes *L, whale_dtype t, const void *row, const float *x, int64_t i0, int64_t n) {
    for (int64_t c = i0; c < i0 + n; c += 16) {
        float *acc = (c / 16) % 2 ? L->odd : L->even;
        for (int l = 0; l < 16; l++) {
            int in = c + l < i0 + n;
            acc[l] = fmaf(in ? fd_weight(t, row, c + l - i0) : 0.0f, in ? x[c + l] : 0.0f, acc[l]);
        }
    }
}

static int fd_direct(whale_dtype t) { return t == WHALE_DTYPE_F32 || t == WHALE_DTYPE_F16 || t == WHALE_DTYPE_BF16; }

#if defined(__x86_64__)
int fdot_avx512_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx, int64_t n_in,
                     int64_t n_tok, int64_t r0, int64_t r1);
int fdot_avx2_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx, int64_t n_in,
                   int64_t n_tok, int64_t r0, int64_t r1);
#endif

/* Y[b*ldy + r] for rows r0..r1 of W (F32, F16 or BF16) and n_tok tokens, at the level in force. */
static void fd_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx, int64_t n_in,
                    int64_t n_tok, int64_t r0, int64_t r1) {
#if defined(__x86_64__)
    isa_level level = isa_level_get();
    if (level == ISA_AVX512 && !fdot_avx512_rows(Y, ldy, W, t, X, ldx, n_in, n_tok, r0, r1)) return;
    if (level == ISA_AVX2 && !fdot_avx2_rows(Y, ldy, W, t, X, ldx, n_in, n_tok, r0, r1)) return;
#endif
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    for (int64_t r = r0; r < r1; r++)
        for (int64_t b = 0; b < n_tok; b++) {
            fd_lanes L;
            memset(&L, 0, sizeof L);
            fd_accumulate(&L, t, (const uint8_t *)W + (size_t)r * rb, X + b * ldx, 0, n_in);
            Y[b * ldy + r] = fd_sum(&L);
        }
}

void op_matmul_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx, int64_t n_in,
                    int64_t n_tok, int64_t r0, int64_t r1, float *scratch) {
    if (fd_direct(t)) {
        fd_rows(Y, ldy, W, t, X, ldx, n_in, n_tok, r0, r1);
        return;
    }
    size_t rb = 0;
    dtype_bytes(t, n_in, &rb);
    for (int64_t r = r0; r < r1; r++) { /* dequantized once, then the F32 kernel for every token */
        dequantize_row(t, (const uint8_t *)W + (size_t)r * rb, scratch, n_in);
        fd_rows(Y + r, ldy, scratch, WHALE_DTYPE_F32, X, ldx, n_in, n_tok, 0, 1);
    }
}

float op_dot_row(whale_dtype t, const void *row, const float *x, int64_t n) {
    float y;
    if (fd_direct(t)) {
        fd_rows(&y, 1, row, t, x, n, n, 1, 0, 1);
        return y;
    }
    /* a piece at a time: the chunks (and their parities) follow on as in one pass */
    const dtype_info *di = dtype_get(t);
    float buf[FD_PIECE];
    fd_lanes L;
    memset(&L, 0, sizeof L);
    int64_t be = di->block_elems, piece = be > FD_PIECE ? be : FD_PIECE;
    for (int64_t i = 0; i < n; i += piece) {
        int64_t k = n - i < piece ? n - i : piece;
        dequantize_row(t, (const uint8_t *)row + (size_t)(i / be) * di->block_bytes, buf, k);
        fd_accumulate(&L, WHALE_DTYPE_F32, buf, x, i, k);
    }
    return fd_sum(&L);
}
