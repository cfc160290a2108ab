/* Checkpoint save (atomic commit, CRC32C per tensor, pruning), lookup with fallback,
 * verification, and restore. Not here: the decision when to save (train.c) and
 * writing from several ranks at once (MPI-IO, later). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/ckpt_runs.h"
#include "io/json.h"
#include "loom/checkpoint.h"

#define CKPT_PREFIX "step_"
#define CKPT_SUFFIX ".safetensors"

/* fsync a directory so that a rename inside it is durable. */
static loom_status sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0) return loom_error(LOOM_ERR_IO, "%s: fsync failed: %s", dir, strerror(e));
    return LOOM_OK;
}

/* Is `name` exactly step_NNNNNNNN.safetensors? Returns the step or -1. */
static long ckpt_step_of(const char *name) {
    size_t n = strlen(name), lp = strlen(CKPT_PREFIX), ls = strlen(CKPT_SUFFIX);
    if (n <= lp + ls || strncmp(name, CKPT_PREFIX, lp) || strcmp(name + n - ls, CKPT_SUFFIX)) return -1;
    long step = 0;
    for (size_t i = lp; i < n - ls; i++) {
        if (name[i] < '0' || name[i] > '9' || step > 100000000000L) return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

static int cmp_long_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

/* The steps of all step_* files in dir, newest first. Caller frees *steps. */
static int list_steps(const char *dir, long **steps) {
    *steps = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s = ckpt_step_of(e->d_name);
        if (s < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            long *p = realloc(*steps, cap * sizeof(long));
            if (!p) break;
            *steps = p;
        }
        (*steps)[n++] = s;
    }
    closedir(d);
    if (n > 1) qsort(*steps, n, sizeof(long), cmp_long_desc);
    return n;
}

/* The scalar metadata of a checkpoint, collected before writing so that the metadata
 * can carry a checksum of itself. */
typedef struct meta_list {
    int n;
    const char *key[48];
    char val[48][40];
} meta_list;

static void meta_int(meta_list *m, const char *key, long long v) {
    m->key[m->n] = key;
    snprintf(m->val[m->n++], sizeof m->val[0], "%lld", v);
}

static void meta_float(meta_list *m, const char *key, float v) {
    m->key[m->n] = key;
    snprintf(m->val[m->n++], sizeof m->val[0], "%.9g", v); /* %.9g round-trips every float exactly */
}

/* CRC32C over "key\0value\0" of every metadata entry except crc32c_meta itself, in
 * key order, so that a damaged step count or learning rate is caught like damaged
 * tensor data. */
typedef struct kv { const char *k, *v; } kv;
static int cmp_kv(const void *a, const void *b) { return strcmp(((const kv *)a)->k, ((const kv *)b)->k); }

/* Sorts the pairs by key (in place) and checksums them, skipping crc32c_meta. */
static uint32_t meta_crc_pairs(kv *p, size_t n) {
    qsort(p, n, sizeof *p, cmp_kv);
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(p[i].k, "crc32c_meta")) continue;
        crc = loom_crc32c(crc, p[i].k, strlen(p[i].k) + 1);
        crc = loom_crc32c(crc, p[i].v, strlen(p[i].v) + 1);
    }
    return crc;
}

static uint32_t meta_crc(const loom_st_file *f) {
    size_t n = loom_st_meta_count(f);
    kv *p = malloc(sizeof(kv) * (n + 1));
    if (!p) return 0;
    for (size_t i = 0; i < n; i++) loom_st_meta_at(f, i, &p[i].k, &p[i].v);
    uint32_t crc = meta_crc_pairs(p, n);
    free(p);
    return crc;
}

/* Writes `text` to dir/name atomically (tmp, fsync, rename, fsync dir). */
static loom_status write_small_atomic(const char *dir, const char *name, const char *text) {
    char tmp[4200], path[4096];
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    int e = errno;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        return loom_error(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return sync_dir(dir);
}

/* The writer of a checkpoint: tensors (data from bufs: params, m, v, each the whole
 * flat buffer), their CRCs and the metadata. */
static loom_status ckpt_writer(const loom_gpt *g, const float *const bufs[3], const uint32_t *crc,
                               const loom_ckpt_state *s, loom_st_writer **out) {
    const int nt = g->sizes.n_tensors;
    loom_st_writer *w = loom_st_writer_init();
    if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory preparing a checkpoint");
    loom_status st = LOOM_OK;
    loom_json_buf crcs = {0};
    loom_json_buf_puts(&crcs, "{");
    static const char *prefix[3] = {"", "optim.m.", "optim.v."};
    for (int k = 0; k < 3 * nt && !st; k++) {
        const loom_param_info *pi = &g->params_info[k % nt];
        char tname[96];
        snprintf(tname, sizeof tname, "%s%s", prefix[k / nt], pi->name);
        st = loom_st_writer_add(w, tname, LOOM_DTYPE_F32, pi->ndim, pi->full, bufs[k / nt] + pi->offset);
        loom_json_buf_printf(&crcs, "%s\"%s\": \"%08" PRIx32 "\"", k ? ", " : "", tname, crc[k]);
    }
    loom_json_buf_puts(&crcs, "}");
    if (!st && crcs.failed) st = loom_error(LOOM_ERR_NOMEM, "out of memory preparing a checkpoint");
    meta_list m = {0};
    const char *ckeys[LOOM_CONFIG_KEYS];
    char cvals[LOOM_CONFIG_KEYS][32];
    const int nc = loom_gpt_config_to_meta(&g->cfg, ckeys, cvals);
    for (int i = 0; i < nc; i++) {
        m.key[m.n] = ckeys[i];
        snprintf(m.val[m.n++], sizeof m.val[0], "%s", cvals[i]);
    }
    meta_int(&m, "step", s->step);
    meta_int(&m, "cursor", (long long)s->cursor);
    meta_int(&m, "epoch", (long long)s->epoch);
    meta_int(&m, "adam_t", s->adam_t);
    meta_int(&m, "seed", (long long)s->seed);
    meta_int(&m, "batch", s->batch);
    meta_int(&m, "seq_len", s->seq_len);
    meta_int(&m, "total_batch_tokens", s->total_batch_tokens);
    meta_int(&m, "steps", s->steps);
    meta_int(&m, "shuffle", s->shuffle);
    meta_int(&m, "threads", s->threads);
    meta_int(&m, "warmup", s->optim.warmup);
    meta_float(&m, "lr", s->optim.lr);
    meta_float(&m, "min_lr", s->optim.min_lr);
    meta_float(&m, "beta1", s->optim.beta1);
    meta_float(&m, "beta2", s->optim.beta2);
    meta_float(&m, "eps", s->optim.eps);
    meta_float(&m, "weight_decay", s->optim.weight_decay);
    meta_float(&m, "clip", s->optim.clip);
    const char *fixed[][2] = {{"format", "pt"}, {"loom_checkpoint", LOOM_CKPT_FORMAT}, {"producer", "loom " LOOM_VERSION},
                              {"crc32c", crcs.data}, {"data", s->data ? s->data : ""},
                              {"rng", "counter-based (splitmix64 of seed, index): the seed is the whole state"}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && !st; i++) st = loom_st_writer_meta(w, fixed[i][0], fixed[i][1]);
    for (int i = 0; i < m.n && !st; i++) st = loom_st_writer_meta(w, m.key[i], m.val[i]);
    if (!st) { /* checksum the metadata exactly as a reader will enumerate it */
        kv pairs[64];
        size_t n = 0;
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) pairs[n++] = (kv){fixed[i][0], fixed[i][1]};
        for (int i = 0; i < m.n; i++) pairs[n++] = (kv){m.key[i], m.val[i]};
        char hex[16];
        snprintf(hex, sizeof hex, "%08" PRIx32, meta_crc_pairs(pairs, n));
        st = loom_st_writer_meta(w, "crc32c_meta", hex);
    }
    loom_json_buf_free(&crcs);
    if (st) {
        loom_st_writer_free(w);
        return st;
    }
    *out = w;
    return LOOM_OK;
}

/* After the temporary file is complete and synced: rename it into place, sync the
 * directory, point `latest` at it, then prune old and stale files. */
static loom_status ckpt_commit(const char *dir, const char *tmp, int keep, long step, char *path_out, size_t cap,
                               double *bytes) {
    char name[64], path[4096];
    snprintf(name, sizeof name, CKPT_PREFIX "%08ld" CKPT_SUFFIX, step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* fault injection for the crash tests: widen the window between the complete
     * temporary file and its commit, so a kill lands there */
    const char *pause = getenv("LOOM_TEST_CKPT_PAUSE_MS");
    if (pause) {
        long ms = atol(pause);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    loom_status st = LOOM_OK;
    if (rename(tmp, path) != 0) {
        st = loom_error(LOOM_ERR_IO, "%s: cannot commit: %s", path, strerror(errno));
        unlink(tmp);
        return st;
    }
    if ((st = sync_dir(dir))) return st;
    char line[96];
    snprintf(line, sizeof line, "%s\n", name);
    if ((st = write_small_atomic(dir, "latest", line))) return st;
    struct stat sb;
    if (bytes) *bytes = stat(path, &sb) == 0 ? (double)sb.st_size : 0.0;
    if (path_out) snprintf(path_out, cap, "%s", path);
    /* prune only after the new checkpoint and `latest` are durable */
    long *steps;
    int n = list_steps(dir, &steps);
    for (int i = keep > 0 ? keep : 1; i < n; i++) {
        if (steps[i] == step) continue;
        char old[4096];
        snprintf(old, sizeof old, "%s/" CKPT_PREFIX "%08ld" CKPT_SUFFIX, dir, steps[i]);
        unlink(old);
    }
    free(steps);
    /* and temporary files that a killed save left behind */
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        int ours = !strncmp(e->d_name, "." CKPT_PREFIX, strlen("." CKPT_PREFIX)) || !strncmp(e->d_name, ".latest.", 8);
        if (ours && n > 4 && !strcmp(e->d_name + n - 4, ".tmp")) {
            char old[4400];
            snprintf(old, sizeof old, "%s/%s", dir, e->d_name);
            unlink(old);
        }
    }
    if (d) closedir(d);
    return LOOM_OK;
}

/* The temporary name of a save: the writer's pid in it, so that no two processes ever
 * write one file (the directory lock keeps a second run out as well). */
loom_status loom_ckpt_dir_claim(const char *dir, int resuming, int overwrite, int *lock_fd) {
    char path[4200];
    int fd;
    loom_status st = loom_dir_lock(dir, "--ckpt-dir", &fd);
    if (st) return st;
    long *steps;
    int n = list_steps(dir, &steps);
    if (n > 0 && !resuming && !overwrite) {
        long newest = steps[0];
        free(steps);
        loom_dir_unlock(fd);
        return loom_error(LOOM_ERR_ARG, "--ckpt-dir: %s holds %d checkpoint(s) of an earlier run (newest: step %ld); "
                          "continue it with --resume, or pass --overwrite to discard them", dir, n, newest);
    }
    if (n > 0 && !resuming) { /* --overwrite: a fresh run starts from an empty directory */
        for (int i = 0; i < n; i++) {
            snprintf(path, sizeof path, "%s/" CKPT_PREFIX "%08ld" CKPT_SUFFIX, dir, steps[i]);
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/latest", dir);
        unlink(path);
    }
    free(steps);
    *lock_fd = fd;
    return LOOM_OK;
}

static void tmp_path(char *tmp, size_t cap, const char *dir, long step, uint64_t pid) {
    snprintf(tmp, cap, "%s/." CKPT_PREFIX "%08ld" CKPT_SUFFIX ".%llu.tmp", dir, step, (unsigned long long)pid);
}

loom_status loom_ckpt_save(const char *dir, int keep, const loom_gpt *g, const loom_adamw *opt,
                           const loom_ckpt_state *s, char *path_out, size_t cap, double *bytes) {
    char tmp[4200];
    tmp_path(tmp, sizeof tmp, dir, s->step, (uint64_t)getpid());
    const int nt = g->sizes.n_tensors;
    uint32_t *crc = malloc(sizeof(uint32_t) * 3 * nt);
    if (!crc) return loom_error(LOOM_ERR_NOMEM, "out of memory preparing a checkpoint");
    const float *const bufs[3] = {g->params, opt->m, opt->v};
    /* CRC32C of every tensor, in parallel over tensors (each value is fixed) */
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < 3 * nt; k++) {
        const loom_param_info *pi = &g->params_info[k % nt];
        crc[k] = loom_crc32c(0, bufs[k / nt] + pi->offset, pi->numel * sizeof(float));
    }
    loom_st_writer *w = NULL;
    loom_status st = ckpt_writer(g, bufs, crc, s, &w);
    free(crc);
    if (!st) st = loom_st_writer_write_ex(w, tmp, 1);
    loom_st_writer_free(w);
    if (st) {
        unlink(tmp);
        return st;
    }
    return ckpt_commit(dir, tmp, keep, s->step, path_out, cap, bytes);
}

long ckpt_tensor_runs(const loom_param_info *pi, int k, size_t base, size_t lo, size_t hi, ckpt_run *out) {
    if (pi->ndim > 2 || !pi->here) return 0; /* another pipeline stage's */
    const loom_slice *sl = &pi->slice;
    const size_t w = (size_t)sl->width, row = (size_t)sl->parts * w, cols = (size_t)(pi->ndim == 2 ? pi->full[1] : pi->full[0]);
    const size_t local = (size_t)sl->rows * row; /* beyond: padding rows, in no file */
    if (hi <= base || lo >= base + local) return 0; /* none of it in [lo, hi) */
    const size_t a = lo > base ? lo - base : 0, b = hi < base + local ? hi - base : local;
    if (row == cols) { /* whole rows: one run */
        if (out) *out = (ckpt_run){k, base + a, b - a, (uint64_t)sl->row0 * cols + a};
        return 1;
    }
    long n = 0; /* columns: one run per row and part */
    for (size_t q = a / w; q * w < b; q++) {
        const size_t r = q / (size_t)sl->parts, p = q % (size_t)sl->parts;
        const size_t q0 = q * w > a ? q * w : a, q1 = (q + 1) * w < b ? (q + 1) * w : b;
        const uint64_t col = (uint64_t)sl->col0 + p * (uint64_t)sl->part_stride + (q0 - q * w);
        if (out) out[n] = (ckpt_run){k, base + q0, q1 - q0, ((uint64_t)sl->row0 + r) * cols + col};
        n++;
    }
    return n;
}


/* Every run of the three buffers (parameters, m, v) a rank holds, in tensor order:
 * shard [lo, hi) of each of its tensors' parts; a replicated tensor only from
 * tensor-parallel rank 0 (the others hold the same values). */
static long ckpt_runs(const loom_gpt *g, size_t lo, size_t hi, ckpt_run *out) {
    const int nt = g->sizes.n_tensors;
    long n = 0;
    for (int k = 0; k < 3 * nt; k++) {
        const loom_param_info *pi = &g->params_info[k % nt];
        if (pi->split_dim < 0 && g->tp.rank != 0) continue;
        n += ckpt_tensor_runs(pi, k, pi->offset, lo, hi, out ? out + n : NULL);
    }
    return n;
}

static int cmp_run(const void *x, const void *y) {
    const uint32_t *a = x, *b = y; /* packed runs: k, file_at (hi, lo), n (hi, lo), crc */
    for (int i = 0; i < 3; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* Rank 0: every rank's runs (packed, 6 words each) sorted into file order must tile
 * each tensor exactly once; their CRC32Cs combine into the tensor's. */
static loom_status combine_runs(const loom_gpt *g, uint32_t *all, size_t words, uint32_t *crc) {
    const int nt = g->sizes.n_tensors;
    const size_t nr = words / 6;
    qsort(all, nr, 6 * sizeof(uint32_t), cmp_run);
    size_t i = 0;
    for (int k = 0; k < 3 * nt; k++) {
        const loom_param_info *pi = &g->params_info[k % nt];
        uint64_t covered = 0;
        crc[k] = 0;
        for (; i < nr && all[6 * i] == (uint32_t)k; i++) {
            const uint32_t *r = all + 6 * i;
            const uint64_t at = (uint64_t)r[1] << 32 | r[2], n = (uint64_t)r[3] << 32 | r[4];
            if (at != covered) break;
            crc[k] = covered ? loom_crc32c_combine(crc[k], r[5], n * sizeof(float)) : r[5];
            covered += n;
        }
        if (covered != pi->full_numel)
            return loom_error(LOOM_ERR_ARG, "checkpoint: the ranks' parts of tensor %d ('%s') cover %llu of its %zu "
                              "elements or overlap (a layout bug)", k, pi->name, (unsigned long long)covered,
                              pi->full_numel);
    }
    return LOOM_OK;
}

loom_status loom_ckpt_save_dist(const loom_group *d, const loom_group *dp, const char *dir, int keep,
                                const loom_gpt *g, const loom_adamw *opt, const loom_ckpt_state *s, char *path_out,
                                size_t cap, double *bytes) {
    const size_t n = g->sizes.n_params, n_full = g->sizes.n_params_full;
    const int nt = g->sizes.n_tensors, lead = d->rank == 0;
    size_t lo, hi;
    loom_dist_shard_at(dp->rank, dp->size, g->sizes.stage_base, n, LOOM_NORM_BLOCK, &lo, &hi);
    LOOM_CHECK(opt->lo <= lo && hi <= opt->hi);
    char tmp[4200];
    uint64_t pid = (uint64_t)getpid(); /* rank 0's names the file of all ranks */
    loom_dist_bcast_u64(d, &pid);
    tmp_path(tmp, sizeof tmp, dir, s->step, pid);
    /* 1. each rank: its runs of every tensor and their CRC32Cs; rank 0 gathers them,
     * checks that they tile every tensor and combines the CRCs in file order */
    const float *buf[3] = {g->params, opt->m - opt->lo, opt->v - opt->lo}; /* element i of the model's layout */
    const long nr = ckpt_runs(g, lo, hi, NULL);
    LOOM_CHECK(nr >= 0);
    ckpt_run *runs = malloc(sizeof(ckpt_run) * (nr ? nr : 1));
    uint32_t *mine = malloc(sizeof(uint32_t) * 6 * (nr ? nr : 1)), *all = NULL, *crc = NULL;
    loom_file_piece *p = malloc(sizeof(loom_file_piece) * (nr + 1));
    if (!runs || !mine || !p) {
        free(runs), free(mine), free(p);
        return loom_error(LOOM_ERR_NOMEM, "out of memory preparing a checkpoint");
    }
    ckpt_runs(g, lo, hi, runs);
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < nr; i++) {
        const ckpt_run *r = &runs[i];
        const uint32_t c = loom_crc32c(0, buf[r->k / nt] + r->at, r->n * sizeof(float));
        const uint32_t w[6] = {(uint32_t)r->k, (uint32_t)(r->file_at >> 32), (uint32_t)r->file_at,
                               (uint32_t)((uint64_t)r->n >> 32), (uint32_t)r->n, c};
        memcpy(mine + 6 * i, w, sizeof w);
    }
    size_t total = 0;
    loom_status st = loom_dist_gather_u32(d, mine, 6 * (size_t)nr, &all, &total);
    free(mine);
    unsigned char *head = NULL;
    size_t hlen = 0;
    if (!st && lead) {
        crc = calloc(3 * (size_t)nt, sizeof *crc);
        if (!crc) st = loom_error(LOOM_ERR_NOMEM, "out of memory preparing a checkpoint");
        if (!st) st = combine_runs(g, all, total, crc);
        if (!st) { /* only the header is built from this writer: its data pointers are never read */
            const float *const placeholder[3] = {g->params, g->params, g->params};
            loom_st_writer *w = NULL;
            st = ckpt_writer(g, placeholder, crc, s, &w);
            if (!st) st = loom_st_writer_prefix(w, &head, &hlen);
            loom_st_writer_free(w);
        }
        unlink(tmp); /* a stale one from a killed save */
    }
    free(all);
    free(crc);
    /* 2. all ranks write at once: rank 0 the header, every rank its runs at their
     * offsets behind it (tensor k's data begins at element k/nt * n_full + its offset in
     * the whole model) */
    if (loom_dist_any(d, st != LOOM_OK)) {
        free(head), free(runs), free(p);
        return st ? st : loom_error(LOOM_ERR_IO, "%s: rank 0 could not prepare the checkpoint", tmp);
    }
    uint64_t base = hlen;
    loom_dist_bcast_u64(d, &base);
    int np = 0;
    if (lead) p[np++] = (loom_file_piece){head, hlen, 0};
    for (long i = 0; i < nr; i++) {
        const ckpt_run *r = &runs[i];
        const uint64_t el = (uint64_t)(r->k / nt) * n_full + g->params_info[r->k % nt].full_offset + r->file_at;
        p[np++] = (loom_file_piece){buf[r->k / nt] + r->at, r->n * sizeof(float), base + sizeof(float) * el};
    }
    st = loom_dist_write_file(d, tmp, p, np);
    free(head), free(runs), free(p);
    /* 3. rank 0 commits; every rank learns the outcome */
    if (!st && lead) st = ckpt_commit(dir, tmp, keep, s->step, path_out, cap, bytes);
    if (st && lead) unlink(tmp);
    if (loom_dist_any(d, st != LOOM_OK) && !st)
        st = loom_error(LOOM_ERR_IO, "%s: rank 0 could not commit the checkpoint", tmp);
    return st;
}

loom_status loom_ckpt_verify(const loom_st_file *f) {
    const char *path = loom_st_path(f);
    const char *fmt = loom_st_meta(f, "loom_checkpoint");
    if (!fmt) return loom_error(LOOM_ERR_FORMAT, "%s: not a loom checkpoint (no loom_checkpoint metadata)", path);
    if (strcmp(fmt, LOOM_CKPT_FORMAT))
        return loom_error(LOOM_ERR_FORMAT, "%s: checkpoint format %s is not supported (this loom reads %s)", path,
                          fmt, LOOM_CKPT_FORMAT);
    const char *crcs = loom_st_meta(f, "crc32c"), *mcrc = loom_st_meta(f, "crc32c_meta");
    if (!crcs || !mcrc) return loom_error(LOOM_ERR_FORMAT, "%s: checkpoint without crc32c metadata", path);
    char want_meta[16];
    snprintf(want_meta, sizeof want_meta, "%08" PRIx32, meta_crc(f));
    if (strcmp(mcrc, want_meta))
        return loom_error(LOOM_ERR_FORMAT, "%s: metadata CRC32C %s does not match the stored %s (the header is corrupt)",
                          path, want_meta, mcrc);
    loom_json_error jerr;
    loom_json_doc *doc = loom_json_parse(crcs, strlen(crcs), NULL, &jerr);
    if (!doc) return loom_error(LOOM_ERR_FORMAT, "%s: crc32c metadata: %s at byte %zu", path, jerr.msg, jerr.offset);
    const loom_json *root = loom_json_root(doc);
    loom_status st = LOOM_OK;
    if (root->type != LOOM_JSON_OBJECT || loom_json_len(root) != loom_st_count(f))
        st = loom_error(LOOM_ERR_FORMAT, "%s: crc32c metadata does not list the file's %zu tensors", path,
                        loom_st_count(f));
    for (size_t i = 0; !st && i < loom_st_count(f); i++) {
        const loom_st_tensor *t = loom_st_at(f, i);
        const loom_json *v = loom_json_get(root, t->name);
        const char *hex = v ? loom_json_str(v) : NULL;
        char *end = NULL;
        unsigned long want = hex ? strtoul(hex, &end, 16) : 0;
        if (!hex || !*hex || *end || strlen(hex) != 8) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' has no valid CRC32C in the metadata", path, t->name);
            break;
        }
        uint32_t got = loom_crc32c(0, loom_st_data(f, t), (size_t)(t->end - t->begin));
        if (got != (uint32_t)want)
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': CRC32C %08" PRIx32 " does not match the stored %08lx "
                            "(the file is corrupt)", path, t->name, got, want);
    }
    loom_json_free(doc);
    return st;
}

/* Opens and verifies one file, or returns the error. */
static loom_status open_verified(const char *path, loom_st_file **out) {
    loom_st_file *f;
    loom_status st = loom_st_open(path, &f);
    if (st) return st;
    if ((st = loom_ckpt_verify(f))) {
        loom_st_close(f);
        return st;
    }
    *out = f;
    return LOOM_OK;
}

loom_status loom_ckpt_open(const char *dir, const char *file, loom_st_file **out) {
    *out = NULL;
    if (file) return open_verified(file, out);
    char latest[4096], why[5200] = "", path[4200];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *fp = fopen(latest, "r");
    if (fp) {
        char name[256] = "";
        int ok = fgets(name, sizeof name, fp) != NULL;
        fclose(fp);
        name[strcspn(name, "\r\n")] = 0;
        if (!ok || ckpt_step_of(name) < 0) {
            snprintf(why, sizeof why, "%s does not name a step_*.safetensors file", latest);
        } else {
            snprintf(path, sizeof path, "%s/%s", dir, name);
            if (open_verified(path, out) == LOOM_OK) return LOOM_OK;
            snprintf(why, sizeof why, "%s", loom_error_msg());
        }
    } else {
        snprintf(why, sizeof why, "%s: %s", latest, strerror(errno));
    }
    long *steps;
    int n = list_steps(dir, &steps);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/" CKPT_PREFIX "%08ld" CKPT_SUFFIX, dir, steps[i]);
        if (open_verified(path, out) == LOOM_OK) {
            fprintf(stderr, "loom: warning: %s; resuming from %s, the newest intact checkpoint\n", why, path);
            free(steps);
            return LOOM_OK;
        }
        fprintf(stderr, "loom: warning: skipping %s\n", loom_error_msg());
    }
    free(steps);
    return loom_error(LOOM_ERR_FORMAT, "--resume: no intact checkpoint in %s (%s)", dir, why);
}

static loom_status meta_get(const loom_st_file *f, const char *key, int is_float, double *out) {
    const char *v = loom_st_meta(f, key);
    if (!v) return loom_error(LOOM_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing", loom_st_path(f), key);
    char *end;
    errno = 0;
    double d = is_float ? strtod(v, &end) : (double)strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return loom_error(LOOM_ERR_FORMAT, "%s: checkpoint metadata '%s' = '%s' is not a number", loom_st_path(f),
                          key, v);
    *out = d;
    return LOOM_OK;
}

static const char *st_meta_get(const void *f, const char *key) { return loom_st_meta(f, key); }

loom_status loom_ckpt_read_state(const loom_st_file *f, loom_gpt_config *cfg, loom_ckpt_state *s) {
    memset(s, 0, sizeof *s);
    struct { const char *key; int is_float; double v; } m[] = {
        {"step", 0, 0}, {"cursor", 0, 0}, {"epoch", 0, 0}, {"adam_t", 0, 0}, {"seed", 0, 0},
        {"batch", 0, 0}, {"seq_len", 0, 0}, {"total_batch_tokens", 0, 0}, {"steps", 0, 0}, {"shuffle", 0, 0},
        {"warmup", 0, 0}, {"lr", 1, 0}, {"min_lr", 1, 0}, {"beta1", 1, 0}, {"beta2", 1, 0}, {"eps", 1, 0},
        {"weight_decay", 1, 0}, {"clip", 1, 0}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        loom_status st = meta_get(f, m[i].key, m[i].is_float, &m[i].v);
        if (st) return st;
    }
    /* seed and cursor may exceed a double's exact range: read them as integers */
    const char *seed = loom_st_meta(f, "seed"), *cursor = loom_st_meta(f, "cursor");
    loom_status st = loom_gpt_config_from_meta(st_meta_get, f, loom_st_path(f), cfg);
    if (st) return st;
    s->step = (long)m[0].v;
    s->cursor = strtoull(cursor, NULL, 10);
    s->epoch = (uint64_t)m[2].v;
    s->adam_t = (long)m[3].v;
    s->seed = strtoull(seed, NULL, 10);
    s->batch = (int)m[5].v;
    s->seq_len = (int)m[6].v;
    s->total_batch_tokens = (long)m[7].v;
    s->steps = (int)m[8].v;
    s->shuffle = (int)m[9].v;
    s->optim.warmup = (int)m[10].v;
    s->optim.lr = (float)m[11].v;
    s->optim.min_lr = (float)m[12].v;
    s->optim.beta1 = (float)m[13].v;
    s->optim.beta2 = (float)m[14].v;
    s->optim.eps = (float)m[15].v;
    s->optim.weight_decay = (float)m[16].v;
    s->optim.clip = (float)m[17].v;
    s->optim.total_steps = s->steps;
    if (loom_gpt_config_validate(cfg))
        return loom_error(LOOM_ERR_FORMAT, "%s: checkpoint config: %s", loom_st_path(f), loom_error_msg());
    return LOOM_OK;
}

loom_status loom_ckpt_check_match(const char *path, const loom_gpt_config *cc, const loom_ckpt_state *cs,
                                  const loom_gpt_config *c, const loom_ckpt_state *s) {
    char diff[2048] = "";
    size_t len = 0;
#define CMP_INT(field, a, b)                                                                            \
    if ((long long)(a) != (long long)(b) && len < sizeof diff)                                          \
        len += snprintf(diff + len, sizeof diff - len, "%s%s %lld (checkpoint) vs %lld (flags)",        \
                        len ? ", " : "", field, (long long)(a), (long long)(b));
#define CMP_FLT(field, a, b)                                                                            \
    if ((a) != (b) && len < sizeof diff)                                                                \
        len += snprintf(diff + len, sizeof diff - len, "%s%s %.9g (checkpoint) vs %.9g (flags)",        \
                        len ? ", " : "", field, (double)(a), (double)(b));
    loom_gpt_config_diff(cc, c, "checkpoint", "flags", diff, sizeof diff);
    len = strlen(diff);
    CMP_INT("batch", cs->batch, s->batch)
    CMP_INT("seq_len", cs->seq_len, s->seq_len)
    CMP_INT("total_batch_tokens", cs->total_batch_tokens, s->total_batch_tokens)
    CMP_INT("steps", cs->steps, s->steps)
    CMP_INT("shuffle", cs->shuffle, s->shuffle)
    CMP_INT("seed", cs->seed, s->seed)
    CMP_INT("warmup", cs->optim.warmup, s->optim.warmup)
    CMP_FLT("lr", cs->optim.lr, s->optim.lr)
    CMP_FLT("min_lr", cs->optim.min_lr, s->optim.min_lr)
    CMP_FLT("beta1", cs->optim.beta1, s->optim.beta1)
    CMP_FLT("beta2", cs->optim.beta2, s->optim.beta2)
    CMP_FLT("eps", cs->optim.eps, s->optim.eps)
    CMP_FLT("weight_decay", cs->optim.weight_decay, s->optim.weight_decay)
    CMP_FLT("clip", cs->optim.clip, s->optim.clip)
#undef CMP_INT
#undef CMP_FLT
    if (len) return loom_error(LOOM_ERR_ARG, "--resume: %s does not match the flags: %s", path, diff);
    return LOOM_OK;
}

loom_status loom_ckpt_load(const loom_st_file *f, loom_gpt *g, loom_adamw *opt) {
    const int nt = g->sizes.n_tensors;
    static const char *prefix[3] = {"", "optim.m.", "optim.v."};
    /* what this process holds, as the runs a save writes: all its parameters (its
     * tensor-parallel parts); m and v of the optimizer's shard [lo, hi) only (ZeRO) */
    float *dst[3] = {g->params, opt->m - opt->lo, opt->v - opt->lo};
    for (int k = 0; k < 3 * nt; k++) {
        const loom_param_info *pi = &g->params_info[k % nt];
        char name[96];
        snprintf(name, sizeof name, "%s%s", prefix[k / nt], pi->name);
        const loom_st_tensor *t = loom_st_find(f, name);
        if (!t || t->dtype != LOOM_DTYPE_F32 || t->end - t->begin != pi->full_numel * sizeof(float))
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' is missing or has the wrong size or dtype",
                              loom_st_path(f), name);
        const size_t lo = k < nt ? 0 : opt->lo, hi = k < nt ? g->sizes.n_params : opt->hi;
        const long nr = ckpt_tensor_runs(pi, k, pi->offset, lo, hi, NULL);
        ckpt_run one, *runs = nr <= 1 ? &one : malloc(sizeof(ckpt_run) * nr);
        if (!runs) return loom_error(LOOM_ERR_NOMEM, "out of memory loading %s", name);
        ckpt_tensor_runs(pi, k, pi->offset, lo, hi, runs);
        for (long i = 0; i < nr; i++)
            memcpy(dst[k / nt] + runs[i].at, (const float *)loom_st_data(f, t) + runs[i].file_at,
                   runs[i].n * sizeof(float));
        if (runs != &one) free(runs);
    }
    return LOOM_OK;
}
