/* load.h — where a training run's model comes from besides --init: a Hugging Face config.json
 * (--config: its shape, weights then drawn fresh) or a model Whale loads (--from: a GGUF file,
 * possibly quantized, or a Hugging Face directory in F32/BF16/F16, including whale train's own
 * checkpoints), every tensor dequantized to F32 master weights. The hyper-parameters are read by
 * the model loader's own parsers (formats/hf_config.h, formats/gguf_hparams.h) and mapped onto
 * the trainer's dense (Qwen2) and DeepSeek-V3 shapes; what those shapes cannot express is
 * refused with the reason. */
#ifndef WHALE_TRAIN_LOAD_H
#define WHALE_TRAIN_LOAD_H

#include "train/deepseek.h"
#include "train/dense.h"
#include "train/trainer.h"
#include "whale.h"

typedef struct tr_shape {
    int deepseek; /* 1: ds holds the shape, 0: dense */
    tr_dense_cfg dense;
    tr_ds_cfg ds;
    char arch[32]; /* as the source named it, for messages */
} tr_shape;

/* The shape of config.json at path (a file, or a directory holding one). Returns 0, or a
 * negative code with err saying which field is missing or what the shapes cannot express
 * (another architecture, rope scaling, sliding windows, ...). */
int tr_shape_from_config(tr_shape *s, const char *path, whale_err *err);

/* The shape of a model file or directory: a .gguf (its metadata) or a Hugging Face directory
 * (its config.json). Same return convention. */
int tr_shape_from_model(tr_shape *s, const char *path, whale_err *err);

/* Every parameter of P from the model at path (GGUF names mapped to Hugging Face's; quantized
 * types dequantized). Returns 0, or a negative code naming the tensor that is missing, of the
 * wrong size or of a type that cannot be trained from (FP8 with block scales). */
int tr_load_weights(tr_params *P, const char *path, whale_err *err); /* LoRA adapters skipped */

/* A model ready to train, from a model file or directory (as tr_shape_from_model reads it): the
 * shape's parameters laid out and its weights loaded; with lora (rank > 0; dense models only),
 * adapters beside them, drawn as tr_init_adapters does from seed. */
typedef struct tr_loaded {
    int deepseek;
    tr_dense dense;
    tr_ds ds;
    tr_model model; /* over dense or ds */
} tr_loaded;

/* Returns 0, or a negative code with err set (what tr_shape_from_model, the shape's init or
 * tr_load_weights said; WHALE_E_UNSUPPORTED for LoRA on a DeepSeek model). Free with
 * tr_loaded_free, also after a failure. */
int tr_loaded_open(tr_loaded *l, const char *path, const tr_lora *lora, uint64_t seed, whale_err *err);
void tr_loaded_free(tr_loaded *l);

#endif
