/* model_impl.h — the model's internals, shared by the core and its architecture leaves.
 *
 * Who calls whom (no file calls back into one that calls it):
 *
 *   model.c (core: load/free, the chunk loop, embedding, output head, contexts, the
 *            architecture table)
 *      |-- dense.c      (leaf: Qwen2 / Llama 3)
 *      |-- deepseek.c   (leaf: DeepSeek V2/V3 block and loading) -- mla.c, moe.c
 *      |-- mtp.c        (V3's multi-token prediction; uses only the DeepSeek leaf)
 *      |-- footprint.c  (bytes per token; asks the leaves through the table)
 *   below them all: weights.c (tensors by name), wmat.c (weight rows, threaded products),
 *                   kv_cache.c (the paged cache), names.c (GGUF <-> Hugging Face names)
 *
 * A loaded model is read-only after model_load: everything a forward pass writes (scratch,
 * activations, the thread pool, the KV cache) lives in a model_ctx, one per caller. */
#ifndef WHALE_MODEL_IMPL_H
#define WHALE_MODEL_IMPL_H

#include "base/threadpool.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/attn.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "model/model.h"

/* ---- weight matrices (wmat.c) ---------------------------------------------------------- */

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

/* Row r as F32 (block scales applied); dot of row r with x; rows r0..r1 of Y = X W^T for n_tok
 * tokens (the scaled path dequantizes each row once into scratch, n_in floats). */
void wmat_row(const wmat *w, int64_t r, float *out);
/* Rows [r0, r0+n) of w as a matrix of their own: 0, or -1 when block scales do not allow it
 * (r0 not on a 128-row block boundary). */
int wmat_view_rows(const wmat *w, int64_t r0, int64_t n, wmat *out);
float wmat_dot(const wmat *w, int64_t r, const float *x, float *scratch);
void wmat_matmul_rows(float *Y, int64_t ldy, const wmat *w, const float *X, int64_t ldx, int64_t n_tok, int64_t r0,
                      int64_t r1, float *scratch);
/* The integer path (kernels/qdot.h) for weight types that have it: 1 if w takes it. The caller
 * quantizes the activations once per product (wmat_quantize_x, into c->xq, n_tok rows of n_in)
 * and every row task then reads them. */
int wmat_int_path(const wmat *w);
const qact_block *wmat_quantize_x(model_ctx *c, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in);
/* The same into dst (part of c->xq). */
void wmat_quantize_into(model_ctx *c, qact_block *dst, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in);
void wmat_matmul_rows_q(float *Y, int64_t ldy, const wmat *w, const qact_block *X, int64_t n_tok, int64_t r0,
                        int64_t r1);
/* Y (n_tok rows of w->n_out) = X (n_tok rows of w->n_in) · wᵀ on the context's thread pool,
 * through the integer path where the weight type has one. */
void wmat_matmul(model_ctx *c, float *Y, const wmat *w, const float *X, int64_t n_tok);
/* Bytes of rows [0, n_rows) of w with the block scales that cover them; of all of w. */
size_t wmat_rows_bytes(const wmat *w, int64_t n_rows);
size_t wmat_bytes(const wmat *w);
/* Bytes of an F32 vector of n that may be absent (NULL: 0). */
static inline size_t vec_bytes(const float *v, int64_t n) { return v ? (size_t)n * sizeof(float) : 0; }

/* ---- LoRA adapters (lora.c) ----------------------------------------------------------- */

struct lora_mat;

/* y (n_tok rows of l->b.n_out) += B (A x) for the n_tok rows of x (l->a.n_in each): two F32
 * products on the context's pool (batch-invariant like every kernel), through scratch r
 * (n_tok rows of the rank) and d (n_tok rows of n_out). */
void lora_apply(model_ctx *c, float *y, const struct lora_mat *l, const float *x, int64_t n_tok, float *r, float *d);
/* Free the model's adapter. */
void lora_free(model *m);

/* ---- the paged KV cache (kv_cache.c) --------------------------------------------------- */

/* Positions per page: DeepSeek's context-cache unit (64 tokens), so that a page can later be
 * shared by sequences with a common prefix, and the attention kernels' block (OP_MQA_BLOCK). */
#define KV_PAGE 64

struct kv_cache {
    int64_t n_ctx, n_layer, kv_dim;
    int n_seq;
    int type;           /* how rows are stored: OP_KV_F32, OP_KV_F16, OP_KV_BF16 or OP_KV_Q8 (model_opts.kv_type) */
    int64_t split;      /* OP_KV_Q8: where a row's second scale segment starts (MLA: the rope key) */
    int64_t row_bytes;  /* one row's bytes */
    int64_t n_page_seq; /* pages per sequence: ceil(n_ctx / KV_PAGE) */
    int64_t n_page;     /* pages in the pool: n_seq * n_page_seq, so mapping never runs out */
    int32_t *page;      /* (n_seq, n_page_seq) physical page holding each logical page; -1: none */
    int32_t *ref;       /* (n_page) logical pages mapping each physical page; 0: free */
    int32_t *free_pages;/* (n_page) a stack of the free pages, the next one on top */
    int64_t n_free;
    void *k, *v;        /* (n_layer, n_page, KV_PAGE, kv_dim) elements; v NULL for MLA */
};

/* A cache of n_layer layers of kv_dim-element rows (values too when with_v), for n_seq
 * sequences of n_ctx positions. NULL on bad sizes or out of memory. */
kv_cache *kv_cache_new(int64_t n_layer, int64_t kv_dim, int with_v, int type, int64_t split, int64_t n_ctx, int n_seq);
void kv_cache_free(kv_cache *kv);
/* The row of (layer, seq, pos) in k (which 0) or v (which 1). Its page must be mapped: a row
 * is written only after kv_own, and read only where it was written. */
void *kv_row(const kv_cache *kv, int which, int64_t layer, int32_t seq, int64_t pos);
/* Make the page holding (seq, pos) the sequence's own before its rows are written: map a free
 * page where none is, or copy a page other sequences share (copy on write, every layer). 0, or
 * -1 when no page is free (cannot happen with the pool's size; checked all the same). */
int kv_own(kv_cache *kv, int32_t seq, int64_t pos);
/* Rows of (layer, seq) from pos on that lie one after another in memory, at most n: returns
 * their count (>= 1 for a valid pos) and the first row's address in *row. Attention walks a
 * sequence span by span, carrying its online-softmax state across. */
int64_t kv_span(const kv_cache *kv, int which, int64_t layer, int32_t seq, int64_t pos, int64_t n, const void **row);
size_t kv_elem_size(const kv_cache *kv);
/* A row of n floats stored at dst (converted to the cache's type); kv_get: the row as floats
 * (in place for F32, else widened into tmp, n floats). */
void kv_put(const kv_cache *kv, void *dst, const float *src, int64_t n);
const float *kv_get(const kv_cache *kv, const void *row, int64_t n, float *tmp);

/* ---- weights by name (weights.c) -------------------------------------------------------- */

/* A matrix (n_out rows of n_in) or an F32 copy of a vector, by GGUF-style name; 0 or
 * WHALE_E_FORMAT/NOMEM with a message. An optional vector that is absent gives *out NULL. */
int wt_need_mat(model *m, const char *name, int64_t n_in, int64_t n_out, wmat *w, whale_err *err);
/* 3-D tensor ne = {n_in, n_mid, n_outer} seen as a matrix of n_mid*n_outer rows. */
int wt_need_mat3(model *m, const char *name, int64_t n_in, int64_t n_mid, int64_t n_outer, wmat *w, whale_err *err);
int wt_need_vec(model *m, const char *name, int64_t n, int optional, float **out, whale_err *err);
/* Keep a malloc'd buffer until the model is freed: 0, or -1 (out of memory; not kept). */
int wt_own(model *m, void *p);
/* 1 if the model has a tensor of that name. */
int wt_has(model *m, const char *name);
/* Free what wt_own kept. */
void wt_free_owned(model *m);

/* ---- architectures --------------------------------------------------------------------- */

/* What the core asks of an architecture. The core embeds the tokens into c->x, calls
 * forward for the layers (in place on c->x), then applies the final norm and the output head. */
typedef struct arch_ops {
    /* Load the layers' weights (the embedding, final norm and output are loaded by the core). */
    int (*load)(model *m, whale_err *err);
    void (*free)(model *m);
    /* Elements per cached row and layer, and whether values are cached beside keys. */
    int64_t (*kv_dim)(const model_hparams *hp);
    int kv_with_v;
    int has_mtp; /* may carry V3's multi-token prediction module (mtp.c) */
    /* The architecture's scratch for a context of c->n_batch rows (c->ws), and its size needs:
     * the widest matrix input (row_width) and the quantized activations (qact blocks). */
    int (*ws_new)(const model *m, model_ctx *c, whale_err *err);
    void (*ws_free)(model_ctx *c);
    int64_t (*xq_blocks)(const model *m, int64_t n_batch);
    /* Every layer on the n rows in c->x at positions pos of sequences seq (NULL: all 0). */
    void (*forward)(const model *m, model_ctx *c, const int32_t *pos, const int32_t *seq, int64_t n);
    /* Weight bytes one decode step reads in layer l (footprint.c). */
    size_t (*layer_bytes)(const model *m, int64_t l);
} arch_ops;

/* A LoRA update of one weight matrix (lora.c): y += B (A x), with the adapter's scale multiplied
 * into B at load. F32 rows, so the products take the float kernels' batch-invariant path. */
typedef struct lora_mat {
    wmat a; /* (r, n_in) */
    wmat b; /* (n_out, r), scaled */
} lora_mat;

/* The dense layer's matrices an adapter may change, in the order lora.c's table names them. */
enum { DENSE_Q, DENSE_K, DENSE_V, DENSE_O, DENSE_GATE, DENSE_UP, DENSE_DOWN, DENSE_N_MAT };

typedef struct dense_layer {
    float *attn_norm;      /* (n_embd) */
    wmat wq, wk, wv, wo;   /* q: (n_head*head_dim, n_embd), k/v: (kv_dim, n_embd), o: (n_embd, n_head*head_dim) */
    float *bq, *bk, *bv;   /* biases (Qwen2) or NULL */
    float *ffn_norm;       /* (n_embd) */
    wmat w_gate, w_up;     /* (n_ff, n_embd) */
    wmat w_down;           /* (n_embd, n_ff) */
    const lora_mat *lora[DENSE_N_MAT]; /* the adapter's update of each matrix, or NULL (lora.c) */
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
    const arch_ops *arch;
    tokenizer *tok;
    char *chat_template; /* owned copy or NULL */
    gguf_file gguf;      /* open when loaded from GGUF */
    st_model st;         /* open when loaded from safetensors */
    int is_gguf;

    wmat tok_embd;       /* (n_vocab, n_embd) */
    float *out_norm;     /* (n_embd) */
    wmat output;         /* (n_vocab, n_embd); the embedding when tied */
    rope_style rope;
    int64_t n_rot;
    float *inv_freq;     /* (n_rot/2) angle per position of each pair, scaling applied */

    dense_layer *layers; /* (n_layer), dense architectures */
    ds_layer *ds;        /* (n_layer), deepseek2 */
    float attn_scale;    /* deepseek2: softmax scale with YaRN's mscale^2 */
    ds_mtp *mtp;         /* deepseek2 with an MTP module, else NULL */

    /* options fixed at load (model_opts) */
    int n_threads;       /* threads of each context's pool (<= 0: one per CPU) */
    int64_t n_batch;     /* rows per internal chunk of a forward call */
    int mla_naive, kv_type, mtp_prenorm;

    /* a LoRA adapter applied at inference (lora.c), or none */
    lora_mat *lora;      /* (n_lora) owned */
    int n_lora;
    int64_t lora_r;      /* its rank (the scratch each context needs) */
    float lora_scale;
    char *lora_path;     /* owned copy, as given */

    float **owned;       /* F32 copies of small vectors and built matrices, freed with the model */
    int n_owned, cap_owned;
};

/* What forward passes write (model.h: model_ctx_new). */
struct model_ctx {
    const model *m;
    const arch_ops *arch; /* the model's, kept so the context frees its scratch on its own */
    kv_cache *kv;
    threadpool *tp;
    int64_t n_batch;
    float *x, *xn;        /* (n_batch, n_embd) residual stream, and its normalized copy */
    float *row_scratch;   /* (threads, row_width) dequantized weight rows */
    int64_t row_width;    /* the widest n_in of any matrix */
    qact_block *xq;       /* activations quantized for the integer path (wmat_quantize_x) */
    float *att_scores;    /* (threads, att_scores_n) attention scores and softmax state */
    int64_t att_scores_n;
    void *ws;             /* the architecture's scratch (dense.c, deepseek.c) */
    model_hook_fn hook;   /* named intermediates, or NULL */
    void *hook_user;
    int64_t hook_row0;    /* batch row of the chunk's first row */
};

/* Hand the named intermediate (name, layer) of the chunk's n rows of len floats to the hook. */
static inline void model_emit(const model_ctx *c, const char *name, int64_t layer, const float *x, int64_t n,
                              int64_t len) {
    if (c->hook) c->hook(c->hook_user, name, layer, c->hook_row0, n, len, x);
}

/* model.c: the table entry for an architecture id, or NULL when Whale does not run it. */
const arch_ops *model_arch_ops(model_arch id);
/* dense.c */
extern const arch_ops dense_arch;
/* deepseek.c (+ mla.c, moe.c) */
extern const arch_ops deepseek_arch;
/* Load one decoder block (tensors blk.<l>.*); the MoE flag says which FFN it has. */
int ds_load_layer(model *m, int64_t l, ds_layer *L, int moe, whale_err *err);
void ds_free_layer(ds_layer *L);
/* One decoder block on the n rows in c->x (in place), caching latents in cache layer `layer`. */
void ds_block(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const int32_t *pos, const int32_t *seq,
              int64_t n);
/* mla.c: the absorbed W_UK built at load; attention over the latent cache for the n rows whose
 * queries are in ws q (ds_ws in deepseek.h). */
int mla_build_kb(model *m, ds_layer *L, whale_err *err);
/* model.c: YaRN's ramp for rotary pair i (0: frequency kept, 1: divided by the factor); the
 * trainer's YaRN uses the same. */
double rope_yarn_ramp(double theta, double n_rot, double orig_ctx, double beta_fast, double beta_slow, int64_t i);
/* moe.c: routing for one token: router logits z (n_expert) -> n_expert_used expert ids and gate
 * weights (score: scratch of n_expert). bias: V3's selection-only bias or NULL. */
void ds_route(const model_hparams *hp, const float *bias, const float *z, float *score, int32_t *id, float *w);
/* mtp.c: load the module if the checkpoint has one (m->mtp stays NULL otherwise); run it on a
 * chunk, leaving the rows in c->x and naming the norm and head its logits come from. */
int mtp_load(model *m, whale_err *err);
void mtp_free(model *m);
void mtp_forward_chunk(const model *m, model_ctx *c, const model_batch *b, const float *hidden, int64_t r0, int64_t n,
                       const float **norm, const wmat **head);

#endif
