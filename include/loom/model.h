/* GPT-2 model: config and presets, the parameter layout (one contiguous buffer, tensors
 * in Hugging Face GPT-2 order, names and (in, out) layouts), the activation arena, and
 * hand-written forward and backward passes over a kernel backend. No autograd, no
 * allocation after loom_gpt_init. */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_gpt_config {
    int vocab_size; /* V */
    int block_size; /* maximum sequence length: rows of wpe */
    int n_layer;    /* L */
    int n_embd;     /* C */
    int n_head;     /* H, divides C */
} loom_gpt_config;

/* Fills `cfg` from a preset name: tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl. */
loom_status loom_gpt_preset(const char *name, loom_gpt_config *cfg);
const char *loom_gpt_preset_names(void); /* "tiny, small, ..." for help texts */
/* Checks that the config is possible; the message names the offending flag. */
loom_status loom_gpt_config_validate(const loom_gpt_config *cfg);

/* Per-layer parameter tensors, in Hugging Face state_dict order. */
typedef enum loom_layer_param {
    LOOM_LN1_W, LOOM_LN1_B, LOOM_QKV_W, LOOM_QKV_B, LOOM_ATTPROJ_W, LOOM_ATTPROJ_B,
    LOOM_LN2_W, LOOM_LN2_B, LOOM_FC_W, LOOM_FC_B, LOOM_FCPROJ_W, LOOM_FCPROJ_B,
    LOOM_LAYER_PARAMS
} loom_layer_param;

/* One parameter tensor of the flat buffer. Tensor order: wte, wpe, then 12 per layer
 * (so each layer's parameters are contiguous: one gradient bucket per layer), then
 * ln_f.weight, ln_f.bias. */
typedef struct loom_param_info {
    char name[48];     /* Hugging Face name, e.g. "h.3.attn.c_attn.weight" */
    size_t offset;     /* in floats from the start of the buffer */
    size_t numel;
    int ndim;
    int64_t shape[2];
    int decay;         /* 1 for tensors of 2 or more dims (AdamW weight decay) */
} loom_param_info;

/* Sizes of everything, computed from (config, B, T) alone: the trainer and the planner
 * call this one function. */
typedef struct loom_gpt_sizes {
    int n_tensors;
    size_t n_params;      /* floats in params (and in grads, m, v) */
    size_t n_acts;        /* floats in the activation arena */
    size_t n_grad_acts;   /* floats in the activation-gradient scratch */
    double flops_per_token; /* training FLOPs per token: 6N + 12*L*T*C (N without wpe) */
} loom_gpt_sizes;
void loom_gpt_compute_sizes(const loom_gpt_config *cfg, int B, int T, loom_gpt_sizes *out);

/* Where a step's time goes, per kind of op (loom train --profile). */
typedef enum loom_prof_kind {
    LOOM_PROF_EMBED, LOOM_PROF_LAYERNORM, LOOM_PROF_MATMUL, LOOM_PROF_ATTENTION, LOOM_PROF_GELU,
    LOOM_PROF_RESIDUAL, LOOM_PROF_LMHEAD, LOOM_PROF_XENT, LOOM_PROF_EMBED_B, LOOM_PROF_LAYERNORM_B,
    LOOM_PROF_MATMUL_B, LOOM_PROF_ATTENTION_B, LOOM_PROF_GELU_B, LOOM_PROF_LMHEAD_B,
    LOOM_PROF_ZERO, LOOM_PROF_NORM, LOOM_PROF_ADAMW, LOOM_PROF_DATA, LOOM_PROF_COUNT
} loom_prof_kind;
const char *loom_prof_name(loom_prof_kind k);

#define LOOM_GRAD_HEAD_DONE ((size_t)-1)
typedef struct loom_gpt loom_gpt; /* fields below are read-only for callers */
struct loom_gpt {
    loom_gpt_config cfg;
    loom_gpt_sizes sizes;
    int max_B, max_T;       /* the activation arena's capacity */
    loom_param_info *params_info; /* (n_tensors) */
    float *params;          /* (n_params) */
    float *grads;           /* (n_params), NULL when built without training buffers */
    float *logits;          /* (B, T, V) after forward; holds dlogits after a training forward */
    float *losses;          /* (B, T) per-position losses after forward */
    float *acts, *grad_acts;
    const void *backend;    /* const loom_backend * */
    int profile;            /* set to 1 to accumulate prof_s (a clock read per op) */
    double prof_s[LOOM_PROF_COUNT]; /* seconds per op kind since the last reset */
    /* Set by the caller (may be NULL): loom_gpt_backward calls grad_ready(ctx, from) as
     * soon as grads[from, n_params) are final for this backward (after each layer, last
     * layer first, then 0 after the embeddings), so their reduction over ranks can start
     * while the rest of the backward runs; and first, after the LM head, with from =
     * LOOM_GRAD_HEAD_DONE: then the rows of wte whose token is not among this backward's
     * inputs are final (only the embedding backward adds to wte after the LM head). */
    void (*grad_ready)(void *ctx, size_t from);
    void *grad_ready_ctx;
    /* Set by the caller (may be NULL): loom_gpt_forward calls param_wait(ctx, where)
     * before it reads parameters: where = -1 before the embeddings (the input tokens'
     * rows of wte and wpe), l before layer l, n_layer before ln_f and the LM head (all
     * of wte), so parameters still arriving from other ranks can be waited for piece by
     * piece. */
    void (*param_wait)(void *ctx, int where);
    void *param_wait_ctx;
};

/* Builds a model with capacity for micro-batches of max_B x max_T (T <= block_size).
 * with_grads = 0 allocates no gradient buffers (eval/sample). Parameters start zero. */
loom_status loom_gpt_init(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T,
                          int with_grads, const char *backend);
void loom_gpt_free(loom_gpt *g);

/* GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L), LayerNorm
 * weights 1, biases 0. Element values depend only on (seed, tensor, index). */
void loom_gpt_init_weights(loom_gpt *g, uint64_t seed);

/* Pointer to a tensor: tensor index from loom_gpt_layer_tensor or 0 (wte), 1 (wpe),
 * n_tensors-2 (ln_f.weight), n_tensors-1 (ln_f.bias). */
static inline int loom_gpt_layer_tensor(int layer, loom_layer_param p) {
    return 2 + layer * LOOM_LAYER_PARAMS + (int)p;
}
int loom_gpt_find_param(const loom_gpt *g, const char *name); /* index or -1 */
/* The tensor holding the first non-finite value (NaN, Inf) of buf[lo, hi), a buffer laid
 * out as the parameters (absolute indices), or -1 when all are finite. */
int loom_gpt_first_nonfinite(const loom_gpt *g, const float *buf, size_t lo, size_t hi);

/* Forward over inputs/targets (B,T). Returns the mean loss over the B*T positions
 * (targets may be NULL: logits only, returns 0). If grad_scale != 0 the logits are
 * replaced by grad_scale * dloss/dlogits per position, ready for loom_gpt_backward. */
float loom_gpt_forward(loom_gpt *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float grad_scale);
/* Backward after a training forward: ADDS parameter gradients into g->grads. */
void loom_gpt_backward(loom_gpt *g, const int32_t *inputs, int B, int T);
void loom_gpt_zero_grad(loom_gpt *g);

/* Generation with a KV cache: B independent rows, each fed one token per step at its
 * own position; keys and values of earlier positions are kept, so a step costs O(pos)
 * attention instead of a whole forward pass. Buffers are sized at init. */
typedef struct loom_gpt_kv loom_gpt_kv;
loom_status loom_gpt_kv_init(loom_gpt_kv **out, const loom_gpt *g, int B);
void loom_gpt_kv_free(loom_gpt_kv *kv);
/* Feeds tokens[b] at position positions[b] (< block size; earlier positions of row b
 * must have been fed) and returns the logits (B, V) of the next token of every row. */
const float *loom_gpt_kv_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens, const int *positions);

/* Sampling settings: temperature 0 is greedy (argmax); top_k 0 and top_p 1 are off. */
typedef struct loom_sample_opts {
    int max_tokens;      /* new tokens per row (also capped by the block size) */
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;       /* the draws are a pure function of (seed, step, row) */
    int eot;             /* a row stops after sampling this id; -1: never */
    int use_kv_cache;    /* 0: recompute a full forward pass per token (for comparison) */
} loom_sample_opts;

/* Picks a token from logits (V): softmax(logits / temperature), then top-k, then
 * top-p (nucleus), then the inverse CDF at u in [0, 1). Ties break by lower id, so the
 * choice is deterministic. scratch holds 2*V floats. */
int32_t loom_sample_token(const float *logits, int V, const loom_sample_opts *o, float u, float *scratch);

/* Generates for B rows from their prompts (each at least one token), calling
 * on_token(ctx, row, id) for every new token as it is chosen. The new tokens of row b
 * go to out[b] (capacity o->max_tokens) and their count to out_len[b]. */
loom_status loom_generate(const loom_gpt *g, int B, const int32_t *const *prompts, const int *prompt_len,
                          const loom_sample_opts *o, void (*on_token)(void *ctx, int row, int32_t id), void *ctx,
                          int32_t **out, int *out_len);

#ifdef __cplusplus
}
#endif
#endif
