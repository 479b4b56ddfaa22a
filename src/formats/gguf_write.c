/* gguf_write.c — building GGUF v3 files: metadata and tensors collected in memory, then
 * written in one pass with the alignment padding the format asks for. Used by tests (to make
 * valid and hostile files), by vocabulary extraction, and by convert/ (conversion, quantize,
 * synth). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "base/err.h"
#include "formats/gguf.h"

/* A growable byte buffer holding serialized metadata or tensor infos. */
typedef struct buf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} buf;

static void buf_put(buf *b, const void *d, size_t n) {
    if (b->oom || !n) return; /* n == 0 may come with d == NULL (empty array, no metadata) */
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(buf *b, const char *s, size_t n) { buf_u64(b, n); buf_put(b, s, n); }

typedef struct wtensor {
    char *name;
    whale_dtype type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    size_t nbytes;
    const void *data;
    gguf_fill_fn fill; /* or produce the bytes at write time */
    void *fill_ctx;
} wtensor;

struct gguf_writer {
    buf kv;
    uint64_t n_kv;
    uint32_t alignment;
    wtensor *t;
    uint64_t n_t, cap_t;
};

gguf_writer *gguf_writer_init(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    free(w->kv.p);
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

static int key_head(gguf_writer *w, const char *key, gguf_type type) {
    buf_str(&w->kv, key, strlen(key));
    buf_u32(&w->kv, (uint32_t)type);
    w->n_kv++;
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}

int gguf_writer_add_scalar(gguf_writer *w, const char *key, gguf_type type, const void *val) {
    size_t sz = gguf_type_size(type);
    if (!sz) return WHALE_E_ARG;
    if (!strcmp(key, "general.alignment") && type == GGUF_TYPE_UINT32) memcpy(&w->alignment, val, 4);
    key_head(w, key, type);
    buf_put(&w->kv, val, sz);
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}
int gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v) { return gguf_writer_add_scalar(w, key, GGUF_TYPE_UINT32, &v); }
int gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v) { return gguf_writer_add_scalar(w, key, GGUF_TYPE_INT32, &v); }
int gguf_writer_add_f32(gguf_writer *w, const char *key, float v) { return gguf_writer_add_scalar(w, key, GGUF_TYPE_FLOAT32, &v); }
int gguf_writer_add_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return gguf_writer_add_scalar(w, key, GGUF_TYPE_BOOL, &b);
}
int gguf_writer_add_str(gguf_writer *w, const char *key, const char *s) {
    key_head(w, key, GGUF_TYPE_STRING);
    buf_str(&w->kv, s, strlen(s));
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}

int gguf_writer_add_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data, uint64_t n) {
    size_t sz = gguf_type_size(elem);
    if (!sz || n > SIZE_MAX / sz) return WHALE_E_ARG;
    key_head(w, key, GGUF_TYPE_ARRAY);
    buf_u32(&w->kv, (uint32_t)elem);
    buf_u64(&w->kv, n);
    buf_put(&w->kv, data, (size_t)n * sz);
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}

int gguf_writer_add_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                            const size_t *lens, uint64_t n) {
    key_head(w, key, GGUF_TYPE_ARRAY);
    buf_u32(&w->kv, GGUF_TYPE_STRING);
    buf_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) buf_str(&w->kv, strs[i], lens ? lens[i] : strlen(strs[i]));
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}

/* Bytes of a value of type t at p, walking nested arrays (the value was validated on open). */
static size_t value_span(gguf_type t, const unsigned char *p) {
    if (t == GGUF_TYPE_STRING) {
        uint64_t n;
        memcpy(&n, p, 8);
        return 8 + (size_t)n;
    }
    if (t != GGUF_TYPE_ARRAY) return gguf_type_size(t);
    uint32_t et;
    uint64_t n;
    memcpy(&et, p, 4);
    memcpy(&n, p + 4, 8);
    size_t off = 12;
    if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) return off + (size_t)n * gguf_type_size((gguf_type)et);
    for (uint64_t i = 0; i < n; i++) off += value_span((gguf_type)et, p + off);
    return off;
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    buf_str(&w->kv, kv->key.s, (size_t)kv->key.n);
    buf_u32(&w->kv, (uint32_t)kv->type);
    w->n_kv++;
    const unsigned char *p = kv->type == GGUF_TYPE_ARRAY ? kv->val - 12 : kv->val;
    buf_put(&w->kv, p, value_span(kv->type, p));
    if (kv->key.n == 17 && !memcmp(kv->key.s, "general.alignment", 17) && kv->type == GGUF_TYPE_UINT32)
        memcpy(&w->alignment, kv->val, 4);
    return w->kv.oom ? WHALE_E_NOMEM : 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, whale_dtype type, int n_dims,
                           const int64_t *ne, const void *data) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return WHALE_E_ARG;
    int64_t nel = 1;
    wtensor t = {0};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] && nel > INT64_MAX / ne[d])) return WHALE_E_ARG;
        nel *= ne[d];
    }
    if (dtype_bytes(type, nel, &t.nbytes)) return WHALE_E_ARG;
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *p = realloc(w->t, (size_t)cap * sizeof *p);
        if (!p) return WHALE_E_NOMEM;
        w->t = p;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return WHALE_E_NOMEM;
    t.type = type;
    t.n_dims = n_dims;
    t.data = data;
    w->t[w->n_t++] = t;
    return 0;
}

int gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, whale_dtype type, int n_dims, const int64_t *ne,
                                gguf_fill_fn fill, void *ctx) {
    int rc = gguf_writer_add_tensor(w, name, type, n_dims, ne, NULL);
    if (rc) return rc;
    w->t[w->n_t - 1].fill = fill;
    w->t[w->n_t - 1].fill_ctx = ctx;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* Zeros for padding and for tensors without data. Padding can be up to alignment - 1 bytes
 * (the reader allows 1 MiB), so every use goes through these loops, in chunks of the table. */
static const unsigned char zeros[4096];

static void buf_zeros(buf *b, size_t n) {
    while (n && !b->oom) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        buf_put(b, zeros, k);
        n -= k;
    }
}

/* Write n zero bytes; returns 1 on success. */
static int write_zeros(FILE *fp, size_t n) {
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (fwrite(zeros, 1, k, fp) != k) return 0;
        n -= k;
    }
    return 1;
}

int gguf_writer_write(gguf_writer *w, const char *path, whale_err *err) {
    /* The same rule as the reader: a file we write must be one we can open. */
    uint32_t a = w->alignment;
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return err_set(err, WHALE_E_ARG, "%s: general.alignment %u is not a power of two up to 1 MiB", path, a);
    buf h = {0};
    buf_u32(&h, GGUF_MAGIC);
    buf_u32(&h, 3);
    buf_u64(&h, w->n_t);
    buf_u64(&h, w->n_kv);
    buf_put(&h, w->kv.p, w->kv.n);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        buf_str(&h, t->name, strlen(t->name));
        buf_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(&h, (uint64_t)t->ne[d]);
        buf_u32(&h, (uint32_t)t->type);
        buf_u64(&h, off);
        off = align_up(off + t->nbytes, w->alignment);
    }
    buf_zeros(&h, (size_t)(align_up(h.n, w->alignment) - h.n));
    if (h.oom || w->kv.oom) {
        free(h.p);
        return err_set(err, WHALE_E_NOMEM, "%s: out of memory building the header", path);
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(h.p);
        return err_set(err, WHALE_E_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    int ok = fwrite(h.p, 1, h.n, fp) == h.n;
    free(h.p);
    for (uint64_t i = 0; i < w->n_t && ok; i++) {
        const wtensor *t = &w->t[i];
        if (t->fill) {
            void *bytes = malloc(t->nbytes ? t->nbytes : 1);
            ok = bytes && t->fill(t->fill_ctx, t->name, bytes, t->nbytes) == 0 && fwrite(bytes, 1, t->nbytes, fp) == t->nbytes;
            free(bytes);
        } else if (t->data) {
            ok = fwrite(t->data, 1, t->nbytes, fp) == t->nbytes;
        } else {
            ok = write_zeros(fp, t->nbytes);
        }
        size_t tpad = (size_t)(align_up(t->nbytes, w->alignment) - t->nbytes);
        if (ok && i + 1 < w->n_t) ok = write_zeros(fp, tpad);
    }
    if (fclose(fp) != 0) ok = 0;
    if (!ok) return err_set(err, WHALE_E_IO, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
