/* cmd_convert.c — `whale convert`: a Hugging Face checkpoint (dense Qwen2 / Llama) to GGUF, with
 * the matrices stored as F32, F16, BF16 or Q8_0. Norms and biases stay F32. Llama's q/k rows
 * are permuted the way llama.cpp's converter does, so the file runs with adjacent-pair RoPE;
 * Llama 3 frequency scaling is written as rope_freqs.weight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/progress.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale convert CHECKPOINT OUT.gguf [--type f32|f16|bf16|q8_0|q4_k|q6_k]\n\n"
               "Convert a Hugging Face checkpoint (directory with config.json, *.safetensors and, if\n"
               "present, tokenizer.json) of a Qwen2, Llama or DeepSeek V2/V3 model (FP8 included) to GGUF.\n"
               "  --type T   type of the weight matrices (default f16); norms and biases stay f32\n");
}

static int parse_type(const char *s, whale_dtype *t) {
    static const struct { const char *n; whale_dtype t; } k[] = {
        {"f32", WHALE_DTYPE_F32}, {"f16", WHALE_DTYPE_F16}, {"bf16", WHALE_DTYPE_BF16}, {"q8_0", WHALE_DTYPE_Q8_0},
        {"q4_k", WHALE_DTYPE_Q4_K}, {"q6_k", WHALE_DTYPE_Q6_K}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcasecmp(s, k[i].n)) { *t = k[i].t; return 0; }
    return -1;
}

int cli_write_hparams(gguf_writer *w, const model_hparams *hp) {
    const char *a = hp->arch == MODEL_ARCH_QWEN2 ? "qwen2" : hp->arch == MODEL_ARCH_LLAMA ? "llama" : "deepseek2";
    int ds = hp->arch == MODEL_ARCH_DEEPSEEK2;
    char k[128];
    int rc = gguf_writer_add_str(w, "general.architecture", a);
    rc |= gguf_writer_add_str(w, "general.name", hp->name[0] ? hp->name : a);
    rc |= gguf_writer_add_u32(w, "general.alignment", 32);
#define U32(key, v) (snprintf(k, sizeof k, "%s." key, a), gguf_writer_add_u32(w, k, (uint32_t)(v)))
#define F32(key, v) (snprintf(k, sizeof k, "%s." key, a), gguf_writer_add_f32(w, k, (float)(v)))
    rc |= U32("context_length", hp->n_ctx_train);
    rc |= U32("embedding_length", hp->n_embd);
    rc |= U32("block_count", hp->n_layer);
    rc |= U32("feed_forward_length", hp->n_ff);
    rc |= U32("attention.head_count", hp->n_head);
    rc |= U32("attention.head_count_kv", hp->n_head_kv);
    rc |= U32("attention.key_length", ds ? hp->qk_nope_head_dim + hp->qk_rope_head_dim : hp->head_dim);
    rc |= U32("attention.value_length", ds ? hp->v_head_dim : hp->head_dim);
    rc |= U32("rope.dimension_count", ds ? hp->qk_rope_head_dim : hp->head_dim);
    if (ds) {
        if (hp->q_lora_rank > 0) rc |= U32("attention.q_lora_rank", hp->q_lora_rank);
        rc |= U32("attention.kv_lora_rank", hp->kv_lora_rank);
        rc |= U32("expert_count", hp->n_expert);
        rc |= U32("expert_used_count", hp->n_expert_used);
        rc |= U32("expert_shared_count", hp->n_expert_shared);
        rc |= U32("expert_feed_forward_length", hp->n_ff_expert);
        rc |= U32("leading_dense_block_count", hp->n_layer_dense_lead);
        rc |= U32("expert_group_count", hp->n_expert_group);
        rc |= U32("expert_group_used_count", hp->n_group_used);
        rc |= F32("expert_weights_scale", hp->expert_weights_scale);
        snprintf(k, sizeof k, "%s.expert_weights_norm", a);
        rc |= gguf_writer_add_bool(w, k, hp->expert_weights_norm);
        rc |= U32("expert_gating_func", hp->gating == MOE_GATING_SIGMOID ? 2 : 1); /* llama.cpp's numbering */
        if (hp->rope_scaling_type == ROPE_SCALING_YARN) {
            snprintf(k, sizeof k, "%s.rope.scaling.type", a);
            rc |= gguf_writer_add_str(w, k, "yarn");
            rc |= F32("rope.scaling.factor", hp->rope_factor);
            rc |= U32("rope.scaling.original_context_length", hp->rope_orig_ctx);
            rc |= F32("rope.scaling.yarn_log_multiplier", 0.1f * hp->yarn_mscale_all_dim);
        }
    }
    rc |= U32("vocab_size", hp->n_vocab);
    rc |= F32("attention.layer_norm_rms_epsilon", hp->rms_eps);
    rc |= F32("rope.freq_base", hp->rope_theta > 0 ? hp->rope_theta : 10000.0f);
#undef U32
#undef F32
    return rc;
}

/* Llama: rows of each head go from HF's (half, half) order to interleaved pairs. */
static void permute_rows(const float *src, float *dst, int64_t n_rows, int64_t n_in, int64_t head_dim) {
    int64_t half = head_dim / 2;
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t h = r / head_dim, j = r % head_dim;
        int64_t from = h * head_dim + (j % 2) * half + j / 2;
        memcpy(dst + r * n_in, src + from * n_in, (size_t)n_in * sizeof(float));
    }
}

/* A tensor as F32; FP8 weights get their 128x128 block scales (<name>_scale_inv) applied.
 * Returns 0, or -1 with a message printed. */
static int load_f32(const st_model *st, const st_tensor *t, float *f) {
    dequantize_row(t->dtype, t->data, f, t->n_elems);
    if (t->dtype != WHALE_DTYPE_F8_E4M3) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s_scale_inv", t->name);
    const st_tensor *s = st_find(st, name);
    int64_t R = t->n_dims == 2 ? t->shape[0] : 1, C = t->shape[t->n_dims - 1];
    int64_t sc = (C + 127) / 128;
    if (!s || s->n_dims != 2 || s->shape[0] != (R + 127) / 128 || s->shape[1] != sc || s->dtype != WHALE_DTYPE_F32) {
        fprintf(stderr, "whale convert: FP8 tensor '%s' has no usable %s\n", t->name, name);
        return -1;
    }
    const float *S = s->data;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) f[r * C + c] *= S[(r / 128) * sc + c / 128];
    return 0;
}

/* DeepSeek: one layer's routed experts of projection p (gate, up, down) as GGUF's stacked
 * tensor blk.L.ffn_<p>_exps.weight, ne = {n_in, n_out, n_expert}. *out receives the buffer. */
static int stack_experts(const st_model *st, const model_hparams *hp, int64_t l, int p, whale_dtype type,
                         gguf_writer *w, void **out) {
    static const char *const proj[] = {"gate", "up", "down"};
    int64_t N = hp->n_expert, n_in = p == 2 ? hp->n_ff_expert : hp->n_embd, n_out = p == 2 ? hp->n_embd : hp->n_ff_expert;
    whale_dtype tt = n_in % dtype_get(type)->block_elems ? (n_in % 32 ? WHALE_DTYPE_F16 : WHALE_DTYPE_Q8_0) : type;
    size_t rb, per;
    dtype_bytes(tt, n_in, &rb);
    per = rb * (size_t)n_out;
    unsigned char *q = malloc(per * (size_t)N);
    float *f = malloc((size_t)(n_in * n_out) * sizeof *f);
    if (!q || !f) {
        free(q);
        free(f);
        fprintf(stderr, "whale convert: out of memory\n");
        return -1;
    }
    for (int64_t e = 0; e < N; e++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%lld.%s_proj.weight", (long long)l, (long long)e, proj[p]);
        const st_tensor *t = st_find(st, name);
        if (!t || t->n_dims != 2 || t->shape[0] != n_out || t->shape[1] != n_in || load_f32(st, t, f)) {
            fprintf(stderr, "whale convert: expert tensor '%s' is missing or has the wrong shape\n", name);
            free(q);
            free(f);
            return -1;
        }
        for (int64_t r = 0; r < n_out; r++) quantize_row(tt, f + r * n_in, q + (size_t)e * per + (size_t)r * rb, n_in);
    }
    free(f);
    char gname[96];
    snprintf(gname, sizeof gname, "blk.%lld.ffn_%s_exps.weight", (long long)l, proj[p]);
    int64_t ne[3] = {n_in, n_out, N};
    *out = q;
    return gguf_writer_add_tensor(w, gname, tt, 3, ne, q) ? -1 : 0;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    whale_dtype type = WHALE_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            if (parse_type(argv[++i], &type)) { fprintf(stderr, "whale convert: unknown type '%s'\n", argv[i]); return 2; }
        } else if (argv[i][0] == '-') { fprintf(stderr, "whale convert: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else { usage(stderr); return 2; }
    }
    if (!in || !out) { usage(stderr); return 2; }
    whale_err err = {0};
    st_model st;
    model_hparams hp;
    tokenizer *tok = NULL;
    gguf_writer *w = NULL;
    void **bufs = NULL;
    size_t n_bufs = 0;
    int rc = 1;
    FILE *probe_in = fopen(in, "rb");
    char magic[4] = {0};
    if (probe_in) {
        size_t got = fread(magic, 1, 4, probe_in);
        fclose(probe_in);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            fprintf(stderr, "whale convert: %s is already a GGUF file; convert takes a Hugging Face checkpoint "
                            "(re-quantizing GGUF files is not implemented yet)\n", in);
            return 1;
        }
    }
    if (st_open(&st, in, &err)) { fprintf(stderr, "whale: %s\n", err.msg); return 1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", st.dir);
    if (hf_config_load(&hp, path, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    if (hp.arch == MODEL_ARCH_UNKNOWN) {
        fprintf(stderr, "whale convert: %s: architecture '%s' is not supported (qwen2, llama, deepseek2)\n", in, hp.arch_name);
        goto done;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", st.dir);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        if (tokenizer_load_json(&tok, path, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    }
    w = gguf_writer_init();
    bufs = calloc(st.n_tensors + 3 * (size_t)hp.n_layer + 1, sizeof *bufs);
    if (!w || !bufs || cli_write_hparams(w, &hp)) { fprintf(stderr, "whale convert: out of memory\n"); goto done; }
    if (tok && tokenizer_export_gguf(tok, w, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }

    /* Every tensor: read as F32, permute if needed, store in the target type. Converted data
     * stays in memory until the file is written (the writer borrows it). */
    progress bar;
    progress_begin(&bar, "converting", (double)st.n_tensors, 0);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const st_tensor *t = &st.tensors[i];
        char gname[256];
        size_t nl = strlen(t->name);
        if (nl > 10 && !strcmp(t->name + nl - 10, "_scale_inv")) continue; /* applied with its weight */
        if (strstr(t->name, ".mlp.experts.")) continue;                    /* stacked per layer below */
        if (!model_name_from_hf(t->name, gname, sizeof gname)) {
            fprintf(stderr, "whale convert: skipping tensor '%s' (not part of a dense model)\n", t->name);
            continue;
        }
        const dtype_info *di = dtype_get(t->dtype);
        if (!di || !di->can_dequantize || t->n_dims < 1 || t->n_dims > 2) {
            fprintf(stderr, "whale convert: tensor '%s': %s with %d dims cannot be converted\n", t->name,
                    dtype_name(t->dtype), t->n_dims);
            goto done;
        }
        int64_t n_in = t->shape[t->n_dims - 1], n_rows = t->n_dims == 2 ? t->shape[0] : 1;
        float *f = malloc((size_t)t->n_elems * sizeof *f);
        if (!f) { fprintf(stderr, "whale convert: out of memory\n"); goto done; }
        if (load_f32(&st, t, f)) { free(f); goto done; }
        int is_qk = strstr(gname, "attn_q.") || strstr(gname, "attn_k.");
        if (hp.arch == MODEL_ARCH_LLAMA && is_qk) {
            float *p = malloc((size_t)t->n_elems * sizeof *p);
            if (!p) { free(f); fprintf(stderr, "whale convert: out of memory\n"); goto done; }
            permute_rows(f, p, t->n_dims == 2 ? n_rows : n_in, t->n_dims == 2 ? n_in : 1, hp.head_dim);
            free(f);
            f = p;
        }
        /* The MoE router stays F32 as in llama.cpp's files: it is small, and rounding it flips
         * expert choices. */
        whale_dtype tt = t->n_dims == 2 && !strstr(gname, "ffn_gate_inp") ? type : WHALE_DTYPE_F32;
        if (n_in % dtype_get(tt)->block_elems) /* rows that do not fill blocks */
            tt = n_in % 32 == 0 && tt != WHALE_DTYPE_F32 ? WHALE_DTYPE_Q8_0 : tt == WHALE_DTYPE_F32 ? tt : WHALE_DTYPE_F16;
        size_t nb;
        dtype_bytes(tt, t->n_elems, &nb);
        void *q = malloc(nb ? nb : 1);
        if (!q) { free(f); fprintf(stderr, "whale convert: out of memory\n"); goto done; }
        for (int64_t r = 0; r < n_rows; r++) {
            size_t rb;
            dtype_bytes(tt, n_in, &rb);
            quantize_row(tt, f + r * n_in, (unsigned char *)q + (size_t)r * rb, n_in);
        }
        free(f);
        bufs[n_bufs++] = q;
        int64_t ne[2] = {n_in, n_rows};
        if (gguf_writer_add_tensor(w, gname, tt, t->n_dims, ne, q)) { fprintf(stderr, "whale convert: out of memory\n"); goto done; }
        progress_update(&bar, (double)i + 1);
    }
    progress_end(&bar);
    if (hp.arch == MODEL_ARCH_DEEPSEEK2 && hp.n_expert > 0)
        for (int64_t l = hp.n_layer_dense_lead; l < hp.n_layer; l++)
            for (int p = 0; p < 3; p++) {
                void *q = NULL;
                if (stack_experts(&st, &hp, l, p, type, w, &q)) goto done;
                bufs[n_bufs++] = q;
            }
    if (hp.rope_scaling_type == ROPE_SCALING_LLAMA3) {
        int64_t half = hp.head_dim / 2;
        float *base = malloc((size_t)half * sizeof *base), *scaled = malloc((size_t)half * sizeof *scaled);
        if (!base || !scaled) { free(base); free(scaled); goto done; }
        model_hparams plain = hp;
        plain.rope_scaling_type = ROPE_SCALING_NONE;
        model_rope_inv_freq(&plain, hp.head_dim, base);
        model_rope_inv_freq(&hp, hp.head_dim, scaled);
        for (int64_t i = 0; i < half; i++) base[i] /= scaled[i];
        free(scaled);
        bufs[n_bufs++] = base;
        int64_t ne[1] = {half};
        gguf_writer_add_tensor(w, "rope_freqs.weight", WHALE_DTYPE_F32, 1, ne, base);
    }
    if (gguf_writer_write(w, out, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    fprintf(stderr, "wrote %s\n", out);
    rc = 0;
done:
    for (size_t i = 0; i < n_bufs; i++) free(bufs[i]);
    free(bufs);
    gguf_writer_free(w);
    tokenizer_free(tok);
    st_close(&st);
    return rc;
}
