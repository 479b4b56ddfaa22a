/* test_ops.c — every compute op of kernels/ (ops.h, qdot.h, attn.h) through one table-driven
 * harness: op x dtype x odd shapes x instruction-set level (kernels/isa.h, every level this CPU
 * has, forced in turn with isa_force).
 *
 * For each case (one op, one dtype, one shape; inputs from a fixed seed) the harness
 *   1. runs the op at every level into an output surrounded by GUARD_BYTES guard bytes (and
 *      hands it a guarded scratch buffer where the op takes one), and checks the guards after;
 *      output elements the op must write start as NaN, elements it must not touch (the gaps of
 *      strided outputs) must keep their bytes;
 *   2. measures the error against a double-precision reference on the dequantized inputs and
 *      checks it is within the op's threshold (below);
 *   3. memcmps the output of every level against the scalar level's: every level performs the
 *      same float operations lane for lane, so they agree bit for bit;
 *   4. runs the op's alternatives — the same result computed another way: each token or head
 *      alone, row or position ranges split, op_dot_row per element, F16 rows against F32 rows
 *      holding the same values — and memcmps them against the full run (batch invariance).
 *
 * Normalized error. For an output y = sum of terms, computed with at most `chain` float
 * roundings in a row (the longest per-lane accumulation), the textbook bound is
 * |y - ref| <= (chain + small) * u * sum |term| with u = 2^-24. The harness reports
 *     err = |y - ref| / (u * (chain + 16) * mag),   mag = sum of |term| (per op, below)
 * so that 1 is that bound. Thresholds (op_desc.tol; the worst seen is printed per op):
 *   matmul_q (Q8_0 Q4_0 Q5_0 Q4_K Q5_K Q6_K)  1   against the exact product of the dequantized
 *       weights and the quantized activations (the integer sums are exact); separately the
 *       quantized-activation product is within sum |w| * max d / 2 of the float activations'
 *   matmul_f, every weight type                1   against dequantize_row + a double dot
 *   mqa_scores / mqa_accum, F32, F16, BF16     1   (BF16: against the rounded inputs; the
 *       products are exact, the sums F32)
 *   mqa_attend, o / l                          1   (chain: positions + the scores' bound
 *       (dk/16 + 16) x max sum |q k|, a score's error being a relative error of its weight;
 *       BF16 adds its rounded queries and weights: 2^-8 (1 + 2 max sum |q k|) relative)
 *   mqa_attend_q8 (int8 rows, --kv-type q8)   1   (against its bound of query and weight
 *       quantization: see the op's section)
 *   small ops (scalar only today)              1   (rmsnorm, softmax, swiglu, add, dot, rope)
 *   quantize_act: |q*d - x| <= d/2 (err = |q*d - x| / (d/2), threshold 1 + 1e-5), the block
 *       sums exact, d = max|x|/127 to one rounding.
 *
 * Extending. An op is one op_desc in the ops[] table: a name, a case generator, prepare (the
 * inputs from the seed, the output's initial bytes, the reference), run (at a level already in
 * force), alternatives, an error function (default: the float comparison above) and its
 * threshold. The backward ("grad") ops of training register here the same way: prepare makes
 * the forward inputs and the upstream gradient, the reference is the double-precision
 * derivative.
 *
 *   test_ops [--perf] [OP]   --perf: time each op's run per level instead of checking
 *
 * Replaces test_kernels.c, test_kernels_q.c, test_qdot.c and test_attn.c; the checks of theirs
 * that are not table cases are the plain tests at the end (quantizer specifics, small-op
 * properties, quantize_row round trips), with two of isa.c's own (forcing is clamped to the CPU;
 * kernels in threads while another thread forces levels, for TSan). */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "check.h"
#include "kernels/attn.h"
#include "kernels/cpu/lanes.h"
#include "kernels/isa.h"
#include "kernels/ops.h"
#include "kernels/qdot.h"
#include "rand_blocks.h"

#define GUARD_BYTES 64  /* each side of every output and scratch buffer: a cache line of overrun */
#define GUARD_FILL 0xA5 /* a byte no kernel writes by accident (not 0, not a float's sign/exponent) */
#define POISON_FILL 0xFF /* bytes of an element the op must write: a NaN, caught by the error check */
#define MAX_CASES 2048   /* per op: the largest table (matmul_q) has about 1,700 */
#define U_F32 (1.0 / 16777216.0) /* unit roundoff of float: 2^-24 */

/* ---- the table's types ------------------------------------------------------------------ */

/* One case. Sizes mean what the op says: matmul n = row length, rows, tok = tokens; attention
 * n = key width (dk), rows = heads, tok = positions, aux = value width (dv); small ops n. */
typedef struct op_case {
    whale_dtype t;
    int64_t n, rows, tok, aux;
} op_case;

/* A prepared case: what prepare fills and the harness reads. */
typedef struct op_io {
    op_case c;
    size_t out_bytes, scratch_bytes; /* the guarded buffers (scratch 0: none) */
    uint8_t *out0;                   /* the output's bytes before every run */
    int64_t n_ref;                   /* floats at the start of the output compared with ref */
    double *ref, *mag;               /* (n_ref) reference; sum |term| (< 0: must keep out0's bytes) */
    double chain;                    /* the longest chain of float roundings (normalized error) */
    void *p;                         /* the op's own inputs */
} op_io;

typedef struct op_desc {
    const char *name;
    int (*cases)(op_case *out); /* fills up to MAX_CASES cases, returns how many */
    void (*prepare)(op_io *io); /* io->c set; allocates everything the other functions read */
    /* Runs the op once into out (out_bytes, starting as out0) with the given level in force. */
    void (*run)(op_io *io, void *out, float *scratch, isa_level level);
    int n_alt; /* alternatives: the same bits computed another way (k < n_alt; alt may skip one
                * that does not apply to a case by returning 0) */
    int (*alt)(op_io *io, void *out, float *scratch, int k);
    double (*error)(const op_io *io, const void *out); /* NULL: err_floats */
    double tol;
    void (*release)(op_io *io);
} op_desc;

/* ---- helpers ------------------------------------------------------------------------------ */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* A buffer of n bytes with GUARD_BYTES of GUARD_FILL before and after; guarded_ok checks them. */
static uint8_t *guarded_new(size_t n) {
    uint8_t *g = xmalloc(n + 2 * GUARD_BYTES);
    memset(g, GUARD_FILL, GUARD_BYTES);
    memset(g + GUARD_BYTES + n, GUARD_FILL, GUARD_BYTES);
    return g + GUARD_BYTES;
}
static int guarded_ok(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (p[-1 - (ptrdiff_t)i] != GUARD_FILL || p[n + i] != GUARD_FILL) return 0;
    return 1;
}
static void guarded_free(uint8_t *p) {
    if (p) free(p - GUARD_BYTES);
}

/* The reference arrays for n outputs, and the initial output (POISON_FILL). */
static void io_alloc(op_io *io, int64_t n_ref, size_t out_bytes) {
    io->n_ref = n_ref;
    io->ref = xmalloc(sizeof(double) * (size_t)n_ref);
    io->mag = xmalloc(sizeof(double) * (size_t)n_ref);
    io->out_bytes = out_bytes;
    io->out0 = xmalloc(out_bytes);
    memset(io->out0, POISON_FILL, out_bytes);
}

static void io_free(op_io *io) {
    free(io->ref), free(io->mag), free(io->out0), free(io->p);
}

/* Normalized error of float outputs (header); gaps (mag < 0) must keep out0's bytes. NaN, a
 * written gap or an unwritten element gives INFINITY. */
static double err_floats(const op_io *io, const void *out) {
    const float *y = out;
    double worst = 0;
    for (int64_t i = 0; i < io->n_ref; i++) {
        if (io->mag[i] < 0) {
            if (memcmp(y + i, io->out0 + 4 * i, 4)) return INFINITY;
            continue;
        }
        double e = fabs((double)y[i] - io->ref[i]) / (U_F32 * (io->chain + 16) * io->mag[i] + DBL_MIN);
        if (!(e <= DBL_MAX)) return INFINITY;
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* Activations with a few all-zero blocks and outliers, as real hidden states have. */
static void random_x(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * (rnd() % 17 == 0 ? 8.0f : 1.0f);
    for (int64_t b = 0; b + 32 <= n; b += 32)
        if (rnd() % 13 == 0) memset(x + b, 0, 32 * sizeof(float));
}

static int64_t split_at(int64_t n) { return n / 2 + (n > 2); } /* an odd place to split a range */

/* ---- matmul_q: op_matmul_rows_q (8-bit activations, integer dot products) ---------------- */

static const whale_dtype int_types[] = {WHALE_DTYPE_Q8_0, WHALE_DTYPE_Q4_0, WHALE_DTYPE_Q5_0,
                                        WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q5_K, WHALE_DTYPE_Q6_K};
#define N_INT_TYPES (int)(sizeof int_types / sizeof int_types[0])
/* rows and tokens: 4x4 tiles and their remainders, pairs of rows and an odd last row */
static const int64_t shape_counts[] = {1, 2, 3, 4, 5, 8, 9};
#define N_SHAPES (int)(sizeof shape_counts / sizeof shape_counts[0])
/* tokens of the integer kernels: a group of 2..5 or 8, a full group of 8 followed by a lone
 * token or by a group of 6 or 7, two full groups and a lone token */
static const int64_t tok_counts[] = {1, 2, 3, 4, 5, 8, 9, 14, 15, 17};
#define N_TOKS (int)(sizeof tok_counts / sizeof tok_counts[0])

typedef struct mm_in {
    uint8_t *w;    /* (rows, rb bytes) */
    size_t rb;
    float *x;      /* (tok, ldx) float activations */
    int64_t ldx, ldy;
    qact_block *xq; /* (tok, n/32) quantized activations (matmul_q) */
} mm_in;

static int mq_cases(op_case *c) {
    int k = 0;
    /* 32-element types: odd block counts too (a half last chunk) */
    const int64_t lens32[] = {32, 96, 128, 864, 2080}, lensk[] = {256, 768, 2304};
    for (int ti = 0; ti < N_INT_TYPES; ti++) {
        whale_dtype t = int_types[ti];
        int kq = dtype_get(t)->block_elems == 256;
        for (int li = 0; li < (kq ? 3 : 5); li++)
            for (int r = 0; r < N_SHAPES; r++)
                for (int b = 0; b < N_TOKS; b++) c[k++] = (op_case){t, kq ? lensk[li] : lens32[li], shape_counts[r], tok_counts[b], 0};
        /* rows longer than the panels (20480): the 4x4 tiles and their remainders, a half last
         * chunk for the 32-element types; longer than the tiles' activation sums (65536) */
        c[k++] = (op_case){t, 20480 + 512, 3, 1, 0};
        c[k++] = (op_case){t, 20480 + 512, 9, 5, 0};
        if (!kq) c[k++] = (op_case){t, 20480 + 32, 5, 6, 0};
        c[k++] = (op_case){t, 65536 + 512, 2, 5, 0};
    }
    return k;
}

static void mq_prepare(op_io *io) {
    const op_case *c = &io->c;
    int64_t n = c->n, nb = n / QACT_BLOCK;
    mm_in *m = io->p = xmalloc(sizeof *m);
    dtype_bytes(c->t, n, &m->rb);
    m->w = xmalloc(m->rb * (size_t)c->rows);
    m->x = xmalloc(sizeof(float) * (size_t)(n * c->tok));
    m->xq = xmalloc(sizeof(qact_block) * (size_t)(nb * c->tok));
    m->ldx = n, m->ldy = c->rows + 1; /* a gap column the kernels must not write */
    for (int64_t r = 0; r < c->rows; r++) random_row(c->t, m->w + (size_t)r * m->rb, n);
    random_x(m->x, n * c->tok);
    for (int64_t b = 0; b < c->tok; b++) op_quantize_act(m->xq + b * nb, m->x + b * n, n); /* scalar level */
    io_alloc(io, m->ldy * c->tok, sizeof(float) * (size_t)(m->ldy * c->tok));
    io->chain = (double)((nb + 1) / 2); /* a lane sums one product per 64-element chunk, even and odd apart */
    float *wf = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t b = 0; b < c->tok; b++) io->mag[b * m->ldy + c->rows] = -1;
    for (int64_t r = 0; r < c->rows; r++) {
        dequantize_row(c->t, m->w + (size_t)r * m->rb, wf, n);
        double wabs = 0;
        for (int64_t i = 0; i < n; i++) wabs += fabs(wf[i]);
        for (int64_t b = 0; b < c->tok; b++) {
            double e = 0, mag = 0, fl = 0, dx = 0;
            for (int64_t i = 0; i < n; i++) {
                const qact_block *q = m->xq + b * nb + i / 32;
                double term = (double)wf[i] * q->d * q->q[i % 32];
                e += term, mag += fabs(term), fl += (double)wf[i] * m->x[b * n + i];
                dx = q->d > dx ? q->d : dx;
            }
            io->ref[b * m->ldy + r] = e, io->mag[b * m->ldy + r] = mag;
            /* the activations' rounding: at most half a step d per element */
            CHECKF(fabs(e - fl) <= wabs * dx * 0.5 * (1 + 1e-6) + 1e-30, "%s n=%lld: quantized-activation dot %g vs float %g",
                   dtype_name(c->t), (long long)n, e, fl);
        }
    }
    free(wf);
}

static void mq_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)scratch, (void)level;
    mm_in *m = io->p;
    op_matmul_rows_q(out, m->ldy, m->w, io->c.t, m->xq, io->c.n, io->c.tok, 0, io->c.rows);
}

/* 0: each token alone, rows in two ranges split at an odd place; 1: the batch, rows 0 and 1.. */
static int mq_alt(op_io *io, void *out, float *scratch, int k) {
    (void)scratch;
    mm_in *m = io->p;
    const op_case *c = &io->c;
    float *y = out;
    int64_t nb = c->n / QACT_BLOCK, s = split_at(c->rows);
    if (k == 0) {
        for (int64_t b = 0; b < c->tok; b++) {
            op_matmul_rows_q(y + b * m->ldy, m->ldy, m->w, c->t, m->xq + b * nb, c->n, 1, 0, s);
            op_matmul_rows_q(y + b * m->ldy, m->ldy, m->w, c->t, m->xq + b * nb, c->n, 1, s, c->rows);
        }
        return 1;
    }
    if (c->rows < 2) return 0;
    op_matmul_rows_q(y, m->ldy, m->w, c->t, m->xq, c->n, c->tok, 0, 1);
    op_matmul_rows_q(y, m->ldy, m->w, c->t, m->xq, c->n, c->tok, 1, c->rows);
    return 1;
}

static void mm_release(op_io *io) {
    mm_in *m = io->p;
    free(m->w), free(m->x), free(m->xq);
}

/* ---- matmul_f: op_matmul_rows (F32 activations) and op_dot_row ---------------------------- */

static const whale_dtype all_types[] = {WHALE_DTYPE_F32,  WHALE_DTYPE_F16,  WHALE_DTYPE_BF16, WHALE_DTYPE_Q4_0,
                                        WHALE_DTYPE_Q4_1, WHALE_DTYPE_Q5_0, WHALE_DTYPE_Q5_1, WHALE_DTYPE_Q8_0,
                                        WHALE_DTYPE_Q2_K, WHALE_DTYPE_Q3_K, WHALE_DTYPE_Q4_K, WHALE_DTYPE_Q5_K,
                                        WHALE_DTYPE_Q6_K};
#define N_ALL_TYPES (int)(sizeof all_types / sizeof all_types[0])

static int mf_cases(op_case *c) {
    int k = 0;
    const int64_t lens[] = {1, 15, 16, 37, 57, 64, 100, 123, 257, 896}, toks[] = {1, 2, 3, 4, 9};
    for (int ti = 0; ti < 3; ti++) /* F32, F16, BF16: read in place, any length */
        for (int li = 0; li < 10; li++)
            for (int r = 0; r < 6; r++)
                for (int b = 0; b < 5; b++) c[k++] = (op_case){all_types[ti], lens[li], shape_counts[r], toks[b], 0};
    for (int ti = 0; ti < 3; ti++) { /* prefill passes of 1024 elements, more rows than a pass's 32 */
        c[k++] = (op_case){all_types[ti], 2051, 33, 7, 0};
        c[k++] = (op_case){all_types[ti], 1100, 35, 4, 0};
    }
    for (int ti = 0; ti < N_ALL_TYPES; ti++) {
        whale_dtype t = all_types[ti];
        int64_t be = dtype_get(t)->block_elems;
        const int64_t blocks[] = {1, 3, 7, 11}; /* plain types: lengths 37 x that */
        for (int bi = 0; bi < 4; bi++) c[k++] = (op_case){t, blocks[bi] * (be > 1 ? be : 37), 2, 2, 0};
        if (be > 1) { /* through scratch: several rows and tokens */
            c[k++] = (op_case){t, 512, 5, 4, 0};
            c[k++] = (op_case){t, 768, 1, 1, 0};
            if (be == 32) c[k++] = (op_case){t, 224, 3, 5, 0};
        }
    }
    return k;
}

static void mf_prepare(op_io *io) {
    const op_case *c = &io->c;
    int64_t n = c->n;
    mm_in *m = io->p = xmalloc(sizeof *m);
    dtype_bytes(c->t, n, &m->rb);
    m->w = xmalloc(m->rb * (size_t)c->rows);
    m->ldx = n + 1, m->ldy = c->rows + 1; /* strides wider than the data */
    m->x = xmalloc(sizeof(float) * (size_t)(m->ldx * c->tok));
    m->xq = NULL;
    for (int64_t r = 0; r < c->rows; r++) random_row(c->t, m->w + (size_t)r * m->rb, n);
    for (int64_t i = 0; i < m->ldx * c->tok; i++) m->x[i] = frand();
    io_alloc(io, m->ldy * c->tok, sizeof(float) * (size_t)(m->ldy * c->tok));
    io->scratch_bytes = sizeof(float) * (size_t)n;
    io->chain = (double)((n + 31) / 32); /* 16 lanes, even and odd chunks apart */
    float *wf = xmalloc(sizeof(float) * (size_t)n);
    for (int64_t b = 0; b < c->tok; b++) io->mag[b * m->ldy + c->rows] = -1;
    for (int64_t r = 0; r < c->rows; r++) {
        dequantize_row(c->t, m->w + (size_t)r * m->rb, wf, n);
        for (int64_t b = 0; b < c->tok; b++) {
            double e = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                double term = (double)wf[i] * m->x[b * m->ldx + i];
                e += term, mag += fabs(term);
            }
            io->ref[b * m->ldy + r] = e, io->mag[b * m->ldy + r] = mag;
        }
    }
    free(wf);
}

static void mf_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)level;
    mm_in *m = io->p;
    op_matmul_rows(out, m->ldy, m->w, io->c.t, m->x, m->ldx, io->c.n, io->c.tok, 0, io->c.rows, scratch);
}

/* 0: each token alone, rows split; 1: the batch, rows 0 and 1..; 2: op_dot_row per element. */
static int mf_alt(op_io *io, void *out, float *scratch, int k) {
    mm_in *m = io->p;
    const op_case *c = &io->c;
    float *y = out;
    int64_t s = split_at(c->rows);
    if (k == 0) {
        for (int64_t b = 0; b < c->tok; b++) {
            op_matmul_rows(y + b * m->ldy, m->ldy, m->w, c->t, m->x + b * m->ldx, m->ldx, c->n, 1, 0, s, scratch);
            op_matmul_rows(y + b * m->ldy, m->ldy, m->w, c->t, m->x + b * m->ldx, m->ldx, c->n, 1, s, c->rows, scratch);
        }
        return 1;
    }
    if (k == 1) {
        if (c->rows < 2) return 0;
        op_matmul_rows(y, m->ldy, m->w, c->t, m->x, m->ldx, c->n, c->tok, 0, 1, scratch);
        op_matmul_rows(y, m->ldy, m->w, c->t, m->x, m->ldx, c->n, c->tok, 1, c->rows, scratch);
        return 1;
    }
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t b = 0; b < c->tok; b++)
            y[b * m->ldy + r] = op_dot_row(c->t, m->w + (size_t)r * m->rb, m->x + b * m->ldx, c->n);
    return 1;
}

/* ---- quantize_act: op_quantize_act --------------------------------------------------------- */

static int qa_cases(op_case *c) {
    const int64_t blocks[] = {1, 3, 41, 64};
    for (int i = 0; i < 4; i++) c[i] = (op_case){WHALE_DTYPE_F32, 32 * blocks[i], 1, 1, 0};
    return 4;
}

static void qa_prepare(op_io *io) {
    int64_t n = io->c.n;
    float *x = io->p = xmalloc(sizeof(float) * (size_t)n);
    random_x(x, n);
    x[n > 3 ? 3 : 0] = 1e-30f; /* tiny */
    if (n >= 96)
        for (int i = 64; i < 96; i++) x[i] = (float)(i - 80) * 0.5f; /* halves: round-to-even ties */
    if (n > 100) x[100] = -3e4f;
    io_alloc(io, 0, sizeof(qact_block) * (size_t)(n / QACT_BLOCK));
}

static void qa_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)scratch, (void)level;
    op_quantize_act(out, io->p, io->c.n);
}

/* 0: each block alone */
static int qa_alt(op_io *io, void *out, float *scratch, int k) {
    (void)scratch, (void)k;
    const float *x = io->p;
    for (int64_t b = 0; b < io->c.n / QACT_BLOCK; b++) op_quantize_act((qact_block *)out + b, x + 32 * b, 32);
    return 1;
}

/* max |q*d - x| / (d/2) over the elements; INFINITY when a scale or a sum is wrong. */
static double qa_error(const op_io *io, const void *out) {
    const float *x = io->p;
    const qact_block *q = out;
    double worst = 0;
    for (int64_t b = 0; b < io->c.n / QACT_BLOCK; b++, x += 32) {
        double amax = 0;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) amax = fabs(x[i]) > amax ? fabs(x[i]) : amax;
        if (fabs(q[b].d - amax / 127) > amax / 127 * U_F32 * 2) return INFINITY;
        for (int i = 0; i < 32; i++) {
            if (q[b].q[i] < -127) return INFINITY;
            *(i < 16 ? &s0 : &s1) += q[b].q[i];
            double e = fabs((double)q[b].q[i] * q[b].d - x[i]);
            if (q[b].d == 0) {
                if (q[b].q[i] != 0) return INFINITY;
                continue;
            }
            e /= q[b].d / 2;
            worst = e > worst ? e : worst;
        }
        if (s0 != q[b].s16[0] || s1 != q[b].s16[1]) return INFINITY;
    }
    return worst;
}

/* ---- attention: op_mqa_scores, op_mqa_accum, op_mqa_attend (F32 and F16 rows) ------------ */

typedef struct at_in {
    float *q;       /* (rows heads, ldq) queries; accum: (rows, ldp) probabilities */
    float *kv;      /* (tok positions, ldk) rows as F32 (for F16/BF16 cases: the widened values) */
    uint16_t *kv16; /* the same rows as half floats or bfloat16 (F16, BF16 cases) */
    uint16_t *q16;  /* BF16 scores: q as bfloat16 (q then holds the widened values) */
    uint32_t *pp;   /* BF16 accum: the probabilities as pairs (rows, ldpp), q the widened values */
    int64_t ldq, ldk, ldo, ldpp;
} at_in;

static int at_type(const op_io *io) {
    return io->c.t == WHALE_DTYPE_F16 ? OP_KV_F16 : io->c.t == WHALE_DTYPE_BF16 ? OP_KV_BF16 : OP_KV_F32;
}
static const whale_dtype at_dtypes[3] = {WHALE_DTYPE_F32, WHALE_DTYPE_F16, WHALE_DTYPE_BF16};

static float bf16_widen(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Inputs shared by the attention ops: q (heads x ldq), kv rows (positions x ldk) in [-1, 1).
 * round_q: BF16 queries (scores) or probabilities (accum) rounded as the kernels take them. */
static at_in *at_inputs(op_io *io, int64_t qcols, int64_t kcols, float qscale, int round_q) {
    const op_case *c = &io->c;
    at_in *a = io->p = xmalloc(sizeof *a);
    a->ldq = qcols + 3, a->ldk = kcols + 5;
    a->q = xmalloc(sizeof(float) * (size_t)(c->rows * a->ldq));
    a->q16 = xmalloc(sizeof(uint16_t) * (size_t)(c->rows * a->ldq));
    a->kv = xmalloc(sizeof(float) * (size_t)(c->tok * a->ldk));
    a->kv16 = xmalloc(sizeof(uint16_t) * (size_t)(c->tok * a->ldk));
    a->ldpp = (a->ldq + 1) / 2, a->pp = xmalloc(sizeof(uint32_t) * (size_t)(c->rows * a->ldpp));
    int bf = at_type(io) == OP_KV_BF16;
    for (int64_t i = 0; i < c->rows * a->ldq; i++) {
        a->q[i] = frand() * qscale;
        if (bf && round_q) a->q16[i] = op_bf16_round(a->q[i]), a->q[i] = bf16_widen(a->q16[i]);
    }
    for (int64_t i = 0; i < c->tok * a->ldk; i++) {
        a->kv[i] = frand();
        if (at_type(io) == OP_KV_F16) a->kv16[i] = f32_to_fp16(a->kv[i]), a->kv[i] = fp16_to_f32(a->kv16[i]);
        if (bf) a->kv16[i] = op_bf16_round(a->kv[i]), a->kv[i] = bf16_widen(a->kv16[i]);
    }
    if (bf && round_q) /* accum's pairs: (p_t, p_t+1) of each row, from the rounded values */
        for (int64_t h = 0; h < c->rows; h++)
            for (int64_t t = 0; t < a->ldq; t += 2)
                a->pp[h * a->ldpp + t / 2] = (uint32_t)a->q16[h * a->ldq + t] |
                                             (t + 1 < a->ldq ? (uint32_t)a->q16[h * a->ldq + t + 1] << 16 : 0);
    return a;
}

static void at_release(op_io *io) {
    at_in *a = io->p;
    free(a->q), free(a->kv), free(a->kv16), free(a->q16), free(a->pp);
}

/* scores: n = d, rows = heads, tok = positions */
static int sc_cases(op_case *c) {
    const int64_t heads[] = {1, 3, 5, 16}, dims[] = {1, 15, 16, 17, 41, 64, 576}, poss[] = {1, 3, 4, 7, 11, 64};
    int k = 0;
    for (int f = 0; f < 3; f++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 7; b++)
                for (int p = 0; p < 6; p++) c[k++] = (op_case){at_dtypes[f], dims[b], heads[a], poss[p], 0};
    return k;
}

static void sc_prepare(op_io *io) {
    const op_case *c = &io->c;
    at_in *a = at_inputs(io, c->n, c->n, 1.0f, 1);
    a->ldo = c->tok + 2; /* lds, with a gap */
    io_alloc(io, c->rows * a->ldo, sizeof(float) * (size_t)(c->rows * a->ldo));
    io->chain = (double)((c->n + 15) / 16);
    for (int64_t h = 0; h < c->rows; h++)
        for (int64_t t = 0; t < a->ldo; t++) {
            double e = 0, mag = 0;
            for (int64_t i = 0; t < c->tok && i < c->n; i++) {
                double term = (double)a->q[h * a->ldq + i] * a->kv[t * a->ldk + i];
                e += term, mag += fabs(term);
            }
            io->ref[h * a->ldo + t] = e, io->mag[h * a->ldo + t] = t < c->tok ? mag : -1;
        }
}

static void sc_call(const op_io *io, float *s, int64_t h0, int64_t nh, int64_t t0, int64_t nt, int type) {
    const at_in *a = io->p;
    float *dst = s + h0 * a->ldo + t0;
    const float *q = a->q + h0 * a->ldq;
    if (type == OP_KV_BF16)
        op_mqa_scores_bf16(dst, a->ldo, a->q16 + h0 * a->ldq, a->ldq, nh, a->kv16 + t0 * a->ldk, a->ldk, nt, io->c.n);
    else if (type == OP_KV_F16) op_mqa_scores_f16(dst, a->ldo, q, a->ldq, nh, a->kv16 + t0 * a->ldk, a->ldk, nt, io->c.n);
    else op_mqa_scores(dst, a->ldo, q, a->ldq, nh, a->kv + t0 * a->ldk, a->ldk, nt, io->c.n);
}

static void sc_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)scratch, (void)level;
    sc_call(io, out, 0, io->c.rows, 0, io->c.tok, at_type(io));
}

/* 0: every (head, position) alone; 1 (F16): the F32 kernel on the widened rows */
static int sc_alt(op_io *io, void *out, float *scratch, int k) {
    (void)scratch;
    if (k == 0) {
        for (int64_t h = 0; h < io->c.rows; h++)
            for (int64_t t = 0; t < io->c.tok; t++) sc_call(io, out, h, 1, t, 1, at_type(io));
        return 1;
    }
    if (at_type(io) != OP_KV_F16) return 0;
    sc_call(io, out, 0, io->c.rows, 0, io->c.tok, 0);
    return 1;
}

/* accum: n = d, rows = heads, tok = positions; q holds the probabilities (heads x ldq) */
static int ac_cases(op_case *c) {
    const int64_t heads[] = {1, 4, 5, 16}, dims[] = {1, 16, 17, 40, 64, 100, 512}, poss[] = {1, 2, 3, 7, 64};
    int k = 0;
    for (int f = 0; f < 3; f++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 7; b++)
                for (int p = 0; p < 5; p++) c[k++] = (op_case){at_dtypes[f], dims[b], heads[a], poss[p], 0};
    return k;
}

static void ac_prepare(op_io *io) {
    const op_case *c = &io->c;
    at_in *a = at_inputs(io, c->tok, c->n + 2, 1.0f, 1);
    a->ldo = c->n + 1;
    io_alloc(io, c->rows * a->ldo, sizeof(float) * (size_t)(c->rows * a->ldo));
    io->chain = (double)c->tok;
    float *o0 = (float *)io->out0;
    for (int64_t i = 0; i < c->rows * a->ldo; i++) o0[i] = frand(); /* accumulates onto what is there */
    for (int64_t h = 0; h < c->rows; h++)
        for (int64_t i = 0; i < a->ldo; i++) {
            double e = o0[h * a->ldo + i], mag = fabs(e);
            for (int64_t t = 0; i < c->n && t < c->tok; t++) {
                double term = (double)a->q[h * a->ldq + t] * a->kv[t * a->ldk + i];
                e += term, mag += fabs(term);
            }
            io->ref[h * a->ldo + i] = e, io->mag[h * a->ldo + i] = i < c->n ? mag : -1;
        }
}

static void ac_call(const op_io *io, float *o, int64_t h0, int64_t nh, int64_t t0, int64_t nt, int type) {
    const at_in *a = io->p;
    float *dst = o + h0 * a->ldo;
    const float *p = a->q + h0 * a->ldq + t0;
    if (type == OP_KV_BF16) /* pairs: t0 even */
        op_mqa_accum_bf16(dst, a->ldo, a->pp + h0 * a->ldpp + t0 / 2, a->ldpp, nh, a->kv16 + t0 * a->ldk, a->ldk, nt,
                          io->c.n);
    else if (type == OP_KV_F16) op_mqa_accum_f16(dst, a->ldo, p, a->ldq, nh, a->kv16 + t0 * a->ldk, a->ldk, nt, io->c.n);
    else op_mqa_accum(dst, a->ldo, p, a->ldq, nh, a->kv + t0 * a->ldk, a->ldk, nt, io->c.n);
}

static void ac_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)scratch, (void)level;
    ac_call(io, out, 0, io->c.rows, 0, io->c.tok, at_type(io));
}

/* 0: each head alone, positions in two ranges; 1 (F16): the F32 kernel on the widened rows */
static int ac_alt(op_io *io, void *out, float *scratch, int k) {
    (void)scratch;
    if (k == 0) {
        int64_t s = split_at(io->c.tok);
        if (at_type(io) == OP_KV_BF16) s &= ~(int64_t)1; /* BF16 splits between pairs */
        for (int64_t h = 0; h < io->c.rows; h++) {
            if (s > 0) ac_call(io, out, h, 1, 0, s, at_type(io));
            if (s < io->c.tok) ac_call(io, out, h, 1, s, io->c.tok - s, at_type(io));
        }
        return 1;
    }
    if (at_type(io) != OP_KV_F16) return 0;
    ac_call(io, out, 0, io->c.rows, 0, io->c.tok, 0);
    return 1;
}

/* attend: n = dk, aux = dv, rows = heads, tok = positions; one cache row serves as key (dk
 * elements) and value (its first dv), as DeepSeek's latent does. Output: o (heads x ldo), then
 * mx (heads), then l (heads). */
static int ad_cases(op_case *c) {
    const int64_t heads[] = {1, 3, 16}, poss[] = {1, 63, 64, 65, 150}, dims[][2] = {{17, 13}, {64, 64}};
    int k = 0;
    for (int f = 0; f < 3; f++) {
        whale_dtype t = at_dtypes[f];
        for (int a = 0; a < 3; a++)
            for (int d = 0; d < 2; d++)
                for (int p = 0; p < 5; p++) c[k++] = (op_case){t, dims[d][0], heads[a], poss[p], dims[d][1]};
        /* DeepSeek's latent: 576 wide keys, the first 512 as values, 16 heads */
        c[k++] = (op_case){t, 576, 16, 150, 512};
        c[k++] = (op_case){t, 576, 3, 65, 512};
        c[k++] = (op_case){t, 576, 1, 1, 512};
    }
    return k;
}

static void ad_prepare(op_io *io) {
    const op_case *c = &io->c;
    int64_t H = c->rows, T = c->tok, dk = c->n, dv = c->aux;
    at_in *a = at_inputs(io, dk, dk, 0.2f, 0);
    a->ldo = dv + 1;
    io_alloc(io, H * a->ldo, sizeof(float) * (size_t)(H * a->ldo + 2 * H));
    io->scratch_bytes = sizeof(float) * (size_t)OP_MQA_SCRATCH(H, dk);
    float *o0 = (float *)io->out0, *mx = o0 + H * a->ldo, *l = mx + H;
    double *p = xmalloc(sizeof(double) * (size_t)T), smag = 0;
    for (int64_t h = 0; h < H; h++) {
        mx[h] = -INFINITY, l[h] = 0;
        double m = -INFINITY, sum = 0;
        for (int64_t t = 0; t < T; t++) {
            double s = 0, sm = 0;
            for (int64_t i = 0; i < dk; i++) {
                s += (double)a->q[h * a->ldq + i] * a->kv[t * a->ldk + i];
                sm += fabs((double)a->q[h * a->ldq + i] * a->kv[t * a->ldk + i]);
            }
            p[t] = s, m = s > m ? s : m, smag = sm > smag ? sm : smag;
        }
        for (int64_t t = 0; t < T; t++) sum += p[t] = exp(p[t] - m);
        for (int64_t i = 0; i < a->ldo; i++) {
            double e = 0, mag = 0;
            for (int64_t t = 0; i < dv && t < T; t++) e += p[t] / sum * a->kv[t * a->ldk + i], mag += p[t] / sum * fabs(a->kv[t * a->ldk + i]);
            o0[h * a->ldo + i] = i < dv ? 0.0f : o0[h * a->ldo + i]; /* a head starts at o = 0 */
            io->ref[h * a->ldo + i] = e, io->mag[h * a->ldo + i] = i < dv ? mag : -1;
        }
    }
    /* the weighted sum's chain, plus the scores': a score's absolute error is a relative error
     * of its weight */
    io->chain = (double)T + ((double)((dk + 15) / 16) + 16) * smag;
    /* BF16: queries and weights rounded to 8 bits (2^-9 relative each): a weight is off by
     * 2^-9 (1 + 2 smag) relative at most, o / l by twice that times mag; in units of U_F32 */
    if (at_type(io) == OP_KV_BF16) io->chain = 2.0 * 32768.0 * (1 + 2 * smag) + io->chain;
    free(p);
}

static void ad_call(const op_io *io, void *out, int64_t h0, int64_t nh, int64_t t0, int64_t nt, int type, float *scratch) {
    const at_in *a = io->p;
    const op_case *c = &io->c;
    float *o = out, *mx = o + c->rows * a->ldo, *l = mx + c->rows;
    const void *rows = type != OP_KV_F32 ? (const void *)(a->kv16 + t0 * a->ldk) : (const void *)(a->kv + t0 * a->ldk);
    op_mqa_attend_t(o + h0 * a->ldo, a->ldo, mx + h0, l + h0, a->q + h0 * a->ldq, a->ldq, nh, rows, a->ldk, c->n, rows,
                    a->ldk, c->aux, nt, type, scratch);
}

static void ad_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)level;
    ad_call(io, out, 0, io->c.rows, 0, io->c.tok, at_type(io), scratch);
}

/* 0: each head alone, positions split at a block boundary (flash-decoding's pieces);
 * 1 (F16): op_mqa_attend on the widened F32 rows */
static int ad_alt(op_io *io, void *out, float *scratch, int k) {
    const op_case *c = &io->c;
    if (k == 0) {
        for (int64_t h = 0; h < c->rows; h++) {
            int64_t s = c->tok > OP_MQA_BLOCK ? OP_MQA_BLOCK : c->tok;
            ad_call(io, out, h, 1, 0, s, at_type(io), scratch);
            if (s < c->tok) ad_call(io, out, h, 1, s, c->tok - s, at_type(io), scratch);
        }
        return 1;
    }
    if (at_type(io) != OP_KV_F16) return 0;
    const at_in *a = io->p;
    float *o = out, *mx = o + c->rows * a->ldo, *l = mx + c->rows;
    op_mqa_attend(o, a->ldo, mx, l, a->q, a->ldq, c->rows, a->kv, a->ldk, c->n, a->kv, a->ldk, c->aux, c->tok, scratch);
    return 1;
}

/* o / l against the double softmax-weighted sum, the error over scale x mag (ldo floats per head,
 * then mx and l); gaps must keep their bytes. Shared by mqa_attend and mqa_attend_q8. */
static double attend_error(const op_io *io, const void *out, int64_t ldo, double scale) {
    const float *o = out, *l = o + io->c.rows * ldo + io->c.rows;
    double worst = 0;
    for (int64_t h = 0; h < io->c.rows; h++) {
        if (!(l[h] >= 1)) return INFINITY; /* the max's own term is exp(0) = 1 */
        for (int64_t i = 0; i < ldo; i++) {
            int64_t j = h * ldo + i;
            if (io->mag[j] < 0) {
                if (memcmp(o + j, io->out0 + 4 * j, 4)) return INFINITY;
                continue;
            }
            double e = fabs((double)o[j] / l[h] - io->ref[j]) / (scale * io->mag[j] + DBL_MIN);
            if (!(e <= DBL_MAX)) return INFINITY;
            worst = e > worst ? e : worst;
        }
    }
    return worst;
}

/* mag = sum p |v|: the bound is (chain + 16) u of it. */
static double ad_error(const op_io *io, const void *out) {
    return attend_error(io, out, ((const at_in *)io->p)->ldo, U_F32 * (io->chain + 16));
}

/* ---- attention over int8 rows: op_mqa_attend_q8 (--kv-type q8) ---------------------------- */

/* n = dk, aux = split (the values: the rows' first segment), rows = heads, tok = positions.
 * The rows are op_q8_row's of values in [-1, 1) (the second segment scaled by 3: its own range);
 * the reference is the double softmax-weighted sum over the rows' dequantized values with the
 * unquantized queries. Its bound, per output (io->mag holds it, error = |o/l - ref| / bound):
 *   queries: a score moves by at most d_s = sum over segments of (query scale / 2) sum |k|, so a
 *     weight by a factor within exp(+-2 d_s) after normalizing: 2 (e^(2 d_s) - 1) x sum p |v| / l;
 *   weights: each term p_t s_t q_ti is off by at most (w scale / 2) x 127 per block (the block's
 *     largest p_t s_t / 255 as scale): sum over blocks of nb x max(p s) x 127 / 510, over l;
 *   plus float roundings: 1e-5 x sum p |v| / l. */
typedef struct q8_in {
    float *q;       /* (heads, ldq) */
    uint8_t *rows;  /* (tok, row_bytes) */
    float *deq;     /* (tok, dk) the rows' values */
    int64_t ldq, row_bytes, ldo;
} q8_in;

static int q8_cases(op_case *c) {
    const int64_t heads[] = {1, 3, 16}, poss[] = {1, 63, 64, 65, 150}, dims[][2] = {{17, 13}, {64, 48}, {576, 512}};
    int k = 0;
    for (int a = 0; a < 3; a++)
        for (int d = 0; d < 3; d++)
            for (int p = 0; p < 5; p++) c[k++] = (op_case){WHALE_DTYPE_Q8_0, dims[d][0], heads[a], poss[p], dims[d][1]};
    return k;
}

static void q8_prepare(op_io *io) {
    const op_case *c = &io->c;
    int64_t H = c->rows, T = c->tok, dk = c->n, sp = c->aux;
    q8_in *a = io->p = xmalloc(sizeof *a);
    a->ldq = dk + 3, a->row_bytes = OP_Q8_ROW_BYTES(dk) + 4, a->ldo = sp + 1;
    a->q = xmalloc(sizeof(float) * (size_t)(H * a->ldq));
    a->rows = xmalloc((size_t)(T * a->row_bytes));
    a->deq = xmalloc(sizeof(float) * (size_t)(T * dk));
    float *x = xmalloc(sizeof(float) * (size_t)dk);
    for (int64_t i = 0; i < H * a->ldq; i++) a->q[i] = frand() * 0.2f;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < dk; i++) x[i] = frand() * (i < sp ? 1.0f : 3.0f);
        op_q8_row(a->rows + t * a->row_bytes, x, dk, sp);
        op_q8_row_get(a->deq + t * dk, a->rows + t * a->row_bytes, dk, sp);
    }
    free(x);
    io_alloc(io, H * a->ldo, sizeof(float) * (size_t)(H * a->ldo + 2 * H));
    io->scratch_bytes = sizeof(float) * (size_t)op_mqa_scratch_q8(H, dk, sp);
    float *o0 = (float *)io->out0, *mx = o0 + H * a->ldo, *l = mx + H;
    double *p = xmalloc(sizeof(double) * (size_t)T);
    for (int64_t h = 0; h < H; h++) {
        mx[h] = -INFINITY, l[h] = 0;
        const float *qh = a->q + h * a->ldq;
        double qs[2] = {0, 0}, m = -INFINITY, sum = 0, ds = 0;
        for (int64_t i = 0; i < dk; i++) qs[i >= sp] = fmax(qs[i >= sp], fabs(qh[i]) / 127);
        for (int64_t t = 0; t < T; t++) {
            double sc = 0, dst = 0;
            for (int64_t i = 0; i < dk; i++) {
                sc += (double)qh[i] * a->deq[t * dk + i];
                dst += qs[i >= sp] / 2 * fabs(a->deq[t * dk + i]);
            }
            p[t] = sc, m = sc > m ? sc : m, ds = dst > ds ? dst : ds;
        }
        for (int64_t t = 0; t < T; t++) sum += p[t] = exp(p[t] - m);
        double wq = 0; /* the weights' quantization bound, before dividing by sum */
        for (int64_t b = 0; b < T; b += OP_MQA_BLOCK) {
            double mps = 0, s_row;
            int64_t nb = T - b < OP_MQA_BLOCK ? T - b : OP_MQA_BLOCK;
            for (int64_t t = b; t < b + nb; t++) {
                float sc2[2];
                memcpy(sc2, a->rows + t * a->row_bytes + dk, sizeof sc2);
                s_row = sc2[0];
                mps = p[t] * s_row > mps ? p[t] * s_row : mps;
            }
            wq += (double)nb * mps * 127 / 510;
        }
        for (int64_t i = 0; i < a->ldo; i++) {
            double e = 0, mag = 0;
            for (int64_t t = 0; i < sp && t < T; t++) e += p[t] / sum * a->deq[t * dk + i], mag += p[t] / sum * fabs(a->deq[t * dk + i]);
            o0[h * a->ldo + i] = i < sp ? 0.0f : o0[h * a->ldo + i];
            io->ref[h * a->ldo + i] = e;
            io->mag[h * a->ldo + i] = i < sp ? 2 * expm1(2 * ds) * mag + wq / sum + 1e-5 * mag : -1;
        }
    }
    free(p);
}

/* Heads h0..h0+nh: their queries quantized once, then positions [t0, t0 + nt) and, when nt2 > 0,
 * [t0 + nt, t0 + nt + nt2) as a second span (the model's spans of contiguous pages). */
static void q8_call(const op_io *io, void *out, int64_t h0, int64_t nh, int64_t t0, int64_t nt, int64_t nt2,
                    float *scratch) {
    const q8_in *a = io->p;
    const op_case *c = &io->c;
    float *o = out, *mx = o + c->rows * a->ldo, *l = mx + c->rows;
    op_mqa_q8_queries(scratch, a->q + h0 * a->ldq, a->ldq, nh, c->n, c->aux);
    for (int span = 0; span < 2 && (span == 0 || nt2 > 0); span++)
        op_mqa_attend_q8(o + h0 * a->ldo, a->ldo, mx + h0, l + h0, nh, a->rows + (t0 + (span ? nt : 0)) * a->row_bytes,
                         a->row_bytes, c->n, c->aux, span ? nt2 : nt, scratch);
}

static void q8_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)level;
    q8_call(io, out, 0, io->c.rows, 0, io->c.tok, 0, scratch);
}

/* 0: each head alone, positions split at a block boundary into two spans of one call */
static int q8_alt(op_io *io, void *out, float *scratch, int k) {
    (void)k;
    const op_case *c = &io->c;
    for (int64_t h = 0; h < c->rows; h++) {
        int64_t s = c->tok > OP_MQA_BLOCK ? OP_MQA_BLOCK : c->tok;
        q8_call(io, out, h, 1, 0, s, c->tok - s, scratch);
    }
    return 1;
}

/* mag holds the bound itself. */
static double q8_error(const op_io *io, const void *out) { return attend_error(io, out, ((const q8_in *)io->p)->ldo, 1.0); }

static void q8_release(op_io *io) {
    q8_in *a = io->p;
    free(a->q), free(a->rows), free(a->deq);
}

/* ---- small ops (ops.h; scalar today, registered so a SIMD version is checked when it lands) */

enum { SM_RMSNORM, SM_SOFTMAX, SM_SWIGLU, SM_ADD, SM_DOT, SM_ROPE_NEOX, SM_ROPE_NORM, SM_N };
static const char *const sm_names[SM_N] = {"rmsnorm", "softmax", "swiglu", "add", "dot", "rope_neox", "rope_norm"};

/* aux = which op; n = length (rope: rotated dims, x has n + 6, position tok) */
static int sm_cases(op_case *c) {
    const int64_t lens[] = {1, 7, 64, 100, 897}, rot[] = {2, 8, 64, 128};
    int k = 0;
    for (int op = 0; op < SM_N; op++) {
        int rope = op == SM_ROPE_NEOX || op == SM_ROPE_NORM;
        for (int i = 0; i < (rope ? 4 : 5); i++) c[k++] = (op_case){WHALE_DTYPE_F32, rope ? rot[i] : lens[i], 1, rope ? 1 + 977 * i : 1, op};
    }
    return k;
}

typedef struct sm_in {
    float *x, *w, *inv; /* inputs (n + 6 each), rope frequencies */
} sm_in;

static void sm_prepare(op_io *io) {
    const op_case *c = &io->c;
    int64_t n = c->n, nx = n + 6, op = c->aux;
    sm_in *s = io->p = xmalloc(sizeof *s);
    s->x = xmalloc(sizeof(float) * (size_t)nx), s->w = xmalloc(sizeof(float) * (size_t)nx);
    s->inv = xmalloc(sizeof(float) * (size_t)nx);
    for (int64_t i = 0; i < nx; i++) s->x[i] = frand() * 4, s->w[i] = frand() * 2;
    for (int64_t i = 0; i < n / 2; i++) s->inv[i] = (float)pow(10000.0, -2.0 * (double)i / (double)n);
    int64_t nout = op == SM_DOT ? 1 : op == SM_ROPE_NEOX || op == SM_ROPE_NORM ? nx : n;
    io_alloc(io, nout, sizeof(float) * (size_t)nout);
    io->chain = op == SM_DOT ? (double)(n / 8 + 3) : 4;
    float *o0 = (float *)io->out0;
    if (op == SM_SOFTMAX || op == SM_ADD) memcpy(o0, op == SM_ADD ? s->w : s->x, sizeof(float) * (size_t)n); /* in place */
    double ss = 0, mx = -INFINITY, sum = 0, dot = 0, dmag = 0;
    for (int64_t i = 0; i < n; i++) {
        ss += (double)s->x[i] * s->x[i], mx = s->x[i] > mx ? s->x[i] : mx;
        dot += (double)s->x[i] * s->w[i], dmag += fabs((double)s->x[i] * s->w[i]);
    }
    for (int64_t i = 0; i < n; i++) sum += exp(s->x[i] - mx);
    for (int64_t i = 0; i < nout; i++) {
        double x = s->x[i], w = s->w[i], r = 0, extra = 1e-7;
        switch (op) {
        case SM_RMSNORM: r = x / sqrt(ss / (double)n + 1e-6) * w; break;
        case SM_SOFTMAX: r = exp(x - mx) / sum; break;
        case SM_SWIGLU: r = x / (1 + exp(-x)) * w; break;
        case SM_ADD: r = w + x; break;
        case SM_DOT: r = dot; break;
        default: { /* rope: pairs (i, i + n/2) or (2i, 2i + 1), the rest unchanged */
            int neox = op == SM_ROPE_NEOX;
            int64_t half = n / 2, pair = neox ? (i < half ? i : i - half) : i / 2;
            r = x;
            if (i < n) {
                double a = (double)c->tok * s->inv[pair], cs = cos(a), sn = sin(a);
                int64_t i0 = neox ? pair : 2 * pair, i1 = neox ? pair + half : 2 * pair + 1;
                double x0 = s->x[i0], x1 = s->x[i1];
                r = i == i0 ? x0 * cs - x1 * sn : x0 * sn + x1 * cs;
                /* the angle is rounded to float first (pos * inv_freq): an error of up to pos * u,
                 * times the pair's magnitude */
                extra = (double)c->tok * (fabs(x0) + fabs(x1));
            }
        }
        }
        io->ref[i] = r;
        io->mag[i] = op == SM_DOT ? dmag : fabs(r) + extra;
    }
    if (op >= SM_ROPE_NEOX) memcpy(o0, s->x, sizeof(float) * (size_t)nout); /* rotated in place */
}

static void sm_call(op_io *io, float *y, int in_place) {
    sm_in *s = io->p;
    int64_t n = io->c.n;
    switch (io->c.aux) {
    case SM_RMSNORM:
        if (in_place) memcpy(y, s->x, sizeof(float) * (size_t)n);
        op_rmsnorm(y, in_place ? y : s->x, s->w, n, 1e-6f);
        break;
    case SM_SOFTMAX: op_softmax(y, n); break;
    case SM_SWIGLU:
        if (in_place) memcpy(y, s->x, sizeof(float) * (size_t)n);
        op_swiglu(y, in_place ? y : s->x, s->w, n);
        break;
    case SM_ADD: op_add(y, s->x, n); break;
    case SM_DOT: y[0] = op_dot(s->x, s->w, n); break;
    default: op_rope(y, n, io->c.tok, s->inv, io->c.aux == SM_ROPE_NEOX ? ROPE_NEOX : ROPE_NORM);
    }
}

static void sm_run(op_io *io, void *out, float *scratch, isa_level level) {
    (void)scratch, (void)level;
    sm_call(io, out, 0);
}

/* 0: rmsnorm and swiglu with the output aliasing the input, as the model calls them */
static int sm_alt(op_io *io, void *out, float *scratch, int k) {
    (void)scratch, (void)k;
    if (io->c.aux != SM_RMSNORM && io->c.aux != SM_SWIGLU) return 0;
    sm_call(io, out, 1);
    return 1;
}

static void sm_release(op_io *io) {
    sm_in *s = io->p;
    free(s->x), free(s->w), free(s->inv);
}

/* ---- the table ------------------------------------------------------------------------------ */

static void no_release(op_io *io) { (void)io; }

static const op_desc ops[] = {
    {"matmul_q", mq_cases, mq_prepare, mq_run, 2, mq_alt, NULL, 1, mm_release},
    {"matmul_f", mf_cases, mf_prepare, mf_run, 3, mf_alt, NULL, 1, mm_release},
    {"quantize_act", qa_cases, qa_prepare, qa_run, 1, qa_alt, qa_error, 1 + 1e-5, no_release},
    {"mqa_scores", sc_cases, sc_prepare, sc_run, 2, sc_alt, NULL, 1, at_release},
    {"mqa_accum", ac_cases, ac_prepare, ac_run, 2, ac_alt, NULL, 1, at_release},
    {"mqa_attend", ad_cases, ad_prepare, ad_run, 2, ad_alt, ad_error, 1, at_release},
    {"mqa_attend_q8", q8_cases, q8_prepare, q8_run, 1, q8_alt, q8_error, 1, q8_release},
    {"small_ops", sm_cases, sm_prepare, sm_run, 1, sm_alt, NULL, 1, sm_release},
};
#define N_OPS (int)(sizeof ops / sizeof ops[0])

/* ---- the harness ----------------------------------------------------------------------------- */

static const char *case_str(const op_desc *op, const op_case *c, char *buf, size_t cap) {
    snprintf(buf, cap, "%s %s n=%lld rows=%lld tok=%lld aux=%lld", op->name,
             op->run == sm_run ? sm_names[c->aux] : dtype_name(c->t), (long long)c->n, (long long)c->rows,
             (long long)c->tok, (long long)c->aux);
    return buf;
}

/* Out (guarded) set to out0, the op run (or alternative k >= 0), guards checked. Returns 0 when
 * the alternative does not apply. */
static int run_once(const op_desc *op, op_io *io, uint8_t *out, uint8_t *scratch, isa_level lv, int k, const char *what) {
    memcpy(out, io->out0, io->out_bytes);
    if (scratch) memset(scratch, POISON_FILL, io->scratch_bytes);
    int ran = 1;
    if (k < 0) op->run(io, out, (float *)scratch, lv);
    else ran = op->alt(io, out, (float *)scratch, k);
    CHECKF(guarded_ok(out, io->out_bytes), "%s level %s alt %d: wrote past the output", what, isa_name(lv), k);
    CHECKF(!scratch || guarded_ok(scratch, io->scratch_bytes), "%s level %s alt %d: wrote past the scratch", what,
           isa_name(lv), k);
    return ran;
}

static double op_check(const op_desc *op, int *n_cases) {
    op_case *cases = xmalloc(sizeof(op_case) * MAX_CASES);
    int n = *n_cases = op->cases(cases), top = isa_detected();
    double worst = 0;
    for (int ci = 0; ci < n; ci++) {
        char what[160];
        case_str(op, &cases[ci], what, sizeof what);
        op_io io = {.c = cases[ci]};
        rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(ci + 1) * 0x2545f4914f6cdd1dull); /* a seed per case */
        isa_force(ISA_SCALAR);
        op->prepare(&io);
        uint8_t *out = guarded_new(io.out_bytes), *alt = guarded_new(io.out_bytes), *first = xmalloc(io.out_bytes);
        uint8_t *scratch = io.scratch_bytes ? guarded_new(io.scratch_bytes) : NULL;
        for (int lv = 0; lv <= top; lv++) {
            isa_force(lv);
            run_once(op, &io, out, scratch, (isa_level)lv, -1, what);
            double e = (op->error ? op->error : err_floats)(&io, out);
            CHECKF(e <= op->tol, "%s level %s: normalized error %.3g over %.3g", what, isa_name(lv), e, op->tol);
            worst = e > worst ? e : worst;
            if (lv == 0) memcpy(first, out, io.out_bytes);
            else CHECKF(!memcmp(out, first, io.out_bytes), "%s: level %s differs from scalar", what, isa_name(lv));
            for (int k = 0; k < op->n_alt; k++)
                if (run_once(op, &io, alt, scratch, (isa_level)lv, k, what))
                    CHECKF(!memcmp(alt, out, io.out_bytes), "%s level %s: alternative %d differs", what, isa_name(lv), k);
        }
        isa_force(-1);
        guarded_free(out), guarded_free(alt), guarded_free(scratch), free(first);
        op->release(&io);
        io_free(&io);
    }
    free(cases);
    return worst;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* --perf: seconds for REPS runs of every case, per level. */
#define PERF_REPS 5
static void op_perf(const op_desc *op) {
    op_case *cases = xmalloc(sizeof(op_case) * MAX_CASES);
    int n = op->cases(cases), top = isa_detected();
    double t[ISA_N_LEVELS] = {0};
    for (int ci = 0; ci < n; ci++) {
        op_io io = {.c = cases[ci]};
        isa_force(ISA_SCALAR);
        op->prepare(&io);
        uint8_t *out = guarded_new(io.out_bytes), *scratch = io.scratch_bytes ? guarded_new(io.scratch_bytes) : NULL;
        for (int lv = 0; lv <= top; lv++) {
            isa_force(lv);
            double t0 = now_s();
            for (int r = 0; r < PERF_REPS; r++) {
                memcpy(out, io.out0, io.out_bytes);
                op->run(&io, out, (float *)scratch, (isa_level)lv);
            }
            t[lv] += now_s() - t0;
        }
        isa_force(-1);
        guarded_free(out), guarded_free(scratch);
        op->release(&io);
        io_free(&io);
    }
    printf("%-13s %4d cases x %d:", op->name, n, PERF_REPS);
    for (int lv = 0; lv <= top; lv++) printf("  %s %8.2f ms", isa_name(lv), t[lv] * 1e3);
    printf("\n");
    free(cases);
}

/* ---- checks that are not table cases ---------------------------------------------------- */

/* The activation quantizer on hand-made values: scale = max/127, sums of each 16, zeros. */
static void test_quantizer_values(void) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = frand();
    x[5] = -2.5f;
    for (int i = 32; i < 64; i++) x[i] = 0;
    for (int lv = 0; lv <= (int)isa_detected(); lv++) {
        isa_force(lv);
        qact_block q[2];
        op_quantize_act(q, x, 64);
        CHECK(fabsf(q[0].d - 2.5f / 127) < 1e-7f && q[0].q[5] == -127);
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 16; i++) s0 += q[0].q[i], s1 += q[0].q[16 + i];
        CHECK(s0 == q[0].s16[0] && s1 == q[0].s16[1]);
        for (int i = 0; i < 32; i++) CHECK(fabsf(q[0].q[i] * q[0].d - x[i]) <= q[0].d * 0.5f + 1e-7f);
        CHECK(q[1].d == 0 && q[1].s16[0] == 0 && q[1].q[31] == 0);
    }
    isa_force(-1);
    for (size_t i = 0; i < sizeof int_types / sizeof int_types[0]; i++) CHECK(op_qdot_supported(int_types[i]));
    CHECK(!op_qdot_supported(WHALE_DTYPE_Q4_1) && !op_qdot_supported(WHALE_DTYPE_F16));
}

/* Properties of the small ops that do not need a reference. */
static void test_small_ops(void) {
    float x[64], w[64], y[64];
    for (int i = 0; i < 64; i++) { x[i] = frand(); w[i] = 1; }
    op_rmsnorm(y, x, w, 64, 0);
    double ss = 0;
    for (int i = 0; i < 64; i++) ss += (double)y[i] * y[i];
    CHECK(fabs(ss / 64 - 1) < 1e-5);
    op_softmax(x, 64);
    double s = 0;
    for (int i = 0; i < 64; i++) { s += x[i]; CHECK(x[i] > 0); }
    CHECK(fabs(s - 1) < 1e-6);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8}, inv[4] = {1, 0.5f, 0.25f, 0.125f};
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 8; i++) n0 += (double)v[i] * v[i];
    op_rope(v, 8, 7, inv, ROPE_NEOX); /* a rotation keeps the norm */
    for (int i = 0; i < 8; i++) n1 += (double)v[i] * v[i];
    CHECK(fabs(n0 - n1) < 1e-4);
    float p[4] = {1, 2, 3, 4};
    op_rope(p, 4, 0, inv, ROPE_NORM); /* position 0 is the identity */
    CHECK(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
    float g[2] = {0, 10}, u[2] = {5, 2}, o[2];
    op_swiglu(o, g, u, 2);
    CHECK(o[0] == 0 && fabsf(o[1] - 10.0f / (1 + expf(-10)) * 2) < 1e-5f);
}

/* quantize_row -> dequantize_row reproduces the input within each type's step size. */
static void test_quantize_roundtrip(void) {
    static const struct { whale_dtype t; double rel; } cases[] = {
        {WHALE_DTYPE_F16, 1e-3}, {WHALE_DTYPE_BF16, 8e-3}, {WHALE_DTYPE_Q8_0, 1.0 / 127 * 0.6},
        {WHALE_DTYPE_Q6_K, 1.0 / 31 * 0.6}, {WHALE_DTYPE_Q4_K, 1.0 / 15 * 0.6 * 2}};
    enum { N = 256 * 6 };
    static float x[N], y[N];
    static uint8_t q[N * 4];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++) x[i] = frand() * (1 + (i / 256)); /* blocks of different ranges */
        x[7] = 0;
        CHECK(quantize_row(cases[c].t, x, q, N) == 0);
        dequantize_row(cases[c].t, q, y, N);
        for (int blk = 0; blk < N / 256; blk++) {
            float amax = 0, err = 0;
            for (int i = 256 * blk; i < 256 * (blk + 1); i++) {
                amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
                err = fabsf(x[i] - y[i]) > err ? fabsf(x[i] - y[i]) : err;
            }
            CHECKF(err <= cases[c].rel * amax + 1e-6, "%s block %d: error %g of range %g", dtype_name(cases[c].t), blk,
                   (double)err, (double)amax);
        }
    }
    CHECK(quantize_row(WHALE_DTYPE_Q4_K, x, q, 100) == -1); /* partial block */
    CHECK(!quantize_supported(WHALE_DTYPE_Q2_K));
}

/* op_bf16_round: nearest, ties to even; denormals flushed to a signed zero; NaN kept, inf kept. */
static void test_bf16_round(void) {
    CHECK(op_bf16_round(1.0f) == 0x3F80 && op_bf16_round(-2.0f) == 0xC000);
    CHECK(op_bf16_round(1.0f + 0x1p-8f) == 0x3F80);            /* a tie: to the even 1.0 */
    CHECK(op_bf16_round(1.0f + 3 * 0x1p-8f) == 0x3F82);        /* a tie: to the even 1 + 2^-6 */
    CHECK(op_bf16_round(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81); /* above the tie: up */
    CHECK(op_bf16_round(FLT_MIN / 4) == 0 && op_bf16_round(-FLT_MIN / 4) == 0x8000);
    CHECK(op_bf16_round(FLT_MIN) == 0x0080);
    CHECK(op_bf16_round(INFINITY) == 0x7F80 && op_bf16_round(FLT_MAX) == 0x7F80); /* rounds to inf */
    uint16_t n = op_bf16_round(NAN);
    CHECK((n & 0x7F80) == 0x7F80 && (n & 0x7F) != 0);
}

/* op_q8_row: each segment within half its step of the input; a zero segment has scale 0; a NaN
 * or infinity makes its segment NaN (as an F32 cache would carry it), not a finite value. */
static void test_q8_row(void) {
    enum { N = 40, SPLIT = 32 };
    float x[N], y[N];
    uint8_t row[OP_Q8_ROW_BYTES(N)];
    for (int i = 0; i < N; i++) x[i] = frand() * (i < SPLIT ? 1.0f : 100.0f);
    op_q8_row(row, x, N, SPLIT);
    op_q8_row_get(y, row, N, SPLIT);
    for (int seg = 0; seg < 2; seg++) {
        float amax = 0;
        for (int i = seg ? SPLIT : 0; i < (seg ? N : SPLIT); i++) amax = fmaxf(amax, fabsf(x[i]));
        for (int i = seg ? SPLIT : 0; i < (seg ? N : SPLIT); i++)
            CHECKF(fabsf(y[i] - x[i]) <= amax / 127 * 0.5f * (1 + 1e-5f), "element %d: %g for %g", i, (double)y[i], (double)x[i]);
    }
    for (int i = SPLIT; i < N; i++) x[i] = 0;
    x[3] = NAN;
    op_q8_row(row, x, N, SPLIT);
    op_q8_row_get(y, row, N, SPLIT);
    CHECK(isnan(y[0]) && isnan(y[3]) && y[SPLIT] == 0 && y[N - 1] == 0);
    x[3] = INFINITY;
    op_q8_row(row, x, N, SPLIT);
    op_q8_row_get(y, row, N, SPLIT);
    CHECK(isnan(y[3]));
    /* every level writes the same bytes; halves (x / scale = k + 1/2) round to even as lrintf */
    enum { M = 70, MSPLIT = 37 };
    float z[M];
    uint8_t rows[ISA_N_LEVELS][OP_Q8_ROW_BYTES(M)];
    for (int i = 0; i < M; i++) z[i] = i % 4 ? frand() * 127 : (float)(i % 9) - 4.5f;
    z[5] = 127, z[MSPLIT + 1] = -127;
    for (int l = 0; l <= (int)isa_detected(); l++) {
        isa_force(l);
        op_q8_row(rows[l], z, M, MSPLIT);
        CHECKF(!memcmp(rows[l], rows[0], sizeof rows[0]), "level %s differs from scalar", isa_name(l));
    }
    isa_force(-1);
}

/* BF16 products near the bottom of the float range: vdpbf16ps flushes results below FLT_MIN to
 * zero, and the other levels must flush the same ones (the table's inputs never get there). */
static void test_bf16_flush_to_zero(void) {
    enum { H = 4, T = 9, D = 70 };
    static uint16_t q[H * D], k[T * D];
    static uint32_t pp[H * (T + 1) / 2];
    static float s[ISA_N_LEVELS][H * T], o[ISA_N_LEVELS][H * D], o0[H * D];
    int flushed = 0;
    for (int i = 0; i < H * D; i++) q[i] = op_bf16_round(frand() * 0x1p-60f);
    for (int i = 0; i < T * D; i++) k[i] = op_bf16_round(frand() * 0x1p-64f * (i % 3 ? 1 : 0x1p-3f));
    for (int i = 0; i < H * (T + 1) / 2; i++)
        pp[i] = op_bf16_round(fabsf(frand()) * 0x1p-60f) | (uint32_t)op_bf16_round(fabsf(frand()) * 0x1p-61f) << 16;
    for (int i = 0; i < H * D; i++) /* tiny starts, some denormal, some zero */
        o0[i] = frand() * (i % 3 ? 0x1p-100f : 0x1p-130f) * (float)(i % 2);
    for (int l = 0; l <= (int)isa_detected(); l++) {
        isa_force(l);
        op_mqa_scores_bf16(s[l], T, q, D, H, k, D, T, D);
        memcpy(o[l], o0, sizeof o0);
        op_mqa_accum_bf16(o[l], D, pp, (T + 1) / 2, H, k, D, T, D);
        CHECKF(!memcmp(s[l], s[0], sizeof s[0]) && !memcmp(o[l], o[0], sizeof o[0]), "level %s differs",
               isa_name(l));
    }
    /* tininess after rounding: FLT_MIN - 1.5 x 2^-151 rounds to FLT_MIN on the denormal grid but
     * to 2^-126 - 2^-150 with an unbounded exponent, which is tiny: flushed */
    uint16_t vr = op_bf16_round(0x1p-76f);
    uint32_t pw = op_bf16_round(-1.5f * 0x1p-75f);
    for (int l = 0; l <= (int)isa_detected(); l++) {
        isa_force(l);
        float edge = FLT_MIN;
        op_mqa_accum_bf16(&edge, 1, &pw, 1, 1, &vr, 1, 1, 1);
        CHECKF(edge == 0, "level %s: %a, not flushed", isa_name(l), (double)edge);
    }
    isa_force(-1);
    for (int i = 0; i < H * T; i++) flushed += s[0][i] == 0;
    for (int i = 0; i < H * D; i++) flushed += o[0][i] == 0;
    CHECKF(flushed > 0, "no result was flushed: the test does not reach the bottom of the range");
    printf("    BF16 flush: %d results zero, levels scalar..%s agree (vdpbf16ps %s)\n", flushed,
           isa_name(isa_detected()), isa_has_avx512_bf16() ? "used" : "not on this CPU");
}

/* lanes.h's e^x, called directly in each form the levels use (scalar, 8 and 16 lanes): the same
 * bits for every input, its cut-offs included (0 below -80 and for NaN, +inf above 88), where
 * SwiGLU cannot show a difference (1 + e^x rounds to 1 there); within 1e-6 relative of exp in
 * double between them. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2,fma"))) static void exp_levels_y(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(y + i, lanes_exp8(_mm256_loadu_ps(x + i)));
}
__attribute__((target("avx512f,avx512dq"))) static void exp_levels_x(float *y, const float *x, int n) {
    for (int i = 0; i < n; i += 16) _mm512_storeu_ps(y + i, lanes_exp16(_mm512_loadu_ps(x + i)));
}
#endif

static void test_exp_levels(void) {
    enum { N = 4096 };
    static float x[N], y[3][N];
    const float edge[] = {-80.0f, nextafterf(-80.0f, -INFINITY), nextafterf(-80.0f, 0), 88.0f,
                          nextafterf(88.0f, INFINITY), nextafterf(88.0f, 0), 88.72f, 88.8f, 89.0f, -87.0f, -88.7f,
                          -103.0f, -104.0f, INFINITY, -INFINITY, NAN, -NAN, 1e-45f, -1e-45f, 0.0f, -0.0f,
                          0.34657359f, -0.34657359f, 0.34657362f, 1e30f, -1e30f, 1.0f, -1.0f};
    int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < N; i++) x[i] = i < ne ? edge[i] : frand() * (i % 2 ? 90.0f : 2.0f);
    for (int i = 0; i < N; i++) y[0][i] = lanes_exp(x[i]);
    int levels = 1;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (isa_detected() >= ISA_AVX2) exp_levels_y(y[1], x, N), levels = 2;
    if (isa_detected() >= ISA_AVX512) exp_levels_x(y[2], x, N), levels = 3;
#endif
    for (int l = 1; l < levels; l++)
        for (int i = 0; i < N; i++)
            CHECKF(!memcmp(&y[l][i], &y[0][i], sizeof(float)), "e^%a: %d lanes give %a, scalar %a", (double)x[i],
                   l == 1 ? 8 : 16, (double)y[l][i], (double)y[0][i]);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        float v = y[0][i];
        if (isnan(x[i]) || x[i] < -80.0f) CHECKF(v == 0 && !signbit(v), "e^%a = %a, want +0", (double)x[i], (double)v);
        else if (x[i] > 88.0f) CHECKF(v == INFINITY, "e^%a = %a, want +inf", (double)x[i], (double)v);
        else {
            double want = exp((double)x[i]), e = fabs(v - want) / want;
            CHECKF(e <= 1e-6, "e^%a = %.9g, want %.9g", (double)x[i], (double)v, want);
            worst = e > worst ? e : worst;
        }
    }
    printf("    e^x: %d forms agree on %d values; worst relative error %.2g\n", levels, N, worst);
}

/* SwiGLU (and with it lanes.h's e^x, which the softmax weights share): every level gives the
 * same bits, also at the edges of e^x's range, NaN and infinities, and the values are within
 * 1e-6 relative of g / (1 + e^-g) x u in double wherever that is a normal float and e^-g finite. */
static void test_swiglu_levels(void) {
    enum { N = 1000 + 13 };
    static float g[N], u[N], out[ISA_N_LEVELS][N];
    const float edge[] = {0.0f, -0.0f, 79.9f, 80.0f, 80.1f, -79.9f, -80.0f, -80.1f, 87.9f, -88.0f, -88.1f, 88.5f,
                          -88.5f, 100.0f, -100.0f, 1e30f, -1e30f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 0.5f,
                          -0.5f, 0.3466f, -0.3466f};
    int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < N; i++) {
        g[i] = i < ne ? edge[i] : frand() * (i % 4 ? 8.0f : 120.0f);
        u[i] = i < ne ? 1.0f : frand();
    }
    for (int l = 0; l <= (int)isa_detected(); l++) {
        isa_force(l);
        op_swiglu(out[l], g, u, N);
        CHECKF(!memcmp(out[l], out[0], sizeof out[0]), "level %s differs from scalar", isa_name(l));
    }
    isa_force(-1);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        if (isnan(g[i]) || g[i] == -INFINITY) { /* -inf / (1 + inf): NaN, as with libm's expf */
            CHECKF(isnan(out[0][i]), "swiglu(%g) = %g, want NaN", (double)g[i], (double)out[0][i]);
            continue;
        }
        double want = g[i] == INFINITY ? INFINITY : g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        if (isinf(want) || g[i] < -88.0f) { /* e^-g past 88 is +inf: 0 in place of ~g e^g (< 1e-35) */
            CHECKF(out[0][i] == want || (out[0][i] == 0 && fabs(want) < 1e-35), "swiglu(%g) = %g, want %g",
                   (double)g[i], (double)out[0][i], want);
            continue;
        }
        if (fabs(want) < FLT_MIN) { /* below the normal floats: an absolute bound */
            CHECKF(fabs(out[0][i] - want) < FLT_MIN, "swiglu(%g) = %g, want %g", (double)g[i], (double)out[0][i], want);
            continue;
        }
        double e = fabs(out[0][i] - want) / fabs(want);
        CHECKF(e <= 1e-6, "swiglu(%g) x %g = %.9g, want %.9g", (double)g[i], (double)u[i], (double)out[0][i], want);
        worst = e > worst ? e : worst;
    }
    printf("    SwiGLU: levels scalar..%s agree on %d values; worst relative error %.2g\n", isa_name(isa_detected()), N,
           worst);
}

/* isa.c itself: names, forcing clamps to the CPU, -1 lifts the force. */
static void test_isa(void) {
    for (int l = 0; l < ISA_N_LEVELS; l++) CHECK(isa_parse(isa_name(l)) == l);
    CHECK(isa_parse("avx3") == -1 && isa_parse(NULL) == -1 && !strcmp(isa_name(7), "?"));
    isa_level hw = isa_detected();
    isa_force(ISA_SCALAR);
    CHECK(isa_level_get() == ISA_SCALAR);
    isa_force(ISA_AVX512);
    CHECK(isa_level_get() == hw); /* never above what the CPU has */
    isa_force(ISA_AVX2);
    CHECK(isa_level_get() == (hw < ISA_AVX2 ? hw : ISA_AVX2));
    isa_force(-1);
    CHECK(isa_level_get() <= hw);
}

/* Kernels running in threads while another thread forces levels: each call reads the level once
 * (atomics: no race for TSan to find) and every level gives the same bits, so every result
 * equals the one computed before. */
#define THREADS_N 3
#define THREADS_ROUNDS 200
typedef struct thr_job {
    const uint8_t *w;
    const qact_block *xq;
    const float *x;
    const float *want_q, *want_f;
    int bad;
} thr_job;

static void *thr_main(void *arg) {
    thr_job *j = arg;
    float y[8], scratch[256];
    for (int r = 0; r < THREADS_ROUNDS; r++) {
        op_matmul_rows_q(y, 4, j->w, WHALE_DTYPE_Q8_0, j->xq, 256, 2, 0, 4);
        j->bad += memcmp(y, j->want_q, sizeof y) != 0;
        op_matmul_rows(y, 4, j->w, WHALE_DTYPE_Q8_0, j->x, 256, 256, 2, 0, 4, scratch);
        j->bad += memcmp(y, j->want_f, sizeof y) != 0;
    }
    return NULL;
}

static void test_levels_across_threads(void) {
    static uint8_t w[4 * 34 * 8];
    static float x[512], want_q[8], want_f[8], scratch[256];
    static qact_block xq[16];
    for (int r = 0; r < 4; r++) random_row(WHALE_DTYPE_Q8_0, w + r * 34 * 8, 256);
    for (int i = 0; i < 512; i++) x[i] = frand();
    op_quantize_act(xq, x, 512);
    op_matmul_rows_q(want_q, 4, w, WHALE_DTYPE_Q8_0, xq, 256, 2, 0, 4);
    op_matmul_rows(want_f, 4, w, WHALE_DTYPE_Q8_0, x, 256, 256, 2, 0, 4, scratch);
    thr_job jobs[THREADS_N];
    pthread_t th[THREADS_N];
    int started = 0;
    for (int i = 0; i < THREADS_N; i++) {
        jobs[i] = (thr_job){w, xq, x, want_q, want_f, 0};
        if (!pthread_create(&th[i], NULL, thr_main, &jobs[i])) started++;
        else break;
    }
    CHECK(started == THREADS_N);
    for (int r = 0; r < THREADS_ROUNDS * 4; r++) isa_force(r % (ISA_N_LEVELS + 1) - 1); /* -1, 0, 1, 2, ... */
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        CHECKF(jobs[i].bad == 0, "thread %d: %d results differ", i, jobs[i].bad);
    }
    isa_force(-1);
}

/* A table op as one RUN-style case of check.h: "ok   NAME" or "FAIL NAME". */
static void run_op(const op_desc *op) {
    check_case_failures = 0;
    int n = 0;
    double t0 = now_s(), worst = op_check(op, &n);
    if (check_case_failures) {
        check_cases_failed++;
        fprintf(stderr, "FAIL %s\n", op->name);
    } else {
        check_cases_passed++;
        printf("ok   %s (%d cases x %d levels; worst normalized error %.3g of %.3g; %.2f s)\n", op->name, n,
               isa_detected() + 1, worst, op->tol, now_s() - t0);
    }
}

int main(int argc, char **argv) {
    int perf = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--perf")) perf = 1;
        else only = argv[i];
    }
    printf("levels on this CPU: scalar..%s (in force without a force: %s)\n", isa_name(isa_detected()),
           isa_name(isa_level_get()));
    int ran = 0;
    for (int i = 0; i < N_OPS; i++)
        if (!only || !strcmp(only, ops[i].name)) (perf ? op_perf : run_op)(&ops[i]), ran++;
    if (!ran) {
        fprintf(stderr, "usage: test_ops [--perf] [OP]; OP is one of:");
        for (int i = 0; i < N_OPS; i++) fprintf(stderr, " %s", ops[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (perf) return 0;
    if (!only) {
        RUN(test_quantizer_values);
        RUN(test_small_ops);
        RUN(test_quantize_roundtrip);
        RUN(test_bf16_round);
        RUN(test_q8_row);
        RUN(test_bf16_flush_to_zero);
        RUN(test_exp_levels);
        RUN(test_swiglu_levels);
        RUN(test_isa);
        RUN(test_levels_across_threads);
    }
    return check_report("test_ops");
}
