/* login_guard.c — failed sign-ins per account and per address, with exponential waits; see
 * login_guard.h. */
#include "service/login_guard.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"

typedef struct record {
    uint64_t h;    /* hash of "a:" email or "i:" address; 0: empty */
    int fails;
    double until;  /* no try before this time */
    double last;   /* the last failure */
} record;

struct login_guard {
    pthread_mutex_t mu;
    record *r; /* (LOGIN_SLOTS) */
};

static uint64_t hash(char kind, const char *s) {
    uint64_t h = 1469598103934665603ull;
    h = (h ^ (unsigned char)kind) * 1099511628211ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ? h : 1;
}

login_guard *login_guard_new(void) {
    login_guard *g = calloc(1, sizeof *g);
    if (!g || !(g->r = calloc(LOGIN_SLOTS, sizeof *g->r))) {
        free(g);
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    return g;
}

void login_guard_free(login_guard *g) {
    if (!g) return;
    pthread_mutex_destroy(&g->mu);
    free(g->r);
    free(g);
}

/* Under mu: the record of h among 16 probed slots; with create, a new one in the stalest of them
 * (forgotten ones first). NULL when absent (and not created). */
static record *find(login_guard *g, uint64_t h, int create, double now) {
    record *stalest = NULL;
    for (int i = 0; i < 16; i++) {
        record *r = &g->r[(h + (uint64_t)i) % LOGIN_SLOTS];
        if (r->h && now - r->last > LOGIN_FORGET_S) r->h = 0; /* forgotten */
        if (r->h == h) return r;
        if (!stalest || (stalest->h && (!r->h || r->last < stalest->last))) stalest = r;
    }
    if (!create) return NULL;
    *stalest = (record){h, 0, 0, now};
    return stalest;
}

static double wait_of(login_guard *g, uint64_t h, double now) {
    record *r = find(g, h, 0, now);
    return r && r->until > now ? r->until - now : 0;
}

double login_guard_wait(login_guard *g, const char *email, const char *ip) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    double w = fmax(wait_of(g, hash('a', email), now), wait_of(g, hash('i', ip), now));
    pthread_mutex_unlock(&g->mu);
    return w;
}

static void fail(login_guard *g, uint64_t h, int free_fails, double cap, double now) {
    record *r = find(g, h, 1, now);
    r->fails++;
    r->last = now;
    if (r->fails > free_fails) {
        int k = r->fails - free_fails - 1;
        r->until = now + (k >= 30 ? cap : fmin(cap, LOGIN_FIRST_WAIT * (double)(1u << k)));
    }
}

void login_guard_failed(login_guard *g, const char *email, const char *ip) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    fail(g, hash('a', email), LOGIN_FREE_PER_ACCOUNT, LOGIN_MAX_WAIT_ACCOUNT, now);
    fail(g, hash('i', ip), LOGIN_FREE_PER_ADDRESS, LOGIN_MAX_WAIT_ADDRESS, now);
    pthread_mutex_unlock(&g->mu);
}

void login_guard_succeeded(login_guard *g, const char *email) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->mu);
    record *r = find(g, hash('a', email), 0, now);
    if (r) r->h = 0;
    pthread_mutex_unlock(&g->mu);
}
