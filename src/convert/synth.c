/* synth.c — random-weight GGUF files with a real model's shape (synth_*, see convert.h), for
 * benchmarks, memory tests and tests without downloading the model (weight values do not change
 * speed). Owns the shapes (from the models' config.json files) and the tensor list of each
 * architecture as llama.cpp names it; tensors are generated and quantized one at a time while
 * the file is written, so a file larger than memory is fine. A vocabulary, when given, is
 * embedded and sets n_vocab. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/gguf_keys.h"
#include "tokenizer/tokenizer.h"

const char *const synth_shape_names =
    "r1-distill-qwen-1.5b, r1-distill-qwen-7b, deepseek-v2-lite, deepseek-v3-N (V3 with N layers),\n"
    "                 or the small test shapes test-qwen2, test-deepseek2";

/* Shapes from the models' config.json files (SPEC-deepseek.md §1). */
int synth_shape(const char *name, model_hparams *hp, whale_err *err) {
    memset(hp, 0, sizeof *hp);
    hp->rms_eps = 1e-6f;
    hp->rope_theta = 10000;
    int n = 0;
    if (!strcmp(name, "r1-distill-qwen-1.5b") || !strcmp(name, "r1-distill-qwen-7b") || !strcmp(name, "test-qwen2")) {
        hp->arch = MODEL_ARCH_QWEN2;
        int big = !strcmp(name, "r1-distill-qwen-7b"), test = !strcmp(name, "test-qwen2");
        hp->n_embd = test ? 256 : big ? 3584 : 1536;
        hp->n_layer = test ? 2 : 28;
        hp->n_head = test ? 4 : big ? 28 : 12;
        hp->n_head_kv = test ? 2 : big ? 4 : 2;
        hp->n_ff = test ? 512 : big ? 18944 : 8960;
        hp->n_vocab = test ? 512 : big ? 152064 : 151936;
        hp->n_ctx_train = test ? 2048 : 131072;
        hp->head_dim = hp->n_embd / hp->n_head;
        hp->attn_bias = 1;
        snprintf(hp->name, sizeof hp->name, "synthetic %s", name);
        return 0;
    }
    if (!strcmp(name, "deepseek-v2-lite") || !strcmp(name, "test-deepseek2") || sscanf(name, "deepseek-v3-%d", &n) == 1) {
        hp->arch = MODEL_ARCH_DEEPSEEK2;
        int v3 = n > 0, test = !strcmp(name, "test-deepseek2");
        if (v3 && (n < 1 || n > 61)) return err_set(err, WHALE_E_ARG, "unknown shape '%s' (deepseek-v3-N: N from 1 to 61)", name);
        hp->n_embd = test ? 256 : v3 ? 7168 : 2048;
        hp->n_layer = test ? 3 : v3 ? n : 27;
        hp->n_head = hp->n_head_kv = test ? 4 : v3 ? 128 : 16;
        hp->q_lora_rank = test ? 256 : v3 ? 1536 : 0;
        hp->kv_lora_rank = test ? 256 : 512;
        hp->qk_nope_head_dim = test ? 32 : 128;
        hp->qk_rope_head_dim = test ? 32 : 64;
        hp->v_head_dim = test ? 32 : 128;
        hp->head_dim = hp->qk_nope_head_dim + hp->qk_rope_head_dim;
        hp->n_ff = test ? 512 : v3 ? 18432 : 10944;
        hp->n_vocab = test ? 512 : v3 ? 129280 : 102400;
        hp->n_expert = test ? 8 : v3 ? 256 : 64;
        hp->n_expert_used = test ? 2 : v3 ? 8 : 6;
        hp->n_expert_shared = v3 || test ? 1 : 2;
        hp->n_ff_expert = test ? 256 : v3 ? 2048 : 1408;
        hp->n_layer_dense_lead = v3 ? (n < 3 ? 0 : 3) : 1;
        hp->n_expert_group = test ? 4 : v3 ? 8 : 1;
        hp->n_group_used = test ? 2 : v3 ? 4 : 1;
        hp->expert_weights_scale = v3 || test ? 2.5f : 1.0f;
        hp->expert_weights_norm = v3 || test;
        hp->gating = v3 || test ? MOE_GATING_SIGMOID : MOE_GATING_SOFTMAX;
        hp->n_ctx_train = 163840;
        hp->rope_scaling_type = ROPE_SCALING_YARN;
        hp->rope_factor = 40;
        hp->rope_orig_ctx = 4096;
        hp->yarn_mscale_all_dim = v3 || test ? 1.0f : 0.707f;
        snprintf(hp->name, sizeof hp->name, "synthetic %s", name);
        return 0;
    }
    return err_set(err, WHALE_E_ARG, "unknown shape '%s' (see --help)", name);
}

typedef struct synth_tensor {
    whale_dtype type;
    int64_t n_in, rows; /* rows: all rows (experts included) */
    int ones;           /* norms: 1 + noise */
    uint64_t seed;
} synth_tensor;

static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

static int fill(void *ctx, const char *name, void *buf, size_t nbytes) {
    (void)name;
    const synth_tensor *t = ctx;
    float *row = malloc((size_t)t->n_in * sizeof *row);
    if (!row) return -1;
    size_t rb;
    dtype_bytes(t->type, t->n_in, &rb);
    uint64_t s = t->seed;
    for (int64_t r = 0; r < t->rows; r++) {
        for (int64_t i = 0; i < t->n_in; i++) {
            s = mix(s + 0x9e3779b97f4a7c15ull);
            float u = (float)(s >> 40) / (float)(1 << 24) - 0.5f; /* uniform, std 0.29 */
            row[i] = t->ones ? 1.0f + 0.1f * u : 0.07f * u;     /* weights: std ~0.02 */
        }
        quantize_row(t->type, row, (unsigned char *)buf + (size_t)r * rb, t->n_in);
    }
    free(row);
    (void)nbytes;
    return 0;
}

struct synth_plan {
    gguf_writer *w;
    model_hparams hp;
    synth_tensor *t;
    size_t n, cap;
    const convert_wtype *type;
    uint64_t seed;
    double bytes;
};
typedef struct synth_plan synth;

/* Add tensor `name` with ne = {n_in, n_out[, n_stack]}; kind 0 weight, 1 norm (F32, ~1), 2 F32 small. */
static int add(synth *s, const char *name, int kind, int64_t n_in, int64_t n_out, int64_t n_stack) {
    if (s->n == s->cap) return -1;
    synth_tensor *t = &s->t[s->n++];
    t->type = kind ? WHALE_DTYPE_F32 : convert_fit_type(convert_wtype_for(s->type, name), n_in);
    t->n_in = n_in;
    t->rows = n_out * n_stack;
    t->ones = kind == 1;
    t->seed = mix(s->seed ^ mix((uint64_t)s->n * 0x100000001b3ull));
    int64_t ne[3] = {n_in, n_out, n_stack};
    int nd = n_stack > 1 ? 3 : n_out > 1 || kind == 0 ? 2 : 1;
    size_t b;
    dtype_bytes(t->type, n_in * n_out * n_stack, &b);
    s->bytes += (double)b;
    return gguf_writer_add_tensor_fill(s->w, name, t->type, nd, ne, fill, t);
}

static int add_layers(synth *s, const model_hparams *hp) {
    int64_t E = hp->n_embd, H = hp->n_head, F = hp->n_ff;
    char n[96];
    int rc = 0;
#define NAME(fmt) (snprintf(n, sizeof n, "blk.%lld." fmt, (long long)l), n)
    for (int64_t l = 0; l < hp->n_layer && !rc; l++) {
        rc |= add(s, NAME("attn_norm.weight"), 1, E, 1, 1);
        rc |= add(s, NAME("ffn_norm.weight"), 1, E, 1, 1);
        if (hp->arch != MODEL_ARCH_DEEPSEEK2) {
            int64_t D = hp->head_dim, KV = hp->n_head_kv * D;
            rc |= add(s, NAME("attn_q.weight"), 0, E, H * D, 1);
            rc |= add(s, NAME("attn_k.weight"), 0, E, KV, 1);
            rc |= add(s, NAME("attn_v.weight"), 0, E, KV, 1);
            rc |= add(s, NAME("attn_q.bias"), 2, H * D, 1, 1);
            rc |= add(s, NAME("attn_k.bias"), 2, KV, 1, 1);
            rc |= add(s, NAME("attn_v.bias"), 2, KV, 1, 1);
            rc |= add(s, NAME("attn_output.weight"), 0, H * D, E, 1);
            rc |= add(s, NAME("ffn_gate.weight"), 0, E, F, 1);
            rc |= add(s, NAME("ffn_up.weight"), 0, E, F, 1);
            rc |= add(s, NAME("ffn_down.weight"), 0, F, E, 1);
            continue;
        }
        int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
        int64_t dq = hp->q_lora_rank, Fe = hp->n_ff_expert, N = hp->n_expert;
        if (dq > 0) {
            rc |= add(s, NAME("attn_q_a.weight"), 0, E, dq, 1);
            rc |= add(s, NAME("attn_q_a_norm.weight"), 1, dq, 1, 1);
            rc |= add(s, NAME("attn_q_b.weight"), 0, dq, H * (dn + dr), 1);
        } else {
            rc |= add(s, NAME("attn_q.weight"), 0, E, H * (dn + dr), 1);
        }
        rc |= add(s, NAME("attn_kv_a_mqa.weight"), 0, E, dc + dr, 1);
        rc |= add(s, NAME("attn_kv_a_norm.weight"), 1, dc, 1, 1);
        rc |= add(s, NAME("attn_kv_b.weight"), 0, dc, H * (dn + dv), 1);
        rc |= add(s, NAME("attn_output.weight"), 0, H * dv, E, 1);
        if (l < hp->n_layer_dense_lead) {
            rc |= add(s, NAME("ffn_gate.weight"), 0, E, F, 1);
            rc |= add(s, NAME("ffn_up.weight"), 0, E, F, 1);
            rc |= add(s, NAME("ffn_down.weight"), 0, F, E, 1);
            continue;
        }
        rc |= add(s, NAME("ffn_gate_inp.weight"), 2, E, N, 1);
        if (hp->gating == MOE_GATING_SIGMOID) rc |= add(s, NAME("exp_probs_b.bias"), 2, N, 1, 1);
        rc |= add(s, NAME("ffn_gate_exps.weight"), 0, E, Fe, N);
        rc |= add(s, NAME("ffn_up_exps.weight"), 0, E, Fe, N);
        rc |= add(s, NAME("ffn_down_exps.weight"), 0, Fe, E, N);
        rc |= add(s, NAME("ffn_gate_shexp.weight"), 0, E, Fe * hp->n_expert_shared, 1);
        rc |= add(s, NAME("ffn_up_shexp.weight"), 0, E, Fe * hp->n_expert_shared, 1);
        rc |= add(s, NAME("ffn_down_shexp.weight"), 0, Fe * hp->n_expert_shared, E, 1);
    }
#undef NAME
    return rc;
}


/* Embed the vocabulary at path (.gguf: its tokenizer.* keys; else a tokenizer.json) into w and
 * set *n_vocab to its token count. Returns 0 or a negative status. */
static int add_vocab(gguf_writer *w, const char *path, int64_t *n_vocab, whale_err *err) {
    size_t n = strlen(path);
    int rc;
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        tokenizer *t = NULL;
        if (!(rc = tokenizer_load_json(&t, path, err)) && !(rc = tokenizer_export_gguf(t, w, err)))
            *n_vocab = tokenizer_n_vocab(t);
        tokenizer_free(t);
        return rc;
    }
    gguf_file f;
    if ((rc = gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, err))) return rc;
    int64_t v = -1;
    for (uint64_t i = 0; i < f.n_kv && !rc; i++) {
        const gguf_kv *kv = &f.kv[i];
        if (kv->key.n > 10 && !memcmp(kv->key.s, "tokenizer.", 10) && gguf_writer_copy_kv(w, kv))
            rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        if (kv->key.n == 21 && !memcmp(kv->key.s, "tokenizer.ggml.tokens", 21) && kv->type == GGUF_TYPE_ARRAY)
            v = (int64_t)kv->arr_n;
    }
    gguf_close(&f);
    if (!rc && v <= 0) rc = err_set(err, WHALE_E_FORMAT, "%s has no tokenizer.ggml.tokens", path);
    if (!rc) *n_vocab = v;
    return rc;
}

void synth_plan_free(synth_plan *p) {
    if (!p) return;
    gguf_writer_free(p->w);
    free(p->t);
    free(p);
}

int synth_plan_init(synth_plan **out, const synth_opts *o, synth_report *rep, whale_err *err) {
    *out = NULL;
    synth *s = calloc(1, sizeof *s);
    if (!s) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int rc = synth_shape(o->shape, &s->hp, err);
    if (rc) goto fail;
    model_hparams *hp = &s->hp;
    s->type = o->type;
    s->seed = o->seed;
    s->cap = (size_t)hp->n_layer * 24 + 8;
    s->t = calloc(s->cap, sizeof *s->t);
    s->w = gguf_writer_init();
    if (!s->t || !s->w) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto fail;
    }
    int64_t n_vocab = 0;
    if (o->vocab && (rc = add_vocab(s->w, o->vocab, &n_vocab, err))) goto fail;
    if (n_vocab) hp->n_vocab = n_vocab;
    if (gguf_keys_write(s->w, hp) || add(s, "token_embd.weight", 0, hp->n_embd, hp->n_vocab, 1) ||
        add(s, "output_norm.weight", 1, hp->n_embd, 1, 1) || add(s, "output.weight", 0, hp->n_embd, hp->n_vocab, 1) ||
        add_layers(s, hp)) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto fail;
    }
    if (rep) {
        rep->hp = *hp;
        rep->n_tensors = s->n;
        rep->bytes = s->bytes;
        rep->n_vocab = n_vocab;
    }
    *out = s;
    return 0;
fail:
    synth_plan_free(s);
    return rc;
}

int synth_plan_write(synth_plan *p, const char *path, whale_err *err) { return gguf_writer_write(p->w, path, err); }
