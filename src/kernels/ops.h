/* ops.h — the compute ops of a forward pass, as plain functions: outputs first, then inputs,
 * then sizes. kernels/cpu/ref.c holds the scalar reference of each; faster versions (SIMD,
 * CUDA) are added beside it and tested against it.
 * Owns: arithmetic on float arrays and on quantized weight rows. Knows nothing about models,
 * files or sequences; the only outside type it knows is whale_dtype (formats/dtype.h). */
#ifndef WHALE_KERNELS_OPS_H
#define WHALE_KERNELS_OPS_H

#include <stdint.h>

#include "formats/dtype.h"

/* Y[b*ldy + r] = dot(row r of W, X[b*ldx .. +n_in]) for b < n_tok and r0 <= r < r1, F32
 * activations (kernels/cpu/fdot.c). W holds rows of n_in elements of type t (n_in a multiple
 * of the block size), row-major. F32/F16/BF16 rows are read in place; other types are
 * dequantized a row at a time into scratch (n_in floats) and reused for every token.
 * Every (row, token) result is the same bits whatever n_tok, the row range and the CPU's
 * instruction set (one arithmetic: 16 lanes of fused multiply-adds, a fixed sum tree). The
 * quantized types with integer kernels take kernels/qdot.h's path instead (model code). */
void op_matmul_rows(float *Y, int64_t ldy, const void *W, whale_dtype t, const float *X, int64_t ldx,
                    int64_t n_in, int64_t n_tok, int64_t r0, int64_t r1, float *scratch);

/* y = x / rms(x) * w, rms over n elements with eps inside the square root. y may alias x. */
void op_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* Rotary embedding of one head vector x (head_dim elements) at position pos, in place.
 * inv_freq[i] (i < n_rot/2) is the angle per position of pair i.
 * NEOX pairs element i with i + n_rot/2 (Hugging Face's rotate_half, Qwen2, HF Llama);
 * NORM pairs 2i with 2i+1 (GGUF Llama, whose q/k rows the converter permuted). */
typedef enum rope_style { ROPE_NEOX = 0, ROPE_NORM = 1 } rope_style;
void op_rope(float *x, int64_t n_rot, int64_t pos, const float *inv_freq, rope_style style);

/* In-place softmax over n elements (max-subtracted). */
void op_softmax(float *x, int64_t n);

/* out[i] = silu(gate[i]) * up[i]. out may alias gate. */
void op_swiglu(float *out, const float *gate, const float *up, int64_t n);

/* y[i] += x[i]. */
void op_add(float *y, const float *x, int64_t n);

float op_dot(const float *a, const float *b, int64_t n);

/* dot(row, x) for one weight row of n elements of type t: the same bits as op_matmul_rows
 * gives for that row (other types are dequantized a piece at a time on the stack). */
float op_dot_row(whale_dtype t, const void *row, const float *x, int64_t n);

#endif
