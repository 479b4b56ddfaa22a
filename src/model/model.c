/* model.c — the model core: loading and freeing a model, contexts (KV cache, scratch, threads),
 * and the forward pass's frame — check the batch, split it into chunks, embed the tokens, hand
 * the layers to the architecture (dense.c, deepseek.c), apply the final norm and output head.
 * The architecture table below is the one place that says which architecture a model is.
 * Owns: the files (mapped), the tokenizer, the embedding and output head, RoPE frequencies.
 * Does not own: any layer's weights or arithmetic (the leaves), the cache layout (kv_cache.c). */
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
#include "kernels/attn.h"
#include "model/model_impl.h"

/* ---- loading -------------------------------------------------------------------------- */

/* The architectures Whale runs, by the hyperparameters' architecture id. */
static const struct {
    model_arch id;
    const arch_ops *ops;
} archs[] = {
    {MODEL_ARCH_QWEN2, &dense_arch},
    {MODEL_ARCH_LLAMA, &dense_arch},
    {MODEL_ARCH_DEEPSEEK2, &deepseek_arch},
};

const arch_ops *model_arch_ops(model_arch id) {
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (archs[i].id == id) return archs[i].ops;
    return NULL;
}

static int check_hparams(const model_hparams *hp, whale_err *err) {
    if (!model_arch_ops(hp->arch))
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

/* YaRN's ramp (SPEC-deepseek.md §6) for rotary pair i of n_rot dimensions: 0 where the pair turns
 * fast enough to keep its frequency, 1 where it is divided by the scaling factor, linear between
 * the corrected dimensions low..high. orig_ctx, beta_fast, beta_slow <= 0: 4096, 32, 1. */
double rope_yarn_ramp(double theta, double n_rot, double orig_ctx, double beta_fast, double beta_slow, int64_t i) {
    double L0 = orig_ctx > 0 ? orig_ctx : 4096.0, bf = beta_fast > 0 ? beta_fast : 32, bs = beta_slow > 0 ? beta_slow : 1;
    double lo = floor(n_rot * log(L0 / (2 * M_PI * bf)) / (2 * log(theta)));
    double hi = ceil(n_rot * log(L0 / (2 * M_PI * bs)) / (2 * log(theta)));
    if (lo < 0) lo = 0;
    if (hi > n_rot - 1) hi = n_rot - 1;
    if (hi == lo) hi += 0.001;
    double g = ((double)i - lo) / (hi - lo);
    return g < 0 ? 0 : g > 1 ? 1 : g;
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
        for (int64_t i = 0; i < half; i++) {
            double g = rope_yarn_ramp(theta, (double)n_rot, hp->rope_orig_ctx, hp->yarn_beta_fast, hp->yarn_beta_slow, i);
            double f = inv_freq[i];
            inv_freq[i] = (float)(f * (1 - g) + f / hp->rope_factor * g);
        }
    }
}

/* Angles per position of each rotary pair. GGUF Llama 3 files carry the frequency scaling as
 * per-pair divisors (rope_freqs.weight); otherwise it comes from the hyperparameters. */
static int build_rope(model *m, whale_err *err) {
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

/* What every architecture has: the token embedding, the final norm, the output head (tied to
 * the embedding when the file has none). */
static int load_common(model *m, whale_err *err) {
    int64_t E = m->hp.n_embd, V = m->hp.n_vocab;
    int rc = wt_need_mat(m, "token_embd.weight", E, V, &m->tok_embd, err);
    if (rc) return rc;
    if ((rc = wt_need_vec(m, "output_norm.weight", E, 0, &m->out_norm, err))) return rc;
    if (!wt_has(m, "output.weight")) m->output = m->tok_embd; /* tied embeddings */
    else if ((rc = wt_need_mat(m, "output.weight", E, V, &m->output, err))) return rc;
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
    } else {
        if ((rc = st_open(&m->st, path, err))) goto fail_noprefix;
        char p2[4096];
        snprintf(p2, sizeof p2, "%s/config.json", m->st.dir);
        if ((rc = hf_config_load(&m->hp, p2, err))) goto fail_noprefix;
        snprintf(p2, sizeof p2, "%s/tokenizer.json", m->st.dir);
        /* A checkpoint without tokenizer.json still computes logits from ids (tests, tools);
         * commands that need text say so. */
        if (access(p2, F_OK) == 0 && (rc = tokenizer_load_json(&m->tok, p2, err))) goto fail_noprefix;
        if (!m->hp.n_vocab && m->tok) m->hp.n_vocab = tokenizer_n_vocab(m->tok);
    }
    if ((rc = check_hparams(&m->hp, err))) goto fail;
    m->arch = model_arch_ops(m->hp.arch);
    m->n_threads = o.n_threads;
    m->n_batch = o.n_batch > 0 ? o.n_batch : 256;
    m->mla_naive = o.mla_naive;
    m->kv_type = o.kv_type;
    m->mtp_prenorm = o.mtp_prenorm;
    if (m->kv_type < OP_KV_F32 || m->kv_type > OP_KV_Q8) {
        rc = err_set(err, WHALE_E_ARG, "unknown KV cache type %d (0 f32, 1 f16, 2 bf16, 3 q8)", m->kv_type);
        goto fail;
    }
    if (m->kv_type == OP_KV_Q8 && m->arch->kv_with_v) {
        rc = err_set(err, WHALE_E_ARG, "a q8 KV cache is for MLA models (DeepSeek V2/V3: the latent cache); for %s use "
                     "f16 or bf16", m->hp.arch_name);
        goto fail;
    }
    if ((rc = load_common(m, err))) goto fail;
    if ((rc = m->arch->load(m, err))) goto fail;
    if (m->arch->has_mtp && (rc = mtp_load(m, err))) goto fail;
    if ((rc = build_rope(m, err))) goto fail;
    if (o.lora && (rc = model_lora_load(m, o.lora, err))) goto fail_noprefix;
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
    lora_free(m);
    if (m->arch) m->arch->free(m);
    mtp_free(m);
    tokenizer_free(m->tok);
    free(m->chat_template);
    if (m->is_gguf) gguf_close(&m->gguf);
    else st_close(&m->st);
    wt_free_owned(m);
    free(m->inv_freq);
    free(m);
}

const model_hparams *model_hparams_get(const model *m) { return &m->hp; }
const tokenizer *model_tokenizer(const model *m) { return m->tok; }
const char *model_chat_template(const model *m) { return m->chat_template; }
int64_t model_n_vocab(const model *m) { return m->output.n_out; }
int model_has_mtp(const model *m) { return m->mtp != NULL; }

/* ---- contexts ------------------------------------------------------------------------- */

model_ctx *model_ctx_new(const model *m, int64_t n_ctx, int n_seq) {
    const model_hparams *hp = &m->hp;
    model_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->arch = m->arch;
    /* the MTP block caches in one more layer */
    c->kv = kv_cache_new(hp->n_layer + (m->mtp ? 1 : 0), m->arch->kv_dim(hp), m->arch->kv_with_v, m->kv_type,
                         m->arch->kv_with_v ? 0 : hp->kv_lora_rank /* q8: the latent, then the rope key */, n_ctx,
                         n_seq);
    c->tp = tp_new(m->n_threads);
    if (!c->kv || !c->tp) goto fail;
    int64_t B = c->n_batch = m->n_batch, E = hp->n_embd, T = tp_threads(c->tp);
    int64_t widest = E > hp->n_ff ? E : hp->n_ff;
    int64_t extra[] = {hp->n_head * hp->head_dim, hp->q_lora_rank, hp->kv_lora_rank, hp->n_head * hp->v_head_dim,
                       hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1),
                       m->mtp ? 2 * E : 0 /* MTP's eh_proj */};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) widest = extra[i] > widest ? extra[i] : widest;
    c->row_width = widest;
    int64_t xq = B * ((widest + QACT_BLOCK - 1) / QACT_BLOCK), xq_arch = m->arch->xq_blocks(m, B);
    /* per thread: the naive MLA form's scores over the context, or a dense attention task's
     * block of scores, scaled queries and softmax state for one KV head's group */
    int64_t group = hp->n_head / hp->n_head_kv, need = group * (hp->head_dim + 2) + OP_MQA_SCRATCH(group, hp->head_dim);
    c->att_scores_n = need > n_ctx ? need : n_ctx;
    c->x = malloc((size_t)(B * E) * sizeof(float));
    c->xn = malloc((size_t)(B * E) * sizeof(float));
    c->row_scratch = malloc((size_t)(T * widest) * sizeof(float));
    c->xq = malloc((size_t)(xq > xq_arch ? xq : xq_arch) * sizeof(qact_block));
    c->att_scores = malloc((size_t)(T * c->att_scores_n) * sizeof(float));
    if (!c->x || !c->xn || !c->row_scratch || !c->xq || !c->att_scores) goto fail;
    whale_err err;
    if (m->arch->ws_new(m, c, &err)) goto fail;
    return c;
fail:
    model_ctx_free(c);
    return NULL;
}

void model_ctx_free(model_ctx *c) {
    if (!c) return;
    if (c->ws) c->arch->ws_free(c);
    kv_cache_free(c->kv);
    tp_free(c->tp);
    free(c->x);
    free(c->xn);
    free(c->row_scratch);
    free(c->xq);
    free(c->att_scores);
    free(c);
}

kv_cache *model_ctx_kv(model_ctx *c) { return c->kv; }
threadpool *model_ctx_pool(model_ctx *c) { return c->tp; }

void model_ctx_set_hook(model_ctx *c, model_hook_fn fn, void *user) {
    c->hook = fn;
    c->hook_user = user;
}

/* ---- the forward pass ----------------------------------------------------------------- */

static int check_batch(const model *m, const model_ctx *c, const model_batch *b, whale_err *err) {
    const kv_cache *kv = c->kv;
    for (int64_t i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= m->tok_embd.n_out)
            return err_set(err, WHALE_E_ARG, "token id %d is outside the vocabulary (0..%lld)", b->token[i],
                           (long long)m->tok_embd.n_out - 1);
        if (b->pos[i] < 0 || b->pos[i] >= kv->n_ctx)
            return err_set(err, WHALE_E_ARG, "position %d is past the context of %lld tokens", b->pos[i],
                           (long long)kv->n_ctx);
        if (b->seq && (b->seq[i] < 0 || b->seq[i] >= kv->n_seq))
            return err_set(err, WHALE_E_ARG, "sequence %d does not exist (cache has %d)", b->seq[i], kv->n_seq);
    }
    return 0;
}

/* Every row of b writes its position's cache rows: make their pages the sequences' own first
 * (mapped, or copied from a shared page). */
static int own_rows(model_ctx *c, const model_batch *b, whale_err *err) {
    for (int64_t i = 0; i < b->n; i++)
        if (kv_own(c->kv, b->seq ? b->seq[i] : 0, b->pos[i]))
            return err_set(err, WHALE_E_NOMEM, "the KV cache has no free page");
    return 0;
}

/* The embedding rows of the n tokens tok (table w: one row of n_embd per token id) into out. */
static void embed(const wmat *w, const int32_t *tok, int64_t n, float *out) {
    size_t erow = 0;
    dtype_bytes(w->type, w->n_in, &erow);
    for (int64_t i = 0; i < n; i++)
        dequantize_row(w->type, (const unsigned char *)w->data + (size_t)tok[i] * erow, out + i * w->n_in, w->n_in);
}

/* The final norm and output head for the rows of b[r0, r0+n) that want logits, appended to
 * logits after the *n_logits rows already there; every row's hidden state into hidden (rows
 * r0.., before or after the norm as model_opts.mtp_prenorm says) when hidden is not NULL. */
static void output_logits(const model *m, model_ctx *c, const model_batch *b, int64_t r0, int64_t n, int64_t layer,
                          const float *norm,
                          const wmat *head, float *logits, int64_t *n_logits, float *hidden) {
    int64_t E = m->hp.n_embd, k = 0;
    for (int64_t i = 0; i < n; i++) {
        int want = b->logits ? b->logits[r0 + i] : (r0 + i == b->n - 1);
        if (!want && !hidden) continue;
        op_rmsnorm(c->xn + k * E, c->x + i * E, norm, E, m->hp.rms_eps);
        if (hidden) /* every row's state, for the MTP module to continue from */
            memcpy(hidden + (size_t)(r0 + i) * (size_t)E, m->mtp_prenorm ? c->x + i * E : c->xn + k * E,
                   (size_t)E * sizeof(float));
        if (c->hook && want) c->hook(c->hook_user, "result_norm", layer, r0 + i, 1, E, c->xn + k * E);
        k += want;
    }
    if (k) wmat_matmul(c, logits + (size_t)*n_logits * (size_t)head->n_out, head, c->xn, k);
    *n_logits += k;
}

int model_forward(const model *m, model_ctx *c, const model_batch *b, float *logits, float *hidden, whale_err *err) {
    int rc = check_batch(m, c, b, err);
    if (!rc) rc = own_rows(c, b, err);
    if (rc) return rc;
    int64_t n_logits = 0, E = m->hp.n_embd;
    for (int64_t r0 = 0; r0 < b->n; r0 += c->n_batch) {
        int64_t n = b->n - r0 < c->n_batch ? b->n - r0 : c->n_batch;
        const int32_t *pos = b->pos + r0, *seq = b->seq ? b->seq + r0 : NULL;
        c->hook_row0 = r0;
        embed(&m->tok_embd, b->token + r0, n, c->x);
        model_emit(c, "inp_embd", -1, c->x, n, E);
        m->arch->forward(m, c, pos, seq, n);
        output_logits(m, c, b, r0, n, -1, m->out_norm, &m->output, logits, &n_logits, hidden);
    }
    return 0;
}

int model_mtp_forward(const model *m, model_ctx *c, const model_batch *b, const float *hidden, float *logits,
                      whale_err *err) {
    if (!m->mtp) return err_set(err, WHALE_E_UNSUPPORTED, "this model has no MTP module");
    if (c->kv->n_layer <= m->hp.n_layer) return err_set(err, WHALE_E_ARG, "this cache has no room for the MTP layer");
    int rc = check_batch(m, c, b, err);
    if (!rc) rc = own_rows(c, b, err);
    if (rc) return rc;
    int64_t n_logits = 0, E = m->hp.n_embd;
    for (int64_t r0 = 0; r0 < b->n; r0 += c->n_batch) {
        int64_t n = b->n - r0 < c->n_batch ? b->n - r0 : c->n_batch;
        const float *norm;
        const wmat *head;
        c->hook_row0 = r0;
        mtp_forward_chunk(m, c, b, hidden + (size_t)r0 * (size_t)E, r0, n, &norm, &head);
        output_logits(m, c, b, r0, n, m->hp.n_layer, norm, head, logits, &n_logits, NULL);
    }
    return 0;
}
