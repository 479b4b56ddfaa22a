/* bench/kernels.c — micro-benchmark of the weight-matrix kernels (kernels/ops.h), built by
 * CMake as `bench_kernels` (not a test). For each weight type:
 *   matvec: one token against a matrix of ~BENCH_MATVEC_MB (larger than the last-level cache,
 *           so the weights come from memory), reported as GB/s of weight bytes read; then the
 *           same against a matrix that stays in L2 ("from cache": the kernel's own speed);
 *   matmul: BENCH_TOKENS tokens against a 4096 x 1024 matrix, reported as GFLOP/s (2 per
 *           multiply-add).
 * Rows are split over a thread pool in tasks of 32 rows, as the model does.
 *
 *   bench_kernels [-t THREADS] [-T TYPE] [--level scalar|avx2|avx512]   (caps the kernels' level,
 *                                                                      kernels/isa.h; 0|1|2 too)
 *
 * The machine's memory bandwidth is the figure to compare matvec against (../shared/ANCHORS.md
 * gives ~43 GB/s for the 2-core development machine). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "kernels/isa.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"

#define BENCH_MATVEC_MB 192 /* well above the 32 MiB L3 of the development machine */
#define BENCH_CACHED_KB 512 /* fits the 1 MiB L2 of the development machine */
#define BENCH_TOKENS 512
#define BENCH_ROWS_PER_TASK 32

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)(rnd() % 20001) / 10000.0f - 1.0f; }

/* Random weights of type t: random bytes with every f16 scale made small and finite. */
static void random_rows(whale_dtype t, uint8_t *b, int64_t n_in, int64_t n_rows) {
    const dtype_info *di = dtype_get(t);
    size_t rb;
    dtype_bytes(t, n_in, &rb);
    for (size_t i = 0; i < rb * (size_t)n_rows; i++) b[i] = (uint8_t)rnd();
    if (t == WHALE_DTYPE_F32 || t == WHALE_DTYPE_F16 || t == WHALE_DTYPE_BF16) {
        for (int64_t i = 0; i < n_in * n_rows; i++) {
            float v = frand();
            if (t == WHALE_DTYPE_F32) memcpy(b + 4 * i, &v, 4);
            uint16_t h = t == WHALE_DTYPE_F16 ? f32_to_fp16(v) : f32_to_bf16(v);
            if (t != WHALE_DTYPE_F32) memcpy(b + 2 * i, &h, 2);
        }
        return;
    }
    int64_t nb = n_in / di->block_elems * n_rows;
    for (int64_t k = 0; k < nb; k++) {
        uint8_t *blk = b + (size_t)k * di->block_bytes;
        uint16_t h = f32_to_fp16(0.01f + 0.01f * frand());
        switch (t) {
        case WHALE_DTYPE_Q6_K: memcpy(blk + 208, &h, 2); break;
        case WHALE_DTYPE_Q4_K: case WHALE_DTYPE_Q5_K: memcpy(blk, &h, 2); memcpy(blk + 2, &h, 2); break;
        default: memcpy(blk, &h, 2); break;
        }
    }
}

typedef struct job {
    float *Y;
    const void *W;
    whale_dtype t;
    const float *X;
    qact_block *Xq; /* the integer path's activations (types that have one), else NULL */
    int64_t n_in, n_out, n_tok;
    float *scratch;
} job;

static void task(void *ctx, int64_t k, int thread) {
    job *j = ctx;
    int64_t r0 = k * BENCH_ROWS_PER_TASK, r1 = r0 + BENCH_ROWS_PER_TASK < j->n_out ? r0 + BENCH_ROWS_PER_TASK : j->n_out;
    if (j->Xq) op_matmul_rows_q(j->Y, j->n_out, j->W, j->t, j->Xq, j->n_in, j->n_tok, r0, r1);
    else op_matmul_rows(j->Y, j->n_out, j->W, j->t, j->X, j->n_in, j->n_in, j->n_tok, r0, r1,
                        j->scratch + (size_t)thread * (size_t)j->n_in);
}

/* The model quantizes the activations once per product, one task per token. */
static void quant_task(void *ctx, int64_t b, int thread) {
    (void)thread;
    job *j = ctx;
    op_quantize_act(j->Xq + b * (j->n_in / QACT_BLOCK), j->X + b * j->n_in, j->n_in);
}

/* With one thread the process's CPU time is the clock: time the scheduler gives to other
 * processes (other builds on a shared machine) is not counted. With more, wall time (CPU time
 * would count the pool's spinning). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Best time of several runs of Y = X W^T over all rows. */
/* Best time of reps runs, each of `inner` products back to back, per product. */
static double run(threadpool *tp, job *j, int reps, int inner) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int k = 0; k < inner; k++) {
            if (j->Xq) tp_run(tp, j->n_tok, quant_task, j);
            tp_run(tp, (j->n_out + BENCH_ROWS_PER_TASK - 1) / BENCH_ROWS_PER_TASK, task, j);
        }
        double dt = (now() - t0) / inner;
        best = dt < best ? dt : best;
    }
    return best;
}

static void bench_type(threadpool *tp, int threads, whale_dtype t) {
    int64_t n_in = 4096;
    size_t rb;
    dtype_bytes(t, n_in, &rb);
    /* matvec */
    int64_t n_out = (int64_t)((size_t)(getenv("BENCH_MB") ? atoi(getenv("BENCH_MB")) : BENCH_MATVEC_MB) << 20) / (int64_t)rb;
    n_out -= n_out % BENCH_ROWS_PER_TASK;
    int64_t n_alloc = n_out > 1024 ? n_out : 1024; /* rows: the matmul uses the first 1024 */
    uint8_t *W = malloc(rb * (size_t)n_alloc);
    float *X = malloc((size_t)(BENCH_TOKENS * n_in) * sizeof(float));
    float *Y = malloc((size_t)(BENCH_TOKENS > n_alloc ? BENCH_TOKENS : n_alloc) * 1024 * sizeof(float));
    float *scratch = malloc((size_t)(threads * n_in) * sizeof(float));
    qact_block *Xq = op_qdot_supported(t) ? malloc((size_t)(BENCH_TOKENS * n_in / QACT_BLOCK) * sizeof(qact_block)) : NULL;
    if (!W || !X || !Y || !scratch || (op_qdot_supported(t) && !Xq)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    random_rows(t, W, n_in, n_alloc);
    for (int64_t i = 0; i < BENCH_TOKENS * n_in; i++) X[i] = frand();
    job j = {Y, W, t, X, Xq, n_in, n_out, 1, scratch};
    run(tp, &j, 1, 1);
    double dt = run(tp, &j, 10, 1);
    double gbs = (double)rb * (double)n_out / dt / 1e9;
    /* the same from cache: a matrix of BENCH_CACHED_KB, many times over (the kernel's own speed) */
    job c = j;
    c.n_out = (int64_t)(BENCH_CACHED_KB << 10) / (int64_t)rb;
    c.n_out -= c.n_out % BENCH_ROWS_PER_TASK;
    run(tp, &c, 1, 10);
    double dc = run(tp, &c, 10, 50);
    double gbc = (double)rb * (double)c.n_out / dc / 1e9;
    /* matmul: a 1024-row slice of the same weights (it stays in cache across tokens) */
    job m = {Y, W, t, X, Xq, n_in, 1024, BENCH_TOKENS, scratch};
    run(tp, &m, 1, 1);
    double dm = run(tp, &m, 5, 1);
    double gf = 2.0 * (double)n_in * 1024.0 * BENCH_TOKENS / dm / 1e9;
    printf("%-5s  matvec %6.1f GB/s (%5.2f ms for %3.0f MiB), from cache %6.1f GB/s   matmul x%d %7.1f GFLOP/s (%6.1f ms)\n",
           dtype_name(t), gbs, dt * 1e3, (double)rb * (double)n_out / 1048576.0, gbc, BENCH_TOKENS, gf, dm * 1e3);
    free(W);
    free(X);
    free(Y);
    free(scratch);
    free(Xq);
}

int main(int argc, char **argv) {
    int threads = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-T") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--level") && i + 1 < argc) {
            const char *v = argv[++i];
            int lv = isa_parse(v) >= 0 ? isa_parse(v) : (v[0] >= '0' && v[0] <= '2' && !v[1] ? v[0] - '0' : -1);
            if (lv < 0) {
                fprintf(stderr, "bench_kernels: --level takes scalar, avx2 or avx512\n");
                return 2;
            }
            isa_force(lv);
        } else {
            fprintf(stderr, "usage: bench_kernels [-t THREADS] [-T TYPE] [--level scalar|avx2|avx512]\n");
            return 2;
        }
    }
    if (threads == 1) bench_clock = CLOCK_PROCESS_CPUTIME_ID;
    threadpool *tp = tp_new(threads);
    if (!tp) return 1;
    const whale_dtype types[] = {WHALE_DTYPE_Q4_0, WHALE_DTYPE_Q5_0, WHALE_DTYPE_Q8_0, WHALE_DTYPE_Q4_K,
                                 WHALE_DTYPE_Q5_K, WHALE_DTYPE_Q6_K, WHALE_DTYPE_F16,  WHALE_DTYPE_BF16,
                                 WHALE_DTYPE_F32};
    printf("%d thread(s), timed by %s; kernels: %s (this CPU has %s)\n", threads,
           threads == 1 ? "CPU time" : "wall clock", isa_name(isa_level_get()), isa_name(isa_detected()));
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!only || !strcmp(only, dtype_name(types[i]))) bench_type(tp, threads, types[i]);
    tp_free(tp);
    return 0;
}
