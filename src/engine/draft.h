/* draft.h — drafters for speculative decoding in the scheduler (engine-internal).
 *
 * A drafter guesses the tokens that follow a sequence's pending token; the scheduler verifies
 * the guesses with the main model in its ordinary batched step (scheduler.c: the pending token
 * at n and drafts d1..dk at n+1..n+k, every row asking for logits, and the longest prefix of
 * drafts equal to what the slot's greedy sampler picks is kept). A drafter only changes how
 * many tokens a step yields, never which: a wrong guess costs a wasted row.
 *
 * The interface is a small table of functions so that other drafters (a separate draft model,
 * prompt lookup) can sit beside the MTP one. Every call comes from the scheduler's engine
 * thread; a drafter that runs a model does so in the scheduler's own context, between the
 * scheduler's forward passes.
 * Owns: the drafter's per-sequence state. Does not own: the KV cache, the slots, sampling. */
#ifndef WHALE_ENGINE_DRAFT_H
#define WHALE_ENGINE_DRAFT_H

#include <stdint.h>

#include "model/model.h"

/* Drafts per sequence per step at most (the scheduler's draft_max is at most this): bounds the
 * slots' per-step arrays. MTP drafts 1. */
#define DRAFT_MAX 16

/* One sequence asking for drafts. */
typedef struct draft_req {
    int seq;               /* the sequence in the KV cache */
    const int32_t *tokens; /* (n + 1) its tokens; tokens[n] is pending: chosen, not yet run */
    int64_t n;             /* rows [0, n) are in the cache */
    int max;               /* at most this many drafts (1..DRAFT_MAX) */
    int32_t out[DRAFT_MAX];/* drafts for positions n+1.. */
    int n_out;             /* how many propose wrote (0: no guess this step) */
} draft_req;

typedef struct drafter_ops {
    /* Draft for every request of reqs (one call per step, so a drafter may batch its own
     * forward). 0, or a negative status with err (the scheduler then decodes without drafts). */
    int (*propose)(void *self, draft_req *reqs, int n_req, whale_err *err);
    /* The main model has run rows [pos0, pos0+n) of sequence seq (what was there from pos0 on
     * is replaced); hidden: their hidden states, model_forward's (n, n_embd), or NULL when the
     * rows came without (copied in from the context cache). */
    void (*rows)(void *self, int seq, int64_t pos0, int64_t n, const float *hidden);
    /* Sequence seq keeps only its first n rows (a new request reusing a prefix, an error). */
    void (*truncate)(void *self, int seq, int64_t n);
    void (*free)(void *self);
    int wants_hidden; /* rows needs the hidden states (model_forward's `hidden` output) */
    const char *name; /* "mtp", "lookup", "model": for metrics and reports */
} drafter_ops;

typedef struct drafter {
    const drafter_ops *ops; /* NULL: no drafter */
    void *self;
} drafter;

/* DeepSeek-V3's MTP module as a drafter over n_seq sequences of n_ctx positions of context c
 * (made for m, so it holds the module's cache layer). Keeps the main model's hidden state per
 * position of each sequence (n_seq * n_ctx * n_embd floats). 0, or WHALE_E_UNSUPPORTED (no
 * module) / WHALE_E_NOMEM with a message. */
int draft_mtp_new(drafter *out, const model *m, model_ctx *c, int n_seq, int64_t n_ctx, whale_err *err);

/* Prompt lookup: the guess is what followed the latest earlier occurrence of the sequence's last
 * n-gram (draft_lookup.c). Keeps no state; cannot fail. */
void draft_lookup_new(drafter *out);
/* The search itself, for tests: the tokens that followed the latest earlier occurrence of the
 * last n-gram of tokens[0..n_tok) (the longest length that occurs), at most max into out.
 * Returns how many (0: no match). */
int draft_lookup_find(const int32_t *tokens, int64_t n_tok, int max, int32_t *out);

/* A separate, smaller draft model with the same vocabulary (draft_model.c): it runs greedily
 * over its own context of n_seq sequences of n_ctx positions and guesses up to a request's max
 * tokens, stopping early at a guess it gives less than p_min probability. 0, or WHALE_E_ARG (the
 * vocabularies differ) / WHALE_E_NOMEM with a message. The model is borrowed: it must outlive
 * the drafter. */
int draft_model_new(drafter *out, const model *draft, const model *target, int n_seq, int64_t n_ctx, float p_min,
                    whale_err *err);

static inline void drafter_free(drafter *d) {
    if (d->ops) d->ops->free(d->self);
    d->ops = NULL;
    d->self = NULL;
}

#endif
