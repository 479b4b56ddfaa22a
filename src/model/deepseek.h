/* deepseek.h — what the DeepSeek leaf's files (deepseek.c, mla.c, moe.c) share: a context's
 * scratch and the entry points of MLA and MoE. Private to those files and mtp.c. */
#ifndef WHALE_MODEL_DEEPSEEK_H
#define WHALE_MODEL_DEEPSEEK_H

#include "model/model_impl.h"

#define DS_ROWS_PER_TASK 128 /* weight rows per thread-pool task in the expert products */
#define DS_SPLIT_ROWS 4      /* rows per call up to which positions are split across tasks */
#define DS_MAX_CHUNKS 32
#define DS_CHUNK_MIN 256     /* fewest positions worth a task of their own */

/* A context's scratch for n_batch rows (deepseek.c allocates it). */
typedef struct ds_ws {
    float *q;           /* (n_batch, n_head*(dn+dr)) queries, then (n_batch, q_lora_rank) the q-LoRA
                           intermediate */
    float *k;           /* (n_batch, dc+dr) the new latent rows */
    float *att;         /* (n_batch, n_head*dv) attention outputs */
    float *tmp;         /* (n_batch, n_embd) a sublayer's output before the residual add */
    float *scratch;     /* (threads, scratch_n) attention vectors per thread */
    int64_t scratch_n, wide;
    float *qcat;        /* (n_batch, n_head, dc+dr) absorbed queries */
    float *att_part;    /* per (row, position chunk): o~, max, sum for every head */
    float *mtp_cat;     /* (n_batch, 2*n_embd) MTP input concatenation, or NULL */
    /* MoE: inputs gathered per chosen expert and outputs (n_batch * n_expert_used slots of
     * n_embd, then n_batch rows for the shared experts), expert hidden (slots of n_ff_expert,
     * or n_batch rows of the widest dense/shared FFN), router logits and scores (n_batch,
     * 2*n_expert), each row's choices and weights, slot -> (row, choice) and back, per-expert
     * counts and task offsets, where each expert's gate/up outputs start. */
    float *moe_x, *moe_y, *moe_g, *moe_u, *moe_h, *moe_w;
    int32_t *moe_id, *moe_rows, *moe_slot, *moe_cnt;
    int64_t *moe_goff;
} ds_ws;

/* mla.c: attention of the n rows whose queries are in w->q and latents already cached, into
 * w->att (absorbed form, or decompressed with model_opts.mla_naive). */
void mla_attention(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const int32_t *pos,
                   const int32_t *seq, int64_t n);
/* moe.c: out (n rows) = the FFN of expert x on in (n rows), through the scratch's moe_g/moe_u. */
void ds_ffn(model_ctx *c, const ds_expert *x, const float *in, float *out, int64_t n);
/* moe.c: out (n rows) = MoE(xn): routed experts weighted, plus the shared ones. */
void moe_forward(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const float *xn, float *out,
                 int64_t n);

#endif
