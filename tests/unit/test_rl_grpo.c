/* test_rl_grpo.c — GRPO's math (rl/grpo.c) and the trainer's weighted cross-entropy against
 * PyTorch autograd (goldens made by tests/golden/make_grpo_goldens.py):
 * - grpo_math.json: advantages, J, clip fraction, mean KL and dJ/dlogp of 8 groups (GRPO and
 *   Dr. GRPO; clipping on some tokens, equal rewards, an empty response) within 1e-6 of each
 *   case's largest (the C side reads float inputs and computes in double; torch in float64);
 * - grpo_qwen2.safetensors: a whole GRPO gradient on a tiny Qwen2: the step's per-token logp
 *   within 2e-5 of torch's, each group's J within 1e-5, and every parameter's gradient of -mean J
 *   (grpo_objective's dJ fed to tr_dense_step as loss weights) within 1e-4 of that tensor's
 * largest;
 * - the logp output: what the mean cross-entropy implies (their mean is the loss), and asking for
 *   it changes no bit of the loss or the gradients; weights of 1/n_targets give the unweighted
 *   mean's loss and gradients (to rounding). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_golden.h"
#include "formats/safetensors.h"
#include "rl/grpo.h"
#include "train/dense.h"

#define GOLDEN_MAGIC   "whale-grpo-golden"
#define GOLDEN_VERSION 1
/* The math golden's size: 8 groups of 5 x 12 in about 42 kB of JSON. */
#define MATH_JSON_MAX (1 << 20)
#define MAX_GL        256 /* G x L of a math case */

static char g_src[4096];

static const char *golden_path(const char *name) {
    static char p[4200];
    snprintf(p, sizeof p, "%s/tests/golden/%s", g_src, name);
    return p;
}

static int floats(const cJSON *a, float *out, int cap) {
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < cap) out[n++] = (float)x->valuedouble;
    return n;
}

static double num(const cJSON *j, const char *k) {
    return cJSON_GetObjectItem(j, k)->valuedouble;
}

static void test_math_matches_torch(void) {
    FILE *f = fopen(golden_path("grpo_math.json"), "rb");
    char *buf = malloc(MATH_JSON_MAX);
    size_t n = f && buf ? fread(buf, 1, MATH_JSON_MAX, f) : 0;
    if (f) fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    CHECKF(j, "cannot read %s", golden_path("grpo_math.json"));
    if (!j) return;
    const cJSON *magic = cJSON_GetObjectItem(j, "magic");
    CHECK(cJSON_IsString(magic) && !strcmp(magic->valuestring, GOLDEN_MAGIC) &&
          (int)num(j, "version") == GOLDEN_VERSION);
    grpo_cfg cfg = {.clip_eps = (float)num(j, "clip_eps"),
                    .beta = (float)num(j, "beta"),
                    .adv_eps = (float)num(j, "adv_eps"),
                    .max_len = (int)num(j, "max_len")};
    const cJSON *c;
    int cases = 0, clipped_cases = 0;
    double worst_J = 0, worst_dJ = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        cfg.variant =
            strcmp(cJSON_GetObjectItem(c, "variant")->valuestring, "dr_grpo") ? GRPO_STD : GRPO_DR;
        int G = (int)num(c, "G"), L = (int)num(c, "L");
        CHECK(G * L <= MAX_GL);
        if (G * L > MAX_GL) break;
        float r[MAX_GL], lp[MAX_GL], old[MAX_GL], ref[MAX_GL], mf[MAX_GL], want_adv[MAX_GL],
            want_dJ[MAX_GL], adv[MAX_GL], dJ[MAX_GL];
        uint8_t mask[MAX_GL];
        floats(cJSON_GetObjectItem(c, "rewards"), r, MAX_GL),
            floats(cJSON_GetObjectItem(c, "adv"), want_adv, MAX_GL);
        floats(cJSON_GetObjectItem(c, "logp"), lp, MAX_GL),
            floats(cJSON_GetObjectItem(c, "old"), old, MAX_GL);
        floats(cJSON_GetObjectItem(c, "ref"), ref, MAX_GL),
            floats(cJSON_GetObjectItem(c, "mask"), mf, MAX_GL);
        floats(cJSON_GetObjectItem(c, "dJ"), want_dJ, MAX_GL);
        for (int i = 0; i < G * L; i++) mask[i] = mf[i] != 0;
        whale_err err = {0};
        CHECKF(grpo_advantages(adv, r, G, &cfg, &err) == 0, "%s", err.msg);
        for (int i = 0; i < G; i++)
            CHECKF(fabs(adv[i] - want_adv[i]) <= 1e-6 * fmax(1, fabs(want_adv[i])),
                   "case %d: A_%d %g, torch %g", cases, i, adv[i], want_adv[i]);
        double J;
        grpo_stats st;
        /* torch's advantages (float64 rounded to float), so the objective is checked on its own */
        CHECKF(grpo_objective(&J, dJ, &st, lp, old, ref, mask, want_adv, G, L, &cfg, &err) == 0,
               "%s", err.msg);
        double mx = 0, diff = 0;
        for (int i = 0; i < G * L; i++) mx = fmax(mx, fabs(want_dJ[i]));
        for (int i = 0; i < G * L; i++) diff = fmax(diff, fabs(dJ[i] - want_dJ[i]));
        double wantJ = num(c, "J"), want_clip = num(c, "clip_frac"), want_kl = num(c, "kl_mean");
        /* J sums terms of both signs (advantages sum to 0): its error is the terms' (inputs in
         * float, A in float), not relative to J itself */
        CHECKF(fabs(J - wantJ) <= 1e-7 + 1e-6 * fabs(wantJ), "case %d: J %.9g, torch %.9g", cases,
               J, wantJ);
        worst_J = fmax(worst_J, fabs(J - wantJ)), worst_dJ = fmax(worst_dJ, diff / mx);
        CHECKF(diff <= 1e-6 * mx + 1e-12, "case %d: dJ/dlogp off by %g (largest %g)", cases, diff,
               mx);
        CHECKF(fabs(st.clip_frac - want_clip) <= 1e-9, "case %d: clip fraction %g, torch %g", cases,
               st.clip_frac, want_clip);
        CHECKF(fabs(st.kl_mean - want_kl) <= 1e-6 * want_kl, "case %d: KL %.9g, torch %.9g", cases,
               st.kl_mean, want_kl);
        clipped_cases += want_clip > 0;
        cases++;
    }
    CHECK(cases == 8 && clipped_cases >= 4);
    printf("grpo math: J within %.2g, dJ/dlogp within %.2g of the largest\n", worst_J, worst_dJ);
    cJSON_Delete(j);
}

static void test_bad_arguments(void) {
    grpo_cfg cfg = {
        .variant = GRPO_STD, .clip_eps = 0.2f, .beta = 0.04f, .adv_eps = 1e-4f, .max_len = 0};
    float r[2] = {1, 0}, adv[2], x[2] = {0};
    uint8_t m[2] = {1, 1};
    double J;
    whale_err err = {0};
    CHECK(grpo_advantages(adv, r, 1, &cfg, &err) == WHALE_E_ARG); /* one response: no sample std */
    r[1] = NAN;
    CHECK(grpo_advantages(adv, r, 2, &cfg, &err) == WHALE_E_ARG);
    cfg.variant = GRPO_DR;
    CHECK(grpo_advantages(adv, r, 1, &cfg, &err) == 0 && adv[0] == 0);
    CHECK(grpo_objective(&J, NULL, NULL, x, x, x, m, adv, 1, 2, &cfg, &err) ==
          WHALE_E_ARG); /* Dr. GRPO without max_len */
    cfg.variant = GRPO_STD, cfg.clip_eps = 1.5f;
    CHECK(grpo_objective(&J, NULL, NULL, x, x, x, m, adv, 1, 2, &cfg, &err) == WHALE_E_ARG);
    cfg.clip_eps = 0.2f, cfg.beta = -1;
    CHECK(grpo_objective(&J, NULL, NULL, x, x, x, m, adv, 1, 2, &cfg, &err) == WHALE_E_ARG);
}

/* A golden's model, loaded; 0 when the file cannot be read (a failure recorded). */
static int open_model(st_model *st, tr_dense *m, const char *name) {
    whale_err err = {0};
    const char *path = golden_path(name);
    if (st_open(st, path, &err)) {
        CHECKF(0, "%s", err.msg);
        return 0;
    }
    tr_dense_cfg c = golden_dense_cfg(st);
    CHECK(tr_dense_init(m, &c, &err) == 0);
    CHECKF(tr_params_load(&m->P, path, &err) == 0, "%s", err.msg);
    return 1;
}

static void test_model_gradient_matches_torch(void) {
    st_model st;
    tr_dense m;
    if (!open_model(&st, &m, "grpo_qwen2.safetensors")) return;
    const char *magic = st_metadata(&st, "magic"), *version = st_metadata(&st, "version");
    CHECK(magic && !strcmp(magic, GOLDEN_MAGIC) && version && atoi(version) == GOLDEN_VERSION);
    grpo_cfg cfg = {.variant = GRPO_STD,
                    .clip_eps = (float)atof(st_metadata(&st, "clip_eps")),
                    .beta = (float)atof(st_metadata(&st, "beta")),
                    .adv_eps = (float)atof(st_metadata(&st, "adv_eps"))};
    int G = atoi(st_metadata(&st, "group")), B, T, frozen;
    int32_t *tg = golden_targets(&st, &B, &T);
    const int32_t *ids = st_find(&st, "ids")->data;
    const float *want_logp = st_find(&st, "logp")->data, *old = st_find(&st, "old")->data,
                *ref = st_find(&st, "ref")->data;
    const float *rewards = st_find(&st, "rewards")->data, *want_J = st_find(&st, "J")->data;
    size_t n = (size_t)B * T;
    float *logp = calloc(n, sizeof *logp), *logp2 = calloc(n, sizeof *logp2),
          *w = calloc(n, sizeof *w);
    uint8_t *mask = calloc(n, 1);
    whale_err err = {0};
    /* the old policy's pass: forward only, logp out */
    tr_dense_step(&m, ids, tg, NULL, logp, B, T, 0, &err);
    double diff = 0;
    for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(logp[i] - want_logp[i]));
    CHECKF(diff <= 2e-5, "logp off by %g", diff);
    printf("grpo qwen2: logp within %.2g of torch's\n", diff);
    for (size_t i = 0; i < n; i++) mask[i] = tg[i] >= 0;
    int n_groups = B / G;
    CHECK(n_groups * G == B && n_groups == 2);
    for (int g = 0; g < n_groups; g++) { /* each group's objective; the batch's is their mean */
        size_t row = (size_t)g * G * T;
        float adv[64];
        double J;
        grpo_stats gs;
        CHECK(grpo_advantages(adv, rewards + g * G, G, &cfg, &err) == 0);
        CHECK(grpo_objective(&J, w + row, &gs, logp + row, old + row, ref + row, mask + row, adv, G,
                             T, &cfg, &err) == 0);
        CHECKF(fabs(J - want_J[g]) <= 1e-5, "group %d: J %.7f, torch %.7f", g, J, want_J[g]);
        printf("grpo qwen2: group %d J %.7f, torch %.7f\n", g, J, want_J[g]);
        CHECK(gs.clip_frac > 0 && gs.kl_mean > 0);
    }
    for (size_t i = 0; i < n; i++) w[i] /= (float)n_groups;
    tr_dense_step(&m, ids, tg, w, logp2, B, T, 1.0f, &err);
    CHECK(memcmp(logp, logp2, sizeof(float) * n) == 0); /* the same forward */
    int checked = golden_check_grads(&st, &m.P, 1e-4, "grpo qwen2", &frozen);
    CHECK(checked == 2 * 12 + 3);
    double worst = 0; /* for the record: the largest error over a tensor's largest gradient */
    for (int i = 0; i < m.P.n_t; i++) {
        char name[160];
        snprintf(name, sizeof name, "grad.%s", m.P.t[i].name);
        const st_tensor *gt = st_find(&st, name);
        if (!gt) continue;
        const float *ref_g = gt->data;
        double gmx = 0, gd = 0;
        for (size_t k = 0; k < m.P.t[i].n; k++)
            gmx = fmax(gmx, fabs(ref_g[k])), gd = fmax(gd, fabs(m.P.t[i].g[k] - ref_g[k]));
        worst = fmax(worst, gd / gmx);
    }
    printf("grpo qwen2: gradients within %.2g of each tensor's largest\n", worst);
    free(tg), free(logp), free(logp2), free(w), free(mask);
    tr_dense_free(&m);
    st_close(&st);
}

static void test_logp_and_weights_agree_with_mean_ce(void) {
    st_model st;
    tr_dense m;
    if (!open_model(&st, &m, "train_qwen2.safetensors")) return;
    int B, T, nt = 0;
    int32_t *tg = golden_targets(&st, &B, &T);
    const int32_t *ids = st_find(&st, "ids")->data;
    size_t n = (size_t)B * T, np = m.P.n;
    float *logp = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n),
          *g0 = malloc(sizeof(float) * np);
    for (size_t i = 0; i < n; i++) nt += tg[i] >= 0;
    for (size_t i = 0; i < n; i++) logp[i] = 7; /* every position written */
    whale_err err = {0};
    double L0 = tr_dense_step(&m, ids, tg, NULL, NULL, B, T, 1.0f, &err);
    memcpy(g0, m.P.g, sizeof(float) * np);
    memset(m.P.g, 0, sizeof(float) * np);
    double L1 = tr_dense_step(&m, ids, tg, NULL, logp, B, T, 1.0f, &err);
    CHECK(L0 == L1 && memcmp(g0, m.P.g, sizeof(float) * np) == 0);
    double mean = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (tg[i] < 0)
            bad += logp[i] != 0;
        else
            mean -= logp[i], bad += !(logp[i] < 0);
    }
    mean /= nt;
    CHECK(bad == 0);
    CHECKF(fabs(mean - L0) <= 1e-6 * L0, "mean -logp %.9f, loss %.9f", mean, L0);
    /* weights 1/n_targets everywhere: the unweighted mean again, to rounding */
    for (size_t i = 0; i < n; i++) w[i] = 1.0f / (float)nt;
    memset(m.P.g, 0, sizeof(float) * np);
    double L2 = tr_dense_step(&m, ids, tg, w, NULL, B, T, 1.0f, &err);
    CHECKF(fabs(L2 - L0) <= 1e-6 * L0, "weighted %.9f, mean %.9f", L2, L0);
    double mx = 0, diff = 0;
    for (size_t i = 0; i < np; i++)
        mx = fmax(mx, fabs(g0[i])), diff = fmax(diff, fabs(m.P.g[i] - g0[i]));
    CHECKF(diff <= 1e-5 * mx, "gradients off by %g (largest %g)", diff, mx);
    free(tg), free(logp), free(w), free(g0);
    tr_dense_free(&m);
    st_close(&st);
}

int main(void) {
    const char *src = getenv("WHALE_SRC");
    snprintf(g_src, sizeof g_src, "%s", src ? src : ".");
    RUN(test_math_matches_torch);
    RUN(test_bad_arguments);
    RUN(test_model_gradient_matches_torch);
    RUN(test_logp_and_weights_agree_with_mean_ce);
    return check_report("test_rl_grpo");
}
