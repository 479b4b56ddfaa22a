/* model_impl.h — the model's internals, shared by weights.c (loading) and dense.c (forward). */
#ifndef WHALE_MODEL_IMPL_H
#define WHALE_MODEL_IMPL_H

#include "base/threadpool.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/ops.h"
#include "model/model.h"

/* A 2-D weight: n_out rows of n_in elements of `type`, row-major (GGUF ne = {n_in, n_out}). */
typedef struct wmat {
    whale_dtype type;
    const void *data; /* borrowed: the mapped file */
    int64_t n_in, n_out;
} wmat;

typedef struct dense_layer {
    float *attn_norm;      /* (n_embd) */
    wmat wq, wk, wv, wo;   /* q: (n_head*head_dim, n_embd), k/v: (kv_dim, n_embd), o: (n_embd, n_head*head_dim) */
    float *bq, *bk, *bv;   /* biases (Qwen2) or NULL */
    float *ffn_norm;       /* (n_embd) */
    wmat w_gate, w_up;     /* (n_ff, n_embd) */
    wmat w_down;           /* (n_embd, n_ff) */
} dense_layer;

struct model {
    model_hparams hp;
    tokenizer *tok;
    char *chat_template; /* owned copy or NULL */
    gguf_file gguf;      /* open when loaded from GGUF */
    st_model st;         /* open when loaded from safetensors */
    int is_gguf;

    wmat tok_embd;       /* (n_vocab, n_embd) */
    dense_layer *layers; /* (n_layer) */
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
    float *row_scratch;  /* (threads, max(n_embd, n_ff)) dequantized weight rows */
    float *att_scores;   /* (threads, n_ctx_max) grows with the cache */
    int64_t att_scores_n;
};

struct kv_cache {
    int64_t n_ctx, n_layer, kv_dim;
    int n_seq;
    float *k, *v; /* (n_layer, n_seq, n_ctx, kv_dim) */
};

#endif
