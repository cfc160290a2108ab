/* The "cpu" backend: OpenMP threads + SIMD loops, GEMM from oneDNN (dnnl_sgemm picks
 * its AVX-512/AVX2 kernels from CPUID itself, so it is fast with no variable set; see
 * bench/bench_gemm for the measurement that chose it). Every reduction runs in a fixed
 * order; column sums are split by column so they do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "kernels/cpu/simd.h"
#include "kernels/kernels.h"
#include "loom/safetensors.h"
#include "loom/core.h"

static void cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                  beta, C, ldc);
    if (st != dnnl_success) LOOM_PANIC("dnnl_sgemm failed (status %d, M=%d N=%d K=%d)", (int)st, M, N, K);
}

/* This thread's share [c0, c1) of C columns, in multiples of 16 floats (whole cache
 * lines): each column is summed by one thread, over all rows in order. */
static void my_columns(int C, int *c0, int *c1) {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int per = ((C + nt - 1) / nt + 15) & ~15;
    *c0 = id * per < C ? id * per : C;
    *c1 = *c0 + per < C ? *c0 + per : C;
}

/* Column sums of x(N,C) added into out(C); threads split the columns, rows run in order. */
static void colsum_acc(float *out, const float *x, int N, int C) {
#pragma omp parallel
    {
        int c0, c1;
        my_columns(C, &c0, &c1);
        for (int n = 0; n < N && c0 < c1; n++) {
            const float *row = x + (size_t)n * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) out[c] += row[c];
        }
    }
}

static void cpu_encoder_forward(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                                const float *wpe, int B, int T, int C, int v0, int vn) {
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const int mine = (unsigned)(inp[bt] - v0) < (unsigned)vn;
        const float *e = wte + (size_t)(mine ? inp[bt] - v0 : 0) * C;
        float *o = out + (size_t)bt * C;
        if (!wpe) {
            if (mine) memcpy(o, e, sizeof(float) * (size_t)C);
            else memset(o, 0, sizeof(float) * (size_t)C);
            continue;
        }
        const float *p = wpe + (size_t)(pos ? pos[bt] : bt % T) * C;
        if (!mine) {
            memcpy(o, p, sizeof(float) * (size_t)C);
            continue;
        }
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

static void cpu_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                 int B, int T, int C, int v0, int vn) {
#pragma omp parallel
    {
        int c0, c1;
        my_columns(C, &c0, &c1);
        for (int bt = 0; bt < B * T && c0 < c1; bt++) {
            const float *d = dout + (size_t)bt * C;
            const int mine = (unsigned)(inp[bt] - v0) < (unsigned)vn;
            float *e = dwte + (size_t)(mine ? inp[bt] - v0 : 0) * C;
            if (dwpe) {
                float *p = dwpe + (size_t)(bt % T) * C;
                if (mine) {
#pragma omp simd
                    for (int c = c0; c < c1; c++) {
                        e[c] += d[c];
                        p[c] += d[c];
                    }
                } else {
#pragma omp simd
                    for (int c = c0; c < c1; c++) p[c] += d[c];
                }
            } else if (mine) {
#pragma omp simd
                for (int c = c0; c < c1; c++) e[c] += d[c];
            }
        }
    }
}

static void cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += x[c];
        float m = s / C, v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        float r = 1.0f / sqrtf(v / C + 1e-5f);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * w[c] + b[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

static void cpu_layernorm_backward_acc(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        float *di = dinp + (size_t)n * C;
        float m = mean[n], r = rstd[n], dsum = 0.0f, dxsum = 0.0f;
#pragma omp simd reduction(+ : dsum, dxsum)
        for (int c = 0; c < C; c++) {
            float dn = w[c] * d[c];
            dsum += dn;
            dxsum += dn * (x[c] - m) * r;
        }
        dsum /= C;
        dxsum /= C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float xh = (x[c] - m) * r;
            di[c] += (w[c] * d[c] - dsum - xh * dxsum) * r;
        }
    }
    /* parameter gradients: column sums, split by column */
#pragma omp parallel
    {
        int c0, c1;
        my_columns(C, &c0, &c1);
        for (int n = 0; n < N && c0 < c1; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            float m = mean[n], r = rstd[n];
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                dw[c] += d[c] * (x[c] - m) * r;
                db[c] += d[c];
            }
        }
    }
}

static void cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                                float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C, ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        const float r = 1.0f / sqrtf(ss / C + eps);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = x[c] * r * w[c];
        rstd[n] = r;
    }
}

static void cpu_rmsnorm_backward_acc(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                     const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
        float *di = dinp + (size_t)n * C;
        const float r = rstd[n];
        float gx = 0.0f;
#pragma omp simd reduction(+ : gx)
        for (int c = 0; c < C; c++) gx += w[c] * d[c] * x[c];
        const float k = r * r * r * gx / C;
#pragma omp simd
        for (int c = 0; c < C; c++) di[c] += r * w[c] * d[c] - k * x[c];
    }
    /* the weight's gradient: column sums, split by column */
#pragma omp parallel
    {
        int c0, c1;
        my_columns(C, &c0, &c1);
        for (int n = 0; n < N && c0 < c1; n++) {
            const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
            const float r = rstd[n];
#pragma omp simd
            for (int c = c0; c < c1; c++) dw[c] += d[c] * x[c] * r;
        }
    }
}

static void cpu_rope(float *x, int N, int T, const int32_t *pos, int nh, int hs, int stride, const float *cos,
                     const float *sin, int inverse) {
    const int half = hs / 2;
    const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        const size_t p = (size_t)(pos ? pos[r] : r % T);
        const float *cr = cos + p * half, *sr = sin + p * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * stride + (size_t)h * hs;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const float c = cr[i], s = sign * sr[i], a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

static void cpu_swiglu_forward(float *out, const float *gu, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        const float *g = gu + (size_t)r * 2 * F, *u = g + F;
        float *o = out + (size_t)r * F;
#pragma omp simd
        for (int i = 0; i < F; i++) o[i] = g[i] / (1.0f + loom_expf(-g[i])) * u[i];
    }
}

static void cpu_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < N; r++) {
        const float *g = gu + (size_t)r * 2 * F, *u = g + F, *d = dout + (size_t)r * F;
        float *dg = dgu + (size_t)r * 2 * F, *du = dg + F;
#pragma omp simd
        for (int i = 0; i < F; i++) {
            const float sg = 1.0f / (1.0f + loom_expf(-g[i]));
            dg[i] = d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
            du[i] = d[i] * g[i] * sg;
        }
    }
}

static void cpu_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                               int N, int C, int OC) {
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
        beta = 1.0f;
    }
    cpu_gemm(0, 0, N, OC, C, 1.0f, inp, C, w, OC, beta, out, OC);
}

static void cpu_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    if (dinp) cpu_gemm(0, 1, N, C, OC, 1.0f, dout, OC, w, OC, 0.0f, dinp, C);
    cpu_gemm(1, 0, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, OC);
    if (dbias) colsum_acc(dbias, dout, N, OC);
}

/* Per-thread attention workspace (2 x QB x T floats), sized by cpu_reserve before the
 * ops run, so no op allocates. Held in a global table (not thread-local storage) so
 * that it stays reachable for leak checkers. */
#define LOOM_MAX_THREADS 1024
enum { QB = 64 };
static float *g_ws[LOOM_MAX_THREADS];
static size_t g_ws_cap[LOOM_MAX_THREADS];

static loom_status cpu_reserve(int max_T, int threads) {
    if (threads > LOOM_MAX_THREADS) return loom_error(LOOM_ERR_ARG, "--threads: at most %d", LOOM_MAX_THREADS);
    const size_t floats = (size_t)2 * QB * (size_t)(max_T > 0 ? max_T : 1);
    for (int id = 0; id < threads; id++) {
        if (g_ws_cap[id] >= floats) continue;
        loom_free(g_ws[id]);
        g_ws_cap[id] = 0;
        if (!(g_ws[id] = loom_alloc(floats * sizeof(float), "attention workspace"))) return LOOM_ERR_NOMEM;
        g_ws_cap[id] = floats;
    }
    return LOOM_OK;
}

static size_t cpu_reserve_bytes(int max_T, int threads) {
    return (size_t)threads * 2 * QB * (size_t)(max_T > 0 ? max_T : 1) * sizeof(float);
}

static float *thread_workspace(size_t floats) {
    const int id = omp_get_thread_num();
    if (id >= LOOM_MAX_THREADS || g_ws_cap[id] < floats)
        LOOM_PANIC("attention workspace of thread %d: %zu floats needed, backend reserve() gave %zu", id, floats,
                   id < LOOM_MAX_THREADS ? g_ws_cap[id] : 0);
    return g_ws[id];
}

static void host_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void host_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void host_sync(void) {}
static int f32_only(int dtype) { return dtype == LOOM_DTYPE_F32; }

/* Attention by blocks of QB query rows, one (batch, head) per task. Each block's scores
 * against its causal prefix of keys are one small GEMM into the thread's workspace
 * (QB x T floats, never B*H*T*T), the softmax runs over those rows, and P @ V is a
 * second GEMM. The GEMMs run single-threaded inside the task (nested parallelism is
 * off), which keeps the result independent of scheduling. */

static void cpu_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int H, int KVH,
                                  int hs) {
    const int W = (H + 2 * KVH) * hs, C = H * hs, G = H / KVH; /* row widths; query heads per group */
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel
    {
        float *S = thread_workspace((size_t)QB * T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const float *q = qkv + (size_t)b * T * W + h * hs, *k = qkv + (size_t)b * T * W + C + (h / G) * hs;
                const float *v = k + KVH * hs;
                float *o = out + (size_t)b * T * C + h * hs;
                float *l = lse + ((size_t)b * H + h) * T;
                for (int t0 = 0; t0 < T; t0 += QB) {
                    const int rows = t0 + QB < T ? QB : T - t0, n = t0 + rows; /* keys [0, n) */
                    cpu_gemm(0, 1, rows, n, hs, scale, q + (size_t)t0 * W, W, k, W, 0.0f, S, n);
                    for (int r = 0; r < rows; r++) {
                        float *row = S + (size_t)r * n, mx = -INFINITY, sum = 0.0f;
                        const int valid = t0 + r + 1;
#pragma omp simd reduction(max : mx)
                        for (int j = 0; j < valid; j++) mx = row[j] > mx ? row[j] : mx;
#pragma omp simd reduction(+ : sum)
                        for (int j = 0; j < valid; j++) {
                            row[j] = loom_expf(row[j] - mx);
                            sum += row[j];
                        }
                        const float inv = 1.0f / sum;
#pragma omp simd
                        for (int j = 0; j < valid; j++) row[j] *= inv;
                        for (int j = valid; j < n; j++) row[j] = 0.0f; /* causal mask */
                        l[t0 + r] = mx + logf(sum);
                    }
                    cpu_gemm(0, 0, rows, hs, n, 1.0f, S, n, v, W, 0.0f, o + (size_t)t0 * C, C);
                }
            }
    }
}

/* Backward by the same blocks, recomputing P from the saved log-sum-exp:
 * dP = dO V^T, dS = P * (dP - rowsum(dO * O)) * scale, dQ = dS K, dK += dS^T Q,
 * dV += P^T dO. One task per (batch, key/value head): its query heads add into the
 * shared dK, dV one after another, in head order. Workspace: 2 x QB x T floats per thread. */
static void cpu_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                   const float *lse, int B, int T, int H, int KVH, int hs) {
    const int W = (H + 2 * KVH) * hs, C = H * hs, G = H / KVH;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel
    {
        float *P = thread_workspace((size_t)2 * QB * T), *dS = P + (size_t)QB * T;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int kh = 0; kh < KVH; kh++) {
                const size_t kbase = (size_t)b * T * W + C + (size_t)kh * hs;
                const float *k = qkv + kbase, *v = k + KVH * hs;
                float *dk = dqkv + kbase, *dv = dk + KVH * hs;
                for (int j = 0; j < T; j++) {
                    memset(dk + (size_t)j * W, 0, hs * sizeof(float));
                    memset(dv + (size_t)j * W, 0, hs * sizeof(float));
                }
                for (int h = kh * G; h < (kh + 1) * G; h++) {
                    const size_t qbase = (size_t)b * T * W + (size_t)h * hs;
                    const float *q = qkv + qbase;
                    float *dq = dqkv + qbase;
                    const float *dO = dout + (size_t)b * T * C + h * hs, *O = out + (size_t)b * T * C + h * hs;
                    const float *l = lse + ((size_t)b * H + h) * T;
                    for (int t0 = 0; t0 < T; t0 += QB) {
                        const int rows = t0 + QB < T ? QB : T - t0, n = t0 + rows;
                        cpu_gemm(0, 1, rows, n, hs, scale, q + (size_t)t0 * W, W, k, W, 0.0f, P, n);
                        cpu_gemm(0, 1, rows, n, hs, 1.0f, dO + (size_t)t0 * C, C, v, W, 0.0f, dS, n);
                        for (int r = 0; r < rows; r++) {
                            const int t = t0 + r, valid = t + 1;
                            const float *dOr = dO + (size_t)t * C, *Or = O + (size_t)t * C;
                            float *pr = P + (size_t)r * n, *dr = dS + (size_t)r * n, D = 0.0f;
#pragma omp simd reduction(+ : D)
                            for (int i = 0; i < hs; i++) D += dOr[i] * Or[i];
                            const float lt = l[t];
#pragma omp simd
                            for (int j = 0; j < valid; j++) {
                                float p = loom_expf(pr[j] - lt);
                                pr[j] = p;
                                dr[j] = p * (dr[j] - D) * scale;
                            }
                            for (int j = valid; j < n; j++) pr[j] = dr[j] = 0.0f;
                        }
                        cpu_gemm(0, 0, rows, hs, n, 1.0f, dS, n, k, W, 0.0f, dq + (size_t)t0 * W, W);
                        cpu_gemm(1, 0, n, hs, rows, 1.0f, dS, n, q + (size_t)t0 * W, W, 1.0f, dk, W);
                        cpu_gemm(1, 0, n, hs, rows, 1.0f, P, n, dO + (size_t)t0 * C, C, 1.0f, dv, W);
                    }
                }
            }
    }
}

/* Decode attention: one task per (row, query head), each with its own softmax row in
 * the scratch, so the result depends neither on the thread count nor on scheduling.
 * Scores and P @ V are SIMD over the head's dimensions; the softmax (libm expf, summed
 * in key order) is the arithmetic GPT-2's decoding has always used. */
static void cpu_attention_decode(float *out, const float *q, int q_stride, const float *k, const float *v,
                                 const int32_t *len, int B, int H, int KVH, int hs, size_t row_stride,
                                 size_t batch_stride, float *scratch) {
    const int G = H / KVH;
    const float scale = 1.0f / sqrtf((float)hs);
    int smax = 0;
    for (int b = 0; b < B; b++) smax = len[b] > smax ? len[b] : smax;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *s = scratch + ((size_t)b * H + h) * smax;
            const float *qh = q + (size_t)b * q_stride + (size_t)h * hs;
            const size_t base = (size_t)b * batch_stride + (size_t)(h / G) * hs;
            const int n = len[b];
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) {
                const float *kj = k + base + (size_t)j * row_stride;
                float d = 0.0f;
#pragma omp simd reduction(+ : d)
                for (int i = 0; i < hs; i++) d += qh[i] * kj[i];
                s[j] = d * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < n; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            float *o = out + ((size_t)b * H + h) * hs;
            for (int i = 0; i < hs; i++) o[i] = 0.0f;
            for (int j = 0; j < n; j++) {
                const float *vj = v + base + (size_t)j * row_stride, p = s[j] / sum;
#pragma omp simd
                for (int i = 0; i < hs; i++) o[i] += p * vj[i];
            }
        }
}

static void cpu_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + loom_tanhf(LOOM_GELU_S * (x + LOOM_GELU_C * x * x * x)));
    }
}

static void cpu_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float t = loom_tanhf(LOOM_GELU_S * (x + LOOM_GELU_C * x * x * x));
        float du = LOOM_GELU_S * (1.0f + 3.0f * LOOM_GELU_C * x * x);
        dinp[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

static void cpu_residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_crossentropy(float *losses, float *logits, const int32_t *targets, int N, int V,
                             float dscale) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * V;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
        float sum = 0.0f;
        float xt = x[targets[n]];
        if (dscale != 0.0f) {
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < V; i++) {
                x[i] = loom_expf(x[i] - mx);
                sum += x[i];
            }
            float k = dscale / sum;
#pragma omp simd
            for (int i = 0; i < V; i++) x[i] *= k;
            x[targets[n]] -= dscale;
        } else {
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < V; i++) sum += loom_expf(x[i] - mx);
        }
        losses[n] = (mx - xt) + logf(sum); /* no cancellation for large logits */
    }
}

static void cpu_crossentropy_part(int phase, float *losses, float *logits, const int32_t *targets, float *stats,
                                  int N, int ld, int v0, int vn, float dscale) {
    float *mx = stats, *sums = stats + N, *xt = stats + 2 * (size_t)N;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * ld;
        const int t = targets[n] - v0, mine = (unsigned)t < (unsigned)vn;
        if (phase == 0) {
            float m = -INFINITY;
#pragma omp simd reduction(max : m)
            for (int i = 0; i < vn; i++) m = x[i] > m ? x[i] : m;
            mx[n] = m;
        } else if (phase == 1) {
            const float m = mx[n];
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < vn; i++) s += loom_expf(x[i] - m);
            sums[n] = s;
            xt[n] = mine ? x[t] : 0.0f;
        } else {
            const float m = mx[n];
            losses[n] = (m - xt[n]) + logf(sums[n]);
            if (dscale == 0.0f) continue;
            const float k = dscale / sums[n];
#pragma omp simd
            for (int i = 0; i < vn; i++) x[i] = loom_expf(x[i] - m) * k;
            for (int i = vn; i < ld; i++) x[i] = 0.0f;
            if (mine) x[t] -= dscale;
        }
    }
}

static void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                      float gscale) {
    const float step = lr / bc1, sbc2 = sqrtf(bc2);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float pi = p[i] * (1.0f - lr * wd);
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        /* the same association as torch: step = lr/bc1, denom = sqrt(v)/sqrt(bc2) + eps */
        p[i] = pi - step * mi / (sqrtf(vi) / sbc2 + eps);
    }
}

/* 256 fixed chunks summed in order: the result does not depend on the thread count. */
static double cpu_sumsq(const float *x, size_t n) {
    enum { NCHUNK = 256 };
    double part[NCHUNK];
    size_t per = (n + NCHUNK - 1) / NCHUNK;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < NCHUNK; c++) {
        size_t i0 = (size_t)c * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return s;
}

static const loom_f32_kernels cpu_f32 = {
    .gemm = cpu_gemm,
    .encoder_forward = cpu_encoder_forward,
    .encoder_backward = cpu_encoder_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward_acc = cpu_layernorm_backward_acc,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward_acc = cpu_rmsnorm_backward_acc,
    .rope = cpu_rope,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .residual_forward = cpu_residual_forward,
    .crossentropy = cpu_crossentropy,
    .crossentropy_part = cpu_crossentropy_part,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
};

static const loom_backend cpu_backend = {
    .name = "cpu",
    .device = LOOM_DEVICE_HOST,
    .alloc = loom_alloc,
    .free = loom_free,
    .copy = host_copy,
    .zero = host_zero,
    .sync = host_sync,
    .supports = f32_only,
    .reserve = cpu_reserve,
    .reserve_bytes = cpu_reserve_bytes,
    .f32 = &cpu_f32,
};

const loom_backend *loom_backend_cpu(void) { return &cpu_backend; }

const char *loom_gemm_library(void) {
    static char buf[64];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (dnnl_sgemm, %s)", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime");
    return buf;
}
