/* GPT-2 configs: presets, validation, and the one sizing function that the trainer and
 * the planner share. */
#include <stdio.h>
#include <string.h>

#include "loom/model.h"

typedef struct preset {
    const char *name;
    loom_gpt_config cfg;
} preset;

static const preset presets[] = {
    {"tiny", {50257, 256, 2, 128, 4}},
    {"small", {50257, 1024, 6, 384, 6}},
    {"gpt2", {50257, 1024, 12, 768, 12}},
    {"gpt2-medium", {50257, 1024, 24, 1024, 16}},
    {"gpt2-large", {50257, 1024, 36, 1280, 20}},
    {"gpt2-xl", {50257, 1024, 48, 1600, 25}},
};

const char *loom_gpt_preset_names(void) { return "tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl"; }

loom_status loom_gpt_preset(const char *name, loom_gpt_config *cfg) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(name, presets[i].name)) {
            *cfg = presets[i].cfg;
            return LOOM_OK;
        }
    return loom_error(LOOM_ERR_ARG, "--model: unknown preset '%s' (one of: %s)", name,
                      loom_gpt_preset_names());
}

loom_status loom_gpt_config_validate(const loom_gpt_config *c) {
    if (c->vocab_size < 1 || c->vocab_size > 1 << 24)
        return loom_error(LOOM_ERR_ARG, "--vocab-size: %d is out of range [1, 16777216]", c->vocab_size);
    if (c->block_size < 1 || c->block_size > 1 << 16)
        return loom_error(LOOM_ERR_ARG, "--block-size: %d is out of range [1, 65536]", c->block_size);
    if (c->n_layer < 1 || c->n_layer > 1024)
        return loom_error(LOOM_ERR_ARG, "--n-layer: %d is out of range [1, 1024]", c->n_layer);
    if (c->n_embd < 1 || c->n_embd > 1 << 16)
        return loom_error(LOOM_ERR_ARG, "--n-embd: %d is out of range [1, 65536]", c->n_embd);
    if (c->n_head < 1 || c->n_embd % c->n_head != 0)
        return loom_error(LOOM_ERR_ARG, "--n-head: %d heads do not divide --n-embd %d", c->n_head, c->n_embd);
    return LOOM_OK;
}

void loom_gpt_compute_sizes(const loom_gpt_config *cfg, int B, int T, loom_gpt_sizes *s) {
    const size_t V = cfg->vocab_size, L = cfg->n_layer, C = cfg->n_embd, H = cfg->n_head;
    const size_t BT = (size_t)B * T, Tmax = cfg->block_size;
    s->n_tensors = 2 + (int)L * LOOM_LAYER_PARAMS + 2;
    size_t per_layer = 2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * 4 * C + 4 * C + 4 * C * C + C;
    s->n_params = V * C + Tmax * C + L * per_layer + 2 * C;
    /* per layer: ln1, qkv, atty, res2, ln2, fch, fch_gelu, res3 + 4 LN stats + lse */
    size_t act_layer = BT * (C + 3 * C + C + C + C + 4 * C + 4 * C + C) + 4 * BT + (size_t)B * H * T;
    /* encoded, lnf, lnf stats, logits, losses, scratch (BT,C) */
    s->n_acts = L * act_layer + BT * C + BT * C + 2 * BT + BT * V + BT + BT * C;
    /* dres, dbuf (BT,C), dqkv (BT,3C), dfch (BT,4C) */
    s->n_grad_acts = BT * (C + C + 3 * C + 4 * C);
    double n_no_wpe = (double)(s->n_params - Tmax * C);
    s->flops_per_token = 6.0 * n_no_wpe + 12.0 * (double)L * (double)T * (double)C;
}
