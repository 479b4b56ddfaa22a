/* deepseek.c — the DeepSeek V2 / V3 / R1 architecture, a leaf of the model core: loading its
 * layers, a context's scratch, and the decoder block (SPEC-deepseek.md §2-3, 6; DeepSeek's
 * inference/model.py order and names: MLA in mla.c, Gate and MoE in moe.c, Block here).
 * The MTP module (mtp.c) reuses the block and its loader. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/attn.h"
#include "model/deepseek.h"

/* ---- loading -------------------------------------------------------------------------- */

static int load_expert(model *m, const char *fmt_gate, const char *fmt_up, const char *fmt_down, int64_t l,
                       int64_t e, int64_t width, ds_expert *x, whale_err *err) {
    char n[128];
    int64_t E = m->hp.n_embd;
    int rc;
    snprintf(n, sizeof n, fmt_gate, (long long)l, (long long)e);
    if ((rc = wt_need_mat(m, n, E, width, &x->gate, err))) return rc;
    snprintf(n, sizeof n, fmt_up, (long long)l, (long long)e);
    if ((rc = wt_need_mat(m, n, E, width, &x->up, err))) return rc;
    snprintf(n, sizeof n, fmt_down, (long long)l, (long long)e);
    return wt_need_mat(m, n, width, E, &x->down, err);
}

int ds_load_layer(model *m, int64_t l, ds_layer *L, int moe, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dv = hp->v_head_dim, dc = hp->kv_lora_rank, dq = hp->q_lora_rank;
    int rc;
    char n[128];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l), n)
    if ((rc = wt_need_vec(m, NAME("attn_norm.weight"), E, 0, &L->attn_norm, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("ffn_norm.weight"), E, 0, &L->ffn_norm, err))) return rc;
    if (dq > 0) {
        if ((rc = wt_need_mat(m, NAME("attn_q_a.weight"), E, dq, &L->wq_a, err))) return rc;
        if ((rc = wt_need_vec(m, NAME("attn_q_a_norm.weight"), dq, 0, &L->q_a_norm, err))) return rc;
        if ((rc = wt_need_mat(m, NAME("attn_q_b.weight"), dq, H * (dn + dr), &L->wq_b, err))) return rc;
    } else if ((rc = wt_need_mat(m, NAME("attn_q.weight"), E, H * (dn + dr), &L->wq, err))) {
        return rc;
    }
    if ((rc = wt_need_mat(m, NAME("attn_kv_a_mqa.weight"), E, dc + dr, &L->wkv_a, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("attn_kv_a_norm.weight"), dc, 0, &L->kv_a_norm, err))) return rc;
    if (wt_has(m, NAME("attn_kv_b.weight"))) {
        if ((rc = wt_need_mat(m, n, dc, H * (dn + dv), &L->wkv_b, err))) return rc;
    } else {
        /* llama.cpp's split layout: k_b {dn, dc, H} (W_UK transposed per head), v_b {dc, dv, H} */
        L->split_kb = 1;
        if ((rc = wt_need_mat3(m, NAME("attn_k_b.weight"), dn, dc, H, &L->wk_b, err))) return rc;
        if ((rc = wt_need_mat3(m, NAME("attn_v_b.weight"), dc, dv, H, &L->wv_b, err))) return rc;
    }
    if ((rc = mla_build_kb(m, L, err))) return rc;
    if ((rc = wt_need_mat(m, NAME("attn_output.weight"), H * dv, E, &L->wo, err))) return rc;
    L->moe = moe;
    if (!moe) /* "%.0lld" prints nothing for 0: the same loader serves names without an expert index. */
        return load_expert(m, "blk.%lld.ffn_gate.weight%.0lld", "blk.%lld.ffn_up.weight%.0lld",
                           "blk.%lld.ffn_down.weight%.0lld", l, 0, hp->n_ff, &L->dense, err);
    if ((rc = wt_need_mat(m, NAME("ffn_gate_inp.weight"), E, hp->n_expert, &L->router, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("exp_probs_b.bias"), hp->n_expert, 1, &L->router_bias, err))) return rc;
#undef NAME
    L->experts = calloc((size_t)hp->n_expert, sizeof *L->experts);
    if (!L->experts) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t e = 0; e < hp->n_expert; e++)
        if ((rc = load_expert(m, "blk.%lld.ffn_gate_exp.%lld.weight", "blk.%lld.ffn_up_exp.%lld.weight",
                              "blk.%lld.ffn_down_exp.%lld.weight", l, e, hp->n_ff_expert, &L->experts[e], err)))
            return rc;
    if (hp->n_expert_shared > 0) {
        L->has_shared = 1;
        return load_expert(m, "blk.%lld.ffn_gate_shexp.weight%.0lld", "blk.%lld.ffn_up_shexp.weight%.0lld",
                           "blk.%lld.ffn_down_shexp.weight%.0lld", l, 0, hp->n_expert_shared * hp->n_ff_expert,
                           &L->shared, err);
    }
    return 0;
}

static int load(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dv = hp->v_head_dim, dc = hp->kv_lora_rank, dq = hp->q_lora_rank;
    if (dn <= 0 || dr <= 0 || dr % 2 || dv <= 0 || dc <= 0 || dn > 4096 || dr > 4096 || dv > 4096 || dc > 65536 ||
        dq < 0 || dq > 65536 || hp->n_expert < 0 || hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert ||
        (hp->n_expert > 0 && (hp->n_expert_used <= 0 || hp->n_ff_expert <= 0)))
        return err_set(err, WHALE_E_FORMAT, "implausible MLA/MoE hyperparameters");
    m->n_rot = dr;
    m->rope = ROPE_NORM; /* adjacent pairs, as the checkpoints lay the rope rows out */
    int rc;
    m->ds = calloc((size_t)hp->n_layer, sizeof *m->ds);
    if (!m->ds) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t l = 0; l < hp->n_layer; l++)
        if ((rc = ds_load_layer(m, l, &m->ds[l], hp->n_expert > 0 && l >= hp->n_layer_dense_lead, err))) return rc;
    /* Softmax scale: (dn+dr)^-1/2, times YaRN's mscale^2 when the context was extended. */
    double scale = 1.0 / sqrt((double)(dn + dr));
    if (hp->rope_scaling_type == ROPE_SCALING_YARN && hp->rope_factor > 1 && hp->yarn_mscale_all_dim > 0) {
        double ms = 0.1 * hp->yarn_mscale_all_dim * log(hp->rope_factor) + 1.0;
        scale *= ms * ms;
    }
    m->attn_scale = (float)scale;
    return 0;
}

void ds_free_layer(ds_layer *L) { free(L->experts); }

static void unload(model *m) {
    if (m->ds)
        for (int64_t l = 0; l < m->hp.n_layer; l++) ds_free_layer(&m->ds[l]);
    free(m->ds);
    m->ds = NULL;
}

static int64_t kv_dim(const model_hparams *hp) { return hp->kv_lora_rank + hp->qk_rope_head_dim; }

/* The widest FFN a row passes through: a dense layer's, or the shared experts' together. */
static int64_t widest_ffn(const model_hparams *hp) {
    int64_t shared = hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1);
    return hp->n_ff > shared ? hp->n_ff : shared;
}

/* Hidden width of the MoE passes: the routed slots of a row plus the shared experts. */
static int64_t moe_ffn_width(const model_hparams *hp) {
    int64_t K = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
    int64_t Fs = hp->n_ff_expert * (hp->n_expert_shared > 0 ? hp->n_expert_shared : 0);
    int64_t fw = hp->n_ff_expert * K + Fs, wide = widest_ffn(hp);
    return fw > wide ? fw : wide;
}

static int64_t xq_blocks(const model *m, int64_t B) {
    const model_hparams *hp = &m->hp;
    int64_t H = hp->n_head, dc = hp->kv_lora_rank, K = hp->n_expert_used > 0 ? hp->n_expert_used : 1, S = B * K;
    int64_t xq_n = S * (hp->n_embd > hp->n_ff_expert ? hp->n_embd : hp->n_ff_expert) / QACT_BLOCK;
    if (xq_n < B * H * dc / QACT_BLOCK) xq_n = B * H * dc / QACT_BLOCK; /* MLA: o~ per (row, head) */
    if (xq_n < (S + B) * hp->n_embd / QACT_BLOCK) xq_n = (S + B) * hp->n_embd / QACT_BLOCK; /* MoE with shared rows */
    if (xq_n < B * moe_ffn_width(hp) / QACT_BLOCK) xq_n = B * moe_ffn_width(hp) / QACT_BLOCK;
    return xq_n;
}

static void ws_free(model_ctx *c) {
    ds_ws *w = c->ws;
    free(w->q);
    free(w->k);
    free(w->att);
    free(w->tmp);
    free(w->mtp_cat);
    free(w->qcat);
    free(w->att_part);
    free(w->scratch);
    free(w->moe_x);
    free(w->moe_y);
    free(w->moe_g);
    free(w->moe_u);
    free(w->moe_goff);
    free(w->moe_h);
    free(w->moe_w);
    free(w->moe_id);
    free(w->moe_rows);
    free(w->moe_slot);
    free(w->moe_cnt);
    free(w);
    c->ws = NULL;
}

static int ws_new(const model *m, model_ctx *c, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t B = c->n_batch, H = hp->n_head, T = tp_threads(c->tp), E = hp->n_embd;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    ds_ws *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, WHALE_E_NOMEM, "out of memory");
    c->ws = w;
    w->q = malloc((size_t)(B * H * (dn + dr) + B * (hp->q_lora_rank > 0 ? hp->q_lora_rank : 1)) * sizeof(float));
    w->k = malloc((size_t)(B * (dc + dr)) * sizeof(float));
    w->att = malloc((size_t)(B * H * dv) * sizeof(float));
    w->tmp = malloc((size_t)(B * E) * sizeof(float));
    /* per thread: one weight row (the widest of dc, dv, dn), then either o~ (dc), one block of
     * scores for all heads, or, with the split layout in the decompressed form, one head's W_UK */
    int64_t wide3 = dc > dv ? dc : dv;
    wide3 = wide3 > dn ? wide3 : dn;
    int split = m->mtp && m->mtp->blk.split_kb;
    for (int64_t l = 0; l < hp->n_layer; l++) split |= m->ds[l].split_kb;
    int64_t after = dc > OP_MQA_SCRATCH(H, dc + dr) ? dc : OP_MQA_SCRATCH(H, dc + dr); /* scores (+ BF16 queries) */
    if (op_mqa_scratch_q8(H, dc + dr, dc) > after) after = op_mqa_scratch_q8(H, dc + dr, dc); /* or Q8's */
    if (split && dn * dc > after) after = dn * dc;
    w->wide = wide3;
    w->scratch_n = wide3 + after + dc + dr; /* + one latent row widened from an F16 cache */
    w->scratch = malloc((size_t)(T * w->scratch_n) * sizeof(float));
    int64_t parts = B > DS_SPLIT_ROWS * DS_MAX_CHUNKS ? B : DS_SPLIT_ROWS * DS_MAX_CHUNKS;
    w->qcat = malloc((size_t)(B * H * (dc + dr)) * sizeof(float));
    w->att_part = malloc((size_t)(parts * H * (dc + 2)) * sizeof(float));
    if (m->mtp && !(w->mtp_cat = malloc((size_t)(B * 2 * E) * sizeof(float))))
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers");
    int64_t NE = hp->n_expert > 0 ? hp->n_expert : 1, K = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
    /* rows are gathered once per chosen expert: n_batch * n_expert_used slots; the shared
     * experts reuse moe_g/moe_u/moe_y with n_batch rows of their (wider) FFN */
    int64_t S = B * K, fw = moe_ffn_width(hp);
    /* the routed slots, then the shared experts' n_batch rows (they run in the same passes) */
    w->moe_x = malloc((size_t)((S + B) * E) * sizeof(float));
    w->moe_y = malloc((size_t)((S + B) * E) * sizeof(float));
    w->moe_g = malloc((size_t)(B * fw) * sizeof(float));
    w->moe_u = malloc((size_t)(B * fw) * sizeof(float));
    w->moe_h = malloc((size_t)(B * NE * 2) * sizeof(float));
    w->moe_w = malloc((size_t)S * sizeof(float));
    w->moe_id = malloc((size_t)S * sizeof(int32_t));
    w->moe_rows = malloc((size_t)S * sizeof(int32_t));
    w->moe_slot = malloc((size_t)S * sizeof(int32_t));
    w->moe_cnt = malloc((size_t)(5 * NE + 8) * sizeof(int32_t));
    w->moe_goff = malloc((size_t)(NE + 1) * sizeof(int64_t));
    if (!w->q || !w->k || !w->att || !w->tmp || !w->scratch || !w->qcat || !w->att_part || !w->moe_x || !w->moe_y ||
        !w->moe_g || !w->moe_u || !w->moe_h || !w->moe_w || !w->moe_id || !w->moe_rows || !w->moe_slot ||
        !w->moe_cnt || !w->moe_goff)
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers");
    return 0;
}

/* ---- bytes per token (footprint.c) ----------------------------------------------------- */

static size_t expert_bytes(const ds_expert *x) { return wmat_bytes(&x->gate) + wmat_bytes(&x->up) + wmat_bytes(&x->down); }

/* One MLA + FFN/MoE block in the absorbed form. Routed experts: n_expert_used of them, each the
 * size of expert 0 (a checkpoint stores all experts of a layer in one type). */
static size_t layer_bytes(const model *m, int64_t l) {
    const model_hparams *hp = &m->hp;
    const ds_layer *L = &m->ds[l];
    int64_t E = hp->n_embd, H = hp->n_head, dv = hp->v_head_dim, dq = hp->q_lora_rank, dc = hp->kv_lora_rank;
    size_t b = vec_bytes(L->attn_norm, E) + vec_bytes(L->ffn_norm, E);
    if (dq > 0) b += wmat_bytes(&L->wq_a) + vec_bytes(L->q_a_norm, dq) + wmat_bytes(&L->wq_b);
    else b += wmat_bytes(&L->wq);
    b += wmat_bytes(&L->wkv_a) + vec_bytes(L->kv_a_norm, dc) + wmat_bytes(&L->wk_b);
    /* W_UV: all of attn_v_b, or the last dv of each head's dn + dv rows of attn_kv_b (the rows
     * of a matrix have equal sizes, so which rows does not matter) */
    b += L->split_kb ? wmat_bytes(&L->wv_b) : wmat_rows_bytes(&L->wkv_b, H * dv);
    b += wmat_bytes(&L->wo);
    if (!L->moe) return b + expert_bytes(&L->dense);
    b += wmat_bytes(&L->router) + vec_bytes(L->router_bias, hp->n_expert);
    if (hp->n_expert > 0 && L->experts) b += (size_t)hp->n_expert_used * expert_bytes(&L->experts[0]);
    if (L->has_shared) b += expert_bytes(&L->shared);
    return b;
}

/* ---- forward -------------------------------------------------------------------------- */

void ds_block(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const int32_t *pos, const int32_t *seq,
              int64_t n) {
    const model_hparams *hp = &m->hp;
    ds_ws *w = c->ws;
    kv_cache *kv = c->kv;
    int64_t E = hp->n_embd, H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dc = hp->kv_lora_rank, dq = hp->q_lora_rank, QD = H * (dn + dr);
    float *cq = w->q + n * QD; /* q-LoRA intermediate, after the q rows */
    for (int64_t i = 0; i < n; i++) op_rmsnorm(c->xn + i * E, c->x + i * E, L->attn_norm, E, hp->rms_eps);
    model_emit(c, "attn_norm", layer, c->xn, n, E);
    if (dq > 0) {
        wmat_matmul(c, cq, &L->wq_a, c->xn, n);
        for (int64_t i = 0; i < n; i++) op_rmsnorm(cq + i * dq, cq + i * dq, L->q_a_norm, dq, 1e-6f);
        wmat_matmul(c, w->q, &L->wq_b, cq, n);
    } else {
        wmat_matmul(c, w->q, &L->wq, c->xn, n);
    }
    wmat_matmul(c, w->k, &L->wkv_a, c->xn, n);
    for (int64_t i = 0; i < n; i++) {
        float *a = w->k + i * (dc + dr);
        op_rmsnorm(a, a, L->kv_a_norm, dc, 1e-6f);
        op_rope(a + dc, dr, pos[i], m->inv_freq, ROPE_NORM);
        for (int64_t h = 0; h < H; h++) op_rope(w->q + i * QD + h * (dn + dr) + dn, dr, pos[i], m->inv_freq, ROPE_NORM);
        kv_put(kv, kv_row(kv, 0, layer, seq ? seq[i] : 0, pos[i]), a, dc + dr);
    }
    mla_attention(m, c, L, layer, pos, seq, n);
    wmat_matmul(c, w->tmp, &L->wo, w->att, n);
    model_emit(c, "attn_out", layer, w->tmp, n, E);
    for (int64_t i = 0; i < n; i++) op_add(c->x + i * E, w->tmp + i * E, E);
    model_emit(c, "ffn_inp", layer, c->x, n, E);

    for (int64_t i = 0; i < n; i++) op_rmsnorm(c->xn + i * E, c->x + i * E, L->ffn_norm, E, hp->rms_eps);
    model_emit(c, "ffn_norm", layer, c->xn, n, E);
    if (L->moe) moe_forward(m, c, L, layer, c->xn, w->tmp, n);
    else ds_ffn(c, &L->dense, c->xn, w->tmp, n);
    model_emit(c, "ffn_out", layer, w->tmp, n, E);
    for (int64_t i = 0; i < n; i++) op_add(c->x + i * E, w->tmp + i * E, E);
    model_emit(c, "l_out", layer, c->x, n, E);
}

static void forward(const model *m, model_ctx *c, const int32_t *pos, const int32_t *seq, int64_t n) {
    for (int64_t l = 0; l < m->hp.n_layer; l++) ds_block(m, c, &m->ds[l], l, pos, seq, n);
}

const arch_ops deepseek_arch = {
    .load = load,
    .free = unload,
    .kv_dim = kv_dim,
    .kv_with_v = 0,
    .has_mtp = 1,
    .ws_new = ws_new,
    .ws_free = ws_free,
    .xq_blocks = xq_blocks,
    .forward = forward,
    .layer_bytes = layer_bytes,
};
