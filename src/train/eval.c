/* Evaluation: the mean loss over a dataset's windows in order. */
#include "loom/train.h"

loom_status loom_eval_batches(const loom_dataset *ds, int B, int T, long max_batches, uint64_t *n) {
    *n = loom_dataset_samples(ds) / (uint64_t)B;
    if (*n == 0)
        return loom_error(LOOM_ERR_ARG, "--batch: %d sequences of %d tokens need more data than the "
                          "%llu windows available", B, T, (unsigned long long)loom_dataset_samples(ds));
    if (max_batches > 0 && (uint64_t)max_batches < *n) *n = (uint64_t)max_batches;
    return LOOM_OK;
}

loom_status loom_eval_loss(loom_gpt *g, const loom_dataset *ds, int B, int T, long max_batches,
                           double *loss, long *batches) {
    uint64_t n;
    loom_status st = loom_eval_batches(ds, B, T, max_batches, &n);
    if (st) return st;
    int32_t *in = loom_alloc(sizeof(int32_t) * 2 * B * T, "eval batch");
    if (!in) return LOOM_ERR_NOMEM;
    int32_t *tg = in + B * T;
    double sum = 0.0;
    for (uint64_t k = 0; k < n; k++) {
        for (int b = 0; b < B; b++)
            loom_dataset_sample(ds, k * B + b, 0, 0, in + b * T, tg + b * T);
        sum += loom_gpt_forward(g, in, tg, B, T, 0.0f);
    }
    loom_free(in);
    *loss = sum / (double)n;
    if (batches) *batches = (long)n;
    return LOOM_OK;
}
