/* wmat.c — weight matrices as the forward passes see them: any dtype, plus DeepSeek's FP8
 * checkpoints, whose 128x128 blocks each carry an F32 scale (SPEC-deepseek.md §5:
 * W[i][j] = fp8(Wq[i][j]) * S[i/128][j/128]); matrix products over a context's thread pool;
 * the bytes a matrix occupies (footprint.c and the leaves' layer sizes). */
#include "kernels/qdot.h"
#include "model/model_impl.h"

static size_t row_bytes(const wmat *w) {
    size_t rb = 0;
    dtype_bytes(w->type, w->n_in, &rb);
    return rb;
}

void wmat_row(const wmat *w, int64_t r, float *out) {
    dequantize_row(w->type, (const unsigned char *)w->data + (size_t)r * row_bytes(w), out, w->n_in);
    if (!w->scale) return;
    int64_t sc = (w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK;
    const float *s = w->scale + (r / WMAT_SCALE_BLOCK) * sc;
    for (int64_t j = 0; j < w->n_in; j++) out[j] *= s[j / WMAT_SCALE_BLOCK];
}

int wmat_view_rows(const wmat *w, int64_t r0, int64_t n, wmat *out) {
    if (w->scale && r0 % WMAT_SCALE_BLOCK) return -1;
    *out = *w;
    out->data = (const unsigned char *)w->data + (size_t)r0 * row_bytes(w);
    out->n_out = n;
    if (w->scale) out->scale = w->scale + (r0 / WMAT_SCALE_BLOCK) * ((w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK);
    return 0;
}

float wmat_dot(const wmat *w, int64_t r, const float *x, float *scratch) {
    if (!w->scale) return op_dot_row(w->type, (const unsigned char *)w->data + (size_t)r * row_bytes(w), x, w->n_in);
    wmat_row(w, r, scratch);
    return op_dot_row(WHALE_DTYPE_F32, scratch, x, w->n_in);
}

void wmat_matmul_rows(float *Y, int64_t ldy, const wmat *w, const float *X, int64_t ldx, int64_t n_tok, int64_t r0,
                      int64_t r1, float *scratch) {
    if (!w->scale) {
        op_matmul_rows(Y, ldy, w->data, w->type, X, ldx, w->n_in, n_tok, r0, r1, scratch);
        return;
    }
    for (int64_t r = r0; r < r1; r++) { /* block-scaled: the row with its scales, then the F32 kernel */
        wmat_row(w, r, scratch);
        op_matmul_rows(Y + r, ldy, scratch, WHALE_DTYPE_F32, X, ldx, w->n_in, n_tok, 0, 1, NULL);
    }
}

int wmat_int_path(const wmat *w) { return !w->scale && op_qdot_supported(w->type); }

void wmat_matmul_rows_q(float *Y, int64_t ldy, const wmat *w, const qact_block *X, int64_t n_tok, int64_t r0,
                        int64_t r1) {
    op_matmul_rows_q(Y, ldy, w->data, w->type, X, w->n_in, n_tok, r0, r1);
}

typedef struct quant_job {
    qact_block *out;
    const float *X;
    int64_t ldx, n;
} quant_job;

static void quant_task(void *ctx, int64_t row, int thread) {
    (void)thread;
    quant_job *j = ctx;
    op_quantize_act(j->out + row * (j->n / QACT_BLOCK), j->X + row * j->ldx, j->n);
}

/* Below this many elements the caller quantizes alone: a decode step's activations take about a
 * microsecond, less than waking the pool for it (one synchronization per matrix product saved). */
#define WMAT_QUANT_SERIAL 32768

void wmat_quantize_into(model_ctx *c, qact_block *dst, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in) {
    quant_job j = {dst, X, ldx, n_in};
    if (n_tok * n_in <= WMAT_QUANT_SERIAL)
        for (int64_t b = 0; b < n_tok; b++) quant_task(&j, b, 0);
    else
        tp_run(c->tp, n_tok, quant_task, &j);
}

const qact_block *wmat_quantize_x(model_ctx *c, const float *X, int64_t ldx, int64_t n_tok, int64_t n_in) {
    wmat_quantize_into(c, c->xq, X, ldx, n_tok, n_in);
    return c->xq;
}

/* ---- threaded products ---------------------------------------------------------------- */

/* Rows of a weight matrix per thread-pool task: big enough to amortize the dispatch, small
 * enough that two threads share the work evenly. */
#define MATMUL_ROWS_PER_TASK 128

typedef struct mm_job {
    model_ctx *c;
    float *Y;
    int64_t ldy;
    const wmat *w;
    const float *X;
    const qact_block *Xq; /* the integer path's activations, or NULL */
    int64_t ldx, n_tok;
} mm_job;

static void mm_task(void *ctx, int64_t task, int thread) {
    mm_job *j = ctx;
    int64_t r0 = task * MATMUL_ROWS_PER_TASK, r1 = r0 + MATMUL_ROWS_PER_TASK;
    if (r1 > j->w->n_out) r1 = j->w->n_out;
    if (j->Xq) wmat_matmul_rows_q(j->Y, j->ldy, j->w, j->Xq, j->n_tok, r0, r1);
    else wmat_matmul_rows(j->Y, j->ldy, j->w, j->X, j->ldx, j->n_tok, r0, r1,
                          j->c->row_scratch + (size_t)thread * (size_t)j->c->row_width);
}

void wmat_matmul(model_ctx *c, float *Y, const wmat *w, const float *X, int64_t n_tok) {
    mm_job j = {c, Y, w->n_out, w, X, NULL, w->n_in, n_tok};
    if (wmat_int_path(w)) j.Xq = wmat_quantize_x(c, X, w->n_in, n_tok, w->n_in);
    tp_run(c->tp, (w->n_out + MATMUL_ROWS_PER_TASK - 1) / MATMUL_ROWS_PER_TASK, mm_task, &j);
}

/* ---- sizes ---------------------------------------------------------------------------- */

size_t wmat_rows_bytes(const wmat *w, int64_t n_rows) {
    size_t row = 0;
    if (!w->data || n_rows <= 0 || dtype_bytes(w->type, w->n_in, &row)) return 0;
    size_t b = row * (size_t)n_rows;
    if (w->scale)
        b += (size_t)((n_rows + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK) *
             (size_t)((w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK) * sizeof(float);
    return b;
}

size_t wmat_bytes(const wmat *w) { return wmat_rows_bytes(w, w->n_out); }
