/* deepseek.h — a DeepSeek-V3-architecture decoder for training: MLA in its decompressed
 * training form (optional q low-rank path; the compressed KV latent and the decoupled RoPE key,
 * DeepSeek's interleaved RoPE), DeepSeekMoE (sigmoid or softmax affinities, group-limited top-k,
 * normalized and scaled gates, shared experts, the first layers dense; the selection bias a
 * frozen buffer that the auxiliary-loss-free update moves), Hugging Face's tensor names with one
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
} tr_ds_cfg;

typedef struct tr_ds_layer {
    float *attn_norm, *wq, *wqa, *q_norm, *wqb, *wkva, *kv_norm, *wkvb, *wo, *ffn_norm;
    float *wg, *wu, *wd;                 /* dense MLP, or the shared experts of a MoE layer */
    float *router, *router_bias;         /* MoE: gate.weight, gate.e_score_correction_bias */
    float **eg, **eu, **ed;              /* MoE: each expert's gate, up, down */
} tr_ds_layer;

typedef struct tr_ds {
    tr_ds_cfg c;
    tr_params P;
    float *embed, *out_norm, *head;
    tr_ds_layer *L, *dL;
    int64_t *load; /* [n_layer][n_expert]: tokens each expert took since the last reset */
} tr_ds;

int tr_ds_init(tr_ds *m, const tr_ds_cfg *c, whale_err *err);
void tr_ds_free(tr_ds *m);
/* As tr_dense_step (dense.h). The balance loss, when alpha > 0, is added per sequence and
 * layer; the returned loss is the cross-entropy alone. Expert loads are counted into m->load
 * (training steps only: loss_scale 0 counts nothing). */
double tr_ds_step(tr_ds *m, const int32_t *ids, const int32_t *targets, int B, int T, float loss_scale, whale_err *err);
/* config.json of a DeepseekV3ForCausalLM with this shape (malloc'd). */
char *tr_ds_config_json(const tr_ds *m);

#endif
