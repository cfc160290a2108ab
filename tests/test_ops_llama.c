/* Kernel tests of the Llama ops (RMSNorm, rotary embeddings, SwiGLU) for every backend:
 * each forward against an independent double forward written here, each backward
 * against central finite differences of L = sum(dout * f(x)) in double, accumulate
 * semantics (dinp and dw add into random pre-fills), and cpu against ref. Attention with
 * grouped-query heads is in test_ops with the other attention cases. */
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
    be->rmsnorm_forward(out, rstd, x, w, N, C, eps);
    double *xd = f2d(x, n), *wd = f2d(w, C), *dd = f2d(dout, n), *want = DALLOC(n);
    rms_fwd_d(want, xd, wd, N, C, eps);
    check_fd("out", out, want, n, TOL_FWD, 1);
    /* backward: into random pre-fills, which must be kept (accumulate) */
    float *dx = randn_new(n, 1, 0), *dw = randn_new(C, 1, 0), *dx0 = fcopy(dx, n), *dw0 = fcopy(dw, C);
    be->rmsnorm_backward_acc(dx, dw, dout, x, w, rstd, N, C);
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
    be->rope(y, N, T, pos, nh, hs, stride, cs, sn, 0);
    double *xd = f2d(x, n), *dd = f2d(dout, n), *want = DALLOC(n), *g = DALLOC(n);
    /* the forward as the gradient of L with respect to dout (L is linear in it) */
    rope_ctx ctx = {N, T, nh, hs, stride, pos, cs, sn, xd, dd};
    fd_grad(rope_loss, &ctx, dd, n, want); /* d L / d dout = rope(x); outside the heads 0 */
    for (size_t i = 0; i < n; i++)
        if ((int)(i % (size_t)stride) >= nh * hs) want[i] = x[i]; /* untouched */
    check_fd("out (in place; the rest of the row untouched)", y, want, n, TOL_FWD, 1);
    /* backward: the inverse rotation of dout is dL/dx */
    float *dx = fcopy(dout, n);
    be->rope(dx, N, T, pos, nh, hs, stride, cs, sn, 1);
    fd_grad(rope_loss, &ctx, xd, n, g);
    for (size_t i = 0; i < n; i++)
        if ((int)(i % (size_t)stride) >= nh * hs) g[i] = dout[i];
    check_fd("dinp (inverse rotation)", dx, g, n, TOL_FD, 1);
    /* forward then inverse gives x back */
    be->rope(y, N, T, pos, nh, hs, stride, cs, sn, 1);
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
    be->swiglu_forward(out, gu, N, F);
    double *gd = f2d(gu, n2), *dd = f2d(dout, n), *want = DALLOC(n), *g = DALLOC(n2);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < F; i++) {
            const double a = gd[(size_t)r * 2 * F + i], u = gd[(size_t)r * 2 * F + F + i];
            want[(size_t)r * F + i] = a / (1.0 + exp(-a)) * u;
        }
    check_fd("out", out, want, n, TOL_FWD, 1);
    be->swiglu_backward(dgu, dout, gu, N, F);
    swiglu_ctx ctx = {N, F, gd, dd};
    fd_grad(swiglu_loss, &ctx, gd, n2, g);
    check_fd("dgu (overwrite)", dgu, g, n2, TOL_FD, 1);
    group_end();
    free(gu), free(dout), free(out), free(dgu), free(gd), free(dd), free(want), free(g);
}

/* ------------------------------------------------------------------------------------ */
/* cpu vs ref, on larger shapes.                                                        */

static void xb_llama(const loom_backend *r, const loom_backend *c, int N, int C, int F, int nh, int hs) {
    group_begin("rmsnorm, rope, swiglu: cpu vs ref (N=%d C=%d F=%d heads=%d hs=%d)", N, C, F, nh, hs);
    const size_t n = (size_t)N * C;
    float *x = randn_new(n, 1, 0.1f), *w = randn_new(C, 0.3f, 1), *dout = randn_new(n, 1, 0);
    float *o1 = FALLOC(n), *o2 = FALLOC(n), *r1 = FALLOC(N), *r2 = FALLOC(N);
    r->rmsnorm_forward(o1, r1, x, w, N, C, 1e-5f);
    c->rmsnorm_forward(o2, r2, x, w, N, C, 1e-5f);
    check_ff("rmsnorm out", o2, o1, n, TOL_XB, 1);
    float *dx1 = calloc(n, sizeof(float)), *dx2 = calloc(n, sizeof(float));
    float *dw1 = calloc(C, sizeof(float)), *dw2 = calloc(C, sizeof(float));
    r->rmsnorm_backward_acc(dx1, dw1, dout, x, w, r1, N, C);
    c->rmsnorm_backward_acc(dx2, dw2, dout, x, w, r1, N, C);
    check_ff("rmsnorm dinp", dx2, dx1, n, TOL_XB, 1);
    check_ff("rmsnorm dw", dw2, dw1, C, TOL_XB, 1);
    const int stride = nh * hs + 7;
    float *cs = FALLOC((size_t)N * hs / 2), *sn = FALLOC((size_t)N * hs / 2);
    rope_tables(cs, sn, N, hs, 500000.0);
    float *q1 = randn_new((size_t)N * stride, 1, 0), *q2 = fcopy(q1, (size_t)N * stride);
    r->rope(q1, N, N, NULL, nh, hs, stride, cs, sn, 0);
    c->rope(q2, N, N, NULL, nh, hs, stride, cs, sn, 0);
    check_ff("rope", q2, q1, (size_t)N * stride, TOL_XB, 1);
    float *gu = randn_new((size_t)N * 2 * F, 2, 0), *dsw = randn_new((size_t)N * F, 1, 0);
    float *s1 = FALLOC((size_t)N * F), *s2 = FALLOC((size_t)N * F), *g1 = FALLOC((size_t)N * 2 * F),
          *g2 = FALLOC((size_t)N * 2 * F);
    r->swiglu_forward(s1, gu, N, F);
    c->swiglu_forward(s2, gu, N, F);
    check_ff("swiglu out", s2, s1, (size_t)N * F, TOL_XB, 1);
    r->swiglu_backward(g1, dsw, gu, N, F);
    c->swiglu_backward(g2, dsw, gu, N, F);
    check_ff("swiglu dgu", g2, g1, (size_t)N * 2 * F, TOL_XB, 1);
    group_end();
    free(x), free(w), free(dout), free(o1), free(o2), free(r1), free(r2), free(dx1), free(dx2), free(dw1), free(dw2);
    free(cs), free(sn), free(q1), free(q2), free(gu), free(dsw), free(s1), free(s2), free(g1), free(g2);
}

int main(void) {
    const char *seed = getenv("TEST_OPS_SEED");
    if (seed) g_key = strtoull(seed, NULL, 0) * 1000003u;
    const loom_backend *bes[2] = {loom_backend_ref(), loom_backend_cpu()};
    for (int i = 0; i < 2; i++) {
        const loom_backend *be = bes[i];
        group_begin("table/%s: the Llama entries set", be->name);
        check_true(be->rmsnorm_forward && be->rmsnorm_backward_acc && be->rope && be->swiglu_forward &&
                       be->swiglu_backward, "a Llama op is NULL");
        group_end();
        if (grp.fails) continue;
        test_rmsnorm(be, 7, 12, 1e-5f);
        test_rmsnorm(be, 5, 67, 1e-6f);
        test_rope(be, 6, 3, 2, 8, 16, 0);       /* rows of exactly the heads */
        test_rope(be, 5, 5, 3, 4, 3 * 4 + 5, 1); /* q heads inside a wider row, positions given */
        test_swiglu(be, 5, 9);
    }
    xb_llama(loom_backend_ref(), loom_backend_cpu(), 67, 576, 1536, 9, 64);
    if (g_failed) {
        printf("test_ops_llama: %d of %d checks FAILED\n", g_failed, g_checks);
        return 1;
    }
    printf("test_ops_llama: %d checks passed\n", g_checks);
    return 0;
}
