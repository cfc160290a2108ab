/* Inside the model layer: the parameter order of each architecture's layer, the
 * activation slots its forward saves, and the description that sizes and lays out both
 * (desc.c). gpt.c runs GPT-2, llama.c runs Llama, infer.c decodes both with a KV cache. */
#ifndef LOOM_MODEL_ARCH_H
#define LOOM_MODEL_ARCH_H

#include "kernels/kernels.h"
#include "loom/model.h"

/* GPT-2's tensors per layer, in Hugging Face state_dict order. */
enum {
    G_LN1_W, G_LN1_B, G_QKV_W, G_QKV_B, G_ATTPROJ_W, G_ATTPROJ_B,
    G_LN2_W, G_LN2_B, G_FC_W, G_FC_B, G_FCPROJ_W, G_FCPROJ_B, G_LAYER_PARAMS
};
/* Llama's tensors per layer: q, k, v back to back (one (H+2KVH)hs x C weight for the
 * fused projection), gate and up back to back (one 2F x C weight). */
enum {
    L_NORM1_W, L_Q_W, L_K_W, L_V_W, L_O_W, L_NORM2_W, L_GATE_W, L_UP_W, L_DOWN_W, L_LAYER_PARAMS
};

/* Activation slots of one layer, saved by the forward for the backward. */
enum { /* GPT-2 */
    GA_LN1, GA_LN1_MEAN, GA_LN1_RSTD, GA_QKV, GA_ATTY, GA_LSE, GA_RES2, GA_LN2, GA_LN2_MEAN, GA_LN2_RSTD,
    GA_FCH, GA_FCH_GELU, GA_RES3, GA_LAYER_SLOTS
};
enum { /* Llama */
    LA_XN1, LA_RSTD1, LA_QKV, LA_ATTY, LA_LSE, LA_RES2, LA_XN2, LA_RSTD2, LA_GU, LA_ACT, LA_RES3, LA_LAYER_SLOTS
};
/* Activation slots after the layers (both architectures; Llama's norm has no mean). */
enum { AG_ENCODED, AG_LNF, AG_LNF_MEAN, AG_LNF_RSTD, AG_LOGITS, AG_LOSSES, AG_SCRATCH, AG_SLOTS };
#define LOOM_MAX_LAYER_SLOTS 16

/* The activation arena of a config at capacity (B, T): the layers' slots (each layer
 * the same span), then the global ones. */
typedef struct act_layout {
    int n_layer_slots;
    size_t layer_off[LOOM_MAX_LAYER_SLOTS], layer_len[LOOM_MAX_LAYER_SLOTS], layer_span;
    size_t global_off[AG_SLOTS], global_len[AG_SLOTS];
    size_t total;      /* floats of the arena */
    size_t grad_total; /* floats of the activation-gradient scratch */
} act_layout;
void model_act_layout(const loom_gpt_config *cfg, int B, int T, int tp, int sp, const loom_stage *st, act_layout *a);

/* The parameter tensors in order, as tensor-parallel rank tp_rank of tp holds them on
 * pipeline stage st (NULL: every layer; out may be NULL: count only); returns their
 * number and sets *n_params (this rank's floats), *n_tp (its tensor-parallel parts of
 * every layer), *n_full (the whole model's) and *base (where the stage's first tensor
 * starts in n_tp); any may be NULL. */
int model_describe_params(const loom_gpt_config *cfg, int tp, int tp_rank, const loom_stage *st, loom_param_info *out,
                          size_t *n_params, size_t *n_tp, size_t *n_full, size_t *base);

/* The pipeline stage's ends: it holds the embeddings, or the final norm and the LM head. */
static inline int model_first(const loom_gpt *g) { return g->stage.l0 == 0; }
static inline int model_last(const loom_gpt *g) { return g->stage.l1 == g->cfg.n_layer; }

/* The tensor-parallel reductions of the model's layers (no-ops on one rank): x(n) summed
 * over the group (a row-parallel output, a column-parallel input's gradient, the
 * vocabulary-parallel embedding), or its maximum taken. */
static inline void model_tp_sum(loom_gpt *g, loom_tensor x, size_t n, const char *what) {
    if (g->tp.size > 1) { /* every rank, even after a failed op: the others wait in it */
        LOOM_CHECK(x.numel >= n);
        g->tp.sum(g->tp.ctx, (float *)x.data, n, what);
    }
}
static inline void model_tp_max(loom_gpt *g, loom_tensor x, size_t n, const char *what) {
    if (g->tp.size > 1) { /* every rank, even after a failed op: the others wait in it */
        LOOM_CHECK(x.numel >= n);
        g->tp.max(g->tp.ctx, (float *)x.data, n, what);
    }
}
/* Sequence parallelism: whether it is on, and where this rank's rows of the BT rows begin. */
static inline int model_sp(const loom_gpt *g) { return g->tp.sp && g->tp.size > 1; }
static inline size_t model_sp_row0(const loom_gpt *g, int BT) { return model_sp(g) ? (size_t)g->tp.rank * (BT / g->tp.size) : 0; }
/* The (BT, C) partial sums of a row-parallel output (or of a column-parallel block's input
 * gradient) reduced over the group: summed whole, or (sequence parallelism) reduce-
 * scattered to this rank's rows; returns where the result lies. */
static inline loom_tensor model_row_sum(loom_gpt *g, loom_tensor x, int BT, int C, const char *what) {
    if (!model_sp(g)) {
        model_tp_sum(g, x, (size_t)BT * C, what);
        return x;
    }
    const size_t chunk = (size_t)BT / g->tp.size * C;
    LOOM_CHECK(x.numel >= chunk * g->tp.size);
    g->tp.scatter(g->tp.ctx, (float *)x.data, chunk, what);
    return loom_view_at(x, chunk * g->tp.rank);
}
/* full(BT, C) whole on every rank from each rank's rows, which are at its rows of full
 * already (a norm wrote them there) or, src given, copied there first. */
static inline void model_gather_rows(loom_gpt *g, loom_tensor full, loom_tensor src, int BT, int C, const char *what) {
    if (!model_sp(g)) return;
    const size_t chunk = (size_t)BT / g->tp.size * C;
    LOOM_CHECK(full.numel >= chunk * g->tp.size);
    if (src.data) {
        loom_status st = op_copy(g->backend, loom_view_at(full, chunk * g->tp.rank), src, chunk);
        if (st && !g->status) g->status = st;
    }
    g->tp.gather(g->tp.ctx, (float *)full.data, chunk, what);
}

/* A row-parallel projection's bias: added once, by tensor-parallel rank 0, before the sum. */
static inline loom_tensor model_row_bias(const loom_gpt *g, loom_tensor b) { return g->tp.rank == 0 ? b : LOOM_NO_TENSOR; }

/* Typed views (kernels.h) of the model's memory: fp32 in the backend's memory; token
 * ids (int32) are read in place, so they live where the backend computes (host memory
 * for cpu and ref; a device backend's model copies them in first). */
static inline loom_tensor model_view(const loom_gpt *g, const float *p, size_t n) {
    return loom_view(p, p ? n : 0, LOOM_DTYPE_F32, ((const loom_backend *)g->backend)->device);
}
static inline loom_tensor model_ids(const loom_gpt *g, const int32_t *p, size_t n) {
    return loom_view(p, p ? n : 0, LOOM_DTYPE_I32, ((const loom_backend *)g->backend)->device);
}

/* A slot of layer l, and a slot after the layers (AG_*), of a model's arena. */
static inline loom_tensor model_act(const loom_gpt *g, int layer, int slot) {
    const act_layout *a = (const act_layout *)g->act_layout;
    return model_view(g, g->acts + (size_t)(layer - g->stage.l0) * a->layer_span + a->layer_off[slot],
                      a->layer_len[slot]);
}
static inline loom_tensor model_act_global(const loom_gpt *g, int slot) {
    const act_layout *a = (const act_layout *)g->act_layout;
    return model_view(g, g->acts + a->global_off[slot], a->global_len[slot]);
}
/* Tensor idx of a buffer laid out as the parameters (the parameters, a gradient). */
static inline loom_tensor model_param_view(const loom_gpt *g, const float *buf, int idx) {
    return model_view(g, buf + g->params_info[idx].offset, g->params_info[idx].numel);
}
/* Tensors idx .. idx+count-1 as one view (they lie back to back: Llama's q/k/v and
 * gate/up weights, each pair or triple one GEMM's operand). */
static inline loom_tensor model_param_span(const loom_gpt *g, const float *buf, int idx, int count) {
    const loom_param_info *a = &g->params_info[idx], *b = &g->params_info[idx + count - 1];
    return model_view(g, buf + a->offset, b->offset + b->numel - a->offset);
}
/* The tied LM head (the embedding, tensor 0) and where its gradient goes: on a last stage
 * that is not the first, its own copy and gradient buffer. */
static inline loom_tensor model_tied_head(const loom_gpt *g) {
    return g->head_copy ? model_view(g, g->head_copy, g->sizes.n_head_copy) : model_param_view(g, g->params, 0);
}
static inline loom_tensor model_tied_head_grad(const loom_gpt *g, const loom_pass *pass) {
    return g->head_copy ? model_view(g, g->head_grad, g->sizes.n_head_copy) : model_param_view(g, pass->grads, 0);
}
/* The rotary tables (Llama). */
static inline loom_tensor model_rope_cos(const loom_gpt *g) { return model_view(g, g->rope_cos, g->sizes.n_rope / 2); }
static inline loom_tensor model_rope_sin(const loom_gpt *g) { return model_view(g, g->rope_sin, g->sizes.n_rope / 2); }

/* Layer l's k-th tensor and its gradient. */
static inline int model_layer_tensor(const loom_gpt *g, int l, int k) {
    return g->sizes.first_layer_tensor + l * g->sizes.layer_tensors + k;
}

/* Runs one op, timing it into g->prof_s[kind] when profiling is on; the first failure
 * is kept in g->status (the forward then returns NaN, and the trainer stops on it). */
#define OP(kind, call)                                                                                       \
    do {                                                                                                     \
        double t0_ = g->profile ? loom_now() : 0.0;                                                          \
        loom_status st_ = (call);                                                                            \
        if (st_ && !g->status) g->status = st_;                                                              \
        if (g->profile) g->prof_s[kind] += loom_now() - t0_;                                                 \
    } while (0)
#define P(idx) model_param_view(g, g->params, idx)
#define G(idx) model_param_view(g, pass->grads, idx)
#define LP(l, k) P(model_layer_tensor(g, l, k))
#define LG(l, k) G(model_layer_tensor(g, l, k))
#define LPS(l, k, n) model_param_span(g, g->params, model_layer_tensor(g, l, k), n)
#define LGS(l, k, n) model_param_span(g, pass->grads, model_layer_tensor(g, l, k), n)
#define A(l, slot) model_act(g, l, slot)
#define AG(slot) model_act_global(g, slot)

/* The LM head and the loss after the final norm (its output in AG_LNF): logits =
 * lnf @ head^T, then (targets given) the mean cross-entropy, leaving grad_scale *
 * dlogits in the logits when grad_scale != 0. */
float model_head_forward(loom_gpt *g, loom_tensor head, const int32_t *targets, int BT, float grad_scale);
/* Its backward: dlnf(BT,C) = dlogits @ head (overwrite; with tensor parallelism reduced
 * over the group: returns where this rank's rows of it lie), dhead += dlogits^T lnf;
 * then grad_ready(LOOM_GRAD_HEAD_DONE). */
loom_tensor model_head_backward(loom_gpt *g, const loom_pass *pass, loom_tensor head, loom_tensor dhead,
                                loom_tensor dlnf, int BT);

/* Llama's forward and backward (llama.c), as loom_gpt_forward and loom_gpt_backward. */
float llama_forward(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, const int32_t *targets, int B, int T,
                    float grad_scale);
void llama_backward(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, int B, int T);
/* Llama's rotary tables for positions [0, block_size) (Hugging Face's float32
 * arithmetic, with llama3 scaling when the config has it). */
void llama_rope_tables(const loom_gpt_config *cfg, float *cos, float *sin);

#endif
