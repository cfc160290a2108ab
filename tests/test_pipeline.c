/* Pipeline plans without MPI: every schedule of p = 1..8 stages and m = 1..16
 * micro-batches runs to its end when the stages' lists are played against each other,
 * each stage runs every micro-batch's forward and backward once with the backwards in
 * micro-batch order (the gradient sum's order), and keeps at most min(m, p - s)
 * micro-batches in flight under 1F1B and m under GPipe; lists that deadlock (stage 0
 * waiting for a backward that needs a forward it has not sent) or repeat a micro-batch
 * are refused; the layer split covers every layer once, each stage at least one, and
 * --pp-layers is honoured or refused with the reason; a stage's description holds only
 * its tensors, and the stages' buffers tile the whole depth's. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "train/pipeline.h"

int main(void) {
    loom_pp_action lists[8 * 2 * 16];
    int sets[8];
    for (int kind = 0; kind < LOOM_PP_KINDS; kind++)
        for (int p = 1; p <= 8; p++)
            for (int m = 1; m <= 16; m++) {
                for (int s = 0; s < p; s++) {
                    loom_pp_action *a = lists + s * 2 * m;
                    CHECK(loom_pp_schedule(kind, p, m, s, a) == 2 * m, "%s p %d m %d: list length", loom_pp_kind_name(kind),
                          p, m);
                    int next_b = 0, fwd = 0;
                    for (int i = 0; i < 2 * m; i++) {
                        if (a[i].op == 'B') CHECK(a[i].micro == next_b++, "%s p %d m %d stage %d: backwards out of order",
                                                  loom_pp_kind_name(kind), p, m, s);
                        else fwd++;
                    }
                    CHECK(fwd == m && next_b == m, "%s p %d m %d stage %d: every micro-batch once", loom_pp_kind_name(kind),
                          p, m, s);
                }
                CHECK(loom_pp_lists_run(p, m, lists, sets) == 0, "%s p %d m %d: does not run to its end",
                      loom_pp_kind_name(kind), p, m);
                for (int s = 0; s < p; s++) {
                    const int want = kind == LOOM_PP_GPIPE ? m : (m < p - s ? m : p - s);
                    CHECK(sets[s] == want, "%s p %d m %d stage %d: %d in flight, want %d", loom_pp_kind_name(kind), p,
                          m, s, sets[s], want);
                }
            }
    /* a deadlock: stage 0 alternates (F0 B0 F1 B1), stage 1 runs GPipe (F0 F1 B0 B1):
     * stage 1's F1 waits for stage 0's F1, which comes after B0, which waits for stage 1's B0 */
    const loom_pp_action dead[8] = {{'F', 0}, {'B', 0}, {'F', 1}, {'B', 1}, {'F', 0}, {'F', 1}, {'B', 0}, {'B', 1}};
    CHECK(loom_pp_lists_run(2, 2, dead, sets) == 1, "a deadlocking pair of lists ran");
    const loom_pp_action twice[4] = {{'F', 0}, {'F', 0}, {'B', 0}, {'B', 0}};
    CHECK(loom_pp_lists_run(1, 2, twice, sets) == 1, "a list with a micro-batch twice ran");

    /* the layer split */
    loom_gpt_config cfg;
    CHECK(loom_gpt_preset("gpt2", &cfg) == LOOM_OK, "preset");
    for (int p = 1; p <= 12; p++) {
        loom_pp_plan pl;
        CHECK(loom_pp_plan_make(&pl, &cfg, 1024, p, 8, LOOM_PP_1F1B, NULL) == LOOM_OK, "gpt2 pp %d: %s", p,
              loom_error_msg());
        CHECK(pl.l0[0] == 0 && pl.l0[p] == cfg.n_layer, "gpt2 pp %d: the split covers the layers", p);
        for (int s = 0; s < p; s++) CHECK(pl.l0[s + 1] > pl.l0[s], "gpt2 pp %d: stage %d is empty", p, s);
        /* the LM head (V x C) weighs on the last stage: it never holds more layers than the others */
        for (int s = 0; s + 1 < p; s++)
            CHECK(pl.l0[p] - pl.l0[p - 1] <= pl.l0[s + 1] - pl.l0[s], "gpt2 pp %d: the last stage has more layers", p);
    }
    loom_pp_plan pl;
    CHECK(loom_pp_plan_make(&pl, &cfg, 1024, 3, 8, LOOM_PP_1F1B, "2,4,6") == LOOM_OK && pl.l0[1] == 2 && pl.l0[2] == 6,
          "--pp-layers 2,4,6");
    CHECK(loom_pp_plan_make(&pl, &cfg, 1024, 3, 8, LOOM_PP_1F1B, "2,4") != LOOM_OK &&
              strstr(loom_error_msg(), "--pp-layers '2,4'"), "--pp-layers of the wrong count: %s", loom_error_msg());
    CHECK(loom_pp_plan_make(&pl, &cfg, 1024, 13, 8, LOOM_PP_1F1B, NULL) != LOOM_OK &&
              strstr(loom_error_msg(), "more stages than the model's 12 layers"), "pp 13: %s", loom_error_msg());

    /* each stage's description: only its tensors, and together the whole depth's buffer */
    loom_gpt_sizes whole;
    loom_gpt_compute_sizes(&cfg, 1, 64, 1, 0, NULL, &whole);
    CHECK(loom_pp_plan_make(&pl, &cfg, 64, 4, 4, LOOM_PP_1F1B, NULL) == LOOM_OK, "gpt2 pp 4");
    size_t at = 0;
    for (int s = 0; s < 4; s++) {
        const loom_stage sg = loom_pp_stage(&pl, s);
        loom_gpt *g;
        if (loom_gpt_init_part(&g, &cfg, 1, 64, 0, "ref", NULL, &sg)) {
            CHECK(0, "stage %d: %s", s, loom_error_msg());
            continue;
        }
        CHECK(g->sizes.stage_base == at, "stage %d starts at %zu, want %zu", s, g->sizes.stage_base, at);
        size_t held = 0;
        for (int i = 0; i < g->sizes.n_tensors; i++) {
            const loom_param_info *pi = &g->params_info[i];
            const int want = pi->layer >= 0 ? pi->layer >= sg.l0 && pi->layer < sg.l1
                             : i < g->sizes.first_layer_tensor ? s == 0 : s == 3;
            CHECK(pi->here == want, "stage %d: %s here %d", s, pi->name, pi->here);
            if (pi->here) CHECK(pi->offset == held && pi->tp_offset == at + held, "stage %d: %s at %zu", s, pi->name,
                                pi->offset);
            held += pi->numel;
        }
        CHECK(held == g->sizes.n_params, "stage %d: tensors hold %zu of %zu", s, held, g->sizes.n_params);
        CHECK((s == 3) == (g->head_copy != NULL), "stage %d: the tied head's copy", s);
        at += g->sizes.n_params;
        loom_gpt_free(g);
    }
    CHECK(at == whole.n_params, "the stages hold %zu of the model's %zu", at, whole.n_params);
    return CHECK_FINISH("test_pipeline");
}
