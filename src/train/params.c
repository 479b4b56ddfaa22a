/* params.c — the parameter table (see params.h). */
#include "train/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "formats/dtype.h"
#include "formats/safetensors.h"

void tr_params_begin(tr_params *p) { p->n_t = 0; }

static size_t total(const tr_params *p) { return p->n_t ? p->t[p->n_t - 1].off + p->t[p->n_t - 1].n : 0; }

tr_param *tr_params_add(tr_params *p, const char *name, int rows, int cols, int decay) {
    if (p->n_t == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        tr_param *t = realloc(p->t, sizeof *t * (size_t)cap);
        if (!t) abort(); /* a few hundred small records */
        p->t = t, p->cap = cap;
    }
    size_t off = total(p);
    tr_param *q = &p->t[p->n_t++];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", name);
    q->n = (size_t)rows * cols, q->off = off, q->rows = rows, q->cols = cols, q->decay = decay;
    q->w = p->w ? p->w + off : NULL;
    q->g = p->g ? p->g + off : NULL;
    return q;
}

int tr_params_alloc(tr_params *p, whale_err *err) {
    p->n = total(p);
    p->w = calloc(p->n ? p->n : 1, sizeof(float));
    p->g = calloc(p->n ? p->n : 1, sizeof(float));
    if (!p->w || !p->g) return err_set(err, WHALE_E_NOMEM, "out of memory for %zu parameters", p->n);
    return 0;
}

void tr_params_free(tr_params *p) {
    free(p->w), free(p->g), free(p->t);
    memset(p, 0, sizeof *p);
}

tr_param *tr_params_find(const tr_params *p, const char *name) {
    for (int i = 0; i < p->n_t; i++)
        if (!strcmp(p->t[i].name, name)) return &p->t[i];
    return NULL;
}

static int load(tr_params *p, const char *path, int trainable_only, whale_err *err) {
    st_model st;
    int rc = st_open(&st, path, err);
    if (rc) return rc;
    for (int i = 0; i < p->n_t && !rc; i++) {
        tr_param *q = &p->t[i];
        if (trainable_only && q->frozen) continue;
        const st_tensor *t = st_find(&st, q->name);
        if (!t) rc = err_set(err, WHALE_E_NOTFOUND, "%s: no tensor %s", path, q->name);
        else if ((size_t)t->n_elems != q->n)
            rc = err_set(err, WHALE_E_FORMAT, "%s: %s has %lld elements, the shape needs %zu", path, q->name,
                         (long long)t->n_elems, q->n);
        else if (!dtype_get(t->dtype)->can_dequantize)
            rc = err_set(err, WHALE_E_UNSUPPORTED, "%s: %s is %s", path, q->name, st_dtype_name(t->dtype));
        else
            dequantize_row(t->dtype, t->data, q->w, (int64_t)q->n);
    }
    st_close(&st);
    return rc;
}

int tr_params_load(tr_params *p, const char *path, whale_err *err) { return load(p, path, 0, err); }

int tr_params_load_trainable(tr_params *p, const char *path, whale_err *err) { return load(p, path, 1, err); }
