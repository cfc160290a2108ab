/* Incremental GPT-2 forward with a KV cache, for generation. Uses the same backend
 * kernels as training for everything but attention, which here is one query row per
 * (row, head) against that row's cached keys. Not here: batched prefill (prompts are
 * fed one position per step), paged or quantised caches. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/arch.h"

struct loom_gpt_kv {
    int B, Tmax, nthreads;
    float *k, *v;        /* (L, B, Tmax, C) cached keys and values */
    float *x, *ln, *tmp; /* (B, C) residual stream, LayerNorm output, projection output */
    float *qkv;          /* (B, 3C) */
    float *atty;         /* (B, C) */
    float *fch, *fchg;   /* (B, 4C) */
    float *mean, *rstd;  /* (B) */
    float *logits;       /* (B, V) */
    float *scores;       /* (nthreads, Tmax) attention scratch */
    float *arena;
};

loom_status loom_gpt_kv_init(loom_gpt_kv **out, const loom_gpt *g, int B) {
    *out = NULL;
    if (B < 1) return loom_error(LOOM_ERR_ARG, "generation needs at least one row (got %d)", B);
    if (g->cfg.arch != LOOM_ARCH_GPT2)
        return loom_error(LOOM_ERR_ARG, "--kv-cache: the KV cache decodes GPT-2 only so far (use --no-kv-cache)");
    const size_t C = g->cfg.n_embd, L = g->cfg.n_layer, V = g->cfg.vocab_size, Tm = g->cfg.block_size;
    const int nt = omp_get_max_threads();
    const size_t n = 2 * L * B * Tm * C + 3 * B * C + 3 * B * C + B * C + 8 * B * C + 2 * B + B * V + nt * Tm;
    loom_gpt_kv *kv = loom_alloc(sizeof *kv, "KV cache");
    if (!kv) return LOOM_ERR_NOMEM;
    kv->arena = loom_alloc(n * sizeof(float), "KV cache");
    if (!kv->arena) {
        loom_free(kv);
        return LOOM_ERR_NOMEM;
    }
    kv->B = B;
    kv->Tmax = (int)Tm;
    kv->nthreads = nt;
    float *p = kv->arena;
    kv->k = p; p += L * B * Tm * C;
    kv->v = p; p += L * B * Tm * C;
    kv->x = p; p += B * C;
    kv->ln = p; p += B * C;
    kv->tmp = p; p += B * C;
    kv->qkv = p; p += 3 * B * C;
    kv->atty = p; p += B * C;
    kv->fch = p; p += 4 * B * C;
    kv->fchg = p; p += 4 * B * C;
    kv->mean = p; p += B;
    kv->rstd = p; p += B;
    kv->logits = p; p += B * V;
    kv->scores = p;
    *out = kv;
    return LOOM_OK;
}

void loom_gpt_kv_free(loom_gpt_kv *kv) {
    if (!kv) return;
    loom_free(kv->arena);
    loom_free(kv);
}


const float *loom_gpt_kv_step(const loom_gpt *g, loom_gpt_kv *kv, const int32_t *tokens, const int *positions) {
    const loom_backend *be = g->backend;
    const int B = kv->B, C = g->cfg.n_embd, H = g->cfg.n_head, V = g->cfg.vocab_size, L = g->cfg.n_layer;
    const int hs = C / H, Tm = kv->Tmax, nt = g->sizes.n_tensors;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        LOOM_CHECK(positions[b] >= 0 && positions[b] < Tm && tokens[b] >= 0 && tokens[b] < V);
        const float *e = P(0) + (size_t)tokens[b] * C, *pe = P(1) + (size_t)positions[b] * C;
        for (int c = 0; c < C; c++) kv->x[(size_t)b * C + c] = e[c] + pe[c];
    }
    for (int l = 0; l < L; l++) {
        be->layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, LP(l, G_LN1_W), LP(l, G_LN1_B), B, C);
        be->matmul_forward(kv->qkv, kv->ln, LP(l, G_QKV_W), LP(l, G_QKV_B), B, C, 3 * C);
        float *K = kv->k + (size_t)l * B * Tm * C, *Vc = kv->v + (size_t)l * B * Tm * C;
        for (int b = 0; b < B; b++) {
            memcpy(K + ((size_t)b * Tm + positions[b]) * C, kv->qkv + (size_t)b * 3 * C + C, C * sizeof(float));
            memcpy(Vc + ((size_t)b * Tm + positions[b]) * C, kv->qkv + (size_t)b * 3 * C + 2 * C, C * sizeof(float));
        }
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                float *s = kv->scores + (size_t)omp_get_thread_num() * Tm;
                const float *q = kv->qkv + (size_t)b * 3 * C + h * hs;
                const int n = positions[b] + 1;
                float mx = -INFINITY, sum = 0.0f;
                for (int j = 0; j < n; j++) {
                    const float *k = K + ((size_t)b * Tm + j) * C + h * hs;
                    float d = 0.0f;
#pragma omp simd reduction(+ : d)
                    for (int i = 0; i < hs; i++) d += q[i] * k[i];
                    s[j] = d * scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < n; j++) {
                    s[j] = expf(s[j] - mx);
                    sum += s[j];
                }
                float *o = kv->atty + (size_t)b * C + h * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int j = 0; j < n; j++) {
                    const float *v = Vc + ((size_t)b * Tm + j) * C + h * hs, p = s[j] / sum;
#pragma omp simd
                    for (int i = 0; i < hs; i++) o[i] += p * v[i];
                }
            }
        be->matmul_forward(kv->tmp, kv->atty, LP(l, G_ATTPROJ_W), LP(l, G_ATTPROJ_B), B, C, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
        be->layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, LP(l, G_LN2_W), LP(l, G_LN2_B), B, C);
        be->matmul_forward(kv->fch, kv->ln, LP(l, G_FC_W), LP(l, G_FC_B), B, C, 4 * C);
        be->gelu_forward(kv->fchg, kv->fch, (size_t)B * 4 * C);
        be->matmul_forward(kv->tmp, kv->fchg, LP(l, G_FCPROJ_W), LP(l, G_FCPROJ_B), B, 4 * C, C);
        be->residual_forward(kv->x, kv->x, kv->tmp, (size_t)B * C);
    }
    be->layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, P(nt - 2), P(nt - 1), B, C);
    be->gemm(0, 1, B, V, C, 1.0f, kv->ln, C, P(0), C, 0.0f, kv->logits, V);
    return kv->logits;
}
