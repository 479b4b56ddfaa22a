/* hf_config.h — Hugging Face config.json -> model_hparams.
 *
 * Owns: reading a (size-capped) config.json and mapping its fields for the architectures Whale
 * runs (Qwen2, Llama, DeepSeek-V2/V3) onto model_hparams, with the defaults transformers applies
 * when a field is absent. Does not own: the weights (safetensors.c) or the GGUF view of the same
 * numbers (gguf_hparams.c). */
#ifndef WHALE_FORMATS_HF_CONFIG_H
#define WHALE_FORMATS_HF_CONFIG_H

#include <stddef.h>

#include "formats/hparams.h"
#include "whale.h"

/* Real config.json files are a few KiB; 16 MiB bounds what a wrong path makes us read. */
#define HF_CONFIG_MAX_BYTES (16u << 20)

/* Read the config.json at path into *hp (zeroed first). An unknown architecture is not an error:
 * hp->arch is MODEL_ARCH_UNKNOWN and hp->arch_name says what the file named, so `whale info` can
 * still show it. Returns 0, or a negative status with "path: what is wrong" in err when the file
 * cannot be read, is not a JSON object, lacks hidden_size / num_hidden_layers /
 * num_attention_heads, or has a field of the wrong type or range. */
int hf_config_load(model_hparams *hp, const char *path, whale_err *err);
/* Same over config text in memory (tests, fuzzers); name is used in messages. */
int hf_config_parse(model_hparams *hp, const char *json, size_t len, const char *name,
                    whale_err *err);

#endif
