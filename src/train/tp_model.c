/* Tensor parallelism's whole model: rank 0 of a tensor-parallel group receives every
 * rank's parts and assembles the model one process would hold (for OUT/model.safetensors). */
#include <stdlib.h>

#include "loom/io.h"
#include "loom/train.h"

loom_status loom_tp_gather_model(const loom_gpt *g, const loom_group *tp, loom_gpt **whole) {
    *whole = NULL;
    uint32_t *all = NULL;
    size_t total = 0;
    LOOM_CHECK(sizeof(float) == sizeof(uint32_t));
    loom_status st = loom_dist_gather_u32(tp, (const uint32_t *)g->params, g->sizes.n_params, &all, &total);
    if (st || tp->rank != 0) {
        free(all);
        return st;
    }
    st = loom_gpt_init(whole, &g->cfg, 1, 1, 0, "cpu");
    if (!st) {
        const float **part = malloc(sizeof(float *) * (size_t)tp->size);
        if (!part) st = loom_error(LOOM_ERR_NOMEM, "out of memory gathering the model");
        for (int r = 0; part && r < tp->size; r++) part[r] = (const float *)all + (size_t)r * g->sizes.n_params;
        if (part) loom_model_from_parts(*whole, g, part);
        free(part);
    }
    free(all);
    return st;
}
