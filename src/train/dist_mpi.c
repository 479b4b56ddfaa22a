/* dist_mpi.c — dist.h over MPI (built into the whale binary when CMake finds MPI; see dist.h).
 * Sums are a reduce-scatter and an all-gather done by hand so the order is ours: the array is cut
 * into one piece per rank; rank j receives every rank's copy of piece j, adds them in rank order
 * and sends the sum back to all. Each rank sends and receives about twice the array, as a ring
 * all-reduce does. Long arrays go in rounds of CHUNK elements. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "train/dist.h"

/* Elements per round: bounds the receive buffer (every rank's piece of one round) at about
 * CHUNK elements, 8 MiB for doubles, whatever the rank count, and keeps MPI's int counts small. */
#define CHUNK (1 << 20)

typedef struct mpi_dist {
    void *buf; /* (CHUNK + size) x 8 bytes: every rank's copy of this rank's piece of a round */
} mpi_dist;

static int mpi_fail(int rc, const char *what, whale_err *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return err_set(err, WHALE_E_IO, "MPI %s: %.*s", what, len, msg);
}

static int sum(tr_dist *d, void *x, size_t n, tr_dist_type type, whale_err *err) {
    mpi_dist *m = d->impl;
    MPI_Datatype dt = type == TR_DIST_F32 ? MPI_FLOAT : type == TR_DIST_F64 ? MPI_DOUBLE : MPI_INT64_T;
    size_t es = type == TR_DIST_F32 ? 4 : 8, N = (size_t)d->size, me = (size_t)d->rank;
    int *sc = malloc(sizeof(int) * N * 4), *sd = sc + N, *rc_ = sd + N, *rd = rc_ + N;
    if (!sc) return err_set(err, WHALE_E_NOMEM, "out of memory");
    int rc = 0;
    for (size_t off = 0; off < n && !rc;) {
        size_t len = n - off < CHUNK ? n - off : CHUNK;
        for (size_t j = 0; j < N; j++) { /* piece j: [len*j/N, len*(j+1)/N) of this round */
            sd[j] = (int)(len * j / N);
            sc[j] = (int)(len * (j + 1) / N) - sd[j];
        }
        int mine = sc[me];
        for (size_t i = 0; i < N; i++) rc_[i] = mine, rd[i] = (int)(i * (size_t)mine);
        char *base = (char *)x + off * es;
        rc = MPI_Alltoallv(base, sc, sd, dt, m->buf, rc_, rd, dt, MPI_COMM_WORLD);
        if (rc) break;
        /* rank order: ((x0 + x1) + x2) + ... */
        if (type == TR_DIST_F32) {
            float *b = m->buf;
            for (size_t i = 1; i < N; i++)
                for (int k = 0; k < mine; k++) b[k] += b[i * (size_t)mine + (size_t)k];
        } else if (type == TR_DIST_F64) {
            double *b = m->buf;
            for (size_t i = 1; i < N; i++)
                for (int k = 0; k < mine; k++) b[k] += b[i * (size_t)mine + (size_t)k];
        } else {
            int64_t *b = m->buf;
            for (size_t i = 1; i < N; i++)
                for (int k = 0; k < mine; k++) b[k] += b[i * (size_t)mine + (size_t)k];
        }
        rc = MPI_Allgatherv(m->buf, mine, dt, base, sc, sd, dt, MPI_COMM_WORLD);
        off += len;
    }
    free(sc);
    return rc ? mpi_fail(rc, "sum", err) : 0;
}

static int bcast(tr_dist *d, void *buf, size_t bytes, whale_err *err) {
    (void)d;
    for (size_t off = 0; off < bytes;) {
        size_t len = bytes - off < (size_t)INT_MAX ? bytes - off : (size_t)INT_MAX;
        int rc = MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (rc) return mpi_fail(rc, "broadcast", err);
        off += len;
    }
    return 0;
}

static void barrier(tr_dist *d) {
    (void)d;
    MPI_Barrier(MPI_COMM_WORLD);
}

static void dist_abort(tr_dist *d, int code) {
    (void)d;
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; this keeps the promise if an implementation did */
}

int tr_dist_mpi_open(tr_dist *d, whale_err *err) {
    memset(d, 0, sizeof *d);
    int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc) return err_set(err, WHALE_E_IO, "MPI_Init failed (code %d)", rc);
    /* errors come back as codes, so a rank can say what failed before everyone stops */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm local;
    d->local_size = 1;
    if (!MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local)) {
        MPI_Comm_size(local, &d->local_size);
        MPI_Comm_free(&local);
    }
    mpi_dist *m = calloc(1, sizeof *m);
    if (m) m->buf = malloc(((size_t)CHUNK + (size_t)d->size) * 8);
    if (!m || !m->buf) {
        free(m);
        MPI_Finalize();
        return err_set(err, WHALE_E_NOMEM, "out of memory");
    }
    d->impl = m, d->sum = sum, d->bcast = bcast, d->barrier = barrier, d->abort = dist_abort;
    return 0;
}

void tr_dist_mpi_close(tr_dist *d) {
    mpi_dist *m = d->impl;
    if (m) free(m->buf), free(m);
    d->impl = NULL;
    MPI_Finalize();
}
