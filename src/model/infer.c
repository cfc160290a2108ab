/* Incremental forward with a KV cache, for generation, of both architectures: each step
 * feeds one token per row at that row's own position, keeps its keys and values, and
 * attends with the backend's decode attention (one query row per (row, head) against
 * the row's cached keys). Everything else is the same backend kernels, in the same order
 * and with the same arguments, as the training forward (gpt.c, llama.c), so cached and
 * uncached decoding choose the same tokens. Not here: batched prefill (prompts are fed
 * one position per step), paged or quantised caches. */
#include <math.h>
#include <string.h>

#include "model/arch.h"

/* The buffers of a cache, in arena order; kv_sizes gives their floats. */
enum { KV_K, KV_V, KV_X, KV_XN, KV_TMP, KV_QKV, KV_ATTY, KV_HID, KV_ACT, KV_MEAN, KV_RSTD, KV_LOGITS, KV_SCORES,
       KV_BUFS };

struct loom_gpt_kv {
    int B, Tmax;
    float *k, *v;          /* (L, B, Tmax, KVH*hs) cached keys and values (GPT-2: KVH = H) */
    float *x, *xn, *tmp;   /* (B, C) residual stream, norm output, projection output */
    float *qkv;            /* (B, W): GPT-2 3C; Llama (H + 2KVH) hs */
    float *atty;           /* (B, H*hs) */
    float *hid, *act;      /* GPT-2: fc (B,4C) and its GELU (B,4C); Llama: gate|up (B,2F), SwiGLU (B,F) */
    float *mean, *rstd;    /* (B) */
    float *logits;         /* (B, V) */
    float *scores;         /* (B, H, Tmax) softmax rows of the decode attention */
    int32_t *pos, *len;    /* (B) this step's positions, and the cached positions each row attends to */
    float *arena;
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
    size_t n[KV_BUFS], total = 0;
    kv_sizes(&g->cfg, B, n);
    for (int i = 0; i < KV_BUFS; i++) total += n[i];
    loom_gpt_kv *kv = loom_alloc(sizeof *kv, "KV cache");
    if (!kv) return LOOM_ERR_NOMEM;
    kv->arena = loom_alloc(total * sizeof(float), "KV cache");
    kv->pos = kv->arena ? loom_alloc(2 * (size_t)B * sizeof(int32_t), "KV cache") : NULL;
    if (!kv->pos) {
        loom_free(kv->arena);
        loom_free(kv);
        return LOOM_ERR_NOMEM;
    }
    kv->len = kv->pos + B;
    kv->B = B;
    kv->Tmax = g->cfg.block_size;
    float **buf[KV_BUFS] = {&kv->k,    &kv->v,    &kv->x,    &kv->xn,   &kv->tmp,    &kv->qkv,   &kv->atty,
                            &kv->hid,  &kv->act,  &kv->mean, &kv->rstd, &kv->logits, &kv->scores};
    float *p = kv->arena;
    for (int i = 0; i < KV_BUFS; i++) {
        *buf[i] = p;
        p += n[i];
    }
    *out = kv;
    return LOOM_OK;
}

void loom_gpt_kv_free(loom_gpt_kv *kv) {
    if (!kv) return;
    loom_free(kv->pos);
    loom_free(kv->arena);
    loom_free(kv);
}

/* Writes row b's k and v (KVH heads of hs each, at qkv + b*W + koff and + voff) into
 * layer l's cache at the row's position. */
static void kv_store(loom_gpt_kv *kv, int l, int KVH, int hs, int W, int koff, int voff) {
    const size_t D = (size_t)KVH * hs, layer = (size_t)l * kv->B * kv->Tmax * D;
    for (int b = 0; b < kv->B; b++) {
        const size_t at = layer + ((size_t)b * kv->Tmax + kv->pos[b]) * D;
        memcpy(kv->k + at, kv->qkv + (size_t)b * W + koff, D * sizeof(float));
        memcpy(kv->v + at, kv->qkv + (size_t)b * W + voff, D * sizeof(float));
    }
}

/* Decode attention of layer l over the cache (queries at the start of each qkv row). */
static void kv_attend(const loom_backend *be, loom_gpt_kv *kv, int l, int H, int KVH, int hs, int W) {
    const size_t D = (size_t)KVH * hs, bstride = (size_t)kv->Tmax * D, layer = (size_t)l * kv->B * bstride;
    be->attention_decode(kv->atty, kv->qkv, W, kv->k + layer, kv->v + layer, kv->len, kv->B, H, KVH, hs, D, bstride,
                         kv->scores);
}

static void gpt2_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens) {
    const loom_backend *be = g->backend;
    const int B = kv->B, C = g->cfg.n_embd, H = g->cfg.n_head, V = g->cfg.vocab_size, L = g->cfg.n_layer;
    const int hs = C / H, nt = g->sizes.n_tensors;
    for (int b = 0; b < B; b++) {
        const float *e = P(0) + (size_t)tokens[b] * C, *pe = P(1) + (size_t)kv->pos[b] * C;
        for (int c = 0; c < C; c++) kv->x[(size_t)b * C + c] = e[c] + pe[c];
    }
    for (int l = 0; l < L; l++) {
        be->layernorm_forward(kv->xn, kv->mean, kv->rstd, kv->x, LP(l, G_LN1_W), LP(l, G_LN1_B), B, C);
        be->matmul_forward(kv->qkv, kv->xn, LP(l, G_QKV_W), LP(l, G_QKV_B), B, C, 3 * C);
        kv_store(kv, l, H, hs, 3 * C, C, 2 * C);
        kv_attend(be, kv, l, H, H, hs, 3 * C);
        be->matmul_forward(kv->tmp, kv->atty, LP(l, G_ATTPROJ_W), LP(l, G_ATTPROJ_B), B, C, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
        be->layernorm_forward(kv->xn, kv->mean, kv->rstd, kv->x, LP(l, G_LN2_W), LP(l, G_LN2_B), B, C);
        be->matmul_forward(kv->hid, kv->xn, LP(l, G_FC_W), LP(l, G_FC_B), B, C, 4 * C);
        be->gelu_forward(kv->act, kv->hid, (size_t)B * 4 * C);
        be->matmul_forward(kv->tmp, kv->act, LP(l, G_FCPROJ_W), LP(l, G_FCPROJ_B), B, 4 * C, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
    }
    be->layernorm_forward(kv->xn, kv->mean, kv->rstd, kv->x, P(nt - 2), P(nt - 1), B, C);
    be->gemm(0, 1, B, V, C, 1.0f, kv->xn, C, P(0), C, 0.0f, kv->logits, V);
}

/* llama_forward for one position per row, each at its own position. */
static void llama_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens) {
    const loom_backend *be = g->backend;
    const loom_gpt_config *c = &g->cfg;
    const int B = kv->B, C = c->n_embd, H = c->n_head, KVH = c->n_kv_head, hs = C / H, L = c->n_layer;
    const int F = c->ffn_dim, V = c->vocab_size, Q = H * hs, W = (H + 2 * KVH) * hs;
    const int head = c->untied ? g->sizes.n_tensors - 1 : 0; /* lm_head.weight, or the embedding */
    const float eps = c->norm_eps;
    be->encoder_forward(kv->x, tokens, P(0), NULL, B, 1, C);
    for (int l = 0; l < L; l++) {
        be->rmsnorm_forward(kv->xn, kv->rstd, kv->x, LP(l, L_NORM1_W), B, C, eps);
        be->gemm(0, 1, B, W, C, 1.0f, kv->xn, C, LP(l, L_Q_W), C, 0.0f, kv->qkv, W);
        be->rope(kv->qkv, B, 1, kv->pos, H, hs, W, g->rope_cos, g->rope_sin, 0);
        be->rope(kv->qkv + Q, B, 1, kv->pos, KVH, hs, W, g->rope_cos, g->rope_sin, 0);
        kv_store(kv, l, KVH, hs, W, Q, Q + KVH * hs);
        kv_attend(be, kv, l, H, KVH, hs, W);
        be->gemm(0, 1, B, C, Q, 1.0f, kv->atty, Q, LP(l, L_O_W), Q, 0.0f, kv->tmp, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
        be->rmsnorm_forward(kv->xn, kv->rstd, kv->x, LP(l, L_NORM2_W), B, C, eps);
        be->gemm(0, 1, B, 2 * F, C, 1.0f, kv->xn, C, LP(l, L_GATE_W), C, 0.0f, kv->hid, 2 * F);
        be->swiglu_forward(kv->act, kv->hid, B, F);
        be->gemm(0, 1, B, C, F, 1.0f, kv->act, F, LP(l, L_DOWN_W), F, 0.0f, kv->tmp, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
    }
    be->rmsnorm_forward(kv->xn, kv->rstd, kv->x, P(model_layer_tensor(g, L, 0)), B, C, eps);
    be->gemm(0, 1, B, V, C, 1.0f, kv->xn, C, P(head), C, 0.0f, kv->logits, V);
}

const float *loom_gpt_kv_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens, const int *positions) {
    for (int b = 0; b < kv->B; b++) {
        LOOM_CHECK(positions[b] >= 0 && positions[b] < kv->Tmax && tokens[b] >= 0 && tokens[b] < g->cfg.vocab_size);
        kv->pos[b] = positions[b];
        kv->len[b] = positions[b] + 1;
    }
    if (g->cfg.arch == LOOM_ARCH_LLAMA)
        llama_step(g, kv, tokens);
    else
        gpt2_step(g, kv, tokens);
    return kv->logits;
}
