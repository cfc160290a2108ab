/* Llama's forward and backward, layer by layer, over a kernel backend, as Hugging Face's
 * LlamaForCausalLM computes it: token embedding; per layer RMSNorm, the fused q/k/v
 * projection, rotary embeddings on q and k, grouped-query causal attention, the output
 * projection and a residual add, RMSNorm, the fused gate/up projection, SwiGLU, the
 * down projection and a residual add; the final RMSNorm; the LM head (the embedding,
 * or lm_head.weight when untied). Weights are stored as Hugging Face's Linear does,
 * (out, in), and each projection is one GEMM against the transposed weight. On a
 * tensor-parallel rank: its heads and FFN columns, as gpt.c. */
#include <math.h>
#include <string.h>

#include "model/arch.h"

void llama_rope_tables(const loom_gpt_config *c, float *cos_t, float *sin_t) {
    const int hs = c->n_embd / c->n_head, half = hs / 2;
    float inv[4096];
    LOOM_CHECK(half <= 4096);
    for (int i = 0; i < half; i++) { /* float32, as transformers computes inv_freq */
        float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)hs);
        if (c->rope_factor > 0) { /* rope_type llama3 */
            const double pi = 3.14159265358979323846, wavelen = 2 * pi / f;
            const double low_wl = c->rope_orig_ctx / c->rope_low_freq, high_wl = c->rope_orig_ctx / c->rope_high_freq;
            if (wavelen > low_wl) {
                f = f / c->rope_factor;
            } else if (wavelen >= high_wl) { /* between: a smooth blend */
                const double smooth = (c->rope_orig_ctx / wavelen - c->rope_low_freq) /
                                      (c->rope_high_freq - c->rope_low_freq);
                f = (float)((1.0 - smooth) * f / c->rope_factor + smooth * f);
            }
        }
        inv[i] = f;
    }
    for (int p = 0; p < c->block_size; p++)
        for (int i = 0; i < half; i++) {
            const float a = (float)p * inv[i];
            cos_t[(size_t)p * half + i] = cosf(a);
            sin_t[(size_t)p * half + i] = sinf(a);
        }
}

/* the LM head: an untied lm_head.weight (the last tensor), else the embedding */
static int head_tensor(const loom_gpt *g) { return g->cfg.untied ? g->sizes.n_tensors - 1 : 0; }

float llama_forward(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, const int32_t *targets, int B, int T,
                    float grad_scale) {
    const loom_backend *be = g->backend;
    const loom_gpt_config *c = &g->cfg;
    /* this rank's heads, key/value heads and FFN columns (all of them on one rank) */
    const int tp = g->tp.size, C = c->n_embd, hs = C / c->n_head, H = c->n_head / tp, KVH = c->n_kv_head / tp;
    const int L = c->n_layer, F = c->ffn_dim / tp;
    const int BT = B * T, W = (H + 2 * KVH) * hs, norm_t = model_layer_tensor(g, L, 0);
    /* the residual stream's rows here: all, or (sequence parallelism) this rank's R from row0 */
    const int R = model_sp(g) ? BT / tp : BT;
    const size_t row0 = model_sp_row0(g, BT);
    const float eps = c->norm_eps;
    const loom_tensor scratch = AG(AG_SCRATCH), rcos = model_rope_cos(g), rsin = model_rope_sin(g);
    if (model_first(g)) { /* else the previous stage's output is in AG_ENCODED */
        if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, -1);
        const loom_tensor emb = model_sp(g) ? scratch : AG(AG_ENCODED);
        OP(LOOM_PROF_EMBED, op_encoder_forward_rows(be, emb, model_ids(g, inputs, BT), LOOM_NO_TENSOR, P(0),
                                                    LOOM_NO_TENSOR, B, T, C, g->vocab_lo, g->vocab_rows));
        const loom_tensor emb_sum = model_row_sum(g, emb, BT, C, "embedding");
        if (model_sp(g)) OP(LOOM_PROF_EMBED, op_copy(be, AG(AG_ENCODED), emb_sum, (size_t)R * C));
    }
    loom_tensor res = AG(AG_ENCODED);
    for (int l = g->stage.l0; l < g->stage.l1; l++) {
        if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, l);
        const loom_tensor xn = A(l, LA_XN1), qkv = A(l, LA_QKV), atty = A(l, LA_ATTY);
        OP(LOOM_PROF_LAYERNORM, op_rmsnorm_forward(be, loom_view_at(xn, row0 * C), A(l, LA_RSTD1), res,
                                                   LP(l, L_NORM1_W), R, C, eps));
        model_gather_rows(g, xn, LOOM_NO_TENSOR, BT, C, "attention input");
        /* q, k, v: one GEMM against the (W, C) weight that q_proj, k_proj, v_proj form */
        OP(LOOM_PROF_MATMUL, op_gemm(be, 0, 1, BT, W, C, 1.0f, xn, C, LPS(l, L_Q_W, 3), C, 0.0f, qkv, W));
        OP(LOOM_PROF_ATTENTION, op_rope(be, qkv, BT, T, LOOM_NO_TENSOR, H, hs, W, rcos, rsin, 0));
        OP(LOOM_PROF_ATTENTION,
           op_rope(be, loom_view_at(qkv, (size_t)H * hs), BT, T, LOOM_NO_TENSOR, KVH, hs, W, rcos, rsin, 0));
        OP(LOOM_PROF_ATTENTION, op_attention_forward(be, atty, A(l, LA_LSE), qkv, B, T, H, KVH, hs));
        OP(LOOM_PROF_MATMUL,
           op_gemm(be, 0, 1, BT, C, H * hs, 1.0f, atty, H * hs, LP(l, L_O_W), H * hs, 0.0f, scratch, C));
        loom_tensor out = model_row_sum(g, scratch, BT, C, "attention output");
        OP(LOOM_PROF_RESIDUAL, op_residual_forward(be, A(l, LA_RES2), res, out, (size_t)R * C));
        const loom_tensor xn2 = A(l, LA_XN2), gu = A(l, LA_GU), act = A(l, LA_ACT);
        OP(LOOM_PROF_LAYERNORM,
           op_rmsnorm_forward(be, loom_view_at(xn2, row0 * C), A(l, LA_RSTD2), A(l, LA_RES2), LP(l, L_NORM2_W), R, C,
                              eps));
        model_gather_rows(g, xn2, LOOM_NO_TENSOR, BT, C, "MLP input");
        /* gate and up: one GEMM against the (2F, C) weight they form */
        OP(LOOM_PROF_MATMUL, op_gemm(be, 0, 1, BT, 2 * F, C, 1.0f, xn2, C, LPS(l, L_GATE_W, 2), C, 0.0f, gu, 2 * F));
        OP(LOOM_PROF_GELU, op_swiglu_forward(be, act, gu, BT, F));
        OP(LOOM_PROF_MATMUL, op_gemm(be, 0, 1, BT, C, F, 1.0f, act, F, LP(l, L_DOWN_W), F, 0.0f, scratch, C));
        out = model_row_sum(g, scratch, BT, C, "MLP output");
        OP(LOOM_PROF_RESIDUAL, op_residual_forward(be, A(l, LA_RES3), A(l, LA_RES2), out, (size_t)R * C));
        res = A(l, LA_RES3);
    }
    if (!model_last(g)) return g->status ? NAN : 0.0f; /* the output goes to the next stage */
    if (pass->param_wait) pass->param_wait(pass->param_wait_ctx, L);
    OP(LOOM_PROF_LAYERNORM,
       op_rmsnorm_forward(be, loom_view_at(AG(AG_LNF), row0 * C), AG(AG_LNF_RSTD), res, P(norm_t), R, C, eps));
    model_gather_rows(g, AG(AG_LNF), LOOM_NO_TENSOR, BT, C, "LM head input");
    return model_head_forward(g, c->untied ? P(head_tensor(g)) : model_tied_head(g), targets, BT, grad_scale);
}

void llama_backward(loom_gpt *g, const loom_pass *pass, const int32_t *inputs, int B, int T) {
    const loom_backend *be = g->backend;
    const loom_gpt_config *c = &g->cfg;
    const int tp = g->tp.size, C = c->n_embd, hs = C / c->n_head, H = c->n_head / tp, KVH = c->n_kv_head / tp;
    const int L = c->n_layer, F = c->ffn_dim / tp;
    const int BT = B * T, W = (H + 2 * KVH) * hs, Q = H * hs, norm_t = model_layer_tensor(g, L, 0);
    const int R = model_sp(g) ? BT / tp : BT;
    const size_t BTm = (size_t)g->max_B * g->max_T;
    const loom_tensor rcos = model_rope_cos(g), rsin = model_rope_sin(g);
    const float *ga = g->grad_acts;
    const loom_tensor dres = model_view(g, ga, BTm * C);                   /* (BT,C) residual stream's gradient */
    const loom_tensor dbuf = model_view(g, ga + BTm * C, BTm * C);         /* (BT,C) a norm output's gradient */
    const loom_tensor dqkv = model_view(g, ga + 2 * BTm * C, BTm * W);     /* (BT,W) */
    const loom_tensor dgu = model_view(g, ga + BTm * (2 * C + W), BTm * 2 * F); /* (BT,2F) */
    /* (BT,F), and later in the layer datty (BT,Q) */
    const loom_tensor dact = model_view(g, ga + BTm * (2 * C + W + 2 * F), BTm * (F > Q ? F : Q));
    /* sequence parallelism: dres holds this rank's R rows; the GEMMs read them gathered */
    const loom_tensor dall =
        model_sp(g) ? model_view(g, ga + BTm * (2 * C + W + 2 * F + (F > Q ? F : Q)), BTm * C) : dres;
    const int ht = head_tensor(g);
    if (model_last(g)) { /* else dres holds the next stage's gradient */
        const loom_tensor dn = model_head_backward(g, pass, c->untied ? P(ht) : model_tied_head(g),
                                                   c->untied ? G(ht) : model_tied_head_grad(g, pass), dbuf, BT);
        OP(LOOM_PROF_ZERO, op_zero(be, dres, (size_t)R * C));
        OP(LOOM_PROF_LAYERNORM_B, op_rmsnorm_backward_acc(be, dres, G(norm_t), dn, A(L - 1, LA_RES3), P(norm_t),
                                                          AG(AG_LNF_RSTD), R, C));
        /* the norms saw this rank's rows only: their weights' gradients summed over the group */
        if (model_sp(g)) model_tp_sum(g, G(norm_t), (size_t)C, "norm gradients");
    } else if (pass->grad_ready) { /* the LM head's part of the embedding's gradient is in already */
        pass->grad_ready(pass->grad_ready_ctx, LOOM_GRAD_HEAD_DONE);
    }
    loom_tensor dn;
    for (int l = g->stage.l1 - 1; l >= g->stage.l0; l--) {
        const loom_tensor res_in = l > g->stage.l0 ? A(l - 1, LA_RES3) : AG(AG_ENCODED);
        /* MLP: res3 = res2 + down(swiglu(gate_up(norm2(res2)))) */
        model_gather_rows(g, dall, dres, BT, C, "MLP output gradient");
        OP(LOOM_PROF_MATMUL_B, op_gemm(be, 0, 0, BT, F, C, 1.0f, dall, C, LP(l, L_DOWN_W), F, 0.0f, dact, F));
        OP(LOOM_PROF_MATMUL_B,
           op_gemm(be, 1, 0, C, F, BT, 1.0f, dall, C, A(l, LA_ACT), F, 1.0f, LG(l, L_DOWN_W), F));
        OP(LOOM_PROF_GELU_B, op_swiglu_backward(be, dgu, dact, A(l, LA_GU), BT, F));
        OP(LOOM_PROF_MATMUL_B,
           op_gemm(be, 0, 0, BT, C, 2 * F, 1.0f, dgu, 2 * F, LPS(l, L_GATE_W, 2), C, 0.0f, dbuf, C));
        dn = model_row_sum(g, dbuf, BT, C, "MLP input gradient");
        OP(LOOM_PROF_MATMUL_B,
           op_gemm(be, 1, 0, 2 * F, C, BT, 1.0f, dgu, 2 * F, A(l, LA_XN2), C, 1.0f, LGS(l, L_GATE_W, 2), C));
        OP(LOOM_PROF_LAYERNORM_B, op_rmsnorm_backward_acc(be, dres, LG(l, L_NORM2_W), dn, A(l, LA_RES2),
                                                          LP(l, L_NORM2_W), A(l, LA_RSTD2), R, C));
        /* attention: res2 = res + o(attn(rope(qkv(norm1(res))))) */
        const loom_tensor datty = dact;
        model_gather_rows(g, dall, dres, BT, C, "attention output gradient");
        OP(LOOM_PROF_MATMUL_B, op_gemm(be, 0, 0, BT, Q, C, 1.0f, dall, C, LP(l, L_O_W), Q, 0.0f, datty, Q));
        OP(LOOM_PROF_MATMUL_B,
           op_gemm(be, 1, 0, C, Q, BT, 1.0f, dall, C, A(l, LA_ATTY), Q, 1.0f, LG(l, L_O_W), Q));
        OP(LOOM_PROF_ATTENTION_B, op_attention_backward(be, dqkv, datty, A(l, LA_QKV), A(l, LA_ATTY), A(l, LA_LSE),
                                                        B, T, H, KVH, hs));
        OP(LOOM_PROF_ATTENTION_B, op_rope(be, dqkv, BT, T, LOOM_NO_TENSOR, H, hs, W, rcos, rsin, 1));
        OP(LOOM_PROF_ATTENTION_B,
           op_rope(be, loom_view_at(dqkv, Q), BT, T, LOOM_NO_TENSOR, KVH, hs, W, rcos, rsin, 1));
        OP(LOOM_PROF_MATMUL_B, op_gemm(be, 0, 0, BT, C, W, 1.0f, dqkv, W, LPS(l, L_Q_W, 3), C, 0.0f, dbuf, C));
        dn = model_row_sum(g, dbuf, BT, C, "attention input gradient");
        OP(LOOM_PROF_MATMUL_B,
           op_gemm(be, 1, 0, W, C, BT, 1.0f, dqkv, W, A(l, LA_XN1), C, 1.0f, LGS(l, L_Q_W, 3), C));
        OP(LOOM_PROF_LAYERNORM_B, op_rmsnorm_backward_acc(be, dres, LG(l, L_NORM1_W), dn, res_in,
                                                          LP(l, L_NORM1_W), A(l, LA_RSTD1), R, C));
        if (model_sp(g)) {
            model_tp_sum(g, LG(l, L_NORM1_W), (size_t)C, "norm gradients");
            model_tp_sum(g, LG(l, L_NORM2_W), (size_t)C, "norm gradients");
        }
        /* layer l and everything after it (later layers, the norm, an untied head) are final */
        if (pass->grad_ready) pass->grad_ready(pass->grad_ready_ctx, loom_gpt_layer_offset(g, l));
    }
    if (!model_first(g)) return; /* dres: the previous stage's gradient */
    model_gather_rows(g, dall, dres, BT, C, "embedding gradient");
    OP(LOOM_PROF_EMBED_B, op_encoder_backward_rows(be, G(0), LOOM_NO_TENSOR, dall, model_ids(g, inputs, BT), B, T, C,
                                                   g->vocab_lo, g->vocab_rows));
    if (pass->grad_ready) pass->grad_ready(pass->grad_ready_ctx, 0);
}
