/* test_train_optim.c — the optimizer against PyTorch: three AdamW steps (with and without
 * weight decay) and clip_grad_norm_ against torch's outputs (tests/golden/train_adamw.json,
 * made by tests/golden/make_train_goldens.py), within 2e-6 per parameter; the learning-rate
 * schedules at their corners. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "train/optim.h"

static cJSON *golden;

static int floats(const cJSON *a, float *out, int cap) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < cap) out[n++] = (float)x->valuedouble;
    return n;
}

static void test_adamw_matches_torch(void) {
    const cJSON *cfg = cJSON_GetObjectItem(golden, "config");
    tr_adamw c = {(float)cJSON_GetObjectItem(cfg, "lr")->valuedouble, (float)cJSON_GetObjectItem(cfg, "beta1")->valuedouble,
                  (float)cJSON_GetObjectItem(cfg, "beta2")->valuedouble, (float)cJSON_GetObjectItem(cfg, "eps")->valuedouble,
                  (float)cJSON_GetObjectItem(cfg, "weight_decay")->valuedouble};
    float p[2][64], m[2][64] = {{0}}, v[2][64] = {{0}}, g[2][64], want[2][64];
    int n[2];
    for (int b = 0; b < 2; b++) n[b] = floats(cJSON_GetArrayItem(cJSON_GetObjectItem(golden, "init"), b), p[b], 64);
    CHECK(n[0] == 37 && n[1] == 5);
    const cJSON *st;
    long step = 0;
    cJSON_ArrayForEach(st, cJSON_GetObjectItem(golden, "steps")) {
        step++;
        for (int b = 0; b < 2; b++) {
            floats(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "grad"), b), g[b], 64);
            floats(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "param"), b), want[b], 64);
            tr_adamw_step(p[b], g[b], m[b], v[b], (size_t)n[b], step, &c, b == 0);
            double worst = 0;
            for (int i = 0; i < n[b]; i++) worst = fmax(worst, fabs(p[b][i] - want[b][i]));
            CHECKF(worst <= 2e-6, "step %ld, group %d: off by %g", step, b, worst);
        }
    }
    CHECK(step == 3);
}

static void test_clip_matches_torch(void) {
    const cJSON *cl = cJSON_GetObjectItem(golden, "clip");
    float g[2][64], want[2][64];
    int n[2];
    for (int b = 0; b < 2; b++) {
        n[b] = floats(cJSON_GetArrayItem(cJSON_GetObjectItem(cl, "grad"), b), g[b], 64);
        floats(cJSON_GetArrayItem(cJSON_GetObjectItem(cl, "clipped"), b), want[b], 64);
    }
    float *bufs[2] = {g[0], g[1]};
    size_t lens[2] = {(size_t)n[0], (size_t)n[1]};
    double norm = tr_clip_grad_norm(bufs, lens, 2, cJSON_GetObjectItem(cl, "max_norm")->valuedouble);
    CHECKF(fabs(norm - cJSON_GetObjectItem(cl, "norm")->valuedouble) <= 1e-5 * norm, "norm %g", norm);
    double worst = 0;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < n[b]; i++) worst = fmax(worst, fabs(g[b][i] - want[b][i]));
    CHECKF(worst <= 1e-6, "clipped off by %g", worst);
}

static void test_schedules(void) {
    /* warmup: linear from peak/warmup to peak; cosine ends at min_lr; wsd flat then linear */
    CHECK(fabsf(tr_lr_at(0, 100, 10, 1.0f, 0.1f, TR_LR_COSINE, 0) - 0.1f) < 1e-7f);
    CHECK(fabsf(tr_lr_at(9, 100, 10, 1.0f, 0.1f, TR_LR_COSINE, 0) - 1.0f) < 1e-7f);
    CHECK(fabsf(tr_lr_at(10, 100, 10, 1.0f, 0.1f, TR_LR_COSINE, 0) - 1.0f) < 1e-6f);
    CHECK(fabsf(tr_lr_at(55, 100, 10, 1.0f, 0.1f, TR_LR_COSINE, 0) - 0.55f) < 1e-6f); /* halfway */
    CHECK(fabsf(tr_lr_at(100, 100, 10, 1.0f, 0.1f, TR_LR_COSINE, 0) - 0.1f) < 1e-6f);
    CHECK(tr_lr_at(79, 100, 10, 1.0f, 0.0f, TR_LR_WSD, 0.2f) == 1.0f);
    CHECK(fabsf(tr_lr_at(89, 100, 10, 1.0f, 0.0f, TR_LR_WSD, 0.2f) - 0.5f) < 1e-6f);
    CHECK(fabsf(tr_lr_at(99, 100, 10, 1.0f, 0.0f, TR_LR_WSD, 0.2f)) < 1e-6f);
}

int main(void) {
    char path[4096];
    const char *src = getenv("WHALE_SRC");
    snprintf(path, sizeof path, "%s/tests/golden/train_adamw.json", src ? src : ".");
    FILE *f = fopen(path, "rb");
    static char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    golden = cJSON_ParseWithLength(buf, n);
    if (!golden) {
        fprintf(stderr, "test_train_optim: cannot read %s\n", path);
        return 1;
    }
    RUN(test_adamw_matches_torch);
    RUN(test_clip_matches_torch);
    RUN(test_schedules);
    cJSON_Delete(golden);
    return check_report("test_train_optim");
}
