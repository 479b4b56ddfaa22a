/* threadpool.c — workers wait for a new generation of work, then claim tasks from an atomic
 * counter until none are left.
 *
 * A decode step runs hundreds of small parallel ops with a little serial work between them, so
 * waking a sleeping thread each time (a futex round trip, tens of microseconds) would cost as
 * much as the ops. Workers and the caller therefore spin for a short while (TP_SPIN_US) before
 * sleeping; idle pools (a chat waiting for the user) still sleep. Lost wake-ups are ruled out
 * by sequentially consistent atomics: the caller publishes the generation, then looks for
 * sleepers; a worker announces itself as a sleeper under the mutex, then rechecks the
 * generation before waiting. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#define TP_SPIN_US 300 /* how long a thread spins for the next run (or the end of one) */

struct threadpool {
    int n;              /* threads including the caller */
    pthread_t *workers; /* n - 1 */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint_fast64_t generation; /* bumped per run */
    atomic_int sleepers;             /* workers inside (or about to enter) the wait */
    atomic_int stop;
    atomic_int active; /* workers still inside the current run */
    /* the current run, published by the generation bump */
    tp_fn fn;
    void *ctx;
    int64_t n_tasks;
    atomic_int_fast64_t next;
};

typedef struct worker_arg {
    threadpool *tp;
    int id;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void drain(threadpool *tp, int thread) {
    for (;;) {
        int64_t t = atomic_fetch_add(&tp->next, 1);
        if (t >= tp->n_tasks) break;
        tp->fn(tp->ctx, t, thread);
    }
}

/* Spin until the generation moves past seen, up to TP_SPIN_US; 1 if it did. */
static int spin_for_work(threadpool *tp, uint64_t seen) {
    double t0 = 0;
    for (unsigned i = 0;; i++) {
        if (atomic_load(&tp->generation) != seen || atomic_load(&tp->stop)) return 1;
        cpu_relax();
        if ((i & 63) == 63) {
            double t = clock_now_s() * 1e6;
            if (!t0) t0 = t;
            else if (t - t0 > TP_SPIN_US) return 0;
        }
    }
}

static void *worker(void *p) {
    worker_arg *a = p;
    threadpool *tp = a->tp;
    int id = a->id;
    free(a);
    uint64_t seen = 0;
    for (;;) {
        if (!spin_for_work(tp, seen)) {
            pthread_mutex_lock(&tp->mu);
            atomic_fetch_add(&tp->sleepers, 1);
            while (!atomic_load(&tp->stop) && atomic_load(&tp->generation) == seen) pthread_cond_wait(&tp->wake, &tp->mu);
            atomic_fetch_sub(&tp->sleepers, 1);
            pthread_mutex_unlock(&tp->mu);
        }
        if (atomic_load(&tp->stop)) return NULL;
        seen = atomic_load(&tp->generation);
        drain(tp, id);
        atomic_fetch_sub(&tp->active, 1);
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

static void wake_sleepers(threadpool *tp) {
    if (!atomic_load(&tp->sleepers)) return;
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
}

void tp_free(threadpool *tp) {
    if (!tp) return;
    atomic_store(&tp->stop, 1);
    pthread_mutex_lock(&tp->mu);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->workers[i - 1], NULL);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->wake);
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
    tp->fn = fn;
    tp->ctx = ctx;
    tp->n_tasks = n_tasks;
    atomic_store(&tp->next, 0);
    atomic_store(&tp->active, tp->n - 1);
    atomic_fetch_add(&tp->generation, 1); /* publishes the run */
    wake_sleepers(tp);
    drain(tp, 0);
    /* Wait for the workers: spin, then yield the CPU (a worker may have been descheduled). */
    for (unsigned i = 0; atomic_load(&tp->active) > 0; i++) {
        if (i < 4096) cpu_relax();
        else sched_yield();
    }
}
