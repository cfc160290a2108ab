/* The description of each architecture: its parameter tensors (Hugging Face names,
 * shapes as stored, layer, role, tensor-parallel split) and its activation slots. The
 * sizes, the one allocation, the pointers and the start-up report all come from here,
 * and nowhere else. */
#include <stdio.h>
#include <string.h>

#include "model/arch.h"

typedef struct param_sink {
    loom_param_info *out; /* NULL: count only */
    int n;
    size_t off, tp_off, full_off; /* this rank's buffer, its tensor-parallel part of every layer, the whole model */
    int out_dim; /* which dimension of a 2-D weight holds the output features */
    int tp, tp_rank;
    int l0, l1, n_layer; /* the pipeline stage's layers */
    int after;           /* the tensors after the layers are being added */
    size_t base;         /* tp_off of the stage's first tensor */
    int seen;            /* a tensor of the stage was added */
} param_sink;

int64_t loom_tp_local_rows(int64_t n, int size, int padded) { return padded ? (n + size - 1) / size : n / size; }

/* parts: blocks along the split dimension that split each on their own (c_attn's q, k, v) */
static void add_parts(param_sink *s, const char *name, int layer, int role, int split, int ndim, int64_t d0,
                      int64_t d1, int parts) {
    const int sd = split == LOOM_TP_REPLICATED ? -1 : ndim < 2 || split == LOOM_TP_VOCAB ? 0
                   : split == LOOM_TP_COLUMN ? s->out_dim : 1 - s->out_dim;
    int64_t local[2] = {d0, ndim > 1 ? d1 : 1};
    if (sd >= 0 && s->tp > 1) local[sd] = loom_tp_local_rows(local[sd] / parts, s->tp, split == LOOM_TP_VOCAB) * parts;
    const size_t tp_numel = (size_t)local[0] * (size_t)local[1], full = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    /* a pipeline stage holds its layers; the first the embeddings, the last what follows the layers */
    const int here = layer >= 0 ? layer >= s->l0 && layer < s->l1 : s->after ? s->l1 == s->n_layer : s->l0 == 0;
    const size_t numel = here ? tp_numel : 0;
    if (here && !s->seen) s->seen = 1, s->base = s->tp_off;
    if (s->out) {
        loom_param_info *pi = &s->out[s->n];
        memset(pi, 0, sizeof *pi);
        snprintf(pi->name, sizeof pi->name, "%s", name);
        pi->ndim = ndim;
        pi->full[0] = d0;
        pi->full[1] = ndim > 1 ? d1 : 0;
        pi->shape[0] = local[0];
        pi->shape[1] = ndim > 1 ? local[1] : 0;
        pi->numel = numel;
        pi->full_numel = full;
        pi->offset = s->off;
        pi->tp_offset = s->tp_off;
        pi->full_offset = s->full_off;
        pi->here = here;
        pi->decay = ndim >= 2;
        pi->layer = layer;
        pi->role = role;
        pi->split = split;
        pi->split_dim = sd; /* GPT-2's Conv1D weights are (in, out), Llama's Linear (out, in) */
        pi->parts = parts;
        LOOM_CHECK(loom_param_slice(pi, s->tp_rank, s->tp, &pi->slice) == 0);
    }
    s->off += numel;
    s->tp_off += tp_numel;
    s->full_off += full;
    s->n++;
}

static void add(param_sink *s, const char *name, int layer, int role, int split, int ndim, int64_t d0, int64_t d1) {
    add_parts(s, name, layer, role, split, ndim, d0, d1, 1);
}

/* n_layer copies of one layer's k tensors, named PREFIX<l>.<name>; a 1-D tensor has
 * shape {d0, 0} */
static void add_layers(param_sink *s, int n_layer, const char *prefix, const char *const *names, const int *roles,
                       const int *splits, const int *parts, const int64_t (*shapes)[2], int k_count) {
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < k_count; k++) {
            char name[64] = "";
            if (s->out) snprintf(name, sizeof name, "%s%d.%s", prefix, l, names[k]); /* counting needs no names */
            add_parts(s, name, l, roles[k], splits[k], shapes[k][1] ? 2 : 1, shapes[k][0], shapes[k][1],
                      parts ? parts[k] : 1);
        }
}

static void gpt2_params(const loom_gpt_config *c, param_sink *s) {
    static const char *names[G_LAYER_PARAMS] = {
        "ln_1.weight",        "ln_1.bias",        "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",        "ln_2.bias",
        "mlp.c_fc.weight",    "mlp.c_fc.bias",    "mlp.c_proj.weight",  "mlp.c_proj.bias"};
    /* Conv1D weights are (in, out): a column split cuts dim 1, a row split dim 0 */
    static const int roles[G_LAYER_PARAMS] = {LOOM_ROLE_NORM_W, LOOM_ROLE_NORM_B, LOOM_ROLE_LINEAR, LOOM_ROLE_BIAS,
                                              LOOM_ROLE_RESID,  LOOM_ROLE_BIAS,   LOOM_ROLE_NORM_W, LOOM_ROLE_NORM_B,
                                              LOOM_ROLE_LINEAR, LOOM_ROLE_BIAS,   LOOM_ROLE_RESID,  LOOM_ROLE_BIAS};
    static const int splits[G_LAYER_PARAMS] = {LOOM_TP_REPLICATED, LOOM_TP_REPLICATED, LOOM_TP_COLUMN, LOOM_TP_COLUMN,
                                               LOOM_TP_ROW,        LOOM_TP_REPLICATED, LOOM_TP_REPLICATED,
                                               LOOM_TP_REPLICATED, LOOM_TP_COLUMN,     LOOM_TP_COLUMN,
                                               LOOM_TP_ROW,        LOOM_TP_REPLICATED};
    const int64_t C = c->n_embd;
    const int64_t shapes[G_LAYER_PARAMS][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C},     {C, 0},
                                               {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0}};
    add(s, "wte.weight", -1, LOOM_ROLE_EMBED, LOOM_TP_VOCAB, 2, c->vocab_size, C);
    add(s, "wpe.weight", -1, LOOM_ROLE_POS, LOOM_TP_REPLICATED, 2, c->block_size, C);
    /* c_attn's columns are q, k, v: each splits by heads */
    static const int parts[G_LAYER_PARAMS] = {[G_QKV_W] = 3, [G_QKV_B] = 3, [G_LN1_W] = 1, [G_LN1_B] = 1,
                                              [G_ATTPROJ_W] = 1, [G_ATTPROJ_B] = 1, [G_LN2_W] = 1, [G_LN2_B] = 1,
                                              [G_FC_W] = 1, [G_FC_B] = 1, [G_FCPROJ_W] = 1, [G_FCPROJ_B] = 1};
    add_layers(s, c->n_layer, "h.", names, roles, splits, parts, shapes, G_LAYER_PARAMS);
    s->after = 1;
    add(s, "ln_f.weight", -1, LOOM_ROLE_NORM_W, LOOM_TP_REPLICATED, 1, C, 0);
    add(s, "ln_f.bias", -1, LOOM_ROLE_NORM_B, LOOM_TP_REPLICATED, 1, C, 0);
}

static void llama_params(const loom_gpt_config *c, param_sink *s) {
    static const char *names[L_LAYER_PARAMS] = {
        "input_layernorm.weight",          "self_attn.q_proj.weight", "self_attn.k_proj.weight",
        "self_attn.v_proj.weight",         "self_attn.o_proj.weight", "post_attention_layernorm.weight",
        "mlp.gate_proj.weight",            "mlp.up_proj.weight",      "mlp.down_proj.weight"};
    /* Linear weights are (out, in): a column split cuts dim 0, a row split dim 1 */
    static const int roles[L_LAYER_PARAMS] = {LOOM_ROLE_NORM_W, LOOM_ROLE_LINEAR, LOOM_ROLE_LINEAR,
                                              LOOM_ROLE_LINEAR, LOOM_ROLE_RESID,  LOOM_ROLE_NORM_W,
                                              LOOM_ROLE_LINEAR, LOOM_ROLE_LINEAR, LOOM_ROLE_RESID};
    static const int splits[L_LAYER_PARAMS] = {LOOM_TP_REPLICATED, LOOM_TP_COLUMN, LOOM_TP_COLUMN,
                                               LOOM_TP_COLUMN,     LOOM_TP_ROW,    LOOM_TP_REPLICATED,
                                               LOOM_TP_COLUMN,     LOOM_TP_COLUMN, LOOM_TP_ROW};
    const int64_t C = c->n_embd, hs = c->n_embd / c->n_head, q = c->n_head * hs, kv = c->n_kv_head * hs,
                  F = c->ffn_dim;
    const int64_t shapes[L_LAYER_PARAMS][2] = {{C, 0}, {q, C}, {kv, C}, {kv, C}, {C, q}, {C, 0}, {F, C}, {F, C}, {C, F}};
    add(s, "model.embed_tokens.weight", -1, LOOM_ROLE_EMBED, LOOM_TP_VOCAB, 2, c->vocab_size, C);
    add_layers(s, c->n_layer, "model.layers.", names, roles, splits, NULL, shapes, L_LAYER_PARAMS);
    s->after = 1;
    add(s, "model.norm.weight", -1, LOOM_ROLE_NORM_W, LOOM_TP_REPLICATED, 1, C, 0);
    if (c->untied) add(s, "lm_head.weight", -1, LOOM_ROLE_HEAD, LOOM_TP_VOCAB, 2, c->vocab_size, C);
}

int model_describe_params(const loom_gpt_config *cfg, int tp, int tp_rank, const loom_stage *st, loom_param_info *out,
                          size_t *n_params, size_t *n_tp, size_t *n_full, size_t *base) {
    param_sink s = {.out = out, .out_dim = cfg->arch == LOOM_ARCH_LLAMA ? 0 : 1, .tp = tp, .tp_rank = tp_rank,
                    .l0 = st ? st->l0 : 0, .l1 = st ? st->l1 : cfg->n_layer, .n_layer = cfg->n_layer};
    if (cfg->arch == LOOM_ARCH_LLAMA) llama_params(cfg, &s);
    else gpt2_params(cfg, &s);
    if (n_params) *n_params = s.off;
    if (n_tp) *n_tp = s.tp_off;
    if (n_full) *n_full = s.full_off;
    if (base) *base = s.base;
    return s.n;
}

loom_status loom_gpt_check_stage(const loom_gpt_config *c, const loom_stage *st) {
    if (st->l0 < 0 || st->l1 > c->n_layer || st->l1 <= st->l0)
        return loom_error(LOOM_ERR_ARG, "--pp-layers: a stage needs at least one of the model's %d layers (got "
                          "layers %d to %d)", c->n_layer, st->l0, st->l1 - 1);
    if (st->sets < 1) return loom_error(LOOM_ERR_ARG, "pipeline stage: at least one activation set");
    return LOOM_OK;
}

loom_status loom_gpt_check_tp(const loom_gpt_config *c, int tp) {
    if (tp < 1) return loom_error(LOOM_ERR_ARG, "--tp: must be at least 1 (got %d)", tp);
    if (tp == 1) return LOOM_OK;
    if (c->n_head % tp)
        return loom_error(LOOM_ERR_ARG, "--tp %d: does not divide the model's %d attention heads", tp, c->n_head);
    if (c->arch == LOOM_ARCH_LLAMA && c->n_kv_head % tp)
        return loom_error(LOOM_ERR_ARG, "--tp %d: does not divide the model's %d key/value heads (loom does not "
                          "replicate key/value heads yet)", tp, c->n_kv_head);
    if (c->arch == LOOM_ARCH_LLAMA && c->ffn_dim % tp)
        return loom_error(LOOM_ERR_ARG, "--tp %d: does not divide the model's FFN width %d", tp, c->ffn_dim);
    if (c->vocab_size < tp)
        return loom_error(LOOM_ERR_ARG, "--tp %d: more ranks than the %d vocabulary rows", tp, c->vocab_size);
    return LOOM_OK;
}

void model_act_layout(const loom_gpt_config *c, int B, int T, int tp, int sp, const loom_stage *st, act_layout *a) {
    /* per rank: its heads, its FFN columns, its vocabulary rows; the residual stream and
     * the norms' statistics whole, or (sequence parallelism) R = BT / tp rows of them */
    const size_t C = c->n_embd, H = c->n_head / tp, BT = (size_t)B * T, BHT = (size_t)B * H * T;
    const size_t R = sp && tp > 1 ? BT / tp : BT;
    const size_t hs = C / c->n_head, Vl = (size_t)loom_tp_local_rows(c->vocab_size, tp, 1);
    size_t sz[LOOM_MAX_LAYER_SLOTS];
    size_t grad;
    memset(a, 0, sizeof *a);
    if (c->arch == LOOM_ARCH_LLAMA) {
        const size_t W = (H + 2 * (size_t)c->n_kv_head / tp) * hs, F = c->ffn_dim / tp;
        const size_t s[LA_LAYER_SLOTS] = {[LA_XN1] = BT * C, [LA_RSTD1] = R,   [LA_QKV] = BT * W,
                                          [LA_ATTY] = BT * H * hs, [LA_LSE] = BHT,  [LA_RES2] = R * C,
                                          [LA_XN2] = BT * C,      [LA_RSTD2] = R, [LA_GU] = BT * 2 * F,
                                          [LA_ACT] = BT * F,      [LA_RES3] = R * C};
        a->n_layer_slots = LA_LAYER_SLOTS;
        memcpy(sz, s, sizeof s);
        /* dres, dbuf (BT,C), dqkv (BT,W), dgu (BT,2F), dact / datty */
        grad = BT * (2 * C + W + 2 * F + (F > H * hs ? F : H * hs));
    } else {
        const size_t Q = H * hs, F = 4 * C / tp; /* this rank's attention and MLP widths */
        const size_t s[GA_LAYER_SLOTS] = {[GA_LN1] = BT * C,      [GA_LN1_MEAN] = R, [GA_LN1_RSTD] = R,
                                          [GA_QKV] = BT * 3 * Q,  [GA_ATTY] = BT * Q, [GA_LSE] = BHT,
                                          [GA_RES2] = R * C,      [GA_LN2] = BT * C,  [GA_LN2_MEAN] = R,
                                          [GA_LN2_RSTD] = R,      [GA_FCH] = BT * F,
                                          [GA_FCH_GELU] = BT * F, [GA_RES3] = R * C};
        a->n_layer_slots = GA_LAYER_SLOTS;
        memcpy(sz, s, sizeof s);
        /* dres, dbuf (BT,C), dqkv (BT,3Q), dfch (BT,F) */
        grad = BT * (C + C + 3 * Q + F);
    }
    size_t off = 0;
    for (int k = 0; k < a->n_layer_slots; k++) a->layer_off[k] = off, a->layer_len[k] = sz[k], off += sz[k];
    a->layer_span = off;
    off *= (size_t)(st ? st->l1 - st->l0 : c->n_layer);
    /* a stage before the last has no final norm, logits or losses; ENCODED is its input */
    const size_t last = !st || st->l1 == c->n_layer;
    const size_t g[AG_SLOTS] = {[AG_ENCODED] = R * C, [AG_LNF] = last * BT * C,
                                [AG_LNF_MEAN] = c->arch == LOOM_ARCH_LLAMA ? 0 : last * R, [AG_LNF_RSTD] = last * R,
                                [AG_LOGITS] = last * BT * Vl, [AG_LOSSES] = last * BT, [AG_SCRATCH] = BT * C};
    for (int k = 0; k < AG_SLOTS; k++) a->global_off[k] = off, a->global_len[k] = g[k], off += g[k];
    a->total = off;
    a->grad_total = grad + (R < BT ? BT * C : 0); /* sequence parallelism: the gathered dres */
}

void loom_gpt_compute_sizes(const loom_gpt_config *cfg, int B, int T, int tp, int sp, const loom_stage *st,
                            loom_gpt_sizes *s) {
    memset(s, 0, sizeof *s);
    const int llama = cfg->arch == LOOM_ARCH_LLAMA;
    s->tp = tp;
    s->stage = st ? *st : (loom_stage){0, cfg->n_layer, 1};
    s->n_tensors = model_describe_params(cfg, tp, 0, &s->stage, NULL, &s->n_params, &s->n_params_tp, &s->n_params_full,
                                        &s->stage_base);
    s->first_layer_tensor = llama ? 1 : 2;
    s->layer_tensors = llama ? L_LAYER_PARAMS : G_LAYER_PARAMS;
    act_layout a;
    model_act_layout(cfg, B, T, tp, sp, &s->stage, &a);
    s->n_acts_set = a.total;
    s->n_acts = a.total * (size_t)s->stage.sets;
    s->n_grad_acts = a.grad_total;
    /* a last stage that is not the first holds the tied head as a copy of the embedding */
    const int tied = !llama || !cfg->untied;
    if (tied && s->stage.l0 > 0 && s->stage.l1 == cfg->n_layer)
        s->n_head_copy = (size_t)loom_tp_local_rows(cfg->vocab_size, tp, 1) * (size_t)cfg->n_embd;
    const size_t C = cfg->n_embd, hs = C / cfg->n_head;
    s->n_rope = llama ? 2 * (size_t)cfg->block_size * (hs / 2) : 0;
    /* 6N for the weights a token multiplies (not a lookup table: wpe, an untied
     * embedding), 12 L T H hs for attention's scores and mixing */
    double lookup = llama ? (cfg->untied ? (double)cfg->vocab_size * C : 0.0) : (double)cfg->block_size * C;
    s->flops_per_token = 6.0 * ((double)s->n_params_full - lookup) +
                         12.0 * (double)cfg->n_layer * (double)T * (double)cfg->n_head * (double)hs;
}

int loom_param_slice(const loom_param_info *pi, int rank, int size, loom_slice *s) {
    const int64_t rows = pi->full[0], cols = pi->ndim > 1 ? pi->full[1] : pi->full[0];
    const int one_row = pi->ndim < 2;
    *s = (loom_slice){0, one_row ? 1 : rows, 0, cols, 0, 1};
    if (pi->split_dim < 0 || size == 1) return 0;
    const int64_t n = pi->split_dim == 0 && !one_row ? rows : cols, per = n / pi->parts;
    const int padded = pi->split == LOOM_TP_VOCAB;
    if (n % pi->parts || (!padded && per % size)) {
        loom_error(LOOM_ERR_ARG, "%s: dimension %d (%lld) does not split over %d tensor-parallel ranks", pi->name,
                   pi->split_dim, (long long)n, size);
        return -1;
    }
    const int64_t w = loom_tp_local_rows(per, size, padded);
    if (pi->split_dim == 0 && !one_row) { /* whole rows */
        s->row0 = w * rank;
        s->rows = s->row0 >= rows ? 0 : (rows - s->row0 < w ? rows - s->row0 : w);
        if (!s->rows) s->row0 = rows;
    } else { /* columns of every row, part by part */
        s->col0 = w * rank;
        s->width = w;
        s->part_stride = per;
        s->parts = pi->parts;
    }
    return 0;
}
