/* isa.c — the CPU's instruction-set level (kernels/isa.h): cpuid and xgetbv for what the
 * hardware and the OS support, the environment (WHALE_ISA, WHALE_NO_SIMD), and the run-time
 * force of tests and benchmarks. Owns those three caches and nothing else; the kernels only
 * read isa_level_get(). */
#include "kernels/isa.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define ISA_X86 1
#endif

static const char *const isa_names[ISA_N_LEVELS] = {"scalar", "avx2", "avx512"};

const char *isa_name(int level) { return level >= 0 && level < ISA_N_LEVELS ? isa_names[level] : "?"; }

int isa_parse(const char *s) {
    for (int l = 0; s && l < ISA_N_LEVELS; l++)
        if (!strcmp(s, isa_names[l])) return l;
    return -1;
}

/* ---- detection ---------------------------------------------------------------------------- */

#ifdef ISA_X86
/* XCR0: which register state the OS saves on a context switch. Without it the instructions
 * exist but their registers would be clobbered, so the level must not be used. */
static unsigned long long isa_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

#define XCR0_AVX 0x6ull     /* SSE and AVX (YMM) state */
#define XCR0_AVX512 0xE6ull /* the above, plus the opmask, ZMM0-15 upper halves and ZMM16-31 */

static isa_level isa_cpuid(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return ISA_SCALAR;
    int fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!osxsave || !avx || !fma || !f16c) return ISA_SCALAR;
    unsigned long long xcr0 = isa_xcr0();
    if ((xcr0 & XCR0_AVX) != XCR0_AVX) return ISA_SCALAR;
    if (__get_cpuid_max(0, NULL) < 7) return ISA_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b >> 5 & 1)) return ISA_SCALAR; /* AVX2 */
    int f = b >> 16 & 1, dq = b >> 17 & 1, bw = b >> 30 & 1, vl = b >> 31 & 1, vnni = c >> 11 & 1;
    if (f && dq && bw && vl && vnni && (xcr0 & XCR0_AVX512) == XCR0_AVX512) return ISA_AVX512;
    return ISA_AVX2;
}
#endif

/* -1 until found; threads may race to find it, and store the same answer. */
static _Atomic int isa_hw = -1, isa_bf16 = -1;

int isa_has_avx512_bf16(void) {
    int b = atomic_load_explicit(&isa_bf16, memory_order_relaxed);
    if (b < 0) {
        b = 0;
#ifdef ISA_X86
        unsigned a, bx, c, d;
        if (isa_detected() == ISA_AVX512 && __get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 1, a, bx, c, d);
            b = (int)(a >> 5 & 1);
        }
#endif
        atomic_store_explicit(&isa_bf16, b, memory_order_relaxed);
    }
    return b && isa_level_get() == ISA_AVX512;
}

isa_level isa_detected(void) {
    int l = atomic_load_explicit(&isa_hw, memory_order_relaxed);
    if (l < 0) {
#ifdef ISA_X86
        l = (int)isa_cpuid();
#else
        l = ISA_SCALAR;
#endif
        atomic_store_explicit(&isa_hw, l, memory_order_relaxed);
    }
    return (isa_level)l;
}

/* ---- environment -------------------------------------------------------------------------- */

#define ISA_ENV_UNKNOWN 0x10 /* flag beside the cap in isa_env: WHALE_ISA named no level */

/* The environment's cap (low bits) and the unknown-name flag; -1 until read. */
static _Atomic int isa_env = -1;

static int isa_env_get(void) {
    int e = atomic_load_explicit(&isa_env, memory_order_relaxed);
    if (e < 0) {
        const char *ns = getenv("WHALE_NO_SIMD"), *name = getenv("WHALE_ISA");
        if (ns && *ns && strcmp(ns, "0")) e = ISA_SCALAR;
        else if (name && *name) {
            int l = isa_parse(name);
            e = l >= 0 ? l : (ISA_N_LEVELS - 1) | ISA_ENV_UNKNOWN;
        } else {
            e = ISA_N_LEVELS - 1;
        }
        atomic_store_explicit(&isa_env, e, memory_order_relaxed);
    }
    return e;
}

int isa_env_unknown(void) { return (isa_env_get() & ISA_ENV_UNKNOWN) != 0; }

/* ---- the level in force ------------------------------------------------------------------- */

static _Atomic int isa_forced = -1; /* -1: no force, the environment's cap applies */

void isa_force(int level) {
    atomic_store_explicit(&isa_forced, level < 0 ? -1 : level, memory_order_relaxed);
}

isa_level isa_level_get(void) {
    int hw = (int)isa_detected(), f = atomic_load_explicit(&isa_forced, memory_order_relaxed);
    int cap = f >= 0 ? f : isa_env_get() & ~ISA_ENV_UNKNOWN;
    return (isa_level)(cap < hw ? cap : hw);
}
