/* weights.c — a model's tensors by name, whichever file they come from (GGUF, or a Hugging
 * Face checkpoint through names.c): each is found, its shape checked against what the caller
 * expects, large matrices kept as views into the mapped file and small vectors (norms, biases)
 * converted to F32 copies the model owns. Does not own: which tensors an architecture needs
 * (dense.c, deepseek.c, mtp.c), the files (model.c opens and closes them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "model/model_impl.h"

/* One lookup result, whichever file the tensor came from. */
typedef struct tview {
    whale_dtype type;
    const void *data;
    int n_dims;
    int64_t ne[4]; /* ggml order: ne[0] contiguous */
} tview;

/* Keep f until the model is freed. Returns 0 or -1 (out of memory). */
int wt_own(model *m, void *f) {
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return -1;
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = f;
    return 0;
}

/* Find tensor `name` (GGUF naming). Returns 0, WHALE_E_NOTFOUND, or WHALE_E_FORMAT. */
static int find(model *m, const char *name, tview *v) {
    memset(v, 0, sizeof *v);
    if (m->is_gguf) {
        /* One routed expert ("blk.L.ffn_gate_exp.E.weight") is a slice of GGUF's stacked
         * tensor "blk.L.ffn_gate_exps.weight", ne = {n_in, n_out, n_expert}. */
        int l, e, used = 0;
        char proj[8];
        if (sscanf(name, "blk.%d.ffn_%4[a-z]_exp.%d.weight%n", &l, proj, &e, &used) == 3 && !name[used]) {
            char stacked[96];
            snprintf(stacked, sizeof stacked, "blk.%d.ffn_%s_exps.weight", l, proj);
            const gguf_tensor *t = gguf_find_tensor(&m->gguf, stacked);
            if (!t) return WHALE_E_NOTFOUND;
            if (t->n_dims != 3 || e < 0 || e >= t->ne[2] || !t->data) return WHALE_E_FORMAT;
            size_t per = 0;
            if (dtype_bytes(t->type, t->ne[0] * t->ne[1], &per)) return WHALE_E_FORMAT;
            v->type = t->type;
            v->data = (const unsigned char *)t->data + (size_t)e * per;
            v->n_dims = 2;
            v->ne[0] = t->ne[0];
            v->ne[1] = t->ne[1];
            v->ne[2] = v->ne[3] = 1;
            return 0;
        }
        const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
        if (!t) return WHALE_E_NOTFOUND;
        v->type = t->type;
        v->data = t->data;
        v->n_dims = t->n_dims;
        for (int d = 0; d < 4; d++) v->ne[d] = t->ne[d];
        return v->data ? 0 : WHALE_E_FORMAT;
    }
    char hf[256];
    if (!model_name_to_hf(name, hf, sizeof hf)) return WHALE_E_NOTFOUND;
    const st_tensor *t = st_find(&m->st, hf);
    if (!t) return WHALE_E_NOTFOUND;
    if (t->n_dims > 4 || t->n_dims < 1) return WHALE_E_FORMAT;
    v->type = t->dtype;
    v->data = t->data;
    v->n_dims = t->n_dims;
    for (int d = 0; d < 4; d++) v->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) v->ne[d] = t->shape[t->n_dims - 1 - d];
    return 0;
}

/* The block scales of an FP8 matrix: "<hf name>_scale_inv", F32 or BF16,
 * (ceil(n_out/128), ceil(n_in/128)), converted to an owned F32 array. */
static int fp8_scales(model *m, const char *name, wmat *w, whale_err *err) {
    char hf[288];
    if (m->is_gguf || !model_name_to_hf(name, hf, sizeof hf - 12))
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': FP8 without block scales", name);
    strcat(hf, "_scale_inv");
    const st_tensor *t = st_find(&m->st, hf);
    int64_t rows = (w->n_out + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK, cols = (w->n_in + WMAT_SCALE_BLOCK - 1) / WMAT_SCALE_BLOCK;
    if (!t) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is FP8 but '%s' is missing", name, hf);
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols ||
        (t->dtype != WHALE_DTYPE_F32 && t->dtype != WHALE_DTYPE_BF16))
        return err_set(err, WHALE_E_FORMAT, "'%s' must be F32 or BF16 of shape [%lld, %lld]", hf, (long long)rows,
                       (long long)cols);
    float *f = malloc((size_t)(rows * cols) * sizeof *f);
    if (!f || wt_own(m, f)) {
        free(f);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    dequantize_row(t->dtype, t->data, f, rows * cols);
    w->scale = f;
    return 0;
}

int wt_need_mat(model *m, const char *name, int64_t n_in, int64_t n_out, wmat *w, whale_err *err) {
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    const dtype_info *di = dtype_get(v.type);
    if (!di || !di->can_dequantize)
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': type %s cannot be computed on", name, dtype_name(v.type));
    if (v.n_dims != 2 || v.ne[0] != n_in || v.ne[1] != n_out)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] (ne0 first)",
                       name, (long long)v.ne[0], (long long)v.ne[1], (long long)n_in, (long long)n_out);
    w->type = v.type;
    w->data = v.data;
    w->n_in = n_in;
    w->n_out = n_out;
    w->scale = NULL;
    if (v.type == WHALE_DTYPE_F8_E4M3) return fp8_scales(m, name, w, err);
    return 0;
}

int wt_need_mat3(model *m, const char *name, int64_t n_in, int64_t n_mid, int64_t n_outer, wmat *w, whale_err *err) {
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    const dtype_info *di = dtype_get(v.type);
    if (!di || !di->can_dequantize || v.type == WHALE_DTYPE_F8_E4M3)
        return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%s': type %s cannot be computed on", name, dtype_name(v.type));
    if (v.n_dims != 3 || v.ne[0] != n_in || v.ne[1] != n_mid || v.ne[2] != n_outer)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]", name,
                       (long long)v.ne[0], (long long)v.ne[1], (long long)v.ne[2], (long long)n_in, (long long)n_mid,
                       (long long)n_outer);
    *w = (wmat){v.type, v.data, n_in, n_mid * n_outer, NULL};
    return 0;
}

/* A vector of n elements converted to an owned F32 array; *out NULL if absent and optional. */
int wt_has(model *m, const char *name) {
    tview v;
    return find(m, name, &v) != WHALE_E_NOTFOUND;
}

int wt_need_vec(model *m, const char *name, int64_t n, int optional, float **out, whale_err *err) {
    *out = NULL;
    tview v;
    int rc = find(m, name, &v);
    if (rc == WHALE_E_NOTFOUND && optional) return 0;
    if (rc == WHALE_E_NOTFOUND) return err_set(err, WHALE_E_FORMAT, "tensor '%s' is missing", name);
    if (rc) return err_set(err, WHALE_E_FORMAT, "tensor '%s': data missing (truncated file?)", name);
    int64_t nel = v.ne[0] * v.ne[1] * v.ne[2] * v.ne[3];
    const dtype_info *di = dtype_get(v.type);
    if (nel != n || !di || !di->can_dequantize || n % di->block_elems)
        return err_set(err, WHALE_E_FORMAT, "tensor '%s': %lld elements of %s, expected %lld", name, (long long)nel,
                       dtype_name(v.type), (long long)n);
    float *f = malloc((size_t)n * sizeof *f);
    if (!f || wt_own(m, f)) {
        free(f);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    dequantize_row(v.type, v.data, f, n);
    *out = f;
    return 0;
}

void wt_free_owned(model *m) {
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    m->owned = NULL;
    m->n_owned = m->cap_owned = 0;
}
