/* kv_cache.c — the KV cache: per layer, one row per cached position of each sequence (dense
 * models: a key row and a value row; MLA: the latent and the rope key, no values).
 *
 * Positions are addressed in pages of KV_PAGE (64, DeepSeek's context-cache unit): a sequence's
 * logical page j lives in the pool's physical page page[seq][j], mapped when the sequence first
 * writes there (kv_own). Sequences with a common prefix can share its pages (kv_cache_share: the
 * scheduler maps another slot's prefix instead of computing it again); a shared page is copied
 * before a sharer writes into it, so each sequence still sees only its own rows. The pool has a
 * page for every logical page, so mapping never runs out; what sharing saves is the memory the
 * pages would have been written to (the pool is allocated zeroed and untouched pages cost
 * nothing), and kv_cache_pages counts the pages in use. Free pages are reused last-freed first.
 *
 * Attention walks a sequence span by span (kv_span: pages that happen to lie one after another),
 * carrying its online-softmax state across; its blocks of 64 positions start where each call
 * starts, so callers start their calls on page boundaries (dense attention at position 0, MLA's
 * decode chunks rounded to pages) and the bits do not depend on where the pages lie.
 * Owns: the pool, the page table, row conversion to and from F16, BF16 and int8 (Q8: whole rows,
 * kernels/attn.h's op_q8_row). Does not own: what rows mean (the forward passes), which prefixes
 * are worth keeping (engine/prefix_cache.c). */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rng.h"
#include "model/model_impl.h"

size_t kv_elem_size(const kv_cache *kv) { return kv->type == OP_KV_F32 ? 4 : kv->type == OP_KV_Q8 ? 1 : 2; }

size_t kv_row_bytes(int type, int64_t kv_dim) {
    return type == OP_KV_Q8 ? (size_t)OP_Q8_ROW_BYTES(kv_dim) : (size_t)kv_dim * (type == OP_KV_F32 ? 4 : 2);
}

kv_cache *kv_cache_new(int64_t n_layer, int64_t kv_dim, int with_v, int type, int64_t split, int64_t n_ctx, int n_seq) {
    if (n_ctx <= 0 || n_seq <= 0 || n_layer <= 0 || kv_dim <= 0 || type < OP_KV_F32 || type > OP_KV_Q8) return NULL;
    if (type == OP_KV_Q8 && (with_v || split <= 0 || split >= kv_dim)) return NULL; /* q8: MLA latent rows */
    kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->n_ctx = n_ctx;
    kv->n_seq = n_seq;
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->type = type;
    kv->split = split;
    kv->row_bytes = (int64_t)kv_row_bytes(type, kv_dim);
    kv->n_page_seq = (n_ctx + KV_PAGE - 1) / KV_PAGE;
    kv->n_page = kv->n_page_seq * n_seq;
    if (kv->n_page > INT32_MAX) {
        kv_cache_free(kv);
        return NULL;
    }
    kv->page = malloc((size_t)kv->n_page * sizeof *kv->page);
    kv->ref = calloc((size_t)kv->n_page, sizeof *kv->ref);
    kv->free_pages = malloc((size_t)kv->n_page * sizeof *kv->free_pages);
    size_t n = (size_t)(n_layer * kv->n_page * KV_PAGE);
    kv->k = calloc(n, (size_t)kv->row_bytes);
    kv->v = with_v ? calloc(n, (size_t)kv->row_bytes) : NULL;
    if (!kv->page || !kv->ref || !kv->free_pages || !kv->k || (with_v && !kv->v)) {
        kv_cache_free(kv);
        return NULL;
    }
    for (int64_t p = 0; p < kv->n_page; p++) kv->page[p] = -1;
    /* page 0 on top: one sequence alone gets its pages in order, one span as before */
    for (int64_t p = 0; p < kv->n_page; p++) kv->free_pages[p] = (int32_t)(kv->n_page - 1 - p);
    kv->n_free = kv->n_page;
    return kv;
}

void kv_cache_free(kv_cache *kv) {
    if (!kv) return;
    free(kv->page);
    free(kv->ref);
    free(kv->free_pages);
    free(kv->k);
    free(kv->v);
    free(kv);
}

/* Let go of one mapping of physical page p. */
static void page_unref(kv_cache *kv, int32_t p) {
    if (--kv->ref[p] == 0) kv->free_pages[kv->n_free++] = p;
}

/* Copy every layer's rows of physical page from into page to. */
static void page_copy(kv_cache *kv, int32_t to, int32_t from) {
    size_t bytes = (size_t)(KV_PAGE * kv->row_bytes);
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int which = 0; which < (kv->v ? 2 : 1); which++) {
            char *base = which ? kv->v : kv->k;
            memcpy(base + (size_t)(l * kv->n_page + to) * bytes, base + (size_t)(l * kv->n_page + from) * bytes, bytes);
        }
}

int kv_own(kv_cache *kv, int32_t seq, int64_t pos) {
    int32_t *slot = &kv->page[(int64_t)seq * kv->n_page_seq + pos / KV_PAGE];
    if (*slot >= 0 && kv->ref[*slot] == 1) return 0;
    if (!kv->n_free) return -1;
    int32_t p = kv->free_pages[--kv->n_free];
    kv->ref[p] = 1;
    if (*slot >= 0) { /* shared: this sequence writes to a copy of its own */
        page_copy(kv, p, *slot);
        page_unref(kv, *slot);
    }
    *slot = p;
    return 0;
}

int kv_cache_share(kv_cache *kv, int dst, int src, int64_t n) {
    if (dst < 0 || dst >= kv->n_seq || src < 0 || src >= kv->n_seq || n < 0 || n % KV_PAGE || n > kv->n_ctx)
        return -1;
    int32_t *d = kv->page + (int64_t)dst * kv->n_page_seq, *s = kv->page + (int64_t)src * kv->n_page_seq;
    for (int64_t j = 0; j < n / KV_PAGE; j++)
        if (s[j] < 0) return -1;
    if (dst == src) return 0;
    for (int64_t j = 0; j < n / KV_PAGE; j++) {
        if (d[j] == s[j]) continue;
        kv->ref[s[j]]++;
        if (d[j] >= 0) page_unref(kv, d[j]);
        d[j] = s[j];
    }
    return 0;
}

void kv_cache_keep(kv_cache *kv, int seq, int64_t n) {
    if (seq < 0 || seq >= kv->n_seq) return;
    int32_t *pages = kv->page + (int64_t)seq * kv->n_page_seq;
    for (int64_t j = n < 0 ? 0 : (n + KV_PAGE - 1) / KV_PAGE; j < kv->n_page_seq; j++)
        if (pages[j] >= 0) {
            page_unref(kv, pages[j]);
            pages[j] = -1;
        }
}

void kv_cache_pages(const kv_cache *kv, int64_t *used, int64_t *total, size_t *page_bytes) {
    *used = kv->n_page - kv->n_free;
    *total = kv->n_page;
    *page_bytes = (size_t)KV_PAGE * kv_cache_pos_bytes(kv);
}

int64_t kv_cache_n_seq(const kv_cache *kv) { return kv->n_seq; }

void *kv_row(const kv_cache *kv, int which, int64_t layer, int32_t seq, int64_t pos) {
    int64_t phys = kv->page[(int64_t)seq * kv->n_page_seq + pos / KV_PAGE];
    size_t row = (size_t)((layer * kv->n_page + phys) * KV_PAGE + pos % KV_PAGE);
    return (char *)(which ? kv->v : kv->k) + row * (size_t)kv->row_bytes;
}

int64_t kv_span(const kv_cache *kv, int which, int64_t layer, int32_t seq, int64_t pos, int64_t n, const void **row) {
    *row = kv_row(kv, which, layer, seq, pos);
    const int32_t *pages = kv->page + (int64_t)seq * kv->n_page_seq;
    int64_t j = pos / KV_PAGE, got = KV_PAGE - pos % KV_PAGE;
    while (got < n && j + 1 < kv->n_page_seq && pages[j] >= 0 && pages[j + 1] == pages[j] + 1) got += KV_PAGE, j++;
    return got < n ? got : n;
}

void kv_put(const kv_cache *kv, void *dst, const float *src, int64_t n) {
    uint16_t *h = dst;
    if (kv->type == OP_KV_F32) memcpy(dst, src, (size_t)n * sizeof(float));
    else if (kv->type == OP_KV_Q8) op_q8_row(dst, src, n, kv->split); /* n: a whole row */
    else if (kv->type == OP_KV_F16)
        for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
    else
        for (int64_t i = 0; i < n; i++) h[i] = op_bf16_round(src[i]);
}

const float *kv_get(const kv_cache *kv, const void *row, int64_t n, float *tmp) {
    const uint16_t *h = row;
    if (kv->type == OP_KV_F32) return row;
    if (kv->type == OP_KV_Q8) op_q8_row_get(tmp, row, n, kv->split);
    else if (kv->type == OP_KV_F16)
        for (int64_t i = 0; i < n; i++) tmp[i] = fp16_to_f32(h[i]);
    else
        for (int64_t i = 0; i < n; i++) tmp[i] = bf16_to_f32(h[i]);
    return tmp;
}

int kv_cache_fill_random(kv_cache *kv, int seq, int64_t n, uint64_t seed, whale_err *err) {
    if (seq < 0 || seq >= kv->n_seq || n < 0 || n > kv->n_ctx)
        return err_set(err, WHALE_E_ARG, "cannot fill %lld positions of sequence %d (cache: %d x %lld)", (long long)n,
                       seq, kv->n_seq, (long long)kv->n_ctx);
    for (int64_t p = 0; p < n; p += KV_PAGE)
        if (kv_own(kv, seq, p)) return err_set(err, WHALE_E_NOMEM, "the KV cache has no free page");
    uint64_t x = seed | 1;
    float *r = malloc((size_t)kv->kv_dim * sizeof *r);
    if (!r) return err_set(err, WHALE_E_NOMEM, "out of memory");
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int which = 0; which < (kv->v ? 2 : 1); which++)
            for (int64_t p = 0; p < n; p++) {
                for (int64_t i = 0; i < kv->kv_dim; i++) /* uniform on [-sqrt 3, sqrt 3): unit variance */
                    r[i] = (float)(rng_unit(rng_xorshift64(&x)) * 3.4641016151377544 - 1.7320508075688772);
                kv_put(kv, kv_row(kv, which, l, seq, p), r, kv->kv_dim);
            }
    free(r);
    return 0;
}

int kv_cache_type(const kv_cache *kv) { return kv->type; }

size_t kv_cache_pos_bytes(const kv_cache *kv) {
    return (kv->v ? 2 : 1) * (size_t)(kv->n_layer * kv->row_bytes);
}

/* Copy positions [pos0, pos0+n) of seq between the cache and buf (layer by layer: keys, then
 * values, each n rows), in the direction `out` says, span by span. */
static int kv_copy(kv_cache *kv, int seq, int64_t pos0, int64_t n, uint8_t *buf, int out) {
    if (seq < 0 || seq >= kv->n_seq || pos0 < 0 || n < 0 || pos0 + n > kv->n_ctx) return -1;
    for (int64_t p = n ? pos0 - pos0 % KV_PAGE : pos0; p < pos0 + n; p += KV_PAGE) /* reading: made; writing: own */
        if (out ? kv->page[(int64_t)seq * kv->n_page_seq + p / KV_PAGE] < 0 : kv_own(kv, seq, p)) return -1;
    size_t row_bytes = (size_t)kv->row_bytes;
    for (int64_t l = 0; l < kv->n_layer; l++)
        for (int which = 0; which < (kv->v ? 2 : 1); which++)
            for (int64_t p = pos0; p < pos0 + n;) {
                const void *row;
                int64_t got = kv_span(kv, which, l, seq, p, pos0 + n - p, &row);
                size_t span = (size_t)got * row_bytes;
                if (out) memcpy(buf, row, span);
                else memcpy((void *)row, buf, span);
                buf += span;
                p += got;
            }
    return 0;
}

int kv_cache_read(const kv_cache *kv, int seq, int64_t pos0, int64_t n, void *dst) {
    return kv_copy((kv_cache *)kv, seq, pos0, n, dst, 1);
}

int kv_cache_write(kv_cache *kv, int seq, int64_t pos0, int64_t n, const void *src) {
    return kv_copy(kv, seq, pos0, n, (uint8_t *)src, 0);
}
