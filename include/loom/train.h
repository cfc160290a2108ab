/* The training loop and evaluation: gradient accumulation up to a total batch in tokens,
 * the LR schedule, clipping, AdamW, progress lines, metrics.jsonl, validation. */
#ifndef LOOM_TRAIN_H
#define LOOM_TRAIN_H

#include <stdint.h>

#include "loom/data.h"
#include "loom/dist.h"
#include "loom/model.h"
#include "loom/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_train_opts {
    loom_gpt_config model;
    const char *data, *val_data;   /* comma-separated glob patterns */
    loom_data_format data_format;
    int batch, seq_len;            /* micro-batch: sequences x tokens */
    long total_batch_tokens;       /* 0 = one micro-batch per step */
    int steps;
    loom_adamw_config optim;       /* lr, min_lr, warmup, betas, eps, wd, clip */
    uint64_t seed;
    int shuffle;
    const char *init_from;         /* safetensors file, or NULL for GPT-2 init */
    const char *out_dir;           /* metrics.jsonl and model.safetensors go here */
    int threads;
    int eval_every, val_batches;   /* validation cadence (0 = only at the end) and size */
    const char *backend;
    int quiet;                     /* no per-step lines (tests) */
    int profile;                   /* print where the step time goes, per op kind */
    double peak_flops;             /* MFU denominator; 0 = measure at start-up */
    /* checkpoints */
    const char *ckpt_dir;          /* NULL: no checkpoints */
    int ckpt_every;                /* steps between checkpoints (0: only at the end / on a signal) */
    int keep;                      /* newest checkpoints kept (>= 1) */
    int resume;                    /* continue from resume_file, or from ckpt_dir's latest if NULL */
    const char *resume_file;
    int ckpt_errors_warn;          /* a failed save warns and training goes on */
    int stop_at;                   /* > 0: stop after this many steps (checkpoint, exit 0) */
    int zero;                      /* 0: every rank keeps the whole AdamW state; 1: ZeRO-1 shards; 2: ZeRO-2 */
    int tp;                        /* tensor-parallel ranks per layer (neighbouring ranks); 0 or 1: none */
    int sp;                        /* sequence parallelism inside the tensor-parallel group */
    int pp;                        /* pipeline stages (0 or 1: none) */
    int pp_schedule;               /* loom_pp_schedule_parse's: 0 1f1b, 1 gpipe */
    const char *pp_layers;         /* layers per stage, "a,b,..." (NULL: balanced) */
    double bucket_mb;              /* MiB per gradient communication bucket */
    int overlap;                   /* reduce buckets during the backward on a communication thread */
    const char *trace;             /* each rank writes TRACE.rank<r>.json (Chrome trace events) */
    const char *tensorboard;       /* rank 0 writes TensorBoard event files into this directory, or NULL */
    int overwrite;                 /* a fresh run may discard the checkpoints in ckpt_dir */
    unsigned allow_change;         /* LOOM_ALLOW_*: what a resumed run may change */
} loom_train_opts;

/* --pp-schedule's names: "1f1b" -> 0, "gpipe" -> 1, else -1 */
int loom_pp_schedule_parse(const char *s);

/* What --allow-change lets a resumed run differ in from its checkpoint. */
enum { LOOM_ALLOW_DATA = 1, LOOM_ALLOW_THREADS = 2 };

/* Runs the whole training (dist: the process group, or NULL for one process; every
 * rank calls it; rank 0 prints and writes); returns LOOM_OK, LOOM_STOPPED (SIGTERM, SIGINT or SIGUSR1
 * arrived: the current step finished and a checkpoint was written, or without a
 * checkpoint directory OUT/model.safetensors), or the first error (message set). A
 * second SIGINT exits at once with status 130. */
loom_status loom_train(const loom_train_opts *opts, const loom_dist *dist);

/* Collective over the ranks of data-parallel rank 0 (every tensor-parallel rank of every
 * pipeline stage; the others return at once): world rank 0 gets in *whole the model one
 * process would hold (the others NULL), from every rank's part g. */
loom_status loom_gather_model(const loom_gpt *g, const loom_dist *d, loom_gpt **whole);

/* `loom trace merge`: the per-rank traces PREFIX.rank<r>.json of one run (r = 0, 1, ...
 * while they exist) into one Chrome trace at `out` (written aside, then renamed), one
 * process per rank. Their times are already on one axis: rank 0's clock, each rank's
 * offset measured with MPI at start-up (in each file's "clock_sync" event). A file that
 * is not JSON, not an array, or holds another rank's events is refused, naming it.
 * *ranks: how many were merged. */
loom_status loom_trace_merge(const char *prefix, const char *out, int *ranks);


/* Blocks SIGTERM, SIGINT and SIGUSR1 in the calling thread, so that threads created
 * afterwards (MPI's, OpenMP's, oneDNN's) inherit the mask and only loom_train's signal
 * thread takes them. Call it first thing, before MPI_Init; loom_train calls it too. */
void loom_train_block_signals(void);

#define LOOM_PP_MAX_STAGES 64

/* What one optimizer step needs besides the model and optimizer: the process group,
 * the micro-batch split, the buffers of the gradient tree (sized once) and the bucketed
 * communication. */
#define LOOM_TREE_MAX 40
typedef struct loom_step_ctx {
    const loom_dist *dist;       /* NULL: one process */
    int accum;                   /* micro-batches per step, over all ranks */
    int local;                   /* micro-batches of this rank: accum / ranks */
    int sharded;                 /* zero > 0 with more than one rank: reduce-scatter, shard update, all-gather */
    int strided;                 /* ZeRO-2: rank r computes the global micro-batches r, r+R, ... */
    size_t lo, hi;               /* this rank's shard of the flat buffer (all of it when not sharded) */
    size_t tree_n;               /* floats in each tree buffer: n_params, or the shard with ZeRO-2 */
    float *orig_grads;           /* the model's own gradient buffer, lent as the first tree buffer */
    float *work;                 /* ZeRO-2: the full gradient of the micro-batch being computed */
    float *pool[LOOM_TREE_MAX];  /* (tree_n) buffers: tree levels and the current micro-batch */
    int n_pool, n_free;
    float *level[LOOM_TREE_MAX]; /* partial sums by tree level (NULL: empty) */
    struct loom_comm *comm;      /* the bucketed reduction over ranks, or NULL for one rank */
    float *losses;               /* (2 accum): all ranks' micro-batch losses, then this rank's */
    double *norm_partials;       /* (n_params / LOOM_NORM_BLOCK + 1) grad-norm block sums */
    struct loom_trace *trace;    /* per-rank timeline, or NULL */
    int vocab_lo;                /* the first token id of this rank's embedding rows (tensor parallelism) */
    unsigned char *late;         /* (vocab) wte rows the embedding backward touches on some rank */
    unsigned char *early;        /* (vocab) wte rows the first forward's embedding reads on some rank */
    int params_stale;            /* ZeRO: other ranks' shards of the parameters not gathered yet */
    int *gather_need;            /* (n_layer + 2) buckets of the all-gather each forward stage waits for */
    int32_t *all_inputs;         /* every rank's inputs of the micro-batches being reduced */
    loom_comm_layout layout;     /* where the gradient becomes final (wte rows, wpe, layers) */
    float *hook_cur;             /* during the last backward: its gradient buffer, */
    size_t hook_done;            /* and where the final range released so far starts */
    const struct loom_pp_plan *plan; /* pipeline parallelism: the stages and their schedule (NULL: one stage) */
    struct loom_pp_io *pp;       /* what moves between this stage and its neighbours (step.c) */
} loom_step_ctx;

/* Checks the split (with several ranks: a power-of-two rank count dividing accum into
 * a power-of-two number of micro-batches per rank) and allocates the buffers; bucket:
 * floats per communication bucket; overlap: reduce buckets on a communication thread
 * during the backward. */
/* Gradient buffers the tree over `local` micro-batches holds at once: one per level
 * plus the micro-batch being computed. */
int loom_step_tree_pool(int local);
loom_status loom_step_ctx_init(loom_step_ctx *c, loom_gpt *g, int accum, const loom_dist *dist, int zero,
                               size_t bucket, int overlap);
void loom_step_ctx_free(loom_step_ctx *c, loom_gpt *g);
/* Pipeline parallelism: this rank is stage dist->pp.rank of plan (g its part), its
 * micro-batches of B x T run in the plan's schedule, activations and their gradients
 * moving to and from the neighbouring stages (non-blocking point-to-point on the
 * pipeline group), a tied embedding's LM-head gradient from the last stage to the first
 * per micro-batch and its updated weights back per step. */
loom_status loom_step_ctx_pipeline(loom_step_ctx *c, loom_gpt *g, const struct loom_pp_plan *plan, int B, int T);
/* Validation as loom_eval_loss (the same bits), through the pipeline's stages when there
 * are several; after a ZeRO step, the parameters' shards first. Every rank gets *loss. */
loom_status loom_step_ctx_eval(loom_step_ctx *c, loom_gpt *g, const loom_dataset *ds, int B, int T, long max_batches,
                               double *loss);
/* What loom_step_ctx_init (and, pp > 1, loom_step_ctx_pipeline) allocate on data-parallel
 * rank 0 of a stage, in bytes: the trainer's report and `loom plan`. */
size_t loom_step_ctx_bytes(const loom_gpt_config *cfg, int B, int T, int tp, int sp, const loom_stage *stage, int pp,
                           int accum, int ranks, int zero, size_t bucket);
/* A last stage's copy of a tied LM head: the first stage's embedding, sent once the
 * parameters are up to date (the step calls it itself; an evaluation before a step). */
void loom_step_ctx_sync_head(loom_step_ctx *c, loom_gpt *g);
/* ZeRO: completes the parameter all-gather that the next step would overlap with its
 * forward (before an evaluation, a save or anything else that reads all parameters). */
void loom_step_ctx_sync_params(loom_step_ctx *c, loom_gpt *g);
/* The global index of this rank's j-th micro-batch of a step: rank*local + j, or with
 * ZeRO-2 j*ranks + rank. */
int loom_step_ctx_micro(const loom_step_ctx *c, int j);

/* One optimizer step over this rank's c->local micro-batches (inputs/targets: local x
 * B x T, in the order of loom_step_ctx_micro). Each micro-batch's gradient (its loss
 * scaled by 1/(B*T*accum)) is computed on its own and the gradients are summed as a
 * pairwise tree over the global micro-batch index: inside the rank, then across ranks
 * (loom_comm, bucket by bucket during the last backward), or with ZeRO-2 across ranks
 * first (during every backward), then over the rank's shards. The sum, and so every
 * loss and weight after it, is bitwise the same for any power-of-two rank count, ZeRO
 * stage, bucket size and overlap. Then the global grad norm (pre-clip, returned in
 * *grad_norm) and AdamW at lr. Returns the step loss: the mean of all micro-batch
 * losses, summed in index order. */
float loom_train_step(loom_gpt *g, loom_adamw *opt, loom_step_ctx *c, const int32_t *inputs,
                      const int32_t *targets, int B, int T, float lr, double *grad_norm);

/* Mean cross-entropy over the dataset's windows in order (sample i = tokens
 * [i*T, i*T+T+1)), batch by batch of B; the mean of the batch means over
 * min(max_batches, samples/B) full batches (max_batches <= 0: all). */
loom_status loom_eval_loss(loom_gpt *g, const loom_dataset *ds, int B, int T, long max_batches,
                           double *loss, long *batches);
/* How many batches of B that evaluation takes (refused when the data holds none). */
loom_status loom_eval_batches(const loom_dataset *ds, int B, int T, long max_batches, uint64_t *n);

/* `loom plan`: what a layout costs before it runs. The speeds of a machine, measured by
 * `loom bench` (or read from its JSON: gemm_gflops per thread, mem_gbps, link_gbps within
 * and across nodes, link_us). */
typedef struct loom_machine {
    double gemm_gflops, mem_gbps, link_gbps_node, link_gbps_net, link_us;
    char source[320]; /* where the numbers come from */
} loom_machine;
loom_status loom_machine_load(const char *path, loom_machine *m);
/* fp32 GEMM and memory speed of this process with `threads` threads, ~0.5 s; the links
 * are left to `loom bench` under MPI (else the defaults it names in source). */
void loom_machine_measure(int threads, loom_machine *m);

typedef struct loom_plan_query {
    loom_gpt_config cfg;
    int B, T;
    long total_batch_tokens;
    int ranks, ranks_per_node, threads;
    double mem_per_node;     /* bytes; 0: no limit */
    size_t bucket;           /* floats per gradient bucket */
    const char *backend;
    /* a layout (tp, pp >= 1), or 0 to search */
    int tp, pp, zero, sp, schedule;
    const char *pp_layers;
    /* measured (loom_plan_calibrate), or 0: from FLOPs at the machine's GEMM speed. Seconds
     * of one micro-batch's forward + backward at tp 1: a layer, and the rest (embedding,
     * final norm, LM head, loss) */
    double layer_s, rest_s;
} loom_plan_query;
/* Times this model's forward + backward of one B x T micro-batch with q->threads threads
 * here (1 and 2 layers, best of 3), into q->layer_s and q->rest_s. */
loom_status loom_plan_calibrate(loom_plan_query *q);

typedef struct loom_plan {
    int dp, tp, pp, zero, sp, schedule, micro; /* micro: micro-batches per data-parallel rank */
    int l0[LOOM_PP_MAX_STAGES + 1], sets[LOOM_PP_MAX_STAGES];
    size_t bytes[LOOM_PP_MAX_STAGES][5];  /* per stage, dp rank 0, tp rank 0: model, AdamW, step, tp, batch */
    size_t max_bytes;                     /* the largest stage's total */
    double bubble;                        /* (p-1)/(m+p-1) */
    double comm_dp, comm_tp, comm_pp;     /* bytes each rank sends per step, per dimension */
    double t_compute, t_tp, t_pp, t_dp, t_opt, t_step; /* predicted seconds per step */
    int fits;                             /* max_bytes x ranks per node <= mem_per_node */
} loom_plan;

/* One layout (q->tp, q->pp given): refuses an impossible one with the reason. */
loom_status loom_plan_one(const loom_plan_query *q, const loom_machine *m, loom_plan *out);
/* Every valid layout of q->ranks ranks, ranked: those that fit first, then by predicted
 * step time; up to cap into out; returns how many were valid (*considered: tried). */
int loom_plan_search(const loom_plan_query *q, const loom_machine *m, loom_plan *out, int cap, long *considered);

#ifdef __cplusplus
}
#endif
#endif
