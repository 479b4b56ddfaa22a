/* mtp.c — DeepSeek-V3's multi-token prediction module (SPEC-deepseek.md §4), used to draft a
 * second token per step for self-speculative decoding (engine/session.c). Uses only the DeepSeek
 * leaf (the block and its loader); the core (model.c) calls it and applies its head.
 *
 * Stored after the main layers as block n_layer: a full decoder block (MLA + MoE) under the
 * usual blk.N.* names, plus blk.N.nextn.{eh_proj, enorm, hnorm, shared_head_norm} and optional
 * own copies of the embedding and output head (nextn.embed_tokens, nextn.shared_head_head; V3
 * stores copies equal to the main ones). Hugging Face checkpoints name them
 * model.layers.N.{eh_proj, enorm, hnorm, shared_head.norm, shared_head.head, embed_tokens}.
 *
 * For a row at position i, with h_i the main model's hidden state there and t the token at
 * position i+1 (vLLM's reading, the one that runs the released checkpoint):
 *   x = eh_proj [ enorm(emb(t)) ; hnorm(h_i) ]      (embedding first; emb zeroed at position 0)
 *   x = block(x)                                    (its own latent cache, cache layer n_layer)
 *   logits(token i+2) = head(shared_head_norm(x))
 * Which hidden state h is (after the main model's final norm, or before) was never stated by
 * DeepSeek; after is the default, model_opts.mtp_prenorm switches. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "model/deepseek.h"

int mtp_load(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    if (hp->n_nextn_layer <= 0) return 0;
    int64_t l = hp->n_layer, E = hp->n_embd;
    char n[128];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l), n)
    if (!wt_has(m, NAME("nextn.eh_proj.weight"))) return 0; /* declared but not stored: run without */
    ds_mtp *x = calloc(1, sizeof *x);
    if (!x) return err_set(err, WHALE_E_NOMEM, "out of memory");
    m->mtp = x;
    int rc;
    if ((rc = ds_load_layer(m, l, &x->blk, hp->n_expert > 0 && l >= hp->n_layer_dense_lead, err))) return rc;
    if ((rc = wt_need_mat(m, NAME("nextn.eh_proj.weight"), 2 * E, E, &x->eh_proj, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("nextn.enorm.weight"), E, 0, &x->enorm, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("nextn.hnorm.weight"), E, 0, &x->hnorm, err))) return rc;
    if ((rc = wt_need_vec(m, NAME("nextn.shared_head_norm.weight"), E, 0, &x->head_norm, err))) return rc;
    x->embed = m->tok_embd;
    x->head = m->output;
    if (wt_has(m, NAME("nextn.embed_tokens.weight")) &&
        (rc = wt_need_mat(m, n, E, m->tok_embd.n_out, &x->embed, err)))
        return rc;
    if (wt_has(m, NAME("nextn.shared_head_head.weight")) &&
        (rc = wt_need_mat(m, n, E, m->output.n_out, &x->head, err)))
        return rc;
#undef NAME
    return 0;
}

void mtp_free(model *m) {
    if (!m->mtp) return;
    ds_free_layer(&m->mtp->blk);
    free(m->mtp);
    m->mtp = NULL;
}

void mtp_forward_chunk(const model *m, model_ctx *c, const model_batch *b, const float *hidden, int64_t r0, int64_t n,
                       const float **norm, const wmat **head) {
    const model_hparams *hp = &m->hp;
    const ds_mtp *x = m->mtp;
    ds_ws *w = c->ws;
    int64_t E = hp->n_embd;
    const int32_t *tok = b->token + r0, *pos = b->pos + r0, *seq = b->seq ? b->seq + r0 : NULL;
    size_t erow = 0;
    dtype_bytes(x->embed.type, E, &erow);
    for (int64_t i = 0; i < n; i++) {
        float *e = w->mtp_cat + i * 2 * E, *h = e + E;
        if (pos[i] == 0) memset(e, 0, (size_t)E * sizeof *e);
        else dequantize_row(x->embed.type, (const unsigned char *)x->embed.data + (size_t)tok[i] * erow, e, E);
        op_rmsnorm(e, e, x->enorm, E, hp->rms_eps);
        op_rmsnorm(h, hidden + i * E, x->hnorm, E, hp->rms_eps);
    }
    wmat_matmul(c, c->x, &x->eh_proj, w->mtp_cat, n);
    ds_block(m, c, &x->blk, hp->n_layer, pos, seq, n);
    *norm = x->head_norm;
    *head = &x->head;
}
