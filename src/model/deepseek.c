/* deepseek.c — the DeepSeek V2 / V3 / R1 architecture: Multi-head Latent Attention with a latent
 * KV cache, DeepSeekMoE (shared + routed experts, V2 softmax and V3 sigmoid gating), YaRN.
 * Follows ../shared/SPEC-deepseek.md §2-3, 6 (DeepSeek's inference/model.py order and names).
 *
 * Attention is computed in the absorbed form for every row: per token and layer the cache
 * holds only the normalized latent c (kv_lora_rank) and the rotated shared key k_pe
 * (qk_rope_head_dim). Per head h: q~ = W_UK[h]^T q_nope, score_t = scale (q~.c_t + q_pe.k_pe_t),
 * o~ = sum_t p_t c_t, o[h] = W_UV[h] o~. RoPE rotates adjacent pairs, as the checkpoints lay
 * the rope rows out (no permutation needed).
 * MoE runs each routed expert once per forward call on the rows routed to it.
 * Reads both GGUF layouts of the key/value up-projection: the fused attn_kv_b (the checkpoints'
 * kv_b_proj) and llama.cpp's newer split attn_k_b / attn_v_b. The MTP module is in mtp.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/attn.h"
#include "model/model_impl.h"

#define DS_ROWS_PER_TASK 128
#define DS_SPLIT_ROWS 4   /* rows per call up to which positions are split across tasks */
#define DS_MAX_CHUNKS 32
#define DS_CHUNK_MIN 256  /* fewest positions worth a task of their own */

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

/* The absorbed query q~ = W_UK[h]^T q_nope reads W_UK[h] transposed: dc rows of dn per head,
 * llama.cpp's attn_k_b layout. A fused attn_kv_b stores it the other way round, so it is
 * transposed once at load (as llama.cpp's converter does offline); a split file's k_b is used
 * as it is when F32/F16. F32 and block-scaled FP8 become F32 (exact); any other type becomes
 * F16, finer than the quantized source, so one kernel (op_mqa_scores[_f16]) serves every row
 * count alike. */
static int build_kb(model *m, ds_layer *L, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    if (L->split_kb && !L->wk_b.scale && (L->wk_b.type == WHALE_DTYPE_F32 || L->wk_b.type == WHALE_DTYPE_F16))
        return 0;
    const wmat *src = L->split_kb ? &L->wk_b : &L->wkv_b;
    /* FP8 with block scales: any float, so F32 too (F16 would round what the reference keeps) */
    int f32 = src->type == WHALE_DTYPE_F32 || src->scale;
    size_t n = (size_t)(H * dc * dn);
    void *buf = malloc(n * (f32 ? sizeof(float) : sizeof(uint16_t)));
    float *row = malloc((size_t)(dc > dn ? dc : dn) * sizeof(float));
    if (!buf || !row || wt_own(m, buf)) {
        free(buf);
        free(row);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the absorbed key projection");
    }
    float *o32 = buf;
    uint16_t *o16 = buf;
    for (int64_t h = 0; h < H; h++) {
        if (L->split_kb) { /* already transposed: convert row by row */
            for (int64_t i = 0; i < dc; i++) {
                wmat_row(src, h * dc + i, row);
                for (int64_t d = 0; d < dn; d++) {
                    size_t at = (size_t)((h * dc + i) * dn + d);
                    if (f32) o32[at] = row[d];
                    else o16[at] = f32_to_fp16(row[d]);
                }
            }
            continue;
        }
        for (int64_t d = 0; d < dn; d++) {
            wmat_row(src, h * (dn + dv) + d, row);
            for (int64_t i = 0; i < dc; i++) {
                size_t at = (size_t)((h * dc + i) * dn + d);
                if (f32) o32[at] = row[i];
                else o16[at] = f32_to_fp16(row[i]);
            }
        }
    }
    free(row);
    L->wk_b = (wmat){f32 ? WHALE_DTYPE_F32 : WHALE_DTYPE_F16, buf, dn, H * dc, NULL};
    return 0;
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
    if ((rc = build_kb(m, L, err))) return rc;
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

int deepseek_load(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dv = hp->v_head_dim, dc = hp->kv_lora_rank, dq = hp->q_lora_rank;
    if (dn <= 0 || dr <= 0 || dr % 2 || dv <= 0 || dc <= 0 || dn > 4096 || dr > 4096 || dv > 4096 || dc > 65536 ||
        dq < 0 || dq > 65536 || hp->n_expert < 0 || hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert ||
        (hp->n_expert > 0 && (hp->n_expert_used <= 0 || hp->n_ff_expert <= 0)))
        return err_set(err, WHALE_E_FORMAT, "implausible MLA/MoE hyperparameters");
    int rc;
    m->ds = calloc((size_t)hp->n_layer, sizeof *m->ds);
    if (!m->ds) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t l = 0; l < hp->n_layer; l++)
        if ((rc = ds_load_layer(m, l, &m->ds[l], hp->n_expert > 0 && l >= hp->n_layer_dense_lead, err))) return rc;
    if ((rc = mtp_load(m, err))) return rc;
    /* Softmax scale: (dn+dr)^-1/2, times YaRN's mscale^2 when the context was extended. */
    double scale = 1.0 / sqrt((double)(dn + dr));
    if (hp->rope_scaling_type == ROPE_SCALING_YARN && hp->rope_factor > 1 && hp->yarn_mscale_all_dim > 0) {
        double ms = 0.1 * hp->yarn_mscale_all_dim * log(hp->rope_factor) + 1.0;
        scale *= ms * ms;
    }
    m->attn_scale = (float)scale;
    return 0;
}

int deepseek_alloc(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t B = m->n_batch, H = hp->n_head, T = tp_threads(m->tp);
    int64_t dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    int64_t wide = hp->n_ff > hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1)
                       ? hp->n_ff : hp->n_ff_expert * (hp->n_expert_shared > 1 ? hp->n_expert_shared : 1);
    free(m->q);
    free(m->k);
    free(m->att);
    m->q = malloc((size_t)(B * H * (dn + dr) + B * (hp->q_lora_rank > 0 ? hp->q_lora_rank : 1)) * sizeof(float));
    m->k = malloc((size_t)(B * (dc + dr)) * sizeof(float));
    m->att = malloc((size_t)(B * H * dv) * sizeof(float));
    /* per thread: one weight row (the widest of dc, dv, dn), then either o~ (dc), one block of
     * scores for all heads, or, with the split layout in the decompressed form, one head's W_UK */
    int64_t wide3 = dc > dv ? dc : dv;
    wide3 = wide3 > dn ? wide3 : dn;
    int split = m->mtp && m->mtp->blk.split_kb;
    for (int64_t l = 0; l < hp->n_layer; l++) split |= m->ds[l].split_kb;
    int64_t after = dc > H * OP_MQA_BLOCK ? dc : H * OP_MQA_BLOCK;
    if (split && dn * dc > after) after = dn * dc;
    m->ds_wide = wide3;
    m->ds_scratch_n = wide3 + after + dc + dr; /* + one latent row widened from an F16 cache */
    m->ds_scratch = malloc((size_t)(T * m->ds_scratch_n) * sizeof(float));
    int64_t parts = B > DS_SPLIT_ROWS * DS_MAX_CHUNKS ? B : DS_SPLIT_ROWS * DS_MAX_CHUNKS;
    m->qcat = malloc((size_t)(B * H * (dc + dr)) * sizeof(float));
    m->att_part = malloc((size_t)(parts * H * (dc + 2)) * sizeof(float));
    if (!m->qcat || !m->att_part) return err_set(err, WHALE_E_NOMEM, "out of memory for attention buffers");
    if (m->mtp && !(m->mtp_cat = malloc((size_t)(B * 2 * hp->n_embd) * sizeof(float))))
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers");
    int64_t NE = hp->n_expert > 0 ? hp->n_expert : 1, K = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
    /* rows are gathered once per chosen expert: n_batch * n_expert_used slots; the shared
     * experts reuse moe_g/moe_u/moe_y with n_batch rows of their (wider) FFN */
    int64_t S = B * K, Fs = hp->n_ff_expert * (hp->n_expert_shared > 0 ? hp->n_expert_shared : 0);
    int64_t fw = hp->n_ff_expert * K + Fs > wide ? hp->n_ff_expert * K + Fs : wide;
    /* the routed slots, then the shared experts' n_batch rows (they run in the same passes) */
    m->moe_x = malloc((size_t)((S + B) * hp->n_embd) * sizeof(float));
    m->moe_y = malloc((size_t)((S + B) * hp->n_embd) * sizeof(float));
    m->moe_g = malloc((size_t)(B * fw) * sizeof(float));
    m->moe_u = malloc((size_t)(B * fw) * sizeof(float));
    m->moe_h = malloc((size_t)(B * NE * 2) * sizeof(float));
    m->moe_w = malloc((size_t)S * sizeof(float));
    m->moe_id = malloc((size_t)S * sizeof(int32_t));
    m->moe_rows = malloc((size_t)S * sizeof(int32_t));
    m->moe_slot = malloc((size_t)S * sizeof(int32_t));
    m->moe_cnt = malloc((size_t)(5 * NE + 8) * sizeof(int32_t));
    m->moe_goff = malloc((size_t)(NE + 1) * sizeof(int64_t));
    int64_t xq_n = S * (hp->n_embd > hp->n_ff_expert ? hp->n_embd : hp->n_ff_expert) / QACT_BLOCK;
    if (xq_n < B * H * dc / QACT_BLOCK) xq_n = B * H * dc / QACT_BLOCK; /* MLA: o~ per (row, head) */
    if (xq_n < (S + B) * hp->n_embd / QACT_BLOCK) xq_n = (S + B) * hp->n_embd / QACT_BLOCK; /* MoE with shared rows */
    if (xq_n < B * fw / QACT_BLOCK) xq_n = B * fw / QACT_BLOCK;
    if (xq_n > B * m->row_width / QACT_BLOCK) {
        free(m->xq);
        m->xq = malloc((size_t)xq_n * sizeof(qact_block));
    }
    if (!m->xq || !m->q || !m->k || !m->att || !m->ds_scratch || !m->moe_x || !m->moe_y || !m->moe_g || !m->moe_u ||
        !m->moe_h || !m->moe_w || !m->moe_id || !m->moe_rows || !m->moe_slot || !m->moe_cnt || !m->moe_goff)
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers");
    return 0;
}

void deepseek_free(model *m) {
    if (m->ds)
        for (int64_t l = 0; l < m->hp.n_layer; l++) free(m->ds[l].experts);
    free(m->ds);
    if (m->mtp) free(m->mtp->blk.experts);
    free(m->mtp);
    free(m->mtp_cat);
    free(m->qcat);
    free(m->att_part);
    free(m->ds_scratch);
    free(m->moe_x);
    free(m->moe_y);
    free(m->moe_g);
    free(m->moe_u);
    free(m->moe_goff);
    free(m->moe_h);
    free(m->moe_w);
    free(m->moe_id);
    free(m->moe_rows);
    free(m->moe_slot);
    free(m->moe_cnt);
}

/* ---- threaded matrix products --------------------------------------------------------- */

void ds_mm(model *m, float *Y, const wmat *w, const float *X, int64_t n_tok) { model_matmul(m, Y, w, X, n_tok); }

/* ---- attention (absorbed) ------------------------------------------------------------- */

static void *latent_row(const kv_cache *kv, int64_t layer, int32_t seq, int64_t pos) {
    return kv_row(kv, kv->k, layer, seq, pos);
}

typedef struct ds_att {
    model *m;
    kv_cache *kv;
    const ds_layer *L;
    int64_t layer;
    const int32_t *pos, *seq;
    int64_t n_chunk; /* absorbed form: position chunks per row */
    int64_t n_rows;
    qact_block *xq;  /* pass 3 on the integer path: o~ quantized, (head, row), else NULL */
} ds_att;

/* W_UK[h] (dn x dc) of a split-layout layer as floats, row-major, into out: k_b stores its
 * transpose, dc rows of dn per head. */
static void w_uk_from_kb(const wmat *kb, int64_t h, int64_t dn, int64_t dc, float *out, float *row) {
    for (int64_t i = 0; i < dc; i++) {
        wmat_row(kb, h * dc + i, row);
        for (int64_t d = 0; d < dn; d++) out[d * dc + i] = row[d];
    }
}

/* The decompressed form, one task per (row, head): k_nope[t] = W_UK c_t and v[t] = W_UV c_t
 * rebuilt at every position (SPEC §2.2). The reference the absorbed form is checked against. */
static void ds_att_naive_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t dc = hp->kv_lora_rank, row = task / H, h = task % H, pos = j->pos[row];
    int32_t seq = j->seq ? j->seq[row] : 0;
    float *wrow = m->ds_scratch + (size_t)thread * (size_t)m->ds_scratch_n, *uk = wrow + m->ds_wide;
    float *ltmp = wrow + m->ds_scratch_n - (dc + dr); /* a latent row widened from an F16 cache */
    float *sc = m->att_scores + (size_t)thread * (size_t)m->att_scores_n;
    const float *q = m->q + (size_t)(row * H * (dn + dr) + h * (dn + dr));
    /* W_UV[h] row d is row uv0 + d of wuv; W_UK[h] row d is row uk0 + d of wkv_b (fused layout) */
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t uk0 = h * (dn + dv), uv0 = L->split_kb ? h * dv : h * (dn + dv) + dn;
    float *out = m->att + (size_t)(row * H * dv + h * dv);
    if (L->split_kb) w_uk_from_kb(&L->wk_b, h, dn, dc, uk, wrow); /* this head's W_UK, dn x dc */
    for (int64_t t = 0; t <= pos; t++) {
        const float *lat = kv_get(j->kv, latent_row(j->kv, j->layer, seq, t), dc + dr, ltmp);
        float s = 0;
        for (int64_t d = 0; d < dn; d++)
            s += q[d] * (L->split_kb ? op_dot(uk + d * dc, lat, dc) : wmat_dot(&L->wkv_b, uk0 + d, lat, wrow));
        sc[t] = (s + op_dot(q + dn, lat + dc, dr)) * m->attn_scale;
    }
    op_softmax(sc, pos + 1);
    memset(out, 0, (size_t)dv * sizeof *out);
    for (int64_t t = 0; t <= pos; t++) {
        const float *lat = kv_get(j->kv, latent_row(j->kv, j->layer, seq, t), dc + dr, ltmp);
        for (int64_t d = 0; d < dv; d++) out[d] += sc[t] * wmat_dot(wuv, uv0 + d, lat, wrow);
    }
}

/* Absorbed form, in three passes so that each cached latent row is read once for all heads:
 * 1. per (row, head): qcat = scale [W_UK[h]^T q_nope ; q_pe], a query against the whole latent
 *    row [c ; k_pe];
 * 2. per (row, chunk of positions): all heads' online softmax over the chunk, leaving for each
 *    head the running max, the sum of weights and the weighted sum of latents o~;
 * 3. per (row, head): merge the chunks, o[h] = W_UV[h] o~ / sum.
 * A decode row (few rows per call) splits its positions into chunks for the threads; a
 * prefill row is one chunk (rows already keep the threads busy). */

/* One head, all rows: qcat[row][h] = scale [W_UK[h]^T q_nope ; q_pe]. The same arithmetic for
 * one row or many, so batching does not change a row's result. */
static void ds_q_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    ds_att *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const wmat *kb = &j->L->wk_b;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dc = hp->kv_lora_rank, h = task, ldq = H * (dn + dr), ldc = H * (dc + dr);
    const float *q = m->q + h * (dn + dr);
    float *qc = m->qcat + h * (dc + dr), a = m->attn_scale;
    if (kb->type == WHALE_DTYPE_F32)
        op_mqa_scores(qc, ldc, q, ldq, j->n_rows, (const float *)kb->data + h * dc * dn, dn, dc, dn);
    else
        op_mqa_scores_f16(qc, ldc, q, ldq, j->n_rows, (const uint16_t *)kb->data + h * dc * dn, dn, dc, dn);
    for (int64_t r = 0; r < j->n_rows; r++) {
        float *c = qc + r * ldc;
        const float *qr = q + r * ldq;
        for (int64_t i = 0; i < dc; i++) c[i] *= a;
        for (int64_t i = 0; i < dr; i++) c[dc + i] = a * qr[dn + i];
    }
}

static void ds_chunk_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    int64_t H = hp->n_head, dc = hp->kv_lora_rank, dr = hp->qk_rope_head_dim, kd = j->kv->kv_dim;
    int64_t row = task / j->n_chunk, c = task % j->n_chunk, P = (int64_t)j->pos[row] + 1;
    int64_t len = (P + j->n_chunk - 1) / j->n_chunk, t0 = c * len, t1 = t0 + len < P ? t0 + len : P;
    float *o = m->att_part + (size_t)task * (size_t)(H * (dc + 2)), *mx = o + H * dc, *l = mx + H;
    float *sc = m->ds_scratch + (size_t)thread * (size_t)m->ds_scratch_n;
    const float *qc = m->qcat + (size_t)(row * H * (dc + dr));
    const char *base = latent_row(j->kv, j->layer, j->seq ? j->seq[row] : 0, 0);
    memset(o, 0, (size_t)(H * dc) * sizeof *o);
    for (int64_t h = 0; h < H; h++) mx[h] = -INFINITY, l[h] = 0;
    if (t1 > t0)
        op_mqa_attend_t(o, dc, mx, l, qc, dc + dr, H, base + (size_t)(t0 * kd) * (j->kv->f16 ? 2 : 4), kd, dc + dr,
                        base + (size_t)(t0 * kd) * (j->kv->f16 ? 2 : 4), kd, dc, t1 - t0, j->kv->f16, sc);
}

/* Pass 3, first for each row of a head: merge the chunks into o~ / sum, left in place of chunk
 * 0's o~ (and, for the integer path, quantized into xq at (head, row): a head's rows together). */
static void ds_merge(ds_att *j, int64_t row, int64_t h) {
    model *m = j->m;
    int64_t H = m->hp.n_head, dc = m->hp.kv_lora_rank, stride = H * (dc + 2);
    float *part = m->att_part + (size_t)(row * j->n_chunk) * (size_t)stride, *ob = part + h * dc;
    float M = -INFINITY, sum = 0;
    for (int64_t c = 0; c < j->n_chunk; c++) {
        float x = part[c * stride + H * dc + h];
        M = x > M ? x : M;
    }
    for (int64_t c = 0; c < j->n_chunk; c++) { /* chunk 0 (never empty: it holds position 0) is
                                                 the accumulator, scaled, then the others added */
        const float *pc = part + c * stride;
        if (pc[H * dc + H + h] <= 0) continue; /* empty chunk */
        float w = expf(pc[H * dc + h] - M);
        sum += w * pc[H * dc + H + h];
        if (c == 0)
            for (int64_t i = 0; i < dc; i++) ob[i] *= w;
        else
            for (int64_t i = 0; i < dc; i++) ob[i] += w * pc[h * dc + i];
    }
    for (int64_t i = 0; i < dc; i++) ob[i] /= sum;
    if (j->xq) op_quantize_act(j->xq + (size_t)(h * j->n_rows + row) * (size_t)(dc / QACT_BLOCK), ob, dc);
}

/* Pass 3 per head: merge each row's chunks, then o[row][h] = W_UV[h] o~[row][h] for every row
 * at once, each weight row read once for all rows (the matrix kernels: batch-invariant). */
static void ds_out_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank, h = task;
    for (int64_t row = 0; row < j->n_rows; row++) ds_merge(j, row, h);
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    wmat v;
    wmat_view_rows(wuv, L->split_kb ? h * dv : h * (dn + dv) + dn, dv, &v); /* checked by ds_attention */
    float *out = m->att + h * dv, *scratch = m->ds_scratch + (size_t)thread * (size_t)m->ds_scratch_n;
    if (j->xq)
        wmat_matmul_rows_q(out, H * dv, &v, j->xq + (size_t)(h * j->n_rows) * (size_t)(dc / QACT_BLOCK), j->n_rows, 0, dv);
    else
        wmat_matmul_rows(out, H * dv, &v, m->att_part + h * dc, j->n_chunk * H * (dc + 2), j->n_rows, 0, dv, scratch);
}

/* The former pass 3 for matrices that cannot be viewed per head (FP8 rows off a block
 * boundary): per (row, head), one dot per output. */
static void ds_out_dot_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    int64_t row = task / H, h = task % H;
    ds_merge(j, row, h);
    const float *ob = m->att_part + (size_t)(row * j->n_chunk) * (size_t)(H * (dc + 2)) + h * dc;
    float *wrow = m->ds_scratch + (size_t)thread * (size_t)m->ds_scratch_n;
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t uv0 = L->split_kb ? h * dv : h * (dn + dv) + dn;
    float *out = m->att + (size_t)(row * H * dv + h * dv);
    for (int64_t d = 0; d < dv; d++) out[d] = wmat_dot(wuv, uv0 + d, ob, wrow);
}

static void ds_attention(model *m, kv_cache *kv, const ds_layer *L, int64_t layer, const int32_t *pos,
                         const int32_t *seq, int64_t n) {
    int64_t H = m->hp.n_head;
    ds_att j = {m, kv, L, layer, pos, seq, 1, n, NULL};
    if (m->mla_naive) {
        tp_run(m->tp, n * H, ds_att_naive_task, &j);
        return;
    }
    if (n <= DS_SPLIT_ROWS) {
        int64_t P = 0, T = tp_threads(m->tp);
        for (int64_t i = 0; i < n; i++) P = pos[i] + 1 > P ? pos[i] + 1 : P;
        j.n_chunk = P / DS_CHUNK_MIN;
        if (j.n_chunk > 4 * T) j.n_chunk = 4 * T;
        if (j.n_chunk > DS_MAX_CHUNKS) j.n_chunk = DS_MAX_CHUNKS;
        if (j.n_chunk < 1) j.n_chunk = 1;
    }
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t dn = m->hp.qk_nope_head_dim, dv = m->hp.v_head_dim, dc = m->hp.kv_lora_rank;
    wmat v;
    int per_head = 1; /* every head's W_UV viewable as a matrix of its own */
    for (int64_t h = 0; h < H && per_head; h++)
        per_head = !wmat_view_rows(wuv, L->split_kb ? h * dv : h * (dn + dv) + dn, dv, &v);
    if (per_head && wmat_int_path(wuv) && dc % QACT_BLOCK == 0) j.xq = m->xq;
    tp_run(m->tp, H, ds_q_task, &j);
    tp_run(m->tp, n * j.n_chunk, ds_chunk_task, &j);
    if (per_head) tp_run(m->tp, H, ds_out_task, &j);
    else tp_run(m->tp, n * H, ds_out_dot_task, &j);
}

/* ---- MoE ------------------------------------------------------------------------------ */

/* out (n rows) = FFN_x(in (n rows)): each expert weight row is read once for all n tokens. */
static void expert_ffn(model *m, const ds_expert *x, const float *in, float *out, int64_t n) {
    int64_t F = x->gate.n_out;
    ds_mm(m, m->moe_g, &x->gate, in, n);
    ds_mm(m, m->moe_u, &x->up, in, n);
    op_swiglu(m->moe_g, m->moe_g, m->moe_u, n * F);
    ds_mm(m, out, &x->down, m->moe_g, n);
}

/* Pick n_expert_used experts for one token from router logits z; weights into w, ids into id. */
void ds_route(const model_hparams *hp, const float *bias, const float *z, float *score, int32_t *id, float *w) {
    int64_t N = hp->n_expert, K = hp->n_expert_used;
    float sel[4096]; /* selection scores (N <= 4096, checked on load) */
    if (hp->gating == MOE_GATING_SIGMOID) {
        for (int64_t e = 0; e < N; e++) {
            score[e] = 1.0f / (1.0f + expf(-z[e]));
            sel[e] = score[e] + (bias ? bias[e] : 0.0f); /* the bias only chooses; weights use score */
        }
    } else {
        float mx = z[0];
        for (int64_t e = 1; e < N; e++) mx = z[e] > mx ? z[e] : mx;
        double sum = 0;
        for (int64_t e = 0; e < N; e++) sum += exp((double)z[e] - mx);
        for (int64_t e = 0; e < N; e++) sel[e] = score[e] = (float)(exp((double)z[e] - mx) / sum);
    }
    /* Group-limited selection: keep the best n_group_used groups (V3: a group scores the sum of
     * its two best; V2: its best), exclude the rest. */
    int64_t G = hp->n_expert_group > 1 ? hp->n_expert_group : 1;
    if (G > 1 && hp->n_group_used > 0 && hp->n_group_used < G && N % G == 0) {
        int64_t per = N / G;
        float gs[4096];
        for (int64_t g = 0; g < G; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int64_t e = g * per; e < (g + 1) * per; e++) {
                if (sel[e] > b1) { b2 = b1; b1 = sel[e]; }
                else if (sel[e] > b2) b2 = sel[e];
            }
            gs[g] = hp->gating == MOE_GATING_SIGMOID ? b1 + (per > 1 ? b2 : 0) : b1;
        }
        for (int64_t keep = 0; keep < hp->n_group_used; keep++) { /* mark kept groups with +inf */
            int64_t best = -1;
            for (int64_t g = 0; g < G; g++)
                if (gs[g] != INFINITY && (best < 0 || gs[g] > gs[best])) best = g;
            gs[best] = INFINITY;
        }
        for (int64_t g = 0; g < G; g++)
            if (gs[g] != INFINITY)
                for (int64_t e = g * per; e < (g + 1) * per; e++) sel[e] = -INFINITY;
    }
    double total = 0;
    for (int64_t k = 0; k < K; k++) { /* top-K by selection score, lowest index on ties */
        int64_t best = -1;
        for (int64_t e = 0; e < N; e++)
            if (sel[e] != -INFINITY && !isnan(sel[e]) && (best < 0 || sel[e] > sel[best])) best = e;
        if (best < 0) best = 0;
        id[k] = (int32_t)best;
        w[k] = score[best];
        total += score[best];
        sel[best] = -INFINITY;
    }
    for (int64_t k = 0; k < K; k++) {
        if (hp->expert_weights_norm) w[k] = (float)(w[k] / (total + 1e-20));
        w[k] *= hp->expert_weights_scale > 0 ? hp->expert_weights_scale : 1.0f;
    }
}

/* The experts of one MoE layer as one job: rows gathered per routed expert (slot = position in
 * the gathered list), the shared experts as one more entry over all rows; gate and up for every
 * entry in one parallel pass, down in a second, so a layer pays two synchronizations however
 * many experts it runs. */
typedef struct moe_job {
    model *m;
    const ds_layer *L;
    int64_t n_active;
    const int32_t *active, *start, *count; /* (n_active) expert id (-1: shared), first slot, slots */
    const int64_t *goff;                    /* (n_active) where its gate/up outputs start in moe_g/moe_u */
    const int32_t *task0;                   /* (n_active + 1) first task of each entry */
    int down;
    const qact_block *xq;                   /* the integer path's activations, or NULL */
} moe_job;

static void moe_task(void *ctx, int64_t task, int thread) {
    moe_job *j = ctx;
    model *m = j->m;
    int64_t a = 0;
    while (task >= j->task0[a + 1]) a++;
    const ds_expert *x = j->active[a] < 0 ? &j->L->shared : &j->L->experts[j->active[a]];
    int64_t E = m->hp.n_embd, F = x->gate.n_out, r0 = (task - j->task0[a]) * DS_ROWS_PER_TASK;
    int64_t s0 = j->start[a], ns = j->count[a], g0 = j->goff[a];
    float *scratch = m->row_scratch + (size_t)thread * (size_t)m->row_width;
    if (j->down) {
        int64_t r1 = r0 + DS_ROWS_PER_TASK < E ? r0 + DS_ROWS_PER_TASK : E;
        if (j->xq) wmat_matmul_rows_q(m->moe_y + s0 * E, E, &x->down, j->xq + g0 / QACT_BLOCK, ns, r0, r1);
        else wmat_matmul_rows(m->moe_y + s0 * E, E, &x->down, m->moe_g + g0, F, ns, r0, r1, scratch);
        return;
    }
    int64_t r1 = r0 + DS_ROWS_PER_TASK < F ? r0 + DS_ROWS_PER_TASK : F;
    if (j->xq) {
        wmat_matmul_rows_q(m->moe_g + g0, F, &x->gate, j->xq + s0 * (E / QACT_BLOCK), ns, r0, r1);
        wmat_matmul_rows_q(m->moe_u + g0, F, &x->up, j->xq + s0 * (E / QACT_BLOCK), ns, r0, r1);
        return;
    }
    wmat_matmul_rows(m->moe_g + g0, F, &x->gate, m->moe_x + s0 * E, E, ns, r0, r1, scratch);
    wmat_matmul_rows(m->moe_u + g0, F, &x->up, m->moe_x + s0 * E, E, ns, r0, r1, scratch);
}

/* Tasks of each entry: its output rows in blocks (gate/up: the entry's width; down: n_embd). */
static void moe_tasks(const moe_job *j, int32_t *task0, int64_t E) {
    task0[0] = 0;
    for (int64_t a = 0; a < j->n_active; a++) {
        const ds_expert *x = j->active[a] < 0 ? &j->L->shared : &j->L->experts[j->active[a]];
        int64_t rows = j->down ? E : x->gate.n_out;
        task0[a + 1] = task0[a] + (int32_t)((rows + DS_ROWS_PER_TASK - 1) / DS_ROWS_PER_TASK);
    }
}

/* MoE over n rows: route every row, gather the rows of each chosen expert, run the experts (each
 * weight row read once for all its rows) with the shared experts alongside on all rows, then
 * add up each row's weighted outputs. */
static void moe(model *m, const ds_layer *L, const float *xn, float *out, int64_t n) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, N = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_expert;
    ds_mm(m, m->moe_h, &L->router, xn, n); /* (n, N) router logits */
    for (int64_t i = 0; i < n; i++)
        ds_route(hp, L->router_bias, m->moe_h + i * N, m->moe_h + n * N + i * N, m->moe_id + i * K, m->moe_w + i * K);
    /* counting sort of the (row, choice) pairs by expert */
    int32_t *cnt = m->moe_cnt, *active = cnt + N, *start = active + N + 1, *count = start + N + 1, *task0 = count + N + 1;
    int64_t *goff = m->moe_goff;
    memset(cnt, 0, (size_t)N * sizeof *cnt);
    for (int64_t i = 0; i < n * K; i++) cnt[m->moe_id[i]]++;
    int64_t na = 0, slot = 0;
    for (int64_t e = 0; e < N; e++) {
        if (!cnt[e]) continue;
        active[na] = (int32_t)e;
        start[na] = (int32_t)slot;
        goff[na] = slot * F;
        count[na] = 0;
        slot += cnt[e];
        cnt[e] = (int32_t)na++; /* expert -> active index */
    }
    for (int64_t i = 0; i < n * K; i++) {
        int64_t a = cnt[m->moe_id[i]], s = start[a] + count[a]++;
        m->moe_rows[s] = (int32_t)i;
        memcpy(m->moe_x + s * E, xn + (i / K) * E, (size_t)E * sizeof(float));
    }
    /* one weight type for all routed experts of a layer (as every converter writes them); the
     * shared experts join the same passes when their matrices take the same path */
    const ds_expert *x0 = &L->experts[active[0]];
    int q_in = wmat_int_path(&x0->gate) && wmat_int_path(&x0->up), q_down = wmat_int_path(&x0->down);
    const ds_expert *sh = &L->shared;
    int joined = L->has_shared && q_in == (wmat_int_path(&sh->gate) && wmat_int_path(&sh->up)) &&
                 q_down == wmat_int_path(&sh->down) && (!q_down || sh->gate.n_out % QACT_BLOCK == 0);
    int64_t Fs = joined ? sh->gate.n_out : 0;
    if (joined) { /* the shared experts: every row, after the routed slots */
        active[na] = -1;
        start[na] = (int32_t)slot;
        count[na] = (int32_t)n;
        goff[na++] = slot * F;
        memcpy(m->moe_x + slot * E, xn, (size_t)(n * E) * sizeof(float));
    }
    int64_t rows_in = slot + (joined ? n : 0), g_total = slot * F + n * Fs;
    moe_job j = {m, L, na, active, start, count, goff, task0, 0, NULL};
    if (q_in) j.xq = wmat_quantize_x(m, m->moe_x, E, rows_in, E);
    moe_tasks(&j, task0, E);
    tp_run(m->tp, task0[na], moe_task, &j);
    op_swiglu(m->moe_g, m->moe_g, m->moe_u, g_total);
    j.down = 1;
    j.xq = NULL;
    if (q_down) { /* routed rows are F wide, shared rows Fs: quantized as two runs, end to end */
        j.xq = wmat_quantize_x(m, m->moe_g, F, slot, F);
        if (joined) wmat_quantize_into(m, m->xq + slot * F / QACT_BLOCK, m->moe_g + slot * F, Fs, n, Fs);
    }
    moe_tasks(&j, task0, E);
    tp_run(m->tp, task0[na], moe_task, &j);
    /* scatter: each row's K outputs added in its own choice order, whatever the batch */
    memset(out, 0, (size_t)(n * E) * sizeof *out);
    for (int64_t s = 0; s < slot; s++) m->moe_slot[m->moe_rows[s]] = (int32_t)s;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            float w = m->moe_w[i * K + k];
            const float *y = m->moe_y + (size_t)m->moe_slot[i * K + k] * (size_t)E;
            for (int64_t c = 0; c < E; c++) out[i * E + c] += w * y[c];
        }
    if (joined) {
        for (int64_t i = 0; i < n * E; i++) out[i] += m->moe_y[slot * E + i];
    } else if (L->has_shared) {
        expert_ffn(m, &L->shared, xn, m->moe_y, n);
        for (int64_t i = 0; i < n * E; i++) out[i] += m->moe_y[i];
    }
}

/* ---- forward -------------------------------------------------------------------------- */

void ds_block(model *m, kv_cache *kv, const ds_layer *L, int64_t layer, const int32_t *pos, const int32_t *seq,
              int64_t n) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dc = hp->kv_lora_rank, dq = hp->q_lora_rank, QD = H * (dn + dr);
    float *cq = m->q + n * QD; /* q-LoRA intermediate, after the q rows */
    for (int64_t i = 0; i < n; i++) op_rmsnorm(m->xn + i * E, m->x + i * E, L->attn_norm, E, hp->rms_eps);
    if (dq > 0) {
        ds_mm(m, cq, &L->wq_a, m->xn, n);
        for (int64_t i = 0; i < n; i++) op_rmsnorm(cq + i * dq, cq + i * dq, L->q_a_norm, dq, 1e-6f);
        ds_mm(m, m->q, &L->wq_b, cq, n);
    } else {
        ds_mm(m, m->q, &L->wq, m->xn, n);
    }
    ds_mm(m, m->k, &L->wkv_a, m->xn, n);
    for (int64_t i = 0; i < n; i++) {
        float *a = m->k + i * (dc + dr);
        op_rmsnorm(a, a, L->kv_a_norm, dc, 1e-6f);
        op_rope(a + dc, dr, pos[i], m->inv_freq, ROPE_NORM);
        for (int64_t h = 0; h < H; h++) op_rope(m->q + i * QD + h * (dn + dr) + dn, dr, pos[i], m->inv_freq, ROPE_NORM);
        kv_put(kv, latent_row(kv, layer, seq ? seq[i] : 0, pos[i]), a, dc + dr);
    }
    ds_attention(m, kv, L, layer, pos, seq, n);
    ds_mm(m, m->tmp_rows, &L->wo, m->att, n);
    for (int64_t i = 0; i < n; i++) op_add(m->x + i * E, m->tmp_rows + i * E, E);

    for (int64_t i = 0; i < n; i++) op_rmsnorm(m->xn + i * E, m->x + i * E, L->ffn_norm, E, hp->rms_eps);
    if (L->moe) moe(m, L, m->xn, m->tmp_rows, n);
    else expert_ffn(m, &L->dense, m->xn, m->tmp_rows, n);
    for (int64_t i = 0; i < n; i++) op_add(m->x + i * E, m->tmp_rows + i * E, E);
}

int deepseek_forward_chunk(model *m, kv_cache *kv, const model_batch *b, int64_t r0, int64_t n, float *logits,
                           int64_t *n_logits) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd;
    const int32_t *tok = b->token + r0, *pos = b->pos + r0, *seq = b->seq ? b->seq + r0 : NULL;
    size_t erow = 0;
    dtype_bytes(m->tok_embd.type, E, &erow);
    for (int64_t i = 0; i < n; i++)
        dequantize_row(m->tok_embd.type, (const unsigned char *)m->tok_embd.data + (size_t)tok[i] * erow, m->x + i * E, E);
    for (int64_t l = 0; l < hp->n_layer; l++) ds_block(m, kv, &m->ds[l], l, pos, seq, n);
    model_output_logits(m, b, r0, n, logits, n_logits);
    return 0;
}
