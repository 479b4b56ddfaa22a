/* train_golden.h — what the training-step tests share: a golden file's labels as next-token
 * targets (transformers shifts them: position t predicts label t+1), a Qwen2 golden's shape from
 * its "config" metadata, and every trained parameter's gradient against the golden's
 * "grad.<name>" within tol x that tensor's largest. */
#ifndef WHALE_TEST_TRAIN_GOLDEN_H
#define WHALE_TEST_TRAIN_GOLDEN_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "formats/safetensors.h"
#include "train/dense.h"
#include "train/params.h"

static int32_t *golden_targets(const st_model *st, int *B, int *T) {
    const st_tensor *ids = st_find(st, "ids"), *labels = st_find(st, "labels");
    *B = (int)ids->shape[0], *T = (int)ids->shape[1];
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)*B * (size_t)*T);
    const int32_t *lab = labels->data;
    for (int b = 0; b < *B; b++)
        for (int t = 0; t < *T; t++) tg[b * *T + t] = t + 1 < *T && lab[b * *T + t + 1] >= 0 ? lab[b * *T + t + 1] : -1;
    return tg;
}

static inline int golden_cfg_int(const cJSON *j, const char *k) { return (int)cJSON_GetObjectItem(j, k)->valuedouble; }

/* The tr_dense shape of a golden made from transformers' Qwen2 (q/k/v biases, untied head). */
static inline tr_dense_cfg golden_dense_cfg(const st_model *st) {
    cJSON *j = cJSON_Parse(st_metadata(st, "config"));
    tr_dense_cfg c = {.n_layer = golden_cfg_int(j, "num_hidden_layers"), .d = golden_cfg_int(j, "hidden_size"),
                      .n_head = golden_cfg_int(j, "num_attention_heads"), .n_kv = golden_cfg_int(j, "num_key_value_heads"),
                      .d_ff = golden_cfg_int(j, "intermediate_size"), .vocab = golden_cfg_int(j, "vocab_size"),
                      .eps = (float)cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble,
                      .rope_theta = (float)cJSON_GetObjectItem(j, "rope_theta")->valuedouble, .qkv_bias = 1};
    c.head_dim = c.d / c.n_head;
    cJSON_Delete(j);
    return c;
}

/* Returns the tensors compared; *frozen gets those skipped (not trained). */
static int golden_check_grads(const st_model *st, const tr_params *P, double tol, const char *label, int *frozen) {
    int checked = 0;
    *frozen = 0;
    for (int i = 0; i < P->n_t; i++) {
        if (P->t[i].frozen) {
            ++*frozen;
            continue;
        }
        char name[160];
        snprintf(name, sizeof name, "grad.%s", P->t[i].name);
        const st_tensor *g = st_find(st, name);
        CHECKF(g && (size_t)g->n_elems == P->t[i].n, "%s", name);
        if (!g) continue;
        const float *ref = g->data;
        double mx = 0, diff = 0;
        for (size_t k = 0; k < P->t[i].n; k++) mx = fmax(mx, fabs(ref[k]));
        for (size_t k = 0; k < P->t[i].n; k++) diff = fmax(diff, fabs(P->t[i].g[k] - ref[k]));
        CHECKF(diff <= tol * mx + 1e-8, "%s: %s off by %g (largest gradient %g)", label, P->t[i].name, diff, mx);
        checked++;
    }
    return checked;
}

#endif
