/* Flag parsing helpers for the `loom` commands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_fail(const char *cmd) {
    fprintf(stderr, "loom %s: error: %s\n", cmd, loom_error_msg());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "loom %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see loom %s --help)\n", cmd);
    return 2;
}

int cli_fail_dist(const char *cmd, const loom_dist *d) {
    if (d->size > 1 && loom_dist_failed_together()) { /* the same error on every rank: rank 0 says it */
        int rc = d->rank == 0 ? cli_fail(cmd) : 1;
        loom_dist_finalize(d);
        return rc;
    }
    if (d->size > 1) { /* one failing rank takes the job down, naming itself */
        fprintf(stderr, "loom %s: error (rank %d of %d): %s\n", cmd, d->rank, d->size, loom_error_msg());
        fflush(stderr);
        loom_dist_abort(d, 1);
    }
    loom_dist_finalize(d);
    return cli_fail(cmd);
}

int cli_bad_value(const char *cmd) {
    fprintf(stderr, "loom %s: error: %s (see loom %s --help)\n", cmd, loom_error_msg(), cmd);
    return 2;
}

int cli_getopt(int argc, char **argv, const struct option *opts, unsigned char *seen) {
    int li = -1, c = getopt_long(argc, argv, ":", opts, &li);
    if (c <= 0 || c == '?' || c == ':' || li < 0 || c >= CLI_MAX_OPT) return c;
    if (seen[c] == CLI_REPEATABLE) return c;
    if (seen[c]++) {
        loom_error(LOOM_ERR_ARG, "--%s is given more than once", opts[li].name);
        return CLI_DUPLICATE;
    }
    return c;
}

/* Plain decimal only: an optional '-', digits (strtol alone would take " 5", "+5"). */
static int is_decimal(const char *s) {
    if (*s == '-') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* [-]digits[.digits][e[+-]digits] or [-].digits...: no hex, no blanks, no inf/nan */
static int is_plain_float(const char *s) {
    int digits = 0;
    if (*s == '-') s++;
    for (; *s >= '0' && *s <= '9'; s++) digits++;
    if (*s == '.')
        for (s++; *s >= '0' && *s <= '9'; s++) digits++;
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (*s < '0' || *s > '9') return 0;
        while (*s >= '0' && *s <= '9') s++;
    }
    return *s == 0;
}

int cli_int(const char *flag, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = is_decimal(s) ? strtol(s, &end, 10) : 0;
    if (!is_decimal(s) || *end || errno) {
        loom_error(LOOM_ERR_ARG, "%s: '%s' is not an integer", flag, s);
        return -1;
    }
    if (v < min || v > max) {
        loom_error(LOOM_ERR_ARG, "%s: %ld is out of range [%ld, %ld]", flag, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_float(const char *flag, const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = is_plain_float(s) ? strtod(s, &end) : 0;
    if (!is_plain_float(s) || *end || errno || !isfinite(v)) {
        loom_error(LOOM_ERR_ARG, "%s: '%s' is not a number", flag, s);
        return -1;
    }
    if (v < min || v > max) {
        loom_error(LOOM_ERR_ARG, "%s: %g is out of range [%g, %g]", flag, v, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_onoff(const char *flag, const char *s, int *out) {
    if (!strcmp(s, "on")) *out = 1;
    else if (!strcmp(s, "off")) *out = 0;
    else {
        loom_error(LOOM_ERR_ARG, "%s: '%s' must be on or off", flag, s);
        return -1;
    }
    return 0;
}

int cli_data_format(const char *s, loom_data_format *out) {
    if (!strcmp(s, "auto")) *out = LOOM_DATA_AUTO;
    else if (!strcmp(s, "shard")) *out = LOOM_DATA_SHARD;
    else if (!strcmp(s, "u16")) *out = LOOM_DATA_U16;
    else {
        loom_error(LOOM_ERR_ARG, "--data-format: '%s' must be auto, shard or u16", s);
        return -1;
    }
    return 0;
}

void cli_model_defaults(cli_model *m, const char *preset) {
    m->preset = preset;
    m->preset_given = 0;
    for (int i = 0; i < 7; i++) m->overrides[i] = -1;
    m->arch = m->tie = -1;
    m->rope_theta = -1;
}

static const char *const model_flags[] = {"--n-layer",   "--n-embd",  "--n-head", "--vocab-size", "--block-size",
                                          "--n-kv-head", "--ffn-dim", "--arch",   "--rope-theta", "--tie"};

int cli_model_opt(cli_model *m, int c, const char *arg) {
    if (c == CLI_MODEL_OPT_BASE) {
        m->preset = arg;
        m->preset_given = 1;
        return 1;
    }
    int k = c - CLI_MODEL_OPT_BASE - 1;
    if (k < 0 || k >= 10) return 0;
    if (k < 7) return cli_int(model_flags[k], arg, 1, 1L << 24, &m->overrides[k]) ? -1 : 1;
    if (k == 7) {
        if (!strcmp(arg, "gpt2")) m->arch = LOOM_ARCH_GPT2;
        else if (!strcmp(arg, "llama")) m->arch = LOOM_ARCH_LLAMA;
        else return loom_error(LOOM_ERR_ARG, "--arch: '%s' must be gpt2 or llama", arg), -1;
        return 1;
    }
    if (k == 8) return cli_float("--rope-theta", arg, 1.0000001, 1e12, &m->rope_theta) ? -1 : 1;
    return cli_onoff("--tie", arg, &m->tie) ? -1 : 1;
}

int cli_model_config(const cli_model *m, loom_gpt_config *cfg) {
    if (loom_gpt_preset(m->preset, cfg)) return -1;
    if (m->arch == LOOM_ARCH_GPT2 && cfg->arch != LOOM_ARCH_GPT2) { /* a Llama preset's shape, as GPT-2 */
        loom_gpt_config g = {.vocab_size = cfg->vocab_size, .block_size = cfg->block_size, .n_layer = cfg->n_layer,
                             .n_embd = cfg->n_embd, .n_head = cfg->n_head};
        *cfg = g;
    }
    int *fields[7] = {&cfg->n_layer, &cfg->n_embd, &cfg->n_head, &cfg->vocab_size, &cfg->block_size,
                      &cfg->n_kv_head, &cfg->ffn_dim};
    for (int i = 0; i < 5; i++)
        if (m->overrides[i] >= 0) *fields[i] = (int)m->overrides[i];
    if (m->arch == LOOM_ARCH_LLAMA && cfg->arch != LOOM_ARCH_LLAMA) { /* a GPT-2 preset's shape, as Llama */
        cfg->arch = LOOM_ARCH_LLAMA;
        cfg->n_kv_head = cfg->n_head;
        cfg->ffn_dim = (8 * cfg->n_embd / 3 + 31) / 32 * 32; /* Llama's 8C/3, rounded up to 32 */
        cfg->rope_theta = 10000.0f;
        cfg->norm_eps = 1e-5f;
    }
    const int llama = cfg->arch == LOOM_ARCH_LLAMA;
    for (int i = 5; i < 7; i++)
        if (m->overrides[i] >= 0) {
            if (!llama) return loom_error(LOOM_ERR_ARG, "%s: only Llama models have it (--arch llama)", model_flags[i]), -1;
            *fields[i] = (int)m->overrides[i];
        }
    if ((m->rope_theta >= 0 || m->tie >= 0) && !llama)
        return loom_error(LOOM_ERR_ARG, "%s: only Llama models have it (--arch llama)",
                          m->rope_theta >= 0 ? "--rope-theta" : "--tie"), -1;
    if (m->rope_theta >= 0) cfg->rope_theta = (float)m->rope_theta;
    if (m->tie >= 0) cfg->untied = !m->tie;
    return loom_gpt_config_validate(cfg) ? -1 : 0;
}

int cli_model_check_init(const cli_model *m, const char *init_from, const loom_gpt_config *file_cfg) {
    const char *given = m->preset_given ? "--model" : m->arch >= 0 ? "--arch" : m->tie >= 0 ? "--tie"
                      : m->rope_theta >= 0 ? "--rope-theta" : NULL;
    for (int i = 0; i < 7 && !given; i++)
        if (m->overrides[i] >= 0 && i != 2) given = model_flags[i];
    /* the head count is not in every file: --n-head may supply it, but not change it */
    if (!given && m->overrides[2] >= 0 && file_cfg && file_cfg->n_head != m->overrides[2]) given = "--n-head";
    if (!given) return 0;
    loom_error(LOOM_ERR_ARG, "%s: the model's shape comes from --init-from %s; %s cannot change it (drop it, or "
               "train from scratch without --init-from)", given, init_from, given);
    return -1;
}

int cli_bad_flag(const char *cmd, const char *arg, int missing_value) {
    if (missing_value)
        fprintf(stderr, "loom %s: error: %s needs a value (see loom %s --help)\n", cmd, arg, cmd);
    else
        fprintf(stderr, "loom %s: error: unknown flag '%s' (see loom %s --help)\n", cmd, arg, cmd);
    return 2;
}

int cli_load_model(const cli_model *m, const char *init_from, uint64_t seed, int B, int T,
                   loom_gpt **out) {
    loom_gpt_config cfg;
    if (cli_model_config(m, &cfg)) return 2;
    if (init_from && m->overrides[2] < 0) cfg.n_head = 0; /* the file's, or an error asking for --n-head */
    if (init_from && loom_model_file_config(init_from, &cfg, &cfg)) return 1;
    if (init_from && cli_model_check_init(m, init_from, &cfg)) return 2;
    if (T == 0) T = cfg.block_size;
    if (T > cfg.block_size) {
        loom_error(LOOM_ERR_ARG, "--seq-len: %d exceeds the model's block size %d", T, cfg.block_size);
        return 2;
    }
    if (loom_gpt_init(out, &cfg, B, T, 0, "cpu")) return 1;
    if (init_from) {
        if (loom_model_load(*out, init_from)) {
            loom_gpt_free(*out);
            *out = NULL;
            return 1;
        }
    } else {
        loom_gpt_init_weights(*out, seed);
    }
    return 0;
}

int cli_load_failed(const char *cmd, int rc) { return rc == 2 ? cli_bad_value(cmd) : cli_fail(cmd); }

const char *cli_default_tokenizer(void) {
    static char found[4200];
    const char *rel = "data/gpt2/r50k_base.tiktoken";
    if (access(rel, R_OK) == 0) return rel;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *ups[] = {"/..", "", "/../share/loom"};
        for (int i = 0; i < 3; i++) {
            snprintf(found, sizeof found, "%s%s/%s", exe, ups[i], rel);
            if (access(found, R_OK) == 0) return found;
        }
    }
    return rel; /* not found: the error will name it */
}
