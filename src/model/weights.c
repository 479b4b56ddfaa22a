/* weights.c — loading a dense (Qwen2 / Llama) model from GGUF or a Hugging Face checkpoint:
 * find every tensor by name, check its shape against the hyperparameters, keep large matrices
 * as views into the mapped file and convert small vectors (norms, biases) to F32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/progress.h"
#include "formats/gguf_hparams.h"
#include "formats/hf_config.h"
#include "model/model_impl.h"

/* One lookup result, whichever file the tensor came from. */
typedef struct tview {
    whale_dtype type;
    const void *data;
    int n_dims;
    int64_t ne[4]; /* ggml order: ne[0] contiguous */
} tview;

/* Keep f until the model is freed. Returns 0 or -1 (out of memory). */
int wt_own(model *m, void *f) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return -1;
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = f;
    return 0;
}

/* Find tensor `name` (GGUF naming). Returns 0, WHALE_E_NOTFOUND, or WHALE_E_FORMAT. */
static int find(model *m, const char *name, tview *v) {
    memset(v, 0, sizeof *v);
    if (m->is_gguf) {
        /* One routed expert ("blk.L.ffn_gate_exp.E.weight") is a slice of GGUF's stacked
         * tensor "blk.L.ffn_gate_exps.weight", ne = {n_in, n_out, n_expert}. */
        int l, e, used = 0;
        char proj[8];
        if (sscanf(name, "blk.%d.ffn_%4[a-z]_exp.%d.weight%n", &l, proj, &e, &used) == 3 && !name[used]) {
            char stacked[96];
            snprintf(stacked, sizeof stacked, "blk.%d.ffn_%s_exps.weight", l, proj);
            const gguf_tensor *t = gguf_find_tensor(&m->gguf, stacked);
            if (!t) return WHALE_E_NOTFOUND;
            if (t->n_dims != 3 || e < 0 || e >= t->ne[2] || !t->data) return WHALE_E_FORMAT;
            size_t per = 0;
            if (dtype_bytes(t->type, t->ne[0] * t->ne[1], &per)) return WHALE_E_FORMAT;
            v->type = t->type;
            v->data = (const unsigned char *)t->data + (size_t)e * per;
            v->n_dims = 2;
            v->ne[0] = t->ne[0];
            v->ne[1] = t->ne[1];
            v->ne[2] = v->ne[3] = 1;
            return 0;
        }
        const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
        if (!t) return WHALE_E_NOTFOUND;
        v->type = t->type;
        v->data = t->data;
        v->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) v->ne[d] = t->ne[d];
        return v->data ? 0 : WHALE_E_FORMAT;
    }
    char hf[256];
    if (!model_name_to_hf(name, hf, sizeof hf)) return WHALE_E_NOTFOUND;
    const st_tensor *t = st_find(&m->st, hf);
    if (!t) return WHALE_E_NOTFOUND;
    if (t->n_dims > 4 || t->n_dims < 1) return WHALE_E_FORMAT;
    v->type = t->dtype;
    v->data = t->data;
    v->n_dims = t->n_dims;
    for (int d = 0; d < 4; d++) v->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) v->ne[d] = t->shape[t->n_dims - 1 - d];
    return 0;
}

/* The block scales of an FP8 matrix: "<hf name>_scale_inv", F32 or BF16,
 * (ceil(n_out/128), ceil(n_in/128)), converted to an owned F32 array. */
static int fp8_scales(model *m, const char *name, wmat *w, whale_err *err) {
    char hf[288];
    if (m->is_gguf || !model_name_to_hf(name, hf, sizeof hf - 12))
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': FP8 without block scales", name);
    strcat(hf, "_scale_inv");
    const st_tensor *t = st_find(&m->st, hf);
    int64_t rows = (w->n_out + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK, cols = (w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK;
    if (!t) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is FP8 but '%s' is missing", name, hf);
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols ||
        (t->dtype != WHALE_DTYPE_F32 && t->dtype != WHALE_DTYPE_BF16))
        return err_set(err, WHALE_E_FORMAT, "'%s' must be F32 or BF16 of shape [%lld, %lld]", hf, (long long)rows,
                       (long long)cols);
    float *f = malloc((size_t)(rows * cols) * sizeof *f);
    if (!f || wt_own(m, f)) {
        free(f);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    dequantize_row(t->dtype, t->data, f, rows * cols);
    w->scale = f;
    return 0;
}

int wt_need_mat(model *m, const char *name, int64_t n_in, int64_t n_out, wmat *w, whale_err *err) {
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    const dtype_info *di = dtype_get(v.type);
    if (!di || !di->can_dequantize)
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': type %s cannot be computed on", name, dtype_name(v.type));
    if (v.n_dims != 2 || v.ne[0] != n_in || v.ne[1] != n_out)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] (ne0 first)",
                       name, (long long)v.ne[0], (long long)v.ne[1], (long long)n_in, (long long)n_out);
    w->type = v.type;
    w->data = v.data;
    w->n_in = n_in;
    w->n_out = n_out;
    w->scale = NULL;
    if (v.type == WHALE_DTYPE_F8_E4M3) return fp8_scales(m, name, w, err);
    return 0;
}

int wt_need_mat3(model *m, const char *name, int64_t n_in, int64_t n_mid, int64_t n_outer, wmat *w, whale_err *err) {
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    const dtype_info *di = dtype_get(v.type);
    if (!di || !di->can_dequantize || v.type == WHALE_DTYPE_F8_E4M3)
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': type %s cannot be computed on", name, dtype_name(v.type));
    if (v.n_dims != 3 || v.ne[0] != n_in || v.ne[1] != n_mid || v.ne[2] != n_outer)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]", name,
                       (long long)v.ne[0], (long long)v.ne[1], (long long)v.ne[2], (long long)n_in, (long long)n_mid,
                       (long long)n_outer);
    *w = (wmat){v.type, v.data, n_in, n_mid * n_outer, NULL};
    return 0;
}

/* A vector of n elements converted to an owned F32 array; *out NULL if absent and optional. */
int wt_has(model *m, const char *name) {
    tview v;
    return find(m, name, &v) != WHALE_E_NOTFOUND;
}

int wt_need_vec(model *m, const char *name, int64_t n, int optional, float **out, whale_err *err) {
    *out = NULL;
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND && optional) return 0;
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    int64_t nel = v.ne[0] * v.ne[1] * v.ne[2] * v.ne[3];
    const dtype_info *di = dtype_get(v.type);
    if (nel != n || !di || !di->can_dequantize || n % di->block_elems)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s': %lld elements of %s, expected %lld", name, (long long)nel,
                       dtype_name(v.type), (long long)n);
    float *f = malloc((size_t)n * sizeof *f);
    if (!f || wt_own(m, f)) {
        free(f);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    dequantize_row(v.type, v.data, f, n);
    *out = f;
    return 0;
}

static int check_hparams(const model_hparams *hp, whale_err *err) {
    if (hp->arch == MODEL_ARCH_UNKNOWN)
        return err_set(err, WHALE_E_UNSUPPORTED, "architecture '%s' is not supported (Whale runs qwen2, llama and deepseek2)",
                       hp->arch_name);
    /* Bounds that keep every size product far from overflow; real models are far inside. */
    if (hp->n_embd <= 0 || hp->n_embd > (1 << 16) || hp->n_layer <= 0 || hp->n_layer > 1024 ||
        hp->n_head <= 0 || hp->n_head > 1024 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv ||
        hp->head_dim <= 0 || hp->head_dim > 1024 || hp->head_dim % 2 || hp->n_ff <= 0 || hp->n_ff > (1 << 20) ||
        hp->n_vocab <= 0 || hp->n_vocab > (1 << 22))
        return err_set(err, WHALE_E_FORMAT, "implausible hyperparameters (n_embd %lld, n_layer %lld, n_head %lld/%lld, "
                       "head_dim %lld, n_ff %lld, n_vocab %lld)", (long long)hp->n_embd, (long long)hp->n_layer,
                       (long long)hp->n_head, (long long)hp->n_head_kv, (long long)hp->head_dim, (long long)hp->n_ff,
                       (long long)hp->n_vocab);
    return 0;
}

void model_rope_inv_freq(const model_hparams *hp, int64_t n_rot, float *inv_freq) {
    int64_t half = n_rot / 2;
    float theta = hp->rope_theta > 0 ? hp->rope_theta : 10000.0f;
    for (int64_t i = 0; i < half; i++)
        inv_freq[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)n_rot));
    if (hp->rope_scaling_type == ROPE_SCALING_LLAMA3 && hp->rope_factor > 0) {
        /* Llama 3: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between. */
        double lo = hp->rope_low_freq_factor > 0 ? hp->rope_low_freq_factor : 1.0;
        double hi = hp->rope_high_freq_factor > 0 ? hp->rope_high_freq_factor : 4.0;
        double orig = hp->rope_orig_ctx > 0 ? (double)hp->rope_orig_ctx : 8192.0;
        double lo_wl = orig / lo, hi_wl = orig / hi;
        for (int64_t i = 0; i < half; i++) {
            double f = inv_freq[i], wl = 2 * M_PI / f;
            if (wl > lo_wl) f /= hp->rope_factor;
            else if (wl >= hi_wl) {
                double s = (orig / wl - lo) / (hi - lo);
                f = (1 - s) * f / hp->rope_factor + s * f;
            }
            inv_freq[i] = (float)f;
        }
    } else if (hp->rope_scaling_type == ROPE_SCALING_LINEAR && hp->rope_factor > 0) {
        for (int64_t i = 0; i < half; i++) inv_freq[i] /= hp->rope_factor;
    } else if (hp->rope_scaling_type == ROPE_SCALING_YARN && hp->rope_factor > 1) {
        /* YaRN (SPEC-deepseek.md §6): pairs that turn fast keep their frequency, slow ones are
         * divided by factor, with a linear ramp between the corrected dimensions low..high. */
        double base = theta, d = (double)n_rot, L0 = hp->rope_orig_ctx > 0 ? (double)hp->rope_orig_ctx : 4096.0;
        double bf = hp->yarn_beta_fast > 0 ? hp->yarn_beta_fast : 32, bs = hp->yarn_beta_slow > 0 ? hp->yarn_beta_slow : 1;
        double lo = floor(d * log(L0 / (2 * M_PI * bf)) / (2 * log(base)));
        double hi = ceil(d * log(L0 / (2 * M_PI * bs)) / (2 * log(base)));
        if (lo < 0) lo = 0;
        if (hi > d - 1) hi = d - 1;
        if (hi == lo) hi += 0.001;
        for (int64_t i = 0; i < half; i++) {
            double g = ((double)i - lo) / (hi - lo);
            g = g < 0 ? 0 : g > 1 ? 1 : g;
            double f = inv_freq[i];
            inv_freq[i] = (float)(f * (1 - g) + f / hp->rope_factor * g);
        }
    }
}

/* Angles per position of each rotary pair. GGUF Llama 3 files carry the frequency scaling as
 * per-pair divisors (rope_freqs.weight); otherwise it comes from the hyperparameters. */
static int build_rope(model *m, whale_err *err) {
    m->n_rot = m->hp.arch == MODEL_ARCH_DEEPSEEK2 ? m->hp.qk_rope_head_dim : m->hp.head_dim;
    int64_t half = m->n_rot / 2;
    m->inv_freq = malloc((size_t)half * sizeof *m->inv_freq);
    if (!m->inv_freq) return err_set(err, WHALE_E_NOMEM, "out of memory");
    float *factors = NULL;
    int rc = wt_need_vec(m, "rope_freqs.weight", half, 1, &factors, err);
    if (rc) return rc;
    if (factors) {
        model_hparams plain = m->hp;
        plain.rope_scaling_type = ROPE_SCALING_NONE;
        model_rope_inv_freq(&plain, m->n_rot, m->inv_freq);
        for (int64_t i = 0; i < half; i++) m->inv_freq[i] /= factors[i];
    } else {
        model_rope_inv_freq(&m->hp, m->n_rot, m->inv_freq);
    }
    return 0;
}

static int load_tensors(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, D = hp->head_dim, Q = hp->n_head * D, KV = hp->n_head_kv * D, F = hp->n_ff, V = hp->n_vocab;
    int rc = wt_need_mat(m, "token_embd.weight", E, V, &m->tok_embd, err);
    if (rc) return rc;
    if ((rc = wt_need_vec(m, "output_norm.weight", E, 0, &m->out_norm, err))) return rc;
    tview ov;
    if (find(m, "output.weight", &ov) == WHALE_E_NOTFOUND) {
        m->output = m->tok_embd; /* tied embeddings */
    } else if ((rc = wt_need_mat(m, "output.weight", E, V, &m->output, err))) {
        return rc;
    }
    if (hp->arch == MODEL_ARCH_DEEPSEEK2) return deepseek_load(m, err);
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t l = 0; l < hp->n_layer; l++) {
        dense_layer *L = &m->layers[l];
        char n[96];
#define MAT(field, suffix, in, out)                                                     \
    snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                           \
    if ((rc = wt_need_mat(m, n, in, out, &L->field, err))) return rc;
#define VEC(field, suffix, len, opt)                                                    \
    snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                           \
    if ((rc = wt_need_vec(m, n, len, opt, &L->field, err))) return rc;
        VEC(attn_norm, "attn_norm.weight", E, 0);
        MAT(wq, "attn_q.weight", E, Q);
        MAT(wk, "attn_k.weight", E, KV);
        MAT(wv, "attn_v.weight", E, KV);
        MAT(wo, "attn_output.weight", Q, E);
        VEC(bq, "attn_q.bias", Q, 1);
        VEC(bk, "attn_k.bias", KV, 1);
        VEC(bv, "attn_v.bias", KV, 1);
        VEC(ffn_norm, "ffn_norm.weight", E, 0);
        MAT(w_gate, "ffn_gate.weight", E, F);
        MAT(w_up, "ffn_up.weight", E, F);
        MAT(w_down, "ffn_down.weight", F, E);
#undef MAT
#undef VEC
    }
    return 0;
}

static int alloc_scratch(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t B = m->n_batch, E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    int64_t F = hp->n_ff, T = tp_threads(m->tp);
    int64_t widest = E > F ? E : F;
    if (Q > widest) widest = Q;
    int64_t extra[] = {hp->q_lora_rank, hp->kv_lora_rank, hp->n_head * hp->v_head_dim,
                       hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1),
                       m->mtp ? 2 * E : 0 /* MTP's eh_proj */};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) widest = extra[i] > widest ? extra[i] : widest;
    m->row_width = widest;
    m->x = malloc((size_t)(B * E) * sizeof(float));
    m->xn = malloc((size_t)(B * E) * sizeof(float));
    m->q = malloc((size_t)(B * Q) * sizeof(float));
    m->k = malloc((size_t)(B * KV) * sizeof(float));
    m->v = malloc((size_t)(B * KV) * sizeof(float));
    m->att = malloc((size_t)(B * Q) * sizeof(float));
    m->gate = malloc((size_t)(B * F) * sizeof(float));
    m->up = malloc((size_t)(B * F) * sizeof(float));
    m->tmp_rows = malloc((size_t)(B * E) * sizeof(float));
    m->row_scratch = malloc((size_t)(T * widest) * sizeof(float));
    m->xq = malloc((size_t)(B * ((widest + QACT_BLOCK - 1) / QACT_BLOCK)) * sizeof(qact_block));
    if (!m->x || !m->xn || !m->q || !m->k || !m->v || !m->att || !m->gate || !m->up || !m->tmp_rows || !m->row_scratch ||
        !m->xq)
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers (batch %lld)", (long long)B);
    return 0;
}

/* Read every weight page once so the first tokens do not stall on disk, with a progress bar. */
static void prefault(model *m) {
    const unsigned char *p;
    size_t n;
    if (m->is_gguf) {
        p = m->gguf.map.data;
        n = m->gguf.map.size;
    } else {
        p = NULL;
        n = 0;
        for (int i = 0; i < m->st.n_shards; i++) n += m->st.shards[i].size;
    }
    progress bar;
    progress_begin(&bar, "loading", (double)n, 1);
    volatile unsigned char sink = 0;
    size_t done = 0;
    int shard = 0;
    while (done < n) {
        const unsigned char *base = p;
        size_t len = n;
        if (!m->is_gguf) {
            base = m->st.shards[shard].data;
            len = m->st.shards[shard].size;
            shard++;
        }
        for (size_t off = 0; off < len; off += 4096) {
            sink ^= base[off];
            if ((off & ((64u << 20) - 1)) == 0) progress_update(&bar, (double)(done + off));
        }
        done += len;
        if (m->is_gguf) break;
    }
    (void)sink;
    progress_end(&bar);
}

int model_load(model **out, const char *path, const model_opts *opts, whale_err *err) {
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(err, WHALE_E_NOMEM, "out of memory");
    model_opts o = opts ? *opts : (model_opts){0};
    int rc;
    struct stat st;
    size_t pl = strlen(path);
    int is_dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    int is_st = is_dir || (pl > 12 && !strcmp(path + pl - 12, ".safetensors")) || (pl > 11 && !strcmp(path + pl - 11, ".index.json"));
    if (!is_st) {
        m->is_gguf = 1;
        if ((rc = gguf_open(&m->gguf, path, 0, err))) goto fail_noprefix;
        if ((rc = gguf_hparams_load(&m->hp, &m->gguf, err))) goto fail;
        if (gguf_find(&m->gguf, "tokenizer.ggml.model") && (rc = tokenizer_load_gguf(&m->tok, &m->gguf, err))) goto fail;
        gguf_str tmpl;
        if (!gguf_get_str(&m->gguf, "tokenizer.chat_template", &tmpl, NULL) && (m->chat_template = malloc((size_t)tmpl.n + 1))) {
            memcpy(m->chat_template, tmpl.s, (size_t)tmpl.n);
            m->chat_template[tmpl.n] = 0;
        }
        /* GGUF Llama rows of q/k were permuted by the converter for adjacent-pair rotation. */
        m->rope = m->hp.arch == MODEL_ARCH_LLAMA ? ROPE_NORM : ROPE_NEOX;
    } else {
        if ((rc = st_open(&m->st, path, err))) goto fail_noprefix;
        char p2[4096];
        snprintf(p2, sizeof p2, "%s/config.json", m->st.dir);
        if ((rc = hf_config_load(&m->hp, p2, err))) goto fail_noprefix;
        snprintf(p2, sizeof p2, "%s/tokenizer.json", m->st.dir);
        /* A checkpoint without tokenizer.json still computes logits from ids (tests, tools);
         * commands that need text say so. */
        if (access(p2, F_OK) == 0 && (rc = tokenizer_load_json(&m->tok, p2, err))) goto fail_noprefix;
        m->rope = ROPE_NEOX;
        if (!m->hp.n_vocab && m->tok) m->hp.n_vocab = tokenizer_n_vocab(m->tok);
    }
    if ((rc = check_hparams(&m->hp, err))) goto fail;
    if ((rc = load_tensors(m, err))) goto fail;
    if ((rc = build_rope(m, err))) goto fail;
    m->tp = tp_new(o.n_threads);
    if (!m->tp) {
        rc = err_set(err, WHALE_E_NOMEM, "cannot start threads");
        goto fail;
    }
    m->n_batch = o.n_batch > 0 ? o.n_batch : 256;
    m->mla_naive = o.mla_naive;
    m->kv_f16 = o.kv_f16;
    m->mtp_prenorm = o.mtp_prenorm;
    if ((rc = alloc_scratch(m, err))) goto fail;
    if (m->hp.arch == MODEL_ARCH_DEEPSEEK2 && (rc = deepseek_alloc(m, err))) goto fail;
    if (o.progress) prefault(m);
    *out = m;
    return 0;
fail:
    err_prefix(err, "%s", path);
fail_noprefix:
    model_free(m);
    return rc;
}

void model_free(model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    free(m->chat_template);
    if (m->is_gguf) gguf_close(&m->gguf);
    else st_close(&m->st);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    deepseek_free(m);
    free(m->inv_freq);
    tp_free(m->tp);
    free(m->xq);
    free(m->x);
    free(m->xn);
    free(m->q);
    free(m->k);
    free(m->v);
    free(m->att);
    free(m->gate);
    free(m->up);
    free(m->tmp_rows);
    free(m->row_scratch);
    free(m->att_scores);
    free(m);
}

const model_hparams *model_hparams_get(const model *m) { return &m->hp; }
const tokenizer *model_tokenizer(const model *m) { return m->tok; }
const char *model_chat_template(const model *m) { return m->chat_template; }
int64_t model_n_vocab(const model *m) { return m->output.n_out; }
