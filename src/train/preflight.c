/* Checks before a run's first step: the agreement of the ranks, a resumed run's data
 * and threads, and its memory. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "train/preflight.h"

char *loom_run_data_desc(const loom_dataset *ds) {
    loom_json_buf b = {0};
    for (int i = 0; i < loom_dataset_files(ds); i++) {
        loom_data_file_info fi;
        loom_dataset_file_info(ds, i, &fi);
        loom_json_buf_printf(&b, "%08" PRIx32 " %" PRIu64 " %" PRIu64 " %s\n", fi.crc, fi.tokens, fi.bytes, fi.path);
    }
    if (b.failed || !b.data) {
        loom_json_buf_free(&b);
        loom_error(LOOM_ERR_NOMEM, "out of memory describing the data");
        return NULL;
    }
    return b.data;
}

/* One line of a data description. */
typedef struct desc_file {
    char crc[9];
    unsigned long long tokens, bytes;
    const char *path; /* into the description; ends at '\n' */
    size_t path_len;
} desc_file;

/* The i-th line (0-based) of desc; 0 when there is none or it is malformed. */
static int desc_line(const char *desc, int i, desc_file *f) {
    const char *p = desc;
    for (int k = 0; k < i && p; k++) p = (p = strchr(p, '\n')) ? p + 1 : NULL;
    if (!p || !*p) return 0;
    int used = 0;
    if (sscanf(p, "%8s %llu %llu %n", f->crc, &f->tokens, &f->bytes, &used) != 3 || !used) return 0;
    f->path = p + used;
    f->path_len = strcspn(f->path, "\n");
    return 1;
}

static int desc_count(const char *desc) {
    int n = 0;
    desc_file f;
    while (desc_line(desc, n, &f)) n++;
    return n;
}

/* the file name without its directories */
static void base_name(const desc_file *f, char *out, size_t cap) {
    size_t a = f->path_len;
    while (a > 0 && f->path[a - 1] != '/') a--;
    snprintf(out, cap, "%.*s", (int)(f->path_len - a), f->path + a);
}

/* The first difference of two descriptions, or "" (file names compare without their
 * directories, so that moved data still match). */
static void desc_diff(const char *was, const char *now, char *why, size_t cap) {
    why[0] = 0;
    int nw = desc_count(was), nn = desc_count(now);
    if (nw != nn) {
        snprintf(why, cap, "%d file(s) now, %d at the checkpoint", nn, nw);
        return;
    }
    for (int i = 0; i < nn; i++) {
        desc_file a, b;
        char an[256], bn[256];
        desc_line(was, i, &a);
        desc_line(now, i, &b);
        base_name(&a, an, sizeof an);
        base_name(&b, bn, sizeof bn);
        if (strcmp(an, bn)) snprintf(why, cap, "file %d is %s now, %s at the checkpoint", i + 1, bn, an);
        else if (a.tokens != b.tokens)
            snprintf(why, cap, "file %d (%s) holds %llu tokens now, %llu at the checkpoint", i + 1, bn, b.tokens, a.tokens);
        else if (a.bytes != b.bytes)
            snprintf(why, cap, "file %d (%s) is %llu bytes now, %llu at the checkpoint", i + 1, bn, b.bytes, a.bytes);
        else if (strcmp(a.crc, b.crc))
            snprintf(why, cap, "file %d (%s) has other contents now (CRC32C of sampled blocks %s, %s at the checkpoint)",
                     i + 1, bn, b.crc, a.crc);
        if (why[0]) return;
    }
}

loom_status loom_run_check_resume(const loom_st_file *ck, const char *data_desc, int threads, unsigned allow) {
    const char *path = loom_st_path(ck), *was = loom_st_meta(ck, "data"), *th = loom_st_meta(ck, "threads");
    if (!was || !th) {
        fprintf(stderr, "loom: warning: %s does not record its data and threads (an older checkpoint): not checked\n",
                path);
        return LOOM_OK;
    }
    char why[1200];
    desc_diff(was, data_desc, why, sizeof why);
    if (why[0] && !(allow & LOOM_ALLOW_DATA))
        return loom_error(LOOM_ERR_ARG, "--resume: the training data are not the checkpoint's: %s (%s); pass "
                          "--allow-change data to continue on these data", why, path);
    if (why[0]) fprintf(stderr, "loom: warning: continuing on changed data (--allow-change data): %s\n", why);
    int was_threads = atoi(th);
    if (was_threads != threads && !(allow & LOOM_ALLOW_THREADS))
        return loom_error(LOOM_ERR_ARG, "--resume: %s was made with %d thread(s) per rank, this run has %d, so the "
                          "steps would not be bitwise those of an uninterrupted run; pass --threads %d, or "
                          "--allow-change threads", path, was_threads, threads, was_threads);
    return LOOM_OK;
}

/* The run as fields, each a short value string (a long one ends in its CRC32C). */
#define FIELD_CHARS 64
typedef struct fields {
    int n;
    const char *name[64];
    char val[64][FIELD_CHARS];
} fields;

static void put(fields *f, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(fields *f, const char *name, const char *fmt, ...) {
    char full[4200];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(full, sizeof full, fmt, ap);
    va_end(ap);
    LOOM_CHECK(f->n < 64);
    char *v = f->val[f->n];
    if (len < FIELD_CHARS) memcpy(v, full, (size_t)len + 1);
    else snprintf(v, FIELD_CHARS, "%.44s... crc %08" PRIx32, full, loom_crc32c(0, full, strlen(full)));
    f->name[f->n++] = name;
}

static void put_data(fields *f, const char *name, const char *desc) {
    if (!desc) {
        put(f, name, "none");
        return;
    }
    int n = desc_count(desc);
    unsigned long long tokens = 0;
    desc_file df;
    for (int i = 0; i < n && desc_line(desc, i, &df); i++) tokens += df.tokens;
    put(f, name, "%d file(s), %llu tokens, crc %08" PRIx32, n, tokens, loom_crc32c(0, desc, strlen(desc)));
}

static const char *str_or(const char *s, const char *none) { return s ? s : none; }

static void run_fields(const loom_train_opts *o, const loom_gpt_config *c, const char *train_desc,
                       const char *val_desc, fields *f) {
    f->n = 0;
    put(f, "loom version", "%s", LOOM_VERSION);
    put(f, "--n-layer", "%d", c->n_layer);
    put(f, "--n-embd", "%d", c->n_embd);
    put(f, "--n-head", "%d", c->n_head);
    put(f, "--vocab-size", "%d", c->vocab_size);
    put(f, "--block-size", "%d", c->block_size);
    put(f, "--init-from", "%s", str_or(o->init_from, "none"));
    put_data(f, "--data", train_desc);
    put_data(f, "--val-data", val_desc);
    put(f, "--data-format", "%d", (int)o->data_format);
    put(f, "--batch", "%d", o->batch);
    put(f, "--seq-len", "%d", o->seq_len);
    put(f, "--total-batch-tokens", "%ld", o->total_batch_tokens);
    put(f, "--steps", "%d", o->steps);
    put(f, "--lr", "%.9g", o->optim.lr);
    put(f, "--min-lr", "%.9g", o->optim.min_lr);
    put(f, "--warmup", "%d", o->optim.warmup);
    put(f, "--weight-decay", "%.9g", o->optim.weight_decay);
    put(f, "--clip", "%.9g", o->optim.clip);
    put(f, "--beta1", "%.9g", o->optim.beta1);
    put(f, "--beta2", "%.9g", o->optim.beta2);
    put(f, "--eps", "%.9g", o->optim.eps);
    put(f, "--seed", "%" PRIu64, o->seed);
    put(f, "--shuffle", "%d", o->shuffle);
    put(f, "--out", "%s", o->out_dir);
    put(f, "--eval-every", "%d", o->eval_every);
    put(f, "--val-batches", "%d", o->val_batches);
    put(f, "--backend", "%s", o->backend);
    put(f, "--ckpt-dir", "%s", str_or(o->ckpt_dir, "none"));
    put(f, "--ckpt-every", "%d", o->ckpt_every);
    put(f, "--keep", "%d", o->keep);
    put(f, "--resume", "%d %s", o->resume, str_or(o->resume_file, "latest"));
    put(f, "--ckpt-errors", "%d", o->ckpt_errors_warn);
    put(f, "--stop-at", "%d", o->stop_at);
    put(f, "--zero", "%d", o->zero);
    put(f, "--bucket-mb", "%.9g", o->bucket_mb);
    put(f, "--overlap", "%d", o->overlap);
    put(f, "--trace", "%s", str_or(o->trace, "none"));
    put(f, "--overwrite", "%d", o->overwrite);
    put(f, "--allow-change", "%u", o->allow_change);
    put(f, "--profile", "%d", o->profile);
}

loom_status loom_run_agree(const loom_dist *d, const loom_train_opts *o, const loom_gpt_config *cfg,
                           const char *train_desc, const char *val_desc) {
    if (d->size < 2) return LOOM_OK;
    fields *f = malloc(sizeof *f);
    char *all = f ? malloc((size_t)d->size * sizeof f->val) : NULL;
    if (!all) {
        free(f);
        /* every rank must still take part in the collective: a failing one aborts the job */
        return loom_error(LOOM_ERR_NOMEM, "out of memory comparing the ranks' flags");
    }
    memset(f, 0, sizeof *f);
    run_fields(o, cfg, train_desc, val_desc, f);
    loom_dist_allgather_bytes(d, f->val, (int)sizeof f->val, all, "start-up agreement of flags and data");
    loom_status st = LOOM_OK;
    for (int k = 0; k < f->n && !st; k++) {
        const char *v0 = all + (size_t)k * FIELD_CHARS;
        for (int r = 1; r < d->size; r++) {
            const char *vr = all + (size_t)r * sizeof f->val + (size_t)k * FIELD_CHARS;
            if (memcmp(v0, vr, FIELD_CHARS)) {
                st = loom_error(LOOM_ERR_ARG, "the ranks were given different runs: %s is '%.*s' on rank 0 but '%.*s' "
                                "on rank %d (every rank needs the same flags and data)", f->name[k], FIELD_CHARS, v0,
                                FIELD_CHARS, vr, r);
                break;
            }
        }
    }
    free(all);
    free(f);
    return st;
}

void loom_run_memory(const loom_gpt_config *cfg, int B, int T, int accum, int ranks, int zero, size_t bucket,
                     loom_train_mem *m) {
    loom_gpt_sizes sz;
    loom_gpt_compute_sizes(cfg, B, T, &sz);
    const double f = sizeof(float), n = (double)sz.n_params;
    const int local = accum / ranks, sharded = zero > 0 && ranks > 1, strided = zero == 2 && ranks > 1;
    const double shard = sharded ? n / ranks : n, tree_n = strided ? shard : n;
    memset(m, 0, sizeof *m);
    m->params = f * n;
    m->grads = f * n;
    m->tree = f * tree_n * (loom_step_tree_pool(local) - !strided); /* beyond the model's own gradient buffer */
    m->comm = ranks > 1 ? 2 * f * (double)(bucket < sz.n_params ? bucket : sz.n_params) : 0;
    m->adamw = 2 * f * shard;
    m->acts = f * ((double)sz.n_acts + (double)sz.n_grad_acts);
    /* the step's tokens (inputs and targets), every rank's inputs, the wte row masks */
    m->batch = 4.0 * 2 * local * B * T + (ranks > 1 ? 4.0 * ranks * local * B * T + 2.0 * cfg->vocab_size : 0);
    m->total = m->params + m->grads + m->tree + m->comm + m->adamw + m->acts + m->batch;
}

loom_status loom_run_check_memory(const loom_train_mem *m, int local, int B, int T) {
    const double GiB = 1073741824.0;
    const double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE), need = m->total * local;
    if (need <= have) return LOOM_OK;
    return loom_error(LOOM_ERR_NOMEM, "out of memory: training needs %.2f GiB per rank (parameters %.2f, gradients "
                      "%.2f, accumulation tree %.2f, AdamW m+v %.2f, activations %.2f for batch %d x %d, buckets and "
                      "batch %.2f GiB)%s, this machine has %.2f GiB; lower --batch or --seq-len, use --zero, or more "
                      "ranks", m->total / GiB, m->params / GiB, m->grads / GiB, m->tree / GiB, m->adamw / GiB,
                      m->acts / GiB, B, T, (m->comm + m->batch) / GiB,
                      local > 1 ? " times the ranks on this node" : "", have / GiB);
}
