/* test_train_deepseek.c — a DeepSeek-V3-architecture training step against PyTorch autograd
 * (transformers' DeepseekV3ForCausalLM): MLA with and without the q low-rank path, 8 routed
 * experts in 4 groups chosen with a random selection bias, a shared expert, a dense first layer,
 * a batch of two sequences with a padded tail; one multi-token prediction module (its loss
 * weighted 0.3) with plain RoPE and with YaRN. The main and the MTP loss must match within 1e-5
 * relative and every parameter's gradient (of main + weighted MTP loss) within 2e-4 of that
 * tensor's largest gradient (goldens: tests/golden/train_deepseek_v3*.safetensors, made by
 * tests/golden/make_train_goldens.py). The per-token loss weights and log-probabilities (GRPO's
 * hooks) against the plain step on the same models. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_golden.h"
#include "formats/safetensors.h"
#include "train/deepseek.h"

static const char *g_src;

static int num(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(j, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : 0;
}
static float fnum(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(j, k);
    return cJSON_IsNumber(v) ? (float)v->valuedouble : 0;
}

/* The per-token hooks on this model (tr_ds_step's logp and weights; GRPO's inputs): asking for
 * logp changes no bit of the losses or the gradients and its mean is the main loss; weights of
 * 1/n_targets give the unweighted step again to rounding, the MTP loss bit for bit (weights
 * apply to the main cross-entropy only). m->P.g holds the step's gradient of L0 on entry. */
static void check_hooks(tr_ds *m, const int32_t *ids, const int32_t *tg, int B, int T, double L0, const char *file) {
    size_t n = (size_t)B * T, np = m->P.n;
    float *g0 = malloc(sizeof(float) * np), *logp = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    double mtp0 = m->mtp_loss, mean = 0;
    int nt = 0;
    whale_err err = {0};
    memcpy(g0, m->P.g, sizeof(float) * np);
    memset(m->P.g, 0, sizeof(float) * np);
    double L1 = tr_ds_step(m, ids, tg, NULL, logp, B, T, 1.0f, &err);
    CHECKF(L1 == L0 && m->mtp_loss == mtp0 && !memcmp(g0, m->P.g, sizeof(float) * np), "%s: logp output changed the step", file);
    for (size_t i = 0; i < n; i++) nt += tg[i] >= 0, mean -= tg[i] >= 0 ? logp[i] : 0;
    mean /= nt;
    CHECKF(fabs(mean - L0) <= 1e-6 * L0, "%s: mean -logp %.9f, loss %.9f", file, mean, L0);
    for (size_t i = 0; i < n; i++) w[i] = 1.0f / (float)nt;
    memset(m->P.g, 0, sizeof(float) * np);
    double L2 = tr_ds_step(m, ids, tg, w, NULL, B, T, 1.0f, &err);
    CHECKF(fabs(L2 - L0) <= 1e-6 * L0 && m->mtp_loss == mtp0, "%s: weighted loss %.9f, mean %.9f", file, L2, L0);
    double mx = 0, diff = 0;
    for (size_t i = 0; i < np; i++) mx = fmax(mx, fabs(g0[i])), diff = fmax(diff, fabs(m->P.g[i] - g0[i]));
    CHECKF(diff <= 1e-5 * mx, "%s: weighted gradients off by %g (largest %g)", file, diff, mx);
    /* the weights are used: all 0 leaves the MTP gradient alone (the final norm, which only the
     * main head reads, gets none), and the main part is linear in them: g(2w) = 2 g(w) - g(0) */
    float *g1 = g0; /* g0 is no longer needed */
    memcpy(g1, m->P.g, sizeof(float) * np);
    for (size_t i = 0; i < n; i++) w[i] = 0;
    memset(m->P.g, 0, sizeof(float) * np);
    double Lz = tr_ds_step(m, ids, tg, w, NULL, B, T, 1.0f, &err);
    float *gz = malloc(sizeof(float) * np);
    memcpy(gz, m->P.g, sizeof(float) * np);
    const tr_param *fn = tr_params_find(&m->P, "model.norm.weight");
    int nz = 0;
    for (size_t i = 0; i < fn->n; i++) nz += fn->g[i] != 0;
    CHECKF(Lz == 0 && nz == 0 && m->mtp_loss == mtp0, "%s: zero weights: loss %g, %d final-norm gradients", file, Lz, nz);
    for (size_t i = 0; i < n; i++) w[i] = 2.0f / (float)nt;
    memset(m->P.g, 0, sizeof(float) * np);
    double L3 = tr_ds_step(m, ids, tg, w, NULL, B, T, 1.0f, &err);
    diff = 0;
    for (size_t i = 0; i < np; i++) diff = fmax(diff, fabs(m->P.g[i] - (2 * g1[i] - gz[i])));
    CHECKF(fabs(L3 - 2 * L0) <= 2e-6 * L0 && diff <= 1e-5 * mx, "%s: doubled weights: loss %.9f (2 x %.9f), gradients off by %g",
           file, L3, L0, diff);
    /* MTP's loss weight 0 (as GRPO runs it): no gradient reaches the MTP modules, none comes back
     * from them, and everything stays finite (its head's gradient buffer, never written then,
     * must not be backpropagated: after the steps above it holds old values) */
    if (m->c.n_mtp) {
        float keep = m->c.mtp_weight;
        m->c.mtp_weight = 0;
        memset(m->P.g, 0, sizeof(float) * np);
        tr_ds_step(m, ids, tg, w, NULL, B, T, 1.0f, &err);
        int bad = 0;
        for (int i = 0; i < m->P.n_t; i++) {
            int l = -1;
            int mtp_param = sscanf(m->P.t[i].name, "model.layers.%d.", &l) == 1 && l >= m->c.n_layer;
            for (size_t k = 0; k < m->P.t[i].n; k++) bad += !isfinite(m->P.t[i].g[k]) || (mtp_param && m->P.t[i].g[k] != 0);
        }
        CHECKF(bad == 0, "%s: MTP weight 0: %d gradients from the MTP modules or not finite", file, bad);
        m->c.mtp_weight = keep;
    }
    free(g0), free(gz), free(logp), free(w);
}

static void check_golden(const char *file) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tests/golden/%s", g_src, file);
    st_model st;
    whale_err err = {0};
    if (st_open(&st, path, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    cJSON *j = cJSON_Parse(st_metadata(&st, "config"));
    tr_ds_cfg c = {.n_layer = num(j, "num_hidden_layers"), .d = num(j, "hidden_size"), .n_head = num(j, "num_attention_heads"),
                   .vocab = num(j, "vocab_size"), .q_lora = num(j, "q_lora_rank"), .kv_lora = num(j, "kv_lora_rank"),
                   .nope = num(j, "qk_nope_head_dim"), .rope = num(j, "qk_rope_head_dim"), .vdim = num(j, "v_head_dim"),
                   .d_ff = num(j, "intermediate_size"), .moe_ff = num(j, "moe_intermediate_size"),
                   .n_expert = num(j, "n_routed_experts"), .n_used = num(j, "num_experts_per_tok"),
                   .n_shared = num(j, "n_shared_experts"), .n_group = num(j, "n_group"), .topk_group = num(j, "topk_group"),
                   .first_dense = num(j, "first_k_dense_replace"),
                   .route_scale = (float)cJSON_GetObjectItem(j, "routed_scaling_factor")->valuedouble,
                   .norm_topk = cJSON_IsTrue(cJSON_GetObjectItem(j, "norm_topk_prob")), .sigmoid = 1,
                   .eps = (float)cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble,
                   .rope_theta = (float)cJSON_GetObjectItem(j, "rope_theta")->valuedouble,
                   .n_mtp = num(j, "num_nextn_predict_layers"), .mtp_weight = fnum(j, "mtp_loss_weight")};
    const cJSON *rs = cJSON_GetObjectItem(j, "rope_scaling");
    if (rs) {
        c.rope_factor = fnum(rs, "factor"), c.rope_orig_ctx = num(rs, "original_max_position_embeddings");
        c.yarn_beta_fast = fnum(rs, "beta_fast"), c.yarn_beta_slow = fnum(rs, "beta_slow");
        c.yarn_mscale = fnum(rs, "mscale"), c.yarn_mscale_all_dim = fnum(rs, "mscale_all_dim");
    }
    cJSON_Delete(j);
    tr_ds m;
    CHECKF(tr_ds_init(&m, &c, &err) == 0, "%s", err.msg);
    CHECKF(tr_params_load(&m.P, path, &err) == 0, "%s", err.msg);
    const st_tensor *ids = st_find(&st, "ids"), *loss = st_find(&st, "loss");
    int B, T, frozen;
    int32_t *tg = golden_targets(&st, &B, &T);
    double L = tr_ds_step(&m, ids->data, tg, NULL, NULL, B, T, 1.0f, &err);
    float want = *(const float *)loss->data;
    CHECKF(fabs(L - want) <= 1e-5 * fabs(want), "%s: loss %.7f, PyTorch %.7f", file, L, want);
    const st_tensor *mtp = st_find(&st, "mtp_loss");
    CHECK((mtp != NULL) == (c.n_mtp > 0));
    if (mtp) {
        float mw = *(const float *)mtp->data;
        CHECKF(fabs(m.mtp_loss - mw) <= 1e-5 * fabs(mw), "%s: MTP loss %.7f, PyTorch %.7f", file, m.mtp_loss, mw);
    }
    int checked = golden_check_grads(&st, &m.P, 2e-4, file, &frozen);
    CHECK(frozen == c.n_layer + c.n_mtp - c.first_dense);
    CHECK(checked > 20 + 16 * c.n_mtp);
    for (int l = c.n_layer - 1; l < c.n_layer + c.n_mtp; l++) { /* every row took n_used experts */
        int64_t total = 0;
        for (int e = 0; e < c.n_expert; e++) total += m.load[(size_t)l * c.n_expert + e];
        CHECKF(total == (int64_t)B * (T - (l - c.n_layer + 1)) * c.n_used, "layer %d: %lld expert rows", l, (long long)total);
    }
    check_hooks(&m, ids->data, tg, B, T, L, file);
    free(tg);
    tr_ds_free(&m);
    st_close(&st);
}

static void test_v3(void) { check_golden("train_deepseek_v3.safetensors"); }
static void test_v3_without_q_lora(void) { check_golden("train_deepseek_v3_nolora.safetensors"); }
static void test_v3_yarn(void) { check_golden("train_deepseek_v3_yarn.safetensors"); }

int main(void) {
    g_src = getenv("WHALE_SRC") ? getenv("WHALE_SRC") : ".";
    RUN(test_v3);
    RUN(test_v3_without_q_lora);
    RUN(test_v3_yarn);
    return check_report("test_train_deepseek");
}
