/* The checkpoint's run mapping (src/io/ckpt_runs.h): for tensors of one and two
 * dimensions, split by rows, by columns or replicated, over 1, 2 and 4 tensor-parallel
 * ranks, each rank's slice stored back to back in its buffer and cut into ZeRO shards
 * of 1 to 5 ranks at odd boundaries, the runs of all ranks must put every element of
 * the tensor in the file exactly once, and each run must carry the values the slice
 * definition gives (slice element (r, c) = tensor element (off0 + r, off1 + c)),
 * computed here without the mapping. */
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

static void check_layout(int ndim, int64_t d0, int64_t d1, int split_dim, int tps, int dps) {
    loom_param_info pi = {.ndim = ndim, .shape = {d0, d1}, .split_dim = split_dim};
    snprintf(pi.name, sizeof pi.name, "t%dx%lld.%d", ndim, (long long)d0, split_dim);
    const int64_t cols = ndim == 2 ? d1 : 1;
    pi.numel = (size_t)(d0 * cols);
    const size_t pad = 3; /* the slice starts at element 3 of the rank's buffer */
    float *global = malloc(sizeof(float) * pi.numel);
    int *hits = calloc(pi.numel, sizeof(int));
    for (size_t i = 0; i < pi.numel; i++) global[i] = (float)i;
    for (int tp = 0; tp < tps; tp++) {
        int64_t off[2], len[2];
        CHECK(loom_param_slice(&pi, tp, tps, off, len) == 0, "%s: slice %d of %d", pi.name, tp, tps);
        const size_t local = (size_t)(len[0] * len[1]);
        float *buf = malloc(sizeof(float) * (local + pad)); /* the rank's slice, from the definition */
        for (int64_t r = 0; r < len[0]; r++)
            for (int64_t c = 0; c < len[1]; c++) buf[pad + r * len[1] + c] = global[(off[0] + r) * cols + off[1] + c];
        for (int dp = 0; dp < dps; dp++) { /* shard dp of the buffer, odd cuts */
            const size_t total = local + pad, lo = cut(total, dp, dps), hi = cut(total, dp + 1, dps);
            const long n = ckpt_tensor_runs(&pi, 7, tp, tps, pad, lo, hi, NULL);
            CHECK(n >= 0, "%s: runs of part %d", pi.name, tp);
            if (n <= 0) continue;
            ckpt_run *runs = malloc(sizeof(ckpt_run) * n);
            CHECK(ckpt_tensor_runs(&pi, 7, tp, tps, pad, lo, hi, runs) == n, "%s: count changed", pi.name);
            for (long i = 0; i < n; i++) {
                CHECK(runs[i].k == 7 && runs[i].at >= lo && runs[i].at + runs[i].n <= hi,
                      "%s: run %ld outside the shard [%zu, %zu)", pi.name, i, lo, hi);
                CHECK(runs[i].file_at + runs[i].n <= pi.numel, "%s: run %ld past the tensor", pi.name, i);
                if (runs[i].file_at + runs[i].n > pi.numel) continue;
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
    for (size_t i = 0; i < pi.numel; i++) bad += hits[i] != want;
    CHECK(bad == 0, "%s over tp %d x dp %d: %zu elements not written exactly %d time(s)", pi.name, tps, dps, bad, want);
    free(global);
    free(hits);
}

int main(void) {
    const int tps[] = {1, 2, 4};
    for (int a = 0; a < 3; a++)
        for (int dps = 1; dps <= 5; dps++) {
            check_layout(2, 8, 12, 0, tps[a], dps);  /* rows: a row-parallel weight */
            check_layout(2, 8, 12, 1, tps[a], dps);  /* columns: a column-parallel weight */
            check_layout(2, 8, 12, -1, tps[a], dps); /* replicated */
            check_layout(1, 16, 0, 0, tps[a], dps);  /* a split bias */
            check_layout(1, 16, 0, -1, tps[a], dps); /* a norm's weight */
        }
    /* a dimension the ranks do not divide is an error, not a wrong file */
    loom_param_info pi = {.name = "odd", .ndim = 2, .shape = {6, 5}, .numel = 30, .split_dim = 1};
    CHECK(ckpt_tensor_runs(&pi, 0, 0, 2, 0, 0, 30, NULL) == -1, "5 columns split over 2 ranks was accepted");
    return CHECK_FINISH("test_ckpt_runs");
}
