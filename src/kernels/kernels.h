/* The kernel backend interface, in two layers, so the model never names an ISA, a
 * library, a device or an element type's kernel:
 *  - a backend (one table per backend: "cpu", OpenMP + SIMD + oneDNN; "ref", plain
 *    loops, the tests' reference) owns its memory, copies, synchronisation and
 *    workspaces, says which element types it computes in, and holds one kernel table
 *    per element type it supports (fp32 only so far: `f32`);
 *  - the ops (op_*, dispatch.c) are what the model calls: typed views in, a status out.
 *    Each op checks every view's element type, device and extent against what it will
 *    touch, then runs the backend's kernel for that element type; a mismatch is an
 *    error naming the op and the argument, never a silent wrong read.
 *
 * Shapes are row-major. Conventions every kernel keeps:
 *  - parameter gradients (dweight, dbias, dwte, dwpe) ACCUMULATE (+=), so gradient
 *    accumulation over micro-batches needs no extra pass;
 *  - activation gradients OVERWRITE unless the name says `_acc` (then +=);
 *  - linear weights are stored (in, out) as Hugging Face GPT-2's Conv1D does;
 *  - for a fixed thread count every kernel is deterministic (no atomics, fixed orders). */
#ifndef LOOM_KERNELS_H
#define LOOM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"
#include "loom/safetensors.h" /* loom_dtype */

/* Where a tensor's memory is: the host, or a device's memory (a GPU backend's). */
enum { LOOM_DEVICE_HOST = 0, LOOM_DEVICE_CUDA = 1 };

/* A typed view: `numel` elements of `dtype` at `data` on `device`. The op's own
 * arguments give the shape (as in BLAS); the view gives what the memory is and how far
 * it reaches, so every op can refuse a view of the wrong type, place or size. A view
 * with data NULL is an absent optional argument. */
typedef struct loom_tensor {
    void *data;
    size_t numel;
    int dtype;  /* loom_dtype */
    int device; /* LOOM_DEVICE_* */
} loom_tensor;

static inline loom_tensor loom_view(const void *data, size_t numel, int dtype, int device) {
    return (loom_tensor){(void *)data, numel, dtype, device};
}
/* The view from element `off` on (off <= numel). */
static inline loom_tensor loom_view_at(loom_tensor t, size_t off) {
    LOOM_CHECK(off <= t.numel);
    t.data = (char *)t.data + off * loom_dtype_size((loom_dtype)t.dtype);
    t.numel -= off;
    return t;
}
#define LOOM_NO_TENSOR ((loom_tensor){0})

/* The fp32 kernels of a backend: plain pointers, shapes as arguments, no checks (the ops
 * check). */
typedef struct loom_f32_kernels {
    /* C(M,N) = alpha * op(A) op(B) + beta * C, row-major; trans_a/trans_b select op.
     * With beta = 0, C is not read (it may hold garbage or NaN), as in BLAS. */
    void (*gemm)(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *B, int ldb, float beta, float *C, int ldc);

    /* out(B,T,C) = wte[inp[i]] + wpe[p] for each row i = b*T + t at position p = pos ? pos[i]
     * : t (wpe NULL: no position embedding). wte holds the vocabulary's rows [v0, v0 + vn)
     * (row v0 first): an id outside contributes zeros (a vocabulary-parallel embedding's
     * other ranks hold it). Token ids are validated by the loader. */
    void (*encoder_forward)(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                            const float *wpe, int B, int T, int C, int v0, int vn);
    /* dwte(vn,C) += scatter(dout) over the ids in [v0, v0 + vn), dwpe(T,C) += sum over b of
     * dout (skipped if NULL). */
    void (*encoder_backward)(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                             int B, int T, int C, int v0, int vn);

    /* Per row of inp(N,C): out = (x - mean) * rstd * w + b, eps 1e-5; saves mean, rstd (N). */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C);
    /* dinp(N,C) += ..., dw(C) += ..., db(C) += ... */
    void (*layernorm_backward_acc)(float *dinp, float *dw, float *db, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int N, int C);

    /* RMSNorm (Llama) per row of inp(N,C): out = x * rstd * w, rstd = 1/sqrt(mean(x^2) +
     * eps), computed in float as Hugging Face does; saves rstd (N). */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *w, int N, int C, float eps);
    /* dinp(N,C) += ..., dw(C) += ... (dw summed over rows in row order) */
    void (*rmsnorm_backward_acc)(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                 const float *rstd, int N, int C);

    /* Rotary position embedding, in place, in Hugging Face's rotate-half convention: for
     * each of N rows (row r at x + r*stride, position p = pos ? pos[r] : r % T) and each of
     * its nh heads of hs, pairs (i, i + hs/2) for i < hs/2 turn by the angle of (p, i):
     * x_i <- x_i cos - x_{i+hs/2} sin, x_{i+hs/2} <- x_{i+hs/2} cos + x_i sin, with cos and sin
     * read at [p * hs/2 + i]. inverse = 1 turns by minus the angle: the rotation is
     * orthogonal, so that is the backward of the gradient. */
    void (*rope)(float *x, int N, int T, const int32_t *pos, int nh, int hs, int stride, const float *cos,
                 const float *sin, int inverse);

    /* SwiGLU: out(N,F) = silu(gate) * up for rows gu(N,2F) = [gate | up]. */
    void (*swiglu_forward)(float *out, const float *gu, int N, int F);
    /* dgu(N,2F) = gradient of out w.r.t. gu given dout(N,F) (overwrite). */
    void (*swiglu_backward)(float *dgu, const float *dout, const float *gu, int N, int F);

    /* out(N,OC) = inp(N,C) @ w(C,OC) + bias(OC) (bias may be NULL). */
    void (*matmul_forward)(float *out, const float *inp, const float *w, const float *bias,
                           int N, int C, int OC);
    /* dinp(N,C) = dout @ w^T (skipped if dinp NULL); dw(C,OC) += inp^T @ dout;
     * dbias(OC) += column sums of dout (skipped if NULL). */
    void (*matmul_backward)(float *dinp, float *dw, float *dbias, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC);

    /* Causal self-attention, grouped-query: each row of qkv(B,T,(H+2KVH)hs) is laid out
     * [q: H heads | k: KVH heads | v: KVH heads] of hs each, and query head h attends
     * with key/value head h / (H/KVH) (KVH divides H; KVH = H is multi-head attention),
     * scaled by 1/sqrt(hs). out(B,T,H*hs); lse(B,H,T) is the log-sum-exp of each
     * softmax row, kept for backward. Never materialises B*H*T*T scores. */
    void (*attention_forward)(float *out, float *lse, const float *qkv, int B, int T, int H, int KVH, int hs);
    /* dqkv(B,T,(H+2KVH)hs) = gradient of out w.r.t. qkv given dout(B,T,H*hs); the k and v
     * parts sum over the query heads of their group, in head order. */
    void (*attention_backward)(float *dqkv, const float *dout, const float *qkv, const float *out,
                               const float *lse, int B, int T, int H, int KVH, int hs);
    /* Decode attention (generation with a KV cache), grouped-query: for each row b and
     * query head h, the one query at q + b*q_stride + h*hs attends to the first len[b]
     * (>= 1) cached positions of row b, through key/value head kh = h / (H/KVH) (KVH
     * divides H), scaled by 1/sqrt(hs): the key of position t is at
     * k + b*batch_stride + t*row_stride + kh*hs, the value at the same offset from v.
     * out(B,H*hs) is overwritten. scratch holds B*H*max_b(len[b]) floats, sized by the
     * caller (the op allocates nothing): the softmax row of each (b, h). */
    void (*attention_decode)(float *out, const float *q, int q_stride, const float *k, const float *v,
                             const int32_t *len, int B, int H, int KVH, int hs, size_t row_stride,
                             size_t batch_stride, float *scratch);

    /* GELU, tanh approximation. */
    void (*gelu_forward)(float *out, const float *inp, size_t n);
    void (*gelu_backward)(float *dinp, const float *inp, const float *dout, size_t n);

    /* out = a + b. */
    void (*residual_forward)(float *out, const float *a, const float *b, size_t n);

    /* Softmax cross-entropy over logits(N,V) with targets(N):
     * losses(N) = logsumexp(row) - row[target]. If dscale != 0 the logits are
     * overwritten by dscale * (softmax(row) - onehot(target)), i.e. their gradient. */
    void (*crossentropy)(float *losses, float *logits, const int32_t *targets, int N, int V,
                         float dscale);
    /* The same over a vocabulary split across ranks, in three phases with a reduction over
     * the ranks between them. logits(N, ld) hold this rank's columns: vocabulary ids
     * [v0, v0 + vn), vn <= ld (columns beyond vn are padding); stats holds 3N floats:
     *  phase 0: stats[n] = the row's maximum here (then: the maximum over the ranks);
     *  phase 1: stats[N+n] = sum of exp(x - max) here, stats[2N+n] = the target's logit
     *           if this rank holds it, else 0 (then: both summed over the ranks);
     *  phase 2: losses(N) = max - target logit + log(sum); if dscale != 0 the logits are
     *           overwritten by their gradient, dscale * (softmax - onehot), padding 0. */
    void (*crossentropy_part)(int phase, float *losses, float *logits, const int32_t *targets, float *stats, int N,
                              int ld, int v0, int vn, float dscale);

    /* AdamW on one tensor, torch.optim.AdamW semantics: p -= lr*wd*p; m,v EMAs;
     * p -= lr * m_hat / (sqrt(v_hat) + eps), with bias corrections bc1 = 1-beta1^t,
     * bc2 = 1-beta2^t passed in. grad is multiplied by gscale first (clipping). */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float wd, float bc1, float bc2, float gscale);

    /* Sum of squares of x(n) in double, in a fixed order independent of thread count. */
    double (*sumsq)(const float *x, size_t n);
} loom_f32_kernels;

typedef struct loom_backend {
    const char *name;
    int device; /* LOOM_DEVICE_* of the memory it allocates and computes on */

    /* What the backend owns: its memory (host memory for cpu and ref; a GPU backend's
     * device memory), copies between any two places (host or its memory), and the wait
     * for its queued work. */
    void *(*alloc)(size_t bytes, const char *what); /* zeroed; NULL with the message set */
    void (*free)(void *p);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*sync)(void);
    /* Capabilities: 1 when the backend computes in this element type (loom_dtype values;
     * cpu and ref: F32 only so far), i.e. has its kernel table. */
    int (*supports)(int dtype);
    /* Sizes every workspace the kernels need for sequences of up to max_T on up to
     * threads threads, once, before they run: no kernel allocates. */
    loom_status (*reserve)(int max_T, int threads);
    /* What reserve allocates in a process that has reserved nothing yet (bytes). */
    size_t (*reserve_bytes)(int max_T, int threads);

    const loom_f32_kernels *f32; /* NULL when the backend has no fp32 kernels */
} loom_backend;

const loom_backend *loom_backend_cpu(void);
const loom_backend *loom_backend_ref(void);
/* "cpu" or "ref"; NULL if unknown. */
const loom_backend *loom_backend_get(const char *name);

/* What the cpu backend's GEMM is (for `loom info`). */
const char *loom_gemm_library(void);

/* The ops, as the model calls them: the kernel of the same name (see loom_f32_kernels
 * for what each computes) after the checks above. LOOM_OK, or LOOM_ERR_ARG with the
 * message "op_NAME: ARG ..." naming what is wrong. */
#define BE_ const loom_backend *
#define T_ loom_tensor
loom_status op_gemm(BE_ be, int trans_a, int trans_b, int M, int N, int K, float alpha, T_ A, int lda, T_ B,
                    int ldb, float beta, T_ C, int ldc);
loom_status op_encoder_forward(BE_ be, T_ out, T_ inp, T_ pos, T_ wte, T_ wpe, int B, int T, int C);
loom_status op_encoder_backward(BE_ be, T_ dwte, T_ dwpe, T_ dout, T_ inp, int B, int T, int C);
/* The same over the vocabulary rows [v0, v0 + vn) that wte holds. */
loom_status op_encoder_forward_rows(BE_ be, T_ out, T_ inp, T_ pos, T_ wte, T_ wpe, int B, int T, int C, int v0,
                                    int vn);
loom_status op_encoder_backward_rows(BE_ be, T_ dwte, T_ dwpe, T_ dout, T_ inp, int B, int T, int C, int v0, int vn);
loom_status op_layernorm_forward(BE_ be, T_ out, T_ mean, T_ rstd, T_ inp, T_ w, T_ b, int N, int C);
loom_status op_layernorm_backward_acc(BE_ be, T_ dinp, T_ dw, T_ db, T_ dout, T_ inp, T_ w, T_ mean, T_ rstd,
                                      int N, int C);
loom_status op_rmsnorm_forward(BE_ be, T_ out, T_ rstd, T_ inp, T_ w, int N, int C, float eps);
loom_status op_rmsnorm_backward_acc(BE_ be, T_ dinp, T_ dw, T_ dout, T_ inp, T_ w, T_ rstd, int N, int C);
loom_status op_rope(BE_ be, T_ x, int N, int T, T_ pos, int nh, int hs, int stride, T_ cos, T_ sin,
                    int inverse);
loom_status op_swiglu_forward(BE_ be, T_ out, T_ gu, int N, int F);
loom_status op_swiglu_backward(BE_ be, T_ dgu, T_ dout, T_ gu, int N, int F);
loom_status op_matmul_forward(BE_ be, T_ out, T_ inp, T_ w, T_ bias, int N, int C, int OC);
loom_status op_matmul_backward(BE_ be, T_ dinp, T_ dw, T_ dbias, T_ dout, T_ inp, T_ w, int N, int C, int OC);
loom_status op_attention_forward(BE_ be, T_ out, T_ lse, T_ qkv, int B, int T, int H, int KVH, int hs);
loom_status op_attention_backward(BE_ be, T_ dqkv, T_ dout, T_ qkv, T_ out, T_ lse, int B, int T, int H,
                                  int KVH, int hs);
loom_status op_attention_decode(BE_ be, T_ out, T_ q, int q_stride, T_ k, T_ v, T_ len, int B, int H, int KVH,
                                int hs, size_t row_stride, size_t batch_stride, T_ scratch);
loom_status op_gelu_forward(BE_ be, T_ out, T_ inp, size_t n);
loom_status op_gelu_backward(BE_ be, T_ dinp, T_ inp, T_ dout, size_t n);
loom_status op_residual_forward(BE_ be, T_ out, T_ a, T_ b, size_t n);
loom_status op_crossentropy(BE_ be, T_ losses, T_ logits, T_ targets, int N, int V, float dscale);
loom_status op_crossentropy_part(BE_ be, int phase, T_ losses, T_ logits, T_ targets, T_ stats, int N, int ld, int v0,
                                 int vn, float dscale);
loom_status op_adamw(BE_ be, T_ p, T_ g, T_ m, T_ v, size_t n, float lr, float beta1, float beta2, float eps,
                     float wd, float bc1, float bc2, float gscale);
/* The first n elements of t set to zero; n elements of src copied into dst (same dtype,
 * either on the host or in the backend's memory). */
loom_status op_zero(BE_ be, T_ t, size_t n);
loom_status op_copy(BE_ be, T_ dst, T_ src, size_t n);

#undef BE_
#undef T_

#endif
