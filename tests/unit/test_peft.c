/* test_peft.c — LoRA adapters in PEFT's layout (formats/peft.c): an adapter written by
 * peft_write reads back equal (the trainer's save path), the scale rule, and malformed
 * adapters (bad JSON, rank 0, options Whale does not apply, a lone A, wrong shapes, foreign
 * tensors, truncated files) refused with a message naming the problem. The same files are
 * checked against PEFT itself in tests/py/test_lora.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "formats/peft.h"
#include "formats/safetensors_write.h"

static char dir[256];

static void put(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

/* An adapter of rank 2 on two modules, A and B filled with i * 0.01 - 0.3. */
static void make(peft_adapter *a, peft_module *m, char **targets) {
    memset(a, 0, sizeof *a);
    a->r = 2;
    a->alpha = 6;
    a->rslora = 0;
    a->targets = targets;
    a->n_targets = 2;
    a->mods = m;
    a->n_mods = 2;
    const char *names[2] = {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"};
    int64_t in[2] = {8, 12}, out[2] = {8, 4};
    for (int k = 0; k < 2; k++) {
        memset(&m[k], 0, sizeof m[k]);
        snprintf(m[k].name, sizeof m[k].name, "%s", names[k]);
        m[k].n_in = in[k];
        m[k].n_out = out[k];
        m[k].a = malloc((size_t)(2 * in[k]) * sizeof(float));
        m[k].b = malloc((size_t)(out[k] * 2) * sizeof(float));
        for (int64_t i = 0; i < 2 * in[k]; i++) m[k].a[i] = (float)i * 0.01f - 0.3f;
        for (int64_t i = 0; i < 2 * out[k]; i++) m[k].b[i] = (float)i * 0.02f + 0.1f * (float)k;
    }
}

static void test_write_read_round_trip(void) {
    for (int rs = 0; rs < 2; rs++) { /* plain and rsLoRA scales */
        peft_module m[2];
        char *targets[2] = {"q_proj", "down_proj"};
        peft_adapter a, b;
        make(&a, m, targets);
        a.rslora = rs;
        whale_err err = {0};
        CHECKF(peft_write(dir, &a, "tiny", &err) == 0, "%s", err.msg);
        CHECKF(peft_load(&b, dir, &err) == 0, "%s", err.msg);
        CHECK(b.r == 2 && b.alpha == 6 && b.rslora == rs);
        CHECK(fabsf(b.scale - (rs ? 6.0f / sqrtf(2.0f) : 3.0f)) < 1e-6f);
        CHECK(b.n_targets == 2 && !strcmp(b.targets[0], "q_proj") &&
              !strcmp(b.targets[1], "down_proj"));
        CHECK(b.n_mods == 2);
        for (int k = 0; k < 2 && b.n_mods == 2; k++) {
            CHECK(!strcmp(b.mods[k].name, m[k].name) && b.mods[k].n_in == m[k].n_in &&
                  b.mods[k].n_out == m[k].n_out);
            CHECK(!memcmp(b.mods[k].a, m[k].a, (size_t)(2 * m[k].n_in) * sizeof(float)));
            CHECK(!memcmp(b.mods[k].b, m[k].b, (size_t)(2 * m[k].n_out) * sizeof(float)));
        }
        peft_free(&b);
        /* the file itself as the path works too */
        char p[512];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
        CHECKF(peft_load(&b, p, &err) == 0, "%s", err.msg);
        peft_free(&b);
        for (int k = 0; k < 2; k++) free(m[k].a), free(m[k].b);
    }
}

static void test_scale_rule(void) {
    CHECK(fabsf(peft_scale(16, 4, 0) - 4.0f) < 1e-6f);
    CHECK(fabsf(peft_scale(16, 4, 1) - 8.0f) < 1e-6f);
    CHECK(fabsf(peft_scale(4, 2, 1) - 2.8284271f) < 1e-6f);
}

/* The adapter in dir with config text cfg must be refused with a message containing want. */
static void refused(const char *cfg, const char *want) {
    if (cfg) put("adapter_config.json", cfg);
    peft_adapter a;
    whale_err err = {0};
    int rc = peft_load(&a, dir, &err);
    CHECKF(rc < 0 && strstr(err.msg, want), "rc %d, message '%s', wanted '%s'", rc, err.msg, want);
    CHECK(a.n_mods == 0 && a.mods == NULL); /* left empty */
    peft_free(&a);
}

static const char GOOD[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 6, \"target_modules\": [\"q_proj\"]}";

static void test_malformed_config(void) {
    peft_module m[2];
    char *targets[2] = {"q_proj", "down_proj"};
    peft_adapter a;
    make(&a, m, targets);
    whale_err err = {0};
    CHECKF(peft_write(dir, &a, NULL, &err) == 0, "%s", err.msg);
    for (int k = 0; k < 2; k++) free(m[k].a), free(m[k].b);
    refused("{\"r\": 2, \"lora_alpha\": ", "not JSON");
    refused("[1, 2]", "not a JSON object");
    refused("{\"r\": 0, \"lora_alpha\": 8}", "\"r\" must be an integer rank");
    refused("{\"r\": 2.5}", "\"r\" must be an integer rank");
    refused("{\"r\": 100000}", "\"r\" must be an integer rank");
    refused("{\"r\": \"2\"}", "\"r\" must be an integer rank");
    refused("{\"r\": 2, \"lora_alpha\": \"x\"}", "lora_alpha");
    refused("{\"r\": 2, \"use_dora\": true}", "DoRA");
    refused("{\"r\": 2, \"fan_in_fan_out\": true}", "fan_in_fan_out");
    refused("{\"r\": 2, \"bias\": \"all\"}", "biases");
    refused("{\"r\": 2, \"rank_pattern\": {\"q_proj\": 8}}", "per-module ranks");
    refused("{\"r\": 2, \"modules_to_save\": [\"lm_head\"]}", "modules_to_save");
    refused("{\"r\": 2, \"peft_type\": \"IA3\"}", "LORA");
    refused("{\"r\": 2, \"target_modules\": [1]}", "target_modules");
    refused("{\"r\": 4}", "not [r, n_in] for rank 4"); /* the tensors are rank 2 */
    put("adapter_config.json", GOOD);
    peft_adapter b;
    CHECKF(peft_load(&b, dir, &err) == 0, "%s", err.msg);
    peft_free(&b);
    char p[512];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    unlink(p);
    refused(NULL, "no adapter_config.json");
}

/* adapter_model.safetensors with the given tensors (F32, zeros). */
static void tensors(const char *const *names, const int64_t (*shapes)[2], int n) {
    st_out_tensor t[8];
    static float zeros[4096];
    for (int i = 0; i < n; i++) {
        t[i] = (st_out_tensor){names[i], WHALE_DTYPE_F32,
                               2,        {shapes[i][0], shapes[i][1]},
                               zeros,    (size_t)(shapes[i][0] * shapes[i][1]) * sizeof(float)};
    }
    char p[512];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    whale_err err = {0};
    CHECKF(st_write(p, t, n, NULL, 0, &err) == 0, "%s", err.msg);
}

static void test_malformed_tensors(void) {
    put("adapter_config.json", GOOD);
    const char *qa = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    const char *qb = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";
    const char *qad = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight";
    const char *qbd = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight";
    {
        const char *n[] = {qa};
        const int64_t s[][2] = {{2, 8}};
        tensors(n, s, 1);
        refused(NULL, "has lora_A but no lora_B");
    }
    {
        const char *n[] = {qa, qb};
        const int64_t s[][2] = {{2, 8}, {8, 3}};
        tensors(n, s, 2);
        refused(NULL, "has shape [8, 3], not [n_out, r] for rank 2");
    }
    {
        const char *n[] = {qa, qb, "base_model.model.lm_head.weight"};
        const int64_t s[][2] = {{2, 8}, {8, 2}, {4, 8}};
        tensors(n, s, 3);
        refused(NULL, "is not a LoRA A or B matrix");
    }
    {
        const char *n[] = {qa, qad};
        const int64_t s[][2] = {{2, 8}, {2, 8}};
        tensors(n, s, 2);
        refused(NULL, "two lora_A matrices");
    }
    {
        tensors(NULL, NULL, 0);
        refused(NULL, "holds no LoRA matrices");
    }
    { /* the in-memory names with ".default" are accepted */
        const char *n[] = {qad, qbd};
        const int64_t s[][2] = {{2, 8}, {8, 2}};
        tensors(n, s, 2);
        peft_adapter a;
        whale_err err = {0};
        CHECKF(peft_load(&a, dir, &err) == 0 && a.n_mods == 1 &&
                   !strcmp(a.mods[0].name, "model.layers.0.self_attn.q_proj"),
               "%s", err.msg);
        peft_free(&a);
    }
    { /* truncated: every length short of the whole file is refused, none crashes */
        const char *n[] = {qa, qb};
        const int64_t s[][2] = {{2, 8}, {8, 2}};
        tensors(n, s, 2);
        char p[512];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
        struct stat sb;
        stat(p, &sb);
        for (off_t len = sb.st_size - 1; len >= 0; len -= len > 200 ? 37 : 1) {
            CHECK(truncate(p, len) == 0);
            peft_adapter a;
            whale_err err = {0};
            int rc = peft_load(&a, dir, &err);
            CHECKF(rc < 0 && strstr(err.msg, "adapter_model.safetensors"),
                   "length %lld: rc %d '%s'", (long long)len, rc, err.msg);
            peft_free(&a);
        }
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/whale-test-peft-%d", (int)getpid());
    mkdir(dir, 0700);
    RUN(test_write_read_round_trip);
    RUN(test_scale_rule);
    RUN(test_malformed_config);
    RUN(test_malformed_tensors);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_peft");
}
