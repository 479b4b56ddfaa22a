/* qdot_avx2.c — the integer dot-product kernels (qdot_x86.h) for AVX2: u8 x s8 products summed
 * pairwise to int16 (maddubs; at most 2 x 128 x 127, no saturation with these weight ranges),
 * then to int32 (madd with ones). */
#if defined(__x86_64__)
#define QD_TARGET "avx2,fma,f16c"
#define QD_NAME(n) qdot_avx2_##n
#define QD_DOT(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "kernels/cpu/qdot_x86.h"
#endif
