/* The checkpoint's run mapping (src/io/ckpt_runs.h): for tensors of one and two
 * dimensions, split by rows, by columns or replicated, over 1, 2 and 4 tensor-parallel
 * ranks, each rank's slice stored back to back in its buffer and cut into ZeRO shards
 * of 1 to 5 ranks at odd boundaries, the runs of all ranks must put every element of
 * the tensor in the file exactly once, and each run must carry the values the slice
 * definition of model.h gives (element (i, p * width + j) = the tensor's (row0 + i,
 * col0 + p * part_stride + j)), computed here without the mapping. Also: GPT-2's fused
 * q/k/v split part by part, and a padded vocabulary split. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/ckpt_runs.h"

/* Where shard i of dps begins in a buffer of `total`: even cuts moved by one at odd i. */
static size_t cut(size_t total, int i, int dps) {
    if (i == 0 || i == dps) return i ? total : 0;
    const size_t at = total * i / dps + (size_t)(i % 2);
    return at < total ? at : total;
}

/* split: loom_tp_split; split_dim as the description sets it; parts: blocks split each */
static void check_layout(int ndim, int64_t d0, int64_t d1, int split, int split_dim, int parts, int tps, int dps) {
    loom_param_info pi = {.here = 1, .ndim = ndim, .full = {d0, d1}, .split = split, .split_dim = split_dim, .parts = parts};
    snprintf(pi.name, sizeof pi.name, "t%dx%lld.%d/%d", ndim, (long long)d0, split_dim, parts);
    const int64_t cols = ndim == 2 ? d1 : d0, rows = ndim == 2 ? d0 : 1;
    pi.full_numel = (size_t)(rows * cols);
    const size_t pad = 3; /* the slice starts at element 3 of the rank's buffer */
    float *global = malloc(sizeof(float) * pi.full_numel);
    int *hits = calloc(pi.full_numel, sizeof(int));
    for (size_t i = 0; i < pi.full_numel; i++) global[i] = (float)i;
    for (int tp = 0; tp < tps; tp++) {
        CHECK(loom_param_slice(&pi, tp, tps, &pi.slice) == 0, "%s: slice %d of %d", pi.name, tp, tps);
        const loom_slice *s = &pi.slice;
        /* the rank stores (local rows, parts x width); a padded split stores ceil(rows / tp) rows */
        const int64_t lrows = split == LOOM_TP_VOCAB ? loom_tp_local_rows(rows, tps, 1) : s->rows;
        const int64_t lw = (int64_t)s->parts * s->width;
        const size_t local = (size_t)(lrows * lw);
        float *buf = malloc(sizeof(float) * (local + pad)); /* the rank's slice, from the definition */
        for (size_t i = 0; i < local + pad; i++) buf[i] = -1.0f;
        for (int64_t r = 0; r < s->rows; r++)
            for (int p = 0; p < s->parts; p++)
                for (int64_t j = 0; j < s->width; j++)
                    buf[pad + r * lw + p * s->width + j] = global[(s->row0 + r) * cols + s->col0 + p * s->part_stride + j];
        for (int dp = 0; dp < dps; dp++) { /* shard dp of the buffer, odd cuts */
            const size_t total = local + pad, lo = cut(total, dp, dps), hi = cut(total, dp + 1, dps);
            const long n = ckpt_tensor_runs(&pi, 7, pad, lo, hi, NULL);
            if (n <= 0) continue;
            ckpt_run *runs = malloc(sizeof(ckpt_run) * n);
            CHECK(ckpt_tensor_runs(&pi, 7, pad, lo, hi, runs) == n, "%s: count changed", pi.name);
            for (long i = 0; i < n; i++) {
                CHECK(runs[i].k == 7 && runs[i].at >= lo && runs[i].at + runs[i].n <= hi,
                      "%s: run %ld outside the shard [%zu, %zu)", pi.name, i, lo, hi);
                CHECK(runs[i].file_at + runs[i].n <= pi.full_numel, "%s: run %ld past the tensor", pi.name, i);
                if (runs[i].file_at + runs[i].n > pi.full_numel) continue;
                for (size_t e = 0; e < runs[i].n; e++) {
                    hits[runs[i].file_at + e]++;
                    CHECK(buf[runs[i].at + e] == global[runs[i].file_at + e], "%s: part %d run %ld element %zu: %g "
                          "vs %g", pi.name, tp, i, e, buf[runs[i].at + e], global[runs[i].file_at + e]);
                }
            }
            free(runs);
        }
        free(buf);
    }
    /* a replicated tensor is held whole by every tensor-parallel rank */
    const int want = split_dim < 0 ? tps : 1;
    size_t bad = 0;
    for (size_t i = 0; i < pi.full_numel; i++) bad += hits[i] != want;
    CHECK(bad == 0, "%s over tp %d x dp %d: %zu elements not written exactly %d time(s)", pi.name, tps, dps, bad, want);
    free(global);
    free(hits);
}

int main(void) {
    const int tps[] = {1, 2, 4};
    for (int a = 0; a < 3; a++)
        for (int dps = 1; dps <= 5; dps++) {
            const int t = tps[a];
            check_layout(2, 8, 12, LOOM_TP_ROW, 0, 1, t, dps);     /* rows: a row-parallel (in, out) weight */
            check_layout(2, 8, 12, LOOM_TP_COLUMN, 1, 1, t, dps);  /* columns: a column-parallel (in, out) weight */
            check_layout(2, 8, 24, LOOM_TP_COLUMN, 1, 3, t, dps);  /* GPT-2's c_attn: q, k, v each by heads */
            check_layout(1, 24, 0, LOOM_TP_COLUMN, 0, 3, t, dps);  /* its bias */
            check_layout(2, 8, 12, LOOM_TP_REPLICATED, -1, 1, t, dps);
            check_layout(1, 16, 0, LOOM_TP_COLUMN, 0, 1, t, dps);  /* a split bias */
            check_layout(1, 16, 0, LOOM_TP_REPLICATED, -1, 1, t, dps); /* a norm's weight */
            check_layout(2, 11, 4, LOOM_TP_VOCAB, 0, 1, t, dps);   /* a vocabulary of 11 rows: padded */
        }
    /* a dimension the ranks do not divide is an error, not a wrong file */
    loom_param_info pi = {.here = 1, .name = "odd", .ndim = 2, .full = {6, 5}, .full_numel = 30, .split = LOOM_TP_COLUMN,
                          .split_dim = 1, .parts = 1};
    loom_slice sl;
    CHECK(loom_param_slice(&pi, 0, 2, &sl) == -1, "5 columns split over 2 ranks was accepted");
    return CHECK_FINISH("test_ckpt_runs");
}
