/* dense.h — a dense decoder (Qwen2 / Llama) for training: parameters and their gradients as
 * named F32 tensors in Hugging Face's names, a forward pass that keeps what the backward pass
 * needs, and the backward pass through every layer into the gradients. Built on ops.h; checked
 * against PyTorch autograd (tests/unit/test_train_dense.c, golden from
 * tests/golden/make_train_goldens.py). */
#ifndef WHALE_TRAIN_DENSE_H
#define WHALE_TRAIN_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "train/params.h"
#include "whale.h"

/* The projections LoRA can adapt, in PEFT's target_modules names (tr_lora_target_name). */
enum { TR_Q, TR_K, TR_V, TR_O, TR_GATE, TR_UP, TR_DOWN, TR_N_PROJ };
#define TR_LORA_ALL ((1u << TR_N_PROJ) - 1)
/* Beyond this the "low rank" is not low: full fine-tuning (no --lora) is the better tool. */
#define TR_LORA_MAX_RANK 1024

/* Low-rank adapters (LoRA, Hu et al. 2021, as PEFT lays them out): on each targeted projection
 * y = W x + b + s B (A x), A [rank x in], B [out x rank], s = alpha / rank; every other
 * parameter frozen. rank 0: no adapters, everything trained. */
typedef struct tr_lora {
    int rank;
    float alpha;
    unsigned targets; /* bits 1 << TR_Q ... (0: all of them) */
} tr_lora;

typedef struct tr_dense_cfg {
    int n_layer, d, n_head, n_kv, head_dim, d_ff, vocab;
    float eps, rope_theta;
    int qkv_bias; /* Qwen2: q, k, v projections have biases */
    int tied;     /* the output head is the embedding table */
    tr_lora lora;
} tr_dense_cfg;

/* One adapter's factors: a [rank][in], b [out][rank] (NULL: the projection has none). */
typedef struct tr_adapter {
    float *a, *b;
} tr_adapter;

typedef struct tr_layer {
    float *attn_norm, *wq, *bq, *wk, *bk, *wv, *bv, *wo, *ffn_norm, *wg, *wu, *wd;
    tr_adapter lora[TR_N_PROJ];
} tr_layer;

typedef struct tr_dense {
    tr_dense_cfg c;
    tr_params P; /* every tensor, in Hugging Face's names */
    float *embed, *out_norm, *head;
    tr_layer *L;  /* parameters */
    tr_layer *dL; /* the same views into grads */
    float *dembed, *dout_norm, *dhead;
    /* Activation recomputation: keep only each layer's input in the forward pass and run the
     * layer's forward again just before its backward (one layer's activations in memory instead
     * of n_layer's, for about a third more compute). Same results, bit for bit. */
    int recompute;
    float lora_scale; /* alpha / rank (0 without adapters) */
} tr_dense;

/* "q_proj", "k_proj", ... "down_proj" for TR_Q..TR_DOWN (NULL outside). */
const char *tr_lora_target_name(int proj);
/* Parse PEFT-style target names separated by commas ("q_proj,v_proj", or "all") into bits;
 * WHALE_E_ARG naming an unknown one. */
int tr_lora_targets_parse(const char *s, unsigned *out, whale_err *err);

/* Lay out the parameters for c (zeroed). With c->lora.rank > 0 the adapters' tensors follow
 * the model's, in PEFT's names (base_model.model.<module>.lora_A.weight / lora_B.weight), and
 * the model's own are frozen: their gradients are neither computed nor applied. */
int tr_dense_init(tr_dense *m, const tr_dense_cfg *c, whale_err *err);
void tr_dense_free(tr_dense *m);
/* config.json of a Qwen2ForCausalLM with this shape (malloc'd). */
char *tr_dense_config_json(const tr_dense *m);

/* Forward and backward over B sequences of T tokens (ids[B][T]); targets[B][T] is the next
 * token to predict at each position (-1: none). Its gradients are ADDED to m->grads (zero them
 * between steps); loss_scale 0: forward only, no gradients.
 * - weights NULL: the loss is the mean cross-entropy over all positions with a target, times
 *   loss_scale. Returns that mean (unscaled).
 * - weights[B][T] given: the loss is sum_{b,t} weights[b][t] * -log p(targets[b][t]) over the
 *   positions with a target, times loss_scale: its gradient is loss_scale x sum w_t x
 *   d(-log p_t)/dtheta, so a policy-gradient caller passes w_t = dJ/dlogp_t (rl/grpo.h) to get
 *   -dJ/dtheta. Returns that weighted sum (unscaled).
 * logp[B][T] (or NULL) receives log p of each position's target under the current parameters,
 * from this same forward (0 where there is no target). */
double tr_dense_step(tr_dense *m, const int32_t *ids, const int32_t *targets, const float *weights, float *logp, int B, int T,
                     float loss_scale, whale_err *err);

#endif
