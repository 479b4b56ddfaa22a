/* footprint.c — what a model stores and reads per token: KV-cache bytes per cached position, and
 * the weight bytes one decode step reads (the figure that bounds decode speed when memory
 * bandwidth is the limit, as it is on CPUs). Counts only; runs nothing.
 *
 * A decode step reads, once each: one row of the token embedding, every matrix of the attention
 * and of dense FFNs, the router, the n_expert_used routed experts a MoE layer picks and its shared
 * experts, the final norm and the output matrix, and every norm and bias (F32 copies, 4 bytes
 * per element). It does not run the MTP module. For MLA it reads the matrices the absorbed form
 * uses: W_UK as held in memory (attn_k_b, or the F32/F16 transposed copy built at load from a
 * fused attn_kv_b, see mla_build_kb in mla.c) and the W_UV rows of attn_kv_b (or attn_v_b).
 * Block-scaled FP8 matrices add their F32 scales.
 * Layer sizes come from the architecture leaves (arch_ops.layer_bytes).
 * Does not own: the cache itself (kv_cache.c), the forward passes. */
#include "model/model_impl.h"

/* ---- KV cache ------------------------------------------------------------------------- */

/* Bytes cached per position and layer, as the architecture says (MLA: the latent and the rope
 * key; dense: K and V), rows stored as `type`. 0 for an architecture Whale does not run. */
static size_t kv_bytes_per_layer(const model_hparams *hp, int type) {
    const arch_ops *a = model_arch_ops(hp->arch);
    return a ? kv_row_bytes(type, a->kv_dim(hp)) * (a->kv_with_v ? 2 : 1) : 0;
}

size_t model_kv_bytes_per_token(const model_hparams *hp, int type) {
    if (hp->n_layer <= 0) return 0;
    return kv_bytes_per_layer(hp, type) * (size_t)hp->n_layer;
}

size_t model_kv_bytes_per_token_mtp(const model_hparams *hp, int type) {
    if (hp->n_nextn_layer <= 0) return 0;
    return kv_bytes_per_layer(hp, type) * (size_t)hp->n_nextn_layer;
}

/* ---- weights read by one decode step --------------------------------------------------- */

size_t model_weight_bytes_per_token(const model *m) {
    const model_hparams *hp = &m->hp;
    size_t b = wmat_rows_bytes(&m->tok_embd, 1) + vec_bytes(m->out_norm, hp->n_embd) + wmat_bytes(&m->output);
    for (int64_t l = 0; l < hp->n_layer; l++) b += m->arch->layer_bytes(m, l);
    return b;
}

size_t model_bytes_per_token(const model *m, int64_t n_ctx) {
    return model_weight_bytes_per_token(m) + model_kv_bytes_per_token(&m->hp, m->kv_type) * (size_t)(n_ctx > 0 ? n_ctx : 0);
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
