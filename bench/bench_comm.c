/* Collectives: loom's deterministic all-reduce (recursive doubling in tree order) and
 * reduce-scatter (recursive halving in tree order) beside MPI_Allreduce and
 * MPI_Reduce_scatter_block, and the tensor-parallel all-reduce (loom_reducer_sum:
 * all-to-all, sum in rank order, all-gather; any rank count) beside MPI_Allreduce,
 * measured in the same run, 1 KiB to 256 MiB of floats; each the median of 5 rounds,
 * the implementations alternating.
 * Bus bandwidth as nccl-tests reports it: all-reduce bytes/t * 2(n-1)/n, reduce-scatter
 * bytes/t * (n-1)/n. Run under mpirun with a power-of-two rank count:
 *   mpirun -np 2 build/bench/bench_comm [MAX_MIB=256] */
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom/dist.h"

static double time_it(void (*fn)(void *), void *arg, int iters) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int i = 0; i < iters; i++) fn(arg);
    double t = (MPI_Wtime() - t0) / iters, tmax;
    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return tmax;
}

typedef struct job {
    loom_dist *d;
    float *buf, *out;
    size_t n;
    loom_comm *ar, *rs; /* the trainer's bucketed reduction, one bucket, no thread */
    loom_reducer *tp;   /* tensor parallelism's */
} job;

static void loom_tp(void *p) { job *j = p; loom_reducer_sum(j->tp, j->buf, j->n, "bench"); }

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void loom_ar(void *p) { job *j = p; loom_comm_begin(j->ar, j->buf, NULL); loom_comm_finish(j->ar); }
static void mpi_ar(void *p) { job *j = p; MPI_Allreduce(MPI_IN_PLACE, j->buf, (int)j->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }
static void loom_rs(void *p) { job *j = p; loom_comm_begin(j->rs, j->buf, NULL); loom_comm_finish(j->rs); }
static void mpi_rs(void *p) {
    job *j = p;
    MPI_Reduce_scatter_block(j->buf, j->out, (int)(j->n / j->d->size), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

int main(int argc, char **argv) {
    loom_dist d;
    if (loom_dist_init(&argc, &argv, &d)) {
        fprintf(stderr, "%s\n", loom_error_msg());
        return 1;
    }
    /* the node's cores split among its ranks, as loom train does (the adds of received
     * data run on them); OMP_NUM_THREADS overrides */
    if (!getenv("OMP_NUM_THREADS")) {
        loom_cpu_info ci;
        loom_cpu_detect(&ci);
        omp_set_num_threads(ci.n_cpus / d.local_size > 0 ? ci.n_cpus / d.local_size : 1);
    }
    size_t max_mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    size_t nmax = max_mib << 18; /* floats */
    float *buf = malloc(4 * nmax), *out = malloc(4 * nmax);
    for (size_t i = 0; i < nmax; i++) buf[i] = 1e-3f * (float)(i % 97), out[i] = 0;
    const int n = d.size;
    if (d.rank == 0)
        printf("bench_comm: %d ranks, %s (bus GB/s, median of 5; ratio = MPI time / loom time)\n"
               "%10s | %12s %12s %6s | %12s %12s %6s | %12s %6s\n", n, loom_dist_library(), "bytes",
               "loom AR GB/s", "MPI AR GB/s", "ratio", "loom RS GB/s", "MPI RS GB/s", "ratio", "loom TP GB/s", "ratio");
    for (size_t bytes = 1024; bytes <= (max_mib << 20); bytes *= 4) {
        job j = {&d, buf, out, bytes / 4, NULL, NULL, NULL};
        if (loom_comm_init(&j.ar, &d.world, j.n, j.n, LOOM_COMM_ALLREDUCE, 16, 0, 0) ||
            loom_comm_init(&j.rs, &d.world, j.n, j.n, LOOM_COMM_REDUCE_SCATTER, 16, 0, 0) ||
            loom_reducer_init(&j.tp, &d.world, &d.world, j.n, "bench")) {
            fprintf(stderr, "%s\n", loom_error_msg());
            return 1;
        }
        int iters = bytes < (1 << 20) ? 200 : bytes < (16 << 20) ? 20 : 5;
        enum { ROUNDS = 5, K = 5 };
        double t[K][ROUNDS], best[K];
        void (*fns[K])(void *) = {loom_ar, mpi_ar, loom_rs, mpi_rs, loom_tp};
        for (int trial = 0; trial < ROUNDS; trial++) /* alternate */
            for (int k = 0; k < K; k++) t[k][trial] = time_it(fns[k], &j, iters);
        for (int k = 0; k < K; k++) {
            qsort(t[k], ROUNDS, sizeof(double), cmp_d);
            best[k] = t[k][ROUNDS / 2];
        }
        double ar = 2.0 * (n - 1) / n, rs = (double)(n - 1) / n;
        if (d.rank == 0)
            printf("%10zu | %12.2f %12.2f %5.2fx | %12.2f %12.2f %5.2fx | %12.2f %5.2fx\n", bytes,
                   bytes / best[0] * ar / 1e9, bytes / best[1] * ar / 1e9, best[1] / best[0], bytes / best[2] * rs / 1e9,
                   bytes / best[3] * rs / 1e9, best[3] / best[2], bytes / best[4] * ar / 1e9, best[1] / best[4]);
        loom_reducer_free(j.tp);
        loom_comm_free(j.ar);
        loom_comm_free(j.rs);
    }
    free(buf), free(out);
    loom_dist_finalize(&d);
    return 0;
}
