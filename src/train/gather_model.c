/* The whole model from its parts (for OUT/model.safetensors): on each pipeline stage,
 * tensor-parallel rank 0 receives its group's parts and lays its stage's tensors out
 * whole, as one range of the whole model; world rank 0 receives every stage's range. */
#include <stdlib.h>
#include <string.h>

#include "loom/io.h"
#include "loom/train.h"

loom_status loom_gather_model(const loom_gpt *g, const loom_dist *d, loom_gpt **whole) {
    *whole = NULL;
    if (d->dp.rank != 0) return LOOM_OK;
    uint32_t *all = NULL;
    size_t total = 0;
    LOOM_CHECK(sizeof(float) == sizeof(uint32_t));
    loom_status st = LOOM_OK;
    if (d->tp.size > 1) st = loom_dist_gather_u32(&d->tp, (const uint32_t *)g->params, g->sizes.n_params, &all, &total);
    if (st || d->tp.rank != 0) {
        free(all);
        return st;
    }
    /* this stage's range of the whole model: its first tensor to its last */
    size_t lo = (size_t)-1, hi = 0;
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        if (!pi->here) continue;
        if (pi->full_offset < lo) lo = pi->full_offset;
        if (pi->full_offset + pi->full_numel > hi) hi = pi->full_offset + pi->full_numel;
    }
    const float **part = malloc(sizeof(float *) * (size_t)d->tp.size);
    float *mine = malloc(sizeof(float) * (hi - lo));
    if (!part || !mine) st = loom_error(LOOM_ERR_NOMEM, "out of memory gathering the model");
    for (int r = 0; part && r < d->tp.size; r++)
        part[r] = all ? (const float *)all + (size_t)r * g->sizes.n_params : g->params;
    if (!st) loom_model_parts_to_full(g, part, mine, lo);
    free(part);
    free(all);
    const int stages = d->pp.size, tag = 6;
    if (d->pp.rank > 0) { /* to world rank 0: the range, then its floats */
        float head[4];
        const uint64_t r[2] = {st ? 0 : lo, st ? 0 : hi - lo};
        memcpy(head, r, sizeof r);
        loom_p2p q = {0};
        loom_p2p_isend(&d->world, head, 4, 0, tag, &q);
        loom_p2p_wait(&q, "model gather: a stage's range to rank 0");
        if (r[1]) loom_p2p_isend(&d->world, mine, r[1], 0, tag, &q);
        loom_p2p_wait(&q, "model gather: a stage's tensors to rank 0");
        free(mine);
        return st;
    }
    if (!st) st = loom_gpt_init(whole, &g->cfg, 1, 1, 0, "cpu");
    if (!st) memcpy((*whole)->params + lo, mine, sizeof(float) * (hi - lo));
    free(mine);
    for (int s = 1; s < stages; s++) { /* every stage's leader sends, even after a failure here */
        const int from = s * d->dp.size * d->tp.size;
        float head[4];
        uint64_t r[2];
        loom_p2p q = {0};
        loom_p2p_irecv(&d->world, head, 4, from, tag, &q);
        loom_p2p_wait(&q, "model gather: a stage's range");
        memcpy(r, head, sizeof r);
        float *dst = NULL, *junk = NULL;
        if (r[1]) dst = !st && r[0] + r[1] <= (*whole)->sizes.n_params ? (*whole)->params + r[0]
                                                                        : (junk = malloc(sizeof(float) * r[1]));
        if (r[1] && !dst) {
            st = loom_error(LOOM_ERR_NOMEM, "out of memory gathering the model");
            continue; /* cannot drain it: the sender's wait ends with the job */
        }
        if (r[1]) loom_p2p_irecv(&d->world, dst, r[1], from, tag, &q);
        loom_p2p_wait(&q, "model gather: a stage's tensors");
        free(junk);
        if (!r[1] && !st) st = loom_error(LOOM_ERR_ARG, "model gather: pipeline stage %d sent nothing", s);
    }
    if (st) {
        loom_gpt_free(*whole);
        *whole = NULL;
    }
    return st;
}
