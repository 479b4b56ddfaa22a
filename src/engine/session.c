/* session.c — KV cache + token list + sampler for one conversation; see session.h. */
#include "engine/session.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Rows per forward call during prefill: the model's internal batch handles larger calls too,
 * this only bounds the position/flag arrays kept here. */
#define SESSION_PREFILL_CHUNK 512

struct session {
    model *m;
    kv_cache *kv;
    sampler *smp;
    int64_t n_ctx;
    int32_t *tokens; /* (n_ctx) tokens in the cache, in order */
    size_t n_tokens;
    size_t last_prefill;
    float *logits;   /* (n_vocab) of the last position */
    int has_logits;
    int32_t pos[SESSION_PREFILL_CHUNK];
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
    s->kv = kv_cache_new(m, n_ctx, 1);
    s->tokens = malloc((size_t)n_ctx * sizeof *s->tokens);
    s->logits = malloc((size_t)model_n_vocab(m) * sizeof *s->logits);
    s->smp = sampler_init(sp, model_n_vocab(m));
    if (!s->kv || !s->tokens || !s->logits || !s->smp) goto oom;
    return s;
oom:
    session_free(s);
    err_set(err, WHALE_E_NOMEM, "not enough memory for a context of %lld tokens (try a smaller --ctx)", (long long)n_ctx);
    return NULL;
}

void session_free(session *s) {
    if (!s) return;
    kv_cache_free(s->kv);
    sampler_free(s->smp);
    free(s->tokens);
    free(s->logits);
    free(s);
}

/* Run ids[from..n) at positions from.. (logits kept for the last one). */
static int run(session *s, const int32_t *ids, size_t from, size_t n, whale_err *err) {
    for (size_t r0 = from; r0 < n; r0 += SESSION_PREFILL_CHUNK) {
        size_t k = n - r0 < SESSION_PREFILL_CHUNK ? n - r0 : SESSION_PREFILL_CHUNK;
        for (size_t i = 0; i < k; i++) s->pos[i] = (int32_t)(r0 + i);
        model_batch b = {(int64_t)k, ids + r0, s->pos, NULL, NULL};
        int rc = model_forward(s->m, s->kv, &b, s->logits, err);
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
    s->last_prefill = n - keep;
    return run(s, ids, keep, n, err);
}

int32_t session_next(session *s, whale_err *err) {
    if (!s->has_logits) return err_set(err, WHALE_E_ARG, "no prompt yet");
    if ((int64_t)s->n_tokens >= s->n_ctx)
        return err_set(err, WHALE_E_ARG, "the context of %lld tokens is full", (long long)s->n_ctx);
    int32_t t = sampler_sample(s->smp, s->logits, s->tokens, s->n_tokens);
    s->tokens[s->n_tokens] = t;
    int rc = run(s, s->tokens, s->n_tokens, s->n_tokens + 1, err);
    return rc ? rc : t;
}

size_t session_n_tokens(const session *s) { return s->n_tokens; }
int64_t session_n_ctx(const session *s) { return s->n_ctx; }
const int32_t *session_tokens(const session *s) { return s->tokens; }
size_t session_last_prefill(const session *s) { return s->last_prefill; }
void session_reset(session *s) {
    s->n_tokens = 0;
    s->has_logits = 0;
}
