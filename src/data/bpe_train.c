/* bpe_train.c — byte-level BPE training (bpe_train.h): counting pieces, learning merges,
 * writing tokenizer.json.
 *
 * Data flow:
 *   text span -> UTF-8 repaired (bad bytes -> U+FFFD) -> added-token spellings cut out
 *     -> NFC (Qwen2 family) -> pretok_run (the builtin program) -> piece counts (hash map)
 *   piece counts -> words (token id sequences, weight = count) -> pair counts + where-lists
 *     -> loop: best pair from a lazy max-heap -> new token -> rewrite only the words on the
 *        pair's where-list, adjusting the counts of the pairs around each occurrence
 *   -> tokenizer.json (vocab in id order, merges in learned order, added tokens last)
 *
 * Why the heap is lazy: when a merge lowers a pair's count its heap entry is left as it is (a
 * stale entry over-states the count). Counts of pairs that rise (only pairs holding the merged
 * token) get a fresh entry when the merge is done. So every pair with a positive count has an
 * entry at least as large as its count, and the first entry popped whose count is current is
 * the true best pair; a stale one popped is pushed back with its current count. */
#include "data/bpe_train.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/strbuf.h"
#include "base/utf8.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

const bpe_special bpe_train_default_specials[] = {
    {"<|endoftext|>", 1}, {"<|im_start|>", 1}, {"<|im_end|>", 1}, {"<think>", 0}, {"</think>", 0},
};
const size_t bpe_train_n_default_specials = sizeof bpe_train_default_specials / sizeof bpe_train_default_specials[0];

/* ---- hashing -------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    return h ^ (h >> 32);
}


static size_t pow2_at_least(size_t n) {
    size_t c = 64;
    while (c < n) c <<= 1;
    return c;
}

/* ---- the trainer ---------------------------------------------------------------------- */

typedef struct piece_entry {
    uint64_t hash;
    uint64_t off; /* into keys */
    uint32_t len;
    int64_t count;
} piece_entry;

typedef struct merge_rec {
    int32_t a, b, result;
} merge_rec;

struct bpe_trainer {
    pretok_program *pre;
    char pre_name[32];
    int nfc, ignore_merges;
    const char *const *patterns; /* the builtin's split patterns (static) */
    bpe_special *sp;             /* texts owned */
    size_t n_sp;

    /* counting: distinct pieces -> count */
    strbuf keys;
    piece_entry *ent;
    size_t n_ent, cap_ent;
    uint32_t *slot; /* entry index + 1; 0 empty */
    size_t slot_cap;
    pretok_pieces pieces;
    strbuf clean; /* a span with its bad UTF-8 repaired */
    strbuf norm;  /* a segment after NFC */
    bpe_train_stats st;

    /* learned: tokens 0..n_tok-1 (bytes, then merge results), merges in order */
    int learned;
    strbuf tokbytes;
    uint64_t *tok_off;
    uint32_t *tok_len;
    size_t n_tok;
    uint32_t *tok_slot; /* token bytes -> id + 1 */
    size_t tok_slot_cap;
    merge_rec *merges;
    size_t n_merges;
};

void bpe_trainer_free(bpe_trainer *t) {
    if (!t) return;
    pretok_free(t->pre);
    for (size_t i = 0; i < t->n_sp; i++) free((char *)t->sp[i].text);
    free(t->sp);
    strbuf_free(&t->keys);
    free(t->ent);
    free(t->slot);
    pretok_pieces_free(&t->pieces);
    strbuf_free(&t->clean);
    strbuf_free(&t->norm);
    strbuf_free(&t->tokbytes);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_slot);
    free(t->merges);
    free(t);
}

int bpe_trainer_new(bpe_trainer **out, const char *pre, const bpe_special *sp, size_t n_sp, whale_err *err) {
    *out = NULL;
    if (!pre) pre = "qwen2";
    if (n_sp > BPE_TRAIN_MAX_SPECIAL + bpe_train_n_default_specials)
        return err_set(err, WHALE_E_ARG, "%zu added tokens: more than %zu", n_sp,
                       (size_t)BPE_TRAIN_MAX_SPECIAL + bpe_train_n_default_specials);
    for (size_t i = 0; i < n_sp; i++) {
        if (!sp[i].text || !sp[i].text[0]) return err_set(err, WHALE_E_ARG, "an added token is empty");
        if (!utf8_valid(sp[i].text, strlen(sp[i].text)))
            return err_set(err, WHALE_E_ARG, "added token '%s' is not valid UTF-8", sp[i].text);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(sp[i].text, sp[j].text)) return err_set(err, WHALE_E_ARG, "added token '%s' given twice", sp[i].text);
    }
    bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) return err_set(err, WHALE_E_NOMEM, "out of memory");
    t->patterns = pretok_builtin_patterns(pre, &t->nfc, &t->ignore_merges);
    if (!t->patterns) {
        strbuf names = {0};
        for (const char *const *n = pretok_builtin_names; *n; n++) {
            if (names.n) strbuf_add(&names, ", ", 2);
            strbuf_add(&names, *n, strlen(*n));
        }
        err_set(err, WHALE_E_ARG, "unknown pre-tokenizer '%s' (known: %s)", pre, names.s ? names.s : "");
        strbuf_free(&names);
        free(t);
        return WHALE_E_ARG;
    }
    snprintf(t->pre_name, sizeof t->pre_name, "%s", pre);
    int nfc, im, rc = pretok_builtin(&t->pre, pre, &nfc, &im, err);
    if (rc) {
        bpe_trainer_free(t);
        return rc;
    }
    t->sp = calloc(n_sp ? n_sp : 1, sizeof *t->sp);
    if (!t->sp) goto oom;
    for (size_t i = 0; i < n_sp; i++, t->n_sp++) {
        if (!(t->sp[i].text = strdup(sp[i].text))) goto oom;
        t->sp[i].special = sp[i].special;
    }
    *out = t;
    return 0;
oom:
    bpe_trainer_free(t);
    return err_set(err, WHALE_E_NOMEM, "out of memory");
}

/* ---- counting pieces ------------------------------------------------------------------ */

static int slots_grow(bpe_trainer *t) {
    size_t cap = t->slot_cap ? t->slot_cap * 2 : 1 << 16;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < t->n_ent; i++) {
        size_t k = t->ent[i].hash & (cap - 1);
        while (s[k]) k = (k + 1) & (cap - 1);
        s[k] = (uint32_t)(i + 1);
    }
    free(t->slot);
    t->slot = s;
    t->slot_cap = cap;
    return 0;
}

static int piece_add(bpe_trainer *t, const char *p, size_t len) {
    if ((t->n_ent + 1) * 2 > t->slot_cap && slots_grow(t)) return -1;
    uint64_t h = hash_bytes(p, len);
    size_t mask = t->slot_cap - 1, k = h & mask;
    for (; t->slot[k]; k = (k + 1) & mask) {
        piece_entry *e = &t->ent[t->slot[k] - 1];
        if (e->hash == h && e->len == len && !memcmp(t->keys.s + e->off, p, len)) {
            e->count++;
            return 0;
        }
    }
    if (t->n_ent >= INT32_MAX) return -1; /* word indices are int32 in the where-lists */
    if (t->n_ent == t->cap_ent) {
        size_t cap = t->cap_ent ? t->cap_ent * 2 : 1 << 14;
        piece_entry *v = realloc(t->ent, cap * sizeof *v);
        if (!v) return -1;
        t->ent = v;
        t->cap_ent = cap;
    }
    uint64_t off = t->keys.n;
    if (strbuf_add(&t->keys, p, len)) return -1;
    t->ent[t->n_ent] = (piece_entry){h, off, (uint32_t)len, 1};
    t->slot[k] = (uint32_t)++t->n_ent;
    return 0;
}

/* NFC of s[0..n) into t->norm. Code points below U+0300 (UTF-8 bytes below 0xCC) are left as
 * they are by NFC and compose with nothing before them, and a newline blocks composition, so
 * only lines holding a byte >= 0xCC go through utf8proc (most of code and English is copied). */
static int nfc_lines(bpe_trainer *t, const char *s, size_t n, whale_err *err) {
    t->norm.n = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - s) + 1 : n;
        int plain = 1;
        for (size_t k = i; k < e && plain; k++) plain = (unsigned char)s[k] < 0xCC;
        if (plain) {
            if (strbuf_add(&t->norm, s + i, e - i)) return err_set(err, WHALE_E_NOMEM, "out of memory");
        } else {
            utf8proc_uint8_t *m = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(e - i), &m,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) return err_set(err, WHALE_E_NOMEM, "cannot normalize text: %s", utf8proc_errmsg(r));
            int bad = strbuf_add(&t->norm, (const char *)m, (size_t)r);
            free(m);
            if (bad) return err_set(err, WHALE_E_NOMEM, "out of memory");
        }
        i = e;
    }
    return 0;
}

/* Count the pieces of s[0..n) (valid UTF-8, no added-token spellings). */
static int count_segment(bpe_trainer *t, const char *s, size_t n, whale_err *err) {
    if (!n) return 0;
    if (t->nfc) {
        int rc = nfc_lines(t, s, n, err);
        if (rc) return rc;
        s = t->norm.s;
        n = t->norm.n;
    }
    int rc = pretok_run(t->pre, s, n, &t->pieces, err);
    for (size_t i = 0; !rc && i < t->pieces.n; i++) {
        pretok_piece pc = t->pieces.v[i];
        t->st.pieces++;
        if (pc.len > BPE_TRAIN_MAX_PIECE) {
            t->st.long_pieces++;
            continue;
        }
        if (piece_add(t, s + pc.start, pc.len)) rc = err_set(err, WHALE_E_NOMEM, "out of memory counting pieces");
    }
    return rc;
}

/* s[0..n) with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD, into
 * t->clean. Returns 0 or -1 (out of memory). */
static int repair_utf8(bpe_trainer *t, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    t->clean.n = 0;
    size_t run = 0, i = 0;
    while (i < n) {
        int l = p[i] < 0x80 ? 1 : utf8_seq_len(p + i, n - i);
        if (l) {
            i += (size_t)l;
            continue;
        }
        if (strbuf_add(&t->clean, s + run, i - run) || strbuf_add(&t->clean, "\xEF\xBF\xBD", 3)) return -1;
        t->st.bad_bytes++;
        run = ++i;
    }
    return strbuf_add(&t->clean, s + run, n - run);
}

/* Offset of the first spelling of added token k in s[from..n), or n. */
static size_t find_special(const bpe_trainer *t, size_t k, const char *s, size_t n, size_t from) {
    size_t len = strlen(t->sp[k].text);
    const char *f = from < n ? memmem(s + from, n - from, t->sp[k].text, len) : NULL;
    return f ? (size_t)(f - s) : n;
}

int bpe_trainer_feed(bpe_trainer *t, const char *text, size_t n, whale_err *err) {
    if (t->learned) return err_set(err, WHALE_E_ARG, "text fed after the merges were learned");
    t->st.bytes_fed += n;
    const char *s = text;
    if (!utf8_valid(text, n)) {
        if (repair_utf8(t, text, n)) return err_set(err, WHALE_E_NOMEM, "out of memory");
        s = t->clean.s;
        n = t->clean.n;
    }
    /* Added tokens are cut out as encoding does: at each point the earliest spelling, the
     * longest of those that start there. */
    size_t next[BPE_TRAIN_MAX_SPECIAL + 16];
    for (size_t k = 0; k < t->n_sp; k++) next[k] = find_special(t, k, s, n, 0);
    size_t start = 0;
    for (;;) {
        size_t best = n, blen = 0;
        for (size_t k = 0; k < t->n_sp; k++) {
            size_t len = strlen(t->sp[k].text);
            if (next[k] < best || (next[k] == best && best < n && len > blen)) best = next[k], blen = len;
        }
        if (best >= n) break;
        int rc = count_segment(t, s + start, best - start, err);
        if (rc) return rc;
        t->st.specials++;
        start = best + blen;
        for (size_t k = 0; k < t->n_sp; k++)
            if (next[k] < start) next[k] = find_special(t, k, s, n, start);
    }
    return count_segment(t, s + start, n - start, err);
}

/* ---- tokens --------------------------------------------------------------------------- */

static int32_t token_find(const bpe_trainer *t, const char *s, size_t n, uint64_t h, size_t *slot) {
    size_t mask = t->tok_slot_cap - 1, k = h & mask;
    for (; t->tok_slot[k]; k = (k + 1) & mask) {
        uint32_t id = t->tok_slot[k] - 1;
        if (t->tok_len[id] == n && !memcmp(t->tokbytes.s + t->tok_off[id], s, n)) return (int32_t)id;
    }
    *slot = k;
    return -1;
}

/* Append a token with bytes s[0..n) (a copy). The table was sized for every token up front. */
static int32_t token_add(bpe_trainer *t, const char *s, size_t n, size_t slot) {
    uint64_t off = t->tokbytes.n;
    if (strbuf_add(&t->tokbytes, s, n)) return -1;
    t->tok_off[t->n_tok] = off;
    t->tok_len[t->n_tok] = (uint32_t)n;
    t->tok_slot[slot] = (uint32_t)(t->n_tok + 1);
    return (int32_t)t->n_tok++;
}

/* ---- learning: pairs, where-lists, the heap ------------------------------------------- */

typedef struct pair_rec {
    int32_t a, b;
    int64_t count;   /* occurrences, weighted by word counts */
    int32_t *where;  /* words that held the pair when it was counted (may be stale, may repeat) */
    uint32_t n_where, cap_where;
    int64_t touched; /* the merge step that last raised count */
} pair_rec;

typedef struct heap_ent {
    int64_t count;
    int32_t a, b, pair;
} heap_ent;

typedef struct learner {
    int32_t *sym;     /* all words' symbols */
    uint64_t *w_off;  /* (n_words) */
    uint32_t *w_len;  /* (n_words) current length */
    int64_t *w_cnt;   /* (n_words) occurrences */
    int64_t *w_stamp; /* (n_words) the merge step that last rewrote it */
    size_t n_words;
    pair_rec *pr;
    size_t n_pr, cap_pr;
    uint32_t *pslot; /* pair index + 1 */
    size_t pslot_cap;
    heap_ent *heap;
    size_t n_heap, cap_heap;
    int32_t *touched;
    size_t n_touched, cap_touched;
    int64_t step;
} learner;

static void learner_free(learner *L) {
    free(L->sym);
    free(L->w_off);
    free(L->w_len);
    free(L->w_cnt);
    free(L->w_stamp);
    for (size_t i = 0; i < L->n_pr; i++) free(L->pr[i].where);
    free(L->pr);
    free(L->pslot);
    free(L->heap);
    free(L->touched);
}

static int pslot_grow(learner *L) {
    size_t cap = L->pslot_cap ? L->pslot_cap * 2 : 1 << 16;
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < L->n_pr; i++) {
        size_t k = hash_id_pair(L->pr[i].a, L->pr[i].b) & (cap - 1);
        while (s[k]) k = (k + 1) & (cap - 1);
        s[k] = (uint32_t)(i + 1);
    }
    free(L->pslot);
    L->pslot = s;
    L->pslot_cap = cap;
    return 0;
}

/* Index of pair (a, b), or -1 when it was never counted. */
static int64_t pair_find(const learner *L, int32_t a, int32_t b) {
    size_t mask = L->pslot_cap - 1, k = hash_id_pair(a, b) & mask;
    for (; L->pslot[k]; k = (k + 1) & mask) {
        uint32_t i = L->pslot[k] - 1;
        if (L->pr[i].a == a && L->pr[i].b == b) return i;
    }
    return -1;
}

/* Index of pair (a, b), created with count 0 when absent. -1: out of memory. */
static int64_t pair_get(learner *L, int32_t a, int32_t b) {
    if ((L->n_pr + 1) * 2 > L->pslot_cap && pslot_grow(L)) return -1;
    size_t mask = L->pslot_cap - 1, k = hash_id_pair(a, b) & mask;
    for (; L->pslot[k]; k = (k + 1) & mask) {
        uint32_t i = L->pslot[k] - 1;
        if (L->pr[i].a == a && L->pr[i].b == b) return i;
    }
    if (L->n_pr >= UINT32_MAX - 1) return -1;
    if (L->n_pr == L->cap_pr) {
        size_t cap = L->cap_pr ? L->cap_pr * 2 : 1 << 14;
        pair_rec *v = realloc(L->pr, cap * sizeof *v);
        if (!v) return -1;
        L->pr = v;
        L->cap_pr = cap;
    }
    L->pr[L->n_pr] = (pair_rec){.a = a, .b = b, .touched = -1};
    L->pslot[k] = (uint32_t)(L->n_pr + 1);
    return (int64_t)L->n_pr++;
}

static int where_push(pair_rec *p, int32_t w) {
    if (p->n_where && p->where[p->n_where - 1] == w) return 0;
    if (p->n_where == p->cap_where) {
        uint32_t cap = p->cap_where ? p->cap_where * 2 : 4;
        int32_t *v = realloc(p->where, cap * sizeof *v);
        if (!v) return -1;
        p->where = v;
        p->cap_where = cap;
    }
    p->where[p->n_where++] = w;
    return 0;
}

/* The heap's order: higher count first; ties to the smaller left id, then right id. */
static int heap_before(const heap_ent *x, const heap_ent *y) {
    if (x->count != y->count) return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static int heap_push(learner *L, int64_t pair) {
    if (L->n_heap == L->cap_heap) {
        size_t cap = L->cap_heap ? L->cap_heap * 2 : 1 << 14;
        heap_ent *h = realloc(L->heap, cap * sizeof *h);
        if (!h) return -1;
        L->heap = h;
        L->cap_heap = cap;
    }
    const pair_rec *p = &L->pr[pair];
    heap_ent e = {p->count, p->a, p->b, (int32_t)pair};
    size_t i = L->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_before(&e, &L->heap[up])) break;
        L->heap[i] = L->heap[up];
        i = up;
    }
    L->heap[i] = e;
    return 0;
}

static heap_ent heap_pop(learner *L) {
    heap_ent top = L->heap[0], last = L->heap[--L->n_heap];
    size_t i = 0, n = L->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&L->heap[c + 1], &L->heap[c])) c++;
        if (!heap_before(&L->heap[c], &last)) break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    if (n) L->heap[i] = last;
    return top;
}

/* Lower pair (a, b)'s count by c: the pair was counted, so it exists. */
static void pair_sub(learner *L, int32_t a, int32_t b, int64_t c) {
    int64_t i = pair_find(L, a, b);
    assert(i >= 0 && L->pr[i].count >= c); /* every pair of a word was counted */
    L->pr[i].count -= c;
}

/* Raise pair (a, b)'s count by c for word w. -1: out of memory. */
static int pair_addw(learner *L, int32_t a, int32_t b, int64_t c, int32_t w) {
    int64_t i = pair_get(L, a, b);
    if (i < 0) return -1;
    pair_rec *p = &L->pr[i];
    p->count += c;
    if (where_push(p, w)) return -1;
    if (p->touched != L->step) {
        p->touched = L->step;
        if (L->n_touched == L->cap_touched) {
            size_t cap = L->cap_touched ? L->cap_touched * 2 : 1024;
            int32_t *v = realloc(L->touched, cap * sizeof *v);
            if (!v) return -1;
            L->touched = v;
            L->cap_touched = cap;
        }
        L->touched[L->n_touched++] = (int32_t)i;
    }
    return 0;
}

/* Replace every (A, B) in word w by Z, left to right (as encoding applies one merge), and move
 * the counts of the pairs around each occurrence: x A B y loses (x,A) (A,B) (B,y) and gains
 * (x,Z) (Z,y). x is the already rewritten left neighbour, so A B A B gives Z Z with (Z,A)
 * gained and lost again. -1: out of memory. */
static int merge_word(learner *L, int32_t w, int32_t A, int32_t B, int32_t Z) {
    int32_t *s = L->sym + L->w_off[w];
    uint32_t n = L->w_len[w], i = 0, o = 0;
    int64_t c = L->w_cnt[w];
    while (i < n) {
        if (i + 1 < n && s[i] == A && s[i + 1] == B) {
            if (o > 0) {
                pair_sub(L, s[o - 1], A, c);
                if (pair_addw(L, s[o - 1], Z, c, w)) return -1;
            }
            pair_sub(L, A, B, c);
            if (i + 2 < n) {
                pair_sub(L, B, s[i + 2], c);
                if (pair_addw(L, Z, s[i + 2], c, w)) return -1;
            }
            s[o++] = Z;
            i += 2;
        } else {
            s[o++] = s[i++];
        }
    }
    L->w_len[w] = o;
    return 0;
}

/* Words from the piece counts, and every adjacent pair's count and where-list. Frees the piece
 * map (the words replace it). */
static int learner_init(learner *L, bpe_trainer *t, const int32_t byte_id[256]) {
    L->n_words = t->n_ent;
    size_t nw = L->n_words ? L->n_words : 1;
    L->sym = malloc((t->keys.n ? t->keys.n : 1) * sizeof *L->sym);
    L->w_off = malloc(nw * sizeof *L->w_off);
    L->w_len = malloc(nw * sizeof *L->w_len);
    L->w_cnt = malloc(nw * sizeof *L->w_cnt);
    L->w_stamp = malloc(nw * sizeof *L->w_stamp);
    if (!L->sym || !L->w_off || !L->w_len || !L->w_cnt || !L->w_stamp) return -1;
    uint64_t off = 0;
    for (size_t w = 0; w < L->n_words; w++) {
        const piece_entry *e = &t->ent[w];
        const unsigned char *p = (const unsigned char *)t->keys.s + e->off;
        for (uint32_t i = 0; i < e->len; i++) L->sym[off + i] = byte_id[p[i]];
        L->w_off[w] = off;
        L->w_len[w] = e->len;
        L->w_cnt[w] = e->count;
        L->w_stamp[w] = -1;
        off += e->len;
    }
    strbuf_free(&t->keys);
    free(t->ent);
    free(t->slot);
    t->ent = NULL;
    t->slot = NULL;
    t->n_ent = t->cap_ent = t->slot_cap = 0;
    for (size_t w = 0; w < L->n_words; w++) {
        const int32_t *s = L->sym + L->w_off[w];
        for (uint32_t i = 0; i + 1 < L->w_len[w]; i++) {
            int64_t k = pair_get(L, s[i], s[i + 1]);
            if (k < 0 || where_push(&L->pr[k], (int32_t)w)) return -1;
            L->pr[k].count += L->w_cnt[w];
        }
    }
    for (size_t k = 0; k < L->n_pr; k++)
        if (heap_push(L, (int64_t)k)) return -1;
    return 0;
}

int bpe_trainer_learn(bpe_trainer *t, int64_t vocab_size, int64_t min_frequency, bpe_train_progress_fn progress,
                      void *ctx, whale_err *err) {
    if (t->learned) return err_set(err, WHALE_E_ARG, "merges were learned already");
    int64_t least = 256 + (int64_t)t->n_sp;
    if (vocab_size < least)
        return err_set(err, WHALE_E_ARG,
                       "vocabulary size %lld is too small: the 256 byte tokens and %zu added tokens need %lld ids",
                       (long long)vocab_size, t->n_sp, (long long)least);
    if (vocab_size > (1 << 24)) return err_set(err, WHALE_E_ARG, "vocabulary size %lld is too large (at most 16M)", (long long)vocab_size);
    if (min_frequency < 1) return err_set(err, WHALE_E_ARG, "minimum frequency must be at least 1");
    t->learned = 1;
    int64_t n_tok_max = vocab_size - (int64_t)t->n_sp;
    t->tok_off = malloc((size_t)n_tok_max * sizeof *t->tok_off);
    t->tok_len = malloc((size_t)n_tok_max * sizeof *t->tok_len);
    t->tok_slot_cap = pow2_at_least((size_t)n_tok_max * 2);
    t->tok_slot = calloc(t->tok_slot_cap, sizeof *t->tok_slot);
    learner L = {0};
    int rc = WHALE_E_NOMEM;
    if (!t->tok_off || !t->tok_len || !t->tok_slot) goto done;

    /* The 256 byte tokens, in the order of their byte-level characters (GPT-2's and the Qwen
     * and DeepSeek vocabularies' order: '!' is 0). */
    uint32_t cp[256];
    int order[256];
    for (int b = 0; b < 256; b++) {
        char u[4];
        int l = tokenizer_byte_char((unsigned char)b, u);
        cp[b] = utf8_decode((const unsigned char *)u, l);
        order[b] = b;
    }
    for (int i = 1; i < 256; i++) /* insertion sort by code point */
        for (int j = i; j > 0 && cp[order[j - 1]] > cp[order[j]]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    int32_t byte_id[256];
    for (int i = 0; i < 256; i++) {
        char c = (char)order[i];
        size_t slot = 0;
        token_find(t, &c, 1, hash_bytes(&c, 1), &slot);
        if ((byte_id[order[i]] = token_add(t, &c, 1, slot)) < 0) goto done;
    }
    if (learner_init(&L, t, byte_id)) goto done;

    int64_t want = n_tok_max - 256; /* new tokens */
    size_t cap_merges = 0;
    strbuf joined = {0};
    while ((int64_t)t->n_tok - 256 < want) {
        heap_ent top = {0};
        int found = 0;
        while (L.n_heap) {
            top = heap_pop(&L);
            int64_t now = L.pr[top.pair].count;
            if (now == top.count) {
                found = 1;
                break;
            }
            if (now > 0 && heap_push(&L, top.pair)) goto done_joined;
        }
        if (!found || top.count < min_frequency) break;
        int32_t A = top.a, B = top.b;
        joined.n = 0;
        if (strbuf_add(&joined, t->tokbytes.s + t->tok_off[A], t->tok_len[A]) ||
            strbuf_add(&joined, t->tokbytes.s + t->tok_off[B], t->tok_len[B]))
            goto done_joined;
        size_t slot = 0;
        int32_t Z = token_find(t, joined.s, joined.n, hash_bytes(joined.s, joined.n), &slot);
        /* Two merges can spell the same bytes (ab+c, a+bc): the second reuses the token. */
        if (Z < 0 && (Z = token_add(t, joined.s, joined.n, slot)) < 0) goto done_joined;
        if (t->n_merges == cap_merges) {
            cap_merges = cap_merges ? cap_merges * 2 : 1024;
            merge_rec *m = realloc(t->merges, cap_merges * sizeof *m);
            if (!m) goto done_joined;
            t->merges = m;
        }
        t->merges[t->n_merges++] = (merge_rec){A, B, Z};

        L.step++;
        L.n_touched = 0;
        pair_rec *p = &L.pr[top.pair];
        int32_t *wl = p->where; /* taken: the pair's count ends at 0 */
        uint32_t nw = p->n_where;
        p->where = NULL;
        p->n_where = p->cap_where = 0;
        int bad = 0;
        for (uint32_t i = 0; i < nw && !bad; i++) {
            int32_t w = wl[i];
            if (L.w_stamp[w] == L.step) continue;
            L.w_stamp[w] = L.step;
            bad = merge_word(&L, w, A, B, Z);
        }
        free(wl);
        if (bad) goto done_joined;
        assert(L.pr[top.pair].count == 0);
        for (size_t i = 0; i < L.n_touched; i++)
            if (L.pr[L.touched[i]].count > 0 && heap_push(&L, L.touched[i])) goto done_joined;
        if (progress && (t->n_merges & 255) == 0) progress(ctx, (int64_t)t->n_tok - 256, want);
    }
    if (progress) progress(ctx, (int64_t)t->n_tok - 256, want);
    rc = 0;
done_joined:
    strbuf_free(&joined);
done:
    learner_free(&L);
    t->st.distinct = L.n_words;
    t->st.n_merges = (int64_t)t->n_merges;
    t->st.n_vocab = (int64_t)(t->n_tok + t->n_sp);
    return rc ? err_set(err, rc, "out of memory learning merges") : 0;
}

/* ---- results -------------------------------------------------------------------------- */

void bpe_trainer_stats(const bpe_trainer *t, bpe_train_stats *out) {
    *out = t->st;
    if (!t->learned) out->distinct = t->n_ent;
}

int bpe_trainer_merge(const bpe_trainer *t, int64_t i, int32_t *a, int32_t *b, int32_t *result) {
    if (i < 0 || (size_t)i >= t->n_merges) return -1;
    *a = t->merges[i].a;
    *b = t->merges[i].b;
    *result = t->merges[i].result;
    return 0;
}

const char *bpe_trainer_token(const bpe_trainer *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->n_tok) return NULL;
    *len = t->tok_len[id];
    return t->tokbytes.s + t->tok_off[id];
}

/* ---- tokenizer.json ------------------------------------------------------------------- */

/* s[0..n) as a JSON string (UTF-8 passed through; quote, backslash and controls escaped). */
static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Token id's byte-level spelling (each byte as its GPT-2 character) into b. -1: out of memory. */
static int byte_level(const bpe_trainer *t, int32_t id, strbuf *b) {
    b->n = 0;
    const unsigned char *p = (const unsigned char *)t->tokbytes.s + t->tok_off[id];
    for (uint32_t i = 0; i < t->tok_len[id]; i++) {
        char u[4];
        int l = tokenizer_byte_char(p[i], u);
        if (strbuf_add(b, u, (size_t)l)) return -1;
    }
    if (!b->s && strbuf_add(b, "", 0)) return -1;
    return 0;
}

#define BYTELEVEL_STEP "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}"

int bpe_trainer_write_json(const bpe_trainer *t, const char *path, whale_err *err) {
    if (!t->learned) return err_set(err, WHALE_E_ARG, "no merges learned yet");
    size_t plen = strlen(path) + 6;
    char *part = malloc(plen);
    if (!part) return err_set(err, WHALE_E_NOMEM, "out of memory");
    snprintf(part, plen, "%s.part", path);
    FILE *f = fopen(part, "wb");
    if (!f) {
        err_set(err, WHALE_E_IO, "%s: %s", part, strerror(errno));
        free(part);
        return WHALE_E_IO;
    }
    strbuf a = {0}, b = {0};
    int oom = 0;
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (size_t k = 0; k < t->n_sp; k++) {
        fprintf(f, "%s\n    {\"id\": %zu, \"content\": ", k ? "," : "", t->n_tok + k);
        json_str(f, t->sp[k].text, strlen(t->sp[k].text));
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                   "\"special\": %s}", t->sp[k].special ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"normalizer\": %s,\n", t->nfc ? "{\"type\": \"NFC\"}" : "null");
    fprintf(f, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [");
    for (const char *const *p = t->patterns; *p; p++) {
        fprintf(f, "\n    {\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        json_str(f, *p, strlen(*p));
        fprintf(f, "}, \"behavior\": \"Isolated\", \"invert\": false},");
    }
    fprintf(f, "\n    " BYTELEVEL_STEP "\n  ]},\n");
    fprintf(f, "  \"post_processor\": " BYTELEVEL_STEP ",\n  \"decoder\": " BYTELEVEL_STEP ",\n");
    fprintf(f, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n    \"vocab\": {",
            t->ignore_merges ? "true" : "false");
    for (size_t id = 0; id < t->n_tok && !oom; id++) {
        if ((oom = byte_level(t, (int32_t)id, &a))) break;
        fprintf(f, "%s\n      ", id ? "," : "");
        json_str(f, a.s, a.n);
        fprintf(f, ": %zu", id);
    }
    fprintf(f, "\n    },\n    \"merges\": [");
    /* "left right" strings: every version of tokenizers reads them, and Whale's loader does;
     * a byte-level token never holds a space (the space byte is spelled 'Ġ'). */
    for (size_t i = 0; i < t->n_merges && !oom; i++) {
        if ((oom = byte_level(t, t->merges[i].a, &a) || byte_level(t, t->merges[i].b, &b))) break;
        if ((oom = strbuf_add(&a, " ", 1) || strbuf_add(&a, b.s, b.n))) break;
        fprintf(f, "%s\n      ", i ? "," : "");
        json_str(f, a.s, a.n);
    }
    fprintf(f, "\n    ]\n  }\n}\n");
    strbuf_free(&a);
    strbuf_free(&b);
    int bad = ferror(f);
    if (fclose(f)) bad = 1;
    int rc = 0;
    if (oom) rc = err_set(err, WHALE_E_NOMEM, "out of memory writing %s", path);
    else if (bad) rc = err_set(err, WHALE_E_IO, "%s: write failed (disk full?)", part);
    else if (rename(part, path)) rc = err_set(err, WHALE_E_IO, "%s: cannot rename to %s: %s", part, path, strerror(errno));
    if (rc) remove(part);
    free(part);
    return rc;
}
