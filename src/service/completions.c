/* completions.c — chat and text completions over the engine, plain or streamed; see
 * completions.h.
 *
 * A stream's reader waits for tokens and writes server-sent events; one that has nothing to send
 * for COMPLETIONS_KEEPALIVE_MS writes a ": keep-alive" comment, and every
 * COMPLETIONS_HANGUP_POLL_MS looks whether its client has gone (a write would only tell at the
 * next token). When a streaming client goes away the stream is freed and the request cancelled,
 * which takes it out of the queue at once or frees its sequence slot at the next step; it is
 * charged for what was computed (none of the prompt while queued).
 *
 * A resumable stream (stream_options.resumable) is made by a producer thread of its own into
 * the answer's log (answers.h), and its connections only read the log: a client that goes away
 * leaves the answer running for ANSWERS_GRACE_S, and a client that comes back (Last-Event-ID)
 * reads on from where it stopped. Its owner stops it with DELETE. */
#include "service/completions.h"

#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/strbuf.h"

/* ---- streaming ------------------------------------------------------------------------- */

/* A comment line alone, without the blank line that would end an event: events carry ids, and a
 * client that keeps the last id (OpenAI's Python one) would take "comment, blank line" for an
 * event with no data. */
#define KEEPALIVE ": keep-alive\n"

typedef struct stream {
    completions *srv;
    served *m;     /* the model, leased until the stream is freed */
    api_req q;
    api_reply rep;
    whale_job *r;
    size_t have;   /* token ids received */
    strbuf out;    /* bytes not yet written */
    size_t out_at;
    int ended;     /* the final events are in out */
    int charged;   /* accounts: the request's charge is committed */
    store_key key;
    int64_t held, held_tokens; /* accounts: its reservation, and the tokens taken from its buckets */
    int fd;        /* the client's socket (server.c fills it), or -1 */
    int idle_ms;   /* waited since the last bytes were written */
    answer *ans;   /* resumable: the log its producer writes */
} stream;

/* 1 when the client has closed its side of the connection (a stream's client sends nothing after
 * its request, so end of input means it went away). */
static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return 1;
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Accounts: commit the request's charge once it has ended (or been cancelled), settling its
 * reservation held (money) and held_tokens (rate limits) to what it really cost. */
static void charge(completions *srv, const served *m, const store_key *key, whale_job *r, const api_reply *rep,
                   int64_t held, int64_t held_tokens) {
    if (!srv->st) return;
    whale_result res;
    whale_job_result(r, &res);
    int failed = !strcmp(res.finish, "error"); /* the model failed: nothing to charge for */
    accounts_limit_tokens(srv->ac, key, (failed ? 0 : (int64_t)(res.n_prompt + res.n_gen)) - held_tokens);
    if (failed) accounts_release(srv->st, held);
    else accounts_charge(srv->st, key, m->a.model_name, m->a.reasoning, &res, rep->n_reasoning_tokens, rep->id, held);
}

/* Wait up to wait_ms for tokens and turn what came into events appended to st->out (the last
 * ones, and the charge, at the end: st->ended). 0 when nothing came. */
static int step(stream *st, int wait_ms) {
    int32_t ids[64];
    int done = 0;
    size_t k = whale_job_wait(st->r, st->have, ids, 64, wait_ms, &done);
    st->have += k;
    if (!k && !done) return 0;
    if (k && api_reply_feed(&st->rep, ids, k)) whale_job_cancel(st->r);
    if (done || st->rep.stopped) {
        if (!done) { /* wait for the engine to let go, then report */
            while (!done) st->have += whale_job_wait(st->r, st->have, ids, 64, 1000, &done);
        }
        api_reply_end(&st->rep);
        whale_result res;
        whale_job_result(st->r, &res);
        api_stream_end(&st->rep, &res, &st->out);
        st->ended = 1;
        if (!st->charged) charge(st->srv, st->m, &st->key, st->r, &st->rep, st->held, st->held_tokens), st->charged = 1;
    } else {
        api_stream_deltas(&st->rep, &st->out, 0);
    }
    return 1;
}

static ssize_t stream_read(void *cls, char *buf, size_t max) {
    stream *st = cls;
    while (st->out_at >= st->out.n) {
        if (st->ended) return -1;
        st->out.n = st->out_at = 0;
        if (!step(st, COMPLETIONS_HANGUP_POLL_MS)) { /* nothing yet (queued, or a long prompt): is anyone still there? */
            if (client_gone(st->fd)) return -1; /* stream_free cancels and charges what was computed */
            if ((st->idle_ms += COMPLETIONS_HANGUP_POLL_MS) < COMPLETIONS_KEEPALIVE_MS) continue;
            st->idle_ms = 0;
            if (st->q.dialect == API_OPENAI) strbuf_add(&st->out, KEEPALIVE, sizeof KEEPALIVE - 1); /* (NDJSON just waits) */
        } else {
            st->idle_ms = 0;
        }
    }
    size_t n = st->out.n - st->out_at < max ? st->out.n - st->out_at : max;
    memcpy(buf, st->out.s + st->out_at, n);
    st->out_at += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream *st = cls;
    if (!st->ended) whale_job_cancel(st->r); /* the client went away */
    if (!st->charged && st->srv->st) { /* charged for what was computed: wait for the engine to let go */
        int32_t ids[64];
        int done = 0;
        while (!done) st->have += whale_job_wait(st->r, st->have, ids, 64, 1000, &done);
        charge(st->srv, st->m, &st->key, st->r, &st->rep, st->held, st->held_tokens);
        st->charged = 1;
    }
    whale_job_release(st->r);
    api_reply_free(&st->rep);
    api_req_free(&st->q);
    strbuf_free(&st->out);
    models_release(st->srv->reg, st->m);
    free(st);
}

/* ---- resumable streams: a producer per answer, readers per connection ------------------- */

/* The answer's producer: runs the job to its end into the log, whoever reads; cancels it when its
 * owner asks, or when no one has read for ANSWERS_GRACE_S. */
static void *produce(void *arg) {
    stream *st = arg;
    answer *a = st->ans;
    while (!st->ended) {
        int got = step(st, COMPLETIONS_HANGUP_POLL_MS);
        if (st->out.n) answer_append(a, st->out.s, st->out.n);
        st->out.n = 0;
        if (answer_cancelled(a) || (!got && answer_unread_s(a) > ANSWERS_GRACE_S)) whale_job_cancel(st->r);
    }
    answer_end(a);
    answer_put(a);
    atomic_int *producers = st->srv->producers;
    stream_free(st); /* ended and charged: releases the job and the model */
    atomic_fetch_sub(producers, 1);
    return NULL;
}

typedef struct reader { /* one connection reading an answer's log */
    answer *a;
    size_t pos;
    int fd, idle_ms;
} reader;

static ssize_t reader_read(void *cls, char *buf, size_t max) {
    reader *rd = cls;
    for (;;) {
        long long k = answer_read(rd->a, &rd->pos, buf, max, COMPLETIONS_HANGUP_POLL_MS);
        if (k) return k < 0 ? -1 : (ssize_t)k;
        if (client_gone(rd->fd)) return -1; /* the answer goes on: it can be read again */
        if ((rd->idle_ms += COMPLETIONS_HANGUP_POLL_MS) >= COMPLETIONS_KEEPALIVE_MS && max >= sizeof KEEPALIVE - 1) {
            rd->idle_ms = 0;
            memcpy(buf, KEEPALIVE, sizeof KEEPALIVE - 1);
            return (ssize_t)(sizeof KEEPALIVE - 1);
        }
    }
}

static void reader_free(void *cls) {
    reader *rd = cls;
    answer_detach(rd->a);
    answer_put(rd->a);
    free(rd);
}

/* Reply with a reader of a (held: the reader lets it go) from byte pos. */
static void read_answer(answer *a, size_t pos, http_reply *out) {
    reader *rd = calloc(1, sizeof *rd);
    if (!rd) {
        answer_put(a);
        http_error(out, 500, "out of memory", "server_error", "server_error");
        return;
    }
    *rd = (reader){a, pos, -1, 0};
    answer_attach(a);
    out->status = 200;
    out->type = "text/event-stream";
    out->stream = rd;
    out->read = reader_read;
    out->stream_free = reader_free;
    out->client_fd = &rd->fd;
}

/* st (its first events in st->out) as a resumable answer: its producer started, this connection
 * its first reader. 0, or -1 (nothing started: the caller frees st). */
static int start_resumable(completions *srv, stream *st, const http_req *hq, http_reply *out) {
    uint8_t h[32];
    store_token_hash(hq->body, h); /* the request, to know it again when it is sent again */
    int64_t owner = srv->st ? hq->key.user : 0;
    if (!(st->ans = answers_add(srv->answers, st->rep.id, owner, h))) return -1;
    answer *rd = answers_find(srv->answers, st->rep.id, owner, NULL);
    answer_append(st->ans, st->out.s, st->out.n);
    st->out.n = 0;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(srv->producers, 1);
    pthread_t th;
    int rc = pthread_create(&th, &at, produce, st);
    pthread_attr_destroy(&at);
    if (rc) {
        atomic_fetch_sub(srv->producers, 1);
        answer_end(st->ans);
        answer_put(st->ans);
        if (rd) answer_put(rd);
        st->ans = NULL;
        return -1;
    }
    if (rd) read_answer(rd, 0, out);
    else http_error(out, 500, "out of memory", "server_error", "server_error");
    return 0;
}

/* "<answer id>:<n>" into id and *n; 0, or -1 when malformed. */
static int event_name(const char *s, char id[ANSWERS_ID_MAX], uint64_t *n) {
    const char *colon = s ? strrchr(s, ':') : NULL;
    char *end;
    if (!colon || colon == s || (size_t)(colon - s) >= ANSWERS_ID_MAX) return -1;
    unsigned long long v = strtoull(colon + 1, &end, 10);
    if (*end || end == colon + 1) return -1;
    memcpy(id, s, (size_t)(colon - s));
    id[colon - s] = 0;
    *n = v;
    return 0;
}

/* Read on after event n of the caller's answer id (with hash: only the same request's). */
static void resume(completions *srv, const http_req *hq, const char *id, uint64_t n, const uint8_t *hash,
                   http_reply *out) {
    answer *a = answers_find(srv->answers, id, srv->st ? hq->key.user : 0, hash);
    if (!a) {
        http_error(out, 404, "no answer to resume by that id: it ended over 10 minutes ago, or it is another's, or "
                             "this is not the request that asked it", "invalid_request_error", "not_found");
        return;
    }
    long long off = answer_offset(a, n);
    if (off < 0) {
        answer_put(a);
        http_error(out, 400, "Last-Event-ID names an event this answer has not sent", "invalid_request_error",
                   "invalid_request_error");
        return;
    }
    read_answer(a, (size_t)off, out);
}

/* The answer id of /v1/chat/completions/<id>[/events] into id: 0, or -1 (a 404 in out). */
static int answer_path(const http_req *q, const char *suffix, char id[ANSWERS_ID_MAX], http_reply *out) {
    const char *p = q->rest[0] == '/' ? q->rest + 1 : "";
    size_t n = strlen(p), k = strlen(suffix);
    if (n > k && n - k < ANSWERS_ID_MAX && !strcmp(p + n - k, suffix)) {
        memcpy(id, p, n - k);
        id[n - k] = 0;
        if (!strchr(id, '/')) return 0;
    }
    http_error(out, 404, "no such answer", "invalid_request_error", "not_found");
    return -1;
}

void completions_events(void *ctx, http_req *q, http_reply *out) {
    char id[ANSWERS_ID_MAX], named[ANSWERS_ID_MAX];
    uint64_t n = 0;
    if (answer_path(q, "/events", id, out)) return;
    if (q->last_event_id && (event_name(q->last_event_id, named, &n) || strcmp(named, id))) {
        http_error(out, 400, "Last-Event-ID must be \"<answer id>:<n>\" of this answer", "invalid_request_error",
                   "invalid_request_error");
        return;
    }
    resume(ctx, q, id, n, NULL, out);
}

void completions_stop(void *ctx, http_req *q, http_reply *out) {
    completions *srv = ctx;
    char id[ANSWERS_ID_MAX];
    if (answer_path(q, "", id, out)) return;
    answer *a = answers_find(srv->answers, id, srv->st ? q->key.user : 0, NULL);
    if (!a) {
        http_error(out, 404, "no such answer", "invalid_request_error", "not_found");
        return;
    }
    answer_cancel(a); /* its producer stops it at its next step; it is charged for what was computed */
    answer_put(a);
    http_json(out, 200, cJSON_CreateObject());
}

/* ---- chat completions ------------------------------------------------------------------- */

/* Names of the served models for an error, into buf. */
static const char *served_names(const models *reg, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < reg->n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s'%s'", i ? ", " : "", reg->v[i].name);
    return buf;
}

/* The request parsed for the model its body names, then that model leased (loaded if need be:
 * a request that cannot run never loads one): 0, or the reply is in out. */
static int route(completions *srv, http_req *hq, http_reply *out, api_kind kind, served **m, api_req *q) {
    cJSON *j;
    const char *name;
    char *err_body = NULL;
    int status = api_parse_head(hq->body, hq->n, &j, &name, &err_body);
    if (!status && !(*m = models_find(srv->reg, name))) {
        char has[512];
        status = api_model_unknown(name, served_names(srv->reg, has, sizeof has), &err_body);
    }
    if (!status) {
        api_ctx a; /* its vocabulary is there before its weights; the context's real size is checked in run */
        models_ctx(srv->reg, *m, &a);
        status = (kind == API_CHAT ? api_parse_chat_json : api_parse_completion_json)(&a, j, q, &err_body);
    }
    cJSON_Delete(j);
    if (status) {
        http_body(out, status, err_body, NULL);
        return status;
    }
    whale_err e = {0};
    if (models_lease(srv->reg, *m, &e)) {
        api_req_free(q);
        if (e.code == WHALE_E_BUSY) http_error(out, 503, e.msg, "server_error", "server_busy");
        else http_error(out, 500, e.msg, "server_error", "model_load_failed");
        out->retry_after = e.code == WHALE_E_BUSY ? 5 : 0;
        return out->status;
    }
    if (atomic_load(srv->draining) == 2) { /* the drain ended while the model loaded: what runs is cancelled */
        api_req_free(q);
        models_release(srv->reg, *m);
        http_error(out, 503, "the server is shutting down", "server_error", "server_busy");
        return 503;
    }
    return 0;
}

/* Run the parsed request q on the leased model m and reply: 1 when a stream took the lease
 * (stream_free gives it back), 0 when the caller gives it back. */
static int run(completions *srv, served *m, http_req *hq, http_reply *out, api_req q) {
    const api_ctx *a = &m->a;
    char *err_body = NULL;
    int status;
    if (!q.sp.max_tokens && srv->st) q.sp.max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS;
    if (!q.sp.max_tokens || (int64_t)q.prompt.n + q.sp.max_tokens > a->n_ctx)
        q.sp.max_tokens = a->n_ctx - (int64_t)q.prompt.n - 1;
    /* accounts: the most it may cost is reserved before it runs (money), and its most tokens
     * taken from its rate-limit buckets (both settled to the real figures at the end) */
    int64_t held = 0, held_tokens = 0;
    if (srv->st && q.prompt.n < (size_t)a->n_ctx) {
        status = accounts_reserve(srv->st, &hq->key, a->model_name, a->reasoning, (int64_t)q.prompt.n,
                                  q.sp.max_tokens, srv->instance, &held, &err_body);
        if (status) {
            api_req_free(&q);
            http_body(out, status, err_body, NULL);
            return 0;
        }
        held_tokens = (int64_t)q.prompt.n + q.sp.max_tokens;
        accounts_limit_tokens(srv->ac, &hq->key, held_tokens);
    }
    whale_err e = {0};
    /* JSON mode and tools: the engine keeps the answer (or a call's body) a JSON object */
    q.sp.json_mode = q.json;
    q.sp.start_in_think = a->reasoning && q.kind == API_CHAT && !q.prefix;
    q.sp.tool_calls = q.n_tools > 0;
    q.sp.tool_force = q.tool_force;
    q.sp.tool_name = q.tool_force_name;
    q.sp.owner = srv->st ? hq->key.user : 0; /* fair shares between users, and their own context caches */
    whale_job *r = NULL;
    if (q.prompt.n < (size_t)a->n_ctx && whale_submit(m->e, &q.sp, &r, &e)) r = NULL;
    if (!r) {
        int busy = e.code == WHALE_E_BUSY;
        char msg[WHALE_ERR_MAX + 64];
        if (!e.code) snprintf(msg, sizeof msg, "the prompt is %zu tokens; this server's context holds %lld", q.prompt.n,
                              (long long)a->n_ctx);
        else snprintf(msg, sizeof msg, "%s", e.msg);
        api_req_free(&q);
        if (srv->st) {
            accounts_release(srv->st, held);
            accounts_limit_tokens(srv->ac, &hq->key, -held_tokens);
        }
        if (busy) http_error(out, 503, msg, "server_error", "server_busy");
        else http_error(out, 400, msg, "invalid_request_error", "context_length_exceeded");
        return 0;
    }
    if (q.stream) {
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            whale_job_cancel(r);
            whale_job_release(r);
            if (srv->st) accounts_release(srv->st, held), accounts_limit_tokens(srv->ac, &hq->key, -held_tokens);
            api_req_free(&q);
            http_error(out, 500, "out of memory", "server_error", "server_error");
            return 0;
        }
        st->srv = srv;
        st->m = m;
        st->q = q;
        st->r = r;
        st->key = hq->key;
        st->held = held;
        st->held_tokens = held_tokens;
        st->fd = -1;
        if (api_reply_init(&st->rep, a, &st->q)) {
            stream_free(st); /* cancels the request, gives the model back */
            http_error(out, 500, "out of memory", "server_error", "server_error");
            return 1;
        }
        st->rep.req = r;
        api_stream_first(&st->rep, &st->out);
        if (q.resumable && q.dialect == API_OPENAI) {
            if (start_resumable(srv, st, hq, out)) {
                stream_free(st);
                http_error(out, 500, "out of memory", "server_error", "server_error");
            }
            return 1; /* (the producer, or stream_free, gives the model back) */
        }
        out->status = 200;
        out->type = q.dialect == API_OPENAI ? "text/event-stream" : "application/x-ndjson";
        out->stream = st;
        out->read = stream_read;
        out->stream_free = stream_free;
        out->client_fd = &st->fd;
        return 1;
    }
    api_reply rep;
    if (api_reply_init(&rep, a, &q)) {
        whale_job_cancel(r);
        whale_job_release(r);
        if (srv->st) accounts_release(srv->st, held), accounts_limit_tokens(srv->ac, &hq->key, -held_tokens);
        api_reply_free(&rep);
        api_req_free(&q);
        http_error(out, 500, "out of memory", "server_error", "server_error");
        return 0;
    }
    rep.req = r;
    size_t have = 0;
    int done = 0;
    int32_t ids[64];
    while (!done) {
        size_t k = whale_job_wait(r, have, ids, 64, 1000, &done);
        have += k;
        if (k && !rep.stopped && api_reply_feed(&rep, ids, k)) whale_job_cancel(r);
    }
    api_reply_end(&rep);
    whale_result res;
    whale_job_result(r, &res);
    charge(srv, m, &hq->key, r, &rep, held, held_tokens);
    if (!strcmp(res.finish, "error")) http_error(out, 500, "the model failed on this request", "server_error", "server_error");
    else http_body(out, 200, api_reply_json(&rep, &res), NULL);
    whale_job_release(r);
    api_reply_free(&rep);
    api_req_free(&q);
    return 0;
}

void completions_run(completions *srv, http_req *hq, http_reply *out, api_kind kind, api_dialect dialect) {
    if (hq->last_event_id && dialect == API_OPENAI) { /* the same request again: read on, never a new answer */
        char id[ANSWERS_ID_MAX];
        uint64_t n;
        uint8_t h[32];
        if (event_name(hq->last_event_id, id, &n)) {
            http_error(out, 400, "Last-Event-ID must be \"<answer id>:<n>\", as the stream's id: lines name its events",
                       "invalid_request_error", "invalid_request_error");
            return;
        }
        store_token_hash(hq->body, h);
        resume(srv, hq, id, n, h, out);
        return;
    }
    api_req q;
    served *m;
    if (route(srv, hq, out, kind, &m, &q)) return;
    q.dialect = dialect;
    if (!run(srv, m, hq, out, q)) models_release(srv->reg, m);
}

void completions_chat(void *ctx, http_req *q, http_reply *out) { completions_run(ctx, q, out, API_CHAT, API_OPENAI); }
void completions_text(void *ctx, http_req *q, http_reply *out) { completions_run(ctx, q, out, API_COMPLETION, API_OPENAI); }
