/* rand_blocks.h — random data for the kernel tests: floats in [-1, 1) and rows of any weight
 * type with random quants and sane scales (so products stay finite: the tests are about layout
 * and arithmetic, not overflow). */
#ifndef WHALE_TEST_RAND_BLOCKS_H
#define WHALE_TEST_RAND_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "formats/dtype.h"
#include "base/rng.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { return (uint32_t)(rng_xorshift64(&rng) >> 16); }
static float frand(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

/* Random bytes for a row of type t, with every f16 scale field replaced by a sane value so the
 * dot product is finite: the tests are about layout, not about overflow. */
static void random_row(whale_dtype t, uint8_t *b, int64_t n) {
    const dtype_info *di = dtype_get(t);
    size_t bytes;
    dtype_bytes(t, n, &bytes);
    for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)rnd();
    int64_t nb = n / di->block_elems;
    for (int64_t k = 0; k < nb; k++) {
        uint8_t *blk = b + (size_t)k * di->block_bytes;
        uint16_t h = f32_to_fp16(frand() * 0.05f), h2 = f32_to_fp16(frand() * 0.05f);
        switch (t) {
        case WHALE_DTYPE_Q4_0: case WHALE_DTYPE_Q5_0: case WHALE_DTYPE_Q8_0:
        case WHALE_DTYPE_Q4_1: case WHALE_DTYPE_Q5_1:
            memcpy(blk, &h, 2);
            if (t == WHALE_DTYPE_Q4_1 || t == WHALE_DTYPE_Q5_1) memcpy(blk + 2, &h2, 2);
            break;
        case WHALE_DTYPE_Q4_K: case WHALE_DTYPE_Q5_K:
            memcpy(blk, &h, 2);
            memcpy(blk + 2, &h2, 2);
            break;
        case WHALE_DTYPE_Q2_K: memcpy(blk + 80, &h, 2); memcpy(blk + 82, &h2, 2); break;
        case WHALE_DTYPE_Q3_K: memcpy(blk + 108, &h, 2); break;
        case WHALE_DTYPE_Q6_K: memcpy(blk + 208, &h, 2); break;
        default: break;
        }
    }
    if (t == WHALE_DTYPE_F16 || t == WHALE_DTYPE_BF16)
        for (int64_t i = 0; i < n; i++) {
            uint16_t v = t == WHALE_DTYPE_F16 ? f32_to_fp16(frand()) : f32_to_bf16(frand());
            memcpy(b + 2 * i, &v, 2);
        }
    if (t == WHALE_DTYPE_F32)
        for (int64_t i = 0; i < n; i++) {
            float v = frand();
            memcpy(b + 4 * i, &v, 4);
        }
}

#endif
