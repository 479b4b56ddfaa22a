/* deepseek.h — a DeepSeek-V3-architecture decoder for training: MLA in its decompressed
 * training form (optional q low-rank path; the compressed KV latent and the decoupled RoPE key,
 * DeepSeek's interleaved RoPE, optionally YaRN-scaled), DeepSeekMoE (sigmoid or softmax affinities, group-limited top-k,
 * normalized and scaled gates, shared experts, the first layers dense; the selection bias a
 * frozen buffer that the auxiliary-loss-free update moves), multi-token prediction (V3 report
 * section 2.2: D sequential modules after the main layers), Hugging Face's tensor names with one
 * tensor per expert. Checked against PyTorch autograd (tests/unit/test_train_deepseek.c). */
#ifndef WHALE_TRAIN_DEEPSEEK_H
#define WHALE_TRAIN_DEEPSEEK_H

#include <stdint.h>

#include "train/params.h"
#include "whale.h"

typedef struct tr_ds_cfg {
    int n_layer, d, n_head, vocab;
    int q_lora, kv_lora, nope, rope, vdim; /* q_lora 0: a plain q projection */
    int d_ff;                              /* the dense layers' MLP */
    int moe_ff, n_expert, n_used, n_shared, n_group, topk_group, first_dense;
    float route_scale;
    int norm_topk, sigmoid;
    float eps, rope_theta;
    float balance_alpha; /* the sequence-wise balance loss' weight (0: none) */
    /* Multi-token prediction: n_mtp modules (num_nextn_predict_layers; 0: none). Module k at
     * position i reads the previous depth's hidden state h_i (k = 1: the main model's last hidden
     * state, before its final norm) and the embedding of token i+k:
     *   x = eh_proj [ enorm(emb(t_{i+k})) ; hnorm(h_i) ]  (embedding first, as DeepSeek stores it)
     * then one decoder block (layer n_layer + k - 1: MoE or dense as that index says), then the
     * shared output head after its own norm (shared_head.norm) predicts t_{i+k+1}. The embedding
     * and head are the main model's. Loss = CE + mtp_weight / n_mtp x the sum of the modules' CE
     * (V3's first phase: 0.3, TR_DS_MTP_WEIGHT). */
    int n_mtp;
    float mtp_weight;
    /* YaRN when rope_factor > 1 (0: plain RoPE), as transformers' DeepseekV3 computes it: the
     * pairs' frequencies ramped between kept and divided by factor (beta_fast/beta_slow, 0: 32/1,
     * over rope_orig_ctx, 0: 4096), cos/sin scaled by mscale(factor, yarn_mscale) /
     * mscale(factor, yarn_mscale_all_dim) (either 0: mscale(factor, 1)), and the softmax scale
     * by mscale(factor, yarn_mscale_all_dim)^2 when that is set; mscale(s, m) = 0.1 m ln s + 1. */
    float rope_factor, yarn_beta_fast, yarn_beta_slow, yarn_mscale, yarn_mscale_all_dim;
    int rope_orig_ctx;
} tr_ds_cfg;

#define TR_DS_MTP_WEIGHT 0.3f

/* An MTP module's own tensors (besides its decoder block). */
typedef struct tr_ds_mtp {
    float *enorm, *hnorm, *eh_proj, *head_norm;
} tr_ds_mtp;

typedef struct tr_ds_layer {
    float *attn_norm, *wq, *wqa, *q_norm, *wqb, *wkva, *kv_norm, *wkvb, *wo, *ffn_norm;
    float *wg, *wu, *wd;                 /* dense MLP, or the shared experts of a MoE layer */
    float *router, *router_bias;         /* MoE: gate.weight, gate.e_score_correction_bias */
    float **eg, **eu, **ed;              /* MoE: each expert's gate, up, down */
} tr_ds_layer;

typedef struct tr_ds {
    tr_ds_cfg c;
    tr_params P;
    float *embed, *out_norm, *head, *d_embed, *d_out_norm, *d_head;
    tr_ds_layer *L, *dL; /* n_layer + n_mtp blocks: the MTP modules' blocks last */
    tr_ds_mtp *mtp, *dmtp;
    int64_t *load;   /* [n_layer + n_mtp][n_expert]: tokens each expert took since the last reset */
    /* Activation recomputation: keep only each main layer's input during the forward pass and
     * run the layer's forward again just before its backward (one layer's activations in
     * memory instead of n_layer's, for about a third more compute). Same results, bit for bit. */
    int recompute;
    double mtp_loss; /* the last tr_ds_step's MTP cross-entropy, averaged over the depths */
    float *freq_scale;          /* [rope/2]: YaRN's per-pair frequency scale (NULL: none) */
    float rope_mscale, attn_scale;
} tr_ds;

int tr_ds_init(tr_ds *m, const tr_ds_cfg *c, whale_err *err);
void tr_ds_free(tr_ds *m);
/* As tr_dense_step (dense.h), weights and logp included: they apply to the main model's
 * cross-entropy only. The balance loss, when alpha > 0, is added per sequence and layer (scaled
 * by the sequence's share of the batch's targets, with or without weights); the MTP modules'
 * loss with its weight (their mean cross-entropy, averaged over the depths, into m->mtp_loss;
 * a policy-gradient caller sets mtp_weight and balance_alpha to 0). The returned loss is the
 * main cross-entropy alone (its mean, or the weighted sum). Expert loads are counted into
 * m->load (training steps only: loss_scale 0 counts nothing). */
double tr_ds_step(tr_ds *m, const int32_t *ids, const int32_t *targets, const float *weights, float *logp, int B, int T,
                  float loss_scale, whale_err *err);
/* config.json of a DeepseekV3ForCausalLM with this shape (malloc'd). */
char *tr_ds_config_json(const tr_ds *m);

#endif
