/* test_train_dense.c — a whole dense model's training step against PyTorch autograd: a tiny
 * Qwen2 (transformers' Qwen2ForCausalLM: GQA, q/k/v biases, untied head), a batch of two
 * sequences, one with a padded tail. The loss must match within 1e-5 relative and every
 * parameter's gradient within 1e-4 of that tensor's largest gradient (golden:
 * tests/golden/train_qwen2.safetensors, made by tests/golden/make_train_goldens.py). The same
 * model with PEFT's LoRA on four of its projections: the loss, every adapter's gradient in the
 * same tolerances, and no gradient at all for the frozen model (train_qwen2_lora.safetensors). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_golden.h"
#include "formats/safetensors.h"
#include "train/dense.h"

static char g_path[4096], g_lora[4096];

static void test_step_matches_torch(void) {
    st_model st;
    whale_err err = {0};
    if (st_open(&st, g_path, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    tr_dense_cfg c = golden_dense_cfg(&st);
    tr_dense m;
    CHECK(tr_dense_init(&m, &c, &err) == 0);
    CHECKF(tr_params_load(&m.P, g_path, &err) == 0, "%s", err.msg);
    const st_tensor *ids = st_find(&st, "ids"), *loss = st_find(&st, "loss");
    int B, T, frozen;
    int32_t *tg = golden_targets(&st, &B, &T);
    double L = tr_dense_step(&m, ids->data, tg, NULL, NULL, B, T, 1.0f, &err);
    float want = *(const float *)loss->data;
    CHECKF(fabs(L - want) <= 1e-5 * fabs(want), "loss %.7f, PyTorch %.7f", L, want);
    int checked = golden_check_grads(&st, &m.P, 1e-4, "qwen2", &frozen);
    CHECK(checked == 2 * 12 + 3);
    free(tg);
    tr_dense_free(&m);
    st_close(&st);
}

static void test_lora_step_matches_peft(void) {
    st_model st;
    whale_err err = {0};
    if (st_open(&st, g_lora, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    tr_dense_cfg c = golden_dense_cfg(&st);
    cJSON *j = cJSON_Parse(st_metadata(&st, "lora")), *t;
    c.lora.rank = golden_cfg_int(j, "r");
    c.lora.alpha = (float)cJSON_GetObjectItem(j, "lora_alpha")->valuedouble;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "target_modules")) {
        unsigned bit;
        CHECK(tr_lora_targets_parse(t->valuestring, &bit, &err) == 0);
        c.lora.targets |= bit;
    }
    cJSON_Delete(j);
    tr_dense m;
    CHECK(tr_dense_init(&m, &c, &err) == 0);
    CHECKF(tr_params_load(&m.P, g_lora, &err) == 0, "%s", err.msg);
    const st_tensor *ids = st_find(&st, "ids"), *loss = st_find(&st, "loss");
    int B, T, frozen;
    int32_t *tg = golden_targets(&st, &B, &T);
    double L = tr_dense_step(&m, ids->data, tg, NULL, NULL, B, T, 1.0f, &err);
    float want = *(const float *)loss->data;
    CHECKF(fabs(L - want) <= 1e-5 * fabs(want), "loss %.7f, PEFT %.7f", L, want);
    int checked = golden_check_grads(&st, &m.P, 1e-4, "qwen2+lora", &frozen);
    CHECKF(checked == 2 * 4 * 2 && frozen == 2 * 12 + 3, "%d adapter tensors checked, %d frozen", checked, frozen);
    int untouched = 1; /* the frozen model's gradients are never written */
    for (int i = 0; i < m.P.n_t; i++)
        for (size_t k = 0; m.P.t[i].frozen && k < m.P.t[i].n; k++) untouched &= m.P.t[i].g[k] == 0.0f;
    CHECK(untouched);
    whale_err e2 = {0};
    CHECK(tr_lora_targets_parse("q_proj,lm_head", &(unsigned){0}, &e2) == WHALE_E_ARG && strstr(e2.msg, "lm_head"));
    free(tg);
    tr_dense_free(&m);
    st_close(&st);
}

int main(void) {
    const char *src = getenv("WHALE_SRC");
    snprintf(g_path, sizeof g_path, "%s/tests/golden/train_qwen2.safetensors", src ? src : ".");
    snprintf(g_lora, sizeof g_lora, "%s/tests/golden/train_qwen2_lora.safetensors", src ? src : ".");
    RUN(test_step_matches_torch);
    RUN(test_lora_step_matches_peft);
    return check_report("test_train_dense");
}
