/* footprint.c — what a model stores and reads per token: KV-cache bytes per cached position, and
 * the weight bytes one decode step reads (the figure that bounds decode speed when memory
 * bandwidth is the limit, as it is on CPUs). Counts only; runs nothing.
 *
 * A decode step reads, once each: one row of the token embedding, every matrix of the attention
 * and of dense FFNs, the router, the n_expert_used routed experts a MoE layer picks and its shared
 * experts, the final norm and the output matrix, and every norm and bias (F32 copies, 4 bytes
 * per element). It does not run the MTP module. For MLA it reads the matrices the absorbed form
 * uses: W_UK as held in memory (attn_k_b, or the F32/F16 transposed copy built at load from a
 * fused attn_kv_b, see build_kb in deepseek.c) and the W_UV rows of attn_kv_b (or attn_v_b).
 * Block-scaled FP8 matrices add their F32 scales.
 * Does not own: the cache itself (dense.c), the forward passes. */
#include "model/model_impl.h"

/* ---- KV cache ------------------------------------------------------------------------- */

/* Floats cached per position and layer: MLA the latent and the rope key; dense K and V. */
static size_t kv_floats_per_layer(const model_hparams *hp) {
    if (hp->arch == MODEL_ARCH_DEEPSEEK2) return (size_t)(hp->kv_lora_rank + hp->qk_rope_head_dim);
    return 2 * (size_t)(hp->n_head_kv * hp->head_dim);
}

size_t model_kv_bytes_per_token(const model_hparams *hp) {
    if (hp->n_layer <= 0) return 0;
    return kv_floats_per_layer(hp) * sizeof(float) * (size_t)hp->n_layer;
}

size_t model_kv_bytes_per_token_mtp(const model_hparams *hp) {
    if (hp->n_nextn_layer <= 0) return 0;
    return kv_floats_per_layer(hp) * sizeof(float) * (size_t)hp->n_nextn_layer;
}

/* ---- weights read by one decode step --------------------------------------------------- */

/* Bytes of rows [0, n_rows) of w, with the block scales that cover them. */
static size_t wmat_rows_bytes(const wmat *w, int64_t n_rows) {
    size_t row = 0;
    if (!w->data || n_rows <= 0 || dtype_bytes(w->type, w->n_in, &row)) return 0;
    size_t b = row * (size_t)n_rows;
    if (w->scale)
        b += (size_t)((n_rows + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK) *
             (size_t)((w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK) * sizeof(float);
    return b;
}

static size_t wmat_bytes(const wmat *w) { return wmat_rows_bytes(w, w->n_out); }

static size_t vec_bytes(const float *v, int64_t n) { return v ? (size_t)n * sizeof(float) : 0; }

static size_t expert_bytes(const ds_expert *x) { return wmat_bytes(&x->gate) + wmat_bytes(&x->up) + wmat_bytes(&x->down); }

static size_t dense_layer_bytes(const model_hparams *hp, const dense_layer *L) {
    int64_t E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    return vec_bytes(L->attn_norm, E) + wmat_bytes(&L->wq) + wmat_bytes(&L->wk) + wmat_bytes(&L->wv) +
           wmat_bytes(&L->wo) + vec_bytes(L->bq, Q) + vec_bytes(L->bk, KV) + vec_bytes(L->bv, KV) +
           vec_bytes(L->ffn_norm, E) + wmat_bytes(&L->w_gate) + wmat_bytes(&L->w_up) + wmat_bytes(&L->w_down);
}

/* One MLA + FFN/MoE block in the absorbed form. Routed experts: n_expert_used of them, each the
 * size of expert 0 (a checkpoint stores all experts of a layer in one type). */
static size_t ds_layer_bytes(const model_hparams *hp, const ds_layer *L) {
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

size_t model_weight_bytes_per_token(const model *m) {
    const model_hparams *hp = &m->hp;
    size_t b = wmat_rows_bytes(&m->tok_embd, 1) + vec_bytes(m->out_norm, hp->n_embd) + wmat_bytes(&m->output);
    for (int64_t l = 0; l < hp->n_layer; l++)
        b += m->ds ? ds_layer_bytes(hp, &m->ds[l]) : m->layers ? dense_layer_bytes(hp, &m->layers[l]) : 0;
    return b;
}

size_t model_bytes_per_token(const model *m, int64_t n_ctx) {
    return model_weight_bytes_per_token(m) + model_kv_bytes_per_token(&m->hp) * (size_t)(n_ctx > 0 ? n_ctx : 0);
}

/* ---- the file's tensors ---------------------------------------------------------------- */

void model_file_totals(const model *m, int64_t *n_params, size_t *n_bytes) {
    int64_t p = 0;
    size_t b = 0;
    if (m->is_gguf) {
        for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
            const gguf_tensor *t = &m->gguf.tensors[i];
            int64_t n = 1;
            for (int d = 0; d < t->n_dims; d++) n *= t->ne[d];
            p += n;
            b += t->nbytes;
        }
    } else {
        for (size_t i = 0; i < m->st.n_tensors; i++) {
            p += m->st.tensors[i].n_elems;
            b += m->st.tensors[i].nbytes;
        }
    }
    if (n_params) *n_params = p;
    if (n_bytes) *n_bytes = b;
}
