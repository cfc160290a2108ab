/* Kernel tests for every backend in src/kernels/kernels.h.
 *
 *  - Each backward is checked against central finite differences of an independent
 *    double-precision forward written here: L = sum(dout * f(x)) (for cross-entropy,
 *    L = dscale * sum of the losses), perturbing every input and parameter element
 *    (a subset for the large attention case) by h = 1e-6 in double.
 *  - Each forward is checked against the same double forwards; gemm in all four
 *    transpose combinations with alpha, beta and padded leading dimensions.
 *  - Overwrite / accumulate conventions: overwritten gradients are pre-filled with NaN,
 *    accumulated ones with random values that are subtracted afterwards; a second call
 *    doubles accumulated gradients and leaves overwritten ones bit-identical; repeated
 *    calls are bitwise deterministic.
 *  - AdamW (3 steps) and sumsq against double references; cross-entropy with dscale=0
 *    leaves the logits untouched.
 *  - cpu vs ref on several shapes, including T > 64 attention and head size 64.
 *
 * Build with -DTEST_REF_ONLY to test the ref backend alone (no cpu backend linked).
 * Errors are |got - want| / max(floor, |want|, scale) with floor = 1 unless stated; for
 * sums that can cancel (GEMM, matmul, LayerNorm dw/db) scale is the sum of the terms'
 * magnitudes, for gelu dinp it is |dout|. Each line prints the largest error of its group.
 * Environment: TEST_OPS_VERBOSE=1 prints every check's max error; TEST_OPS_SEED=n draws
 * another data set (tolerances were checked over several seeds to have >= 3x margin). */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "loom/core.h"
#include "ops_harness.h"
#include "loom/safetensors.h"

#ifndef TEST_REF_ONLY
#include <omp.h>
#endif

/* ------------------------------------------------------------------------------------ */
/* Independent double-precision forwards.                                               */

static void enc_fwd_d(double *out, const int32_t *inp, const double *wte, const double *wpe,
                      int B, int T, int C) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                out[((size_t)b * T + t) * C + c] =
                    wte[(size_t)inp[b * T + t] * C + c] + wpe[(size_t)t * C + c];
}

static void ln_fwd_d(double *out, double *mean, double *rstd, const double *x, const double *w,
                     const double *bias, int N, int C) {
    for (int n = 0; n < N; n++) {
        const double *r = x + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += r[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (r[c] - m) * (r[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (r[c] - m) * s * w[c] + bias[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = s;
    }
}

static void mm_fwd_d(double *out, const double *inp, const double *w, const double *bias, int N,
                     int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0;
            for (int c = 0; c < C; c++) acc += inp[(size_t)n * C + c] * w[(size_t)c * OC + o];
            out[(size_t)n * OC + o] = acc;
        }
}

/* Causal grouped-query attention of query head h in batch b (rows of qkv: H query
 * heads, then KVH key and KVH value heads of hs; h uses key/value head h / (H/KVH)).
 * Writes out(B,T,H*hs) and lse(B,H,T) slices when given; returns sum(dout * out) over
 * the head when dout is given. */
static double attn_head_d(double *out, double *lse, const double *qkv, const double *dout,
                          int b, int h, int T, int H, int KVH, int hs) {
    const size_t W = (size_t)(H + 2 * KVH) * hs, C = (size_t)H * hs, kh = (size_t)(h / (H / KVH));
    double scale = 1.0 / sqrt((double)hs), L = 0;
    double *s = DALLOC(T), *o = DALLOC(hs);
    for (int t = 0; t < T; t++) {
        const double *q = qkv + ((size_t)b * T + t) * W + (size_t)h * hs;
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
            const double *k = qkv + ((size_t)b * T + j) * W + C + kh * hs;
            double d = 0;
            for (int i = 0; i < hs; i++) d += q[i] * k[i];
            s[j] = d * scale;
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = 0; j <= t; j++) sum += exp(s[j] - mx);
        for (int i = 0; i < hs; i++) o[i] = 0;
        for (int j = 0; j <= t; j++) {
            double p = exp(s[j] - mx) / sum;
            const double *v = qkv + ((size_t)b * T + j) * W + C + (size_t)KVH * hs + kh * hs;
            for (int i = 0; i < hs; i++) o[i] += p * v[i];
        }
        for (int i = 0; i < hs; i++) {
            size_t oi = ((size_t)b * T + t) * C + h * hs + i;
            if (out) out[oi] = o[i];
            if (dout) L += dout[oi] * o[i];
        }
        if (lse) lse[((size_t)b * H + h) * T + t] = mx + log(sum);
    }
    free(s);
    free(o);
    return L;
}

static double gelu_d(double x) {
    const double s = 0.7978845608028654; /* sqrt(2/pi) */
    return 0.5 * x * (1.0 + tanh(s * (x + 0.044715 * x * x * x)));
}

static double ce_row_d(const double *row, int V, int target) {
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++)
        if (row[v] > mx) mx = row[v];
    for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
    return mx + log(sum) - row[target];
}


/* ------------------------------------------------------------------------------------ */
/* Encoder.                                                                             */

typedef struct {
    int B, T, C;
    const int32_t *inp;
    double *wte, *wpe, *dout, *scratch;
} enc_ctx;

static double enc_loss(void *p) {
    enc_ctx *c = p;
    enc_fwd_d(c->scratch, c->inp, c->wte, c->wpe, c->B, c->T, c->C);
    return dot_d(c->scratch, c->dout, (size_t)c->B * c->T * c->C);
}

static void test_encoder(const loom_backend *be, int B, int T, int C, int V) {
    group_begin("encoder/%s: fwd vs double, bwd vs FD (B=%d T=%d C=%d V=%d)", be->name, B, T, C, V);
    size_t BTC = (size_t)B * T * C;
    int32_t *inp = xmalloc(sizeof(int32_t) * B * T);
    rand_tokens(inp, (size_t)B * T, V);
    inp[0] = inp[B * T - 1] = inp[(B * T) / 2] = 3; /* repeated token: scatter must add */
    float *wte = randn_new((size_t)V * C, 1, 0), *wpe = randn_new((size_t)T * C, 1, 0);
    float *dout = randn_new(BTC, 1, 0), *out = FALLOC(BTC);
    fill(out, BTC, NAN);
    be->f32->encoder_forward(out, inp, NULL, wte, wpe, B, T, C, 0, V);
    enc_ctx c = {B, T, C, inp, f2d(wte, (size_t)V * C), f2d(wpe, (size_t)T * C), f2d(dout, BTC),
                 DALLOC(BTC)};
    double *want = DALLOC(BTC);
    enc_fwd_d(want, inp, c.wte, c.wpe, B, T, C);
    check_fd("out", out, want, BTC, TOL_FWD, 1);

    float *g0te = randn_new((size_t)V * C, 1, 0), *g0pe = randn_new((size_t)T * C, 1, 0);
    float *dwte = fcopy(g0te, (size_t)V * C), *dwpe = fcopy(g0pe, (size_t)T * C);
    be->f32->encoder_backward(dwte, dwpe, dout, inp, B, T, C, 0, V);
    double *fdte = DALLOC((size_t)V * C), *fdpe = DALLOC((size_t)T * C);
    fd_grad(enc_loss, &c, c.wte, (size_t)V * C, fdte);
    fd_grad(enc_loss, &c, c.wpe, (size_t)T * C, fdpe);
    check_added("dwte", dwte, g0te, fdte, (size_t)V * C, TOL_FD);
    check_added("dwpe", dwpe, g0pe, fdpe, (size_t)T * C, TOL_FD);
    group_end();
    free(inp), free(wte), free(wpe), free(dout), free(out), free(c.wte), free(c.wpe);
    free(c.dout), free(c.scratch), free(want), free(g0te), free(g0pe), free(dwte), free(dwpe);
    free(fdte), free(fdpe);
}

/* ------------------------------------------------------------------------------------ */
/* LayerNorm.                                                                           */

typedef struct {
    int N, C;
    double *x, *w, *b, *dout, *scratch;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    ln_fwd_d(c->scratch, NULL, NULL, c->x, c->w, c->b, c->N, c->C);
    return dot_d(c->scratch, c->dout, (size_t)c->N * c->C);
}

/* Rows of mixed statistics: unit normal, offset 3 with std 0.5, offset -20 with std 4. */
static void ln_inputs(float *x, int N, int C) {
    randn(x, (size_t)N * C, 1, 0);
    for (int n = 1; n < N; n += 3)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] = 3 + 0.5f * x[(size_t)n * C + c];
    for (int n = 2; n < N; n += 3)
        for (int c = 0; c < C; c++) x[(size_t)n * C + c] = -20 + 4 * x[(size_t)n * C + c];
}

static void test_layernorm(const loom_backend *be, int N, int C) {
    group_begin("layernorm/%s: fwd vs double, bwd vs FD (N=%d C=%d)", be->name, N, C);
    size_t NC = (size_t)N * C;
    float *x = FALLOC(NC);
    ln_inputs(x, N, C);
    float *w = randn_new(C, 0.3f, 1), *b = randn_new(C, 0.3f, 0), *dout = randn_new(NC, 1, 0);
    float *out = FALLOC(NC), *mean = FALLOC(N), *rstd = FALLOC(N);
    be->f32->layernorm_forward(out, mean, rstd, x, w, b, N, C);
    ln_ctx c = {N, C, f2d(x, NC), f2d(w, C), f2d(b, C), f2d(dout, NC), DALLOC(NC)};
    double *want = DALLOC(NC), *wm = DALLOC(N), *wr = DALLOC(N);
    ln_fwd_d(want, wm, wr, c.x, c.w, c.b, N, C);
    check_fd("out", out, want, NC, TOL_FWD, 1);
    check_fd("mean", mean, wm, N, TOL_FWD, 1);
    check_fd("rstd", rstd, wr, N, TOL_FWD, 1);

    float *g0x = randn_new(NC, 1, 0), *g0w = randn_new(C, 1, 0), *g0b = randn_new(C, 1, 0);
    float *dx = fcopy(g0x, NC), *dw = fcopy(g0w, C), *db = fcopy(g0b, C);
    be->f32->layernorm_backward_acc(dx, dw, db, dout, x, w, mean, rstd, N, C);
    double *fx = DALLOC(NC), *fw = DALLOC(C), *fb = DALLOC(C);
    fd_grad(ln_loss, &c, c.x, NC, fx);
    fd_grad(ln_loss, &c, c.w, C, fw);
    fd_grad(ln_loss, &c, c.b, C, fb);
    check_added("dinp (acc)", dx, g0x, fx, NC, TOL_FD);
    check_added("dw", dw, g0w, fw, C, TOL_FD);
    check_added("db", db, g0b, fb, C, TOL_FD);
    group_end();
    free(x), free(w), free(b), free(dout), free(out), free(mean), free(rstd), free(c.x);
    free(c.w), free(c.b), free(c.dout), free(c.scratch), free(want), free(wm), free(wr);
    free(g0x), free(g0w), free(g0b), free(dx), free(dw), free(db), free(fx), free(fw), free(fb);
}

/* ------------------------------------------------------------------------------------ */
/* Matmul.                                                                              */

typedef struct {
    int N, C, OC;
    double *x, *w, *bias, *dout, *scratch;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    mm_fwd_d(c->scratch, c->x, c->w, c->bias, c->N, c->C, c->OC);
    return dot_d(c->scratch, c->dout, (size_t)c->N * c->OC);
}

/* with_bias = 0 also passes dinp = NULL and dbias = NULL to the backward. */
static void test_matmul(const loom_backend *be, int N, int C, int OC, int with_bias) {
    group_begin("matmul/%s: fwd vs double, bwd vs FD (N=%d C=%d OC=%d%s)", be->name, N, C, OC,
                with_bias ? "" : ", no bias/dinp");
    size_t NC = (size_t)N * C, CO = (size_t)C * OC, NO = (size_t)N * OC;
    float *x = randn_new(NC, 1, 0), *w = randn_new(CO, 0.5f, 0);
    float *bias = with_bias ? randn_new(OC, 1, 0) : NULL, *dout = randn_new(NO, 1, 0);
    float *out = FALLOC(NO);
    fill(out, NO, NAN);
    be->f32->matmul_forward(out, x, w, bias, N, C, OC);
    mm_ctx c = {N, C, OC, f2d(x, NC), f2d(w, CO), bias ? f2d(bias, OC) : NULL, f2d(dout, NO),
                DALLOC(NO)};
    double *want = DALLOC(NO);
    mm_fwd_d(want, c.x, c.w, c.bias, N, C, OC);
    check_fd("out", out, want, NO, TOL_FWD, 1);

    float *dx = NULL, *g0w = randn_new(CO, 1, 0), *g0b = NULL, *db = NULL;
    float *dw = fcopy(g0w, CO);
    if (with_bias) {
        dx = FALLOC(NC);
        fill(dx, NC, NAN); /* overwritten, never read */
        g0b = randn_new(OC, 1, 0);
        db = fcopy(g0b, OC);
    }
    be->f32->matmul_backward(dx, dw, db, dout, x, w, N, C, OC);
    double *fx = DALLOC(NC), *fw = DALLOC(CO), *fb = DALLOC(OC);
    fd_grad(mm_loss, &c, c.w, CO, fw);
    check_added("dw", dw, g0w, fw, CO, TOL_FD);
    if (with_bias) {
        fd_grad(mm_loss, &c, c.x, NC, fx);
        fd_grad(mm_loss, &c, c.bias, OC, fb);
        check_fd("dinp (overwrite)", dx, fx, NC, TOL_FD, 1);
        check_added("dbias", db, g0b, fb, OC, TOL_FD);
    }
    group_end();
    free(x), free(w), free(bias), free(dout), free(out), free(c.x), free(c.w), free(c.bias);
    free(c.dout), free(c.scratch), free(want), free(dx), free(g0w), free(g0b), free(db), free(dw);
    free(fx), free(fw), free(fb);
}

/* ------------------------------------------------------------------------------------ */
/* Attention.                                                                           */

/* The part of L that an element of qkv in column col moves: its query head's, or for a
 * key or value element every query head of its group. */
static double attn_part_d(const double *qkv, const double *dout, int b, size_t col, int T, int H, int KVH, int hs) {
    const int G = H / KVH;
    int h0, h1;
    if (col < (size_t)H * hs) h0 = (int)(col / (size_t)hs), h1 = h0 + 1;
    else {
        int kh = (int)(((col - (size_t)H * hs) / (size_t)hs) % (size_t)KVH);
        h0 = kh * G, h1 = h0 + G;
    }
    double L = 0;
    for (int h = h0; h < h1; h++) L += attn_head_d(NULL, NULL, qkv, dout, b, h, T, H, KVH, hs);
    return L;
}

/* FD over qkv: an element only moves the outputs of the query heads that read it, so
 * only their part of L is re-evaluated. stride > 1 checks every stride-th element plus
 * whole rows around block edges (t = 0, 1, 31, 32, 63, 64, 65, T-1). */
static void test_attention(const loom_backend *be, int B, int T, int H, int KVH, int hs, int stride) {
    group_begin("attention/%s: fwd vs double, bwd vs FD (B=%d T=%d H=%d KVH=%d hs=%d%s)", be->name, B, T, H, KVH,
                hs, stride > 1 ? ", FD subset" : "");
    const int C = H * hs, W = (H + 2 * KVH) * hs;
    size_t n3 = (size_t)B * T * W, nC = (size_t)B * T * C, nL = (size_t)B * H * T;
    float *qkv = randn_new(n3, 1, 0), *dout = randn_new(nC, 1, 0);
    float *out = FALLOC(nC), *lse = FALLOC(nL);
    fill(out, nC, NAN);
    fill(lse, nL, NAN);
    be->f32->attention_forward(out, lse, qkv, B, T, H, KVH, hs);
    double *qd = f2d(qkv, n3), *dd = f2d(dout, nC), *wo = DALLOC(nC), *wl = DALLOC(nL);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) attn_head_d(wo, wl, qd, NULL, b, h, T, H, KVH, hs);
    check_fd("out", out, wo, nC, TOL_FWD, 1);
    check_fd("lse", lse, wl, nL, TOL_FWD, 1);

    float *dqkv = FALLOC(n3);
    fill(dqkv, n3, NAN); /* overwritten, never read */
    be->f32->attention_backward(dqkv, dout, qkv, out, lse, B, T, H, KVH, hs);
    size_t cnt = 0;
    double *got = DALLOC(n3), *want = DALLOC(n3);
    for (size_t idx = 0; idx < n3; idx++) {
        int t = (int)((idx / (size_t)W) % (size_t)T);
        int edge = t == 0 || t == 1 || t == 31 || t == 32 || t == 63 || t == 64 || t == 65 ||
                   t == T - 1;
        if (stride > 1 && idx % (size_t)stride != 0 && !edge) continue;
        int b = (int)(idx / ((size_t)T * W));
        size_t col = idx % (size_t)W;
        double x0 = qd[idx], xp = x0 + FD_H, xm = x0 - FD_H;
        qd[idx] = xp;
        double lp = attn_part_d(qd, dd, b, col, T, H, KVH, hs);
        qd[idx] = xm;
        double lm = attn_part_d(qd, dd, b, col, T, H, KVH, hs);
        qd[idx] = x0;
        want[cnt] = (lp - lm) / (xp - xm);
        got[cnt] = dqkv[idx];
        cnt++;
    }
    char what[64];
    snprintf(what, sizeof what, "dqkv (overwrite, %zu of %zu elements)", cnt, n3);
    check_dd(what, got, want, cnt, TOL_FD, 1);
    size_t nonfinite = 0;
    for (size_t i = 0; i < n3; i++) nonfinite += !isfinite(dqkv[i]);
    check_true(nonfinite == 0, "dqkv: %zu non-finite elements (NaN pre-fill was read?)", nonfinite);
    group_end();
    free(qkv), free(dout), free(out), free(lse), free(qd), free(dd), free(wo), free(wl);
    free(dqkv), free(got), free(want);
}

/* ------------------------------------------------------------------------------------ */
/* GELU.                                                                                */

static void gelu_inputs(float *x, size_t n) {
    randn(x, n, 3, 0);
    static const float special[] = {0.0f, 1e-3f, -1e-3f, 1.0f, -1.0f, 5.0f, -5.0f, 10.0f, -10.0f,
                                    30.0f, -30.0f};
    for (size_t i = 0; i < sizeof special / sizeof *special && i < n; i++) x[i] = special[i];
}

static void test_gelu(const loom_backend *be, size_t n) {
    group_begin("gelu/%s: fwd vs double, bwd vs FD (n=%zu)", be->name, n);
    float *x = FALLOC(n), *dout = randn_new(n, 1, 0), *out = FALLOC(n), *dx = FALLOC(n);
    gelu_inputs(x, n);
    fill(out, n, NAN);
    be->f32->gelu_forward(out, x, n);
    double *want = DALLOC(n), *fd = DALLOC(n);
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i], xp = x0 + FD_H, xm = x0 - FD_H;
        want[i] = gelu_d(x0);
        /* L = sum dout * gelu(x) is separable: dL/dx_i = dout_i * gelu'(x_i). */
        fd[i] = dout[i] * (gelu_d(xp) - gelu_d(xm)) / (xp - xm);
    }
    check_fd("out", out, want, n, TOL_FWD, 1);
    fill(dx, n, NAN);
    be->f32->gelu_backward(dx, x, dout, n);
    check_fd("dinp (overwrite)", dx, fd, n, TOL_FD, 1);
    group_end();
    free(x), free(dout), free(out), free(dx), free(want), free(fd);
}

/* ------------------------------------------------------------------------------------ */
/* Cross-entropy.                                                                       */

typedef struct {
    int N, V;
    const int32_t *tg;
    double *logits, dscale;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    double L = 0;
    for (int n = 0; n < c->N; n++) L += ce_row_d(c->logits + (size_t)n * c->V, c->V, c->tg[n]);
    return c->dscale * L;
}

/* Rows: N(0, 2); +100 (overflows expf without max-subtraction); -100; x30 (peaked). */
static void ce_inputs(float *lg, int N, int V) {
    randn(lg, (size_t)N * V, 2, 0);
    for (int v = 0; v < V; v++) {
        if (N > 1) lg[(size_t)1 * V + v] += 100;
        if (N > 2) lg[(size_t)2 * V + v] -= 100;
        if (N > 3) lg[(size_t)3 * V + v] *= 30;
    }
}

static void test_crossentropy(const loom_backend *be, int N, int V) {
    group_begin("crossentropy/%s: losses vs double, grad vs FD, dscale=0 (N=%d V=%d)", be->name,
                N, V);
    size_t NV = (size_t)N * V;
    float *lg = FALLOC(NV), *losses = FALLOC(N);
    int32_t *tg = xmalloc(sizeof(int32_t) * N);
    ce_inputs(lg, N, V);
    rand_tokens(tg, N, V);
    float dscale = 1.0f / (float)N * 0.75f;
    ce_ctx c = {N, V, tg, f2d(lg, NV), dscale};
    double *wl = DALLOC(N), *fd = DALLOC(NV);
    for (int n = 0; n < N; n++) wl[n] = ce_row_d(c.logits + (size_t)n * V, V, tg[n]);

    /* dscale = 0: losses only, logits untouched. */
    float *lg0 = fcopy(lg, NV);
    fill(losses, N, NAN);
    be->f32->crossentropy(losses, lg0, tg, N, V, 0.0f);
    check_fd("losses (dscale=0)", losses, wl, N, TOL_FWD, 1);
    check_true(memcmp(lg0, lg, sizeof(float) * NV) == 0, "dscale=0 modified the logits");

    float *lg1 = fcopy(lg, NV);
    fill(losses, N, NAN);
    be->f32->crossentropy(losses, lg1, tg, N, V, dscale);
    check_fd("losses", losses, wl, N, TOL_FWD, 1);
    fd_grad(ce_loss, &c, c.logits, NV, fd);
    check_fd("dlogits (in place)", lg1, fd, NV, TOL_FD, dscale); /* |dlogits| <= dscale */
    group_end();
    free(lg), free(losses), free(tg), free(c.logits), free(wl), free(fd), free(lg0), free(lg1);
}

/* ------------------------------------------------------------------------------------ */
/* GEMM and residual.                                                                   */

static void test_gemm(const loom_backend *be, int M, int N, int K) {
    group_begin("gemm/%s: 4 transposes x 3 (alpha,beta), padded ld (M=%d N=%d K=%d)",
                be->name, M, N, K);
    static const float ab[3][2] = {{0.7f, 0.3f}, {1.0f, 0.0f}, {-1.5f, 1.0f}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int k = 0; k < 3; k++) {
                float alpha = ab[k][0], beta = ab[k][1];
                int arows = ta ? K : M, acols = ta ? M : K, lda = acols + 3;
                int brows = tb ? N : K, bcols = tb ? K : N, ldb = bcols + 2;
                int ldc = N + 5;
                float *A = randn_new((size_t)arows * lda, 1, 0);
                float *Bm = randn_new((size_t)brows * ldb, 1, 0);
                float *C = randn_new((size_t)M * ldc, 1, 0);
                if (beta == 0) /* BLAS convention: C is not read, so it may hold NaN */
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = NAN;
                float *C0 = fcopy(C, (size_t)M * ldc);
                be->f32->gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C, ldc);
                double *want = DALLOC((size_t)M * N), *got = DALLOC((size_t)M * N);
                double *scale = DALLOC((size_t)M * N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double acc = 0, mag = 0;
                        for (int p = 0; p < K; p++) {
                            double a = ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                            double bv = tb ? Bm[(size_t)j * ldb + p] : Bm[(size_t)p * ldb + j];
                            acc += a * bv;
                            mag += fabs(a * bv);
                        }
                        double prev = beta == 0 ? 0 : (double)beta * C0[(size_t)i * ldc + j];
                        want[(size_t)i * N + j] = alpha * acc + prev;
                        scale[(size_t)i * N + j] = fabs(alpha) * mag + fabs(prev);
                        got[(size_t)i * N + j] = C[(size_t)i * ldc + j];
                    }
                char what[96];
                snprintf(what, sizeof what, "C (ta=%d tb=%d alpha=%g beta=%g)", ta, tb, alpha, beta);
                check_dds(what, got, want, scale, (size_t)M * N, TOL_FWD, 1);
                int pad_ok = 1;
                for (int i = 0; i < M; i++)
                    for (int j = N; j < ldc; j++)
                        if (memcmp(&C[(size_t)i * ldc + j], &C0[(size_t)i * ldc + j], sizeof(float)))
                            pad_ok = 0;
                check_true(pad_ok, "%s: wrote into the ldc padding", what);
                free(A), free(Bm), free(C), free(C0), free(want), free(got), free(scale);
            }
    group_end();
}

static void test_residual(const loom_backend *be, size_t n) {
    group_begin("residual/%s: out == a + b exactly (n=%zu)", be->name, n);
    float *a = randn_new(n, 1, 0), *b = randn_new(n, 1, 0), *out = FALLOC(n), *want = FALLOC(n);
    for (size_t i = 0; i < n; i++) want[i] = a[i] + b[i];
    be->f32->residual_forward(out, a, b, n);
    check_bitwise("out", out, want, n);
    group_end();
    free(a), free(b), free(out), free(want);
}

/* ------------------------------------------------------------------------------------ */
/* AdamW and sumsq.                                                                     */

static void test_adamw(const loom_backend *be, size_t n) {
    group_begin("adamw/%s: 3 steps vs double reference (n=%zu)", be->name, n);
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gscale = 0.7f;
    float *p = randn_new(n, 1, 0), *m = FALLOC(n), *v = FALLOC(n);
    fill(m, n, 0);
    fill(v, n, 0);
    p[0] = 0; /* a zero parameter */
    double *pd = f2d(p, n), *md = DALLOC(n), *vd = DALLOC(n);
    for (size_t i = 0; i < n; i++) md[i] = vd[i] = 0;
    for (int step = 1; step <= 3; step++) {
        float *g = randn_new(n, 1, 0);
        if (n > 1) g[1] = 0; /* a zero gradient */
        float bc1 = (float)(1.0 - pow(b1, step)), bc2 = (float)(1.0 - pow(b2, step));
        be->f32->adamw(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gscale);
        for (size_t i = 0; i < n; i++) {
            double gr = (double)g[i] * gscale;
            pd[i] -= (double)lr * wd * pd[i];
            md[i] = (double)b1 * md[i] + (1.0 - b1) * gr;
            vd[i] = (double)b2 * vd[i] + (1.0 - b2) * gr * gr;
            pd[i] -= (double)lr * (md[i] / bc1) / (sqrt(vd[i] / bc2) + eps);
        }
        free(g);
    }
    /* The three updates move p by ~3e-2, so 2e-6 resolves them to ~1e-4. */
    check_fd("p", p, pd, n, 2e-6, 1);
    check_fd("m", m, md, n, 1e-5, 0.1); /* |m| ~ 0.1; cancellation near 0 */
    check_fd("v", v, vd, n, 1e-5, 1e-6);
    group_end();
    free(p), free(m), free(v), free(pd), free(md), free(vd);
}

static void test_sumsq(const loom_backend *be) {
    group_begin("sumsq/%s: vs double (n = 0, 1, 7, 100003)", be->name);
    static const size_t ns[] = {0, 1, 7, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
        size_t n = ns[k];
        float *x = randn_new(n, 1, 0);
        double want = 0;
        for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
        double got = be->f32->sumsq(x, n);
        char what[32];
        snprintf(what, sizeof what, "sumsq(n=%zu)", n);
        check_dd(what, &got, &want, 1, 1e-12, 1e-30);
#ifndef TEST_REF_ONLY
        /* Independent of the thread count, bit for bit. */
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        double g1 = be->f32->sumsq(x, n);
        omp_set_num_threads(3);
        double g3 = be->f32->sumsq(x, n);
        omp_set_num_threads(saved);
        check_true(memcmp(&g1, &got, sizeof got) == 0 && memcmp(&g3, &got, sizeof got) == 0,
                   "%s depends on the thread count: %.17g (1) %.17g (3) %.17g (%d)", what, g1,
                   g3, got, saved);
#endif
        free(x);
    }
    group_end();
}

/* ------------------------------------------------------------------------------------ */
/* Accumulate/overwrite semantics and determinism: for every backward, two fresh calls   */
/* from zeroed gradients are bit-identical; a second call into the same buffers doubles  */
/* accumulated gradients and leaves overwritten ones bit-identical.                       */

static float *zeros(size_t n) {
    float *x = FALLOC(n);
    fill(x, n, 0);
    return x;
}

static void check_doubled(const char *what, const float *twice, const float *once, size_t n) {
    double *w = DALLOC(n);
    for (size_t i = 0; i < n; i++) w[i] = 2.0 * once[i];
    check_fd(what, twice, w, n, 1e-5, 1);
    free(w);
}

static void test_semantics(const loom_backend *be) {
    group_begin("semantics/%s: determinism, 2nd call doubles param grads, overwrite", be->name);
    /* encoder */
    {
        int B = 2, T = 5, C = 12, V = 17;
        size_t BTC = (size_t)B * T * C;
        int32_t *inp = xmalloc(sizeof(int32_t) * B * T);
        rand_tokens(inp, (size_t)B * T, V);
        inp[1] = inp[4] = 7;
        float *dout = randn_new(BTC, 1, 0);
        float *a_te = zeros((size_t)V * C), *a_pe = zeros((size_t)T * C);
        float *b_te = zeros((size_t)V * C), *b_pe = zeros((size_t)T * C);
        be->f32->encoder_backward(a_te, a_pe, dout, inp, B, T, C, 0, V);
        be->f32->encoder_backward(b_te, b_pe, dout, inp, B, T, C, 0, V);
        check_bitwise("encoder dwte repeat", a_te, b_te, (size_t)V * C);
        check_bitwise("encoder dwpe repeat", a_pe, b_pe, (size_t)T * C);
        be->f32->encoder_backward(b_te, b_pe, dout, inp, B, T, C, 0, V);
        check_doubled("encoder dwte x2", b_te, a_te, (size_t)V * C);
        check_doubled("encoder dwpe x2", b_pe, a_pe, (size_t)T * C);
        free(inp), free(dout), free(a_te), free(a_pe), free(b_te), free(b_pe);
    }
    /* layernorm */
    {
        int N = 7, C = 12;
        size_t NC = (size_t)N * C;
        float *x = FALLOC(NC);
        ln_inputs(x, N, C);
        float *w = randn_new(C, 0.3f, 1), *b = randn_new(C, 0.3f, 0), *dout = randn_new(NC, 1, 0);
        float *out = FALLOC(NC), *mean = FALLOC(N), *rstd = FALLOC(N);
        be->f32->layernorm_forward(out, mean, rstd, x, w, b, N, C);
        float *ax = zeros(NC), *aw = zeros(C), *ab = zeros(C);
        float *bx = zeros(NC), *bw = zeros(C), *bb = zeros(C);
        be->f32->layernorm_backward_acc(ax, aw, ab, dout, x, w, mean, rstd, N, C);
        be->f32->layernorm_backward_acc(bx, bw, bb, dout, x, w, mean, rstd, N, C);
        check_bitwise("layernorm dinp repeat", ax, bx, NC);
        check_bitwise("layernorm dw repeat", aw, bw, C);
        check_bitwise("layernorm db repeat", ab, bb, C);
        be->f32->layernorm_backward_acc(bx, bw, bb, dout, x, w, mean, rstd, N, C);
        check_doubled("layernorm dinp x2 (acc)", bx, ax, NC);
        check_doubled("layernorm dw x2", bw, aw, C);
        check_doubled("layernorm db x2", bb, ab, C);
        free(x), free(w), free(b), free(dout), free(out), free(mean), free(rstd);
        free(ax), free(aw), free(ab), free(bx), free(bw), free(bb);
    }
    /* matmul, with and without the optional outputs */
    for (int opt = 0; opt < 2; opt++) {
        int N = 7, C = 12, OC = 9;
        float *x = randn_new((size_t)N * C, 1, 0), *w = randn_new((size_t)C * OC, 1, 0);
        float *dout = randn_new((size_t)N * OC, 1, 0);
        float *ax = opt ? zeros((size_t)N * C) : NULL, *bx = opt ? zeros((size_t)N * C) : NULL;
        float *aw = zeros((size_t)C * OC), *bw = zeros((size_t)C * OC);
        float *ab = opt ? zeros(OC) : NULL, *bb = opt ? zeros(OC) : NULL;
        be->f32->matmul_backward(ax, aw, ab, dout, x, w, N, C, OC);
        be->f32->matmul_backward(bx, bw, bb, dout, x, w, N, C, OC);
        check_bitwise("matmul dw repeat", aw, bw, (size_t)C * OC);
        if (opt) {
            check_bitwise("matmul dinp repeat", ax, bx, (size_t)N * C);
            check_bitwise("matmul dbias repeat", ab, bb, OC);
        }
        be->f32->matmul_backward(bx, bw, bb, dout, x, w, N, C, OC);
        check_doubled(opt ? "matmul dw x2" : "matmul dw x2 (no dinp/dbias)", bw, aw, (size_t)C * OC);
        if (opt) {
            check_bitwise("matmul dinp overwritten on 2nd call", bx, ax, (size_t)N * C);
            check_doubled("matmul dbias x2", bb, ab, OC);
        }
        free(x), free(w), free(dout), free(ax), free(bx), free(aw), free(bw), free(ab), free(bb);
    }
    /* attention */
    {
        int B = 2, T = 70, C = 16, H = 2;
        size_t n3 = (size_t)B * T * 3 * C, nC = (size_t)B * T * C;
        float *qkv = randn_new(n3, 1, 0), *dout = randn_new(nC, 1, 0);
        float *out = FALLOC(nC), *lse = FALLOC((size_t)B * H * T);
        float *out2 = FALLOC(nC), *lse2 = FALLOC((size_t)B * H * T);
        be->f32->attention_forward(out, lse, qkv, B, T, H, H, C / H);
        be->f32->attention_forward(out2, lse2, qkv, B, T, H, H, C / H);
        check_bitwise("attention out repeat", out, out2, nC);
        check_bitwise("attention lse repeat", lse, lse2, (size_t)B * H * T);
        float *a = zeros(n3), *b = zeros(n3);
        be->f32->attention_backward(a, dout, qkv, out, lse, B, T, H, H, C / H);
        be->f32->attention_backward(b, dout, qkv, out, lse, B, T, H, H, C / H);
        check_bitwise("attention dqkv repeat", a, b, n3);
        be->f32->attention_backward(b, dout, qkv, out, lse, B, T, H, H, C / H);
        check_bitwise("attention dqkv overwritten on 2nd call", b, a, n3);
        free(qkv), free(dout), free(out), free(lse), free(out2), free(lse2), free(a), free(b);
    }
    /* gelu */
    {
        size_t n = 1037;
        float *x = FALLOC(n), *dout = randn_new(n, 1, 0), *a = zeros(n), *b = zeros(n);
        gelu_inputs(x, n);
        be->f32->gelu_backward(a, x, dout, n);
        be->f32->gelu_backward(b, x, dout, n);
        check_bitwise("gelu dinp repeat", a, b, n);
        be->f32->gelu_backward(b, x, dout, n);
        check_bitwise("gelu dinp overwritten on 2nd call", b, a, n);
        free(x), free(dout), free(a), free(b);
    }
    group_end();
}

/* ------------------------------------------------------------------------------------ */
/* cpu vs ref.                                                                          */

#ifndef TEST_REF_ONLY
/* Both backends on the same operands; errors against sum_k |alpha a_ik b_kj| + |beta c|. */
static void xb_gemm(const loom_backend *r, const loom_backend *c, int M, int N, int K) {
    group_begin("gemm: cpu vs ref, 4 transposes x 2 (alpha,beta), padded ld (M=%d N=%d K=%d)", M,
                N, K);
    static const float ab[2][2] = {{0.7f, 0.3f}, {-1.5f, 0.0f}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int k = 0; k < 2; k++) {
                float alpha = ab[k][0], beta = ab[k][1];
                int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 4, ldc = N + 3;
                size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
                size_t nc = (size_t)M * ldc;
                float *A = randn_new(na, 1, 0), *Bm = randn_new(nb, 1, 0), *C1 = randn_new(nc, 1, 0);
                float *C2 = fcopy(C1, nc), *S = FALLOC(nc);
                float *aA = FALLOC(na), *aB = FALLOC(nb);
                for (size_t i = 0; i < na; i++) aA[i] = fabsf(A[i]);
                for (size_t i = 0; i < nb; i++) aB[i] = fabsf(Bm[i]);
                for (size_t i = 0; i < nc; i++) S[i] = fabsf(beta * C1[i]);
                r->f32->gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C1, ldc);
                c->f32->gemm(ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C2, ldc);
                r->f32->gemm(ta, tb, M, N, K, fabsf(alpha), aA, lda, aB, ldb, 1.0f, S, ldc);
                char what[96];
                snprintf(what, sizeof what, "C (ta=%d tb=%d alpha=%g beta=%g)", ta, tb, alpha,
                         beta);
                check_ffs(what, C2, C1, S, nc, TOL_XB, 1); /* padding included: untouched */
                free(A), free(Bm), free(C1), free(C2), free(S), free(aA), free(aB);
            }
    group_end();
}

static void xb_encoder(const loom_backend *r, const loom_backend *c, int B, int T, int C, int V) {
    group_begin("encoder: cpu vs ref fwd+bwd (B=%d T=%d C=%d V=%d)", B, T, C, V);
    size_t BTC = (size_t)B * T * C;
    int32_t *inp = xmalloc(sizeof(int32_t) * B * T);
    rand_tokens(inp, (size_t)B * T, V);
    inp[0] = inp[B * T - 1] = 1;
    float *wte = randn_new((size_t)V * C, 1, 0), *wpe = randn_new((size_t)T * C, 1, 0);
    float *dout = randn_new(BTC, 1, 0), *o1 = FALLOC(BTC), *o2 = FALLOC(BTC);
    r->f32->encoder_forward(o1, inp, NULL, wte, wpe, B, T, C, 0, V);
    c->f32->encoder_forward(o2, inp, NULL, wte, wpe, B, T, C, 0, V);
    check_ff("out", o2, o1, BTC, TOL_XB, 1);
    float *g1 = randn_new((size_t)V * C, 1, 0), *g2 = fcopy(g1, (size_t)V * C);
    float *p1 = randn_new((size_t)T * C, 1, 0), *p2 = fcopy(p1, (size_t)T * C);
    r->f32->encoder_backward(g1, p1, dout, inp, B, T, C, 0, V);
    c->f32->encoder_backward(g2, p2, dout, inp, B, T, C, 0, V);
    check_ff("dwte", g2, g1, (size_t)V * C, TOL_XB, 1);
    check_ff("dwpe", p2, p1, (size_t)T * C, TOL_XB, 1);
    group_end();
    free(inp), free(wte), free(wpe), free(dout), free(o1), free(o2), free(g1), free(g2);
    free(p1), free(p2);
}

static float *fabs_new(const float *x, size_t n) {
    float *y = FALLOC(n);
    for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return y;
}

/* offset = 0: unit-normal rows, tolerance TOL_XB. offset = 1: ln_inputs' rows with
 * |mean|/std up to 5, where a float32 mean over C terms is off by ~eps sqrt(C) |mean|,
 * i.e. ~1e-5 of std at C = 771, so the tolerance is TOL_XB * 10. */
static void xb_layernorm(const loom_backend *r, const loom_backend *c, int N, int C, int offset) {
    double tol = offset ? TOL_XB * 10 : TOL_XB;
    group_begin("layernorm: cpu vs ref fwd+bwd (N=%d C=%d, %s)", N, C,
                offset ? "rows with |mean|/std <= 5" : "unit normal rows");
    size_t NC = (size_t)N * C;
    float *x = FALLOC(NC);
    if (offset)
        ln_inputs(x, N, C);
    else
        randn(x, NC, 1, 0);
    float *w = randn_new(C, 0.3f, 1), *b = randn_new(C, 0.3f, 0), *dout = randn_new(NC, 1, 0);
    float *o1 = FALLOC(NC), *m1 = FALLOC(N), *s1 = FALLOC(N);
    float *o2 = FALLOC(NC), *m2 = FALLOC(N), *s2 = FALLOC(N);
    r->f32->layernorm_forward(o1, m1, s1, x, w, b, N, C);
    c->f32->layernorm_forward(o2, m2, s2, x, w, b, N, C);
    check_ff("out", o2, o1, NC, tol, 1);
    check_ff("mean", m2, m1, N, tol, 1);
    check_ff("rstd", s2, s1, N, tol, 1);
    float *dx1 = randn_new(NC, 1, 0), *dw1 = randn_new(C, 1, 0), *db1 = randn_new(C, 1, 0);
    float *dx2 = fcopy(dx1, NC), *dw2 = fcopy(dw1, C), *db2 = fcopy(db1, C);
    /* dw, db are sums over N rows: measure against the sums of the terms' magnitudes. */
    float *sw = fabs_new(dw1, C), *sb = fabs_new(db1, C);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < C; k++) {
            float d = fabsf(dout[(size_t)n * C + k]);
            sw[k] += d * fabsf((x[(size_t)n * C + k] - m1[n]) * s1[n]);
            sb[k] += d;
        }
    r->f32->layernorm_backward_acc(dx1, dw1, db1, dout, x, w, m1, s1, N, C);
    c->f32->layernorm_backward_acc(dx2, dw2, db2, dout, x, w, m2, s2, N, C);
    check_ff("dinp", dx2, dx1, NC, tol, 1);
    check_ffs("dw", dw2, dw1, sw, C, tol, 1);
    check_ffs("db", db2, db1, sb, C, tol, 1);
    free(sw), free(sb);
    group_end();
    free(x), free(w), free(b), free(dout), free(o1), free(m1), free(s1), free(o2), free(m2);
    free(s2), free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2);
}

/* Errors are measured against the magnitude of the summed terms (the same op run by ref
 * on absolute values): float GEMMs over K = 384 legitimately differ by ~sqrt(K) eps
 * relative to that, which can be far more than eps relative to a cancelled result. */
static void xb_matmul(const loom_backend *r, const loom_backend *c, int N, int C, int OC) {
    group_begin("matmul: cpu vs ref fwd+bwd, with/without bias (N=%d C=%d OC=%d)", N, C, OC);
    size_t NC = (size_t)N * C, CO = (size_t)C * OC, NO = (size_t)N * OC;
    float *x = randn_new(NC, 1, 0), *w = randn_new(CO, 0.5f, 0), *bias = randn_new(OC, 1, 0);
    float *dout = randn_new(NO, 1, 0), *o1 = FALLOC(NO), *o2 = FALLOC(NO);
    float *ax = fabs_new(x, NC), *aw = fabs_new(w, CO), *ab = fabs_new(bias, OC);
    float *ad = fabs_new(dout, NO), *so = FALLOC(NO);
    for (int wb = 0; wb < 2; wb++) {
        r->f32->matmul_forward(o1, x, w, wb ? bias : NULL, N, C, OC);
        c->f32->matmul_forward(o2, x, w, wb ? bias : NULL, N, C, OC);
        r->f32->matmul_forward(so, ax, aw, wb ? ab : NULL, N, C, OC);
        check_ffs(wb ? "out" : "out (no bias)", o2, o1, so, NO, TOL_XB, 1);
    }
    float *dx1 = FALLOC(NC), *dx2 = FALLOC(NC), *dw1 = randn_new(CO, 1, 0), *dw2 = fcopy(dw1, CO);
    float *db1 = randn_new(OC, 1, 0), *db2 = fcopy(db1, OC);
    float *sx = FALLOC(NC), *sw = fabs_new(dw1, CO), *sb = fabs_new(db1, OC);
    r->f32->matmul_backward(dx1, dw1, db1, dout, x, w, N, C, OC);
    c->f32->matmul_backward(dx2, dw2, db2, dout, x, w, N, C, OC);
    r->f32->matmul_backward(sx, sw, sb, ad, ax, aw, N, C, OC);
    check_ffs("dinp", dx2, dx1, sx, NC, TOL_XB, 1);
    check_ffs("dw", dw2, dw1, sw, CO, TOL_XB, 1);
    check_ffs("dbias", db2, db1, sb, OC, TOL_XB, 1);
    group_end();
    free(x), free(w), free(bias), free(dout), free(o1), free(o2), free(dx1), free(dx2);
    free(dw1), free(dw2), free(db1), free(db2), free(ax), free(aw), free(ab), free(ad), free(so);
    free(sx), free(sw), free(sb);
}

static void xb_attention(const loom_backend *r, const loom_backend *c, int B, int T, int H, int KVH, int hs) {
    group_begin("attention: cpu vs ref fwd+bwd (B=%d T=%d H=%d KVH=%d hs=%d)", B, T, H, KVH, hs);
    const int C = H * hs;
    size_t n3 = (size_t)B * T * (H + 2 * KVH) * hs, nC = (size_t)B * T * C, nL = (size_t)B * H * T;
    float *qkv = randn_new(n3, 1, 0), *dout = randn_new(nC, 1, 0);
    float *o1 = FALLOC(nC), *l1 = FALLOC(nL), *o2 = FALLOC(nC), *l2 = FALLOC(nL);
    r->f32->attention_forward(o1, l1, qkv, B, T, H, KVH, hs);
    c->f32->attention_forward(o2, l2, qkv, B, T, H, KVH, hs);
    check_ff("out", o2, o1, nC, TOL_XB, 1);
    check_ff("lse", l2, l1, nL, TOL_XB, 1);
    float *d1 = FALLOC(n3), *d2 = FALLOC(n3);
    fill(d2, n3, NAN);
    r->f32->attention_backward(d1, dout, qkv, o1, l1, B, T, H, KVH, hs);
    c->f32->attention_backward(d2, dout, qkv, o2, l2, B, T, H, KVH, hs);
    check_ff("dqkv", d2, d1, n3, TOL_XB, 1);
    group_end();
    free(qkv), free(dout), free(o1), free(l1), free(o2), free(l2), free(d1), free(d2);
}

static void xb_elementwise(const loom_backend *r, const loom_backend *c, size_t n) {
    group_begin("gelu, residual: cpu vs ref fwd+bwd (n=%zu)", n);
    float *x = FALLOC(n), *y = randn_new(n, 1, 0), *dout = randn_new(n, 1, 0);
    gelu_inputs(x, n);
    float *o1 = FALLOC(n), *o2 = FALLOC(n);
    r->f32->gelu_forward(o1, x, n);
    c->f32->gelu_forward(o2, x, n);
    check_ff("gelu out", o2, o1, n, TOL_XB, 1);
    r->f32->gelu_backward(o1, x, dout, n);
    c->f32->gelu_backward(o2, x, dout, n);
    /* dinp = dout * gelu'(x) with |gelu'| <= 1.13: errors scale with |dout|, and float
     * tanh errors of ~1e-7 near |tanh| = 1 reach gelu' as ~2e-6 around x = -5. */
    float *adout = FALLOC(n);
    for (size_t i = 0; i < n; i++) adout[i] = fabsf(dout[i]);
    check_ffs("gelu dinp", o2, o1, adout, n, TOL_XB, 1);
    free(adout);
    r->f32->residual_forward(o1, x, y, n);
    c->f32->residual_forward(o2, x, y, n);
    check_bitwise("residual out", o2, o1, n);
    group_end();
    free(x), free(y), free(dout), free(o1), free(o2);
}

static void xb_crossentropy(const loom_backend *r, const loom_backend *c, int N, int V) {
    group_begin("crossentropy: cpu vs ref losses+grad (N=%d V=%d)", N, V);
    size_t NV = (size_t)N * V;
    float *lg = FALLOC(NV);
    ce_inputs(lg, N, V);
    int32_t *tg = xmalloc(sizeof(int32_t) * N);
    rand_tokens(tg, N, V);
    float *a = fcopy(lg, NV), *b = fcopy(lg, NV), *l1 = FALLOC(N), *l2 = FALLOC(N);
    r->f32->crossentropy(l1, a, tg, N, V, 1.0f / N);
    c->f32->crossentropy(l2, b, tg, N, V, 1.0f / N);
    check_ff("losses", l2, l1, N, TOL_XB, 1);
    check_ff("dlogits", b, a, NV, TOL_XB, 1.0 / N); /* |dlogits| <= dscale */
    group_end();
    free(lg), free(tg), free(a), free(b), free(l1), free(l2);
}

static void xb_optim(const loom_backend *r, const loom_backend *c, size_t n) {
    group_begin("adamw, sumsq: cpu vs ref (n=%zu, 3 steps)", n);
    float *p1 = randn_new(n, 1, 0), *p2 = fcopy(p1, n);
    float *m1 = zeros(n), *m2 = zeros(n), *v1 = zeros(n), *v2 = zeros(n);
    for (int step = 1; step <= 3; step++) {
        float *g = randn_new(n, 1, 0);
        float bc1 = (float)(1.0 - pow(0.9, step)), bc2 = (float)(1.0 - pow(0.95, step));
        r->f32->adamw(p1, g, m1, v1, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
        c->f32->adamw(p2, g, m2, v2, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, bc1, bc2, 0.7f);
        free(g);
    }
    check_ff("p", p2, p1, n, 2e-6, 1);
    check_ff("m", m2, m1, n, 1e-5, 0.1);
    check_ff("v", v2, v1, n, 1e-5, 1e-6);
    double s1 = r->f32->sumsq(p1, n), s2 = c->f32->sumsq(p1, n);
    check_dd("sumsq", &s2, &s1, 1, 1e-12, 1e-30);
    group_end();
    free(p1), free(p2), free(m1), free(m2), free(v1), free(v2);
}

static void test_registry(void) {
    group_begin("loom_backend_get, loom_gemm_library");
    check_true(loom_backend_get("cpu") == loom_backend_cpu(), "loom_backend_get(\"cpu\")");
    check_true(loom_backend_get("ref") == loom_backend_ref(), "loom_backend_get(\"ref\")");
    check_true(loom_backend_get("nope") == NULL, "loom_backend_get(\"nope\") != NULL");
    check_true(strcmp(loom_backend_cpu()->name, "cpu") == 0, "cpu backend name");
    check_true(strcmp(loom_backend_ref()->name, "ref") == 0, "ref backend name");
    const char *lib = loom_gemm_library();
    check_true(lib != NULL && lib[0] != '\0', "loom_gemm_library() is empty");
    group_end();
}
#endif

/* ------------------------------------------------------------------------------------ */

/* The op layer: a view of the wrong element type, device or size, a missing one, and a
 * backend without the element type's kernels are refused with a message naming the op
 * and the argument, before any kernel runs; a right call computes what the kernel does. */
static void test_op_checks(const loom_backend *be) {
    group_begin("ops/%s: typed views checked (dtype, device, extent, presence, kernels)", be->name);
    enum { N = 3, C = 4 };
    float x[N * C], y[N * C], w[C], rstd[N], ref_y[N * C], ref_rstd[N];
    randn(x, N * C, 1.0f, 0.0f);
    randn(w, C, 0.3f, 1.0f);
    const int dev = be->device;
    const loom_tensor X = loom_view(x, N * C, LOOM_DTYPE_F32, dev), Y = loom_view(y, N * C, LOOM_DTYPE_F32, dev);
    const loom_tensor W = loom_view(w, C, LOOM_DTYPE_F32, dev), R = loom_view(rstd, N, LOOM_DTYPE_F32, dev);
    be->f32->rmsnorm_forward(ref_y, ref_rstd, x, w, N, C, 1e-5f);
    check_true(op_rmsnorm_forward(be, Y, R, X, W, N, C, 1e-5f) == LOOM_OK, "a right call failed: %s", loom_error_msg());
    check_true(!memcmp(y, ref_y, sizeof y) && !memcmp(rstd, ref_rstd, sizeof rstd), "the op differs from its kernel");
    struct {
        loom_tensor inp;
        const char *want;
    } bad[] = {
        {loom_view(x, N * C - 1, LOOM_DTYPE_F32, dev), "op_rmsnorm_forward: inp holds 11 elements, the op touches 12"},
        {loom_view(x, N * C, LOOM_DTYPE_BF16, dev), "op_rmsnorm_forward: inp is BF16, the op runs in F32"},
        {loom_view(x, N * C, LOOM_DTYPE_F32, LOOM_DEVICE_CUDA), "op_rmsnorm_forward: inp is in cuda memory"},
        {LOOM_NO_TENSOR, "op_rmsnorm_forward: inp is missing"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(y, 0, sizeof y);
        loom_status st = op_rmsnorm_forward(be, Y, R, bad[i].inp, W, N, C, 1e-5f);
        check_true(st == LOOM_ERR_ARG && strstr(loom_error_msg(), bad[i].want), "case %zu: status %d, message '%s'",
                   i, (int)st, loom_error_msg());
        int untouched = 1;
        for (int k = 0; k < N * C; k++) untouched &= y[k] == 0.0f;
        check_true(untouched, "case %zu: the kernel ran after a refused view", i);
    }
    /* an element type the backend has no kernels for */
    loom_tensor Yb = Y;
    Yb.dtype = LOOM_DTYPE_BF16;
    loom_status st = op_rmsnorm_forward(be, Yb, R, X, W, N, C, 1e-5f);
    check_true(st == LOOM_ERR_ARG && strstr(loom_error_msg(), "has no BF16 kernels"), "bf16: '%s'", loom_error_msg());
    check_true(!be->supports(LOOM_DTYPE_BF16) && be->supports(LOOM_DTYPE_F32), "supports() disagrees with the kernels");
    /* a GEMM's operand smaller than its leading dimension says */
    st = op_gemm(be, 0, 0, N, C, C, 1.0f, X, C, loom_view(w, C, LOOM_DTYPE_F32, dev), C, 0.0f, Y, C);
    check_true(st == LOOM_ERR_ARG && strstr(loom_error_msg(), "op_gemm: B holds 4 elements, the op touches 16"),
               "gemm: '%s'", loom_error_msg());
    /* views and sub-views */
    loom_tensor sub = loom_view_at(X, 5);
    check_true(sub.numel == N * C - 5 && sub.data == (void *)(x + 5), "loom_view_at");
    group_end();
}

static void check_table(const loom_backend *be) {
    group_begin("table/%s: every entry set", be->name);
    check_true(be->f32 != NULL, "no fp32 kernels");
    if (!be->f32) return;
    const void *fns[] = {
        (const void *)be->alloc, (const void *)be->free, (const void *)be->copy, (const void *)be->sync,
        (const void *)be->zero, (const void *)be->supports, (const void *)be->reserve,
        (const void *)be->f32->gemm,                   (const void *)be->f32->encoder_forward,
        (const void *)be->f32->encoder_backward,       (const void *)be->f32->layernorm_forward,
        (const void *)be->f32->layernorm_backward_acc, (const void *)be->f32->matmul_forward,
        (const void *)be->f32->matmul_backward,        (const void *)be->f32->attention_forward,
        (const void *)be->f32->attention_backward,     (const void *)be->f32->gelu_forward,
        (const void *)be->f32->gelu_backward,          (const void *)be->f32->residual_forward,
        (const void *)be->f32->crossentropy,           (const void *)be->f32->adamw,
        (const void *)be->f32->sumsq,
    };
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
        check_true(fns[i] != NULL, "function pointer #%zu is NULL", i);
    group_end();
}

int main(void) {
    const char *verbose = getenv("TEST_OPS_VERBOSE"); /* 1: print every check's max error */
    g_verbose = verbose && verbose[0] == '1';
    const char *seed = getenv("TEST_OPS_SEED"); /* another data set, for robustness runs */
    if (seed) g_key = strtoull(seed, NULL, 0) * 1000003u;
    const loom_backend *bes[2];
    int nb = 0;
    bes[nb++] = loom_backend_ref();
#ifndef TEST_REF_ONLY
    bes[nb++] = loom_backend_cpu();
    test_registry();
#endif
    for (int i = 0; i < nb; i++) {
        const loom_backend *be = bes[i];
        check_table(be);
        if (grp.fails) continue;
        group_begin("reserve/%s: workspaces for T <= 1024 on 64 threads, and capabilities", be->name);
        check_true(be->reserve(1024, 64) == LOOM_OK, "reserve: %s", loom_error_msg());
        check_true(be->supports(LOOM_DTYPE_F32) && !be->supports(LOOM_DTYPE_BF16), "supports: F32 only so far");
        float *mem = be->alloc(64, "test");
        check_true(mem && mem[0] == 0.0f && mem[15] == 0.0f, "alloc: zeroed");
        float src[16] = {1, 2, 3};
        be->copy(mem, src, sizeof src);
        be->sync();
        check_true(mem[2] == 3.0f, "copy");
        be->free(mem);
        group_end();
        test_gemm(be, 13, 11, 37);
        test_gemm(be, 70, 65, 129);
        test_encoder(be, 2, 5, 12, 17);
        test_layernorm(be, 7, 12);
        test_layernorm(be, 5, 67);
        test_matmul(be, 7, 12, 9, 1);
        test_matmul(be, 7, 12, 9, 0);
        test_attention(be, 2, 5, 3, 3, 4, 1);
        test_attention(be, 1, 70, 2, 2, 8, 7);
        test_attention(be, 2, 5, 4, 2, 3, 1); /* grouped-query: 2 query heads per key/value head */
        test_attention(be, 1, 9, 6, 2, 4, 1);
        test_attention(be, 1, 70, 4, 1, 8, 7); /* multi-query */
        test_gelu(be, 1037);
        test_residual(be, 1037);
        test_crossentropy(be, 7, 17);
        test_adamw(be, 1037);
        test_sumsq(be);
        test_semantics(be);
        test_op_checks(be);
    }
#ifndef TEST_REF_ONLY
    const loom_backend *r = loom_backend_ref(), *c = loom_backend_cpu();
    xb_gemm(r, c, 13, 11, 37);
    xb_gemm(r, c, 70, 65, 129);
    xb_encoder(r, c, 2, 5, 12, 17);
    xb_encoder(r, c, 3, 33, 67, 50);
    xb_layernorm(r, c, 7, 12, 1);
    xb_layernorm(r, c, 33, 771, 0);
    xb_layernorm(r, c, 33, 771, 1);
    xb_matmul(r, c, 7, 12, 9);
    xb_matmul(r, c, 37, 67, 131);
    xb_matmul(r, c, 64, 128, 384);
    xb_attention(r, c, 2, 5, 3, 3, 4);
    xb_attention(r, c, 2, 70, 2, 2, 8);
    xb_attention(r, c, 2, 67, 3, 3, 8);
    xb_attention(r, c, 1, 130, 2, 2, 64);
    xb_attention(r, c, 1, 1, 2, 2, 8);
    xb_attention(r, c, 2, 67, 6, 2, 8);
    xb_attention(r, c, 1, 130, 9, 3, 64); /* smollm's heads: 9 query, 3 key/value, 64 wide */
    xb_elementwise(r, c, 7);
    xb_elementwise(r, c, 1037);
    xb_crossentropy(r, c, 7, 17);
    xb_crossentropy(r, c, 5, 1031);
    xb_optim(r, c, 1037);
#endif
    if (g_failed) {
        printf("test_ops: %d of %d checks FAILED\n", g_failed, g_checks);
        return 1;
    }
    printf("test_ops: %d checks passed\n", g_checks);
    return 0;
}
