/* moe.c — DeepSeekMoE (SPEC-deepseek.md §3; model.py's Gate and MoE): the router picks
 * n_expert_used of n_expert routed experts per token (V2: softmax scores; V3: sigmoid scores with
 * a selection-only bias, auxiliary-loss-free balancing; both group-limited), the chosen experts'
 * outputs are added with the gate weights, and the shared experts run on every token.
 * Each routed expert runs once per forward call on the rows routed to it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/deepseek.h"

/* ---- experts ------------------------------------------------------------------------------ */

/* out (n rows) = FFN_x(in (n rows)): each expert weight row is read once for all n tokens. */
void ds_ffn(model_ctx *c, const ds_expert *x, const float *in, float *out, int64_t n) {
    ds_ws *w = c->ws;
    int64_t F = x->gate.n_out;
    wmat_matmul(c, w->moe_g, &x->gate, in, n);
    wmat_matmul(c, w->moe_u, &x->up, in, n);
    op_swiglu(w->moe_g, w->moe_g, w->moe_u, n * F);
    wmat_matmul(c, out, &x->down, w->moe_g, n);
}

/* Pick n_expert_used experts for one token from router logits z; weights into w, ids into id. */
void ds_route(const model_hparams *hp, const float *bias, const float *z, float *score, int32_t *id, float *w) {
    int64_t N = hp->n_expert, K = hp->n_expert_used;
    float sel[4096]; /* selection scores (N <= 4096, checked on load) */
    if (hp->gating == MOE_GATING_SIGMOID) {
        for (int64_t e = 0; e < N; e++) {
            score[e] = 1.0f / (1.0f + expf(-z[e]));
            sel[e] = score[e] + (bias ? bias[e] : 0.0f); /* the bias only chooses; weights use score */
        }
    } else {
        float mx = z[0];
        for (int64_t e = 1; e < N; e++) mx = z[e] > mx ? z[e] : mx;
        double sum = 0;
        for (int64_t e = 0; e < N; e++) sum += exp((double)z[e] - mx);
        for (int64_t e = 0; e < N; e++) sel[e] = score[e] = (float)(exp((double)z[e] - mx) / sum);
    }
    /* Group-limited selection: keep the best n_group_used groups (V3: a group scores the sum of
     * its two best; V2: its best), exclude the rest. */
    int64_t G = hp->n_expert_group > 1 ? hp->n_expert_group : 1;
    if (G > 1 && hp->n_group_used > 0 && hp->n_group_used < G && N % G == 0) {
        int64_t per = N / G;
        float gs[4096];
        for (int64_t g = 0; g < G; g++) {
            float b1 = -INFINITY, b2 = -INFINITY;
            for (int64_t e = g * per; e < (g + 1) * per; e++) {
                if (sel[e] > b1) { b2 = b1; b1 = sel[e]; }
                else if (sel[e] > b2) b2 = sel[e];
            }
            gs[g] = hp->gating == MOE_GATING_SIGMOID ? b1 + (per > 1 ? b2 : 0) : b1;
        }
        for (int64_t keep = 0; keep < hp->n_group_used; keep++) { /* mark kept groups with +inf */
            int64_t best = -1;
            for (int64_t g = 0; g < G; g++)
                if (gs[g] != INFINITY && (best < 0 || gs[g] > gs[best])) best = g;
            gs[best] = INFINITY;
        }
        for (int64_t g = 0; g < G; g++)
            if (gs[g] != INFINITY)
                for (int64_t e = g * per; e < (g + 1) * per; e++) sel[e] = -INFINITY;
    }
    double total = 0;
    for (int64_t k = 0; k < K; k++) { /* top-K by selection score, lowest index on ties */
        int64_t best = -1;
        for (int64_t e = 0; e < N; e++)
            if (sel[e] != -INFINITY && !isnan(sel[e]) && (best < 0 || sel[e] > sel[best])) best = e;
        if (best < 0) best = 0;
        id[k] = (int32_t)best;
        w[k] = score[best];
        total += score[best];
        sel[best] = -INFINITY;
    }
    for (int64_t k = 0; k < K; k++) {
        if (hp->expert_weights_norm) w[k] = (float)(w[k] / (total + 1e-20));
        w[k] *= hp->expert_weights_scale > 0 ? hp->expert_weights_scale : 1.0f;
    }
}

/* The experts of one MoE layer as one job: rows gathered per routed expert (slot = position in
 * the gathered list), the shared experts as one more entry over all rows; gate and up for every
 * entry in one parallel pass, down in a second, so a layer pays two synchronizations however
 * many experts it runs. */
typedef struct moe_job {
    const model *m;
    model_ctx *c;
    ds_ws *w;
    const ds_layer *L;
    int64_t n_active;
    const int32_t *active, *start, *count; /* (n_active) expert id (-1: shared), first slot, slots */
    const int64_t *goff;                    /* (n_active) where its gate/up outputs start in moe_g/moe_u */
    const int32_t *task0;                   /* (n_active + 1) first task of each entry */
    int down;
    const qact_block *xq;                   /* the integer path's activations, or NULL */
} moe_job;

static void moe_task(void *ctx, int64_t task, int thread) {
    moe_job *j = ctx;
    const model *m = j->m;
    model_ctx *c = j->c;
    ds_ws *w = j->w;
    int64_t a = 0;
    while (task >= j->task0[a + 1]) a++;
    const ds_expert *x = j->active[a] < 0 ? &j->L->shared : &j->L->experts[j->active[a]];
    int64_t E = m->hp.n_embd, F = x->gate.n_out, r0 = (task - j->task0[a]) * DS_ROWS_PER_TASK;
    int64_t s0 = j->start[a], ns = j->count[a], g0 = j->goff[a];
    float *scratch = c->row_scratch + (size_t)thread * (size_t)c->row_width;
    if (j->down) {
        int64_t r1 = r0 + DS_ROWS_PER_TASK < E ? r0 + DS_ROWS_PER_TASK : E;
        if (j->xq) wmat_matmul_rows_q(w->moe_y + s0 * E, E, &x->down, j->xq + g0 / QACT_BLOCK, ns, r0, r1);
        else wmat_matmul_rows(w->moe_y + s0 * E, E, &x->down, w->moe_g + g0, F, ns, r0, r1, scratch);
        return;
    }
    int64_t r1 = r0 + DS_ROWS_PER_TASK < F ? r0 + DS_ROWS_PER_TASK : F;
    if (j->xq) {
        wmat_matmul_rows_q(w->moe_g + g0, F, &x->gate, j->xq + s0 * (E / QACT_BLOCK), ns, r0, r1);
        wmat_matmul_rows_q(w->moe_u + g0, F, &x->up, j->xq + s0 * (E / QACT_BLOCK), ns, r0, r1);
        return;
    }
    wmat_matmul_rows(w->moe_g + g0, F, &x->gate, w->moe_x + s0 * E, E, ns, r0, r1, scratch);
    wmat_matmul_rows(w->moe_u + g0, F, &x->up, w->moe_x + s0 * E, E, ns, r0, r1, scratch);
}

/* Tasks of each entry: its output rows in blocks (gate/up: the entry's width; down: n_embd). */
static void moe_tasks(const moe_job *j, int32_t *task0, int64_t E) {
    task0[0] = 0;
    for (int64_t a = 0; a < j->n_active; a++) {
        const ds_expert *x = j->active[a] < 0 ? &j->L->shared : &j->L->experts[j->active[a]];
        int64_t rows = j->down ? E : x->gate.n_out;
        task0[a + 1] = task0[a] + (int32_t)((rows + DS_ROWS_PER_TASK - 1) / DS_ROWS_PER_TASK);
    }
}

/* MoE over n rows: route every row, gather the rows of each chosen expert, run the experts (each
 * weight row read once for all its rows) with the shared experts alongside on all rows, then
 * add up each row's weighted outputs. */
void moe_forward(const model *m, model_ctx *c, const ds_layer *L, int64_t layer, const float *xn, float *out,
                 int64_t n) {
    const model_hparams *hp = &m->hp;
    ds_ws *w = c->ws;
    int64_t E = hp->n_embd, N = hp->n_expert, K = hp->n_expert_used, F = hp->n_ff_expert;
    wmat_matmul(c, w->moe_h, &L->router, xn, n); /* (n, N) router logits */
    for (int64_t i = 0; i < n; i++)
        ds_route(hp, L->router_bias, w->moe_h + i * N, w->moe_h + n * N + i * N, w->moe_id + i * K, w->moe_w + i * K);
    model_emit(c, "moe_logits", layer, w->moe_h, n, N);
    if (c->hook) { /* the choices as floats, through moe_x before it is filled */
        for (int64_t i = 0; i < n * K; i++) w->moe_x[i] = (float)w->moe_id[i];
        model_emit(c, "moe_choice", layer, w->moe_x, n, K);
        model_emit(c, "moe_weight", layer, w->moe_w, n, K);
    }
    /* counting sort of the (row, choice) pairs by expert */
    int32_t *cnt = w->moe_cnt, *active = cnt + N, *start = active + N + 1, *count = start + N + 1, *task0 = count + N + 1;
    int64_t *goff = w->moe_goff;
    memset(cnt, 0, (size_t)N * sizeof *cnt);
    for (int64_t i = 0; i < n * K; i++) cnt[w->moe_id[i]]++;
    int64_t na = 0, slot = 0;
    for (int64_t e = 0; e < N; e++) {
        if (!cnt[e]) continue;
        active[na] = (int32_t)e;
        start[na] = (int32_t)slot;
        goff[na] = slot * F;
        count[na] = 0;
        slot += cnt[e];
        cnt[e] = (int32_t)na++; /* expert -> active index */
    }
    for (int64_t i = 0; i < n * K; i++) {
        int64_t a = cnt[w->moe_id[i]], s = start[a] + count[a]++;
        w->moe_rows[s] = (int32_t)i;
        memcpy(w->moe_x + s * E, xn + (i / K) * E, (size_t)E * sizeof(float));
    }
    /* one weight type for all routed experts of a layer (as every converter writes them); the
     * shared experts join the same passes when their matrices take the same path */
    const ds_expert *x0 = &L->experts[active[0]];
    int q_in = wmat_int_path(&x0->gate) && wmat_int_path(&x0->up), q_down = wmat_int_path(&x0->down);
    const ds_expert *sh = &L->shared;
    int joined = L->has_shared && q_in == (wmat_int_path(&sh->gate) && wmat_int_path(&sh->up)) &&
                 q_down == wmat_int_path(&sh->down) && (!q_down || sh->gate.n_out % QACT_BLOCK == 0);
    int64_t Fs = joined ? sh->gate.n_out : 0;
    if (joined) { /* the shared experts: every row, after the routed slots */
        active[na] = -1;
        start[na] = (int32_t)slot;
        count[na] = (int32_t)n;
        goff[na++] = slot * F;
        memcpy(w->moe_x + slot * E, xn, (size_t)(n * E) * sizeof(float));
    }
    int64_t rows_in = slot + (joined ? n : 0), g_total = slot * F + n * Fs;
    moe_job j = {m, c, w, L, na, active, start, count, goff, task0, 0, NULL};
    if (q_in) j.xq = wmat_quantize_x(c, w->moe_x, E, rows_in, E);
    moe_tasks(&j, task0, E);
    tp_run(c->tp, task0[na], moe_task, &j);
    op_swiglu(w->moe_g, w->moe_g, w->moe_u, g_total);
    j.down = 1;
    j.xq = NULL;
    if (q_down) { /* routed rows are F wide, shared rows Fs: quantized as two runs, end to end */
        j.xq = wmat_quantize_x(c, w->moe_g, F, slot, F);
        if (joined) wmat_quantize_into(c, c->xq + slot * F / QACT_BLOCK, w->moe_g + slot * F, Fs, n, Fs);
    }
    moe_tasks(&j, task0, E);
    tp_run(c->tp, task0[na], moe_task, &j);
    /* scatter: each row's K outputs added in its own choice order, whatever the batch */
    memset(out, 0, (size_t)(n * E) * sizeof *out);
    for (int64_t s = 0; s < slot; s++) w->moe_slot[w->moe_rows[s]] = (int32_t)s;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            float g = w->moe_w[i * K + k];
            const float *y = w->moe_y + (size_t)w->moe_slot[i * K + k] * (size_t)E;
            for (int64_t e = 0; e < E; e++) out[i * E + e] += g * y[e];
        }
    if (joined) {
        for (int64_t i = 0; i < n * E; i++) out[i] += w->moe_y[slot * E + i];
    } else if (L->has_shared) {
        ds_ffn(c, &L->shared, xn, w->moe_y, n);
        for (int64_t i = 0; i < n * E; i++) out[i] += w->moe_y[i];
    }
}

