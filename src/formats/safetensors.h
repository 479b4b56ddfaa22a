/* safetensors.h — Hugging Face safetensors checkpoints: a validating reader over mmap.
 *
 * Owns: parsing the 8-byte header length and JSON header of untrusted files, mapping the
 * safetensors dtype names onto whale_dtype, resolving a sharded checkpoint (a directory or a
 * `model.safetensors.index.json`) into one sorted table of tensors, and views of tensor data
 * in the mapped shards (each shard mapped once).
 * Does not own: what the tensors mean (model/weights.c), config.json (hf_config.c), or
 * dequantization (dtype.c). Every shape, dtype and offset is checked against the bytes of its
 * shard before a view is handed out, so a hostile file costs at most its own size. */
#ifndef WHALE_FORMATS_SAFETENSORS_H
#define WHALE_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/mapfile.h"
#include "formats/dtype.h"
#include "whale.h"

/* No checkpoint has tensors of more than a handful of dimensions (conv weights: 5); 8 leaves
 * room and keeps st_tensor a fixed size. More is treated as corruption. */
#define ST_MAX_DIMS 8
/* The JSON header of the largest real checkpoints (DeepSeek-V3 shards, ~1000 tensors each) is
 * well under 1 MiB; the reference implementation refuses headers over 100 MB. Checked before
 * anything is allocated, so a corrupt length cannot ask us for 2^63 bytes. */
#define ST_MAX_HEADER_BYTES (100u << 20)
/* model.safetensors.index.json of DeepSeek-V3 (~92k entries) is ~9 MiB; 64 MiB bounds what a
 * corrupt index makes us read and parse. */
#define ST_MAX_INDEX_BYTES (64u << 20)
/* DeepSeek-V3 ships 163 shards; 4096 bounds the open mappings a hostile index can request. */
#define ST_MAX_SHARDS 4096

typedef struct st_tensor {
    char *name; /* owned */
    whale_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS]; /* as in the file (row-major): shape[n_dims-1] is contiguous */
    int64_t n_elems;            /* product of shape (1 for a scalar) */
    const void *data;           /* borrowed: valid while the model is open */
    size_t nbytes;
    int shard; /* index into st_model.shards */
} st_tensor;

typedef struct st_kv {
    char *key;   /* owned */
    char *value; /* owned */
} st_kv;

typedef struct st_model {
    char *path; /* owned: the path given to st_open (for messages) */
    char *dir;  /* owned: directory holding the shards (where config.json would be); "." for memory */
    int n_shards;
    mapfile *shards; /* owned array */
    size_t n_tensors;
    st_tensor *tensors; /* owned array, sorted by name (strcmp) */
    size_t n_metadata;
    st_kv *metadata; /* owned: every shard's "__metadata__" entries, first occurrence of a key wins */
} st_model;

/* Open a checkpoint: a .safetensors file, a model.safetensors.index.json (its weight_map
 * names the shards, which sit beside it), or a directory (its index json, else
 * model.safetensors, else every *.safetensors in it, in name order). Tensor names must be unique
 * across shards. Returns 0, or a negative status with "path: what is wrong (hint)" in err; on
 * failure m is left closed (st_close is still safe). */
int st_open(st_model *m, const char *path, whale_err *err);
/* Same over a copy of one in-memory safetensors file (fuzzers, tests). */
int st_open_memory(st_model *m, const void *data, size_t size, whale_err *err);
/* Release everything; safe on a zeroed or already closed model. */
void st_close(st_model *m);

/* The tensor called name, or NULL. The pointer is borrowed: valid while m is open. */
const st_tensor *st_find(const st_model *m, const char *name);
/* The value of __metadata__ key, or NULL. Borrowed. */
const char *st_metadata(const st_model *m, const char *key);

/* Safetensors' own spelling of t ("BF16", "F8_E4M3", ...; U8 prints as "U8", also for BOOL);
 * "?" for a type safetensors cannot hold. */
const char *st_dtype_name(whale_dtype t);
/* The whale_dtype for a safetensors dtype name. Returns 0 and sets *out, or -1 if unknown. */
int st_dtype_parse(const char *name, whale_dtype *out);

#endif
