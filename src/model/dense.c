/* dense.c — the forward pass of the dense decoder used by the R1-Distill models (Qwen2: GQA
 * with q/k/v biases; Llama 3: scaled RoPE), over a batch of (sequence, position, token) rows.
 *
 * Per layer, for all rows at once:  xn = rmsnorm(x)  ->  q,k,v = xn·W (+b)  -> rope(q,k) ->
 * k,v into the cache -> attention per (row, head) over the row's sequence up to its position ->
 * x += att·Wo  ->  xn = rmsnorm(x)  ->  x += (silu(xn·Wg) * (xn·Wu))·Wd.
 * Matrix products split weight rows over the thread pool; each row is dequantized once and used
 * for every token of the batch.
 * A LoRA adapter (lora.c) adds B (A x) after each product it targets.
 * A leaf of the model core (model.c): embedding and output head are the core's; this file owns
 * the layers' weights, their forward pass and its scratch. */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/attn.h"
#include "model/model_impl.h"

/* A context's scratch for n_batch rows. */
typedef struct dense_ws {
    float *q, *att;     /* (n_batch, n_head*head_dim) queries, attention outputs */
    float *k, *v;       /* (n_batch, n_head_kv*head_dim) */
    float *gate, *up;   /* (n_batch, n_ff) */
    float *tmp;         /* (n_batch, n_embd) a sublayer's output before the residual add */
    float *lora_r;      /* (n_batch, lora_r) an adapter's A x; NULL without an adapter */
    float *lora_d;      /* (n_batch, widest n_out) its B (A x) */
} dense_ws;

/* ---- attention ------------------------------------------------------------------------ */

typedef struct att_job {
    const model *m;
    model_ctx *c;
    kv_cache *kv;
    int64_t layer;
    const int32_t *pos, *seq;
    int64_t n_ctx_used; /* scores buffer stride per thread */
} att_job;

/* One (row, KV head) task: the query heads sharing that KV head attend together, reading each
 * cached key and value row once (online softmax, kernels/attn.h). */
static void att_task(void *ctx, int64_t task, int thread) {
    att_job *j = ctx;
    const model *m = j->m;
    dense_ws *w = j->c->ws;
    const model_hparams *hp = &m->hp;
    int64_t D = hp->head_dim, H = hp->n_head, HKV = hp->n_head_kv, group = H / HKV;
    int64_t row = task / HKV, kvh = task % HKV, P = (int64_t)j->pos[row] + 1;
    int32_t seq = j->seq ? j->seq[row] : 0;
    float *qs = j->c->att_scores + (size_t)thread * (size_t)j->n_ctx_used, *mx = qs + group * D, *l = mx + group;
    float *sc = l + group; /* the kernel's scratch: OP_MQA_SCRATCH(group, D) */
    const float *q = w->q + (size_t)(row * H * D + kvh * group * D);
    float *out = w->att + (size_t)(row * H * D + kvh * group * D);
    float scale = 1.0f / sqrtf((float)D);
    for (int64_t i = 0; i < group * D; i++) qs[i] = q[i] * scale;
    memset(out, 0, (size_t)(group * D) * sizeof *out);
    for (int64_t h = 0; h < group; h++) mx[h] = -INFINITY, l[h] = 0;
    size_t off = (size_t)(kvh * D) * kv_elem_size(j->kv);
    for (int64_t t = 0; t < P;) { /* the sequence's rows span by span (contiguous pages) */
        const void *kr, *vr;
        int64_t got = kv_span(j->kv, 0, j->layer, seq, t, P - t, &kr);
        kv_span(j->kv, 1, j->layer, seq, t, got, &vr);
        op_mqa_attend_t(out, D, mx, l, qs, D, group, (const char *)kr + off, HKV * D, D, (const char *)vr + off,
                        HKV * D, D, got, j->kv->type, sc);
        t += got;
    }
    for (int64_t h = 0; h < group; h++)
        for (int64_t i = 0; i < D; i++) out[h * D + i] /= l[h];
}

/* ---- the forward pass ----------------------------------------------------------------- */

static void add_bias(float *y, const float *b, int64_t n_tok, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < n_tok; t++) op_add(y + t * n, b, n);
}

/* y = x W^T for the n rows of x, plus the adapter's update of W when it has one (lora.c). */
static void matmul(model_ctx *c, float *y, const dense_layer *L, int k, const wmat *w, const float *x, int64_t n) {
    wmat_matmul(c, y, w, x, n);
    if (L->lora[k]) {
        dense_ws *ws = c->ws;
        assert(ws->lora_r); /* model_lora_load runs before any context is made */
        lora_apply(c, y, L->lora[k], x, n, ws->lora_r, ws->lora_d);
    }
}

static void forward(const model *m, model_ctx *c, const int32_t *pos, const int32_t *seq, int64_t n) {
    const model_hparams *hp = &m->hp;
    dense_ws *w = c->ws;
    kv_cache *kv = c->kv;
    int64_t E = hp->n_embd, D = hp->head_dim, H = hp->n_head, HKV = hp->n_head_kv;
    int64_t Q = H * D, KV = HKV * D, F = hp->n_ff;
    float *x = c->x, *xn = c->xn;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const dense_layer *L = &m->layers[l];
        for (int64_t i = 0; i < n; i++) op_rmsnorm(xn + i * E, x + i * E, L->attn_norm, E, hp->rms_eps);
        model_emit(c, "attn_norm", l, xn, n, E);
        matmul(c, w->q, L, DENSE_Q, &L->wq, xn, n);
        matmul(c, w->k, L, DENSE_K, &L->wk, xn, n);
        matmul(c, w->v, L, DENSE_V, &L->wv, xn, n);
        add_bias(w->q, L->bq, n, Q);
        add_bias(w->k, L->bk, n, KV);
        add_bias(w->v, L->bv, n, KV);
        for (int64_t i = 0; i < n; i++) {
            for (int64_t h = 0; h < H; h++) op_rope(w->q + i * Q + h * D, m->n_rot, pos[i], m->inv_freq, m->rope);
            for (int64_t h = 0; h < HKV; h++) op_rope(w->k + i * KV + h * D, m->n_rot, pos[i], m->inv_freq, m->rope);
            int32_t s = seq ? seq[i] : 0;
            kv_put(kv, kv_row(kv, 0, l, s, pos[i]), w->k + i * KV, KV);
            kv_put(kv, kv_row(kv, 1, l, s, pos[i]), w->v + i * KV, KV);
        }
        att_job aj = {m, c, kv, l, pos, seq, c->att_scores_n};
        tp_run(c->tp, n * HKV, att_task, &aj);
        matmul(c, w->tmp, L, DENSE_O, &L->wo, w->att, n);
        model_emit(c, "attn_out", l, w->tmp, n, E);
        for (int64_t i = 0; i < n; i++) op_add(x + i * E, w->tmp + i * E, E);
        model_emit(c, "ffn_inp", l, x, n, E);

        for (int64_t i = 0; i < n; i++) op_rmsnorm(xn + i * E, x + i * E, L->ffn_norm, E, hp->rms_eps);
        model_emit(c, "ffn_norm", l, xn, n, E);
        matmul(c, w->gate, L, DENSE_GATE, &L->w_gate, xn, n);
        matmul(c, w->up, L, DENSE_UP, &L->w_up, xn, n);
        for (int64_t i = 0; i < n; i++) op_swiglu(w->gate + i * F, w->gate + i * F, w->up + i * F, F);
        matmul(c, w->tmp, L, DENSE_DOWN, &L->w_down, w->gate, n);
        model_emit(c, "ffn_out", l, w->tmp, n, E);
        for (int64_t i = 0; i < n; i++) op_add(x + i * E, w->tmp + i * E, E);
        model_emit(c, "l_out", l, x, n, E);
    }
}

/* ---- loading, scratch, table entry ----------------------------------------------------- */

static int load(model *m, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, D = hp->head_dim, Q = hp->n_head * D, KV = hp->n_head_kv * D, F = hp->n_ff;
    int rc;
    m->n_rot = hp->head_dim;
    /* GGUF Llama rows of q/k were permuted by the converter for adjacent-pair rotation. */
    m->rope = m->is_gguf && hp->arch == MODEL_ARCH_LLAMA ? ROPE_NORM : ROPE_NEOX;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t l = 0; l < hp->n_layer; l++) {
        dense_layer *L = &m->layers[l];
        char n[96];
#define MAT(field, suffix, in, out)                                                     \
    snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                           \
    if ((rc = wt_need_mat(m, n, in, out, &L->field, err))) return rc;
#define VEC(field, suffix, len, opt)                                                    \
    snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                           \
    if ((rc = wt_need_vec(m, n, len, opt, &L->field, err))) return rc;
        VEC(attn_norm, "attn_norm.weight", E, 0);
        MAT(wq, "attn_q.weight", E, Q);
        MAT(wk, "attn_k.weight", E, KV);
        MAT(wv, "attn_v.weight", E, KV);
        MAT(wo, "attn_output.weight", Q, E);
        VEC(bq, "attn_q.bias", Q, 1);
        VEC(bk, "attn_k.bias", KV, 1);
        VEC(bv, "attn_v.bias", KV, 1);
        VEC(ffn_norm, "ffn_norm.weight", E, 0);
        MAT(w_gate, "ffn_gate.weight", E, F);
        MAT(w_up, "ffn_up.weight", E, F);
        MAT(w_down, "ffn_down.weight", F, E);
#undef MAT
#undef VEC
    }
    return 0;
}

static void unload(model *m) {
    free(m->layers);
    m->layers = NULL;
}

static int64_t kv_dim(const model_hparams *hp) { return hp->n_head_kv * hp->head_dim; }

static int ws_new(const model *m, model_ctx *c, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t B = c->n_batch, E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    dense_ws *w = calloc(1, sizeof *w);
    if (!w) return err_set(err, WHALE_E_NOMEM, "out of memory");
    c->ws = w;
    w->q = malloc((size_t)(B * Q) * sizeof(float));
    w->k = malloc((size_t)(B * KV) * sizeof(float));
    w->v = malloc((size_t)(B * KV) * sizeof(float));
    w->att = malloc((size_t)(B * Q) * sizeof(float));
    w->gate = malloc((size_t)(B * F) * sizeof(float));
    w->up = malloc((size_t)(B * F) * sizeof(float));
    w->tmp = malloc((size_t)(B * E) * sizeof(float));
    if (m->lora) {
        int64_t widest = Q > F ? Q : F;
        widest = widest > E ? widest : E;
        w->lora_r = malloc((size_t)(B * m->lora_r) * sizeof(float));
        w->lora_d = malloc((size_t)(B * widest) * sizeof(float));
        if (!w->lora_r || !w->lora_d) return err_set(err, WHALE_E_NOMEM, "out of memory for the adapter's scratch");
    }
    if (!w->q || !w->k || !w->v || !w->att || !w->gate || !w->up || !w->tmp)
        return err_set(err, WHALE_E_NOMEM, "out of memory for scratch buffers (batch %lld)", (long long)B);
    return 0;
}

static void ws_free(model_ctx *c) {
    dense_ws *w = c->ws;
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att);
    free(w->gate);
    free(w->up);
    free(w->tmp);
    free(w->lora_r);
    free(w->lora_d);
    free(w);
    c->ws = NULL;
}

static int64_t xq_blocks(const model *m, int64_t n_batch) {
    (void)m, (void)n_batch;
    return 0; /* the core's (n_batch rows of the widest input) is enough */
}

/* An adapter's A and B matrices of the layer (read once per decode step). */
static size_t lora_bytes(const dense_layer *L) {
    size_t b = 0;
    for (int k = 0; k < DENSE_N_MAT; k++)
        if (L->lora[k]) b += wmat_bytes(&L->lora[k]->a) + wmat_bytes(&L->lora[k]->b);
    return b;
}

static size_t layer_bytes(const model *m, int64_t l) {
    const model_hparams *hp = &m->hp;
    const dense_layer *L = &m->layers[l];
    int64_t E = hp->n_embd, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    return vec_bytes(L->attn_norm, E) + wmat_bytes(&L->wq) + wmat_bytes(&L->wk) + wmat_bytes(&L->wv) +
           wmat_bytes(&L->wo) + vec_bytes(L->bq, Q) + vec_bytes(L->bk, KV) + vec_bytes(L->bv, KV) +
           vec_bytes(L->ffn_norm, E) + wmat_bytes(&L->w_gate) + wmat_bytes(&L->w_up) + wmat_bytes(&L->w_down) +
           lora_bytes(L);
}

const arch_ops dense_arch = {
    .load = load,
    .free = unload,
    .kv_dim = kv_dim,
    .kv_with_v = 1,
    .has_mtp = 0,
    .ws_new = ws_new,
    .ws_free = ws_free,
    .xq_blocks = xq_blocks,
    .forward = forward,
    .layer_bytes = layer_bytes,
};
