/* gguf.h — GGUF (v2, v3) model files: a reader over mmap and a writer.
 *
 * Owns: parsing and validating the header (metadata key/values, tensor infos) of untrusted
 * files, typed access to metadata, and views of tensor data in the mapped file; writing new
 * files (tests, vocab extraction, quantize, synth).
 * Does not own: what the metadata means for a model (gguf_hparams.c, tokenizer/tokenizer.c) or
 * dequantization (dtype.c). Every count, length and offset read from a file is checked against
 * the bytes that remain before it is used, so a hostile file costs at most its own size. */
#ifndef WHALE_FORMATS_GGUF_H
#define WHALE_FORMATS_GGUF_H

#include <stdint.h>
#include <stdio.h>

#include "base/mapfile.h"
#include "formats/dtype.h"
#include "whale.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
/* ggml tensors have at most 4 dimensions; more is a corrupt file. */
#define GGUF_MAX_DIMS 4
/* A nested array deeper than this is not something any converter writes; the limit keeps the
 * validating walk's recursion bounded. */
#define GGUF_MAX_ARRAY_DEPTH 8
/* Keys are short identifiers ("qwen2.attention.head_count"); 64 KiB is far past any real one
 * and bounds what a corrupt length can make us scan. */
#define GGUF_MAX_KEY_LEN 65535

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* A string inside the mapped file: not NUL-terminated. Borrowed. */
typedef struct gguf_str {
    const char *s;
    uint64_t n;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    const unsigned char *val; /* borrowed: the value's bytes in the file (for arrays: elements) */
    /* arrays only */
    gguf_type arr_type;
    uint64_t arr_n;
    uint64_t *str_offs; /* owned; string arrays only: offset of element i's length field from val */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    whale_dtype type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (contiguous) dimension, as in ggml */
    uint64_t offset;           /* from the start of the data section */
    size_t nbytes;
    const void *data; /* borrowed: valid while the file is open; NULL if the data is missing */
} gguf_tensor;

typedef struct gguf_file {
    mapfile map;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gguf_kv *kv; /* owned array */
    uint64_t n_tensors;
    gguf_tensor *tensors; /* owned array */
    uint64_t data_offset; /* start of the tensor data section in the file */
    uint64_t n_missing;   /* tensors whose data lies past the end (only with GGUF_OPEN_METADATA_ONLY) */
} gguf_file;

enum {
    /* Accept a file whose tensor data is cut short (a partial download): metadata stays
     * readable, tensors past the end get data == NULL and are counted in n_missing. */
    GGUF_OPEN_METADATA_ONLY = 1,
};

/* Open and validate path. Returns 0, or a negative status with "path: what is wrong" in err.
 * On failure f is left closed (gguf_close is still safe). */
int gguf_open(gguf_file *f, const char *path, int flags, whale_err *err);
/* Same over a copy of a memory buffer (fuzzing, tests). */
int gguf_open_memory(gguf_file *f, const void *data, size_t size, int flags, whale_err *err);
void gguf_close(gguf_file *f);

/* Lookups by key; NULL / -1 when absent. */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);
int64_t gguf_find_tensor_index(const gguf_file *f, const char *name);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters. Return 0 and set *out, WHALE_E_NOTFOUND when the key is absent, or
 * WHALE_E_FORMAT (message in err) when it has an incompatible type. Integer getters accept any
 * integer type whose value fits; float getters accept F32/F64 and integers. */
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, whale_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, whale_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, int *out, whale_err *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, whale_err *err);
/* Element i of a string array (caller checks i < kv->arr_n and kv->arr_type == STRING). */
gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i);
/* Element i of a numeric array, converted. */
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);

const char *gguf_type_name(gguf_type t);
size_t gguf_type_size(gguf_type t); /* 0 for STRING/ARRAY */

/* ---- writer ---------------------------------------------------------------------------- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_init(void); /* NULL when out of memory */
void gguf_writer_free(gguf_writer *w);
/* Scalars; the value is copied. `type` must be a scalar gguf_type. Returns 0 or WHALE_E_NOMEM/ARG. */
int gguf_writer_add_scalar(gguf_writer *w, const char *key, gguf_type type, const void *val);
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(gguf_writer *w, const char *key, int v);
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s);
/* Numeric array of n elements of scalar type elem (data copied). */
int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data, uint64_t n);
/* String array: strs[i] with lens[i] bytes (lens NULL: NUL-terminated). */
int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n);
/* Copy one key/value (any type, nested arrays included) from an open file. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* A tensor; data is borrowed until gguf_writer_write returns (NULL: write zeros). */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, whale_dtype type, int n_dims,
                           const int64_t *ne, const void *data);
/* A tensor whose bytes fill(ctx, name, buf, nbytes) produces at write time (returns 0 on
 * success), so a file larger than memory can be written one tensor at a time. */
typedef int (*gguf_fill_fn)(void *ctx, const char *name, void *buf, size_t nbytes);
int gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, whale_dtype type, int n_dims, const int64_t *ne,
                                gguf_fill_fn fill, void *ctx);
/* Write everything to path (v3, alignment from general.alignment if set, else 32). */
int gguf_writer_write(gguf_writer *w, const char *path, whale_err *err);

#endif
