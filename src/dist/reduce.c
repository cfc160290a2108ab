/* The tensor-parallel reductions: an all-reduce whose sum adds the ranks' vectors in
 * rank order, so every rank gets the same bits and the result depends only on the group
 * size (never on MPI's algorithm choice), made of an all-to-all (each rank receives every
 * other rank's copy of its 1/size chunk, non-blocking point-to-point), a local sum of the
 * chunks in rank order, and an all-gather of the summed chunks (point-to-point too): the bandwidth of a ring all-reduce, 2 (size-1)/size of
 * the vector in and out per rank. Maxima are exact in any order: MPI_Allreduce. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "loom/dist.h"

struct loom_reducer {
    loom_group g;
    size_t cap;        /* floats of the largest vector */
    float *send, *recv; /* (size x chunk of cap) each */
    char name[96];     /* "tensor-parallel group of world ranks 0-1" */
    loom_reducer_stats st;
};

loom_reducer_stats loom_reducer_get_stats(const loom_reducer *r) { return r->st; }

#ifdef LOOM_HAVE_MPI
/* One point-to-point round with every other rank, partners in a fixed rotation: rank
 * `to` gets the chunk at send + (gather ? me : to) * chunk, rank `from`'s arrives at
 * recv + from * chunk. gather = 0 is an all-to-all without the copy of a rank's own
 * chunk (recv: the receive buffer); gather = 1 the all-gather in place (recv = send). */
static void exchange(loom_reducer *r, const float *send, float *recv, size_t chunk, int gather) {
    const int P = r->g.size, me = r->g.rank;
    MPI_Comm comm = loom_dist_mpi_comm(&r->g);
    MPI_Request req[2 * 64];
    MPI_Status st[2 * 64]; /* (not MPI_STATUSES_IGNORE: GCC's access checks trip over MPICH's annotations) */
    int n = 0;
    LOOM_CHECK(P <= 64);
    for (int k = 1; k < P; k++) {
        const int from = (me - k + P) % P, to = (me + k) % P;
        MPI_Irecv(recv + (size_t)from * chunk, (int)chunk, MPI_FLOAT, from, gather, comm, &req[n++]);
        MPI_Isend(send + (size_t)(gather ? me : to) * chunk, (int)chunk, MPI_FLOAT, to, gather, comm, &req[n++]);
    }
    MPI_Waitall(n, req, st);
}

/* dst = a + b, element-wise, contiguous passes the compiler vectorises */
static void add2(float *dst, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dst[i] = a[i] + b[i];
}

/* buf's chunk `me` = the sum of every rank's copy of it, added in rank order:
 * ((c0 + c1) + c2) + ..., one pass per addition, the last one into buf (the partial sums
 * in recv's unused slot `me`) */
static void sum_chunks(loom_reducer *r, float *buf, size_t chunk) {
    const int P = r->g.size, me = r->g.rank;
    float *mine = buf + (size_t)me * chunk, *acc = r->recv + (size_t)me * chunk;
    const float *src[64];
    for (int q = 0; q < P; q++) src[q] = q == me ? mine : r->recv + (size_t)q * chunk;
    const float *left = src[0];
    for (int q = 1; q < P; q++) {
        float *out = q == P - 1 ? mine : acc;
        add2(out, left, src[q], chunk);
        left = out;
    }
}

/* A call's start (the watchdog's label) and end (the counters: `chunk` floats to each
 * other rank per half; `halves`: 1 for a reduce-scatter or an all-gather, 2 for both) */
static double call_begin(const loom_reducer *r, const char *what, const char *kind, size_t n) {
    char label[192];
    snprintf(label, sizeof label, "%s %s (%zu floats) on the %s", what, kind, n, r->name);
    loom_dist_coll_begin(label, 0, 0, 0, -1);
    return loom_now();
}

static void call_end(loom_reducer *r, double t0, size_t n, double chunk, int halves) {
    loom_dist_coll_end();
    r->st.calls++;
    r->st.floats += (double)n;
    r->st.bytes_sent += halves * (double)(r->g.size - 1) * chunk * sizeof(float);
    r->st.seconds += loom_now() - t0;
}
#endif

size_t loom_reducer_bytes(int size, size_t max_n) {
    const size_t cap = (max_n + (size_t)size - 1) / (size_t)size * (size_t)size;
    return sizeof(loom_reducer) + (size > 1 ? 2 * sizeof(float) * cap : 0);
}

loom_status loom_reducer_init(loom_reducer **out, const loom_group *g, const loom_group *world, size_t max_n,
                              const char *kind) {
    *out = NULL;
    loom_reducer *r = loom_alloc(sizeof *r, "reducer");
    if (!r) return LOOM_ERR_NOMEM;
    r->g = *g;
    const size_t chunk = (max_n + (size_t)g->size - 1) / (size_t)g->size;
    r->cap = chunk * (size_t)g->size;
    if (g->size > 1) {
        r->send = loom_alloc(sizeof(float) * r->cap, "tensor-parallel send buffer");
        r->recv = r->send ? loom_alloc(sizeof(float) * r->cap, "tensor-parallel receive buffer") : NULL;
        if (!r->recv) {
            loom_reducer_free(r);
            return LOOM_ERR_NOMEM;
        }
    }
    /* the members' world ranks, for the watchdog's message (consecutive in loom's layouts) */
    int me = world->rank, lo = me, hi = me;
    int *all = malloc(sizeof(int) * (size_t)g->size);
    if (all) {
        loom_dist_allgather_bytes(g, &me, (int)sizeof me, all, "tensor-parallel group ranks");
        lo = hi = all[0];
        for (int i = 1; i < g->size; i++) lo = all[i] < lo ? all[i] : lo, hi = all[i] > hi ? all[i] : hi;
        free(all);
    }
    snprintf(r->name, sizeof r->name, "%s group of world ranks %d-%d", kind, lo, hi);
    *out = r;
    return LOOM_OK;
}

void loom_reducer_free(loom_reducer *r) {
    if (!r) return;
    loom_free(r->send);
    loom_free(r->recv);
    loom_free(r);
}

void loom_reducer_sum(void *ctx, float *buf, size_t n, const char *what) {
    loom_reducer *r = ctx;
    const int P = r->g.size;
    if (P == 1 || n == 0) return;
    LOOM_CHECK(n <= r->cap);
#ifdef LOOM_HAVE_MPI
    const size_t chunk = (n + (size_t)P - 1) / (size_t)P;
    /* a vector that does not split evenly travels padded */
    float *send = buf;
    if (chunk * (size_t)P != n) {
        memcpy(r->send, buf, sizeof(float) * n);
        memset(r->send + n, 0, sizeof(float) * (chunk * (size_t)P - n));
        send = r->send;
    }
    const double t0 = call_begin(r, what, "sum", n);
    exchange(r, send, r->recv, chunk, 0);
    sum_chunks(r, send, chunk);
    exchange(r, send, send, chunk, 1);
    call_end(r, t0, n, chunk, 2);
    if (send != buf) memcpy(buf, send, sizeof(float) * n);
#else
    (void)buf, (void)what;
#endif
}

void loom_reducer_scatter(void *ctx, float *buf, size_t chunk, const char *what) {
    loom_reducer *r = ctx;
    const int P = r->g.size;
    if (P == 1 || chunk == 0) return;
    LOOM_CHECK(chunk * (size_t)P <= r->cap);
#ifdef LOOM_HAVE_MPI
    const double t0 = call_begin(r, what, "reduce-scatter", chunk * P);
    exchange(r, buf, r->recv, chunk, 0);
    sum_chunks(r, buf, chunk); /* the same rank-order sum as loom_reducer_sum's */
    call_end(r, t0, chunk * P, chunk, 1);
#else
    (void)buf, (void)what;
#endif
}

void loom_reducer_gather(void *ctx, float *buf, size_t chunk, const char *what) {
    loom_reducer *r = ctx;
    const int P = r->g.size;
    if (P == 1 || chunk == 0) return;
#ifdef LOOM_HAVE_MPI
    const double t0 = call_begin(r, what, "all-gather", chunk * P);
    exchange(r, buf, buf, chunk, 1);
    call_end(r, t0, chunk * P, chunk, 1);
#else
    (void)buf, (void)what;
#endif
}

void loom_reducer_max(void *ctx, float *buf, size_t n, const char *what) {
    loom_reducer *r = ctx;
    if (r->g.size == 1 || n == 0) return;
#ifdef LOOM_HAVE_MPI
    const double t0 = call_begin(r, what, "maximum", n);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_MAX, loom_dist_mpi_comm(&r->g));
    call_end(r, t0, n, (double)n / r->g.size, 2); /* as a ring would */
#else
    (void)buf, (void)what;
#endif
}
