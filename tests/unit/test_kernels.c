/* test_kernels.c — the F32-activation matrix kernels (kernels/cpu/fdot*.c) and the attention
 * kernels against their portable versions, and basic properties of the small ops:
 *   - op_dot_row against dequantize_row + a double-precision dot for every computable type,
 *     rows of several lengths (plain types: lengths that are no multiple of 16 or 32);
 *   - op_matmul_rows at every level this CPU has (op_qdot_force), F32/F16/BF16 rows read in
 *     place and other types through scratch, 1..9 rows and tokens (the tiles and their
 *     remainders): the same bits as the portable loops, for a token alone as in a batch, for
 *     any row range, and as op_dot_row;
 *   - op_mqa_scores / op_mqa_accum: AVX-512 and portable give the same bits;
 *   - rmsnorm, softmax, rope, swiglu, and quantize_row round trips. */
#include <math.h>

#include "check.h"
#include "kernels/isa.h"
#include "kernels/attn.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
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

/* One type and shape: every level against the portable loops, bit for bit. */
static void matmul_case(whale_dtype t, int64_t n, int64_t nr, int64_t nt) {
    size_t rb;
    dtype_bytes(t, n, &rb);
    uint8_t *w = malloc(rb * (size_t)nr);
    float *X = malloc(sizeof(float) * (size_t)(n * nt)), *scratch = malloc(sizeof(float) * (size_t)n);
    float *ref = malloc(sizeof(float) * (size_t)(nr * nt)), *y = malloc(sizeof(float) * (size_t)(nr * nt));
    float *y1 = malloc(sizeof(float) * (size_t)(nr * nt));
    for (int64_t r = 0; r < nr; r++) random_row(t, w + (size_t)r * rb, n);
    for (int64_t i = 0; i < n * nt; i++) X[i] = frand();
    int top = isa_level_get();
    isa_force(0);
    op_matmul_rows(ref, nr, w, t, X, n, n, nt, 0, nr, scratch);
    for (int lv = 0; lv <= top; lv++) {
        isa_force(lv);
        op_matmul_rows(y, nr, w, t, X, n, n, nt, 0, nr, scratch);
        CHECKF(!memcmp(y, ref, sizeof(float) * (size_t)(nr * nt)), "%s n=%lld %lldx%lld level %d differs from portable",
               dtype_name(t), (long long)n, (long long)nr, (long long)nt, lv);
        int64_t split = nr / 2 + (nr > 2);
        for (int64_t b = 0; b < nt; b++) { /* each token alone, rows in two ranges */
            op_matmul_rows(y1 + b * nr, nr, w, t, X + b * n, n, n, 1, 0, split, scratch);
            op_matmul_rows(y1 + b * nr, nr, w, t, X + b * n, n, n, 1, split, nr, scratch);
        }
        CHECKF(!memcmp(y1, ref, sizeof(float) * (size_t)(nr * nt)), "%s n=%lld %lldx%lld level %d: alone differs",
               dtype_name(t), (long long)n, (long long)nr, (long long)nt, lv);
        float d = op_dot_row(t, w + (size_t)(nr - 1) * rb, X + (nt - 1) * n, n);
        CHECKF(!memcmp(&d, &ref[(nt - 1) * nr + nr - 1], sizeof d), "%s n=%lld level %d: op_dot_row %g vs %g",
               dtype_name(t), (long long)n, lv, (double)d, (double)ref[(nt - 1) * nr + nr - 1]);
    }
    isa_force(-1);
    free(w), free(X), free(scratch), free(ref), free(y), free(y1);
}

static void test_matmul_levels_and_batches(void) {
    const whale_dtype plain[] = {WHALE_DTYPE_F32, WHALE_DTYPE_F16, WHALE_DTYPE_BF16};
    const int64_t lens[] = {1, 15, 16, 37, 57, 64, 100, 123, 257, 896};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int64_t nr = 1; nr <= 9; nr += (nr < 5 ? 1 : 4))
                for (int64_t nt = 1; nt <= 9; nt += (nt < 4 ? 1 : 5)) matmul_case(plain[ti], lens[li], nr, nt);
    /* types without an integer kernel, and one that has one, through scratch */
    const whale_dtype deq[] = {WHALE_DTYPE_Q4_1, WHALE_DTYPE_Q5_1, WHALE_DTYPE_Q2_K, WHALE_DTYPE_Q3_K, WHALE_DTYPE_Q4_K};
    for (size_t ti = 0; ti < sizeof deq / sizeof deq[0]; ti++) {
        matmul_case(deq[ti], 512, 5, 4);
        matmul_case(deq[ti], 768, 1, 1);
    }
}

/* Attention kernels: the AVX-512 loops and the portable ones give the same bits. */
static void test_attention_levels_agree(void) {
    enum { H = 5, P = 11, D = 41 };
    static float q[H * D], k[P * D], s0[H * P], s1[H * P], o0[H * D], o1[H * D], p[H * P];
    static uint16_t k16[P * D];
    for (int i = 0; i < H * D; i++) q[i] = frand();
    for (int i = 0; i < P * D; i++) k[i] = frand(), k16[i] = f32_to_fp16(frand());
    for (int i = 0; i < H * P; i++) p[i] = frand();
    for (int f16 = 0; f16 < 2; f16++) {
        float *out[2] = {s0, s1};
        for (int port = 0; port < 2; port++) {
            isa_force(port ? ISA_SCALAR : -1);
            if (f16) op_mqa_scores_f16(out[port], P, q, D, H, k16, D, P, D);
            else op_mqa_scores(out[port], P, q, D, H, k, D, P, D);
        }
        CHECKF(!memcmp(s0, s1, sizeof s0), "scores%s: AVX-512 and portable differ", f16 ? "_f16" : "");
    }
    float *acc[2] = {o0, o1};
    for (int port = 0; port < 2; port++) {
        isa_force(port ? ISA_SCALAR : -1);
        for (int i = 0; i < H * D; i++) acc[port][i] = 0.25f;
        op_mqa_accum(acc[port], D, p, P, H, k, D, P, D);
    }
    isa_force(-1);
    CHECK(!memcmp(o0, o1, sizeof o0));
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
    RUN(test_matmul_levels_and_batches);
    RUN(test_attention_levels_agree);
    RUN(test_small_ops);
    RUN(test_quantize_roundtrip);
    return check_report("test_kernels");
}
