/* params.h — a model's trainable tensors as one table: names (Hugging Face's), shapes, and views
 * into one F32 block of parameters and one of gradients, laid out in a fixed order (so
 * optimizer state, checkpoints and reductions see the same order every time). */
#ifndef WHALE_TRAIN_PARAMS_H
#define WHALE_TRAIN_PARAMS_H

#include <stddef.h>

#include "whale.h"

typedef struct tr_param {
    char name[112];
    float *w, *g; /* views into tr_params.w / .g (NULL during the counting pass) */
    size_t n, off;
    int rows, cols; /* a matrix: rows x cols; a vector: rows = n, cols = 1 */
    int decay;      /* weight decay applies (matrices; not norms or biases) */
    int frozen;     /* not trained (a buffer such as the router's selection bias) */
} tr_param;

typedef struct tr_params {
    tr_param *t;
    int n_t, cap;
    float *w, *g;
    size_t n; /* floats in w and in g */
} tr_params;

/* Layouts run twice: once to count (before tr_params_alloc, the views are NULL), once to place
 * the views. tr_params_begin starts a pass. */
void tr_params_begin(tr_params *p);
tr_param *tr_params_add(tr_params *p, const char *name, int rows, int cols, int decay);
/* After the counting pass: allocate the blocks (zeroed). */
int tr_params_alloc(tr_params *p, whale_err *err);
void tr_params_free(tr_params *p);
tr_param *tr_params_find(const tr_params *p, const char *name);
/* Every tensor from a safetensors checkpoint (F32/F16/BF16), by name. */
int tr_params_load(tr_params *p, const char *path, whale_err *err);
/* The same for the tensors not frozen (a LoRA checkpoint's adapters). */
int tr_params_load_trainable(tr_params *p, const char *path, whale_err *err);

#endif
