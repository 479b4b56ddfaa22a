/* cli.h — subcommands of the `whale` binary and the helpers they share. */
#ifndef WHALE_CLI_H
#define WHALE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"
#include "formats/hparams.h"
#include "whale.h"

int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_admin(int argc, char **argv);

/* --kv-type VALUE: f32 (0) or f16 (1) into *f16; -1 with a message otherwise. */
int cli_kv_type(const char *cmd, const char *v, int *f16);
#define CLI_KV_TYPE_HELP                                                                                   \
    "  --kv-type T           KV cache rows as f32 (default) or f16: half the memory and the bytes\n" \
    "                        attention reads, values rounded to half precision\n"
/* $WHALE_HOME/<sub> (WHALE_HOME defaults to ~/.cache/whale) into buf. */
const char *cli_home_path(const char *sub, char *buf, size_t cap);
/* Resolve a -m argument: NULL or "default" -> $WHALE_HOME/models/default.gguf. Returns a
 * pointer to a static buffer or to arg itself. */
const char *cli_model_path(const char *arg);

/* Print hyperparameters, one "  name  value" line per non-zero field (cmd_info.c). */
void info_print_hparams(const model_hparams *hp);

/* Token ids from a list like "1 17 200" (spaces or commas). 0, or -1 with a message printed
 * (not a number, or negative). */
struct tok_ids;
int cli_parse_ids(const char *cmd, const char *list, struct tok_ids *out);

/* "1.23 GiB" into buf. */
const char *cli_bytes(double bytes, char *buf, size_t cap);
/* 1 if path looks like a safetensors checkpoint file or index (not a directory). */
int cli_is_safetensors_path(const char *path);

/* Open a tokenizer from a .gguf, a tokenizer.json, or a directory holding one. */
struct tokenizer;
int cli_open_tokenizer(const char *path, struct tokenizer **tok, whale_err *err);

int info_print_safetensors(const char *path); /* info_safetensors.c: 0, or 1 after an error */

/* GGUF metadata (general.*, <arch>.*) for hp (cmd_convert.c). Returns 0 or nonzero (OOM). */
struct gguf_writer;
int cli_write_hparams(struct gguf_writer *w, const model_hparams *hp);

/* ---- weight types written by convert, quantize and synth (cli_util.c) --------------------- */
typedef struct cli_wtype {
    const char *name;  /* "q4_k_m", as typed */
    whale_dtype type;  /* the type of most weight matrices */
    int mix;           /* 1: q4_k_m, some matrices get Q6_K (cli_wtype_for) */
    uint32_t ftype;    /* general.file_type: llama.cpp's LLAMA_FTYPE numbering */
} cli_wtype;

/* "f32|f16|bf16|q8_0|q4_k|q6_k|q4_k_m" for usage lines. */
#define CLI_WTYPES "f32|f16|bf16|q8_0|q4_k|q6_k|q4_k_m"
/* The type called s (any case), or NULL. */
const cli_wtype *cli_wtype_parse(const char *s);
/* The type weight matrix `name` (a GGUF tensor name) wants under t. Q4_K_M: Q6_K for the
 * names containing "output.weight" (the head and attn_output), "attn_v." and "ffn_down" (dense,
 * shared and stacked expert projections), Q4_K for the rest. Before the block-size fallback. */
whale_dtype cli_wtype_for(const cli_wtype *t, const char *name);
/* want when rows of n_in elements fill its blocks; else Q8_0 when they fill its 32, else F16. */
whale_dtype cli_fit_type(whale_dtype want, int64_t n_in);

/* ---- writing a GGUF tensor by tensor (cmd_quantize.c) --------------------------------------
 * Convert and quantize both describe each output tensor as rows to read from a mapped input
 * (any dequantizable type, FP8 block scales, stacked experts, Llama's q/k row order) and a type
 * to write; qout_write then produces each tensor while the file is written (both cores
 * quantizing rows), so only the largest tensor, never the model, is held in memory. */
typedef struct qout qout;

typedef struct qout_src {
    whale_dtype type;          /* element type of the source rows */
    int64_t n_parts;           /* tensors stacked one after another (experts); 1 otherwise */
    const void *const *data;   /* n_parts pointers, borrowed: valid until qout_write returns */
    const float *const *scale; /* NULL, or n_parts FP8 128x128 block scales (NULL entries: none) */
    int64_t permute_head_dim;  /* > 0: Llama q/k rows reordered from HF's halves to pairs */
    int copy;                  /* 1: the bytes are written as they are (type in == type out) */
} qout_src;

/* A writer whose progress bar says `label`; messages start with "whale CMD:". NULL on OOM. */
qout *qout_init(const char *cmd, const char *label);
void qout_free(qout *o);
/* The metadata goes here (borrowed: valid until qout_free). */
struct gguf_writer *qout_gguf(qout *o);
/* One tensor, in file order: ne as in GGUF (ne[0] = row length), type written, want = the type
 * asked for (differs when rows did not fill want's blocks; summed up at the end). `owned`, if
 * not NULL, is freed by qout_free. Returns 0, or -1 with a message printed. */
int qout_add(qout *o, const char *name, whale_dtype want, whale_dtype type, int n_dims, const int64_t *ne,
             const qout_src *src, void *owned);
/* Write path (through path.part, renamed when complete), then print the summary: tensors by
 * type, in_bytes and the file's size in MiB, seconds. Returns 0, or -1 with a message printed
 * (no file left behind). */
int qout_write(qout *o, const char *path, double in_bytes);

/* HF checkpoint `in` to GGUF `out` with weight type t (cmd_convert.c; `whale convert` and
 * `whale quantize` on safetensors input); mtp: keep the MTP module (error when there is none).
 * Returns the exit status: 0, or 1 after a message. */
int cli_convert_hf(const char *cmd, const char *in, const char *out, const cli_wtype *t, int mtp);

#endif
