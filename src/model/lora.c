/* lora.c — LoRA adapters at inference: a PEFT adapter (formats/peft.c reads and validates the
 * files) mapped onto the dense layers' matrices, and the update y += scale * B (A x) the dense
 * forward adds after each base product.
 *
 * Batch invariance: A and B are kept as F32 matrices and multiplied by the float kernels
 * (kernels/cpu/fdot*.c), whose arithmetic per (row, token) is fixed whatever the batch, tile or
 * ISA level, so a request's output is the same bits alone or batched, as without an adapter.
 * The base weights stay as they are in the file (quantized or not).
 *
 * Owns: the mapping of Hugging Face module names onto dense_layer's matrices (Qwen2, Llama:
 * q/k/v/o_proj, gate/up/down_proj), Llama's q/k row order in GGUF files, the adapter's F32
 * copies. Does not own: the forward pass (dense.c calls lora_apply), the file formats (peft.c).
 * DeepSeek models (MLA projections, routed experts) are refused for now. Below dense.c, beside
 * wmat.c: it calls nothing above it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "formats/peft.h"
#include "model/model_impl.h"

/* Hugging Face's module names for the dense layer's matrices, in DENSE_* order. */
static const char *const hf_mats[DENSE_N_MAT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

static const wmat *dense_mat(const dense_layer *L, int k) {
    const wmat *w[DENSE_N_MAT] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return w[k];
}

/* Which matrix a target_modules entry names (its last component, or the whole path), or -1. */
static int mat_of_target(const char *t) {
    const char *dot = strrchr(t, '.');
    const char *last = dot ? dot + 1 : t;
    for (int k = 0; k < DENSE_N_MAT; k++)
        if (!strcmp(strchr(hf_mats[k], '.') + 1, last)) return k;
    return -1;
}

/* "model.layers.<l>.<mat>" -> layer and matrix: 0, or -1 when the name is not of that form. */
static int parse_module(const char *name, int64_t *layer, int *mat) {
    static const char pre[] = "model.layers.";
    if (strncmp(name, pre, sizeof pre - 1)) return -1;
    const char *p = name + sizeof pre - 1;
    char *end;
    if (*p < '0' || *p > '9') return -1;
    long long l = strtoll(p, &end, 10);
    if (*end != '.' || l < 0) return -1;
    for (int k = 0; k < DENSE_N_MAT; k++)
        if (!strcmp(end + 1, hf_mats[k])) {
            *layer = l;
            *mat = k;
            return 0;
        }
    return -1;
}

void lora_free(model *m) {
    for (int i = 0; i < m->n_lora; i++) {
        free((void *)m->lora[i].a.data);
        free((void *)m->lora[i].b.data);
    }
    free(m->lora);
    free(m->lora_path);
    m->lora = NULL;
    m->lora_path = NULL;
    m->n_lora = 0;
    m->lora_r = 0;
    if (m->layers)
        for (int64_t l = 0; l < m->hp.n_layer; l++)
            memset(m->layers[l].lora, 0, sizeof m->layers[l].lora);
}

/* Check every module of a against the model and fill m->lora; a's matrices move over. */
static int map_adapter(model *m, peft_adapter *a, whale_err *err) {
    const model_hparams *hp = &m->hp;
    for (int i = 0; i < a->n_targets; i++)
        if (mat_of_target(a->targets[i]) < 0)
            return err_set(err, WHALE_E_UNSUPPORTED,
                           "target module '%s' is not one Whale applies LoRA to "
                           "(q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           a->targets[i]);
    m->lora = calloc((size_t)a->n_mods, sizeof *m->lora);
    if (!m->lora) return err_set(err, WHALE_E_NOMEM, "out of memory");
    /* GGUF Llama files hold q and k with each head's rows reordered for adjacent-pair rotation
     * (the converter's permutation); B's rows follow the same order. */
    int permute = m->is_gguf && hp->arch == MODEL_ARCH_LLAMA;
    for (int i = 0; i < a->n_mods; i++) {
        peft_module *pm = &a->mods[i];
        int64_t l;
        int k;
        if (parse_module(pm->name, &l, &k))
            return err_set(
                err, WHALE_E_UNSUPPORTED,
                "module '%s' is not one Whale applies LoRA to "
                "(model.layers.N.self_attn.{q,k,v,o}_proj, model.layers.N.mlp.{gate,up,down}_proj)",
                pm->name);
        if (l >= hp->n_layer)
            return err_set(err, WHALE_E_FORMAT, "module '%s': the model has %lld layers", pm->name,
                           (long long)hp->n_layer);
        dense_layer *L = &m->layers[l];
        const wmat *w = dense_mat(L, k);
        if (pm->n_in != w->n_in || pm->n_out != w->n_out)
            return err_set(err, WHALE_E_FORMAT,
                           "module '%s': the adapter is for a [%lld x %lld] matrix, the model's is "
                           "[%lld x %lld] (an adapter for another model?)",
                           pm->name, (long long)pm->n_out, (long long)pm->n_in, (long long)w->n_out,
                           (long long)w->n_in);
        if (L->lora[k]) return err_set(err, WHALE_E_FORMAT, "module '%s' appears twice", pm->name);
        int64_t r = a->r, hd = hp->head_dim;
        float *b = malloc((size_t)(pm->n_out * r) * sizeof *b);
        if (!b) return err_set(err, WHALE_E_NOMEM, "out of memory");
        for (int64_t o = 0; o < pm->n_out; o++) {
            int64_t src = o;
            if (permute && (k == DENSE_Q || k == DENSE_K))
                src = o / hd * hd + (o % hd % 2) * (hd / 2) + o % hd / 2;
            for (int64_t j = 0; j < r; j++) b[o * r + j] = pm->b[src * r + j] * a->scale;
        }
        lora_mat *lm = &m->lora[m->n_lora++];
        lm->a = (wmat){WHALE_DTYPE_F32, pm->a, pm->n_in, r, NULL};
        lm->b = (wmat){WHALE_DTYPE_F32, b, r, pm->n_out, NULL};
        pm->a = NULL; /* now the model's */
        L->lora[k] = lm;
    }
    return 0;
}

int model_lora_load(model *m, const char *path, whale_err *err) {
    if (m->arch != &dense_arch)
        return err_set(err, WHALE_E_UNSUPPORTED,
                       "%s: LoRA adapters on %s models (MLA attention, MoE experts) are not "
                       "supported yet; Whale applies them to dense Qwen2 and Llama models",
                       path, model_arch_name(m->hp.arch));
    if (m->lora_path)
        return err_set(err, WHALE_E_UNSUPPORTED, "%s: the model already has an adapter (%s)", path,
                       m->lora_path);
    peft_adapter a;
    int rc = peft_load(&a, path, err);
    if (rc) return rc;
    if ((rc = map_adapter(m, &a, err))) {
        err_prefix(err, "%s", path);
        lora_free(m);
    } else if (!(m->lora_path = strdup(path))) {
        lora_free(m);
        rc = err_set(err, WHALE_E_NOMEM, "out of memory");
    } else {
        m->lora_r = a.r;
        m->lora_scale = a.scale;
    }
    peft_free(&a);
    return rc;
}

const char *model_lora_path(const model *m) {
    return m->lora_path;
}

void model_lora_info(const model *m, int64_t *r, float *scale, int *n_mats) {
    *r = m->lora_r;
    *scale = m->lora_scale;
    *n_mats = m->n_lora;
}

/* Below this many multiply-adds the caller runs both products alone: a decode step's update
 * (rank 8 on a 896 x 4864 matrix: ~46k) costs less than waking the pool twice, which made
 * decoding with an adapter on all seven matrices of a 0.5B model a quarter slower. Either way
 * each output element is the same chain of operations (the pool only splits rows). */
#define LORA_SERIAL_MACS 262144

void lora_apply(model_ctx *c, float *y, const lora_mat *l, const float *x, int64_t n_tok, float *r,
                float *d) {
    int64_t n_out = l->b.n_out, rank = l->a.n_out;
    if (n_tok * rank * (l->a.n_in + n_out) <= LORA_SERIAL_MACS) {
        wmat_matmul_rows(r, rank, &l->a, x, l->a.n_in, n_tok, 0, rank, c->row_scratch);
        wmat_matmul_rows(d, n_out, &l->b, r, rank, n_tok, 0, n_out, c->row_scratch);
    } else {
        wmat_matmul(c, r, &l->a, x, n_tok);
        wmat_matmul(c, d, &l->b, r, n_tok);
    }
    for (int64_t t = 0; t < n_tok; t++) op_add(y + t * n_out, d + t * n_out, n_out);
}
