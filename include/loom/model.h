/* The model: config and presets of each architecture (GPT-2, Llama), the description
 * (every parameter tensor with its Hugging Face name, shape, layer, role and tensor-
 * parallel split; every activation buffer), which gives the sizes, the one allocation
 * and the pointers; hand-written forward and backward passes over a kernel backend. No
 * autograd, no allocation after loom_gpt_init. */
#ifndef LOOM_MODEL_H
#define LOOM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_arch { LOOM_ARCH_GPT2 = 0, LOOM_ARCH_LLAMA = 1 } loom_arch;

/* The first five fields are GPT-2's whole config; a zeroed rest means GPT-2. */
typedef struct loom_gpt_config {
    int vocab_size; /* V */
    int block_size; /* maximum sequence length: rows of wpe; Llama: max_position_embeddings */
    int n_layer;    /* L */
    int n_embd;     /* C */
    int n_head;     /* H, divides C */
    int arch;       /* loom_arch */
    /* Llama only (0 for GPT-2): */
    int n_kv_head;      /* key/value heads, dividing H (grouped-query attention) */
    int ffn_dim;        /* intermediate_size of the SwiGLU MLP */
    int untied;         /* 1: lm_head.weight of its own; 0: the LM head is the embedding */
    float rope_theta;   /* rotary base */
    float norm_eps;     /* rms_norm_eps */
    /* rope_scaling of type llama3 when rope_factor > 0 */
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_ctx;  /* original_max_position_embeddings */
} loom_gpt_config;

/* Fills `cfg` from a preset name: tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl,
 * llama-tiny, smollm-135m, tinyllama-1.1b, llama-3.2-1b. */
loom_status loom_gpt_preset(const char *name, loom_gpt_config *cfg);
const char *loom_gpt_preset_names(void); /* "tiny, small, ..." for help texts */
/* Checks that the config is possible; the message names the offending flag. */
loom_status loom_gpt_config_validate(const loom_gpt_config *cfg);
/* The config as the metadata of loom's model files and checkpoints: GPT-2's five keys
 * (vocab_size, block_size, n_layer, n_embd, n_head), and for Llama also "arch" and its
 * own; returns the count (at most LOOM_CONFIG_KEYS). */
#define LOOM_CONFIG_KEYS 16
int loom_gpt_config_to_meta(const loom_gpt_config *c, const char *keys[], char vals[][32]);
/* Back from metadata (get(ctx, key): the value or NULL); errors start with `what`. */
loom_status loom_gpt_config_from_meta(const char *(*get)(const void *ctx, const char *key), const void *ctx,
                                      const char *what, loom_gpt_config *c);
/* Appends to buf (NUL-terminated, capacity cap) every field that differs, as "n_layer 2
 * (la) vs 3 (lb)", comma-separated; returns how many differ. */
int loom_gpt_config_diff(const loom_gpt_config *a, const loom_gpt_config *b, const char *la, const char *lb,
                         char *buf, size_t cap);

/* What a parameter is, for initialisation and for the parallel layers. */
typedef enum loom_param_role {
    LOOM_ROLE_EMBED,    /* token embedding (V, C): rows gathered by the input */
    LOOM_ROLE_POS,      /* learned position embedding (GPT-2's wpe) */
    LOOM_ROLE_NORM_W,   /* LayerNorm / RMSNorm weight: starts at 1 */
    LOOM_ROLE_NORM_B,   /* LayerNorm bias: starts at 0 */
    LOOM_ROLE_LINEAR,   /* a projection's weight */
    LOOM_ROLE_RESID,    /* a projection into the residual stream (GPT-2 scales its init) */
    LOOM_ROLE_BIAS,     /* a projection's bias: starts at 0 */
    LOOM_ROLE_HEAD,     /* an untied LM head (V, C) */
} loom_param_role;
/* How a tensor splits under tensor parallelism. */
typedef enum loom_tp_split {
    LOOM_TP_REPLICATED, /* every rank holds it whole (norms, row-parallel biases) */
    LOOM_TP_COLUMN,     /* split along the output features */
    LOOM_TP_ROW,        /* split along the input features */
    LOOM_TP_VOCAB,      /* split along the vocabulary rows */
} loom_tp_split;

/* The part of a tensor one tensor-parallel rank holds: rows [row0, row0 + rows) of the
 * whole tensor (a 1-D tensor is one row), and of each row `parts` column ranges of
 * `width`, part p starting at column col0 + p * part_stride. The rank stores it row-major
 * as (local rows, parts * width): its element (i, p * width + j) is the whole tensor's
 * (row0 + i, col0 + p * part_stride + j). A vocabulary split is padded: every rank
 * stores ceil(V / tp) rows, of which the last rank's tail (rows beyond V) is not in
 * the whole tensor and stays zero. */
typedef struct loom_slice {
    int64_t row0, rows, col0, width, part_stride;
    int parts;
} loom_slice;

/* One parameter tensor of the flat buffer, in the architecture's order. Each layer's
 * tensors are contiguous (one gradient bucket per layer); the token embedding comes
 * first, the tensors after the last layer (final norm, an untied head) last. With
 * tensor parallelism the buffer holds this rank's parts (shape, numel, offset) of the
 * whole tensors (full, full_numel, full_offset: as files store them). */
typedef struct loom_param_info {
    char name[64];     /* Hugging Face name, e.g. "h.3.attn.c_attn.weight", "model.norm.weight" */
    size_t offset;     /* in floats from the start of the buffer */
    size_t numel;
    int ndim;
    int64_t shape[2];  /* as stored here: GPT-2's Conv1D weights (in, out), Llama's Linear (out, in) */
    int64_t full[2];   /* the whole tensor's shape */
    size_t full_numel, full_offset; /* and where it starts in the whole model's buffer */
    size_t tp_offset;  /* where it starts in the buffer of this tensor-parallel rank's parts of every layer */
    int here;          /* 1: in this rank's buffer; 0: on another pipeline stage (numel 0, offset where it
                        * would be) */
    int decay;         /* 1 for tensors of 2 or more dims (AdamW weight decay) */
    int layer;         /* its layer, or -1 */
    int role;          /* loom_param_role */
    int split;         /* loom_tp_split */
    int split_dim;     /* the dimension the split cuts (-1: replicated) */
    int parts;         /* blocks along split_dim split each on their own (GPT-2's c_attn: q, k, v = 3) */
    loom_slice slice;  /* this rank's part */
} loom_param_info;

/* Rank r's part of a tensor split over `size` tensor-parallel ranks (from its full
 * shape, split and parts); -1 (message set) when size does not divide what it splits
 * (the vocabulary is padded instead). */
int loom_param_slice(const loom_param_info *pi, int rank, int size, loom_slice *s);
/* Rows one rank stores of a dimension of n split over size ranks (padded: vocab). */
int64_t loom_tp_local_rows(int64_t n, int size, int padded);

/* Pipeline parallelism: the contiguous layers [l0, l1) one stage runs; the first stage
 * (l0 = 0) also the embeddings, the last (l1 = n_layer) the final norm, the LM head and
 * the loss (with a tied embedding, from its own copy of it); `sets` activation arenas,
 * one per micro-batch in flight. */
typedef struct loom_stage {
    int l0, l1, sets;
} loom_stage;
/* Whether a stage is possible for the config (the message names the reason). */
loom_status loom_gpt_check_stage(const loom_gpt_config *cfg, const loom_stage *st);

/* Sizes of everything, computed from (config, B, T, tensor-parallel size, sequence
 * parallelism, pipeline stage) alone: the trainer and the planner call this one
 * function. Everything is per rank. */
typedef struct loom_gpt_sizes {
    int n_tensors;
    int first_layer_tensor, layer_tensors; /* layer l's tensors: first + l*layer_tensors ... */
    int tp;               /* the tensor-parallel ranks these sizes are for */
    loom_stage stage;     /* and the pipeline stage */
    size_t n_rope;          /* floats of the rotary cos and sin tables (block_size x hs/2 each) */
    size_t n_params;      /* floats in params (and in grads, m, v): this rank's parts */
    size_t n_params_full; /* floats of the whole model */
    size_t n_params_tp;   /* floats of this tensor-parallel rank's parts of every layer (one stage) */
    size_t stage_base;    /* where this stage's buffer starts in that one */
    size_t n_head_copy;   /* floats of the tied LM head's copy (a last stage that is not the first), and of its
                           * gradient */
    size_t n_acts_set;    /* floats of one activation arena */
    size_t n_acts;        /* floats of the arenas: n_acts_set x stage.sets */
    size_t n_grad_acts;   /* floats in the activation-gradient scratch */
    double flops_per_token; /* training FLOPs per token of the whole model: 6N + 12*L*T*C (N without wpe) */
} loom_gpt_sizes;
void loom_gpt_compute_sizes(const loom_gpt_config *cfg, int B, int T, int tp, int sp, const loom_stage *stage,
                            loom_gpt_sizes *out);
/* Whether the config splits over tp tensor-parallel ranks (heads, key/value heads, FFN
 * width); the message gives the reason. */
loom_status loom_gpt_check_tp(const loom_gpt_config *cfg, int tp);

/* How the tensor-parallel layers talk to the other ranks of their group. The model
 * never calls MPI: whoever builds it passes these (dist/ makes them from a group).
 * Every rank of the group makes the same calls in the same order. */
typedef struct loom_tp_comm {
    int rank, size;
    void *ctx;
    /* buf(n) = the element-wise sum over the group, added in rank order, the same bits
     * on every rank; what names it for the watchdog */
    void (*sum)(void *ctx, float *buf, size_t n, const char *what);
    /* buf(n) = the element-wise maximum over the group */
    void (*max)(void *ctx, float *buf, size_t n, const char *what);
    /* Sequence parallelism (sp = 1): the residual stream, the norms and the loss rows are
     * held as size slices of the B*T rows, rank r the r-th. buf holds size chunks of
     * `chunk` floats: gather sends this rank's chunk (at its index) to every rank;
     * scatter sums every rank's chunks in rank order into this rank's chunk only. */
    int sp;
    void (*gather)(void *ctx, float *buf, size_t chunk, const char *what);
    void (*scatter)(void *ctx, float *buf, size_t chunk, const char *what);
} loom_tp_comm;

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
    loom_tp_comm tp;        /* its tensor-parallel group (size 1: the whole model here) */
    loom_stage stage;       /* its pipeline stage's layers (all of them: one stage) */
    int vocab_lo, vocab_rows, vocab_local; /* token ids [lo, lo + rows) are this rank's embedding
                                            * rows, of vocab_local stored (padding) */
    loom_param_info *params_info; /* (n_tensors) */
    float *params;          /* (n_params) */
    float *grads;           /* (n_params): the model's own gradient buffer (NULL without training buffers) */
    float *logits;          /* (B, T, V) after forward; holds dlogits after a training forward */
    float *losses;          /* (B, T) per-position losses after forward */
    float *acts, *grad_acts; /* acts: the activation set in use (loom_gpt_use_acts) */
    float *acts_base;       /* the stage.sets arenas */
    float *head_copy, *head_grad; /* a last stage's tied LM head and its gradient (else NULL) */
    float *rope_cos, *rope_sin; /* Llama: (block_size, hs/2) each, from rope_theta and the scaling */
    void *act_layout;       /* where each activation lives in acts (model/arch.h) */
    const void *backend;    /* const loom_backend * */
    loom_status status;     /* the first failed op since init (message: loom_error_msg()); a forward
                             * returns NaN after one */
    int profile;            /* set to 1 to accumulate prof_s (a clock read per op) */
    double prof_s[LOOM_PROF_COUNT]; /* seconds per op kind since the last reset */
};

/* Builds a model with capacity for micro-batches of max_B x max_T (T <= block_size).
 * with_grads = 0 allocates no gradient buffers (eval/sample). Parameters start zero. */
loom_status loom_gpt_init(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T,
                          int with_grads, const char *backend);
/* The same as this rank's part of a model split over tp->size ranks (tp NULL: one) and
 * pipeline stages (stage NULL: every layer, one activation set). */
loom_status loom_gpt_init_part(loom_gpt **out, const loom_gpt_config *cfg, int max_B, int max_T, int with_grads,
                               const char *backend, const loom_tp_comm *tp, const loom_stage *stage);
/* Pipeline stages: the forward and backward that follow use activation set k (of
 * stage.sets); a micro-batch's backward must use the set of its forward. */
void loom_gpt_use_acts(loom_gpt *g, int k);
/* A stage's boundary with its neighbours, in the current set: the stage's input (a stage
 * after the first: the residual stream the previous stage sends, written here before
 * the forward), its output (before the last: what the forward leaves for the next), and
 * the residual stream's gradient (before the last: written here before the backward, the
 * next stage's; after the first: the backward leaves the previous stage's here). Each
 * holds loom_gpt_stage_floats(B, T) floats: B*T rows of C, or this rank's rows of them
 * with sequence parallelism. */
float *loom_gpt_stage_input(loom_gpt *g);
const float *loom_gpt_stage_output(const loom_gpt *g);
float *loom_gpt_stage_grad(loom_gpt *g);
size_t loom_gpt_stage_floats(const loom_gpt *g, int B, int T);
void loom_gpt_free(loom_gpt *g);
/* What loom_gpt_init_part allocates, in bytes, in a process whose backend has reserved
 * nothing yet (its workspaces for `threads`): the trainer's report and `loom plan`. */
size_t loom_gpt_bytes(const loom_gpt_config *cfg, int max_B, int max_T, int with_grads, const char *backend, int tp,
                      int sp, const loom_stage *stage, int threads);

/* GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L), LayerNorm
 * weights 1, biases 0. Element values depend only on (seed, tensor, index in the whole
 * tensor), so every tensor-parallel layout starts from the same weights. */
void loom_gpt_init_weights(loom_gpt *g, uint64_t seed);

/* Where layer l's parameters start in the flat buffer; l = n_layer: where the tensors
 * after the last layer (final norm, an untied head) start. */
size_t loom_gpt_layer_offset(const loom_gpt *g, int l);
int loom_gpt_find_param(const loom_gpt *g, const char *name); /* index or -1 */
/* The tensor holding the first non-finite value (NaN, Inf) of buf[lo, hi), a buffer laid
 * out as the parameters (absolute indices), or -1 when all are finite. */
int loom_gpt_first_nonfinite(const loom_gpt *g, const float *buf, size_t lo, size_t hi);

/* What one forward or backward works with besides the model: the buffer (laid out as
 * the parameters) into which the backward ADDS the parameter gradients, and the hooks
 * through which the parallel layers overlap their communication with the pass (each
 * may be NULL):
 *  - grad_ready(ctx, from), in the backward, as soon as grads[from, n_params) are final
 *    (after each layer, last layer first, then 0 after the embeddings), so their
 *    reduction over ranks can start while the rest of the backward runs; and first,
 *    after the LM head, with from = LOOM_GRAD_HEAD_DONE: then the rows of the token
 *    embedding whose token is not among this backward's inputs are final;
 *  - param_wait(ctx, where), in the forward, before it reads parameters: where = -1
 *    before the embeddings (the input tokens' rows, and GPT-2's wpe), l before layer l,
 *    n_layer before the final norm and the LM head, so parameters still arriving from
 *    other ranks can be waited for piece by piece. */
typedef struct loom_pass {
    float *grads;
    void (*grad_ready)(void *ctx, size_t from);
    void *grad_ready_ctx;
    void (*param_wait)(void *ctx, int where);
    void *param_wait_ctx;
} loom_pass;

/* Forward over inputs/targets (B,T). Returns the mean loss over the B*T positions
 * (targets may be NULL: logits only, returns 0). If grad_scale != 0 the logits are
 * replaced by grad_scale * dloss/dlogits per position, ready for the backward. pass may
 * be NULL (no hooks). */
float loom_gpt_forward_pass(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, const int32_t *targets,
                            int B, int T, float grad_scale);
/* Backward after a training forward: ADDS parameter gradients into pass->grads. */
void loom_gpt_backward_pass(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, int B, int T);
/* The same without hooks, into the model's own g->grads. */
float loom_gpt_forward(loom_gpt *g, const int32_t *inputs, const int32_t *targets, int B, int T,
                       float grad_scale);
void loom_gpt_backward(loom_gpt *g, const int32_t *inputs, int B, int T);
/* grads = 0 over the n_params of a buffer laid out as the parameters (g->grads if NULL). */
void loom_gpt_zero_grad(loom_gpt *g, float *grads);

/* Generation with a KV cache: B independent rows, each fed one token per step at its
 * own position; keys and values of earlier positions are kept, so a step costs O(pos)
 * attention instead of a whole forward pass. Buffers are sized at init. */
typedef struct loom_gpt_kv loom_gpt_kv;
loom_status loom_gpt_kv_init(loom_gpt_kv **out, const loom_gpt *g, int B);
void loom_gpt_kv_free(loom_gpt_kv *kv);
/* Feeds tokens[b] at position positions[b] (< block size; earlier positions of row b
 * must have been fed) and returns the logits (B, V) of the next token of every row;
 * NULL, with the message set, when an op fails. */
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
