/* test_gguf.c — the GGUF reader and writer: writer -> reader round trips of every metadata
 * type, nested arrays, alignments and tensor dtypes; typed getters; copying metadata between
 * files; the real DeepSeek vocab file; and hostile headers forged byte by byte, each of which
 * must be rejected with the file's path and a specific reason (never a crash, never a huge
 * allocation: ASan aborts on allocations past its limit). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "check.h"
#include "formats/gguf.h"

/* ---- temp files ---------------------------------------------------------------------------- */

static char tmp_dir[64];
static char tmp_files[256][256];
static int n_tmp_files;

/* Path of `name` inside the test's temp dir (remembered so main can remove it). */
static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "%.63s/%.100s", tmp_dir, name);
    for (int i = 0; i < n_tmp_files; i++)
        if (!strcmp(tmp_files[i], p)) return p;
    if (n_tmp_files < 256) snprintf(tmp_files[n_tmp_files++], 256, "%s", p);
    return p;
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    fclose(f);
    return w == n ? 0 : -1;
}

/* Whole file into a malloc'd buffer (NULL on failure). */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* ---- forging raw GGUF bytes ---------------------------------------------------------------- */

/* A growing byte buffer: the tests write every header field by hand so any field can lie. */
typedef struct forge {
    unsigned char *p;
    size_t n, cap;
} forge;

static void fg_put(forge *g, const void *d, size_t n) {
    if (g->n + n > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->n + n) cap *= 2;
        unsigned char *p = realloc(g->p, cap);
        if (!p) abort(); /* a test-side OOM is not a result */
        g->p = p;
        g->cap = cap;
    }
    if (n) memcpy(g->p + g->n, d, n);
    g->n += n;
}
static void fg_u8(forge *g, uint8_t v) { fg_put(g, &v, 1); }
static void fg_u32(forge *g, uint32_t v) { fg_put(g, &v, 4); }
static void fg_u64(forge *g, uint64_t v) { fg_put(g, &v, 8); }
static void fg_strn(forge *g, const void *s, uint64_t n) {
    fg_u64(g, n);
    fg_put(g, s, (size_t)n);
}
static void fg_str(forge *g, const char *s) { fg_strn(g, s, strlen(s)); }
static void fg_zeros(forge *g, size_t n) {
    for (size_t i = 0; i < n; i++) fg_u8(g, 0);
}
static void fg_pad(forge *g, size_t align) { fg_zeros(g, (align - g->n % align) % align); }
static void fg_free(forge *g) {
    free(g->p);
    memset(g, 0, sizeof *g);
}
static void fg_head(forge *g, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    fg_u32(g, GGUF_MAGIC);
    fg_u32(g, version);
    fg_u64(g, n_tensors);
    fg_u64(g, n_kv);
}
static void fg_kv_u32(forge *g, const char *key, uint32_t v) {
    fg_str(g, key);
    fg_u32(g, GGUF_TYPE_UINT32);
    fg_u32(g, v);
}
static void fg_tinfo(forge *g, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                     uint64_t off) {
    fg_str(g, name);
    fg_u32(g, nd);
    for (uint32_t d = 0; d < nd && d <= GGUF_MAX_DIMS; d++) fg_u64(g, ne[d]); /* ne has <= 5 */
    fg_u32(g, type);
    fg_u64(g, off);
}
/* The body (elem type, count, elements) of `levels` arrays nested one inside the next; the
 * innermost holds one u8. */
static void fg_nested(forge *g, int levels) {
    if (levels <= 1) {
        fg_u32(g, GGUF_TYPE_UINT8);
        fg_u64(g, 1);
        fg_u8(g, 7);
        return;
    }
    fg_u32(g, GGUF_TYPE_ARRAY);
    fg_u64(g, 1);
    fg_nested(g, levels - 1);
}

/* A valid file to corrupt: one kv (u32), one F32 tensor "t" of 4 elements, its data. */
static void fg_base(forge *g) {
    fg_head(g, 3, 1, 1);
    fg_kv_u32(g, "a.b", 5);
    uint64_t ne[1] = {4};
    fg_tinfo(g, "t", 1, ne, WHALE_DTYPE_F32, 0);
    fg_pad(g, 32);
    for (int i = 0; i < 16; i++) fg_u8(g, (uint8_t)i);
}

/* Write g to <name>.gguf and open it (and the same bytes from memory); both must fail with
 * a message naming the file and containing `want`. */
static void expect_bad_flags(const forge *g, const char *name, int flags, const char *want) {
    char fname[96];
    snprintf(fname, sizeof fname, "%s.gguf", name);
    const char *path = tmp_path(fname);
    if (write_file(path, g->p, g->n)) {
        CHECKF(0, "%s: cannot write", path);
        return;
    }
    gguf_file f;
    whale_err err = {0};
    int rc = gguf_open(&f, path, flags, &err);
    CHECKF(rc < 0, "%s: opened (rc %d)", name, rc);
    CHECKF(strstr(err.msg, path) != NULL, "%s: message lacks the path: %s", name, err.msg);
    CHECKF(strstr(err.msg, want) != NULL, "%s: message lacks '%s': %s", name, want, err.msg);
    CHECKF(f.kv == NULL && f.tensors == NULL && f.map.data == NULL, "%s: not left closed", name);
    gguf_close(&f);
    whale_err err2 = {0};
    int rc2 = gguf_open_memory(&f, g->p, g->n, flags, &err2);
    CHECKF(rc2 == rc, "%s: memory rc %d vs file rc %d", name, rc2, rc);
    CHECKF(strstr(err2.msg, "<memory>") && strstr(err2.msg, want), "%s: memory message: %s", name, err2.msg);
    gguf_close(&f);
}
static void expect_bad(const forge *g, const char *name, const char *want) {
    expect_bad_flags(g, name, 0, want);
}
/* The same, and the message also contains want2. */
static void expect_bad2(const forge *g, const char *name, const char *want, const char *want2) {
    expect_bad_flags(g, name, 0, want);
    expect_bad_flags(g, name, 0, want2);
}

/* g must open (the forged base files are valid before they are corrupted). */
static void expect_ok(const forge *g, const char *name) {
    gguf_file f;
    whale_err err = {0};
    int rc = gguf_open_memory(&f, g->p, g->n, 0, &err);
    CHECKF(rc == 0, "%s: %s", name, err.msg);
    gguf_close(&f);
}

/* ---- round trip ---------------------------------------------------------------------------- */

static unsigned char pattern_byte(size_t tensor, size_t i) {
    return (unsigned char)(i * 31 + tensor * 7 + (i >> 8));
}

/* Tensors the round-trip files carry: dtypes x dims 1..4. */
static const struct {
    const char *name;
    whale_dtype type;
    int n_dims;
    int64_t ne[4];
} rt_tensors[] = {
    {"tok_embd.weight", WHALE_DTYPE_F32, 1, {7, 1, 1, 1}},
    {"blk.0.attn_q.weight", WHALE_DTYPE_F16, 2, {3, 5, 1, 1}},
    {"blk.0.ffn_up.weight", WHALE_DTYPE_Q8_0, 3, {64, 2, 3, 1}},
    {"blk.0.ffn_down.weight", WHALE_DTYPE_Q4_K, 4, {256, 1, 2, 2}},
    {"zeros", WHALE_DTYPE_F32, 1, {5, 1, 1, 1}}, /* written with data == NULL */
};
#define N_RT (sizeof rt_tensors / sizeof rt_tensors[0])

static const char *const rt_strs[] = {"", "hello", "Ġthe", "日本語", "\xF0\x9F\x90\xB3", "a b\tc"};
#define N_RT_STRS (sizeof rt_strs / sizeof rt_strs[0])

/* Write the round-trip file to path with general.alignment `align` (0: leave it unset). */
static int write_rt(const char *path, uint32_t align, unsigned char **datas) {
    gguf_writer *w = gguf_writer_init();
    if (!w) return -1;
    uint8_t u8 = 250;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    uint64_t u64 = 0xFFFFFFFFFFFFFFF0ull, u64s = 1234567890123ull;
    int64_t i64 = INT64_MIN + 1;
    double f64 = -1.0 / 3.0;
    int rc = 0;
    rc |= gguf_writer_add_str(w, "general.architecture", "deepseek2");
    if (align) rc |= gguf_writer_add_u32(w, "general.alignment", align);
    rc |= gguf_writer_add_scalar(w, "t.u8", GGUF_TYPE_UINT8, &u8);
    rc |= gguf_writer_add_scalar(w, "t.i8", GGUF_TYPE_INT8, &i8);
    rc |= gguf_writer_add_scalar(w, "t.u16", GGUF_TYPE_UINT16, &u16);
    rc |= gguf_writer_add_scalar(w, "t.i16", GGUF_TYPE_INT16, &i16);
    rc |= gguf_writer_add_u32(w, "t.u32", 4000000000u);
    rc |= gguf_writer_add_i32(w, "t.i32", -7);
    rc |= gguf_writer_add_f32(w, "t.f32", 1.5e-3f);
    rc |= gguf_writer_add_bool(w, "t.bool", 1);
    rc |= gguf_writer_add_bool(w, "t.bool0", 0);
    rc |= gguf_writer_add_str(w, "t.str", "hello world");
    rc |= gguf_writer_add_str(w, "t.empty", "");
    rc |= gguf_writer_add_str(w, "t.utf8", "Whale 🐳 鲸鱼 ü");
    rc |= gguf_writer_add_scalar(w, "t.u64", GGUF_TYPE_UINT64, &u64);
    rc |= gguf_writer_add_scalar(w, "t.u64s", GGUF_TYPE_UINT64, &u64s);
    rc |= gguf_writer_add_scalar(w, "t.i64", GGUF_TYPE_INT64, &i64);
    rc |= gguf_writer_add_scalar(w, "t.f64", GGUF_TYPE_FLOAT64, &f64);
    int32_t ai32[5] = {1, -2, 3, INT32_MIN, INT32_MAX};
    float af32[3] = {0.5f, -2.25f, 1e30f};
    uint8_t au8[4] = {0, 1, 254, 255};
    double af64[2] = {NAN, -1e300};
    rc |= gguf_writer_add_arr(w, "t.arr_i32", GGUF_TYPE_INT32, ai32, 5);
    rc |= gguf_writer_add_arr(w, "t.arr_f32", GGUF_TYPE_FLOAT32, af32, 3);
    rc |= gguf_writer_add_arr(w, "t.arr_u8", GGUF_TYPE_UINT8, au8, 4);
    rc |= gguf_writer_add_arr(w, "t.arr_f64", GGUF_TYPE_FLOAT64, af64, 2);
    rc |= gguf_writer_add_arr(w, "t.arr_empty", GGUF_TYPE_UINT32, NULL, 0);
    rc |= gguf_writer_add_arr_str(w, "t.arr_str", rt_strs, NULL, N_RT_STRS);
    const char *withnul[2] = {"a\0b", "xyz"};
    size_t lens[2] = {3, 2};
    rc |= gguf_writer_add_arr_str(w, "t.arr_str_lens", withnul, lens, 2);
    rc |= gguf_writer_add_arr_str(w, "t.arr_str_empty", NULL, NULL, 0);
    for (size_t t = 0; t < N_RT; t++) {
        int64_t nel = 1;
        for (int d = 0; d < 4; d++) nel *= rt_tensors[t].ne[d];
        size_t nb = 0;
        dtype_bytes(rt_tensors[t].type, nel, &nb);
        datas[t] = malloc(nb);
        for (size_t i = 0; i < nb; i++) datas[t][i] = pattern_byte(t, i);
        rc |= gguf_writer_add_tensor(w, rt_tensors[t].name, rt_tensors[t].type, rt_tensors[t].n_dims,
                                     rt_tensors[t].ne, t == N_RT - 1 ? NULL : datas[t]);
    }
    whale_err err = {0};
    if (!rc) rc = gguf_writer_write(w, path, &err);
    if (rc) fprintf(stderr, "write_rt: %d %s\n", rc, err.msg);
    gguf_writer_free(w);
    return rc;
}

static void check_rt_file(const gguf_file *f, uint32_t align, unsigned char **datas) {
    whale_err err = {0};
    int64_t i = 0;
    float x = 0;
    gguf_str s;
    CHECK(f->version == 3);
    CHECK(f->alignment == (align ? align : 32));
    CHECK(f->data_offset % f->alignment == 0);
    CHECK(f->n_missing == 0);
    CHECK(gguf_get_i64(f, "t.u8", &i, &err) == 0 && i == 250);
    CHECK(gguf_get_i64(f, "t.i8", &i, &err) == 0 && i == -100);
    CHECK(gguf_get_i64(f, "t.u16", &i, &err) == 0 && i == 65000);
    CHECK(gguf_get_i64(f, "t.i16", &i, &err) == 0 && i == -32000);
    CHECK(gguf_get_i64(f, "t.u32", &i, &err) == 0 && i == 4000000000ll);
    CHECK(gguf_get_i64(f, "t.i32", &i, &err) == 0 && i == -7);
    CHECK(gguf_get_i64(f, "t.u64s", &i, &err) == 0 && i == 1234567890123ll);
    CHECK(gguf_get_i64(f, "t.i64", &i, &err) == 0 && i == INT64_MIN + 1);
    CHECK(gguf_get_i64(f, "t.bool", &i, &err) == 0 && i == 1);
    int b = -1;
    CHECK(gguf_get_bool(f, "t.bool", &b, &err) == 0 && b == 1);
    CHECK(gguf_get_bool(f, "t.bool0", &b, &err) == 0 && b == 0);
    CHECK(gguf_get_f32(f, "t.f32", &x, &err) == 0 && x == 1.5e-3f);
    CHECK(gguf_get_f32(f, "t.f64", &x, &err) == 0 && x == (float)(-1.0 / 3.0));
    const gguf_kv *kv = gguf_find(f, "t.f64");
    double d = 0;
    if (kv) memcpy(&d, kv->val, 8);
    CHECK(kv && kv->type == GGUF_TYPE_FLOAT64 && d == -1.0 / 3.0);
    kv = gguf_find(f, "t.u64");
    uint64_t u = 0;
    if (kv) memcpy(&u, kv->val, 8);
    CHECK(kv && kv->type == GGUF_TYPE_UINT64 && u == 0xFFFFFFFFFFFFFFF0ull);
    CHECK(gguf_get_str(f, "t.str", &s, &err) == 0 && s.n == 11 && !memcmp(s.s, "hello world", 11));
    CHECK(gguf_get_str(f, "t.empty", &s, &err) == 0 && s.n == 0);
    const char *u8s = "Whale 🐳 鲸鱼 ü";
    CHECK(gguf_get_str(f, "t.utf8", &s, &err) == 0 && s.n == strlen(u8s) && !memcmp(s.s, u8s, s.n));
    CHECK(gguf_get_str(f, "general.architecture", &s, &err) == 0 && s.n == 9);

    kv = gguf_find(f, "t.arr_i32");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_INT32 && kv->arr_n == 5);
    if (kv && kv->arr_n == 5) {
        CHECK(gguf_arr_i64(kv, 0) == 1 && gguf_arr_i64(kv, 1) == -2 && gguf_arr_i64(kv, 2) == 3);
        CHECK(gguf_arr_i64(kv, 3) == INT32_MIN && gguf_arr_i64(kv, 4) == INT32_MAX);
        CHECK(gguf_arr_f64(kv, 1) == -2.0);
    }
    kv = gguf_find(f, "t.arr_f32");
    CHECK(kv && kv->arr_type == GGUF_TYPE_FLOAT32 && kv->arr_n == 3);
    if (kv && kv->arr_n == 3) {
        CHECK(gguf_arr_f64(kv, 0) == 0.5 && gguf_arr_f64(kv, 1) == -2.25 && gguf_arr_f64(kv, 2) == (double)1e30f);
        CHECK(gguf_arr_i64(kv, 1) == -2);
        CHECK(gguf_arr_i64(kv, 2) == INT64_MAX); /* saturates, no UB */
    }
    kv = gguf_find(f, "t.arr_f64");
    CHECK(kv && kv->arr_type == GGUF_TYPE_FLOAT64 && kv->arr_n == 2);
    if (kv && kv->arr_n == 2) {
        CHECK(isnan(gguf_arr_f64(kv, 0)) && gguf_arr_i64(kv, 0) == 0);
        CHECK(gguf_arr_f64(kv, 1) == -1e300 && gguf_arr_i64(kv, 1) == INT64_MIN);
    }
    kv = gguf_find(f, "t.arr_u8");
    CHECK(kv && kv->arr_type == GGUF_TYPE_UINT8 && kv->arr_n == 4);
    if (kv && kv->arr_n == 4) CHECK(gguf_arr_i64(kv, 3) == 255 && gguf_arr_i64(kv, 2) == 254);
    kv = gguf_find(f, "t.arr_empty");
    CHECK(kv && kv->arr_type == GGUF_TYPE_UINT32 && kv->arr_n == 0);
    kv = gguf_find(f, "t.arr_str");
    CHECK(kv && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == N_RT_STRS && kv->str_offs);
    if (kv && kv->arr_n == N_RT_STRS && kv->str_offs)
        for (uint64_t k = 0; k < N_RT_STRS; k++) {
            gguf_str e = gguf_arr_str(kv, k);
            CHECKF(e.n == strlen(rt_strs[k]) && !memcmp(e.s, rt_strs[k], e.n), "element %llu", (unsigned long long)k);
        }
    kv = gguf_find(f, "t.arr_str_lens");
    CHECK(kv && kv->arr_n == 2 && kv->str_offs);
    if (kv && kv->arr_n == 2 && kv->str_offs) {
        gguf_str e0 = gguf_arr_str(kv, 0), e1 = gguf_arr_str(kv, 1);
        CHECK(e0.n == 3 && !memcmp(e0.s, "a\0b", 3)); /* values may hold NUL; keys may not */
        CHECK(e1.n == 2 && !memcmp(e1.s, "xy", 2));
    }
    kv = gguf_find(f, "t.arr_str_empty");
    CHECK(kv && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == 0);

    CHECK(f->n_tensors == N_RT);
    for (size_t t = 0; t < N_RT && t < f->n_tensors; t++) {
        const gguf_tensor *gt = gguf_find_tensor(f, rt_tensors[t].name);
        CHECKF(gt == &f->tensors[t], "%s", rt_tensors[t].name);
        CHECK(gguf_find_tensor_index(f, rt_tensors[t].name) == (int64_t)t);
        if (!gt) continue;
        CHECK(gt->type == rt_tensors[t].type && gt->n_dims == rt_tensors[t].n_dims);
        for (int dd = 0; dd < 4; dd++) CHECK(gt->ne[dd] == rt_tensors[t].ne[dd]);
        CHECKF(gt->offset % f->alignment == 0, "%s offset %llu", gt->name.s, (unsigned long long)gt->offset);
        int64_t nel = rt_tensors[t].ne[0] * rt_tensors[t].ne[1] * rt_tensors[t].ne[2] * rt_tensors[t].ne[3];
        size_t nb = 0;
        dtype_bytes(rt_tensors[t].type, nel, &nb);
        CHECK(gt->nbytes == nb);
        CHECK(gt->data == f->map.data + f->data_offset + gt->offset);
        if (!gt->data) continue;
        const unsigned char *p = gt->data;
        size_t bad = 0;
        for (size_t k = 0; k < nb; k++)
            if (p[k] != (t == N_RT - 1 ? 0 : datas[t][k])) bad++;
        CHECKF(bad == 0, "%s: %zu bytes differ", rt_tensors[t].name, bad);
    }
    CHECK(gguf_find_tensor(f, "nope") == NULL && gguf_find_tensor_index(f, "nope") == -1);
    CHECK(gguf_find(f, "nope") == NULL);
    CHECK(gguf_find(f, "t.u") == NULL); /* prefix of a key is not a key */
}

static void roundtrip(uint32_t align) {
    unsigned char *datas[N_RT] = {0};
    char name[64];
    snprintf(name, sizeof name, "rt_%u.gguf", align);
    const char *path = tmp_path(name);
    CHECK(write_rt(path, align, datas) == 0);
    gguf_file f;
    whale_err err = {0};
    int rc = gguf_open(&f, path, 0, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) {
        check_rt_file(&f, align, datas);
        struct stat st;
        stat(path, &st);
        /* the last tensor ends the file: no trailing padding */
        const gguf_tensor *last = &f.tensors[f.n_tensors - 1];
        CHECK((uint64_t)st.st_size == f.data_offset + last->offset + last->nbytes);
    }
    gguf_close(&f);
    for (size_t t = 0; t < N_RT; t++) free(datas[t]);
}

static void test_roundtrip_default(void) { roundtrip(0); }
static void test_roundtrip_align64(void) { roundtrip(64); }
/* Alignments past the writer's 4096-byte zero table: padding must be written in chunks
 * (ASan catches a read past the table). */
static void test_roundtrip_align_large(void) {
    roundtrip(8192);
    roundtrip(1u << 20);
}

static void test_writer_rejects(void) {
    static const uint32_t bad[] = {0, 3, 48, 1u << 21};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        gguf_writer *w = gguf_writer_init();
        CHECK(gguf_writer_add_u32(w, "general.alignment", bad[k]) == 0);
        whale_err err = {0};
        const char *path = tmp_path("wbad.gguf");
        CHECKF(gguf_writer_write(w, path, &err) == WHALE_E_ARG, "alignment %u", bad[k]);
        CHECKF(strstr(err.msg, "alignment") && strstr(err.msg, path), "%s", err.msg);
        gguf_writer_free(w);
    }
    gguf_writer *w = gguf_writer_init();
    int64_t ne[5] = {4, 1, 1, 1, 1};
    CHECK(gguf_writer_add_scalar(w, "s", GGUF_TYPE_STRING, "x") == WHALE_E_ARG);
    CHECK(gguf_writer_add_scalar(w, "s", GGUF_TYPE_ARRAY, "x") == WHALE_E_ARG);
    CHECK(gguf_writer_add_arr(w, "s", GGUF_TYPE_STRING, NULL, 0) == WHALE_E_ARG);
    CHECK(gguf_writer_add_arr(w, "s", GGUF_TYPE_UINT64, NULL, UINT64_MAX / 4) == WHALE_E_ARG);
    CHECK(gguf_writer_add_tensor(w, "t", WHALE_DTYPE_F32, 0, ne, NULL) == WHALE_E_ARG);
    CHECK(gguf_writer_add_tensor(w, "t", WHALE_DTYPE_F32, 5, ne, NULL) == WHALE_E_ARG);
    int64_t q[1] = {100};
    CHECK(gguf_writer_add_tensor(w, "t", WHALE_DTYPE_Q4_K, 1, q, NULL) == WHALE_E_ARG);
    int64_t neg[1] = {-4};
    CHECK(gguf_writer_add_tensor(w, "t", WHALE_DTYPE_F32, 1, neg, NULL) == WHALE_E_ARG);
    int64_t big[2] = {INT64_MAX / 2, 3};
    CHECK(gguf_writer_add_tensor(w, "t", WHALE_DTYPE_F32, 2, big, NULL) == WHALE_E_ARG);
    whale_err err = {0};
    CHECK(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err) == WHALE_E_IO);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.gguf") != NULL);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
}

/* ---- typed getters ------------------------------------------------------------------------- */

static void test_getters(void) {
    const char *path = tmp_path("getters.gguf");
    gguf_writer *w = gguf_writer_init();
    uint64_t big = (uint64_t)INT64_MAX + 1, max = (uint64_t)INT64_MAX;
    int8_t neg = -1;
    gguf_writer_add_scalar(w, "u64.big", GGUF_TYPE_UINT64, &big);
    gguf_writer_add_scalar(w, "u64.max", GGUF_TYPE_UINT64, &max);
    gguf_writer_add_scalar(w, "i8", GGUF_TYPE_INT8, &neg);
    gguf_writer_add_i32(w, "i32", -123456);
    gguf_writer_add_f32(w, "f32", 2.5f);
    gguf_writer_add_str(w, "str", "x");
    uint32_t arr[2] = {1, 2};
    gguf_writer_add_arr(w, "arr", GGUF_TYPE_UINT32, arr, 2);
    whale_err err = {0};
    CHECK(gguf_writer_write(w, path, &err) == 0);
    gguf_writer_free(w);
    gguf_file f;
    if (gguf_open(&f, path, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    int64_t i = 42;
    float x = 0;
    int b = 0;
    gguf_str s;
    err_clear(&err);
    CHECK(gguf_get_i64(&f, "u64.big", &i, &err) == WHALE_E_FORMAT && strstr(err.msg, "u64.big"));
    CHECK(gguf_get_i64(&f, "u64.max", &i, &err) == 0 && i == INT64_MAX);
    CHECK(gguf_get_i64(&f, "i8", &i, &err) == 0 && i == -1);
    CHECK(gguf_get_f32(&f, "i32", &x, &err) == 0 && x == -123456.0f);
    CHECK(gguf_get_f32(&f, "i8", &x, &err) == 0 && x == -1.0f);
    CHECK(gguf_get_f32(&f, "u64.max", &x, &err) == 0 && x == (float)INT64_MAX);
    err_clear(&err);
    CHECK(gguf_get_i64(&f, "f32", &i, &err) == WHALE_E_FORMAT && strstr(err.msg, "f32") && strstr(err.msg, "integer"));
    err_clear(&err);
    CHECK(gguf_get_i64(&f, "str", &i, &err) == WHALE_E_FORMAT && strstr(err.msg, "str"));
    err_clear(&err);
    CHECK(gguf_get_i64(&f, "arr", &i, &err) == WHALE_E_FORMAT && strstr(err.msg, "arr"));
    err_clear(&err);
    CHECK(gguf_get_f32(&f, "str", &x, &err) == WHALE_E_FORMAT && strstr(err.msg, "number"));
    err_clear(&err);
    CHECK(gguf_get_str(&f, "i32", &s, &err) == WHALE_E_FORMAT && strstr(err.msg, "string"));
    CHECK(gguf_get_bool(&f, "str", &b, &err) == WHALE_E_FORMAT);
    CHECK(gguf_get_str(&f, "str", &s, &err) == 0 && s.n == 1 && s.s[0] == 'x');
    i = 42;
    CHECK(gguf_get_i64(&f, "missing", &i, &err) == WHALE_E_NOTFOUND && i == 42);
    CHECK(gguf_get_f32(&f, "missing", &x, &err) == WHALE_E_NOTFOUND);
    CHECK(gguf_get_bool(&f, "missing", &b, &err) == WHALE_E_NOTFOUND);
    CHECK(gguf_get_str(&f, "missing", &s, &err) == WHALE_E_NOTFOUND);
    /* a NULL err is allowed */
    CHECK(gguf_get_i64(&f, "str", &i, NULL) == WHALE_E_FORMAT);
    gguf_close(&f);
    gguf_close(&f); /* closing twice is safe */

    CHECK(gguf_type_size(GGUF_TYPE_UINT64) == 8 && gguf_type_size(GGUF_TYPE_STRING) == 0);
    CHECK(gguf_type_size((gguf_type)99) == 0 && !strcmp(gguf_type_name((gguf_type)99), "?"));
    CHECK(!strcmp(gguf_type_name(GGUF_TYPE_FLOAT64), "f64"));
}

/* ---- copying metadata ---------------------------------------------------------------------- */

/* Copy every kv and tensor of src_path into dst_path; the bytes must come out identical (the
 * writer is deterministic, and src was made by it or forged to match its layout). */
static void copy_and_compare(const char *src_path, const char *dst_path) {
    gguf_file a, b;
    whale_err err = {0};
    if (gguf_open(&a, src_path, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    gguf_writer *w = gguf_writer_init();
    for (uint64_t i = 0; i < a.n_kv; i++) CHECK(gguf_writer_copy_kv(w, &a.kv[i]) == 0);
    for (uint64_t i = 0; i < a.n_tensors; i++) {
        const gguf_tensor *t = &a.tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.n, t->name.s);
        CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data) == 0);
    }
    CHECK(gguf_writer_write(w, dst_path, &err) == 0);
    gguf_writer_free(w);
    if (gguf_open(&b, dst_path, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        gguf_close(&a);
        return;
    }
    CHECK(a.n_kv == b.n_kv && a.alignment == b.alignment && a.data_offset == b.data_offset);
    for (uint64_t i = 0; i < a.n_kv && i < b.n_kv; i++) {
        const gguf_kv *x = &a.kv[i], *y = &b.kv[i];
        CHECK(x->key.n == y->key.n && !memcmp(x->key.s, y->key.s, x->key.n));
        CHECK(x->type == y->type && x->arr_type == y->arr_type && x->arr_n == y->arr_n);
        /* value bytes: from val to the next key (or the end of the kv section) */
        const unsigned char *xe = i + 1 < a.n_kv ? (const unsigned char *)a.kv[i + 1].key.s - 8
                                  : a.n_tensors ? (const unsigned char *)a.tensors[0].name.s - 8
                                                : a.map.data + a.data_offset;
        size_t n = (size_t)(xe - x->val);
        CHECKF(!memcmp(x->val, y->val, n), "kv %.*s differs", (int)x->key.n, x->key.s);
    }
    gguf_close(&a);
    gguf_close(&b);
    size_t na = 0, nb = 0;
    unsigned char *fa = read_all(src_path, &na), *fb = read_all(dst_path, &nb);
    CHECKF(fa && fb && na == nb && !memcmp(fa, fb, na), "%s and %s differ (%zu vs %zu bytes)", src_path, dst_path, na, nb);
    free(fa);
    free(fb);
}

static void test_copy_kv(void) {
    unsigned char *datas[N_RT] = {0};
    const char *p1 = tmp_path("copy_src.gguf");
    CHECK(write_rt(p1, 64, datas) == 0);
    for (size_t t = 0; t < N_RT; t++) free(datas[t]);
    copy_and_compare(p1, tmp_path("copy_dst.gguf"));
}

/* Nested arrays, forged in exactly the writer's layout (v3, alignment 32, no tensors). */
static void test_nested_arrays(void) {
    forge g = {0};
    fg_head(&g, 3, 0, 4);
    fg_str(&g, "nest.u32"); /* [[1, 2], [3]] */
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u64(&g, 2);
    fg_u32(&g, GGUF_TYPE_UINT32), fg_u64(&g, 2), fg_u32(&g, 1), fg_u32(&g, 2);
    fg_u32(&g, GGUF_TYPE_UINT32), fg_u64(&g, 1), fg_u32(&g, 3);
    fg_str(&g, "nest.str"); /* [["a", "βγ"], []] */
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u64(&g, 2);
    fg_u32(&g, GGUF_TYPE_STRING), fg_u64(&g, 2), fg_str(&g, "a"), fg_str(&g, "βγ");
    fg_u32(&g, GGUF_TYPE_STRING), fg_u64(&g, 0);
    fg_str(&g, "nest.deep"); /* as deep as allowed */
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_nested(&g, GGUF_MAX_ARRAY_DEPTH);
    fg_str(&g, "after");
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_str(&g, "still here");
    fg_pad(&g, 32);
    const char *path = tmp_path("nested.gguf");
    CHECK(write_file(path, g.p, g.n) == 0);
    fg_free(&g);

    gguf_file f;
    whale_err err = {0};
    if (gguf_open(&f, path, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    const gguf_kv *kv = gguf_find(&f, "nest.u32");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_ARRAY && kv->arr_n == 2);
    CHECK(kv && kv->str_offs == NULL);
    kv = gguf_find(&f, "nest.str");
    CHECK(kv && kv->arr_type == GGUF_TYPE_ARRAY && kv->arr_n == 2);
    kv = gguf_find(&f, "nest.deep");
    CHECK(kv && kv->arr_type == GGUF_TYPE_ARRAY && kv->arr_n == 1);
    gguf_str s;
    CHECK(gguf_get_str(&f, "after", &s, &err) == 0 && s.n == 10 && !memcmp(s.s, "still here", 10));
    int64_t i;
    CHECK(gguf_get_i64(&f, "nest.u32", &i, &err) == WHALE_E_FORMAT);
    gguf_close(&f);
    copy_and_compare(path, tmp_path("nested_copy.gguf"));
}

/* ---- the real vocab file ------------------------------------------------------------------- */

static void test_real_vocab(void) {
    const char *path = check_shared_need("vocab/ggml-vocab-deepseek-llm.gguf");
    if (!path) return;
    gguf_file f;
    whale_err err = {0};
    if (gguf_open(&f, path, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        return;
    }
    const gguf_kv *kv = gguf_find(&f, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n == 102400);
    if (kv && kv->arr_type == GGUF_TYPE_STRING && kv->str_offs) {
        uint64_t total = 0;
        for (uint64_t k = 0; k < kv->arr_n; k++) total += gguf_arr_str(kv, k).n;
        CHECK(total > 102400);
    }
    gguf_str s;
    CHECK(gguf_get_str(&f, "tokenizer.ggml.pre", &s, &err) == 0 && s.n == 12 && !memcmp(s.s, "deepseek-llm", 12));
    gguf_close(&f);

    /* a vocab file has no tensor data: metadata-only open of the same file agrees */
    CHECK(gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, &err) == 0 && f.n_missing == 0);
    gguf_close(&f);
}

/* ---- hostile files ------------------------------------------------------------------------- */

static void test_bad_magic_version(void) {
    forge g = {0};
    expect_bad(&g, "empty", "too short");
    fg_put(&g, "GGU", 3);
    expect_bad(&g, "three", "too short");
    fg_free(&g);

    fg_put(&g, "GGML", 4);
    fg_u32(&g, 3), fg_u64(&g, 0), fg_u64(&g, 0);
    expect_bad(&g, "magic", "wrong magic");
    fg_free(&g);

    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"}}";
    fg_u64(&g, strlen(hdr));
    fg_put(&g, hdr, strlen(hdr));
    expect_bad(&g, "safetensors", "safetensors");
    fg_free(&g);

    fg_head(&g, 1, 0, 0);
    expect_bad(&g, "v1", "version 1");
    fg_free(&g);
    fg_head(&g, 99, 0, 0);
    expect_bad(&g, "v99", "version 99");
    fg_free(&g);
    fg_u32(&g, GGUF_MAGIC), fg_u32(&g, 1); /* short, but the version is known: say so */
    expect_bad(&g, "v1short", "version 1");
    fg_free(&g);

    /* v2 is read */
    fg_head(&g, 2, 0, 0);
    expect_ok(&g, "v2");
    fg_free(&g);
}

static void test_truncated(void) {
    forge g = {0};
    fg_head(&g, 3, 0, 0);
    g.n = 12; /* ends inside n_tensors */
    expect_bad2(&g, "trunc_counts", "truncated", "GGUF header");
    fg_free(&g);
    fg_head(&g, 3, 0, 1);
    fg_zeros(&g, 12); /* one kv needs at least 13 bytes */
    expect_bad2(&g, "trunc_nkv", "truncated", "metadata count 1");
    fg_free(&g);

    /* (each case below keeps >= 13 bytes after the header, so the count check passes and
     * the parser gets to the field that is cut) */
    fg_head(&g, 3, 0, 1);
    fg_u64(&g, 10);
    fg_put(&g, "abcde", 5);
    expect_bad2(&g, "trunc_key", "truncated", "key: length 10 runs past the end");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "kkkkkkkk");
    g.n -= 1; /* ends inside the key */
    expect_bad2(&g, "trunc_key2", "truncated", "metadata entry 0: key");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "kkkkk");
    fg_u8(&g, GGUF_TYPE_STRING); /* type cut at 1 byte */
    expect_bad2(&g, "trunc_type", "truncated", "'kkkkk': file ends before its type");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_UINT32);
    fg_u8(&g, 1), fg_u8(&g, 2);
    expect_bad2(&g, "trunc_value", "truncated", "metadata 'k': file ends inside a value");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_u64(&g, 6);
    fg_put(&g, "abc", 3);
    expect_bad2(&g, "trunc_strval", "truncated", "string value: length 6");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_u64(&g, 3);
    fg_str(&g, "one");
    fg_u64(&g, 100);
    fg_put(&g, "tw", 2); /* element 1 cut short */
    fg_zeros(&g, 8);     /* enough bytes left that the count itself is plausible */
    expect_bad2(&g, "trunc_strarr", "truncated", "metadata 'k': element 1: string value: length 100");
    fg_free(&g);

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_UINT32);
    g.n -= 2; /* ends inside the array header */
    expect_bad2(&g, "trunc_arrhdr", "truncated", "array header");
    fg_free(&g);

    uint64_t ne[2] = {4, 4};
    fg_head(&g, 3, 1, 0);
    fg_tinfo(&g, "t", 2, ne, WHALE_DTYPE_F32, 0);
    g.n -= 12; /* ends inside the type/offset */
    expect_bad2(&g, "trunc_tinfo", "truncated", "tensor 't': file ends inside its info");
    fg_free(&g);
    fg_head(&g, 3, 1, 0);
    fg_tinfo(&g, "tttttttt", 2, ne, WHALE_DTYPE_F32, 0);
    g.n -= 20; /* ends inside the dims */
    expect_bad2(&g, "trunc_tinfo_dims", "truncated", "tensor 'tttttttt'");
    fg_free(&g);
    fg_head(&g, 3, 1, 0);
    fg_u64(&g, 40);
    fg_put(&g, "tensor.name", 11);
    fg_zeros(&g, 16);
    expect_bad2(&g, "trunc_tname", "truncated", "tensor 0: tensor name: length 40");
    fg_free(&g);

    fg_base(&g);
    expect_ok(&g, "base");
    g.n -= 1; /* tensor data one byte short */
    expect_bad2(&g, "trunc_data", "truncated", "tensor 't': data (16 bytes at offset 96)");
    fg_free(&g);

    /* every prefix of a valid writer file fails cleanly; with METADATA_ONLY, every prefix
     * that holds the whole header opens, with the tensors past the end counted missing */
    unsigned char *datas[N_RT] = {0};
    const char *path = tmp_path("prefix_src.gguf");
    CHECK(write_rt(path, 0, datas) == 0);
    for (size_t t = 0; t < N_RT; t++) free(datas[t]);
    size_t n = 0;
    unsigned char *full = read_all(path, &n);
    gguf_file f;
    whale_err err = {0};
    uint64_t data_off = 0;
    if (!full || gguf_open_memory(&f, full, n, 0, &err)) {
        CHECKF(0, "%s", err.msg);
        free(full);
        return;
    }
    data_off = f.data_offset;
    gguf_close(&f);
    size_t bad_full = 0, bad_meta = 0;
    for (size_t len = 0; len < n; len++) {
        err_clear(&err);
        int rc = gguf_open_memory(&f, full, len, 0, &err);
        if (rc == 0 || !strstr(err.msg, "<memory>") || (!strstr(err.msg, "truncated") && !strstr(err.msg, "too short")))
            bad_full++;
        gguf_close(&f);
        rc = gguf_open_memory(&f, full, len, GGUF_OPEN_METADATA_ONLY, &err);
        if (rc == 0) {
            if (f.n_missing == 0 || f.n_missing > N_RT) bad_meta++;
            for (uint64_t t = 0; t < f.n_tensors; t++) {
                const gguf_tensor *gt = &f.tensors[t];
                if (gt->data && (const unsigned char *)gt->data + gt->nbytes > f.map.data + len) bad_meta++;
            }
        } else if (len >= data_off) {
            bad_meta++; /* the whole header is there: must open */
        }
        gguf_close(&f);
    }
    CHECKF(bad_full == 0, "%zu prefixes misreported", bad_full);
    CHECKF(bad_meta == 0, "%zu metadata-only prefixes wrong", bad_meta);
    free(full);
}

static void test_metadata_only(void) {
    forge g = {0};
    fg_head(&g, 3, 3, 1);
    fg_kv_u32(&g, "a.b", 5);
    uint64_t ne[1] = {8};
    fg_tinfo(&g, "t0", 1, ne, WHALE_DTYPE_F32, 0);
    fg_tinfo(&g, "t1", 1, ne, WHALE_DTYPE_F32, 32);
    fg_tinfo(&g, "t2", 1, ne, WHALE_DTYPE_F32, 64);
    fg_pad(&g, 32);
    fg_zeros(&g, 32 + 20); /* t0 whole, t1 cut short, t2 absent */
    expect_bad(&g, "meta_trunc", "truncated");
    const char *path = tmp_path("meta_trunc.gguf");
    gguf_file f;
    whale_err err = {0};
    int rc = gguf_open(&f, path, GGUF_OPEN_METADATA_ONLY, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (!rc) {
        CHECK(f.n_missing == 2);
        CHECK(f.tensors[0].data != NULL && f.tensors[1].data == NULL && f.tensors[2].data == NULL);
        int64_t v = 0;
        CHECK(gguf_get_i64(&f, "a.b", &v, &err) == 0 && v == 5);
        CHECK(gguf_find_tensor(&f, "t2") == &f.tensors[2]);
    }
    gguf_close(&f);
    /* metadata-only does not excuse a broken header */
    g.n = 40;
    expect_bad_flags(&g, "meta_trunc_hdr", GGUF_OPEN_METADATA_ONLY, "truncated");
    fg_free(&g);

    CHECK(gguf_open(&f, tmp_path("does-not-exist.gguf"), 0, &err) == WHALE_E_IO);
    CHECK(strstr(err.msg, "does-not-exist.gguf") != NULL);
    gguf_close(&f);
    CHECK(gguf_open(&f, tmp_dir, 0, &err) == WHALE_E_IO);
    gguf_close(&f);
}

static void test_huge_counts(void) {
    forge g = {0};
    fg_head(&g, 3, 0, (uint64_t)1 << 63);
    fg_zeros(&g, 64);
    expect_bad(&g, "nkv_huge", "metadata count");
    fg_free(&g);
    fg_head(&g, 3, (uint64_t)1 << 40, 0);
    fg_zeros(&g, 64);
    expect_bad(&g, "ntensors_huge", "tensor count");
    fg_free(&g);
    fg_head(&g, 3, UINT64_MAX, UINT64_MAX);
    expect_bad(&g, "counts_max", "larger than the file");
    fg_free(&g);

    /* string value with length 2^63 */
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_u64(&g, (uint64_t)1 << 63);
    fg_zeros(&g, 16);
    expect_bad(&g, "str_huge", "past the end");
    fg_free(&g);
    /* key with length 2^63 */
    fg_head(&g, 3, 0, 1);
    fg_u64(&g, (uint64_t)1 << 63);
    fg_zeros(&g, 16);
    expect_bad(&g, "key_huge", "exceeds the limit");
    fg_free(&g);
    /* key just past the limit, with the bytes present */
    fg_head(&g, 3, 0, 1);
    fg_u64(&g, GGUF_MAX_KEY_LEN + 1);
    fg_zeros(&g, GGUF_MAX_KEY_LEN + 16);
    expect_bad(&g, "key_long", "exceeds the limit");
    fg_free(&g);
    /* tensor name with length 2^63 */
    fg_head(&g, 3, 1, 0);
    fg_u64(&g, (uint64_t)1 << 63);
    fg_zeros(&g, 32);
    expect_bad(&g, "tname_huge", "tensor name");
    fg_free(&g);

    /* u32 array of 2^62 elements: 2^62 * 4 wraps to 0 in 64 bits */
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_UINT32);
    fg_u64(&g, (uint64_t)1 << 62);
    fg_zeros(&g, 16);
    expect_bad(&g, "arr_huge", "runs past the end");
    fg_free(&g);
    /* u64 array whose count * 8 wraps to a small number */
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_UINT64);
    fg_u64(&g, ((uint64_t)1 << 61) + 1);
    fg_zeros(&g, 16);
    expect_bad(&g, "arr_wrap", "runs past the end");
    fg_free(&g);
    /* string array with a huge count: rejected before any allocation */
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_u64(&g, ((uint64_t)1 << 61) + 3);
    fg_zeros(&g, 64);
    expect_bad(&g, "strarr_huge", "larger than the file");
    fg_free(&g);
    /* array of arrays with a huge count */
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "k");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_u64(&g, UINT64_MAX);
    fg_zeros(&g, 64);
    expect_bad(&g, "arrarr_huge", "larger than the file");
    fg_free(&g);
}

static void test_bad_types_and_nesting(void) {
    forge g = {0};
    static const uint32_t bad_types[] = {13, 0xFFFFFFFFu, GGUF_TYPE_COUNT + 100};
    for (size_t k = 0; k < sizeof bad_types / sizeof bad_types[0]; k++) {
        fg_head(&g, 3, 0, 1);
        fg_str(&g, "k");
        fg_u32(&g, bad_types[k]);
        fg_zeros(&g, 16);
        char name[32], want[48];
        snprintf(name, sizeof name, "vtype_%u", bad_types[k]);
        snprintf(want, sizeof want, "unknown value type %u", bad_types[k]);
        expect_bad(&g, name, want);
        fg_free(&g);
        /* the same as an array's element type */
        fg_head(&g, 3, 0, 1);
        fg_str(&g, "k");
        fg_u32(&g, GGUF_TYPE_ARRAY);
        fg_u32(&g, bad_types[k]);
        fg_u64(&g, 1);
        fg_zeros(&g, 16);
        snprintf(name, sizeof name, "atype_%u", bad_types[k]);
        expect_bad(&g, name, "array of unknown type");
        fg_free(&g);
    }

    fg_head(&g, 3, 0, 1);
    fg_str(&g, "deep");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_nested(&g, GGUF_MAX_ARRAY_DEPTH);
    expect_ok(&g, "nest_max");
    fg_free(&g);
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "deep");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_nested(&g, GGUF_MAX_ARRAY_DEPTH + 1);
    expect_bad(&g, "nest_deep", "nested deeper");
    fg_free(&g);
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "deep");
    fg_u32(&g, GGUF_TYPE_ARRAY);
    fg_nested(&g, 10000); /* far deeper: still one message, no stack exhaustion */
    expect_bad(&g, "nest_deeper", "nested deeper");
    fg_free(&g);
}

static void test_bad_keys(void) {
    static const struct {
        const char *name;
        const char *bytes;
        size_t n;
        const char *want;
    } keys[] = {
        {"key_overlong", "a\xC0\x80z", 4, "UTF-8"},
        {"key_ff", "ab\xFF", 3, "UTF-8"},
        {"key_surrogate", "\xED\xA0\x80", 3, "UTF-8"},
        {"key_cut_seq", "x\xE6\x97", 3, "UTF-8"},
        {"key_nul", "a\0b", 3, "NUL"},
    };
    forge g = {0};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        fg_head(&g, 3, 0, 1);
        fg_strn(&g, keys[k].bytes, keys[k].n);
        fg_u32(&g, GGUF_TYPE_UINT8);
        fg_u8(&g, 1);
        expect_bad(&g, keys[k].name, keys[k].want);
        fg_free(&g);
        /* tensor names get the same check */
        uint64_t ne[1] = {1};
        fg_head(&g, 3, 1, 0);
        fg_u64(&g, keys[k].n);
        fg_put(&g, keys[k].bytes, keys[k].n);
        fg_u32(&g, 1), fg_u64(&g, ne[0]), fg_u32(&g, WHALE_DTYPE_F32), fg_u64(&g, 0);
        fg_pad(&g, 32);
        fg_zeros(&g, 4);
        char name[64];
        snprintf(name, sizeof name, "t%s", keys[k].name);
        expect_bad(&g, name, keys[k].want);
        fg_free(&g);
    }
    /* valid multi-byte keys are fine */
    fg_head(&g, 3, 0, 1);
    fg_kv_u32(&g, "ключ.日本", 1);
    expect_ok(&g, "key_utf8");
    fg_free(&g);

    fg_head(&g, 3, 0, 3);
    fg_kv_u32(&g, "a.b", 1);
    fg_kv_u32(&g, "a.c", 2);
    fg_kv_u32(&g, "a.b", 3);
    expect_bad(&g, "dup_key", "'a.b' appears twice");
    fg_free(&g);
    /* keys that differ only in length are not duplicates */
    fg_head(&g, 3, 0, 3);
    fg_kv_u32(&g, "a", 1);
    fg_kv_u32(&g, "ab", 2);
    fg_kv_u32(&g, "", 3);
    expect_ok(&g, "near_dup_key");
    fg_free(&g);

    uint64_t ne[1] = {8};
    fg_head(&g, 3, 3, 0);
    fg_tinfo(&g, "w", 1, ne, WHALE_DTYPE_F32, 0);
    fg_tinfo(&g, "x", 1, ne, WHALE_DTYPE_F32, 32);
    fg_tinfo(&g, "w", 1, ne, WHALE_DTYPE_F32, 64);
    fg_pad(&g, 32);
    fg_zeros(&g, 96);
    expect_bad(&g, "dup_tensor", "tensor 'w' appears twice");
    fg_free(&g);
}

/* One forged tensor info (after one kv) with the given fields and `data` bytes of data. */
static void fg_one_tensor(forge *g, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off, size_t data) {
    fg_head(g, 3, 1, 1);
    fg_kv_u32(g, "a.b", 1);
    fg_tinfo(g, "t", nd, ne, type, off);
    fg_pad(g, 32);
    fg_zeros(g, data);
}

static void test_bad_tensors(void) {
    forge g = {0};
    uint64_t ne[5] = {4, 2, 2, 2, 2};
    fg_one_tensor(&g, 4, ne, WHALE_DTYPE_F32, 0, 4 * 16 * 4);
    expect_ok(&g, "t4d");
    fg_free(&g);
    fg_one_tensor(&g, 0, ne, WHALE_DTYPE_F32, 0, 64);
    expect_bad(&g, "ndims0", "0 dimensions");
    fg_free(&g);
    fg_one_tensor(&g, 5, ne, WHALE_DTYPE_F32, 0, 256);
    expect_bad(&g, "ndims5", "5 dimensions");
    fg_free(&g);
    fg_one_tensor(&g, 0xFFFFFFFFu, ne, WHALE_DTYPE_F32, 0, 256);
    expect_bad(&g, "ndims_max", "dimensions");
    fg_free(&g);

    uint64_t ov[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, 2};
    fg_one_tensor(&g, 3, ov, WHALE_DTYPE_I8, 0, 64);
    expect_bad(&g, "dims_overflow", "overflows");
    fg_free(&g);
    uint64_t neg[2] = {4, UINT64_MAX};
    fg_one_tensor(&g, 2, neg, WHALE_DTYPE_F32, 0, 64);
    expect_bad(&g, "dims_neg", "overflows");
    fg_free(&g);
    uint64_t bytes_ov[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31}; /* 2^62 F32 = 2^64 bytes */
    fg_one_tensor(&g, 2, bytes_ov, WHALE_DTYPE_F32, 0, 64);
    expect_bad(&g, "bytes_overflow", "size overflows");
    fg_free(&g);
    uint64_t zero[2] = {0, (uint64_t)1 << 62}; /* zero elements: fine, no data */
    fg_one_tensor(&g, 2, zero, WHALE_DTYPE_F32, 0, 0);
    expect_ok(&g, "zero_elems");
    fg_free(&g);

    uint64_t q[2] = {255, 1};
    fg_one_tensor(&g, 2, q, WHALE_DTYPE_Q4_K, 0, 1024);
    expect_bad(&g, "q4k_ne0", "Q4_K blocks");
    fg_free(&g);
    uint64_t q2[2] = {128, 2}; /* 256 elements, but rows are half-blocks */
    fg_one_tensor(&g, 2, q2, WHALE_DTYPE_Q4_K, 0, 1024);
    expect_bad(&g, "q4k_rows", "Q4_K blocks");
    fg_free(&g);
    uint64_t q3[1] = {256};
    fg_one_tensor(&g, 1, q3, WHALE_DTYPE_Q4_K, 0, 144);
    expect_ok(&g, "q4k_ok");
    fg_free(&g);

    static const uint32_t bad_t[] = {99, 4, 5, 1000, 1002, 0xFFFFFFFFu};
    for (size_t k = 0; k < sizeof bad_t / sizeof bad_t[0]; k++) {
        fg_one_tensor(&g, 1, ne, bad_t[k], 0, 64);
        char name[32], want[48];
        snprintf(name, sizeof name, "ttype_%u", bad_t[k]);
        snprintf(want, sizeof want, "unknown tensor type %u", bad_t[k]);
        expect_bad(&g, name, want);
        fg_free(&g);
    }

    fg_one_tensor(&g, 1, ne, WHALE_DTYPE_F32, 16, 64);
    expect_bad(&g, "unaligned", "not aligned");
    fg_free(&g);
    fg_one_tensor(&g, 1, ne, WHALE_DTYPE_F32, 32, 40);
    expect_bad(&g, "past_end", "past the end");
    fg_free(&g);
    fg_one_tensor(&g, 1, ne, WHALE_DTYPE_F32, 32, 48);
    expect_ok(&g, "exact_end");
    fg_free(&g);
    /* offset near 2^64: offset + size must not wrap */
    fg_one_tensor(&g, 1, ne, WHALE_DTYPE_F32, UINT64_MAX - 31, 64);
    expect_bad(&g, "offset_wrap", "past the end");
    fg_free(&g);
    fg_one_tensor(&g, 1, ne, WHALE_DTYPE_F32, (uint64_t)1 << 63, 64);
    expect_bad(&g, "offset_huge", "past the end");
    fg_free(&g);
    uint64_t huge[2] = {(uint64_t)1 << 20, (uint64_t)1 << 20};
    fg_one_tensor(&g, 2, huge, WHALE_DTYPE_F32, 0, 64);
    expect_bad(&g, "size_huge", "past the end");
    fg_free(&g);
}

static void test_bad_alignment(void) {
    static const uint32_t bad[] = {0, 3, 48, 1u << 21, 0x80000000u};
    forge g = {0};
    uint64_t ne[1] = {4};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        fg_head(&g, 3, 1, 1);
        fg_kv_u32(&g, "general.alignment", bad[k]);
        fg_tinfo(&g, "t", 1, ne, WHALE_DTYPE_F32, 0);
        fg_pad(&g, 64);
        fg_zeros(&g, 16);
        char name[32];
        snprintf(name, sizeof name, "align_%u", bad[k]);
        expect_bad(&g, name, "general.alignment");
        fg_free(&g);
    }
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "general.alignment");
    fg_u32(&g, GGUF_TYPE_STRING);
    fg_str(&g, "32");
    expect_bad(&g, "align_str", "general.alignment has type str");
    fg_free(&g);
    fg_head(&g, 3, 0, 1);
    fg_str(&g, "general.alignment");
    fg_u32(&g, GGUF_TYPE_UINT64);
    fg_u64(&g, 32);
    expect_bad(&g, "align_u64", "expected u32");
    fg_free(&g);

    /* alignment 1 and 1 MiB are fine; data starts on the boundary */
    static const uint32_t good[] = {1, 8, 1u << 20};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        fg_head(&g, 3, 1, 1);
        fg_kv_u32(&g, "general.alignment", good[k]);
        fg_tinfo(&g, "t", 1, ne, WHALE_DTYPE_F32, 0);
        fg_pad(&g, good[k]);
        size_t want = g.n;
        fg_zeros(&g, 16);
        gguf_file f;
        whale_err err = {0};
        int rc = gguf_open_memory(&f, g.p, g.n, 0, &err);
        CHECKF(rc == 0, "align %u: %s", good[k], err.msg);
        if (!rc) CHECK(f.alignment == good[k] && f.data_offset == want);
        gguf_close(&f);
        fg_free(&g);
    }
    /* the data section must start at the padded offset, not right after the header */
    fg_head(&g, 3, 1, 1);
    fg_kv_u32(&g, "general.alignment", 4096);
    fg_tinfo(&g, "t", 1, ne, WHALE_DTYPE_F32, 0);
    fg_zeros(&g, 16); /* data placed without padding: past the end once padded */
    expect_bad(&g, "align_nopad", "past the end");
    fg_free(&g);
}

/* Many distinct keys: the duplicate check is not quadratic (this would take minutes if it were). */
static void test_many_keys(void) {
    enum { N = 200000 };
    forge g = {0};
    fg_head(&g, 3, 0, N);
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i);
        fg_str(&g, key);
        fg_u32(&g, GGUF_TYPE_UINT8);
        fg_u8(&g, (uint8_t)i);
    }
    expect_ok(&g, "many_keys");
    /* the same with one duplicate at the end */
    g.n -= 1 + 4 + 8 + strlen(key);
    fg_str(&g, "k777");
    fg_u32(&g, GGUF_TYPE_UINT8);
    fg_u8(&g, 0);
    gguf_file f;
    whale_err err = {0};
    CHECK(gguf_open_memory(&f, g.p, g.n, 0, &err) == WHALE_E_FORMAT && strstr(err.msg, "'k777' appears twice"));
    gguf_close(&f);
    fg_free(&g);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_gguf_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_roundtrip_default);
    RUN(test_roundtrip_align64);
    RUN(test_roundtrip_align_large);
    RUN(test_writer_rejects);
    RUN(test_getters);
    RUN(test_copy_kv);
    RUN(test_nested_arrays);
    RUN(test_real_vocab);
    RUN(test_bad_magic_version);
    RUN(test_truncated);
    RUN(test_metadata_only);
    RUN(test_huge_counts);
    RUN(test_bad_types_and_nesting);
    RUN(test_bad_keys);
    RUN(test_bad_tensors);
    RUN(test_bad_alignment);
    RUN(test_many_keys);
    for (int i = 0; i < n_tmp_files; i++) unlink(tmp_files[i]);
    rmdir(tmp_dir);
    return check_report("test_gguf");
}
