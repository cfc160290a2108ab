/* The "ref" backend: plain, single-threaded loops written for obviousness, not speed.
 * Tests compare the cpu backend against it. Sums accumulate in double so that the
 * reference is at least as accurate as any float kernel it is compared with.
 * Unlike the cpu backend, attention materialises each (b,h) score matrix (T*T floats). */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/core.h"
#include "loom/safetensors.h"

static void ref_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++) {
                float a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += (double)a * (double)b;
            }
            float *c = &C[(size_t)i * ldc + j];
            /* BLAS convention: with beta == 0, C is not read (it may hold garbage). */
            double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*c;
            *c = (float)((double)alpha * acc + prev);
        }
    }
}

static void ref_encoder_forward(float *out, const int32_t *inp, const int32_t *pos, const float *wte,
                                const float *wpe, int B, int T, int C, int v0, int vn) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const int id = inp[b * T + t], mine = id >= v0 && id - v0 < vn;
            const float *we = wte + (size_t)(mine ? id - v0 : 0) * C;
            const float *wp = wpe ? wpe + (size_t)(pos ? pos[b * T + t] : t) * C : NULL;
            for (int c = 0; c < C; c++) {
                if (mine && wp) o[c] = we[c] + wp[c];
                else o[c] = mine ? we[c] : wp ? wp[c] : 0.0f;
            }
        }
}

static void ref_encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                                 int B, int T, int C, int v0, int vn) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            const int id = inp[b * T + t];
            if (id >= v0 && id - v0 < vn)
                for (int c = 0; c < C; c++) dwte[(size_t)(id - v0) * C + c] += d[c];
            if (dwpe)
                for (int c = 0; c < C; c++) dwpe[(size_t)t * C + c] += d[c];
        }
}

static void ref_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int N, int C) {
    const double eps = 1e-5;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double m = 0.0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        double var = 0.0;
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        var /= C; /* biased, as torch.nn.LayerNorm */
        double s = 1.0 / sqrt(var + eps);
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = (float)((x[c] - m) * s * w[c] + b[c]);
        mean[n] = (float)m;
        rstd[n] = (float)s;
    }
}

static void ref_layernorm_backward_acc(float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, const float *mean,
                                       const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *d = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        double m = mean[n], s = rstd[n];
        /* xhat = (x - m) s; dxhat = d * w;
         * dx = s * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
        double dmean = 0.0, dnorm_mean = 0.0;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - m) * s;
            double dxhat = (double)d[c] * w[c];
            dmean += dxhat;
            dnorm_mean += dxhat * xhat;
        }
        dmean /= C;
        dnorm_mean /= C;
        for (int c = 0; c < C; c++) {
            double xhat = (x[c] - m) * s;
            double dxhat = (double)d[c] * w[c];
            dx[c] += (float)(s * (dxhat - dmean - xhat * dnorm_mean));
            dw[c] += (float)(d[c] * xhat);
            db[c] += d[c];
        }
    }
}

static void ref_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                               int N, int C, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) acc += (double)inp[(size_t)n * C + c] * w[(size_t)c * OC + o];
            out[(size_t)n * OC + o] = (float)acc;
        }
}

static void ref_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int N, int C, int OC) {
    if (dinp)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double acc = 0.0;
                for (int o = 0; o < OC; o++)
                    acc += (double)dout[(size_t)n * OC + o] * w[(size_t)c * OC + o];
                dinp[(size_t)n * C + c] = (float)acc;
            }
    for (int c = 0; c < C; c++)
        for (int o = 0; o < OC; o++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++)
                acc += (double)inp[(size_t)n * C + c] * dout[(size_t)n * OC + o];
            dw[(size_t)c * OC + o] += (float)acc;
        }
    if (dbias)
        for (int o = 0; o < OC; o++) {
            double acc = 0.0;
            for (int n = 0; n < N; n++) acc += dout[(size_t)n * OC + o];
            dbias[o] += (float)acc;
        }
}

/* Where head h's q (part 0) or its group's k (1) and v (2) of row (b, t) are in qkv,
 * rows of (H + 2 KVH) hs. */
static size_t qkv_at(int b, int t, int part, int h, int T, int H, int KVH, int hs) {
    const size_t row = ((size_t)b * T + t) * (size_t)(H + 2 * KVH) * hs;
    const int kh = h / (H / KVH);
    return row + (part == 0 ? (size_t)h * hs : (size_t)H * hs + (size_t)(part - 1) * KVH * hs + (size_t)kh * hs);
}

/* Softmax probabilities P (T,T, lower triangle; zero above) of head h in batch b. */
static void ref_attention_probs(double *P, double *lse_row, const float *qkv, int b, int h, int T, int H,
                                int KVH, int hs) {
    double scale = 1.0 / sqrt((double)hs);
    for (int t = 0; t < T; t++) {
        const float *q = qkv + qkv_at(b, t, 0, h, T, H, KVH, hs);
        double *p = P + (size_t)t * T;
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
            const float *k = qkv + qkv_at(b, j, 1, h, T, H, KVH, hs);
            double s = 0.0;
            for (int i = 0; i < hs; i++) s += (double)q[i] * k[i];
            p[j] = s * scale;
            if (p[j] > mx) mx = p[j];
        }
        double sum = 0.0;
        for (int j = 0; j <= t; j++) {
            p[j] = exp(p[j] - mx);
            sum += p[j];
        }
        for (int j = 0; j <= t; j++) p[j] /= sum;
        for (int j = t + 1; j < T; j++) p[j] = 0.0;
        lse_row[t] = mx + log(sum);
    }
}

static void ref_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int H, int KVH,
                                  int hs) {
    const size_t C = (size_t)H * hs;
    double *P = malloc(sizeof(double) * (size_t)T * T);
    double *l = malloc(sizeof(double) * (size_t)T);
    if (!P || !l) LOOM_PANIC("ref attention: out of memory (T=%d)", T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            ref_attention_probs(P, l, qkv, b, h, T, H, KVH, hs);
            for (int t = 0; t < T; t++) {
                float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
                for (int i = 0; i < hs; i++) {
                    double acc = 0.0;
                    for (int j = 0; j <= t; j++)
                        acc += P[(size_t)t * T + j] * qkv[qkv_at(b, j, 2, h, T, H, KVH, hs) + i];
                    o[i] = (float)acc;
                }
                lse[((size_t)b * H + h) * T + t] = (float)l[t];
            }
        }
    free(P);
    free(l);
}

/* Recomputes the probabilities from qkv (ignoring out and lse, which it does not need):
 * with dP = dout v^T and dS = P * (dP - rowsum(P * dP)),
 * dq = scale dS k, dk = scale dS^T q, dv = P^T dout; dk and dv summed in double over
 * the query heads of their group. */
static void ref_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                   const float *lse, int B, int T, int H, int KVH, int hs) {
    (void)out;
    (void)lse;
    const int G = H / KVH;
    const size_t C = (size_t)H * hs;
    double scale = 1.0 / sqrt((double)hs);
    double *P = malloc(sizeof(double) * (size_t)T * T);
    double *dS = malloc(sizeof(double) * (size_t)T * T);
    double *l = malloc(sizeof(double) * (size_t)T);
    double *dkv = malloc(sizeof(double) * 2 * (size_t)T * hs); /* the group's dk, then dv */
    if (!P || !dS || !l || !dkv) LOOM_PANIC("ref attention: out of memory (T=%d)", T);
#define QKV(bb, tt, part, ii) qkv[qkv_at(bb, tt, part, h, T, H, KVH, hs) + (ii)]
#define DOUT(bb, tt, ii) dout[((size_t)(bb) * T + (tt)) * C + (size_t)h * hs + (ii)]
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            if (h % G == 0) memset(dkv, 0, sizeof(double) * 2 * (size_t)T * hs);
            ref_attention_probs(P, l, qkv, b, h, T, H, KVH, hs);
            for (int t = 0; t < T; t++) {
                double rowdot = 0.0;
                for (int j = 0; j <= t; j++) {
                    double dp = 0.0;
                    for (int i = 0; i < hs; i++) dp += (double)DOUT(b, t, i) * QKV(b, j, 2, i);
                    dS[(size_t)t * T + j] = dp;
                    rowdot += P[(size_t)t * T + j] * dp;
                }
                for (int j = 0; j <= t; j++)
                    dS[(size_t)t * T + j] = P[(size_t)t * T + j] * (dS[(size_t)t * T + j] - rowdot);
            }
            for (int t = 0; t < T; t++)
                for (int i = 0; i < hs; i++) {
                    double dq = 0.0, dk = 0.0, dv = 0.0;
                    for (int j = 0; j <= t; j++) dq += dS[(size_t)t * T + j] * QKV(b, j, 1, i);
                    for (int s = t; s < T; s++) {
                        dk += dS[(size_t)s * T + t] * QKV(b, s, 0, i);
                        dv += P[(size_t)s * T + t] * DOUT(b, s, i);
                    }
                    dqkv[qkv_at(b, t, 0, h, T, H, KVH, hs) + i] = (float)(scale * dq);
                    dkv[(size_t)t * hs + i] += scale * dk;
                    dkv[(size_t)(T + t) * hs + i] += dv;
                }
            if (h % G == G - 1)
                for (int t = 0; t < T; t++)
                    for (int i = 0; i < hs; i++) {
                        dqkv[qkv_at(b, t, 1, h, T, H, KVH, hs) + i] = (float)dkv[(size_t)t * hs + i];
                        dqkv[qkv_at(b, t, 2, h, T, H, KVH, hs) + i] = (float)dkv[(size_t)(T + t) * hs + i];
                    }
        }
#undef QKV
#undef DOUT
    free(P);
    free(dS);
    free(l);
    free(dkv);
}

/* Decode attention in double, in key order: the scores of each (row, head) are
 * recomputed for the maximum, the sum and each chunk of output dimensions (accumulated
 * on the stack), so the reference allocates nothing and never rounds a probability. */
static double ref_decode_score(const float *qh, const float *kj, int hs, double scale) {
    double s = 0.0;
    for (int i = 0; i < hs; i++) s += (double)qh[i] * kj[i];
    return s * scale;
}

static void ref_attention_decode(float *out, const float *q, int q_stride, const float *k, const float *v,
                                 const int32_t *len, int B, int H, int KVH, int hs, size_t row_stride,
                                 size_t batch_stride, float *scratch) {
    (void)scratch;
    enum { CHUNK = 64 };
    const int G = H / KVH;
    const double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)b * q_stride + (size_t)h * hs;
            const size_t base = (size_t)b * batch_stride + (size_t)(h / G) * hs;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < len[b]; j++) {
                const double s = ref_decode_score(qh, k + base + (size_t)j * row_stride, hs, scale);
                if (s > mx) mx = s;
            }
            for (int j = 0; j < len[b]; j++)
                sum += exp(ref_decode_score(qh, k + base + (size_t)j * row_stride, hs, scale) - mx);
            for (int i0 = 0; i0 < hs; i0 += CHUNK) {
                const int n = hs - i0 < CHUNK ? hs - i0 : CHUNK;
                double acc[CHUNK] = {0};
                for (int j = 0; j < len[b]; j++) {
                    const size_t at = base + (size_t)j * row_stride;
                    const double p = exp(ref_decode_score(qh, k + at, hs, scale) - mx) / sum;
                    for (int i = 0; i < n; i++) acc[i] += p * v[at + i0 + i];
                }
                for (int i = 0; i < n; i++) out[((size_t)b * H + h) * hs + i0 + i] = (float)acc[i];
            }
        }
}

static void ref_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                                float eps) {
    for (int r = 0; r < N; r++) {
        const float *x = inp + (size_t)r * C;
        double ss = 0.0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float rs = 1.0f / sqrtf((float)(ss / C) + eps);
        for (int i = 0; i < C; i++) out[(size_t)r * C + i] = x[i] * rs * w[i];
        rstd[r] = rs;
    }
}

/* with g = dout * w: dx = rstd g - rstd^3 x mean(g x), dw += dout x rstd */
static void ref_rmsnorm_backward_acc(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                                     const float *rstd, int N, int C) {
    for (int r = 0; r < N; r++) {
        const float *x = inp + (size_t)r * C, *dy = dout + (size_t)r * C;
        const double rs = rstd[r];
        double gx = 0.0;
        for (int i = 0; i < C; i++) gx += (double)dy[i] * w[i] * x[i];
        gx /= C;
        for (int i = 0; i < C; i++) {
            dinp[(size_t)r * C + i] += (float)(rs * dy[i] * w[i] - rs * rs * rs * x[i] * gx);
            dw[i] += (float)((double)dy[i] * x[i] * rs);
        }
    }
}

static void ref_rope(float *x, int N, int T, const int32_t *pos, int nh, int hs, int stride, const float *cos,
                     const float *sin, int inverse) {
    const int half = hs / 2;
    for (int r = 0; r < N; r++) {
        const size_t p = (size_t)(pos ? pos[r] : r % T);
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * stride + (size_t)h * hs;
            for (int i = 0; i < half; i++) {
                const float c = cos[p * half + i], s = inverse ? -sin[p * half + i] : sin[p * half + i];
                const float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
    }
}

static void ref_swiglu_forward(float *out, const float *gu, int N, int F) {
    for (int r = 0; r < N; r++)
        for (int i = 0; i < F; i++) {
            const double g = gu[(size_t)r * 2 * F + i], u = gu[(size_t)r * 2 * F + F + i];
            out[(size_t)r * F + i] = (float)(g / (1.0 + exp(-g)) * u);
        }
}

static void ref_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F) {
    for (int r = 0; r < N; r++)
        for (int i = 0; i < F; i++) {
            const double g = gu[(size_t)r * 2 * F + i], u = gu[(size_t)r * 2 * F + F + i], d = dout[(size_t)r * F + i];
            const double sg = 1.0 / (1.0 + exp(-g));
            dgu[(size_t)r * 2 * F + i] = (float)(d * u * sg * (1.0 + g * (1.0 - sg)));
            dgu[(size_t)r * 2 * F + F + i] = (float)(d * g * sg);
        }
}

#define GELU_S 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

static void ref_gelu_forward(float *out, const float *inp, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_S * (x + GELU_C * x * x * x)));
    }
}

static void ref_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float th = tanhf(GELU_S * (x + GELU_C * x * x * x));
        float dth = (1.0f - th * th) * GELU_S * (1.0f + 3.0f * GELU_C * x * x);
        dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * dth);
    }
}

static void ref_residual_forward(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void ref_crossentropy(float *losses, float *logits, const int32_t *targets, int N, int V,
                             float dscale) {
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * V;
        double mx = -INFINITY;
        for (int v = 0; v < V; v++)
            if (row[v] > mx) mx = row[v];
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
        double lse = mx + log(sum);
        losses[n] = (float)(lse - row[targets[n]]);
        if (dscale != 0.0f)
            for (int v = 0; v < V; v++) {
                double p = exp(row[v] - lse);
                row[v] = (float)(dscale * (p - (v == targets[n] ? 1.0 : 0.0)));
            }
    }
}

/* in double, row by row: the phases' values as the cpu backend's, from one pass each */
static void ref_crossentropy_part(int phase, float *losses, float *logits, const int32_t *targets, float *stats,
                                  int N, int ld, int v0, int vn, float dscale) {
    for (int n = 0; n < N; n++) {
        float *row = logits + (size_t)n * ld;
        const int t = targets[n] - v0, mine = t >= 0 && t < vn;
        if (phase == 0) {
            float mx = -INFINITY;
            for (int v = 0; v < vn; v++)
                if (row[v] > mx) mx = row[v];
            stats[n] = mx;
        } else if (phase == 1) {
            double sum = 0.0;
            for (int v = 0; v < vn; v++) sum += exp((double)row[v] - stats[n]);
            stats[N + n] = (float)sum;
            stats[2 * (size_t)N + n] = mine ? row[t] : 0.0f;
        } else {
            const double mx = stats[n], sum = stats[N + n];
            losses[n] = (float)(mx - stats[2 * (size_t)N + n] + log(sum));
            if (dscale == 0.0f) continue;
            for (int v = 0; v < ld; v++) {
                double p = v < vn ? exp((double)row[v] - mx) / sum : 0.0;
                row[v] = (float)(dscale * (p - (v == t ? 1.0 : 0.0)));
            }
        }
    }
}

static void ref_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float wd, float bc1, float bc2,
                      float gscale) {
    for (size_t i = 0; i < n; i++) {
        float grad = g[i] * gscale;
        p[i] -= lr * wd * p[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * grad;
        v[i] = beta2 * v[i] + (1.0f - beta2) * grad * grad;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * mhat / (sqrtf(vhat) + eps);
    }
}

static double ref_sumsq(const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static void ref_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void host_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void ref_sync(void) {}
static int ref_supports(int dtype) { return dtype == LOOM_DTYPE_F32; }
/* the reference ops take what they need from malloc per call: nothing to reserve */
static loom_status ref_reserve(int max_T, int threads) {
    (void)max_T, (void)threads;
    return LOOM_OK;
}
static size_t ref_reserve_bytes(int max_T, int threads) {
    (void)max_T, (void)threads;
    return 0;
}

static const loom_f32_kernels ref_f32 = {
    .gemm = ref_gemm,
    .encoder_forward = ref_encoder_forward,
    .encoder_backward = ref_encoder_backward,
    .layernorm_forward = ref_layernorm_forward,
    .layernorm_backward_acc = ref_layernorm_backward_acc,
    .matmul_forward = ref_matmul_forward,
    .matmul_backward = ref_matmul_backward,
    .rmsnorm_forward = ref_rmsnorm_forward,
    .rmsnorm_backward_acc = ref_rmsnorm_backward_acc,
    .rope = ref_rope,
    .swiglu_forward = ref_swiglu_forward,
    .swiglu_backward = ref_swiglu_backward,
    .attention_forward = ref_attention_forward,
    .attention_backward = ref_attention_backward,
    .attention_decode = ref_attention_decode,
    .gelu_forward = ref_gelu_forward,
    .gelu_backward = ref_gelu_backward,
    .residual_forward = ref_residual_forward,
    .crossentropy = ref_crossentropy,
    .crossentropy_part = ref_crossentropy_part,
    .adamw = ref_adamw,
    .sumsq = ref_sumsq,
};

static const loom_backend ref_backend = {
    .name = "ref",
    .device = LOOM_DEVICE_HOST,
    .alloc = loom_alloc,
    .free = loom_free,
    .copy = ref_copy,
    .zero = host_zero,
    .sync = ref_sync,
    .supports = ref_supports,
    .reserve = ref_reserve,
    .reserve_bytes = ref_reserve_bytes,
    .f32 = &ref_f32,
};

const loom_backend *loom_backend_ref(void) { return &ref_backend; }
