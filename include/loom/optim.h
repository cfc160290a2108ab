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
    float *m, *v;          /* (n_params) first and second moments */
    size_t n;
    long t;                /* number of updates done (bias correction) */
} loom_adamw;

loom_status loom_adamw_init(loom_adamw *opt, const loom_adamw_config *cfg, size_t n_params);
void loom_adamw_free(loom_adamw *opt);

/* lr at 0-based step s: lr*(s+1)/warmup while s < warmup, then cosine from lr to min_lr
 * at the last step. */
float loom_lr_at(const loom_adamw_config *cfg, long step);

/* Global L2 norm of the gradients (double, fixed order). */
double loom_grad_norm(const loom_gpt *g);

/* One update of all parameters with the gradients in g->grads at learning rate lr;
 * clipping scales the gradients by clip/(norm+1e-6) when that is below 1. Weight decay
 * applies to tensors with decay = 1 only. */
void loom_adamw_step(loom_adamw *opt, loom_gpt *g, float lr, double grad_norm);

#ifdef __cplusplus
}
#endif
#endif
