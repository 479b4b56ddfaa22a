/* session.c — KV cache + token list + sampler for one conversation; see session.h.
 *
 * Self-speculative decoding with DeepSeek-V3's MTP module (SPEC-deepseek.md §4.2), greedy only:
 * with n tokens in the cache and t the next token (from the last logits), the MTP module drafts
 * d for position n+1; one main forward runs [t, d] at positions n, n+1. If the main model's own
 * choice at n+1 is d, both are kept and position n+1's logits give the next token: two tokens
 * for one main pass. Otherwise only t is kept; the cache row written for d at n+1 is simply
 * overwritten later (attention never reads past a row's own position). The output is the
 * plain greedy output token for token. MTP's cache entry at position i needs the main model's
 * hidden state at i and token i+1; mtp_n counts the entries written. */
#include "engine/session.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Rows per forward call during prefill: the model's internal batch handles larger calls too,
 * this only bounds the position/flag arrays kept here. */
#define SESSION_PREFILL_CHUNK 512

struct session {
    model *m;
    model_ctx *ctx;   /* the KV cache, scratch and threads of this conversation */
    sampler *smp;
    int64_t n_ctx;
    int32_t *tokens; /* (n_ctx) tokens in the cache, in order */
    size_t n_tokens;
    size_t last_prefill;
    float *logits;   /* (n_vocab) of the last position */
    int has_logits;
    int32_t pos[SESSION_PREFILL_CHUNK];
    /* speculative decoding (NULL hid: off) */
    float *hid;           /* (n_ctx, n_embd) main model's hidden state per position */
    float *vlogits;       /* (2, n_vocab) verification logits */
    size_t mtp_n;         /* MTP cache entries 0..mtp_n-1 are valid */
    int32_t queue[2];     /* tokens accepted but not yet returned by session_next */
    int n_queued, q_head;
    uint64_t drafted, accepted;
};

session *session_new(model *m, int64_t n_ctx, const sampler_params *sp, whale_err *err) {
    const model_hparams *hp = model_hparams_get(m);
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (hp->n_ctx_train > 0 && n_ctx > hp->n_ctx_train) {
        err_set(err, WHALE_E_ARG, "context %lld is longer than the model's trained %lld tokens", (long long)n_ctx,
                (long long)hp->n_ctx_train);
        return NULL;
    }
    session *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->m = m;
    s->n_ctx = n_ctx;
    s->ctx = model_ctx_new(m, n_ctx, 1);
    s->tokens = malloc((size_t)n_ctx * sizeof *s->tokens);
    s->logits = malloc((size_t)model_n_vocab(m) * sizeof *s->logits);
    s->smp = sampler_init(sp, model_n_vocab(m));
    if (!s->ctx || !s->tokens || !s->logits || !s->smp) goto oom;
    return s;
oom:
    session_free(s);
    err_set(err, WHALE_E_NOMEM, "not enough memory for a context of %lld tokens (try a smaller --ctx)", (long long)n_ctx);
    return NULL;
}

void session_free(session *s) {
    if (!s) return;
    model_ctx_free(s->ctx);
    sampler_free(s->smp);
    free(s->tokens);
    free(s->logits);
    free(s->hid);
    free(s->vlogits);
    free(s);
}

/* Run ids[from..n) at positions from.. (logits kept for the last one). */
static int run(session *s, const int32_t *ids, size_t from, size_t n, whale_err *err) {
    for (size_t r0 = from; r0 < n; r0 += SESSION_PREFILL_CHUNK) {
        size_t k = n - r0 < SESSION_PREFILL_CHUNK ? n - r0 : SESSION_PREFILL_CHUNK;
        for (size_t i = 0; i < k; i++) s->pos[i] = (int32_t)(r0 + i);
        model_batch b = {(int64_t)k, ids + r0, s->pos, NULL, NULL};
        float *hid = s->hid ? s->hid + r0 * (size_t)model_hparams_get(s->m)->n_embd : NULL;
        int rc = model_forward(s->m, s->ctx, &b, s->logits, hid, err);
        if (rc) return rc;
        memmove(s->tokens + r0, ids + r0, k * sizeof *ids); /* ids may be s->tokens itself */
        s->n_tokens = r0 + k;
    }
    s->has_logits = 1;
    return 0;
}

int session_prompt(session *s, const int32_t *ids, size_t n, whale_err *err) {
    if (n == 0) return err_set(err, WHALE_E_ARG, "empty prompt");
    if ((int64_t)n >= s->n_ctx)
        return err_set(err, WHALE_E_ARG, "the prompt is %zu tokens, the context holds %lld (shorten it by %lld or raise --ctx)",
                       n, (long long)s->n_ctx, (long long)((int64_t)n - s->n_ctx + 1));
    size_t keep = 0;
    while (keep < n && keep < s->n_tokens && s->tokens[keep] == ids[keep]) keep++;
    /* The last prompt token is always run again so its logits are fresh. */
    if (keep == n) keep = n - 1;
    s->n_tokens = keep;
    s->n_queued = 0;
    if (s->mtp_n + 1 > keep) s->mtp_n = keep ? keep - 1 : 0; /* entry i needs token i+1 */
    s->last_prefill = n - keep;
    return run(s, ids, keep, n, err);
}

static int32_t plain_next(session *s, whale_err *err) {
    int32_t t = sampler_sample(s->smp, s->logits, s->tokens, s->n_tokens);
    s->tokens[s->n_tokens] = t;
    int rc = run(s, s->tokens, s->n_tokens, s->n_tokens + 1, err);
    return rc ? rc : t;
}

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* One speculative step: queue t (and the draft when the main model agrees). */
static int spec_step(session *s, whale_err *err) {
    size_t n = s->n_tokens;
    int64_t E = model_hparams_get(s->m)->n_embd, V = model_n_vocab(s->m);
    int32_t t = sampler_sample(s->smp, s->logits, s->tokens, n);
    s->tokens[n] = t;
    if ((int64_t)n + 2 > s->n_ctx) { /* no room to verify a draft */
        int rc = run(s, s->tokens, n, n + 1, err);
        if (rc) return rc;
        s->queue[0] = t;
        s->n_queued = 1;
        s->q_head = 0;
        return 0;
    }
    /* MTP catch-up over positions mtp_n..n-1: state at i with token i+1 (t for the last). */
    size_t k = n - s->mtp_n;
    for (size_t r0 = 0; r0 < k; r0 += SESSION_PREFILL_CHUNK) {
        size_t c = k - r0 < SESSION_PREFILL_CHUNK ? k - r0 : SESSION_PREFILL_CHUNK;
        for (size_t i = 0; i < c; i++) s->pos[i] = (int32_t)(s->mtp_n + r0 + i);
        model_batch b = {(int64_t)c, s->tokens + s->mtp_n + r0 + 1, s->pos, NULL, NULL};
        int rc = model_mtp_forward(s->m, s->ctx, &b, s->hid + (s->mtp_n + r0) * (size_t)E, s->vlogits, err);
        if (rc) return rc;
    }
    s->mtp_n = n;
    int32_t d = argmax(s->vlogits, V);
    /* Verify: t at n, d at n+1, in one forward. */
    int32_t vt[2] = {t, d}, vp[2] = {(int32_t)n, (int32_t)n + 1};
    int8_t want[2] = {1, 1};
    model_batch b = {2, vt, vp, NULL, want};
    int rc = model_forward(s->m, s->ctx, &b, s->vlogits, s->hid + n * (size_t)E, err);
    if (rc) return rc;
    s->drafted++;
    s->tokens[n + 1] = d;
    int32_t y = sampler_sample(s->smp, s->vlogits, s->tokens, n + 1);
    s->q_head = 0;
    s->queue[0] = t;
    if (y == d) {
        s->accepted++;
        s->queue[1] = d;
        s->n_queued = 2;
        s->n_tokens = n + 2;
        memcpy(s->logits, s->vlogits + V, (size_t)V * sizeof *s->logits);
    } else {
        s->n_queued = 1;
        s->n_tokens = n + 1;
        memcpy(s->logits, s->vlogits, (size_t)V * sizeof *s->logits);
    }
    return 0;
}

int32_t session_next(session *s, whale_err *err) {
    if (!s->has_logits) return err_set(err, WHALE_E_ARG, "no prompt yet");
    if (s->n_queued) {
        s->n_queued--;
        return s->queue[s->q_head++];
    }
    if ((int64_t)s->n_tokens >= s->n_ctx)
        return err_set(err, WHALE_E_ARG, "the context of %lld tokens is full", (long long)s->n_ctx);
    if (!s->hid) return plain_next(s, err);
    int rc = spec_step(s, err);
    if (rc) return rc;
    s->n_queued--;
    return s->queue[s->q_head++];
}

int session_speculative_mtp(session *s, whale_err *err) {
    if (!model_has_mtp(s->m))
        return err_set(err, WHALE_E_UNSUPPORTED, "this model has no MTP module (DeepSeek-V3/R1 checkpoints carry one)");
    if (!sampler_is_greedy(s->smp))
        return err_set(err, WHALE_E_UNSUPPORTED, "MTP speculation needs greedy decoding for now (--temp 0)");
    int64_t E = model_hparams_get(s->m)->n_embd, V = model_n_vocab(s->m);
    s->hid = malloc((size_t)s->n_ctx * (size_t)E * sizeof *s->hid);
    s->vlogits = malloc(2 * (size_t)V * sizeof *s->vlogits);
    if (!s->hid || !s->vlogits) return err_set(err, WHALE_E_NOMEM, "out of memory for speculative decoding");
    session_reset(s);
    return 0;
}

void session_spec_stats(const session *s, uint64_t *drafted, uint64_t *accepted) {
    *drafted = s->drafted;
    *accepted = s->accepted;
}

size_t session_n_tokens(const session *s) { return s->n_tokens - (size_t)s->n_queued; }
int64_t session_n_ctx(const session *s) { return s->n_ctx; }
const int32_t *session_tokens(const session *s) { return s->tokens; }
size_t session_last_prefill(const session *s) { return s->last_prefill; }
void session_reset(session *s) {
    s->n_tokens = 0;
    s->n_queued = 0;
    s->mtp_n = 0;
    s->has_logits = 0;
}
