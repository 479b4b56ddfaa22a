/* draft_lookup.c — prompt-lookup drafting; see draft.h.
 *
 * The guess for what follows a sequence is what followed the last earlier occurrence of its
 * final n-gram (prompt and reply alike): an answer that quotes its prompt, edits code it was
 * given or repeats itself continues as before. The longest n-gram (LOOKUP_NGRAM_MAX tokens
 * down to LOOKUP_NGRAM_MIN) with an earlier occurrence wins, and among its occurrences the
 * latest. No model runs and no state is kept: the search reads the request's tokens, O(n) per
 * n-gram length and step. */
#include <stdlib.h>

#include "engine/draft.h"

#define LOOKUP_NGRAM_MAX 4
#define LOOKUP_NGRAM_MIN 2
/* Guesses per agreeing token: a match whose agreement with the sequence's end reaches back a
 * tokens is followed for a / LOOKUP_PER_GUESS guesses (at least 1; at most the request's
 * max). A verification row is not free on a CPU (a 1.5B model: about 0.4 of a decode step), so
 * a chance two-token match must not buy eight rows. */
#define LOOKUP_PER_GUESS 2
#define LOOKUP_AGREE_MAX 64 /* tokens looked back at, at most */

int draft_lookup_find(const int32_t *tokens, int64_t n_tok, int max, int32_t *out) {
    for (int g = LOOKUP_NGRAM_MAX; g >= LOOKUP_NGRAM_MIN; g--) {
        if (n_tok <= g) continue;
        const int32_t *pat = tokens + n_tok - g;
        /* the latest start j < n_tok - g whose g tokens equal the final ones */
        for (int64_t j = n_tok - g - 1; j >= 0; j--) {
            int k = 0;
            while (k < g && tokens[j + k] == pat[k]) k++;
            if (k < g) continue;
            /* how far the agreement reaches back: a long one (text being copied) earns a long
             * guess, a chance bigram one token */
            int64_t agree = g;
            while (agree < LOOKUP_AGREE_MAX && j - (agree - g) > 0 &&
                   tokens[j - (agree - g) - 1] == tokens[n_tok - agree - 1])
                agree++;
            int64_t want = agree / LOOKUP_PER_GUESS;
            if (want < 1) want = 1;
            int n = 0;
            while (n < max && n < want && j + g + n < n_tok) out[n] = tokens[j + g + n], n++;
            return n;
        }
    }
    return 0;
}

static int lookup_propose(void *self, draft_req *reqs, int n_req, whale_err *err) {
    (void)self, (void)err;
    for (int r = 0; r < n_req; r++)
        reqs[r].n_out = draft_lookup_find(reqs[r].tokens, reqs[r].n + 1, reqs[r].max, reqs[r].out);
    return 0;
}

static void lookup_rows(void *self, int seq, int64_t pos0, int64_t n, const float *hidden) {
    (void)self, (void)seq, (void)pos0, (void)n, (void)hidden;
}

static void lookup_truncate(void *self, int seq, int64_t n) {
    (void)self, (void)seq, (void)n;
}
static void lookup_free(void *self) {
    (void)self;
}

static const drafter_ops lookup_ops = {lookup_propose, lookup_rows, lookup_truncate,
                                       lookup_free,    0,           "lookup"};

void draft_lookup_new(drafter *out) {
    out->ops = &lookup_ops;
    out->self = NULL;
}
