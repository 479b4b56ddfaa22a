/* test_threadpool.c — the worker pool: every task runs exactly once per tp_run, thread ids stay
 * in range, runs back to back (the spinning path) and after a pause long enough for workers to
 * fall asleep (the futex path) both complete, and pools of 1..4 threads shut down cleanly. */
#include <stdatomic.h>
#include <time.h>

#include "base/threadpool.h"
#include "check.h"

typedef struct job {
    atomic_int *hits;
    atomic_int bad_thread;
    int n_threads;
} job;

static void task(void *ctx, int64_t t, int thread) {
    job *j = ctx;
    atomic_fetch_add(&j->hits[t], 1);
    if (thread < 0 || thread >= j->n_threads) atomic_store(&j->bad_thread, 1);
}

static void run_checked(threadpool *tp, job *j, int64_t n) {
    for (int64_t i = 0; i < n; i++) atomic_store(&j->hits[i], 0);
    tp_run(tp, n, task, j);
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; i++) wrong += atomic_load(&j->hits[i]) != 1;
    CHECKF(wrong == 0, "%lld of %lld tasks did not run exactly once", (long long)wrong, (long long)n);
}

static void test_every_task_once(void) {
    static atomic_int hits[1000];
    for (int nt = 1; nt <= 4; nt++) {
        threadpool *tp = tp_new(nt);
        CHECK(tp && tp_threads(tp) == nt);
        job j = {hits, 0, nt};
        for (int r = 0; r < 2000; r++) run_checked(tp, &j, 1 + r % 97); /* back to back */
        struct timespec pause = {0, 5 * 1000 * 1000};                   /* workers go to sleep */
        for (int r = 0; r < 5; r++) {
            nanosleep(&pause, NULL);
            run_checked(tp, &j, 1000);
        }
        CHECK(!atomic_load(&j.bad_thread));
        tp_free(tp);
    }
}

int main(void) {
    RUN(test_every_task_once);
    return check_report("test_threadpool");
}
