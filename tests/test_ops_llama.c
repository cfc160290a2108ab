/* Kernel tests of the Llama ops (RMSNorm, rotary embeddings, SwiGLU) and of decode
 * attention for every backend: each forward against an independent double forward
 * written here, each backward against central finite differences of L = sum(dout *
 * f(x)) in double, accumulate semantics (dinp and dw add into random pre-fills), and cpu
 * against ref. Attention with grouped-query heads is in test_ops with the other
 * attention cases; decode attention (grouped-query too) is here, also against the last
 * rows of the causal attention forward. */
#include <omp.h>

#include "kernels/kernels.h"
#include "ops_harness.h"

/* ------------------------------------------------------------------------------------ */
/* RMSNorm.                                                                             */

static void rms_fwd_d(double *out, const double *x, const double *w, int N, int C, double eps) {
    for (int r = 0; r < N; r++) {
        double ss = 0;
        for (int i = 0; i < C; i++) ss += x[(size_t)r * C + i] * x[(size_t)r * C + i];
        double rs = 1.0 / sqrt(ss / C + eps);
        for (int i = 0; i < C; i++) out[(size_t)r * C + i] = x[(size_t)r * C + i] * rs * w[i];
    }
}

typedef struct {
    int N, C;
    double eps, *x, *w, *dout, *scratch;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    rms_fwd_d(c->scratch, c->x, c->w, c->N, c->C, c->eps);
    return dot_d(c->scratch, c->dout, (size_t)c->N * c->C);
}

static void test_rmsnorm(const loom_backend *be, int N, int C, float eps) {
    group_begin("rmsnorm/%s: fwd vs double, bwd vs FD (N=%d C=%d eps=%g)", be->name, N, C, eps);
    const size_t n = (size_t)N * C;
    float *x = randn_new(n, 1.5f, 0.3f), *w = randn_new(C, 0.5f, 1.0f), *dout = randn_new(n, 1, 0);
    float *out = FALLOC(n), *rstd = FALLOC(N);
    fill(out, n, NAN);
    be->f32->rmsnorm_forward(out, rstd, x, w, N, C, eps);
    double *xd = f2d(x, n), *wd = f2d(w, C), *dd = f2d(dout, n), *want = DALLOC(n);
    rms_fwd_d(want, xd, wd, N, C, eps);
    check_fd("out", out, want, n, TOL_FWD, 1);
    /* backward: into random pre-fills, which must be kept (accumulate) */
    float *dx = randn_new(n, 1, 0), *dw = randn_new(C, 1, 0), *dx0 = fcopy(dx, n), *dw0 = fcopy(dw, C);
    be->f32->rmsnorm_backward_acc(dx, dw, dout, x, w, rstd, N, C);
    rms_ctx ctx = {N, C, eps, xd, wd, dd, DALLOC(n)};
    double *gx = DALLOC(n), *gw = DALLOC(C);
    fd_grad(rms_loss, &ctx, xd, n, gx);
    fd_grad(rms_loss, &ctx, wd, C, gw);
    check_added("dinp (accumulated)", dx, dx0, gx, n, TOL_FD);
    check_added("dw (accumulated)", dw, dw0, gw, C, TOL_FD);
    group_end();
    free(x), free(w), free(dout), free(out), free(rstd), free(xd), free(wd), free(dd), free(want);
    free(dx), free(dw), free(dx0), free(dw0), free(ctx.scratch), free(gx), free(gw);
}

/* ------------------------------------------------------------------------------------ */
/* Rotary embeddings.                                                                   */

/* cos and sin of Hugging Face's angles p * theta^(-2i/hs), for positions [0, P) */
static void rope_tables(float *cs, float *sn, int P, int hs, double theta) {
    for (int p = 0; p < P; p++)
        for (int i = 0; i < hs / 2; i++) {
            double a = p * pow(theta, -2.0 * i / hs);
            cs[p * (hs / 2) + i] = (float)cos(a);
            sn[p * (hs / 2) + i] = (float)sin(a);
        }
}

typedef struct {
    int N, T, nh, hs, stride;
    const int32_t *pos;
    const float *cs, *sn;
    double *x, *dout;
} rope_ctx;

/* L = sum(dout * rope(x)) over the heads, in double */
static double rope_loss(void *p) {
    const rope_ctx *c = p;
    const int half = c->hs / 2;
    double L = 0;
    for (int r = 0; r < c->N; r++) {
        const int pp = c->pos ? c->pos[r] : r % c->T;
        for (int h = 0; h < c->nh; h++)
            for (int i = 0; i < half; i++) {
                const size_t a = (size_t)r * c->stride + (size_t)h * c->hs + i, b = a + half;
                const double cs = c->cs[pp * half + i], sn = c->sn[pp * half + i];
                L += c->dout[a] * (c->x[a] * cs - c->x[b] * sn) + c->dout[b] * (c->x[b] * cs + c->x[a] * sn);
            }
    }
    return L;
}

/* rows of `stride` floats with nh heads of hs at the start; the rest of each row must be
 * left alone. pos: explicit positions, or NULL (row % T). */
static void test_rope(const loom_backend *be, int N, int T, int nh, int hs, int stride, int explicit_pos) {
    group_begin("rope/%s: fwd vs double, bwd (inverse) vs FD (N=%d T=%d heads=%d hs=%d stride=%d%s)", be->name, N,
                T, nh, hs, stride, explicit_pos ? ", positions given" : "");
    const size_t n = (size_t)N * stride;
    int32_t *pos = NULL;
    int P = T;
    if (explicit_pos) {
        pos = xmalloc(sizeof(int32_t) * N);
        for (int r = 0; r < N; r++) pos[r] = (r * 7 + 3) % 50;
        P = 50;
    }
    float *cs = FALLOC((size_t)P * hs / 2), *sn = FALLOC((size_t)P * hs / 2);
    rope_tables(cs, sn, P, hs, 10000.0);
    float *x = randn_new(n, 1, 0), *y = fcopy(x, n), *dout = randn_new(n, 1, 0);
    be->f32->rope(y, N, T, pos, nh, hs, stride, cs, sn, 0);
    double *xd = f2d(x, n), *dd = f2d(dout, n), *want = DALLOC(n), *g = DALLOC(n);
    /* the forward as the gradient of L with respect to dout (L is linear in it) */
    rope_ctx ctx = {N, T, nh, hs, stride, pos, cs, sn, xd, dd};
    fd_grad(rope_loss, &ctx, dd, n, want); /* d L / d dout = rope(x); outside the heads 0 */
    for (size_t i = 0; i < n; i++)
        if ((int)(i % (size_t)stride) >= nh * hs) want[i] = x[i]; /* untouched */
    check_fd("out (in place; the rest of the row untouched)", y, want, n, TOL_FWD, 1);
    /* backward: the inverse rotation of dout is dL/dx */
    float *dx = fcopy(dout, n);
    be->f32->rope(dx, N, T, pos, nh, hs, stride, cs, sn, 1);
    fd_grad(rope_loss, &ctx, xd, n, g);
    for (size_t i = 0; i < n; i++)
        if ((int)(i % (size_t)stride) >= nh * hs) g[i] = dout[i];
    check_fd("dinp (inverse rotation)", dx, g, n, TOL_FD, 1);
    /* forward then inverse gives x back */
    be->f32->rope(y, N, T, pos, nh, hs, stride, cs, sn, 1);
    check_ff("inverse(forward(x)) = x", y, x, n, TOL_FWD, 1);
    group_end();
    free(pos), free(cs), free(sn), free(x), free(y), free(dout), free(xd), free(dd), free(want), free(g), free(dx);
}

/* ------------------------------------------------------------------------------------ */
/* SwiGLU.                                                                              */

typedef struct {
    int N, F;
    double *gu, *dout;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    const swiglu_ctx *c = p;
    double L = 0;
    for (int r = 0; r < c->N; r++)
        for (int i = 0; i < c->F; i++) {
            const double g = c->gu[(size_t)r * 2 * c->F + i], u = c->gu[(size_t)r * 2 * c->F + c->F + i];
            L += c->dout[(size_t)r * c->F + i] * g / (1.0 + exp(-g)) * u;
        }
    return L;
}

static void test_swiglu(const loom_backend *be, int N, int F) {
    group_begin("swiglu/%s: fwd vs double, bwd vs FD (N=%d F=%d)", be->name, N, F);
    const size_t n2 = (size_t)N * 2 * F, n = (size_t)N * F;
    float *gu = randn_new(n2, 3, 0), *dout = randn_new(n, 1, 0), *out = FALLOC(n), *dgu = FALLOC(n2);
    gu[0] = 40.0f, gu[1] = -40.0f; /* saturated gates: no overflow */
    fill(out, n, NAN);
    fill(dgu, n2, NAN); /* overwritten, never read */
    be->f32->swiglu_forward(out, gu, N, F);
    double *gd = f2d(gu, n2), *dd = f2d(dout, n), *want = DALLOC(n), *g = DALLOC(n2);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < F; i++) {
            const double a = gd[(size_t)r * 2 * F + i], u = gd[(size_t)r * 2 * F + F + i];
            want[(size_t)r * F + i] = a / (1.0 + exp(-a)) * u;
        }
    check_fd("out", out, want, n, TOL_FWD, 1);
    be->f32->swiglu_backward(dgu, dout, gu, N, F);
    swiglu_ctx ctx = {N, F, gd, dd};
    fd_grad(swiglu_loss, &ctx, gd, n2, g);
    check_fd("dgu (overwrite)", dgu, g, n2, TOL_FD, 1);
    group_end();
    free(gu), free(dout), free(out), free(dgu), free(gd), free(dd), free(want), free(g);
}

/* ------------------------------------------------------------------------------------ */
/* Decode attention.                                                                    */

/* A cache of B rows: row b's position t, kv head kh at base + b*bstride + t*rstride +
 * kh*hs, with padding around the heads and between the rows (which the op must skip). */
typedef struct {
    int B, H, KVH, hs, qstride;
    size_t rstride, bstride;
    int32_t *len;
    float *q, *k, *v;
} dec_case;

static dec_case dec_new(int B, int H, int KVH, int hs, int Tmax, const int32_t *len) {
    dec_case d = {B, H, KVH, hs, H * hs + 5, (size_t)KVH * hs + 3, 0, NULL, NULL, NULL, NULL};
    d.bstride = (size_t)Tmax * d.rstride + 11;
    d.len = xmalloc(sizeof(int32_t) * B);
    memcpy(d.len, len, sizeof(int32_t) * B);
    for (int b = 0; b < B; b++)
        if (len[b] < 1 || len[b] > Tmax) {
            fprintf(stderr, "test_ops_llama: bad decode case (len %d, Tmax %d)\n", len[b], Tmax);
            exit(2);
        }
    d.q = randn_new((size_t)B * d.qstride, 1.0f, 0);
    d.k = randn_new((size_t)B * d.bstride, 1.5f, 0.2f);
    d.v = randn_new((size_t)B * d.bstride, 1.0f, -0.1f);
    return d;
}

static void dec_free(dec_case *d) { free(d->len), free(d->q), free(d->k), free(d->v); }

static size_t dec_scratch(const dec_case *d) {
    int mx = 0;
    for (int b = 0; b < d->B; b++) mx = d->len[b] > mx ? d->len[b] : mx;
    return (size_t)d->B * d->H * mx;
}

static void dec_run(const loom_backend *be, const dec_case *d, float *out) {
    float *scratch = FALLOC(dec_scratch(d));
    fill(scratch, dec_scratch(d), NAN); /* written before it is read */
    be->f32->attention_decode(out, d->q, d->qstride, d->k, d->v, d->len, d->B, d->H, d->KVH, d->hs, d->rstride,
                         d->bstride, scratch);
    free(scratch);
}

/* softmax(q k^T / sqrt(hs)) v per (row, head), in double, written from the definition */
static void dec_want(const dec_case *d, double *want) {
    const int G = d->H / d->KVH;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            const int n = d->len[b];
            double *s = DALLOC(n), mx = -INFINITY, sum = 0;
            const float *q = d->q + (size_t)b * d->qstride + (size_t)h * d->hs;
            for (int t = 0; t < n; t++) {
                const float *k = d->k + b * d->bstride + t * d->rstride + (size_t)(h / G) * d->hs;
                s[t] = 0;
                for (int i = 0; i < d->hs; i++) s[t] += (double)q[i] * k[i];
                s[t] /= sqrt((double)d->hs);
                mx = fmax(mx, s[t]);
            }
            for (int t = 0; t < n; t++) sum += s[t] = exp(s[t] - mx);
            for (int i = 0; i < d->hs; i++) {
                double o = 0;
                for (int t = 0; t < n; t++)
                    o += s[t] / sum * d->v[b * d->bstride + t * d->rstride + (size_t)(h / G) * d->hs + i];
                want[((size_t)b * d->H + h) * d->hs + i] = o;
            }
            free(s);
        }
}

static void test_decode(const loom_backend *be, int B, int H, int KVH, int hs, int Tmax, const int32_t *len) {
    group_begin("attention_decode/%s: vs double (B=%d H=%d KVH=%d hs=%d, padded strides)", be->name, B, H, KVH, hs);
    dec_case d = dec_new(B, H, KVH, hs, Tmax, len);
    const size_t n = (size_t)B * H * hs;
    float *out = FALLOC(n);
    double *want = DALLOC(n);
    fill(out, n, NAN); /* overwritten, never read */
    dec_run(be, &d, out);
    dec_want(&d, want);
    check_fd("out", out, want, n, TOL_FWD, 1);
    group_end();
    dec_free(&d), free(out), free(want);
}

/* Decoding position t of a sequence, with the keys and values of [0, t] in place, gives
 * row t of the causal attention forward: the cache is the forward's own qkv (rows of
 * (H + 2KVH) hs, k after the H query heads, v after the KVH key heads). */
static void test_decode_vs_forward(const loom_backend *be, int B, int T, int H, int KVH, int hs) {
    group_begin("attention_decode/%s: = attention_forward's rows (B=%d T=%d H=%d KVH=%d hs=%d)", be->name, B, T, H,
                KVH, hs);
    const int W = (H + 2 * KVH) * hs, Q = H * hs;
    float *qkv = randn_new((size_t)B * T * W, 1.0f, 0), *full = FALLOC((size_t)B * T * Q);
    float *lse = FALLOC((size_t)B * H * T);
    float *got = FALLOC((size_t)B * T * Q), *row = FALLOC((size_t)B * Q), *q = FALLOC((size_t)B * Q);
    float *scratch = FALLOC((size_t)B * H * T);
    int32_t *len = xmalloc(sizeof(int32_t) * B);
    be->f32->attention_forward(full, lse, qkv, B, T, H, KVH, hs);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) { /* the queries of position t, gathered into (B, Q) rows */
            len[b] = t + 1;
            memcpy(q + (size_t)b * Q, qkv + ((size_t)b * T + t) * W, sizeof(float) * Q);
        }
        be->f32->attention_decode(row, q, Q, qkv + Q, qkv + Q + KVH * hs, len, B, H, KVH, hs, W, (size_t)T * W, scratch);
        for (int b = 0; b < B; b++) memcpy(got + ((size_t)b * T + t) * Q, row + (size_t)b * Q, sizeof(float) * Q);
    }
    check_ff("out", got, full, (size_t)B * T * Q, TOL_XB, 1);
    group_end();
    free(qkv), free(full), free(lse), free(got), free(row), free(q), free(scratch), free(len);
}

static void xb_decode(const loom_backend *r, const loom_backend *c, int B, int H, int KVH, int hs, int Tmax) {
    group_begin("attention_decode: cpu vs ref, cpu 1 vs 3 threads (B=%d H=%d KVH=%d hs=%d T<=%d)", B, H, KVH, hs,
                Tmax);
    int32_t *len = xmalloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) len[b] = 1 + (b * 97 + 13) % Tmax;
    len[0] = Tmax;
    dec_case d = dec_new(B, H, KVH, hs, Tmax, len);
    const size_t n = (size_t)B * H * hs;
    float *o1 = FALLOC(n), *o2 = FALLOC(n), *o3 = FALLOC(n);
    dec_run(r, &d, o1);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    dec_run(c, &d, o2);
    omp_set_num_threads(3);
    dec_run(c, &d, o3);
    omp_set_num_threads(saved);
    check_ff("out", o2, o1, n, TOL_XB, 1);
    check_bitwise("out does not depend on the thread count", o2, o3, n);
    group_end();
    dec_free(&d), free(len), free(o1), free(o2), free(o3);
}

/* ------------------------------------------------------------------------------------ */
/* cpu vs ref, on larger shapes.                                                        */

static void xb_llama(const loom_backend *r, const loom_backend *c, int N, int C, int F, int nh, int hs) {
    group_begin("rmsnorm, rope, swiglu: cpu vs ref (N=%d C=%d F=%d heads=%d hs=%d)", N, C, F, nh, hs);
    const size_t n = (size_t)N * C;
    float *x = randn_new(n, 1, 0.1f), *w = randn_new(C, 0.3f, 1), *dout = randn_new(n, 1, 0);
    float *o1 = FALLOC(n), *o2 = FALLOC(n), *r1 = FALLOC(N), *r2 = FALLOC(N);
    r->f32->rmsnorm_forward(o1, r1, x, w, N, C, 1e-5f);
    c->f32->rmsnorm_forward(o2, r2, x, w, N, C, 1e-5f);
    check_ff("rmsnorm out", o2, o1, n, TOL_XB, 1);
    float *dx1 = calloc(n, sizeof(float)), *dx2 = calloc(n, sizeof(float));
    float *dw1 = calloc(C, sizeof(float)), *dw2 = calloc(C, sizeof(float));
    r->f32->rmsnorm_backward_acc(dx1, dw1, dout, x, w, r1, N, C);
    c->f32->rmsnorm_backward_acc(dx2, dw2, dout, x, w, r1, N, C);
    check_ff("rmsnorm dinp", dx2, dx1, n, TOL_XB, 1);
    check_ff("rmsnorm dw", dw2, dw1, C, TOL_XB, 1);
    const int stride = nh * hs + 7;
    float *cs = FALLOC((size_t)N * hs / 2), *sn = FALLOC((size_t)N * hs / 2);
    rope_tables(cs, sn, N, hs, 500000.0);
    float *q1 = randn_new((size_t)N * stride, 1, 0), *q2 = fcopy(q1, (size_t)N * stride);
    r->f32->rope(q1, N, N, NULL, nh, hs, stride, cs, sn, 0);
    c->f32->rope(q2, N, N, NULL, nh, hs, stride, cs, sn, 0);
    check_ff("rope", q2, q1, (size_t)N * stride, TOL_XB, 1);
    float *gu = randn_new((size_t)N * 2 * F, 2, 0), *dsw = randn_new((size_t)N * F, 1, 0);
    float *s1 = FALLOC((size_t)N * F), *s2 = FALLOC((size_t)N * F), *g1 = FALLOC((size_t)N * 2 * F),
          *g2 = FALLOC((size_t)N * 2 * F);
    r->f32->swiglu_forward(s1, gu, N, F);
    c->f32->swiglu_forward(s2, gu, N, F);
    check_ff("swiglu out", s2, s1, (size_t)N * F, TOL_XB, 1);
    r->f32->swiglu_backward(g1, dsw, gu, N, F);
    c->f32->swiglu_backward(g2, dsw, gu, N, F);
    check_ff("swiglu dgu", g2, g1, (size_t)N * 2 * F, TOL_XB, 1);
    group_end();
    free(x), free(w), free(dout), free(o1), free(o2), free(r1), free(r2), free(dx1), free(dx2), free(dw1), free(dw2);
    free(cs), free(sn), free(q1), free(q2), free(gu), free(dsw), free(s1), free(s2), free(g1), free(g2);
}

int main(void) {
    const char *seed = getenv("TEST_OPS_SEED");
    if (seed) g_key = strtoull(seed, NULL, 0) * 1000003u;
    const loom_backend *bes[2] = {loom_backend_ref(), loom_backend_cpu()};
    for (int i = 0; i < 2; i++)
        if (bes[i]->reserve(1024, 64)) return fprintf(stderr, "%s\n", loom_error_msg()), 1;
    for (int i = 0; i < 2; i++) {
        const loom_backend *be = bes[i];
        group_begin("table/%s: the Llama entries set", be->name);
        check_true(be->f32->rmsnorm_forward && be->f32->rmsnorm_backward_acc && be->f32->rope && be->f32->swiglu_forward &&
                       be->f32->swiglu_backward && be->f32->attention_decode, "a Llama op or attention_decode is NULL");
        group_end();
        if (grp.fails) continue;
        test_rmsnorm(be, 7, 12, 1e-5f);
        test_rmsnorm(be, 5, 67, 1e-6f);
        test_rope(be, 6, 3, 2, 8, 16, 0);       /* rows of exactly the heads */
        test_rope(be, 5, 5, 3, 4, 3 * 4 + 5, 1); /* q heads inside a wider row, positions given */
        test_swiglu(be, 5, 9);
        const int32_t len1[3] = {1, 9, 5}, len2[2] = {17, 3};
        test_decode(be, 3, 4, 4, 8, 12, len1);   /* multi-head (KVH = H); a row with one position */
        test_decode(be, 2, 6, 2, 16, 20, len2);  /* grouped-query: 3 query heads per kv head */
        test_decode(be, 1, 5, 1, 6, 17, len2);    /* multi-query (KVH = 1) */
        test_decode_vs_forward(be, 2, 13, 6, 3, 8);
        test_decode_vs_forward(be, 1, 9, 4, 4, 12);
    }
    xb_llama(loom_backend_ref(), loom_backend_cpu(), 67, 576, 1536, 9, 64);
    xb_decode(loom_backend_ref(), loom_backend_cpu(), 5, 9, 3, 64, 300);
    xb_decode(loom_backend_ref(), loom_backend_cpu(), 3, 12, 12, 64, 150);
    if (g_failed) {
        printf("test_ops_llama: %d of %d checks FAILED\n", g_failed, g_checks);
        return 1;
    }
    printf("test_ops_llama: %d checks passed\n", g_checks);
    return 0;
}
