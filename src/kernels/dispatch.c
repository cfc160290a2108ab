/* The ops: each checks its views (element type, device, extent) against what its
 * kernel will touch, then runs the backend's kernel of that element type. The extents
 * are the ones knowable without reading the data (token ids and positions are
 * validated where they are read from files). */
#include <stdio.h>

#include "kernels/kernels.h"

static const char *device_name(int d) { return d == LOOM_DEVICE_HOST ? "host" : d == LOOM_DEVICE_CUDA ? "cuda" : "?"; }

/* A view's check: present (unless optional), on the backend's device (or, with
 * host_ok, the host), of dtype dt, at least `need` elements. */
static loom_status check(const loom_backend *be, const char *op, const char *arg, loom_tensor t, int dt,
                         size_t need, int optional, int host_ok) {
    if (!t.data) {
        if (optional || !need) return LOOM_OK;
        return loom_error(LOOM_ERR_ARG, "%s: %s is missing", op, arg);
    }
    if (t.device != be->device && !(host_ok && t.device == LOOM_DEVICE_HOST))
        return loom_error(LOOM_ERR_ARG, "%s: %s is in %s memory, backend '%s' computes on %s", op, arg,
                          device_name(t.device), be->name, device_name(be->device));
    if (t.dtype != dt)
        return loom_error(LOOM_ERR_ARG, "%s: %s is %s, the op runs in %s", op, arg,
                          loom_dtype_name((loom_dtype)t.dtype), loom_dtype_name((loom_dtype)dt));
    if (t.numel < need)
        return loom_error(LOOM_ERR_ARG, "%s: %s holds %zu elements, the op touches %zu", op, arg, t.numel, need);
    return LOOM_OK;
}

/* The fp32 kernels, or the error that the backend has none for this element type. */
static loom_status kernels(const loom_backend *be, const char *op, int dt, const loom_f32_kernels **k) {
    if (dt == LOOM_DTYPE_F32 && be->f32) {
        *k = be->f32;
        return LOOM_OK;
    }
    return loom_error(LOOM_ERR_ARG, "%s: backend '%s' has no %s kernels", op, be->name,
                      loom_dtype_name((loom_dtype)dt));
}

/* Inside an op: `dt` is the element type of its first floating-point view. */
#define BEGIN(first)                                                                                         \
    const int dt = (first).dtype;                                                                            \
    const loom_f32_kernels *k = NULL;                                                                        \
    loom_status st_ = kernels(be, __func__, dt, &k);                                                          \
    if (st_) return st_
#define NEED(t, n) TRY(check(be, __func__, #t, t, dt, n, 0, 0))
#define MAYBE(t, n) TRY(check(be, __func__, #t, t, dt, n, 1, 0))
#define NEED_I32(t, n) TRY(check(be, __func__, #t, t, LOOM_DTYPE_I32, n, 0, 0))
#define MAYBE_I32(t, n) TRY(check(be, __func__, #t, t, LOOM_DTYPE_I32, n, 1, 0))
#define TRY(x)                                                                                               \
    do {                                                                                                     \
        if ((st_ = (x))) return st_;                                                                         \
    } while (0)
#define F(t) ((float *)(t).data)
#define I(t) ((const int32_t *)(t).data)

/* Elements a row-major (rows, cols) matrix with leading dimension ld spans. */
static size_t span(int rows, int cols, int ld) { return rows > 0 && cols > 0 ? (size_t)(rows - 1) * ld + cols : 0; }

loom_status op_gemm(const loom_backend *be, int ta, int tb, int M, int N, int K, float alpha, loom_tensor A, int lda,
                    loom_tensor B, int ldb, float beta, loom_tensor C, int ldc) {
    BEGIN(C);
    if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N)
        return loom_error(LOOM_ERR_ARG, "op_gemm: a leading dimension is below its row length (lda %d, ldb %d, "
                          "ldc %d for M %d N %d K %d)", lda, ldb, ldc, M, N, K);
    NEED(A, ta ? span(K, M, lda) : span(M, K, lda));
    NEED(B, tb ? span(N, K, ldb) : span(K, N, ldb));
    NEED(C, span(M, N, ldc));
    k->gemm(ta, tb, M, N, K, alpha, F(A), lda, F(B), ldb, beta, F(C), ldc);
    return LOOM_OK;
}

loom_status op_encoder_forward_rows(const loom_backend *be, loom_tensor out, loom_tensor inp, loom_tensor pos,
                                    loom_tensor wte, loom_tensor wpe, int B, int T, int C, int v0, int vn) {
    BEGIN(out);
    const size_t BT = (size_t)B * T;
    NEED(out, BT * C);
    NEED_I32(inp, BT);
    MAYBE_I32(pos, BT);
    NEED(wte, (size_t)(vn > 0 ? vn : 1) * C);
    MAYBE(wpe, (size_t)(pos.data ? 1 : T) * C);
    k->encoder_forward(F(out), I(inp), I(pos), F(wte), F(wpe), B, T, C, v0, vn);
    return LOOM_OK;
}

loom_status op_encoder_forward(const loom_backend *be, loom_tensor out, loom_tensor inp, loom_tensor pos,
                               loom_tensor wte, loom_tensor wpe, int B, int T, int C) {
    return op_encoder_forward_rows(be, out, inp, pos, wte, wpe, B, T, C, 0, C > 0 ? (int)(wte.numel / C) : 0);
}

loom_status op_encoder_backward_rows(const loom_backend *be, loom_tensor dwte, loom_tensor dwpe, loom_tensor dout,
                                     loom_tensor inp, int B, int T, int C, int v0, int vn) {
    BEGIN(dout);
    NEED(dwte, (size_t)(vn > 0 ? vn : 1) * C);
    MAYBE(dwpe, (size_t)T * C);
    NEED(dout, (size_t)B * T * C);
    NEED_I32(inp, (size_t)B * T);
    k->encoder_backward(F(dwte), F(dwpe), F(dout), I(inp), B, T, C, v0, vn);
    return LOOM_OK;
}

loom_status op_encoder_backward(const loom_backend *be, loom_tensor dwte, loom_tensor dwpe, loom_tensor dout,
                                loom_tensor inp, int B, int T, int C) {
    return op_encoder_backward_rows(be, dwte, dwpe, dout, inp, B, T, C, 0, C > 0 ? (int)(dwte.numel / C) : 0);
}

loom_status op_layernorm_forward(const loom_backend *be, loom_tensor out, loom_tensor mean, loom_tensor rstd,
                                 loom_tensor inp, loom_tensor w, loom_tensor b, int N, int C) {
    BEGIN(out);
    const size_t NC = (size_t)N * C;
    NEED(out, NC);
    NEED(mean, (size_t)N);
    NEED(rstd, (size_t)N);
    NEED(inp, NC);
    NEED(w, (size_t)C);
    NEED(b, (size_t)C);
    k->layernorm_forward(F(out), F(mean), F(rstd), F(inp), F(w), F(b), N, C);
    return LOOM_OK;
}

loom_status op_layernorm_backward_acc(const loom_backend *be, loom_tensor dinp, loom_tensor dw, loom_tensor db,
                                      loom_tensor dout, loom_tensor inp, loom_tensor w, loom_tensor mean,
                                      loom_tensor rstd, int N, int C) {
    BEGIN(dinp);
    const size_t NC = (size_t)N * C;
    NEED(dinp, NC);
    NEED(dw, (size_t)C);
    NEED(db, (size_t)C);
    NEED(dout, NC);
    NEED(inp, NC);
    NEED(w, (size_t)C);
    NEED(mean, (size_t)N);
    NEED(rstd, (size_t)N);
    k->layernorm_backward_acc(F(dinp), F(dw), F(db), F(dout), F(inp), F(w), F(mean), F(rstd), N, C);
    return LOOM_OK;
}

loom_status op_rmsnorm_forward(const loom_backend *be, loom_tensor out, loom_tensor rstd, loom_tensor inp,
                               loom_tensor w, int N, int C, float eps) {
    BEGIN(out);
    NEED(out, (size_t)N * C);
    NEED(rstd, (size_t)N);
    NEED(inp, (size_t)N * C);
    NEED(w, (size_t)C);
    k->rmsnorm_forward(F(out), F(rstd), F(inp), F(w), N, C, eps);
    return LOOM_OK;
}

loom_status op_rmsnorm_backward_acc(const loom_backend *be, loom_tensor dinp, loom_tensor dw, loom_tensor dout,
                                    loom_tensor inp, loom_tensor w, loom_tensor rstd, int N, int C) {
    BEGIN(dinp);
    const size_t NC = (size_t)N * C;
    NEED(dinp, NC);
    NEED(dw, (size_t)C);
    NEED(dout, NC);
    NEED(inp, NC);
    NEED(w, (size_t)C);
    NEED(rstd, (size_t)N);
    k->rmsnorm_backward_acc(F(dinp), F(dw), F(dout), F(inp), F(w), F(rstd), N, C);
    return LOOM_OK;
}

loom_status op_rope(const loom_backend *be, loom_tensor x, int N, int T, loom_tensor pos, int nh, int hs, int stride,
                    loom_tensor cos, loom_tensor sin, int inverse) {
    BEGIN(x);
    NEED(x, span(N, nh * hs, stride));
    MAYBE_I32(pos, (size_t)N);
    const size_t table = (size_t)(pos.data ? 1 : T) * (hs / 2);
    NEED(cos, table);
    NEED(sin, table);
    k->rope(F(x), N, T, I(pos), nh, hs, stride, F(cos), F(sin), inverse);
    return LOOM_OK;
}

loom_status op_swiglu_forward(const loom_backend *be, loom_tensor out, loom_tensor gu, int N, int F) {
    BEGIN(out);
    NEED(out, (size_t)N * F);
    NEED(gu, (size_t)N * 2 * F);
    k->swiglu_forward(F(out), F(gu), N, F);
    return LOOM_OK;
}

loom_status op_swiglu_backward(const loom_backend *be, loom_tensor dgu, loom_tensor dout, loom_tensor gu, int N,
                               int F) {
    BEGIN(dgu);
    NEED(dgu, (size_t)N * 2 * F);
    NEED(dout, (size_t)N * F);
    NEED(gu, (size_t)N * 2 * F);
    k->swiglu_backward(F(dgu), F(dout), F(gu), N, F);
    return LOOM_OK;
}

loom_status op_matmul_forward(const loom_backend *be, loom_tensor out, loom_tensor inp, loom_tensor w,
                              loom_tensor bias, int N, int C, int OC) {
    BEGIN(out);
    NEED(out, (size_t)N * OC);
    NEED(inp, (size_t)N * C);
    NEED(w, (size_t)C * OC);
    MAYBE(bias, (size_t)OC);
    k->matmul_forward(F(out), F(inp), F(w), F(bias), N, C, OC);
    return LOOM_OK;
}

loom_status op_matmul_backward(const loom_backend *be, loom_tensor dinp, loom_tensor dw, loom_tensor dbias,
                               loom_tensor dout, loom_tensor inp, loom_tensor w, int N, int C, int OC) {
    BEGIN(dout);
    MAYBE(dinp, (size_t)N * C);
    NEED(dw, (size_t)C * OC);
    MAYBE(dbias, (size_t)OC);
    NEED(dout, (size_t)N * OC);
    NEED(inp, (size_t)N * C);
    NEED(w, (size_t)C * OC);
    k->matmul_backward(F(dinp), F(dw), F(dbias), F(dout), F(inp), F(w), N, C, OC);
    return LOOM_OK;
}

/* The attention kernels' shape rule: KVH divides H. */
static loom_status heads_ok(const char *op, int H, int KVH) {
    if (KVH >= 1 && H % KVH == 0) return LOOM_OK;
    return loom_error(LOOM_ERR_ARG, "%s: %d key/value heads do not divide %d query heads", op, KVH, H);
}

loom_status op_attention_forward(const loom_backend *be, loom_tensor out, loom_tensor lse, loom_tensor qkv, int B,
                                 int T, int H, int KVH, int hs) {
    BEGIN(out);
    TRY(heads_ok(__func__, H, KVH));
    const size_t BT = (size_t)B * T;
    NEED(out, BT * H * hs);
    NEED(lse, BT * H);
    NEED(qkv, BT * (H + 2 * KVH) * hs);
    k->attention_forward(F(out), F(lse), F(qkv), B, T, H, KVH, hs);
    return LOOM_OK;
}

loom_status op_attention_backward(const loom_backend *be, loom_tensor dqkv, loom_tensor dout, loom_tensor qkv,
                                  loom_tensor out, loom_tensor lse, int B, int T, int H, int KVH, int hs) {
    BEGIN(dqkv);
    TRY(heads_ok(__func__, H, KVH));
    const size_t BT = (size_t)B * T, W = (size_t)(H + 2 * KVH) * hs;
    NEED(dqkv, BT * W);
    NEED(dout, BT * H * hs);
    NEED(qkv, BT * W);
    NEED(out, BT * H * hs);
    NEED(lse, BT * H);
    k->attention_backward(F(dqkv), F(dout), F(qkv), F(out), F(lse), B, T, H, KVH, hs);
    return LOOM_OK;
}

loom_status op_attention_decode(const loom_backend *be, loom_tensor out, loom_tensor q, int q_stride, loom_tensor k_,
                                loom_tensor v, loom_tensor len, int B, int H, int KVH, int hs, size_t row_stride,
                                size_t batch_stride, loom_tensor scratch) {
    BEGIN(out);
    TRY(heads_ok(__func__, H, KVH));
    const size_t cache = B > 0 ? (size_t)(B - 1) * batch_stride + (size_t)KVH * hs : 0;
    NEED(out, (size_t)B * H * hs);
    NEED(q, span(B, H * hs, q_stride));
    TRY(check(be, __func__, "k", k_, dt, cache, 0, 0));
    NEED(v, cache);
    NEED_I32(len, (size_t)B);
    NEED(scratch, (size_t)B * H);
    k->attention_decode(F(out), F(q), q_stride, F(k_), F(v), I(len), B, H, KVH, hs, row_stride, batch_stride,
                        F(scratch));
    return LOOM_OK;
}

loom_status op_gelu_forward(const loom_backend *be, loom_tensor out, loom_tensor inp, size_t n) {
    BEGIN(out);
    NEED(out, n);
    NEED(inp, n);
    k->gelu_forward(F(out), F(inp), n);
    return LOOM_OK;
}

loom_status op_gelu_backward(const loom_backend *be, loom_tensor dinp, loom_tensor inp, loom_tensor dout, size_t n) {
    BEGIN(dinp);
    NEED(dinp, n);
    NEED(inp, n);
    NEED(dout, n);
    k->gelu_backward(F(dinp), F(inp), F(dout), n);
    return LOOM_OK;
}

loom_status op_residual_forward(const loom_backend *be, loom_tensor out, loom_tensor a, loom_tensor b, size_t n) {
    BEGIN(out);
    NEED(out, n);
    NEED(a, n);
    NEED(b, n);
    k->residual_forward(F(out), F(a), F(b), n);
    return LOOM_OK;
}

loom_status op_crossentropy(const loom_backend *be, loom_tensor losses, loom_tensor logits, loom_tensor targets,
                            int N, int V, float dscale) {
    BEGIN(logits);
    NEED(losses, (size_t)N);
    NEED(logits, (size_t)N * V);
    NEED_I32(targets, (size_t)N);
    k->crossentropy(F(losses), F(logits), I(targets), N, V, dscale);
    return LOOM_OK;
}

loom_status op_crossentropy_part(const loom_backend *be, int phase, loom_tensor losses, loom_tensor logits,
                                 loom_tensor targets, loom_tensor stats, int N, int ld, int v0, int vn, float dscale) {
    BEGIN(logits);
    if (phase < 0 || phase > 2 || vn > ld)
        return loom_error(LOOM_ERR_ARG, "op_crossentropy_part: phase %d of 0..2, %d columns of %d", phase, vn, ld);
    NEED(losses, phase == 2 ? (size_t)N : 0);
    NEED(logits, (size_t)N * ld);
    NEED_I32(targets, (size_t)N);
    NEED(stats, 3 * (size_t)N);
    k->crossentropy_part(phase, F(losses), F(logits), I(targets), F(stats), N, ld, v0, vn, dscale);
    return LOOM_OK;
}

loom_status op_adamw(const loom_backend *be, loom_tensor p, loom_tensor g, loom_tensor m, loom_tensor v, size_t n,
                     float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2, float gscale) {
    BEGIN(p);
    NEED(p, n);
    NEED(g, n);
    NEED(m, n);
    NEED(v, n);
    k->adamw(F(p), F(g), F(m), F(v), n, lr, beta1, beta2, eps, wd, bc1, bc2, gscale);
    return LOOM_OK;
}

loom_status op_zero(const loom_backend *be, loom_tensor t, size_t n) {
    loom_status st_ = check(be, __func__, "t", t, t.dtype, n, 0, 0);
    if (!st_ && n) be->zero(t.data, n * loom_dtype_size((loom_dtype)t.dtype));
    return st_;
}

loom_status op_copy(const loom_backend *be, loom_tensor dst, loom_tensor src, size_t n) {
    loom_status st_;
    TRY(check(be, __func__, "dst", dst, src.dtype, n, 0, 1));
    TRY(check(be, __func__, "src", src, src.dtype, n, 0, 1));
    if (n) be->copy(dst.data, src.data, n * loom_dtype_size((loom_dtype)src.dtype));
    return LOOM_OK;
}
