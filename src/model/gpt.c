/* GPT-2 forward and backward, layer by layer, over a kernel backend. Sizes come from
 * loom_gpt_compute_sizes; buffers are allocated once in loom_gpt_init and cut into
 * named pointers here. Leaves out: mixed precision, tensor/pipeline parallelism. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "loom/model.h"

/* Views of one layer's activations inside the arena, for a micro-batch of (B,T). */
typedef struct layer_acts {
    float *ln1;      /* (B,T,C) */
    float *ln1_mean; /* (B,T) */
    float *ln1_rstd; /* (B,T) */
    float *qkv;      /* (B,T,3C) */
    float *atty;     /* (B,T,C) attention output before the projection */
    float *lse;      /* (B,H,T) softmax log-sum-exp per row */
    float *res2;     /* (B,T,C) residual after attention */
    float *ln2;      /* (B,T,C) */
    float *ln2_mean; /* (B,T) */
    float *ln2_rstd; /* (B,T) */
    float *fch;      /* (B,T,4C) */
    float *fch_gelu; /* (B,T,4C) */
    float *res3;     /* (B,T,C) residual after the MLP: the layer's output */
} layer_acts;

typedef struct global_acts {
    float *encoded;  /* (B,T,C) embeddings: the first residual */
    float *lnf;      /* (B,T,C) */
    float *lnf_mean; /* (B,T) */
    float *lnf_rstd; /* (B,T) */
    float *logits;   /* (B,T,V) */
    float *losses;   /* (B,T) */
    float *scratch;  /* (B,T,C) projection outputs before the residual add */
} global_acts;

/* The arena is laid out for the capacity (max_B, max_T); a smaller micro-batch uses the
 * prefix of each buffer, so offsets are computed with the capacity's sizes. */
static void cut_acts(const loom_gpt *g, int layer, layer_acts *la, global_acts *ga) {
    const size_t C = g->cfg.n_embd, H = g->cfg.n_head, BT = (size_t)g->max_B * g->max_T;
    const size_t per_layer = BT * 16 * C + 4 * BT + (size_t)g->max_B * H * g->max_T;
    float *p = g->acts;
    if (ga) {
        float *q = p + g->cfg.n_layer * per_layer;
        ga->encoded = q;
        q += BT * C;
        ga->lnf = q;
        q += BT * C;
        ga->lnf_mean = q;
        q += BT;
        ga->lnf_rstd = q;
        q += BT;
        ga->logits = q;
        q += BT * g->cfg.vocab_size;
        ga->losses = q;
        q += BT;
        ga->scratch = q;
    }
    if (la) {
        p += (size_t)layer * per_layer;
        la->ln1 = p;
        p += BT * C;
        la->ln1_mean = p;
        p += BT;
        la->ln1_rstd = p;
        p += BT;
        la->qkv = p;
        p += BT * 3 * C;
        la->atty = p;
        p += BT * C;
        la->lse = p;
        p += (size_t)g->max_B * H * g->max_T;
        la->res2 = p;
        p += BT * C;
        la->ln2 = p;
        p += BT * C;
        la->ln2_mean = p;
        p += BT;
        la->ln2_rstd = p;
        p += BT;
        la->fch = p;
        p += BT * 4 * C;
        la->fch_gelu = p;
        p += BT * 4 * C;
        la->res3 = p;
    }
}

static const char *layer_names[LOOM_LAYER_PARAMS] = {
    "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
    "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};

static void set_info(loom_param_info *pi, const char *name, size_t *off, int ndim, int64_t d0, int64_t d1) {
    snprintf(pi->name, sizeof pi->name, "%s", name);
    pi->ndim = ndim;
    pi->shape[0] = d0;
    pi->shape[1] = ndim > 1 ? d1 : 0;
    pi->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    pi->offset = *off;
    pi->decay = ndim >= 2;
    *off += pi->numel;
}

static void build_layout(loom_gpt *g) {
    const int64_t V = g->cfg.vocab_size, C = g->cfg.n_embd, Tm = g->cfg.block_size;
    size_t off = 0;
    loom_param_info *pi = g->params_info;
    set_info(pi++, "wte.weight", &off, 2, V, C);
    set_info(pi++, "wpe.weight", &off, 2, Tm, C);
    const int64_t shapes[LOOM_LAYER_PARAMS][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C},     {C, 0},
                                                  {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0}};
    for (int l = 0; l < g->cfg.n_layer; l++)
        for (int k = 0; k < LOOM_LAYER_PARAMS; k++) {
            char name[48];
            snprintf(name, sizeof name, "h.%d.%s", l, layer_names[k]);
            set_info(pi++, name, &off, shapes[k][1] ? 2 : 1, shapes[k][0], shapes[k][1]);
        }
    set_info(pi++, "ln_f.weight", &off, 1, C, 0);
    set_info(pi++, "ln_f.bias", &off, 1, C, 0);
    LOOM_CHECK(off == g->sizes.n_params);
}

loom_status loom_gpt_init(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T, int with_grads,
                          const char *backend) {
    *out = NULL;
    loom_status st = loom_gpt_config_validate(cfg);
    if (st) return st;
    if (max_B < 1) return loom_error(LOOM_ERR_ARG, "--batch: must be at least 1 (got %d)", max_B);
    if (max_T < 1 || max_T > cfg->block_size)
        return loom_error(LOOM_ERR_ARG, "--seq-len: %d is out of range [1, block size %d]", max_T,
                          cfg->block_size);
    const loom_backend *be = loom_backend_get(backend ? backend : "cpu");
    if (!be) return loom_error(LOOM_ERR_ARG, "--backend: unknown backend '%s' (cpu, ref)", backend);
    loom_gpt_sizes sz;
    loom_gpt_compute_sizes(cfg, max_B, max_T, &sz);
    double need =
        4.0 * ((double)sz.n_params * (with_grads ? 2 : 1) + sz.n_acts + (with_grads ? sz.n_grad_acts : 0));
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (need > have)
        return loom_error(LOOM_ERR_NOMEM,
                          "out of memory: the model needs %.2f GiB (parameters%s %.2f GiB, activations "
                          "%.2f GiB for batch %d x %d), this machine has %.2f GiB",
                          need / 1073741824.0, with_grads ? " and gradients" : "",
                          4.0 * sz.n_params * (with_grads ? 2 : 1) / 1073741824.0,
                          4.0 * (sz.n_acts + (with_grads ? sz.n_grad_acts : 0)) / 1073741824.0, max_B, max_T,
                          have / 1073741824.0);
    loom_gpt *g = loom_alloc(sizeof *g, "model");
    if (!g) return LOOM_ERR_NOMEM;
    g->cfg = *cfg;
    g->max_B = max_B;
    g->max_T = max_T;
    g->backend = be;
    loom_gpt_compute_sizes(cfg, max_B, max_T, &g->sizes);
    const loom_gpt_sizes *s = &g->sizes;
    g->params_info = loom_alloc(sizeof(loom_param_info) * s->n_tensors, "parameter table");
    g->params = g->params_info ? loom_alloc(s->n_params * sizeof(float), "parameters") : NULL;
    g->acts = g->params ? loom_alloc(s->n_acts * sizeof(float), "activations") : NULL;
    int ok = g->acts != NULL;
    if (ok && with_grads) {
        g->grads = loom_alloc(s->n_params * sizeof(float), "gradients");
        g->grad_acts = g->grads ? loom_alloc(s->n_grad_acts * sizeof(float), "activation gradients") : NULL;
        ok = g->grad_acts != NULL;
    }
    if (!ok) {
        loom_gpt_free(g);
        return LOOM_ERR_NOMEM;
    }
    build_layout(g);
    global_acts ga;
    cut_acts(g, 0, NULL, &ga);
    g->logits = ga.logits;
    g->losses = ga.losses;
    *out = g;
    return LOOM_OK;
}

void loom_gpt_free(loom_gpt *g) {
    if (!g) return;
    loom_free(g->grad_acts);
    loom_free(g->grads);
    loom_free(g->acts);
    loom_free(g->params);
    loom_free(g->params_info);
    loom_free(g);
}

int loom_gpt_find_param(const loom_gpt *g, const char *name) {
    for (int i = 0; i < g->sizes.n_tensors; i++)
        if (!strcmp(g->params_info[i].name, name)) return i;
    return -1;
}

int loom_gpt_first_nonfinite(const loom_gpt *g, const float *buf, size_t lo, size_t hi) {
    size_t bad = hi;
#pragma omp parallel for reduction(min : bad) schedule(static)
    for (size_t i = lo; i < hi; i++)
        if (!isfinite(buf[i]) && i < bad) bad = i;
    if (bad == hi) return -1;
    for (int t = 0; t < g->sizes.n_tensors; t++)
        if (bad < g->params_info[t].offset + g->params_info[t].numel) return t;
    return -1;
}

void loom_gpt_init_weights(loom_gpt *g, uint64_t seed) {
    const double resid_scale = 1.0 / sqrt(2.0 * g->cfg.n_layer);
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        float *p = g->params + pi->offset;
        const char *n = pi->name;
        size_t len = strlen(n);
        int is_ln = strstr(n, "ln_") != NULL;
        int is_bias = len > 5 && !strcmp(n + len - 5, ".bias");
        if (is_bias) {
            memset(p, 0, pi->numel * sizeof(float));
        } else if (is_ln) {
            for (size_t k = 0; k < pi->numel; k++)
                p[k] = 1.0f;
        } else {
            float std = 0.02f;
            if (strstr(n, "c_proj.weight")) std = (float)(0.02 * resid_scale);
            uint64_t key = loom_hash64(seed, (uint64_t)i);
#pragma omp parallel for schedule(static)
            for (size_t k = 0; k < pi->numel; k++)
                p[k] = std * loom_rng_normal(key, k);
        }
    }
}

const char *loom_prof_name(loom_prof_kind k) {
    static const char *names[LOOM_PROF_COUNT] = {
        "embedding fwd", "layernorm fwd", "matmul fwd",    "attention fwd", "gelu fwd",   "residual fwd",
        "lm head fwd",   "softmax+xent",  "embedding bwd", "layernorm bwd", "matmul bwd", "attention bwd",
        "gelu bwd",      "lm head bwd",   "zero grads",    "grad norm",     "adamw",      "data"};
    return (unsigned)k < LOOM_PROF_COUNT ? names[k] : "?";
}

/* Runs one backend call, timing it into g->prof_s[kind] when profiling is on. */
#define OP(kind, call)                                                                                       \
    do {                                                                                                     \
        double t0_ = g->profile ? loom_now() : 0.0;                                                          \
        call;                                                                                                \
        if (g->profile) g->prof_s[kind] += loom_now() - t0_;                                                 \
    } while (0)

#define P(idx) (g->params + g->params_info[idx].offset)
#define G(idx) (g->grads + g->params_info[idx].offset)
#define LP(l, k) P(loom_gpt_layer_tensor(l, k))
#define LG(l, k) G(loom_gpt_layer_tensor(l, k))

float loom_gpt_forward(loom_gpt *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float grad_scale) {
    LOOM_CHECK(B <= g->max_B && T <= g->max_T);
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, H = g->cfg.n_head, V = g->cfg.vocab_size, L = g->cfg.n_layer;
    const int BT = B * T;
    const int nt = g->sizes.n_tensors;
    global_acts ga;
    cut_acts(g, 0, NULL, &ga);
    if (g->param_wait) g->param_wait(g->param_wait_ctx, -1);
    OP(LOOM_PROF_EMBED, be->encoder_forward(ga.encoded, inputs, P(0), P(1), B, T, C));
    const float *res = ga.encoded;
    for (int l = 0; l < L; l++) {
        layer_acts a;
        cut_acts(g, l, &a, NULL);
        if (g->param_wait) g->param_wait(g->param_wait_ctx, l);
        OP(LOOM_PROF_LAYERNORM, be->layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, res, LP(l, LOOM_LN1_W),
                                                      LP(l, LOOM_LN1_B), BT, C));
        OP(LOOM_PROF_MATMUL,
           be->matmul_forward(a.qkv, a.ln1, LP(l, LOOM_QKV_W), LP(l, LOOM_QKV_B), BT, C, 3 * C));
        OP(LOOM_PROF_ATTENTION, be->attention_forward(a.atty, a.lse, a.qkv, B, T, H, H, C / H));
        OP(LOOM_PROF_MATMUL,
           be->matmul_forward(ga.scratch, a.atty, LP(l, LOOM_ATTPROJ_W), LP(l, LOOM_ATTPROJ_B), BT, C, C));
        OP(LOOM_PROF_RESIDUAL, be->residual_forward(a.res2, res, ga.scratch, (size_t)BT * C));
        OP(LOOM_PROF_LAYERNORM, be->layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2,
                                                      LP(l, LOOM_LN2_W), LP(l, LOOM_LN2_B), BT, C));
        OP(LOOM_PROF_MATMUL,
           be->matmul_forward(a.fch, a.ln2, LP(l, LOOM_FC_W), LP(l, LOOM_FC_B), BT, C, 4 * C));
        OP(LOOM_PROF_GELU, be->gelu_forward(a.fch_gelu, a.fch, (size_t)BT * 4 * C));
        OP(LOOM_PROF_MATMUL, be->matmul_forward(ga.scratch, a.fch_gelu, LP(l, LOOM_FCPROJ_W),
                                                LP(l, LOOM_FCPROJ_B), BT, 4 * C, C));
        OP(LOOM_PROF_RESIDUAL, be->residual_forward(a.res3, a.res2, ga.scratch, (size_t)BT * C));
        res = a.res3;
    }
    if (g->param_wait) g->param_wait(g->param_wait_ctx, L);
    OP(LOOM_PROF_LAYERNORM,
       be->layernorm_forward(ga.lnf, ga.lnf_mean, ga.lnf_rstd, res, P(nt - 2), P(nt - 1), BT, C));
    /* tied LM head: logits(BT,V) = lnf(BT,C) @ wte(V,C)^T */
    OP(LOOM_PROF_LMHEAD, be->gemm(0, 1, BT, V, C, 1.0f, ga.lnf, C, P(0), C, 0.0f, ga.logits, V));
    if (!targets) return 0.0f;
    OP(LOOM_PROF_XENT, be->crossentropy(ga.losses, ga.logits, targets, BT, V, grad_scale));
    double sum = 0.0; /* fixed order: the mean does not depend on threads */
    for (int i = 0; i < BT; i++)
        sum += ga.losses[i];
    return (float)(sum / BT);
}

void loom_gpt_backward(loom_gpt *g, const int32_t *inputs, int B, int T) {
    LOOM_CHECK(g->grads && B <= g->max_B && T <= g->max_T);
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, H = g->cfg.n_head, V = g->cfg.vocab_size, L = g->cfg.n_layer;
    const int BT = B * T;
    const int nt = g->sizes.n_tensors;
    const size_t BTm = (size_t)g->max_B * g->max_T;
    float *dres = g->grad_acts;       /* (B,T,C) gradient of the residual stream */
    float *dbuf = dres + BTm * C;     /* (B,T,C) gradient of a LayerNorm output / atty */
    float *dqkv = dbuf + BTm * C;     /* (B,T,3C) */
    float *dfch = dqkv + BTm * 3 * C; /* (B,T,4C) */
    global_acts ga;
    cut_acts(g, 0, NULL, &ga);

    /* LM head: logits now hold dlogits */
    OP(LOOM_PROF_LMHEAD_B, be->gemm(0, 0, BT, C, V, 1.0f, ga.logits, V, P(0), C, 0.0f, dbuf, C));
    OP(LOOM_PROF_LMHEAD_B, be->gemm(1, 0, V, C, BT, 1.0f, ga.logits, V, ga.lnf, C, 1.0f, G(0), C));
    /* wte's rows of tokens that are not inputs here get nothing from the embedding backward */
    if (g->grad_ready) g->grad_ready(g->grad_ready_ctx, LOOM_GRAD_HEAD_DONE);
    layer_acts last;
    cut_acts(g, L - 1, &last, NULL);
    OP(LOOM_PROF_ZERO, memset(dres, 0, (size_t)BT * C * sizeof(float)));
    OP(LOOM_PROF_LAYERNORM_B, be->layernorm_backward_acc(dres, G(nt - 2), G(nt - 1), dbuf, last.res3,
                                                         P(nt - 2), ga.lnf_mean, ga.lnf_rstd, BT, C));
    for (int l = L - 1; l >= 0; l--) {
        layer_acts a;
        cut_acts(g, l, &a, NULL);
        const float *res_in = ga.encoded;
        if (l > 0) {
            layer_acts prev;
            cut_acts(g, l - 1, &prev, NULL);
            res_in = prev.res3;
        }
        /* MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dres flows to res2 unchanged */
        OP(LOOM_PROF_MATMUL_B, be->matmul_backward(dfch, LG(l, LOOM_FCPROJ_W), LG(l, LOOM_FCPROJ_B), dres,
                                                   a.fch_gelu, LP(l, LOOM_FCPROJ_W), BT, 4 * C, C));
        OP(LOOM_PROF_GELU_B, be->gelu_backward(dfch, a.fch, dfch, (size_t)BT * 4 * C));
        OP(LOOM_PROF_MATMUL_B, be->matmul_backward(dbuf, LG(l, LOOM_FC_W), LG(l, LOOM_FC_B), dfch, a.ln2,
                                                   LP(l, LOOM_FC_W), BT, C, 4 * C));
        OP(LOOM_PROF_LAYERNORM_B,
           be->layernorm_backward_acc(dres, LG(l, LOOM_LN2_W), LG(l, LOOM_LN2_B), dbuf, a.res2,
                                      LP(l, LOOM_LN2_W), a.ln2_mean, a.ln2_rstd, BT, C));
        /* attention: res2 = res + attproj(attn(qkv(ln1(res)))) */
        OP(LOOM_PROF_MATMUL_B, be->matmul_backward(dbuf, LG(l, LOOM_ATTPROJ_W), LG(l, LOOM_ATTPROJ_B), dres,
                                                   a.atty, LP(l, LOOM_ATTPROJ_W), BT, C, C));
        OP(LOOM_PROF_ATTENTION_B, be->attention_backward(dqkv, dbuf, a.qkv, a.atty, a.lse, B, T, H, H, C / H));
        OP(LOOM_PROF_MATMUL_B, be->matmul_backward(dbuf, LG(l, LOOM_QKV_W), LG(l, LOOM_QKV_B), dqkv, a.ln1,
                                                   LP(l, LOOM_QKV_W), BT, C, 3 * C));
        OP(LOOM_PROF_LAYERNORM_B,
           be->layernorm_backward_acc(dres, LG(l, LOOM_LN1_W), LG(l, LOOM_LN1_B), dbuf, res_in,
                                      LP(l, LOOM_LN1_W), a.ln1_mean, a.ln1_rstd, BT, C));
        /* layer l and everything after it (later layers, ln_f) are final */
        if (g->grad_ready) g->grad_ready(g->grad_ready_ctx, g->params_info[loom_gpt_layer_tensor(l, 0)].offset);
    }
    OP(LOOM_PROF_EMBED_B, be->encoder_backward(G(0), G(1), dres, inputs, B, T, C));
    if (g->grad_ready) g->grad_ready(g->grad_ready_ctx, 0);
}

void loom_gpt_zero_grad(loom_gpt *g) {
    if (g->grads) OP(LOOM_PROF_ZERO, memset(g->grads, 0, g->sizes.n_params * sizeof(float)));
}
