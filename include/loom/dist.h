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

/* A process group: this process's rank in it, its size, and its communicator (an index
 * into dist.c's table of MPI communicators). Every collective runs on one group. */
typedef struct loom_group {
    int rank, size;
    int comm;
} loom_group;

typedef struct loom_dist {
    int rank, size;             /* in the world communicator */
    int local_rank, local_size; /* on this node */
    int mpi;                    /* 1 when MPI was initialised */
    loom_group world;           /* every process */
    /* The layout: data-parallel, tensor-parallel and pipeline groups (loom_dist_layout);
     * until a layout is made, dp is the world and tp and pp are this process alone. */
    loom_group dp, tp, pp;
} loom_dist;

/* One process, no MPI: what a caller without a launcher passes. */
loom_dist loom_dist_single(void);
/* Splits the world into tp x dp x pp (MPI_Comm_split), ranks numbered tensor-parallel
 * fastest, then data-parallel, then pipeline stage: world rank = (pp_rank * dp + dp_rank)
 * * tp + tp_rank. tp * pp must divide the world size. */
loom_status loom_dist_layout(loom_dist *d, int tp, int pp);

/* Initialises MPI when the build has it (MPI_Init_thread, SERIALIZED). Refuses a world of 1
 * when the launcher says there are more tasks (SLURM_NTASKS, OMPI_COMM_WORLD_SIZE,
 * PMI_SIZE): the wrong srun --mpi plugin, or a build without MPI. */
loom_status loom_dist_init(int *argc, char ***argv, loom_dist *d);
void loom_dist_finalize(const loom_dist *d);
/* Before loom_dist_init: ask MPI for MPI_THREAD_MULTIPLE (a communication thread and the
 * main thread both in MPI calls at once, on different communicators); after it, whether
 * MPI gave it. */
void loom_dist_want_thread_multiple(int on);
int loom_dist_thread_multiple(void);
/* Takes the whole job down (MPI_Abort) with `code`; plain exit without MPI. */
void loom_dist_abort(const loom_dist *d, int code) __attribute__((noreturn));
/* Starts the collective watchdog (seconds > 0, more than one rank): a collective still
 * unfinished after `seconds` prints, on every rank stuck in one, which collective
 * (sequence number, stage, partner) it waits in, then exits so the launcher ends the job. */
void loom_dist_set_timeout(const loom_dist *d, double seconds);
/* Whether this build has MPI, and which ("Open MPI v4.1.4, ..."). */
const char *loom_dist_library(void);

/* ZeRO: rank r's shard [lo, hi) of an n-element buffer: the range that recursive
 * halving with distance 1 first leaves it, halves cut at multiples of `block`. */
void loom_dist_shard(int rank, int size, size_t n, size_t block, size_t *lo, size_t *hi);
/* The same for a buffer that starts at element `base` of a longer one (a pipeline
 * stage's part of the parameters): cuts at multiples of `block` of the longer one, so
 * that no block of it is cut (a half may be empty). */
void loom_dist_shard_at(int rank, int size, size_t base, size_t n, size_t block, size_t *lo, size_t *hi);
/* Where recursive halving cuts [a, b) of such a buffer. */
size_t loom_dist_shard_mid(size_t a, size_t b, size_t base, size_t block);

/* Point-to-point on a group (a pipeline's neighbours): non-blocking sends and receives of
 * n floats with a tag, each completed by loom_p2p_wait, whose `what` the watchdog names
 * if it does not complete. Messages of one tag between two ranks arrive in order. */
typedef struct loom_p2p {
    uint64_t h; /* the MPI request */
    int active;
} loom_p2p;
void loom_p2p_isend(const loom_group *g, const float *buf, size_t n, int peer, int tag, loom_p2p *r);
void loom_p2p_irecv(const loom_group *g, float *buf, size_t n, int peer, int tag, loom_p2p *r);
void loom_p2p_wait(loom_p2p *r, const char *what);
/* v(n) from rank root to every rank of the group. */
void loom_dist_bcast_floats(const loom_group *d, float *v, int n, int root, const char *what);
/* Gradient reduction in buckets (loom_comm). The buffer (n floats) is cut into buckets
 * from its end; each bucket is summed over a power-of-two number of ranks with a fixed
 * pairing, distance 1 first, rank r adding the vector of rank r^(2^j) at stage j:
 *  - LOOM_COMM_ALLREDUCE: every rank ends with the pairwise-tree sum of the ranks'
 *    vectors (recursive doubling);
 *  - LOOM_COMM_REDUCE_SCATTER: rank r ends with that sum on its shard [lo, hi) of
 *    loom_dist_shard only (recursive halving), bitwise what ALLREDUCE gives there.
 * Per element the additions are the same whatever the bucket size and overlap, so
 * with each rank holding the pairwise-tree sum of a consecutive, aligned block of
 * leaves, the result is the pairwise-tree sum of all leaves for any rank count.
 * With overlap (and MPI_THREAD_SERIALIZED) a communication thread reduces each bucket
 * as soon as loom_comm_ready releases it; the caller makes no MPI call between
 * loom_comm_begin and the return of loom_comm_finish. */
typedef enum loom_comm_mode { LOOM_COMM_ALLREDUCE, LOOM_COMM_REDUCE_SCATTER, LOOM_COMM_ALLGATHER } loom_comm_mode;
typedef struct loom_comm loom_comm;
typedef struct loom_comm_span { double t0, t1; } loom_comm_span;
/* Where a gradient becomes final: rows [0, rows) of `width` floats (the token
 * embedding) are final after the LM head's backward except the rows marked in
 * late[] (the input tokens of the micro-batch on any rank); [rows*width, late_end)
 * (GPT-2's wpe; empty for Llama) only at the end; [late_end, n) layer by layer from the end. */
typedef struct loom_comm_layout {
    size_t rows, width, late_end;
    const unsigned char *late; /* (rows) */
} loom_comm_layout;
/* bucket: floats per bucket (<= 2^28); block: shard granularity (REDUCE_SCATTER);
 * max_rows: the most rows a layout will have (0: no layouts). */
loom_status loom_comm_init(loom_comm **out, const loom_group *d, size_t n, size_t bucket, loom_comm_mode mode,
                           size_t block, int overlap, size_t max_rows);
/* What loom_comm_init allocates through loom_alloc (its send and receive buckets). */
size_t loom_comm_bytes(size_t n, size_t bucket);
/* The buffer's shards are loom_dist_shard_at's with this base (default 0). */
void loom_comm_set_shard_base(loom_comm *c, size_t base);
void loom_comm_free(loom_comm *c);
/* Starts a reduction of buf (every rank with the same layout, or NULL: the buffer is
 * released by the watermark alone); nothing is released yet. */
void loom_comm_begin(loom_comm *c, float *buf, const loom_comm_layout *lay);
/* The layout's early rows hold their final local values: their buckets start. */
void loom_comm_ready_rows(loom_comm *c);
/* buf[from, n) holds its final local values (late rows aside): buckets wholly inside
 * start reducing. */
void loom_comm_ready(loom_comm *c, size_t from);
/* All of buf is final: reduces what is left and returns when every bucket is done. */
void loom_comm_finish(loom_comm *c);
/* The parameter all-gather (ZeRO): every rank's shard of loom_dist_shard to every rank,
 * in buckets the caller lays out in the order it will need them: plan_begin, then
 * plan_add segments (buckets close at the bucket size) and plan_cut where a bucket
 * must end (it returns the buckets so far), then start; with overlap the thread sends
 * them all at once. loom_comm_wait(c, k) returns when buckets [0, k) are done (without
 * overlap it moves them itself). */
void loom_comm_plan_begin(loom_comm *c);
void loom_comm_plan_add(loom_comm *c, size_t a, size_t b);
int loom_comm_plan_cut(loom_comm *c);
void loom_comm_start_allgather(loom_comm *c, float *buf);
void loom_comm_wait(loom_comm *c, int k);
int loom_comm_overlaps(const loom_comm *c);      /* 1 when a thread overlaps the reduction */
int loom_comm_buckets(const loom_comm *c);      /* in the current or last call */
int loom_comm_max_buckets(const loom_comm *c);  /* the most one call can have */
size_t loom_comm_buffer_bytes(const loom_comm *c); /* its send and receive buffers: one bucket each */
/* when each bucket of the last reduction was reduced (bucket k: [k]) */
const loom_comm_span *loom_comm_spans(const loom_comm *c);

/* Element-wise sum of v over ranks; exact when at most one rank is non-zero per element. */
void loom_dist_sum_doubles(const loom_group *d, double *v, int count);

/* all[r*count ..] = mine of rank r. */
void loom_dist_allgather(const loom_group *d, const float *mine, int count, float *all);
void loom_dist_allgather_i32(const loom_group *d, const int32_t *mine, int count, int32_t *all);
void loom_dist_allgather_bytes(const loom_group *d, const void *mine, int bytes, void *all, const char *what);
/* Rank 0 receives every rank's `n` ids, concatenated in rank order, into *all
 * (malloc'd, *total ids); other ranks get *all = NULL. Collective. */
loom_status loom_dist_gather_u32(const loom_group *d, const uint32_t *mine, size_t n, uint32_t **all, size_t *total);

/* v from rank 0 to every rank. */
void loom_dist_bcast_u64(const loom_group *d, uint64_t *v);

/* Collective: what to add to this rank's loom_now() to read rank 0's clock, by NTP's
 * estimate from the quickest of 8 round trips with rank 0 (error at most half that
 * round trip, put in *rtt); rank 0 and a single process: 0. */
double loom_dist_clock_offset(const loom_group *d, double *rtt);

/* One file written by all ranks at once with MPI-IO (collective writes at explicit
 * offsets), then synced to the device and closed: each rank writes its n pieces. The
 * file is created or truncated. Every rank returns the same status; the message names
 * the file, and the rank when the failure was another's. Needs an MPI build. */
typedef struct loom_file_piece {
    const void *data;
    size_t bytes;
    uint64_t offset;
} loom_file_piece;
loom_status loom_dist_write_file(const loom_group *d, const char *path, const loom_file_piece *p, int n);

/* What every rank of a job must have been given alike (flags, config, a summary of the
 * data), as named short values; a value longer than LOOM_AGREE_CHARS - 1 is cut and
 * ends in the CRC32C of the whole. */
#define LOOM_AGREE_MAX 64
#define LOOM_AGREE_CHARS 64
typedef struct loom_agree {
    int n;
    const char *name[LOOM_AGREE_MAX]; /* string literals: the flag, e.g. "--seed" */
    char val[LOOM_AGREE_MAX][LOOM_AGREE_CHARS];
} loom_agree;
void loom_agree_put(loom_agree *a, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Compares every rank's values with rank 0's in one allgather: refuses with the first
 * field that differs, its value on rank 0 and on the first rank that differs ("the ranks
 * were given different WHAT: --seed is '1' on rank 0 but '2' on rank 1"). Call it
 * before any other collective. Every rank returns the same status. */
loom_status loom_dist_agree(const loom_group *d, const loom_agree *a, const char *what);

/* Marks the error about to be returned as one that every rank reached alike, at the same
 * point, with the same message (a failed agreement, a check every rank makes), so that
 * the command prints it once, on rank 0, and every rank exits without aborting the job. */
void loom_dist_set_failed_together(void);
int loom_dist_failed_together(void);

/* The tensor-parallel reductions over a group, for vectors of up to max_n floats (buffers
 * sized once). kind names the group in the watchdog's messages ("tensor-parallel"). The
 * sum adds the ranks' vectors in rank order (an all-to-all of chunks, the chunk sums, an
 * all-gather): the same bits on every rank, whatever MPI library or algorithm. */
typedef struct loom_reducer loom_reducer;
loom_status loom_reducer_init(loom_reducer **out, const loom_group *g, const loom_group *world, size_t max_n,
                              const char *kind);
void loom_reducer_free(loom_reducer *r);
size_t loom_reducer_bytes(int size, size_t max_n); /* what init allocates through loom_alloc */
/* (ctx: the reducer) buf(n) summed, or its maximum taken, over the group; `what` names it */
void loom_reducer_sum(void *ctx, float *buf, size_t n, const char *what);
void loom_reducer_max(void *ctx, float *buf, size_t n, const char *what);
/* buf holds size chunks: the chunks summed over the group (rank order) into this rank's
 * chunk only (reduce-scatter), or this rank's chunk to every rank (all-gather) */
void loom_reducer_scatter(void *ctx, float *buf, size_t chunk, const char *what);
void loom_reducer_gather(void *ctx, float *buf, size_t chunk, const char *what);
/* What the reducer did since init: calls, floats reduced, bytes this rank sent, seconds
 * in the calls (the model waits in all of them: none overlaps compute yet). */
typedef struct loom_reducer_stats {
    long calls;
    double floats, bytes_sent, seconds;
} loom_reducer_stats;
loom_reducer_stats loom_reducer_get_stats(const loom_reducer *r);

/* Logical OR of `flag` over all ranks (collective). */
int loom_dist_any(const loom_group *d, int flag);

#ifdef __cplusplus
}
#endif
#endif
