/* server.h — `whale serve`: the HTTP server (libmicrohttpd) in front of the scheduler.
 *
 * Endpoints: the route table in server.c (routes_init), documented in docs/openapi.yaml. Each
 * connection has its own thread, so a
 * streaming reply can wait for tokens without holding anyone else up; the scheduler decides
 * who computes when. */
#ifndef WHALE_SERVICE_SERVER_H
#define WHALE_SERVICE_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "whale.h"
#include "service/models.h"

#define SERVER_MAX_PROXIES 8   /* --trusted-proxy addresses */
#define SERVER_CONNS_PER_IP 32 /* open connections per client address: slow clients from one place
                                  (slowloris) cannot take every connection thread */
#define SERVER_CONNS_OVER_IP 16 /* connections past the per-address cap let in only to be answered
                                  429 and closed; beyond it they are closed unanswered, so a slowloris
                                  past the cap still holds at most cap + this many threads */
#define SERVER_MAX_HOST_NAMES 16 /* --host-name names */
#define SERVER_DRAIN_S 10      /* seconds a stopping server lets running requests finish */

typedef struct server_opts {
    const char *host;  /* default 127.0.0.1 */
    int port;          /* default 8080 */
    int n_parallel;    /* sequences decoding at once (default 4) */
    int64_t n_ctx;     /* tokens per sequence (default: the model's, at most 4096) */
    int max_queue;     /* requests waiting beyond which new ones get 503 (default 64) */
    int max_conns;     /* open connections (default 256) */
    models_spec models[MODELS_MAX]; /* what to serve (models.h): the first is loaded at the start
                                        and answers requests that name no model */
    int n_models;
    int max_loaded;    /* models loaded at once (0: no limit); beyond, the least recently used idle
                          one is unloaded */
    size_t max_memory; /* bytes the loaded models may take, by estimate (0: no limit) */
    whale_model_params mp; /* how models are opened: threads, KV type, a progress bar for the first */
    /* context cache (whale.h's engine parameters): memory and disk budgets in bytes, the disk
     * tier's directory (NULL: memory only; with cache_ram 0 too: slot reuse only) */
    size_t cache_ram, cache_disk;
    const char *cache_dir;
    int speculative;        /* enum whale_speculative (whale.h): how requests draft */
    struct whale_model *draft; /* WHALE_SPEC_DRAFT: the draft model (the caller's) */
    int draft_max;          /* guesses per sequence per step; 0: the drafter's default */
    struct store *accounts; /* multi-user mode: keys, balances and charges (service/store.h); NULL:
                               local single-user mode, no keys */
    int signup;             /* accounts: 0 open, 1 closed, 2 invite-only (accounts.h's signup_mode) */
    int secure_cookies;     /* accounts: Secure on session cookies (clients reach us over TLS) */
    int64_t rpm, tpm;       /* accounts: requests and tokens per minute per key and per user (0: none) */
    int signups_per_hour;   /* accounts: sign-ups from one address per hour (0: the default, 3) */
    int64_t user_storage;   /* accounts: characters of conversations per user (0: the default,
                               STORE_CONV_TOTAL_DEFAULT) */
    int max_conns_per_ip;   /* open connections from one client address (default SERVER_CONNS_PER_IP;
                               -1: no limit, e.g. behind a proxy that limits them itself) */
    const char *trusted_proxies[SERVER_MAX_PROXIES]; /* peers whose X-Forwarded-For names the client */
    int n_trusted_proxies;
    const char *host_names[SERVER_MAX_HOST_NAMES]; /* --host-name: Host header names served besides
                                                      the listen address and this machine's names */
    int n_host_names;
    const char *metrics_token; /* accounts: /metrics needs Authorization: Bearer this (NULL: refused) */
    int drain_s;            /* on SIGTERM: seconds to let running requests finish before cancelling
                               them (default SERVER_DRAIN_S; -1: cancel at once) */
} server_opts;

/* Load the first model, then serve until *stop becomes nonzero (SIGINT/SIGTERM), then drain:
 * stop accepting connections, refuse new requests (503), let running and queued ones finish for
 * up to drain_s seconds, cancel what is left (each charged for what it used), return. 0, or an
 * error with a message (port taken, a model that cannot be opened, no chat format, out of
 * memory). */
int server_run(const server_opts *o, volatile sig_atomic_t *stop, whale_err *err);

#endif
