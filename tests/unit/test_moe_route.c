/* test_moe_route.c — properties of DeepSeekMoE routing (SPEC-deepseek.md §3.2-3.3): V3's group
 * limit is respected, the bias changes which experts are chosen but not their weights, weights
 * are normalized and scaled as specified; V2's softmax weights are not renormalized. */
#include <math.h>

#include "base/rng.h"
#include "check.h"
#include "model/model_impl.h"

static model_hparams v3(void) {
    model_hparams hp = {0};
    hp.n_expert = 16;
    hp.n_expert_used = 4;
    hp.n_expert_group = 4; /* groups of 4 experts */
    hp.n_group_used = 2;
    hp.gating = MOE_GATING_SIGMOID;
    hp.expert_weights_norm = 1;
    hp.expert_weights_scale = 2.5f;
    return hp;
}

static float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

static void test_v3_group_limit_and_weights(void) {
    model_hparams hp = v3();
    uint64_t seed = 7;
    for (int trial = 0; trial < 200; trial++) {
        float z[16], bias[16], score[16], w[4];
        int32_t id[4];
        for (int e = 0; e < 16; e++) {
            rng_xorshift64(&seed);
            z[e] = (float)((seed >> 33) % 2000) / 500.0f - 2.0f;
            bias[e] = (float)((seed >> 13) % 100) / 500.0f - 0.1f;
        }
        ds_route(&hp, bias, z, score, id, w);
        int groups[4] = {0}, n_groups = 0;
        double sum = 0;
        for (int k = 0; k < 4; k++) {
            if (!groups[id[k] / 4]++) n_groups++;
            for (int j = 0; j < k; j++) CHECK(id[j] != id[k]);
            sum += w[k];
        }
        CHECK(n_groups <= 2);                /* at most topk_group groups */
        CHECK(fabs(sum - 2.5) < 1e-5);       /* normalized, then times routed_scaling_factor */
        /* weights come from the unbiased sigmoid scores */
        double s = 0;
        for (int k = 0; k < 4; k++) s += sigm(z[id[k]]);
        for (int k = 0; k < 4; k++) CHECK(fabs(w[k] - 2.5 * sigm(z[id[k]]) / s) < 1e-5);
    }
}

static void test_v3_bias_selects_only(void) {
    model_hparams hp = v3();
    hp.n_expert_group = 1;
    hp.n_group_used = 1;
    hp.n_expert_used = 1;
    float z[16] = {0}, score[16], w[1];
    int32_t id[1];
    z[3] = 1.0f; /* expert 3 scores best */
    ds_route(&hp, NULL, z, score, id, w);
    CHECK(id[0] == 3);
    float bias[16] = {0};
    bias[9] = 2.0f; /* the bias prefers expert 9 ... */
    ds_route(&hp, bias, z, score, id, w);
    CHECK(id[0] == 9);
    CHECK(fabsf(w[0] - 2.5f) < 1e-6f); /* ... and its weight is its own normalized score, bias-free */
}

static void test_v2_softmax_greedy(void) {
    model_hparams hp = {0};
    hp.n_expert = 6;
    hp.n_expert_used = 2;
    hp.gating = MOE_GATING_SOFTMAX;
    hp.expert_weights_scale = 1.0f;
    float z[6] = {0.1f, 2.0f, -1.0f, 1.5f, 0.0f, 1.5f}, score[6], w[2];
    int32_t id[2];
    ds_route(&hp, NULL, z, score, id, w);
    CHECK(id[0] == 1 && id[1] == 3); /* tie between 3 and 5: lowest index */
    double den = 0;
    for (int e = 0; e < 6; e++) den += exp(z[e]);
    CHECK(fabs(w[0] - exp(2.0) / den) < 1e-6 && fabs(w[1] - exp(1.5) / den) < 1e-6); /* not renormalized */
}

int main(void) {
    RUN(test_v3_group_limit_and_weights);
    RUN(test_v3_bias_selects_only);
    RUN(test_v2_softmax_greedy);
    return check_report("test_moe_route");
}
