/* draft_mtp.c — DeepSeek-V3's multi-token prediction module as a drafter; see draft.h.
 *
 * As in session.c (SPEC-deepseek.md §4.2): the module's cache entry at position i joins the
 * main model's hidden state at i with the token at i+1, and the entry at n-1 (state at n-1, the
 * pending token t at n) predicts the token at n+1: one draft per step. Before drafting, the
 * module catches up over positions n_mtp..n-1 (for a sequence that has just read its prompt:
 * all of it, in one batched call over every drafting sequence).
 *
 * Hidden states are known only for rows the main model ran in this scheduler (not for rows
 * copied in from the context cache): the catch-up starts at the first position whose state is
 * known, and the module's entries before it stay what they were. Its attention then reads stale
 * rows there, which can only make drafts worse; the scheduler's verification keeps the output
 * exact. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "engine/draft.h"

/* Catch-up rows per model_mtp_forward call: bounds the gathered hidden states (rows * n_embd
 * floats); a longer catch-up (a long prompt) takes several calls. */
#define MTP_CHUNK 256

typedef struct mtp_seq {
    float *hid;     /* (n_ctx, n_embd) the main model's hidden state per position */
    int32_t *tok;   /* (n_ctx) tok[i]: the token (at i+1) the module's entry i was made with */
    int64_t lo, hi; /* hid[lo, hi) is known */
    int64_t n_mtp;  /* the module's entries [0, n_mtp) are taken as valid */
} mtp_seq;

typedef struct mtp_drafter {
    const model *m;
    model_ctx *c; /* borrowed: the scheduler's context */
    int n_seq;
    int64_t n_ctx, E, V;
    mtp_seq *seqs;
    /* one catch-up call */
    int32_t b_tok[MTP_CHUNK], b_pos[MTP_CHUNK], b_seq[MTP_CHUNK];
    int8_t b_want[MTP_CHUNK];
    float *b_hid;  /* (MTP_CHUNK, n_embd) */
    float *logits; /* (n_seq, n_vocab) one row per drafting sequence */
    int *b_req;    /* (n_seq) the request of each logits row */
} mtp_drafter;

static void mtp_truncate(void *self, int seq, int64_t n) {
    mtp_drafter *d = self;
    mtp_seq *q = &d->seqs[seq];
    if (q->hi > n) q->hi = n;
    if (q->lo > q->hi) q->lo = q->hi;
    /* entry n-1 was made with the token at n, which may change: propose checks it against tok */
    if (q->n_mtp > n) q->n_mtp = n;
}

static void mtp_rows(void *self, int seq, int64_t pos0, int64_t n, const float *hidden) {
    mtp_drafter *d = self;
    mtp_seq *q = &d->seqs[seq];
    assert(pos0 >= 0 && n >= 0 && pos0 + n <= d->n_ctx);
    mtp_truncate(self, seq, pos0);
    if (!hidden) { /* rows without states: nothing before them is contiguous with what follows */
        q->lo = q->hi = pos0 + n;
        return;
    }
    if (q->hi != pos0) q->lo = pos0;
    memcpy(q->hid + pos0 * d->E, hidden, (size_t)(n * d->E) * sizeof *hidden);
    q->hi = pos0 + n;
}

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Run the gathered catch-up rows; their wanted logits go after the `done` rows already made. */
static int flush(mtp_drafter *d, int n_row, int done, whale_err *err) {
    if (!n_row) return 0;
    model_batch b = {n_row, d->b_tok, d->b_pos, d->b_seq, d->b_want};
    return model_mtp_forward(d->m, d->c, &b, d->b_hid, d->logits + (size_t)done * (size_t)d->V, err);
}

static int mtp_propose(void *self, draft_req *reqs, int n_req, whale_err *err) {
    mtp_drafter *d = self;
    int n_row = 0, n_want = 0, done = 0;
    for (int r = 0; r < n_req; r++) {
        draft_req *x = &reqs[r];
        mtp_seq *q = &d->seqs[x->seq];
        int64_t n = x->n;
        x->n_out = 0;
        if (q->n_mtp > n) q->n_mtp = n;
        if (q->n_mtp > 0 && q->tok[q->n_mtp - 1] != x->tokens[q->n_mtp]) q->n_mtp--;
        if (n < 1 || x->max < 1 || q->lo > n - 1 || q->hi < n) continue; /* no state at n-1 */
        int64_t start = q->n_mtp > q->lo ? q->n_mtp : q->lo;
        if (start > n - 1) start = n - 1; /* the entry at n-1 is run again for its logits */
        for (int64_t p = start; p < n; p++) {
            if (n_row == MTP_CHUNK) {
                int rc = flush(d, n_row, done, err);
                if (rc) return rc;
                done = n_want, n_row = 0;
            }
            d->b_tok[n_row] = x->tokens[p + 1];
            d->b_pos[n_row] = (int32_t)p;
            d->b_seq[n_row] = x->seq;
            d->b_want[n_row] = p == n - 1;
            memcpy(d->b_hid + (size_t)n_row * (size_t)d->E, q->hid + p * d->E, (size_t)d->E * sizeof(float));
            q->tok[p] = x->tokens[p + 1];
            n_row++;
        }
        q->n_mtp = n;
        d->b_req[n_want++] = r;
    }
    int rc = flush(d, n_row, done, err);
    if (rc) return rc;
    for (int k = 0; k < n_want; k++) {
        draft_req *x = &reqs[d->b_req[k]];
        x->out[0] = argmax(d->logits + (size_t)k * (size_t)d->V, d->V);
        x->n_out = 1;
    }
    return 0;
}

static void mtp_free(void *self) {
    mtp_drafter *d = self;
    if (!d) return;
    for (int i = 0; d->seqs && i < d->n_seq; i++) free(d->seqs[i].hid), free(d->seqs[i].tok);
    free(d->seqs);
    free(d->b_hid);
    free(d->logits);
    free(d->b_req);
    free(d);
}

static const drafter_ops mtp_ops = {mtp_propose, mtp_rows, mtp_truncate, mtp_free, 1, "mtp"};

int draft_mtp_new(drafter *out, const model *m, model_ctx *c, int n_seq, int64_t n_ctx, whale_err *err) {
    out->ops = NULL;
    out->self = NULL;
    if (!model_has_mtp(m))
        return err_set(err, WHALE_E_UNSUPPORTED, "this model has no MTP module (DeepSeek-V3/R1 checkpoints carry one)");
    mtp_drafter *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->m = m, d->c = c, d->n_seq = n_seq, d->n_ctx = n_ctx;
    d->E = model_hparams_get(m)->n_embd, d->V = model_n_vocab(m);
    d->seqs = calloc((size_t)n_seq, sizeof *d->seqs);
    d->b_hid = malloc((size_t)MTP_CHUNK * (size_t)d->E * sizeof *d->b_hid);
    d->logits = malloc((size_t)n_seq * (size_t)d->V * sizeof *d->logits);
    d->b_req = malloc((size_t)n_seq * sizeof *d->b_req);
    if (!d->seqs || !d->b_hid || !d->logits || !d->b_req) goto oom;
    for (int i = 0; i < n_seq; i++) {
        d->seqs[i].hid = malloc((size_t)n_ctx * (size_t)d->E * sizeof(float));
        d->seqs[i].tok = malloc((size_t)n_ctx * sizeof(int32_t));
        if (!d->seqs[i].hid || !d->seqs[i].tok) goto oom;
    }
    out->ops = &mtp_ops;
    out->self = d;
    return 0;
oom:
    mtp_free(d);
    return err_set(err, WHALE_E_NOMEM, "not enough memory for MTP speculation (%d sequences of %lld tokens keep their hidden states)",
                   n_seq, (long long)n_ctx);
}
