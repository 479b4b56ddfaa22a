/* dtype.h — element types of model tensors and their block layouts.
 *
 * Owns: the table of types (GGUF's numbering, so a GGUF type id is a whale_dtype) with block
 * size and bytes per block, byte-size arithmetic that cannot overflow, and the scalar
 * dequantize of every type (the reference the fast kernels are tested against).
 * Does not own: fast kernels (kernels/), file parsing (gguf.c, safetensors.c). */
#ifndef WHALE_FORMATS_DTYPE_H
#define WHALE_FORMATS_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum whale_dtype {
    WHALE_DTYPE_F32 = 0,
    WHALE_DTYPE_F16 = 1,
    WHALE_DTYPE_Q4_0 = 2,
    WHALE_DTYPE_Q4_1 = 3,
    WHALE_DTYPE_Q5_0 = 6,
    WHALE_DTYPE_Q5_1 = 7,
    WHALE_DTYPE_Q8_0 = 8,
    WHALE_DTYPE_Q8_1 = 9,
    WHALE_DTYPE_Q2_K = 10,
    WHALE_DTYPE_Q3_K = 11,
    WHALE_DTYPE_Q4_K = 12,
    WHALE_DTYPE_Q5_K = 13,
    WHALE_DTYPE_Q6_K = 14,
    WHALE_DTYPE_Q8_K = 15,
    WHALE_DTYPE_I8 = 24,
    WHALE_DTYPE_I16 = 25,
    WHALE_DTYPE_I32 = 26,
    WHALE_DTYPE_I64 = 27,
    WHALE_DTYPE_F64 = 28,
    WHALE_DTYPE_BF16 = 30,
    /* Not GGUF types: safetensors-only. Numbered far from GGUF's range. */
    WHALE_DTYPE_F8_E4M3 = 1000,
    WHALE_DTYPE_F8_E5M2 = 1001,
    WHALE_DTYPE_U8 = 1002,
} whale_dtype;

typedef struct dtype_info {
    whale_dtype type;
    const char *name;    /* "Q4_K", "F16", ... as GGUF tools print it */
    int64_t block_elems; /* elements per block (1 for plain types) */
    size_t block_bytes;  /* bytes per block */
    int can_dequantize;  /* 1 if dequantize_row handles it */
} dtype_info;

/* The info for t, or NULL if t is not a type Whale knows (e.g. a GGUF id from a newer tool). */
const dtype_info *dtype_get(int t);
const char *dtype_name(int t); /* "?" for unknown */

/* Bytes of n elements of type t. Returns 0 and sets *out, or -1 if t is unknown, n is
 * negative or not a whole number of blocks, or the size overflows. */
int dtype_bytes(int t, int64_t n, size_t *out);

/* Dequantize n elements (n a multiple of the block size) from src to dst (F32).
 * Precondition: dtype_get(t)->can_dequantize. */
void dequantize_row(int t, const void *src, float *dst, int64_t n);

/* 1 if quantize_row can write type t. */
int quantize_supported(whale_dtype t);
/* Quantize n F32 values to type t (F32, F16, BF16, Q8_0; n a multiple of the block size).
 * Returns 0, or -1 for an unsupported type or a partial block. (quantize.c) */
int quantize_row(whale_dtype t, const float *src, void *dst, int64_t n);

/* IEEE half / bfloat16 / FP8 conversions (scalar reference). */
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f); /* round to nearest even */
float fp8_e4m3_to_f32(uint8_t v);
float fp8_e5m2_to_f32(uint8_t v);

#endif
