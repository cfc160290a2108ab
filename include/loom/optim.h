/* AdamW (torch.optim.AdamW semantics), the learning-rate schedule and global-norm
 * clipping (torch.nn.utils.clip_grad_norm_ semantics). */
#ifndef LOOM_OPTIM_H
#define LOOM_OPTIM_H

#include <stddef.h>

#include "loom/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_adamw_config {
    float lr, min_lr;      /* peak and final learning rates */
    int warmup;            /* steps of linear warmup */
    int total_steps;       /* the cosine reaches min_lr at step total_steps-1 */
    float beta1, beta2, eps, weight_decay;
    float clip;            /* max global grad norm; <= 0 disables clipping */
} loom_adamw_config;

typedef struct loom_adamw {
    loom_adamw_config cfg;
    float *m, *v;          /* (hi - lo) first and second moments of parameters [lo, hi) */
    size_t n;              /* hi - lo */
    size_t lo, hi;         /* the shard of the flat parameter buffer this optimizer owns */
    long t;                /* number of updates done (bias correction) */
} loom_adamw;

/* Gradient norms are summed over fixed blocks of the flat buffer (each block in index
 * order, then the blocks in order), so the norm is the same however the buffer is
 * sharded over ranks, as long as shard bounds are multiples of the block. */
#define LOOM_NORM_BLOCK ((size_t)1 << 14)

loom_status loom_adamw_init(loom_adamw *opt, const loom_adamw_config *cfg, size_t n_params);
/* The same for the shard [lo, hi) of the parameters (ZeRO-1: each rank owns one). */
loom_status loom_adamw_init_shard(loom_adamw *opt, const loom_adamw_config *cfg, size_t lo, size_t hi);
void loom_adamw_free(loom_adamw *opt);

/* lr at 0-based step s: lr*(s+1)/warmup while s < warmup, then cosine from lr to min_lr
 * at the last step. */
float loom_lr_at(const loom_adamw_config *cfg, long step);

/* Global L2 norm of the gradients (double, fixed block order). */
double loom_grad_norm(const loom_gpt *g, const float *grads);
/* Sum of squares of the gradient elements [lo, hi) (block-aligned lo; grad[0] is
 * element lo) over the blocks inside, into partials[block index] (others untouched). */
void loom_grad_sumsq_blocks(const float *grad, size_t lo, size_t hi, double *partials);

/* One update of all parameters with the gradients in g->grads at learning rate lr;
 * clipping scales the gradients by clip/(norm+1e-6) when that is below 1. Weight decay
 * applies to tensors with decay = 1 only. */
loom_status loom_adamw_step(loom_adamw *opt, loom_gpt *g, float lr, double grad_norm);
/* The update of the optimizer's shard [opt->lo, opt->hi) only, with its gradients in
 * grad (grad[0] is element opt->lo: a ZeRO-2 shard, or g->grads + opt->lo). */
loom_status loom_adamw_step_shard(loom_adamw *opt, loom_gpt *g, const float *grad, float lr, double grad_norm);

#ifdef __cplusplus
}
#endif
#endif
