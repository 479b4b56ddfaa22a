/* model_impl.h — the model's internals, shared by weights.c (loading) and dense.c (forward). */
#ifndef WHALE_MODEL_IMPL_H
#define WHALE_MODEL_IMPL_H

#include "base/threadpool.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "model/model.h"

/* A 2-D weight: n_out rows of n_in elements of `type`, row-major (GGUF ne = {n_in, n_out}). */
typedef struct wmat {
    whale_dtype type;
    const void *data; /* borrowed: the mapped file */
    int64_t n_in, n_out;
    /* FP8 checkpoints (DeepSeek-V3/R1): one F32 factor per 128x128 block, multiplied in
     * (`weight_scale_inv`), (ceil(n_out/128), ceil(n_in/128)); NULL for every other type. */
    const float *scale;
} wmat;

#define WMAT_SCALE_BLOCK 128

/* wmat.c: row r as F32 (block scales applied); dot of row r with x; rows r0..r1 of Y = X W^T
 * for n_tok tokens (the scaled path dequantizes each row once into scratch, n_in floats). */
void wmat_row(const wmat *w, int64_t r, float *out);
/* Rows [r0, r0+n) of w as a matrix of their own: 0, or -1 when block scales do not allow it
 * (r0 not on a 128-row block boundary). */
int wmat_view_rows(const wmat *w, int64_t r0, int64_t n, wmat *out);
float wmat_dot(const wmat *w, int64_t r, const float *x, float *scratch);
void wmat_matmul_rows(float *Y, int64_t ldy, const wmat *w, const float *X, int64_t ldx, int64_t n_tok, int64_t r0,
                      int64_t r1, float *scratch);
/* The integer path (kernels/qdot.h) for weight types that have it: 1 if w takes it. The caller
 * quantizes the activations once per product (wmat_quantize_x, into m->xq, n_tok rows of n_in)
 * and every row task then reads them. */
int wmat_int_path(const wmat *w);
const qact_block *wmat_quantize_x(model *m, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in);
/* The same into dst (part of m->xq). */
void wmat_quantize_into(model *m, qact_block *dst, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in);
void wmat_matmul_rows_q(float *Y, int64_t ldy, const wmat *w, const qact_block *X, int64_t n_tok, int64_t r0,
                        int64_t r1);

typedef struct dense_layer {
    float *attn_norm;      /* (n_embd) */
    wmat wq, wk, wv, wo;   /* q: (n_head*head_dim, n_embd), k/v: (kv_dim, n_embd), o: (n_embd, n_head*head_dim) */
    float *bq, *bk, *bv;   /* biases (Qwen2) or NULL */
    float *ffn_norm;       /* (n_embd) */
    wmat w_gate, w_up;     /* (n_ff, n_embd) */
    wmat w_down;           /* (n_embd, n_ff) */
} dense_layer;

/* One routed or shared expert: a SwiGLU FFN. */
typedef struct ds_expert {
    wmat gate, up; /* (n_ff_expert, n_embd) */
    wmat down;     /* (n_embd, n_ff_expert) */
} ds_expert;

/* A DeepSeek V2/V3 block: MLA attention, then a dense FFN (first layers) or MoE. */
typedef struct ds_layer {
    float *attn_norm, *ffn_norm; /* (n_embd) */
    wmat wq_a;                   /* (q_lora_rank, n_embd), q-LoRA path (V3) */
    float *q_a_norm;             /* (q_lora_rank) */
    wmat wq_b;                   /* (n_head*(dn+dr), q_lora_rank) */
    wmat wq;                     /* (n_head*(dn+dr), n_embd), when there is no q-LoRA (V2-Lite) */
    wmat wkv_a;                  /* (dc+dr, n_embd): latent, then the shared rope key */
    float *kv_a_norm;            /* (dc) */
    wmat wkv_b;                  /* (n_head*(dn+dv), dc): per head W_UK (dn rows) then W_UV (dv rows) */
    /* llama.cpp's split layout instead of wkv_b (split_kb set): attn_k_b, per head W_UK
     * transposed (n_head*dc rows of dn), and attn_v_b, per head W_UV (n_head*dv rows of dc). */
    int split_kb;
    wmat wk_b, wv_b;             /* wk_b is also built at load time from a fused wkv_b (F32 or F16) */
    wmat wo;                     /* (n_embd, n_head*dv) */
    int moe;
    ds_expert dense;             /* the FFN of a dense layer (n_ff wide) */
    wmat router;                 /* (n_expert, n_embd) */
    float *router_bias;          /* (n_expert) V3 selection-only bias, or NULL */
    ds_expert *experts;          /* (n_expert) */
    ds_expert shared;            /* (n_expert_shared*n_ff_expert wide), absent if no shared experts */
    int has_shared;
} ds_layer;

/* DeepSeek-V3's multi-token prediction module (SPEC-deepseek.md §4): combines the main model's
 * hidden state at position i with the embedding of token i+1 and predicts token i+2 through one
 * more decoder block with its own latent cache (cache layer n_layer). */
typedef struct ds_mtp {
    ds_layer blk;
    float *enorm, *hnorm, *head_norm; /* (n_embd) */
    wmat eh_proj;                     /* (n_embd, 2*n_embd): [enorm(emb); hnorm(h)] -> n_embd */
    wmat embed, head;                 /* its own copies, or the main embedding and output */
} ds_mtp;

struct model {
    model_hparams hp;
    tokenizer *tok;
    char *chat_template; /* owned copy or NULL */
    gguf_file gguf;      /* open when loaded from GGUF */
    st_model st;         /* open when loaded from safetensors */
    int is_gguf;

    wmat tok_embd;       /* (n_vocab, n_embd) */
    dense_layer *layers; /* (n_layer), dense architectures */
    ds_layer *ds;        /* (n_layer), deepseek2 */
    float attn_scale;    /* deepseek2: softmax scale with YaRN's mscale^2 */
    int mla_naive;       /* deepseek2: decompressed attention (see model_opts) */
    int kv_f16;          /* KV caches store half floats (see model_opts) */
    float *ds_scratch;   /* deepseek2: (threads, ds_scratch_n) attention vectors per thread */
    int64_t ds_scratch_n, ds_wide;
    float *qcat;         /* deepseek2: (n_batch, n_head, kv_lora_rank + rope) absorbed queries */
    float *att_part;     /* deepseek2: per (row, position chunk): o~, max, sum for every head */
    ds_mtp *mtp;         /* deepseek2 with an MTP module, else NULL */
    int mtp_prenorm;     /* feed MTP the hidden state before the final norm (model_opts) */
    float *mtp_cat;      /* (n_batch, 2*n_embd) MTP input concatenation */
    float *hidden_out;   /* set during model_forward_hidden: where the rows' hidden states go */
    /* deepseek2 MoE scratch: inputs gathered per chosen expert and outputs (n_batch *
     * n_expert_used slots of n_embd), expert hidden (slots of n_ff_expert, or n_batch rows of the
     * widest dense/shared FFN), router logits and scores (n_batch, 2*n_expert), each row's choices
     * and weights, slot -> (row, choice) and back, per-expert counts and task offsets. */
    float *moe_x, *moe_y, *moe_g, *moe_u, *moe_h, *moe_w;
    int32_t *moe_id, *moe_rows, *moe_slot, *moe_cnt;
    int64_t *moe_goff; /* (n_expert + 1) MoE: where each expert's gate/up outputs start */
    float *out_norm;     /* (n_embd) */
    wmat output;         /* (n_vocab, n_embd); the embedding when tied */
    rope_style rope;
    int64_t n_rot;
    float *inv_freq;     /* (n_rot/2) angle per position of each pair, scaling applied */
    float **owned;       /* F32 copies of small vectors, freed with the model */
    int n_owned, cap_owned;

    threadpool *tp;
    int64_t n_batch;
    /* scratch for n_batch rows */
    float *x, *xn, *q, *k, *v, *att, *gate, *up, *tmp_rows;
    float *row_scratch;  /* (threads, row_width) dequantized weight rows */
    qact_block *xq;      /* activations quantized for the integer path (see wmat_quantize_x) */
    int64_t row_width;   /* the widest n_in of any matrix */
    float *att_scores;   /* (threads, n_ctx_max) grows with the cache */
    int64_t att_scores_n;
};

struct kv_cache {
    int64_t n_ctx, n_layer, kv_dim;
    int n_seq;
    int f16;      /* rows stored as IEEE half floats (model_opts.kv_f16), else F32 */
    void *k, *v;  /* (n_layer, n_seq, n_ctx, kv_dim) elements */
};

/* dense.c: the cache row of (layer, seq, pos) in k or v, and a row of n floats stored there
 * (converted to the cache's type); kv_get: the row as floats (in place for F32, else widened
 * into tmp, n floats). */
void *kv_row(const kv_cache *kv, void *base, int64_t layer, int32_t seq, int64_t pos);
void kv_put(const kv_cache *kv, void *dst, const float *src, int64_t n);
const float *kv_get(const kv_cache *kv, const void *row, int64_t n, float *tmp);

/* dense.c: Y (n_tok rows of w->n_out) = X (n_tok rows of w->n_in) · wᵀ on the thread pool,
 * through the integer path where the weight type has one. */
void model_matmul(model *m, float *Y, const wmat *w, const float *X, int64_t n_tok);

/* weights.c: a matrix (n_out rows of n_in) or an F32 copy of a vector, by GGUF-style name;
 * 0 or WHALE_E_FORMAT/NOMEM with a message. An optional vector that is absent gives *out NULL. */
int wt_need_mat(model *m, const char *name, int64_t n_in, int64_t n_out, wmat *w, whale_err *err);
int wt_need_vec(model *m, const char *name, int64_t n, int optional, float **out, whale_err *err);
/* Keep a malloc'd buffer until the model is freed: 0, or -1 (out of memory; not kept). */
int wt_own(model *m, void *p);
/* 1 if the model has a tensor of that name. */
int wt_has(model *m, const char *name);

/* dense.c: final norm and output projection for the rows of b[r0, r0+n) that want logits,
 * appended to logits after the *n_logits rows already there. */
void model_output_logits(model *m, const model_batch *b, int64_t r0, int64_t n, float *logits, int64_t *n_logits);

/* deepseek.c */
int deepseek_load(model *m, whale_err *err);
int deepseek_alloc(model *m, whale_err *err);
int deepseek_forward_chunk(model *m, kv_cache *kv, const model_batch *b, int64_t r0, int64_t n, float *logits,
                           int64_t *n_logits);
/* Load one decoder block (tensors blk.<l>.*); the MoE flag says which FFN it has. */
int ds_load_layer(model *m, int64_t l, ds_layer *L, int moe, whale_err *err);
/* One decoder block on the n rows in m->x (in place), caching latents in cache layer `layer`. */
void ds_block(model *m, kv_cache *kv, const ds_layer *L, int64_t layer, const int32_t *pos, const int32_t *seq,
              int64_t n);
/* Y (n rows) = X W^T on the thread pool. */
void ds_mm(model *m, float *Y, const wmat *w, const float *X, int64_t n_tok);
/* mtp.c */
int mtp_load(model *m, whale_err *err);
int mtp_forward_chunk(model *m, kv_cache *kv, const model_batch *b, const float *hidden, int64_t r0, int64_t n,
                      float *logits, int64_t *n_logits);
/* 3-D tensor ne = {n_in, n_mid, n_outer} seen as a matrix of n_mid*n_outer rows. */
int wt_need_mat3(model *m, const char *name, int64_t n_in, int64_t n_mid, int64_t n_outer, wmat *w, whale_err *err);
void deepseek_free(model *m);
/* Routing for one token: router logits z (n_expert) -> n_expert_used expert ids and gate
 * weights (score: scratch of n_expert). bias: V3's selection-only bias or NULL. */
void ds_route(const model_hparams *hp, const float *bias, const float *z, float *score, int32_t *id, float *w);

#endif
