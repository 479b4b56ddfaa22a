/* deepseek.c — training a DeepSeek-V3-architecture decoder (see deepseek.h). */
#include "train/deepseek.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "model/model_impl.h" /* ds_route: the inference router's selection, shared */
#include "train/moe.h"
#include "train/ops.h"

static int is_moe(const tr_ds_cfg *c, int l) { return c->n_expert > 0 && l >= c->first_dense; }

static void layout(tr_ds *m) {
    const tr_ds_cfg *c = &m->c;
    char nm[112];
    int H = c->n_head, qk = c->nope + c->rope;
    tr_params_begin(&m->P);
    tr_param *p = tr_params_add(&m->P, "model.embed_tokens.weight", c->vocab, c->d, 1);
    m->embed = p->w, m->d_embed = p->g;
    for (int l = 0; l < c->n_layer + c->n_mtp; l++) {
        tr_ds_layer *L = &m->L[l], *G = &m->dL[l];
#define P(field, suffix, r, cc, dec)                                                               \
    do {                                                                                            \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                   \
        tr_param *q_ = tr_params_add(&m->P, nm, r, cc, dec);                                        \
        L->field = q_->w, G->field = q_->g;                                                         \
    } while (0)
        if (l >= c->n_layer) { /* an MTP module: its own tensors, then its block */
            tr_ds_mtp *X = &m->mtp[l - c->n_layer], *DX = &m->dmtp[l - c->n_layer];
#define PM(field, suffix, r, cc, dec)                                                              \
    do {                                                                                            \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                   \
        tr_param *q_ = tr_params_add(&m->P, nm, r, cc, dec);                                        \
        X->field = q_->w, DX->field = q_->g;                                                        \
    } while (0)
            PM(enorm, "enorm.weight", c->d, 1, 0);
            PM(hnorm, "hnorm.weight", c->d, 1, 0);
            PM(eh_proj, "eh_proj.weight", c->d, 2 * c->d, 1);
            PM(head_norm, "shared_head.norm.weight", c->d, 1, 0);
#undef PM
        }
        P(attn_norm, "input_layernorm.weight", c->d, 1, 0);
        if (c->q_lora) {
            P(wqa, "self_attn.q_a_proj.weight", c->q_lora, c->d, 1);
            P(q_norm, "self_attn.q_a_layernorm.weight", c->q_lora, 1, 0);
            P(wqb, "self_attn.q_b_proj.weight", H * qk, c->q_lora, 1);
        } else {
            P(wq, "self_attn.q_proj.weight", H * qk, c->d, 1);
        }
        P(wkva, "self_attn.kv_a_proj_with_mqa.weight", c->kv_lora + c->rope, c->d, 1);
        P(kv_norm, "self_attn.kv_a_layernorm.weight", c->kv_lora, 1, 0);
        P(wkvb, "self_attn.kv_b_proj.weight", H * (c->nope + c->vdim), c->kv_lora, 1);
        P(wo, "self_attn.o_proj.weight", c->d, H * c->vdim, 1);
        P(ffn_norm, "post_attention_layernorm.weight", c->d, 1, 0);
        if (!is_moe(c, l)) {
            P(wg, "mlp.gate_proj.weight", c->d_ff, c->d, 1);
            P(wu, "mlp.up_proj.weight", c->d_ff, c->d, 1);
            P(wd, "mlp.down_proj.weight", c->d, c->d_ff, 1);
            continue;
        }
        P(router, "mlp.gate.weight", c->n_expert, c->d, 1);
        P(router_bias, "mlp.gate.e_score_correction_bias", c->n_expert, 1, 0);
        m->P.t[m->P.n_t - 1].frozen = 1;
        for (int e = 0; e < c->n_expert; e++) {
#define PE(arr, what, r, cc)                                                                      \
    do {                                                                                            \
        snprintf(nm, sizeof nm, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, what);            \
        tr_param *q_ = tr_params_add(&m->P, nm, r, cc, 1);                                          \
        L->arr[e] = q_->w, G->arr[e] = q_->g;                                                       \
    } while (0)
            PE(eg, "gate_proj", c->moe_ff, c->d);
            PE(eu, "up_proj", c->moe_ff, c->d);
            PE(ed, "down_proj", c->d, c->moe_ff);
#undef PE
        }
        int sf = c->moe_ff * c->n_shared;
        if (sf) {
            P(wg, "mlp.shared_experts.gate_proj.weight", sf, c->d, 1);
            P(wu, "mlp.shared_experts.up_proj.weight", sf, c->d, 1);
            P(wd, "mlp.shared_experts.down_proj.weight", c->d, sf, 1);
        }
#undef P
    }
    p = tr_params_add(&m->P, "model.norm.weight", c->d, 1, 0);
    m->out_norm = p->w, m->d_out_norm = p->g;
    p = tr_params_add(&m->P, "lm_head.weight", c->vocab, c->d, 1);
    m->head = p->w, m->d_head = p->g;
}

/* YaRN's numbers (deepseek.h): the per-pair frequency scale, the cos/sin factor and the softmax
 * scale, as transformers' DeepseekV3 computes them (and src/model for the frequencies). */
static double yarn_mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0; }

static int setup_rope(tr_ds *m, whale_err *err) {
    const tr_ds_cfg *c = &m->c;
    m->rope_mscale = 1.0f;
    m->attn_scale = (float)(1.0 / sqrt((double)(c->nope + c->rope)));
    if (!(c->rope_factor > 1)) return 0;
    int half = c->rope / 2;
    m->freq_scale = malloc(sizeof(float) * (size_t)half);
    if (!m->freq_scale) return err_set(err, WHALE_E_NOMEM, "out of memory");
    double f = c->rope_factor;
    for (int i = 0; i < half; i++) {
        /* 0: the pair keeps its frequency, 1: divided by f (the inference model's ramp) */
        double g = rope_yarn_ramp(c->rope_theta, c->rope, c->rope_orig_ctx, c->yarn_beta_fast, c->yarn_beta_slow, i);
        m->freq_scale[i] = (float)(1 - g + g / f);
    }
    m->rope_mscale = (float)(c->yarn_mscale > 0 && c->yarn_mscale_all_dim > 0
                                 ? yarn_mscale(f, c->yarn_mscale) / yarn_mscale(f, c->yarn_mscale_all_dim)
                                 : yarn_mscale(f, 1.0));
    if (c->yarn_mscale_all_dim > 0) {
        double ms = yarn_mscale(f, c->yarn_mscale_all_dim);
        m->attn_scale = (float)(m->attn_scale * ms * ms);
    }
    return 0;
}

int tr_ds_init(tr_ds *m, const tr_ds_cfg *c, whale_err *err) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    if (c->n_layer < 1 || c->d < 1 || c->n_head < 1 || c->kv_lora < 1 || c->rope < 2 || c->rope % 2 || c->vdim < 1 ||
        c->vocab < 2 || (c->n_expert && (c->n_used < 1 || c->n_used > c->n_expert || c->n_expert > 4096 ||
                                         c->moe_ff < 1 || (c->n_group > 1 && c->n_expert % c->n_group))))
        return err_set(err, WHALE_E_ARG, "bad DeepSeek shape");
    if (c->n_mtp < 0 || c->n_mtp > 16 || !(c->mtp_weight >= 0) || c->rope_factor < 0 || c->rope_orig_ctx < 0 ||
        c->yarn_mscale < 0 || c->yarn_mscale_all_dim < 0)
        return err_set(err, WHALE_E_ARG, "bad DeepSeek MTP or YaRN settings (n_mtp %d, weight %g, rope factor %g)", c->n_mtp,
                       c->mtp_weight, c->rope_factor);
    int NB = c->n_layer + c->n_mtp;
    m->L = calloc((size_t)NB, sizeof *m->L);
    m->dL = calloc((size_t)NB, sizeof *m->dL);
    m->mtp = calloc((size_t)c->n_mtp + 1, sizeof *m->mtp);
    m->dmtp = calloc((size_t)c->n_mtp + 1, sizeof *m->dmtp);
    m->load = calloc((size_t)NB * (size_t)(c->n_expert ? c->n_expert : 1), sizeof *m->load);
    if (!m->L || !m->dL || !m->mtp || !m->dmtp || !m->load) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int rc = setup_rope(m, err);
    if (rc) return rc;
    for (int l = 0; l < NB && c->n_expert; l++) {
        tr_ds_layer *x[2] = {&m->L[l], &m->dL[l]};
        for (int k = 0; k < 2; k++) {
            x[k]->eg = calloc((size_t)c->n_expert, sizeof(float *));
            x[k]->eu = calloc((size_t)c->n_expert, sizeof(float *));
            x[k]->ed = calloc((size_t)c->n_expert, sizeof(float *));
            if (!x[k]->eg || !x[k]->eu || !x[k]->ed) return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
    }
    layout(m);
    rc = tr_params_alloc(&m->P, err);
    if (rc) return rc;
    layout(m);
    return 0;
}

void tr_ds_free(tr_ds *m) {
    for (int l = 0; m->L && l < m->c.n_layer + m->c.n_mtp; l++) {
        free(m->L[l].eg), free(m->L[l].eu), free(m->L[l].ed);
        free(m->dL[l].eg), free(m->dL[l].eu), free(m->dL[l].ed);
    }
    tr_params_free(&m->P);
    free(m->L), free(m->dL), free(m->mtp), free(m->dmtp), free(m->load), free(m->freq_scale);
    memset(m, 0, sizeof *m);
}

/* ---- the step --------------------------------------------------------------------------------- */

/* A bump allocator over one block (the step's activations and scratch). */
typedef struct arena {
    float *p;
    size_t at, cap;
} arena;
static float *take(arena *a, size_t n) {
    if (a->at + n > a->cap) return NULL;
    a->at += n;
    return a->p + a->at - n;
}

typedef struct acts {
    float *x, *xn1, *inv1, *qa, *qan, *invq, *q, *ckv, *cb, *cn, *invc, *kv, *K, *V, *P, *att, *h1, *xn2, *inv2;
    float *g, *u, *a;                /* dense MLP or shared experts */
    float *z, *score, *w;            /* MoE: router logits, affinities, gate weights [T][K] */
    int32_t *id;                     /* [T][K] */
    int32_t *rows;                   /* gathered (t*K + k) per expert, expert-major */
    int32_t *start;                  /* [n_expert + 1] */
    float *eg, *eu, *ea, *ey;        /* gathered: [T*K][moe_ff] x3, [T*K][d] */
} acts;

/* floats one layer keeps (an upper bound) */
static size_t layer_floats(const tr_ds_cfg *c, int T) {
    size_t H = (size_t)c->n_head, qk = (size_t)(c->nope + c->rope), d = (size_t)c->d;
    size_t ff = (size_t)(c->d_ff > c->moe_ff * c->n_shared ? c->d_ff : c->moe_ff * c->n_shared);
    size_t TK = (size_t)T * (size_t)(c->n_used > 0 ? c->n_used : 1), E = (size_t)(c->n_expert > 0 ? c->n_expert : 1);
    return (size_t)T * (d * 5 + 4 + (size_t)c->q_lora * 2 + H * qk * 2 + (size_t)(c->kv_lora + c->rope) +
                        (size_t)c->kv_lora * 2 + H * (size_t)(c->nope + c->vdim) + H * (size_t)c->vdim * 2 + ff * 3 + E * 2) +
           H * (size_t)T * T + TK * (2 + 3 * (size_t)c->moe_ff + d) + (size_t)T * 2 * (size_t)(c->n_used > 0 ? c->n_used : 1) +
           E + 1;
}

static void lay_acts(acts *a, arena *ar, const tr_ds_cfg *c, int T, int moe) {
    size_t H = (size_t)c->n_head, qk = (size_t)(c->nope + c->rope), d = (size_t)c->d, Tz = (size_t)T;
    size_t ff = (size_t)(moe ? c->moe_ff * c->n_shared : c->d_ff), K = (size_t)c->n_used, E = (size_t)c->n_expert;
    memset(a, 0, sizeof *a);
    a->x = take(ar, Tz * d), a->xn1 = take(ar, Tz * d), a->inv1 = take(ar, Tz);
    if (c->q_lora) a->qa = take(ar, Tz * c->q_lora), a->qan = take(ar, Tz * c->q_lora), a->invq = take(ar, Tz);
    a->q = take(ar, Tz * H * qk), a->ckv = take(ar, Tz * (c->kv_lora + c->rope)), a->cb = take(ar, Tz * c->kv_lora);
    a->cn = take(ar, Tz * c->kv_lora), a->invc = take(ar, Tz), a->kv = take(ar, Tz * H * (c->nope + c->vdim));
    a->K = take(ar, Tz * H * qk), a->V = take(ar, Tz * H * c->vdim), a->P = take(ar, H * Tz * Tz);
    a->att = take(ar, Tz * H * c->vdim), a->h1 = take(ar, Tz * d), a->xn2 = take(ar, Tz * d), a->inv2 = take(ar, Tz);
    if (ff) a->g = take(ar, Tz * ff), a->u = take(ar, Tz * ff), a->a = take(ar, Tz * ff);
    if (moe) {
        a->z = take(ar, Tz * E), a->score = take(ar, Tz * E), a->w = take(ar, Tz * K);
        a->id = (int32_t *)take(ar, Tz * K), a->rows = (int32_t *)take(ar, Tz * K), a->start = (int32_t *)take(ar, E + 1);
        a->eg = take(ar, Tz * K * c->moe_ff), a->eu = take(ar, Tz * K * c->moe_ff), a->ea = take(ar, Tz * K * c->moe_ff);
        a->ey = take(ar, Tz * K * d);
    }
}

/* The MoE block's forward: routing, experts over their gathered rows, the shared experts; the
 * block's output into y (set). */
static void moe_fwd(tr_ds *m, int l, acts *a, int T, float *y, float *scratch, int count) {
    const tr_ds_cfg *c = &m->c;
    const tr_ds_layer *L = &m->L[l];
    int E = c->n_expert, K = c->n_used, d = c->d, F = c->moe_ff;
    model_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_expert = E, hp.n_expert_used = K, hp.n_expert_group = c->n_group > 1 ? c->n_group : 1;
    hp.n_group_used = c->topk_group, hp.expert_weights_scale = c->route_scale, hp.expert_weights_norm = c->norm_topk;
    hp.gating = c->sigmoid ? MOE_GATING_SIGMOID : MOE_GATING_SOFTMAX;
    tr_matmul_fwd(a->z, a->xn2, L->router, NULL, T, d, E);
    int64_t *load = m->load + (size_t)l * E;
    for (int t = 0; t < T; t++) {
        ds_route(&hp, c->sigmoid ? L->router_bias : NULL, a->z + (size_t)t * E, a->score + (size_t)t * E, a->id + (size_t)t * K,
                 a->w + (size_t)t * K);
        for (int k = 0; k < K && count; k++) load[a->id[(size_t)t * K + k]]++;
    }
    /* counting sort of the (t, k) pairs by expert */
    memset(a->start, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int i = 0; i < T * K; i++) a->start[a->id[i] + 1]++;
    for (int e = 0; e < E; e++) a->start[e + 1] += a->start[e];
    int32_t *fill = (int32_t *)scratch;
    memcpy(fill, a->start, sizeof(int32_t) * (size_t)E);
    for (int i = 0; i < T * K; i++) a->rows[fill[a->id[i]]++] = i;
    if (c->n_shared) {
        int sf = F * c->n_shared;
        tr_matmul_fwd(a->g, a->xn2, L->wg, NULL, T, d, sf);
        tr_matmul_fwd(a->u, a->xn2, L->wu, NULL, T, d, sf);
        tr_swiglu_fwd(a->a, a->g, a->u, (size_t)T * sf);
        tr_matmul_fwd(y, a->a, L->wd, NULL, T, sf, d);
    } else {
        memset(y, 0, sizeof(float) * (size_t)T * d);
    }
    float *X = scratch; /* the gathered rows of one expert, [cnt][d] */
    for (int e = 0; e < E; e++) {
        int s = a->start[e], n = a->start[e + 1] - s;
        if (!n) continue;
        for (int r = 0; r < n; r++) memcpy(X + (size_t)r * d, a->xn2 + (size_t)(a->rows[s + r] / K) * d, sizeof(float) * d);
        float *G = a->eg + (size_t)s * F, *U = a->eu + (size_t)s * F, *A = a->ea + (size_t)s * F, *Y = a->ey + (size_t)s * d;
        tr_matmul_fwd(G, X, L->eg[e], NULL, n, d, F);
        tr_matmul_fwd(U, X, L->eu[e], NULL, n, d, F);
        tr_swiglu_fwd(A, G, U, (size_t)n * F);
        tr_matmul_fwd(Y, A, L->ed[e], NULL, n, F, d);
        for (int r = 0; r < n; r++) {
            int i = a->rows[s + r];
            float w = a->w[i];
            float *yt = y + (size_t)(i / K) * d;
            for (int j = 0; j < d; j++) yt[j] += w * Y[(size_t)r * d + j];
        }
    }
}

/* Its backward: dy = dL/dy; adds into dxn2 and the gradients. Returns the balance loss. */
static double moe_bwd(tr_ds *m, int l, const acts *a, int T, const float *dy, float *dxn2, float *scratch, float loss_scale) {
    const tr_ds_cfg *c = &m->c;
    const tr_ds_layer *L = &m->L[l];
    tr_ds_layer *G = &m->dL[l];
    int E = c->n_expert, K = c->n_used, d = c->d, F = c->moe_ff;
    if (c->n_shared) {
        int sf = F * c->n_shared;
        float *da = scratch, *dg = da + (size_t)T * sf, *du = dg + (size_t)T * sf;
        memset(da, 0, sizeof(float) * (size_t)T * sf * 3);
        tr_matmul_bwd(da, G->wd, NULL, dy, a->a, L->wd, T, sf, d);
        tr_swiglu_bwd(dg, du, da, a->g, a->u, (size_t)T * sf);
        tr_matmul_bwd(dxn2, G->wg, NULL, dg, a->xn2, L->wg, T, d, sf);
        tr_matmul_bwd(dxn2, G->wu, NULL, du, a->xn2, L->wu, T, d, sf);
    }
    float *dw = scratch, *X = dw + (size_t)T * K, *dY = X + (size_t)T * K * d, *dA = dY + (size_t)T * K * d;
    float *dG = dA + (size_t)T * K * F, *dU = dG + (size_t)T * K * F, *dX = dU + (size_t)T * K * F;
    for (int e = 0; e < E; e++) {
        int s = a->start[e], n = a->start[e + 1] - s;
        if (!n) continue;
        const float *Y = a->ey + (size_t)s * d;
        for (int r = 0; r < n; r++) {
            int i = a->rows[s + r], t = i / K;
            const float *g = dy + (size_t)t * d;
            double dot = 0;
            for (int j = 0; j < d; j++) dY[(size_t)r * d + j] = a->w[i] * g[j], dot += (double)g[j] * Y[(size_t)r * d + j];
            dw[i] = (float)dot;
            memcpy(X + (size_t)r * d, a->xn2 + (size_t)t * d, sizeof(float) * d);
        }
        memset(dA, 0, sizeof(float) * (size_t)n * F);
        memset(dG, 0, sizeof(float) * (size_t)n * F);
        memset(dU, 0, sizeof(float) * (size_t)n * F);
        memset(dX, 0, sizeof(float) * (size_t)n * d);
        const float *Ge = a->eg + (size_t)s * F, *Ue = a->eu + (size_t)s * F, *Ae = a->ea + (size_t)s * F;
        tr_matmul_bwd(dA, G->ed[e], NULL, dY, Ae, L->ed[e], n, F, d);
        tr_swiglu_bwd(dG, dU, dA, Ge, Ue, (size_t)n * F);
        tr_matmul_bwd(dX, G->eg[e], NULL, dG, X, L->eg[e], n, d, F);
        tr_matmul_bwd(dX, G->eu[e], NULL, dU, X, L->eu[e], n, d, F);
        for (int r = 0; r < n; r++) {
            float *dst = dxn2 + (size_t)(a->rows[s + r] / K) * d;
            for (int j = 0; j < d; j++) dst[j] += dX[(size_t)r * d + j];
        }
    }
    float *dz = dA; /* reuse: [T][E] */
    memset(dz, 0, sizeof(float) * (size_t)T * E);
    for (int t = 0; t < T; t++)
        tr_gate_bwd(dz + (size_t)t * E, dw + (size_t)t * K, a->score + (size_t)t * E, a->id + (size_t)t * K, E, K, c->sigmoid,
                    c->norm_topk, c->route_scale);
    double bal = 0;
    if (c->balance_alpha > 0 && c->sigmoid) bal = tr_balance_loss(dz, a->score, a->id, T, E, K, c->balance_alpha * loss_scale);
    tr_matmul_bwd(dxn2, G->router, NULL, dz, a->xn2, L->router, T, d, E);
    return loss_scale ? bal / loss_scale : 0;
}

/* The step's shared buffers (each T rows). */
typedef struct bufs {
    float *b1, *b2, *b3, *b4, *dckv, *dcb, *dcn, *dkv, *ffb, *scratch;
} bufs;

/* Decoder block l over a->x (T rows at positions pos): its output into out (set). */
static void block_fwd(tr_ds *m, int l, acts *a, const int32_t *pos, int T, float *out, const bufs *s, int count) {
    const tr_ds_cfg *c = &m->c;
    const tr_ds_layer *L = &m->L[l];
    int d = c->d, H = c->n_head, n = c->nope, r = c->rope, qk = n + r, vd = c->vdim, kvl = c->kv_lora;
    size_t Tz = (size_t)T;
    float *b1 = s->b1;
    tr_rmsnorm_fwd(a->xn1, a->inv1, a->x, L->attn_norm, T, d, c->eps);
    if (c->q_lora) {
        tr_matmul_fwd(a->qa, a->xn1, L->wqa, NULL, T, d, c->q_lora);
        tr_rmsnorm_fwd(a->qan, a->invq, a->qa, L->q_norm, T, c->q_lora, c->eps);
        tr_matmul_fwd(a->q, a->qan, L->wqb, NULL, T, c->q_lora, H * qk);
    } else {
        tr_matmul_fwd(a->q, a->xn1, L->wq, NULL, T, d, H * qk);
    }
    tr_rope(a->q + n, pos, T, H, qk, r, c->rope_theta, m->freq_scale, m->rope_mscale, 0, 0);
    tr_matmul_fwd(a->ckv, a->xn1, L->wkva, NULL, T, d, kvl + r);
    for (int t = 0; t < T; t++) memcpy(a->cb + (size_t)t * kvl, a->ckv + (size_t)t * (kvl + r), sizeof(float) * kvl);
    tr_rmsnorm_fwd(a->cn, a->invc, a->cb, L->kv_norm, T, kvl, c->eps);
    tr_rope(a->ckv + kvl, pos, T, 1, kvl + r, r, c->rope_theta, m->freq_scale, m->rope_mscale, 0, 0);
    tr_matmul_fwd(a->kv, a->cn, L->wkvb, NULL, T, kvl, H * (n + vd));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const float *kvh = a->kv + ((size_t)t * H + h) * (n + vd);
            float *kh = a->K + ((size_t)t * H + h) * qk;
            memcpy(kh, kvh, sizeof(float) * n);
            memcpy(kh + n, a->ckv + (size_t)t * (kvl + r) + kvl, sizeof(float) * r);
            memcpy(a->V + ((size_t)t * H + h) * vd, kvh + n, sizeof(float) * vd);
        }
    tr_attn_fwd(a->att, a->P, a->q, a->K, a->V, T, H, H, qk, vd, m->attn_scale);
    tr_matmul_fwd(b1, a->att, L->wo, NULL, T, H * vd, d);
    for (size_t i = 0; i < Tz * d; i++) a->h1[i] = a->x[i] + b1[i];
    tr_rmsnorm_fwd(a->xn2, a->inv2, a->h1, L->ffn_norm, T, d, c->eps);
    if (is_moe(c, l)) {
        moe_fwd(m, l, a, T, b1, s->scratch, count); /* validation counts no load */
    } else {
        tr_matmul_fwd(a->g, a->xn2, L->wg, NULL, T, d, c->d_ff);
        tr_matmul_fwd(a->u, a->xn2, L->wu, NULL, T, d, c->d_ff);
        tr_swiglu_fwd(a->a, a->g, a->u, Tz * c->d_ff);
        tr_matmul_fwd(b1, a->a, L->wd, NULL, T, c->d_ff, d);
    }
    for (size_t i = 0; i < Tz * d; i++) out[i] = a->h1[i] + b1[i];
}

/* Its backward: dx holds dL/d(output) on entry, dL/d(input) on return; gradients added.
 * bal_scale weights the balance loss (MoE). */
static void block_bwd(tr_ds *m, int l, const acts *a, const int32_t *pos, int T, float *dx, const bufs *s, float bal_scale) {
    const tr_ds_cfg *c = &m->c;
    const tr_ds_layer *L = &m->L[l];
    tr_ds_layer *G = &m->dL[l];
    int d = c->d, H = c->n_head, n = c->nope, r = c->rope, qk = n + r, vd = c->vdim, kvl = c->kv_lora;
    size_t Tz = (size_t)T;
    float *scratch = s->scratch, *dxn = s->b2;
    memset(dxn, 0, sizeof(float) * Tz * d);
    if (is_moe(c, l)) {
        moe_bwd(m, l, a, T, dx, dxn, scratch, bal_scale);
    } else {
        float *da = s->ffb, *dg = scratch, *du = scratch + Tz * c->d_ff;
        memset(da, 0, sizeof(float) * Tz * c->d_ff);
        memset(dg, 0, sizeof(float) * Tz * c->d_ff * 2);
        tr_matmul_bwd(da, G->wd, NULL, dx, a->a, L->wd, T, c->d_ff, d);
        tr_swiglu_bwd(dg, du, da, a->g, a->u, Tz * c->d_ff);
        tr_matmul_bwd(dxn, G->wg, NULL, dg, a->xn2, L->wg, T, d, c->d_ff);
        tr_matmul_bwd(dxn, G->wu, NULL, du, a->xn2, L->wu, T, d, c->d_ff);
    }
    tr_rmsnorm_bwd(dx, G->ffn_norm, dxn, a->h1, L->ffn_norm, a->inv2, T, d); /* dL/dh1 */
    float *datt = s->b1, *dq = s->b3, *dK = s->b4, *dV = scratch, *dckv = s->dckv, *dkv = s->dkv;
    memset(datt, 0, sizeof(float) * Tz * H * vd);
    tr_matmul_bwd(datt, G->wo, NULL, dx, a->att, L->wo, T, H * vd, d);
    memset(dq, 0, sizeof(float) * Tz * H * qk);
    memset(dK, 0, sizeof(float) * Tz * H * qk);
    memset(dV, 0, sizeof(float) * Tz * H * vd);
    tr_attn_bwd(dq, dK, dV, datt, a->P, a->q, a->K, a->V, T, H, H, qk, vd, m->attn_scale);
    tr_rope(dq + n, pos, T, H, qk, r, c->rope_theta, m->freq_scale, m->rope_mscale, 0, 1);
    memset(dckv, 0, sizeof(float) * Tz * (kvl + r));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            const float *dkh = dK + ((size_t)t * H + h) * qk;
            float *dkvh = dkv + ((size_t)t * H + h) * (n + vd), *dpe = dckv + (size_t)t * (kvl + r) + kvl;
            memcpy(dkvh, dkh, sizeof(float) * n);
            memcpy(dkvh + n, dV + ((size_t)t * H + h) * vd, sizeof(float) * vd);
            for (int i = 0; i < r; i++) dpe[i] += dkh[n + i];
        }
    tr_rope(dckv + kvl, pos, T, 1, kvl + r, r, c->rope_theta, m->freq_scale, m->rope_mscale, 0, 1);
    memset(s->dcn, 0, sizeof(float) * Tz * kvl);
    tr_matmul_bwd(s->dcn, G->wkvb, NULL, dkv, a->cn, L->wkvb, T, kvl, H * (n + vd));
    memset(s->dcb, 0, sizeof(float) * Tz * kvl);
    tr_rmsnorm_bwd(s->dcb, G->kv_norm, s->dcn, a->cb, L->kv_norm, a->invc, T, kvl);
    for (int t = 0; t < T; t++) memcpy(dckv + (size_t)t * (kvl + r), s->dcb + (size_t)t * kvl, sizeof(float) * kvl);
    memset(dxn, 0, sizeof(float) * Tz * d);
    tr_matmul_bwd(dxn, G->wkva, NULL, dckv, a->xn1, L->wkva, T, d, kvl + r);
    if (c->q_lora) {
        float *dqan = scratch, *dqa = scratch + Tz * c->q_lora;
        memset(dqan, 0, sizeof(float) * Tz * c->q_lora * 2);
        tr_matmul_bwd(dqan, G->wqb, NULL, dq, a->qan, L->wqb, T, c->q_lora, H * qk);
        tr_rmsnorm_bwd(dqa, G->q_norm, dqan, a->qa, L->q_norm, a->invq, T, c->q_lora);
        tr_matmul_bwd(dxn, G->wqa, NULL, dqa, a->xn1, L->wqa, T, d, c->q_lora);
    } else {
        tr_matmul_bwd(dxn, G->wq, NULL, dq, a->xn1, L->wq, T, d, H * qk);
    }
    tr_rmsnorm_bwd(dx, G->attn_norm, dxn, a->x, L->attn_norm, a->inv1, T, d);
}

/* What one MTP module keeps (T rows each): the embedding rows and their norm, the previous
 * depth's normed hidden state, the concatenation, the block's output and its gradient. */
typedef struct mtp_acts {
    float *e, *en, *inv_e, *hn, *inv_h, *cat, *out, *dout;
} mtp_acts;

static size_t mtp_floats(const tr_ds_cfg *c, int T) { return (size_t)T * ((size_t)c->d * 7 + 2); }

static void lay_mtp(mtp_acts *x, arena *ar, const tr_ds_cfg *c, int T) {
    size_t Tz = (size_t)T, d = (size_t)c->d;
    x->e = take(ar, Tz * d), x->en = take(ar, Tz * d), x->inv_e = take(ar, Tz), x->hn = take(ar, Tz * d);
    x->inv_h = take(ar, Tz), x->cat = take(ar, Tz * 2 * d), x->out = take(ar, Tz * d), x->dout = take(ar, Tz * d);
}

/* The shared output head over hidden rows h (T of them) after norm w: the loss share of these
 * rows against tg (of the batch's n_targets; with per-row weights tw, their weighted sum, and
 * each row's log p into logp when not NULL: tr_seq_loss), and unless loss_scale is 0 the
 * gradient of loss_scale x that share with respect to h SET into dh (and added into the head's
 * and the norm's). */
static double head_fwd_bwd(tr_ds *m, const float *h, const float *w, float *dw, const int32_t *tg, const float *tw, float *logp,
                           int T, int n_targets, float loss_scale, float *dh, float *hn, float *inv, float *logits, float *dhn,
                           float *share) {
    const tr_ds_cfg *c = &m->c;
    int d = c->d, V = c->vocab;
    size_t rowb = sizeof(float) * (size_t)d;
    tr_rmsnorm_fwd(hn, inv, h, w, T, d, c->eps);
    /* The head on the rows with a target only (a prompt's rows in SFT and RL cost nothing):
     * those rows of hn moved to its front (j <= t, so in place), their logits, loss and
     * gradient, then the gradient's rows moved back where they belong. Each row's logits and
     * each weight gradient's sum are the same bits as over all rows. */
    int nb = 0;
    for (int t = 0; t < T; t++) nb += tg[t] >= 0;
    int32_t *idx = NULL, *tgc = (int32_t *)tg;
    float *twc = (float *)tw, *lpc = logp;
    if (nb < T) {
        idx = malloc(sizeof(int32_t) * 2 * (size_t)(nb ? nb : 1) + sizeof(float) * 2 * (size_t)(nb ? nb : 1));
        if (!idx) return NAN; /* out of memory for 3 words a row: the loss says so */
        tgc = idx + nb, twc = (float *)(tgc + nb), lpc = twc + nb;
        for (int t = 0, j = 0; t < T; t++) {
            if (logp) logp[t] = 0;
            if (tg[t] < 0) continue;
            idx[j] = t, tgc[j] = tg[t], twc[j] = tw ? tw[t] : 0;
            if (j != t) memcpy(hn + (size_t)j * d, hn + (size_t)t * d, rowb);
            j++;
        }
    }
    tr_matmul_fwd(logits, hn, m->head, NULL, nb, d, V);
    double loss = tr_seq_loss(logits, logp ? lpc : NULL, tgc, tw ? twc : NULL, nb, V, n_targets, loss_scale, share);
    for (int j = 0; idx && logp && j < nb; j++) logp[idx[j]] = lpc[j];
    if (loss_scale != 0) {
        memset(dhn, 0, sizeof(float) * (size_t)T * d);
        tr_matmul_bwd(dhn, m->d_head, NULL, logits, hn, m->head, nb, d, V);
        for (int j = nb - 1; idx && j >= 0; j--) /* back to row idx[j] >= j, the rest zero */
            if (idx[j] != j) memcpy(dhn + (size_t)idx[j] * d, dhn + (size_t)j * d, rowb), memset(dhn + (size_t)j * d, 0, rowb);
        memset(dh, 0, sizeof(float) * (size_t)T * d);
        tr_rmsnorm_bwd(dh, dw, dhn, h, w, inv, T, d);
    }
    free(idx);
    return loss;
}

double tr_ds_step(tr_ds *m, const int32_t *ids, const int32_t *targets, const float *weights, float *logp, int B, int T,
                  float loss_scale, whale_err *err) {
    const tr_ds_cfg *c = &m->c;
    int d = c->d, H = c->n_head, V = c->vocab, NL = c->n_layer, n = c->nope, r = c->rope, qk = n + r, vd = c->vdim;
    int kvl = c->kv_lora, K = c->n_used > 0 ? c->n_used : 1, F = c->moe_ff, D = c->n_mtp;
    size_t Tz = (size_t)T;
    int n_targets, mtp_targets[17] = {0};
    m->mtp_loss = 0;
    if (tr_batch_check(ids, targets, B * T, V, &n_targets, err)) return err->code;
    for (int k = 1; k <= D; k++) /* depth k: rows i < T - k, target t_{i+k+1} = targets[i + k] */
        for (int b = 0; b < B; b++)
            for (int i = 0; i + k < T; i++) mtp_targets[k] += targets[(size_t)b * T + i + k] >= 0;
    size_t widest = (size_t)(d > H * qk ? d : H * qk);
    if ((size_t)V > widest) widest = (size_t)V;
    size_t ff = (size_t)(c->d_ff > F * c->n_shared ? c->d_ff : F * c->n_shared);
    size_t scratch_n = Tz * K * (1 + 2 * (size_t)d + 3 * (size_t)F + (size_t)d) + Tz * ff * 3 + Tz * (size_t)(c->n_expert + 1) + 64;
    size_t tail = Tz * (size_t)d * 3 + Tz + Tz * (size_t)V + Tz * widest * 4 + Tz * (size_t)(kvl + r) * 2 + Tz * (size_t)kvl * 2 +
                  Tz * (size_t)H * (n + vd) + Tz * ff + scratch_n + Tz * (size_t)d * 3;
    /* recompute: two layers' worth of activations (one of each kind) and every layer's input */
    int RC = m->recompute != 0, n_full = RC ? 2 + D : NL + D;
    arena ar = {.cap = layer_floats(c, T) * (size_t)n_full + mtp_floats(c, T) * (size_t)D + tail +
                       (RC ? Tz * (size_t)d * (size_t)(NL + 1) : 0)};
    ar.p = malloc(sizeof(float) * ar.cap);
    acts *A = calloc((size_t)(NL + D), sizeof *A), R[2];
    mtp_acts *X = calloc((size_t)D + 1, sizeof *X);
    int32_t *pos = malloc(sizeof(int32_t) * Tz);
    float **in = calloc((size_t)NL + 1, sizeof *in); /* layer l's input (NL: the last one's output) */
    if (!ar.p || !A || !X || !pos || !in) {
        free(ar.p), free(A), free(X), free(pos), free(in);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the activations of %d x %d tokens", B, T);
    }
    for (int t = 0; t < T; t++) pos[t] = t;
    for (int l = RC ? NL : 0; l < NL + D; l++) lay_acts(&A[l], &ar, c, T, is_moe(c, l));
    if (RC) { /* R[0] for the dense layers, R[1] for the MoE ones; the layers' inputs apart */
        lay_acts(&R[0], &ar, c, T, 0), lay_acts(&R[1], &ar, c, T, c->n_expert > 0);
        for (int l = 0; l <= NL; l++) in[l] = take(&ar, Tz * d);
        for (int l = 0; l < NL; l++) A[l] = R[is_moe(c, l)];
    } else {
        for (int l = 0; l < NL; l++) in[l] = A[l].x;
    }
    for (int k = 1; k <= D; k++) lay_mtp(&X[k], &ar, c, T);
    float *xf = RC ? in[NL] : take(&ar, Tz * d), *xfn = take(&ar, Tz * d), *invf = take(&ar, Tz), *logits = take(&ar, Tz * V);
    float *dx = take(&ar, Tz * d), *dcat = take(&ar, Tz * d * 2), *dpart = take(&ar, Tz * d);
    bufs s = {.b1 = take(&ar, Tz * widest), .b2 = take(&ar, Tz * widest)};
    s.b3 = take(&ar, Tz * widest), s.b4 = take(&ar, Tz * widest);
    s.dckv = take(&ar, Tz * (kvl + r)), s.dcb = take(&ar, Tz * kvl), s.dcn = take(&ar, Tz * kvl);
    s.dkv = take(&ar, Tz * H * (n + vd)), take(&ar, Tz * (kvl + r)), s.ffb = take(&ar, Tz * ff), s.scratch = take(&ar, scratch_n);
    double total = 0, mtp = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *id = ids + (size_t)b * T, *tg = targets + (size_t)b * T;
        tr_embed_fwd(in[0], m->embed, id, T, d);
        for (int l = 0; l < NL; l++) {
            A[l].x = in[l];
            block_fwd(m, l, &A[l], pos, T, l + 1 < NL ? in[l + 1] : xf, &s, loss_scale != 0);
        }
        float w; /* the loss: a mean over every target of the batch */
        size_t row = (size_t)b * T;
        total += head_fwd_bwd(m, xf, m->out_norm, m->d_out_norm, tg, weights ? weights + row : NULL, logp ? logp + row : NULL, T,
                              n_targets, loss_scale, dx, xfn, invf, logits, s.b1, &w);
        /* MTP: module k over rows i < T - k; its head's gradient kept in X[k].dout */
        for (int k = 1; k <= D && T - k > 0; k++) {
            mtp_acts *x = &X[k];
            const tr_ds_mtp *P = &m->mtp[k - 1];
            int Tk = T - k, l = NL + k - 1;
            const float *h = k == 1 ? xf : X[k - 1].out;
            tr_embed_fwd(x->e, m->embed, id + k, Tk, d);
            tr_rmsnorm_fwd(x->en, x->inv_e, x->e, P->enorm, Tk, d, c->eps);
            tr_rmsnorm_fwd(x->hn, x->inv_h, h, P->hnorm, Tk, d, c->eps);
            for (int i = 0; i < Tk; i++) {
                memcpy(x->cat + (size_t)i * 2 * d, x->en + (size_t)i * d, sizeof(float) * d);
                memcpy(x->cat + (size_t)i * 2 * d + d, x->hn + (size_t)i * d, sizeof(float) * d);
            }
            tr_matmul_fwd(A[l].x, x->cat, P->eh_proj, NULL, Tk, 2 * d, d);
            block_fwd(m, l, &A[l], pos, Tk, x->out, &s, loss_scale != 0);
            float wk;
            float ls = D ? loss_scale * c->mtp_weight / (float)D : 0;
            mtp += head_fwd_bwd(m, x->out, P->head_norm, m->dmtp[k - 1].head_norm, tg + k, NULL, NULL, Tk, mtp_targets[k], ls,
                                x->dout, xfn, invf, logits, s.b1, &wk);
        }
        if (loss_scale == 0) continue;
        /* backward: the MTP modules last to first, each adding into the previous depth's gradient
         * (none at all when their loss weighs nothing: their heads then wrote no gradient) */
        for (int k = c->mtp_weight != 0 ? (D < T - 1 ? D : T - 1) : 0; k >= 1; k--) {
            mtp_acts *x = &X[k];
            const tr_ds_mtp *P = &m->mtp[k - 1];
            tr_ds_mtp *DP = &m->dmtp[k - 1];
            int Tk = T - k, l = NL + k - 1;
            const float *h = k == 1 ? xf : X[k - 1].out;
            float *dh = k == 1 ? dx : X[k - 1].dout;
            block_bwd(m, l, &A[l], pos, Tk, x->dout, &s, w * loss_scale);
            memset(dcat, 0, sizeof(float) * (size_t)Tk * 2 * d);
            tr_matmul_bwd(dcat, DP->eh_proj, NULL, x->dout, x->cat, P->eh_proj, Tk, 2 * d, d);
            for (int i = 0; i < Tk; i++) memcpy(dpart + (size_t)i * d, dcat + (size_t)i * 2 * d, sizeof(float) * d);
            memset(s.b1, 0, sizeof(float) * (size_t)Tk * d);
            tr_rmsnorm_bwd(s.b1, DP->enorm, dpart, x->e, P->enorm, x->inv_e, Tk, d);
            tr_embed_bwd(m->d_embed, s.b1, id + k, Tk, d);
            for (int i = 0; i < Tk; i++) memcpy(dpart + (size_t)i * d, dcat + (size_t)i * 2 * d + d, sizeof(float) * d);
            tr_rmsnorm_bwd(dh, DP->hnorm, dpart, h, P->hnorm, x->inv_h, Tk, d);
        }
        for (int l = NL - 1; l >= 0; l--) {
            if (RC) { /* this layer's activations again, from its kept input (its output unused) */
                A[l].x = in[l];
                block_fwd(m, l, &A[l], pos, T, dpart, &s, 0);
            }
            block_bwd(m, l, &A[l], pos, T, dx, &s, w * loss_scale);
        }
        tr_embed_bwd(m->d_embed, dx, id, T, d);
    }
    m->mtp_loss = D ? mtp / D : 0;
    free(ar.p), free(A), free(X), free(pos), free(in);
    return total;
}

char *tr_ds_config_json(const tr_ds *m) {
    const tr_ds_cfg *c = &m->c;
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("DeepseekV3ForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "deepseek_v3");
#define N(k, v) cJSON_AddNumberToObject(j, k, v)
    N("hidden_size", c->d), N("intermediate_size", c->d_ff), N("moe_intermediate_size", c->moe_ff);
    N("num_hidden_layers", c->n_layer), N("num_attention_heads", c->n_head), N("num_key_value_heads", c->n_head);
    N("vocab_size", c->vocab), N("kv_lora_rank", c->kv_lora), N("qk_nope_head_dim", c->nope), N("qk_rope_head_dim", c->rope);
    N("v_head_dim", c->vdim), N("n_routed_experts", c->n_expert), N("num_experts_per_tok", c->n_used);
    N("n_shared_experts", c->n_shared), N("n_group", c->n_group > 0 ? c->n_group : 1), N("topk_group", c->topk_group > 0 ? c->topk_group : 1);
    N("routed_scaling_factor", c->route_scale), N("first_k_dense_replace", c->first_dense);
    int orig = c->rope_orig_ctx > 0 ? c->rope_orig_ctx : 4096;
    N("max_position_embeddings", c->rope_factor > 1 ? (int)(c->rope_factor * orig) : 4096);
    N("rms_norm_eps", c->eps), N("rope_theta", c->rope_theta);
    N("num_nextn_predict_layers", c->n_mtp);
    if (c->n_mtp) N("mtp_loss_weight", c->mtp_weight); /* whale train's own: --from keeps it */
#undef N
    if (c->rope_factor > 1) {
        cJSON *rs = cJSON_AddObjectToObject(j, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "yarn");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", orig);
        cJSON_AddNumberToObject(rs, "beta_fast", c->yarn_beta_fast > 0 ? c->yarn_beta_fast : 32);
        cJSON_AddNumberToObject(rs, "beta_slow", c->yarn_beta_slow > 0 ? c->yarn_beta_slow : 1);
        cJSON_AddNumberToObject(rs, "mscale", c->yarn_mscale);
        cJSON_AddNumberToObject(rs, "mscale_all_dim", c->yarn_mscale_all_dim);
    }
    if (c->q_lora) cJSON_AddNumberToObject(j, "q_lora_rank", c->q_lora);
    else cJSON_AddNullToObject(j, "q_lora_rank");
    cJSON_AddBoolToObject(j, "norm_topk_prob", c->norm_topk);
    cJSON_AddStringToObject(j, "scoring_func", c->sigmoid ? "sigmoid" : "softmax");
    cJSON_AddStringToObject(j, "topk_method", "noaux_tc");
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 0);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}
