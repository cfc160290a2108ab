/* `loom plan`: a layout's bytes per rank (from the functions the allocators' own callers
 * use: exact), its pipeline bubble, what each rank sends per step on each dimension and
 * a predicted step time from a machine's measured speeds; and the search over every
 * valid layout of a job. The time model (per step):
 *  - each stage's micro-batch: 3 x its forward FLOPs (its layers' weights, attention over
 *    T/2 positions on average, the LM head on the last) / (GEMM speed x threads), plus its
 *    tensor-parallel reductions (bytes / node link + a latency per call), all exposed;
 *  - the pipeline: (m + p - 1) x the slowest stage's micro-batch, plus the activations'
 *    fill and drain across the p - 1 boundaries;
 *  - the data-parallel gradient reduction, overlapped with the last backward (only what
 *    outlasts it counts);
 *  - AdamW: 28 bytes per parameter of the shard at memory speed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "kernels/kernels.h"
#include "loom/train.h"
#include "train/pipeline.h"
#include "train/preflight.h"

loom_status loom_machine_load(const char *path, loom_machine *m) {
    size_t len;
    char *text = loom_read_file(path, &len);
    if (!text) return loom_error(LOOM_ERR_IO, "--machine %s: cannot read it", path);
    loom_json_error err;
    loom_json_doc *doc = loom_json_parse(text, len, NULL, &err);
    free(text);
    if (!doc) return loom_error(LOOM_ERR_FORMAT, "--machine %s: line %zu: %s", path, err.line, err.msg);
    static const char *keys[5] = {"gemm_gflops", "mem_gbps", "link_gbps_node", "link_gbps_net", "link_us"};
    double *dst[5] = {&m->gemm_gflops, &m->mem_gbps, &m->link_gbps_node, &m->link_gbps_net, &m->link_us};
    loom_status st = LOOM_OK;
    for (int k = 0; k < 5 && !st; k++) {
        const loom_json *v = loom_json_get(loom_json_root(doc), keys[k]);
        if (!v || v->type != LOOM_JSON_NUMBER || !(v->number > 0))
            st = loom_error(LOOM_ERR_FORMAT, "--machine %s: \"%s\" must be a positive number", path, keys[k]);
        else *dst[k] = v->number;
    }
    loom_json_free(doc);
    snprintf(m->source, sizeof m->source, "%s", path);
    return st;
}

void loom_machine_measure(int threads, loom_machine *m) {
    const loom_backend *be = loom_backend_get("cpu");
    const int M = 1024, N = 768, K = 768;
    float *a = loom_alloc(sizeof(float) * ((size_t)M * K + (size_t)K * N + (size_t)M * N), "GEMM speed probe");
    double gemm = 0, mem = 0;
    if (a) {
        float *b = a + (size_t)M * K, *c = b + (size_t)K * N;
        for (size_t i = 0; i < (size_t)M * K + (size_t)K * N; i++) a[i] = (float)(i % 7) * 0.1f;
        const loom_tensor A = loom_view(a, (size_t)M * K, LOOM_DTYPE_F32, LOOM_DEVICE_HOST);
        const loom_tensor Bt = loom_view(b, (size_t)K * N, LOOM_DTYPE_F32, LOOM_DEVICE_HOST);
        const loom_tensor C = loom_view(c, (size_t)M * N, LOOM_DTYPE_F32, LOOM_DEVICE_HOST);
        op_gemm(be, 0, 0, M, N, K, 1.0f, A, K, Bt, N, 0.0f, C, N); /* warm */
        int reps = 0;
        double t0 = loom_now(), t;
        do {
            op_gemm(be, 0, 0, M, N, K, 1.0f, A, K, Bt, N, 0.0f, C, N);
            reps++;
        } while ((t = loom_now() - t0) < 0.3);
        gemm = 2.0 * M * N * K * reps / t / 1e9 / threads;
        /* memory: a copy of the buffer, read and write */
        const size_t n = (size_t)M * K + (size_t)K * N;
        reps = 0;
        t0 = loom_now();
        do {
            memcpy(c, a, sizeof(float) * ((size_t)M * N));
            memcpy(a, b, sizeof(float) * ((size_t)K * N));
            reps++;
        } while ((t = loom_now() - t0) < 0.1);
        mem = 2.0 * sizeof(float) * ((size_t)M * N + (size_t)K * N) * reps / t / 1e9;
        (void)n;
        loom_free(a);
    }
    m->gemm_gflops = gemm > 0 ? gemm : 10;
    m->mem_gbps = mem > 0 ? mem : 10;
    m->link_gbps_node = 10, m->link_gbps_net = 10, m->link_us = 5;
    snprintf(m->source, sizeof m->source, "measured here (GEMM, memory); links: 10 GB/s, 5 us (run `loom bench` under "
             "MPI for them)");
}

static int pow2(long x) { return x > 0 && !(x & (x - 1)); }

/* the forward multiply-adds x 2 of one token on a stage of layers [l0, l1) (per tp rank) */
static double stage_flops(const loom_gpt_config *c, int T, int tp, int l0, int l1) {
    loom_gpt_sizes a, b;
    loom_gpt_compute_sizes(c, 1, T, 1, 0, &(loom_stage){0, 1, 1}, &a);
    double layer = (double)a.n_params;
    if (c->n_layer > 1) {
        loom_gpt_compute_sizes(c, 1, T, 1, 0, &(loom_stage){0, 2, 1}, &b);
        layer = (double)(b.n_params - a.n_params);
    }
    double f = (l1 - l0) * (2.0 * layer + 2.0 * T * c->n_embd) / tp; /* weights; causal attention */
    if (l1 == c->n_layer) f += 2.0 * c->vocab_size * c->n_embd / tp;  /* the LM head */
    return f;
}

loom_status loom_plan_one(const loom_plan_query *q, const loom_machine *mc, loom_plan *o) {
    memset(o, 0, sizeof *o);
    const loom_gpt_config *c = &q->cfg;
    const int tp = q->tp, pp = q->pp, B = q->B, T = q->T;
    loom_status st = loom_gpt_config_validate(c);
    if (!st) st = loom_gpt_check_tp(c, tp);
    if (st) return st;
    if (pp < 1 || q->ranks % (tp * pp))
        return loom_error(LOOM_ERR_ARG, "--tp %d x --pp %d = %d: does not divide the %d ranks", tp, pp, tp * pp,
                          q->ranks);
    const int dp = q->ranks / (tp * pp);
    const long bt = (long)B * T, total = q->total_batch_tokens > 0 ? q->total_batch_tokens : bt;
    if (total % bt)
        return loom_error(LOOM_ERR_ARG, "--total-batch-tokens: %ld is not a multiple of --batch x --seq-len = %ld", total,
                          bt);
    const int accum = (int)(total / bt);
    if (dp > 1 && (!pow2(dp) || accum % dp || !pow2(accum / dp)))
        return loom_error(LOOM_ERR_ARG, "data-parallel %d: needs a power of two dividing the %d micro-batches into a "
                          "power of two each", dp, accum);
    if (q->sp && (tp == 1 || bt % tp)) return loom_error(LOOM_ERR_ARG, "--sp: needs --tp 2 or more dividing B*T");
    const int m = accum / dp;
    loom_pp_plan pl; /* one stage runs each micro-batch's forward and backward in turn, whatever the schedule */
    if ((st = loom_pp_plan_make(&pl, c, T, pp, m, pp > 1 ? q->schedule : LOOM_PP_1F1B, q->pp_layers))) return st;
    *o = (loom_plan){.dp = dp, .tp = tp, .pp = pp, .zero = dp > 1 ? q->zero : 0, .sp = q->sp, .schedule = q->schedule,
                     .micro = m};
    memcpy(o->l0, pl.l0, sizeof pl.l0);
    memcpy(o->sets, pl.sets, sizeof pl.sets);
    o->bubble = (double)(pp - 1) / (m + pp - 1);
    const double C = c->n_embd, f4 = sizeof(float), ftp = tp > 1 ? 2.0 * (tp - 1) / tp * f4 : 0;
    const double speed = mc->gemm_gflops * 1e9 * q->threads, nio = (double)bt * C / (q->sp && tp > 1 ? tp : 1);
    const int tied = c->arch != LOOM_ARCH_LLAMA || !c->untied;
    double tau = 0, tau_b = 0;
    for (int s = 0; s < pp; s++) {
        const loom_stage sg = loom_pp_stage(&pl, s);
        loom_train_mem mem;
        loom_run_memory(c, B, T, accum, dp, tp, q->sp, &sg, pp, o->zero, q->bucket, q->backend, q->threads, &mem);
        memcpy(o->bytes[s], mem.bytes, sizeof mem.bytes);
        if (mem.bytes_total > o->max_bytes) o->max_bytes = mem.bytes_total;
        loom_gpt_sizes z;
        loom_gpt_compute_sizes(c, B, T, tp, q->sp, &sg, &z);
        const int first = sg.l0 == 0, last = sg.l1 == c->n_layer, nl = sg.l1 - sg.l0;
        /* Megatron's count per micro-batch (the trainer's report): 4 reductions of the residual
         * stream per layer, the embedding's, the LM head input gradient's, the loss's 3 B*T */
        const double tpb = ftp * ((4.0 * nl + first + last) * bt * C + (last ? 3.0 * bt : 0));
        const double t_tp = tp > 1 ? tpb / (mc->link_gbps_node * 1e9) + (4.0 * nl + 4) * mc->link_us * 1e-6 : 0;
        const double t_mb = (q->layer_s > 0 ? (nl * q->layer_s + (first || last ? q->rest_s : 0)) / tp
                                             : 3.0 * stage_flops(c, T, tp, sg.l0, sg.l1) * bt / speed) +
                            t_tp;
        if (t_mb > tau) tau = t_mb, tau_b = 2.0 / 3.0 * t_mb;
        if (tpb * m > o->comm_tp) o->comm_tp = tpb * m, o->t_tp = t_tp * m;
        /* the pipeline: activations forward, their gradients back, a tied head's gradient */
        double ppb = pp > 1 ? m * f4 * nio * (!last + !first) : 0;
        if (pp > 1 && tied && last) ppb += m * f4 * (double)z.n_head_copy;
        if (pp > 1 && tied && first) ppb += f4 * (double)z.n_head_copy;
        if (ppb > o->comm_pp) o->comm_pp = ppb;
        /* data parallelism: recursive doubling (the whole bucket at every distance), or
         * halving + the ZeRO all-gather (ZeRO-2: a reduce-scatter per micro-batch) */
        const double n = (double)z.n_params * f4, lg = log2((double)dp);
        const double dpb = dp == 1 ? 0 : o->zero == 0 ? lg * n : o->zero == 1 ? 2.0 * (dp - 1) / dp * n
                                                       : (m + 1.0) * (dp - 1) / dp * n;
        if (dpb > o->comm_dp) o->comm_dp = dpb;
        const double shard = o->zero ? (double)z.n_params / dp : (double)z.n_params;
        const double t_opt = 28.0 * shard / (mc->mem_gbps * 1e9);
        if (t_opt > o->t_opt) o->t_opt = t_opt;
    }
    o->t_compute = (m + pp - 1) * tau;
    /* stages are dp x tp ranks apart: on one node while the job's ranks fit one */
    const double bw_pp = q->ranks > q->ranks_per_node ? mc->link_gbps_net : mc->link_gbps_node;
    o->t_pp = pp > 1 ? 2.0 * (pp - 1) * (f4 * nio / (bw_pp * 1e9) + mc->link_us * 1e-6) : 0;
    /* a data-parallel group spans nodes once dp x tp ranks do not fit on one */
    const double bw = (double)dp * tp > q->ranks_per_node ? mc->link_gbps_net : mc->link_gbps_node;
    const double t_dp = dp > 1 ? o->comm_dp / (bw * 1e9) + log2((double)dp) * mc->link_us * 1e-6 : 0;
    o->t_dp = t_dp > tau_b ? t_dp - tau_b : 0;
    o->t_step = o->t_compute + o->t_pp + o->t_dp + o->t_opt;
    o->fits = q->mem_per_node <= 0 || (double)o->max_bytes * q->ranks_per_node <= q->mem_per_node;
    return LOOM_OK;
}

/* forward + backward of one micro-batch of cfg with n layers: the best of 3 */
static loom_status time_layers(const loom_plan_query *q, int n, double *secs) {
    loom_gpt_config c = q->cfg;
    c.n_layer = n;
    loom_gpt *g;
    loom_status st = loom_gpt_init_part(&g, &c, q->B, q->T, 1, q->backend, NULL, NULL);
    if (st) return st;
    loom_gpt_init_weights(g, 1);
    int32_t *ids = loom_alloc(sizeof(int32_t) * 2 * (size_t)q->B * q->T, "calibration batch");
    if (!ids) {
        loom_gpt_free(g);
        return LOOM_ERR_NOMEM;
    }
    for (size_t i = 0; i < 2 * (size_t)q->B * q->T; i++) ids[i] = (int32_t)(i * 7919 % (size_t)c.vocab_size);
    double best = 1e30;
    for (int r = 0; r < 4; r++) { /* the first warms the caches */
        loom_gpt_zero_grad(g, NULL);
        const double t0 = loom_now();
        loom_gpt_forward(g, ids, ids + (size_t)q->B * q->T, q->B, q->T, 1.0f / ((float)q->B * q->T));
        loom_gpt_backward(g, ids, q->B, q->T);
        const double t = loom_now() - t0;
        if (r && t < best) best = t;
    }
    st = g->status;
    loom_free(ids);
    loom_gpt_free(g);
    *secs = best;
    return st;
}

loom_status loom_plan_calibrate(loom_plan_query *q) {
    double t1, t2;
    loom_status st = time_layers(q, 1, &t1);
    if (!st) st = time_layers(q, 2, &t2);
    if (st) return st;
    q->layer_s = t2 > t1 ? t2 - t1 : t1 / 2;
    q->rest_s = t1 > q->layer_s ? t1 - q->layer_s : 0;
    return LOOM_OK;
}

static int plan_cmp(const void *x, const void *y) {
    const loom_plan *a = x, *b = y;
    if (a->fits != b->fits) return b->fits - a->fits;
    return a->t_step < b->t_step ? -1 : a->t_step > b->t_step;
}

int loom_plan_search(const loom_plan_query *q, const loom_machine *mc, loom_plan *out, int cap, long *considered) {
    int n = 0, have = 0;
    long tried = 0;
    loom_plan *all = NULL;
    for (int tp = 1; tp <= q->ranks_per_node && tp <= q->ranks; tp++) {
        if (q->ranks_per_node % tp || loom_gpt_check_tp(&q->cfg, tp)) continue; /* a group on one node */
        for (int pp = 1; pp <= q->cfg.n_layer && pp <= LOOM_PP_MAX && tp * pp <= q->ranks; pp++) {
            if (q->ranks % (tp * pp) || !pow2(q->ranks / (tp * pp))) continue;
            for (int zero = 0; zero <= 2; zero++)
                for (int sp = 0; sp <= (tp > 1); sp++) {
                    if (zero && q->ranks / (tp * pp) == 1) continue;
                    loom_plan_query one = *q;
                    one.tp = tp, one.pp = pp, one.zero = zero, one.sp = sp, one.pp_layers = NULL;
                    loom_plan p;
                    tried++;
                    if (loom_plan_one(&one, mc, &p)) continue;
                    if (n == have) {
                        have = have ? 2 * have : 64;
                        loom_plan *more = realloc(all, sizeof *all * (size_t)have);
                        if (!more) goto done;
                        all = more;
                    }
                    all[n++] = p;
                }
        }
    }
done:
    if (all) qsort(all, (size_t)n, sizeof *all, plan_cmp);
    for (int i = 0; i < n && i < cap; i++) out[i] = all[i];
    free(all);
    if (considered) *considered = tried;
    return n;
}
