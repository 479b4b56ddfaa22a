/* isa.h — which instruction set the CPU kernels run: the one place that detects the CPU's
 * features, reads the environment and lets tests and benchmarks force a level. Every kernel
 * (cpu/qdot*.c, cpu/fdot*.c, cpu/attn.c) and the bandwidth probe (kernels/membw.h) ask
 * isa_level_get() at each call; nothing else looks at cpuid or at WHALE_ISA.
 *
 * Levels, each implying the one below:
 *   ISA_AVX512  AVX-512 F, BW, VL, DQ and VNNI, with the OS saving the ZMM state
 *   ISA_AVX2    AVX2, FMA and F16C, with the OS saving the YMM state
 *   ISA_SCALAR  portable C (also every non-x86-64 build)
 * Every level computes the same float operations lane for lane (qdot.h, fdot.c, attn.c): the
 * level changes the speed, never the bits.
 *
 * The level in force is the detected level, lowered by (in this order of precedence):
 *   1. isa_force(level) at run time (tests, bench_kernels): replaces the environment's cap;
 *      isa_force(-1) lifts it and the environment's cap applies again;
 *   2. the environment, read once: WHALE_NO_SIMD=1 (any value but "" and "0") means scalar;
 *      else WHALE_ISA=scalar|avx2|avx512. An unknown WHALE_ISA value is ignored: the detected
 *      level is kept (a typo must not silently slow a server to scalar; isa_env_unknown() lets
 *      a caller warn about it).
 * Neither can raise the level above what the CPU has: WHALE_ISA=avx512 on an AVX2 machine runs
 * AVX2.
 *
 * Thread-safe: the detected and environment levels are found once and cached in atomics
 * (threads racing to find them store the same answer); the forced cap is an atomic too. A
 * kernel reads the level once per call, so a force while kernels run takes effect at their
 * next call. */
#ifndef WHALE_KERNELS_ISA_H
#define WHALE_KERNELS_ISA_H

typedef enum isa_level { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 } isa_level;
#define ISA_N_LEVELS 3

/* The level in force (see above). Cheap: two relaxed atomic loads once the CPU is known. */
isa_level isa_level_get(void);

/* What the CPU (and OS) support, ignoring the environment and any force. */
isa_level isa_detected(void);

/* Cap the level at `level` (clamped to isa_detected()); -1 returns to the environment's cap. */
void isa_force(int level);

/* 1 when the level in force is ISA_AVX512 and the CPU also has AVX512_BF16 (vdpbf16ps, for
 * the BF16 cache's attention: kernels/cpu/attn_bf16.c); else 0. Not a level of its own: the
 * other levels compute the same bits without it. */
int isa_has_avx512_bf16(void);

/* "scalar", "avx2", "avx512"; "?" for anything else. */
const char *isa_name(int level);

/* The level named s ("scalar", "avx2", "avx512"), or -1. */
int isa_parse(const char *s);

/* 1 when WHALE_ISA is set to a name isa_parse does not know (it was ignored), else 0. */
int isa_env_unknown(void);

#endif
