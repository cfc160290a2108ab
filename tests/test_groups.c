/* Process groups and per-tensor sharding. Under mpirun with N ranks: loom_dist_layout
 * splits the world into tp x dp x pp groups numbered tensor-parallel fastest, and each
 * collective runs on its own group only (an all-gather of world ranks inside each group
 * gives exactly the ranks the numbering says). Alone (or on rank 0): every tensor of a
 * GPT-2 and a Llama description splits along the dimension its role says (column:
 * output features; row: input features; vocab: rows; replicated: whole), and the slices
 * of all ranks tile the tensor. Usage: test_groups [TP PP]. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "loom/dist.h"
#include "loom/model.h"

static void check_group(const loom_group *g, const int *want, const char *name) {
    int32_t all[64];
    CHECK(g->size <= 64, "%s: %d ranks", name, g->size);
    int32_t me = want[g->rank]; /* this rank's world rank, as the numbering has it */
    loom_dist_allgather_i32(g, &me, 1, all);
    for (int r = 0; r < g->size; r++) CHECK(all[r] == want[r], "%s group: member %d is world rank %d, want %d", name, r, all[r], want[r]);
}

static void check_slices(const loom_gpt_config *cfg, int tp) {
    loom_gpt *g;
    if (loom_gpt_init(&g, cfg, 1, 1, 0, "ref")) {
        CHECK(0, "init: %s", loom_error_msg());
        return;
    }
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        int64_t covered = 0;
        for (int r = 0; r < tp; r++) {
            loom_slice sl;
            CHECK(loom_param_slice(pi, r, tp, &sl) == 0, "%s: %s", pi->name, loom_error_msg());
            covered += sl.rows * sl.parts * sl.width;
            if (pi->split_dim < 0) CHECK(sl.row0 == 0 && sl.col0 == 0, "%s replicated but offset", pi->name);
            else if (sl.parts * sl.width == (pi->ndim > 1 ? pi->full[1] : pi->full[0]))
                CHECK(sl.row0 == r * loom_tp_local_rows(pi->full[0], tp, pi->split == LOOM_TP_VOCAB) || sl.rows == 0,
                      "%s: rank %d's rows at %lld", pi->name, r, (long long)sl.row0);
            else CHECK(sl.col0 == r * sl.width, "%s: rank %d's columns at %lld", pi->name, r, (long long)sl.col0);
        }
        CHECK(covered == (pi->split_dim < 0 ? tp : 1) * (int64_t)pi->full_numel, "%s: the slices cover %lld of %zu",
              pi->name, (long long)covered, pi->full_numel);
        /* the roles decide the dimension: Llama's Linear is (out, in), GPT-2's Conv1D (in, out) */
        const int out_dim = cfg->arch == LOOM_ARCH_LLAMA ? 0 : 1;
        if (pi->split == LOOM_TP_COLUMN && pi->ndim == 2) CHECK(pi->split_dim == out_dim, "%s: column split on dim %d", pi->name, pi->split_dim);
        if (pi->split == LOOM_TP_ROW) CHECK(pi->split_dim == 1 - out_dim, "%s: row split on dim %d", pi->name, pi->split_dim);
    }
    loom_gpt_free(g);
}

int main(int argc, char **argv) {
    loom_dist d;
    if (loom_dist_init(&argc, &argv, &d)) {
        fprintf(stderr, "%s\n", loom_error_msg());
        return 1;
    }
    const int tp = argc > 2 ? atoi(argv[1]) : 1, pp = argc > 2 ? atoi(argv[2]) : 1;
    if (loom_dist_layout(&d, tp, pp)) {
        fprintf(stderr, "%s\n", loom_error_msg());
        loom_dist_finalize(&d);
        return 1;
    }
    const int dp = d.size / (tp * pp), r = d.rank;
    const int tpr = r % tp, dpr = (r / tp) % dp, ppr = r / (tp * dp);
    CHECK(d.tp.rank == tpr && d.tp.size == tp, "tp: rank %d of %d, want %d of %d", d.tp.rank, d.tp.size, tpr, tp);
    CHECK(d.dp.rank == dpr && d.dp.size == dp, "dp: rank %d of %d, want %d of %d", d.dp.rank, d.dp.size, dpr, dp);
    CHECK(d.pp.rank == ppr && d.pp.size == pp, "pp: rank %d of %d, want %d of %d", d.pp.rank, d.pp.size, ppr, pp);
    int want[64];
    for (int k = 0; k < tp; k++) want[k] = (ppr * dp + dpr) * tp + k;
    check_group(&d.tp, want, "tp");
    for (int k = 0; k < dp; k++) want[k] = (ppr * dp + k) * tp + tpr;
    check_group(&d.dp, want, "dp");
    for (int k = 0; k < pp; k++) want[k] = (k * dp + dpr) * tp + tpr;
    check_group(&d.pp, want, "pp");
    for (int k = 0; k < d.size; k++) want[k] = k;
    check_group(&d.world, want, "world");
    if (d.rank == 0) {
        loom_gpt_config gpt2 = {.vocab_size = 96, .block_size = 16, .n_layer = 2, .n_embd = 32, .n_head = 4};
        loom_gpt_config llama;
        loom_gpt_preset("llama-tiny", &llama);
        llama.vocab_size = 96, llama.n_embd = 32, llama.n_head = 4, llama.n_kv_head = 2, llama.ffn_dim = 48;
        llama.untied = 1;
        for (int t = 1; t <= 4; t *= 2) {
            check_slices(&gpt2, t);
            check_slices(&llama, t);
        }
    }
    loom_dist_finalize(&d);
    if (d.rank != 0) return failures ? 1 : 0;
    return CHECK_FINISH("test_groups");
}
