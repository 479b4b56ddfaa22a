/* gguf_keys.h — the one table of `<arch>.*` GGUF metadata keys and the model_hparams field each
 * one holds. gguf_hparams.c reads through it; conversion and synth write through it, so a key
 * is written exactly the way it is read back.
 *
 * Owns: the key names, their value types, which architectures a key is written for, and the
 * write-side derivations (block_count counts MTP modules, key_length of deepseek2 is nope+rope,
 * ...), each the inverse of a fixup in gguf_hparams.c. Does not own: general.* beyond
 * architecture/name/alignment, tokenizer.* (tokenizer/), or what the fields mean (hparams.h). */
#ifndef WHALE_FORMATS_GGUF_KEYS_H
#define WHALE_FORMATS_GGUF_KEYS_H

#include <stddef.h>

#include "formats/gguf.h"
#include "formats/hparams.h"

typedef enum gguf_key_kind {
    GGUF_KEY_U32,     /* int64_t field, written as UINT32, read from any integer type */
    GGUF_KEY_F32,     /* float field */
    GGUF_KEY_BOOL,    /* int field (0/1); a wrong type on read is ignored, as llama.cpp does */
    GGUF_KEY_GATING,  /* moe_gating field as llama.cpp's numbers: 1 softmax, 2 sigmoid */
    GGUF_KEY_ROPE_TYPE /* rope_scaling field as a string: "yarn", "linear" */
} gguf_key_kind;

/* Which architectures a key is written for (reading takes every key whatever the arch, so
 * `whale info` shows what a file carries). */
#define GGUF_KEY_DENSE 1u     /* qwen2, llama */
#define GGUF_KEY_DEEPSEEK2 2u /* deepseek2 */
#define GGUF_KEY_ALL 3u

typedef enum gguf_key_when {
    GGUF_KEY_ALWAYS = 0,
    GGUF_KEY_IF_SET,  /* only when the field is non-zero */
    GGUF_KEY_IF_YARN  /* only when rope_scaling_type is YaRN */
} gguf_key_when;

typedef struct gguf_key {
    const char *key;    /* after "<arch>.": "embedding_length" */
    size_t field;       /* offsetof(model_hparams, ...) */
    gguf_key_kind kind;
    unsigned archs;     /* GGUF_KEY_DENSE | GGUF_KEY_DEEPSEEK2 */
    gguf_key_when when;
} gguf_key;

/* The table, in the order keys are written. */
extern const gguf_key gguf_keys[];
extern const size_t gguf_n_keys;

/* Fill the table's fields of hp from f's `<arch>.*` keys (fields of absent keys untouched).
 * Returns 0, or WHALE_E_FORMAT with a message when a number key has a non-number type. */
int gguf_keys_read(model_hparams *hp, const gguf_file *f, const char *arch, whale_err *err);

/* Write general.architecture, general.name, general.alignment and the table's keys for hp's
 * architecture. Returns 0, WHALE_E_ARG for an unknown architecture, or WHALE_E_NOMEM. */
int gguf_keys_write(gguf_writer *w, const model_hparams *hp);

#endif
