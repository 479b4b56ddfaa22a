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
#include <ifaddrs.h>
#include <net/if.h>
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
#include "service/ollama.h"
#include "service/web.h"

#define SERVER_IDLE_TIMEOUT 30    /* seconds a connection may sit idle (no byte either way) */
#define SERVER_CONN_MEMORY (64u << 10) /* per connection: request line and headers must fit (else 431) */
#define SERVER_MAX_CONNS 256      /* open connections (each has a thread) */
#define SERVER_MAX_ROUTES 40
#define SERVER_MAX_HOSTS 64       /* names the Host header may carry: ours, the machine's addresses,
                                     --host-name; more interface addresses than this are not served */
#define SERVER_HOST_CHARS 256     /* a DNS name is at most 253 characters */

typedef struct server {
    models reg; /* the served models (models.h) */
    completions comp;
    http_route routes[SERVER_MAX_ROUTES];
    int n_routes;
    store *st; /* --accounts: keys, balances, charges; NULL in local mode */
    accounts *ac; /* --accounts: sign-up, login, sessions */
    const server_opts *o;
    char hosts[SERVER_MAX_HOSTS][SERVER_HOST_CHARS]; /* names a request's Host may carry (lower case) */
    int n_hosts;
    int conns_per_ip; /* the per-address cap (0: none) */
    pthread_mutex_t ip_mu; /* ips */
    struct ip_conns *ips; /* open connections per peer address, max_conns slots (a slot with n 0 is free) */
    int n_ips;
    atomic_int draining; /* stopping: new requests get 503; 2: the drain is over, the rest cancelled */
    atomic_int inflight; /* requests from their headers to their last byte sent (or their client gone) */
    answers *answers;    /* resumable streams (answers.h) */
    atomic_int producers; /* their producers still running */
    size_t max_body; /* request bytes read at most: api_max_body of the context */
    char instance[STORE_MAX_INSTANCE]; /* --accounts: "host:port", this server's name on its reservations */
} server;

typedef struct ip_conns { /* one peer address's open connections */
    unsigned char addr[16]; /* IPv4 in the first 4 bytes, the rest zero; or IPv6 */
    int n;
} ip_conns;

typedef struct conn { /* per request, from its headers to its end */
    struct server *srv;
    const http_route *route;
    http_req q;
    strbuf body;
    int too_big;
} conn;

/* Responses by status code, for /metrics. */
static const unsigned g_codes[] = {200, 304, 400, 401, 402, 403, 404, 405, 409, 413, 421, 422, 429, 500, 503};
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

/* 1 when the request's Accept-Encoding takes gzip (named, without q=0). */
static int accepts_gzip(struct MHD_Connection *c) {
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    for (const char *p = ae; p && (p = strcasestr(p, "gzip")); p += 4) {
        const char *e = p + 4;
        while (*e == ' ') e++;
        if ((p == ae || p[-1] == ' ' || p[-1] == ',') && (!*e || *e == ',' || *e == ';')) {
            const char *q = *e == ';' ? strcasestr(e, "q=") : NULL;
            return !(q && (q - e) < 8 && strtod(q + 2, NULL) == 0);
        }
    }
    return 0;
}

/* Write the reply (and free what it holds); with close, the connection closes after it. */
static enum MHD_Result send_reply_close(struct MHD_Connection *c, http_reply *rep, int close) {
    struct MHD_Response *r;
    unsigned status = (unsigned)rep->status;
    int same = 0;
    const char *etag = NULL;
    int gz = 0;
    if (rep->asset) { /* revalidated by ETag: a new binary serves a new page; gzip'd when the client takes it */
        const unsigned char *data = rep->asset->data;
        size_t size = rep->asset->size;
        etag = rep->asset->etag;
        gz = accepts_gzip(c) && web_gzip(rep->asset, &data, &size, &etag);
        const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
        same = inm && !strcmp(inm, etag);
        if (same) status = 304;
        r = MHD_create_response_from_buffer(same ? 0 : size, (void *)data, MHD_RESPMEM_PERSISTENT);
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
        MHD_add_response_header(r, "ETag", etag);
        MHD_add_response_header(r, "Vary", "Accept-Encoding");
        if (gz) MHD_add_response_header(r, "Content-Encoding", "gzip");
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
    if (close) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, http_reply *rep) {
    return send_reply_close(c, rep, 0);
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

typedef struct model_figures { /* one served model's figures, read under the registry's lock */
    char name[MODELS_NAME_MAX];
    int loaded;
    uint64_t loads;
    size_t bytes;
    whale_stats st;
    double rate;
} model_figures;

typedef struct figures {
    model_figures v[MODELS_MAX];
    int n;
} figures;

static void figures_add(void *ctx, const served *s, whale_engine *e) {
    figures *f = ctx;
    model_figures *m = &f->v[f->n++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", s->name);
    m->loaded = e != NULL;
    m->loads = s->loads;
    m->bytes = s->bytes;
    if (!e) return;
    whale_engine_stats(e, &m->st);
    m->rate = models_rate(s, m->st.tokens_generated);
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* Prometheus text format. Engine figures are per model (label model="NAME"), for the models
 * loaded now: counters start again from 0 when a model is loaded again. */
static char *metrics(server *srv) {
    figures f = {0};
    models_each(&srv->reg, figures_add, &f);
    strbuf b = {0};
    char line[512]; /* the longest: two samples with a 127-character model name each */
    int k;
#define OUT(...) (k = snprintf(line, sizeof line, __VA_ARGS__), strbuf_add(&b, line, k < (int)sizeof line ? (size_t)k : sizeof line - 1))
/* a family with a HELP line: one sample per loaded model, the value printed by fmt */
#define EACH(fam, help, type, fmt, value)                                                                              \
    do {                                                                                                               \
        OUT("# HELP " fam " " help "\n# TYPE " fam " " type "\n");                                                     \
        for (int i = 0; i < f.n; i++) {                                                                                \
            const model_figures *m = &f.v[i];                                                                          \
            if (m->loaded) OUT(fam "{model=\"%s\"} " fmt "\n", m->name, value);                                        \
        }                                                                                                              \
    } while (0)
    OUT("# HELP whale_requests_total HTTP responses by status code.\n# TYPE whale_requests_total counter\n");
    for (size_t i = 0; i <= N_CODES; i++) {
        if (i < N_CODES) OUT("whale_requests_total{code=\"%u\"} %lu\n", g_codes[i], atomic_load(&g_count[i]));
        else OUT("whale_requests_total{code=\"other\"} %lu\n", atomic_load(&g_count[i]));
    }
    OUT("# HELP whale_model_loaded 1 for a served model loaded now, 0 for one that loads on first use.\n"
        "# TYPE whale_model_loaded gauge\n");
    for (int i = 0; i < f.n; i++) OUT("whale_model_loaded{model=\"%s\"} %d\n", f.v[i].name, f.v[i].loaded);
    OUT("# HELP whale_model_loads_total Times a model was loaded since the start.\n# TYPE whale_model_loads_total counter\n");
    for (int i = 0; i < f.n; i++)
        OUT("whale_model_loads_total{model=\"%s\"} %llu\n", f.v[i].name, (unsigned long long)f.v[i].loads);
    EACH("whale_model_bytes", "Estimated memory of a loaded model: its weights' files, KV pages and context cache budget.",
         "gauge", "%llu", (unsigned long long)m->bytes);
    EACH("whale_queue_depth", "Requests waiting for a sequence slot.", "gauge", "%d", m->st.waiting);
    EACH("whale_active_sequences", "Sequences being computed.", "gauge", "%d", m->st.active);
    EACH("whale_sequence_slots", "Sequences that can be computed at once.", "gauge", "%d", m->st.n_parallel);
    EACH("whale_generated_tokens_total", "Tokens generated.", "counter", "%llu", (unsigned long long)m->st.tokens_generated);
    EACH("whale_prompt_tokens_total", "Prompt tokens.", "counter", "%llu", (unsigned long long)m->st.prompt_tokens);
    EACH("whale_prompt_cache_hit_tokens_total", "Prompt tokens served from the cache.", "counter", "%llu",
         (unsigned long long)m->st.cached_tokens);
    EACH("whale_prompt_cache_hit_ratio", "Prompt tokens served from the cache, of all prompt tokens.", "gauge", "%.4f",
         m->st.prompt_tokens ? (double)m->st.cached_tokens / (double)m->st.prompt_tokens : 0.0);
    EACH("whale_generation_tokens_per_second", "Generated tokens per second over the last " STR(MODELS_RATE_WINDOW) " seconds.", "gauge",
         "%.2f", m->rate);
    EACH("whale_kv_pages_used",
         "KV cache pages (64 tokens, every layer) in memory, in use or kept for reuse; sequences with a common prefix "
         "share its pages.", "gauge", "%lld", (long long)m->st.kv_pages_used);
    EACH("whale_kv_pages_total", "KV cache pages in all.", "gauge", "%lld", (long long)m->st.kv_pages);
    EACH("whale_kv_bytes_used", "Bytes of the KV pages in use.", "gauge", "%llu",
         (unsigned long long)m->st.kv_pages_used * (unsigned long long)m->st.kv_page_bytes);
    EACH("whale_kv_tokens", "Tokens the sequences hold (shared ones once per sequence).", "gauge", "%lld",
         (long long)m->st.kv_tokens);
/* a family by tier (ram, disk) for each loaded model */
#define TIERS(fam, help, type, ram, disk)                                                                              \
    do {                                                                                                               \
        OUT("# HELP " fam " " help "\n# TYPE " fam " " type "\n");                                                     \
        for (int i = 0; i < f.n; i++) {                                                                                \
            const model_figures *m = &f.v[i];                                                                          \
            if (m->loaded)                                                                                             \
                OUT(fam "{tier=\"ram\",model=\"%s\"} %llu\n" fam "{tier=\"disk\",model=\"%s\"} %llu\n", m->name,          \
                    (unsigned long long)(ram), m->name, (unsigned long long)(disk));                                   \
        }                                                                                                              \
    } while (0)
    TIERS("whale_context_cache_blocks", "Context cache blocks (64 tokens of KV rows) kept, by tier.", "gauge",
          m->st.cache_ram_blocks, m->st.cache_disk_blocks);
    TIERS("whale_context_cache_bytes", "Context cache bytes kept, by tier.", "gauge", m->st.cache_ram_bytes,
          m->st.cache_disk_bytes);
    TIERS("whale_context_cache_block_hits_total", "Blocks copied into a sequence from the context cache, by tier.",
          "counter", m->st.cache_hits_ram, m->st.cache_hits_disk);
#undef TIERS
    /* by drafter (one per engine): acceptance = accepted / drafts; tokens per verifying step =
     * 1 + accepted / steps, the speed-up's upper bound before the cost of drafting and checking */
#define SPEC(fam, help, type, fmt, value)                                                                              \
    do {                                                                                                               \
        OUT("# HELP " fam " " help "\n# TYPE " fam " " type "\n");                                                     \
        for (int i = 0; i < f.n; i++) {                                                                                \
            const model_figures *m = &f.v[i];                                                                          \
            if (m->loaded)                                                                                             \
                OUT(fam "{drafter=\"%s\",model=\"%s\"} " fmt "\n", m->st.drafter ? m->st.drafter : "none", m->name,    \
                    value);                                                                                            \
        }                                                                                                              \
    } while (0)
    SPEC("whale_speculative_drafts_total", "Drafted tokens verified (speculative decoding).", "counter", "%llu",
         (unsigned long long)m->st.drafted);
    SPEC("whale_speculative_accepted_total", "Drafted tokens the model confirmed (each one a token for free).", "counter",
         "%llu", (unsigned long long)m->st.accepted);
    SPEC("whale_speculative_steps_total", "Sequence-steps that verified drafts (each yields 1 + accepted tokens).",
         "counter", "%llu", (unsigned long long)m->st.spec_steps);
    SPEC("whale_speculative_acceptance_ratio", "Accepted drafts over drafted tokens since the model was loaded.", "gauge",
         "%.4f", m->st.drafted ? (double)m->st.accepted / (double)m->st.drafted : 0.0);
    SPEC("whale_speculative_tokens_per_step", "Tokens per verifying sequence-step since the model was loaded (1: no gain).",
         "gauge", "%.4f", m->st.spec_steps ? 1.0 + (double)m->st.accepted / (double)m->st.spec_steps : 0.0);
#undef SPEC
#undef EACH
    int64_t db_bytes;
    whale_err e = {0};
    if (srv->st && !store_size_bytes(srv->st, &db_bytes, &e)) {
        OUT("# HELP whale_db_bytes The accounts database's size on disk (SQLite: file and WAL).\n");
        OUT("# TYPE whale_db_bytes gauge\nwhale_db_bytes %lld\n", (long long)db_bytes);
    }
#undef OUT
    return b.s;
}

/* ---- host names (DNS rebinding) ----------------------------------------------------------- */

/* A page on evil.example can make its name resolve to 127.0.0.1 and then call us from the
 * victim's browser as "same origin": the browser sends Host: evil.example. So only names we were
 * told, or that are ours, are served; anything else gets 421 before a byte is read. */

static void host_add(server *srv, const char *name) {
    if (srv->n_hosts == SERVER_MAX_HOSTS || !*name) return;
    char *h = srv->hosts[srv->n_hosts];
    snprintf(h, SERVER_HOST_CHARS, "%s", name);
    for (char *p = h; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    for (int i = 0; i < srv->n_hosts; i++)
        if (!strcmp(srv->hosts[i], h)) return;
    srv->n_hosts++;
}

/* The names served: --host-name, the listen address, the loopback names, and when listening on
 * every address, each interface address (IPv6 ones in brackets, as in a URL) and the host name. */
static void hosts_init(server *srv) {
    const server_opts *o = srv->o;
    const char *listen = o->host ? o->host : "127.0.0.1";
    for (int i = 0; i < o->n_host_names; i++) host_add(srv, o->host_names[i]);
    host_add(srv, listen);
    host_add(srv, "localhost");
    host_add(srv, "127.0.0.1");
    host_add(srv, "[::1]");
    if (strcmp(listen, "0.0.0.0")) return;
    char name[SERVER_HOST_CHARS];
    if (!gethostname(name, sizeof name)) {
        name[sizeof name - 1] = 0;
        host_add(srv, name);
    }
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs)) return;
    for (struct ifaddrs *f = ifs; f; f = f->ifa_next) {
        char a[INET6_ADDRSTRLEN + 2] = "[";
        if (!f->ifa_addr) continue;
        if (f->ifa_addr->sa_family == AF_INET &&
            inet_ntop(AF_INET, &((struct sockaddr_in *)f->ifa_addr)->sin_addr, a, sizeof a))
            host_add(srv, a);
        else if (f->ifa_addr->sa_family == AF_INET6 &&
                 inet_ntop(AF_INET6, &((struct sockaddr_in6 *)f->ifa_addr)->sin6_addr, a + 1, sizeof a - 2)) {
            strcat(a, "]");
            host_add(srv, a);
        }
    }
    freeifaddrs(ifs);
}

/* 1 when a Host value ("name", "name:port", "[v6]" or "[v6]:port") names a host we serve and,
 * when check_port, its port is absent or the one we listen on (a proxy's X-Forwarded-Host carries
 * the proxy's port, which is its own business). */
static int host_ok(const server *srv, const char *h, int check_port) {
    size_t n = strlen(h);
    const char *colon = h[0] == '[' ? (strchr(h, ']') ? strchr(h, ']') + 1 : NULL) : strchr(h, ':');
    if (!colon && h[0] == '[') return 0; /* an unclosed bracket */
    if (!colon) colon = h + n;
    if (*colon == ':') {
        n = (size_t)(colon - h);
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1) return 0;
        if (check_port && port != (srv->o->port > 0 ? srv->o->port : 8080)) return 0;
    } else if (*colon) return 0;
    for (int i = 0; i < srv->n_hosts; i++)
        if (strlen(srv->hosts[i]) == n && !strncasecmp(srv->hosts[i], h, n)) return 1;
    return 0;
}

/* 1 when the request names a host we serve: its Host, or for a trusted proxy's request the
 * X-Forwarded-Host it sets (the host the browser asked for), if any. No Host at all (HTTP/1.0)
 * is no browser's request and passes. */
static int host_allowed(const server *srv, struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *fh = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-Host");
    if (fh && srv->o->n_trusted_proxies) {
        char peer[64];
        peer_ip(c, peer, sizeof peer);
        if (trusted(srv, peer)) return host_ok(srv, fh, 0);
    }
    return !h || host_ok(srv, h, 1);
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

/* GET /web/config: what the page needs to draw itself (the models, who is signed in). */
static void config_model(void *ctx, const served *s, whale_engine *e) {
    cJSON *m = cJSON_CreateObject(), *al = cJSON_AddArrayToObject(m, "aliases");
    cJSON_AddStringToObject(m, "id", s->name);
    for (int i = 0; i < s->n_aliases; i++) cJSON_AddItemToArray(al, cJSON_CreateString(s->aliases[i]));
    cJSON_AddBoolToObject(m, "reasoning", s->a.reasoning);
    cJSON_AddNumberToObject(m, "context", (double)s->a.n_ctx);
    cJSON_AddBoolToObject(m, "loaded", e != NULL);
    cJSON_AddItemToArray(ctx, m);
}

static void h_web_config(void *ctx, http_req *q, http_reply *out) {
    static const char *const signup[] = {"open", "closed", "invite"};
    server *srv = ctx;
    store_user me;
    int in = srv->ac && !accounts_session(srv->ac, q->cookie, &me);
    cJSON *j = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(j, "models");
    models_each(&srv->reg, config_model, list);
    const served *first = &srv->reg.v[0]; /* the default model: its name and kind never change */
    cJSON_AddStringToObject(j, "model", first->name);
    cJSON_AddBoolToObject(j, "reasoning", first->a.reasoning);
    cJSON_AddBoolToObject(j, "accounts", srv->st != NULL);
    if (srv->ac) cJSON_AddStringToObject(j, "signup", signup[srv->o->signup]);
    if (in) cJSON_AddStringToObject(j, "user", me.email);
    else cJSON_AddNullToObject(j, "user");
    http_json(out, 200, j);
}

/* GET /health: load over all models (sums), and each model's. */
typedef struct health {
    int active, waiting, slots;
    strbuf each;
} health;

static void health_model(void *ctx, const served *s, whale_engine *e) {
    health *h = ctx;
    whale_stats st = {0};
    if (e) whale_engine_stats(e, &st);
    h->active += st.active;
    h->waiting += st.waiting;
    h->slots += st.n_parallel;
    char line[MODELS_NAME_MAX + 128];
    int n = snprintf(line, sizeof line, "%s{\"model\":\"%s\",\"loaded\":%s,\"active\":%d,\"waiting\":%d,\"slots\":%d}",
                     h->each.n ? "," : "", s->name, e ? "true" : "false", st.active, st.waiting, st.n_parallel);
    strbuf_add(&h->each, line, (size_t)n);
}

static void h_health(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    server *srv = ctx;
    health h = {0};
    models_each(&srv->reg, health_model, &h);
    strbuf b = {0};
    char head[160];
    strbuf_add(&b, head, (size_t)snprintf(head, sizeof head, "{\"status\":\"ok\",\"active\":%d,\"waiting\":%d,"
                                                             "\"slots\":%d,\"models\":[", h.active, h.waiting, h.slots));
    strbuf_add(&b, h.each.s ? h.each.s : "", h.each.n);
    strbuf_add(&b, "]}", 2);
    strbuf_free(&h.each);
    http_body(out, 200, b.s, NULL);
}

/* 1 when a and b are equal, in a time that depends on their lengths only (not on where they
 * differ: a token must not be guessable byte by byte from response times). */
static int same_secret(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = na != nb;
    for (size_t i = 0; i < nb; i++) d |= (unsigned char)(b[i] ^ (i < na ? a[i] : 0));
    return !d;
}

/* GET /metrics. With accounts, the figures (load, traffic, database size) are the operator's:
 * only with --metrics-token, as Authorization: Bearer TOKEN. Without a token configured no
 * credential could help, so the answer is 403 (not 401). */
static void h_metrics(void *ctx, http_req *q, http_reply *out) {
    server *srv = ctx;
    if (srv->st) {
        const char *token = srv->o->metrics_token;
        if (!token || !*token) {
            http_error(out, 403, "/metrics is off in accounts mode: start whale serve with --metrics-token",
                       "invalid_request_error", "forbidden");
            return;
        }
        const char *a = q->authorization;
        if (!a || strncasecmp(a, "Bearer ", 7) || !same_secret(a + 7, token)) {
            http_error(out, 401, "/metrics needs Authorization: Bearer <the --metrics-token>", "authentication_error",
                       "invalid_api_key");
            return;
        }
    }
    http_body(out, 200, metrics(srv), "text/plain; version=0.0.4");
}

static void h_models(void *ctx, http_req *q, http_reply *out) {
    (void)q;
    server *srv = ctx;
    http_body(out, 200, models_json(&srv->reg), NULL);
}

/* A deleted account's cached prompts go with it (memory and disk, every model's). */
static void purge_owner(void *ctx, int64_t user) { models_purge_owner(ctx, user); }

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
    route(srv, "GET", "/v1/chat/completions", HTTP_CALLER, HTTP_PREFIX, completions_events, &srv->comp);
    route(srv, "DELETE", "/v1/chat/completions", HTTP_CALLER, HTTP_PREFIX, completions_stop, &srv->comp);
    route(srv, "POST", "/beta/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    route(srv, "POST", "/v1/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    route(srv, "POST", "/completions", HTTP_CALLER, HTTP_ADMIT, completions_text, &srv->comp);
    /* Ollama's API (ollama.h), for tools that speak it */
    route(srv, "POST", "/api/chat", HTTP_CALLER, HTTP_ADMIT, ollama_chat, &srv->comp);
    route(srv, "POST", "/api/generate", HTTP_CALLER, HTTP_ADMIT, ollama_generate, &srv->comp);
    route(srv, "GET", "/api/tags", HTTP_CALLER, 0, ollama_tags, &srv->comp);
    route(srv, "GET", "/api/ps", HTTP_CALLER, 0, ollama_ps, &srv->comp);
    route(srv, "POST", "/api/show", HTTP_CALLER, 0, ollama_show, &srv->comp);
    route(srv, "GET", "/api/version", HTTP_OPEN, 0, ollama_version, &srv->comp);
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
    route(srv, "POST", "/user/shares", HTTP_SESSION, HTTP_JSON, share_create, srv->st);
    route(srv, "GET", "/user/shares", HTTP_SESSION, HTTP_PREFIX, share_status, srv->st);
    route(srv, "DELETE", "/user/shares", HTTP_SESSION, HTTP_PREFIX, share_delete, srv->st);
    route(srv, "GET", "/shared", HTTP_OPEN, HTTP_PREFIX, share_get, srv->st);
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

/* The body bytes a route reads at most: a completion's are capped by the context, other
 * routes' (a stored conversation) by API_MAX_BODY. */
static size_t body_cap(const server *srv, const http_route *r) {
    return r && (r->flags & HTTP_ADMIT) ? srv->max_body : API_MAX_BODY;
}

/* The 413 for a body over the route's cap, naming the limit. */
static void too_large(const server *srv, const http_route *r, http_reply *out) {
    char msg[160];
    if (r && (r->flags & HTTP_ADMIT))
        snprintf(msg, sizeof msg, "the request body is too large: this server reads at most %zu bytes (its contexts hold "
                 "at most %lld tokens)", srv->max_body, (long long)models_max_ctx(&srv->reg));
    else snprintf(msg, sizeof msg, "the request body is too large: at most %u bytes", API_MAX_BODY);
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
    q->last_event_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    client_ip(srv, c, q->ip, sizeof q->ip);
    if (!host_allowed(srv, c)) { /* first: a rebinding page may not even load the page */
        http_error(out, 421,
                   "this server does not serve that Host name; start it with --host-name NAME to serve NAME",
                   "invalid_request_error", "misdirected_request");
        return 421;
    }
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
    if (len && strtoull(len, NULL, 10) > body_cap(srv, r)) { /* refused before a byte of it is read */
        too_large(srv, r, out);
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
    /* (reading on an answer already paid for is no new work: a spent balance does not stop it) */
    if ((r->flags & HTTP_ADMIT) && !q->last_event_id && (status = admit(srv, cn, out))) return status;
    return 0;
}

/* ---- connections per address ------------------------------------------------------------- */

/* libmicrohttpd's own per-address limit closes a connection without a word, which a client sees
 * as a reset. So its limit is set SERVER_CONNS_OVER_IP above ours, connections are counted here,
 * and one opened past our cap is answered 429 as soon as its headers are in, then closed. The
 * socket context holds the connection's slot + 1, times 2, plus 1 when it is past the cap. */
static void conn_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code) {
    server *srv = cls;
    if (!srv->conns_per_ip) return;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        uintptr_t v = (uintptr_t)*socket_context;
        if (!v) return;
        pthread_mutex_lock(&srv->ip_mu);
        srv->ips[(v >> 1) - 1].n--;
        pthread_mutex_unlock(&srv->ip_mu);
        *socket_context = NULL;
        return;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char a[16] = {0};
    if (!ci || !ci->client_addr) return;
    if (ci->client_addr->sa_family == AF_INET) memcpy(a, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, 4);
    else if (ci->client_addr->sa_family == AF_INET6)
        memcpy(a, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, 16);
    else return;
    pthread_mutex_lock(&srv->ip_mu);
    int slot = -1, free_slot = -1;
    for (int i = 0; i < srv->n_ips && slot < 0; i++) {
        if (srv->ips[i].n && !memcmp(srv->ips[i].addr, a, 16)) slot = i;
        else if (!srv->ips[i].n && free_slot < 0) free_slot = i;
    }
    if (slot < 0 && free_slot >= 0) {
        slot = free_slot;
        memcpy(srv->ips[slot].addr, a, 16);
    }
    if (slot >= 0) {
        int over = ++srv->ips[slot].n > srv->conns_per_ip;
        *socket_context = (void *)(((uintptr_t)(slot + 1) << 1) | (uintptr_t)over);
    }
    pthread_mutex_unlock(&srv->ip_mu);
}

/* 1 when the connection was opened past the per-address cap. */
static int conn_over_cap(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci && ((uintptr_t)ci->socket_context & 1);
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
        if (conn_over_cap(c)) { /* answered without reading a body, then closed */
            char msg[160];
            snprintf(msg, sizeof msg,
                     "too many open connections from your address (the limit is %d); close some, or retry later",
                     srv->conns_per_ip);
            http_error(&rep, 429, msg, "rate_limit_error", "too_many_connections");
            rep.retry_after = 1;
            return send_reply_close(c, &rep, 1);
        }
        if (check_headers(srv, c, cn, method, url, &rep)) return send_reply(c, &rep);
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->body.n + *upload_size > body_cap(srv, cn->route)) cn->too_big = 1;
        else strbuf_add(&cn->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (cn->too_big) {
        http_reply rep = {0};
        too_large(srv, cn->route, &rep);
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

/* Free what server_run set up, in reverse. */
static void server_free(server *srv) {
    for (int i = 0; i < 600 && atomic_load(&srv->producers) > 0; i++) usleep(100 * 1000); /* (their jobs are cancelled) */
    models_free(&srv->reg);
    answers_free(srv->answers);
    accounts_free(srv->ac);
    free(srv->ips);
}

int server_run(const server_opts *o, volatile sig_atomic_t *stop, whale_err *err) {
    server srv = {.st = o->accounts, .o = o};
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
    ep.draft = o->draft;
    ep.draft_max = o->draft_max;
    int rc = models_init(&srv.reg, o->models, o->n_models, &o->mp, &ep, o->max_loaded, o->max_memory, err);
    if (rc) return rc;
    if (!(srv.answers = answers_new())) {
        models_free(&srv.reg);
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    /* the first model now: a model that cannot load fails the start, not the first request */
    if ((rc = models_load(&srv.reg, &srv.reg.v[0], err))) {
        server_free(&srv);
        return rc;
    }
    srv.reg.mp.progress = 0; /* later loads happen while serving: no progress bar among the log lines */
    srv.max_body = models_max_body(&srv.reg);

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)(o->port > 0 ? o->port : 8080));
    if (inet_pton(AF_INET, o->host ? o->host : "127.0.0.1", &addr.sin_addr) != 1) {
        server_free(&srv);
        return err_set(err, WHALE_E_ARG, "--host '%s' is not an IPv4 address", o->host);
    }
    if (srv.st && !(srv.ac = accounts_new(srv.st, (signup_mode)o->signup, o->secure_cookies))) {
        server_free(&srv);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the accounts");
    }
    if (srv.ac) {
        accounts_set_limits(srv.ac, o->rpm, o->tpm);
        accounts_set_signups(srv.ac, o->signups_per_hour);
        accounts_on_delete(srv.ac, purge_owner, &srv.reg);
        if (o->user_storage > 0) store_set_conv_total(srv.st, o->user_storage);
    }
    /* a replica is named by its host and port: the same across its restarts (so a restart
     * releases what a crashed run held), different from every other replica serving at the
     * same time (they cannot share both), so no live replica's reservations are touched */
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    snprintf(srv.instance, sizeof srv.instance, "%s:%d", host, o->port > 0 ? o->port : 8080);
    atomic_store(&srv.draining, 1); /* no paid work until a previous run's reservations are released */
    srv.comp = (completions){&srv.reg, srv.st, srv.ac, &srv.draining, srv.instance, srv.answers, &srv.producers};
    routes_init(&srv);
    hosts_init(&srv);
    unsigned max_conns = (unsigned)(o->max_conns > 0 ? o->max_conns : SERVER_MAX_CONNS);
    srv.conns_per_ip = o->max_conns_per_ip > 0 ? o->max_conns_per_ip : o->max_conns_per_ip < 0 ? 0 : SERVER_CONNS_PER_IP;
    pthread_mutex_init(&srv.ip_mu, NULL);
    srv.n_ips = (int)max_conns;
    if (srv.conns_per_ip && !(srv.ips = calloc(max_conns, sizeof *srv.ips))) {
        server_free(&srv);
        return err_set(err, WHALE_E_NOMEM, "out of memory for the connection table");
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        handle, &srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(srv.conns_per_ip ? srv.conns_per_ip + SERVER_CONNS_OVER_IP : 0), /* the hard ceiling */
        MHD_OPTION_NOTIFY_CONNECTION, conn_notify, &srv,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVER_IDLE_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)SERVER_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!d) {
        server_free(&srv);
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
    const served *first = &srv.reg.v[0];
    char others[256] = "";
    for (int i = 1, k = 0; i < srv.reg.n; i++)
        k += snprintf(others + k, sizeof others > (size_t)k ? sizeof others - (size_t)k : 0, "%s%s", i > 1 ? ", " : "; also ",
                      srv.reg.v[i].name);
    fprintf(stderr, "whale serve: %s (%s format%s) on http://%s:%d  (chat page at /; %d parallel sequences of %lld tokens%s; "
            "Ctrl-C stops)\n",
            first->name, first->a.fmt, others, o->host ? o->host : "127.0.0.1", o->port > 0 ? o->port : 8080,
            ep.n_parallel, (long long)first->a.n_ctx,
            ep.speculative == WHALE_SPEC_MTP      ? ", speculating with MTP"
            : ep.speculative == WHALE_SPEC_LOOKUP ? ", speculating with prompt lookup"
            : ep.speculative == WHALE_SPEC_DRAFT  ? ", speculating with a draft model"
                                                  : "");
    for (int tick = 0; !*stop; tick++) { /* a rate sample each second */
        if (tick % 10 == 0) models_sample(&srv.reg);
        usleep(100 * 1000);
    }
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
    atomic_store(&srv.draining, 2);
    models_cancel_all(&srv.reg);
    MHD_stop_daemon(d); /* waits for the connection threads, which cancel their requests */
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    server_free(&srv);
    return 0;
}
