/* MPI start-up and the deterministic collectives. Every byte between processes moves
 * through MPI; nothing here talks to SLURM except to detect a misconfigured launch. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/dist_internal.h"
#include "loom/dist.h"

#ifdef LOOM_HAVE_MPI
#include <mpi.h>
#endif

/* The collective watchdog: each collective records what it is and when it started; a
 * thread checks once a second and, past the timeout, prints on this rank which
 * collective it waits in and exits, which makes the launcher end the job. */
static volatile int g_in_coll;
static volatile long g_coll_seq;
static volatile double g_coll_start;
static char g_coll_what[128];
static double g_timeout;
static int g_watch_rank;

static int g_serialized, g_want_multiple, g_multiple;

/* The communicators of the groups: 0 the world, 1 this process alone, then the layout's. */
#define MAX_COMMS 8
#ifdef LOOM_HAVE_MPI
static MPI_Comm g_comms[MAX_COMMS];
static int g_n_comms;
#define COMM(g) g_comms[(g)->comm]
MPI_Comm loom_dist_mpi_comm(const loom_group *g) { return COMM(g); }
#endif

loom_dist loom_dist_single(void) {
    loom_dist d = {.size = 1, .local_size = 1};
    d.world = d.dp = d.tp = d.pp = (loom_group){0, 1, 0};
    return d;
}

int loom_dist_thread_serialized(void) { return g_serialized; }
void loom_dist_want_thread_multiple(int on) { g_want_multiple = on; }
int loom_dist_thread_multiple(void) { return g_multiple; }

void loom_dist_coll_begin(const char *what, int bucket, int n_buckets, int stage, int partner) {
    char b[48] = "";
    if (n_buckets > 0) snprintf(b, sizeof b, ", bucket %d of %d", bucket + 1, n_buckets);
    if (partner == -2) snprintf(g_coll_what, sizeof g_coll_what, "%s", what); /* it names its peer */
    else if (partner >= 0) snprintf(g_coll_what, sizeof g_coll_what, "%s%s (stage %d, partner rank %d)", what, b, stage, partner);
    else snprintf(g_coll_what, sizeof g_coll_what, "%s%s (all ranks)", what, b);
    g_coll_seq++;
    g_coll_start = loom_now();
    __atomic_store_n(&g_in_coll, 1, __ATOMIC_RELEASE);
}

void loom_dist_coll_end(void) { __atomic_store_n(&g_in_coll, 0, __ATOMIC_RELEASE); }

__attribute__((unused)) /* MPI builds only */ static void coll_begin(const char *what, int stage, int partner) { loom_dist_coll_begin(what, 0, 0, stage, partner); }
__attribute__((unused)) static void coll_end(void) { loom_dist_coll_end(); }

static void *watchdog(void *arg) {
    (void)arg;
    for (;;) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        if (__atomic_load_n(&g_in_coll, __ATOMIC_ACQUIRE) && loom_now() - g_coll_start > g_timeout) {
            fprintf(stderr, "loom: rank %d: collective #%ld, %s, has not completed after %.0f s (--comm-timeout); "
                    "aborting the job\n", g_watch_rank, g_coll_seq, g_coll_what, g_timeout);
            fflush(stderr);
            _exit(1);
        }
    }
    return NULL;
}

void loom_dist_set_timeout(const loom_dist *d, double seconds) {
    static int started;
    g_timeout = seconds;
    g_watch_rank = d->rank;
    if (started || seconds <= 0 || d->size < 2) return;
    pthread_t t;
    if (pthread_create(&t, NULL, watchdog, NULL) == 0) {
        pthread_detach(t);
        started = 1;
    }
}

static int env_int(const char *name) {
    const char *v = getenv(name);
    return v ? atoi(v) : 0;
}

loom_status loom_dist_init(int *argc, char ***argv, loom_dist *d) {
    *d = loom_dist_single();
    int launcher = env_int("SLURM_NTASKS");
    const char *who = "SLURM_NTASKS";
    if (env_int("OMPI_COMM_WORLD_SIZE") > launcher) launcher = env_int("OMPI_COMM_WORLD_SIZE"), who = "OMPI_COMM_WORLD_SIZE";
    if (env_int("PMI_SIZE") > launcher) launcher = env_int("PMI_SIZE"), who = "PMI_SIZE";
#ifdef LOOM_HAVE_MPI
    int provided;
    /* SERIALIZED: the communication thread reduces gradient buckets during the backward
     * while the main thread makes no MPI call; MULTIPLE when asked (tensor parallelism:
     * the main thread's collectives run while the thread reduces) */
    MPI_Init_thread(argc, argv, g_want_multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED, &provided);
    g_serialized = provided >= MPI_THREAD_SERIALIZED;
    g_multiple = provided >= MPI_THREAD_MULTIPLE;
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_size(node, &d->local_size);
    MPI_Comm_free(&node);
    /* a process-level failure ends the job, it never hangs in a collective */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    g_comms[0] = MPI_COMM_WORLD, g_comms[1] = MPI_COMM_SELF, g_n_comms = 2;
    d->world = d->dp = (loom_group){d->rank, d->size, 0};
    d->tp = d->pp = (loom_group){0, 1, 1};
    if (d->size == 1 && launcher > 1)
        return loom_error(LOOM_ERR_ARG, "MPI sees 1 process but %s=%d: under srun use --mpi=pmix (Open MPI) or "
                          "--mpi=pmi2 (MPICH), or launch with mpirun", who, launcher);
#else
    (void)argc;
    (void)argv;
    if (launcher > 1)
        return loom_error(LOOM_ERR_ARG, "%s=%d, but this loom was built without MPI: install an MPI "
                          "(libopenmpi-dev) and rebuild, or run one process", who, launcher);
#endif
    return LOOM_OK;
}

loom_status loom_dist_layout(loom_dist *d, int tp, int pp) {
    if (tp < 1 || pp < 1 || d->size % (tp * pp))
        return loom_error(LOOM_ERR_ARG, "--tp %d x --pp %d does not divide the %d ranks", tp, pp, d->size);
    const int dp = d->size / (tp * pp), r = d->rank;
    const int tp_rank = r % tp, dp_rank = (r / tp) % dp, pp_rank = r / (tp * dp);
#ifdef LOOM_HAVE_MPI
    if (d->mpi && d->size > 1) {
        if (g_n_comms + 3 > MAX_COMMS) return loom_error(LOOM_ERR_ARG, "the process layout was made too often");
        /* color: what the members share; key: the order inside the group */
        MPI_Comm_split(MPI_COMM_WORLD, pp_rank * dp + dp_rank, tp_rank, &g_comms[g_n_comms]);
        d->tp = (loom_group){tp_rank, tp, g_n_comms++};
        MPI_Comm_split(MPI_COMM_WORLD, pp_rank * tp + tp_rank, dp_rank, &g_comms[g_n_comms]);
        d->dp = (loom_group){dp_rank, dp, g_n_comms++};
        MPI_Comm_split(MPI_COMM_WORLD, dp_rank * tp + tp_rank, pp_rank, &g_comms[g_n_comms]);
        d->pp = (loom_group){pp_rank, pp, g_n_comms++};
        return LOOM_OK;
    }
#endif
    (void)tp_rank, (void)dp_rank, (void)pp_rank;
    return LOOM_OK;
}

void loom_dist_finalize(const loom_dist *d) {
#ifdef LOOM_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#else
    (void)d;
#endif
}

void loom_dist_abort(const loom_dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
#ifdef LOOM_HAVE_MPI
    if (d->mpi && d->size > 1) {
        /* give the launcher a moment to forward this rank's last words before the kill */
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#else
    (void)d;
#endif
    exit(code);
}

const char *loom_dist_library(void) {
#ifdef LOOM_HAVE_MPI
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING + 16];
    int len = 0;
    MPI_Get_library_version(buf, &len);
    buf[strcspn(buf, "\n,")] = 0;
    return buf;
#else
    return "not in this build";
#endif
}

/* all[r*count ..] = mine of rank r, for int32s (kind 0), floats (1) or bytes (2) */
static void allgather(const loom_group *d, const void *mine, int count, void *all, int kind, const char *what) {
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        MPI_Datatype t = kind == 1 ? MPI_FLOAT : kind == 2 ? MPI_BYTE : MPI_INT32_T;
        coll_begin(what, 0, -1);
        MPI_Allgather(mine, count, t, all, count, t, COMM(d));
        coll_end();
        return;
    }
#endif
    (void)d, (void)what;
    memcpy(all, mine, (size_t)count * (kind == 2 ? 1 : 4));
}

void loom_dist_allgather(const loom_group *d, const float *mine, int count, float *all) {
    allgather(d, mine, count, all, 1, "loss allgather");
}

void loom_dist_allgather_i32(const loom_group *d, const int32_t *mine, int count, int32_t *all) {
    allgather(d, mine, count, all, 0, "input tokens allgather");
}

void loom_dist_allgather_bytes(const loom_group *d, const void *mine, int bytes, void *all, const char *what) {
    allgather(d, mine, bytes, all, 2, what);
}

loom_status loom_dist_gather_u32(const loom_group *d, const uint32_t *mine, size_t n, uint32_t **all, size_t *total) {
    *all = NULL;
    *total = 0;
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        if (n > (size_t)INT32_MAX) return loom_error(LOOM_ERR_ARG, "gather: %zu ids from one rank exceed MPI's int count", n);
        int cnt = (int)n, *counts = NULL, *displs = NULL;
        if (d->rank == 0) {
            counts = malloc(sizeof(int) * d->size);
            displs = malloc(sizeof(int) * d->size);
        }
        coll_begin("token gather", 0, -1);
        MPI_Gather(&cnt, 1, MPI_INT, counts, 1, MPI_INT, 0, COMM(d));
        size_t sum = 0;
        if (d->rank == 0) {
            for (int r = 0; r < d->size; r++) displs[r] = (int)sum, sum += (size_t)counts[r];
            if (sum > (size_t)INT32_MAX) LOOM_PANIC("gather of %zu ids exceeds MPI's int displacement", sum);
            *all = malloc(sizeof(uint32_t) * (sum ? sum : 1));
            if (!*all) LOOM_PANIC("out of memory gathering %zu token ids", sum);
        }
        MPI_Gatherv(mine, cnt, MPI_UINT32_T, *all, counts, displs, MPI_UINT32_T, 0, COMM(d));
        coll_end();
        free(counts);
        free(displs);
        *total = sum;
        return LOOM_OK;
    }
#endif
    (void)d;
    *all = malloc(sizeof(uint32_t) * (n ? n : 1));
    if (!*all) return loom_error(LOOM_ERR_NOMEM, "out of memory: %zu token ids", n);
    memcpy(*all, mine, sizeof(uint32_t) * n);
    *total = n;
    return LOOM_OK;
}

void loom_dist_bcast_u64(const loom_group *d, uint64_t *v) {
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        coll_begin("broadcast", 0, -1);
        MPI_Bcast(v, 1, MPI_UINT64_T, 0, COMM(d));
        coll_end();
    }
#else
    (void)d, (void)v;
#endif
}

double loom_dist_clock_offset(const loom_group *d, double *rtt) {
    *rtt = 0.0;
#ifdef LOOM_HAVE_MPI
    if (d->size < 2) return 0.0;
    enum { ROUNDS = 8, TAG = 7301 };
    double best = 1e30, offset = 0.0;
    coll_begin("clock offsets (trace alignment)", 0, 0);
    for (int r = 1; r < d->size; r++) /* one rank at a time, so rank 0 answers at once */
        for (int k = 0; k < ROUNDS; k++) {
            if (d->rank == r) {
                double t1 = loom_now(), t0;
                MPI_Send(&t1, 1, MPI_DOUBLE, 0, TAG, COMM(d));
                MPI_Recv(&t0, 1, MPI_DOUBLE, 0, TAG, COMM(d), MPI_STATUS_IGNORE);
                const double t2 = loom_now();
                if (t2 - t1 < best) best = t2 - t1, offset = t0 - 0.5 * (t1 + t2);
            } else if (d->rank == 0) {
                double t;
                MPI_Recv(&t, 1, MPI_DOUBLE, r, TAG, COMM(d), MPI_STATUS_IGNORE);
                t = loom_now();
                MPI_Send(&t, 1, MPI_DOUBLE, r, TAG, COMM(d));
            }
        }
    coll_end();
    if (d->rank == 0) return 0.0;
    *rtt = best;
    return offset;
#else
    (void)d;
    return 0.0;
#endif
}

/* The lowest rank with `bad` set, or -1 (collective). */
static int first_bad_rank(const loom_group *d, int bad) {
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        int who = bad ? d->rank : d->size, low = d->size;
        coll_begin("stop/error agreement allreduce", 0, -1);
        MPI_Allreduce(&who, &low, 1, MPI_INT, MPI_MIN, COMM(d));
        coll_end();
        return low < d->size ? low : -1;
    }
#endif
    return bad ? d->rank : -1;
}

#ifdef LOOM_HAVE_MPI
static int mpi_err(char *msg, size_t cap, const char *path, const char *what, int rc) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, s, &len);
    /* one line: MPICH's strings carry an error stack on further lines */
    char *stack = strstr(s, " , error stack:");
    if (stack) memmove(stack, stack + strlen(" , error stack:"), strlen(stack + strlen(" , error stack:")) + 1);
    for (char *c = s; *c; c++)
        if (*c == '\n') *c = ';';
    snprintf(msg, cap, "%s: %s failed: %s", path, what, s);
    return 1;
}

/* The collective writes of loom_dist_write_file on the open file: rounds of at most
 * 1 GiB per rank (MPI counts are int), as many on every rank; after a failure a rank
 * goes on with empty writes so that no other rank waits for it. 1 on failure (msg). */
static int write_pieces(const loom_group *d, MPI_File fh, const char *path, const loom_file_piece *p, int n, char *msg,
                        size_t cap) {
    int bad = 0, rc;
    if ((rc = MPI_File_set_size(fh, 0)) != MPI_SUCCESS) bad = mpi_err(msg, cap, path, "truncate", rc);
    const size_t chunk = (size_t)1 << 30;
    long mine = 0, rounds = 0;
    for (int i = 0; i < n; i++) mine += (long)((p[i].bytes + chunk - 1) / chunk);
    MPI_Allreduce(&mine, &rounds, 1, MPI_LONG, MPI_MAX, COMM(d));
    int i = 0;
    size_t done = 0;
    for (long k = 0; k < rounds; k++) {
        while (i < n && done == p[i].bytes) i++, done = 0;
        const int cnt = i < n && !bad ? (int)(p[i].bytes - done < chunk ? p[i].bytes - done : chunk) : 0;
        const char *src = i < n ? (const char *)p[i].data + done : NULL;
        MPI_Status status;
        rc = MPI_File_write_at_all(fh, (MPI_Offset)(i < n ? p[i].offset + done : 0), src, cnt, MPI_BYTE, &status);
        int wrote = 0;
        if (rc == MPI_SUCCESS) MPI_Get_count(&status, MPI_BYTE, &wrote);
        if (!bad && rc != MPI_SUCCESS) bad = mpi_err(msg, cap, path, "write", rc);
        else if (!bad && wrote != cnt)
            bad = 1, snprintf(msg, cap, "%s: short write (%d of %d bytes; disk full?)", path, wrote, cnt);
        done += (size_t)cnt;
    }
    if ((rc = MPI_File_sync(fh)) != MPI_SUCCESS && !bad) bad = mpi_err(msg, cap, path, "sync", rc);
    return bad;
}
#endif

loom_status loom_dist_write_file(const loom_group *d, const char *path, const loom_file_piece *p, int n) {
#ifdef LOOM_HAVE_MPI
    char msg[1024] = "";
    int bad = 0, rc;
    MPI_File fh;
    coll_begin("checkpoint file open (MPI-IO)", 0, -1);
    rc = MPI_File_open(COMM(d), path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh);
    coll_end();
    if (rc != MPI_SUCCESS) bad = mpi_err(msg, sizeof msg, path, "MPI_File_open", rc);
    int who = first_bad_rank(d, bad);
    if (who < 0) {
        coll_begin("checkpoint write (MPI-IO)", 0, -1);
        bad = write_pieces(d, fh, path, p, n, msg, sizeof msg);
        if ((rc = MPI_File_close(&fh)) != MPI_SUCCESS && !bad) bad = mpi_err(msg, sizeof msg, path, "close", rc);
        coll_end();
        who = first_bad_rank(d, bad);
    }
    if (who < 0) return LOOM_OK;
    if (who == d->rank) return loom_error(LOOM_ERR_IO, "%s", msg);
    return loom_error(LOOM_ERR_IO, "%s: writing failed on rank %d", path, who);
#else
    (void)d, (void)p, (void)n;
    return loom_error(LOOM_ERR_ARG, "%s: writing from several ranks needs an MPI build", path);
#endif
}

static int g_failed_together;
void loom_dist_set_failed_together(void) { g_failed_together = 1; }
int loom_dist_failed_together(void) { return g_failed_together; }

void loom_agree_put(loom_agree *a, const char *name, const char *fmt, ...) {
    char full[4200];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(full, sizeof full, fmt, ap);
    va_end(ap);
    LOOM_CHECK(a->n < LOOM_AGREE_MAX);
    char *v = a->val[a->n];
    memset(v, 0, LOOM_AGREE_CHARS);
    if (len < LOOM_AGREE_CHARS) memcpy(v, full, (size_t)len);
    else snprintf(v, LOOM_AGREE_CHARS, "%.44s... crc %08x", full, (unsigned)loom_crc32c(0, full, strlen(full)));
    a->name[a->n++] = name;
}

loom_status loom_dist_agree(const loom_group *d, const loom_agree *a, const char *what) {
    if (d->size < 2) return LOOM_OK;
    const size_t row = sizeof a->val;
    char *all = malloc((size_t)d->size * row);
    if (!all) return loom_error(LOOM_ERR_NOMEM, "out of memory comparing the ranks' %s", what); /* the job aborts */
    loom_dist_allgather_bytes(d, a->val, (int)row, all, "start-up agreement of the ranks' runs");
    loom_status st = LOOM_OK;
    for (int k = 0; k < a->n && !st; k++)
        for (int r = 1; r < d->size && !st; r++) {
            const char *v0 = all + (size_t)k * LOOM_AGREE_CHARS, *vr = all + (size_t)r * row + (size_t)k * LOOM_AGREE_CHARS;
            if (memcmp(v0, vr, LOOM_AGREE_CHARS))
                st = loom_error(LOOM_ERR_ARG, "the ranks were given different %s: %s is '%.*s' on rank 0 but '%.*s' on "
                                "rank %d (every rank needs the same)", what, a->name[k], LOOM_AGREE_CHARS, v0,
                                LOOM_AGREE_CHARS, vr, r);
        }
    free(all);
    if (st) loom_dist_set_failed_together();
    return st;
}

int loom_dist_any(const loom_group *d, int flag) { return first_bad_rank(d, flag != 0) >= 0; }

size_t loom_dist_shard_mid(size_t a, size_t b, size_t base, size_t block) {
    const size_t mid = (base + a + (b - a) / 2) / block * block;
    return mid > base + a ? mid - base : a;
}

void loom_dist_shard_at(int rank, int size, size_t base, size_t n, size_t block, size_t *lo, size_t *hi) {
    size_t a = 0, b = n;
    for (int j = 1; j < size; j <<= 1) {
        size_t mid = loom_dist_shard_mid(a, b, base, block);
        if (rank & j) a = mid;
        else b = mid;
    }
    *lo = a;
    *hi = b;
}

void loom_dist_shard(int rank, int size, size_t n, size_t block, size_t *lo, size_t *hi) {
    loom_dist_shard_at(rank, size, 0, n, block, lo, hi);
}

/* a non-blocking send (send = 1) or receive of n floats */
static void p2p_post(int send, const loom_group *g, const float *buf, size_t n, int peer, int tag, loom_p2p *r) {
#ifdef LOOM_HAVE_MPI
    MPI_Request q;
    LOOM_CHECK(sizeof q <= sizeof r->h && n <= 0x7fffffff && !r->active);
    if (send) MPI_Isend(buf, (int)n, MPI_FLOAT, peer, tag, COMM(g), &q);
    else MPI_Irecv((float *)buf, (int)n, MPI_FLOAT, peer, tag, COMM(g), &q);
    memcpy(&r->h, &q, sizeof q);
    r->active = 1;
#else
    (void)send, (void)g, (void)buf, (void)n, (void)peer, (void)tag, (void)r;
    LOOM_CHECK(!"point-to-point without MPI");
#endif
}

void loom_p2p_isend(const loom_group *g, const float *buf, size_t n, int peer, int tag, loom_p2p *r) {
    p2p_post(1, g, buf, n, peer, tag, r);
}

void loom_p2p_irecv(const loom_group *g, float *buf, size_t n, int peer, int tag, loom_p2p *r) {
    p2p_post(0, g, buf, n, peer, tag, r);
}

void loom_p2p_wait(loom_p2p *r, const char *what) {
    if (!r->active) return;
#ifdef LOOM_HAVE_MPI
    MPI_Request q;
    memcpy(&q, &r->h, sizeof q);
    MPI_Status st;
    loom_dist_coll_begin(what, 0, 0, 0, -2);
    MPI_Wait(&q, &st);
    loom_dist_coll_end();
#else
    (void)what;
#endif
    r->active = 0;
}

void loom_dist_bcast_floats(const loom_group *d, float *v, int n, int root, const char *what) {
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        coll_begin(what, 0, -1);
        MPI_Bcast(v, n, MPI_FLOAT, root, COMM(d));
        coll_end();
    }
#else
    (void)d, (void)v, (void)n, (void)root, (void)what;
#endif
}

void loom_dist_sum_doubles(const loom_group *d, double *v, int count) {
#ifdef LOOM_HAVE_MPI
    if (d->size > 1) {
        coll_begin("grad-norm partials allreduce", 0, -1);
        MPI_Allreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, MPI_SUM, COMM(d));
        coll_end();
    }
#else
    (void)d, (void)v, (void)count;
#endif
}
