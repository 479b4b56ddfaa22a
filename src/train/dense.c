/* dense.c — training a dense decoder (see dense.h). */
#include "train/dense.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"
#include "train/ops.h"

static const char *const proj_name[TR_N_PROJ] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

const char *tr_lora_target_name(int proj) { return proj >= 0 && proj < TR_N_PROJ ? proj_name[proj] : NULL; }

int tr_lora_targets_parse(const char *s, unsigned *out, whale_err *err) {
    *out = 0;
    if (!strcmp(s, "all")) return *out = TR_LORA_ALL, 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        int found = -1;
        for (int p = 0; p < TR_N_PROJ; p++)
            if (strlen(proj_name[p]) == n && !strncmp(s, proj_name[p], n)) found = p;
        if (found < 0)
            return err_set(err, WHALE_E_ARG, "unknown LoRA target '%.*s' (known: q_proj, k_proj, v_proj, o_proj, gate_proj, "
                           "up_proj, down_proj, or all)", (int)n, s);
        *out |= 1u << found;
        s += n + (s[n] == ',');
    }
    if (!*out) return err_set(err, WHALE_E_ARG, "no LoRA targets given");
    return 0;
}

/* The projections' (in, out) sizes. */
static void proj_shape(const tr_dense_cfg *c, int p, int *in, int *out) {
    int qd = c->n_head * c->head_dim, kvd = c->n_kv * c->head_dim;
    switch (p) {
    case TR_Q: *in = c->d, *out = qd; break;
    case TR_K: case TR_V: *in = c->d, *out = kvd; break;
    case TR_O: *in = qd, *out = c->d; break;
    case TR_GATE: case TR_UP: *in = c->d, *out = c->d_ff; break;
    default: *in = c->d_ff, *out = c->d; break;
    }
}

/* One pass of the layout (see params.h). With LoRA the model's tensors are frozen and their
 * gradient views NULL (the backward pass then skips them); the adapters come last. */
static void layout(tr_dense *m) {
    const tr_dense_cfg *c = &m->c;
    char nm[160];
    int qd = c->n_head * c->head_dim, kvd = c->n_kv * c->head_dim, lora = c->lora.rank > 0;
    tr_params_begin(&m->P);
    tr_param *p = tr_params_add(&m->P, "model.embed_tokens.weight", c->vocab, c->d, 1);
    m->embed = p->w, m->dembed = lora ? NULL : p->g;
    p->frozen = lora;
    for (int l = 0; l < c->n_layer; l++) {
        tr_layer *L = &m->L[l], *dL = &m->dL[l];
#define P(field, suffix, r, cc, dec)                                                              \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                  \
        tr_param *q_ = tr_params_add(&m->P, nm, r, cc, dec);                                                \
        L->field = q_->w, dL->field = lora ? NULL : q_->g;                                         \
        q_->frozen = lora;                                                                         \
    } while (0)
        P(attn_norm, "input_layernorm.weight", c->d, 1, 0);
        P(wq, "self_attn.q_proj.weight", qd, c->d, 1);
        if (c->qkv_bias) P(bq, "self_attn.q_proj.bias", qd, 1, 0);
        P(wk, "self_attn.k_proj.weight", kvd, c->d, 1);
        if (c->qkv_bias) P(bk, "self_attn.k_proj.bias", kvd, 1, 0);
        P(wv, "self_attn.v_proj.weight", kvd, c->d, 1);
        if (c->qkv_bias) P(bv, "self_attn.v_proj.bias", kvd, 1, 0);
        P(wo, "self_attn.o_proj.weight", c->d, qd, 1);
        P(ffn_norm, "post_attention_layernorm.weight", c->d, 1, 0);
        P(wg, "mlp.gate_proj.weight", c->d_ff, c->d, 1);
        P(wu, "mlp.up_proj.weight", c->d_ff, c->d, 1);
        P(wd, "mlp.down_proj.weight", c->d, c->d_ff, 1);
#undef P
    }
    p = tr_params_add(&m->P, "model.norm.weight", c->d, 1, 0);
    m->out_norm = p->w, m->dout_norm = lora ? NULL : p->g;
    p->frozen = lora;
    if (c->tied) {
        m->head = m->embed, m->dhead = m->dembed;
    } else {
        p = tr_params_add(&m->P, "lm_head.weight", c->vocab, c->d, 1);
        m->head = p->w, m->dhead = lora ? NULL : p->g;
        p->frozen = lora;
    }
    for (int l = 0; lora && l < c->n_layer; l++)
        for (int j = 0; j < TR_N_PROJ; j++) {
            if (!(c->lora.targets & (1u << j))) continue;
            int in, out;
            proj_shape(c, j, &in, &out);
            const char *mod = j <= TR_O ? "self_attn" : "mlp";
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.%s.lora_A.weight", l, mod, proj_name[j]);
            p = tr_params_add(&m->P, nm, c->lora.rank, in, 1);
            m->L[l].lora[j].a = p->w, m->dL[l].lora[j].a = p->g;
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.%s.lora_B.weight", l, mod, proj_name[j]);
            p = tr_params_add(&m->P, nm, out, c->lora.rank, 1);
            m->L[l].lora[j].b = p->w, m->dL[l].lora[j].b = p->g;
        }
}

int tr_dense_init(tr_dense *m, const tr_dense_cfg *c, whale_err *err) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    if (c->n_layer < 1 || c->d < 1 || c->n_head < 1 || c->n_kv < 1 || c->n_head % c->n_kv || c->head_dim < 2 ||
        c->head_dim % 2 || c->d_ff < 1 || c->vocab < 2)
        return err_set(err, WHALE_E_ARG, "bad model shape");
    if (c->lora.rank < 0 || c->lora.rank > TR_LORA_MAX_RANK || (c->lora.rank && !(c->lora.alpha > 0)))
        return err_set(err, WHALE_E_ARG, "LoRA rank %d / alpha %g: the rank must be 1..%d and alpha positive", c->lora.rank,
                       (double)c->lora.alpha, TR_LORA_MAX_RANK);
    if (c->lora.rank && !c->lora.targets) m->c.lora.targets = TR_LORA_ALL;
    m->lora_scale = c->lora.rank ? c->lora.alpha / (float)c->lora.rank : 0.0f;
    m->L = calloc((size_t)c->n_layer, sizeof *m->L);
    m->dL = calloc((size_t)c->n_layer, sizeof *m->dL);
    if (!m->L || !m->dL) return err_set(err, WHALE_E_NOMEM, "out of memory");
    layout(m); /* count */
    int rc = tr_params_alloc(&m->P, err);
    if (rc) {
        tr_dense_free(m);
        return rc;
    }
    layout(m); /* place */
    return 0;
}

void tr_dense_free(tr_dense *m) {
    tr_params_free(&m->P);
    free(m->L), free(m->dL);
    memset(m, 0, sizeof *m);
}

/* What the backward pass needs of one layer, for one sequence of T tokens. */
typedef struct acts {
    float *x, *xn1, *inv1, *q, *k, *v, *P, *att, *h1, *xn2, *inv2, *g, *u, *a;
    float *z[TR_N_PROJ]; /* LoRA: s A x of each adapted projection, T x rank */
} acts;

/* Projection j of layer L: Y = X W^T + b, plus its adapter's s B A X when it has one. */
static void proj_fwd(const tr_dense *m, const tr_layer *L, int j, acts *a, float *Y, const float *X, const float *W,
                     const float *b, int T, int K, int N) {
    tr_matmul_fwd(Y, X, W, b, T, K, N);
    if (L->lora[j].a) tr_lora_fwd(Y, a->z[j], X, L->lora[j].a, L->lora[j].b, m->lora_scale, T, K, N, m->c.lora.rank);
}

/* Its backward: dX += dY W (+ the adapter's share), dW and db when trained (not NULL), the
 * adapter's dA and dB; dz: T x rank scratch. */
static void proj_bwd(const tr_dense *m, int l, int j, const acts *a, float *dX, float *dW, float *db, const float *dY,
                     const float *X, const float *W, float *dz, int T, int K, int N) {
    const tr_adapter *A = &m->L[l].lora[j], *dA = &m->dL[l].lora[j];
    tr_matmul_bwd(dX, dW, db, dY, X, W, T, K, N);
    if (A->a) tr_lora_bwd(dX, dA->a, dA->b, dz, dY, X, a->z[j], A->a, A->b, m->lora_scale, T, K, N, m->c.lora.rank);
}

/* Layer l over a->x (T rows at positions pos): its output into next (set); tmp: T x d scratch. */
static void layer_fwd(const tr_dense *m, int l, acts *a, const int32_t *pos, int T, float *next, float *tmp) {
    const tr_dense_cfg *c = &m->c;
    const tr_layer *L = &m->L[l];
    int d = c->d, H = c->n_head, Hk = c->n_kv, hd = c->head_dim, F = c->d_ff, qd = H * hd, kvd = Hk * hd;
    size_t Td = (size_t)T * d;
    float scale = 1.0f / sqrtf((float)hd);
    tr_rmsnorm_fwd(a->xn1, a->inv1, a->x, L->attn_norm, T, d, c->eps);
    proj_fwd(m, L, TR_Q, a, a->q, a->xn1, L->wq, L->bq, T, d, qd);
    proj_fwd(m, L, TR_K, a, a->k, a->xn1, L->wk, L->bk, T, d, kvd);
    proj_fwd(m, L, TR_V, a, a->v, a->xn1, L->wv, L->bv, T, d, kvd);
    tr_rope(a->q, pos, T, H, hd, hd, c->rope_theta, NULL, 1.0f, 1, 0);
    tr_rope(a->k, pos, T, Hk, hd, hd, c->rope_theta, NULL, 1.0f, 1, 0);
    tr_attn_fwd(a->att, a->P, a->q, a->k, a->v, T, H, Hk, hd, hd, scale);
    proj_fwd(m, L, TR_O, a, tmp, a->att, L->wo, NULL, T, qd, d);
    for (size_t i = 0; i < Td; i++) a->h1[i] = a->x[i] + tmp[i];
    tr_rmsnorm_fwd(a->xn2, a->inv2, a->h1, L->ffn_norm, T, d, c->eps);
    proj_fwd(m, L, TR_GATE, a, a->g, a->xn2, L->wg, NULL, T, d, F);
    proj_fwd(m, L, TR_UP, a, a->u, a->xn2, L->wu, NULL, T, d, F);
    tr_swiglu_fwd(a->a, a->g, a->u, (size_t)T * F);
    proj_fwd(m, L, TR_DOWN, a, tmp, a->a, L->wd, NULL, T, F, d);
    for (size_t i = 0; i < Td; i++) next[i] = a->h1[i] + tmp[i];
}

double tr_dense_step(tr_dense *m, const int32_t *ids, const int32_t *targets, const float *weights, float *logp, int B, int T,
                     float loss_scale, whale_err *err) {
    const tr_dense_cfg *c = &m->c;
    int d = c->d, H = c->n_head, Hk = c->n_kv, hd = c->head_dim, F = c->d_ff, V = c->vocab, NL = c->n_layer;
    int qd = H * hd, kvd = Hk * hd;
    size_t Td = (size_t)T * d;
    int n_targets;
    if (tr_batch_check(ids, targets, B * T, V, &n_targets, err)) return err->code;
    /* per layer: x, xn1, q, k, v, att, h1, xn2 (Td or T*qd...), g, u, a (T*F), P (H*T*T), inv1, inv2 (T) */
    int R = c->lora.rank;
    size_t per = Td * 4 + (size_t)T * qd * 2 + (size_t)T * kvd * 2 + (size_t)T * F * 3 + (size_t)H * T * T + 2 * (size_t)T +
                 (size_t)T * R * TR_N_PROJ;
    size_t tail = Td * 2 + T + (size_t)T * V + Td * 2 + (size_t)T * (qd > F ? qd : F) * 2 + (size_t)T * kvd * 2 +
                  (size_t)T * F * 2 + Td * 2 + (size_t)T * R + 2 * (size_t)T;
    /* recompute: one layer's activations shared by all, and every layer's input apart */
    int RC = m->recompute != 0, n_full = RC ? 1 : NL;
    float *mem = malloc(sizeof(float) * (per * n_full + tail + (RC ? Td * (size_t)(NL + 1) : 0)));
    acts *A = malloc(sizeof *A * (size_t)NL);
    int32_t *pos = malloc(sizeof(int32_t) * 3 * (size_t)T); /* positions, then the target rows' index and id */
    float **in = malloc(sizeof *in * (size_t)(NL + 1)); /* layer l's input (NL: the last one's output) */
    if (!mem || !A || !pos || !in) {
        free(mem), free(A), free(pos), free(in);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the activations of %d x %d tokens", B, T);
    }
    for (int t = 0; t < T; t++) pos[t] = t;
    int32_t *idx = pos + T, *tgc = pos + 2 * T;
    float *at = mem;
#define TAKE(n) (at += (n), at - (n))
    for (int l = 0; l < n_full; l++) {
        acts *a = &A[l];
        a->x = TAKE(Td), a->xn1 = TAKE(Td), a->inv1 = TAKE((size_t)T), a->q = TAKE((size_t)T * qd), a->k = TAKE((size_t)T * kvd);
        a->v = TAKE((size_t)T * kvd), a->P = TAKE((size_t)H * T * T), a->att = TAKE((size_t)T * qd), a->h1 = TAKE(Td);
        a->xn2 = TAKE(Td), a->inv2 = TAKE((size_t)T), a->g = TAKE((size_t)T * F), a->u = TAKE((size_t)T * F), a->a = TAKE((size_t)T * F);
        for (int j = 0; j < TR_N_PROJ; j++) a->z[j] = TAKE((size_t)T * R);
    }
    for (int l = 0; l <= NL; l++) in[l] = RC ? TAKE(Td) : l < NL ? A[l].x : NULL;
    for (int l = 1; RC && l < NL; l++) A[l] = A[0];
    float *xf = RC ? in[NL] : TAKE(Td), *xfn = TAKE(Td), *invf = TAKE((size_t)T), *logits = TAKE((size_t)T * V);
    float *dx = TAKE(Td), *dtmp = TAKE(Td), *dbig1 = TAKE((size_t)T * (qd > F ? qd : F)), *dbig2 = TAKE((size_t)T * (qd > F ? qd : F));
    float *dk = TAKE((size_t)T * kvd), *dv = TAKE((size_t)T * kvd), *dg = TAKE((size_t)T * F), *du = TAKE((size_t)T * F);
    float *dxn = TAKE(Td), *tmp = TAKE(Td), *dz = TAKE((size_t)T * R), *twc = TAKE((size_t)T), *lpc = TAKE((size_t)T);
#undef TAKE
    float scale = 1.0f / sqrtf((float)hd);
    double total = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *id = ids + (size_t)b * T, *tg = targets + (size_t)b * T;
        /* forward */
        tr_embed_fwd(in[0], m->embed, id, T, d);
        for (int l = 0; l < NL; l++) {
            A[l].x = in[l];
            layer_fwd(m, l, &A[l], pos, T, l + 1 < NL ? in[l + 1] : xf, tmp);
        }
        tr_rmsnorm_fwd(xfn, invf, xf, m->out_norm, T, d, c->eps);
        /* The head and the loss on the rows with a target only (a prompt's rows in SFT and RL
         * cost nothing there): gathered into xc (dtmp, free until the layers' backward). Each
         * row's logits and each weight gradient's sum are the same bits as over all rows. */
        float w, *xc = dtmp; /* the loss: a mean over every target of the batch, or the weighted sum */
        size_t row = (size_t)b * T;
        int nb = 0;
        for (int t = 0; t < T; t++) {
            if (logp) logp[row + t] = 0;
            if (tg[t] < 0) continue;
            idx[nb] = t, tgc[nb] = tg[t], twc[nb] = weights ? weights[row + t] : 0;
            memcpy(xc + (size_t)nb * d, xfn + (size_t)t * d, sizeof(float) * (size_t)d);
            nb++;
        }
        tr_matmul_fwd(logits, xc, m->head, NULL, nb, d, V);
        total += tr_seq_loss(logits, logp ? lpc : NULL, tgc, weights ? twc : NULL, nb, V, n_targets, loss_scale, &w);
        for (int j = 0; logp && j < nb; j++) logp[row + idx[j]] = lpc[j];
        if (loss_scale == 0) continue; /* forward only (validation) */
        /* backward: logits now hold dL/dlogits of the nb rows */
        memset(tmp, 0, sizeof(float) * (size_t)nb * d);
        tr_matmul_bwd(tmp, m->dhead, NULL, logits, xc, m->head, nb, d, V);
        memset(dxn, 0, sizeof(float) * Td);
        for (int j = 0; j < nb; j++) memcpy(dxn + (size_t)idx[j] * d, tmp + (size_t)j * d, sizeof(float) * (size_t)d);
        memset(dx, 0, sizeof(float) * Td);
        tr_rmsnorm_bwd(dx, m->dout_norm, dxn, xf, m->out_norm, invf, T, d);
        for (int l = NL - 1; l >= 0; l--) {
            acts *a = &A[l];
            const tr_layer *L = &m->L[l];
            tr_layer *G = &m->dL[l];
            if (RC) { /* this layer's activations again, from its kept input (its output unused) */
                a->x = in[l];
                layer_fwd(m, l, a, pos, T, dtmp, tmp);
            }
            /* next = h1 + down(swiglu(gate(xn2), up(xn2))); dx holds dL/dnext */
            memset(dbig1, 0, sizeof(float) * (size_t)T * F);
            proj_bwd(m, l, TR_DOWN, a, dbig1, G->wd, NULL, dx, a->a, L->wd, dz, T, F, d);
            memset(dg, 0, sizeof(float) * (size_t)T * F);
            memset(du, 0, sizeof(float) * (size_t)T * F);
            tr_swiglu_bwd(dg, du, dbig1, a->g, a->u, (size_t)T * F);
            memset(dxn, 0, sizeof(float) * Td);
            proj_bwd(m, l, TR_GATE, a, dxn, G->wg, NULL, dg, a->xn2, L->wg, dz, T, d, F);
            proj_bwd(m, l, TR_UP, a, dxn, G->wu, NULL, du, a->xn2, L->wu, dz, T, d, F);
            tr_rmsnorm_bwd(dx, G->ffn_norm, dxn, a->h1, L->ffn_norm, a->inv2, T, d); /* dx is now dL/dh1 */
            /* h1 = x + o(attn(...)) */
            memset(dbig1, 0, sizeof(float) * (size_t)T * qd);
            proj_bwd(m, l, TR_O, a, dbig1, G->wo, NULL, dx, a->att, L->wo, dz, T, qd, d);
            memset(dbig2, 0, sizeof(float) * (size_t)T * qd);
            memset(dk, 0, sizeof(float) * (size_t)T * kvd);
            memset(dv, 0, sizeof(float) * (size_t)T * kvd);
            tr_attn_bwd(dbig2, dk, dv, dbig1, a->P, a->q, a->k, a->v, T, H, Hk, hd, hd, scale);
            tr_rope(dbig2, pos, T, H, hd, hd, c->rope_theta, NULL, 1.0f, 1, 1);
            tr_rope(dk, pos, T, Hk, hd, hd, c->rope_theta, NULL, 1.0f, 1, 1);
            memset(dxn, 0, sizeof(float) * Td);
            proj_bwd(m, l, TR_Q, a, dxn, G->wq, G->bq, dbig2, a->xn1, L->wq, dz, T, d, qd);
            proj_bwd(m, l, TR_K, a, dxn, G->wk, G->bk, dk, a->xn1, L->wk, dz, T, d, kvd);
            proj_bwd(m, l, TR_V, a, dxn, G->wv, G->bv, dv, a->xn1, L->wv, dz, T, d, kvd);
            tr_rmsnorm_bwd(dx, G->attn_norm, dxn, a->x, L->attn_norm, a->inv1, T, d); /* dL/dx */
        }
        if (m->dembed) tr_embed_bwd(m->dembed, dx, id, T, d);
    }
    free(mem), free(A), free(pos), free(in);
    return total;
}

char *tr_dense_config_json(const tr_dense *m) {
    const tr_dense_cfg *c = &m->c;
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen2ForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "qwen2");
    cJSON_AddNumberToObject(j, "hidden_size", c->d);
    cJSON_AddNumberToObject(j, "intermediate_size", c->d_ff);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "max_position_embeddings", 4096);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->eps);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    cJSON_AddBoolToObject(j, "use_sliding_window", 0);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}
