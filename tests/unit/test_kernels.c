/* test_kernels.c — the fast paths of kernels/ against the scalar references: op_dot_row (fused
 * per-block dot) against dequantize_row + op_dot for every computable type, on random blocks
 * with sane scales and rows of several lengths; op_matmul_rows' two paths against each other;
 * basic properties of rmsnorm, softmax, rope and swiglu. */
#include <math.h>

#include "check.h"
#include "kernels/ops.h"
#include "rand_blocks.h"

static void test_dot_row_matches_reference(void) {
    const whale_dtype types[] = {WHALE_DTYPE_F32, WHALE_DTYPE_F16, WHALE_DTYPE_BF16, WHALE_DTYPE_Q4_0,
                                 WHALE_DTYPE_Q4_1, WHALE_DTYPE_Q5_0, WHALE_DTYPE_Q5_1, WHALE_DTYPE_Q8_0,
                                 WHALE_DTYPE_Q2_K, WHALE_DTYPE_Q3_K, WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q5_K,
                                 WHALE_DTYPE_Q6_K};
    const int64_t blocks[] = {1, 3, 7, 11};
    static uint8_t row[256 * 11 * 4 + 64];
    static float x[256 * 11], deq[256 * 11];
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        whale_dtype t = types[ti];
        int64_t be = dtype_get(t)->block_elems;
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            int64_t n = blocks[bi] * (be > 1 ? be : 37); /* plain types: odd lengths */
            random_row(t, row, n);
            for (int64_t i = 0; i < n; i++) x[i] = frand();
            dequantize_row(t, row, deq, n);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                ref += (double)deq[i] * x[i];
                mag += fabs((double)deq[i] * x[i]);
            }
            float got = op_dot_row(t, row, x, n);
            /* Relative to the sum of magnitudes: float summation error bound, generously. */
            CHECKF(fabs(got - ref) <= 1e-5 * mag + 1e-30, "%s n=%lld: %.9g vs %.9g (mag %.3g)", dtype_name(t),
                   (long long)n, (double)got, ref, mag);
        }
    }
}

static void test_matmul_paths_agree(void) {
    enum { NI = 512, NO = 9, NT = 5 };
    static uint8_t w[NO * 544];
    static float X[NT * NI], Y1[NT * NO], Y2[NT * NO], scratch[NI];
    size_t rb;
    dtype_bytes(WHALE_DTYPE_Q4_K, NI, &rb);
    for (int r = 0; r < NO; r++) random_row(WHALE_DTYPE_Q4_K, w + r * rb, NI);
    for (int i = 0; i < NT * NI; i++) X[i] = frand();
    op_matmul_rows(Y1, NO, w, WHALE_DTYPE_Q4_K, X, NI, NI, NT, 0, NO, scratch); /* dequantize path */
    for (int b = 0; b < NT; b++)                                                  /* fused path, one token at a time */
        op_matmul_rows(Y2 + b * NO, NO, w, WHALE_DTYPE_Q4_K, X + b * NI, NI, NI, 1, 0, NO, scratch);
    for (int i = 0; i < NT * NO; i++) CHECKF(fabsf(Y1[i] - Y2[i]) < 1e-4f * (1 + fabsf(Y1[i])), "%d: %g vs %g", i, (double)Y1[i], (double)Y2[i]);
}

static void test_small_ops(void) {
    float x[64], w[64], y[64];
    for (int i = 0; i < 64; i++) { x[i] = frand(); w[i] = 1; }
    op_rmsnorm(y, x, w, 64, 0);
    double ss = 0;
    for (int i = 0; i < 64; i++) ss += (double)y[i] * y[i];
    CHECK(fabs(ss / 64 - 1) < 1e-5);
    op_softmax(x, 64);
    double s = 0;
    for (int i = 0; i < 64; i++) { s += x[i]; CHECK(x[i] > 0); }
    CHECK(fabs(s - 1) < 1e-6);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, inv[4] = {1, 0.5f, 0.25f, 0.125f};
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 8; i++) n0 += (double)v[i] * v[i];
    op_rope(v, 8, 7, inv, ROPE_NEOX); /* a rotation keeps the norm */
    for (int i = 0; i < 8; i++) n1 += (double)v[i] * v[i];
    CHECK(fabs(n0 - n1) < 1e-4);
    float p[4] = {1, 2, 3, 4};
    op_rope(p, 4, 0, inv, ROPE_NORM); /* position 0 is the identity */
    CHECK(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
    float g[2] = {0, 10}, u[2] = {5, 2}, o[2];
    op_swiglu(o, g, u, 2);
    CHECK(o[0] == 0 && fabsf(o[1] - 10.0f / (1 + expf(-10)) * 2) < 1e-5f);
}

/* quantize_row -> dequantize_row reproduces the input within each type's step size. */
static void test_quantize_roundtrip(void) {
    static const struct { whale_dtype t; double rel; } cases[] = {
        {WHALE_DTYPE_F16, 1e-3}, {WHALE_DTYPE_BF16, 8e-3}, {WHALE_DTYPE_Q8_0, 1.0 / 127 * 0.6},
        {WHALE_DTYPE_Q6_K, 1.0 / 31 * 0.6}, {WHALE_DTYPE_Q4_K, 1.0 / 15 * 0.6 * 2}};
    enum { N = 256 * 6 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++) x[i] = frand() * (1 + (i / 256)); /* blocks of different ranges */
        x[7] = 0;
        CHECK(quantize_row(cases[c].t, x, q, N) == 0);
        dequantize_row(cases[c].t, q, y, N);
        for (int blk = 0; blk < N / 256; blk++) {
            float amax = 0, err = 0;
            for (int i = 256 * blk; i < 256 * (blk + 1); i++) {
                amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
                err = fabsf(x[i] - y[i]) > err ? fabsf(x[i] - y[i]) : err;
            }
            CHECKF(err <= cases[c].rel * amax + 1e-6, "%s block %d: error %g of range %g", dtype_name(cases[c].t), blk,
                   (double)err, (double)amax);
        }
    }
    CHECK(quantize_row(WHALE_DTYPE_Q4_K, x, q, 100) == -1); /* partial block */
    CHECK(!quantize_supported(WHALE_DTYPE_Q2_K));
}

int main(void) {
    RUN(test_dot_row_matches_reference);
    RUN(test_matmul_paths_agree);
    RUN(test_small_ops);
    RUN(test_quantize_roundtrip);
    return check_report("test_kernels");
}
