/* test_gemm.c — the blocked product of kernels/gemm.h against a double-precision reference
 * written here, on odd shapes (1x1x1, edges of every tile size, K across the K blocks), in the
 * three layouts a linear layer uses (Y = X W^T, dX += dY W, dW += dY^T X), overwriting and
 * accumulating, with guard values around C that must stay untouched.
 *
 * Tolerance: a chain of K fused multiply-adds in F32 is within K * 2^-24 * (sum_k |a_k b_k| +
 * |c0|) of the exact sum (the standard gamma_K bound, taken with a factor 2). BF16: the same
 * bound around the double reference of the bf16-rounded operands (their products are exact).
 * Bits: every ISA level the CPU has and every thread count give the same bits (memcmp). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/gemm.h"
#include "kernels/isa.h"

static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float frand1(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 52) - 1.0);
}

enum { LAY_NT, LAY_NN, LAY_TN }; /* B transposed (forward), plain (dX), A transposed (dW) */
static const char *lay_name[] = {"X W^T", "dY W", "dY^T X"};
static int g_quiet; /* a case that expects misses does not print them */

typedef struct prob {
    int lay;
    int64_t M, N, K, ldc;
    float *A, *B, *C0;              /* operands as stored, C's initial value (with guards) */
    int64_t a_rs, a_cs, b_rs, b_cs; /* strides for gemm */
} prob;

#define GUARD 1234.5f
#define PAD 3 /* extra columns of C past N, guarded */

static void prob_init(prob *p, int lay, int64_t M, int64_t N, int64_t K) {
    p->lay = lay, p->M = M, p->N = N, p->K = K, p->ldc = N + PAD;
    p->A = malloc(sizeof(float) * (size_t)(M * K + 1));
    p->B = malloc(sizeof(float) * (size_t)(K * N + 1));
    p->C0 = malloc(sizeof(float) * (size_t)((M + 1) * p->ldc));
    for (int64_t i = 0; i < M * K; i++) p->A[i] = frand1();
    for (int64_t i = 0; i < K * N; i++) p->B[i] = frand1();
    for (int64_t i = 0; i < (M + 1) * p->ldc; i++) p->C0[i] = GUARD;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) p->C0[i * p->ldc + j] = frand1();
    /* A stored M x K (rows) or K x M (transposed); B stored K x N or N x K (transposed) */
    if (lay == LAY_TN) p->a_rs = 1, p->a_cs = M;
    else p->a_rs = K, p->a_cs = 1;
    if (lay == LAY_NT) p->b_rs = 1, p->b_cs = K;
    else p->b_rs = N, p->b_cs = 1;
}

static void prob_free(prob *p) { free(p->A), free(p->B), free(p->C0); }

static float *run_gemm(const prob *p, float alpha, int acc, gemm_prec pr, threadpool *tp) {
    float *C = malloc(sizeof(float) * (size_t)((p->M + 1) * p->ldc));
    memcpy(C, p->C0, sizeof(float) * (size_t)((p->M + 1) * p->ldc));
    gemm(C, p->ldc, p->A, p->a_rs, p->a_cs, p->B, p->b_rs, p->b_cs, p->M, p->N, p->K, alpha, acc, pr, tp);
    return C;
}

/* The reference of element (i, j) and its error bound. bf16: operands rounded as gemm.h says. */
static double ref_elem(const prob *p, int64_t i, int64_t j, float alpha, int acc, int bf16, double *bound) {
    double s = acc ? p->C0[i * p->ldc + j] : 0, mag = fabs(s);
    for (int64_t k = 0; k < p->K; k++) {
        float a = alpha * p->A[i * p->a_rs + k * p->a_cs], b = p->B[k * p->b_rs + j * p->b_cs];
        if (bf16) a = gemm_round_bf16(a), b = gemm_round_bf16(b);
        s += (double)a * b;
        mag += fabs((double)a * b);
    }
    *bound = 2.0 * (double)(p->K + 1) * ldexp(1.0, -24) * mag + 1e-30;
    return s;
}

/* Every element within its bound, guards untouched; returns the number of bad elements. */
static int check_against_ref(const prob *p, const float *C, float alpha, int acc, int bf16) {
    int bad = 0;
    for (int64_t i = 0; i <= p->M; i++)
        for (int64_t j = 0; j < p->ldc; j++) {
            float got = C[i * p->ldc + j];
            if (i == p->M || j >= p->N) {
                if (got != GUARD) bad++;
                continue;
            }
            double bound, want = ref_elem(p, i, j, alpha, acc, bf16, &bound);
            if (!(fabs(got - want) <= bound)) {
                if (bad < 3 && !g_quiet)
                    fprintf(stderr, "  %s %lldx%lldx%lld acc %d bf16 %d: C[%lld][%lld] = %.9g, want %.9g (bound %.3g)\n",
                            lay_name[p->lay], (long long)p->M, (long long)p->N, (long long)p->K, acc, bf16,
                            (long long)i, (long long)j, got, want, bound);
                bad++;
            }
        }
    return bad;
}

static const int64_t shapes[][3] = {{1, 1, 1},   {3, 17, 5},   {6, 16, 16},  {7, 15, 3},   {129, 65, 33},
                                    {12, 32, 255}, {13, 31, 257}, {5, 40, 600}, {97, 300, 70}, {2, 3, 1000}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

static void check_all(gemm_prec pr, threadpool *tp) {
    for (int s = 0; s < N_SHAPES; s++)
        for (int lay = 0; lay < 3; lay++)
            for (int acc = 0; acc < 2; acc++) {
                prob p;
                prob_init(&p, lay, shapes[s][0], shapes[s][1], shapes[s][2]);
                float alpha = acc ? 1.0f : 0.37f;
                float *C = run_gemm(&p, alpha, acc, pr, tp);
                CHECKF(check_against_ref(&p, C, alpha, acc, pr == GEMM_BF16) == 0, "%s %lldx%lldx%lld acc %d",
                       lay_name[lay], (long long)p.M, (long long)p.N, (long long)p.K, acc);
                free(C);
                prob_free(&p);
            }
}

static void test_f32_vs_double(void) { check_all(GEMM_F32, NULL); }

static void test_f32_vs_double_portable(void) {
    isa_force(ISA_SCALAR);
    check_all(GEMM_F32, NULL);
    isa_force(-1);
}

static void test_bf16_vs_double(void) {
    check_all(GEMM_BF16, NULL);
    isa_force(ISA_SCALAR);
    check_all(GEMM_BF16, NULL);
    isa_force(-1);
}

/* BF16 really rounds: on random operands it misses the unrounded reference's bound. */
static void test_bf16_rounds(void) {
    prob p;
    prob_init(&p, LAY_NT, 16, 16, 64);
    float *C = run_gemm(&p, 1.0f, 0, GEMM_BF16, NULL);
    g_quiet = 1;
    CHECK(check_against_ref(&p, C, 1.0f, 0, 0) > 0);
    g_quiet = 0;
    CHECK(check_against_ref(&p, C, 1.0f, 0, 1) == 0);
    free(C);
    prob_free(&p);
}

/* accumulate = 1 adds to C, 0 ignores C (a NaN there does not leak through). */
static void test_accumulate(void) {
    prob p;
    prob_init(&p, LAY_NN, 9, 20, 300);
    for (int64_t i = 0; i < p.M; i++)
        for (int64_t j = 0; j < p.N; j++) p.C0[i * p.ldc + j] = NAN;
    float *C = run_gemm(&p, 1.0f, 0, GEMM_F32, NULL);
    CHECK(check_against_ref(&p, C, 1.0f, 0, 0) == 0);
    for (int64_t i = 0; i < p.M; i++)
        for (int64_t j = 0; j < p.N; j++) p.C0[i * p.ldc + j] = (float)(i - j);
    float *C2 = run_gemm(&p, 1.0f, 1, GEMM_F32, NULL);
    CHECK(check_against_ref(&p, C2, 1.0f, 1, 0) == 0);
    free(C), free(C2);
    /* K = 0: overwrite zeroes, accumulate leaves C */
    float c[4] = {1, 2, 3, 4};
    gemm(c, 2, p.A, 1, 1, p.B, 1, 1, 2, 2, 0, 1.0f, 1, GEMM_F32, NULL);
    CHECK(c[0] == 1 && c[3] == 4);
    gemm(c, 2, p.A, 1, 1, p.B, 1, 1, 2, 2, 0, 1.0f, 0, GEMM_F32, NULL);
    CHECK(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    prob_free(&p);
}

/* The same bits for every ISA level the CPU has and for every thread count. */
static void test_bits_invariant(void) {
    threadpool *pools[4] = {tp_new(1), tp_new(2), tp_new(3), tp_new(5)};
    for (int pr = 0; pr < 2; pr++)
        for (int lay = 0; lay < 3; lay++) {
            prob p;
            prob_init(&p, lay, 131, 203, 517);
            isa_force(ISA_SCALAR);
            float *ref = run_gemm(&p, 0.5f, 1, (gemm_prec)pr, NULL);
            size_t bytes = sizeof(float) * (size_t)((p.M + 1) * p.ldc);
            for (int lv = ISA_SCALAR; lv <= (int)isa_detected(); lv++) {
                isa_force(lv);
                for (int t = -1; t < 4; t++) {
                    float *C = run_gemm(&p, 0.5f, 1, (gemm_prec)pr, t < 0 ? NULL : pools[t]);
                    CHECKF(memcmp(C, ref, bytes) == 0, "%s %s level %s threads %d", pr ? "bf16" : "f32",
                           lay_name[lay], isa_name(lv), t < 0 ? 0 : tp_threads(pools[t]));
                    free(C);
                }
            }
            isa_force(-1);
            free(ref);
            prob_free(&p);
        }
    for (int t = 0; t < 4; t++) tp_free(pools[t]);
}

static void test_round_bf16(void) {
    CHECK(gemm_round_bf16(1.0f) == 1.0f);
    CHECK(gemm_round_bf16(1.0f + 0x1p-8f) == 1.0f);                   /* tie: to even (down) */
    CHECK(gemm_round_bf16(1.0f + 3 * 0x1p-8f) == 1.0f + 0x1p-6f);     /* tie: to even (up) */
    CHECK(gemm_round_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 1.0f + 0x1p-7f); /* above the tie: up */
    CHECK(gemm_round_bf16(-2.5f) == -2.5f);
    CHECK(isinf(gemm_round_bf16(INFINITY)));
    CHECK(isinf(gemm_round_bf16(3.4e38f))); /* past bf16's largest value */
    CHECK(isnan(gemm_round_bf16(NAN)));
}

int main(void) {
    printf("gemm kernel: %s (detected level %s)\n", gemm_kernel_name(), isa_name(isa_detected()));
    RUN(test_round_bf16);
    RUN(test_f32_vs_double);
    RUN(test_f32_vs_double_portable);
    RUN(test_bf16_vs_double);
    RUN(test_bf16_rounds);
    RUN(test_accumulate);
    RUN(test_bits_invariant);
    return check_report("test_gemm");
}
