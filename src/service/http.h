/* http.h — one request and one reply, as the service's handlers see them (no HTTP library in
 * sight: server.c reads requests into http_req and writes http_reply to the wire), and the
 * route table's entry type.
 *
 * A handler fills exactly one kind of reply: a body (JSON by default), an embedded asset, or a
 * stream (a reader callback, for server-sent events). server.c adds the headers every reply
 * gets, Retry-After and Set-Cookie; replies other than assets are never stored by caches (a
 * user's own data). */
#ifndef WHALE_SERVICE_HTTP_H
#define WHALE_SERVICE_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "service/store.h"
#include "service/web.h"

#define HTTP_COOKIE_MAX 200

/* Who may call a route. */
typedef enum http_auth {
    HTTP_OPEN = 0,   /* anyone (the page, health, sign-in itself) */
    HTTP_SESSION,    /* a signed-in user of the web page (session cookie); --accounts only */
    HTTP_CALLER,     /* with --accounts an API key or a session, the user then in key.user; in
                        local mode anyone */
} http_auth;

typedef struct http_req {
    const char *method;
    const char *path;  /* without the query */
    const char *rest;  /* a prefix route: what follows its path ("" or "/...") */
    const char *body;  /* NUL-terminated (n bytes before the NUL) */
    size_t n;
    const char *cookie, *authorization, *content_type; /* headers, or NULL */
    const char *last_event_id; /* Last-Event-ID: resuming a streamed answer ("<answer id>:<n>"), or NULL */
    char ip[64];       /* the client's address (see server.c: trusted proxies) */
    int by_cookie;     /* authenticated by the session cookie (user is set) */
    store_user user;   /* HTTP_SESSION, or a cookie-authenticated HTTP_CALLER */
    store_key key;     /* HTTP_CALLER with accounts: the key (id 0: the web page's session) */
} http_req;

/* A stream's reader: up to max bytes into buf; the count, or -1 at the end of the stream. May
 * block (each connection has its own thread). */
typedef ssize_t (*http_read_fn)(void *ctx, char *buf, size_t max);

typedef struct http_reply {
    int status;
    char *body;              /* malloc'd, NUL-terminated; freed by the sender */
    const char *type;        /* Content-Type; NULL: application/json */
    char cookie[HTTP_COOKIE_MAX]; /* a Set-Cookie value, or "" */
    int retry_after;         /* seconds (429, 503); 0: the default for those */
    const web_asset *asset;  /* an embedded file instead of a body */
    void *stream;            /* a stream instead of a body: read until -1, then stream_free */
    http_read_fn read;
    void (*stream_free)(void *ctx);
    int *client_fd;          /* a stream's: where the sender puts the client's socket, so the reader
                                can notice a client gone while it has nothing to write (or NULL) */
} http_reply;

/* A JSON reply from j (deleted), or a 500 when out of memory. */
void http_json(http_reply *out, int status, cJSON *j);
/* An OpenAI-style error reply (api_error_body). */
void http_error(http_reply *out, int status, const char *message, const char *type, const char *code);
/* A reply with body (malloc'd, taken; NULL: out of memory, a 500) of the Content-Type (NULL: JSON). */
void http_body(http_reply *out, int status, char *body, const char *type);
/* The request body as a JSON object, or NULL with a 400 reply filled in. */
cJSON *http_json_body(const http_req *q, http_reply *out);

typedef void (*http_handler)(void *ctx, http_req *q, http_reply *out);

enum {
    HTTP_PREFIX = 1,   /* path matches itself and path + "/..." (the rest in http_req.rest) */
    HTTP_JSON = 2,     /* a body that changes state must come as Content-Type: application/json
                          (no cross-site form can send that without a preflight, and no CORS is
                          answered): also for requests without a cookie */
    HTTP_ADMIT = 4,    /* paid work: with --accounts, balance and rate limits are checked before
                          the body is read */
};

typedef struct http_route {
    const char *method; /* "GET", "POST", "PUT", "DELETE" */
    const char *path;
    http_auth auth;
    int flags;
    http_handler fn;
    void *ctx;
} http_route;

#endif
