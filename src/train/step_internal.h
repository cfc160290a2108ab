/* Between the step (step.c: the micro-batch schedule and the gradient tree) and the
 * data-parallel engine (grad_sync.c: the hooks that hand finished gradient ranges to the
 * bucketed reduction, and the ZeRO parameter all-gather). Private to src/train. */
#ifndef LOOM_TRAIN_STEP_INTERNAL_H
#define LOOM_TRAIN_STEP_INTERNAL_H

#include "loom/train.h"

/* The tree (step.c): fold the last micro-batch's `cur` into the sum over elements
 * [a, b) (one thread; returns the buffer that holds the sum), over [a, b) by all threads,
 * or over the rows r of the embedding with late[r] == want. */
float *step_tree_fold(const loom_step_ctx *c, float *cur, size_t a, size_t b);
void step_tree_fold_range(const loom_step_ctx *c, float *cur, size_t a, size_t b);
void step_tree_fold_rows(const loom_step_ctx *c, float *cur, int want);

/* The data-parallel engine (grad_sync.c). grad_ready hooks: of the last micro-batch's
 * backward (folds what became final into the tree and releases it), of a ZeRO-2
 * backward (the buffer itself is reduced). */
void sync_last_backward_ready(void *ctx, size_t from);
void sync_micro_backward_ready(void *ctx, size_t from);
/* mask[t] = 1 for the input tokens of this rank's j-th micro-batch on every rank */
void sync_mark_rows(loom_step_ctx *c, unsigned char *mask, int j, size_t bt);
/* ZeRO: starts the all-gather of the parameters in the order the forward reads them;
 * the param_wait hook waits for the part a forward stage needs */
void sync_start_param_gather(loom_step_ctx *c, loom_gpt *g, size_t bt);
void sync_param_wait(void *ctx, int where);
/* the communication thread's bucket timings into the trace */
void sync_trace_buckets(loom_step_ctx *c, const char *name, int micro);

#endif
