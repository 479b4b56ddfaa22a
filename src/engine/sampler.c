/* sampler.c — see sampler.h. Random numbers: xoshiro256** (the sampler's own: its sequence fixes every
 * seeded output), seeded through base/rng's splitmix64. */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"

/* Top-p sorts the best candidates in batches of this many, then twice as many, ...: a peaked
 * distribution reaches its mass within the first batch. */
#define SAMPLER_TOP_P_BATCH 64

typedef struct cand {
    float logit;
    float p; /* probability, once the softmax is done */
    int32_t id;
} cand;

struct sampler {
    sampler_params p;
    int64_t n_vocab;
    cand *c;          /* (n_vocab) candidates */
    uint16_t *count;  /* (n_vocab) occurrences in the penalty window */
    uint64_t rng[4];
};

sampler_params sampler_default_params(void) {
    sampler_params p = {0.6f, 0, 0.95f, 0.0f, 1.0f, 0.0f, 0.0f, 64, SAMPLER_SEED_RANDOM};
    return p;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(sampler *s) {
    uint64_t *r = s->rng, out = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return out;
}

static double next_unit(sampler *s) { return rng_unit(next_u64(s)); } /* [0, 1) */

void sampler_seed(sampler *s, uint64_t seed) {
    if (seed == SAMPLER_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    for (int i = 0; i < 4; i++) s->rng[i] = rng_splitmix64(&seed);
}

sampler *sampler_init(const sampler_params *p, int64_t n_vocab) {
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : sampler_default_params();
    s->n_vocab = n_vocab;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    if (!s->c || !s->count) {
        sampler_free(s);
        return NULL;
    }
    sampler_seed(s, s->p.seed);
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->count);
    free(s);
}

static void penalties(sampler *s, float *logits, const int32_t *hist, size_t n) {
    const sampler_params *p = &s->p;
    if (p->penalty_last_n == 0 || n == 0) return;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0) return;
    size_t from = p->penalty_last_n < 0 || (size_t)p->penalty_last_n >= n ? 0 : n - (size_t)p->penalty_last_n;
    for (size_t i = from; i < n; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab && s->count[hist[i]] < UINT16_MAX) s->count[hist[i]]++;
    for (size_t i = from; i < n; i++) {
        int32_t t = hist[i];
        if (t < 0 || t >= s->n_vocab || !s->count[t]) continue;
        float *l = &logits[t];
        if (p->repeat_penalty != 1.0f) *l = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        *l -= p->presence_penalty + p->frequency_penalty * (float)s->count[t];
        s->count[t] = 0; /* apply once per distinct token; also leaves the table clean */
    }
}

/* Candidate order: higher logit first, the lower id among equals (a strict total order: ids
 * differ). */
static int cand_before(const cand *x, const cand *y) {
    return x->logit != y->logit ? x->logit > y->logit : x->id < y->id;
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return cand_before(x, y) ? -1 : cand_before(y, x) ? 1 : 0;
}

static void cand_swap(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* Move the m best of c[0..n) (cand_before) into c[0..m), in no particular order: quickselect,
 * O(n) on average. Precondition: 0 < m < n. */
static void cand_select(cand *c, int64_t n, int64_t m) {
    int64_t lo = 0, hi = n - 1, k = m - 1;
    while (lo < hi) {
        /* median of three as the pivot, kept at hi */
        int64_t mid = lo + (hi - lo) / 2;
        if (cand_before(&c[mid], &c[lo])) cand_swap(&c[mid], &c[lo]);
        if (cand_before(&c[hi], &c[lo])) cand_swap(&c[hi], &c[lo]);
        if (cand_before(&c[mid], &c[hi])) cand_swap(&c[mid], &c[hi]);
        cand pivot = c[hi];
        int64_t at = lo;
        for (int64_t i = lo; i < hi; i++)
            if (cand_before(&c[i], &pivot)) cand_swap(&c[i], &c[at++]);
        cand_swap(&c[at], &c[hi]);
        if (at == k) return;
        if (at < k) lo = at + 1;
        else hi = at - 1;
    }
}

/* Sort the next best candidates after the sorted prefix c[0..sorted) into place: at least
 * `want` sorted in all (or every one of the n). Returns the new sorted count. */
static int64_t cand_grow(cand *c, int64_t n, int64_t sorted, int64_t want) {
    if (want >= n) want = n;
    if (want <= sorted) return sorted;
    if (want < n) cand_select(c + sorted, n - sorted, want - sorted);
    qsort(c + sorted, (size_t)(want - sorted), sizeof *c, cand_desc);
    return want;
}

int sampler_is_greedy(const sampler *s) { return s->p.temperature <= 0 || s->p.top_k == 1; }

/* The candidates sampler_sample draws from, into s->c[0..n) with their probabilities; returns
 * n, or 0 when the choice is the best token (*best_out; -1 when no logit is finite). The order
 * of operations is sampler.h's. Only the candidates a setting looks at get sorted:
 * top-k selects its k (quickselect) and sorts those; top-p sorts the best ones in growing
 * batches until their mass reaches top_p; with neither, nothing is sorted and the draw walks
 * the candidates in id order (the same distribution; a given seed may pick another token than
 * a best-first walk would). */
static int64_t dist(sampler *s, float *logits, const int32_t *history, size_t n_history, int64_t *best_out) {
    penalties(s, logits, history, n_history);
    int64_t best = -1;
    for (int64_t i = 0; i < s->n_vocab; i++)
        if (!isnan(logits[i]) && logits[i] > -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
    *best_out = best;
    const sampler_params *p = &s->p;
    if (best < 0 || p->temperature <= 0 || p->top_k == 1) return 0;

    /* Candidates: finite logits only, in id order. c[0..sorted) is the best-first prefix. */
    cand *c = s->c;
    int64_t n = 0, sorted = 0;
    for (int64_t i = 0; i < s->n_vocab; i++)
        if (!isnan(logits[i]) && logits[i] > -INFINITY) c[n++] = (cand){logits[i], 0, (int32_t)i};
    if (p->top_k > 0 && p->top_k < n) {
        cand_select(c, n, p->top_k);
        n = p->top_k;
    }
    if (p->top_k > 0) sorted = cand_grow(c, n, 0, n);
    /* Softmax with temperature, summed in the candidates' order */
    double sum = 0, mx = logits[best];
    for (int64_t i = 0; i < n; i++) {
        double e = exp(((double)c[i].logit - mx) / p->temperature);
        c[i].p = (float)e;
        sum += e;
    }
    for (int64_t i = 0; i < n; i++) c[i].p = (float)(c[i].p / sum);
    if (p->top_p > 0 && p->top_p < 1) { /* the smallest best-first prefix holding top_p */
        double cum = 0;
        int64_t m = 0;
        for (int64_t want = SAMPLER_TOP_P_BATCH; m < n; want *= 2) {
            sorted = cand_grow(c, n, sorted, want);
            while (m < sorted && cum < p->top_p) cum += c[m++].p;
            if (cum >= p->top_p) break;
        }
        n = m;
    }
    /* The best candidate is c[0] when anything is sorted, else id `best`'s */
    if (p->min_p > 0) {
        float floor_p = p->min_p * (sorted ? c[0].p : (float)((float)1.0 / sum));
        int64_t m = 1;
        if (sorted) {
            while (m < n && c[m].p >= floor_p) m++;
        } else {
            m = 0;
            for (int64_t i = 0; i < n; i++)
                if (c[i].p >= floor_p || c[i].id == best) c[m++] = c[i];
        }
        n = m;
    }
    return n;
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history) {
    int64_t best, n = dist(s, logits, history, n_history, &best);
    if (!n) return best < 0 ? 0 : (int32_t)best;
    const cand *c = s->c;
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += c[i].p;
    double r = next_unit(s) * total, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

int32_t sampler_sample_draft(sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t draft) {
    int64_t best, n = dist(s, logits, history, n_history, &best);
    if (!n) return best < 0 ? 0 : (int32_t)best;
    const cand *c = s->c;
    double total = 0, pd = 0;
    for (int64_t i = 0; i < n; i++) {
        total += c[i].p;
        if (c[i].id == draft) pd = c[i].p;
    }
    if (next_unit(s) * total < pd) return draft;
    /* rejected: draw from the rest (the draft's mass taken out) */
    double r = next_unit(s) * (total - pd), acc = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < n; i++) {
        if (c[i].id == draft) continue;
        acc += c[i].p;
        last = i;
        if (r < acc) return c[i].id;
    }
    return last >= 0 ? c[last].id : draft; /* rounding at the end of the walk; draft: the only candidate */
}

int64_t sampler_candidates(sampler *s, float *logits, const int32_t *history, size_t n_history, int32_t *ids,
                           float *probs) {
    int64_t best, n = dist(s, logits, history, n_history, &best);
    if (!n) {
        if (best < 0) return 0;
        ids[0] = (int32_t)best, probs[0] = 1;
        return 1;
    }
    for (int64_t i = 0; i < n; i++) ids[i] = s->c[i].id, probs[i] = s->c[i].p;
    return n;
}

/* Logit order for sampler_top: higher first, lower id among equals, NaN after everything. */
static int top_before(const float *l, int32_t a, int32_t b) {
    if (isnan(l[a]) || isnan(l[b])) return isnan(l[a]) != isnan(l[b]) ? !isnan(l[a]) : a < b;
    return l[a] != l[b] ? l[a] > l[b] : a < b;
}

/* Restore the heap below i: the root is the worst kept (every parent comes after its children). */
static void top_sift(const float *l, int32_t *h, int k, int i) {
    for (;;) {
        int w = i, a = 2 * i + 1, b = a + 1;
        if (a < k && top_before(l, h[w], h[a])) w = a;
        if (b < k && top_before(l, h[w], h[b])) w = b;
        if (w == i) return;
        int32_t t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

int sampler_top(const float *logits, int64_t n, int k, int32_t *ids) {
    if (k > n) k = (int)n;
    if (k <= 0) return 0;
    for (int i = 0; i < k; i++) ids[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--) top_sift(logits, ids, k, i);
    for (int64_t i = k; i < n; i++)
        if (top_before(logits, (int32_t)i, ids[0])) {
            ids[0] = (int32_t)i;
            top_sift(logits, ids, k, 0);
        }
    /* heap sort: take the worst off the root into the end */
    for (int m = k - 1; m > 0; m--) {
        int32_t t = ids[0];
        ids[0] = ids[m];
        ids[m] = t;
        top_sift(logits, ids, m, 0);
    }
    return k;
}
