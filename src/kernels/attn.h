/* attn.h — attention kernels for many query heads over one shared key/value row per position
 * (multi-query form): DeepSeek's absorbed MLA, where every head reads the same cached latent.
 * Reading each cached row once for all heads, instead of once per head, is what keeps decode
 * at long context bound by the weights rather than by the cache.
 *
 * kernels/cpu/attn.c: AVX-512 and AVX2 versions, run at those levels of kernels/isa.h, and the
 * portable loops they are tested against, bit for bit (tests/unit/test_ops.c). */
#ifndef WHALE_KERNELS_ATTN_H
#define WHALE_KERNELS_ATTN_H

#include <stdint.h>

/* s[h*lds + t] = dot(q + h*ldq, k + t*ldk, d) for h < n_head, t < n_pos. */
void op_mqa_scores(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const float *k, int64_t ldk,
                   int64_t n_pos, int64_t d);

/* The same with key rows stored as IEEE half floats. */
void op_mqa_scores_f16(float *s, int64_t lds, const float *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                       int64_t ldk, int64_t n_pos, int64_t d);

/* o[h*ldo + i] += sum_t p[h*ldp + t] * v[t*ldv + i] for h < n_head, i < d, t < n_pos. */
void op_mqa_accum(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const float *v, int64_t ldv,
                  int64_t n_pos, int64_t d);
/* The same with value rows stored as IEEE half floats. */
void op_mqa_accum_f16(float *o, int64_t ldo, const float *p, int64_t ldp, int64_t n_head, const uint16_t *v,
                      int64_t ldv, int64_t n_pos, int64_t d);

/* Online-softmax attention of n_head query heads over n_pos shared key/value rows, continuing
 * running state: for each head, mx (running max of the scores), l (sum of exp(score - mx)) and
 * o (dv values, the exp-weighted sum of value rows). Start a head with mx = -inf, l = 0, o = 0;
 * the result is o / l. Several ranges of positions can be computed separately and merged
 * (flash-decoding). Scores are dot(q, k) as given: fold the softmax scale into q.
 * scratch: n_head * OP_MQA_BLOCK floats. */
#define OP_MQA_BLOCK 64
void op_mqa_attend(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                   const float *k, int64_t ldk, int64_t dk, const float *v, int64_t ldv, int64_t dv, int64_t n_pos,
                   float *scratch);
/* How a cache stores its rows. */
enum { OP_KV_F32 = 0, OP_KV_F16 = 1, OP_KV_BF16 = 2, OP_KV_Q8 = 3 };

/* The same over a cache stored as `type`: k and v point at rows of that type, ldk/ldv count
 * elements. For OP_KV_BF16 the products are bfloat16's too (op_mqa_attend_bf16), and scratch
 * must hold OP_MQA_SCRATCH(n_head, dk) floats. */
void op_mqa_attend_t(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                     const void *k, int64_t ldk, int64_t dk, const void *v, int64_t ldv, int64_t dv, int64_t n_pos,
                     int type, float *scratch);
#define OP_MQA_SCRATCH(n_head, dk) ((n_head) * (OP_MQA_BLOCK + ((dk) + 1) / 2))

/* ---- bfloat16 (kernels/cpu/attn_bf16.c) ---------------------------------------------------- */

/* x as bfloat16, rounded to nearest (ties to even); a denormal becomes a signed zero, a NaN stays
 * a NaN. What a BF16 cache stores and what queries and weights become before their products. */
uint16_t op_bf16_round(float x);

/* s[h*lds + t] = dot(q + h*ldq, k + t*ldk, d), q and k in bfloat16, the products pairwise as
 * vdpbf16ps makes them (odd element first, FTZ). */
void op_mqa_scores_bf16(float *s, int64_t lds, const uint16_t *q, int64_t ldq, int64_t n_head, const uint16_t *k,
                        int64_t ldk, int64_t n_pos, int64_t d);
/* o[h*ldo + i] += sum_t p_t * v[t*ldv + i], the weights as pairs: pp[h*ldp + t/2] holds p_t (low
 * half) and p_t+1 (high half, 0 past n_pos) in bfloat16; t + 1 is added before t. */
void op_mqa_accum_bf16(float *o, int64_t ldo, const uint32_t *pp, int64_t ldp, int64_t n_head, const uint16_t *v,
                       int64_t ldv, int64_t n_pos, int64_t d);
/* op_mqa_attend over bfloat16 rows: q rounded to bfloat16, and each block's weights rounded
 * before they are summed into l and multiplied. scratch: OP_MQA_SCRATCH(n_head, dk) floats. */
void op_mqa_attend_bf16(float *o, int64_t ldo, float *mx, float *l, const float *q, int64_t ldq, int64_t n_head,
                        const uint16_t *k, int64_t ldk, int64_t dk, const uint16_t *v, int64_t ldv, int64_t dv,
                        int64_t n_pos, float *scratch);

/* ---- int8 rows with per-row scales (kernels/cpu/attn_q8.c) -------------------------------- */

/* Row bytes of n values split in two segments: n int8 values, then two float scales. */
#define OP_Q8_ROW_BYTES(n) ((n) + 2 * (int64_t)sizeof(float))
/* x's n values as such a row: [0, split) and [split, n) each against max |x| / 127 (rounded to
 * nearest, a zero segment has scale 0). */
void op_q8_row(uint8_t *row, const float *x, int64_t n, int64_t split);
/* The row's values back: int8 x its segment's scale. */
void op_q8_row_get(float *x, const uint8_t *row, int64_t n, int64_t split);
/* op_mqa_attend over such rows, row_bytes apart: keys are the whole rows (dk values), values
 * their first segment (dv = split; o holds split floats per head). The queries are quantized
 * once into the scratch by op_mqa_q8_queries (per head and segment, like the rows), then any
 * number of spans of rows attended with them. A score is the two integer dot products times
 * their scales; each block's weights p x (row scale) are quantized to 0..255 against their
 * largest and the block's integer sums added to o with one multiply-add. scratch:
 * op_mqa_scratch_q8 floats, the same for both calls. */
void op_mqa_q8_queries(float *scratch, const float *q, int64_t ldq, int64_t n_head, int64_t dk, int64_t split);
void op_mqa_attend_q8(float *o, int64_t ldo, float *mx, float *l, int64_t n_head, const uint8_t *rows,
                      int64_t row_bytes, int64_t dk, int64_t split, int64_t n_pos, float *scratch);
int64_t op_mqa_scratch_q8(int64_t n_head, int64_t dk, int64_t split);

#endif
