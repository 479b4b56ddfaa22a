/* convert.h — writing model files: the streaming quantized GGUF writer, Hugging Face -> GGUF
 * conversion, GGUF -> GGUF re-quantization, and random-weight files of real shapes (synth).
 *
 * Owns: which tensor of a checkpoint becomes which GGUF tensor (names, stacking, permutations),
 * the weight-type rule (f16, q4_k_m, ...), and producing each tensor's bytes while the file is
 * written. Does not own: parsing the inputs (formats/), the GGUF key table (formats/gguf_keys.c),
 * block layouts (formats/dtype.c, quantize.c), vocabularies (tokenizer/), or any printing: every
 * function returns 0 or a negative WHALE_E_* with a message in err, and progress and notes
 * reach the caller through convert_hooks. Uses only formats/, base/, tokenizer/ and the public
 * names of model/model.h. */
#ifndef WHALE_CONVERT_CONVERT_H
#define WHALE_CONVERT_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"
#include "formats/dtype_summary.h"
#include "formats/hparams.h"
#include "whale.h"

struct gguf_writer;

/* ---- weight types -------------------------------------------------------------------------- */
typedef struct convert_wtype {
    const char *name; /* "q4_k_m", as typed */
    whale_dtype type; /* the type of most weight matrices */
    int mix;          /* 1: q4_k_m, some matrices get Q6_K (convert_wtype_for) */
    uint32_t ftype;   /* general.file_type: llama.cpp's LLAMA_FTYPE numbering */
} convert_wtype;

/* "f32|f16|bf16|q8_0|q4_k|q6_k|q4_k_m" for usage lines. */
#define CONVERT_WTYPES "f32|f16|bf16|q8_0|q4_k|q6_k|q4_k_m"
/* The type called s (any case), or NULL. */
const convert_wtype *convert_wtype_parse(const char *s);
/* The type weight matrix `name` (a GGUF tensor name) wants under t. Q4_K_M: Q6_K for the names
 * containing "output.weight" (the head and attn_output), "attn_v." and "ffn_down" (dense, shared
 * and stacked expert projections), Q4_K for the rest. Before the block-size fallback. */
whale_dtype convert_wtype_for(const convert_wtype *t, const char *name);
/* want when rows of n_in elements fill its blocks; else Q8_0 when they fill its 32, else F16. */
whale_dtype convert_fit_type(whale_dtype want, int64_t n_in);

/* ---- what the caller sees of a long write -------------------------------------------------- */
typedef enum convert_phase { CONVERT_BEGIN, CONVERT_UPDATE, CONVERT_END } convert_phase;

typedef struct convert_hooks {
    /* Called with BEGIN (done 0) before the first tensor, UPDATE as bytes are made (a few
     * hundred times at most), END once after the last, even on failure. NULL: not called. */
    void (*progress)(void *ctx, convert_phase phase, double done, double total);
    /* A message that does not stop the work ("skipping tensor ..."). NULL: dropped. */
    void (*note)(void *ctx, const char *msg);
    void *ctx;
} convert_hooks;

/* Rows whose length did not fill the asked type's blocks, per type asked for. */
#define CONVERT_MAX_FALLBACK 16 /* more than the types convert_wtype_parse knows */

typedef struct convert_report {
    dtype_summary written; /* tensors by written type, most tensors first */
    struct {
        whale_dtype want;
        uint64_t n_q8_0, n_f16; /* written as Q8_0 / as F16 instead */
    } fallback[CONVERT_MAX_FALLBACK];
    int n_fallback; /* in the order the first such tensor came */
    double in_bytes, out_bytes;
} convert_report;

/* ---- the streaming writer ----------------------------------------------------------------------
 * Each output tensor is described as rows to read from a mapped input (any dequantizable type,
 * FP8 block scales, stacked experts, Llama's q/k row order) and a type to write; the tensor's
 * bytes are made while the file is written (every core quantizing rows), so only the largest
 * tensor, never the model, is held in memory. */
typedef struct convert_writer convert_writer;

typedef struct convert_src {
    whale_dtype type;          /* element type of the source rows */
    int64_t n_parts;           /* tensors stacked one after another (experts); 1 otherwise */
    const void *const *data;   /* n_parts pointers, borrowed: valid until convert_writer_write returns */
    const float *const *scale; /* NULL, or n_parts FP8 128x128 block scales (NULL entries: none) */
    int64_t permute_head_dim;  /* > 0: Llama q/k rows reordered from HF's halves to pairs */
    int copy;                  /* 1: the bytes are written as they are (type in == type out) */
    /* A low-rank update added to each row (one 2-D part, no permutation): row i += B[i,:] A,
     * lora_b (n_rows, lora_r) with the adapter's scale already in, lora_a (lora_r, n_in);
     * borrowed like data. NULL: none. */
    const float *lora_a, *lora_b;
    int64_t lora_r;
} convert_src;

convert_writer *convert_writer_init(void); /* NULL on OOM */
void convert_writer_free(convert_writer *o);
/* The metadata goes here (borrowed: valid until convert_writer_free). */
struct gguf_writer *convert_writer_gguf(convert_writer *o);
/* One tensor, in file order: ne as in GGUF (ne[0] = row length), type written, want = the type
 * asked for (differs when rows did not fill want's blocks). `owned`, if not NULL, is freed with
 * o (also on failure). Returns 0, WHALE_E_NOMEM, or WHALE_E_ARG when the description is not one
 * the writer can produce. */
int convert_writer_add(convert_writer *o, const char *name, whale_dtype want, whale_dtype type, int n_dims,
                       const int64_t *ne, const convert_src *src, void *owned, whale_err *err);
/* Write path (through path.part, renamed when complete; nothing left behind on failure) and
 * fill rep (may be NULL; rep->in_bytes is the caller's). Returns 0 or a negative status. */
int convert_writer_write(convert_writer *o, const char *path, const convert_hooks *hooks, convert_report *rep,
                         whale_err *err);

/* ---- conversions --------------------------------------------------------------------------- */
/* Hugging Face checkpoint `in` (directory, .safetensors or .index.json; Qwen2, Llama, DeepSeek
 * V2/V3 with FP8 weights) to GGUF `out` with weight type t; tokenizer.json beside it is embedded.
 * mtp: keep DeepSeek-V3's MTP module (WHALE_E_ARG when there is none). Returns 0 or a negative
 * status; rep (may be NULL) says what was written. */
int convert_hf(const char *in, const char *out, const convert_wtype *t, int mtp, const convert_hooks *hooks,
               convert_report *rep, whale_err *err);
/* GGUF `in` to GGUF `out` with its matrices in type t: metadata copied as it is but
 * general.file_type; tensors already of their target type (and non-float ones) copied. */
int convert_gguf(const char *in, const char *out, const convert_wtype *t, const convert_hooks *hooks,
                 convert_report *rep, whale_err *err);

/* GGUF `base` (a dense Qwen2/Llama model) with the PEFT LoRA adapter at `adapter` baked in, to
 * GGUF `out`: every matrix the adapter changes is dequantized, W' = W + scale B A, and written as
 * `type` (F32, F16 or Q8_0; re-quantizing to 4 bits would round a small update away), every
 * other tensor and all metadata copied as they are. Returns 0, or WHALE_E_UNSUPPORTED (a
 * DeepSeek base, a type other than those three), WHALE_E_FORMAT (a module the base does not
 * have, a shape that differs) or the readers' errors, with a message. */
/* chat_template, when not NULL, replaces the output's tokenizer.chat_template. */
int convert_merge(const char *base, const char *adapter, const char *out, whale_dtype type,
                  const char *chat_template, const convert_hooks *hooks, convert_report *rep, whale_err *err);

/* ---- synthetic models ---------------------------------------------------------------------- */
/* The hyperparameters of shape `name` (see synth_shape_names), or WHALE_E_ARG. */
int synth_shape(const char *name, model_hparams *hp, whale_err *err);
/* "r1-distill-qwen-1.5b, ..." for help text. */
extern const char *const synth_shape_names;

typedef struct synth_opts {
    const char *shape;
    const convert_wtype *type;
    uint64_t seed;
    /* A vocabulary to embed (.gguf: its tokenizer.* keys; else a tokenizer.json), or NULL for
     * none. The model's n_vocab follows it. */
    const char *vocab;
} synth_opts;

typedef struct synth_report {
    model_hparams hp;
    size_t n_tensors;
    double bytes;    /* tensor data */
    int64_t n_vocab; /* tokens embedded, 0 for none */
} synth_report;

/* Describe the model first (synth_plan: shape checked, vocabulary read, sizes known), then write
 * it with random weights: tensors generated and quantized one at a time while the file is
 * written, so a file larger than memory is fine. */
typedef struct synth_plan synth_plan;
int synth_plan_init(synth_plan **out, const synth_opts *o, synth_report *rep, whale_err *err);
int synth_plan_write(synth_plan *p, const char *path, whale_err *err);
void synth_plan_free(synth_plan *p);

#endif
