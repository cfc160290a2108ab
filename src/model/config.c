/* Model configs: the presets of each architecture and validation (the sizes come from
 * the description, desc.c). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/model.h"

typedef struct preset {
    const char *name;
    loom_gpt_config cfg;
} preset;

/* GPT-2: {V, block, L, C, H}; the Llama fields zero */
#define GPT2(V, Tm, L, C, H) {V, Tm, L, C, H, LOOM_ARCH_GPT2, 0, 0, 0, 0, 0, 0, 0, 0, 0}
static const preset presets[] = {
    {"tiny", GPT2(50257, 256, 2, 128, 4)},
    {"small", GPT2(50257, 1024, 6, 384, 6)},
    {"gpt2", GPT2(50257, 1024, 12, 768, 12)},
    {"gpt2-medium", GPT2(50257, 1024, 24, 1024, 16)},
    {"gpt2-large", GPT2(50257, 1024, 36, 1280, 20)},
    {"gpt2-xl", GPT2(50257, 1024, 48, 1600, 25)},
    /* Llama: {V, block, L, C, H, arch, KVH, F, untied, theta, eps, rope_scaling llama3: factor, low, high, ctx} */
    {"llama-tiny", {50257, 256, 2, 128, 4, LOOM_ARCH_LLAMA, 2, 352, 0, 10000.0f, 1e-5f, 0, 0, 0, 0}},
    {"smollm-135m", {49152, 2048, 30, 576, 9, LOOM_ARCH_LLAMA, 3, 1536, 0, 100000.0f, 1e-5f, 0, 0, 0, 0}},
    {"tinyllama-1.1b", {32000, 2048, 22, 2048, 32, LOOM_ARCH_LLAMA, 4, 5632, 1, 10000.0f, 1e-5f, 0, 0, 0, 0}},
    {"llama-3.2-1b", {128256, 131072, 16, 2048, 32, LOOM_ARCH_LLAMA, 8, 8192, 0, 500000.0f, 1e-5f, 32.0f, 1.0f, 4.0f, 8192}},
};

const char *loom_gpt_preset_names(void) {
    return "tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl, llama-tiny, smollm-135m, tinyllama-1.1b, llama-3.2-1b";
}

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
    const int llama = c->arch == LOOM_ARCH_LLAMA, max_block = llama ? 1 << 17 : 1 << 16;
    if (c->arch != LOOM_ARCH_GPT2 && !llama) return loom_error(LOOM_ERR_ARG, "--arch: unknown architecture %d", c->arch);
    if (c->block_size < 1 || c->block_size > max_block)
        return loom_error(LOOM_ERR_ARG, "--block-size: %d is out of range [1, %d]", c->block_size, max_block);
    if (c->n_layer < 1 || c->n_layer > 1024)
        return loom_error(LOOM_ERR_ARG, "--n-layer: %d is out of range [1, 1024]", c->n_layer);
    if (c->n_embd < 1 || c->n_embd > 1 << 16)
        return loom_error(LOOM_ERR_ARG, "--n-embd: %d is out of range [1, 65536]", c->n_embd);
    if (c->n_head < 1 || c->n_embd % c->n_head != 0)
        return loom_error(LOOM_ERR_ARG, "--n-head: %d heads do not divide --n-embd %d", c->n_head, c->n_embd);
    if (!llama) return LOOM_OK;
    if (c->n_kv_head < 1 || c->n_head % c->n_kv_head != 0)
        return loom_error(LOOM_ERR_ARG, "--n-kv-head: %d key/value heads do not divide --n-head %d", c->n_kv_head,
                          c->n_head);
    if ((c->n_embd / c->n_head) % 2)
        return loom_error(LOOM_ERR_ARG, "--n-head: the head size %d is odd (rotary embeddings turn pairs)",
                          c->n_embd / c->n_head);
    if (c->ffn_dim < 1 || c->ffn_dim > 1 << 20)
        return loom_error(LOOM_ERR_ARG, "--ffn-dim: %d is out of range [1, 1048576]", c->ffn_dim);
    if (!(c->rope_theta > 1.0f)) return loom_error(LOOM_ERR_ARG, "--rope-theta: %g must be above 1", c->rope_theta);
    if (!(c->norm_eps > 0.0f) || c->norm_eps > 1.0f)
        return loom_error(LOOM_ERR_ARG, "rms_norm_eps: %g is out of range (0, 1]", c->norm_eps);
    if (c->rope_factor != 0 && (!(c->rope_factor >= 1.0f) || !(c->rope_high_freq > c->rope_low_freq) ||
                                !(c->rope_low_freq > 0) || c->rope_orig_ctx < 1))
        return loom_error(LOOM_ERR_ARG, "rope_scaling: factor %g, low_freq_factor %g, high_freq_factor %g, "
                          "original_max_position_embeddings %d are not a valid llama3 scaling", c->rope_factor,
                          c->rope_low_freq, c->rope_high_freq, c->rope_orig_ctx);
    return LOOM_OK;
}

/* The config's fields by their metadata keys: GPT-2's five, then Llama's. */
typedef struct cfg_field {
    const char *key;
    int is_float;
    size_t off;
} cfg_field;
#define F_INT(k, f) {k, 0, offsetof(loom_gpt_config, f)}
#define F_FLT(k, f) {k, 1, offsetof(loom_gpt_config, f)}
static const cfg_field fields[] = {
    F_INT("vocab_size", vocab_size),   F_INT("block_size", block_size),     F_INT("n_layer", n_layer),
    F_INT("n_embd", n_embd),           F_INT("n_head", n_head),             F_INT("arch", arch),
    F_INT("n_kv_head", n_kv_head),     F_INT("ffn_dim", ffn_dim),           F_INT("untied", untied),
    F_FLT("rope_theta", rope_theta),   F_FLT("norm_eps", norm_eps),         F_FLT("rope_factor", rope_factor),
    F_FLT("rope_low_freq", rope_low_freq), F_FLT("rope_high_freq", rope_high_freq),
    F_INT("rope_orig_ctx", rope_orig_ctx)};
enum { N_GPT2_FIELDS = 5, N_FIELDS = sizeof fields / sizeof fields[0] };

static double field_get(const loom_gpt_config *c, const cfg_field *f) {
    const char *p = (const char *)c + f->off;
    return f->is_float ? (double)*(const float *)p : (double)*(const int *)p;
}

static void field_set(loom_gpt_config *c, const cfg_field *f, double v) {
    char *p = (char *)c + f->off;
    if (f->is_float) *(float *)p = (float)v;
    else *(int *)p = (int)v;
}

int loom_gpt_config_to_meta(const loom_gpt_config *c, const char *keys[], char vals[][32]) {
    const int n = c->arch == LOOM_ARCH_GPT2 ? N_GPT2_FIELDS : N_FIELDS; /* GPT-2 files stay as they were */
    for (int i = 0; i < n; i++) {
        keys[i] = fields[i].key;
        if (fields[i].is_float) snprintf(vals[i], 32, "%.9g", field_get(c, &fields[i])); /* round-trips a float */
        else snprintf(vals[i], 32, "%d", (int)field_get(c, &fields[i]));
    }
    return n;
}

loom_status loom_gpt_config_from_meta(const char *(*get)(const void *ctx, const char *key), const void *ctx,
                                      const char *what, loom_gpt_config *c) {
    memset(c, 0, sizeof *c);
    const char *arch = get(ctx, "arch");
    const int n = arch && strcmp(arch, "0") ? N_FIELDS : N_GPT2_FIELDS; /* no "arch": GPT-2 */
    for (int i = 0; i < n; i++) {
        const char *v = get(ctx, fields[i].key);
        if (!v) return loom_error(LOOM_ERR_FORMAT, "%s: metadata '%s' is missing", what, fields[i].key);
        char *end;
        errno = 0;
        double d = fields[i].is_float ? strtod(v, &end) : (double)strtol(v, &end, 10);
        if (!*v || *end || errno)
            return loom_error(LOOM_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", what, fields[i].key, v);
        field_set(c, &fields[i], d);
    }
    return LOOM_OK;
}

int loom_gpt_config_diff(const loom_gpt_config *a, const loom_gpt_config *b, const char *la, const char *lb,
                         char *buf, size_t cap) {
    int n = 0;
    size_t len = strlen(buf);
    for (int i = 0; i < N_FIELDS; i++) {
        double x = field_get(a, &fields[i]), y = field_get(b, &fields[i]);
        if (x == y) continue;
        n++;
        if (len < cap)
            len += (size_t)snprintf(buf + len, cap - len, "%s%s %.9g (%s) vs %.9g (%s)", len ? ", " : "",
                                    fields[i].key, x, la, y, lb);
    }
    return n;
}
