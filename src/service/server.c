/* server.c — HTTP for `whale serve` (libmicrohttpd, one thread per connection); see server.h.
 *
 * Every endpoint is a row of one route table {method, path, auth, flags, handler}. A request is
 * checked as soon as its headers are in, before a byte of its body is read: the route exists,
 * the origin, the caller (API key or session cookie), and for paid work the balance and rate
 * limits. Only then is the body gathered (up to a cap) and the handler called; it fills one
 * http_reply (http.h), which this file writes: a body, an embedded asset, or a stream. */
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
#include "service/completions.h"
#include "service/conversations.h"
#include "service/http.h"
#include "service/web.h"

#define SERVER_IDLE_TIMEOUT 30    /* seconds a connection may sit idle (no byte either way) */
#define SERVER_CONN_MEMORY (64u << 10) /* per connection: request line and headers must fit (else 431) */
#define SERVER_MAX_CONNS 256      /* open connections (each has a thread) */
#define SERVER_MAX_ROUTES 40

typedef struct server {
    whale_model *m;
    whale_engine *e;
    api_ctx a;
    completions comp;
    http_route routes[SERVER_MAX_ROUTES];
    int n_routes;
    pthread_mutex_t mu; /* the scrape state below */
    double last_scrape;
    uint64_t last_tokens;
    store *st; /* --accounts: keys, balances, charges; NULL in local mode */
    accounts *ac; /* --accounts: sign-up, login, sessions */
    const server_opts *o;
    atomic_int draining; /* stopping: new requests get 503 */
    atomic_int inflight; /* requests from their headers to their last byte sent (or their client gone) */
    size_t max_body; /* request bytes read at most: api_max_body of the context */
    char instance[STORE_MAX_INSTANCE]; /* --accounts: "host:port", this server's name on its reservations */
} server;

typedef struct conn { /* per request, from its headers to its end */
    struct server *srv;
    const http_route *route;
    http_req q;
    strbuf body;
    int too_big;
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

static const char g_oom[] =
    "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\"}}";

static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    http_reply *r = cls;
    ssize_t n = r->read(r->stream, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void stream_done(void *cls) {
    http_reply *r = cls;
    r->stream_free(r->stream);
    free(r);
}

/* Write the reply (and free what it holds). */
static enum MHD_Result send_reply(struct MHD_Connection *c, http_reply *rep) {
    struct MHD_Response *r;
    unsigned status = (unsigned)rep->status;
    int same = 0;
    if (rep->asset) { /* revalidated by ETag: a new binary serves a new page */
        const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
        same = inm && !strcmp(inm, rep->asset->etag);
        if (same) status = 304;
        r = MHD_create_response_from_buffer(same ? 0 : rep->asset->size, (void *)rep->asset->data, MHD_RESPMEM_PERSISTENT);
    } else if (rep->stream) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (rep->client_fd) *rep->client_fd = ci ? (int)ci->connect_fd : -1;
        http_reply *held = malloc(sizeof *held);
        if (held) *held = *rep;
        r = held ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_cb, held, stream_done) : NULL;
        if (!r) {
            if (held) free(held);
            rep->stream_free(rep->stream);
        }
    } else {
        if (!rep->body) {
            status = 500;
            rep->type = NULL;
            r = MHD_create_response_from_buffer(strlen(g_oom), (void *)g_oom, MHD_RESPMEM_PERSISTENT);
        } else {
            r = MHD_create_response_from_buffer(strlen(rep->body), rep->body, MHD_RESPMEM_MUST_FREE);
            if (!r) free(rep->body);
        }
        rep->body = NULL;
    }
    if (!r) return MHD_NO;
    count_status(status);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff"); /* no content sniffing */
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");    /* no referrer leaving with a link */
    if (rep->asset) {
        MHD_add_response_header(r, "Content-Type", rep->asset->type);
        MHD_add_response_header(r, "ETag", rep->asset->etag);
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
        MHD_add_response_header(r, "Cross-Origin-Opener-Policy", "same-origin");
    } else {
        MHD_add_response_header(r, "Content-Type", rep->type ? rep->type : "application/json");
        MHD_add_response_header(r, "Cache-Control", rep->stream ? "no-cache" : "no-store"); /* a user's own data */
    }
    if (status == 503 || status == 429) {
        char s[24];
        snprintf(s, sizeof s, "%d", rep->retry_after > 0 ? rep->retry_after : 1);
        MHD_add_response_header(r, "Retry-After", s);
    }
    if (rep->cookie[0]) MHD_add_response_header(r, "Set-Cookie", rep->cookie);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
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
static void h_web_config(void *ctx, http_req *q, http_reply *out) {
    static const char *const signup[] = {"open", "closed", "invite"};
    server *srv = ctx;
    store_user me;
    int in = srv->ac && !accounts_session(srv->ac, q->cookie, &me);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", srv->a.model_name);
    cJSON_AddStringToObject(j, "alias", srv->a.alias);
    cJSON_AddBoolToObject(j, "reasoning", srv->a.reasoning);
    cJSON_AddNumberToObject(j, "context", (double)srv->a.n_ctx);
    cJSON_AddBoolToObject(j, "accounts", srv->st != NULL);
    if (srv->ac) cJSON_AddStringToObject(j, "signup", signup[srv->o->signup]);
    if (in) cJSON_AddStringToObject(j, "user", me.email);
    else cJSON_AddNullToObject(j, "user");
    http_json(out, 200, j);
}

static void h_health(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    server *srv = ctx;
    whale_stats st;
    whale_engine_stats(srv->e, &st);
    char *b = malloc(160);
    if (b) snprintf(b, 160, "{\"status\":\"ok\",\"active\":%d,\"waiting\":%d,\"slots\":%d}", st.active, st.waiting,
                    st.n_parallel);
    http_body(out, 200, b, NULL);
}

static void h_metrics(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    http_body(out, 200, metrics(ctx), "text/plain; version=0.0.4");
}

static void h_models(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    server *srv = ctx;
    http_body(out, 200, api_models_json(&srv->a), NULL);
}

/* ---- routing ------------------------------------------------------------------------------ */

static void route(server *srv, const char *method, const char *path, http_auth auth, int flags, http_handler fn,
                  void *ctx) {
    if (srv->n_routes < SERVER_MAX_ROUTES) srv->routes[srv->n_routes++] = (http_route){method, path, auth, flags, fn, ctx};
}

/* The service's endpoints, all in one place. The account ones exist with --accounts only. */
static void routes_init(server *srv) {
    route(srv, "GET", "/web/config", HTTP_OPEN, 0, h_web_config, srv);
    route(srv, "GET", "/health", HTTP_OPEN, 0, h_health, srv);
    route(srv, "GET", "/metrics", HTTP_OPEN, 0, h_metrics, srv);
    route(srv, "GET", "/models", HTTP_CALLER, 0, h_models, srv);
    route(srv, "GET", "/v1/models", HTTP_CALLER, 0, h_models, srv);
    route(srv, "POST", "/chat/completions", HTTP_CALLER, HTTP_ADMIT, completions_chat, &srv->comp);
    route(srv, "POST", "/v1/chat/completions", HTTP_CALLER, HTTP_ADMIT, completions_chat, &srv->comp);
    route(srv, "POST", "/beta/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    route(srv, "POST", "/v1/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    route(srv, "POST", "/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    if (!srv->ac) return;
    route(srv, "POST", "/auth/register", HTTP_OPEN, HTTP_JSON, accounts_register, srv->ac);
    route(srv, "POST", "/auth/login", HTTP_OPEN, HTTP_JSON, accounts_login, srv->ac);
    route(srv, "POST", "/auth/logout", HTTP_SESSION, HTTP_JSON, accounts_logout, srv->ac);
    route(srv, "POST", "/auth/password", HTTP_SESSION, HTTP_JSON, accounts_password, srv->ac);
    route(srv, "POST", "/auth/delete", HTTP_SESSION, HTTP_JSON, accounts_delete, srv->ac);
    route(srv, "GET", "/user/keys", HTTP_SESSION, 0, accounts_keys_list, srv->ac);
    route(srv, "POST", "/user/keys", HTTP_SESSION, HTTP_JSON, accounts_keys_create, srv->ac);
    route(srv, "POST", "/user/keys/revoke", HTTP_SESSION, HTTP_JSON, accounts_keys_revoke, srv->ac);
    route(srv, "GET", "/user/balance", HTTP_CALLER, 0, accounts_balance, srv->ac);
    route(srv, "GET", "/user/usage", HTTP_CALLER, 0, accounts_usage, srv->ac);
    route(srv, "GET", "/user/conversations", HTTP_SESSION, 0, conv_list, srv->st);
    route(srv, "GET", "/user/conversations/export", HTTP_SESSION, 0, conv_export, srv->st);
    route(srv, "GET", "/user/conversations", HTTP_SESSION, HTTP_PREFIX, conv_get, srv->st);
    route(srv, "PUT", "/user/conversations", HTTP_SESSION, HTTP_PREFIX, conv_put, srv->st);
    route(srv, "DELETE", "/user/conversations", HTTP_SESSION, HTTP_PREFIX, conv_delete, srv->st);
}

/* The route for method and path (an exact path before a prefix), or NULL with the status: 404
 * when no route has the path, 405 (allowed methods in allow) when only other methods do. */
static const http_route *find_route(const server *srv, const char *method, const char *path, int *status, char *allow,
                                    size_t cap) {
    const http_route *best = NULL;
    int path_known = 0;
    allow[0] = 0;
    for (int i = 0; i < srv->n_routes; i++) {
        const http_route *r = &srv->routes[i];
        size_t n = strlen(r->path);
        int exact = !strcmp(path, r->path);
        int prefix = (r->flags & HTTP_PREFIX) && !strncmp(path, r->path, n) && path[n] == '/' && path[n + 1];
        if (!exact && !prefix) continue;
        if ((r->flags & HTTP_PREFIX) && exact) continue; /* a prefix route needs something after its path */
        path_known = 1;
        if (!strcmp(method, r->method)) {
            if (!best || exact) best = r;
        } else if (!strstr(allow, r->method)) {
            size_t k = strlen(allow);
            snprintf(allow + k, cap - k, "%s%s", k ? ", " : "", r->method);
        }
    }
    *status = best ? 0 : path_known ? 405 : 404;
    return best;
}

/* The 413 for a body over srv->max_body, naming the limit. */
static void too_large(const server *srv, http_reply *out) {
    char msg[160];
    snprintf(msg, sizeof msg, "the request body is too large: this server reads at most %zu bytes (its context holds "
             "%lld tokens)", srv->max_body, (long long)srv->a.n_ctx);
    http_error(out, 413, msg, "invalid_request_error", "request_too_large");
}

/* The caller, as the route asks (accounts mode): 0, or a status with the error in out. */
static int authenticate(server *srv, const http_route *r, conn *cn, http_reply *out) {
    http_req *q = &cn->q;
    if (!srv->st || r->auth == HTTP_OPEN) return 0;
    /* the web page: its session cookie stands for a key (id 0: the ledger's "web") */
    q->by_cookie = !(r->auth == HTTP_CALLER && q->authorization) && !accounts_session(srv->ac, q->cookie, &q->user);
    if (r->auth == HTTP_SESSION) {
        if (!q->by_cookie) http_error(out, 401, "sign in first", "authentication_error", "invalid_request_error");
        return q->by_cookie ? 0 : 401;
    }
    if (q->by_cookie) {
        q->key = (store_key){.id = 0, .user = q->user.id};
        return 0;
    }
    char *err_body = NULL;
    int status = accounts_auth(srv->st, q->authorization, &q->key, &err_body);
    if (status) http_body(out, status, err_body, NULL);
    return status;
}

/* Paid work, before its body is read: the server is not stopping, the caller's balance is above
 * zero and its rate limits allow a request. 0, or a status with the error in out. */
static int admit(server *srv, conn *cn, http_reply *out) {
    if (atomic_load(&srv->draining)) {
        http_error(out, 503, "the server is shutting down", "server_error", "server_busy");
        return 503;
    }
    if (!srv->st) return 0;
    char *err_body = NULL;
    int status = accounts_admit(srv->st, &cn->q.key, &err_body);
    if (!status && (out->retry_after = accounts_limit(srv->ac, &cn->q.key, &err_body))) status = 429;
    if (status) http_body(out, status, err_body, NULL);
    return status;
}

/* Everything checked from the headers alone: 0 (read the body, then call the handler), or a
 * reply to send now. */
static int check_headers(server *srv, struct MHD_Connection *c, conn *cn, const char *method, const char *url,
                         http_reply *out) {
    http_req *q = &cn->q;
    q->method = method;
    q->path = url;
    q->cookie = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Cookie");
    q->authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    q->content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    client_ip(srv, c, q->ip, sizeof q->ip);
    int get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD");
    if ((get || head) && (out->asset = web_find(url))) return out->status = 200;
    int status;
    char allow[64];
    cn->route = find_route(srv, method, url, &status, allow, sizeof allow);
    if (!cn->route) {
        char msg[96];
        snprintf(msg, sizeof msg, "use %s", allow);
        if (status == 405) http_error(out, 405, msg, "invalid_request_error", "method_not_allowed");
        else http_error(out, 404, "no such endpoint", "invalid_request_error", "not_found");
        return status;
    }
    const http_route *r = cn->route;
    q->rest = url + strlen(r->path);
    /* a browser on another site may send requests here but never read the answers (no CORS):
     * it may not change anything either */
    if (!get && !same_origin(srv, c)) {
        http_error(out, 403, "cross-origin requests are refused", "invalid_request_error", "forbidden");
        return 403;
    }
    const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (len && strtoull(len, NULL, 10) > srv->max_body) { /* refused before a byte of it is read */
        too_large(srv, out);
        return 413;
    }
    if ((status = authenticate(srv, r, cn, out))) return status;
    /* state changes carried by a cookie, or by a form on sign-in pages: JSON only (no cross-site
     * form can send that) */
    int changes = !strcmp(method, "POST") || !strcmp(method, "PUT");
    if (changes && ((r->flags & HTTP_JSON) || q->by_cookie) &&
        (!q->content_type || strncasecmp(q->content_type, "application/json", 16))) {
        http_error(out, 403, "send Content-Type: application/json", "invalid_request_error", "forbidden");
        return 403;
    }
    if ((r->flags & HTTP_ADMIT) && (status = admit(srv, cn, out))) return status;
    return 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *srv = cls;
    conn *cn = *con_cls;
    if (!cn) { /* headers are in: check them all before the body */
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        *con_cls = cn;
        cn->srv = srv;
        atomic_fetch_add(&srv->inflight, 1);
        http_reply rep = {0};
        if (check_headers(srv, c, cn, method, url, &rep)) return send_reply(c, &rep);
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->body.n + *upload_size > srv->max_body) cn->too_big = 1;
        else strbuf_add(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_big) {
        http_reply rep = {0};
        too_large(srv, &rep);
        return send_reply(c, &rep);
    }
    cn->q.body = cn->body.s ? cn->body.s : "";
    cn->q.n = cn->body.n;
    http_reply rep = {0};
    cn->route->fn(cn->route->ctx, &cn->q, &rep);
    if (!rep.status && !rep.body) http_error(&rep, 500, "the handler gave no reply", "server_error", "server_error");
    return send_reply(c, &rep);
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
    srv.max_body = api_max_body(srv.a.n_ctx);
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
    /* a replica is named by its host and port: the same across its restarts (so a restart
     * releases what a crashed run held), different from every other replica serving at the
     * same time (they cannot share both), so no live replica's reservations are touched */
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(srv.instance, sizeof srv.instance, "%s:%d", host, o->port > 0 ? o->port : 8080);
    atomic_store(&srv.draining, 1); /* no paid work until a previous run's reservations are released */
    srv.comp = (completions){srv.e, &srv.a, srv.st, srv.ac, &srv.draining, srv.instance};
    routes_init(&srv);
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
    /* the port is ours now: no live server has this name */
    int64_t stale = 0;
    whale_err se = {0};
    if (srv.st && store_reservations_release(srv.st, srv.instance, &stale, &se))
        fprintf(stderr, "whale serve: warning: releasing earlier reservations failed: %s\n", se.msg);
    else if (stale) fprintf(stderr, "whale serve: released %lld reservation(s) of a previous run\n", (long long)stale);
    atomic_store(&srv.draining, 0);
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
