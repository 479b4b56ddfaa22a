/* test_kernels_q.c — the tiled integer matrix kernels (kernels/qdot.h; cpu/qdot_avx512.c and
 * the AVX2 kernels) against the portable reference, at every level this CPU has, forced in
 * turn (op_qdot_force), on random weights of each type:
 *   - shapes the tiles must get right: 1..9 rows and tokens (4x4 tiles, their row and token
 *     remainders, the one-token decode path), row ranges that do not start at 0, 32-element
 *     types with an odd number of blocks (a half last chunk), rows longer than the decode panel
 *     and than the tile's activation-sum buffer (the fallbacks);
 *   - every level equals the portable reference bit for bit (they do the same float operations
 *     lane for lane), and the portable reference is within 2e-6 * (chunks + 16) * sum |w_i x_i|
 *     of the exact product of the dequantized weights and activations (float rounding of a sum
 *     of that many chunk products; the integer products are exact);
 *   - batch invariance, bit for bit: a token alone, in a batch, and any row range agree;
 *   - the SIMD activation quantizer equals the portable one bit for bit. */
#include <math.h>

#include "check.h"
#include "kernels/isa.h"
#include "kernels/qdot.h"
#include "rand_blocks.h"

static const whale_dtype qtypes[] = {WHALE_DTYPE_Q8_0, WHALE_DTYPE_Q4_0, WHALE_DTYPE_Q5_0,
                                     WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q5_K, WHALE_DTYPE_Q6_K};
#define NQTYPES (sizeof qtypes / sizeof qtypes[0])

/* Activations with a few all-zero blocks and outliers, as real hidden states have. */
static void random_x(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * (rnd() % 17 == 0 ? 8.0f : 1.0f);
    for (int64_t b = 0; b + 32 <= n; b += 32)
        if (rnd() % 13 == 0) memset(x + b, 0, 32 * sizeof(float));
}

/* Portable (level 0) results for all rows x tokens; per (row, token) the exact product of the
 * dequantized weights with the quantized activations (double) and the sum of its magnitudes. */
static void reference(whale_dtype t, const uint8_t *w, size_t rb, const qact_block *xq, int64_t n, int64_t nr,
                      int64_t nt, float *y, double *mag, double *exact) {
    float *wf = malloc(sizeof(float) * (size_t)n);
    isa_force(0);
    op_matmul_rows_q(y, nr, w, t, xq, n, nt, 0, nr);
    isa_force(-1);
    for (int64_t r = 0; r < nr; r++) {
        dequantize_row(t, w + (size_t)r * rb, wf, n);
        for (int64_t b = 0; b < nt; b++) {
            double m = 0, e = 0;
            for (int64_t i = 0; i < n; i++) {
                const qact_block *q = xq + b * (n / 32) + i / 32;
                m += fabs((double)wf[i] * q->d * q->q[i % 32]);
                e += (double)wf[i] * q->d * q->q[i % 32];
            }
            mag[b * nr + r] = m;
            exact[b * nr + r] = e;
        }
    }
    free(wf);
}

static void check_shape(whale_dtype t, int64_t n, int64_t nr, int64_t nt) {
    size_t rb;
    dtype_bytes(t, n, &rb);
    int64_t nb = n / 32;
    uint8_t *w = malloc(rb * (size_t)nr);
    float *x = malloc(sizeof(float) * (size_t)(n * nt));
    qact_block *xq = malloc(sizeof(qact_block) * (size_t)(nb * nt));
    float *ref = malloc(sizeof(float) * (size_t)(nr * nt)), *y = malloc(sizeof(float) * (size_t)(nr * nt));
    float *y1 = malloc(sizeof(float) * (size_t)(nr * nt));
    double *mag = malloc(sizeof(double) * (size_t)(nr * nt)), *exact = malloc(sizeof(double) * (size_t)(nr * nt));
    for (int64_t r = 0; r < nr; r++) random_row(t, w + (size_t)r * rb, n);
    random_x(x, n * nt);
    isa_force(0);
    for (int64_t b = 0; b < nt; b++) op_quantize_act(xq + b * nb, x + b * n, n);
    isa_force(-1);
    reference(t, w, rb, xq, n, nr, nt, ref, mag, exact);
    double chunks = (double)(nb + 1) / 2;
    for (int64_t i = 0; i < nr * nt; i++) {
        double tol = 2e-6 * (chunks + 16) * mag[i] + 1e-30;
        CHECKF(fabs((double)ref[i] - exact[i]) <= tol, "%s n=%lld: portable %.9g vs exact %.9g (tol %.3g)", dtype_name(t),
               (long long)n, (double)ref[i], exact[i], tol);
    }
    int top = isa_level_get(); /* read before forcing: op_qdot_level reports the forced level */
    for (int lv = 1; lv <= top; lv++) {
        isa_force(lv);
        op_matmul_rows_q(y, nr, w, t, xq, n, nt, 0, nr);
        int bad = 0;
        for (int64_t i = 0; i < nr * nt && bad < 3; i++)
            if (memcmp(&y[i], &ref[i], sizeof(float))) {
                bad++;
                CHECKF(0, "%s n=%lld %lldx%lld level %d, (token %lld, row %lld): %.9g vs portable %.9g", dtype_name(t),
                       (long long)n, (long long)nr, (long long)nt, lv, (long long)(i / nr), (long long)(i % nr),
                       (double)y[i], (double)ref[i]);
            }
        /* each token alone, over a row range split at an odd place: the same bits */
        int64_t split = nr / 2 + (nr > 2);
        for (int64_t b = 0; b < nt; b++) {
            op_matmul_rows_q(y1 + b * nr, nr, w, t, xq + b * nb, n, 1, 0, split);
            op_matmul_rows_q(y1 + b * nr, nr, w, t, xq + b * nb, n, 1, split, nr);
        }
        CHECKF(!memcmp(y, y1, sizeof(float) * (size_t)(nr * nt)),
               "%s n=%lld %lldx%lld level %d: a token alone differs from the same token in the batch", dtype_name(t),
               (long long)n, (long long)nr, (long long)nt, lv);
        /* the batch over a row range starting at 1 */
        if (nr > 1) {
            memcpy(y1, y, sizeof(float) * (size_t)(nr * nt));
            op_matmul_rows_q(y1, nr, w, t, xq, n, nt, 1, nr);
            CHECKF(!memcmp(y, y1, sizeof(float) * (size_t)(nr * nt)), "%s n=%lld level %d: row range 1..%lld differs",
                   dtype_name(t), (long long)n, lv, (long long)nr);
        }
    }
    isa_force(-1);
    free(w), free(x), free(xq), free(ref), free(y), free(y1), free(mag), free(exact);
}

static void test_tiles_match_reference(void) {
    for (size_t ti = 0; ti < NQTYPES; ti++) {
        whale_dtype t = qtypes[ti];
        int k = dtype_get(t)->block_elems == 256;
        /* 32-element types: odd block counts too (a half last chunk) */
        const int64_t lens32[] = {32, 96, 128, 864, 2080}, lensk[] = {256, 768, 2304};
        const int64_t *lens = k ? lensk : lens32;
        int nl = k ? 3 : 5;
        for (int li = 0; li < nl; li++)
            for (int64_t nr = 1; nr <= 9; nr += (nr < 5 ? 1 : 4))
                for (int64_t nt = 1; nt <= 9; nt += (nt < 5 ? 1 : 4)) check_shape(t, lens[li], nr, nt);
    }
}

/* Rows longer than the decode panel (20480) and the tiles' activation-sum buffer (65536). */
static void test_long_rows(void) {
    for (size_t ti = 0; ti < NQTYPES; ti++) {
        check_shape(qtypes[ti], 20480 + 512, 3, 1);
        check_shape(qtypes[ti], 65536 + 512, 2, 5);
    }
}

static void test_quantizer_levels_agree(void) {
    enum { N = 32 * 41 };
    static float x[N];
    static qact_block a[N / 32], b[N / 32];
    random_x(x, N);
    x[3] = 1e-30f;                       /* tiny */
    for (int i = 64; i < 96; i++) x[i] = (float)(i - 80) * 0.5f; /* halves: round-to-even ties */
    x[100] = -3e4f;
    int top = isa_level_get();
    isa_force(0);
    op_quantize_act(a, x, N);
    for (int lv = 1; lv <= top; lv++) {
        isa_force(lv);
        memset(b, 0x55, sizeof b);
        op_quantize_act(b, x, N);
        CHECKF(!memcmp(a, b, sizeof a), "quantizer at level %d differs from the portable one", lv);
    }
    isa_force(-1);
}

int main(void) {
    printf("qdot level on this CPU: %d (2 AVX-512 VNNI, 1 AVX2, 0 portable)\n", isa_level_get());
    RUN(test_tiles_match_reference);
    RUN(test_long_rows);
    RUN(test_quantizer_levels_agree);
    return check_report("test_kernels_q");
}
