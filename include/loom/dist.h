/* Processes: MPI start-up, rank and size (from MPI, never from SLURM variables), the
 * node-local rank that splits a node's cores among its ranks, and the few collectives
 * the data-parallel trainer needs. Without an MPI build everything is one process,
 * and launching such a build under mpirun or srun is refused with a hint. */
#ifndef LOOM_DIST_H
#define LOOM_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_dist {
    int rank, size;             /* in the world communicator */
    int local_rank, local_size; /* on this node */
    int mpi;                    /* 1 when MPI was initialised */
} loom_dist;

/* Initialises MPI when the build has it (MPI_Init_thread, FUNNELED). Refuses a world of 1
 * when the launcher says there are more tasks (SLURM_NTASKS, OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE): the wrong srun --mpi plugin, or a build without MPI. */
loom_status loom_dist_init(int *argc, char ***argv, loom_dist *d);
void loom_dist_finalize(const loom_dist *d);
/* Takes the whole job down (MPI_Abort) with `code`; plain exit without MPI. */
void loom_dist_abort(const loom_dist *d, int code) __attribute__((noreturn));
/* Starts the collective watchdog (seconds > 0, more than one rank): a collective still
 * unfinished after `seconds` prints, on every rank stuck in one, which collective
 * (sequence number, stage, partner) it waits in, then exits so the launcher ends the job. */
void loom_dist_set_timeout(const loom_dist *d, double seconds);
/* Whether this build has MPI, and which ("Open MPI v4.1.4, ..."). */
const char *loom_dist_library(void);

/* Sums buf (n floats) over a power-of-two number of ranks by recursive doubling with a
 * fixed pairing: at stage j rank r adds the vector of rank r^(2^j). With each rank
 * holding the pairwise-tree sum of its consecutive block of leaves, every rank ends
 * with the pairwise-tree sum of all leaves, bitwise the same for any rank count.
 * tmp holds n floats. */
void loom_dist_tree_sum(const loom_dist *d, float *buf, float *tmp, size_t n);
/* ZeRO: rank r's shard [lo, hi) of an n-element buffer: the range that recursive
 * halving with distance 1 first leaves it, halves cut at multiples of `block`. */
void loom_dist_shard(int rank, int size, size_t n, size_t block, size_t *lo, size_t *hi);
/* Reduce-scatter by recursive halving (distance 1 first): afterwards buf[lo, hi) of
 * this rank's shard holds the pairwise-tree sum over ranks, bitwise what
 * loom_dist_tree_sum gives there. tmp holds n/2 + block floats. */
void loom_dist_reduce_scatter_tree(const loom_dist *d, float *buf, float *tmp, size_t n, size_t block);
/* Every rank's shard of buf to every rank (after each updated its own). */
void loom_dist_allgather_shards(const loom_dist *d, float *buf, size_t n, size_t block);
/* Rank 0 receives every rank's shard (shard = this rank's [lo, hi) part) into full (n). */
void loom_dist_gather_shards(const loom_dist *d, const float *shard, float *full, size_t n, size_t block);
/* Element-wise sum of v over ranks; exact when at most one rank is non-zero per element. */
void loom_dist_sum_doubles(const loom_dist *d, double *v, int count);

/* all[r*count ..] = mine of rank r. */
void loom_dist_allgather(const loom_dist *d, const float *mine, int count, float *all);
/* Rank 0 receives every rank's `n` ids, concatenated in rank order, into *all
 * (malloc'd, *total ids); other ranks get *all = NULL. Collective. */
loom_status loom_dist_gather_u32(const loom_dist *d, const uint32_t *mine, size_t n, uint32_t **all, size_t *total);

/* Logical OR of `flag` over all ranks (collective). */
int loom_dist_any(const loom_dist *d, int flag);

#ifdef __cplusplus
}
#endif
#endif
