/* qdot_vnni.c — the integer dot-product kernels (qdot_x86.h) with AVX-512 VNNI on 256-bit
 * vectors: one dpbusd sums four u8 x s8 products per int32 lane. */
#if defined(__x86_64__)
#define QD_TARGET "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define QD_NAME(n) qdot_vnni_##n
#define QD_DOT(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#include "kernels/cpu/qdot_x86.h"
#endif
