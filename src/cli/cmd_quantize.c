/* cmd_quantize.c — `whale quantize IN OUT.gguf --type T`: a GGUF with its weight matrices in
 * another type, from a GGUF file (metadata copied as it is, general.file_type updated) or from
 * a Hugging Face checkpoint (the same path as `whale convert`).
 *
 * Owns also the tensor writer both commands share (qout_*, declared in cli.h): each output
 * tensor is a list of source rows (mapped input, any dequantizable type) and a type; its bytes
 * are made while the file is written, rows dequantized to F32 and quantized on every core, so
 * memory holds one tensor at a time. Does not own the choice of types (cli_util.c), the HF
 * tensor layout (cmd_convert.c) or the block formats (formats/dtype.c, quantize.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/progress.h"
#include "base/threadpool.h"
#include "cli/cli.h"
#include "formats/gguf.h"

/* Rows per threadpool task: enough work (~64k values) that claiming a task costs nothing. */
#define QOUT_TASK_ELEMS 65536
/* Tasks per run between progress updates, per thread. */
#define QOUT_TASKS_PER_RUN 16

/* One output tensor. */
typedef struct qt {
    struct qout *o;
    char *name; /* owned */
    whale_dtype want, type;
    int n_dims;
    int64_t n_in, n_rows, rows_per_part;
    size_t nbytes, src_row_bytes;
    qout_src src;        /* data and scale point at the owned copies below */
    const void **data;   /* owned array of n_parts borrowed pointers */
    const float **scale; /* owned array or NULL */
    void *owned;
} qt;

struct qout {
    const char *cmd, *label;
    gguf_writer *w;
    qt **t;
    size_t n, cap;
    int64_t max_n_in;
    threadpool *tp;
    float *scratch; /* per thread: 2 * max_n_in */
    progress bar;
    double done, total;
    int shown; /* per mille last drawn */
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

qout *qout_init(const char *cmd, const char *label) {
    qout *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->cmd = cmd;
    o->label = label;
    o->w = gguf_writer_init();
    if (!o->w) {
        free(o);
        return NULL;
    }
    return o;
}

void qout_free(qout *o) {
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

gguf_writer *qout_gguf(qout *o) { return o->w; }

/* Row r of t as F32 in out (n_in values); tmp is scratch of n_in. Stacked parts one after
 * another; FP8 scales per 128x128 block of the source; Llama's permutation maps output row r
 * (1-D: element r) to the source's. */
static void src_row(const qt *t, int64_t r, float *out, float *tmp) {
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
}

typedef struct qjob {
    const qt *t;
    unsigned char *out;
    size_t row_bytes;
    int64_t rows_per_task, task0;
} qjob;

static void quantize_task(void *ctx, int64_t task, int thread) {
    const qjob *j = ctx;
    const qt *t = j->t;
    float *row = t->o->scratch + (size_t)thread * 2 * (size_t)t->o->max_n_in, *tmp = row + t->o->max_n_in;
    int64_t r0 = (j->task0 + task) * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > t->n_rows) r1 = t->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        src_row(t, r, row, tmp);
        quantize_row(t->type, row, j->out + (size_t)r * j->row_bytes, t->n_in);
    }
}

static void advance(qout *o, double bytes) {
    o->done += bytes;
    int pm = o->total > 0 ? (int)(1000 * o->done / o->total) : 1000;
    if (pm == o->shown) return;
    o->shown = pm;
    progress_update(&o->bar, o->done);
}

/* gguf_fill_fn: the bytes of one tensor, made while the writer reaches it. */
static int fill(void *ctx, const char *name, void *buf, size_t nbytes) {
    (void)name;
    qt *t = ctx;
    qout *o = t->o;
    if (t->src.copy) {
        memcpy(buf, t->data[0], nbytes);
        advance(o, (double)nbytes);
        return 0;
    }
    qjob j = {t, buf, 0, QOUT_TASK_ELEMS / t->n_in, 0};
    if (j.rows_per_task < 1) j.rows_per_task = 1;
    dtype_bytes(t->type, t->n_in, &j.row_bytes);
    int64_t n_tasks = (t->n_rows + j.rows_per_task - 1) / j.rows_per_task;
    int64_t per_run = (int64_t)tp_threads(o->tp) * QOUT_TASKS_PER_RUN;
    for (; j.task0 < n_tasks; j.task0 += per_run) {
        int64_t k = n_tasks - j.task0 < per_run ? n_tasks - j.task0 : per_run;
        tp_run(o->tp, k, quantize_task, &j);
        int64_t end = (j.task0 + k) * j.rows_per_task;
        advance(o, (double)((end < t->n_rows ? end : t->n_rows) - j.task0 * j.rows_per_task) * (double)j.row_bytes);
    }
    return 0;
}

int qout_add(qout *o, const char *name, whale_dtype want, whale_dtype type, int n_dims, const int64_t *ne,
             const qout_src *src, void *owned) {
    const dtype_info *si = dtype_get(src->type);
    if (src->n_parts < 1 || n_dims < 1 || n_dims > GGUF_MAX_DIMS) {
        free(owned);
        fprintf(stderr, "whale %s: tensor '%s': bad description\n", o->cmd, name);
        return -1;
    }
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) nel *= ne[d];
    qt *t = calloc(1, sizeof *t);
    if (t && o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        qt **p = realloc(o->t, cap * sizeof *p);
        if (p) {
            o->t = p;
            o->cap = cap;
        }
    }
    if (!t || o->n == o->cap) {
        free(t);
        free(owned);
        fprintf(stderr, "whale %s: out of memory\n", o->cmd);
        return -1;
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
    if (!t->name || !t->data || (src->scale && !t->scale)) {
        fprintf(stderr, "whale %s: out of memory\n", o->cmd);
        return -1;
    }
    memcpy(t->data, src->data, (size_t)src->n_parts * sizeof *t->data);
    if (src->scale) memcpy(t->scale, src->scale, (size_t)src->n_parts * sizeof *t->scale);
    /* Our own invariants: the callers check the input against these before describing it. */
    if (!si || (!src->copy && (!si->can_dequantize || !quantize_supported(type))) || (src->copy && src->type != type) ||
        (t->n_in <= 0 && !src->copy) || t->n_rows % src->n_parts ||
        dtype_bytes(src->type, t->n_in, &t->src_row_bytes) || dtype_bytes(type, nel, &t->nbytes)) {
        fprintf(stderr, "whale %s: tensor '%s': cannot write %s from %s\n", o->cmd, name, dtype_name(type),
                dtype_name(src->type));
        return -1;
    }
    if (t->n_in > o->max_n_in) o->max_n_in = t->n_in;
    o->total += (double)t->nbytes;
    if (gguf_writer_add_tensor_fill(o->w, name, type, n_dims, ne, fill, t)) {
        fprintf(stderr, "whale %s: tensor '%s': bad shape or out of memory\n", o->cmd, name);
        return -1;
    }
    return 0;
}

/* "Q4_K 120, Q6_K 50, F32 49": tensors per written type, most frequent first. */
static void print_summary(const qout *o, const char *path, double in_bytes, double out_bytes, double secs) {
    whale_dtype ty[16];
    size_t cnt[16], k = 0;
    for (size_t i = 0; i < o->n; i++) {
        size_t j = 0;
        while (j < k && ty[j] != o->t[i]->type) j++;
        if (j == k && k < 16) { ty[k] = o->t[i]->type; cnt[k++] = 0; }
        if (j < k) cnt[j]++;
    }
    fprintf(stderr, "wrote %s: %zu tensors", path, o->n);
    for (size_t shown = 0; shown < k; shown++) {
        size_t best = 0;
        for (size_t j = 1; j < k; j++) if (cnt[j] > cnt[best]) best = j;
        fprintf(stderr, "%s%s %zu", shown ? ", " : " (", dtype_name(ty[best]), cnt[best]);
        cnt[best] = 0;
    }
    fprintf(stderr, "%s, %.1f MiB -> %.1f MiB in %.2f s\n", k ? ")" : "", in_bytes / 1048576, out_bytes / 1048576, secs);
    /* Rows that did not fill the asked type's blocks: one line per asked type. */
    for (size_t i = 0; i < o->n; i++) {
        whale_dtype want = o->t[i]->want;
        size_t first = i, n_q8 = 0, n_f16 = 0;
        for (size_t j = 0; j < i; j++) if (o->t[j]->want == want && o->t[j]->type != want) first = j;
        if (first != i || o->t[i]->type == want) continue;
        for (size_t j = i; j < o->n; j++)
            if (o->t[j]->want == want && o->t[j]->type != want) o->t[j]->type == WHALE_DTYPE_Q8_0 ? n_q8++ : n_f16++;
        fprintf(stderr, "note: %zu tensors have rows that do not fill %s blocks of %lld values: written as ", n_q8 + n_f16,
                dtype_name(want), (long long)dtype_get(want)->block_elems);
        if (n_q8) fprintf(stderr, "Q8_0 (%zu)%s", n_q8, n_f16 ? ", " : "\n");
        if (n_f16) fprintf(stderr, "F16 (%zu)\n", n_f16);
    }
}

int qout_write(qout *o, const char *path, double in_bytes) {
    double t0 = now_s();
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.part", path) >= sizeof tmp) {
        fprintf(stderr, "whale %s: %s: path too long\n", o->cmd, path);
        return -1;
    }
    o->tp = tp_new(0);
    int n_threads = o->tp ? tp_threads(o->tp) : 0;
    size_t per_thread = 2 * (size_t)(o->max_n_in > 0 ? o->max_n_in : 1);
    o->scratch = malloc((size_t)(n_threads > 0 ? n_threads : 1) * per_thread * sizeof(float));
    if (!o->tp || !o->scratch) {
        fprintf(stderr, "whale %s: out of memory\n", o->cmd);
        return -1;
    }
    whale_err err = {0};
    o->done = 0;
    o->shown = -1;
    progress_begin(&o->bar, o->label, o->total, 1);
    int rc = gguf_writer_write(o->w, tmp, &err);
    progress_end(&o->bar);
    if (rc) {
        remove(tmp);
        fprintf(stderr, "whale %s: %s\n", o->cmd, err.msg);
        return -1;
    }
    if (rename(tmp, path)) {
        fprintf(stderr, "whale %s: cannot rename %s to %s: %s\n", o->cmd, tmp, path, strerror(errno));
        remove(tmp);
        return -1;
    }
    struct stat sb;
    double out_bytes = stat(path, &sb) ? 0 : (double)sb.st_size;
    print_summary(o, path, in_bytes, out_bytes, now_s() - t0);
    return 0;
}

/* ---- whale quantize ------------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f, "usage: whale quantize IN OUT.gguf --type " CLI_WTYPES "\n\n"
               "Write a GGUF with the weight matrices in another type. IN is a GGUF file (its metadata,\n"
               "tokenizer and chat template are copied as they are; general.file_type is updated) or a\n"
               "Hugging Face checkpoint: a directory, .safetensors or .index.json (FP8 included; the\n"
               "same file `whale convert` writes).\n"
               "  --type T   f32, f16, bf16, q8_0, q4_k, q6_k, or q4_k_m (q4_k, with q6_k for the output,\n"
               "             attn_output, attn_v and ffn_down matrices)\n"
               "  --mtp      checkpoint input: keep DeepSeek-V3/R1's MTP module (see whale convert --help);\n"
               "             a GGUF input keeps whatever it has\n"
               "Norms, biases and the MoE router (ffn_gate_inp) stay f32. Matrices whose rows do not fill\n"
               "the type's blocks (256 values for q4_k/q6_k, 32 for q8_0) fall back to q8_0, else f16.\n"
               "Tensors already of the wanted type are copied unchanged. The file is written tensor by\n"
               "tensor, so memory holds one tensor at a time, not the model.\n");
}

/* The type a GGUF tensor gets: 1-D tensors and the router stay F32, other matrices take t's
 * type (when their rows fill its blocks). *want receives the type asked for. */
static whale_dtype gguf_target(const gguf_tensor *gt, const char *name, const cli_wtype *t, whale_dtype *want) {
    if (gt->n_dims < 2 || strstr(name, "ffn_gate_inp")) return *want = WHALE_DTYPE_F32;
    *want = cli_wtype_for(t, name);
    return cli_fit_type(*want, gt->ne[0]);
}

/* Metadata of f into w: every key as it is, general.file_type set to t's (added at the end
 * when f has none). Returns 0 or -1 (OOM). */
static int copy_metadata(gguf_writer *w, const gguf_file *f, const cli_wtype *t) {
    int rc = 0, had = 0;
    for (uint64_t i = 0; i < f->n_kv && !rc; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (kv->key.n == 17 && !memcmp(kv->key.s, "general.file_type", 17)) {
            rc = gguf_writer_add_u32(w, "general.file_type", t->ftype);
            had = 1;
        } else {
            rc = gguf_writer_copy_kv(w, kv);
        }
    }
    if (!rc && !had) rc = gguf_writer_add_u32(w, "general.file_type", t->ftype);
    return rc ? -1 : 0;
}

static int quantize_gguf(const char *in, const char *out, const cli_wtype *t) {
    whale_err err = {0};
    gguf_file f;
    if (gguf_open(&f, in, 0, &err)) {
        fprintf(stderr, "whale quantize: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    qout *o = qout_init("quantize", "quantizing");
    if (!o || copy_metadata(qout_gguf(o), &f, t)) {
        fprintf(stderr, "whale quantize: out of memory\n");
        goto done;
    }
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *gt = &f.tensors[i];
        char name[512];
        if (gt->name.n >= sizeof name) {
            fprintf(stderr, "whale quantize: %s: tensor name of %llu bytes is too long\n", in,
                    (unsigned long long)gt->name.n);
            goto done;
        }
        memcpy(name, gt->name.s, (size_t)gt->name.n);
        name[gt->name.n] = 0;
        whale_dtype want, type = gguf_target(gt, name, t, &want);
        const dtype_info *di = dtype_get(gt->type);
        int copy = gt->type == type || !di->can_dequantize || gt->nbytes == 0;
        if (copy) want = type = gt->type; /* integer tensors (none in the models Whale runs) pass through */
        qout_src src = {gt->type, 1, &gt->data, NULL, 0, copy};
        if (qout_add(o, name, want, type, gt->n_dims, gt->ne, &src, NULL)) goto done;
    }
    if (qout_write(o, out, (double)f.map.size) == 0) rc = 0;
done:
    qout_free(o);
    gguf_close(&f);
    return rc;
}

/* 1 if a and b name the same existing file. */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type_name = NULL;
    int mtp = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--mtp")) { mtp = 1; continue; }
        if (!strcmp(a, "--type") && i + 1 < argc) type_name = argv[++i];
        else if (!strncmp(a, "--type=", 7)) type_name = a + 7;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "whale quantize: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        else if (!in) in = a;
        else if (!out) out = a;
        else { fprintf(stderr, "whale quantize: unexpected argument '%s' (see --help)\n", a); return 2; }
    }
    if (!in || !out) { fprintf(stderr, "whale quantize: need IN and OUT.gguf (see --help)\n"); return 2; }
    if (!type_name) { fprintf(stderr, "whale quantize: --type is required: " CLI_WTYPES "\n"); return 2; }
    const cli_wtype *t = cli_wtype_parse(type_name);
    if (!t) { fprintf(stderr, "whale quantize: unknown type '%s' (" CLI_WTYPES ")\n", type_name); return 2; }
    struct stat sb;
    if (stat(in, &sb)) { fprintf(stderr, "whale quantize: %s: %s\n", in, strerror(errno)); return 1; }
    if (same_file(in, out)) {
        fprintf(stderr, "whale quantize: the output %s is the input; choose another name\n", out);
        return 1;
    }
    if (S_ISDIR(sb.st_mode) || cli_is_safetensors_path(in)) return cli_convert_hf("quantize", in, out, t, mtp);
    FILE *fp = fopen(in, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp) fclose(fp);
    if (!fp) { fprintf(stderr, "whale quantize: %s: %s\n", in, strerror(errno)); return 1; }
    if (got != 4 || memcmp(magic, "GGUF", 4)) {
        fprintf(stderr, "whale quantize: %s: not a GGUF file or a safetensors checkpoint\n", in);
        return 1;
    }
    return quantize_gguf(in, out, t);
}
