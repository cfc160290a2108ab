/* The harness of the kernel tests (test_ops, test_ops_llama): tolerances, one summary
 * line per group of checks with its largest error, comparators over floats and doubles,
 * seeded data, and central finite differences in double. Included by one test file
 * each, so everything is static. */
#ifndef LOOM_TESTS_OPS_HARNESS_H
#define LOOM_TESTS_OPS_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/core.h"

/* each test uses a part of the harness */
#pragma GCC diagnostic ignored "-Wunused-function"

#define FD_H 1e-6
/* Tolerances (see the summary lines for the errors actually observed). */
#define TOL_FWD 1e-5 /* float forward vs double forward */
#define TOL_FD 5e-5  /* float backward vs double finite differences */
#define TOL_XB 1e-5  /* cpu vs ref, forward and backward */

/* ------------------------------------------------------------------------------------ */
/* Bookkeeping: one group per printed line, any number of checks inside it.              */

static int g_checks, g_failed, g_verbose;
static struct {
    char name[200];
    double worst_ratio, worst_err, worst_tol;
    int n, fails;
} grp;

static void group_begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void group_begin(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(grp.name, sizeof grp.name, fmt, ap);
    va_end(ap);
    grp.worst_ratio = grp.worst_err = grp.worst_tol = 0;
    grp.n = grp.fails = 0;
}

static void group_end(void) {
    if (grp.worst_tol > 0)
        printf("%-4s %-72s %3d checks, max err %.2e (tol %.0e)\n", grp.fails ? "FAIL" : "ok",
               grp.name, grp.n, grp.worst_err, grp.worst_tol);
    else
        printf("%-4s %-72s %3d checks\n", grp.fails ? "FAIL" : "ok", grp.name, grp.n);
    fflush(stdout);
}

static void note_err(double err, double tol) {
    double r = tol > 0 ? err / tol : (err > 0 ? INFINITY : 0);
    if (r >= grp.worst_ratio || grp.worst_tol == 0) {
        grp.worst_ratio = r;
        grp.worst_err = err;
        grp.worst_tol = tol;
    }
}

/* Core comparator over doubles: every element must satisfy err <= tol (NaN fails), with
 * err = |got - want| / max(floor, |want|, scale[i]). A scale (when given) is the sum of
 * the magnitudes of the terms that make up the element (e.g. sum_k |a_ik b_kj| for a
 * GEMM), the natural yardstick for a float sum that may cancel. */
static void check_dds(const char *what, const double *got, const double *want,
                      const double *scale, size_t n, double tol, double floor) {
    g_checks++;
    grp.n++;
    size_t bad = 0;
    double maxerr = 0;
    for (size_t i = 0; i < n; i++) {
        double den = fabs(want[i]) > floor ? fabs(want[i]) : floor;
        if (scale && scale[i] > den) den = scale[i];
        double err = fabs(got[i] - want[i]) / den;
        if (isnan(err)) err = INFINITY;
        if (err > maxerr) maxerr = err;
        if (!(err <= tol)) {
            if (bad < 6)
                fprintf(stderr,
                        "  MISMATCH [%s] %s[%zu]: got %.9g want %.9g (err %.3e > tol %.1e, "
                        "denominator %.3g)\n",
                        grp.name, what, i, got[i], want[i], err, tol, den);
            bad++;
        }
    }
    note_err(maxerr, tol);
    if (g_verbose) printf("       %-40s max err %.2e (tol %.0e, n=%zu)\n", what, maxerr, tol, n);
    if (bad) {
        fprintf(stderr, "  FAIL [%s] %s: %zu of %zu elements out of tolerance, max err %.3e\n",
                grp.name, what, bad, n, maxerr);
        g_failed++;
        grp.fails++;
    }
}

static void check_dd(const char *what, const double *got, const double *want, size_t n,
                     double tol, double floor) {
    check_dds(what, got, want, NULL, n, tol, floor);
}

static double *f2d(const float *x, size_t n) {
    double *d = malloc(sizeof *d * (n ? n : 1));
    if (!d) abort();
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static void check_fd(const char *what, const float *got, const double *want, size_t n,
                     double tol, double floor) {
    double *g = f2d(got, n);
    check_dd(what, g, want, n, tol, floor);
    free(g);
}

/* scale: optional float array of term magnitudes, see check_dds. */
__attribute__((unused)) static void check_ffs(const char *what, const float *got,
                                              const float *want, const float *scale, size_t n,
                                              double tol, double floor) {
    double *g = f2d(got, n), *w = f2d(want, n), *sc = scale ? f2d(scale, n) : NULL;
    check_dds(what, g, w, sc, n, tol, floor);
    free(g);
    free(w);
    free(sc);
}

__attribute__((unused)) static void check_ff(const char *what, const float *got,
                                             const float *want, size_t n, double tol,
                                             double floor) {
    check_ffs(what, got, want, NULL, n, tol, floor);
}

/* got - base (both floats, subtracted in double) against want: isolates what an
 * accumulating kernel added to pre-filled random values. */
static void check_added(const char *what, const float *got, const float *base, const double *want,
                        size_t n, double tol) {
    double *g = malloc(sizeof *g * (n ? n : 1));
    if (!g) abort();
    for (size_t i = 0; i < n; i++) g[i] = (double)got[i] - base[i];
    check_dd(what, g, want, n, tol, 1.0);
    free(g);
}

static void check_true(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_true(int ok, const char *fmt, ...) {
    g_checks++;
    grp.n++;
    if (ok) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  FAIL [%s] ", grp.name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_failed++;
    grp.fails++;
}

static void check_bitwise(const char *what, const float *a, const float *b, size_t n) {
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) first = i;
    if (first == n) {
        check_true(1, "%s", what);
    } else {
        check_true(0, "%s: not bit-identical at [%zu]: %.9g vs %.9g", what, first, a[first],
                   b[first]);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Data helpers.                                                                        */

static uint64_t g_key = 0x5eed;

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test_ops: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return p;
}
#define FALLOC(n) ((float *)xmalloc(sizeof(float) * (size_t)(n)))
#define DALLOC(n) ((double *)xmalloc(sizeof(double) * (size_t)(n)))

static void randn(float *x, size_t n, float scale, float shift) {
    uint64_t key = g_key++;
    for (size_t i = 0; i < n; i++) x[i] = shift + scale * loom_rng_normal(key, i);
}

static float *randn_new(size_t n, float scale, float shift) {
    float *x = FALLOC(n);
    randn(x, n, scale, shift);
    return x;
}

static void rand_tokens(int32_t *t, size_t n, int V) {
    uint64_t key = g_key++;
    for (size_t i = 0; i < n; i++) t[i] = (int32_t)(loom_hash64(key, i) % (uint64_t)V);
}

static float *fcopy(const float *x, size_t n) {
    float *y = FALLOC(n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}

static void fill(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

/* ------------------------------------------------------------------------------------ */
/* Finite differences.                                                                  */

typedef double (*loss_fn)(void *ctx);

/* g[i] = dL/dx[i] by central differences, for every element of x. */
static void fd_grad(loss_fn f, void *ctx, double *x, size_t n, double *g) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i], xp = x0 + FD_H, xm = x0 - FD_H;
        x[i] = xp;
        double lp = f(ctx);
        x[i] = xm;
        double lm = f(ctx);
        x[i] = x0;
        g[i] = (lp - lm) / (xp - xm);
    }
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
#endif
