/* Model save/load over the safetensors reader and writer. Training checkpoints
 * (optimizer state, RNG, loader position) are not here. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "loom/checkpoint.h"
#include "io/ckpt_runs.h"
#include "loom/io.h"
#include "loom/safetensors.h"

/* A model's safetensors: one file, or the shards that a Hugging Face
 * model.safetensors.index.json names (its weight_map; a directory means its
 * model.safetensors, else its index). */
#define MAX_SHARDS 256
typedef struct model_files {
    int n;
    loom_st_file *f[MAX_SHARDS];
} model_files;

static void mf_close(model_files *m) {
    for (int i = 0; i < m->n; i++) loom_st_close(m->f[i]);
    m->n = 0;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* path -> the file to read: a directory's model.safetensors, else its index */
static void resolve(const char *path, char *out, size_t cap) {
    struct stat sb;
    snprintf(out, cap, "%s", path);
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return;
    snprintf(out, cap, "%s/model.safetensors", path);
    if (access(out, R_OK) == 0) return;
    snprintf(out, cap, "%s/model.safetensors.index.json", path);
    if (access(out, R_OK) != 0) snprintf(out, cap, "%s", path); /* neither: the directory's own error */
}

static loom_status mf_open(const char *path, model_files *m) {
    m->n = 0;
    if (!ends_with(path, ".index.json")) {
        loom_status st = loom_st_open(path, &m->f[0]);
        if (!st) m->n = 1;
        return st;
    }
    size_t len;
    char *buf = loom_read_file(path, &len);
    if (!buf) return loom_error(LOOM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    loom_json_error err;
    loom_json_doc *doc = loom_json_parse(buf, len, NULL, &err);
    free(buf);
    if (!doc) return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: not valid JSON: %s", path, err.line, err.col, err.msg);
    const loom_json *root = loom_json_root(doc), *wm = root->type == LOOM_JSON_OBJECT ? loom_json_get(root, "weight_map") : NULL;
    loom_status st = LOOM_OK;
    if (!wm || wm->type != LOOM_JSON_OBJECT || loom_json_len(wm) == 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: no \"weight_map\" object naming the shards", path);
    const char *slash = strrchr(path, '/');
    const int dl = slash ? (int)(slash - path + 1) : 0;
    for (size_t i = 0; !st && i < loom_json_len(wm); i++) {
        const loom_json *v = loom_json_at(wm, i);
        if (v->type != LOOM_JSON_STRING || strchr(v->str, '/')) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: weight_map entry %zu is not a file name beside the index", path, i);
            break;
        }
        char file[4200];
        snprintf(file, sizeof file, "%.*s%s", dl, path, v->str);
        int seen = 0;
        for (int k = 0; k < m->n && !seen; k++) seen = !strcmp(loom_st_path(m->f[k]), file);
        if (seen) continue;
        if (m->n == MAX_SHARDS) st = loom_error(LOOM_ERR_FORMAT, "%s: more than %d shards", path, MAX_SHARDS);
        else if (!(st = loom_st_open(file, &m->f[m->n]))) m->n++;
    }
    loom_json_free(doc);
    if (st) mf_close(m);
    return st;
}

/* the tensor `name` in any of the files (GPT-2's also under "transformer."), and its file */
static const loom_st_tensor *find_tensor(const model_files *m, const char *name, const loom_st_file **owner) {
    char buf[160];
    snprintf(buf, sizeof buf, "transformer.%s", name);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < m->n; i++) {
            const loom_st_tensor *t = loom_st_find(m->f[i], pass ? buf : name);
            if (t) {
                if (owner) *owner = m->f[i];
                return t;
            }
        }
    return NULL;
}

static const char *mf_meta(const model_files *m, const char *key) { return m->n ? loom_st_meta(m->f[0], key) : NULL; }

/* n_head from the config.json beside the model file at `path` into *heads (0: there is
 * no such file, or it has no n_head); the config's path goes to cfgpath for messages. */
static loom_status read_n_head_json(const char *path, int *heads, char *cfgpath, size_t cap) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    snprintf(cfgpath, cap, "%sconfig.json", dir);
    *heads = 0;
    size_t n;
    char *buf = loom_read_file(cfgpath, &n);
    if (!buf) {
        if (errno == ENOENT) return LOOM_OK;
        return loom_error(LOOM_ERR_IO, "%s: cannot read: %s", cfgpath, strerror(errno));
    }
    loom_json_error err;
    loom_json_doc *doc = loom_json_parse(buf, n, NULL, &err);
    free(buf);
    if (!doc)
        return loom_error(err.status == LOOM_ERR_NOMEM ? LOOM_ERR_NOMEM : LOOM_ERR_FORMAT,
                          "%s:%zu:%zu: not valid JSON: %s", cfgpath, err.line, err.col, err.msg);
    loom_status st = LOOM_OK;
    const loom_json *root = loom_json_root(doc);
    const loom_json *v = root->type == LOOM_JSON_OBJECT ? loom_json_get(root, "n_head") : NULL;
    uint64_t u;
    if (root->type != LOOM_JSON_OBJECT)
        st = loom_error(LOOM_ERR_FORMAT, "%s: expected a JSON object, found %s", cfgpath,
                        loom_json_type_name(root->type));
    else if (v && (!loom_json_get_u64(v, &u) || u == 0 || u >= 100000))
        st = loom_error(LOOM_ERR_FORMAT, "%s: n_head must be a positive integer", cfgpath);
    else if (v) *heads = (int)u;
    loom_json_free(doc);
    return st;
}

/* the path of config.json beside a model file */
static void config_json_path(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    snprintf(out, cap, "%.*sconfig.json", slash ? (int)(slash - path + 1) : 0, path);
}

static const char *mf_meta_get(const void *m, const char *key) { return mf_meta(m, key); }

/* Reads a number field of a Hugging Face config; `need` = 0 leaves *out (the default)
 * when the key is absent or null. */
static loom_status hf_num(const char *cfgpath, const loom_json *root, const char *key, int need, double *out) {
    const loom_json *v = loom_json_get(root, key);
    if (!v || v->type == LOOM_JSON_NULL) {
        if (need) return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" is missing", cfgpath, key);
        return LOOM_OK;
    }
    if (v->type == LOOM_JSON_BOOL) *out = v->boolean;
    else if (v->type == LOOM_JSON_NUMBER) *out = v->number;
    else return loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" is not a number", cfgpath, key);
    return LOOM_OK;
}

/* A LlamaConfig (config.json) into cfg. */
static loom_status hf_llama_config(const char *cfgpath, const loom_json *root, loom_gpt_config *c) {
    const loom_json *mt = loom_json_get(root, "model_type");
    const char *type = mt && mt->type == LOOM_JSON_STRING ? mt->str : "";
    if (strcmp(type, "llama"))
        return loom_error(LOOM_ERR_FORMAT, "%s: model_type '%s' is not supported here (gpt2, llama)", cfgpath, type);
    double V = 0, Cd = 0, F = 0, L = 0, H = 0, KVH = -1, Tm = 0, eps = 1e-6, theta = 10000, tie = 0, hd = 0;
    double attn_bias = 0, mlp_bias = 0;
    loom_status st;
    if ((st = hf_num(cfgpath, root, "vocab_size", 1, &V)) || (st = hf_num(cfgpath, root, "hidden_size", 1, &Cd)) ||
        (st = hf_num(cfgpath, root, "intermediate_size", 1, &F)) ||
        (st = hf_num(cfgpath, root, "num_hidden_layers", 1, &L)) ||
        (st = hf_num(cfgpath, root, "num_attention_heads", 1, &H)) ||
        (st = hf_num(cfgpath, root, "num_key_value_heads", 0, &KVH)) ||
        (st = hf_num(cfgpath, root, "max_position_embeddings", 1, &Tm)) ||
        (st = hf_num(cfgpath, root, "rms_norm_eps", 0, &eps)) || (st = hf_num(cfgpath, root, "rope_theta", 0, &theta)) ||
        (st = hf_num(cfgpath, root, "tie_word_embeddings", 0, &tie)) ||
        (st = hf_num(cfgpath, root, "head_dim", 0, &hd)) || (st = hf_num(cfgpath, root, "attention_bias", 0, &attn_bias)) ||
        (st = hf_num(cfgpath, root, "mlp_bias", 0, &mlp_bias)))
        return st;
    if (attn_bias || mlp_bias)
        return loom_error(LOOM_ERR_FORMAT, "%s: attention_bias and mlp_bias are not supported (Llama has no biases)",
                          cfgpath);
    const loom_json *act = loom_json_get(root, "hidden_act");
    if (act && (act->type != LOOM_JSON_STRING || strcmp(act->str, "silu")))
        return loom_error(LOOM_ERR_FORMAT, "%s: hidden_act must be \"silu\"", cfgpath);
    *c = (loom_gpt_config){.vocab_size = (int)V, .block_size = (int)Tm, .n_layer = (int)L, .n_embd = (int)Cd,
                           .n_head = (int)H, .arch = LOOM_ARCH_LLAMA, .n_kv_head = KVH < 0 ? (int)H : (int)KVH,
                           .ffn_dim = (int)F, .untied = !tie, .rope_theta = (float)theta, .norm_eps = (float)eps};
    if (hd && H > 0 && (int)hd * (int)H != (int)Cd)
        return loom_error(LOOM_ERR_FORMAT, "%s: head_dim %d is not hidden_size / num_attention_heads = %d", cfgpath,
                          (int)hd, (int)(Cd / H));
    const loom_json *rs = loom_json_get(root, "rope_scaling");
    if (rs && rs->type != LOOM_JSON_NULL) {
        const loom_json *t = rs->type == LOOM_JSON_OBJECT ? loom_json_get(rs, "rope_type") : NULL;
        if (!t && rs->type == LOOM_JSON_OBJECT) t = loom_json_get(rs, "type");
        if (!t || t->type != LOOM_JSON_STRING || strcmp(t->str, "llama3"))
            return loom_error(LOOM_ERR_FORMAT, "%s: rope_scaling of type '%s' is not supported (llama3)", cfgpath,
                              t && t->type == LOOM_JSON_STRING ? t->str : "?");
        double fa = 0, lo = 0, hi = 0, ctx = 0;
        if ((st = hf_num(cfgpath, rs, "factor", 1, &fa)) || (st = hf_num(cfgpath, rs, "low_freq_factor", 1, &lo)) ||
            (st = hf_num(cfgpath, rs, "high_freq_factor", 1, &hi)) ||
            (st = hf_num(cfgpath, rs, "original_max_position_embeddings", 1, &ctx)))
            return st;
        c->rope_factor = (float)fa, c->rope_low_freq = (float)lo, c->rope_high_freq = (float)hi;
        c->rope_orig_ctx = (int)ctx;
    }
    return LOOM_OK;
}

/* A Llama model file: the config from loom's metadata, else from config.json beside it
 * (Hugging Face's); then it must agree with the tensors. */
static loom_status llama_file_config(const char *path, const model_files *f, loom_gpt_config *cfg) {
    loom_status st;
    char cfgpath[4200];
    config_json_path(path, cfgpath, sizeof cfgpath);
    if (mf_meta(f, "arch")) {
        if ((st = loom_gpt_config_from_meta(mf_meta_get, f, path, cfg))) return st;
    } else {
        size_t n;
        char *buf = loom_read_file(cfgpath, &n);
        if (!buf)
            return loom_error(LOOM_ERR_FORMAT, "%s: a Llama model needs its config: %s: %s", path, cfgpath,
                              strerror(errno));
        loom_json_error err;
        loom_json_doc *doc = loom_json_parse(buf, n, NULL, &err);
        free(buf);
        if (!doc) return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: not valid JSON: %s", cfgpath, err.line, err.col, err.msg);
        const loom_json *root = loom_json_root(doc);
        st = root->type == LOOM_JSON_OBJECT ? hf_llama_config(cfgpath, root, cfg)
                                            : loom_error(LOOM_ERR_FORMAT, "%s: expected a JSON object", cfgpath);
        loom_json_free(doc);
        if (st) return st;
    }
    if ((st = loom_gpt_config_validate(cfg))) return loom_error(st, "%s: %s", cfgpath, loom_error_msg());
    const loom_st_tensor *e = find_tensor(f, "model.embed_tokens.weight", NULL);
    if (e->ndim != 2 || e->shape[0] != cfg->vocab_size || e->shape[1] != cfg->n_embd)
        return loom_error(LOOM_ERR_FORMAT, "%s: model.embed_tokens.weight is not [%d, %d] (vocab_size, hidden_size)",
                          path, cfg->vocab_size, cfg->n_embd);
    char name[96];
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", cfg->n_layer - 1);
    const int has_last = find_tensor(f, name, NULL) != NULL;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", cfg->n_layer);
    if (!has_last || find_tensor(f, name, NULL))
        return loom_error(LOOM_ERR_FORMAT, "%s: the file's layers are not the config's num_hidden_layers %d", path,
                          cfg->n_layer);
    return LOOM_OK;
}

loom_status loom_model_file_config(const char *given, const loom_gpt_config *fallback,
                                   loom_gpt_config *cfg) {
    char path[4200];
    resolve(given, path, sizeof path);
    model_files mf, *f = &mf;
    loom_status st = mf_open(path, f);
    if (st) return st;
    const loom_gpt_config flags = *fallback; /* cfg may be fallback */
    *cfg = flags;
    if (find_tensor(f, "model.embed_tokens.weight", NULL)) {
        st = llama_file_config(path, f, cfg);
        mf_close(f);
        return st;
    }
    const loom_st_tensor *wte = find_tensor(f, "wte.weight", NULL), *wpe = find_tensor(f, "wpe.weight", NULL);
    if (!wte || !wpe || wte->ndim != 2 || wpe->ndim != 2 || wte->shape[1] != wpe->shape[1]) {
        mf_close(f);
        return loom_error(LOOM_ERR_FORMAT, "%s: not a GPT-2 model (needs 2-D wte.weight and wpe.weight "
                          "with the same width)", path);
    }
    cfg->vocab_size = (int)wte->shape[0];
    cfg->block_size = (int)wpe->shape[0];
    cfg->n_embd = (int)wte->shape[1];
    int L = 0;
    for (;; L++) {
        char name[64];
        snprintf(name, sizeof name, "h.%d.ln_1.weight", L);
        if (!find_tensor(f, name, NULL)) break;
    }
    cfg->n_layer = L;
    const char *nh = mf_meta(f, "n_head");
    char *end = NULL;
    long heads = nh ? strtol(nh, &end, 10) : 0;
    int bad_meta = nh && (!*nh || *end || heads < 1 || heads >= 100000);
    mf_close(f);
    if (bad_meta) return loom_error(LOOM_ERR_FORMAT, "%s: metadata n_head is not a positive integer", path);
    if (L == 0) return loom_error(LOOM_ERR_FORMAT, "%s: no transformer layers (h.0.ln_1.weight missing)", path);
    char cfgpath[4200] = "";
    int hj = 0;
    if (!nh && (st = read_n_head_json(path, &hj, cfgpath, sizeof cfgpath))) return st;
    if (!nh) heads = hj;
    /* neither says: the head count of --n-head, if it was given (fallback n_head > 0) */
    int from_flags = heads == 0 && flags.n_head > 0;
    if (from_flags) heads = flags.n_head;
    if (heads == 0)
        return loom_error(LOOM_ERR_ARG, "%s: the number of heads is not in the file's metadata nor in %s "
                          "(n_head); give --n-head", path, cfgpath);
    if (cfg->n_embd % heads != 0 && from_flags)
        return loom_error(LOOM_ERR_ARG, "%s: --n-head %ld does not divide the file's width %d", path, heads,
                          cfg->n_embd);
    if (cfg->n_embd % heads != 0)
        return loom_error(LOOM_ERR_FORMAT, "%s: n_head %ld from %s does not divide the width %d", path, heads,
                          nh ? "the file's metadata" : cfgpath, cfg->n_embd);
    cfg->n_head = (int)heads;
    st = loom_gpt_config_validate(cfg);
    if (st) return loom_error(st, "%s: %s", path, loom_error_msg());
    return LOOM_OK;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* "[64]", "[64, 128]", "[]" for a scalar (cut short if cap is small). */
static const char *shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
    return out;
}

loom_status loom_model_load(loom_gpt *g, const char *given) {
    char path[4200];
    resolve(given, path, sizeof path);
    model_files mf;
    loom_status st = mf_open(path, &mf);
    if (st) return st;
    for (int i = 0; i < mf.n && !st; i++) { /* a training checkpoint: verify every CRC */
        const loom_st_file *f = mf.f[i];
        if (loom_st_meta(f, "loom_checkpoint") || loom_st_meta(f, "crc32c") || loom_st_meta(f, "crc32c_meta"))
            st = loom_ckpt_verify(f);
    }
    for (int i = 0; i < g->sizes.n_tensors && !st; i++) {
        const loom_param_info *pi = &g->params_info[i];
        const loom_st_file *f = NULL;
        const loom_st_tensor *t = find_tensor(&mf, pi->name, &f);
        if (!t) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' is missing", path, pi->name);
            break;
        }
        int same = t->ndim == pi->ndim;
        for (int d = 0; same && d < pi->ndim; d++) same = t->shape[d] == pi->full[d];
        if (!same) {
            char has[160], needs[64];
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' has shape %s, the model needs %s", path, pi->name,
                            shape_str(has, sizeof has, t->ndim, t->shape),
                            shape_str(needs, sizeof needs, pi->ndim, pi->full));
            break;
        }
        if (t->dtype != LOOM_DTYPE_F32 && t->dtype != LOOM_DTYPE_BF16 && t->dtype != LOOM_DTYPE_F16) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)",
                            path, pi->name, loom_dtype_name(t->dtype));
            break;
        }
        /* this rank's part of it (a tensor-parallel slice, or all), run by run */
        const long nr = ckpt_tensor_runs(pi, i, pi->offset, 0, g->sizes.n_params, NULL);
        ckpt_run one, *runs = nr <= 1 ? &one : malloc(sizeof(ckpt_run) * nr);
        if (!runs) {
            st = loom_error(LOOM_ERR_NOMEM, "out of memory loading %s", pi->name);
            break;
        }
        ckpt_tensor_runs(pi, i, pi->offset, 0, g->sizes.n_params, runs);
        const unsigned char *src0 = loom_st_data(f, t);
        for (long r = 0; r < nr; r++) {
            float *dst = g->params + runs[r].at;
            if (t->dtype == LOOM_DTYPE_F32) {
                memcpy(dst, src0 + 4 * runs[r].file_at, runs[r].n * sizeof(float));
                continue;
            }
            const unsigned char *src = src0 + 2 * runs[r].file_at;
            for (size_t k = 0; k < runs[r].n; k++) {
                uint16_t h;
                memcpy(&h, src + 2 * k, 2);
                if (t->dtype == LOOM_DTYPE_BF16) {
                    uint32_t bits = (uint32_t)h << 16;
                    memcpy(&dst[k], &bits, 4);
                } else dst[k] = half_to_float(h);
            }
        }
        if (runs != &one) free(runs);
    }
    mf_close(&mf);
    int bad = st ? -1 : loom_gpt_first_nonfinite(g, g->params, 0, g->sizes.n_params);
    if (bad >= 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (NaN or Inf): a diverged model, "
                        "refused", path, g->params_info[bad].name);
    return st;
}

void loom_model_parts_to_full(const loom_gpt *split, const float *const *part, float *dst, size_t dst_base) {
    const int tp = split->tp.size;
    for (int i = 0; i < split->sizes.n_tensors; i++) {
        loom_param_info pi = split->params_info[i]; /* every rank's part lies at the same offset */
        for (int r = 0; r < tp && pi.here; r++) {
            if (pi.split_dim < 0 && r > 0) continue; /* replicated: rank 0's copy */
            LOOM_CHECK(loom_param_slice(&split->params_info[i], r, tp, &pi.slice) == 0);
            const long nr = ckpt_tensor_runs(&pi, i, pi.offset, 0, split->sizes.n_params, NULL);
            ckpt_run *runs = malloc(sizeof(ckpt_run) * (nr ? nr : 1));
            LOOM_CHECK(runs != NULL);
            ckpt_tensor_runs(&pi, i, pi.offset, 0, split->sizes.n_params, runs);
            for (long k = 0; k < nr; k++)
                memcpy(dst + pi.full_offset - dst_base + runs[k].file_at, part[r] + runs[k].at, runs[k].n * sizeof(float));
            free(runs);
        }
    }
}

loom_status loom_model_save(const loom_gpt *g, const char *path) {
    LOOM_CHECK(g->tp.size == 1); /* a split model is gathered into a whole one first */
    loom_st_writer *w = loom_st_writer_init();
    if (!w) return LOOM_ERR_NOMEM;
    loom_status st = LOOM_OK;
    for (int i = 0; i < g->sizes.n_tensors && !st; i++) {
        const loom_param_info *pi = &g->params_info[i];
        st = loom_st_writer_add(w, pi->name, LOOM_DTYPE_F32, pi->ndim, pi->shape, g->params + pi->offset);
    }
    const char *keys[LOOM_CONFIG_KEYS];
    char v[LOOM_CONFIG_KEYS][32];
    const int nk = loom_gpt_config_to_meta(&g->cfg, keys, v);
    for (int k = 0; k < nk && !st; k++) st = loom_st_writer_meta(w, keys[k], v[k]);
    if (!st) st = loom_st_writer_meta(w, "format", "pt");
    if (!st) st = loom_st_writer_meta(w, "producer", "loom " LOOM_VERSION);
    /* write beside the target and rename, so a failed or interrupted save never
     * leaves a half-written file where a good model was */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()); /* no two writers share one */
    if (!st) st = loom_st_writer_write(w, tmp);
    loom_st_writer_free(w);
    if (!st && rename(tmp, path) != 0)
        st = loom_error(LOOM_ERR_IO, "%s: cannot rename from %s: %s", path, tmp, strerror(errno));
    if (st) remove(tmp);
    return st;
}

loom_status loom_model_write_hf_config(const loom_gpt_config *c, const char *path) {
    char tmp[4200]; /* written beside and renamed, as the model */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    if (!fp) return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (c->arch == LOOM_ARCH_LLAMA) {
        char scaling[256] = "null";
        if (c->rope_factor > 0)
            snprintf(scaling, sizeof scaling, "{\"rope_type\": \"llama3\", \"factor\": %.9g, \"low_freq_factor\": %.9g, "
                     "\"high_freq_factor\": %.9g, \"original_max_position_embeddings\": %d}", c->rope_factor,
                     c->rope_low_freq, c->rope_high_freq, c->rope_orig_ctx);
        fprintf(fp,
                "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
                "  \"head_dim\": %d,\n  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %.9g,\n"
                "  \"rope_theta\": %.9g,\n  \"rope_scaling\": %s,\n  \"tie_word_embeddings\": %s,\n"
                "  \"hidden_act\": \"silu\",\n  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
                "  \"initializer_range\": 0.02,\n  \"torch_dtype\": \"float32\"\n}\n",
                c->vocab_size, c->n_embd, c->ffn_dim, c->n_layer, c->n_head, c->n_kv_head, c->n_embd / c->n_head,
                c->block_size, c->norm_eps, c->rope_theta, scaling, c->untied ? "false" : "true");
    } else fprintf(fp,
            "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
            "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_ctx\": %d,\n  \"n_embd\": %d,\n"
            "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": null,\n"
            "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n"
            "  \"initializer_range\": 0.02,\n  \"resid_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n"
            "  \"attn_pdrop\": 0.0,\n  \"scale_attn_weights\": true,\n  \"tie_word_embeddings\": true,\n"
            "  \"bos_token_id\": 50256,\n  \"eos_token_id\": 50256,\n  \"torch_dtype\": \"float32\"\n}\n",
            c->vocab_size, c->block_size, c->block_size, c->n_embd, c->n_layer, c->n_head);
    if (fclose(fp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return loom_error(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return LOOM_OK;
}
