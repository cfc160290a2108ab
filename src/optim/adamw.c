/* AdamW over the flat parameter buffer, tensor by tensor (weight decay differs by
 * tensor), plus the LR schedule and gradient clipping. Not here: ZeRO sharding. */
#include <math.h>

#include "kernels/kernels.h"
#include "loom/optim.h"

loom_status loom_adamw_init(loom_adamw *opt, const loom_adamw_config *cfg, size_t n_params) {
    opt->cfg = *cfg;
    opt->n = n_params;
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

double loom_grad_norm(const loom_gpt *g) {
    const loom_backend *be = g->backend;
    return sqrt(be->sumsq(g->grads, g->sizes.n_params));
}

void loom_adamw_step(loom_adamw *opt, loom_gpt *g, float lr, double grad_norm) {
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
        size_t o = pi->offset;
        be->adamw(g->params + o, g->grads + o, opt->m + o, opt->v + o, pi->numel, lr, c->beta1,
                  c->beta2, c->eps, pi->decay ? c->weight_decay : 0.0f, bc1, bc2, gscale);
    }
}
