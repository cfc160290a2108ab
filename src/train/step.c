/* One optimizer step: this rank's micro-batches, each gradient into the pairwise tree
 * over the global micro-batch index (the binary counter inside the rank), the handover
 * to the data-parallel engine during the last backward (or, with ZeRO-2, every
 * backward), the gradient norm over fixed blocks and AdamW on this rank's shard. */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/train.h"
#include "train/pipeline.h"
#include "train/step_internal.h"
#include "train/trace.h"

static void pp_free(struct loom_pp_io *io);

int loom_step_tree_pool(int local) {
    int levels = 0;
    while ((1 << levels) < local) levels++;
    return levels + 1;
}

loom_status loom_step_ctx_init(loom_step_ctx *c, loom_gpt *g, int accum, const loom_dist *dist, int zero,
                              size_t bucket, int overlap) {
    memset(c, 0, sizeof *c);
    const int R = dist ? dist->dp.size : 1; /* the data-parallel ranks */
    if (zero < 0 || zero > 2) return loom_error(LOOM_ERR_ARG, "--zero: must be 0, 1 or 2 (got %d)", zero);
    if (R > 1) {
        if (R & (R - 1))
            return loom_error(LOOM_ERR_ARG, "%d ranks: the deterministic gradient sum needs a power-of-two number "
                              "of ranks", R);
        if (accum % R || ((accum / R) & (accum / R - 1)))
            return loom_error(LOOM_ERR_ARG, "--total-batch-tokens: %d micro-batches per step do not split over %d "
                              "ranks into a power of two each (use a power-of-two multiple of --batch x --seq-len x %d)",
                              accum, R, R);
    }
    const size_t n = g->sizes.n_params;
    c->dist = dist;
    c->vocab_lo = g->vocab_lo;
    c->accum = accum;
    c->local = accum / R;
    c->sharded = zero > 0 && R > 1;
    c->strided = zero == 2 && R > 1;
    c->lo = 0, c->hi = n;
    /* a pipeline stage's buffer starts inside the whole depth's: its shards are cut on that one's blocks */
    if (c->sharded) loom_dist_shard_at(dist->dp.rank, R, g->sizes.stage_base, n, LOOM_NORM_BLOCK, &c->lo, &c->hi);
    c->tree_n = c->strided ? c->hi - c->lo : n;
    c->orig_grads = g->grads;
    c->n_pool = loom_step_tree_pool(c->local);
    if (c->n_pool > LOOM_TREE_MAX) return loom_error(LOOM_ERR_ARG, "--total-batch-tokens: too many micro-batches");
    loom_status st = LOOM_ERR_NOMEM;
    if (c->strided) c->work = g->grads; /* ZeRO-2: the model's buffer is the micro-batch's; the tree holds shards */
    for (int i = 0; i < c->n_pool; i++) {
        if (i == 0 && !c->strided) c->pool[0] = g->grads;
        else if (!(c->pool[i] = loom_alloc(c->tree_n * sizeof(float), "gradient accumulation tree"))) goto fail;
    }
    c->n_free = c->n_pool;
    if (R > 1) {
        /* this rank's rows of the token embedding (none on a pipeline stage after the first) */
        const size_t V = g->params_info[0].here ? (size_t)g->vocab_local : 0;
        if ((st = loom_comm_init(&c->comm, &dist->dp, n, bucket, c->sharded ? LOOM_COMM_REDUCE_SCATTER : LOOM_COMM_ALLREDUCE,
                                 LOOM_NORM_BLOCK, overlap, V)))
            goto fail;
        loom_comm_set_shard_base(c->comm, g->sizes.stage_base);
        st = LOOM_ERR_NOMEM;
        const size_t per_rank = (size_t)c->local * g->max_B * g->max_T;
        if (!(c->late = loom_alloc(2 * V, "embedding rows of the step")) ||
            !(c->gather_need = loom_alloc(sizeof(int) * (g->cfg.n_layer + 2), "all-gather plan")) ||
            !(c->all_inputs = loom_alloc(sizeof(int32_t) * R * per_rank, "every rank's inputs")))
            goto fail;
        /* the token embedding (V rows of C), then (GPT-2) wpe, then the layers */
        c->early = c->late + V;
        c->layout = (loom_comm_layout){V, (size_t)g->cfg.n_embd, loom_gpt_layer_offset(g, 0), c->late};
    }
    st = LOOM_ERR_NOMEM;
    if (!(c->losses = loom_alloc(sizeof(float) * 2 * accum, "losses"))) goto fail;
    if (!(c->norm_partials = loom_alloc(sizeof(double) * (g->sizes.n_params_tp / LOOM_NORM_BLOCK + 1) * g->tp.size,
                                        "grad-norm partials")))
        goto fail;
    return LOOM_OK;
fail:
    loom_step_ctx_free(c, g);
    return st;
}

void loom_step_ctx_free(loom_step_ctx *c, loom_gpt *g) {
    for (int i = 0; i < LOOM_TREE_MAX; i++)
        if (c->pool[i] && c->pool[i] != c->orig_grads) loom_free(c->pool[i]);
    loom_comm_free(c->comm);
    pp_free(c->pp);
    loom_free(c->late);
    loom_free(c->gather_need);
    loom_free(c->all_inputs);
    loom_free(c->losses);
    loom_free(c->norm_partials);
    memset(c, 0, sizeof *c);
}

int loom_step_ctx_micro(const loom_step_ctx *c, int j) {
    const int R = c->dist ? c->dist->dp.size : 1, rank = c->dist ? c->dist->dp.rank : 0;
    return c->strided ? j * R + rank : rank * c->local + j;
}

/* a = a + b, elementwise: each element's result is independent of the threads */
static void add_into(float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = a[i] + b[i];
}

/* Pushes a micro-batch's gradient into the binary counter over micro-batches: equal-size
 * subtrees merge, earlier + later. */
static void step_tree_push(loom_step_ctx *c, float *cur) {
    int lv = 0;
    while (c->level[lv]) {
        add_into(c->level[lv], cur, c->tree_n);
        c->pool[c->n_free++] = cur;
        cur = c->level[lv];
        c->level[lv++] = NULL;
    }
    c->level[lv] = cur;
}

/* The additions that pushing the last micro-batch's `cur` and folding what is left
 * (higher levels first; only when the count is not a power of two) make, restricted to
 * elements [a, b), one thread; the bookkeeping is left alone, so the elements can be
 * done piecewise, in any order. Returns the buffer that holds the sum. */
float *step_tree_fold(const loom_step_ctx *c, float *cur, size_t a, size_t b) {
    int lv = 0;
    while (c->level[lv]) {
        float *restrict y = c->level[lv++];
        const float *restrict x = cur;
#pragma omp simd
        for (size_t i = a; i < b; i++) y[i] = y[i] + x[i];
        cur = y;
    }
    float *sum = NULL;
    for (int l = LOOM_TREE_MAX - 1; l >= lv; l--) {
        float *restrict buf = l == lv ? cur : c->level[l];
        if (!buf) continue;
        if (!sum) {
            sum = buf;
            continue;
        }
        float *restrict z = sum;
#pragma omp simd
        for (size_t i = a; i < b; i++) z[i] = z[i] + buf[i];
    }
    return sum;
}

/* step_tree_fold over [a, b) by all threads */
void step_tree_fold_range(const loom_step_ctx *c, float *cur, size_t a, size_t b) {
    const size_t chunk = 16384;
#pragma omp parallel for schedule(static)
    for (size_t k = a; k < b; k += chunk) step_tree_fold(c, cur, k, k + chunk < b ? k + chunk : b);
}

/* step_tree_fold over the rows r of the token embedding with late[r] == want */
void step_tree_fold_rows(const loom_step_ctx *c, float *cur, int want) {
    const loom_comm_layout *l = &c->layout;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < l->rows; r++)
        if (l->late[r] == want) step_tree_fold(c, cur, r * l->width, (r + 1) * l->width);
}

/* s + the squares of the stage buffer's elements [a, b) (grad[0] is element lo) in
 * element order, leaving out the replicated tensors unless `all`: on a tensor-parallel
 * rank other than 0 they are the copies rank 0 counts. */
static double sumsq_run(const loom_gpt *g, const float *grad, size_t lo, size_t a, size_t b, int all, double s) {
    for (int t = 0; t < g->sizes.n_tensors; t++) { /* in index order: the tensors meeting [a, b) */
        const loom_param_info *pi = &g->params_info[t];
        const size_t x = pi->offset > a ? pi->offset : a, e = pi->offset + pi->numel < b ? pi->offset + pi->numel : b;
        if (x >= e || (pi->split_dim < 0 && !all)) continue;
        for (size_t i = x; i < e; i++) s += (double)grad[i - lo] * grad[i - lo];
    }
    return s;
}

/* Which data-parallel rank holds element `at` of stage st's buffer (its shard, or rank 0
 * when not sharded), and the world rank of that rank at tensor-parallel rank tpr. */
static int norm_holder(const loom_step_ctx *c, const loom_gpt *g, int st, int first_elem) {
    const loom_dist *d = c->dist;
    loom_gpt_sizes z;
    const loom_stage sg = loom_pp_stage(c->plan, st);
    loom_gpt_compute_sizes(&g->cfg, 1, 1, g->tp.size, 0, &sg, &z);
    int who = 0;
    if (c->sharded)
        for (int r = 0; r < d->dp.size; r++) {
            size_t lo, hi;
            loom_dist_shard_at(r, d->dp.size, z.stage_base, z.n_params, LOOM_NORM_BLOCK, &lo, &hi);
            if (lo < hi && (first_elem ? lo == 0 : hi == z.n_params)) who = r;
        }
    return (st * d->dp.size + who) * d->tp.size + d->tp.rank;
}

/* The global gradient norm, the same bits for every pipeline, data-parallel and ZeRO
 * layout at one tensor-parallel size: blocks of LOOM_NORM_BLOCK elements of a tensor-
 * parallel rank's parts of every layer (at tp 1, the single process's buffer), each
 * block's squares added in element order (a block that a stage boundary cuts is
 * continued: the stage before sends its running sum on), the block sums in block order,
 * then the tensor-parallel ranks' totals in rank order. */
static double step_grad_norm(loom_step_ctx *c, const loom_gpt *g, const float *grad) {
    const loom_dist *d = c->dist;
    const size_t B = LOOM_NORM_BLOCK, N = g->sizes.n_params_tp, base = g->sizes.stage_base, nb = (N + B - 1) / B;
    const int tp = g->tp.size, all = g->tp.rank == 0, pp = c->plan ? c->plan->stages : 1;
    const int stage = pp > 1 ? d->pp.rank : 0;
    double *part = c->norm_partials, *mine = part + (size_t)g->tp.rank * nb;
    memset(part, 0, sizeof(double) * nb * tp);
    /* without ZeRO every data-parallel rank holds the same sums: rank 0 gives them */
    if (c->sharded || !d || d->dp.rank == 0) {
        const size_t a = base + c->lo, e = base + c->hi; /* this rank's elements of the whole depth */
        const size_t b0 = a / B, b1 = e ? (e - 1) / B : 0;
        const int head_cut = a < e && a % B && c->lo == 0, tail_cut = a < e && e % B && e < N && c->hi == g->sizes.n_params;
        const size_t lo = c->lo;
        /* the blocks wholly here and the start of a block cut at the end, in parallel */
        if (a < e) {
#pragma omp parallel for schedule(static)
            for (size_t b = b0 + (head_cut ? 1 : 0); b <= b1; b++) {
                if (b == b0 && head_cut) continue;
                const size_t x = b * B > a ? b * B : a, y = (b + 1) * B < e ? (b + 1) * B : e;
                mine[b] = sumsq_run(g, grad, lo, x - base, y - base, all, 0.0);
            }
        }
        double carry = 0.0;
        char what[160];
        if (head_cut && stage > 0) { /* the running sum of the block's elements on earlier stages */
            loom_p2p r = {0};
            const int from = norm_holder(c, g, stage - 1, 0);
            snprintf(what, sizeof what, "grad-norm running sum from pipeline stage %d (world rank %d)", stage - 1, from);
            loom_p2p_irecv(&d->world, (float *)&carry, 2, from, 5, &r);
            loom_p2p_wait(&r, what);
            const size_t y = (b0 + 1) * B < e ? (b0 + 1) * B : e;
            mine[b0] = sumsq_run(g, grad, lo, a - base, y - base, all, carry);
        }
        if (tail_cut && stage < pp - 1) { /* continued on the next stage */
            loom_p2p r = {0};
            const int to = norm_holder(c, g, stage + 1, 1);
            double run = mine[b1];
            mine[b1] = 0.0;
            snprintf(what, sizeof what, "grad-norm running sum to pipeline stage %d (world rank %d)", stage + 1, to);
            loom_p2p_isend(&d->world, (float *)&run, 2, to, 5, &r);
            loom_p2p_wait(&r, what);
        }
    }
    /* one rank's sum per block (zeros elsewhere): exact */
    if (d && d->size > 1) loom_dist_sum_doubles(&d->world, part, (int)(nb * tp));
    double total = 0.0;
    for (int t = 0; t < tp; t++) {
        double ss = 0.0;
        for (size_t b = 0; b < nb; b++) ss += part[(size_t)t * nb + b];
        total += ss;
    }
    return sqrt(total);
}

/* What moves between a pipeline stage and its neighbours. Receives are posted ahead
 * (two micro-batches), sends never block; a stage waits only for data its neighbour
 * has yet to produce, which the plan's check rules out as a cycle. Tags: 1 activations,
 * 2 their gradients, 3 the LM head's part of the embedding's gradient, 4 the embedding
 * for the last stage's copy, 5 (world) the grad norm's running sums. */
typedef struct loom_pp_io {
    int stage, p, first, last, tied; /* tied: the first and last stage share the embedding */
    int n_act;
    loom_pp_action acts[2 * 4096];
    size_t nio, nhead;               /* floats of one activation, of the head's gradient */
    float *r_act[2], *r_grad[2], *s_grad[2], *r_head;
    loom_p2p q_act[2], q_grad[2], qs_grad[2], q_head, qs_head, q_wte;
    loom_p2p *qs_out;                /* per activation set: the send of its output */
    int *set_of, *free_set, n_free;  /* micro-batch -> set; the free sets */
    int m;
    char what[192];
} loom_pp_io;

loom_status loom_step_ctx_pipeline(loom_step_ctx *c, loom_gpt *g, const loom_pp_plan *plan, int B, int T) {
    if (!plan || plan->stages == 1) return LOOM_OK;
    const loom_dist *d = c->dist;
    loom_pp_io *io = loom_alloc(sizeof *io, "pipeline buffers");
    if (!io) return LOOM_ERR_NOMEM;
    memset(io, 0, sizeof *io);
    c->plan = plan;
    c->pp = io;
    io->stage = d->pp.rank, io->p = plan->stages, io->m = c->local;
    io->first = io->stage == 0, io->last = io->stage == io->p - 1;
    io->tied = g->cfg.arch != LOOM_ARCH_LLAMA || !g->cfg.untied;
    LOOM_CHECK(2 * c->local <= (int)(sizeof io->acts / sizeof *io->acts));
    io->n_act = loom_pp_schedule(plan->kind, io->p, c->local, io->stage, io->acts);
    io->nio = loom_gpt_stage_floats(g, B, T);
    io->nhead = (size_t)g->vocab_local * g->cfg.n_embd;
    const int sets = g->stage.sets;
    int ok = (io->qs_out = loom_alloc(sizeof(loom_p2p) * sets, "pipeline sends")) &&
             (io->set_of = loom_alloc(sizeof(int) * c->local, "pipeline sets")) &&
             (io->free_set = loom_alloc(sizeof(int) * sets, "pipeline sets"));
    for (int k = 0; ok && k < 2; k++) {
        if (!io->first) ok = (io->r_act[k] = loom_alloc(sizeof(float) * io->nio, "pipeline activations received")) &&
                             (io->s_grad[k] = loom_alloc(sizeof(float) * io->nio, "pipeline gradients sent"));
        if (ok && !io->last) ok = (io->r_grad[k] = loom_alloc(sizeof(float) * io->nio, "pipeline gradients received")) != NULL;
    }
    if (ok && io->first && !io->last && io->tied)
        ok = (io->r_head = loom_alloc(sizeof(float) * io->nhead, "the LM head's gradient received")) != NULL;
    if (!ok) return LOOM_ERR_NOMEM;
    memset(io->qs_out, 0, sizeof(loom_p2p) * sets);
    return LOOM_OK;
}

static void pp_free(loom_pp_io *io) {
    if (!io) return;
    for (int k = 0; k < 2; k++) loom_free(io->r_act[k]), loom_free(io->r_grad[k]), loom_free(io->s_grad[k]);
    loom_free(io->r_head);
    loom_free(io->qs_out);
    loom_free(io->set_of);
    loom_free(io->free_set);
    loom_free(io);
}

/* the names a wait gives the watchdog: stage, micro-batch, peer */
static const char *pp_what(loom_pp_io *io, const loom_dist *d, const char *thing, int micro, int peer_stage) {
    const int peer = (peer_stage * d->dp.size + d->dp.rank) * d->tp.size + d->tp.rank;
    snprintf(io->what, sizeof io->what, "pipeline stage %d waits for %s of micro-batch %d from stage %d (world rank %d)",
             io->stage, thing, micro, peer_stage, peer);
    return io->what;
}

/* the same for a send this stage waits to complete */
static const char *pp_what_sent(loom_pp_io *io, const loom_dist *d, const char *thing, int peer_stage) {
    const int peer = (peer_stage * d->dp.size + d->dp.rank) * d->tp.size + d->tp.rank;
    snprintf(io->what, sizeof io->what, "pipeline stage %d waits for %s to reach stage %d (world rank %d)", io->stage,
             thing, peer_stage, peer);
    return io->what;
}

static void pp_post_act(loom_pp_io *io, const loom_dist *d, int j) {
    if (!io->first && j < io->m) loom_p2p_irecv(&d->pp, io->r_act[j & 1], io->nio, io->stage - 1, 1, &io->q_act[j & 1]);
}
static void pp_post_grad(loom_pp_io *io, const loom_dist *d, int j) {
    if (!io->last && j < io->m) loom_p2p_irecv(&d->pp, io->r_grad[j & 1], io->nio, io->stage + 1, 2, &io->q_grad[j & 1]);
}
static void pp_post_head(loom_pp_io *io, const loom_dist *d, int j) {
    if (io->r_head && j < io->m) loom_p2p_irecv(&d->pp, io->r_head, io->nhead, io->p - 1, 3, &io->q_head);
}

void loom_step_ctx_sync_head(loom_step_ctx *c, loom_gpt *g) {
    loom_pp_io *io = c->pp;
    if (!io || !io->tied) return;
    const loom_dist *d = c->dist;
    if (io->first) { /* ZeRO: the embedding's shards first */
        loom_step_ctx_sync_params(c, g);
        loom_p2p_isend(&d->pp, g->params + g->params_info[0].offset, io->nhead, io->p - 1, 4, &io->q_wte);
        loom_p2p_wait(&io->q_wte, pp_what_sent(io, d, "the embedding (the LM head's copy)", io->p - 1));
    } else if (io->last) {
        loom_p2p_irecv(&d->pp, g->head_copy, io->nhead, 0, 4, &io->q_wte);
        loom_p2p_wait(&io->q_wte, pp_what(io, d, "the embedding (the LM head's weights)", 0, 0));
    }
}

/* One step's state between its actions. */
typedef struct step_run {
    loom_step_ctx *c;
    loom_gpt *g;
    const int32_t *inputs, *targets;
    int B, T;
    float grad_scale;
    float *mine, *sum;
    double t_fwd; /* one stage: when the micro-batch's forward began ("forward + backward") */
} step_run;

static void step_forward(step_run *r, int j) {
    loom_step_ctx *c = r->c;
    loom_gpt *g = r->g;
    loom_pp_io *io = c->pp;
    const size_t bt = (size_t)r->B * r->T;
    int set = 0;
    if (io) {
        set = io->set_of[j] = io->free_set[--io->n_free];
        loom_gpt_use_acts(g, set);
        if (!io->first) { /* the previous stage's output */
            const double tw = loom_now();
            loom_p2p_wait(&io->q_act[j & 1], pp_what(io, c->dist, "the activations", j, io->stage - 1));
            loom_trace_add(c->trace, "wait: activations", j, tw);
            memcpy(loom_gpt_stage_input(g), io->r_act[j & 1], sizeof(float) * io->nio);
            pp_post_act(io, c->dist, j + 2);
        }
    }
    const double tm = loom_now(); /* the forward itself: after its input arrived */
    r->t_fwd = tm;
    loom_pass pass = {.grads = NULL};
    if (c->params_stale) {
        /* ZeRO: the parameters arrive during the first forward (started here, after this
         * stage's receive: no other MPI call while the communication thread runs) */
        if (j == 0) sync_start_param_gather(c, g, bt);
        pass.param_wait = sync_param_wait, pass.param_wait_ctx = c;
    }
    r->mine[j] = loom_gpt_forward_pass(g, &pass, r->inputs + (size_t)j * bt, r->targets + (size_t)j * bt, r->B, r->T,
                                       r->grad_scale);
    if (c->params_stale) { /* the forward has waited for every bucket */
        loom_comm_finish(c->comm);
        sync_trace_buckets(c, "bucket all-gather", j);
        c->params_stale = 0;
    }
    if (io && !io->last)
        loom_p2p_isend(&c->dist->pp, loom_gpt_stage_output(g), io->nio, io->stage + 1, 1, &io->qs_out[set]);
    if (io) loom_trace_add(c->trace, "forward", j, tm);
}

/* The backward's results to the neighbours: the residual stream's gradient to the
 * previous stage, a last stage's LM-head gradient of a tied embedding to the first. */
static void pp_send_back(step_run *r, int j) {
    loom_pp_io *io = r->c->pp;
    const loom_dist *d = r->c->dist;
    if (!io) return;
    if (!io->first) {
        loom_p2p_wait(&io->qs_grad[j & 1], pp_what_sent(io, d, "a gradient of two micro-batches ago", io->stage - 1));
        memcpy(io->s_grad[j & 1], loom_gpt_stage_grad(r->g), sizeof(float) * io->nio);
        loom_p2p_isend(&d->pp, io->s_grad[j & 1], io->nio, io->stage - 1, 2, &io->qs_grad[j & 1]);
    }
    if (io->last && !io->first && io->tied) loom_p2p_isend(&d->pp, r->g->head_grad, io->nhead, 0, 3, &io->qs_head);
}

static void step_backward(step_run *r, int j) {
    loom_step_ctx *c = r->c;
    loom_gpt *g = r->g;
    loom_pp_io *io = c->pp;
    const int R = c->dist ? c->dist->dp.size : 1, last = j == c->local - 1;
    const size_t n = g->sizes.n_params, bt = (size_t)r->B * r->T;
    const int32_t *in = r->inputs + (size_t)j * bt;
    double tm = r->t_fwd;
    const int early_send = loom_dist_thread_multiple(); /* MPI lets this thread send beside the communication thread */
    if (io) {
        const double tw = loom_now();
        loom_gpt_use_acts(g, io->set_of[j]);
        if (!io->last) { /* the next stage's gradient */
            loom_p2p_wait(&io->q_grad[j & 1], pp_what(io, c->dist, "the gradient", j, io->stage + 1));
            memcpy(loom_gpt_stage_grad(g), io->r_grad[j & 1], sizeof(float) * io->nio);
            pp_post_grad(io, c->dist, j + 2);
        }
        loom_p2p_wait(&io->qs_head, pp_what_sent(io, c->dist, "the previous micro-batch's LM head gradient", 0));
        if (io->r_head) /* the LM head's part of the embedding's gradient, from the last stage */
            loom_p2p_wait(&io->q_head, pp_what(io, c->dist, "the LM head's gradient", j, io->p - 1));
        loom_trace_add(c->trace, "wait: gradients", j, tw);
        tm = loom_now(); /* the backward itself: after its inputs arrived */
    }
    float *cur = c->pool[--c->n_free];
    loom_pass pass = {.grads = c->strided ? c->work : cur};
    loom_gpt_zero_grad(g, pass.grads);
    if (io && io->r_head) {
        memcpy(pass.grads + g->params_info[0].offset, io->r_head, sizeof(float) * io->nhead);
        pp_post_head(io, c->dist, j + 1);
    }
    const char *name = io ? "backward" : "forward + backward";
    int sent = 0;
    if (c->strided) {
        /* ZeRO-2: this micro-batch's gradient, reduce-scattered over the ranks during
         * its backward (the ranks hold consecutive global micro-batches), keeps only
         * the shard; the tree over micro-batches then runs on shards */
        sync_mark_rows(c, c->late, j, bt);
        loom_comm_begin(c->comm, c->work, &c->layout);
        pass.grad_ready = sync_micro_backward_ready, pass.grad_ready_ctx = c->comm;
        loom_gpt_backward_pass(g, &pass, in, r->B, r->T);
        if (early_send) pp_send_back(r, j), sent = 1;
        loom_comm_finish(c->comm);
        loom_trace_add(c->trace, io ? "backward + reduce-scatter" : "forward + backward + reduce-scatter", j, tm);
        sync_trace_buckets(c, "bucket reduce-scatter", j);
        memcpy(cur, c->work + c->lo, sizeof(float) * c->tree_n);
    } else if (last && R > 1) {
        /* the sum's buffer is known before the backward: buckets are folded and sent
         * as the backward finishes them */
        c->hook_cur = cur;
        c->hook_done = n;
        float *target = step_tree_fold(c, cur, 0, 0); /* an empty range: only which buffer */
        sync_mark_rows(c, c->late, c->local - 1, bt);
        loom_comm_begin(c->comm, target, &c->layout);
        pass.grad_ready = sync_last_backward_ready, pass.grad_ready_ctx = c;
        loom_gpt_backward_pass(g, &pass, in, r->B, r->T);
        if (early_send) pp_send_back(r, j), sent = 1;
        loom_trace_add(c->trace, name, j, tm);
        double tc = loom_now();
        loom_comm_finish(c->comm);
        loom_trace_add(c->trace, c->sharded ? "reduce-scatter (rest)" : "all-reduce (rest)", -1, tc);
        sync_trace_buckets(c, c->sharded ? "bucket reduce-scatter" : "bucket all-reduce", -1);
        r->sum = target;
    } else {
        loom_gpt_backward_pass(g, &pass, in, r->B, r->T);
        loom_trace_add(c->trace, name, j, tm);
    }
    if (!sent) pp_send_back(r, j);
    if (io) { /* the set is free once its output's send is done */
        loom_p2p_wait(&io->qs_out[io->set_of[j]], pp_what_sent(io, c->dist, "the activations", io->stage + 1));
        io->free_set[io->n_free++] = io->set_of[j];
    }
    if (r->sum) return; /* the last micro-batch, folded during the backward */
    tm = loom_now();
    if (last) {
        r->sum = step_tree_fold(c, cur, 0, 0);
        step_tree_fold_range(c, cur, 0, c->tree_n);
    } else {
        step_tree_push(c, cur);
    }
    loom_trace_add(c->trace, "gradient tree (local)", j, tm);
}

float loom_train_step(loom_gpt *g, loom_adamw *opt, loom_step_ctx *c, const int32_t *inputs,
                      const int32_t *targets, int B, int T, float lr, double *grad_norm) {
    const int R = c->dist ? c->dist->dp.size : 1;
    loom_pp_io *io = c->pp;
    step_run r = {c, g, inputs, targets, B, T, 1.0f / ((float)B * T * c->accum), c->losses + c->accum, NULL, 0.0};
    /* the free buffers are pool[0 .. n_free) */
    c->n_free = c->n_pool;
    for (int i = 0; i < LOOM_TREE_MAX; i++) c->level[i] = NULL;
    memset(r.mine, 0, sizeof(float) * c->local); /* this rank's micro-batch losses (the last stage's) */
    const size_t bt = (size_t)B * T;
    /* every rank's inputs of this step: they say which embedding rows the first forward reads
     * (those arrive first in the all-gather) and which the embedding backward touches
     * (those are sent last; the others right after the LM head) */
    if (R > 1) loom_dist_allgather_i32(&c->dist->dp, inputs, (int)(c->local * bt), c->all_inputs);
    if (io) {
        loom_step_ctx_sync_head(c, g);
        io->n_free = 0;
        for (int k = g->stage.sets - 1; k >= 0; k--) io->free_set[io->n_free++] = k;
        for (int j = 0; j < 2; j++) pp_post_act(io, c->dist, j), pp_post_grad(io, c->dist, j);
        pp_post_head(io, c->dist, 0);
        for (int i = 0; i < io->n_act; i++) {
            if (io->acts[i].op == 'F') step_forward(&r, io->acts[i].micro);
            else step_backward(&r, io->acts[i].micro);
        }
        for (int k = 0; k < 2; k++) loom_p2p_wait(&io->qs_grad[k], pp_what_sent(io, c->dist, "the last gradients", io->stage - 1));
        loom_p2p_wait(&io->qs_head, pp_what_sent(io, c->dist, "the last LM head gradient", 0));
    } else {
        for (int j = 0; j < c->local; j++) {
            step_forward(&r, j);
            step_backward(&r, j);
        }
    }
    /* the optimizer's gradients: grad[0] is element opt->lo */
    const float *grad = c->strided ? r.sum : r.sum + c->lo;
    if (c->dist) loom_dist_allgather(&c->dist->dp, r.mine, c->local, c->losses);
    else memcpy(c->losses, r.mine, sizeof(float) * c->local);
    if (io) loom_dist_bcast_floats(&c->dist->pp, c->losses, c->accum, io->p - 1, "the losses from the last stage");
    double loss_sum = 0.0;
    for (int i = 0; i < c->accum; i++) /* in global micro-batch order */
        loss_sum += c->losses[c->strided ? (i % R) * c->local + i / R : i];
    double t0 = loom_now();
    const double norm = step_grad_norm(c, g, grad);
    double t1 = loom_now();
    loom_trace_add(c->trace, "grad norm", -1, t0);
    loom_status st = loom_adamw_step_shard(opt, g, grad, lr, norm);
    if (st && !g->status) g->status = st;
    loom_trace_add(c->trace, "adamw", -1, t1);
    /* ZeRO: the other ranks' updated shards arrive during the next step's first forward
     * (or at loom_step_ctx_sync_params) */
    if (c->sharded) c->params_stale = 1;
    if (g->profile) {
        g->prof_s[LOOM_PROF_NORM] += t1 - t0;
        g->prof_s[LOOM_PROF_ADAMW] += loom_now() - t1;
    }
    if (grad_norm) *grad_norm = norm;
    return (float)(loss_sum / c->accum);
}

loom_status loom_step_ctx_eval(loom_step_ctx *c, loom_gpt *g, const loom_dataset *ds, int B, int T, long max_batches,
                               double *loss) {
    loom_pp_io *io = c->pp;
    loom_step_ctx_sync_params(c, g);
    if (!io) return loom_eval_loss(g, ds, B, T, max_batches, loss, NULL);
    /* the stages in turn, batch by batch, as loom_eval_loss adds the batch means */
    uint64_t n;
    loom_status st = loom_eval_batches(ds, B, T, max_batches, &n);
    if (st) return st;
    int32_t *in = loom_alloc(sizeof(int32_t) * 2 * B * T, "eval batch");
    if (!in) return LOOM_ERR_NOMEM;
    int32_t *tg = in + B * T;
    const loom_dist *d = c->dist;
    loom_step_ctx_sync_head(c, g);
    loom_gpt_use_acts(g, 0);
    double sum = 0.0;
    for (uint64_t k = 0; k < n; k++) {
        for (int b = 0; b < B; b++) loom_dataset_sample(ds, k * B + b, 0, 0, in + b * T, tg + b * T);
        loom_p2p q = {0};
        if (!io->first) {
            loom_p2p_irecv(&d->pp, loom_gpt_stage_input(g), io->nio, io->stage - 1, 1, &q);
            loom_p2p_wait(&q, pp_what(io, d, "the validation activations", (int)k, io->stage - 1));
        }
        const float l = loom_gpt_forward(g, in, tg, B, T, 0.0f);
        if (io->last) sum += l;
        else {
            loom_p2p_isend(&d->pp, loom_gpt_stage_output(g), io->nio, io->stage + 1, 1, &q);
            loom_p2p_wait(&q, pp_what_sent(io, d, "the validation activations", io->stage + 1));
        }
    }
    loom_free(in);
    float bits[2];
    memcpy(bits, &sum, sizeof sum);
    loom_dist_bcast_floats(&d->pp, bits, 2, io->p - 1, "the validation loss from the last stage");
    memcpy(&sum, bits, sizeof sum);
    *loss = sum / (double)n;
    return LOOM_OK;
}

size_t loom_step_ctx_bytes(const loom_gpt_config *cfg, int B, int T, int tp, int sp, const loom_stage *stage, int pp,
                           int accum, int ranks, int zero, size_t bucket) {
    /* as loom_step_ctx_init and loom_step_ctx_pipeline allocate */
    loom_gpt_sizes s;
    loom_gpt_compute_sizes(cfg, B, T, tp, sp, stage, &s);
    const int R = ranks, local = accum / R, sharded = zero > 0 && R > 1, strided = zero == 2 && R > 1;
    const int first = s.stage.l0 == 0, last = s.stage.l1 == cfg->n_layer;
    const size_t n = s.n_params;
    size_t lo = 0, hi = n;
    if (sharded) loom_dist_shard_at(0, R, s.stage_base, n, LOOM_NORM_BLOCK, &lo, &hi); /* dp rank 0's */
    const size_t tree_n = strided ? hi - lo : n, V = first ? (size_t)loom_tp_local_rows(cfg->vocab_size, tp, 1) : 0;
    size_t b = sizeof(float) * tree_n * (size_t)(loom_step_tree_pool(local) - !strided);
    if (R > 1)
        b += loom_comm_bytes(n, bucket) + 2 * V + sizeof(int) * (size_t)(cfg->n_layer + 2) +
             sizeof(int32_t) * (size_t)R * local * B * T;
    b += sizeof(float) * 2 * (size_t)accum + sizeof(double) * (s.n_params_tp / LOOM_NORM_BLOCK + 1) * (size_t)tp;
    if (pp > 1) {
        const size_t nio = (size_t)B * T * cfg->n_embd / (sp && tp > 1 ? (size_t)tp : 1);
        const int tied = cfg->arch != LOOM_ARCH_LLAMA || !cfg->untied;
        b += sizeof(loom_pp_io) + sizeof(loom_p2p) * (size_t)s.stage.sets + sizeof(int) * ((size_t)local + s.stage.sets);
        b += sizeof(float) * nio * (size_t)(4 * !first + 2 * !last);
        if (first && !last && tied) b += sizeof(float) * V * cfg->n_embd;
    }
    return b;
}
