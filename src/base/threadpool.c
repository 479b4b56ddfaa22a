/* threadpool.c — workers wait on a condition variable for a new generation, then claim tasks
 * from an atomic counter until none are left; the last one to finish signals the caller. */
#include "base/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct threadpool {
    int n;                /* threads including the caller */
    pthread_t *workers;   /* n - 1 */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t generation;  /* bumped per run (under mu) */
    int stop;
    int active;           /* workers still inside the current run (under mu) */
    /* the current run */
    tp_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
};

typedef struct worker_arg {
    threadpool *tp;
    int id;
} worker_arg;

static void drain(threadpool *tp, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add(&tp->next, 1);
        if (t >= tp->n_tasks) break;
        tp->fn(tp->ctx, t, thread);
    }
}

static void *worker(void *p) {
    worker_arg *a = p;
    threadpool *tp = a->tp;
    int id = a->id;
    free(a);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&tp->mu);
        while (!tp->stop && tp->generation == seen) pthread_cond_wait(&tp->wake, &tp->mu);
        if (tp->stop) {
            pthread_mutex_unlock(&tp->mu);
            return NULL;
        }
        seen = tp->generation;
        pthread_mutex_unlock(&tp->mu);
        drain(tp, id);
        pthread_mutex_lock(&tp->mu);
        if (--tp->active == 0) pthread_cond_signal(&tp->done);
        pthread_mutex_unlock(&tp->mu);
    }
}

threadpool *tp_new(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    tp->workers = calloc((size_t)(n_threads > 1 ? n_threads - 1 : 1), sizeof *tp->workers);
    if (!tp->workers) {
        free(tp);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            tp->n = i;
            break;
        }
        a->tp = tp;
        a->id = i;
        if (pthread_create(&tp->workers[i - 1], NULL, worker, a)) {
            free(a);
            tp->n = i;
            break;
        }
    }
    return tp;
}

void tp_free(threadpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    tp->stop = 1;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->workers[i - 1], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    free(tp->workers);
    free(tp);
}

int tp_threads(const threadpool *tp) { return tp ? tp->n : 1; }

void tp_run(threadpool *tp, int64_t n_tasks, tp_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!tp || tp->n == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->ctx = ctx;
    tp->n_tasks = n_tasks;
    atomic_store(&tp->next, 0);
    tp->active = tp->n - 1;
    tp->generation++;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    drain(tp, 0);
    pthread_mutex_lock(&tp->mu);
    while (tp->active > 0) pthread_cond_wait(&tp->done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}
