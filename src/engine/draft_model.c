/* draft_model.c — a small draft model as a drafter; see draft.h.
 *
 * The draft model has its own context (KV cache and threads) with one sequence per scheduler
 * slot. Each step it first catches up: every drafting sequence's tokens from the first one its
 * cache does not hold (or holds for another token: a rejected guess, a new request) up to the
 * pending token, in one batched call, which gives the first guess (a long catch-up, a new
 * prompt, is spread over steps, DM_CATCHUP rows each); then each further guess is one batched
 * call over the sequences still drafting. A guess whose probability under the draft
 * is below p_min ends that sequence's drafting (it would more likely cost a verification row
 * than save a step), so easy stretches get long drafts and hard ones short.
 *
 * Which rows the draft's cache holds is known by their tokens (tok[0..n)): before drafting, the
 * longest prefix equal to the request's tokens stands, so rows and truncate need not be exact. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/draft.h"
#include "tokenizer/tokenizer.h"

/* Catch-up rows per model_forward call: bounds the batch buffers. */
#define DM_CHUNK 512
/* Catch-up rows per step over all sequences: a new 2,000-token prompt is read by the draft over
 * several steps (decoding without guesses meanwhile) instead of holding every sequence's next
 * token for the whole of it. The scheduler's own prompt chunk is 256 rows per step. */
#define DM_CATCHUP 256

typedef struct dm_seq {
    int32_t *tok; /* (n_ctx) the tokens the draft's cache rows were made from */
    int64_t n;    /* rows [0, n) are in the draft's cache */
} dm_seq;

typedef struct dm_drafter {
    const model *m;
    model_ctx *c;
    int n_seq;
    int64_t n_ctx, V;
    float p_min;
    dm_seq *seqs;
    int32_t b_tok[DM_CHUNK], b_pos[DM_CHUNK], b_seq[DM_CHUNK];
    int8_t b_want[DM_CHUNK];
    float *logits; /* (n_seq, n_vocab) one row per drafting sequence */
    int *b_req;    /* (n_seq) the request of each logits row */
    int8_t *live;  /* (n_seq, by request) still drafting */
} dm_drafter;

static void dm_truncate(void *self, int seq, int64_t n) {
    dm_seq *q = &((dm_drafter *)self)->seqs[seq];
    if (q->n > n) q->n = n;
}

static void dm_rows(void *self, int seq, int64_t pos0, int64_t n, const float *hidden) {
    (void)hidden; /* the rows at and after pos0 are the main model's now: ours past them are guesses
                   */
    dm_truncate(self, seq, pos0 + n);
}

/* The best token of a logits row, and its probability under softmax, to 1e-4: logits more than
 * DM_EXP_CUT below the best add at most n * e^-DM_EXP_CUT to the sum (3e-4 of it for 151,936
 * tokens) and are skipped, so the exponentials are a handful, not one per token. */
#define DM_EXP_CUT 20.0f
static int32_t best_of(const float *x, int64_t n, float *prob) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > x[b] - DM_EXP_CUT) sum += exp((double)(x[i] - x[b]));
    *prob = (float)(1.0 / sum);
    return (int32_t)b;
}

static int flush(dm_drafter *d, int n_row, int done, whale_err *err) {
    if (!n_row) return 0;
    model_batch b = {n_row, d->b_tok, d->b_pos, d->b_seq, d->b_want};
    return model_forward(d->m, d->c, &b, d->logits + (size_t)done * (size_t)d->V, NULL, err);
}

/* Take logits row k (request reqs[d->b_req[k]]) as that request's next guess, or end its
 * drafting when the guess is too unsure or the request has enough. */
static void take(dm_drafter *d, draft_req *reqs, int k) {
    int r = d->b_req[k];
    draft_req *x = &reqs[r];
    float p;
    int32_t t = best_of(d->logits + (size_t)k * (size_t)d->V, d->V, &p);
    if (p < d->p_min) {
        d->live[r] = 0;
        return;
    }
    x->out[x->n_out++] = t;
    d->live[r] = x->n_out < x->max;
}

static int dm_propose(void *self, draft_req *reqs, int n_req, whale_err *err) {
    dm_drafter *d = self;
    int n_row = 0, n_want = 0, done = 0;
    int64_t budget = DM_CATCHUP; /* catch-up rows this step, over all requests */
    /* catch up to the pending token: its logits give the first guess */
    for (int r = 0; r < n_req; r++) {
        draft_req *x = &reqs[r];
        dm_seq *q = &d->seqs[x->seq];
        x->n_out = 0;
        d->live[r] = 0;
        if (x->max < 1 || x->n + 1 >= d->n_ctx) continue;
        int64_t v = q->n < x->n ? q->n : x->n; /* the pending token's row is always run */
        for (int64_t i = 0; i < v; i++)
            if (q->tok[i] != x->tokens[i]) {
                v = i;
                break;
            }
        /* a long way behind (a new prompt): part of the way this step, no guess yet */
        int64_t end = x->n - v + 1 <= budget ? x->n + 1 : v + (budget > 0 ? budget : 0);
        budget -= end - v;
        for (int64_t p = v; p < end; p++) {
            if (n_row == DM_CHUNK) {
                int rc = flush(d, n_row, done, err);
                if (rc) return rc;
                done = n_want, n_row = 0;
            }
            d->b_tok[n_row] = q->tok[p] = x->tokens[p];
            d->b_pos[n_row] = (int32_t)p;
            d->b_seq[n_row] = x->seq;
            d->b_want[n_row] = p == x->n;
            n_row++;
        }
        q->n = end;
        if (end == x->n + 1) d->b_req[n_want++] = r;
    }
    int rc = flush(d, n_row, done, err);
    if (rc) return rc;
    for (int k = 0; k < n_want; k++) take(d, reqs, k);
    /* then one call per further guess, over the sequences still drafting */
    for (;;) {
        n_row = 0;
        for (int r = 0; r < n_req; r++) {
            draft_req *x = &reqs[r];
            dm_seq *q = &d->seqs[x->seq];
            int64_t pos = x->n + x->n_out; /* the latest guess's position */
            if (!d->live[r] || pos >= d->n_ctx) continue;
            d->b_tok[n_row] = q->tok[pos] = x->out[x->n_out - 1];
            d->b_pos[n_row] = (int32_t)pos;
            d->b_seq[n_row] = x->seq;
            d->b_want[n_row] = 1;
            q->n = pos + 1;
            d->b_req[n_row++] = r;
        }
        if (!n_row) return 0;
        if ((rc = flush(d, n_row, 0, err))) return rc;
        for (int k = 0; k < n_row; k++) take(d, reqs, k);
    }
}

static void dm_free(void *self) {
    dm_drafter *d = self;
    if (!d) return;
    for (int i = 0; d->seqs && i < d->n_seq; i++) free(d->seqs[i].tok);
    free(d->seqs);
    model_ctx_free(d->c);
    free(d->logits);
    free(d->b_req);
    free(d->live);
    free(d);
}

static const drafter_ops dm_ops = {dm_propose, dm_rows, dm_truncate, dm_free, 0, "model"};

int draft_model_new(drafter *out, const model *draft, const model *target, int n_seq, int64_t n_ctx,
                    float p_min, whale_err *err) {
    out->ops = NULL;
    out->self = NULL;
    const tokenizer *a = model_tokenizer(draft), *b = model_tokenizer(target);
    int64_t va = model_n_vocab(draft), vb = model_n_vocab(target);
    if (va != vb || (a && b && tokenizer_n_vocab(a) != tokenizer_n_vocab(b)))
        return err_set(err, WHALE_E_ARG,
                       "the draft model's vocabulary (%lld tokens) is not the model's (%lld): a "
                       "draft must share it",
                       (long long)(a ? tokenizer_n_vocab(a) : va),
                       (long long)(b ? tokenizer_n_vocab(b) : vb));
    if (DM_CHUNK < n_seq)
        return err_set(err, WHALE_E_ARG, "a draft model drafts for at most %d sequences", DM_CHUNK);
    dm_drafter *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->m = draft, d->n_seq = n_seq, d->n_ctx = n_ctx, d->V = va, d->p_min = p_min;
    d->seqs = calloc((size_t)n_seq, sizeof *d->seqs);
    d->logits = malloc((size_t)n_seq * (size_t)d->V * sizeof *d->logits);
    d->b_req = malloc((size_t)n_seq * sizeof *d->b_req);
    d->live = malloc((size_t)n_seq);
    d->c = model_ctx_new(draft, n_ctx, n_seq);
    if (!d->seqs || !d->logits || !d->b_req || !d->live || !d->c) goto oom;
    for (int i = 0; i < n_seq; i++)
        if (!(d->seqs[i].tok = malloc((size_t)n_ctx * sizeof(int32_t)))) goto oom;
    out->ops = &dm_ops;
    out->self = d;
    return 0;
oom:
    dm_free(d);
    return err_set(err, WHALE_E_NOMEM,
                   "not enough memory for the draft model's context (%d sequences of %lld tokens)",
                   n_seq, (long long)n_ctx);
}
