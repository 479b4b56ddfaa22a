/* test_rope.c — rotary frequency tables against the anchors in ../shared/SPEC-deepseek.md §6
 * (YaRN for DeepSeek-V3 / V2-Lite) and the Llama 3 scaling rule. */
#include <math.h>

#include "check.h"
#include "model/model.h"

static void test_yarn_anchors(void) {
    model_hparams hp = {0};
    hp.rope_theta = 10000;
    hp.rope_scaling_type = ROPE_SCALING_YARN;
    hp.rope_factor = 40;
    hp.rope_orig_ctx = 4096;
    hp.yarn_beta_fast = 32;
    hp.yarn_beta_slow = 1;
    float f[32];
    model_rope_inv_freq(&hp, 64, f);
    const struct { int i; double want; } anchors[] = {
        {0, 1.0}, {10, 5.623413e-02}, {11, 3.900693e-02}, {16, 5.500000e-03},
        {22, 1.778279e-04}, {23, 3.333804e-05}, {31, 3.333804e-06}};
    for (size_t k = 0; k < sizeof anchors / sizeof anchors[0]; k++) {
        double got = f[anchors[k].i], want = anchors[k].want;
        CHECKF(fabs(got - want) <= 1e-6 * want + 1e-12, "f'[%d] = %.7g, spec %.7g", anchors[k].i, got, want);
    }
}

static void test_llama3_scaling(void) {
    model_hparams hp = {0};
    hp.rope_theta = 500000;
    hp.rope_scaling_type = ROPE_SCALING_LLAMA3;
    hp.rope_factor = 8;
    hp.rope_low_freq_factor = 1;
    hp.rope_high_freq_factor = 4;
    hp.rope_orig_ctx = 8192;
    float f[64], base[64];
    model_rope_inv_freq(&hp, 128, f);
    hp.rope_scaling_type = ROPE_SCALING_NONE;
    model_rope_inv_freq(&hp, 128, base);
    CHECK(f[0] == base[0]);                                 /* short wavelengths kept */
    CHECK(fabsf(f[63] - base[63] / 8) <= 1e-6f * base[63]); /* long ones divided by factor */
    for (int i = 1; i < 64; i++) CHECK(f[i] <= f[i - 1]);   /* still monotone through the ramp */
}

int main(void) {
    RUN(test_yarn_anchors);
    RUN(test_llama3_scaling);
    return check_report("test_rope");
}
