/* login_guard.c — failed password checks per account and per address, with exponential waits;
 * see login_guard.h. */
#include "service/login_guard.h"

#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

#define LOGIN_ID_MAX 320 /* bytes of a kind and an email or address hashed (longer: cut) */

enum { KIND_ACCOUNT, KIND_ADDRESS, N_KIND };

typedef struct record {
    uint64_t h; /* keyed hash of the account or address; 0: empty */
    int kind;   /* KIND_* */
    int fails;
    double last; /* the last failure (clock_now_s) */
} record;

struct login_guard {
    pthread_mutex_t mu;
    record *r; /* (n_slots) */
    int n_slots;
    record overflow[N_KIND]; /* failures that found no slot (login_guard.h) */
    unsigned char key[crypto_shorthash_KEYBYTES];
    store *shared; /* borrowed: records also kept there (NULL: memory only) */
};

static const int FREE_FAILS[N_KIND] = {LOGIN_FREE_PER_ACCOUNT, LOGIN_FREE_PER_ADDRESS};
static const double MAX_WAIT[N_KIND] = {LOGIN_MAX_WAIT_ACCOUNT, LOGIN_MAX_WAIT_ADDRESS};

/* Seconds of wait after the fails-th failure of a kind (0 while they are free). */
static double wait_after(int kind, int fails) {
    if (fails <= FREE_FAILS[kind]) return 0;
    int k = fails - FREE_FAILS[kind] - 1;
    return k >= 30 ? MAX_WAIT[kind] : fmin(MAX_WAIT[kind], LOGIN_FIRST_WAIT * (double)(1u << k));
}

/* What identifies an account or an address, with its kind first, into buf: the email; an IPv4
 * address (also IPv4-mapped IPv6); an IPv6 address's first 64 bits. Returns its length. */
static size_t identity(int kind, const char *s, unsigned char buf[LOGIN_ID_MAX]) {
    unsigned char a6[16];
    buf[0] = kind == KIND_ACCOUNT ? 'a' : 'i';
    if (kind == KIND_ADDRESS && inet_pton(AF_INET6, s, a6) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (!memcmp(a6, mapped, sizeof mapped)) {
            memcpy(buf + 1, a6 + 12, 4);
            return 5;
        }
        buf[1] = '6';
        memcpy(buf + 2, a6, 8);
        return 10;
    }
    if (kind == KIND_ADDRESS && inet_pton(AF_INET, s, a6) == 1) {
        memcpy(buf + 1, a6, 4);
        return 5;
    }
    size_t n = strnlen(s, LOGIN_ID_MAX - 1);
    memcpy(buf + 1, s, n);
    return n + 1;
}

static uint64_t hash_of(const login_guard *g, int kind, const char *s) {
    unsigned char buf[LOGIN_ID_MAX], out[crypto_shorthash_BYTES];
    size_t n = identity(kind, s, buf);
    crypto_shorthash(out, buf, n, g->key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h ? h : 1;
}

/* The store's key of a record: an unkeyed hash, the same in every replica. */
static void store_key_of(int kind, const char *s, uint8_t k[STORE_KEY_HASH]) {
    unsigned char buf[LOGIN_ID_MAX];
    size_t n = identity(kind, s, buf);
    crypto_generichash(k, STORE_KEY_HASH, buf, n, NULL, 0);
}

login_guard *login_guard_new_sized(int n_slots) {
    login_guard *g = n_slots > 0 && sodium_init() >= 0 ? calloc(1, sizeof *g) : NULL;
    if (!g || !(g->r = calloc((size_t)n_slots, sizeof *g->r))) {
        free(g);
        return NULL;
    }
    g->n_slots = n_slots;
    crypto_shorthash_keygen(g->key);
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

login_guard *login_guard_new(store *st) {
    login_guard *g = login_guard_new_sized(LOGIN_SLOTS);
    if (g && st && store_shared(st)) g->shared = st;
    return g;
}

void login_guard_free(login_guard *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g->r);
    free(g);
}

/* A record past its free failures and not yet forgotten: dropping it would reset its wait. */
static int kept(const record *r, double now) {
    return r->h && now - r->last <= LOGIN_FORGET_S && r->fails > FREE_FAILS[r->kind];
}

/* Under mu: the record of h among its probed slots. Absent: with create, a new one in an empty
 * (or forgotten) slot, else in the stalest one not kept; NULL when absent and not created. When
 * every probed slot is kept, the kind's overflow record (created or not). */
static record *find(login_guard *g, int kind, uint64_t h, int create, double now) {
    record *take = NULL;
    int probes = g->n_slots < LOGIN_PROBES ? g->n_slots : LOGIN_PROBES;
    for (int i = 0; i < probes; i++) {
        record *r = &g->r[(h + (uint64_t)i) % (uint64_t)g->n_slots];
        if (r->h && now - r->last > LOGIN_FORGET_S) r->h = 0; /* forgotten */
        if (r->h == h) return r;
        if (kept(r, now)) continue;
        if (!take || (take->h && (!r->h || r->last < take->last))) take = r;
    }
    if (!take) {
        record *o = &g->overflow[kind];
        if (now - o->last > LOGIN_FORGET_S) *o = (record){1, kind, 0, now};
        return o;
    }
    if (!create) return NULL;
    *take = (record){h, kind, 0, now};
    return take;
}

static double wait_of(login_guard *g, int kind, const char *s, double now) {
    record *r = find(g, kind, hash_of(g, kind, s), 0, now);
    double w = r ? fmax(0, r->last + wait_after(kind, r->fails) - now) : 0;
    if (g->shared) {
        uint8_t k[STORE_KEY_HASH];
        int fails = 0;
        int64_t last_ms = 0;
        whale_err err = {0};
        store_key_of(kind, s, k);
        if (!store_login_get(g->shared, k, &fails, &last_ms, &err))
            w = fmax(w, (double)last_ms / 1000 + wait_after(kind, fails) -
                            (double)clock_wall_ms() / 1000);
    }
    return w;
}

double login_guard_wait(login_guard *g, const char *email, const char *ip) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    double w = fmax(wait_of(g, KIND_ACCOUNT, email, now), wait_of(g, KIND_ADDRESS, ip, now));
    pthread_mutex_unlock(&g->mu);
    return w;
}

static void fail(login_guard *g, int kind, const char *s, double now) {
    record *r = find(g, kind, hash_of(g, kind, s), 1, now);
    r->fails++;
    r->last = now;
    if (g->shared) {
        uint8_t k[STORE_KEY_HASH];
        int fails;
        whale_err err = {0};
        store_key_of(kind, s, k);
        store_login_failed(g->shared, k, clock_wall_ms(), (int64_t)(LOGIN_FORGET_S * 1000), &fails,
                           &err);
    }
}

void login_guard_failed(login_guard *g, const char *email, const char *ip) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    fail(g, KIND_ACCOUNT, email, now);
    fail(g, KIND_ADDRESS, ip, now);
    pthread_mutex_unlock(&g->mu);
}

void login_guard_succeeded(login_guard *g, const char *email) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    record *r = find(g, KIND_ACCOUNT, hash_of(g, KIND_ACCOUNT, email), 0, now);
    if (r && r != &g->overflow[KIND_ACCOUNT]) r->h = 0;
    if (g->shared) {
        uint8_t k[STORE_KEY_HASH];
        whale_err err = {0};
        store_key_of(KIND_ACCOUNT, email, k);
        store_login_clear(g->shared, k, &err);
    }
    pthread_mutex_unlock(&g->mu);
}
