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
    size_t off;
    int out_dim; /* which dimension of a 2-D weight holds the output features */
} param_sink;

static void add(param_sink *s, const char *name, int layer, int role, int split, int ndim, int64_t d0, int64_t d1) {
    if (s->out) {
        loom_param_info *pi = &s->out[s->n];
        memset(pi, 0, sizeof *pi);
        snprintf(pi->name, sizeof pi->name, "%s", name);
        pi->ndim = ndim;
        pi->shape[0] = d0;
        pi->shape[1] = ndim > 1 ? d1 : 0;
        pi->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
        pi->offset = s->off;
        pi->decay = ndim >= 2;
        pi->layer = layer;
        pi->role = role;
        pi->split = split;
        /* GPT-2's Conv1D weights are (in, out), Llama's Linear (out, in) */
        if (split == LOOM_TP_REPLICATED) pi->split_dim = -1;
        else if (ndim < 2) pi->split_dim = 0; /* a column-parallel bias */
        else if (split == LOOM_TP_VOCAB) pi->split_dim = 0;
        else pi->split_dim = split == LOOM_TP_COLUMN ? s->out_dim : 1 - s->out_dim;
    }
    s->off += (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    s->n++;
}

/* n_layer copies of one layer's k tensors, named PREFIX<l>.<name>; a 1-D tensor has
 * shape {d0, 0} */
static void add_layers(param_sink *s, int n_layer, const char *prefix, const char *const *names, const int *roles,
                       const int *splits, const int64_t (*shapes)[2], int k_count) {
    for (int l = 0; l < n_layer; l++)
        for (int k = 0; k < k_count; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s%d.%s", prefix, l, names[k]);
            add(s, name, l, roles[k], splits[k], shapes[k][1] ? 2 : 1, shapes[k][0], shapes[k][1]);
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
    add_layers(s, c->n_layer, "h.", names, roles, splits, shapes, G_LAYER_PARAMS);
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
    add_layers(s, c->n_layer, "model.layers.", names, roles, splits, shapes, L_LAYER_PARAMS);
    add(s, "model.norm.weight", -1, LOOM_ROLE_NORM_W, LOOM_TP_REPLICATED, 1, C, 0);
    if (c->untied) add(s, "lm_head.weight", -1, LOOM_ROLE_HEAD, LOOM_TP_VOCAB, 2, c->vocab_size, C);
}

int model_describe_params(const loom_gpt_config *cfg, loom_param_info *out, size_t *n_params) {
    param_sink s = {out, 0, 0, cfg->arch == LOOM_ARCH_LLAMA ? 0 : 1};
    if (cfg->arch == LOOM_ARCH_LLAMA) llama_params(cfg, &s);
    else gpt2_params(cfg, &s);
    if (n_params) *n_params = s.off;
    return s.n;
}

void model_act_layout(const loom_gpt_config *c, int B, int T, act_layout *a) {
    const size_t C = c->n_embd, H = c->n_head, BT = (size_t)B * T, BHT = (size_t)B * H * T;
    size_t sz[LOOM_MAX_LAYER_SLOTS];
    size_t grad;
    memset(a, 0, sizeof *a);
    if (c->arch == LOOM_ARCH_LLAMA) {
        const size_t hs = C / H, W = (H + 2 * (size_t)c->n_kv_head) * hs, F = c->ffn_dim;
        const size_t s[LA_LAYER_SLOTS] = {[LA_XN1] = BT * C, [LA_RSTD1] = BT,   [LA_QKV] = BT * W,
                                          [LA_ATTY] = BT * H * hs, [LA_LSE] = BHT,  [LA_RES2] = BT * C,
                                          [LA_XN2] = BT * C,      [LA_RSTD2] = BT, [LA_GU] = BT * 2 * F,
                                          [LA_ACT] = BT * F,      [LA_RES3] = BT * C};
        a->n_layer_slots = LA_LAYER_SLOTS;
        memcpy(sz, s, sizeof s);
        /* dres, dbuf (BT,C), dqkv (BT,W), dgu (BT,2F), dact / datty */
        grad = BT * (2 * C + W + 2 * F + (F > H * hs ? F : H * hs));
    } else {
        const size_t s[GA_LAYER_SLOTS] = {[GA_LN1] = BT * C,      [GA_LN1_MEAN] = BT, [GA_LN1_RSTD] = BT,
                                          [GA_QKV] = BT * 3 * C,  [GA_ATTY] = BT * C, [GA_LSE] = BHT,
                                          [GA_RES2] = BT * C,     [GA_LN2] = BT * C,  [GA_LN2_MEAN] = BT,
                                          [GA_LN2_RSTD] = BT,     [GA_FCH] = BT * 4 * C,
                                          [GA_FCH_GELU] = BT * 4 * C, [GA_RES3] = BT * C};
        a->n_layer_slots = GA_LAYER_SLOTS;
        memcpy(sz, s, sizeof s);
        /* dres, dbuf (BT,C), dqkv (BT,3C), dfch (BT,4C) */
        grad = BT * (C + C + 3 * C + 4 * C);
    }
    size_t off = 0;
    for (int k = 0; k < a->n_layer_slots; k++) a->layer_off[k] = off, a->layer_len[k] = sz[k], off += sz[k];
    a->layer_span = off;
    off *= (size_t)c->n_layer;
    const size_t g[AG_SLOTS] = {[AG_ENCODED] = BT * C, [AG_LNF] = BT * C,
                                [AG_LNF_MEAN] = c->arch == LOOM_ARCH_LLAMA ? 0 : BT, [AG_LNF_RSTD] = BT,
                                [AG_LOGITS] = BT * c->vocab_size, [AG_LOSSES] = BT, [AG_SCRATCH] = BT * C};
    for (int k = 0; k < AG_SLOTS; k++) a->global_off[k] = off, a->global_len[k] = g[k], off += g[k];
    a->total = off;
    a->grad_total = grad;
}

void loom_gpt_compute_sizes(const loom_gpt_config *cfg, int B, int T, loom_gpt_sizes *s) {
    memset(s, 0, sizeof *s);
    const int llama = cfg->arch == LOOM_ARCH_LLAMA;
    s->n_tensors = model_describe_params(cfg, NULL, &s->n_params);
    s->first_layer_tensor = llama ? 1 : 2;
    s->layer_tensors = llama ? L_LAYER_PARAMS : G_LAYER_PARAMS;
    act_layout a;
    model_act_layout(cfg, B, T, &a);
    s->n_acts = a.total;
    s->n_grad_acts = a.grad_total;
    const size_t C = cfg->n_embd, hs = C / cfg->n_head;
    s->n_rope = llama ? 2 * (size_t)cfg->block_size * (hs / 2) : 0;
    /* 6N for the weights a token multiplies (not a lookup table: wpe, an untied
     * embedding), 12 L T H hs for attention's scores and mixing */
    double lookup = llama ? (cfg->untied ? (double)cfg->vocab_size * C : 0.0) : (double)cfg->block_size * C;
    s->flops_per_token = 6.0 * ((double)s->n_params - lookup) +
                         12.0 * (double)cfg->n_layer * (double)T * (double)cfg->n_head * (double)hs;
}

int loom_param_slice(const loom_param_info *pi, int rank, int size, int64_t off[2], int64_t len[2]) {
    for (int d = 0; d < 2; d++) off[d] = 0, len[d] = d < pi->ndim ? pi->shape[d] : 1;
    if (pi->split_dim < 0 || size == 1) return 0;
    const int64_t n = pi->shape[pi->split_dim];
    if (n % size) {
        loom_error(LOOM_ERR_ARG, "%s: dimension %d (%lld) does not split over %d tensor-parallel ranks", pi->name,
                   pi->split_dim, (long long)n, size);
        return -1;
    }
    off[pi->split_dim] = n / size * rank;
    len[pi->split_dim] = n / size;
    return 0;
}
