/* gguf.c — GGUF reader: header parsing and validation over a mapped file, typed metadata
 * access. The writer lives in gguf_write.c.
 *
 * Layout (little-endian): magic u32 "GGUF", version u32 (2 or 3), n_tensors u64, n_kv u64,
 * then n_kv × {key string, type u32, value}, then n_tensors × {name string, n_dims u32,
 * ne u64[n_dims], type u32, offset u64}, padding to `general.alignment`, then tensor data.
 * A string is {u64 length, bytes}; an array is {elem type u32, count u64, elements}. */
#include "formats/gguf.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/cursor.h"
#include "base/err.h"
#include "base/utf8.h"

static const size_t type_size[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = 1,  [GGUF_TYPE_INT8] = 1,    [GGUF_TYPE_UINT16] = 2,
    [GGUF_TYPE_INT16] = 2,  [GGUF_TYPE_UINT32] = 4,  [GGUF_TYPE_INT32] = 4,
    [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,   [GGUF_TYPE_STRING] = 0,
    [GGUF_TYPE_ARRAY] = 0,  [GGUF_TYPE_UINT64] = 8,  [GGUF_TYPE_INT64] = 8,
    [GGUF_TYPE_FLOAT64] = 8,
};
static const char *const type_names[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

size_t gguf_type_size(gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? type_size[t] : 0;
}
const char *gguf_type_name(gguf_type t) {
    return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

/* ---- parsing ------------------------------------------------------------------------- */

/* Read a string; returns 0 or sets a message. `what` names it for errors. */
static int read_str(cursor *c, gguf_str *out, uint64_t max_len, const char *what, whale_err *err) {
    uint64_t n = cursor_u64(c);
    if (c->bad) return err_set(err, WHALE_E_FORMAT, "%s: file ends inside its length (truncated?)", what);
    if (n > max_len)
        return err_set(err, WHALE_E_FORMAT, "%s: length %llu exceeds the limit %llu", what,
                       (unsigned long long)n, (unsigned long long)max_len);
    if (n > cursor_left(c))
        return err_set(err, WHALE_E_FORMAT, "%s: length %llu runs past the end of the file (truncated?)",
                       what, (unsigned long long)n);
    out->s = (const char *)cursor_take(c, (size_t)n);
    out->n = n;
    return 0;
}

/* Walk (and so validate) one value of type t. For a top-level string array, str_offs (if not
 * NULL) receives an owned index of element offsets. */
static int walk_value(cursor *c, gguf_type t, int depth, gguf_type *arr_type, uint64_t *arr_n, uint64_t **str_offs, whale_err *err) {
    if ((unsigned)t >= GGUF_TYPE_COUNT)
        return err_set(err, WHALE_E_FORMAT, "unknown value type %u", (unsigned)t);
    if (t == GGUF_TYPE_STRING) {
        gguf_str s;
        return read_str(c, &s, UINT64_MAX, "string value", err);
    }
    if (t != GGUF_TYPE_ARRAY) {
        if (!cursor_take(c, type_size[t])) return err_set(err, WHALE_E_FORMAT, "file ends inside a value (truncated?)");
        return 0;
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return err_set(err, WHALE_E_FORMAT, "arrays nested deeper than %d", GGUF_MAX_ARRAY_DEPTH);
    uint32_t et = cursor_u32(c);
    uint64_t n = cursor_u64(c);
    if (c->bad) return err_set(err, WHALE_E_FORMAT, "file ends inside an array header (truncated?)");
    if (et >= GGUF_TYPE_COUNT) return err_set(err, WHALE_E_FORMAT, "array of unknown type %u", et);
    if (arr_type) *arr_type = (gguf_type)et;
    if (arr_n) *arr_n = n;
    const unsigned char *base = c->p + c->pos; /* offsets are relative to the first element */
    if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY) {
        if (n > cursor_left(c) / type_size[et])
            return err_set(err, WHALE_E_FORMAT, "array of %llu %s runs past the end of the file (truncated?)",
                           (unsigned long long)n, type_names[et]);
        cursor_take(c, (size_t)(n * type_size[et]));
        return 0;
    }
    /* Each string element needs >= 8 bytes, each nested array >= 12: bound n before any
     * allocation so a forged count cannot make us allocate more than the file holds. */
    size_t min_elem = et == GGUF_TYPE_STRING ? 8 : 12;
    if (n > cursor_left(c) / min_elem)
        return err_set(err, WHALE_E_FORMAT, "array count %llu is larger than the file can hold (truncated or corrupt?)",
                       (unsigned long long)n);
    uint64_t *offs = NULL;
    if (str_offs && et == GGUF_TYPE_STRING) {
        offs = malloc((size_t)(n ? n : 1) * sizeof *offs);
        if (!offs) return err_set(err, WHALE_E_NOMEM, "out of memory for a %llu-element array", (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (offs) offs[i] = (uint64_t)(c->p + c->pos - base);
        int rc = walk_value(c, (gguf_type)et, depth + 1, NULL, NULL, NULL, err);
        if (rc) {
            free(offs);
            return err_prefix(err, "element %llu", (unsigned long long)i);
        }
    }
    if (str_offs) *str_offs = offs;
    return 0;
}

static int check_utf8(const gguf_str *s, const char *what, uint64_t index, whale_err *err) {
    if (!utf8_valid(s->s, (size_t)s->n))
        return err_set(err, WHALE_E_FORMAT, "%s %llu is not valid UTF-8", what, (unsigned long long)index);
    if (memchr(s->s, 0, (size_t)s->n))
        return err_set(err, WHALE_E_FORMAT, "%s %llu contains a NUL byte", what, (unsigned long long)index);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    const gguf_str *x = *(const gguf_str *const *)a, *y = *(const gguf_str *const *)b;
    size_t n = x->n < y->n ? (size_t)x->n : (size_t)y->n;
    int r = n ? memcmp(x->s, y->s, n) : 0;
    return r ? r : (x->n > y->n) - (x->n < y->n);
}

/* Fail if two of the n names (a gguf_str at byte `off` of each `stride`-byte record) are equal.
 * O(n log n). Returns 0, WHALE_E_FORMAT ("<what> 'x' appears twice") or WHALE_E_NOMEM. */
static int check_unique(const void *recs, size_t stride, size_t off, uint64_t n, const char *what,
                        whale_err *err) {
    if (n < 2) return 0;
    const gguf_str **v = malloc((size_t)n * sizeof *v);
    if (!v) return err_set(err, WHALE_E_NOMEM, "out of memory checking %llu names", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        v[i] = (const gguf_str *)((const unsigned char *)recs + (size_t)i * stride + off);
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    int rc = 0;
    for (uint64_t i = 1; i < n && !rc; i++)
        if (!cmp_str(&v[i - 1], &v[i]))
            rc = err_set(err, WHALE_E_FORMAT, "%s '%.*s' appears twice", what, (int)v[i]->n, v[i]->s);
    free(v);
    return rc;
}

static int parse(gguf_file *f, int flags, whale_err *err) {
    cursor c = cursor_make(f->map.data, f->map.size);
    uint32_t magic = cursor_u32(&c);
    if (c.bad) return err_set(err, WHALE_E_FORMAT, "file is %zu bytes, too short for a GGUF header", f->map.size);
    if (magic != GGUF_MAGIC) {
        if (f->map.size >= 8 && f->map.data[0] != 'G' && f->map.data[7] == 0 && f->map.data[6] == 0)
            return err_set(err, WHALE_E_FORMAT, "not a GGUF file (wrong magic; is it a safetensors file?)");
        return err_set(err, WHALE_E_FORMAT, "not a GGUF file (wrong magic)");
    }
    f->version = cursor_u32(&c);
    if (!c.bad && f->version == 1)
        return err_set(err, WHALE_E_UNSUPPORTED, "GGUF version 1 is not supported (convert it with a current tool)");
    if (!c.bad && f->version != 2 && f->version != 3)
        return err_set(err, WHALE_E_UNSUPPORTED, "unknown GGUF version %u (Whale reads 2 and 3)", f->version);
    f->n_tensors = cursor_u64(&c);
    f->n_kv = cursor_u64(&c);
    if (c.bad) return err_set(err, WHALE_E_FORMAT, "file ends inside the GGUF header (truncated?)");
    /* A kv needs >= 8 (key len) + 4 (type) + 1 bytes, a tensor info >= 8 + 4 + 4 + 8. */
    if (f->n_kv > cursor_left(&c) / 13)
        return err_set(err, WHALE_E_FORMAT, "metadata count %llu is larger than the file can hold (truncated or corrupt?)",
                       (unsigned long long)f->n_kv);
    if (f->n_tensors > cursor_left(&c) / 24)
        return err_set(err, WHALE_E_FORMAT, "tensor count %llu is larger than the file can hold (truncated or corrupt?)",
                       (unsigned long long)f->n_tensors);
    f->kv = calloc((size_t)(f->n_kv ? f->n_kv : 1), sizeof *f->kv);
    f->tensors = calloc((size_t)(f->n_tensors ? f->n_tensors : 1), sizeof *f->tensors);
    if (!f->kv || !f->tensors) return err_set(err, WHALE_E_NOMEM, "out of memory for the header");

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        int rc = read_str(&c, &kv->key, GGUF_MAX_KEY_LEN, "key", err);
        if (!rc) rc = check_utf8(&kv->key, "key", i, err);
        if (rc) return err_prefix(err, "metadata entry %llu", (unsigned long long)i);
        uint32_t t = cursor_u32(&c);
        if (c.bad) return err_set(err, WHALE_E_FORMAT, "metadata '%.*s': file ends before its type (truncated?)",
                                  (int)kv->key.n, kv->key.s);
        kv->type = (gguf_type)t;
        kv->val = c.p + c.pos;
        rc = walk_value(&c, kv->type, 0, &kv->arr_type, &kv->arr_n, &kv->str_offs, err);
        if (rc) return err_prefix(err, "metadata '%.*s'", (int)kv->key.n, kv->key.s);
        if (t == GGUF_TYPE_ARRAY) kv->val += 12; /* point at the first element */
    }
    /* Sorted, not pairwise: a forged file can hold ~size/13 keys, and n^2 compares of those
     * would let a few megabytes stall the reader for hours. */
    int rc = check_unique(f->kv, sizeof *f->kv, offsetof(gguf_kv, key), f->n_kv, "metadata key", err);
    if (rc) return rc;
    const gguf_kv *al = gguf_find(f, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32)
            return err_set(err, WHALE_E_FORMAT, "general.alignment has type %s, expected u32", gguf_type_name(al->type));
        uint32_t a;
        memcpy(&a, al->val, 4);
        if (a == 0 || (a & (a - 1)) || a > (1u << 20))
            return err_set(err, WHALE_E_FORMAT, "general.alignment %u is not a power of two up to 1 MiB", a);
        f->alignment = a;
    }

    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        rc = read_str(&c, &t->name, GGUF_MAX_KEY_LEN, "tensor name", err);
        if (!rc) rc = check_utf8(&t->name, "tensor name", i, err);
        if (rc) return err_prefix(err, "tensor %llu", (unsigned long long)i);
        uint32_t nd = cursor_u32(&c);
        if (c.bad) return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': file ends inside its info (truncated?)", (int)t->name.n, t->name.s);
        if (nd == 0 || nd > GGUF_MAX_DIMS)
            return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': %u dimensions (expected 1 to %d)",
                           (int)t->name.n, t->name.s, nd, GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        int64_t nel = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v = cursor_u64(&c);
            if (v > (uint64_t)INT64_MAX || (v && (uint64_t)nel > (uint64_t)INT64_MAX / v))
                return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': shape overflows (dimension %u is %llu)",
                               (int)t->name.n, t->name.s, d, (unsigned long long)v);
            t->ne[d] = (int64_t)v;
            nel *= (int64_t)v;
        }
        uint32_t ty = cursor_u32(&c);
        t->offset = cursor_u64(&c);
        if (c.bad) return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': file ends inside its info (truncated?)", (int)t->name.n, t->name.s);
        const dtype_info *di = dtype_get((int)ty);
        if (!di || ty >= 1000)
            return err_set(err, WHALE_E_UNSUPPORTED, "tensor '%.*s': unknown tensor type %u (made by a newer tool?)",
                           (int)t->name.n, t->name.s, ty);
        t->type = (whale_dtype)ty;
        if (t->ne[0] % di->block_elems)
            return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': row of %lld elements is not a whole number of %s blocks (%lld)",
                           (int)t->name.n, t->name.s, (long long)t->ne[0], di->name, (long long)di->block_elems);
        if (dtype_bytes((int)ty, nel, &t->nbytes))
            return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': size overflows", (int)t->name.n, t->name.s);
        if (t->offset % f->alignment)
            return err_set(err, WHALE_E_FORMAT, "tensor '%.*s': data offset %llu is not aligned to %u",
                           (int)t->name.n, t->name.s, (unsigned long long)t->offset, f->alignment);
    }
    uint64_t pos = c.pos;
    uint64_t data = (pos + f->alignment - 1) / f->alignment * f->alignment;
    f->data_offset = data;
    uint64_t avail = f->map.size > data ? f->map.size - data : 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            if (flags & GGUF_OPEN_METADATA_ONLY) {
                f->n_missing++;
                continue;
            }
            return err_set(err, WHALE_E_FORMAT,
                           "tensor '%.*s': data (%zu bytes at offset %llu) runs past the end of the file (truncated download?)",
                           (int)t->name.n, t->name.s, t->nbytes, (unsigned long long)(data + t->offset));
        }
        t->data = f->map.data + data + t->offset;
    }
    return 0;
}

static int finish_open(gguf_file *f, int flags, whale_err *err) {
    int rc = parse(f, flags, err);
    if (!rc)
        rc = check_unique(f->tensors, sizeof *f->tensors, offsetof(gguf_tensor, name), f->n_tensors,
                          "tensor", err);
    if (rc) {
        char name[256];
        snprintf(name, sizeof name, "%s", f->map.path ? f->map.path : "?");
        gguf_close(f);
        return err_prefix(err, "%s", name);
    }
    return 0;
}

int gguf_open(gguf_file *f, const char *path, int flags, whale_err *err) {
    memset(f, 0, sizeof *f);
    int rc = mapfile_open(&f->map, path, err);
    if (rc) return rc;
    return finish_open(f, flags, err);
}

int gguf_open_memory(gguf_file *f, const void *data, size_t size, int flags, whale_err *err) {
    memset(f, 0, sizeof *f);
    int rc = mapfile_from_memory(&f->map, data, size, "<memory>", err);
    if (rc) return rc;
    return finish_open(f, flags, err);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].str_offs);
    free(f->kv);
    free(f->tensors);
    mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

/* ---- lookups --------------------------------------------------------------------------- */

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    size_t n = strlen(key);
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key.n == n && !memcmp(f->kv[i].key.s, key, n)) return &f->kv[i];
    return NULL;
}

int64_t gguf_find_tensor_index(const gguf_file *f, const char *name) {
    size_t n = strlen(name);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].name.n == n && !memcmp(f->tensors[i].name.s, name, n)) return (int64_t)i;
    return -1;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = gguf_find_tensor_index(f, name);
    return i < 0 ? NULL : &f->tensors[i];
}

/* Read a scalar of integer type at p as int64; returns 0 or -1 (not an integer / u64 too big). */
static int scalar_i64(gguf_type t, const unsigned char *p, int64_t *out) {
    switch (t) {
    case GGUF_TYPE_UINT8: *out = p[0]; return 0;
    case GGUF_TYPE_INT8: *out = (int8_t)p[0]; return 0;
    case GGUF_TYPE_BOOL: *out = p[0] != 0; return 0;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v;
        return 0;
    }
    default: return -1;
    }
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, whale_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return WHALE_E_NOTFOUND;
    if (scalar_i64(kv->type, kv->val, out))
        return err_set(err, WHALE_E_FORMAT, "metadata '%s' has type %s, expected an integer", key, gguf_type_name(kv->type));
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, whale_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return WHALE_E_NOTFOUND;
    if (kv->type == GGUF_TYPE_FLOAT32) { memcpy(out, kv->val, 4); return 0; }
    if (kv->type == GGUF_TYPE_FLOAT64) { double d; memcpy(&d, kv->val, 8); *out = (float)d; return 0; }
    int64_t i;
    if (!scalar_i64(kv->type, kv->val, &i)) { *out = (float)i; return 0; }
    return err_set(err, WHALE_E_FORMAT, "metadata '%s' has type %s, expected a number", key, gguf_type_name(kv->type));
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out, whale_err *err) {
    int64_t v = 0;
    int rc = gguf_get_i64(f, key, &v, err);
    if (!rc) *out = v != 0;
    return rc;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, whale_err *err) {
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return WHALE_E_NOTFOUND;
    if (kv->type != GGUF_TYPE_STRING)
        return err_set(err, WHALE_E_FORMAT, "metadata '%s' has type %s, expected a string", key, gguf_type_name(kv->type));
    uint64_t n;
    memcpy(&n, kv->val, 8);
    out->s = (const char *)kv->val + 8;
    out->n = n;
    return 0;
}

gguf_str gguf_arr_str(const gguf_kv *kv, uint64_t i) {
    gguf_str s;
    const unsigned char *p = kv->val + kv->str_offs[i];
    memcpy(&s.n, p, 8);
    s.s = (const char *)p + 8;
    return s;
}

/* double -> int64 without the undefined behaviour of an out-of-range cast: NaN gives 0,
 * values past the range saturate (a file's floats are untrusted). */
static int64_t f64_to_i64(double x) {
    if (x != x) return 0;
    if (x >= 9223372036854775808.0) return INT64_MAX;
    if (x < -9223372036854775808.0) return INT64_MIN;
    return (int64_t)x;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    int64_t v = 0;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) { float x; memcpy(&x, kv->val + 4 * i, 4); return f64_to_i64(x); }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) { double x; memcpy(&x, kv->val + 8 * i, 8); return f64_to_i64(x); }
    if (scalar_i64(kv->arr_type, kv->val + type_size[kv->arr_type] * i, &v)) return 0;
    return v;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    if (kv->arr_type == GGUF_TYPE_FLOAT32) { float x; memcpy(&x, kv->val + 4 * i, 4); return x; }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) { double x; memcpy(&x, kv->val + 8 * i, 8); return x; }
    return (double)gguf_arr_i64(kv, i);
}
