/* writer.c — the streaming quantized GGUF writer (convert_writer_*, see convert.h): each output
 * tensor is a list of source rows and a type; its bytes are made while gguf_writer_write reaches
 * it, rows dequantized to F32 and quantized on every core, so memory holds one tensor at a time.
 * Does not own the choice of types (wtype.c), the tensor layouts (hf.c, gguf.c) or the block
 * formats (formats/dtype.c, quantize.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/threadpool.h"
#include "convert/convert.h"
#include "formats/gguf.h"

/* Rows per threadpool task: enough work (~64k values) that claiming a task costs nothing. */
#define WRITER_TASK_ELEMS 65536
/* Tasks per run between progress updates, per thread. */
#define WRITER_TASKS_PER_RUN 16
/* Longest output path: path.part must fit a fixed buffer; PATH_MAX on Linux. */
#define WRITER_MAX_PATH 4096

/* One output tensor. */
typedef struct wt {
    struct convert_writer *o;
    char *name; /* owned */
    whale_dtype want, type;
    int n_dims;
    int64_t n_in, n_rows, rows_per_part;
    size_t nbytes, src_row_bytes;
    convert_src src;     /* data and scale point at the owned copies below */
    const void **data;   /* owned array of n_parts borrowed pointers */
    const float **scale; /* owned array or NULL */
    void *owned;
} wt;

struct convert_writer {
    gguf_writer *w;
    wt **t;
    size_t n, cap;
    int64_t max_n_in;
    threadpool *tp;
    float *scratch; /* per thread: 2 * max_n_in */
    const convert_hooks *hooks;
    double done, total;
    int shown; /* per mille last reported */
};

convert_writer *convert_writer_init(void) {
    convert_writer *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->w = gguf_writer_init();
    if (!o->w) {
        free(o);
        return NULL;
    }
    return o;
}

void convert_writer_free(convert_writer *o) {
    if (!o) return;
    for (size_t i = 0; i < o->n; i++) {
        free(o->t[i]->name);
        free(o->t[i]->data);
        free(o->t[i]->scale);
        free(o->t[i]->owned);
        free(o->t[i]);
    }
    free(o->t);
    gguf_writer_free(o->w);
    tp_free(o->tp);
    free(o->scratch);
    free(o);
}

gguf_writer *convert_writer_gguf(convert_writer *o) { return o->w; }

/* Row r of t as F32 in out (n_in values); tmp is scratch of n_in. Stacked parts one after
 * another; FP8 scales per 128x128 block of the source; Llama's permutation maps output row r
 * (1-D: element r) to the source's. */
static void src_row(const wt *t, int64_t r, float *out, float *tmp) {
    int64_t p = r / t->rows_per_part, i = r % t->rows_per_part, hd = t->src.permute_head_dim, n = t->n_in;
    if (hd > 0 && t->n_dims >= 2) i = i / hd * hd + (i % hd % 2) * (hd / 2) + i % hd / 2;
    int permute_elems = hd > 0 && t->n_dims == 1;
    float *dst = permute_elems ? tmp : out;
    dequantize_row(t->src.type, (const unsigned char *)t->data[p] + (size_t)i * t->src_row_bytes, dst, n);
    if (t->scale && t->scale[p]) {
        int64_t sc = (n + 127) / 128;
        const float *S = t->scale[p] + (i / 128) * sc;
        for (int64_t j = 0; j < n; j++) dst[j] *= S[j / 128];
    }
    if (permute_elems)
        for (int64_t j = 0; j < n; j++) out[j] = tmp[j / hd * hd + (j % hd % 2) * (hd / 2) + j % hd / 2];
    if (t->src.lora_b) { /* W' = W + B A, the update summed over the rank first */
        const float *b = t->src.lora_b + r * t->src.lora_r;
        for (int64_t j = 0; j < n; j++) tmp[j] = 0;
        for (int64_t k = 0; k < t->src.lora_r; k++) {
            const float *a = t->src.lora_a + k * n;
            for (int64_t j = 0; j < n; j++) tmp[j] += b[k] * a[j];
        }
        for (int64_t j = 0; j < n; j++) out[j] += tmp[j];
    }
}

typedef struct wjob {
    const wt *t;
    unsigned char *out;
    size_t row_bytes;
    int64_t rows_per_task, task0;
} wjob;

static void quantize_task(void *ctx, int64_t task, int thread) {
    const wjob *j = ctx;
    const wt *t = j->t;
    float *row = t->o->scratch + (size_t)thread * 2 * (size_t)t->o->max_n_in, *tmp = row + t->o->max_n_in;
    int64_t r0 = (j->task0 + task) * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > t->n_rows) r1 = t->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        src_row(t, r, row, tmp);
        quantize_row(t->type, row, j->out + (size_t)r * j->row_bytes, t->n_in);
    }
}

static void report_progress(convert_writer *o, convert_phase phase) {
    if (o->hooks && o->hooks->progress) o->hooks->progress(o->hooks->ctx, phase, o->done, o->total);
}

static void advance(convert_writer *o, double bytes) {
    o->done += bytes;
    int pm = o->total > 0 ? (int)(1000 * o->done / o->total) : 1000;
    if (pm == o->shown) return;
    o->shown = pm;
    report_progress(o, CONVERT_UPDATE);
}

/* gguf_fill_fn: the bytes of one tensor, made while the writer reaches it. */
static int fill(void *ctx, const char *name, void *buf, size_t nbytes) {
    (void)name;
    wt *t = ctx;
    convert_writer *o = t->o;
    if (t->src.copy) {
        memcpy(buf, t->data[0], nbytes);
        advance(o, (double)nbytes);
        return 0;
    }
    wjob j = {t, buf, 0, WRITER_TASK_ELEMS / t->n_in, 0};
    if (j.rows_per_task < 1) j.rows_per_task = 1;
    dtype_bytes(t->type, t->n_in, &j.row_bytes);
    int64_t n_tasks = (t->n_rows + j.rows_per_task - 1) / j.rows_per_task;
    int64_t per_run = (int64_t)tp_threads(o->tp) * WRITER_TASKS_PER_RUN;
    for (; j.task0 < n_tasks; j.task0 += per_run) {
        int64_t k = n_tasks - j.task0 < per_run ? n_tasks - j.task0 : per_run;
        tp_run(o->tp, k, quantize_task, &j);
        int64_t end = (j.task0 + k) * j.rows_per_task;
        advance(o, (double)((end < t->n_rows ? end : t->n_rows) - j.task0 * j.rows_per_task) * (double)j.row_bytes);
    }
    return 0;
}

int convert_writer_add(convert_writer *o, const char *name, whale_dtype want, whale_dtype type, int n_dims,
                       const int64_t *ne, const convert_src *src, void *owned, whale_err *err) {
    const dtype_info *si = dtype_get(src->type);
    if (src->n_parts < 1 || n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        free(owned);
        return err_set(err, WHALE_E_ARG, "tensor '%s': bad description", name);
    }
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) nel *= ne[d];
    wt *t = calloc(1, sizeof *t);
    if (t && o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        wt **p = realloc(o->t, cap * sizeof *p);
        if (p) {
            o->t = p;
            o->cap = cap;
        }
    }
    if (!t || o->n == o->cap) {
        free(t);
        free(owned);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    o->t[o->n++] = t; /* freed with o from here on */
    t->o = o;
    t->owned = owned;
    t->want = want;
    t->type = type;
    t->n_dims = n_dims;
    t->n_in = ne[0];
    t->n_rows = t->n_in > 0 ? nel / t->n_in : 0;
    t->src = *src;
    t->rows_per_part = t->n_rows / src->n_parts;
    t->src.data = NULL; /* the caller's arrays: t->data and t->scale hold copies */
    t->src.scale = NULL;
    t->name = strdup(name);
    t->data = malloc((size_t)src->n_parts * sizeof *t->data);
    t->scale = src->scale ? malloc((size_t)src->n_parts * sizeof *t->scale) : NULL;
    if (!t->name || !t->data || (src->scale && !t->scale)) return err_set(err, WHALE_E_NOMEM, "out of memory");
    memcpy(t->data, src->data, (size_t)src->n_parts * sizeof *t->data);
    if (src->scale) memcpy(t->scale, src->scale, (size_t)src->n_parts * sizeof *t->scale);
    /* The callers check their input against these before describing it. */
    if (!si || (!src->copy && (!si->can_dequantize || !quantize_supported(type))) || (src->copy && src->type != type) ||
        (t->n_in <= 0 && !src->copy) || t->n_rows % src->n_parts ||
        (src->lora_b && (src->copy || src->n_parts != 1 || src->permute_head_dim || n_dims != 2 || src->lora_r < 1)) ||
        dtype_bytes(src->type, t->n_in, &t->src_row_bytes) || dtype_bytes(type, nel, &t->nbytes))
        return err_set(err, WHALE_E_ARG, "tensor '%s': cannot write %s from %s", name, dtype_name(type),
                       dtype_name(src->type));
    if (t->n_in > o->max_n_in) o->max_n_in = t->n_in;
    o->total += (double)t->nbytes;
    if (gguf_writer_add_tensor_fill(o->w, name, type, n_dims, ne, fill, t))
        return err_set(err, WHALE_E_ARG, "tensor '%s': bad shape or out of memory", name);
    return 0;
}

/* What was written: tensors per type, and the tensors whose rows fell back per asked type. */
static void fill_report(const convert_writer *o, convert_report *rep) {
    dtype_summary_init(&rep->written);
    rep->n_fallback = 0;
    for (size_t i = 0; i < o->n; i++) {
        const wt *t = o->t[i];
        dtype_summary_add(&rep->written, t->type, (double)(t->n_in * t->n_rows), (double)t->nbytes);
        if (t->type == t->want) continue;
        int j = 0;
        while (j < rep->n_fallback && rep->fallback[j].want != t->want) j++;
        if (j == rep->n_fallback) {
            if (j == CONVERT_MAX_FALLBACK) continue;
            rep->fallback[j].want = t->want;
            rep->fallback[j].n_q8_0 = rep->fallback[j].n_f16 = 0;
            rep->n_fallback++;
        }
        if (t->type == WHALE_DTYPE_Q8_0) rep->fallback[j].n_q8_0++;
        else rep->fallback[j].n_f16++;
    }
    dtype_summary_sort_by_count(&rep->written);
}

int convert_writer_write(convert_writer *o, const char *path, const convert_hooks *hooks, convert_report *rep,
                         whale_err *err) {
    char tmp[WRITER_MAX_PATH];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.part", path) >= sizeof tmp)
        return err_set(err, WHALE_E_ARG, "%s: path too long", path);
    if (o->tp || o->scratch) return err_set(err, WHALE_E_ARG, "%s: a writer writes one file", path);
    o->tp = tp_new(0);
    int n_threads = o->tp ? tp_threads(o->tp) : 0;
    size_t per_thread = 2 * (size_t)(o->max_n_in > 0 ? o->max_n_in : 1);
    o->scratch = malloc((size_t)(n_threads > 0 ? n_threads : 1) * per_thread * sizeof(float));
    if (!o->tp || !o->scratch) return err_set(err, WHALE_E_NOMEM, "out of memory");
    o->hooks = hooks;
    o->done = 0;
    o->shown = -1;
    report_progress(o, CONVERT_BEGIN);
    int rc = gguf_writer_write(o->w, tmp, err);
    report_progress(o, CONVERT_END);
    o->hooks = NULL;
    if (rc) {
        remove(tmp);
        return rc;
    }
    if (rename(tmp, path)) {
        rc = err_set(err, WHALE_E_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        return rc;
    }
    if (rep) {
        struct stat sb;
        rep->out_bytes = stat(path, &sb) ? 0 : (double)sb.st_size;
        fill_report(o, rep);
    }
    return 0;
}
