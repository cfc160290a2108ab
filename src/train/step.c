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
#include "train/step_internal.h"
#include "train/trace.h"

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
    if (c->sharded) loom_dist_shard(dist->dp.rank, R, n, LOOM_NORM_BLOCK, &c->lo, &c->hi);
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
        const size_t V = (size_t)g->vocab_local; /* this rank's rows of the token embedding */
        if ((st = loom_comm_init(&c->comm, &dist->dp, n, bucket, c->sharded ? LOOM_COMM_REDUCE_SCATTER : LOOM_COMM_ALLREDUCE,
                                 LOOM_NORM_BLOCK, overlap, V)))
            goto fail;
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
    if (!(c->norm_partials = loom_alloc(sizeof(double) * (n / LOOM_NORM_BLOCK + 1), "grad-norm partials"))) goto fail;
    return LOOM_OK;
fail:
    loom_step_ctx_free(c, g);
    return st;
}

void loom_step_ctx_free(loom_step_ctx *c, loom_gpt *g) {
    for (int i = 0; i < LOOM_TREE_MAX; i++)
        if (c->pool[i] && c->pool[i] != c->orig_grads) loom_free(c->pool[i]);
    loom_comm_free(c->comm);
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

/* The sum of squares of grads[lo, hi) (grad[0] is element lo), block by block as
 * loom_grad_sumsq_blocks, leaving out the replicated tensors unless `all`: on a
 * tensor-parallel rank other than 0 they are the copies rank 0 counts. */
static void sumsq_blocks_parts(const loom_gpt *g, const float *grad, size_t lo, size_t hi, int all, double *partials) {
    const size_t b0 = lo / LOOM_NORM_BLOCK, b1 = (hi + LOOM_NORM_BLOCK - 1) / LOOM_NORM_BLOCK;
    const int nt = g->sizes.n_tensors;
#pragma omp parallel for schedule(static)
    for (size_t b = b0; b < b1; b++) {
        const size_t i0 = b * LOOM_NORM_BLOCK, i1 = i0 + LOOM_NORM_BLOCK < hi ? i0 + LOOM_NORM_BLOCK : hi;
        double s = 0.0;
        for (int t = 0; t < nt; t++) { /* in index order: the tensors meeting the block */
            const loom_param_info *pi = &g->params_info[t];
            const size_t a = pi->offset > i0 ? pi->offset : i0, e = pi->offset + pi->numel < i1 ? pi->offset + pi->numel : i1;
            if (a >= e || (pi->split_dim < 0 && !all)) continue;
            for (size_t i = a; i < e; i++) s += (double)grad[i - lo] * grad[i - lo];
        }
        partials[b] = s;
    }
}

/* The global gradient norm with tensor parallelism: each rank's parts (its block sums,
 * over its shard with ZeRO, summed over the data-parallel ranks: exact, zeros elsewhere),
 * then the tensor-parallel ranks' totals added in rank order, the same on every rank. */
static double step_tp_grad_norm(loom_step_ctx *c, const loom_gpt *g, const float *grad) {
    const size_t n = g->sizes.n_params, nb = (n + LOOM_NORM_BLOCK - 1) / LOOM_NORM_BLOCK;
    const loom_dist *d = c->dist;
    memset(c->norm_partials, 0, sizeof(double) * nb);
    sumsq_blocks_parts(g, grad, c->lo, c->hi, d->tp.rank == 0, c->norm_partials);
    if (c->sharded) loom_dist_sum_doubles(&d->dp, c->norm_partials, (int)nb);
    double ss = 0.0, all[64];
    for (size_t b = 0; b < nb; b++) ss += c->norm_partials[b];
    LOOM_CHECK(d->tp.size <= 64);
    loom_dist_allgather_bytes(&d->tp, &ss, (int)sizeof ss, all, "grad-norm allgather over the tensor-parallel group");
    ss = 0.0;
    for (int r = 0; r < d->tp.size; r++) ss += all[r];
    return sqrt(ss);
}

float loom_train_step(loom_gpt *g, loom_adamw *opt, loom_step_ctx *c, const int32_t *inputs,
                      const int32_t *targets, int B, int T, float lr, double *grad_norm) {
    const float grad_scale = 1.0f / ((float)B * T * c->accum);
    const size_t n = g->sizes.n_params;
    const int R = c->dist ? c->dist->dp.size : 1;
    /* the free buffers are pool[0 .. n_free) */
    c->n_free = c->n_pool;
    for (int i = 0; i < LOOM_TREE_MAX; i++) c->level[i] = NULL;
    float *mine = c->losses + c->accum; /* this rank's micro-batch losses */
    float *sum = NULL;
    const size_t bt = (size_t)B * T;
    /* every rank's inputs of this step: they say which embedding rows the first forward reads
     * (those arrive first in the all-gather) and which the embedding backward touches
     * (those are sent last; the others right after the LM head) */
    if (R > 1) {
        loom_dist_allgather_i32(&c->dist->dp, inputs, (int)(c->local * bt), c->all_inputs);
        if (c->params_stale) sync_start_param_gather(c, g, bt);
    }
    for (int micro = 0; micro < c->local; micro++) {
        const int32_t *in = inputs + (size_t)micro * B * T, *tg = targets + (size_t)micro * B * T;
        const int last = micro == c->local - 1;
        double tm = loom_now();
        float *cur = c->pool[--c->n_free];
        loom_pass pass = {.grads = c->strided ? c->work : cur};
        loom_gpt_zero_grad(g, pass.grads);
        if (c->params_stale) pass.param_wait = sync_param_wait, pass.param_wait_ctx = c;
        mine[micro] = loom_gpt_forward_pass(g, &pass, in, tg, B, T, grad_scale);
        if (c->params_stale) { /* the forward has waited for every bucket */
            loom_comm_finish(c->comm);
            sync_trace_buckets(c, "bucket all-gather", micro);
            c->params_stale = 0;
        }
        if (c->strided) {
            /* ZeRO-2: this micro-batch's gradient, reduce-scattered over the ranks during
             * its backward (the ranks hold consecutive global micro-batches), keeps only
             * the shard; the tree over micro-batches then runs on shards */
            sync_mark_rows(c, c->late, micro, bt);
            loom_comm_begin(c->comm, c->work, &c->layout);
            pass.grad_ready = sync_micro_backward_ready, pass.grad_ready_ctx = c->comm;
            loom_gpt_backward_pass(g, &pass, in, B, T);
            loom_comm_finish(c->comm);
            loom_trace_add(c->trace, "forward + backward + reduce-scatter", micro, tm);
            sync_trace_buckets(c, "bucket reduce-scatter", micro);
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
            loom_gpt_backward_pass(g, &pass, in, B, T);
            loom_trace_add(c->trace, "forward + backward", micro, tm);
            double tc = loom_now();
            loom_comm_finish(c->comm);
            loom_trace_add(c->trace, c->sharded ? "reduce-scatter (rest)" : "all-reduce (rest)", -1, tc);
            sync_trace_buckets(c, c->sharded ? "bucket reduce-scatter" : "bucket all-reduce", -1);
            sum = target;
            continue;
        } else {
            loom_gpt_backward_pass(g, &pass, in, B, T);
            loom_trace_add(c->trace, "forward + backward", micro, tm);
        }
        tm = loom_now();
        if (last) {
            sum = step_tree_fold(c, cur, 0, 0);
            step_tree_fold_range(c, cur, 0, c->tree_n);
        } else {
            step_tree_push(c, cur);
        }
        loom_trace_add(c->trace, "gradient tree (local)", micro, tm);
    }
    /* the optimizer's gradients: grad[0] is element opt->lo */
    const float *grad = c->strided ? sum : sum + c->lo;
    if (c->dist) loom_dist_allgather(&c->dist->dp, mine, c->local, c->losses);
    else memcpy(c->losses, mine, sizeof(float) * c->local);
    double loss_sum = 0.0;
    for (int i = 0; i < c->accum; i++) /* in global micro-batch order */
        loss_sum += c->losses[c->strided ? (i % R) * c->local + i / R : i];
    double t0 = loom_now();
    double norm;
    if (g->tp.size > 1) {
        norm = step_tp_grad_norm(c, g, grad);
    } else if (c->sharded) { /* block sums of this shard, summed over ranks (exact: zeros elsewhere), then in order */
        const size_t nb = (n + LOOM_NORM_BLOCK - 1) / LOOM_NORM_BLOCK;
        memset(c->norm_partials, 0, sizeof(double) * nb);
        loom_grad_sumsq_blocks(grad, c->lo, c->hi, c->norm_partials);
        loom_dist_sum_doubles(&c->dist->dp, c->norm_partials, (int)nb);
        double ss = 0.0;
        for (size_t b = 0; b < nb; b++) ss += c->norm_partials[b];
        norm = sqrt(ss);
    } else {
        norm = loom_grad_norm(g, sum);
    }
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
