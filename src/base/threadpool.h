/* threadpool.h — a persistent pool of worker threads for data-parallel kernels.
 *
 * tp_run splits n tasks over the workers and the calling thread and returns when all are done.
 * Workers sleep between runs; one run costs a wake-up, not a thread creation. Not reentrant:
 * one tp_run at a time per pool (the model's forward pass owns its pool). */
#ifndef WHALE_BASE_THREADPOOL_H
#define WHALE_BASE_THREADPOOL_H

#include <stdint.h>

typedef struct threadpool threadpool;
/* fn(ctx, task, thread): thread is 0..n_threads-1 (0 = the caller), for per-thread scratch. */
typedef void (*tp_fn)(void *ctx, int64_t task, int thread);

/* n_threads <= 0: one per online CPU. NULL on failure. */
threadpool *tp_new(int n_threads);
void tp_free(threadpool *tp);
int tp_threads(const threadpool *tp);
void tp_run(threadpool *tp, int64_t n_tasks, tp_fn fn, void *ctx);

#endif
