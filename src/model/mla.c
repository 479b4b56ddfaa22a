/* mla.c — DeepSeek's Multi-head Latent Attention over the latent cache (SPEC-deepseek.md §2;
 * model.py's MLA): per token and layer the cache holds only the normalized latent c
 * (kv_lora_rank) and the rotated shared key k_pe (qk_rope_head_dim).
 *
 * Attention is computed in the absorbed form for every row. Per head h:
 * q~ = W_UK[h]^T q_nope, score_t = scale (q~.c_t + q_pe.k_pe_t), o~ = sum_t p_t c_t,
 * o[h] = W_UV[h] o~. The decompressed form (k and v rebuilt per position) is kept as the
 * reference it is tested against (model_opts.mla_naive). Reads both GGUF layouts of the
 * key/value up-projection: the fused attn_kv_b (the checkpoints' kv_b_proj) and llama.cpp's
 * split attn_k_b / attn_v_b. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kernels/attn.h"
#include "model/deepseek.h"

/* The absorbed query q~ = W_UK[h]^T q_nope reads W_UK[h] transposed: dc rows of dn per head,
 * llama.cpp's attn_k_b layout. A fused attn_kv_b stores it the other way round, so it is
 * transposed once at load (as llama.cpp's converter does offline); a split file's k_b is used
 * as it is when F32/F16. F32 and block-scaled FP8 become F32 (exact); any other type becomes
 * F16, finer than the quantized source, so one kernel (op_mqa_scores[_f16]) serves every row
 * count alike. */
int mla_build_kb(model *m, ds_layer *L, whale_err *err) {
    const model_hparams *hp = &m->hp;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    if (L->split_kb && !L->wk_b.scale && (L->wk_b.type == WHALE_DTYPE_F32 || L->wk_b.type == WHALE_DTYPE_F16))
        return 0;
    const wmat *src = L->split_kb ? &L->wk_b : &L->wkv_b;
    /* FP8 with block scales: any float, so F32 too (F16 would round what the reference keeps) */
    int f32 = src->type == WHALE_DTYPE_F32 || src->scale;
    size_t n = (size_t)(H * dc * dn);
    void *buf = malloc(n * (f32 ? sizeof(float) : sizeof(uint16_t)));
    float *row = malloc((size_t)(dc > dn ? dc : dn) * sizeof(float));
    if (!buf || !row || wt_own(m, buf)) {
        free(buf);
        free(row);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the absorbed key projection");
    }
    float *o32 = buf;
    uint16_t *o16 = buf;
    for (int64_t h = 0; h < H; h++) {
        if (L->split_kb) { /* already transposed: convert row by row */
            for (int64_t i = 0; i < dc; i++) {
                wmat_row(src, h * dc + i, row);
                for (int64_t d = 0; d < dn; d++) {
                    size_t at = (size_t)((h * dc + i) * dn + d);
                    if (f32) o32[at] = row[d];
                    else o16[at] = f32_to_fp16(row[d]);
                }
            }
            continue;
        }
        for (int64_t d = 0; d < dn; d++) {
            wmat_row(src, h * (dn + dv) + d, row);
            for (int64_t i = 0; i < dc; i++) {
                size_t at = (size_t)((h * dc + i) * dn + d);
                if (f32) o32[at] = row[i];
                else o16[at] = f32_to_fp16(row[i]);
            }
        }
    }
    free(row);
    L->wk_b = (wmat){f32 ? WHALE_DTYPE_F32 : WHALE_DTYPE_F16, buf, dn, H * dc, NULL};
    return 0;
}

/* ---- attention (absorbed) ------------------------------------------------------------- */

static void *latent_row(const kv_cache *kv, int64_t layer, int32_t seq, int64_t pos) {
    return kv_row(kv, 0, layer, seq, pos);
}

typedef struct ds_att {
    const model *m;
    model_ctx *c;
    ds_ws *w;
    kv_cache *kv;
    const ds_layer *L;
    int64_t layer;
    const int32_t *pos, *seq;
    int64_t n_chunk; /* absorbed form: position chunks per row */
    int64_t n_rows;
    qact_block *xq;  /* pass 3 on the integer path: o~ quantized, (head, row), else NULL */
} ds_att;

/* W_UK[h] (dn x dc) of a split-layout layer as floats, row-major, into out: k_b stores its
 * transpose, dc rows of dn per head. */
static void w_uk_from_kb(const wmat *kb, int64_t h, int64_t dn, int64_t dc, float *out, float *row) {
    for (int64_t i = 0; i < dc; i++) {
        wmat_row(kb, h * dc + i, row);
        for (int64_t d = 0; d < dn; d++) out[d * dc + i] = row[d];
    }
}

/* The decompressed form, one task per (row, head): k_nope[t] = W_UK c_t and v[t] = W_UV c_t
 * rebuilt at every position (SPEC §2.2). The reference the absorbed form is checked against. */
static void ds_att_naive_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    const model *m = j->m;
    model_ctx *c = j->c;
    ds_ws *w = j->w;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim, dv = hp->v_head_dim;
    int64_t dc = hp->kv_lora_rank, row = task / H, h = task % H, pos = j->pos[row];
    int32_t seq = j->seq ? j->seq[row] : 0;
    float *wrow = w->scratch + (size_t)thread * (size_t)w->scratch_n, *uk = wrow + w->wide;
    float *ltmp = wrow + w->scratch_n - (dc + dr); /* a latent row widened from an F16 cache */
    float *sc = c->att_scores + (size_t)thread * (size_t)c->att_scores_n;
    const float *q = w->q + (size_t)(row * H * (dn + dr) + h * (dn + dr));
    /* W_UV[h] row d is row uv0 + d of wuv; W_UK[h] row d is row uk0 + d of wkv_b (fused layout) */
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t uk0 = h * (dn + dv), uv0 = L->split_kb ? h * dv : h * (dn + dv) + dn;
    float *out = w->att + (size_t)(row * H * dv + h * dv);
    if (L->split_kb) w_uk_from_kb(&L->wk_b, h, dn, dc, uk, wrow); /* this head's W_UK, dn x dc */
    for (int64_t t = 0; t <= pos; t++) {
        const float *lat = kv_get(j->kv, latent_row(j->kv, j->layer, seq, t), dc + dr, ltmp);
        float s = 0;
        for (int64_t d = 0; d < dn; d++)
            s += q[d] * (L->split_kb ? op_dot(uk + d * dc, lat, dc) : wmat_dot(&L->wkv_b, uk0 + d, lat, wrow));
        sc[t] = (s + op_dot(q + dn, lat + dc, dr)) * m->attn_scale;
    }
    op_softmax(sc, pos + 1);
    memset(out, 0, (size_t)dv * sizeof *out);
    for (int64_t t = 0; t <= pos; t++) {
        const float *lat = kv_get(j->kv, latent_row(j->kv, j->layer, seq, t), dc + dr, ltmp);
        for (int64_t d = 0; d < dv; d++) out[d] += sc[t] * wmat_dot(wuv, uv0 + d, lat, wrow);
    }
}

/* Absorbed form, in three passes so that each cached latent row is read once for all heads:
 * 1. per (row, head): qcat = scale [W_UK[h]^T q_nope ; q_pe], a query against the whole latent
 *    row [c ; k_pe];
 * 2. per (row, chunk of positions): all heads' online softmax over the chunk, leaving for each
 *    head the running max, the sum of weights and the weighted sum of latents o~;
 * 3. per (row, head): merge the chunks, o[h] = W_UV[h] o~ / sum.
 * A decode row (few rows per call) splits its positions into chunks for the threads; a
 * prefill row is one chunk (rows already keep the threads busy). */

/* One head, all rows: qcat[row][h] = scale [W_UK[h]^T q_nope ; q_pe]. The same arithmetic for
 * one row or many, so batching does not change a row's result. */
static void ds_q_task(void *ctx, int64_t task, int thread) {
    (void)thread;
    ds_att *j = ctx;
    const model *m = j->m;
    ds_ws *w = j->w;
    const model_hparams *hp = &m->hp;
    const wmat *kb = &j->L->wk_b;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dr = hp->qk_rope_head_dim;
    int64_t dc = hp->kv_lora_rank, h = task, ldq = H * (dn + dr), ldc = H * (dc + dr);
    const float *q = w->q + h * (dn + dr);
    float *qc = w->qcat + h * (dc + dr), a = m->attn_scale;
    if (kb->type == WHALE_DTYPE_F32)
        op_mqa_scores(qc, ldc, q, ldq, j->n_rows, (const float *)kb->data + h * dc * dn, dn, dc, dn);
    else
        op_mqa_scores_f16(qc, ldc, q, ldq, j->n_rows, (const uint16_t *)kb->data + h * dc * dn, dn, dc, dn);
    for (int64_t r = 0; r < j->n_rows; r++) {
        float *c = qc + r * ldc;
        const float *qr = q + r * ldq;
        for (int64_t i = 0; i < dc; i++) c[i] *= a;
        for (int64_t i = 0; i < dr; i++) c[dc + i] = a * qr[dn + i];
    }
}

static void ds_chunk_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    const model *m = j->m;
    ds_ws *w = j->w;
    const model_hparams *hp = &m->hp;
    int64_t H = hp->n_head, dc = hp->kv_lora_rank, dr = hp->qk_rope_head_dim, kd = j->kv->kv_dim;
    int64_t row = task / j->n_chunk, c = task % j->n_chunk, P = (int64_t)j->pos[row] + 1;
    /* chunks start on page boundaries (kv_cache.c: the bits then do not depend on where pages lie);
     * the last ones may be empty */
    int64_t len = ((P + j->n_chunk - 1) / j->n_chunk + KV_PAGE - 1) / KV_PAGE * KV_PAGE, t0 = c * len;
    int64_t t1 = t0 + len < P ? t0 + len : P;
    float *o = w->att_part + (size_t)task * (size_t)(H * (dc + 2)), *mx = o + H * dc, *l = mx + H;
    float *sc = w->scratch + (size_t)thread * (size_t)w->scratch_n;
    const float *qc = w->qcat + (size_t)(row * H * (dc + dr));
    int32_t seq = j->seq ? j->seq[row] : 0;
    memset(o, 0, (size_t)(H * dc) * sizeof *o);
    for (int64_t h = 0; h < H; h++) mx[h] = -INFINITY, l[h] = 0;
    if (j->kv->type == OP_KV_Q8 && t0 < t1) op_mqa_q8_queries(sc, qc, dc + dr, H, dc + dr, dc);
    for (int64_t t = t0; t < t1;) { /* the chunk's rows span by span (contiguous pages) */
        const void *lat;
        int64_t got = kv_span(j->kv, 0, j->layer, seq, t, t1 - t, &lat);
        if (j->kv->type == OP_KV_Q8)
            op_mqa_attend_q8(o, dc, mx, l, H, lat, j->kv->row_bytes, dc + dr, dc, got, sc);
        else
            op_mqa_attend_t(o, dc, mx, l, qc, dc + dr, H, lat, kd, dc + dr, lat, kd, dc, got, j->kv->type, sc);
        t += got;
    }
}

/* Pass 3, first for each row of a head: merge the chunks into o~ / sum, left in place of chunk
 * 0's o~ (and, for the integer path, quantized into xq at (head, row): a head's rows together). */
static void ds_merge(ds_att *j, int64_t row, int64_t h) {
    const model *m = j->m;
    int64_t H = m->hp.n_head, dc = m->hp.kv_lora_rank, stride = H * (dc + 2);
    float *part = j->w->att_part + (size_t)(row * j->n_chunk) * (size_t)stride, *ob = part + h * dc;
    float M = -INFINITY, sum = 0;
    for (int64_t c = 0; c < j->n_chunk; c++) {
        float x = part[c * stride + H * dc + h];
        M = x > M ? x : M;
    }
    for (int64_t c = 0; c < j->n_chunk; c++) { /* chunk 0 (never empty: it holds position 0) is
                                                 the accumulator, scaled, then the others added */
        const float *pc = part + c * stride;
        if (pc[H * dc + H + h] <= 0) continue; /* empty chunk */
        float w = expf(pc[H * dc + h] - M);
        sum += w * pc[H * dc + H + h];
        if (c == 0)
            for (int64_t i = 0; i < dc; i++) ob[i] *= w;
        else
            for (int64_t i = 0; i < dc; i++) ob[i] += w * pc[h * dc + i];
    }
    for (int64_t i = 0; i < dc; i++) ob[i] /= sum;
    if (j->xq) op_quantize_act(j->xq + (size_t)(h * j->n_rows + row) * (size_t)(dc / QACT_BLOCK), ob, dc);
}

/* Pass 3 per head: merge each row's chunks, then o[row][h] = W_UV[h] o~[row][h] for every row
 * at once, each weight row read once for all rows (the matrix kernels: batch-invariant). */
static void ds_out_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    const model *m = j->m;
    ds_ws *w = j->w;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank, h = task;
    for (int64_t row = 0; row < j->n_rows; row++) ds_merge(j, row, h);
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    wmat v;
    wmat_view_rows(wuv, L->split_kb ? h * dv : h * (dn + dv) + dn, dv, &v); /* checked by mla_attention */
    float *out = w->att + h * dv, *scratch = w->scratch + (size_t)thread * (size_t)w->scratch_n;
    if (j->xq)
        wmat_matmul_rows_q(out, H * dv, &v, j->xq + (size_t)(h * j->n_rows) * (size_t)(dc / QACT_BLOCK), j->n_rows, 0, dv);
    else
        wmat_matmul_rows(out, H * dv, &v, w->att_part + h * dc, j->n_chunk * H * (dc + 2), j->n_rows, 0, dv, scratch);
}

/* The former pass 3 for matrices that cannot be viewed per head (FP8 rows off a block
 * boundary): per (row, head), one dot per output. */
static void ds_out_dot_task(void *ctx, int64_t task, int thread) {
    ds_att *j = ctx;
    const model *m = j->m;
    ds_ws *w = j->w;
    const model_hparams *hp = &m->hp;
    const ds_layer *L = j->L;
    int64_t H = hp->n_head, dn = hp->qk_nope_head_dim, dv = hp->v_head_dim, dc = hp->kv_lora_rank;
    int64_t row = task / H, h = task % H;
    ds_merge(j, row, h);
    const float *ob = w->att_part + (size_t)(row * j->n_chunk) * (size_t)(H * (dc + 2)) + h * dc;
    float *wrow = w->scratch + (size_t)thread * (size_t)w->scratch_n;
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t uv0 = L->split_kb ? h * dv : h * (dn + dv) + dn;
    float *out = w->att + (size_t)(row * H * dv + h * dv);
    for (int64_t d = 0; d < dv; d++) out[d] = wmat_dot(wuv, uv0 + d, ob, wrow);
}

void mla_attention(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const int32_t *pos,
                   const int32_t *seq, int64_t n) {
    int64_t H = m->hp.n_head;
    ds_att j = {m, c, c->ws, c->kv, L, layer, pos, seq, 1, n, NULL};
    if (m->mla_naive) {
        tp_run(c->tp, n * H, ds_att_naive_task, &j);
        return;
    }
    if (n <= DS_SPLIT_ROWS) {
        int64_t P = 0, T = tp_threads(c->tp);
        for (int64_t i = 0; i < n; i++) P = pos[i] + 1 > P ? pos[i] + 1 : P;
        j.n_chunk = P / DS_CHUNK_MIN;
        if (j.n_chunk > 4 * T) j.n_chunk = 4 * T;
        if (j.n_chunk > DS_MAX_CHUNKS) j.n_chunk = DS_MAX_CHUNKS;
        if (j.n_chunk < 1) j.n_chunk = 1;
    }
    const wmat *wuv = L->split_kb ? &L->wv_b : &L->wkv_b;
    int64_t dn = m->hp.qk_nope_head_dim, dv = m->hp.v_head_dim, dc = m->hp.kv_lora_rank;
    wmat v;
    int per_head = 1; /* every head's W_UV viewable as a matrix of its own */
    for (int64_t h = 0; h < H && per_head; h++)
        per_head = !wmat_view_rows(wuv, L->split_kb ? h * dv : h * (dn + dv) + dn, dv, &v);
    if (per_head && wmat_int_path(wuv) && dc % QACT_BLOCK == 0) j.xq = c->xq;
    tp_run(c->tp, H, ds_q_task, &j);
    tp_run(c->tp, n * j.n_chunk, ds_chunk_task, &j);
    if (per_head) tp_run(c->tp, H, ds_out_task, &j);
    else tp_run(c->tp, n * H, ds_out_dot_task, &j);
}

