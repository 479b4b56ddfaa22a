/* test_train_dense.c — a whole dense model's training step against PyTorch autograd: a tiny
 * Qwen2 (transformers' Qwen2ForCausalLM: GQA, q/k/v biases, untied head), a batch of two
 * sequences, one with a padded tail. The loss must match within 1e-5 relative and every
 * parameter's gradient within 1e-4 of that tensor's largest gradient (golden:
 * tests/golden/train_qwen2.safetensors, made by tests/golden/make_train_goldens.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_golden.h"
#include "formats/safetensors.h"
#include "train/dense.h"

static char g_path[4096];

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

int main(void) {
    const char *src = getenv("WHALE_SRC");
    snprintf(g_path, sizeof g_path, "%s/tests/golden/train_qwen2.safetensors", src ? src : ".");
    RUN(test_step_matches_torch);
    return check_report("test_train_dense");
}
