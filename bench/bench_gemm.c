/* bench_gemm: GFLOP/s of loom's GEMM (loom_backend_cpu()->gemm, i.e. oneDNN's dnnl_sgemm)
 * on the shapes that dominate GPT-2 training at T=256, against the measured fp32 FMA peak
 * and, in the same run, against OpenBLAS's cblas_sgemm when libopenblas.so.0 can be
 * dlopen'ed (Debian: apt-get install libopenblas-dev; the build never depends on it).
 *
 * Shapes, per preset (C channels, BT = B*T rows, V = 50257), with loom's exact calls:
 *   each linear in -> out (qkv C->3C, attn proj C->C, fc C->4C, fc proj 4C->C):
 *     fwd   NN  out(BT,out)  = inp(BT,in) @ w(in,out)        (beta 1: bias preloaded)
 *     dinp  NT  dinp(BT,in)  = dout(BT,out) @ w(in,out)^T
 *     dw    TN  dw(in,out)  += inp(BT,in)^T @ dout(BT,out)
 *   tied LM head, wte(V,C):
 *     fwd   NT  logits(BT,V) = lnf(BT,C) @ wte^T
 *     dlnf  NN  dlnf(BT,C)   = dlogits(BT,V) @ wte
 *     dwte  TN  dwte(V,C)   += dlogits^T @ lnf
 *   smollm (Llama, smollm-135m's shape at B=4 T=256): the linears over (out, in)
 *   weights: fwd NT, dinp NN, dw TN (beta 1), and the same tied head
 *
 * Every number is the median of --trials trials (default 5); a trial repeats the call
 * until it has run at least --min-time seconds and reports the time per call. Each
 * implementation warms up for >= 0.1 s per shape, then the trials of loom and of the
 * references alternate (ABBA...), so other load on the machine hits them alike; the
 * "other" column says how much CPU other processes took while a row ran. The peak is
 * loom_cpu_measure_peak_flops() (the MFU denominator of `loom train`), median of 5.
 *
 * OpenBLAS: the "as installed" column is loaded with OPENBLAS_CORETYPE removed from the
 * environment (Debian's 0.3.21 is a DYNAMIC_ARCH build that picks its kernels from CPUID
 * at load time; the core it picked is printed). If --openblas-coretype NAME is given, or
 * OPENBLAS_CORETYPE was set when bench_gemm started, a second copy of the library is
 * loaded into its own namespace (dlmopen) with that variable set and timed as well.
 *
 * usage: bench_gemm [--trials N] [--threads 1,2] [--preset small|gpt2|smollm|all]
 *                   [--min-time S] [--no-openblas] [--openblas-coretype NAME] [--quick]
 */
#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "loom/core.h"

enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
typedef void (*cblas_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha,
                               const float *A, int lda, const float *B, int ldb, float beta,
                               float *C, int ldc);

typedef struct blas_lib {
    const char *label;
    void *handle;
    cblas_sgemm_fn sgemm;
    void (*set_threads)(int);
    char *(*corename)(void);
    char *(*config)(void);
} blas_lib;

static int load_openblas(blas_lib *lib, const char *label, const char *coretype) {
    memset(lib, 0, sizeof *lib);
    lib->label = label;
    if (coretype) {
        setenv("OPENBLAS_CORETYPE", coretype, 1);
        lib->handle = dlmopen(LM_ID_NEWLM, "libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        unsetenv("OPENBLAS_CORETYPE");
    } else {
        lib->handle = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    }
    if (!lib->handle) {
        printf("note: OpenBLAS (%s) not loaded: %s\n", label, dlerror());
        return 0;
    }
    lib->sgemm = (cblas_sgemm_fn)dlsym(lib->handle, "cblas_sgemm");
    lib->set_threads = (void (*)(int))dlsym(lib->handle, "openblas_set_num_threads");
    lib->corename = (char *(*)(void))dlsym(lib->handle, "openblas_get_corename");
    lib->config = (char *(*)(void))dlsym(lib->handle, "openblas_get_config");
    if (!lib->sgemm || !lib->set_threads) {
        printf("note: libopenblas.so.0 (%s) lacks cblas_sgemm/openblas_set_num_threads; skipped\n", label);
        lib->handle = NULL;
        return 0;
    }
    return 1;
}

typedef struct shape {
    const char *preset, *name;
    int ta, tb, M, N, K;
    float beta;
    int per_step; /* calls per training step (n_layer for the linears, 1 for the LM head) */
} shape;

#define MAX_SHAPES 64
static shape shapes[MAX_SHAPES];
static int n_shapes;

static void add_linear(const char *preset, const char *name_fwd, const char *name_dinp,
                       const char *name_dw, int BT, int in, int out, int L) {
    shapes[n_shapes++] = (shape){preset, name_fwd, 0, 0, BT, out, in, 1.0f, L};
    shapes[n_shapes++] = (shape){preset, name_dinp, 0, 1, BT, in, out, 0.0f, L};
    shapes[n_shapes++] = (shape){preset, name_dw, 1, 0, in, out, BT, 1.0f, L};
}

/* Llama's linears over Hugging Face's (out, in) weights, as llama.c calls them. */
static void add_linear_t(const char *preset, const char *name_fwd, const char *name_dinp,
                         const char *name_dw, int BT, int in, int out, int L) {
    shapes[n_shapes++] = (shape){preset, name_fwd, 0, 1, BT, out, in, 0.0f, L};
    shapes[n_shapes++] = (shape){preset, name_dinp, 0, 0, BT, in, out, 0.0f, L};
    shapes[n_shapes++] = (shape){preset, name_dw, 1, 0, out, in, BT, 1.0f, L};
}

static void add_lmhead(const char *preset, int C, int BT, int V) {
    shapes[n_shapes++] = (shape){preset, "lmhead fwd", 0, 1, BT, V, C, 0.0f, 1};
    shapes[n_shapes++] = (shape){preset, "lmhead dlnf", 0, 0, BT, C, V, 0.0f, 1};
    shapes[n_shapes++] = (shape){preset, "lmhead dwte", 1, 0, V, C, BT, 1.0f, 1};
}

/* smollm-135m: C 576, 9 heads over 3 KV heads of 64 (q/k/v 960 wide), FFN 1536 */
static void add_preset_llama(const char *preset, int C, int W, int F, int BT, int V, int L) {
    add_linear_t(preset, "qkv fwd", "qkv dinp", "qkv dw", BT, C, W, L);
    add_linear_t(preset, "o fwd", "o dinp", "o dw", BT, C, C, L);
    add_linear_t(preset, "gate|up fwd", "gate|up dinp", "gate|up dw", BT, C, 2 * F, L);
    add_linear_t(preset, "down fwd", "down dinp", "down dw", BT, F, C, L);
    add_lmhead(preset, C, BT, V);
}

static void add_preset(const char *preset, int C, int BT, int V, int L) {
    add_linear(preset, "qkv fwd", "qkv dinp", "qkv dw", BT, C, 3 * C, L);
    add_linear(preset, "attproj fwd", "attproj dinp", "attproj dw", BT, C, C, L);
    add_linear(preset, "fc fwd", "fc dinp", "fc dw", BT, C, 4 * C, L);
    add_linear(preset, "fcproj fwd", "fcproj dinp", "fcproj dw", BT, 4 * C, C, L);
    add_lmhead(preset, C, BT, V);
}

typedef struct gemm_args {
    const shape *s;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    float beta;
} gemm_args;

/* impl < 0: loom; otherwise an OpenBLAS copy. */
static const blas_lib *g_libs[2];

static void call(int impl, const gemm_args *g) {
    const shape *s = g->s;
    if (impl < 0) {
        loom_backend_cpu()->f32->gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, g->A, g->lda, g->B, g->ldb,
                                 g->beta, g->C, g->ldc);
    } else {
        g_libs[impl]->sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                            s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, g->A, g->lda,
                            g->B, g->ldb, g->beta, g->C, g->ldc);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* OpenBLAS's pthread workers do not sleep when a call ends: they spin on sched_yield() for
 * 2^28 TSC cycles (~0.1 s; OPENBLAS_THREAD_TIMEOUT), which under CFS takes about half of
 * the CPU time from loom's OpenMP threads if loom runs next (seen as loom at ~150 GFLOP/s
 * on 2 threads). So after OpenBLAS runs with more than one thread we wait 0.15 s for its
 * workers to go to sleep before anything else is timed; OpenBLAS itself is left as installed. */
static int g_threads = 1;
static void openblas_settle(void) {
    if (g_threads > 1) {
        struct timespec ts = {0, 150000000L};
        nanosleep(&ts, NULL);
    }
}

/* Times every implementation on one shape with their trials interleaved (trial i runs
 * loom, OpenBLAS, ... in that order for even i and in reverse for odd i), so that load
 * from other processes hits all of them alike. Each implementation first warms up for
 * >= 0.1 s; its calls per trial are set so a trial lasts >= min_time; a call cheaper than
 * 50 ms gets one untimed call before each trial (wakes that library's threads).
 * med[k]: median seconds per call of implementation k; spread[k] = (max-min)/median. */
#define MAX_IMPL 3
static void time_row(const int *impls, int n_impl, const gemm_args *g, int trials, double min_time,
                     double *med, double *spread) {
    int reps[MAX_IMPL];
    double t_call[MAX_IMPL], t[MAX_IMPL][64];
    if (trials > 64) trials = 64;
    for (int k = 0; k < n_impl; k++) {
        double t0 = loom_now();
        int warm = 0;
        do {
            call(impls[k], g);
            warm++;
        } while (loom_now() - t0 < 0.1);
        t_call[k] = (loom_now() - t0) / warm;
        reps[k] = (int)ceil(min_time / t_call[k]);
        if (reps[k] < 1) reps[k] = 1;
        if (impls[k] >= 0) openblas_settle();
    }
    for (int i = 0; i < trials; i++) {
        for (int j = 0; j < n_impl; j++) {
            int k = i % 2 ? n_impl - 1 - j : j;
            if (t_call[k] < 0.05) call(impls[k], g);
            double a = loom_now();
            for (int r = 0; r < reps[k]; r++) call(impls[k], g);
            t[k][i] = (loom_now() - a) / reps[k];
            if (impls[k] >= 0) openblas_settle();
        }
    }
    for (int k = 0; k < n_impl; k++) {
        med[k] = median(t[k], trials); /* sorts t[k] */
        spread[k] = (t[k][trials - 1] - t[k][0]) / med[k];
    }
}

/* CPU time used on the whole machine (from /proc/stat, steal included) and by this process. */
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 4) return 0;
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; /* all but idle, iowait */
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}
static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static float *alloc_rand(size_t n, uint64_t key) {
    float *p = loom_alloc(n * sizeof(float), "bench_gemm buffer");
    if (!p) {
        fprintf(stderr, "bench_gemm: %s\n", loom_error_msg());
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = 0.02f * (loom_rng_uniform(key, i) - 0.5f);
    return p;
}

static double peak_median(int threads) {
    double v[5];
    for (int i = 0; i < 5; i++) v[i] = loom_cpu_measure_peak_flops(threads, 0.2);
    return median(v, 5);
}

int main(int argc, char **argv) {
    int trials = 5, quick = 0, use_openblas = 1;
    double min_time = 0.05;
    const char *threads_list = "1,2", *preset = "all";
    const char *caller_coretype = getenv("OPENBLAS_CORETYPE");
    const char *coretype = caller_coretype && *caller_coretype ? caller_coretype : NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--trials") && v) trials = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads_list = argv[++i];
        else if (!strcmp(a, "--preset") && v) preset = argv[++i];
        else if (!strcmp(a, "--min-time") && v) min_time = atof(argv[++i]);
        else if (!strcmp(a, "--openblas-coretype") && v) coretype = argv[++i];
        else if (!strcmp(a, "--no-openblas")) use_openblas = 0;
        else if (!strcmp(a, "--quick")) quick = 1;
        else {
            int help = !strcmp(a, "--help") || !strcmp(a, "-h");
            fprintf(help ? stdout : stderr,
                    "usage: %s [--trials N>=5] [--threads 1,2] [--preset small|gpt2|smollm|all] [--min-time S]\n"
                    "          [--no-openblas] [--openblas-coretype NAME] [--quick]\n",
                    argv[0]);
            return help ? 0 : 2;
        }
    }
    if (trials < 1) trials = 1;
    if (quick) min_time = 0.0;

    loom_cpu_info ci;
    loom_cpu_detect(&ci);
    printf("bench_gemm: loom GEMM = %s\n", loom_gemm_library());
    printf("cpu: %s, %d logical CPUs, AVX-512F %s\n", ci.model, ci.n_cpus, ci.has_avx512f ? "yes" : "no");
    printf("trials: median of %d (each >= %.3f s of calls, after >= 0.1 s warm-up)\n", trials, min_time);

    /* OpenBLAS as installed: load it with no OPENBLAS_CORETYPE in the environment. */
    blas_lib libs[2];
    int n_libs = 0;
    printf("OPENBLAS_CORETYPE at start: %s\n", caller_coretype ? caller_coretype : "(not set)");
    if (use_openblas) {
        unsetenv("OPENBLAS_CORETYPE");
        if (load_openblas(&libs[n_libs], "OpenBLAS", NULL)) {
            printf("OpenBLAS as installed (loaded with OPENBLAS_CORETYPE unset): core %s; %s\n",
                   libs[n_libs].corename ? libs[n_libs].corename() : "?",
                   libs[n_libs].config ? libs[n_libs].config() : "?");
            g_libs[n_libs] = &libs[n_libs];
            n_libs++;
            if (coretype) {
                static char label[64];
                snprintf(label, sizeof label, "OB:%s", coretype);
                if (load_openblas(&libs[n_libs], label, coretype)) {
                    printf("OpenBLAS with OPENBLAS_CORETYPE=%s (second copy via dlmopen): core %s\n",
                           coretype, libs[n_libs].corename ? libs[n_libs].corename() : "?");
                    g_libs[n_libs] = &libs[n_libs];
                    n_libs++;
                }
            }
        } else {
            printf("note: OpenBLAS comparison skipped (apt-get install libopenblas-dev to enable)\n");
        }
        if (caller_coretype) setenv("OPENBLAS_CORETYPE", caller_coretype, 1);
    } else {
        printf("note: OpenBLAS comparison disabled (--no-openblas)\n");
    }

    if (!strcmp(preset, "small") || !strcmp(preset, "all")) add_preset("small", 384, 8 * 256, 50257, 6);
    if (!strcmp(preset, "gpt2") || !strcmp(preset, "all")) add_preset("gpt2", 768, 4 * 256, 50257, 12);
    if (!strcmp(preset, "smollm") || !strcmp(preset, "all"))
        add_preset_llama("smollm", 576, 15 * 64, 1536, 4 * 256, 50257, 30);
    if (n_shapes == 0) {
        fprintf(stderr, "bench_gemm: unknown --preset %s\n", preset);
        return 2;
    }

    double worst_other = 0.0;
    char tl[128];
    snprintf(tl, sizeof tl, "%s", threads_list);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        int threads = atoi(tok);
        if (threads < 1) continue;
        omp_set_num_threads(threads);
        g_threads = threads;
        for (int l = 0; l < n_libs; l++) libs[l].set_threads(threads);
        double peak = peak_median(threads);
        printf("\n== %d thread%s: measured fp32 FMA peak %.1f GFLOP/s (median of 5) ==\n", threads,
               threads > 1 ? "s" : "", peak / 1e9);
        printf("%-6s %-13s %-2s %6s %6s %6s | %8s %6s %5s", "preset", "gemm", "op", "M", "N", "K",
               "loom GF/s", "%peak", "sprd");
        for (int l = 0; l < n_libs; l++) printf(" | %9.9s GF/s %6s %9s", libs[l].label, "%peak", "loom/ref");
        printf(" | other | max|diff|\n");

        /* per-preset totals over one training step's GEMMs */
        double step_flops = 0, step_t[3] = {0, 0, 0};
        const char *cur = NULL;
        for (int si = 0; si <= n_shapes; si++) {
            if (si == n_shapes || (cur && strcmp(cur, shapes[si].preset))) {
                printf("%-6s %-13s    %20s | %8.1f %5.1f%%      ", cur, "STEP TOTAL", "", step_flops / step_t[0] / 1e9,
                       100.0 * step_flops / step_t[0] / peak);
                for (int l = 0; l < n_libs; l++)
                    printf(" | %14.1f %5.1f%% %8.2fx", step_flops / step_t[l + 1] / 1e9,
                           100.0 * step_flops / step_t[l + 1] / peak, step_t[l + 1] / step_t[0]);
                printf(" | GEMM s/step: loom %.3f", step_t[0]);
                for (int l = 0; l < n_libs; l++) printf(", %s %.3f", libs[l].label, step_t[l + 1]);
                printf("\n");
                step_flops = 0;
                step_t[0] = step_t[1] = step_t[2] = 0;
                if (si == n_shapes) break;
            }
            const shape *s = &shapes[si];
            cur = s->preset;
            size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
            gemm_args g = {s, alloc_rand(na, 1 + si), alloc_rand(nb, 100 + si), alloc_rand(nc, 200 + si),
                           s->ta ? s->M : s->K, s->tb ? s->K : s->N, s->N, s->beta};
            double flops = 2.0 * s->M * s->N * s->K;
            int impls[MAX_IMPL] = {-1, 0, 1};
            double med[MAX_IMPL], sp[MAX_IMPL];
            double w0 = loom_now(), b0 = machine_busy_s(), c0 = self_cpu_s();
            time_row(impls, 1 + n_libs, &g, trials, min_time, med, sp);
            double wall = loom_now() - w0, other = machine_busy_s() - b0 - (self_cpu_s() - c0);
            double other_pct = wall > 0 ? 100.0 * other / (wall * ci.n_cpus) : 0.0;
            if (other_pct < 0) other_pct = 0;
            if (other_pct > worst_other) worst_other = other_pct;
            double t_loom = med[0];
            printf("%-6s %-13s %c%c %6d %6d %6d | %9.1f %5.1f%% %4.0f%%", s->preset, s->name, s->ta ? 'T' : 'N',
                   s->tb ? 'T' : 'N', s->M, s->N, s->K, flops / t_loom / 1e9, 100.0 * flops / t_loom / peak,
                   100.0 * sp[0]);
            step_flops += s->per_step * flops;
            step_t[0] += s->per_step * t_loom;
            for (int l = 0; l < n_libs; l++) {
                double t_ref = med[l + 1];
                printf(" | %14.1f %5.1f%% %8.2fx", flops / t_ref / 1e9, 100.0 * flops / t_ref / peak, t_ref / t_loom);
                step_t[l + 1] += s->per_step * t_ref;
            }
            printf(" | %4.0f%%", other_pct);
            /* correctness cross-check against the first OpenBLAS copy, beta = 0 */
            if (n_libs > 0) {
                float *c2 = loom_alloc(nc * sizeof(float), "bench_gemm check");
                gemm_args g0 = g, g1 = g;
                g0.beta = g1.beta = 0.0f;
                g1.C = c2;
                call(-1, &g0);
                call(0, &g1);
                double md = 0, mx = 0;
                for (size_t i = 0; i < nc; i++) {
                    double d = fabs((double)g0.C[i] - c2[i]);
                    if (d > md) md = d;
                    if (fabs(c2[i]) > mx) mx = fabs(c2[i]);
                }
                printf(" | %.1e", mx > 0 ? md / mx : md);
                loom_free(c2);
            } else {
                printf(" | -");
            }
            printf("\n");
            fflush(stdout);
            loom_free((void *)g.A);
            loom_free((void *)g.B);
            loom_free(g.C);
        }
        double peak_after = peak_median(threads);
        printf("peak re-measured after the %d-thread table: %.1f GFLOP/s\n", threads, peak_after / 1e9);
    }
    printf("\nGF/s = 2*M*N*K / median time per call; %%peak against the fp32 FMA peak above;\n"
           "loom/ref = reference time / loom time (>1: loom faster); sprd = (max-min)/median of loom's trials;\n"
           "other = CPU time used by other processes (steal included) while the row ran, %% of all CPUs:\n"
           "  above ~5%% the row's numbers are disturbed (the interleaved trials still share the disturbance);\n"
           "max|diff| = max |loom - OpenBLAS| / max |OpenBLAS| with beta 0;\n"
           "STEP TOTAL = all of one training step's GEMMs (linears x n_layer + LM head), FLOP-weighted.\n");
    printf("worst 'other' load during any row: %.0f%%%s\n", worst_other,
           worst_other > 5 ? " (some rows ran beside other work: compare the columns of a row, not rows)" : "");
    return 0;
}
