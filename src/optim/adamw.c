/* AdamW over the flat parameter buffer, tensor by tensor (weight decay differs by
 * tensor), plus the LR schedule and gradient clipping. Not here: ZeRO sharding. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "loom/optim.h"

loom_status loom_adamw_init(loom_adamw *opt, const loom_adamw_config *cfg, size_t n_params) {
    return loom_adamw_init_shard(opt, cfg, 0, n_params);
}

loom_status loom_adamw_init_shard(loom_adamw *opt, const loom_adamw_config *cfg, size_t lo, size_t hi) {
    const size_t n_params = hi - lo;
    opt->cfg = *cfg;
    opt->n = n_params;
    opt->lo = lo;
    opt->hi = hi;
    opt->t = 0;
    opt->m = loom_alloc(n_params * sizeof(float), "AdamW first moments");
    opt->v = opt->m ? loom_alloc(n_params * sizeof(float), "AdamW second moments") : NULL;
    if (!opt->v) {
        loom_free(opt->m);
        opt->m = NULL;
        return LOOM_ERR_NOMEM;
    }
    return LOOM_OK;
}

void loom_adamw_free(loom_adamw *opt) {
    loom_free(opt->m);
    loom_free(opt->v);
    opt->m = opt->v = NULL;
}

float loom_lr_at(const loom_adamw_config *c, long s) {
    if (s < c->warmup) return c->lr * (float)(s + 1) / (float)c->warmup;
    long span = (long)c->total_steps - 1 - c->warmup;
    if (span <= 0) return c->lr;
    double ratio = (double)(s - c->warmup) / (double)span;
    if (ratio > 1.0) ratio = 1.0;
    return (float)(c->min_lr + 0.5 * (1.0 + cos(M_PI * ratio)) * (c->lr - c->min_lr));
}

void loom_grad_sumsq_blocks(const float *grad, size_t lo, size_t hi, double *partials) {
    const size_t b0 = lo / LOOM_NORM_BLOCK, b1 = (hi + LOOM_NORM_BLOCK - 1) / LOOM_NORM_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = b0; b < b1; b++) {
        size_t i0 = b * LOOM_NORM_BLOCK, i1 = i0 + LOOM_NORM_BLOCK < hi ? i0 + LOOM_NORM_BLOCK : hi;
        double s = 0.0;
        for (size_t i = i0; i < i1; i++) s += (double)grad[i - lo] * grad[i - lo];
        partials[b] = s;
    }
}

double loom_grad_norm(const loom_gpt *g, const float *grads) {
    const size_t n = g->sizes.n_params, nb = (n + LOOM_NORM_BLOCK - 1) / LOOM_NORM_BLOCK;
    double stack[256], *partials = nb <= 256 ? stack : malloc(sizeof(double) * nb);
    LOOM_CHECK(partials != NULL);
    loom_grad_sumsq_blocks(grads, 0, n, partials);
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) s += partials[b];
    if (partials != stack) free(partials);
    return sqrt(s);
}

loom_status loom_adamw_step(loom_adamw *opt, loom_gpt *g, float lr, double grad_norm) {
    LOOM_CHECK(opt->lo == 0 && opt->hi == g->sizes.n_params);
    return loom_adamw_step_shard(opt, g, g->grads, lr, grad_norm);
}

loom_status loom_adamw_step_shard(loom_adamw *opt, loom_gpt *g, const float *grad, float lr, double grad_norm) {
    const loom_backend *be = g->backend;
    const loom_adamw_config *c = &opt->cfg;
    float gscale = 1.0f;
    if (c->clip > 0.0f) {
        double k = c->clip / (grad_norm + 1e-6);
        if (k < 1.0) gscale = (float)k;
    }
    opt->t++;
    float bc1 = (float)(1.0 - pow(c->beta1, (double)opt->t));
    float bc2 = (float)(1.0 - pow(c->beta2, (double)opt->t));
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        /* the part of this tensor inside the shard (weight decay differs by tensor) */
        size_t a = pi->offset > opt->lo ? pi->offset : opt->lo;
        size_t b = pi->offset + pi->numel < opt->hi ? pi->offset + pi->numel : opt->hi;
        if (a >= b) continue;
        const size_t n = b - a, at = a - opt->lo;
        /* the weights and gradients in the backend's memory; the moments on the host */
        const loom_tensor p = loom_view(g->params + a, n, LOOM_DTYPE_F32, be->device);
        const loom_tensor gr = loom_view(grad + at, n, LOOM_DTYPE_F32, be->device);
        const loom_tensor m = loom_view(opt->m + at, n, LOOM_DTYPE_F32, LOOM_DEVICE_HOST);
        const loom_tensor v = loom_view(opt->v + at, n, LOOM_DTYPE_F32, LOOM_DEVICE_HOST);
        loom_status st = op_adamw(be, p, gr, m, v, n, lr, c->beta1, c->beta2, c->eps,
                                  pi->decay ? c->weight_decay : 0.0f, bc1, bc2, gscale);
        if (st) return st;
    }
    return LOOM_OK;
}
