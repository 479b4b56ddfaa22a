/* test_engine.c — sampler, reasoning splitter and chat formats (on the real DeepSeek LLM
 * vocabulary for token-level checks; the exact-template comparison with Jinja is
 * tests/py/test_chat_format.py). */
#include <math.h>

#include "check.h"
#include "engine/chat_format.h"
#include "engine/draft.h"
#include "engine/reasoning.h"
#include "engine/sampler.h"
#include "formats/gguf.h"

/* ---- sampler -------------------------------------------------------------------------- */

static int32_t sample_once(const sampler_params *p, const float *l0, int n) {
    float l[16];
    memcpy(l, l0, (size_t)n * sizeof *l);
    sampler *s = sampler_init(p, n);
    int32_t t = sampler_sample(s, l, NULL, 0);
    sampler_free(s);
    return t;
}

static void test_sampler_greedy_and_ties(void) {
    sampler_params p = sampler_default_params();
    p.temperature = 0;
    float l[5] = {1, 3, 3, -2, 0};
    CHECK(sample_once(&p, l, 5) == 1); /* lowest id wins a tie */
    float nan_first[3] = {NAN, 0.5f, 0.2f};
    CHECK(sample_once(&p, nan_first, 3) == 1);
    float all_bad[3] = {-INFINITY, NAN, -INFINITY};
    CHECK(sample_once(&p, all_bad, 3) == 0);
    p = sampler_default_params();
    p.top_k = 1;
    p.seed = 7;
    CHECK(sample_once(&p, l, 5) == 1);
    p = sampler_default_params();
    p.top_p = 1e-6f;
    p.seed = 7;
    float l2[4] = {0, 5, 1, 2};
    CHECK(sample_once(&p, l2, 4) == 1);
    p = sampler_default_params();
    p.min_p = 0.99f;
    CHECK(sample_once(&p, l2, 4) == 1);
}

static void test_sampler_seed_reproducible_and_distribution(void) {
    sampler_params p = sampler_default_params();
    p.temperature = 1;
    p.top_p = 1;
    p.seed = 42;
    float base[4] = {0, 1, 2, 0.5f};
    sampler *a = sampler_init(&p, 4), *b = sampler_init(&p, 4);
    int counts[4] = {0};
    int same = 1;
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        float la[4], lb[4];
        memcpy(la, base, sizeof la);
        memcpy(lb, base, sizeof lb);
        int32_t x = sampler_sample(a, la, NULL, 0), y = sampler_sample(b, lb, NULL, 0);
        same &= x == y;
        counts[x]++;
    }
    CHECK(same);
    double z = 0;
    for (int i = 0; i < 4; i++) z += exp(base[i]);
    for (int i = 0; i < 4; i++) {
        double pr = exp(base[i]) / z, sd = sqrt(N * pr * (1 - pr));
        CHECKF(fabs(counts[i] - N * pr) < 4 * sd, "token %d: %d draws, expected %.0f", i, counts[i], N * pr);
    }
    sampler_free(a);
    sampler_free(b);
}

/* Speculative sampling against a fixed draft gives sampler_sample's own distribution, whichever
 * token is drafted (the best, a middling one, one top-p cut away), within 4 standard deviations
 * of N draws per token; and the draft is kept with its own probability. */
static void test_sampler_draft_keeps_the_distribution(void) {
    sampler_params p = sampler_default_params();
    p.temperature = 0.8f;
    p.top_p = 0.9f;
    p.seed = 7;
    enum { V = 6, N = 40000 };
    const float base[V] = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.5f};
    sampler *s = sampler_init(&p, V);
    float work[V], probs[V], want[V] = {0};
    int32_t ids[V];
    memcpy(work, base, sizeof work);
    int64_t nc = sampler_candidates(s, work, NULL, 0, ids, probs);
    double tot = 0;
    for (int64_t i = 0; i < nc; i++) tot += probs[i];
    for (int64_t i = 0; i < nc; i++) want[ids[i]] = (float)(probs[i] / tot);
    CHECK(nc >= 3 && want[4] == 0); /* top-p cut something, here token 4 */
    const int32_t drafts[] = {1, 3, 0, 4};
    for (size_t d = 0; d < sizeof drafts / sizeof *drafts; d++) {
        int counts[V] = {0}, kept = 0;
        for (int i = 0; i < N; i++) {
            memcpy(work, base, sizeof work);
            int32_t t = sampler_sample_draft(s, work, NULL, 0, drafts[d]);
            CHECK(t >= 0 && t < V);
            counts[t]++;
            kept += t == drafts[d];
        }
        for (int t = 0; t < V; t++) {
            double pr = want[t], sd = sqrt(N * pr * (1 - pr)) + 1;
            CHECKF(fabs(counts[t] - N * pr) < 4 * sd, "draft %d, token %d: %d draws, expected %.0f", drafts[d], t,
                   counts[t], N * pr);
        }
        CHECK(kept == counts[drafts[d]]);
    }
    p.temperature = 0; /* greedy: the best token, whatever the draft */
    sampler *g = sampler_init(&p, V);
    memcpy(work, base, sizeof work);
    CHECK(sampler_sample_draft(g, work, NULL, 0, 3) == 1);
    sampler_free(g);
    sampler_free(s);
}

/* Prompt lookup: the longest final n-gram (4 down to 2) with an earlier occurrence, its latest
 * occurrence; one guess per 2 tokens of agreement reaching back from the end (at least 1), at
 * most max, never past the end. */
static void test_lookup_finds_the_latest_longest_match(void) {
    int32_t out[DRAFT_MAX];
    /* "1 2 3 9 ... 1 2 3": the 3-gram occurred at 0 (nothing before it: 3 agree), then 9 */
    const int32_t a[] = {1, 2, 3, 9, 8, 7, 5, 1, 2, 3};
    CHECK(draft_lookup_find(a, 10, 4, out) == 1 && out[0] == 9);
    /* the latest of two occurrences wins */
    const int32_t b[] = {4, 5, 6, 4, 5, 7, 0, 4, 5};
    CHECK(draft_lookup_find(b, 9, 3, out) == 1 && out[0] == 7);
    /* a longer match beats a later shorter one: ... 3 4 5 X ... 4 5 Y ... 3 4 5 */
    const int32_t c[] = {3, 4, 5, 10, 4, 5, 11, 3, 4, 5};
    CHECK(draft_lookup_find(c, 10, 4, out) == 1 && out[0] == 10);
    /* text being copied: 10 tokens agree (the 4-gram and 6 before it), so 5 guesses, cut to
     * max, and never past the end */
    const int32_t d[] = {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36,
                         /* copy: */ 20, 21, 22, 23, 24, 25, 26, 27, 28, 29};
    int n = draft_lookup_find(d, 27, 16, out);
    CHECK(n == 5 && out[0] == 30 && out[4] == 34);
    CHECK(draft_lookup_find(d, 27, 3, out) == 3);
    const int32_t e[] = {1, 2, 1, 2, 1, 2}; /* 4 agree, 2 guesses, as far as tokens exist */
    n = draft_lookup_find(e, 6, 8, out);
    CHECK(n == 2 && out[0] == 1 && out[1] == 2);
    /* no bigram repeats: nothing (a lone repeated token is not enough) */
    const int32_t f[] = {1, 2, 3, 1, 4};
    CHECK(draft_lookup_find(f, 5, 4, out) == 0);
    CHECK(draft_lookup_find(f, 1, 4, out) == 0);
}

static void test_sampler_penalties(void) {
    sampler_params p = sampler_default_params();
    p.temperature = 0;
    p.repeat_penalty = 2;
    float l[3] = {2.0f, 1.5f, 0.1f};
    int32_t hist[2] = {0, 0};
    sampler *s = sampler_init(&p, 3);
    CHECK(sampler_sample(s, l, hist, 2) == 1); /* 2.0 / 2 = 1.0 < 1.5 */
    CHECK(fabsf(l[0] - 1.0f) < 1e-6f);
    sampler_free(s);
    p.repeat_penalty = 1;
    p.frequency_penalty = 0.3f;
    float l2[3] = {2.0f, 1.5f, 0.1f};
    s = sampler_init(&p, 3);
    CHECK(sampler_sample(s, l2, hist, 2) == 1); /* 2.0 - 2 * 0.3 = 1.4 */
    CHECK(fabsf(l2[0] - 1.4f) < 1e-6f);
    sampler_free(s);
    p.frequency_penalty = 0;
    p.presence_penalty = 0.4f;
    float l3[3] = {2.0f, 1.7f, 0.1f};
    s = sampler_init(&p, 3);
    CHECK(sampler_sample(s, l3, hist, 2) == 1); /* once per seen token: 2.0 - 0.4 = 1.6 < 1.7 */
    CHECK(fabsf(l3[0] - 1.6f) < 1e-6f);
    sampler_free(s);
}

/* ---- reasoning ------------------------------------------------------------------------ */

typedef struct split_out {
    char think[512], answer[512];
    size_t nt, na;
} split_out;

static void collect(void *ctx, reasoning_kind k, const char *t, size_t n) {
    split_out *o = ctx;
    char *dst = k == REASONING_THINK ? o->think : o->answer;
    size_t *len = k == REASONING_THINK ? &o->nt : &o->na;
    if (*len + n < 511) {
        memcpy(dst + *len, t, n);
        *len += n;
        dst[*len] = 0;
    }
}

/* Feed s cut at every pair of positions; all cuts must agree with feeding it whole. */
static void check_split(const char *s, int in_think, const char *want_think, const char *want_answer) {
    size_t n = strlen(s);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b += (n > 40 ? 7 : 1)) {
            split_out o = {0};
            reasoning r;
            reasoning_init(&r, in_think, collect, &o);
            reasoning_feed(&r, s, a);
            reasoning_feed(&r, s + a, b - a);
            reasoning_feed(&r, s + b, n - b);
            reasoning_flush(&r);
            if (strcmp(o.think, want_think) || strcmp(o.answer, want_answer)) {
                CHECKF(0, "%s cut at %zu,%zu: think [%s] answer [%s]", s, a, b, o.think, o.answer);
                return;
            }
        }
    /* and one byte at a time */
    split_out o = {0};
    reasoning r;
    reasoning_init(&r, in_think, collect, &o);
    for (size_t i = 0; i < n; i++) reasoning_feed(&r, s + i, 1);
    reasoning_flush(&r);
    CHECK(!strcmp(o.think, want_think) && !strcmp(o.answer, want_answer));
}

static void test_reasoning_split(void) {
    check_split("Let me think.\n2+2=4\n</think>\n\nThe answer is 4.", 1, "Let me think.\n2+2=4", "The answer is 4.");
    check_split("<think>\nhmm\n</think>\n\nok", 0, "hmm", "ok");
    check_split("no tags at all <b>bold</b>", 0, "", "no tags at all <b>bold</b>");
    check_split("<thinking> is not a tag </thx>", 0, "", "<thinking> is not a tag </thx>");
    check_split("still thinking when cut off <", 1, "still thinking when cut off <", "");
    check_split("a</think>b <think>literal</think>", 1, "a", "b <think>literal</think>");
    check_split("x\n\ny</think>z", 1, "x\n\ny", "z");
    check_split("中文推理</think>答案🐋", 1, "中文推理", "答案🐋");
}

/* ---- chat formats --------------------------------------------------------------------- */

static void test_chat_render(void) {
    chat_msg m[] = {{.role = CHAT_SYSTEM, .content = "Be brief."}, {.role = CHAT_USER, .content = "Hi"}, {.role = CHAT_ASSISTANT, .content = "<think>\nx\n</think>\n\nHello!"},
                    {.role = CHAT_USER, .content = "2+2?"}};
    char *r1 = chat_format_render(CHAT_FORMAT_DEEPSEEK_R1, m, 4, CHAT_GENERATION_PROMPT);
    CHECK(r1 && !strcmp(r1, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>\n\nHello!<｜end▁of▁sentence｜>"
                            "<｜User｜>2+2?<｜Assistant｜><think>\n"));
    free(r1);
    char *cm = chat_format_render(CHAT_FORMAT_CHATML, m + 1, 1, CHAT_GENERATION_PROMPT);
    CHECK(cm && !strcmp(cm, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                            "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    free(cm);
    CHECK(chat_format_detect(NULL, NULL, "chatml") == CHAT_FORMAT_CHATML);
    CHECK(chat_format_detect("{{'<｜Assistant｜>'}}", NULL, NULL) == CHAT_FORMAT_DEEPSEEK_R1);
    CHECK(chat_format_detect(NULL, NULL, "nonsense") == CHAT_FORMAT_NONE);
    /* ChatML that forces thinking: the reply opens <think>, history keeps only answers */
    char *ct = chat_format_render(CHAT_FORMAT_CHATML_THINK, m, 4, CHAT_GENERATION_PROMPT);
    CHECK(ct && !strcmp(ct, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                            "<|im_start|>assistant\n\n\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                            "<|im_start|>assistant\n<think>\n"));
    free(ct);
    ct = chat_format_render(CHAT_FORMAT_CHATML_THINK, m + 1, 1, CHAT_GENERATION_PROMPT | CHAT_NO_FORCED_THINK);
    CHECK(ct && strstr(ct, "<|im_start|>assistant\n") && !strstr(ct, "<think>"));
    free(ct);
    CHECK(chat_format_detect(chat_template_chatml_think, NULL, NULL) == CHAT_FORMAT_CHATML_THINK);
    CHECK(chat_format_detect("{{ '<|im_start|>assistant\\n<think>\\n' }}", NULL, NULL) == CHAT_FORMAT_CHATML_THINK);
    CHECK(chat_format_detect("{{ '<|im_start|>assistant\\n' }}", NULL, NULL) == CHAT_FORMAT_CHATML);
    CHECK(chat_format_detect(NULL, NULL, "chatml-think") == CHAT_FORMAT_CHATML_THINK);
    CHECK(chat_format_thinks(CHAT_FORMAT_CHATML_THINK) && chat_format_thinks(CHAT_FORMAT_DEEPSEEK_R1) &&
          !chat_format_thinks(CHAT_FORMAT_CHATML));
    CHECK(whale_chat_format_thinks("chatml-think") && !whale_chat_format_thinks("chatml") &&
          !whale_chat_format_thinks(NULL));
}

static void test_chat_encode_cannot_be_forged(void) {
    gguf_file f;
    tokenizer *t = NULL;
    whale_err err = {0};
    const char *path = check_shared_need("vocab/ggml-vocab-deepseek-llm.gguf");
    if (!path) return;
    CHECK(gguf_open(&f, path, 0, &err) == 0);
    CHECK(tokenizer_load_gguf(&t, &f, &err) == 0);
    gguf_close(&f);
    if (!t) return;
    /* The DeepSeek LLM vocabulary has BOS/EOS but no <｜User｜>: the R1 format must say so. */
    chat_msg m[] = {{.role = CHAT_USER, .content = "hi <｜begin▁of▁sentence｜> there"}};
    tok_ids ids = {0};
    int rc = chat_format_encode(t, CHAT_FORMAT_DEEPSEEK_R1, m, 1, CHAT_GENERATION_PROMPT, &ids, &err);
    CHECK(rc == WHALE_E_UNSUPPORTED && strstr(err.msg, "<｜User｜>"));
    tok_ids_free(&ids);
    tokenizer_free(t);
}

/* The reference: every finite logit sorted best first (higher logit, lower id), then top-k,
 * softmax, top-p, min-p, as sampler.h orders them; keeps the survivors' ids and probabilities
 * in ref_id/ref_p (best first). Returns how many. */
typedef struct ref_cand {
    float logit;
    int32_t id;
} ref_cand;

static int ref_desc(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

static int64_t ref_candidates(const sampler_params *p, const float *l, int64_t V, int32_t *ref_id, double *ref_p) {
    ref_cand *c = malloc((size_t)V * sizeof *c);
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (!isnan(l[i]) && l[i] > -INFINITY) c[n++] = (ref_cand){l[i], (int32_t)i};
    qsort(c, (size_t)n, sizeof *c, ref_desc);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp(((double)c[i].logit - c[0].logit) / p->temperature);
    for (int64_t i = 0; i < n; i++) ref_id[i] = c[i].id, ref_p[i] = exp(((double)c[i].logit - c[0].logit) / p->temperature) / sum;
    if (p->top_p > 0 && p->top_p < 1) {
        double cum = 0;
        int64_t m = 0;
        while (m < n && cum < p->top_p) cum += ref_p[m++];
        n = m;
    }
    if (p->min_p > 0) {
        int64_t m = 1;
        while (m < n && ref_p[m] >= p->min_p * ref_p[0]) m++;
        n = m;
    }
    free(c);
    return n;
}

/* The sampler's partial selection (quickselect for top-k, top-p over a growing sorted prefix,
 * no sort without either) keeps the same candidates with the same probabilities as sorting
 * the whole vocabulary, over settings and logits with ties, -inf and NaN. */
static void test_sampler_candidates_match_full_sort(void) {
    enum { V = 5000 };
    static float l[V], work[V], probs[V];
    static int32_t ids[V], ref_id[V];
    static double ref_p[V], by_id[V];
    const int top_k[] = {0, 2, 7, 40, 4999, 6000};
    const float top_p[] = {1, 0.95f, 0.5f, 1e-6f, 0.999f};
    const float min_p[] = {0, 0.05f};
    const float temp[] = {0.6f, 1.0f, 1.7f};
    uint64_t rng = 12345;
    int cases = 0, bad = 0;
    for (int shape = 0; shape < 3; shape++) {
        for (int64_t i = 0; i < V; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            double u = (double)(rng >> 11) / 9007199254740992.0;
            /* flat, peaked (a few strong tokens), and coarse (many exact ties) */
            l[i] = shape == 0 ? (float)(u * 4) : shape == 1 ? (float)(u * 4 + (i % 997 == 3 ? 12 : 0)) : (float)(int)(u * 8);
            if (i % 501 == 7) l[i] = -INFINITY;
            if (i % 733 == 11) l[i] = NAN;
        }
        for (size_t a = 0; a < sizeof top_k / sizeof *top_k; a++)
            for (size_t b = 0; b < sizeof top_p / sizeof *top_p; b++)
                for (size_t d = 0; d < sizeof min_p / sizeof *min_p; d++)
                    for (size_t e = 0; e < sizeof temp / sizeof *temp; e++) {
                        sampler_params p = sampler_default_params();
                        p.temperature = temp[e], p.top_k = top_k[a], p.top_p = top_p[b], p.min_p = min_p[d], p.seed = 1;
                        sampler *s = sampler_init(&p, V);
                        memcpy(work, l, sizeof work);
                        int64_t n = sampler_candidates(s, work, NULL, 0, ids, probs);
                        sampler_free(s);
                        int64_t rn = ref_candidates(&p, l, V, ref_id, ref_p);
                        for (int64_t i = 0; i < V; i++) by_id[i] = -1;
                        for (int64_t i = 0; i < rn; i++) by_id[ref_id[i]] = ref_p[i];
                        int ok = n == rn;
                        for (int64_t i = 0; ok && i < n; i++)
                            ok = by_id[ids[i]] >= 0 && fabs(probs[i] - by_id[ids[i]]) <= 1e-6 * by_id[ids[i]] + 1e-12;
                        for (int64_t i = 0; ok && i < n; i++) by_id[ids[i]] = -1; /* each id once */
                        for (int64_t i = 0; ok && i < V; i++) ok = by_id[i] < 0;
                        cases++;
                        if (!ok && bad++ < 5)
                            fprintf(stderr, "shape %d top_k %d top_p %g min_p %g T %g: %lld candidates, reference %lld\n",
                                    shape, top_k[a], top_p[b], min_p[d], temp[e], (long long)n, (long long)rn);
                    }
    }
    CHECKF(bad == 0, "%d of %d settings differ from the full sort", bad, cases);
}

/* sampler_top (a heap of k) against the scan it replaced: the best not yet taken, k times. */
static void test_sampler_top_matches_scan(void) {
    enum { V = 3000 };
    static float l[V];
    int32_t got[32], want[32];
    uint64_t rng = 99;
    int bad = 0;
    for (int shape = 0; shape < 3; shape++) {
        for (int64_t i = 0; i < V; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            l[i] = shape == 2 ? (float)(rng % 5) : (float)(rng >> 40) / 1e6f; /* shape 2: ties */
            if (shape == 1 && i % 3) l[i] = -INFINITY;
        }
        const int64_t sizes[] = {V, 7, 1};
        for (int z = 0; z < 3; z++)
            for (int k = 0; k <= 20; k++) {
                int64_t n = sizes[z];
                int m = sampler_top(l, n, k, got), want_m = k < n ? k : (int)n;
                for (int j = 0; j < want_m; j++) {
                    int64_t best = -1;
                    for (int64_t i = 0; i < n; i++) {
                        int taken = 0;
                        for (int q = 0; q < j && !taken; q++) taken = want[q] == (int32_t)i;
                        if (!taken && (best < 0 || l[i] > l[best])) best = i;
                    }
                    want[j] = (int32_t)best;
                }
                int ok = m == want_m && !memcmp(got, want, (size_t)m * sizeof *got);
                if (!ok && bad++ < 3) fprintf(stderr, "shape %d n %lld k %d: differs\n", shape, (long long)n, k);
            }
    }
    CHECK(bad == 0);
}

int main(void) {
    RUN(test_sampler_greedy_and_ties);
    RUN(test_sampler_seed_reproducible_and_distribution);
    RUN(test_sampler_penalties);
    RUN(test_sampler_candidates_match_full_sort);
    RUN(test_sampler_draft_keeps_the_distribution);
    RUN(test_lookup_finds_the_latest_longest_match);
    RUN(test_sampler_top_matches_scan);
    RUN(test_reasoning_split);
    RUN(test_chat_render);
    RUN(test_chat_encode_cannot_be_forged);
    return check_report("test_engine");
}
