/* dist.c — the one-process side of dist.h: the wrappers the training loop calls (a NULL table or
 * one rank is a plain process) and the check for an MPI launcher's environment. The MPI side is
 * dist_mpi.c. */
#include "train/dist.h"

#include <stdlib.h>

int tr_dist_rank(const tr_dist *d) { return d ? d->rank : 0; }
int tr_dist_size(const tr_dist *d) { return d ? d->size : 1; }

static int sum(tr_dist *d, void *x, size_t n, tr_dist_type type, whale_err *err) {
    return d && d->size > 1 && n ? d->sum(d, x, n, type, err) : 0;
}
int tr_dist_sum_f32(tr_dist *d, float *x, size_t n, whale_err *err) { return sum(d, x, n, TR_DIST_F32, err); }
int tr_dist_sum_f64(tr_dist *d, double *x, size_t n, whale_err *err) { return sum(d, x, n, TR_DIST_F64, err); }
int tr_dist_sum_i64(tr_dist *d, int64_t *x, size_t n, whale_err *err) { return sum(d, x, n, TR_DIST_I64, err); }

int tr_dist_bcast(tr_dist *d, void *buf, size_t bytes, whale_err *err) {
    return d && d->size > 1 && bytes ? d->bcast(d, buf, bytes, err) : 0;
}

void tr_dist_barrier(tr_dist *d) {
    if (d && d->size > 1) d->barrier(d);
}

int tr_dist_launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        long n = v ? strtol(v, NULL, 10) : 0;
        if (n > 0) return n > 1 << 20 ? 1 << 20 : (int)n;
    }
    return 1;
}
