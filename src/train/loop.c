/* The training run: checks, resume, the step loop with its cadence (validation,
 * checkpoints, signals), progress lines, metrics.jsonl and the final model. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/checkpoint.h"
#include "loom/io.h"
#include "loom/tensorboard.h"
#include "loom/train.h"
#include "train/preflight.h"
#include "train/pipeline.h"
#include "train/runinfo.h"
#include "train/signals.h"
#include "train/trace.h"

static void fmt_eta(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, n, "%lds", t);
}

/* OUT/metrics.jsonl for a run starting at `start`: a fresh run truncates it; a resumed
 * one keeps the lines of steps up to `start` (a resume from an older checkpoint than
 * the last line drops the steps it redoes, so no step is logged twice) and appends. */
static loom_status metrics_open(const char *path, int start, FILE **out) {
    *out = NULL;
    size_t len = 0;
    char *old = start > 0 ? loom_read_file(path, &len) : NULL;
    if (old) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *fp = fopen(tmp, "w");
        if (!fp) {
            free(old);
            return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        }
        for (char *line = old, *next; line < old + len; line = next) {
            next = memchr(line, '\n', (size_t)(old + len - line));
            next = next ? next + 1 : old + len;
            long step;
            if (sscanf(line, "{\"step\": %ld", &step) == 1 && step <= start) fwrite(line, 1, (size_t)(next - line), fp);
        }
        free(old);
        if (fclose(fp) != 0 || rename(tmp, path) != 0) {
            int e = errno;
            remove(tmp);
            return loom_error(LOOM_ERR_IO, "%s: cannot rewrite: %s", path, strerror(e));
        }
    }
    *out = fopen(path, start > 0 ? "a" : "w");
    if (!*out) return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    return LOOM_OK;
}

/* After a step: the loss, the gradient norm and the updated weights (this rank's shard;
 * the first bad tensor over all ranks) must be finite, or the run stops before anything
 * is saved, blaming what overflowed. Every rank returns the same status. */
static loom_status check_step(const loom_gpt *g, const loom_step_ctx *sc, const loom_dist *dist,
                              const loom_adamw_config *oc, int step, float loss, double norm, float lr) {
    if (loom_dist_any(&dist->world, g->status != LOOM_OK)) { /* an op refused its arguments: a bug, named */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", g->status ? loom_error_msg() : "an op failed on another rank");
        return loom_error(g->status ? g->status : LOOM_ERR_ARG, "step %d: %s", step + 1, msg);
    }
    if (!isfinite(loss))
        return loom_error(LOOM_ERR_ARG, "step %d: the loss is %f (the run diverged; nothing was saved from this step): "
                          "lower --lr%s", step + 1, loss, oc->clip > 0 ? "" : " or enable --clip");
    if (!isfinite(norm))
        return loom_error(LOOM_ERR_ARG, "step %d: the gradient norm is %f while the loss %.4f is finite (the backward "
                          "overflowed; nothing was saved from this step): lower --lr", step + 1, norm, loss);
    int32_t bad = loom_gpt_first_nonfinite(g, g->params, sc->lo, sc->hi), *all = &bad, buf[64];
    if (dist->world.size > 1) { /* every rank of every group: they all stop alike */
        all = dist->world.size <= 64 ? buf : malloc(sizeof(int32_t) * dist->world.size);
        LOOM_CHECK(all != NULL);
        loom_dist_allgather_bytes(&dist->world, &bad, (int)sizeof bad, all, "non-finite weights check allgather");
        for (int r = 1; r < dist->world.size; r++)
            if (all[r] >= 0 && (all[0] < 0 || all[r] < all[0])) all[0] = all[r];
        bad = all[0];
        if (all != buf) free(all);
    }
    if (bad >= 0)
        return loom_error(LOOM_ERR_ARG, "step %d: the AdamW update made tensor '%s' non-finite (lr %g, eps %g, grad "
                          "norm %g; nothing was saved from this step): lower --lr or raise --eps", step + 1,
                          g->params_info[bad].name, lr, oc->eps, norm);
    return LOOM_OK;
}

static loom_status train_run(const loom_train_opts *o, const loom_dist *given) {
    loom_status st = LOOM_OK;
    loom_dist lay = given ? *given : loom_dist_single(); /* with its layout: dp x tp */
    const loom_dist *dist = &lay;
    const int tp = o->tp > 1 ? o->tp : 1, pp = o->pp > 1 ? o->pp : 1;
    if (o->sp && tp == 1) return loom_error(LOOM_ERR_ARG, "--sp: sequence parallelism needs --tp 2 or more");
    if (o->pp_layers && pp == 1) return loom_error(LOOM_ERR_ARG, "--pp-layers: needs --pp 2 or more");
    if (tp * pp > 1 && dist->size % (tp * pp)) {
        loom_dist_set_failed_together(); /* every rank reaches it alike */
        if (pp == 1) return loom_error(LOOM_ERR_ARG, "--tp %d: does not divide the %d ranks of the job", tp, dist->size);
        return loom_error(LOOM_ERR_ARG, "--tp %d x --pp %d = %d: does not divide the %d ranks of the job", tp, pp, tp * pp,
                          dist->size);
    }
    /* the data-parallel ranks: every rank of a tensor-parallel group and of a pipeline reads the same data */
    const int rank = dist->rank, R = dist->size / (tp * pp), lead = rank == 0;
    loom_pp_plan plan = {0};
    const int quiet = o->quiet || !lead; /* only rank 0 prints and writes */
    loom_step_ctx sc = {0};
    loom_trace trace = {0};
    loom_gpt *g = NULL, *whole = NULL; /* whole: rank 0's gathered model (tensor parallelism) */
    loom_reducer *reducer = NULL;
    loom_tp_comm tpc = {.rank = 0, .size = 1};
    loom_reducer_stats tp0 = {0};
    loom_dataset *train = NULL, *val = NULL;
    loom_adamw opt = {0};
    FILE *metrics = NULL;
    loom_tb *tb = NULL;
    run_info ri = {0};
    int32_t *batch = NULL;
    char path[4096], *train_desc = NULL, *val_desc = NULL;
    int lock_fd = -1, out_fd = -1, stopped = 0;

    if (o->threads > 0) omp_set_num_threads(o->threads);
    else if (dist->local_size > 1) { /* split the node's cores among its ranks */
        loom_cpu_info ci;
        loom_cpu_detect(&ci);
        omp_set_num_threads(ci.n_cpus / dist->local_size > 0 ? ci.n_cpus / dist->local_size : 1);
    }
    const int threads = omp_get_max_threads();
    const int B = o->batch, T = o->seq_len;
    if (B < 1) return loom_error(LOOM_ERR_ARG, "--batch: must be at least 1 (got %d)", B);
    if (T < 1) return loom_error(LOOM_ERR_ARG, "--seq-len: must be at least 1 (got %d)", T);
    if (o->steps < 1) return loom_error(LOOM_ERR_ARG, "--steps: must be at least 1 (got %d)", o->steps);
    const long micro_tokens = (long)B * T;
    long total = o->total_batch_tokens > 0 ? o->total_batch_tokens : micro_tokens;
    if (total % micro_tokens != 0)
        return loom_error(LOOM_ERR_ARG, "--total-batch-tokens: %ld is not a multiple of --batch x "
                          "--seq-len = %d x %d = %ld", total, B, T, micro_tokens);
    const int accum = (int)(total / micro_tokens);
    if (o->optim.warmup < 0) return loom_error(LOOM_ERR_ARG, "--warmup: must be >= 0");
    if (!(o->optim.eps > 0))
        return loom_error(LOOM_ERR_ARG, "--eps: must be above 0 (AdamW divides by sqrt(v) + eps, and v is 0 where "
                          "a gradient is 0)");
    const double bucket_mb = o->bucket_mb > 0 ? o->bucket_mb : 16.0;
    if (bucket_mb > 1024) return loom_error(LOOM_ERR_ARG, "--bucket-mb: at most 1024 (got %g)", bucket_mb);
    size_t bucket = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    if (bucket < 1) bucket = 1;

    loom_gpt_config cfg = o->model;
    loom_st_file *resume = NULL;
    int start_step = 0;
    if (o->resume && o->init_from) return loom_error(LOOM_ERR_ARG, "--resume and --init-from: give one of them");
    if (o->resume && !o->resume_file && !o->ckpt_dir)
        return loom_error(LOOM_ERR_ARG, "--resume: needs --ckpt-dir (to find latest) or a checkpoint file");
    if (o->init_from && (st = loom_model_file_config(o->init_from, &o->model, &cfg))) return st;
    if ((st = loom_gpt_config_validate(&cfg))) return st;
    if ((st = loom_gpt_check_tp(&cfg, tp))) {
        loom_dist_set_failed_together();
        return st;
    }
    if (T > cfg.block_size)
        return loom_error(LOOM_ERR_ARG, "--seq-len: %d exceeds the model's block size %d", T, cfg.block_size);
    if ((st = loom_dataset_open(&train, o->data, o->data_format, cfg.vocab_size, T, "--data"))) goto done;
    if (o->val_data && (st = loom_dataset_open(&val, o->val_data, o->data_format, cfg.vocab_size, T, "--val-data")))
        goto done;
    if (!(train_desc = loom_run_data_desc(train)) || (val && !(val_desc = loom_run_data_desc(val)))) {
        st = LOOM_ERR_NOMEM;
        goto done;
    }
    /* before any other collective: every rank was given the same run */
    if ((st = loom_run_agree(dist, o, &cfg, train_desc, val_desc))) goto done;
    if (tp * pp > 1 && (st = loom_dist_layout(&lay, tp, pp))) goto done;
    loom_stage stage = {0, cfg.n_layer, 1};
    if (pp > 1) { /* every rank makes the same plan: a refusal is everyone's */
        if ((st = loom_pp_plan_make(&plan, &cfg, T, pp, accum / R, o->pp_schedule, o->pp_layers))) {
            loom_dist_set_failed_together();
            goto done;
        }
        stage = loom_pp_stage(&plan, dist->pp.rank);
    }
    loom_train_mem mem;
    loom_run_memory(&cfg, B, T, accum, R, tp, o->sp, &stage, pp, o->zero, bucket, o->backend, threads, &mem);
    size_t got[5] = {0}, live0 = 0; /* what each part allocates here: the report (and `loom plan`) */
#define MEASURE(k, call) (live0 = loom_alloc_bytes_live(), st = (call), got[k] += loom_alloc_bytes_live() - live0, st)
    if ((st = loom_run_check_memory(&mem, dist->local_size, B, T))) goto done;
    { /* rank 0 writes the files: it holds the locks of --out and --ckpt-dir */
        loom_status cs = lead ? loom_mkdir_p(o->out_dir, "--out") : LOOM_OK;
        if (!cs && lead) cs = loom_dir_lock(o->out_dir, "--out", &out_fd);
        if (!cs && lead && o->ckpt_dir) cs = loom_mkdir_p(o->ckpt_dir, "--ckpt-dir");
        if (!cs && lead && o->ckpt_dir) cs = loom_ckpt_dir_claim(o->ckpt_dir, o->resume, o->overwrite, &lock_fd);
        if (loom_dist_any(&dist->world, cs != LOOM_OK)) {
            st = cs ? cs : loom_error(LOOM_ERR_ARG, "rank 0 could not claim --out %s or --ckpt-dir %s", o->out_dir,
                                      o->ckpt_dir ? o->ckpt_dir : "(none)");
            loom_dist_set_failed_together();
            goto done;
        }
    }
    if (o->resume && (st = loom_ckpt_open(o->ckpt_dir, o->resume_file, &resume))) goto done;
    if (tp > 1) { /* the model's tensor-parallel reductions, over this rank's group */
        if (MEASURE(LOOM_MEM_TP, loom_reducer_init(&reducer, &dist->tp, &dist->world, (size_t)B * T * cfg.n_embd,
                                                   "tensor-parallel")))
            goto done;
        tpc = (loom_tp_comm){dist->tp.rank, tp, reducer, loom_reducer_sum, loom_reducer_max, o->sp, loom_reducer_gather,
                             loom_reducer_scatter};
    }
    if (MEASURE(LOOM_MEM_MODEL, loom_gpt_init_part(&g, &cfg, B, T, 1, o->backend, &tpc, &stage))) goto done;
    g->profile = o->profile;
    loom_adamw_config ocfg = o->optim;
    ocfg.total_steps = o->steps;
    size_t shard_lo = 0, shard_hi = g->sizes.n_params;
    if (o->zero)
        loom_dist_shard_at(dist->dp.rank, R, g->sizes.stage_base, g->sizes.n_params, LOOM_NORM_BLOCK, &shard_lo, &shard_hi);
    if (MEASURE(LOOM_MEM_ADAMW, loom_adamw_init_shard(&opt, &ocfg, shard_lo, shard_hi))) goto done;
    const loom_ckpt_state want = {.seed = o->seed, .batch = B, .seq_len = T, .shuffle = o->shuffle,
                                  .steps = o->steps, .total_batch_tokens = total, .optim = ocfg,
                                  .threads = threads, .data = train_desc};
    if (resume) {
        loom_gpt_config ccfg;
        loom_ckpt_state cst;
        if ((st = loom_ckpt_read_state(resume, &ccfg, &cst)) ||
            (st = loom_ckpt_check_match(loom_st_path(resume), &ccfg, &cst, &cfg, &want)) ||
            (st = loom_run_check_resume(resume, train_desc, threads, o->allow_change)) ||
            (st = loom_ckpt_load(resume, g, &opt)))
            goto done;
        if (cst.cursor != (uint64_t)cst.step * accum * B) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: loader position %llu does not match step %ld", loom_st_path(resume),
                            (unsigned long long)cst.cursor, cst.step);
            goto done;
        }
        opt.t = cst.adam_t;
        start_step = (int)cst.step;
        if (!quiet) printf("resuming from %s: step %d of %d\n", loom_st_path(resume), start_step, o->steps);
        loom_st_close(resume);
        resume = NULL;
    } else if (o->init_from) {
        if ((st = loom_model_load(g, o->init_from))) goto done;
    } else {
        loom_gpt_init_weights(g, o->seed);
    }
    /* the model's tensor-parallel collectives run on this thread during the passes: the
     * communication thread may reduce beside them only under MPI_THREAD_MULTIPLE */
    const int overlap = o->overlap && (tp == 1 || loom_dist_thread_multiple());
    if (MEASURE(LOOM_MEM_STEP, loom_step_ctx_init(&sc, g, accum, dist, o->zero, bucket, overlap))) goto done;
    if (pp > 1 && MEASURE(LOOM_MEM_STEP, loom_step_ctx_pipeline(&sc, g, &plan, B, T))) goto done;
    if (o->trace) {
        size_t span = (size_t)(o->stop_at > 0 && o->stop_at < o->steps ? o->stop_at : o->steps);
        /* per step: each micro-batch's events, the step's own, and the buckets of the
         * reductions (one per micro-batch at most) and of the all-gather */
        size_t per_step = (pp > 1 ? 5 : 2) * (size_t)sc.local + 10 + (sc.comm ? (size_t)loom_comm_max_buckets(sc.comm) * (sc.local + 1) : 0);
        if ((st = loom_trace_init(&trace, span * per_step + 16, rank))) goto done;
        /* one time axis for every rank's file: rank 0's clock and time zero */
        double rtt, off = loom_dist_clock_offset(&dist->world, &rtt), origin = trace.origin + off;
        uint64_t bits;
        memcpy(&bits, &origin, sizeof bits);
        loom_dist_bcast_u64(&dist->world, &bits);
        memcpy(&origin, &bits, sizeof origin);
        loom_trace_align(&trace, off, rtt, origin);
        sc.trace = &trace;
    }
    const int local = sc.local; /* this rank's micro-batches: global ones rank*local ... */
    live0 = loom_alloc_bytes_live();
    batch = loom_alloc(sizeof(int32_t) * 2 * (size_t)local * B * T, "batch");
    if (!batch) { st = LOOM_ERR_NOMEM; goto done; }
    got[LOOM_MEM_BATCH] = loom_alloc_bytes_live() - live0;
#undef MEASURE
    /* every stage's (its data-parallel rank 0 and tensor-parallel rank 0 are on rank 0's pipeline group) */
    size_t stage_got[LOOM_PP_MAX][5];
    loom_dist_allgather_bytes(&dist->pp, got, (int)sizeof got, stage_got, "memory report allgather");
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    if (lead && (st = metrics_open(path, start_step, &metrics))) goto done;
    if (lead && o->tensorboard && (st = loom_tb_open(&tb, o->tensorboard, "--tensorboard"))) goto done;
    const double peak = dist->size * (o->peak_flops > 0 ? o->peak_flops : loom_cpu_measure_peak_flops(threads, 0.3));
    if (lead) {
        run_info_start(&ri, o->out_dir, dist->size, tp, dist->local_size, threads, o->zero, local, B, T, total, peak / 1e9, &mem,
                       (double)loom_alloc_bytes_live());
        run_info_write(&ri, 0);
    }

    /* the MFU denominator (above): the measured peak of this rank's threads, times the ranks */
    const double flops_tok = g->sizes.flops_per_token;
    if (!quiet) {
        if (dist->size > 1 && pp == 1)
            printf("ranks: %d (%d per node) = data-parallel %d x tensor-parallel %d (world rank = dp rank x %d + tp "
                   "rank), %d micro-batch(es) per data-parallel rank, %d threads per rank\n", dist->size,
                   dist->local_size, R, tp, tp, local, threads);
        else if (dist->size > 1)
            printf("ranks: %d (%d per node) = data-parallel %d x tensor-parallel %d x pipeline %d (world rank = "
                   "(stage x %d + dp rank) x %d + tp rank), %d micro-batch(es) per data-parallel rank, %d threads per "
                   "rank\n", dist->size, dist->local_size, R, tp, pp, R, tp, local, threads);
        if (pp > 1) {
            char split[512] = "";
            for (int s = 0, at = 0; s < pp; s++)
                at += snprintf(split + at, sizeof split - (size_t)at, "%s%d-%d (%d in flight)", s ? " | " : "",
                               plan.l0[s], plan.l0[s + 1] - 1, plan.sets[s]);
            printf("pipeline: %d stages, layers %s; schedule %s, %d micro-batches per step: bubble (p-1)/(m+p-1) = "
                   "%.1f%%%s\n", pp, split, loom_pp_kind_name(plan.kind), local,
                   100.0 * (pp - 1) / (local + pp - 1),
                   cfg.arch == LOOM_ARCH_LLAMA && cfg.untied ? "" : "; the tied LM head: a copy on the last stage");
            for (int s = 0; s < pp; s++) { /* each stage's own buffers, from the description */
                loom_gpt_sizes z;
                const loom_stage sg = loom_pp_stage(&plan, s);
                loom_gpt_compute_sizes(&cfg, B, T, tp, o->sp, &sg, &z);
                printf("  stage %d: layers %d-%d, parameters %.2f MiB, activations %d x %.2f MiB + gradient scratch "
                       "%.2f MiB per rank\n", s, sg.l0, sg.l1 - 1, 4.0 * (z.n_params + z.n_head_copy) / 1048576.0,
                       sg.sets, 4.0 * z.n_acts_set / 1048576.0, 4.0 * z.n_grad_acts / 1048576.0);
            }
        }
        if (cfg.arch == LOOM_ARCH_LLAMA)
            printf("model: Llama, %d layers, %d channels, %d heads (%d key/value), FFN %d, vocab %d, block %d, rope "
                   "theta %g%s, %s head: %.2fM parameters\n", cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head,
                   cfg.ffn_dim, cfg.vocab_size, cfg.block_size, cfg.rope_theta, cfg.rope_factor > 0 ? " (llama3 scaling)" : "",
                   cfg.untied ? "untied" : "tied", g->sizes.n_params_full / 1e6);
        else
            printf("model: %d layers, %d channels, %d heads, vocab %d, block %d: %.2fM parameters\n",
                   cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.block_size, g->sizes.n_params_full / 1e6);
        if (tp > 1)
            printf("tensor parallel: %d ranks per layer, each %d of %d heads, %d vocabulary rows (of %d, padded to %d), "
                   "%.2fM parameters per rank%s; reductions: all-to-all + sum in rank order + all-gather\n", tp,
                   cfg.n_head / tp, cfg.n_head, g->vocab_local, cfg.vocab_size, g->vocab_local * tp,
                   g->sizes.n_params / 1e6, o->sp ? ", sequence parallel: the residual stream and norms on B*T/tp rows" : "");
        printf("data: %llu tokens in %d file(s), %llu windows of %d; batch %d x %d, %d micro-batch(es) "
               "per step = %ld tokens\n",
               (unsigned long long)loom_dataset_tokens(train), loom_dataset_files(train),
               (unsigned long long)loom_dataset_samples(train), T + 1, B, T, accum, total);
        const double MiB = 1048576.0;
        const char *zname[3] = {"", " (ZeRO-1 shard)", " (ZeRO-2 shard)"};
        printf("memory per rank: parameters %.1f MiB, gradients %.1f MiB + accumulation tree %.1f MiB%s + "
               "send+receive bucket %.1f MiB, AdamW m+v %.1f MiB%s, activations %.1f MiB; %.1f MiB in all\n",
               mem.params / MiB, mem.grads / MiB, mem.tree / MiB, sc.strided ? " (ZeRO-2 shards)" : "",
               mem.comm / MiB, mem.adamw / MiB, R > 1 ? zname[o->zero] : "", mem.acts / MiB,
               loom_alloc_bytes_live() / MiB);
        for (int s = 0; s < pp; s++) {
            size_t all = 0;
            for (int k = 0; k < 5; k++) all += stage_got[s][k];
            char where[32] = "";
            if (pp > 1) snprintf(where, sizeof where, " on stage %d", s);
            printf("allocated per rank%s (bytes): model %zu, AdamW %zu, step %zu, tensor-parallel %zu, batch %zu = "
                   "%zu\n", where, stage_got[s][0], stage_got[s][1], stage_got[s][2], stage_got[s][3], stage_got[s][4],
                   all);
        }
        if (sc.comm)
            printf("gradient communication: buckets of %.1f MiB, %s\n", bucket_mb,
                   loom_comm_overlaps(sc.comm) ? "overlapped with the backward (embedding rows no input touches first)"
                   : tp > 1 && o->overlap ? "after the backward (MPI gave no MPI_THREAD_MULTIPLE for the thread "
                                            "beside tensor parallelism's reductions)"
                            : "after the backward");
        printf("%d threads; MFU against %.0f GFLOP/s measured fp32 FMA peak\n", threads, peak / 1e9);
        fflush(stdout);
    }

    /* fault injection for the tests: a NaN in tensor 1 (GPT-2's wpe) after the update of this step */
    const char *poison = getenv("LOOM_TEST_POISON_STEP");
    const int poison_step = poison ? atoi(poison) : 0;
    /* a run whose loss stays above a uniform guess's is diverging: say so once */
    const float uniform_loss = logf((float)cfg.vocab_size);
    int high_steps = 0;
    double t_start = loom_now(), t_train = 0.0;
    const int end_step = o->stop_at > 0 && o->stop_at < o->steps ? o->stop_at : o->steps;
    if (start_step >= end_step && !quiet) printf("nothing to do: the checkpoint is at step %d\n", start_step);
    for (int step = start_step; step < end_step; step++) {
        if (step == start_step + 1) { /* the profile and the traffic count skip step 1, as t_train */
            memset(g->prof_s, 0, sizeof g->prof_s);
            if (reducer) tp0 = loom_reducer_get_stats(reducer);
        }
        double t0 = loom_now();
        for (int j = 0; j < local; j++) { /* this rank's micro-batches of the global batch */
            uint64_t cursor = ((uint64_t)step * accum + (uint64_t)loom_step_ctx_micro(&sc, j)) * B;
            for (int b = 0; b < B; b++) {
                size_t k = (size_t)j * B + b;
                loom_dataset_sample(train, cursor + b, o->shuffle, o->seed, batch + k * T, batch + ((size_t)local * B + k) * T);
            }
        }
        if (g->profile) g->prof_s[LOOM_PROF_DATA] += loom_now() - t0;
        loom_trace_add(sc.trace, "data", step + 1, t0);
        float lr = loom_lr_at(&ocfg, step);
        double norm;
        float loss = loom_train_step(g, &opt, &sc, batch, batch + (size_t)local * B * T, B, T, lr, &norm);
        double dt = loom_now() - t0;
        if (step > start_step || end_step - start_step == 1) t_train += dt; /* the first step warms caches */
        double tok_s = (double)total / dt, mfu = flops_tok * tok_s / peak;
        int timed = step > start_step ? step - start_step : 1;
        double eta = (t_train / timed) * (end_step - 1 - step);
        if (step + 1 == poison_step) g->params[g->params_info[1].offset] = NAN;
        if ((st = check_step(g, &sc, dist, &ocfg, step, loss, norm, lr))) {
            loom_dist_set_failed_together();
            goto done;
        }
        high_steps = loss > uniform_loss + 1.0f ? high_steps + 1 : 0;
        if (high_steps == 5 && lead)
            fprintf(stderr, "loom: warning: step %d: the loss (%.4f) has stayed above ln(vocab) = %.4f, the loss of a "
                    "uniform guess, for 5 steps: the run is diverging (lower --lr%s)\n", step + 1, loss, uniform_loss,
                    ocfg.clip > 0 ? "" : ", enable --clip");
        double val_loss = NAN;
        int last = step == end_step - 1;
        if (val && ((o->eval_every > 0 && (step + 1) % o->eval_every == 0) || last)) {
            if ((st = loom_step_ctx_eval(&sc, g, val, B, T, o->val_batches, &val_loss))) goto done;
        }
        if (!quiet) {
            char eta_s[32];
            fmt_eta(eta_s, sizeof eta_s, eta);
            printf("step %*d/%d | loss %.4f | lr %.3e | norm %.4f | %.0f ms | %.0f tok/s | MFU %.1f%% | ETA %s\n",
                   (int)snprintf(NULL, 0, "%d", o->steps), step + 1, o->steps, loss, lr, norm, dt * 1e3,
                   tok_s, 100.0 * mfu, eta_s);
            if (!isnan(val_loss)) printf("step %d: val loss %.4f\n", step + 1, val_loss);
            fflush(stdout);
        }
        if (metrics) fprintf(metrics, "{\"step\": %d, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"ms\": %.3f, "
                "\"tokens_per_s\": %.1f, \"mfu\": %.4f, \"tokens\": %llu",
                step + 1, loss, lr, norm, dt * 1e3, tok_s, mfu,
                (unsigned long long)((uint64_t)(step + 1) * total));
        if (metrics && !isnan(val_loss)) fprintf(metrics, ", \"val_loss\": %.9g", val_loss);
        if (metrics) fprintf(metrics, "}\n");
        if (metrics) fflush(metrics);
        if (tb) { /* the values metrics.jsonl has, as TensorBoard scalars */
            const char *tags[] = {"train/loss", "train/lr", "train/grad_norm", "train/step_ms", "train/tokens_per_s",
                                  "train/mfu", "memory/host_peak_mib", "val/loss"};
            const float vals[] = {loss, lr, (float)norm, (float)(dt * 1e3), (float)tok_s, (float)mfu,
                                  (float)(loom_alloc_bytes_peak() / 1048576.0), (float)val_loss};
            if (loom_tb_scalars(tb, step + 1, isnan(val_loss) ? 7 : 8, tags, vals)) { /* the run goes on */
                fprintf(stderr, "loom: warning: --tensorboard: %s; no more events are written\n", loom_error_msg());
                loom_tb_close(tb);
                tb = NULL;
            }
        }
        int stop = loom_dist_any(&dist->world, loom_signals_pending() != 0); /* every rank stops at the same step */
        if (o->ckpt_dir && (stop || step + 1 == end_step || (o->ckpt_every > 0 && (step + 1) % o->ckpt_every == 0))) {
            loom_ckpt_state cs = want;
            cs.step = step + 1;
            cs.cursor = (uint64_t)(step + 1) * accum * B;
            cs.epoch = cs.cursor / loom_dataset_samples(train);
            cs.adam_t = opt.t;
            char cpath[4096];
            double bytes = 0, ts = loom_now();
            /* one process writes alone; several write their shards at once with MPI-IO */
            loom_status cst = dist->size > 1 ? loom_ckpt_save_dist(&dist->world, &dist->dp, o->ckpt_dir, o->keep, g, &opt, &cs, cpath, sizeof cpath, &bytes)
                                    : loom_ckpt_save(o->ckpt_dir, o->keep, g, &opt, &cs, cpath, sizeof cpath, &bytes);
            double dts = loom_now() - ts;
            loom_trace_add(sc.trace, "checkpoint", step + 1, ts);
            if (cst && !o->ckpt_errors_warn) {
                st = loom_error(cst, "checkpoint at step %d failed (previous checkpoints untouched): %s", step + 1,
                                loom_error_msg());
                goto done;
            }
            if (cst && lead) fprintf(stderr, "loom: warning: checkpoint at step %d failed: %s\n", step + 1, loom_error_msg());
            else if (!cst && !quiet)
                printf("checkpoint %s: %.1f MB in %.2f s (%.0f MB/s)\n", cpath, bytes / 1e6, dts, bytes / 1e6 / dts);
            if (lead && !cst) {
                run_info_checkpoint(&ri, step + 1, cpath, bytes, dts);
                run_info_write(&ri, 1);
            }
            fflush(stdout);
        }
        if (stop) {
            if (lead)
                fprintf(stderr, "loom: %s received: stopped after step %d%s\n",
                        loom_signals_pending() ? strsignal(loom_signals_pending()) : "a stop signal (on another rank)", step + 1,
                        o->ckpt_dir ? " with a checkpoint (continue with --resume)"
                                    : "; saving the model to --out (without --ckpt-dir the run cannot be resumed)");
            stopped = 1;
            if (o->ckpt_dir) goto done;
            break;
        }
    }
    const int ran = end_step - start_step;
    if (!quiet && ran > 0 && !stopped) {
        int timed = ran > 1 ? ran - 1 : 1;
        double tok_s = (double)total * timed / t_train;
        printf("done: %d steps in %.1f s; %.0f tok/s, MFU %.1f%% (steps %d..%d)\n", ran, loom_now() - t_start,
               tok_s, 100.0 * flops_tok * tok_s / peak, start_step + (ran > 1 ? 2 : 1), end_step);
        if (reducer && ran > 1) {
            /* Megatron's count per micro-batch: 2 all-reduces of B x T x C per layer forward
             * and 2 backward, the embedding's and the LM head's input gradient (with --sp each
             * an all-gather plus a reduce-scatter: the same bytes), each 2 (tp-1)/tp of its
             * floats sent per rank; the vocabulary-parallel loss adds 3 B x T (maxima, sums,
             * target logits); --sp adds the norms' weight gradients */
            const loom_reducer_stats now = loom_reducer_get_stats(reducer);
            const double per = 1.0 / (ran - 1), steps_s = t_train / timed, f = 2.0 * (tp - 1) / tp * sizeof(float);
            double norms = 0.0; /* the norms' weights and biases, from the description */
            for (int i = 0; o->sp && i < g->sizes.n_tensors; i++)
                if (g->params_info[i].role == LOOM_ROLE_NORM_W || g->params_info[i].role == LOOM_ROLE_NORM_B)
                    norms += (double)g->params_info[i].numel;
            const double want = f * local * ((4.0 * cfg.n_layer + 2) * B * T * cfg.n_embd + 3.0 * B * T + norms);
            const double secs = (now.seconds - tp0.seconds) * per;
            printf("tensor-parallel reductions per step and rank: %.0f calls, %.3f MB sent (Megatron's count: %.3f MB), "
                   "%.1f ms = %.1f%% of the step, all of it exposed (steps %d..%d)\n", (now.calls - tp0.calls) * per,
                   (now.bytes_sent - tp0.bytes_sent) * per / 1e6, want / 1e6,
                   secs * 1e3, 100.0 * secs / steps_s, start_step + 2, end_step);
        }
    }
    if (o->profile && ran > 1 && lead && !stopped) {
        double total_s = 0.0;
        for (int k = 0; k < LOOM_PROF_COUNT; k++) total_s += g->prof_s[k];
        printf("profile (steps %d..%d, ms per step; %.0f%% of the step time is accounted for):\n",
               start_step + 2, end_step, 100.0 * total_s / t_train);
        for (int k = 0; k < LOOM_PROF_COUNT; k++)
            printf("  %-16s %8.1f ms  %5.1f%%\n", loom_prof_name((loom_prof_kind)k),
                   1e3 * g->prof_s[k] / (ran - 1), 100.0 * g->prof_s[k] / total_s);
    }
    loom_step_ctx_sync_params(&sc, g); /* every rank: the last update's shards */
    if (tp * pp > 1 && (st = loom_gather_model(g, dist, &whole))) goto done;
    if (lead) {
        snprintf(path, sizeof path, "%s/model.safetensors", o->out_dir);
        if ((st = loom_model_save(whole ? whole : g, path))) goto done;
        snprintf(path, sizeof path, "%s/config.json", o->out_dir);
        if ((st = loom_model_write_hf_config(&cfg, path))) goto done;
        if (!quiet) printf("saved %s/model.safetensors\n", o->out_dir);
        if (o->profile && ran > 1 && !stopped) run_info_profile(&ri, g, ran - 1);
        run_info_write(&ri, 1);
    }
done:
    if (stopped && !st) st = LOOM_STOPPED;
    loom_dir_unlock(lock_fd);
    loom_dir_unlock(out_fd);
    free(train_desc);
    free(val_desc);
    if (trace.ev) {
        snprintf(path, sizeof path, "%s.rank%d.json", o->trace, rank);
        loom_status ts = loom_trace_write(&trace, path);
        if (ts && !st) st = ts;
        loom_trace_free(&trace);
    }
    if (g) loom_step_ctx_free(&sc, g);
    loom_st_close(resume);
    loom_tb_close(tb);
    run_info_free(&ri);
    if (metrics && fclose(metrics) != 0 && !st)
        st = loom_error(LOOM_ERR_IO, "%s/metrics.jsonl: write failed: %s", o->out_dir, strerror(errno));
    loom_free(batch);
    loom_adamw_free(&opt);
    loom_gpt_free(g);
    loom_gpt_free(whole);
    loom_reducer_free(reducer);
    loom_dataset_close(train);
    loom_dataset_close(val);
    return st;
}

loom_status loom_train(const loom_train_opts *o, const loom_dist *dist) {
    loom_signals_start(); /* before any parallel region, so that every worker inherits the mask */
    loom_status st = train_run(o, dist);
    loom_signals_stop();
    return st;
}
