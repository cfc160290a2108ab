/* The model object of every architecture (init from the description, free, weights'
 * initialisation) and GPT-2's forward and backward, layer by layer, over a kernel
 * backend, on all of the model or on this tensor-parallel rank's part (Megatron's
 * scheme: column-parallel q/k/v and fc, row-parallel projections, a vocabulary-parallel
 * embedding and head, their reductions through g->tp; with sequence parallelism the
 * residual stream and the norms on this rank's rows, gathered before each column-
 * parallel block, reduce-scattered after each row-parallel one); Llama's are in
 * llama.c. Leaves out: mixed precision, pipeline parallelism. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model/arch.h"

loom_status loom_gpt_init(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T, int with_grads,
                          const char *backend) {
    return loom_gpt_init_part(out, cfg, max_B, max_T, with_grads, backend, NULL, NULL);
}

loom_status loom_gpt_init_part(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T, int with_grads,
                               const char *backend, const loom_tp_comm *tpc, const loom_stage *stage) {
    *out = NULL;
    const loom_tp_comm one = {.rank = 0, .size = 1};
    if (!tpc) tpc = &one;
    loom_status st = loom_gpt_config_validate(cfg);
    if (!st) st = loom_gpt_check_tp(cfg, tpc->size);
    const loom_stage all = {0, cfg->n_layer, 1};
    if (!stage) stage = &all;
    if (!st) st = loom_gpt_check_stage(cfg, stage);
    if (st) return st;
    LOOM_CHECK(tpc->size == 1 || (tpc->sum && tpc->max));
    if (max_B < 1) return loom_error(LOOM_ERR_ARG, "--batch: must be at least 1 (got %d)", max_B);
    if (max_T < 1 || max_T > cfg->block_size)
        return loom_error(LOOM_ERR_ARG, "--seq-len: %d is out of range [1, block size %d]", max_T,
                          cfg->block_size);
    const loom_backend *be = loom_backend_get(backend ? backend : "cpu");
    if (!be) return loom_error(LOOM_ERR_ARG, "--backend: unknown backend '%s' (cpu, ref)", backend);
    loom_gpt_sizes sz;
    if (tpc->sp && tpc->size > 1 && (!tpc->gather || !tpc->scatter || ((long)max_B * max_T) % tpc->size))
        return loom_error(LOOM_ERR_ARG, "--sp: the %d x %d rows of a micro-batch do not split over %d ranks", max_B,
                          max_T, tpc->size);
    loom_gpt_compute_sizes(cfg, max_B, max_T, tpc->size, tpc->sp, stage, &sz);
    double need = 4.0 * ((double)(sz.n_params + sz.n_head_copy) * (with_grads ? 2 : 1) + sz.n_acts +
                         (with_grads ? sz.n_grad_acts : 0));
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
    g->tp = *tpc;
    g->stage = *stage;
    loom_gpt_compute_sizes(cfg, max_B, max_T, tpc->size, tpc->sp, stage, &g->sizes);
    const loom_gpt_sizes *s = &g->sizes;
    g->params_info = loom_alloc(sizeof(loom_param_info) * s->n_tensors, "parameter table");
    g->act_layout = g->params_info ? loom_alloc(sizeof(act_layout), "activation layout") : NULL;
    /* the tensors live in the backend's memory; the tables on the host */
    g->params = g->act_layout ? be->alloc(s->n_params * sizeof(float), "parameters") : NULL;
    g->acts = g->acts_base = g->params ? be->alloc(s->n_acts * sizeof(float), "activations") : NULL;
    if (g->acts && s->n_head_copy) g->head_copy = be->alloc(s->n_head_copy * sizeof(float), "the tied LM head's copy");
    if (g->acts && s->n_rope) {
        g->rope_cos = be->alloc(s->n_rope * sizeof(float), "rotary tables");
        g->rope_sin = g->rope_cos ? g->rope_cos + s->n_rope / 2 : NULL;
    }
    int ok = g->acts != NULL && (!s->n_rope || g->rope_cos) && (!s->n_head_copy || g->head_copy);
    if (ok && with_grads) {
        g->grads = be->alloc(s->n_params * sizeof(float), "gradients");
        g->grad_acts = g->grads ? be->alloc(s->n_grad_acts * sizeof(float), "activation gradients") : NULL;
        if (g->grad_acts && s->n_head_copy)
            g->head_grad = be->alloc(s->n_head_copy * sizeof(float), "the tied LM head's gradient");
        ok = g->grad_acts != NULL && (!s->n_head_copy || g->head_grad);
    }
    if (!ok) {
        loom_gpt_free(g);
        return LOOM_ERR_NOMEM;
    }
    if ((st = be->reserve(max_T, omp_get_max_threads()))) { /* the ops' workspaces, once */
        loom_gpt_free(g);
        return st;
    }
    size_t n_params;
    LOOM_CHECK(model_describe_params(cfg, tpc->size, tpc->rank, stage, g->params_info, &n_params, NULL, NULL, NULL) ==
                   s->n_tensors &&
               n_params == s->n_params);
    model_act_layout(cfg, max_B, max_T, tpc->size, tpc->sp, stage, (act_layout *)g->act_layout);
    const loom_slice *emb = &g->params_info[0].slice; /* the token embedding: vocabulary rows */
    g->vocab_lo = (int)emb->row0;
    g->vocab_rows = (int)emb->rows;
    g->vocab_local = (int)g->params_info[0].shape[0];
    if (s->n_rope) llama_rope_tables(cfg, g->rope_cos, g->rope_sin);
    loom_gpt_use_acts(g, 0);
    *out = g;
    return LOOM_OK;
}

size_t loom_gpt_bytes(const loom_gpt_config *cfg, int max_B, int max_T, int with_grads, const char *backend, int tp,
                      int sp, const loom_stage *stage, int threads) {
    loom_gpt_sizes s;
    loom_gpt_compute_sizes(cfg, max_B, max_T, tp, sp, stage, &s);
    const loom_backend *be = loom_backend_get(backend ? backend : "cpu");
    /* as loom_gpt_init_part: the struct, the tables, the buffers, the ops' workspaces */
    size_t floats = s.n_params + s.n_acts + s.n_head_copy + s.n_rope;
    if (with_grads) floats += s.n_params + s.n_grad_acts + s.n_head_copy;
    return sizeof(loom_gpt) + sizeof(loom_param_info) * (size_t)s.n_tensors + sizeof(act_layout) + floats * sizeof(float) +
           (be ? be->reserve_bytes(max_T, threads) : 0);
}

void loom_gpt_use_acts(loom_gpt *g, int k) {
    LOOM_CHECK(k >= 0 && k < g->stage.sets);
    g->acts = g->acts_base + (size_t)k * g->sizes.n_acts_set;
    g->logits = model_last(g) ? model_act_global(g, AG_LOGITS).data : NULL;
    g->losses = model_last(g) ? model_act_global(g, AG_LOSSES).data : NULL;
}

float *loom_gpt_stage_input(loom_gpt *g) { return (float *)model_act_global(g, AG_ENCODED).data; }

const float *loom_gpt_stage_output(const loom_gpt *g) {
    return model_act(g, g->stage.l1 - 1, g->cfg.arch == LOOM_ARCH_LLAMA ? LA_RES3 : GA_RES3).data;
}

float *loom_gpt_stage_grad(loom_gpt *g) { return g->grad_acts; }

size_t loom_gpt_stage_floats(const loom_gpt *g, int B, int T) {
    const size_t BT = (size_t)B * T;
    return (model_sp(g) ? BT / g->tp.size : BT) * (size_t)g->cfg.n_embd;
}


void loom_gpt_free(loom_gpt *g) {
    if (!g) return;
    const loom_backend *be = g->backend;
    be->free(g->grad_acts);
    be->free(g->grads);
    be->free(g->acts_base);
    be->free(g->head_copy);
    be->free(g->head_grad);
    be->free(g->params);
    be->free(g->rope_cos);
    loom_free(g->act_layout);
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
        if (g->params_info[t].numel && bad < g->params_info[t].offset + g->params_info[t].numel) return t;
    return -1;
}

size_t loom_gpt_layer_offset(const loom_gpt *g, int l) {
    const int L = g->cfg.n_layer, t = g->sizes.first_layer_tensor + (l < L ? l : L) * g->sizes.layer_tensors;
    return t < g->sizes.n_tensors ? g->params_info[t].offset : g->sizes.n_params;
}

/* Tensor i's part as this rank stores it (n floats at p): each element from (seed, i, its
 * index in the whole tensor) */
static void init_tensor(const loom_param_info *pi, float *p, size_t n, int i, uint64_t seed, double resid_scale) {
    if (pi->role == LOOM_ROLE_BIAS || pi->role == LOOM_ROLE_NORM_B) {
        memset(p, 0, n * sizeof(float));
    } else if (pi->role == LOOM_ROLE_NORM_W) {
        for (size_t k = 0; k < n; k++)
            p[k] = 1.0f;
    } else {
        float std = 0.02f;
        if (pi->role == LOOM_ROLE_RESID) std = (float)(0.02 * resid_scale);
        uint64_t key = loom_hash64(seed, (uint64_t)i);
        const loom_slice *sl = &pi->slice;
        const size_t w = (size_t)(sl->parts * sl->width), cols = (size_t)(pi->ndim > 1 ? pi->full[1] : pi->full[0]);
        const size_t valid = (size_t)sl->rows * w; /* beyond: a padded vocabulary's rows */
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < n; k++) { /* the element's index in the whole tensor */
            const size_t r = k / w, c = k % w, p_ = c / (size_t)sl->width, j = c % (size_t)sl->width;
            const size_t full = ((size_t)sl->row0 + r) * cols + (size_t)sl->col0 + p_ * (size_t)sl->part_stride + j;
            p[k] = k < valid ? std * loom_rng_normal(key, full) : 0.0f;
        }
    }
}

void loom_gpt_init_weights(loom_gpt *g, uint64_t seed) {
    /* GPT-2 scales the projections into the residual stream by 1/sqrt(2L); Llama does not */
    const double resid_scale = g->cfg.arch == LOOM_ARCH_LLAMA ? 1.0 : 1.0 / sqrt(2.0 * g->cfg.n_layer);
    for (int i = 0; i < g->sizes.n_tensors; i++)
        init_tensor(&g->params_info[i], g->params + g->params_info[i].offset, g->params_info[i].numel, i, seed,
                    resid_scale);
    /* a last stage's copy of the tied head: the embedding's values */
    if (g->head_copy) init_tensor(&g->params_info[0], g->head_copy, g->sizes.n_head_copy, 0, seed, resid_scale);
}

const char *loom_prof_name(loom_prof_kind k) {
    static const char *names[LOOM_PROF_COUNT] = {
        "embedding fwd", "layernorm fwd", "matmul fwd",    "attention fwd", "gelu fwd",   "residual fwd",
        "lm head fwd",   "softmax+xent",  "embedding bwd", "layernorm bwd", "matmul bwd", "attention bwd",
        "gelu bwd",      "lm head bwd",   "zero grads",    "grad norm",     "adamw",      "data"};
    return (unsigned)k < LOOM_PROF_COUNT ? names[k] : "?";
}

float loom_gpt_forward(loom_gpt *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float grad_scale) {
    return loom_gpt_forward_pass(g, NULL, inputs, targets, B, T, grad_scale);
}

void loom_gpt_backward(loom_gpt *g, const int32_t *inputs, int B, int T) {
    const loom_pass own = {.grads = g->grads};
    loom_gpt_backward_pass(g, &own, inputs, B, T);
}

float loom_gpt_forward_pass(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, const int32_t *targets,
                            int B, int T, float grad_scale) {
    LOOM_CHECK(B <= g->max_B && T <= g->max_T);
    const loom_pass none = {.grads = g->grads};
    if (!pass) pass = &none;
    if (model_sp(g) && (B * T) % g->tp.size) {
        if (!g->status)
            g->status = loom_error(LOOM_ERR_ARG, "sequence parallelism: %d x %d rows do not split over %d ranks", B, T,
                                   g->tp.size);
        return NAN;
    }
    if (g->cfg.arch == LOOM_ARCH_LLAMA) return llama_forward(g, pass, inputs, targets, B, T, grad_scale);
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, L = g->cfg.n_layer, tp = g->tp.size;
    /* this rank's heads, attention width and MLP width (all of them on one rank) */
    const int H = g->cfg.n_head / tp, Q = C / tp, F = 4 * C / tp, hs = C / g->cfg.n_head;
    const int BT = B * T;
    /* the residual stream's rows here: all, or (sequence parallelism) this rank's R from row0 */
    const int R = model_sp(g) ? BT / tp : BT;
    const size_t row0 = model_sp_row0(g, BT);
    const int nt = g->sizes.n_tensors;
    const loom_tensor scratch = AG(AG_SCRATCH);
    if (model_first(g)) { /* else the previous stage's output is in AG_ENCODED */
        if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, -1);
        /* vocabulary-parallel: each rank its rows' embeddings (rank 0 adds wpe), summed */
        const loom_tensor emb = model_sp(g) ? scratch : AG(AG_ENCODED);
        OP(LOOM_PROF_EMBED, op_encoder_forward_rows(be, emb, model_ids(g, inputs, BT), LOOM_NO_TENSOR, P(0),
                                                    model_row_bias(g, P(1)), B, T, C, g->vocab_lo, g->vocab_rows));
        const loom_tensor emb_sum = model_row_sum(g, emb, BT, C, "embedding");
        if (model_sp(g)) OP(LOOM_PROF_EMBED, op_copy(be, AG(AG_ENCODED), emb_sum, (size_t)R * C));
    }
    loom_tensor res = AG(AG_ENCODED);
    for (int l = g->stage.l0; l < g->stage.l1; l++) {
        if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, l);
        /* the norm of this rank's rows, gathered whole for the column-parallel GEMM */
        OP(LOOM_PROF_LAYERNORM, op_layernorm_forward(be, loom_view_at(A(l, GA_LN1), row0 * C), A(l, GA_LN1_MEAN),
                                                     A(l, GA_LN1_RSTD), res, LP(l, G_LN1_W), LP(l, G_LN1_B), R, C));
        model_gather_rows(g, A(l, GA_LN1), LOOM_NO_TENSOR, BT, C, "attention input");
        /* column-parallel q, k, v (this rank's heads), row-parallel output projection */
        OP(LOOM_PROF_MATMUL,
           op_matmul_forward(be, A(l, GA_QKV), A(l, GA_LN1), LP(l, G_QKV_W), LP(l, G_QKV_B), BT, C, 3 * Q));
        OP(LOOM_PROF_ATTENTION,
           op_attention_forward(be, A(l, GA_ATTY), A(l, GA_LSE), A(l, GA_QKV), B, T, H, H, hs));
        OP(LOOM_PROF_MATMUL, op_matmul_forward(be, scratch, A(l, GA_ATTY), LP(l, G_ATTPROJ_W),
                                               model_row_bias(g, LP(l, G_ATTPROJ_B)), BT, Q, C));
        loom_tensor out = model_row_sum(g, scratch, BT, C, "attention output");
        OP(LOOM_PROF_RESIDUAL, op_residual_forward(be, A(l, GA_RES2), res, out, (size_t)R * C));
        OP(LOOM_PROF_LAYERNORM, op_layernorm_forward(be, loom_view_at(A(l, GA_LN2), row0 * C), A(l, GA_LN2_MEAN),
                                                     A(l, GA_LN2_RSTD), A(l, GA_RES2), LP(l, G_LN2_W), LP(l, G_LN2_B),
                                                     R, C));
        model_gather_rows(g, A(l, GA_LN2), LOOM_NO_TENSOR, BT, C, "MLP input");
        /* column-parallel fc, row-parallel projection */
        OP(LOOM_PROF_MATMUL,
           op_matmul_forward(be, A(l, GA_FCH), A(l, GA_LN2), LP(l, G_FC_W), LP(l, G_FC_B), BT, C, F));
        OP(LOOM_PROF_GELU, op_gelu_forward(be, A(l, GA_FCH_GELU), A(l, GA_FCH), (size_t)BT * F));
        OP(LOOM_PROF_MATMUL, op_matmul_forward(be, scratch, A(l, GA_FCH_GELU), LP(l, G_FCPROJ_W),
                                               model_row_bias(g, LP(l, G_FCPROJ_B)), BT, F, C));
        out = model_row_sum(g, scratch, BT, C, "MLP output");
        OP(LOOM_PROF_RESIDUAL, op_residual_forward(be, A(l, GA_RES3), A(l, GA_RES2), out, (size_t)R * C));
        res = A(l, GA_RES3);
    }
    if (!model_last(g)) return g->status ? NAN : 0.0f; /* the output goes to the next stage */
    if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, L);
    OP(LOOM_PROF_LAYERNORM, op_layernorm_forward(be, loom_view_at(AG(AG_LNF), row0 * C), AG(AG_LNF_MEAN),
                                                 AG(AG_LNF_RSTD), res, P(nt - 2), P(nt - 1), R, C));
    model_gather_rows(g, AG(AG_LNF), LOOM_NO_TENSOR, BT, C, "LM head input");
    return model_head_forward(g, model_tied_head(g), targets, BT, grad_scale); /* tied: the head is wte */
}

float model_head_forward(loom_gpt *g, loom_tensor head, const int32_t *targets, int BT, float grad_scale) {
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, V = g->vocab_local;
    const loom_tensor logits = AG(AG_LOGITS), losses = AG(AG_LOSSES), tg = model_ids(g, targets, BT);
    /* logits(BT,V) = lnf(BT,C) @ head(V,C)^T: this rank's vocabulary columns */
    OP(LOOM_PROF_LMHEAD, op_gemm(be, 0, 1, BT, V, C, 1.0f, AG(AG_LNF), C, head, C, 0.0f, logits, V));
    if (!targets) return g->status ? NAN : 0.0f;
    if (g->tp.size == 1) {
        OP(LOOM_PROF_XENT, op_crossentropy(be, losses, logits, tg, BT, V, grad_scale));
    } else { /* vocabulary-parallel: the row maxima, then the sums, reduced; never the whole logits */
        const loom_tensor stats = AG(AG_SCRATCH);
        const int v0 = g->vocab_lo, vn = g->vocab_rows;
        OP(LOOM_PROF_XENT, op_crossentropy_part(be, 0, losses, logits, tg, stats, BT, V, v0, vn, grad_scale));
        model_tp_max(g, stats, (size_t)BT, "cross-entropy maxima");
        OP(LOOM_PROF_XENT, op_crossentropy_part(be, 1, losses, logits, tg, stats, BT, V, v0, vn, grad_scale));
        model_tp_sum(g, loom_view_at(stats, (size_t)BT), 2 * (size_t)BT, "cross-entropy sums");
        OP(LOOM_PROF_XENT, op_crossentropy_part(be, 2, losses, logits, tg, stats, BT, V, v0, vn, grad_scale));
    }
    if (g->status) return NAN;
    /* fixed order: the mean does not depend on threads (host memory: cpu and ref; a
     * device backend copies the BT losses out first) */
    double sum = 0.0;
    for (int i = 0; i < BT; i++)
        sum += g->losses[i];
    return (float)(sum / BT);
}

loom_tensor model_head_backward(loom_gpt *g, const loom_pass *pass, loom_tensor head, loom_tensor dhead,
                                loom_tensor dlnf, int BT) {
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, V = g->vocab_local;
    const loom_tensor dlogits = AG(AG_LOGITS); /* the training forward left dlogits there */
    OP(LOOM_PROF_LMHEAD_B, op_gemm(be, 0, 0, BT, C, V, 1.0f, dlogits, V, head, C, 0.0f, dlnf, C));
    const loom_tensor mine = model_row_sum(g, dlnf, BT, C, "LM head input gradient");
    /* a last stage's own buffer for a tied head's gradient starts each backward at zero, as the
     * embedding's gradient does (the first stage adds the embedding's part to it) */
    if (g->head_grad && dhead.data == g->head_grad) OP(LOOM_PROF_ZERO, op_zero(be, dhead, g->sizes.n_head_copy));
    OP(LOOM_PROF_LMHEAD_B, op_gemm(be, 1, 0, V, C, BT, 1.0f, dlogits, V, AG(AG_LNF), C, 1.0f, dhead, C));
    /* the embedding's rows of tokens that are not inputs here get nothing more */
    if (pass->grad_ready) pass->grad_ready(pass->grad_ready_ctx, LOOM_GRAD_HEAD_DONE);
    return mine;
}

void loom_gpt_backward_pass(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, int B, int T) {
    LOOM_CHECK(pass && pass->grads && g->grad_acts && B <= g->max_B && T <= g->max_T);
    if (g->cfg.arch == LOOM_ARCH_LLAMA) {
        llama_backward(g, pass, inputs, B, T);
        return;
    }
    const loom_backend *be = g->backend;
    const int C = g->cfg.n_embd, L = g->cfg.n_layer, tp = g->tp.size;
    const int H = g->cfg.n_head / tp, Q = C / tp, F = 4 * C / tp, hs = C / g->cfg.n_head;
    const int BT = B * T, R = model_sp(g) ? BT / tp : BT;
    const int nt = g->sizes.n_tensors;
    const size_t BTm = (size_t)g->max_B * g->max_T;
    const float *ga = g->grad_acts;
    const loom_tensor dres = model_view(g, ga, BTm * C);               /* (B,T,C) residual stream's gradient */
    const loom_tensor dbuf = model_view(g, ga + BTm * C, BTm * C);     /* (B,T,C) a LayerNorm output's / atty's */
    const loom_tensor dqkv = model_view(g, ga + 2 * BTm * C, BTm * 3 * Q); /* (B,T,3Q) */
    const loom_tensor dfch = model_view(g, ga + BTm * (2 * C + 3 * Q), BTm * F); /* (B,T,F) */
    /* sequence parallelism: dres holds this rank's R rows; the GEMMs read them gathered */
    const loom_tensor dall = model_sp(g) ? model_view(g, ga + BTm * (2 * C + 3 * Q + F), BTm * C) : dres;

    loom_tensor dn;
    if (model_last(g)) { /* else dres holds the next stage's gradient */
        dn = model_head_backward(g, pass, model_tied_head(g), model_tied_head_grad(g, pass), dbuf, BT);
        OP(LOOM_PROF_ZERO, op_zero(be, dres, (size_t)R * C));
        OP(LOOM_PROF_LAYERNORM_B, op_layernorm_backward_acc(be, dres, G(nt - 2), G(nt - 1), dn, A(L - 1, GA_RES3),
                                                            P(nt - 2), AG(AG_LNF_MEAN), AG(AG_LNF_RSTD), R, C));
        /* the norms saw this rank's rows only: their weights' gradients summed over the group */
        if (model_sp(g))
            model_tp_sum(g, model_param_span(g, pass->grads, nt - 2, 2), 2 * (size_t)C, "norm gradients");
    } else if (pass->grad_ready) { /* the LM head's part of the embedding's gradient is in already */
        pass->grad_ready(pass->grad_ready_ctx, LOOM_GRAD_HEAD_DONE);
    }
    for (int l = g->stage.l1 - 1; l >= g->stage.l0; l--) {
        const loom_tensor res_in = l > g->stage.l0 ? A(l - 1, GA_RES3) : AG(AG_ENCODED);
        /* MLP: res3 = res2 + fcproj(gelu(fc(ln2(res2)))); dres flows to res2 unchanged */
        model_gather_rows(g, dall, dres, BT, C, "MLP output gradient");
        OP(LOOM_PROF_MATMUL_B, op_matmul_backward(be, dfch, LG(l, G_FCPROJ_W), LG(l, G_FCPROJ_B), dall,
                                                  A(l, GA_FCH_GELU), LP(l, G_FCPROJ_W), BT, F, C));
        OP(LOOM_PROF_GELU_B, op_gelu_backward(be, dfch, A(l, GA_FCH), dfch, (size_t)BT * F));
        OP(LOOM_PROF_MATMUL_B, op_matmul_backward(be, dbuf, LG(l, G_FC_W), LG(l, G_FC_B), dfch, A(l, GA_LN2),
                                                  LP(l, G_FC_W), BT, C, F));
        dn = model_row_sum(g, dbuf, BT, C, "MLP input gradient");
        OP(LOOM_PROF_LAYERNORM_B,
           op_layernorm_backward_acc(be, dres, LG(l, G_LN2_W), LG(l, G_LN2_B), dn, A(l, GA_RES2), LP(l, G_LN2_W),
                                     A(l, GA_LN2_MEAN), A(l, GA_LN2_RSTD), R, C));
        /* attention: res2 = res + attproj(attn(qkv(ln1(res)))) */
        model_gather_rows(g, dall, dres, BT, C, "attention output gradient");
        OP(LOOM_PROF_MATMUL_B, op_matmul_backward(be, dbuf, LG(l, G_ATTPROJ_W), LG(l, G_ATTPROJ_B), dall,
                                                  A(l, GA_ATTY), LP(l, G_ATTPROJ_W), BT, Q, C));
        OP(LOOM_PROF_ATTENTION_B, op_attention_backward(be, dqkv, dbuf, A(l, GA_QKV), A(l, GA_ATTY), A(l, GA_LSE), B,
                                                        T, H, H, hs));
        OP(LOOM_PROF_MATMUL_B, op_matmul_backward(be, dbuf, LG(l, G_QKV_W), LG(l, G_QKV_B), dqkv, A(l, GA_LN1),
                                                  LP(l, G_QKV_W), BT, C, 3 * Q));
        dn = model_row_sum(g, dbuf, BT, C, "attention input gradient");
        OP(LOOM_PROF_LAYERNORM_B,
           op_layernorm_backward_acc(be, dres, LG(l, G_LN1_W), LG(l, G_LN1_B), dn, res_in, LP(l, G_LN1_W),
                                     A(l, GA_LN1_MEAN), A(l, GA_LN1_RSTD), R, C));
        if (model_sp(g)) {
            model_tp_sum(g, LGS(l, G_LN1_W, 2), 2 * (size_t)C, "norm gradients");
            model_tp_sum(g, LGS(l, G_LN2_W, 2), 2 * (size_t)C, "norm gradients");
        }
        /* layer l and everything after it (later layers, ln_f) are final */
        if (pass->grad_ready) pass->grad_ready(pass->grad_ready_ctx, loom_gpt_layer_offset(g, l));
    }
    if (!model_first(g)) return; /* dres: the previous stage's gradient */
    model_gather_rows(g, dall, dres, BT, C, "embedding gradient");
    OP(LOOM_PROF_EMBED_B, op_encoder_backward_rows(be, G(0), G(1), dall, model_ids(g, inputs, BT), B, T, C,
                                                   g->vocab_lo, g->vocab_rows));
    if (pass->grad_ready) pass->grad_ready(pass->grad_ready_ctx, 0);
}

void loom_gpt_zero_grad(loom_gpt *g, float *grads) {
    if (!grads) grads = g->grads;
    if (grads) OP(LOOM_PROF_ZERO, op_zero(g->backend, model_view(g, grads, g->sizes.n_params), g->sizes.n_params));
}
