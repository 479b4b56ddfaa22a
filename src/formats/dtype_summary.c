/* dtype_summary.c — counting tensors, elements and bytes per dtype (see dtype_summary.h). */
#include <string.h>

#include "formats/dtype_summary.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

void dtype_summary_init(dtype_summary *s) { memset(s, 0, sizeof *s); }

void dtype_summary_add(dtype_summary *s, whale_dtype t, double n_elems, double bytes) {
    s->n_tensors++;
    s->n_elems += n_elems;
    s->bytes += bytes;
    int j = 0;
    while (j < s->n_rows && s->row[j].type != t) j++;
    if (j == s->n_rows) {
        if (j == DTYPE_SUMMARY_MAX) return;
        s->row[j] = (dtype_summary_row){t, 0, 0, 0};
        s->n_rows++;
    }
    s->row[j].n_tensors++;
    s->row[j].n_elems += n_elems;
    s->row[j].bytes += bytes;
}

void dtype_summary_sort_by_count(dtype_summary *s) {
    for (int i = 1; i < s->n_rows; i++) { /* insertion sort: stable, and there are few rows */
        dtype_summary_row r = s->row[i];
        int j = i;
        for (; j > 0 && s->row[j - 1].n_tensors < r.n_tensors; j--) s->row[j] = s->row[j - 1];
        s->row[j] = r;
    }
}

void dtype_summary_gguf(dtype_summary *s, const gguf_file *f) {
    dtype_summary_init(s);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        double nel = 1;
        for (int d = 0; d < t->n_dims; d++) nel *= (double)t->ne[d];
        dtype_summary_add(s, t->type, nel, (double)t->nbytes);
    }
}

void dtype_summary_st(dtype_summary *s, const st_model *m) {
    dtype_summary_init(s);
    for (size_t i = 0; i < m->n_tensors; i++)
        dtype_summary_add(s, m->tensors[i].dtype, (double)m->tensors[i].n_elems, (double)m->tensors[i].nbytes);
}
