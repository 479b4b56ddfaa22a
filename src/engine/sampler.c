/* sampler.c — see sampler.h. Random numbers: xoshiro256** (the sampler's own: its sequence fixes every
 * seeded output), seeded through base/rng's splitmix64. */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"

typedef struct cand {
    float logit;
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

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

int sampler_is_greedy(const sampler *s) { return s->p.temperature <= 0 || s->p.top_k == 1; }

int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, size_t n_history) {
    penalties(s, logits, history, n_history);
    int64_t best = -1;
    for (int64_t i = 0; i < s->n_vocab; i++)
        if (!isnan(logits[i]) && logits[i] > -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
    if (best < 0) return 0;
    const sampler_params *p = &s->p;
    if (p->temperature <= 0 || p->top_k == 1) return (int32_t)best;

    /* Candidates: finite logits only, best first. */
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_vocab; i++)
        if (!isnan(logits[i]) && logits[i] > -INFINITY) s->c[n++] = (cand){logits[i], (int32_t)i};
    if (p->top_k > 0 && p->top_k < n) {
        /* Partial selection keeps this O(n) before sorting the survivors. */
        float kth;
        {
            int64_t lo = 0, hi = n - 1, k = p->top_k - 1;
            while (lo < hi) {
                float pivot = s->c[(lo + hi) / 2].logit;
                int64_t i = lo, j = hi;
                while (i <= j) {
                    while (s->c[i].logit > pivot) i++;
                    while (s->c[j].logit < pivot) j--;
                    if (i <= j) {
                        cand t = s->c[i];
                        s->c[i++] = s->c[j];
                        s->c[j--] = t;
                    }
                }
                if (k <= j) hi = j;
                else if (k >= i) lo = i;
                else break;
            }
            kth = s->c[k].logit;
        }
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            if (s->c[i].logit > kth) s->c[m++] = s->c[i];
        for (int64_t i = 0; i < n && m < p->top_k; i++)
            if (s->c[i].logit == kth) s->c[m++] = s->c[i];
        n = m;
    }
    qsort(s->c, (size_t)n, sizeof *s->c, cand_desc);
    /* Softmax with temperature (probabilities stored in .logit from here on). */
    double sum = 0, mx = s->c[0].logit;
    for (int64_t i = 0; i < n; i++) {
        double e = exp(((double)s->c[i].logit - mx) / p->temperature);
        s->c[i].logit = (float)e;
        sum += e;
    }
    for (int64_t i = 0; i < n; i++) s->c[i].logit = (float)(s->c[i].logit / sum);
    if (p->top_p > 0 && p->top_p < 1) {
        double cum = 0;
        int64_t m = 0;
        while (m < n) {
            cum += s->c[m++].logit;
            if (cum >= p->top_p) break;
        }
        n = m;
    }
    if (p->min_p > 0) {
        float floor_p = p->min_p * s->c[0].logit;
        int64_t m = 1;
        while (m < n && s->c[m].logit >= floor_p) m++;
        n = m;
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += s->c[i].logit;
    double r = next_unit(s) * total, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += s->c[i].logit;
        if (r < acc) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
