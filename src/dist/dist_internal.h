/* Shared by the collectives of src/dist: the watchdog's record of the collective in
 * progress, and whether MPI lets a second thread make the calls. */
#ifndef LOOM_DIST_INTERNAL_H
#define LOOM_DIST_INTERNAL_H

/* what: the collective; bucket k of n_buckets (n_buckets 0: not bucketed); stage and
 * partner rank of a pairwise exchange (partner -1: all ranks). */
void loom_dist_coll_begin(const char *what, int bucket, int n_buckets, int stage, int partner);
void loom_dist_coll_end(void);
/* 1 when MPI was initialised with at least MPI_THREAD_SERIALIZED */
int loom_dist_thread_serialized(void);

#ifdef LOOM_HAVE_MPI
#include <mpi.h>
#include "loom/dist.h"
/* the communicator of a group */
MPI_Comm loom_dist_mpi_comm(const loom_group *g);
#endif

#endif
