/* bpe.c — encoding (normalize, split special tokens, pre-tokenize, byte-level BPE) and
 * decoding (byte-level text back to bytes, UTF-8-safe streaming). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/err.h"
#include "base/utf8.h"
#include "tokenizer/tokenizer_impl.h"

/* ---- ids ------------------------------------------------------------------------------ */

int tok_ids_push(tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return WHALE_E_NOMEM;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

void tok_ids_free(tok_ids *ids) {
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* ---- BPE over one piece ---------------------------------------------------------------- */

/* Scratch space for one encode call: symbol list and a binary heap of candidate merges. */
typedef struct bpe_work {
    int32_t *id, *prev, *next; /* symbols: a doubly linked list over positions */
    struct cand { int32_t rank, left, right; } *heap;
    size_t cap, heap_n, heap_cap;
    char *buf; /* byte-level text of the piece (for the ignore_merges lookup) */
    size_t buf_cap;
} bpe_work;

static void work_free(bpe_work *w) {
    free(w->id);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->buf);
}

static int work_reserve(bpe_work *w, size_t n) {
    if (n <= w->cap) return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *a = realloc(w->id, cap * sizeof *a);
    if (a) w->id = a;
    int32_t *b = realloc(w->prev, cap * sizeof *b);
    if (b) w->prev = b;
    int32_t *c = realloc(w->next, cap * sizeof *c);
    if (c) w->next = c;
    if (!a || !b || !c) return -1;
    w->cap = cap;
    return 0;
}

/* Candidates order by rank, then by position: the leftmost of equal merges goes first, as in
 * tokenizers. */
static int cand_less(const struct cand *x, const struct cand *y) {
    return x->rank != y->rank ? x->rank < y->rank : x->left < y->left;
}

static int heap_push(bpe_work *w, struct cand c) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? w->heap_cap * 2 : 64;
        struct cand *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
    return 0;
}

static struct cand heap_pop(bpe_work *w) {
    struct cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct cand *best = &last;
        if (l < n && cand_less(&w->heap[l], best)) { m = l; best = &w->heap[l]; }
        if (r < n && cand_less(&w->heap[r], best)) { m = r; }
        if (m == i) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int push_pair(const tokenizer *t, bpe_work *w, int32_t left) {
    int32_t right = w->next[left];
    if (left < 0 || right < 0) return 0;
    int32_t rank, result;
    if (!tok_merge_find(t, w->id[left], w->id[right], &rank, &result)) return 0;
    struct cand c = {rank, left, right};
    return heap_push(w, c);
}

static int bpe_piece(const tokenizer *t, bpe_work *w, const unsigned char *s, size_t n, tok_ids *out) {
    if (t->ignore_merges) {
        if (w->buf_cap < n * 2 + 1) {
            char *b = realloc(w->buf, n * 2 + 1);
            if (!b) return -1;
            w->buf = b;
            w->buf_cap = n * 2 + 1;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += (size_t)utf8_encode(tok_byte_to_cp(s[i]), w->buf + k);
        int32_t whole = tokenizer_find(t, w->buf, k);
        if (whole >= 0) return tok_ids_push(out, whole);
    }
    if (work_reserve(w, n)) return -1;
    /* One symbol per byte; a byte with no token of its own is dropped (tokenizers does the
     * same when the model has no unknown token). */
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_tok[s[i]];
        if (id < 0) continue;
        w->id[m] = id;
        w->prev[m] = m - 1;
        w->next[m] = m + 1;
        m++;
    }
    if (m == 0) return 0;
    w->next[m - 1] = -1;
    w->heap_n = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        if (push_pair(t, w, i)) return -1;
    while (w->heap_n) {
        struct cand c = heap_pop(w);
        /* Stale if either side was merged away or changed since the candidate was queued. */
        if (w->id[c.left] < 0 || w->next[c.left] != c.right || w->id[c.right] < 0) continue;
        int32_t rank, result;
        if (!tok_merge_find(t, w->id[c.left], w->id[c.right], &rank, &result) || rank != c.rank) continue;
        w->id[c.left] = result;
        w->id[c.right] = -1;
        int32_t nx = w->next[c.right];
        w->next[c.left] = nx;
        if (nx >= 0) w->prev[nx] = c.left;
        if (w->prev[c.left] >= 0 && push_pair(t, w, w->prev[c.left])) return -1;
        if (push_pair(t, w, c.left)) return -1;
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (tok_ids_push(out, w->id[i])) return -1;
    return 0;
}

/* Encode a span of plain text: pre-tokenize, then BPE each piece. */
static int encode_plain(const tokenizer *t, bpe_work *w, pretok_pieces *ps, const char *s, size_t n,
                        tok_ids *out, whale_err *err) {
    if (n == 0) return 0;
    int rc = pretok_run(t->pre, s, n, ps, err);
    if (rc) return rc;
    for (size_t i = 0; i < ps->n; i++)
        if (bpe_piece(t, w, (const unsigned char *)s + ps->v[i].start, ps->v[i].len, out))
            return err_set(err, WHALE_E_NOMEM, "out of memory while encoding");
    return 0;
}

/* The longest added token whose text starts at s[0..n), or -1. */
static int32_t match_added(const tokenizer *t, const char *s, size_t n) {
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i];
        size_t l = t->len[id];
        if (l <= n && !memcmp(s, t->text + t->off[id], l)) return id;
    }
    return -1;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t n, int flags, tok_ids *out,
                     whale_err *err) {
    if (!utf8_valid(text, n)) {
        size_t i = 0;
        const unsigned char *p = (const unsigned char *)text;
        while (i < n) {
            int l = p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
            if (!l) break;
            i += (size_t)l;
        }
        return err_set(err, WHALE_E_ARG, "input is not valid UTF-8 (byte offset %zu)", i);
    }
    if ((flags & TOK_ADD_BOS) && t->bos >= 0 && tok_ids_push(out, t->bos))
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    utf8proc_uint8_t *norm = NULL;
    if (t->nfc && n) {
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n, &norm,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (r < 0) return err_set(err, WHALE_E_ARG, "cannot normalize input: %s", utf8proc_errmsg(r));
        text = (const char *)norm;
        n = (size_t)r;
    }
    bpe_work w = {0};
    pretok_pieces ps = {0};
    int rc = 0;
    if (!(flags & TOK_PARSE_SPECIAL)) {
        rc = encode_plain(t, &w, &ps, text, n, out, err);
    } else {
        size_t start = 0, i = 0;
        while (i < n && !rc) {
            int32_t id = match_added(t, text + i, n - i);
            if (id < 0) {
                i++;
                continue;
            }
            rc = encode_plain(t, &w, &ps, text + start, i - start, out, err);
            if (!rc && tok_ids_push(out, id)) rc = err_set(err, WHALE_E_NOMEM, "out of memory");
            i += t->len[id];
            start = i;
        }
        if (!rc) rc = encode_plain(t, &w, &ps, text + start, n - start, out, err);
    }
    work_free(&w);
    pretok_pieces_free(&ps);
    free(norm);
    return rc;
}

/* ---- decoding ------------------------------------------------------------------------- */

int tokenizer_token_bytes(const tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const unsigned char *s = (const unsigned char *)t->text + t->off[id];
    size_t n = t->len[id], k = 0;
    if (t->attr[id] != TOK_NORMAL && t->attr[id] != TOK_BYTE) {
        for (size_t i = 0; i < n; i++, k++)
            if (k < cap) buf[k] = (char)s[i];
        return (int)k;
    }
    for (size_t i = 0; i < n;) {
        int l = utf8_seq_len(s + i, n - i);
        if (!l) { /* not UTF-8: pass the byte through */
            if (k < cap) buf[k] = (char)s[i];
            k++;
            i++;
            continue;
        }
        int b = tok_cp_to_byte(utf8_decode(s + i, l));
        if (b >= 0) {
            if (k < cap) buf[k] = (char)b;
            k++;
        } else { /* a character outside the byte map: keep it as it is */
            for (int j = 0; j < l; j++, k++)
                if (k < cap) buf[k] = (char)s[i + j];
        }
        i += (size_t)l;
    }
    return (int)k;
}

int tokenizer_stream(const tokenizer *t, tok_stream *st, int32_t id, char *out, size_t cap) {
    char tmp[1024];
    size_t n = 0;
    if (id >= 0) {
        int l = tokenizer_token_bytes(t, id, tmp, sizeof tmp);
        if (l < 0 || (size_t)l > sizeof tmp) return -1;
        n = (size_t)l;
    }
    /* Join pending bytes and new bytes, emit all but an incomplete trailing character. */
    size_t total = (size_t)st->n_pending + n;
    if (total > cap + sizeof st->pending) return -1;
    char joined[1024 + sizeof st->pending];
    memcpy(joined, st->pending, (size_t)st->n_pending);
    memcpy(joined + st->n_pending, tmp, n);
    int keep = id >= 0 ? utf8_incomplete_tail((const unsigned char *)joined, total) : 0;
    size_t emit = total - (size_t)keep;
    if (emit > cap) return -1;
    memcpy(out, joined, emit);
    memcpy(st->pending, joined + emit, (size_t)keep);
    st->n_pending = keep;
    return (int)emit;
}

char *tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, k = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        int l = tokenizer_token_bytes(t, ids[i], NULL, 0);
        if (l < 0) continue;
        if (k + (size_t)l + 1 > cap) {
            while (k + (size_t)l + 1 > cap) cap *= 2;
            char *p = realloc(s, cap);
            if (!p) {
                free(s);
                return NULL;
            }
            s = p;
        }
        tokenizer_token_bytes(t, ids[i], s + k, (size_t)l);
        k += (size_t)l;
    }
    s[k] = 0;
    if (len) *len = k;
    return s;
}
