/* completions.h — POST /chat/completions and /beta/completions: a request body routed by its
 * "model" to a served model (models.h), parsed (api.h) and submitted to that model's engine
 * (whale.h), answered as one JSON body when generation ends or as a stream of server-sent
 * events; with --accounts, charged for exactly what was computed when it ends (also when it was
 * cancelled or its client went away). The model stays leased until the reply has ended. */
#ifndef WHALE_SERVICE_COMPLETIONS_H
#define WHALE_SERVICE_COMPLETIONS_H

#include <stdatomic.h>

#include "whale.h"
#include "service/accounts.h"
#include "service/answers.h"
#include "service/api.h"
#include "service/http.h"
#include "service/models.h"

#define COMPLETIONS_KEEPALIVE_MS 10000 /* idle stream: a ": keep-alive" comment this often */
#define COMPLETIONS_HANGUP_POLL_MS 200 /* idle stream: how often to look for a client gone (it stops
                                          being charged and holding its place within this) */
#define COMPLETIONS_DEFAULT_MAX_TOKENS 4096 /* accounts: output tokens when max_tokens is omitted, as
                                               DeepSeek's default; what the reservation covers */

typedef struct completions {
    models *reg;        /* the served models: a request leases the one its "model" names */
    store *st;          /* --accounts, or NULL */
    accounts *ac;
    atomic_int *draining; /* stopping: new requests get 503 (1), and at the drain's end (2) so do
                             admitted ones whose model was still loading */
    const char *instance; /* --accounts: this server's name on its reservations (store.h) */
    answers *answers;     /* resumable streams' events */
    atomic_int *producers; /* resumable streams still running (the server waits for them when stopping) */
} completions;

/* Handlers (ctx: a completions), the caller in q->key. */
void completions_chat(void *ctx, http_req *q, http_reply *out);
void completions_text(void *ctx, http_req *q, http_reply *out);
/* GET /v1/chat/completions/<id>/events (Last-Event-ID: "<id>:<n>" or none) reads the caller's
 * resumable answer from after event n; DELETE /v1/chat/completions/<id> stops it. A POST with
 * Last-Event-ID reads on the answer of the same request instead of asking again. */
void completions_events(void *ctx, http_req *q, http_reply *out);
void completions_stop(void *ctx, http_req *q, http_reply *out);
/* The same for a body in OpenAI's shape, the reply written in dialect (ollama.c translates
 * Ollama's requests into such bodies). */
void completions_run(completions *srv, http_req *q, http_reply *out, api_kind kind, api_dialect dialect);

#endif
