/* peft.h — LoRA adapters in Hugging Face PEFT's layout: a directory holding
 * `adapter_config.json` (r, lora_alpha, target_modules, use_rslora, ...) and
 * `adapter_model.safetensors` (per module `base_model.model.<module>.lora_A.weight` (r, n_in)
 * and `...lora_B.weight` (n_out, r); `.lora_A.default.weight` is accepted too).
 *
 * Owns: reading and validating both files (untrusted: the JSON through cJSON with a size bound,
 * the tensors through formats/safetensors.c's checked reader), the scale rule, and writing an
 * adapter back in the same layout (so a trainer's adapters load in PEFT and here alike).
 * Does not own: what a module name means for a model (model/lora.c maps them onto the dense
 * layers' matrices; convert/merge.c onto GGUF tensors). Modules are kept by their Hugging Face
 * path ("model.layers.3.self_attn.q_proj"), matrices as F32 copies. */
#ifndef WHALE_FORMATS_PEFT_H
#define WHALE_FORMATS_PEFT_H

#include <stdint.h>

#include "whale.h"

/* Ranks above this are not low-rank adaptation of any model Whale runs (PEFT's recipes use
 * 4..256); the bound keeps a hostile config from sizing scratch buffers. */
#define PEFT_MAX_RANK 4096
/* adapter_config.json is a few hundred bytes; 1 MiB bounds what a corrupt one makes us parse. */
#define PEFT_MAX_CONFIG_BYTES (1u << 20)
/* Longest module path kept ("model.layers.61.self_attn.q_proj" is 32). */
#define PEFT_MAX_NAME 256

typedef struct peft_module {
    char name[PEFT_MAX_NAME]; /* Hugging Face module path, without "base_model.model." */
    int64_t n_in, n_out;
    float *a; /* (r, n_in) owned */
    float *b; /* (n_out, r) owned, as in the file (not scaled) */
} peft_module;

typedef struct peft_adapter {
    int64_t r;
    double alpha;
    int rslora;     /* use_rslora: scale alpha/sqrt(r), else alpha/r */
    float scale;    /* what B·A is multiplied by */
    char **targets; /* owned: target_modules as listed (NULL when given as a regex string) */
    int n_targets;
    peft_module *mods; /* owned, sorted by name */
    int n_mods;
} peft_adapter;

/* The scale PEFT applies to B·A: alpha/sqrt(r) with rslora, else alpha/r. */
float peft_scale(double alpha, int64_t r, int rslora);

/* Load the adapter at path: a directory, or its adapter_model.safetensors or
 * adapter_config.json (the other file is read from beside it). Returns 0, or WHALE_E_IO /
 * WHALE_E_FORMAT / WHALE_E_UNSUPPORTED / WHALE_E_NOMEM with "path: what is wrong" in err: bad
 * JSON, a rank out of 1..PEFT_MAX_RANK, options Whale does not apply (DoRA, fan_in_fan_out,
 * LoRA biases, per-module rank or alpha patterns, modules_to_save), a tensor that is not a
 * LoRA A/B matrix, a module with only one of A and B, shapes that disagree with r. On failure a
 * is left empty (peft_free is still safe). */
int peft_load(peft_adapter *a, const char *path, whale_err *err);
void peft_free(peft_adapter *a);

/* Write a in PEFT's layout into directory dir (created if missing; files replaced through
 * .part names): adapter_config.json (peft_type LORA, r, lora_alpha, use_rslora, target_modules,
 * base_model (may be NULL)) and adapter_model.safetensors (F32, names without ".default").
 * Returns 0 or a negative status. */
int peft_write(const char *dir, const peft_adapter *a, const char *base_model, whale_err *err);

#endif
