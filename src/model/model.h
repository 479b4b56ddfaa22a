/* model.h — a loaded model and its forward pass over a batch of (sequence, position, token)
 * rows. One forward serves prefill (many rows of one sequence), decode (one row per sequence)
 * and later continuous batching and speculative verification alike.
 *
 * Owns: weights (views into the mapped file; small vectors converted to F32), hyperparameters,
 * the tokenizer. What a forward pass writes (KV cache, scratch, threads) is a model_ctx the
 * caller creates, so that sessions and threads can share one loaded model.
 * Does not own: sampling, chat formatting, sequences' lifetimes (engine/). */
#ifndef WHALE_MODEL_H
#define WHALE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "formats/hparams.h"
#include "tokenizer/tokenizer.h"
#include "whale.h"

typedef struct model model;
typedef struct kv_cache kv_cache;
typedef struct model_ctx model_ctx;

/* Named intermediates: called with each named tensor of a forward pass as it is made, rows
 * [row0, row0+n) of the batch, len floats each (borrowed for the call). Names: "inp_embd"
 * (layer -1), then per layer "attn_norm", "attn_out" (attention after its output projection),
 * "ffn_inp" (the residual stream after attention), "ffn_norm", "ffn_out", and in DeepSeek MoE
 * layers "moe_logits" (the router's), "moe_choice" and "moe_weight" (the chosen experts' ids,
 * as floats, and their gate weights),
 * "l_out" (the residual stream after the layer), and "result_norm" (layer -1, after the final
 * norm, rows that asked for logits); the MTP module reports its block and its result_norm under
 * layer n_layer. */
typedef void (*model_hook_fn)(void *user, const char *name, int64_t layer, int64_t row0, int64_t n, int64_t len,
                              const float *data);

typedef struct model_opts {
    int n_threads;   /* threads of each context's pool; <= 0: one per CPU */
    int64_t n_batch; /* rows per internal chunk of a forward call (scratch size); 0: 256 */
    int progress;    /* draw a progress bar on stderr while pages are read in */
    int mla_naive;   /* DeepSeek: attention in the decompressed form (per-head keys and values
                        rebuilt from the latent cache), the reference the absorbed form is checked
                        against; slower */
    int mtp_prenorm; /* MTP: continue from the main model's hidden state before its final norm
                        instead of after it (vLLM's choice; DeepSeek never said which) */
    int kv_type;     /* how KV caches made for the model store rows: OP_KV_F32 (0), OP_KV_F16 (IEEE
                        half floats: half the memory and of the bytes attention reads, values
                        rounded to 11 bits), OP_KV_BF16 (bfloat16: as much memory as F16, 8 bits,
                        and attention's products in bfloat16 too: kernels/cpu/attn_bf16.c) or
                        OP_KV_Q8 (MLA models: int8 latents, kernels/cpu/attn_q8.c) */
    const char *lora; /* a PEFT LoRA adapter applied at inference (model_lora_load), or NULL */
} model_opts;

/* Load a GGUF file or a Hugging Face checkpoint (directory with config.json, *.safetensors and
 * tokenizer.json, or one of its files). Returns 0, or a negative status with a message naming
 * the file and what is wrong (missing tensor, wrong shape, unsupported architecture).
 * The loaded model is read-only: any number of threads may run it at once, each with its own
 * model_ctx. */
int model_load(model **out, const char *path, const model_opts *opts, whale_err *err);
void model_free(model *m);

/* Apply the PEFT LoRA adapter at path (formats/peft.h: a directory, or a file of it) to the
 * model's dense layers: y = W x + scale * B (A x) on every matrix it names, the base weights
 * kept as they are. Call before any context is made for the model; one adapter per model.
 * Returns 0, or WHALE_E_UNSUPPORTED (a DeepSeek model: MLA and MoE targets are not mapped yet;
 * a second adapter), WHALE_E_FORMAT (a module Whale does not know, a layer past the model's,
 * a shape that differs from the weight's) or the adapter reader's errors, with a message. */
int model_lora_load(model *m, const char *path, whale_err *err);
/* The adapter's path as given, or NULL; its rank, scale and matrices changed. */
const char *model_lora_path(const model *m);
void model_lora_info(const model *m, int64_t *r, float *scale, int *n_mats);

const model_hparams *model_hparams_get(const model *m);
/* NULL for a file without a tokenizer (GGUF without tokenizer.ggml.*, checkpoint without
 * tokenizer.json): such a model computes logits from ids only. */
const tokenizer *model_tokenizer(const model *m);
/* The GGUF chat template, or NULL (safetensors: tokenizer_config.json's, if present). */
const char *model_chat_template(const model *m);
int64_t model_n_vocab(const model *m); /* rows of the output matrix */

/* A context: what forward passes over the model write — a KV cache for n_seq sequences of up
 * to n_ctx positions each (each sequence's positions rounded up to whole pages of 64), the
 * scratch for model_opts.n_batch rows and a thread pool of model_opts.n_threads threads (each
 * context has its own: several busy contexts share the cores between their pools). One per
 * caller; a context is used by one thread at a time, and is freed before its model. NULL on
 * bad sizes or out of memory. */
model_ctx *model_ctx_new(const model *m, int64_t n_ctx, int n_seq);
void model_ctx_free(model_ctx *c);
/* The context's KV cache (borrowed: valid while the context lives). */
kv_cache *model_ctx_kv(model_ctx *c);
/* The context's thread pool (borrowed), for the caller's own parallel work between forward
 * passes (the scheduler's sampling): never during one, from the thread that runs them. */
struct threadpool *model_ctx_pool(model_ctx *c);
/* Report named intermediates of this context's forward passes to fn (NULL: stop). */
void model_ctx_set_hook(model_ctx *c, model_hook_fn fn, void *user);

/* ---- the KV cache (kv_cache.c): positions in pages of 64 (the context cache's unit) ------ */
int64_t kv_cache_n_seq(const kv_cache *kv);
/* Bytes one position of one sequence holds over all layers (keys and values, or MLA latents). */
size_t kv_cache_pos_bytes(const kv_cache *kv);
/* Bytes of one cached row of kv_dim values stored as `type` (OP_KV_*: Q8 adds its two scales). */
size_t kv_row_bytes(int type, int64_t kv_dim);
/* How the cache stores its rows: OP_KV_F32, OP_KV_F16, OP_KV_BF16 or OP_KV_Q8 (kernels/attn.h). */
int kv_cache_type(const kv_cache *kv);
/* Copy the cache rows of positions [pos0, pos0+n) of sequence seq out to dst, or in from src
 * (n * kv_cache_pos_bytes bytes, layer by layer): a context cache keeps computed prefixes this
 * way. 0, or -1 when the range is outside the cache. */
int kv_cache_read(const kv_cache *kv, int seq, int64_t pos0, int64_t n, void *dst);
int kv_cache_write(kv_cache *kv, int seq, int64_t pos0, int64_t n, const void *src);

/* Sharing pages between sequences (copy on write): sequence dst maps the pages holding
 * positions [0, n) of src (n a multiple of 64: whole pages, all mapped in src), in place of its
 * own; the rows are then one copy in memory until one of them writes there, which first copies
 * the page for itself. 0, or -1 (bad sequence, n not whole pages, or a page src has not made).
 * A caller shares only between sequences of one owner (the service keeps users apart). */
int kv_cache_share(kv_cache *kv, int dst, int src, int64_t n);
/* Sequence seq keeps the pages of its first n positions and lets the rest go (a new request
 * reusing only a prefix, a sequence given up): pages no sequence maps are free again. */
void kv_cache_keep(kv_cache *kv, int seq, int64_t n);
/* Pages in use (mapped by some sequence) and in the pool; bytes one page holds (all layers). */
void kv_cache_pages(const kv_cache *kv, int64_t *used, int64_t *total, size_t *page_bytes);

/* Benchmarks only: fill positions [0, n) of sequence seq with random values of unit RMS, as if
 * n tokens had been run, so that decoding at depth n can be timed without an n-token prefill
 * (the cost of attention does not depend on the values cached). 0, or WHALE_E_ARG. */
int kv_cache_fill_random(kv_cache *kv, int seq, int64_t n, uint64_t seed, whale_err *err);

typedef struct model_batch {
    int64_t n;
    const int32_t *token; /* (n) token ids */
    const int32_t *pos;   /* (n) position of each row in its sequence */
    const int32_t *seq;   /* (n) sequence index in the KV cache; NULL: all 0 */
    const int8_t *logits; /* (n) 1 where logits are wanted; NULL: only the last row */
} model_batch;

/* Run the batch in context c. Rows of one sequence attend to every position <= their own
 * already in the cache, including rows earlier in this batch. logits receives one n_vocab row
 * per row that asked for logits, in row order. hidden, when not NULL, receives the hidden state
 * of every row (n_embd floats per row, row order): the state the MTP module continues from.
 * Both are the caller's buffers. Returns 0, or WHALE_E_ARG (token out of range, position past
 * the cache, bad sequence index) with a message. */
int model_forward(const model *m, model_ctx *c, const model_batch *b, float *logits, float *hidden, whale_err *err);

/* Multi-token prediction (DeepSeek-V3's MTP module, loaded when the checkpoint has one; its cache
 * entries live in an extra layer of every context made for the model). */
int model_has_mtp(const model *m);
/* The MTP module over a batch. Row i joins hidden[i] (the main model's state at position pos[i],
 * from model_forward) with the embedding of token[i], which is the token AT position pos[i]+1,
 * and predicts the token at pos[i]+2. Writes the module's cache entry for pos[i]; logits as
 * model_forward (rows flagged in b->logits, else the last). */
int model_mtp_forward(const model *m, model_ctx *c, const model_batch *b, const float *hidden, float *logits,
                      whale_err *err);

/* Angle per position of each rotary pair (n_rot/2 values), with the hyperparameters' frequency
 * scaling (Llama 3, linear) applied. */
void model_rope_inv_freq(const model_hparams *hp, int64_t n_rot, float *inv_freq);

/* Tensor names: GGUF's <-> Hugging Face's ("blk.3.attn_q.weight" <->
 * "model.layers.3.self_attn.q_proj.weight"). Return 1 and fill out, or 0 when unknown. */
int model_name_to_hf(const char *gguf_name, char *out, size_t cap);
int model_name_from_hf(const char *hf_name, char *out, size_t cap);

/* ---- footprint (footprint.c): bytes per token, for whale info and whale bench -------------
 * KV-cache bytes one cached position takes over the main model's n_layer layers, exactly, as
 * Whale stores it with rows of `type` (OP_KV_*; MLA: the latent and the rope key; dense: K and V). */
size_t model_kv_bytes_per_token(const model_hparams *hp, int type);
/* The same over the MTP layers (n_nextn_layer; cached only when the module is loaded); 0 if none. */
size_t model_kv_bytes_per_token_mtp(const model_hparams *hp, int type);
/* Weight bytes one decode step of the main model reads: one embedding row, every dense matrix,
 * n_expert_used routed experts plus the shared ones per MoE layer, norms and biases (F32), the
 * output matrix; MLA in the absorbed form. Not the MTP module. */
size_t model_weight_bytes_per_token(const model *m);
/* Weights plus the KV cache a token attending to n_ctx cached positions (its own included) reads. */
size_t model_bytes_per_token(const model *m, int64_t n_ctx);
/* Elements and bytes of every tensor in the model's file(s) (llama.cpp's "params" and "size"). */
void model_file_totals(const model *m, int64_t *n_params, size_t *n_bytes);

#endif
