/* dist.h — data-parallel training across processes: the few collective operations the training
 * loop needs (a sum in a fixed order, a broadcast from rank 0, a barrier, an abort), behind one
 * small table so the loop does not depend on MPI. dist.c holds the one-process case and the
 * launcher check; dist_mpi.c (built into the whale binary only when CMake finds MPI, so
 * libwhale and every other command never load or start MPI) holds the MPI implementation.
 *
 * Determinism: every sum adds the ranks' arrays in rank order, ((x0 + x1) + x2) + ..., and every
 * rank receives the same bits. MPI_Allreduce is not used for floating point because its
 * summation order is left to the implementation (it may change with the message size, the rank
 * count or the network). */
#ifndef WHALE_TRAIN_DIST_H
#define WHALE_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "whale.h"

typedef enum { TR_DIST_F32, TR_DIST_F64, TR_DIST_I64 } tr_dist_type;

typedef struct tr_dist {
    int rank, size; /* this process' rank in 0..size-1 */
    int local_size; /* ranks on this host (for the thread count); 1 when unknown */
    /* x[0..n) := the sum over ranks of every rank's x, in rank order; the same bits on every
     * rank. Returns 0, or a negative code with err set. */
    int (*sum)(struct tr_dist *d, void *x, size_t n, tr_dist_type type, whale_err *err);
    /* buf[0..bytes) := rank 0's buf. */
    int (*bcast)(struct tr_dist *d, void *buf, size_t bytes, whale_err *err);
    void (*barrier)(struct tr_dist *d);
    /* End every rank's process now with code (a rank that failed alone must not leave the
     * others waiting in a collective). Does not return. */
    void (*abort)(struct tr_dist *d, int code);
    void *impl;
} tr_dist;

/* The wrappers the training loop calls: d NULL or of size 1 is one process (sums and broadcasts
 * leave x as it is). */
int tr_dist_rank(const tr_dist *d);
int tr_dist_size(const tr_dist *d);
int tr_dist_sum_f32(tr_dist *d, float *x, size_t n, whale_err *err);
int tr_dist_sum_f64(tr_dist *d, double *x, size_t n, whale_err *err);
int tr_dist_sum_i64(tr_dist *d, int64_t *x, size_t n, whale_err *err);
int tr_dist_bcast(tr_dist *d, void *buf, size_t bytes, whale_err *err);
void tr_dist_barrier(tr_dist *d);

/* The number of ranks an MPI launcher started this process among, from its environment
 * (Open MPI's OMPI_COMM_WORLD_SIZE, or the PMI_SIZE of MPICH's launcher); 1 when not launched
 * by one. Reads no MPI library. */
int tr_dist_launched_size(void);

/* dist_mpi.c, present when WHALE_HAVE_MPI: MPI_Init and a tr_dist over MPI_COMM_WORLD.
 * Returns 0, or a negative code with err set. tr_dist_mpi_close calls MPI_Finalize. */
int tr_dist_mpi_open(tr_dist *d, whale_err *err);
void tr_dist_mpi_close(tr_dist *d);

#endif
