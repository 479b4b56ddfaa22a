/* test_kv_cache.c — the paged KV cache (model/kv_cache.c): rows are found through the page
 * table, kv_span never runs past a page whose successor lies elsewhere, and copies out and in
 * (the context cache's kv_cache_read/write) follow the table, also when pages are not in order;
 * pages are mapped on first write, shared between sequences (kv_cache_share) and copied before
 * a sharer writes (every layer, keys and values), and let go (kv_cache_keep) back to the pool. */
#include "check.h"
#include "model/model_impl.h"

enum { LAYERS = 2, DIM = 3, CTX = 200 /* 4 pages, the last partial */, SEQS = 2 };

/* Row value: every element says where it belongs. */
static float tag(int64_t layer, int which, int seq, int64_t pos, int64_t i) {
    return (float)(layer * 100000 + which * 50000 + seq * 10000 + pos * 10 + i);
}

static void fill(kv_cache *kv) {
    for (int s = 0; s < SEQS; s++)
        for (int64_t p = 0; p < CTX; p += KV_PAGE) CHECK(kv_own(kv, s, p) == 0);
    for (int64_t l = 0; l < LAYERS; l++)
        for (int which = 0; which < 2; which++)
            for (int s = 0; s < SEQS; s++)
                for (int64_t p = 0; p < CTX; p++) {
                    float row[DIM];
                    for (int64_t i = 0; i < DIM; i++) row[i] = tag(l, which, s, p, i);
                    kv_put(kv, kv_row(kv, which, l, s, p), row, DIM);
                }
}

/* Read positions [p0, p0+n) of seq out and check every element, layer by layer, keys then values. */
static void check_read(const kv_cache *kv, int seq, int64_t p0, int64_t n) {
    float buf[LAYERS * 2 * CTX * DIM];
    CHECK(kv_cache_pos_bytes(kv) == LAYERS * 2 * DIM * sizeof(float));
    CHECK(kv_cache_read(kv, seq, p0, n, buf) == 0);
    const float *b = buf;
    int bad = 0;
    for (int64_t l = 0; l < LAYERS; l++)
        for (int which = 0; which < 2; which++)
            for (int64_t p = p0; p < p0 + n; p++)
                for (int64_t i = 0; i < DIM; i++) bad += *b++ != tag(l, which, seq, p, i);
    CHECKF(bad == 0, "seq %d [%lld, +%lld): %d elements wrong", seq, (long long)p0, (long long)n, bad);
}

static void test_identity_pages(void) {
    kv_cache *kv = kv_cache_new(LAYERS, DIM, 1, 0, 0, CTX, SEQS);
    CHECK(kv && kv->n_page_seq == 4);
    fill(kv);
    const void *r;
    CHECK(kv_span(kv, 0, 1, 1, 10, CTX - 10, &r) == CTX - 10); /* own pages in order: one span */
    CHECK(r == kv_row(kv, 0, 1, 1, 10));
    check_read(kv, 0, 0, CTX);
    check_read(kv, 1, 60, 70);
    kv_cache_free(kv);
}

static void test_permuted_pages(void) {
    kv_cache *kv = kv_cache_new(LAYERS, DIM, 1, 0, 0, CTX, SEQS);
    /* sequence 0's logical pages in physical pages 5, 6, 0, 2; sequence 1's in 7, 1, 3, 4 */
    int32_t perm[8] = {5, 6, 0, 2, 7, 1, 3, 4};
    for (int i = 0; i < 8; i++) kv->page[i] = perm[i], kv->ref[perm[i]] = 1;
    kv->n_free = 0;
    fill(kv);
    const void *r;
    CHECK(kv_span(kv, 0, 0, 0, 0, CTX, &r) == 2 * KV_PAGE); /* pages 5, 6 adjoin; 0 does not follow */
    CHECK(kv_span(kv, 0, 0, 0, 100, CTX, &r) == 28);        /* to the end of logical page 1 */
    CHECK(kv_span(kv, 1, 0, 1, 130, CTX - 130, &r) == 70); /* physical 3, 4: the rest of the context */
    CHECK(kv_span(kv, 1, 0, 1, 130, 5, &r) == 5);           /* never more than asked */
    check_read(kv, 0, 0, CTX);
    check_read(kv, 1, 0, CTX);
    check_read(kv, 1, 63, 3);
    /* a write through the table lands where kv_row finds it */
    float rows[LAYERS * 2 * 2 * DIM];
    for (int i = 0; i < LAYERS * 2 * 2 * DIM; i++) rows[i] = -1.0f - (float)i;
    CHECK(kv_cache_write(kv, 0, 127, 2, rows) == 0); /* spans logical pages 1 and 2 */
    CHECK(((const float *)kv_row(kv, 0, 0, 0, 127))[0] == -1.0f);
    CHECK(((const float *)kv_row(kv, 0, 0, 0, 128))[0] == -1.0f - DIM);
    CHECK(((const float *)kv_row(kv, 1, 1, 0, 128))[DIM - 1] == -(float)(LAYERS * 2 * 2 * DIM));
    CHECK(kv_cache_read(kv, 0, CTX - 1, 2, rows) == -1); /* past the context */
    CHECK(kv_cache_write(kv, SEQS, 0, 1, rows) == -1);    /* no such sequence */
    kv_cache_free(kv);
}

static void test_mla_cache_has_no_values(void) {
    kv_cache *kv = kv_cache_new(3, 8, 0, 1, 0, 65, 1);
    CHECK(kv && !kv->v && kv_cache_pos_bytes(kv) == 3 * 8 * 2);
    kv_cache_free(kv);
    CHECK(kv_cache_new(3, 8, 0, 0, 0, 0, 1) == NULL);
}

/* Sequence 1 maps sequence 0's first two pages: the same rows, one copy; a write by either
 * copies the page for the writer only; keep lets pages go, and a page two map stays in use. */
static void test_shared_pages_copy_on_write(void) {
    kv_cache *kv = kv_cache_new(LAYERS, DIM, 1, 0, 0, CTX, SEQS);
    int64_t used, total;
    size_t pb;
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 0 && total == 8 && pb == KV_PAGE * LAYERS * 2 * DIM * sizeof(float));
    float buf[LAYERS * 2 * CTX * DIM];
    CHECK(kv_cache_read(kv, 0, 0, 1, buf) == -1); /* nothing written there yet */
    fill(kv);
    kv_cache_keep(kv, 1, 0);
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 4);
    CHECK(kv_cache_share(kv, 1, 0, 100) == -1); /* whole pages only */
    CHECK(kv_cache_share(kv, 1, 0, 2 * KV_PAGE) == 0);
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 4); /* shared, not copied */
    CHECK(kv_row(kv, 0, 1, 1, 70) == kv_row(kv, 0, 1, 0, 70));
    /* sequence 1 writes at 70: its page 1 becomes a copy, page 0 stays shared */
    CHECK(kv_own(kv, 1, 70) == 0);
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 5);
    CHECK(kv_row(kv, 0, 1, 1, 70) != kv_row(kv, 0, 1, 0, 70) && kv_row(kv, 1, 0, 1, 5) == kv_row(kv, 1, 0, 0, 5));
    float row[DIM] = {-7, -7, -7};
    kv_put(kv, kv_row(kv, 1, 1, 1, 70), row, DIM);
    check_read(kv, 0, 0, CTX); /* sequence 0 untouched */
    CHECK(kv_cache_read(kv, 1, 64, 64, buf) == 0);
    /* the copy holds every layer's keys and values of the page (tagged as sequence 0's), but
     * the row just written */
    int bad = 0;
    const float *b = buf;
    for (int64_t l = 0; l < LAYERS; l++)
        for (int which = 0; which < 2; which++)
            for (int64_t p = 64; p < 128; p++)
                for (int64_t i = 0; i < DIM; i++, b++)
                    bad += *b != (l == 1 && which == 1 && p == 70 ? -7.0f : tag(l, which, 0, p, i));
    CHECK(bad == 0);
    /* sequence 0 writes into the page both still map (page 0): it gets the copy */
    const void *before = kv_row(kv, 0, 0, 1, 3);
    CHECK(kv_own(kv, 0, 3) == 0);
    CHECK(kv_row(kv, 0, 0, 1, 3) == before && kv_row(kv, 0, 0, 0, 3) != before);
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 6);
    /* letting go: sequence 0 keeps one page, sequence 1 none */
    kv_cache_keep(kv, 0, 10);
    kv_cache_keep(kv, 1, 0);
    kv_cache_pages(kv, &used, &total, &pb);
    CHECK(used == 1);
    CHECK(kv_cache_share(kv, 1, 0, 2 * KV_PAGE) == -1); /* sequence 0's page 1 is gone */
    kv_cache_free(kv);
}

int main(void) {
    RUN(test_identity_pages);
    RUN(test_permuted_pages);
    RUN(test_shared_pages_copy_on_write);
    RUN(test_mla_cache_has_no_values);
    return check_report("test_kv_cache");
}
