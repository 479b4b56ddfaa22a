/* answers.c — streamed answers kept for resuming; see answers.h.
 *
 * One mutex for the set and every answer in it; each answer has a condition variable its
 * readers wait on. The set owns the answers: holders (the producer, readers) count in refs, and
 * an answer leaves the set only when no one holds it and it ended long enough ago, or the set
 * needs the room. */
#include "service/answers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

struct answer {
    answers *as;
    answer *next;
    char id[ANSWERS_ID_MAX];
    int64_t owner;
    uint8_t hash[32];
    char *buf;        /* the events, one after another */
    size_t n, cap;
    size_t *ends;     /* byte offset after each event */
    uint64_t n_events, cap_events;
    int ended, full, cancelled;
    double ended_at, detached_at;
    int refs, readers;
    pthread_cond_t cv;
};

struct answers {
    pthread_mutex_t mu;
    answer *list;
    size_t bytes;
};

answers *answers_new(void) {
    answers *as = calloc(1, sizeof *as);
    if (as) pthread_mutex_init(&as->mu, NULL);
    return as;
}

static void answer_free(answer *a) {
    pthread_cond_destroy(&a->cv);
    free(a->buf);
    free(a->ends);
    free(a);
}

void answers_free(answers *as) {
    if (!as) return;
    for (answer *a = as->list, *next; a; a = next) {
        next = a->next;
        answer_free(a);
    }
    pthread_mutex_destroy(&as->mu);
    free(as);
}

/* Under the lock: drop ended answers no one holds that are too old, then the oldest ones while
 * the set is over its total. */
static void sweep(answers *as) {
    double now = clock_now_s();
    for (;;) {
        answer **victim = NULL;
        for (answer **p = &as->list; *p; p = &(*p)->next) {
            answer *a = *p;
            if (!a->ended || a->refs) continue;
            if (now - a->ended_at > ANSWERS_KEEP_S) {
                victim = p;
                break;
            }
            if (as->bytes > ANSWERS_TOTAL_BYTES && (!victim || a->ended_at < (*victim)->ended_at)) victim = p;
        }
        if (!victim) return;
        answer *a = *victim;
        *victim = a->next;
        as->bytes -= a->n;
        answer_free(a);
    }
}

answer *answers_add(answers *as, const char *id, int64_t owner, const uint8_t hash[32]) {
    answer *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->as = as;
    snprintf(a->id, sizeof a->id, "%s", id);
    a->owner = owner;
    memcpy(a->hash, hash, 32);
    a->refs = 1;
    pthread_cond_init(&a->cv, NULL);
    pthread_mutex_lock(&as->mu);
    sweep(as);
    a->next = as->list;
    as->list = a;
    pthread_mutex_unlock(&as->mu);
    return a;
}

answer *answers_find(answers *as, const char *id, int64_t owner, const uint8_t *hash) {
    pthread_mutex_lock(&as->mu);
    sweep(as);
    answer *a = as->list;
    while (a && (strcmp(a->id, id) || a->owner != owner)) a = a->next;
    if (a && hash && memcmp(a->hash, hash, 32)) a = NULL;
    if (a) a->refs++;
    pthread_mutex_unlock(&as->mu);
    return a;
}

void answer_put(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    a->refs--;
    pthread_mutex_unlock(&a->as->mu);
}

int answer_append(answer *a, const char *bytes, size_t len) {
    answers *as = a->as;
    pthread_mutex_lock(&as->mu);
    int rc = -1;
    if (!a->full && a->n + len <= ANSWERS_MAX_BYTES) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->n + len) cap *= 2;
        char *b = cap != a->cap ? realloc(a->buf, cap) : a->buf;
        uint64_t n = 0; /* events end with a blank line; JSON data never holds one */
        for (size_t i = 0; i + 1 < len; i++) n += bytes[i] == '\n' && bytes[i + 1] == '\n';
        uint64_t ce = a->cap_events ? a->cap_events : 64;
        while (ce < a->n_events + n) ce *= 2;
        size_t *e = ce != a->cap_events ? realloc(a->ends, ce * sizeof *e) : a->ends;
        if (b) a->buf = b, a->cap = cap;
        if (e) a->ends = e, a->cap_events = ce;
        if (b && e) {
            memcpy(a->buf + a->n, bytes, len);
            a->n += len;
            as->bytes += len;
            for (size_t i = a->n - len; i + 1 < a->n; i++)
                if (a->buf[i] == '\n' && a->buf[i + 1] == '\n') a->ends[a->n_events++] = i + 2;
            rc = 0;
        }
    }
    if (rc) a->full = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&as->mu);
    return rc;
}

void answer_end(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    a->ended = 1;
    a->ended_at = clock_now_s();
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->as->mu);
}

double answer_unread_s(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    double s = a->readers || !a->detached_at ? 0 : clock_now_s() - a->detached_at;
    pthread_mutex_unlock(&a->as->mu);
    return s;
}

long long answer_offset(answer *a, uint64_t n) {
    pthread_mutex_lock(&a->as->mu);
    long long off = n == 0 ? 0 : n <= a->n_events ? (long long)a->ends[n - 1] : -1;
    pthread_mutex_unlock(&a->as->mu);
    return off;
}

long long answer_read(answer *a, size_t *pos, char *buf, size_t max, int timeout_ms) {
    answers *as = a->as;
    struct timespec until;
    clock_deadline_ms(&until, timeout_ms);
    pthread_mutex_lock(&as->mu);
    while (*pos >= a->n && !a->ended && !a->full)
        if (pthread_cond_timedwait(&a->cv, &as->mu, &until) == ETIMEDOUT) break;
    long long k = 0;
    if (*pos < a->n) {
        k = (long long)(a->n - *pos < max ? a->n - *pos : max);
        memcpy(buf, a->buf + *pos, (size_t)k);
        *pos += (size_t)k;
    } else if (a->ended || a->full) k = -1;
    pthread_mutex_unlock(&as->mu);
    return k;
}

void answer_cancel(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    a->cancelled = 1;
    pthread_mutex_unlock(&a->as->mu);
}

int answer_cancelled(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    int c = a->cancelled;
    pthread_mutex_unlock(&a->as->mu);
    return c;
}

void answer_attach(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    a->readers++;
    pthread_mutex_unlock(&a->as->mu);
}

void answer_detach(answer *a) {
    pthread_mutex_lock(&a->as->mu);
    if (!--a->readers) a->detached_at = clock_now_s();
    pthread_mutex_unlock(&a->as->mu);
}
