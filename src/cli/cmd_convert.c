/* cmd_convert.c — `whale convert`: a Hugging Face checkpoint (Qwen2, Llama, DeepSeek V2/V3 with
 * FP8 block-scaled weights) to GGUF, with the matrices stored as F32, F16, BF16, Q8_0, Q4_K,
 * Q6_K or the Q4_K_M mix. Norms, biases and the router stay F32. Llama's q/k rows are permuted
 * the way llama.cpp's converter does, so the file runs with adjacent-pair RoPE; DeepSeek's
 * experts are stacked per layer; Llama 3 frequency scaling is written as rope_freqs.weight.
 * This file owns the layout (which tensor comes from where); the bytes are made by the writer
 * in cmd_quantize.c while the file is written, which `whale quantize` shares for HF input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f, "usage: whale convert CHECKPOINT OUT.gguf [--type " CLI_WTYPES "] [--mtp]\n\n"
               "Convert a Hugging Face checkpoint (directory with config.json, *.safetensors and, if\n"
               "present, tokenizer.json) of a Qwen2, Llama or DeepSeek V2/V3 model (FP8 included) to GGUF.\n"
               "  --type T   type of the weight matrices (default f16); norms, biases and the MoE router\n"
               "             stay f32; q4_k_m as in `whale quantize --help`\n"
               "  --mtp      keep DeepSeek-V3/R1's multi-token prediction module (for --speculative mtp);\n"
               "             left out by default, as llama.cpp's converter does, since tools that do not\n"
               "             know it would run it as one more layer\n"
               "To re-quantize a GGUF file, use `whale quantize`.\n");
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
    rc |= U32("block_count", hp->n_layer + hp->n_nextn_layer); /* MTP modules follow the main layers */
    if (hp->n_nextn_layer > 0) rc |= U32("nextn_predict_layers", hp->n_nextn_layer);
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

/* FP8 block scales of st tensor t (<name>_scale_inv, F32, one per 128x128 block), or NULL when t
 * is not FP8. Returns 0, or -1 with a message printed. */
static int fp8_scale(const char *cmd, const st_model *st, const st_tensor *t, const float **out) {
    *out = NULL;
    if (t->dtype != WHALE_DTYPE_F8_E4M3) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s_scale_inv", t->name);
    const st_tensor *s = st_find(st, name);
    int64_t R = t->n_dims == 2 ? t->shape[0] : 1, C = t->shape[t->n_dims - 1];
    if (!s || s->n_dims != 2 || s->shape[0] != (R + 127) / 128 || s->shape[1] != (C + 127) / 128 ||
        s->dtype != WHALE_DTYPE_F32) {
        fprintf(stderr, "whale %s: FP8 tensor '%s' has no usable %s\n", cmd, t->name, name);
        return -1;
    }
    *out = s->data;
    return 0;
}

/* DeepSeek: one layer's routed experts of projection p (gate, up, down) as GGUF's stacked
 * tensor blk.L.ffn_<p>_exps.weight, ne = {n_in, n_out, n_expert}. 0, or -1 after a message. */
static int stack_experts(const char *cmd, const st_model *st, const model_hparams *hp, int64_t l, int p,
                         const cli_wtype *wt, qout *o) {
    static const char *const proj[] = {"gate", "up", "down"};
    int64_t N = hp->n_expert, n_in = p == 2 ? hp->n_ff_expert : hp->n_embd, n_out = p == 2 ? hp->n_embd : hp->n_ff_expert;
    const void **data = calloc((size_t)N, sizeof *data);
    const float **scale = calloc((size_t)N, sizeof *scale);
    int rc = -1;
    whale_dtype src_type = WHALE_DTYPE_F32;
    if (!data || !scale) { fprintf(stderr, "whale %s: out of memory\n", cmd); goto done; }
    for (int64_t e = 0; e < N; e++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%lld.%s_proj.weight", (long long)l, (long long)e, proj[p]);
        const st_tensor *t = st_find(st, name);
        const dtype_info *di = t ? dtype_get(t->dtype) : NULL;
        if (!t || t->n_dims != 2 || t->shape[0] != n_out || t->shape[1] != n_in || !di || !di->can_dequantize ||
            (e > 0 && t->dtype != src_type)) {
            fprintf(stderr, "whale %s: expert tensor '%s' is missing or has the wrong shape%s\n", cmd, name,
                    t && e > 0 && t->dtype != src_type ? " or type" : "");
            goto done;
        }
        if (fp8_scale(cmd, st, t, &scale[e])) goto done;
        src_type = t->dtype;
        data[e] = t->data;
    }
    char gname[96];
    snprintf(gname, sizeof gname, "blk.%lld.ffn_%s_exps.weight", (long long)l, proj[p]);
    whale_dtype want = cli_wtype_for(wt, gname);
    int64_t ne[3] = {n_in, n_out, N};
    qout_src src = {src_type, N, data, scale, 0, 0};
    rc = qout_add(o, gname, want, cli_fit_type(want, n_in), 3, ne, &src, NULL);
done:
    free(data);
    free(scale);
    return rc;
}

/* Every checkpoint tensor but the experts and FP8 scales: its GGUF name and type. */
/* 1 if the checkpoint tensor with HF name `name` stores the same bytes as `other`. */
static int same_tensor(const st_model *st, const st_tensor *t, const char *other) {
    const st_tensor *u = st_find(st, other);
    return u && u->dtype == t->dtype && u->nbytes == t->nbytes && !memcmp(u->data, t->data, t->nbytes);
}

/* Layers past the main ones are MTP modules: kept (the first n_mtp) or left out. The module's
 * own embedding and head are left out when they equal the main ones (V3 stores copies). */
static int skip_mtp(const st_model *st, const st_tensor *t, const model_hparams *hp) {
    int l = -1, used = 0;
    if (sscanf(t->name, "model.layers.%d.%n", &l, &used) != 1 || l < hp->n_layer) return 0;
    if (l >= hp->n_layer + hp->n_nextn_layer) return 1;
    if (!strcmp(t->name + used, "embed_tokens.weight")) return same_tensor(st, t, "model.embed_tokens.weight");
    if (!strcmp(t->name + used, "shared_head.head.weight")) return same_tensor(st, t, "lm_head.weight");
    return 0;
}

static int add_tensors(const char *cmd, const st_model *st, const model_hparams *hp, const cli_wtype *wt, qout *o) {
    for (size_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        char gname[256];
        size_t nl = strlen(t->name);
        if (skip_mtp(st, t, hp)) continue;
        if (nl > 10 && !strcmp(t->name + nl - 10, "_scale_inv")) continue; /* applied with its weight */
        if (strstr(t->name, ".mlp.experts.")) continue;                    /* stacked per layer */
        if (!model_name_from_hf(t->name, gname, sizeof gname)) {
            fprintf(stderr, "whale %s: skipping tensor '%s' (not part of a dense model)\n", cmd, t->name);
            continue;
        }
        const dtype_info *di = dtype_get(t->dtype);
        if (!di || !di->can_dequantize || t->n_dims < 1 || t->n_dims > 2) {
            fprintf(stderr, "whale %s: tensor '%s': %s with %d dims cannot be converted\n", cmd, t->name,
                    dtype_name(t->dtype), t->n_dims);
            return -1;
        }
        const float *scale;
        if (fp8_scale(cmd, st, t, &scale)) return -1;
        int64_t n_in = t->shape[t->n_dims - 1], n_rows = t->n_dims == 2 ? t->shape[0] : 1;
        int is_qk = strstr(gname, "attn_q.") || strstr(gname, "attn_k.");
        /* The MoE router stays F32 as in llama.cpp's files: it is small, and rounding it flips
         * expert choices. */
        whale_dtype want = WHALE_DTYPE_F32;
        if (t->n_dims == 2 && !strstr(gname, "ffn_gate_inp")) want = cli_wtype_for(wt, gname);
        int64_t ne[2] = {n_in, n_rows};
        qout_src src = {t->dtype, 1, &t->data, scale ? &scale : NULL,
                        hp->arch == MODEL_ARCH_LLAMA && is_qk ? hp->head_dim : 0, 0};
        if (qout_add(o, gname, want, cli_fit_type(want, n_in), t->n_dims, ne, &src, NULL)) return -1;
    }
    return 0;
}

/* Llama 3 frequency scaling as rope_freqs.weight: base / scaled inverse frequency per pair. */
static int add_rope_freqs(const char *cmd, const model_hparams *hp, qout *o) {
    int64_t half = hp->head_dim / 2;
    float *base = malloc((size_t)half * sizeof *base), *scaled = malloc((size_t)half * sizeof *scaled);
    if (!base || !scaled) {
        free(base);
        free(scaled);
        fprintf(stderr, "whale %s: out of memory\n", cmd);
        return -1;
    }
    model_hparams plain = *hp;
    plain.rope_scaling_type = ROPE_SCALING_NONE;
    model_rope_inv_freq(&plain, hp->head_dim, base);
    model_rope_inv_freq(hp, hp->head_dim, scaled);
    for (int64_t i = 0; i < half; i++) base[i] /= scaled[i];
    free(scaled);
    int64_t ne[1] = {half};
    const void *data = base;
    qout_src src = {WHALE_DTYPE_F32, 1, &data, NULL, 0, 0};
    return qout_add(o, "rope_freqs.weight", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne, &src, base);
}

/* 1 if out names one of the checkpoint's shard files. */
static int writes_over_input(const st_model *st, const char *out) {
    struct stat so, si;
    if (stat(out, &so)) return 0;
    for (int i = 0; i < st->n_shards; i++)
        if (st->shards[i].path && !stat(st->shards[i].path, &si) && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
            return 1;
    return 0;
}

int cli_convert_hf(const char *cmd, const char *in, const char *out, const cli_wtype *wt, int mtp) {
    whale_err err = {0};
    st_model st;
    model_hparams hp;
    tokenizer *tok = NULL;
    qout *o = NULL;
    int rc = 1;
    if (st_open(&st, in, &err)) { fprintf(stderr, "whale: %s\n", err.msg); return 1; }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", st.dir);
    if (hf_config_load(&hp, path, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    if (hp.arch == MODEL_ARCH_UNKNOWN) {
        fprintf(stderr, "whale %s: %s: architecture '%s' is not supported (qwen2, llama, deepseek2)\n", cmd, in, hp.arch_name);
        goto done;
    }
    if (writes_over_input(&st, out)) {
        fprintf(stderr, "whale %s: the output %s is one of the input's files; choose another name\n", cmd, out);
        goto done;
    }
    /* MTP: the first module, when asked for and stored (V3/R1 carry one, as layer n_layer) */
    char mname[96];
    snprintf(mname, sizeof mname, "model.layers.%lld.eh_proj.weight", (long long)hp.n_layer);
    int have_mtp = hp.n_nextn_layer > 0 && st_find(&st, mname) != NULL;
    if (mtp && !have_mtp) {
        fprintf(stderr, "whale %s: --mtp: %s has no multi-token prediction module\n", cmd, in);
        goto done;
    }
    hp.n_nextn_layer = mtp ? 1 : 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", st.dir);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        if (tokenizer_load_json(&tok, path, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    }
    o = qout_init(cmd, !strcmp(cmd, "convert") ? "converting" : "quantizing");
    gguf_writer *w = o ? qout_gguf(o) : NULL;
    if (!w || cli_write_hparams(w, &hp) || gguf_writer_add_u32(w, "general.file_type", wt->ftype)) {
        fprintf(stderr, "whale %s: out of memory\n", cmd);
        goto done;
    }
    if (tok && tokenizer_export_gguf(tok, w, &err)) { fprintf(stderr, "whale: %s\n", err.msg); goto done; }
    if (add_tensors(cmd, &st, &hp, wt, o)) goto done;
    if (hp.arch == MODEL_ARCH_DEEPSEEK2 && hp.n_expert > 0)
        for (int64_t l = hp.n_layer_dense_lead; l < hp.n_layer + hp.n_nextn_layer; l++)
            for (int p = 0; p < 3; p++)
                if (stack_experts(cmd, &st, &hp, l, p, wt, o)) goto done;
    if (hp.rope_scaling_type == ROPE_SCALING_LLAMA3 && add_rope_freqs(cmd, &hp, o)) goto done;
    double in_bytes = 0;
    for (int i = 0; i < st.n_shards; i++) in_bytes += (double)st.shards[i].size;
    if (qout_write(o, out, in_bytes) == 0) rc = 0;
done:
    qout_free(o);
    tokenizer_free(tok);
    st_close(&st);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    const cli_wtype *wt = cli_wtype_parse("f16");
    int mtp = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--mtp")) { mtp = 1; continue; }
        if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            if (!(wt = cli_wtype_parse(argv[++i]))) { fprintf(stderr, "whale convert: unknown type '%s'\n", argv[i]); return 2; }
        } else if (argv[i][0] == '-') { fprintf(stderr, "whale convert: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else { usage(stderr); return 2; }
    }
    if (!in || !out) { usage(stderr); return 2; }
    FILE *probe_in = fopen(in, "rb");
    char magic[4] = {0};
    if (probe_in) {
        size_t got = fread(magic, 1, 4, probe_in);
        fclose(probe_in);
        if (got == 4 && !memcmp(magic, "GGUF", 4)) {
            fprintf(stderr, "whale convert: %s is already a GGUF file; convert takes a Hugging Face checkpoint "
                            "(use `whale quantize` to re-quantize a GGUF file)\n", in);
            return 1;
        }
    }
    return cli_convert_hf("convert", in, out, wt, mtp);
}
