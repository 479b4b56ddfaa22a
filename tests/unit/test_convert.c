/* test_convert.c — the GGUF key table and the convert/ library: hparams written through
 * gguf_keys_write read back equal through gguf_hparams_load for every synth shape (MTP and YaRN
 * included), each architecture gets only its keys, a key of the wrong type is an error; the
 * per-dtype summary; the streaming writer's bytes, its reports and its errors (nothing left
 * behind); synth plans with and without a vocabulary. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "convert/convert.h"
#include "formats/dtype_summary.h"
#include "formats/gguf.h"
#include "formats/gguf_hparams.h"
#include "formats/gguf_keys.h"

static char tmp_dir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "%.63s/%.100s", tmp_dir, name);
    return p;
}

/* Write hp (plus MTP's marker tensor when it has a module) and read it back into *got. */
static int round_trip(const model_hparams *hp, model_hparams *got, gguf_file *f) {
    gguf_writer *w = gguf_writer_init();
    whale_err err = {0};
    int rc = gguf_keys_write(w, hp);
    if (!rc && hp->n_nextn_layer > 0) {
        char name[96];
        int64_t ne[2] = {2 * hp->n_embd, hp->n_embd};
        snprintf(name, sizeof name, "blk.%lld.nextn.eh_proj.weight", (long long)hp->n_layer);
        rc = gguf_writer_add_tensor(w, name, WHALE_DTYPE_F32, 2, ne, NULL);
    }
    const char *path = tmp_path("keys.gguf");
    if (!rc) rc = gguf_writer_write(w, path, &err);
    gguf_writer_free(w);
    if (!rc) rc = gguf_open(f, path, 0, &err);
    if (!rc) rc = gguf_hparams_load(got, f, &err);
    if (rc) fprintf(stderr, "round trip: %d %s\n", rc, err.msg);
    return rc;
}

static void test_keys_round_trip(void) {
    const char *shapes[] = {"test-qwen2", "test-deepseek2", "deepseek-v2-lite", "deepseek-v3-4", "r1-distill-qwen-7b"};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int mtp = 0; mtp < 2; mtp++) {
            model_hparams hp, got;
            whale_err err = {0};
            CHECK(synth_shape(shapes[s], &hp, &err) == 0);
            int ds = hp.arch == MODEL_ARCH_DEEPSEEK2;
            if (mtp && !ds) continue;
            hp.n_nextn_layer = mtp;
            gguf_file f;
            memset(&f, 0, sizeof f);
            if (round_trip(&hp, &got, &f)) {
                CHECKF(0, "%s", shapes[s]);
                gguf_close(&f);
                continue;
            }
            CHECK(got.arch == hp.arch && !strcmp(got.name, hp.name));
            /* Every table field comes back, but those the file stores derived. */
            for (size_t i = 0; i < gguf_n_keys; i++) {
                const gguf_key *k = &gguf_keys[i];
                if (k->field == offsetof(model_hparams, yarn_log_multiplier)) continue;
                if (!ds && (k->field == offsetof(model_hparams, v_head_dim) ||
                            k->field == offsetof(model_hparams, qk_rope_head_dim)))
                    continue;
                const char *a = (const char *)&hp + k->field, *b = (const char *)&got + k->field;
                size_t n = k->kind == GGUF_KEY_U32 ? sizeof(int64_t) : k->kind == GGUF_KEY_F32 ? sizeof(float)
                                                                                                 : sizeof(int);
                CHECKF(!memcmp(a, b, n), "%s mtp=%d: %s differs", shapes[s], mtp, k->key);
            }
            CHECK(got.n_layer == hp.n_layer && got.n_nextn_layer == hp.n_nextn_layer);
            if (ds) {
                CHECK(got.qk_nope_head_dim == hp.qk_nope_head_dim && got.v_head_dim == hp.v_head_dim);
                CHECK(fabsf(got.yarn_mscale_all_dim - hp.yarn_mscale_all_dim) < 1e-5f);
            } else {
                CHECK(got.v_head_dim == hp.head_dim);
            }
            /* Only this architecture's keys were written. */
            for (size_t i = 0; i < gguf_n_keys; i++) {
                char key[160];
                snprintf(key, sizeof key, "%s.%s", model_arch_name(hp.arch), gguf_keys[i].key);
                int want = (gguf_keys[i].archs & (ds ? GGUF_KEY_DEEPSEEK2 : GGUF_KEY_DENSE)) != 0;
                if (gguf_keys[i].when == GGUF_KEY_IF_YARN) want &= hp.rope_scaling_type == ROPE_SCALING_YARN;
                if (gguf_keys[i].when == GGUF_KEY_IF_SET) want &= *(const int64_t *)((const char *)&hp + gguf_keys[i].field) > 0;
                CHECKF((gguf_find(&f, key) != NULL) == want, "%s: %s", shapes[s], key);
            }
            gguf_close(&f);
        }
    }
    model_hparams unknown = {0};
    gguf_writer *w = gguf_writer_init();
    CHECK(gguf_keys_write(w, &unknown) == WHALE_E_ARG);
    gguf_writer_free(w);
}

static void test_keys_wrong_type(void) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_add_str(w, "general.architecture", "qwen2");
    gguf_writer_add_str(w, "qwen2.embedding_length", "wide");
    whale_err err = {0};
    const char *path = tmp_path("bad.gguf");
    CHECK(gguf_writer_write(w, path, &err) == 0);
    gguf_writer_free(w);
    gguf_file f;
    model_hparams hp;
    CHECK(gguf_open(&f, path, 0, &err) == 0);
    CHECK(gguf_hparams_load(&hp, &f, &err) == WHALE_E_FORMAT);
    CHECKF(strstr(err.msg, "qwen2.embedding_length") != NULL, "%s", err.msg);
    gguf_close(&f);
}

static void test_dtype_summary(void) {
    dtype_summary s;
    dtype_summary_init(&s);
    dtype_summary_add(&s, WHALE_DTYPE_F32, 10, 40);
    dtype_summary_add(&s, WHALE_DTYPE_Q8_0, 64, 68);
    dtype_summary_add(&s, WHALE_DTYPE_Q8_0, 32, 34);
    dtype_summary_add(&s, WHALE_DTYPE_F16, 4, 8);
    CHECK(s.n_tensors == 4 && s.n_elems == 110 && s.bytes == 150 && s.n_rows == 3);
    CHECK(s.row[0].type == WHALE_DTYPE_F32 && s.row[1].type == WHALE_DTYPE_Q8_0 && s.row[2].type == WHALE_DTYPE_F16);
    dtype_summary_sort_by_count(&s);
    CHECK(s.row[0].type == WHALE_DTYPE_Q8_0 && s.row[0].n_tensors == 2 && s.row[0].bytes == 102);
    CHECK(s.row[1].type == WHALE_DTYPE_F32 && s.row[2].type == WHALE_DTYPE_F16); /* ties keep their order */
}

static int n_progress[3];
static void count_progress(void *ctx, convert_phase phase, double done, double total) {
    (void)ctx;
    (void)done;
    (void)total;
    n_progress[phase]++;
}

static void test_writer(void) {
    float rows[4][64];
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 64; i++) rows[r][i] = (float)(r * 64 + i) / 256.0f - 0.5f;
    convert_writer *o = convert_writer_init();
    whale_err err = {0};
    const void *data = rows;
    int64_t ne[2] = {64, 4}, ne1[1] = {64};
    convert_src src = {WHALE_DTYPE_F32, 1, &data, NULL, 0, 0, NULL, NULL, 0};
    CHECK(convert_writer_add(o, "m.weight", WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q8_0, 2, ne, &src, NULL, &err) == 0);
    CHECK(convert_writer_add(o, "v.bias", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne1, &src, NULL, &err) == 0);
    convert_src bad = src;
    bad.n_parts = 0;
    CHECK(convert_writer_add(o, "x", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne1, &bad, malloc(8), &err) == WHALE_E_ARG);
    CHECK(strstr(err.msg, "'x'") != NULL);
    convert_writer_free(o);

    o = convert_writer_init();
    CHECK(convert_writer_add(o, "m.weight", WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q8_0, 2, ne, &src, NULL, &err) == 0);
    CHECK(convert_writer_add(o, "v.bias", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne1, &src, NULL, &err) == 0);
    convert_hooks hooks = {count_progress, NULL, NULL};
    convert_report rep;
    const char *path = tmp_path("w.gguf");
    CHECK(convert_writer_write(o, path, &hooks, &rep, &err) == 0);
    CHECK(n_progress[CONVERT_BEGIN] == 1 && n_progress[CONVERT_END] == 1 && n_progress[CONVERT_UPDATE] >= 1);
    CHECK(rep.written.n_tensors == 2 && rep.written.n_rows == 2 && rep.out_bytes > 0);
    CHECK(rep.n_fallback == 1 && rep.fallback[0].want == WHALE_DTYPE_Q4_K && rep.fallback[0].n_q8_0 == 1);
    convert_writer_free(o);
    gguf_file f;
    CHECK(gguf_open(&f, path, 0, &err) == 0);
    const gguf_tensor *t = gguf_find_tensor(&f, "m.weight");
    CHECK(t && t->type == WHALE_DTYPE_Q8_0 && t->ne[0] == 64 && t->ne[1] == 4);
    if (t) {
        float back[64];
        dequantize_row(WHALE_DTYPE_Q8_0, (const unsigned char *)t->data + 3 * 68, back, 64);
        for (int i = 0; i < 64; i++) CHECK(fabsf(back[i] - rows[3][i]) < 0.01f);
    }
    gguf_close(&f);

    /* A write that cannot create its file: an error, and no .part left. */
    o = convert_writer_init();
    CHECK(convert_writer_add(o, "v.bias", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne1, &src, NULL, &err) == 0);
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no/dir.gguf", tmp_dir);
    CHECK(convert_writer_write(o, missing, NULL, NULL, &err) == WHALE_E_IO);
    CHECK(strstr(err.msg, "cannot create") != NULL);
    convert_writer_free(o);
}

static void test_wtype(void) {
    const convert_wtype *t = convert_wtype_parse("Q4_K_M");
    CHECK(t && t->mix && t->ftype == 15);
    CHECK(convert_wtype_for(t, "blk.0.ffn_down.weight") == WHALE_DTYPE_Q6_K);
    CHECK(convert_wtype_for(t, "blk.0.ffn_up.weight") == WHALE_DTYPE_Q4_K);
    CHECK(convert_fit_type(WHALE_DTYPE_Q4_K, 96) == WHALE_DTYPE_Q8_0);
    CHECK(convert_fit_type(WHALE_DTYPE_Q4_K, 100) == WHALE_DTYPE_F16);
    CHECK(convert_wtype_parse("q5_k") == NULL);
}

static void test_synth_plan(void) {
    synth_opts o = {"test-qwen2", convert_wtype_parse("q8_0"), 1, NULL};
    synth_plan *p = NULL;
    synth_report rep;
    whale_err err = {0};
    CHECK(synth_plan_init(&p, &o, &rep, &err) == 0);
    CHECK(rep.n_vocab == 0 && rep.hp.n_vocab == 512 && rep.n_tensors == 3 + 2 * 12);
    const char *path = tmp_path("s.gguf");
    CHECK(p && synth_plan_write(p, path, &err) == 0);
    synth_plan_free(p);
    gguf_file f;
    model_hparams hp;
    CHECK(gguf_open(&f, path, 0, &err) == 0 && gguf_hparams_load(&hp, &f, &err) == 0);
    CHECK(hp.n_vocab == 512 && hp.n_layer == 2 && gguf_find(&f, "tokenizer.ggml.tokens") == NULL);
    gguf_close(&f);
    o.shape = "gpt-5";
    CHECK(synth_plan_init(&p, &o, &rep, &err) == WHALE_E_ARG && p == NULL && strstr(err.msg, "unknown shape"));
    o.shape = "test-qwen2";
    o.vocab = tmp_path("missing.gguf");
    CHECK(synth_plan_init(&p, &o, &rep, &err) != 0 && p == NULL);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/whale_test_convert_XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    RUN(test_keys_round_trip);
    RUN(test_keys_wrong_type);
    RUN(test_dtype_summary);
    RUN(test_writer);
    RUN(test_wtype);
    RUN(test_synth_plan);
    const char *files[] = {"keys.gguf", "bad.gguf", "w.gguf", "s.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(tmp_path(files[i]));
    rmdir(tmp_dir);
    return check_report("test_convert");
}
