/* gemm.c — the blocked matrix product of kernels/gemm.h: packing, tiling, threads, and the
 * portable kernel.
 *
 * Layout. A is packed into panels of GM_MR rows: panel p holds, for each k, the MR values
 * a[p*MR .. p*MR+MR-1][k] side by side (rows past M are 0). B is packed into panels of GM_NR
 * columns the same way. A kernel call multiplies one A panel by one B panel over a slice of K
 * (GM_KC values) into an MR x NR tile of C held in registers: 2 loads of B and MR broadcasts
 * of A feed 2*MR fused multiply-adds per k. The B slice (KC x NR floats, 16 KiB) stays in L1
 * while the task's A panels (MC x KC) stream from L2.
 *
 * Threads. Both operands are packed once per product (one parallel run over panels), then one
 * parallel run over output tiles of MC x NC: a task owns its tile for all of K, so each element
 * is a single chain in k order (the contract in gemm.h) whatever the split. Tiles shrink until
 * there are a few tasks per thread, so no worker waits for one long task.
 *
 * The portable kernel below is the reference: fmaf in the same order as the AVX2 lanes. */
#include "kernels/gemm.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "kernels/isa.h"

#define GM_MR 6    /* rows of a register tile (6 x 2 vectors of 8 = 12 accumulators of 16 registers) */
#define GM_NR 16   /* columns of a register tile */
#define GM_KC 256  /* k per kernel call: a B slice of KC x NR floats is 16 KiB, half of L1 */
#define GM_MC_P 16 /* A panels per task tile at most (96 rows x KC: 96 KiB of L2) */
#define GM_NC_P 16 /* B panels per task tile at most (256 columns) */
#define GM_TASKS_PER_THREAD 3

/* cpu/gemm_avx2.c: one full MR x NR tile, the same operations as kern_portable. */
void gemm_kern_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load);

/* c[i][j] (MR x NR at ldc) = chain of fmaf over kc: from c (load) or +0. */
static void kern_portable(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load) {
    float acc[GM_MR][GM_NR];
    for (int i = 0; i < GM_MR; i++)
        for (int j = 0; j < GM_NR; j++) acc[i][j] = load ? c[i * ldc + j] : 0.0f;
    for (int64_t k = 0; k < kc; k++, a += GM_MR, b += GM_NR)
        for (int i = 0; i < GM_MR; i++)
            for (int j = 0; j < GM_NR; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    for (int i = 0; i < GM_MR; i++) memcpy(c + i * ldc, acc[i], sizeof acc[i]);
}

typedef void (*gm_kern)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int load);

static gm_kern kern_get(void) {
#if defined(__x86_64__)
    if (isa_level_get() >= ISA_AVX2) return gemm_kern_avx2;
#endif
    return kern_portable;
}

const char *gemm_kernel_name(void) { return kern_get() == kern_portable ? "portable" : "avx2"; }

float gemm_round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u; /* NaN: keep it one (quiet) */
    else u += 0x7fffu + ((u >> 16) & 1u);                  /* overflow to inf is the right rounding */
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

int gemm_cpu_has_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") ? 1 : 0;
#else
    return 0;
#endif
}

/* ---- scratch: growable buffers per thread (packed A and B, an edge tile), never shrunk; a
 * thread's are freed when it exits (a key destructor), so pool threads leave nothing behind ---- */

typedef struct gm_buf {
    float *p;
    size_t n;
} gm_buf;

static _Thread_local gm_buf t_pack_a, t_pack_b, t_edge;
static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void bufs_free(void *unused) {
    (void)unused;
    gm_buf *all[3] = {&t_pack_a, &t_pack_b, &t_edge};
    for (int i = 0; i < 3; i++) {
        free(all[i]->p);
        all[i]->p = NULL;
        all[i]->n = 0;
    }
}
static void key_init(void) { pthread_key_create(&g_key, bufs_free); }

static float *buf_get(gm_buf *b, size_t n) {
    if (b->n < n) {
        pthread_once(&g_key_once, key_init);
        pthread_setspecific(g_key, &g_key); /* any non-NULL value: the destructor runs at exit */
        free(b->p);
        b->p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        if (!b->p) abort(); /* gemm.h: scratch is the one thing it cannot do without */
        b->n = n;
    }
    return b->p;
}

/* ---- packing ---- */

typedef struct gm_job {
    /* the product */
    float *C;
    int64_t ldc;
    const float *A, *B;
    int64_t a_rs, a_cs, b_rs, b_cs, M, N, K;
    float alpha;
    int accumulate, bf16;
    /* packed operands and tiling */
    float *Ap, *Bp;
    int64_t pa, pb;            /* panels of A and of B */
    int64_t pack_ga, pack_gb;  /* packing tasks for A, for B */
    int64_t mc_p, nc_p, n_mt, n_nt;
    gm_kern kern;
} gm_job;

#define GM_PACK_GROUP 4 /* panels per packing task */

static void pack_a_panel(const gm_job *j, int64_t p) {
    float *dst = j->Ap + p * j->K * GM_MR;
    int64_t i0 = p * GM_MR, rows = j->M - i0 < GM_MR ? j->M - i0 : GM_MR;
    for (int64_t i = 0; i < GM_MR; i++) {
        if (i >= rows) {
            for (int64_t k = 0; k < j->K; k++) dst[k * GM_MR + i] = 0;
            continue;
        }
        const float *src = j->A + (i0 + i) * j->a_rs;
        for (int64_t k = 0; k < j->K; k++) {
            float v = j->alpha * src[k * j->a_cs];
            dst[k * GM_MR + i] = j->bf16 ? gemm_round_bf16(v) : v;
        }
    }
}

static void pack_b_panel(const gm_job *j, int64_t p) {
    float *dst = j->Bp + p * j->K * GM_NR;
    int64_t j0 = p * GM_NR, cols = j->N - j0 < GM_NR ? j->N - j0 : GM_NR;
    if (j->b_cs == 1) { /* rows of B contiguous: copy runs of columns */
        for (int64_t k = 0; k < j->K; k++) {
            const float *src = j->B + k * j->b_rs + j0;
            float *d = dst + k * GM_NR;
            for (int64_t c = 0; c < cols; c++) d[c] = j->bf16 ? gemm_round_bf16(src[c]) : src[c];
            for (int64_t c = cols; c < GM_NR; c++) d[c] = 0;
        }
        return;
    }
    for (int64_t c = 0; c < GM_NR; c++) {
        if (c >= cols) {
            for (int64_t k = 0; k < j->K; k++) dst[k * GM_NR + c] = 0;
            continue;
        }
        const float *src = j->B + (j0 + c) * j->b_cs;
        for (int64_t k = 0; k < j->K; k++) dst[k * GM_NR + c] = j->bf16 ? gemm_round_bf16(src[k * j->b_rs]) : src[k * j->b_rs];
    }
}

static void pack_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    const gm_job *j = ctx;
    if (t < j->pack_ga) {
        for (int64_t p = t * GM_PACK_GROUP; p < (t + 1) * GM_PACK_GROUP && p < j->pa; p++) pack_a_panel(j, p);
    } else {
        t -= j->pack_ga;
        for (int64_t p = t * GM_PACK_GROUP; p < (t + 1) * GM_PACK_GROUP && p < j->pb; p++) pack_b_panel(j, p);
    }
}

/* ---- the tiles ---- */

static void tile_task(void *ctx, int64_t t, int thread) {
    (void)thread;
    const gm_job *j = ctx;
    int64_t mt = t / j->n_nt, nt = t % j->n_nt;
    int64_t p0 = mt * j->mc_p, p1 = p0 + j->mc_p < j->pa ? p0 + j->mc_p : j->pa;
    int64_t q0 = nt * j->nc_p, q1 = q0 + j->nc_p < j->pb ? q0 + j->nc_p : j->pb;
    float *edge = buf_get(&t_edge, GM_MR * GM_NR);
    for (int64_t k0 = 0; k0 < j->K; k0 += GM_KC) {
        int64_t kc = j->K - k0 < GM_KC ? j->K - k0 : GM_KC;
        int load = j->accumulate || k0 > 0;
        for (int64_t q = q0; q < q1; q++) {
            const float *b = j->Bp + q * j->K * GM_NR + k0 * GM_NR;
            int64_t c0 = q * GM_NR, cols = j->N - c0 < GM_NR ? j->N - c0 : GM_NR;
            for (int64_t p = p0; p < p1; p++) {
                const float *a = j->Ap + p * j->K * GM_MR + k0 * GM_MR;
                int64_t r0 = p * GM_MR, rows = j->M - r0 < GM_MR ? j->M - r0 : GM_MR;
                float *c = j->C + r0 * j->ldc + c0;
                if (rows == GM_MR && cols == GM_NR) {
                    j->kern(kc, a, b, c, j->ldc, load);
                    continue;
                }
                /* an edge tile: through a full-size copy (its padding lanes are discarded) */
                if (load)
                    for (int64_t i = 0; i < rows; i++) memcpy(edge + i * GM_NR, c + i * j->ldc, sizeof(float) * (size_t)cols);
                j->kern(kc, a, b, edge, GM_NR, load);
                for (int64_t i = 0; i < rows; i++) memcpy(c + i * j->ldc, edge + i * GM_NR, sizeof(float) * (size_t)cols);
            }
        }
    }
}

static void run_tasks(threadpool *tp, int64_t n, tp_fn fn, void *ctx) {
    if (tp && n > 1) tp_run(tp, n, fn, ctx);
    else
        for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
}

void gemm(float *C, int64_t ldc, const float *A, int64_t a_rs, int64_t a_cs, const float *B, int64_t b_rs,
          int64_t b_cs, int64_t M, int64_t N, int64_t K, float alpha, int accumulate, gemm_prec prec, threadpool *tp) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    gm_job j = {.C = C, .ldc = ldc, .A = A, .B = B, .a_rs = a_rs, .a_cs = a_cs, .b_rs = b_rs, .b_cs = b_cs, .M = M,
                .N = N, .K = K, .alpha = alpha, .accumulate = accumulate, .bf16 = prec == GEMM_BF16, .kern = kern_get()};
    j.pa = (M + GM_MR - 1) / GM_MR;
    j.pb = (N + GM_NR - 1) / GM_NR;
    j.Ap = buf_get(&t_pack_a, (size_t)(j.pa * GM_MR * K));
    j.Bp = buf_get(&t_pack_b, (size_t)(j.pb * GM_NR * K));
    int threads = tp ? tp_threads(tp) : 1;
    j.pack_ga = (j.pa + GM_PACK_GROUP - 1) / GM_PACK_GROUP;
    j.pack_gb = (j.pb + GM_PACK_GROUP - 1) / GM_PACK_GROUP;
    run_tasks(threads > 1 ? tp : NULL, j.pack_ga + j.pack_gb, pack_task, &j);

    j.mc_p = j.pa < GM_MC_P ? j.pa : GM_MC_P;
    j.nc_p = j.pb < GM_NC_P ? j.pb : GM_NC_P;
    for (;;) { /* smaller tiles until every thread has a few */
        int64_t n = ((j.pa + j.mc_p - 1) / j.mc_p) * ((j.pb + j.nc_p - 1) / j.nc_p);
        if (n >= (int64_t)threads * GM_TASKS_PER_THREAD || threads == 1) break;
        if (j.nc_p >= j.mc_p && j.nc_p > 2) j.nc_p = (j.nc_p + 1) / 2;
        else if (j.mc_p > 2) j.mc_p = (j.mc_p + 1) / 2;
        else break;
    }
    j.n_mt = (j.pa + j.mc_p - 1) / j.mc_p;
    j.n_nt = (j.pb + j.nc_p - 1) / j.nc_p;
    run_tasks(threads > 1 ? tp : NULL, j.n_mt * j.n_nt, tile_task, &j);
}

double gemm_measure_flops(int n, gemm_prec prec, threadpool *tp, double seconds) {
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(sizeof(float) * nn * 3);
    if (!a) return 0;
    float *b = a + nn, *c = b + nn;
    for (size_t i = 0; i < 2 * nn; i++) a[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    double best = 0, t_end = clock_now_s() + seconds;
    do {
        double t0 = clock_now_s();
        gemm(c, n, a, n, 1, b, n, 1, n, n, n, 1.0f, 0, prec, tp);
        double dt = clock_now_s() - t0;
        if (dt > 0 && 2.0 * n * n * n / dt > best) best = 2.0 * n * n * n / dt;
    } while (clock_now_s() < t_end);
    free(a);
    return best;
}
