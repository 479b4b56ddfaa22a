/* membw.c — memory read bandwidth probe; the method is described in kernels/membw.h. */
#include "kernels/membw.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "kernels/isa.h"

struct membw {
    uint64_t *buf; /* (bytes / 8) words, written once at init */
    size_t bytes;
    uint64_t sink; /* sums of the last pass: keeps the reads observable */
};

/* L3 size in bytes as the system reports it, or 0 (some virtual machines report nothing). */
static size_t l3_bytes(void) {
    long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (v > 0) return (size_t)v;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (!f) return 0;
    unsigned long long n = 0;
    char unit = 0;
    int got = fscanf(f, "%llu%c", &n, &unit);
    fclose(f);
    if (got < 1) return 0;
    if (got == 2 && (unit == 'K' || unit == 'k')) n <<= 10;
    else if (got == 2 && (unit == 'M' || unit == 'm')) n <<= 20;
    return (size_t)n;
}

size_t membw_default_bytes(void) {
    size_t want = MEMBW_MIN_BYTES, l3 = l3_bytes();
    if (l3 > 0 && l3 <= ((size_t)1 << 40) / MEMBW_L3_FACTOR && l3 * MEMBW_L3_FACTOR > want) want = l3 * MEMBW_L3_FACTOR;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) {
        size_t cap = (size_t)pages * (size_t)page / MEMBW_RAM_DIVISOR;
        if (want > cap) want = cap;
    }
    return want;
}

membw *membw_init(size_t bytes) {
    if (bytes == 0) bytes = membw_default_bytes();
    bytes = (bytes + MEMBW_SLICE_BYTES - 1) / MEMBW_SLICE_BYTES * MEMBW_SLICE_BYTES;
    membw *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->buf = aligned_alloc(4096, bytes);
    if (!b->buf) {
        free(b);
        return NULL;
    }
    b->bytes = bytes;
    /* distinct non-zero words, so the pages are private and the sum depends on every one */
    size_t n = bytes / sizeof(uint64_t);
    for (size_t i = 0; i < n; i++) b->buf[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    return b;
}

void membw_free(membw *b) {
    if (!b) return;
    free(b->buf);
    free(b);
}

size_t membw_bytes(const membw *b) { return b->bytes; }

/* Sum of n words (n a multiple of 8). Eight accumulators break the dependency chain so the
 * compiler can keep several vector loads in flight. */
static uint64_t sum_words(const uint64_t *p, size_t n) {
    uint64_t a[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

#if defined(__x86_64__)
#include <immintrin.h>
/* The same sum with 512-bit loads and a software prefetch ahead, as the weight kernels read:
 * without them the probe reads slower than the kernels do and understates the limit. */
#define MEMBW_PREFETCH 4096
__attribute__((target("avx512f"))) static uint64_t sum_words_avx512(const uint64_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        _mm_prefetch((const char *)(p + i) + MEMBW_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)(p + i) + MEMBW_PREFETCH + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)(p + i) + MEMBW_PREFETCH + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)(p + i) + MEMBW_PREFETCH + 192, _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 8));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 16));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 24));
    }
    uint64_t lanes[8], sum = 0; /* added as unsigned: the sums wrap by design */
    _mm512_storeu_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    for (int i = 0; i < 8; i++) sum += lanes[i];
    return sum;
}
#endif

/* Slot per thread, a cache line apart so the threads' results do not share a line. */
#define MEMBW_MAX_THREADS 1024
typedef struct probe_job {
    const uint64_t *buf;
    int avx512; /* read with sum_words_avx512 (the level in force when the probe began) */
    uint64_t sum[MEMBW_MAX_THREADS][8];
} probe_job;

static void probe_task(void *ctx, int64_t task, int thread) {
    probe_job *j = ctx;
    size_t words = MEMBW_SLICE_BYTES / sizeof(uint64_t);
    const uint64_t *p = j->buf + (size_t)task * words;
#if defined(__x86_64__)
    if (j->avx512) {
        j->sum[thread % MEMBW_MAX_THREADS][0] += sum_words_avx512(p, words);
        return;
    }
#endif
    j->sum[thread % MEMBW_MAX_THREADS][0] += sum_words(p, words);
}

double membw_probe(membw *b, threadpool *tp, int passes) {
    probe_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->avx512 = isa_level_get() == ISA_AVX512;
    j->buf = b->buf;
    int64_t n_tasks = (int64_t)(b->bytes / MEMBW_SLICE_BYTES);
    double best = 0;
    for (int p = 0; p < (passes > 0 ? passes : 1); p++) {
        double t0 = clock_now_s();
        if (tp) tp_run(tp, n_tasks, probe_task, j);
        else for (int64_t t = 0; t < n_tasks; t++) probe_task(j, t, 0);
        double dt = clock_now_s() - t0;
        double gbs = dt > 0 ? (double)b->bytes / dt / 1e9 : 0;
        if (gbs > best) best = gbs;
    }
    for (int t = 0; t < MEMBW_MAX_THREADS; t++) b->sink += j->sum[t][0];
    free(j);
    return best;
}
