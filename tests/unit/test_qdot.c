/* test_qdot.c — integer dot products with 8-bit activations (kernels/qdot.h), for every weight
 * type they cover and every implementation level the CPU has (VNNI, AVX2, portable):
 *   - each SIMD level against the portable reference (float rounding only);
 *   - against dequantize_row + a double-precision dot with the dequantized activations (the
 *     integer arithmetic is exact);
 *   - against the unquantized activations within the bound activation rounding allows;
 *   - a token's result is bit-identical whether it is computed alone or among 7 others, at
 *     every level (batch invariance);
 *   - the quantizer: scale = max/127, sums of each 16 right, zeros stay zero. */
#include <math.h>

#include "check.h"
#include "kernels/isa.h"
#include "kernels/qdot.h"
#include "rand_blocks.h"

#define NT 7
#define NR 5

static void test_kernels_agree(void) {
    const whale_dtype types[] = {WHALE_DTYPE_Q8_0, WHALE_DTYPE_Q4_0, WHALE_DTYPE_Q5_0,
                                 WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q5_K, WHALE_DTYPE_Q6_K};
    const int64_t sizes[] = {256, 512, 1024};
    int top = isa_level_get();
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t si = 0; si < 3; si++) {
            whale_dtype t = types[ti];
            int64_t n = sizes[si], nb = n / QACT_BLOCK;
            CHECK(op_qdot_supported(t));
            size_t rb;
            dtype_bytes(t, n, &rb);
            uint8_t *w = malloc(rb * NR);
            float *x = malloc(sizeof(float) * (size_t)(n * NT)), *wf = malloc(sizeof(float) * (size_t)n);
            qact_block *xq = malloc(sizeof(qact_block) * (size_t)(nb * NT));
            float y[4][NT * NR], yone[NT * NR];
            for (int r = 0; r < NR; r++) random_row(t, w + r * rb, n);
            for (int64_t i = 0; i < n * NT; i++) x[i] = frand() * (i % 7 == 0 ? 3.0f : 1.0f);
            for (int b = 0; b < NT; b++) op_quantize_act(xq + b * nb, x + b * n, n);
            for (int lv = 0; lv <= top; lv++) {
                isa_force(lv);
                op_matmul_rows_q(y[lv], NR, w, t, xq, n, NT, 0, NR);
                for (int b = 0; b < NT; b++) /* alone */
                    op_matmul_rows_q(yone + b * NR, NR, w, t, xq + b * nb, n, 1, 0, NR);
                int same = !memcmp(yone, y[lv], sizeof yone);
                CHECKF(same, "%s n %lld level %d: a token alone differs from the same token in a batch",
                       dtype_name(t), (long long)n, lv);
            }
            isa_force(-1);
            for (int r = 0; r < NR; r++) {
                dequantize_row(t, w + r * rb, wf, n);
                double wabs = 0;
                for (int64_t i = 0; i < n; i++) wabs += fabs(wf[i]);
                for (int b = 0; b < NT; b++) {
                    double exact = 0, fl = 0, dx = 0;
                    for (int64_t i = 0; i < n; i++) {
                        const qact_block *qb = xq + b * nb + i / 32;
                        exact += (double)wf[i] * qb->d * qb->q[i % 32];
                        fl += (double)wf[i] * x[b * n + i];
                        dx = qb->d > dx ? qb->d : dx;
                    }
                    float ref = y[0][b * NR + r];
                    CHECKF(fabs(ref - exact) <= 1e-5 * wabs * 3 + 1e-6, "%s n %lld: portable %g vs exact %g",
                           dtype_name(t), (long long)n, (double)ref, exact);
                    CHECKF(fabs(exact - fl) <= wabs * dx * 0.5 + 1e-6, "%s: quantized-activation dot %g vs float %g",
                           dtype_name(t), exact, fl);
                    for (int lv = 1; lv <= top; lv++)
                        CHECKF(fabs(y[lv][b * NR + r] - ref) <= 1e-5 * wabs * 3 + 1e-6, "%s n %lld level %d: %g vs %g",
                               dtype_name(t), (long long)n, lv, (double)y[lv][b * NR + r], (double)ref);
                }
            }
            free(w), free(x), free(wf), free(xq);
        }
}

static void test_quantizer(void) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = frand();
    x[5] = -2.5f;
    for (int i = 32; i < 64; i++) x[i] = 0;
    qact_block q[2];
    op_quantize_act(q, x, 64);
    CHECK(fabsf(q[0].d - 2.5f / 127) < 1e-7f && q[0].q[5] == -127);
    int s0 = 0, s1 = 0;
    for (int i = 0; i < 16; i++) s0 += q[0].q[i], s1 += q[0].q[16 + i];
    CHECK(s0 == q[0].s16[0] && s1 == q[0].s16[1]);
    for (int i = 0; i < 32; i++) CHECK(fabsf(q[0].q[i] * q[0].d - x[i]) <= q[0].d * 0.5f + 1e-7f);
    CHECK(q[1].d == 0 && q[1].s16[0] == 0 && q[1].q[31] == 0);
}

int main(void) {
    printf("qdot level on this CPU: %d (2 VNNI, 1 AVX2, 0 portable)\n", isa_level_get());
    RUN(test_kernels_agree);
    RUN(test_quantizer);
    return check_report("test_qdot");
}
