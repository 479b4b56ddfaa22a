/* cli.h — subcommands of the `whale` binary and the helpers they share. */
#ifndef WHALE_CLI_H
#define WHALE_CLI_H

#include <stddef.h>

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

#endif
