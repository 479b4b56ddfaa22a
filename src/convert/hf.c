/* hf.c — a Hugging Face checkpoint (Qwen2, Llama, DeepSeek V2/V3 with FP8 block-scaled weights)
 * to GGUF (convert_hf, see convert.h). Owns the layout: which GGUF tensor comes from which
 * checkpoint tensor. Norms, biases and the router stay F32; Llama's q/k rows are permuted the
 * way llama.cpp's converter does, so the file runs with adjacent-pair RoPE; DeepSeek's experts
 * are stacked per layer; Llama 3 frequency scaling is written as rope_freqs.weight. The bytes
 * are made by writer.c while the file is written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/gguf_keys.h"
#include "formats/hf_config.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* Longest checkpoint directory path we build file names under (PATH_MAX on Linux). */
#define HF_MAX_PATH 4096

static void note(const convert_hooks *h, const char *msg) {
    if (h && h->note) h->note(h->ctx, msg);
}

/* FP8 block scales of st tensor t (<name>_scale_inv, F32, one per 128x128 block), or NULL when t
 * is not FP8. Returns 0, or WHALE_E_FORMAT. */
static int fp8_scale(const st_model *st, const st_tensor *t, const float **out, whale_err *err) {
    *out = NULL;
    if (t->dtype != WHALE_DTYPE_F8_E4M3) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s_scale_inv", t->name);
    const st_tensor *s = st_find(st, name);
    int64_t R = t->n_dims == 2 ? t->shape[0] : 1, C = t->shape[t->n_dims - 1];
    if (!s || s->n_dims != 2 || s->shape[0] != (R + 127) / 128 || s->shape[1] != (C + 127) / 128 ||
        s->dtype != WHALE_DTYPE_F32)
        return err_set(err, WHALE_E_FORMAT, "FP8 tensor '%s' has no usable %s", t->name, name);
    *out = s->data;
    return 0;
}

/* DeepSeek: one layer's routed experts of projection p (gate, up, down) as GGUF's stacked
 * tensor blk.L.ffn_<p>_exps.weight, ne = {n_in, n_out, n_expert}. */
static int stack_experts(const st_model *st, const model_hparams *hp, int64_t l, int p, const convert_wtype *wt,
                         convert_writer *o, whale_err *err) {
    static const char *const proj[] = {"gate", "up", "down"};
    int64_t N = hp->n_expert, n_in = p == 2 ? hp->n_ff_expert : hp->n_embd, n_out = p == 2 ? hp->n_embd : hp->n_ff_expert;
    const void **data = calloc((size_t)N, sizeof *data);
    const float **scale = calloc((size_t)N, sizeof *scale);
    int rc = 0;
    whale_dtype src_type = WHALE_DTYPE_F32;
    if (!data || !scale) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t e = 0; e < N; e++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%lld.%s_proj.weight", (long long)l, (long long)e, proj[p]);
        const st_tensor *t = st_find(st, name);
        const dtype_info *di = t ? dtype_get(t->dtype) : NULL;
        if (!t || t->n_dims != 2 || t->shape[0] != n_out || t->shape[1] != n_in || !di || !di->can_dequantize ||
            (e > 0 && t->dtype != src_type)) {
            rc = err_set(err, WHALE_E_FORMAT, "expert tensor '%s' is missing or has the wrong shape%s", name,
                         t && e > 0 && t->dtype != src_type ? " or type" : "");
            goto done;
        }
        if ((rc = fp8_scale(st, t, &scale[e], err))) goto done;
        src_type = t->dtype;
        data[e] = t->data;
    }
    char gname[96];
    snprintf(gname, sizeof gname, "blk.%lld.ffn_%s_exps.weight", (long long)l, proj[p]);
    whale_dtype want = convert_wtype_for(wt, gname);
    int64_t ne[3] = {n_in, n_out, N};
    convert_src src = {src_type, N, data, scale, 0, 0, NULL, NULL, 0};
    rc = convert_writer_add(o, gname, want, convert_fit_type(want, n_in), 3, ne, &src, NULL, err);
done:
    free(data);
    free(scale);
    return rc;
}

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

/* Every checkpoint tensor but the experts and FP8 scales: its GGUF name and type. */
static int add_tensors(const st_model *st, const model_hparams *hp, const convert_wtype *wt, convert_writer *o,
                       const convert_hooks *hooks, whale_err *err) {
    for (size_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        char gname[256];
        size_t nl = strlen(t->name);
        if (skip_mtp(st, t, hp)) continue;
        if (nl > 10 && !strcmp(t->name + nl - 10, "_scale_inv")) continue; /* applied with its weight */
        if (strstr(t->name, ".mlp.experts.")) continue;                    /* stacked per layer */
        if (!model_name_from_hf(t->name, gname, sizeof gname)) {
            char msg[WHALE_ERR_MAX];
            snprintf(msg, sizeof msg, "skipping tensor '%s' (not part of a dense model)", t->name);
            note(hooks, msg);
            continue;
        }
        const dtype_info *di = dtype_get(t->dtype);
        if (!di || !di->can_dequantize || t->n_dims < 1 || t->n_dims > 2)
            return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': %s with %d dims cannot be converted", t->name,
                           dtype_name(t->dtype), t->n_dims);
        const float *scale;
        int rc = fp8_scale(st, t, &scale, err);
        if (rc) return rc;
        int64_t n_in = t->shape[t->n_dims - 1], n_rows = t->n_dims == 2 ? t->shape[0] : 1;
        int is_qk = strstr(gname, "attn_q.") || strstr(gname, "attn_k.");
        /* The MoE router stays F32 as in llama.cpp's files: it is small, and rounding it flips
         * expert choices. */
        whale_dtype want = WHALE_DTYPE_F32;
        if (t->n_dims == 2 && !strstr(gname, "ffn_gate_inp")) want = convert_wtype_for(wt, gname);
        int64_t ne[2] = {n_in, n_rows};
        convert_src src = {t->dtype, 1, &t->data, scale ? &scale : NULL,
                           hp->arch == MODEL_ARCH_LLAMA && is_qk ? hp->head_dim : 0, 0, NULL, NULL, 0};
        if ((rc = convert_writer_add(o, gname, want, convert_fit_type(want, n_in), t->n_dims, ne, &src, NULL, err)))
            return rc;
    }
    return 0;
}

/* Llama 3 frequency scaling as rope_freqs.weight: base / scaled inverse frequency per pair. */
static int add_rope_freqs(const model_hparams *hp, convert_writer *o, whale_err *err) {
    int64_t half = hp->head_dim / 2;
    float *base = malloc((size_t)half * sizeof *base), *scaled = malloc((size_t)half * sizeof *scaled);
    if (!base || !scaled) {
        free(base);
        free(scaled);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    model_hparams plain = *hp;
    plain.rope_scaling_type = ROPE_SCALING_NONE;
    model_rope_inv_freq(&plain, hp->head_dim, base);
    model_rope_inv_freq(hp, hp->head_dim, scaled);
    for (int64_t i = 0; i < half; i++) base[i] /= scaled[i];
    free(scaled);
    int64_t ne[1] = {half};
    const void *data = base;
    convert_src src = {WHALE_DTYPE_F32, 1, &data, NULL, 0, 0, NULL, NULL, 0};
    return convert_writer_add(o, "rope_freqs.weight", WHALE_DTYPE_F32, WHALE_DTYPE_F32, 1, ne, &src, base, err);
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

int convert_hf(const char *in, const char *out, const convert_wtype *wt, int mtp, const convert_hooks *hooks,
               convert_report *rep, whale_err *err) {
    st_model st;
    model_hparams hp;
    tokenizer *tok = NULL;
    convert_writer *o = NULL;
    int rc = st_open(&st, in, err);
    if (rc) return rc;
    char path[HF_MAX_PATH];
    snprintf(path, sizeof path, "%s/config.json", st.dir);
    if ((rc = hf_config_load(&hp, path, err))) goto done;
    if (hp.arch == MODEL_ARCH_UNKNOWN) {
        rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: architecture '%s' is not supported (qwen2, llama, deepseek2)", in,
                     hp.arch_name);
        goto done;
    }
    if (writes_over_input(&st, out)) {
        rc = err_set(err, WHALE_E_ARG, "the output %s is one of the input's files; choose another name", out);
        goto done;
    }
    /* MTP: the first module, when asked for and stored (V3/R1 carry one, as layer n_layer) */
    char mname[96];
    snprintf(mname, sizeof mname, "model.layers.%lld.eh_proj.weight", (long long)hp.n_layer);
    int have_mtp = hp.n_nextn_layer > 0 && st_find(&st, mname) != NULL;
    if (mtp && !have_mtp) {
        rc = err_set(err, WHALE_E_ARG, "--mtp: %s has no multi-token prediction module", in);
        goto done;
    }
    hp.n_nextn_layer = mtp ? 1 : 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", st.dir);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe);
        if ((rc = tokenizer_load_json(&tok, path, err))) goto done;
    }
    o = convert_writer_init();
    gguf_writer *w = o ? convert_writer_gguf(o) : NULL;
    if (!w || gguf_keys_write(w, &hp) || gguf_writer_add_u32(w, "general.file_type", wt->ftype)) {
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
        goto done;
    }
    if (tok && (rc = tokenizer_export_gguf(tok, w, err))) goto done;
    if ((rc = add_tensors(&st, &hp, wt, o, hooks, err))) goto done;
    if (hp.arch == MODEL_ARCH_DEEPSEEK2 && hp.n_expert > 0)
        for (int64_t l = hp.n_layer_dense_lead; l < hp.n_layer + hp.n_nextn_layer; l++)
            for (int p = 0; p < 3; p++)
                if ((rc = stack_experts(&st, &hp, l, p, wt, o, err))) goto done;
    if (hp.rope_scaling_type == ROPE_SCALING_LLAMA3 && (rc = add_rope_freqs(&hp, o, err))) goto done;
    double in_bytes = 0;
    for (int i = 0; i < st.n_shards; i++) in_bytes += (double)st.shards[i].size;
    rc = convert_writer_write(o, out, hooks, rep, err);
    if (!rc && rep) rep->in_bytes = in_bytes;
done:
    convert_writer_free(o);
    tokenizer_free(tok);
    st_close(&st);
    return rc;
}
