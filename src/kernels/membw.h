/* membw.h — the machine's memory read bandwidth, measured: the limit a decode step that streams
 * its weights from memory runs against (whale bench reports generation speed as a fraction of it).
 *
 * Method. membw_init allocates a buffer several times larger than the last-level cache (the
 * larger of MEMBW_MIN_BYTES and MEMBW_L3_FACTOR x the L3 size when the system reports it, capped
 * at 1/MEMBW_RAM_DIVISOR of physical memory) and writes it once, so every page is resident and
 * distinct (an unwritten buffer would read the kernel's shared zero page, which sits in cache).
 * A probe reads the whole buffer `passes` times with every thread of a pool: the buffer is cut
 * into slices of MEMBW_SLICE_BYTES that the threads claim one at a time, each slice is summed as
 * 64-bit words with independent accumulators (with AVX-512: 512-bit loads and a software
 * prefetch 4 KiB ahead, as the weight kernels read, when AVX-512 is the level in force of
 * kernels/isa.h; else a loop the compiler vectorizes), so the
 * cores issue loads as fast as memory answers, and the sums are kept so no read can be
 * optimized away. Each pass is timed; a probe returns its fastest pass in GB/s (1e9 bytes per
 * second), the pass least disturbed by other work, as STREAM reports best-of-N. Callers probe
 * several times, at different moments, and take the median of the probes.
 *
 * Owns: the buffer. Does not own: the thread pool (the caller's, so the probe uses exactly the
 * threads the measured work used). Lives beside the kernels (not in base/) because it reads the
 * way they do and takes its instruction set from kernels/isa.h. */
#ifndef WHALE_KERNELS_MEMBW_H
#define WHALE_KERNELS_MEMBW_H

#include <stddef.h>

#include "base/threadpool.h"

/* 1 GiB: far beyond any L3 of today's desktop and server parts per socket, small beside a 24 GiB
 * machine that also holds a model. */
#define MEMBW_MIN_BYTES ((size_t)1 << 30)
/* Four times the L3 so that at most a quarter of what a pass reads can come from cache. */
#define MEMBW_L3_FACTOR 4
/* Never more than 1/8 of physical memory: the probe must not push the model out of RAM. */
#define MEMBW_RAM_DIVISOR 8
/* 4 MiB per task: long sequential runs for the prefetchers, hundreds of tasks to share evenly. */
#define MEMBW_SLICE_BYTES ((size_t)4 << 20)

typedef struct membw membw;

/* The buffer size membw_init(0) uses on this machine (see the method above). */
size_t membw_default_bytes(void);
/* A probe buffer of `bytes` (0: membw_default_bytes(); rounded up to whole slices), written
 * once. NULL when out of memory. */
membw *membw_init(size_t bytes);
void membw_free(membw *b);
size_t membw_bytes(const membw *b);
/* Read the buffer `passes` times (at least 1) on tp (NULL: the calling thread only) and return
 * the fastest pass in GB/s. */
double membw_probe(membw *b, threadpool *tp, int passes);

#endif
