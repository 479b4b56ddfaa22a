/* cli.h — subcommands of the `whale` binary and the helpers they share. */
#ifndef WHALE_CLI_H
#define WHALE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "base/progress.h"
#include "convert/convert.h"
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
int cmd_merge(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_data(int argc, char **argv);           /* cmd_data.c: prepare, and dispatch */
int cmd_data_tokenizer(int argc, char **argv); /* cmd_data_tokenizer.c */
int cmd_train(int argc, char **argv);
int cmd_grpo(int argc, char **argv);    /* cmd_grpo.c: rl/grpo_run.c's loop */
int cmd_distill(int argc, char **argv); /* cmd_distill.c: rl/distill.c */
int cmd_train_plot(int argc, char **argv); /* whale train plot RUN_DIR */
int cmd_eval(int argc, char **argv);       /* cmd_eval.c: whale.h, src/rl and src/base only */

/* --kv-type VALUE: f32 (0), f16 (1), bf16 (2) or q8 (3) into *type; -1 with a message otherwise. */
int cli_kv_type(const char *cmd, const char *v, int *type);
#define CLI_KV_TYPE_HELP                                                                                   \
    "  --kv-type T           KV cache rows as f32 (default), f16 or bf16: half the memory and the\n"  \
    "                        bytes attention reads; bf16 also computes attention in bfloat16\n"      \
    "                        (faster at long context on CPUs with AVX512_BF16; values rounded);\n"   \
    "                        q8 (MLA models): int8 latents with per-row scales, a quarter of F32,\n" \
    "                        attention in integers (fastest at long context with AVX-512 VNNI)\n"
/* Resolve a -m argument (whale_model_resolve: a name, an alias, a path or "default") into a
 * static buffer; on failure prints the reason and exits with status 1. */
const char *cli_model_path(const char *arg);

/* Token ids from a list like "1 17 200" (spaces or commas). 0, or -1 with a message printed
 * (not a number, or negative). */
int cli_parse_ids(const char *cmd, const char *list, whale_ids *out);

/* "1.23 GiB" into buf. */
const char *cli_bytes(double bytes, char *buf, size_t cap);
/* 1 if path looks like a safetensors checkpoint file or index (not a directory). */
int cli_is_safetensors_path(const char *path);

/* Open a tokenizer from a .gguf, a tokenizer.json, or a directory holding one. */
struct tokenizer;
int cli_open_tokenizer(const char *path, struct tokenizer **tok, whale_err *err);

/* ---- convert, quantize: progress and the closing summary (cli_convert.c) ------------------- */
typedef struct cli_convert_ui {
    const char *cmd;   /* "convert": notes print as "whale convert: ..." */
    const char *label; /* the progress bar's label */
    progress bar;
    double t0, secs; /* the write's start and length */
} cli_convert_ui;

/* Hooks that draw ui's progress bar and print notes on stderr. ui must outlive the hooks. */
convert_hooks cli_convert_hooks(cli_convert_ui *ui);
/* "wrote PATH: N tensors (Q4_K 120, F32 49), 1.0 MiB -> 0.5 MiB in 0.20 s" and a line per
 * asked type whose rows fell back, on stderr. */
void cli_convert_print(const cli_convert_ui *ui, const char *path, const convert_report *rep);

#endif
