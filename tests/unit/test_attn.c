/* test_attn.c — the multi-query attention kernels (kernels/attn.h): the AVX-512 versions
 * against the portable loops and both against a double-precision sum, for head counts, row
 * lengths (multiples of 16 and not) and position counts (multiples of 4 and not), with strides
 * wider than the rows as the latent cache has them. */
#include <math.h>

#include "check.h"
#include "kernels/isa.h"
#include "formats/dtype.h"
#include "kernels/attn.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 20) % 20001) / 10000.0f - 1.0f;
}

static void test_scores(void) {
    const int64_t heads[] = {1, 3, 16}, dims[] = {1, 15, 16, 17, 64, 576}, poss[] = {1, 3, 4, 7, 64};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 5; c++) {
                int64_t H = heads[a], d = dims[b], T = poss[c], ldq = d + 3, ldk = d + 5, lds = T + 2;
                float *q = malloc(sizeof(float) * (size_t)(H * ldq)), *k = malloc(sizeof(float) * (size_t)(T * ldk));
                float *s1 = calloc((size_t)(H * lds), sizeof(float)), *s2 = calloc((size_t)(H * lds), sizeof(float));
                for (int64_t i = 0; i < H * ldq; i++) q[i] = frand();
                for (int64_t i = 0; i < T * ldk; i++) k[i] = frand();
                isa_force(-1);
                op_mqa_scores(s1, lds, q, ldq, H, k, ldk, T, d);
                isa_force(ISA_SCALAR);
                op_mqa_scores(s2, lds, q, ldq, H, k, ldk, T, d);
                isa_force(-1);
                for (int64_t h = 0; h < H; h++)
                    for (int64_t t = 0; t < T; t++) {
                        double ref = 0;
                        for (int64_t i = 0; i < d; i++) ref += (double)q[h * ldq + i] * k[t * ldk + i];
                        double tol = 1e-5 * (1 + sqrt((double)d));
                        CHECKF(fabs(s1[h * lds + t] - ref) < tol && fabs(s2[h * lds + t] - ref) < tol,
                               "H %lld d %lld T %lld: %g %g vs %g", (long long)H, (long long)d, (long long)T,
                               (double)s1[h * lds + t], (double)s2[h * lds + t], ref);
                    }
                free(q), free(k), free(s1), free(s2);
            }
}

static void test_scores_f16(void) {
    const int64_t heads[] = {1, 4}, dims[] = {1, 16, 17, 128}, poss[] = {1, 5, 8};
    for (size_t a = 0; a < 2; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 3; c++) {
                int64_t H = heads[a], d = dims[b], T = poss[c], ldq = d + 2, ldk = d + 3, lds = T;
                float *q = malloc(sizeof(float) * (size_t)(H * ldq)), *s1 = malloc(sizeof(float) * (size_t)(H * T));
                float *s2 = malloc(sizeof(float) * (size_t)(H * T));
                uint16_t *k = malloc(sizeof(uint16_t) * (size_t)(T * ldk));
                for (int64_t i = 0; i < H * ldq; i++) q[i] = frand();
                for (int64_t i = 0; i < T * ldk; i++) k[i] = f32_to_fp16(frand());
                op_mqa_scores_f16(s1, lds, q, ldq, H, k, ldk, T, d);
                isa_force(ISA_SCALAR);
                op_mqa_scores_f16(s2, lds, q, ldq, H, k, ldk, T, d);
                isa_force(-1);
                for (int64_t h = 0; h < H; h++)
                    for (int64_t t = 0; t < T; t++) {
                        double ref = 0;
                        for (int64_t i = 0; i < d; i++) ref += (double)q[h * ldq + i] * fp16_to_f32(k[t * ldk + i]);
                        double tol = 1e-5 * (1 + sqrt((double)d));
                        CHECKF(fabs(s1[h * lds + t] - ref) < tol && fabs(s2[h * lds + t] - ref) < tol,
                               "f16 H %lld d %lld T %lld", (long long)H, (long long)d, (long long)T);
                    }
                free(q), free(k), free(s1), free(s2);
            }
}

static void test_accum(void) {
    const int64_t heads[] = {1, 5, 16}, dims[] = {1, 16, 40, 64, 100, 512}, poss[] = {1, 2, 64};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 3; c++) {
                int64_t H = heads[a], d = dims[b], T = poss[c], ldo = d + 1, ldp = T + 3, ldv = d + 7;
                float *p = malloc(sizeof(float) * (size_t)(H * ldp)), *v = malloc(sizeof(float) * (size_t)(T * ldv));
                float *o1 = malloc(sizeof(float) * (size_t)(H * ldo)), *o2 = malloc(sizeof(float) * (size_t)(H * ldo));
                for (int64_t i = 0; i < H * ldp; i++) p[i] = frand();
                for (int64_t i = 0; i < T * ldv; i++) v[i] = frand();
                for (int64_t i = 0; i < H * ldo; i++) o1[i] = o2[i] = frand();
                float *o0 = malloc(sizeof(float) * (size_t)(H * ldo));
                memcpy(o0, o1, sizeof(float) * (size_t)(H * ldo));
                op_mqa_accum(o1, ldo, p, ldp, H, v, ldv, T, d);
                isa_force(ISA_SCALAR);
                op_mqa_accum(o2, ldo, p, ldp, H, v, ldv, T, d);
                isa_force(-1);
                for (int64_t h = 0; h < H; h++)
                    for (int64_t i = 0; i < ldo; i++) {
                        double ref = o0[h * ldo + i];
                        if (i < d)
                            for (int64_t t = 0; t < T; t++) ref += (double)p[h * ldp + t] * v[t * ldv + i];
                        double tol = 1e-5 * (1 + sqrt((double)T));
                        CHECKF(fabs(o1[h * ldo + i] - ref) < tol && fabs(o2[h * ldo + i] - ref) < tol,
                               "H %lld d %lld T %lld col %lld: %g %g vs %g", (long long)H, (long long)d, (long long)T,
                               (long long)i, (double)o1[h * ldo + i], (double)o2[h * ldo + i], ref);
                    }
                CHECKF(!memcmp(o1, o2, sizeof(float) * (size_t)(H * ldo)), "H %lld d %lld T %lld: SIMD != portable",
                       (long long)H, (long long)d, (long long)T);
                free(p), free(v), free(o0), free(o1), free(o2);
            }
}

/* Half-float value rows: the same bits as F32 rows holding the widened values, SIMD and portable. */
static void test_accum_f16(void) {
    const int64_t heads[] = {1, 5, 16}, dims[] = {1, 40, 64, 100, 512}, poss[] = {1, 2, 64};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 5; b++)
            for (size_t c = 0; c < 3; c++) {
                int64_t H = heads[a], d = dims[b], T = poss[c], ldo = d + 1, ldp = T + 3, ldv = d + 7;
                float *p = malloc(sizeof(float) * (size_t)(H * ldp)), *v = malloc(sizeof(float) * (size_t)(T * ldv));
                uint16_t *v16 = malloc(sizeof(uint16_t) * (size_t)(T * ldv));
                size_t ob = sizeof(float) * (size_t)(H * ldo);
                float *o1 = malloc(ob), *o2 = malloc(ob), *o3 = malloc(ob);
                for (int64_t i = 0; i < H * ldp; i++) p[i] = frand();
                for (int64_t i = 0; i < T * ldv; i++) v16[i] = f32_to_fp16(frand()), v[i] = fp16_to_f32(v16[i]);
                for (int64_t i = 0; i < H * ldo; i++) o1[i] = frand();
                memcpy(o2, o1, ob), memcpy(o3, o1, ob);
                op_mqa_accum_f16(o1, ldo, p, ldp, H, v16, ldv, T, d);
                op_mqa_accum(o3, ldo, p, ldp, H, v, ldv, T, d);
                isa_force(ISA_SCALAR);
                op_mqa_accum_f16(o2, ldo, p, ldp, H, v16, ldv, T, d);
                isa_force(-1);
                CHECKF(!memcmp(o1, o2, ob) && !memcmp(o1, o3, ob), "H %lld d %lld T %lld", (long long)H, (long long)d,
                       (long long)T);
                free(p), free(v), free(v16), free(o1), free(o2), free(o3);
            }
}

/* The whole online-softmax attention over an F16 cache equals the F32 one over the widened rows. */
static void test_attend_f16(void) {
    const int64_t H = 16, dk = 576, dv = 512, T = 150, ld = dk;
    float *q = malloc(sizeof(float) * (size_t)(H * dk)), *kv = malloc(sizeof(float) * (size_t)(T * ld));
    uint16_t *kv16 = malloc(sizeof(uint16_t) * (size_t)(T * ld));
    float *o1 = calloc((size_t)(H * dv), sizeof(float)), *o2 = calloc((size_t)(H * dv), sizeof(float));
    float m1[16], m2[16], l1[16] = {0}, l2[16] = {0}, *sc = malloc(sizeof(float) * (size_t)(H * OP_MQA_BLOCK));
    for (int64_t i = 0; i < H * dk; i++) q[i] = frand() * 0.2f;
    for (int64_t i = 0; i < T * ld; i++) kv16[i] = f32_to_fp16(frand()), kv[i] = fp16_to_f32(kv16[i]);
    for (int h = 0; h < 16; h++) m1[h] = m2[h] = -INFINITY;
    op_mqa_attend(o1, dv, m1, l1, q, dk, H, kv, ld, dk, kv, ld, dv, T, sc);
    op_mqa_attend_t(o2, dv, m2, l2, q, dk, H, kv16, ld, dk, kv16, ld, dv, T, 1, sc);
    CHECK(!memcmp(o1, o2, sizeof(float) * (size_t)(H * dv)) && !memcmp(m1, m2, sizeof m1) && !memcmp(l1, l2, sizeof l1));
    free(q), free(kv), free(kv16), free(o1), free(o2), free(sc);
}

int main(void) {
    RUN(test_scores);
    RUN(test_scores_f16);
    RUN(test_accum);
    RUN(test_accum_f16);
    RUN(test_attend_f16);
    return check_report("test_attn");
}
