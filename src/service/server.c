/* server.c — HTTP for `whale serve` (libmicrohttpd, one thread per connection); see server.h.
 *
 * A request's body is gathered up to API_MAX_BODY, then routed. A chat completion is parsed
 * (api.c), submitted to the engine (whale.h) and answered either at once when generation ends, or as
 * a stream whose reader callback waits for tokens and writes server-sent events; a reader that
 * has nothing to send for SERVER_KEEPALIVE_MS writes a ": keep-alive" comment. When a streaming
 * client goes away, libmicrohttpd frees the stream and the request is cancelled, which frees
 * its sequence slot at the next step. */
#include "service/server.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "service/accounts.h"
#include "service/api.h"
#include "service/conversations.h"
#include "service/web.h"

#define SERVER_KEEPALIVE_MS 10000 /* idle stream: send a comment this often */
#define SERVER_IDLE_TIMEOUT 30    /* seconds a connection may sit idle (no byte either way) */
#define SERVER_CONN_MEMORY (64u << 10) /* per connection: request line and headers must fit (else 431) */
#define SERVER_MAX_CONNS 256      /* open connections (each has a thread) */

typedef struct server {
    whale_model *m;
    whale_engine *e;
    api_ctx a;
    pthread_mutex_t mu; /* the scrape state below */
    double last_scrape;
    uint64_t last_tokens;
    store *st; /* --accounts: keys, balances, charges; NULL in local mode */
    accounts *ac; /* --accounts: sign-up, login, sessions */
    const server_opts *o;
    atomic_int draining; /* stopping: new requests get 503 */
    atomic_int inflight; /* requests from their headers to their last byte sent (or their client gone) */
} server;

typedef struct conn { /* per request: the request body as it arrives */
    struct server *srv;
    strbuf body;
    int too_big;
    store_key key; /* with accounts: the caller's key, once checked */
} conn;

/* Responses by status code, for /metrics. */
static const unsigned g_codes[] = {200, 304, 400, 401, 402, 403, 404, 405, 409, 413, 422, 429, 500, 503};
#define N_CODES (sizeof g_codes / sizeof g_codes[0])
static atomic_ulong g_count[N_CODES + 1]; /* the last: any other code */

static void count_status(unsigned status) {
    size_t i = 0;
    while (i < N_CODES && g_codes[i] != status) i++;
    atomic_fetch_add(&g_count[i], 1);
}

/* On every response: no content sniffing, no referrer leaving with a link from the page. */
static void base_headers(struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
}

static enum MHD_Result send_full(struct MHD_Connection *c, unsigned status, char *body, const char *type,
                                 const char *cookie) {
    count_status(status);
    if (!body) body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\"}}");
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    base_headers(r);
    if (status == 503 || status == 429) MHD_add_response_header(r, "Retry-After", "1");
    if (cookie) MHD_add_response_header(r, "Cache-Control", "no-store"); /* a user's own data */
    if (cookie && *cookie) MHD_add_response_header(r, "Set-Cookie", cookie);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, char *body, const char *type) {
    return send_full(c, status, body, type, NULL);
}

/* 429 with Retry-After: the seconds until a retry can succeed. */
static enum MHD_Result send_retry(struct MHD_Connection *c, char *body, int seconds) {
    count_status(429);
    if (!body) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    char s[24];
    snprintf(s, sizeof s, "%d", seconds);
    MHD_add_response_header(r, "Content-Type", "application/json");
    base_headers(r);
    MHD_add_response_header(r, "Retry-After", s);
    enum MHD_Result rc = MHD_queue_response(c, 429, r);
    MHD_destroy_response(r);
    return rc;
}

/* The connection's peer address as text ("?" when not IPv4). */
static void peer_ip(struct MHD_Connection *c, char *out, size_t cap) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, cap, "?");
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, out, (socklen_t)cap);
}

static int trusted(const server *srv, const char *ip) {
    for (int i = 0; i < srv->o->n_trusted_proxies; i++)
        if (!strcmp(srv->o->trusted_proxies[i], ip)) return 1;
    return 0;
}

/* The client's address as text (for per-address limits): the peer's, or, when the peer is a
 * trusted proxy, the last address in X-Forwarded-For that is not one of ours (what the nearest
 * trusted proxy saw; addresses to its left are the client's claims and are not believed). */
static void client_ip(const server *srv, struct MHD_Connection *c, char *out, size_t cap) {
    peer_ip(c, out, cap);
    const char *xff = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For");
    if (!xff || !trusted(srv, out)) return;
    for (size_t end = strlen(xff); end > 0;) { /* right to left */
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',') start--;
        char a[64];
        size_t b = start, e = end;
        while (b < e && (xff[b] == ' ' || xff[b] == '\t')) b++;
        while (e > b && (xff[e - 1] == ' ' || xff[e - 1] == '\t')) e--;
        unsigned char bin[16];
        if (e - b == 0 || e - b >= sizeof a) return;
        memcpy(a, xff + b, e - b);
        a[e - b] = 0;
        if (inet_pton(AF_INET, a, bin) != 1 && inet_pton(AF_INET6, a, bin) != 1) return; /* not an address */
        snprintf(out, cap, "%s", a);
        if (!trusted(srv, a)) return;
        end = start ? start - 1 : 0;
    }
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg, const char *type,
                                  const char *code) {
    return send_text(c, status, api_error_body(msg, type, NULL, code), "application/json");
}

/* ---- streaming ------------------------------------------------------------------------- */

typedef struct stream {
    server *srv;
    api_req q;
    api_reply rep;
    whale_job *r;
    size_t have;   /* token ids received */
    strbuf out;      /* bytes not yet written */
    size_t out_at;
    int ended;     /* the final events are in out */
    int charged;   /* accounts: the request's charge is committed */
    store_key key;
} stream;

/* Accounts: commit the request's charge once it has ended (or been cancelled). */
static void charge(server *srv, const store_key *key, whale_job *r, const api_reply *rep) {
    if (!srv->st) return;
    whale_result res;
    whale_job_result(r, &res);
    if (!strcmp(res.finish, "error")) return; /* the model failed: nothing to charge for */
    accounts_limit_tokens(srv->ac, key, (int64_t)(res.n_prompt + res.n_gen));
    accounts_charge(srv->st, key, srv->a.model_name, srv->a.reasoning, &res, rep->n_reasoning_tokens, rep->id);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    while (st->out_at >= st->out.n) {
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        st->out.n = st->out_at = 0;
        int32_t ids[64];
        int done = 0;
        size_t k = whale_job_wait(st->r, st->have, ids, 64, SERVER_KEEPALIVE_MS, &done);
        st->have += k;
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
            if (!st->charged) charge(st->srv, &st->key, st->r, &st->rep), st->charged = 1;
        } else if (k) {
            api_stream_deltas(&st->rep, &st->out, 0);
        } else {
            strbuf_add(&st->out, ": keep-alive\n\n", 14);
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
        charge(st->srv, &st->key, st->r, &st->rep);
        st->charged = 1;
    }
    whale_job_release(st->r);
    api_reply_free(&st->rep);
    api_req_free(&st->q);
    strbuf_free(&st->out);
    free(st);
}

/* ---- chat completions ------------------------------------------------------------------- */

static enum MHD_Result chat(server *srv, struct MHD_Connection *c, const conn *cn, api_kind kind) {
    api_req q;
    char *err_body = NULL;
    int status = (kind == API_CHAT ? api_parse_chat : api_parse_completion)(&srv->a, cn->body.s ? cn->body.s : "",
                                                                            cn->body.n, &q, &err_body);
    if (status) return send_text(c, (unsigned)status, err_body, "application/json");
    if (srv->st && (status = accounts_admit(srv->st, &cn->key, &err_body))) {
        api_req_free(&q);
        return send_text(c, (unsigned)status, err_body, "application/json");
    }
    if (atomic_load(&srv->draining)) {
        api_req_free(&q);
        return send_error(c, 503, "the server is shutting down", "server_error", "server_busy");
    }
    int wait_s;
    if (srv->st && (wait_s = accounts_limit(srv->ac, &cn->key, &err_body))) {
        api_req_free(&q);
        return send_retry(c, err_body, wait_s);
    }
    if (!q.sp.max_tokens || (int64_t)q.prompt.n + q.sp.max_tokens > srv->a.n_ctx)
        q.sp.max_tokens = srv->a.n_ctx - (int64_t)q.prompt.n - 1;
    whale_err e = {0};
    /* JSON mode and tools: the engine keeps the answer (or a call's body) a JSON object */
    q.sp.json_mode = q.json;
    q.sp.start_in_think = srv->a.reasoning && q.kind == API_CHAT && !q.prefix;
    q.sp.tool_calls = q.n_tools > 0;
    q.sp.tool_force = q.tool_force;
    q.sp.tool_name = q.tool_force_name;
    q.sp.owner = srv->st ? cn->key.user : 0; /* fair shares between users */
    whale_job *r = NULL;
    if (q.prompt.n < (size_t)srv->a.n_ctx && whale_submit(srv->e, &q.sp, &r, &e)) r = NULL;
    if (!r) {
        int busy = e.code == WHALE_E_BUSY;
        char msg[WHALE_ERR_MAX + 64];
        if (!e.code) snprintf(msg, sizeof msg, "the prompt is %zu tokens; this server's context holds %lld", q.prompt.n,
                              (long long)srv->a.n_ctx);
        else snprintf(msg, sizeof msg, "%s", e.msg);
        api_req_free(&q);
        return busy ? send_error(c, 503, msg, "server_error", "server_busy")
                    : send_error(c, 400, msg, "invalid_request_error", "context_length_exceeded");
    }
    if (q.stream) {
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            whale_job_cancel(r);
            whale_job_release(r);
            api_req_free(&q);
            return send_error(c, 500, "out of memory", "server_error", "server_error");
        }
        st->srv = srv;
        st->q = q;
        st->r = r;
        st->key = cn->key;
        if (api_reply_init(&st->rep, &srv->a, &st->q)) {
            stream_free(st); /* cancels the request */
            return send_error(c, 500, "out of memory", "server_error", "server_error");
        }
        st->rep.req = r;
        api_stream_first(&st->rep, &st->out);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        count_status(200);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        base_headers(resp);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    api_reply rep;
    if (api_reply_init(&rep, &srv->a, &q)) {
        whale_job_cancel(r);
        whale_job_release(r);
        api_reply_free(&rep);
        api_req_free(&q);
        return send_error(c, 500, "out of memory", "server_error", "server_error");
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
    charge(srv, &cn->key, r, &rep);
    enum MHD_Result rc;
    if (!strcmp(res.finish, "error"))
        rc = send_error(c, 500, "the model failed on this request", "server_error", "server_error");
    else
        rc = send_text(c, 200, api_reply_json(&rep, &res), "application/json");
    whale_job_release(r);
    api_reply_free(&rep);
    api_req_free(&q);
    return rc;
}

/* ---- metrics ------------------------------------------------------------------------------ */

/* Prometheus text format. The generation rate is over the time since the previous scrape. */
static char *metrics(server *srv) {
    whale_stats st;
    whale_engine_stats(srv->e, &st);
    double now = clock_now_s();
    pthread_mutex_lock(&srv->mu);
    double dt = now - srv->last_scrape;
    double rate = srv->last_scrape > 0 && dt > 0 ? (double)(st.tokens_generated - srv->last_tokens) / dt : 0;
    srv->last_scrape = now;
    srv->last_tokens = st.tokens_generated;
    pthread_mutex_unlock(&srv->mu);
    strbuf b = {0};
    char line[256];
#define OUT(...) strbuf_add(&b, line, (size_t)snprintf(line, sizeof line, __VA_ARGS__))
    OUT("# HELP whale_requests_total HTTP responses by status code.\n# TYPE whale_requests_total counter\n");
    for (size_t i = 0; i <= N_CODES; i++) {
        if (i < N_CODES) OUT("whale_requests_total{code=\"%u\"} %lu\n", g_codes[i], atomic_load(&g_count[i]));
        else OUT("whale_requests_total{code=\"other\"} %lu\n", atomic_load(&g_count[i]));
    }
    OUT("# HELP whale_queue_depth Requests waiting for a sequence slot.\n# TYPE whale_queue_depth gauge\n");
    OUT("whale_queue_depth %d\n", st.waiting);
    OUT("# HELP whale_active_sequences Sequences being computed.\n# TYPE whale_active_sequences gauge\n");
    OUT("whale_active_sequences %d\nwhale_sequence_slots %d\n", st.active, st.n_parallel);
    OUT("# HELP whale_generated_tokens_total Tokens generated.\n# TYPE whale_generated_tokens_total counter\n");
    OUT("whale_generated_tokens_total %llu\n", (unsigned long long)st.tokens_generated);
    OUT("# TYPE whale_prompt_tokens_total counter\nwhale_prompt_tokens_total %llu\n", (unsigned long long)st.prompt_tokens);
    OUT("# TYPE whale_prompt_cache_hit_tokens_total counter\nwhale_prompt_cache_hit_tokens_total %llu\n",
        (unsigned long long)st.cached_tokens);
    OUT("# HELP whale_prompt_cache_hit_ratio Prompt tokens served from the cache, of all prompt tokens.\n");
    OUT("# TYPE whale_prompt_cache_hit_ratio gauge\nwhale_prompt_cache_hit_ratio %.4f\n",
        st.prompt_tokens ? (double)st.cached_tokens / (double)st.prompt_tokens : 0.0);
    OUT("# HELP whale_generation_tokens_per_second Generated tokens per second since the previous scrape.\n");
    OUT("# TYPE whale_generation_tokens_per_second gauge\nwhale_generation_tokens_per_second %.2f\n", rate);
    OUT("# HELP whale_kv_pages_used KV cache pages (64 tokens) holding tokens, in use or kept for reuse.\n");
    OUT("# TYPE whale_kv_pages_used gauge\nwhale_kv_pages_used %lld\n", (long long)((st.kv_tokens + 63) / 64));
    OUT("# TYPE whale_kv_pages_total gauge\nwhale_kv_pages_total %lld\n",
        (long long)(st.n_parallel * ((srv->a.n_ctx + 63) / 64)));
    OUT("# HELP whale_context_cache_blocks Context cache blocks (64 tokens of KV rows) kept, by tier.\n");
    OUT("# TYPE whale_context_cache_blocks gauge\nwhale_context_cache_blocks{tier=\"ram\"} %llu\n",
        (unsigned long long)st.cache_ram_blocks);
    OUT("whale_context_cache_blocks{tier=\"disk\"} %llu\n", (unsigned long long)st.cache_disk_blocks);
    OUT("# TYPE whale_context_cache_bytes gauge\nwhale_context_cache_bytes{tier=\"ram\"} %llu\n",
        (unsigned long long)st.cache_ram_bytes);
    OUT("whale_context_cache_bytes{tier=\"disk\"} %llu\n", (unsigned long long)st.cache_disk_bytes);
    OUT("# HELP whale_context_cache_block_hits_total Blocks copied into a sequence from the context cache, by tier.\n");
    OUT("# TYPE whale_context_cache_block_hits_total counter\nwhale_context_cache_block_hits_total{tier=\"ram\"} %llu\n",
        (unsigned long long)st.cache_hits_ram);
    OUT("whale_context_cache_block_hits_total{tier=\"disk\"} %llu\n", (unsigned long long)st.cache_hits_disk);
    OUT("# HELP whale_speculative_drafts_total Drafted tokens verified (speculative decoding).\n");
    OUT("# TYPE whale_speculative_drafts_total counter\nwhale_speculative_drafts_total %llu\n",
        (unsigned long long)st.drafted);
    OUT("# HELP whale_speculative_accepted_total Drafted tokens the model confirmed (each one a token for free).\n");
    OUT("# TYPE whale_speculative_accepted_total counter\nwhale_speculative_accepted_total %llu\n",
        (unsigned long long)st.accepted);
#undef OUT
    return b.s;
}

/* ---- the chat page ------------------------------------------------------------------------ */

static enum MHD_Result send_asset(struct MHD_Connection *c, const web_asset *a) {
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
    int same = inm && !strcmp(inm, a->etag);
    struct MHD_Response *r = MHD_create_response_from_buffer(same ? 0 : a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    count_status(same ? 304 : 200);
    MHD_add_response_header(r, "Content-Type", a->type);
    MHD_add_response_header(r, "ETag", a->etag);
    MHD_add_response_header(r, "Cache-Control", "no-cache"); /* revalidated: a new binary serves a new page */
    base_headers(r);
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    enum MHD_Result rc = MHD_queue_response(c, same ? 304 : 200, r);
    MHD_destroy_response(r);
    return rc;
}

/* 1 unless the request carries an Origin header naming another site than its Host (for a trusted
 * proxy's requests, the X-Forwarded-Host it sets, if any: the host the browser asked for). */
static int same_origin(const server *srv, struct MHD_Connection *c) {
    const char *o = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *fh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-Host");
    if (fh && srv->o->n_trusted_proxies) {
        char peer[64];
        peer_ip(c, peer, sizeof peer);
        if (trusted(srv, peer)) h = fh;
    }
    if (!o) return 1;
    const char *p = strstr(o, "://");
    return p && h && !strcmp(p + 3, h);
}

/* GET /web/config: what the page needs to draw itself (and who is signed in). */
static char *web_config(server *srv, const char *cookie) {
    static const char *const signup[] = {"open", "closed", "invite"};
    store_user me;
    int in = srv->ac && !accounts_session(srv->ac, cookie, &me);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", srv->a.model_name);
    cJSON_AddStringToObject(j, "alias", srv->a.alias);
    cJSON_AddBoolToObject(j, "reasoning", srv->a.reasoning);
    cJSON_AddNumberToObject(j, "context", (double)srv->a.n_ctx);
    cJSON_AddBoolToObject(j, "accounts", srv->st != NULL);
    if (srv->ac) cJSON_AddStringToObject(j, "signup", signup[srv->o->signup]);
    if (in) cJSON_AddStringToObject(j, "user", me.email);
    else cJSON_AddNullToObject(j, "user");
    char *b = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return b;
}

/* ---- routing ------------------------------------------------------------------------------ */

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *srv = cls;
    conn *cn = *con_cls;
    if (!cn) { /* headers are in: set up the body */
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        *con_cls = cn;
        cn->srv = srv;
        atomic_fetch_add(&srv->inflight, 1);
        const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (len && strtoull(len, NULL, 10) > API_MAX_BODY) /* refused before a byte of it is read */
            return send_error(c, 413, "the request body is too large", "invalid_request_error", "request_too_large");
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->body.n + *upload_size > API_MAX_BODY) cn->too_big = 1;
        else strbuf_add(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_big) return send_error(c, 413, "the request body is too large", "invalid_request_error", "request_too_large");
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), head = !strcmp(method, "HEAD");
    const web_asset *wa = get || head ? web_find(url) : NULL;
    if (wa) return send_asset(c, wa);
    const char *cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
    /* a browser on another site may send requests here but never read the answers (no CORS):
     * it may not change anything either */
    if (!get && !head && !same_origin(srv, c))
        return send_error(c, 403, "cross-origin requests are refused", "invalid_request_error", "forbidden");
    if (!strcmp(url, "/web/config")) return send_full(c, 200, web_config(srv, cookie), "application/json", "");
    if (!strcmp(url, "/health")) {
        whale_stats st;
        whale_engine_stats(srv->e, &st);
        char *b = malloc(160);
        if (b) snprintf(b, 160, "{\"status\":\"ok\",\"active\":%d,\"waiting\":%d,\"slots\":%d}", st.active, st.waiting,
                        st.n_parallel);
        return send_text(c, 200, b, "application/json");
    }
    if (!strcmp(url, "/metrics")) return send_text(c, 200, metrics(srv), "text/plain; version=0.0.4");
    if (srv->st) { /* accounts: the account endpoints, then every other endpoint needs a key or a session */
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        char ip[64];
        client_ip(srv, c, ip, sizeof ip);
        accounts_reply ar;
        accounts_route(srv->ac, method, url, cn->body.s, cn->body.n, cookie, ctype, ip, &ar);
        if (ar.status == 429) return send_retry(c, ar.body, ar.retry_after > 0 ? ar.retry_after : 1);
        if (ar.status) return send_full(c, (unsigned)ar.status, ar.body, "application/json", ar.cookie);
        /* the web page: its session cookie stands for a key (id 0: the ledger's "web") */
        store_user me;
        int by_cookie = !auth && !accounts_session(srv->ac, cookie, &me);
        if (by_cookie && !get && !head && strcmp(method, "DELETE") && (!ctype || strncasecmp(ctype, "application/json", 16)))
            return send_error(c, 403, "send Content-Type: application/json", "invalid_request_error", "forbidden");
        if (conv_is_route(url)) {
            if (!by_cookie) return send_error(c, 401, "sign in first", "authentication_error", "invalid_request_error");
            char *b = NULL;
            int st = conv_route(srv->st, me.id, method, url, cn->body.s, cn->body.n, &b);
            return send_full(c, (unsigned)st, b, "application/json", "");
        }
        if (by_cookie) cn->key = (store_key){.id = 0, .user = me.id};
        else {
            char *err_body = NULL;
            int status = accounts_auth(srv->st, auth, &cn->key, &err_body);
            if (status) return send_text(c, (unsigned)status, err_body, "application/json");
        }
        if (!strcmp(url, "/user/balance") || !strcmp(url, "/user/usage")) {
            if (!get) return send_error(c, 405, "use GET", "invalid_request_error", "method_not_allowed");
            char *b = url[6] == 'b' ? accounts_balance_json(srv->st, cn->key.user) : accounts_usage_json(srv->st, cn->key.user);
            return b ? send_full(c, 200, b, "application/json", "")
                     : send_error(c, 500, "the account store failed", "server_error", "server_error");
        }
    }
    if (!strcmp(url, "/models") || !strcmp(url, "/v1/models")) {
        if (!get) return send_error(c, 405, "use GET", "invalid_request_error", "method_not_allowed");
        return send_text(c, 200, api_models_json(&srv->a), "application/json");
    }
    if (!strcmp(url, "/chat/completions") || !strcmp(url, "/v1/chat/completions")) {
        if (!post) return send_error(c, 405, "use POST", "invalid_request_error", "method_not_allowed");
        return chat(srv, c, cn, API_CHAT);
    }
    if (!strcmp(url, "/beta/completions") || !strcmp(url, "/v1/completions") || !strcmp(url, "/completions")) {
        if (!post) return send_error(c, 405, "use POST", "invalid_request_error", "method_not_allowed");
        return chat(srv, c, cn, API_COMPLETION);
    }
    return send_error(c, 404, "no such endpoint", "invalid_request_error", "not_found");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    (void)cls, (void)c, (void)why;
    conn *cn = *con_cls;
    if (!cn) return;
    atomic_fetch_sub(&cn->srv->inflight, 1);
    strbuf_free(&cn->body);
    free(cn);
    *con_cls = NULL;
}

int server_run(whale_model *m, const server_opts *o, volatile sig_atomic_t *stop, whale_err *err) {
    server srv = {.m = m, .mu = PTHREAD_MUTEX_INITIALIZER, .st = o->accounts, .o = o};
    whale_model_info mi;
    whale_model_info_get(m, &mi);
    if (!mi.has_tokenizer) return err_set(err, WHALE_E_UNSUPPORTED, "the model has no tokenizer");
    srv.a.m = m;
    if (!(srv.a.fmt = whale_chat_format(m, o->chat_format)))
        return err_set(err, WHALE_E_UNSUPPORTED, "no chat format for this model (use --chat-format deepseek-r1|chatml)");
    srv.a.reasoning = !strcmp(srv.a.fmt, "deepseek-r1");
    srv.a.alias = srv.a.reasoning ? "deepseek-reasoner" : "deepseek-chat";
    api_ctx_tokens(&srv.a);
    srv.a.model_name = o->model_name && o->model_name[0] ? o->model_name : "whale";
    whale_engine_params ep;
    whale_engine_params_default(&ep);
    ep.n_parallel = o->n_parallel > 0 ? o->n_parallel : 4;
    ep.n_ctx = o->n_ctx;
    ep.max_queue = o->max_queue > 0 ? o->max_queue : 64;
    /* with accounts, one user may hold a quarter of the queue */
    ep.max_queue_per_owner = o->accounts ? (ep.max_queue >= 4 ? ep.max_queue / 4 : 1) : 0;
    ep.cache = o->cache_ram || o->cache_dir;
    ep.cache_ram = o->cache_ram;
    ep.cache_disk = o->cache_dir ? o->cache_disk : 0;
    ep.cache_dir = o->cache_dir ? o->cache_dir : "";
    ep.speculative = o->speculative;
    int rc = whale_engine_new(&srv.e, m, &ep, err);
    if (rc) return rc;
    srv.a.n_ctx = whale_engine_n_ctx(srv.e);
    if (whale_engine_warning(srv.e)) fprintf(stderr, "whale serve: warning: %s\n", whale_engine_warning(srv.e));

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)(o->port > 0 ? o->port : 8080));
    if (inet_pton(AF_INET, o->host ? o->host : "127.0.0.1", &addr.sin_addr) != 1) {
        whale_engine_free(srv.e);
        return err_set(err, WHALE_E_ARG, "--host '%s' is not an IPv4 address", o->host);
    }
    if (srv.st && !(srv.ac = accounts_new(srv.st, (signup_mode)o->signup, o->secure_cookies))) {
        whale_engine_free(srv.e);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the accounts");
    }
    if (srv.ac) accounts_set_limits(srv.ac, o->rpm, o->tpm);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        handle, &srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(o->max_conns > 0 ? o->max_conns : SERVER_MAX_CONNS), MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(o->max_conns_per_ip > 0 ? o->max_conns_per_ip : o->max_conns_per_ip < 0 ? 0 : SERVER_CONNS_PER_IP),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVER_IDLE_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)SERVER_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        whale_engine_free(srv.e);
        accounts_free(srv.ac);
        return err_set(err, WHALE_E_IO, "cannot listen on %s:%d (in use, or not allowed)", o->host ? o->host : "127.0.0.1",
                       o->port > 0 ? o->port : 8080);
    }
    fprintf(stderr, "whale serve: %s (%s format) on http://%s:%d  (chat page at /; %d parallel sequences of %lld tokens%s; "
            "Ctrl-C stops)\n",
            srv.a.model_name, srv.a.fmt, o->host ? o->host : "127.0.0.1", o->port > 0 ? o->port : 8080,
            ep.n_parallel, (long long)srv.a.n_ctx,
            ep.speculative == WHALE_SPEC_MTP ? ", greedy requests speculate with MTP" : "");
    while (!*stop) usleep(100 * 1000);
    /* drain: no new connections or requests; what runs may finish within drain_s */
    int drain = o->drain_s < 0 ? 0 : o->drain_s > 0 ? o->drain_s : SERVER_DRAIN_S;
    atomic_store(&srv.draining, 1);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) shutdown(lfd, SHUT_RDWR); /* new connections are refused, not left waiting */
    int left = atomic_load(&srv.inflight);
    if (left && drain)
        fprintf(stderr, "whale serve: stopping: letting %d request(s) finish (at most %d s; Ctrl-C again cancels)\n",
                left, drain);
    else fprintf(stderr, "whale serve: stopping\n");
    for (int i = 0; i < drain * 10 && atomic_load(&srv.inflight) > 0 && *stop < 2; i++) usleep(100 * 1000);
    whale_engine_cancel_all(srv.e);
    MHD_stop_daemon(d); /* waits for the connection threads, which cancel their requests */
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    whale_engine_free(srv.e);
    accounts_free(srv.ac);
    return 0;
}
