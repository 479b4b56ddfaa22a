/* session.h — one conversation's state on top of a model: its KV cache, the tokens in it, the
 * sampler, and the logits of the last position. The CLI's run and chat commands drive it; the
 * server will drive many through the scheduler.
 *
 * Prefix reuse: session_prompt compares the new prompt with the tokens already in the cache and
 * only runs the part that differs, so each chat turn costs its new tokens, not the history. */
#ifndef WHALE_ENGINE_SESSION_H
#define WHALE_ENGINE_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sampler.h"
#include "model/model.h"

typedef struct session session;

/* A session with room for n_ctx tokens (0: the model's trained context, capped at 4096).
 * Returns NULL with a message in err when the cache does not fit in memory. */
session *session_new(model *m, int64_t n_ctx, const sampler_params *sp, whale_err *err);
void session_free(session *s);

/* Make ids the session's content: keep the longest common prefix already cached, run the rest.
 * Returns 0, or WHALE_E_ARG when ids do not fit in the context (message says by how much). */
int session_prompt(session *s, const int32_t *ids, size_t n, whale_err *err);
/* Sample the next token from the last logits, append it and run it. Returns the token id, or
 * a negative status (context full: WHALE_E_ARG). The token is in the cache when this returns. */
int32_t session_next(session *s, whale_err *err);

/* Self-speculative decoding with the model's MTP module (DeepSeek-V3/R1): the module drafts one
 * token ahead, the model verifies it in the same forward as the current token. session_next
 * returns exactly the tokens plain greedy decoding returns, often two per model pass. Needs a
 * model with MTP and a greedy sampler; 0 or WHALE_E_UNSUPPORTED/NOMEM with a message. */
int session_speculative_mtp(session *s, whale_err *err);
/* Drafts made and drafts accepted so far (acceptance rate = accepted / drafted). */
void session_spec_stats(const session *s, uint64_t *drafted, uint64_t *accepted);

/* Tokens in the conversation so far (those returned by session_next, not ones still queued). */
size_t session_n_tokens(const session *s);
int64_t session_n_ctx(const session *s);
const int32_t *session_tokens(const session *s);
/* Tokens evaluated by the last session_prompt (the part not reused from the cache). */
size_t session_last_prefill(const session *s);
void session_reset(session *s);

#endif
