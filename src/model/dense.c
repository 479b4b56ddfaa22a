/* dense.c — the forward pass of the dense decoder used by the R1-Distill models (Qwen2: GQA
 * with q/k/v biases; Llama 3: scaled RoPE), over a batch of (sequence, position, token) rows.
 *
 * Per layer, for all rows at once:  xn = rmsnorm(x)  ->  q,k,v = xn·W (+b)  -> rope(q,k) ->
 * k,v into the cache -> attention per (row, head) over the row's sequence up to its position ->
 * x += att·Wo  ->  xn = rmsnorm(x)  ->  x += (silu(xn·Wg) * (xn·Wu))·Wd.
 * Matrix products split weight rows over the thread pool; each row is dequantized once and used
 * for every token of the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/attn.h"
#include "model/model_impl.h"

/* Rows of a weight matrix per thread-pool task: big enough to amortize the dispatch, small
 * enough that two threads share the work evenly. */
#define MATMUL_ROWS_PER_TASK 128

/* ---- KV cache ------------------------------------------------------------------------- */

static size_t kv_esz(const kv_cache *kv) { return kv->f16 ? 2 : 4; }

void *kv_row(const kv_cache *kv, void *base, int64_t layer, int32_t seq, int64_t pos) {
    size_t i = (((size_t)layer * (size_t)kv->n_seq + (size_t)seq) * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->kv_dim;
    return (char *)base + i * kv_esz(kv);
}

void kv_put(const kv_cache *kv, void *dst, const float *src, int64_t n) {
    if (!kv->f16) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
}

const float *kv_get(const kv_cache *kv, const void *row, int64_t n, float *tmp) {
    if (!kv->f16) return row;
    const uint16_t *h = row;
    for (int64_t i = 0; i < n; i++) tmp[i] = fp16_to_f32(h[i]);
    return tmp;
}

kv_cache *kv_cache_new(const model *m, int64_t n_ctx, int n_seq) {
    if (n_ctx <= 0 || n_seq <= 0) return NULL;
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->n_layer = m->hp.n_layer + (m->mtp ? 1 : 0); /* the MTP block caches in the last layer */
    /* MLA caches one latent row (kv_lora_rank + rope key) per token and layer, no values. */
    int mla = m->hp.arch == MODEL_ARCH_DEEPSEEK2;
    kv->kv_dim = mla ? m->hp.kv_lora_rank + m->hp.qk_rope_head_dim : m->hp.n_head_kv * m->hp.head_dim;
    kv->f16 = m->kv_f16;
    size_t n = (size_t)(kv->n_layer * n_seq * n_ctx * kv->kv_dim);
    kv->k = calloc(n, kv_esz(kv));
    kv->v = mla ? NULL : calloc(n, kv_esz(kv));
    if (!kv->k || (!mla && !kv->v)) {
        kv_cache_free(kv);
        return NULL;
    }
    return kv;
}

int kv_cache_fill_random(kv_cache *kv, int seq, int64_t n, uint64_t seed, whale_err *err) {
    if (seq < 0 || seq >= kv->n_seq || n < 0 || n > kv->n_ctx)
        return err_set(err, WHALE_E_ARG, "cannot fill %lld positions of sequence %d (cache: %d x %lld)", (long long)n,
                       seq, kv->n_seq, (long long)kv->n_ctx);
    uint64_t x = seed | 1;
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int which = 0; which < (kv->v ? 2 : 1); which++) {
            char *row = kv_row(kv, which ? kv->v : kv->k, l, seq, 0);
            for (int64_t i = 0; i < n * kv->kv_dim; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                /* uniform on [-sqrt 3, sqrt 3): unit variance */
                float r = (float)((double)(x >> 11) * (1.0 / 9007199254740992.0) * 3.4641016151377544 - 1.7320508075688772);
                kv_put(kv, row + (size_t)i * kv_esz(kv), &r, 1);
            }
        }
    return 0;
}

size_t kv_cache_pos_bytes(const kv_cache *kv) {
    return (kv->v ? 2 : 1) * (size_t)(kv->n_layer * kv->kv_dim) * kv_esz(kv);
}

/* Copy positions [pos0, pos0+n) of seq between the cache and buf (layer by layer: keys, then
 * values), in the direction `out` says. */
static int kv_copy(kv_cache *kv, int seq, int64_t pos0, int64_t n, uint8_t *buf, int out) {
    if (seq < 0 || seq >= kv->n_seq || pos0 < 0 || n < 0 || pos0 + n > kv->n_ctx) return -1;
    size_t span = (size_t)(n * kv->kv_dim) * kv_esz(kv);
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int which = 0; which < (kv->v ? 2 : 1); which++, buf += span) {
            void *row = kv_row(kv, which ? kv->v : kv->k, l, seq, pos0);
            if (out) memcpy(buf, row, span);
            else memcpy(row, buf, span);
        }
    return 0;
}

int kv_cache_read(const kv_cache *kv, int seq, int64_t pos0, int64_t n, void *dst) {
    return kv_copy((kv_cache *)kv, seq, pos0, n, dst, 1);
}

int kv_cache_write(kv_cache *kv, int seq, int64_t pos0, int64_t n, const void *src) {
    return kv_copy(kv, seq, pos0, n, (uint8_t *)src, 0);
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

int64_t kv_cache_n_ctx(const kv_cache *kv) { return kv->n_ctx; }
size_t kv_cache_bytes(const kv_cache *kv) {
    return (kv->v ? 2 : 1) * (size_t)(kv->n_layer * kv->n_seq * kv->n_ctx * kv->kv_dim) * kv_esz(kv);
}


/* ---- parallel matmul ------------------------------------------------------------------ */

typedef struct mm_job {
    model *m;
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
                          j->m->row_scratch + (size_t)thread * (size_t)j->m->row_width);
}

/* Y (n_tok rows of w->n_out) = X (n_tok rows of w->n_in) · wᵀ, on the thread pool. */
void model_matmul(model *m, float *Y, const wmat *w, const float *X, int64_t n_tok) {
    mm_job j = {m, Y, w->n_out, w, X, NULL, w->n_in, n_tok};
    if (wmat_int_path(w)) j.Xq = wmat_quantize_x(m, X, w->n_in, n_tok, w->n_in);
    tp_run(m->tp, (w->n_out + MATMUL_ROWS_PER_TASK - 1) / MATMUL_ROWS_PER_TASK, mm_task, &j);
}


/* ---- attention ------------------------------------------------------------------------ */

typedef struct att_job {
    model *m;
    kv_cache *kv;
    int64_t layer;
    const int32_t *pos, *seq;
    int64_t n_ctx_used; /* scores buffer stride per thread */
} att_job;

/* One (row, KV head) task: the query heads sharing that KV head attend together, reading each
 * cached key and value row once (online softmax, kernels/attn.h). */
static void att_task(void *ctx, int64_t task, int thread) {
    att_job *j = ctx;
    model *m = j->m;
    const model_hparams *hp = &m->hp;
    int64_t D = hp->head_dim, H = hp->n_head, HKV = hp->n_head_kv, group = H / HKV;
    int64_t row = task / HKV, kvh = task % HKV, P = (int64_t)j->pos[row] + 1;
    int32_t seq = j->seq ? j->seq[row] : 0;
    float *sc = m->att_scores + (size_t)thread * (size_t)j->n_ctx_used, *qs = sc + group * OP_MQA_BLOCK;
    float *mx = qs + group * D, *l = mx + group;
    const float *q = m->q + (size_t)(row * H * D + kvh * group * D);
    float *out = m->att + (size_t)(row * H * D + kvh * group * D);
    float scale = 1.0f / sqrtf((float)D);
    for (int64_t i = 0; i < group * D; i++) qs[i] = q[i] * scale;
    memset(out, 0, (size_t)(group * D) * sizeof *out);
    for (int64_t h = 0; h < group; h++) mx[h] = -INFINITY, l[h] = 0;
    int64_t KV = HKV * D;
    size_t off = (size_t)(kvh * D) * kv_esz(j->kv);
    op_mqa_attend_t(out, D, mx, l, qs, D, group, (const char *)kv_row(j->kv, j->kv->k, j->layer, seq, 0) + off, KV, D,
                    (const char *)kv_row(j->kv, j->kv->v, j->layer, seq, 0) + off, KV, D, P, j->kv->f16, sc);
    for (int64_t h = 0; h < group; h++)
        for (int64_t i = 0; i < D; i++) out[h * D + i] /= l[h];
}

/* ---- the forward pass ----------------------------------------------------------------- */

static void add_bias(float *y, const float *b, int64_t n_tok, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < n_tok; t++) op_add(y + t * n, b, n);
}

/* One chunk of at most n_batch rows. */
static int forward_chunk(model *m, kv_cache *kv, const model_batch *b, int64_t r0, int64_t n,
                         float *logits, int64_t *n_logits) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, D = hp->head_dim, H = hp->n_head, HKV = hp->n_head_kv;
    int64_t Q = H * D, KV = HKV * D, F = hp->n_ff;
    const int32_t *tok = b->token + r0, *pos = b->pos + r0, *seq = b->seq ? b->seq + r0 : NULL;

    size_t erow = 0;
    dtype_bytes(m->tok_embd.type, E, &erow);
    for (int64_t i = 0; i < n; i++)
        dequantize_row(m->tok_embd.type, (const unsigned char *)m->tok_embd.data + (size_t)tok[i] * erow, m->x + i * E, E);

    for (int64_t l = 0; l < hp->n_layer; l++) {
        const dense_layer *L = &m->layers[l];
        for (int64_t i = 0; i < n; i++) op_rmsnorm(m->xn + i * E, m->x + i * E, L->attn_norm, E, hp->rms_eps);
        model_matmul(m, m->q, &L->wq, m->xn, n);
        model_matmul(m, m->k, &L->wk, m->xn, n);
        model_matmul(m, m->v, &L->wv, m->xn, n);
        add_bias(m->q, L->bq, n, Q);
        add_bias(m->k, L->bk, n, KV);
        add_bias(m->v, L->bv, n, KV);
        for (int64_t i = 0; i < n; i++) {
            for (int64_t h = 0; h < H; h++) op_rope(m->q + i * Q + h * D, m->n_rot, pos[i], m->inv_freq, m->rope);
            for (int64_t h = 0; h < HKV; h++) op_rope(m->k + i * KV + h * D, m->n_rot, pos[i], m->inv_freq, m->rope);
            int32_t s = seq ? seq[i] : 0;
            kv_put(kv, kv_row(kv, kv->k, l, s, pos[i]), m->k + i * KV, KV);
            kv_put(kv, kv_row(kv, kv->v, l, s, pos[i]), m->v + i * KV, KV);
        }
        att_job aj = {m, kv, l, pos, seq, m->att_scores_n};
        tp_run(m->tp, n * HKV, att_task, &aj);
        model_matmul(m, m->tmp_rows, &L->wo, m->att, n);
        for (int64_t i = 0; i < n; i++) op_add(m->x + i * E, m->tmp_rows + i * E, E);

        for (int64_t i = 0; i < n; i++) op_rmsnorm(m->xn + i * E, m->x + i * E, L->ffn_norm, E, hp->rms_eps);
        model_matmul(m, m->gate, &L->w_gate, m->xn, n);
        model_matmul(m, m->up, &L->w_up, m->xn, n);
        for (int64_t i = 0; i < n; i++) op_swiglu(m->gate + i * F, m->gate + i * F, m->up + i * F, F);
        model_matmul(m, m->tmp_rows, &L->w_down, m->gate, n);
        for (int64_t i = 0; i < n; i++) op_add(m->x + i * E, m->tmp_rows + i * E, E);
    }

    model_output_logits(m, b, r0, n, logits, n_logits);
    return 0;
}

void model_output_logits(model *m, const model_batch *b, int64_t r0, int64_t n, float *logits, int64_t *n_logits) {
    int64_t E = m->hp.n_embd, k = 0;
    for (int64_t i = 0; i < n; i++) {
        int want = b->logits ? b->logits[r0 + i] : (r0 + i == b->n - 1);
        if (!want && !m->hidden_out) continue;
        op_rmsnorm(m->xn + k * E, m->x + i * E, m->out_norm, E, m->hp.rms_eps);
        if (m->hidden_out) /* every row's state, for the MTP module to continue from */
            memcpy(m->hidden_out + (size_t)(r0 + i) * (size_t)E, m->mtp_prenorm ? m->x + i * E : m->xn + k * E,
                   (size_t)E * sizeof(float));
        k += want;
    }
    if (k) model_matmul(m, logits + (size_t)*n_logits * (size_t)m->output.n_out, &m->output, m->xn, k);
    *n_logits += k;
}

static int check_batch(model *m, kv_cache *kv, const model_batch *b, whale_err *err) {
    for (int64_t i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= m->tok_embd.n_out)
            return err_set(err, WHALE_E_ARG, "token id %d is outside the vocabulary (0..%lld)", b->token[i],
                           (long long)m->tok_embd.n_out - 1);
        if (b->pos[i] < 0 || b->pos[i] >= kv->n_ctx)
            return err_set(err, WHALE_E_ARG, "position %d is past the context of %lld tokens", b->pos[i],
                           (long long)kv->n_ctx);
        if (b->seq && (b->seq[i] < 0 || b->seq[i] >= kv->n_seq))
            return err_set(err, WHALE_E_ARG, "sequence %d does not exist (cache has %d)", b->seq[i], kv->n_seq);
    }
    /* per thread: the naive MLA form's scores over the context, or a dense attention task's
     * block of scores, scaled queries and softmax state for one KV head's group */
    const model_hparams *hp = &m->hp;
    int64_t group = hp->n_head / hp->n_head_kv, need = group * (OP_MQA_BLOCK + hp->head_dim + 2);
    if (need < kv->n_ctx) need = kv->n_ctx;
    if (m->att_scores_n < need) {
        float *p = realloc(m->att_scores, (size_t)tp_threads(m->tp) * (size_t)need * sizeof(float));
        if (!p) return err_set(err, WHALE_E_NOMEM, "out of memory for attention scores");
        m->att_scores = p;
        m->att_scores_n = need;
    }
    return 0;
}

int model_forward(model *m, kv_cache *kv, const model_batch *b, float *logits, whale_err *err) {
    int rc = check_batch(m, kv, b, err);
    if (rc) return rc;
    int64_t n_logits = 0;
    for (int64_t r0 = 0; r0 < b->n; r0 += m->n_batch) {
        int64_t n = b->n - r0 < m->n_batch ? b->n - r0 : m->n_batch;
        rc = m->hp.arch == MODEL_ARCH_DEEPSEEK2 ? deepseek_forward_chunk(m, kv, b, r0, n, logits, &n_logits)
                                               : forward_chunk(m, kv, b, r0, n, logits, &n_logits);
        if (rc) return rc;
    }
    return 0;
}

int model_forward_hidden(model *m, kv_cache *kv, const model_batch *b, float *logits, float *hidden, whale_err *err) {
    m->hidden_out = hidden;
    int rc = model_forward(m, kv, b, logits, err);
    m->hidden_out = NULL;
    return rc;
}

int model_has_mtp(const model *m) { return m->mtp != NULL; }

int model_mtp_forward(model *m, kv_cache *kv, const model_batch *b, const float *hidden, float *logits, whale_err *err) {
    if (!m->mtp) return err_set(err, WHALE_E_UNSUPPORTED, "this model has no MTP module");
    if (kv->n_layer <= m->hp.n_layer) return err_set(err, WHALE_E_ARG, "this cache has no room for the MTP layer");
    int rc = check_batch(m, kv, b, err);
    if (rc) return rc;
    int64_t n_logits = 0, E = m->hp.n_embd;
    for (int64_t r0 = 0; r0 < b->n; r0 += m->n_batch) {
        int64_t n = b->n - r0 < m->n_batch ? b->n - r0 : m->n_batch;
        if ((rc = mtp_forward_chunk(m, kv, b, hidden + (size_t)r0 * (size_t)E, r0, n, logits, &n_logits))) return rc;
    }
    return 0;
}
