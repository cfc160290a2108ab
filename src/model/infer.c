/* Incremental forward with a KV cache, for generation, of both architectures: each step
 * feeds one token per row at that row's own position, keeps its keys and values, and
 * attends with the backend's decode attention (one query row per (row, head) against
 * the row's cached keys). Everything else is the same backend kernels, in the same order
 * and with the same arguments, as the training forward (gpt.c, llama.c), so cached and
 * uncached decoding choose the same tokens. Not here: batched prefill (prompts are fed
 * one position per step), paged or quantised caches. */
#include <string.h>

#include "model/arch.h"

/* The buffers of a cache, in arena order; kv_sizes gives their floats. */
enum { KV_K, KV_V, KV_X, KV_XN, KV_TMP, KV_QKV, KV_ATTY, KV_HID, KV_ACT, KV_MEAN, KV_RSTD, KV_LOGITS, KV_SCORES,
       KV_BUFS };

struct loom_gpt_kv {
    int B, Tmax;
    /* views of the buffers, KV_* (kv_sizes): K, V (L, B, Tmax, KVH*hs) cached keys and
     * values (GPT-2: KVH = H); X, XN, TMP (B, C) the residual stream, a norm's output, a
     * projection's output; QKV (B, W): GPT-2 3C, Llama (H + 2KVH) hs; ATTY (B, H*hs);
     * HID, ACT: GPT-2 fc (B,4C) and its GELU (B,4C), Llama gate|up (B,2F) and SwiGLU
     * (B,F); MEAN, RSTD (B); LOGITS (B, V); SCORES (B, H, Tmax) the decode attention's
     * softmax rows */
    loom_tensor t[KV_BUFS];
    loom_tensor pos, len;  /* (B) int32: this step's positions, and how many cached positions each row attends to */
    loom_status status;    /* the first failed op */
    const loom_backend *be;
    float *arena;
    int32_t *ids;          /* (3B) in the backend's memory: pos, len, this step's tokens */
    int32_t *staged;       /* (3B) the same on the host */
};

static int kv_heads(const loom_gpt_config *c) { return c->arch == LOOM_ARCH_LLAMA ? c->n_kv_head : c->n_head; }

/* The one place that sizes a cache: floats of every buffer for (config, B). */
static void kv_sizes(const loom_gpt_config *c, int B, size_t n[KV_BUFS]) {
    const size_t C = c->n_embd, H = c->n_head, hs = C / H, KVH = kv_heads(c), L = c->n_layer;
    const size_t Tm = c->block_size, llama = c->arch == LOOM_ARCH_LLAMA, F = c->ffn_dim;
    n[KV_K] = n[KV_V] = L * B * Tm * KVH * hs;
    n[KV_X] = n[KV_XN] = n[KV_TMP] = (size_t)B * C;
    n[KV_QKV] = (size_t)B * (H + 2 * KVH) * hs;
    n[KV_ATTY] = (size_t)B * H * hs;
    n[KV_HID] = (size_t)B * (llama ? 2 * F : 4 * C);
    n[KV_ACT] = (size_t)B * (llama ? F : 4 * C);
    n[KV_MEAN] = n[KV_RSTD] = B;
    n[KV_LOGITS] = (size_t)B * c->vocab_size;
    n[KV_SCORES] = (size_t)B * H * Tm;
}

loom_status loom_gpt_kv_init(loom_gpt_kv **out, const loom_gpt *g, int B) {
    *out = NULL;
    if (B < 1) return loom_error(LOOM_ERR_ARG, "generation needs at least one row (got %d)", B);
    if (g->tp.size > 1)
        return loom_error(LOOM_ERR_ARG, "generation with a KV cache runs on a whole model (tensor-parallel "
                          "decoding is not built yet)");
    size_t n[KV_BUFS], total = 0;
    kv_sizes(&g->cfg, B, n);
    for (int i = 0; i < KV_BUFS; i++) total += n[i];
    const loom_backend *be = g->backend;
    loom_gpt_kv *kv = loom_alloc(sizeof *kv, "KV cache");
    if (!kv) return LOOM_ERR_NOMEM;
    kv->arena = be->alloc(total * sizeof(float), "KV cache");
    kv->ids = kv->arena ? be->alloc(3 * (size_t)B * sizeof(int32_t), "KV cache") : NULL;
    kv->staged = kv->ids ? loom_alloc(3 * (size_t)B * sizeof(int32_t), "KV cache") : NULL;
    kv->be = be;
    if (!kv->staged) {
        loom_gpt_kv_free(kv);
        return LOOM_ERR_NOMEM;
    }
    kv->pos = model_ids(g, kv->ids, B);
    kv->len = model_ids(g, kv->ids + B, B);
    kv->B = B;
    kv->Tmax = g->cfg.block_size;
    float *p = kv->arena;
    for (int i = 0; i < KV_BUFS; i++) {
        kv->t[i] = model_view(g, p, n[i]);
        p += n[i];
    }
    *out = kv;
    return LOOM_OK;
}

void loom_gpt_kv_free(loom_gpt_kv *kv) {
    if (!kv) return;
    const loom_backend *be = kv->be;
    loom_free(kv->staged);
    be->free(kv->ids);
    be->free(kv->arena);
    loom_free(kv);
}

/* One op of a decode step; the first failure is kept in kv->status. */
#define KOP(call)                                                                                            \
    do {                                                                                                     \
        loom_status st_ = (call);                                                                            \
        if (st_ && !kv->status) kv->status = st_;                                                            \
    } while (0)
#define KV(i) kv->t[i]

/* Writes row b's k and v (KVH heads of hs each, at qkv + b*W + koff and + voff) into
 * layer l's cache at the row's position. */
static void kv_store(const loom_backend *be, loom_gpt_kv *kv, int l, int KVH, int hs, int W, int koff, int voff) {
    const size_t D = (size_t)KVH * hs, layer = (size_t)l * kv->B * kv->Tmax * D;
    const int32_t *pos = kv->staged;
    for (int b = 0; b < kv->B; b++) {
        const size_t at = layer + ((size_t)b * kv->Tmax + pos[b]) * D;
        KOP(op_copy(be, loom_view_at(KV(KV_K), at), loom_view_at(KV(KV_QKV), (size_t)b * W + koff), D));
        KOP(op_copy(be, loom_view_at(KV(KV_V), at), loom_view_at(KV(KV_QKV), (size_t)b * W + voff), D));
    }
}

/* Decode attention of layer l over the cache (queries at the start of each qkv row). */
static void kv_attend(const loom_backend *be, loom_gpt_kv *kv, int l, int H, int KVH, int hs, int W) {
    const size_t D = (size_t)KVH * hs, bstride = (size_t)kv->Tmax * D, layer = (size_t)l * kv->B * bstride;
    KOP(op_attention_decode(be, KV(KV_ATTY), KV(KV_QKV), W, loom_view_at(KV(KV_K), layer),
                            loom_view_at(KV(KV_V), layer), kv->len, kv->B, H, KVH, hs, D, bstride, KV(KV_SCORES)));
}

static void gpt2_step(const loom_gpt *g, loom_gpt_kv *kv, loom_tensor tokens) {
    const loom_backend *be = g->backend;
    const int B = kv->B, C = g->cfg.n_embd, H = g->cfg.n_head, V = g->cfg.vocab_size, L = g->cfg.n_layer;
    const int hs = C / H, nt = g->sizes.n_tensors;
    const loom_tensor x = KV(KV_X), xn = KV(KV_XN), tmp = KV(KV_TMP), mean = KV(KV_MEAN), rstd = KV(KV_RSTD);
    KOP(op_encoder_forward(be, x, tokens, kv->pos, P(0), P(1), B, 1, C));
    for (int l = 0; l < L; l++) {
        KOP(op_layernorm_forward(be, xn, mean, rstd, x, LP(l, G_LN1_W), LP(l, G_LN1_B), B, C));
        KOP(op_matmul_forward(be, KV(KV_QKV), xn, LP(l, G_QKV_W), LP(l, G_QKV_B), B, C, 3 * C));
        kv_store(be, kv, l, H, hs, 3 * C, C, 2 * C);
        kv_attend(be, kv, l, H, H, hs, 3 * C);
        KOP(op_matmul_forward(be, tmp, KV(KV_ATTY), LP(l, G_ATTPROJ_W), LP(l, G_ATTPROJ_B), B, C, C));
        KOP(op_residual_forward(be, x, x, tmp, (size_t)B * C));
        KOP(op_layernorm_forward(be, xn, mean, rstd, x, LP(l, G_LN2_W), LP(l, G_LN2_B), B, C));
        KOP(op_matmul_forward(be, KV(KV_HID), xn, LP(l, G_FC_W), LP(l, G_FC_B), B, C, 4 * C));
        KOP(op_gelu_forward(be, KV(KV_ACT), KV(KV_HID), (size_t)B * 4 * C));
        KOP(op_matmul_forward(be, tmp, KV(KV_ACT), LP(l, G_FCPROJ_W), LP(l, G_FCPROJ_B), B, 4 * C, C));
        KOP(op_residual_forward(be, x, x, tmp, (size_t)B * C));
    }
    KOP(op_layernorm_forward(be, xn, mean, rstd, x, P(nt - 2), P(nt - 1), B, C));
    KOP(op_gemm(be, 0, 1, B, V, C, 1.0f, xn, C, P(0), C, 0.0f, KV(KV_LOGITS), V));
}

/* llama_forward for one position per row, each at its own position. */
static void llama_step(const loom_gpt *g, loom_gpt_kv *kv, loom_tensor tokens) {
    const loom_backend *be = g->backend;
    const loom_gpt_config *c = &g->cfg;
    const int B = kv->B, C = c->n_embd, H = c->n_head, KVH = c->n_kv_head, hs = C / H, L = c->n_layer;
    const int F = c->ffn_dim, V = c->vocab_size, Q = H * hs, W = (H + 2 * KVH) * hs;
    const int head = c->untied ? g->sizes.n_tensors - 1 : 0; /* lm_head.weight, or the embedding */
    const float eps = c->norm_eps;
    const loom_tensor x = KV(KV_X), xn = KV(KV_XN), tmp = KV(KV_TMP), rstd = KV(KV_RSTD), qkv = KV(KV_QKV);
    const loom_tensor rcos = model_rope_cos(g), rsin = model_rope_sin(g);
    KOP(op_encoder_forward(be, x, tokens, LOOM_NO_TENSOR, P(0), LOOM_NO_TENSOR, B, 1, C));
    for (int l = 0; l < L; l++) {
        KOP(op_rmsnorm_forward(be, xn, rstd, x, LP(l, L_NORM1_W), B, C, eps));
        KOP(op_gemm(be, 0, 1, B, W, C, 1.0f, xn, C, LPS(l, L_Q_W, 3), C, 0.0f, qkv, W));
        KOP(op_rope(be, qkv, B, 1, kv->pos, H, hs, W, rcos, rsin, 0));
        KOP(op_rope(be, loom_view_at(qkv, Q), B, 1, kv->pos, KVH, hs, W, rcos, rsin, 0));
        kv_store(be, kv, l, KVH, hs, W, Q, Q + KVH * hs);
        kv_attend(be, kv, l, H, KVH, hs, W);
        KOP(op_gemm(be, 0, 1, B, C, Q, 1.0f, KV(KV_ATTY), Q, LP(l, L_O_W), Q, 0.0f, tmp, C));
        KOP(op_residual_forward(be, x, x, tmp, (size_t)B * C));
        KOP(op_rmsnorm_forward(be, xn, rstd, x, LP(l, L_NORM2_W), B, C, eps));
        KOP(op_gemm(be, 0, 1, B, 2 * F, C, 1.0f, xn, C, LPS(l, L_GATE_W, 2), C, 0.0f, KV(KV_HID), 2 * F));
        KOP(op_swiglu_forward(be, KV(KV_ACT), KV(KV_HID), B, F));
        KOP(op_gemm(be, 0, 1, B, C, F, 1.0f, KV(KV_ACT), F, LP(l, L_DOWN_W), F, 0.0f, tmp, C));
        KOP(op_residual_forward(be, x, x, tmp, (size_t)B * C));
    }
    KOP(op_rmsnorm_forward(be, xn, rstd, x, P(model_layer_tensor(g, L, 0)), B, C, eps));
    KOP(op_gemm(be, 0, 1, B, V, C, 1.0f, xn, C, P(head), C, 0.0f, KV(KV_LOGITS), V));
}

const float *loom_gpt_kv_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens, const int *positions) {
    const loom_backend *be = g->backend;
    int32_t *ids = kv->staged;
    for (int b = 0; b < kv->B; b++) {
        LOOM_CHECK(positions[b] >= 0 && positions[b] < kv->Tmax && tokens[b] >= 0 && tokens[b] < g->cfg.vocab_size);
        ids[b] = positions[b];
        ids[kv->B + b] = positions[b] + 1;
        ids[2 * kv->B + b] = tokens[b];
    }
    be->copy(kv->ids, ids, 3 * (size_t)kv->B * sizeof *ids);
    const loom_tensor tok = model_ids(g, kv->ids + 2 * kv->B, kv->B);
    if (g->cfg.arch == LOOM_ARCH_LLAMA)
        llama_step(g, kv, tok);
    else
        gpt2_step(g, kv, tok);
    return kv->status ? NULL : (const float *)KV(KV_LOGITS).data;
}
