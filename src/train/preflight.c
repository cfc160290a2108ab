/* Checks before a run's first step: the agreement of the ranks, a resumed run's data
 * and threads, and its memory. */
#include <inttypes.h>
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

static void put_data(loom_agree *f, const char *name, const char *desc) {
    if (!desc) {
        loom_agree_put(f, name, "none");
        return;
    }
    int n = desc_count(desc);
    unsigned long long tokens = 0;
    desc_file df;
    for (int i = 0; i < n && desc_line(desc, i, &df); i++) tokens += df.tokens;
    loom_agree_put(f, name, "%d file(s), %llu tokens, crc %08" PRIx32, n, tokens, loom_crc32c(0, desc, strlen(desc)));
}

static const char *str_or(const char *s, const char *none) { return s ? s : none; }

static void run_fields(const loom_train_opts *o, const loom_gpt_config *c, const char *train_desc,
                       const char *val_desc, loom_agree *f) {
    f->n = 0;
    loom_agree_put(f, "loom version", "%s", LOOM_VERSION);
    loom_agree_put(f, "--n-layer", "%d", c->n_layer);
    loom_agree_put(f, "--n-embd", "%d", c->n_embd);
    loom_agree_put(f, "--n-head", "%d", c->n_head);
    loom_agree_put(f, "--vocab-size", "%d", c->vocab_size);
    loom_agree_put(f, "--block-size", "%d", c->block_size);
    loom_agree_put(f, "--arch", "%d", c->arch);
    loom_agree_put(f, "--n-kv-head", "%d", c->n_kv_head);
    loom_agree_put(f, "--ffn-dim", "%d", c->ffn_dim);
    loom_agree_put(f, "--tie", "%d", !c->untied);
    loom_agree_put(f, "--rope-theta", "%.9g %.9g %.9g %.9g %d %.9g", c->rope_theta, c->rope_factor, c->rope_low_freq,
                   c->rope_high_freq, c->rope_orig_ctx, c->norm_eps);
    loom_agree_put(f, "--init-from", "%s", str_or(o->init_from, "none"));
    put_data(f, "--data", train_desc);
    put_data(f, "--val-data", val_desc);
    loom_agree_put(f, "--data-format", "%d", (int)o->data_format);
    loom_agree_put(f, "--batch", "%d", o->batch);
    loom_agree_put(f, "--seq-len", "%d", o->seq_len);
    loom_agree_put(f, "--total-batch-tokens", "%ld", o->total_batch_tokens);
    loom_agree_put(f, "--steps", "%d", o->steps);
    loom_agree_put(f, "--lr", "%.9g", o->optim.lr);
    loom_agree_put(f, "--min-lr", "%.9g", o->optim.min_lr);
    loom_agree_put(f, "--warmup", "%d", o->optim.warmup);
    loom_agree_put(f, "--weight-decay", "%.9g", o->optim.weight_decay);
    loom_agree_put(f, "--clip", "%.9g", o->optim.clip);
    loom_agree_put(f, "--beta1", "%.9g", o->optim.beta1);
    loom_agree_put(f, "--beta2", "%.9g", o->optim.beta2);
    loom_agree_put(f, "--eps", "%.9g", o->optim.eps);
    loom_agree_put(f, "--seed", "%" PRIu64, o->seed);
    loom_agree_put(f, "--shuffle", "%d", o->shuffle);
    loom_agree_put(f, "--out", "%s", o->out_dir);
    loom_agree_put(f, "--eval-every", "%d", o->eval_every);
    loom_agree_put(f, "--val-batches", "%d", o->val_batches);
    loom_agree_put(f, "--backend", "%s", o->backend);
    loom_agree_put(f, "--ckpt-dir", "%s", str_or(o->ckpt_dir, "none"));
    loom_agree_put(f, "--ckpt-every", "%d", o->ckpt_every);
    loom_agree_put(f, "--keep", "%d", o->keep);
    loom_agree_put(f, "--resume", "%d %s", o->resume, str_or(o->resume_file, "latest"));
    loom_agree_put(f, "--ckpt-errors", "%d", o->ckpt_errors_warn);
    loom_agree_put(f, "--stop-at", "%d", o->stop_at);
    loom_agree_put(f, "--zero", "%d", o->zero);
    loom_agree_put(f, "--tp", "%d", o->tp);
    loom_agree_put(f, "--sp", "%d", o->sp);
    loom_agree_put(f, "--pp", "%d", o->pp);
    loom_agree_put(f, "--pp-schedule", "%d", o->pp_schedule);
    loom_agree_put(f, "--pp-layers", "%s", str_or(o->pp_layers, "balanced"));
    loom_agree_put(f, "--bucket-mb", "%.9g", o->bucket_mb);
    loom_agree_put(f, "--overlap", "%d", o->overlap);
    loom_agree_put(f, "--trace", "%s", str_or(o->trace, "none"));
    loom_agree_put(f, "--overwrite", "%d", o->overwrite);
    loom_agree_put(f, "--allow-change", "%u", o->allow_change);
    loom_agree_put(f, "--profile", "%d", o->profile);
}

loom_status loom_run_agree(const loom_dist *d, const loom_train_opts *o, const loom_gpt_config *cfg,
                           const char *train_desc, const char *val_desc) {
    if (d->size < 2) return LOOM_OK;
    loom_agree *f = calloc(1, sizeof *f);
    if (!f) return loom_error(LOOM_ERR_NOMEM, "out of memory comparing the ranks' flags"); /* the job aborts */
    run_fields(o, cfg, train_desc, val_desc, f);
    loom_status st = loom_dist_agree(&d->world, f, "flags and data");
    free(f);
    return st;
}

const char *const loom_mem_names[5] = {"model", "AdamW", "step", "tensor-parallel", "batch"};

void loom_run_memory(const loom_gpt_config *cfg, int B, int T, int accum, int ranks, int tp, int sp,
                     const loom_stage *stage, int pp, int zero, size_t bucket, const char *backend, int threads,
                     loom_train_mem *m) {
    loom_gpt_sizes sz;
    loom_gpt_compute_sizes(cfg, B, T, tp, sp, stage, &sz);
    const double f = sizeof(float), n = (double)sz.n_params;
    const int local = accum / ranks, sharded = zero > 0 && ranks > 1, strided = zero == 2 && ranks > 1;
    const double shard = sharded ? n / ranks : n, tree_n = strided ? shard : n;
    memset(m, 0, sizeof *m);
    m->params = f * (n + (double)sz.n_head_copy); /* a last stage's copy of the tied LM head, and its gradient */
    m->grads = f * (n + (double)sz.n_head_copy);
    m->tree = f * tree_n * (loom_step_tree_pool(local) - !strided); /* beyond the model's own gradient buffer */
    m->comm = ranks > 1 ? 2 * f * (double)(bucket < sz.n_params ? bucket : sz.n_params) : 0;
    m->adamw = 2 * f * shard;
    m->acts = f * ((double)sz.n_acts + (double)sz.n_grad_acts);
    /* the tensor-parallel reductions' send and receive buffers: one residual stream each */
    m->comm += tp > 1 ? 2 * f * ((double)B * T * cfg->n_embd + tp) : 0;
    /* a pipeline stage's boundary buffers (step.c): two activations received and two gradients
     * sent (not the first), two gradients received (not the last), the LM head's gradient
     * received (the first of a tied embedding) */
    const int first = sz.stage.l0 == 0, last = sz.stage.l1 == cfg->n_layer;
    const double nio = (double)B * T * cfg->n_embd / (sp && tp > 1 ? tp : 1);
    m->comm += f * nio * (4.0 * !first + 2.0 * !last) +
               (first && !last && (cfg->arch != LOOM_ARCH_LLAMA || !cfg->untied)
                    ? f * (double)loom_tp_local_rows(cfg->vocab_size, tp, 1) * cfg->n_embd : 0);
    /* the step's tokens (inputs and targets), every rank's inputs, the embedding row masks */
    m->batch = 4.0 * 2 * local * B * T +
               (ranks > 1 ? 4.0 * ranks * local * B * T + 2.0 * loom_tp_local_rows(cfg->vocab_size, tp, 1) : 0);
    m->total = m->params + m->grads + m->tree + m->comm + m->adamw + m->acts + m->batch;
    size_t lo = 0, hi = sz.n_params;
    if (sharded) loom_dist_shard_at(0, ranks, sz.stage_base, sz.n_params, LOOM_NORM_BLOCK, &lo, &hi);
    m->bytes[LOOM_MEM_MODEL] = loom_gpt_bytes(cfg, B, T, 1, backend, tp, sp, stage, threads);
    m->bytes[LOOM_MEM_ADAMW] = 2 * sizeof(float) * (hi - lo);
    m->bytes[LOOM_MEM_STEP] = loom_step_ctx_bytes(cfg, B, T, tp, sp, stage, pp, accum, ranks, zero, bucket);
    m->bytes[LOOM_MEM_TP] = tp > 1 ? loom_reducer_bytes(tp, (size_t)B * T * cfg->n_embd) : 0;
    m->bytes[LOOM_MEM_BATCH] = sizeof(int32_t) * 2 * (size_t)local * B * T;
    m->bytes_total = 0;
    for (int k = 0; k < 5; k++) m->bytes_total += m->bytes[k];
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
