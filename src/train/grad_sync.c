/* The data-parallel engine: what the backward hands to the bucketed reduction over the
 * ranks as it finishes it (the embedding rows no input touches after the LM head, then
 * each layer, then the input rows and the rest), and the ZeRO all-gather of the updated
 * parameters during the next forward, in the order it reads them. */
#include <string.h>

#include "loom/train.h"
#include "train/step_internal.h"
#include "train/trace.h"

/* grad_ready of the last micro-batch's backward: fold what became final into the tree
 * and release it to the communication. */
void sync_last_backward_ready(void *ctx, size_t from) {
    loom_step_ctx *c = ctx;
    const size_t emb_end = c->layout.rows * c->layout.width;
    if (from == LOOM_GRAD_HEAD_DONE) { /* the embedding's rows that no input touches */
        step_tree_fold_rows(c, c->hook_cur, 0);
        loom_comm_ready_rows(c->comm);
        return;
    }
    if (from >= c->hook_done) return;
    if (from == 0) { /* the rest of the embeddings */
        step_tree_fold_range(c, c->hook_cur, emb_end, c->hook_done);
        step_tree_fold_rows(c, c->hook_cur, 1);
    } else {
        step_tree_fold_range(c, c->hook_cur, from, c->hook_done);
    }
    c->hook_done = from;
    loom_comm_ready(c->comm, from);
}

/* grad_ready of a ZeRO-2 backward: the buffer itself is reduced */
void sync_micro_backward_ready(void *ctx, size_t from) {
    if (from == LOOM_GRAD_HEAD_DONE) loom_comm_ready_rows(ctx);
    else loom_comm_ready(ctx, from);
}

/* mask[t] = 1 for the input tokens of this rank's j-th micro-batch on every rank (from
 * all_inputs: each rank's local micro-batches of bt ids, gathered), of the rows this
 * rank holds */
void sync_mark_rows(loom_step_ctx *c, unsigned char *mask, int j, size_t bt) {
    const int R = c->dist->dp.size;
    const int32_t v0 = c->vocab_lo, vn = (int32_t)c->layout.rows; /* this rank's embedding rows */
    memset(mask, 0, c->layout.rows);
    for (int r = 0; r < R; r++) {
        const int32_t *ids = c->all_inputs + ((size_t)r * c->local + j) * bt;
        for (size_t i = 0; i < bt; i++)
            if ((uint32_t)(ids[i] - v0) < (uint32_t)vn) mask[ids[i] - v0] = 1;
    }
}

/* ZeRO: the parameters that the last AdamW updated on other ranks arrive during the
 * first forward of the step, in the order it reads them: the first micro-batches'
 * input rows of the embedding (and GPT-2's wpe), each layer, then the final norm, the
 * rest of the embedding and an untied head (the LM head). */
void sync_start_param_gather(loom_step_ctx *c, loom_gpt *g, size_t bt) {
    const loom_comm_layout *l = &c->layout;
    const int L = g->cfg.n_layer;
    sync_mark_rows(c, c->early, 0, bt);
    loom_comm_plan_begin(c->comm);
    for (size_t r = 0; r < l->rows; r++)
        if (c->early[r]) loom_comm_plan_add(c->comm, r * l->width, (r + 1) * l->width);
    loom_comm_plan_add(c->comm, l->rows * l->width, l->late_end);
    c->gather_need[0] = loom_comm_plan_cut(c->comm);
    for (int i = 0; i < L; i++) {
        loom_comm_plan_add(c->comm, loom_gpt_layer_offset(g, i), loom_gpt_layer_offset(g, i + 1));
        c->gather_need[i + 1] = loom_comm_plan_cut(c->comm);
    }
    loom_comm_plan_add(c->comm, loom_gpt_layer_offset(g, L), g->sizes.n_params); /* final norm, head */
    for (size_t r = 0; r < l->rows; r++)
        if (!c->early[r]) loom_comm_plan_add(c->comm, r * l->width, (r + 1) * l->width);
    c->gather_need[L + 1] = loom_comm_plan_cut(c->comm);
    loom_comm_start_allgather(c->comm, g->params);
}

void sync_param_wait(void *ctx, int where) {
    loom_step_ctx *c = ctx;
    loom_comm_wait(c->comm, c->gather_need[where + 1]);
}

void loom_step_ctx_sync_params(loom_step_ctx *c, loom_gpt *g) {
    if (!c->params_stale) return;
    loom_comm_plan_begin(c->comm);
    loom_comm_plan_add(c->comm, 0, g->sizes.n_params);
    loom_comm_start_allgather(c->comm, g->params);
    loom_comm_finish(c->comm);
    c->params_stale = 0;
}

/* the communication thread's bucket timings into the trace (main thread, after finish) */
void sync_trace_buckets(loom_step_ctx *c, const char *name, int micro) {
    if (!c->trace) return;
    const loom_comm_span *sp = loom_comm_spans(c->comm);
    for (int k = 0; k < loom_comm_buckets(c->comm); k++) loom_trace_add_span(c->trace, name, micro, 1, sp[k].t0, sp[k].t1);
}
