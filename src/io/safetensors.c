/* safetensors reader (mmap or in-memory copy, fully validated: any input gives either a
 * consistent file or one error message) and writer (header + contiguous data through a
 * buffered FILE, optionally fsync'ed). No rename here: atomic checkpoint commits live a layer above. */
#include "loom/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MiB, as in the reference implementation */
#define ST_META_KEY "__metadata__"

/* ---- dtypes ------------------------------------------------------------------ */

static const char *const dtype_names[LOOM_DTYPE_COUNT] = {
    "F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "BOOL",
};
static const unsigned char dtype_sizes[LOOM_DTYPE_COUNT] = {4, 2, 2, 8, 1, 2, 4, 8, 1, 2, 4, 8, 1};

size_t loom_dtype_size(loom_dtype dt) { return (unsigned)dt < LOOM_DTYPE_COUNT ? dtype_sizes[dt] : 0; }
const char *loom_dtype_name(loom_dtype dt) { return (unsigned)dt < LOOM_DTYPE_COUNT ? dtype_names[dt] : "?"; }

/* ---- shared helpers ---------------------------------------------------------- */

/* numel(shape) * size in bytes; 0 (not representable) on overflow, else 1. */
static int shape_bytes(int ndim, const int64_t *shape, size_t elem, uint64_t *out) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && n > UINT64_MAX / d) return 0;
        n *= d;
    }
    if (elem != 0 && n > UINT64_MAX / elem) return 0;
    *out = n * elem;
    return 1;
}

/* "[3, 4]" into out (truncated if long). */
static void fmt_shape(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

/* A name made safe for an error message: control bytes as \xNN, long names cut with
 * "..." at a UTF-8 boundary. */
#define NAME_MSG 96
static const char *fmt_name(char out[NAME_MSG], const char *s, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k + 8 >= NAME_MSG) {
            while (k > 0 && ((unsigned char)out[k - 1] & 0xc0) == 0x80) k--; /* continuation */
            if (k > 0 && (unsigned char)out[k - 1] >= 0xc0) k--;             /* dangling lead */
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f) k += (size_t)snprintf(out + k, NAME_MSG - k, "\\x%02x", c);
        else out[k++] = (char)c;
    }
    out[k] = 0;
    return out;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ---- reader ------------------------------------------------------------------ */

typedef struct st_meta { char *key, *value; } st_meta;

struct loom_st_file {
    char *path;                    /* the path or label, for messages */
    void *map;                     /* loom_st_open: the read-only mapping */
    size_t map_len;
    unsigned char *copy;           /* loom_st_parse: our copy of the buffer */
    const unsigned char *data;     /* data section (8 + N bytes into the file) */
    uint64_t data_size;
    loom_st_tensor *tensors;       /* header order */
    size_t n;
    const loom_st_tensor **by_name; /* sorted by name, for loom_st_find */
    st_meta *meta;                 /* header order */
    size_t n_meta;
    char *pool;                    /* all names, keys and values */
};

static int is_meta_key(const loom_json *m) {
    return m->key_len == sizeof ST_META_KEY - 1 && memcmp(m->key, ST_META_KEY, m->key_len) == 0;
}

/* What a JSON value is, for "found ..." in messages: the number token or the type. */
static const char *found(const loom_json *v, char buf[48]) {
    if (v->type == LOOM_JSON_NUMBER) {
        snprintf(buf, 48, "%.*s%s", v->len > 32 ? 32 : (int)v->len, v->str, v->len > 32 ? "..." : "");
        return buf;
    }
    return loom_json_type_name(v->type);
}

/* Copies a JSON-decoded string into the pool; rejects embedded NULs. */
static char *pool_put(char **pool, const char *s, size_t len) {
    if (memchr(s, 0, len)) return NULL;
    char *r = *pool;
    memcpy(r, s, len);
    r[len] = 0;
    *pool += len + 1;
    return r;
}

/* Fills tensor t from its header entry v; `nm` is the safe name for messages. */
static loom_status parse_tensor(loom_st_file *f, const loom_json *v, const char *nm, loom_st_tensor *t) {
    const char *P = f->path;
    char fb[48];
    if (v->type != LOOM_JSON_OBJECT)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': expected an object with dtype, shape and "
                          "data_offsets, found %s", P, nm, found(v, fb));
    const loom_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const loom_json *m = &v->items[i];
        const loom_json **slot = NULL;
        if (m->key_len == 5 && memcmp(m->key, "dtype", 5) == 0) slot = &dtype;
        else if (m->key_len == 5 && memcmp(m->key, "shape", 5) == 0) slot = &shape;
        else if (m->key_len == 12 && memcmp(m->key, "data_offsets", 12) == 0) slot = &offs;
        if (!slot) {
            char kb[NAME_MSG];
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': unknown field '%s'", P, nm,
                              fmt_name(kb, m->key, m->key_len));
        }
        if (*slot)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", P, nm, m->key);
        *slot = m;
    }
    if (!dtype) return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': missing field 'dtype'", P, nm);
    if (!shape) return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': missing field 'shape'", P, nm);
    if (!offs) return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': missing field 'data_offsets'", P, nm);

    /* dtype */
    if (dtype->type != LOOM_JSON_STRING)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': dtype must be a string, found %s", P, nm,
                          found(dtype, fb));
    int dt = -1;
    for (int k = 0; k < LOOM_DTYPE_COUNT; k++)
        if (strlen(dtype_names[k]) == dtype->len && memcmp(dtype_names[k], dtype->str, dtype->len) == 0) dt = k;
    if (dt < 0) {
        char db[NAME_MSG];
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': unsupported dtype '%s' (expected one of F32 F16 "
                          "BF16 F64 I8 I16 I32 I64 U8 U16 U32 U64 BOOL)", P, nm, fmt_name(db, dtype->str, dtype->len));
    }
    t->dtype = (loom_dtype)dt;

    /* shape */
    if (shape->type != LOOM_JSON_ARRAY)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': shape must be an array, found %s", P, nm,
                          found(shape, fb));
    if (shape->n > LOOM_ST_MAX_DIMS)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': shape has %zu dims (max %d)", P, nm, shape->n,
                          LOOM_ST_MAX_DIMS);
    t->ndim = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++) {
        uint64_t d;
        if (!loom_json_get_u64(&shape->items[i], &d) || d > (uint64_t)INT64_MAX)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': shape[%zu] must be a non-negative integer "
                              "below 2^63, found %s", P, nm, i, found(&shape->items[i], fb));
        t->shape[i] = (int64_t)d;
    }

    /* data_offsets */
    if (offs->type != LOOM_JSON_ARRAY || offs->n != 2)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': data_offsets must be an array [begin, end], "
                          "found %s of %zu", P, nm, found(offs, fb), loom_json_len(offs));
    for (size_t i = 0; i < 2; i++)
        if (!loom_json_get_u64(&offs->items[i], i == 0 ? &t->begin : &t->end))
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': data_offsets[%zu] must be a non-negative "
                              "integer, found %s", P, nm, i, found(&offs->items[i], fb));
    if (t->begin > t->end)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") end "
                          "before they begin", P, nm, t->begin, t->end);
    if (t->end > f->data_size)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") run past "
                          "the data section (%" PRIu64 " bytes; file truncated?)", P, nm, t->begin, t->end,
                          f->data_size);
    uint64_t bytes;
    char sb[160];
    fmt_shape(sb, sizeof sb, t->ndim, t->shape);
    if (!shape_bytes(t->ndim, t->shape, dtype_sizes[dt], &bytes))
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': shape %s of %s is too large (byte size overflows)",
                          P, nm, sb, dtype_names[dt]);
    if (t->end - t->begin != bytes)
        return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': data offsets [%" PRIu64 ", %" PRIu64 ") do not "
                          "match shape %s of %s (%" PRIu64 " bytes)", P, nm, t->begin, t->end, sb,
                          dtype_names[dt], bytes);
    return LOOM_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const loom_st_tensor *const *)a)->name, (*(const loom_st_tensor *const *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const loom_st_tensor *x = *(const loom_st_tensor *const *)a, *y = *(const loom_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Validates the header JSON `root` and fills f's tensors and metadata. */
static loom_status load_header(loom_st_file *f, const loom_json *root) {
    const char *P = f->path;
    char nb[NAME_MSG], nb2[NAME_MSG], fb[48];
    if (root->type != LOOM_JSON_OBJECT)
        return loom_error(LOOM_ERR_FORMAT, "%s: header must be a JSON object, found %s", P, found(root, fb));

    /* Count, find __metadata__ and size the string pool (decoded strings are never
     * longer than the header, so the sum cannot overflow). */
    const loom_json *meta = NULL;
    size_t pool = 0, n = 0;
    for (size_t i = 0; i < root->n; i++) {
        const loom_json *m = &root->items[i];
        pool += m->key_len + 1;
        if (!is_meta_key(m)) { n++; continue; }
        if (meta) return loom_error(LOOM_ERR_FORMAT, "%s: %s appears twice", P, ST_META_KEY);
        meta = m;
        if (m->type != LOOM_JSON_OBJECT)
            return loom_error(LOOM_ERR_FORMAT, "%s: %s must be an object of string values, found %s", P,
                              ST_META_KEY, found(m, fb));
        for (size_t k = 0; k < m->n; k++) {
            const loom_json *e = &m->items[k];
            if (e->type != LOOM_JSON_STRING)
                return loom_error(LOOM_ERR_FORMAT, "%s: %s '%s': value must be a string, found %s", P,
                                  ST_META_KEY, fmt_name(nb, e->key, e->key_len), found(e, fb));
            pool += e->key_len + 1 + e->len + 1;
        }
    }
    f->pool = loom_alloc(pool, "safetensors header strings");
    f->tensors = loom_alloc((n ? n : 1) * sizeof *f->tensors, "safetensors tensor table");
    f->by_name = loom_alloc((n ? n : 1) * sizeof *f->by_name, "safetensors tensor index");
    f->meta = loom_alloc((meta && meta->n ? meta->n : 1) * sizeof *f->meta, "safetensors metadata");
    if (!f->pool || !f->tensors || !f->by_name || !f->meta) return LOOM_ERR_NOMEM;
    char *pp = f->pool;

    for (size_t i = 0; i < root->n; i++) {
        const loom_json *m = &root->items[i];
        if (m == meta) continue;
        loom_st_tensor *t = &f->tensors[f->n];
        fmt_name(nb, m->key, m->key_len);
        if (!(t->name = pool_put(&pp, m->key, m->key_len)))
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s': name contains a NUL character", P, nb);
        f->n++;
        loom_status st = parse_tensor(f, m, nb, t);
        if (st != LOOM_OK) return st;
    }
    if (meta) {
        for (size_t k = 0; k < meta->n; k++) {
            const loom_json *e = &meta->items[k];
            st_meta *sm = &f->meta[k];
            fmt_name(nb, e->key, e->key_len);
            if (!(sm->key = pool_put(&pp, e->key, e->key_len)) || !(sm->value = pool_put(&pp, e->str, e->len)))
                return loom_error(LOOM_ERR_FORMAT, "%s: %s '%s': contains a NUL character", P, ST_META_KEY, nb);
            f->n_meta++;
        }
        /* duplicate keys: sort a scratch copy of the key pointers */
        const char **keys = loom_alloc((meta->n ? meta->n : 1) * sizeof *keys, "safetensors metadata index");
        if (!keys) return LOOM_ERR_NOMEM;
        for (size_t k = 0; k < f->n_meta; k++) keys[k] = f->meta[k].key;
        qsort(keys, f->n_meta, sizeof *keys, cmp_str_ptr);
        for (size_t k = 1; k < f->n_meta; k++)
            if (strcmp(keys[k - 1], keys[k]) == 0) {
                loom_error(LOOM_ERR_FORMAT, "%s: %s key '%s' appears twice", P, ST_META_KEY,
                           fmt_name(nb, keys[k], strlen(keys[k])));
                loom_free(keys);
                return LOOM_ERR_FORMAT;
            }
        loom_free(keys);
    }

    /* duplicate names (the sorted index is kept for loom_st_find) */
    for (size_t i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_tensor_name);
    for (size_t i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return loom_error(LOOM_ERR_FORMAT, "%s: tensor '%s' appears twice", P,
                              fmt_name(nb, f->by_name[i]->name, strlen(f->by_name[i]->name)));

    /* overlaps: sorted by begin, each non-empty range must start at or after the end of
     * the previous non-empty one (empty tensors occupy no bytes) */
    if (f->n > 1) {
        const loom_st_tensor **ord = loom_alloc(f->n * sizeof *ord, "safetensors overlap check");
        if (!ord) return LOOM_ERR_NOMEM;
        for (size_t i = 0; i < f->n; i++) ord[i] = &f->tensors[i];
        qsort(ord, f->n, sizeof *ord, cmp_tensor_begin);
        const loom_st_tensor *prev = NULL;
        loom_status st = LOOM_OK;
        for (size_t i = 0; i < f->n && st == LOOM_OK; i++) {
            const loom_st_tensor *t = ord[i];
            if (t->begin == t->end) continue;
            if (prev && t->begin < prev->end)
                st = loom_error(LOOM_ERR_FORMAT, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                                ", %" PRIu64 ") overlap", P, fmt_name(nb, prev->name, strlen(prev->name)),
                                prev->begin, prev->end, fmt_name(nb2, t->name, strlen(t->name)), t->begin, t->end);
            prev = t;
        }
        loom_free(ord);
        if (st != LOOM_OK) return st;
    }
    return LOOM_OK;
}

/* Validates the whole file image buf[0..len) (which must outlive f) into f. */
static loom_status load(loom_st_file *f, const unsigned char *buf, size_t len) {
    const char *P = f->path;
    if (len == 0)
        return loom_error(LOOM_ERR_FORMAT, "%s: file is empty (a safetensors file starts with an 8-byte "
                          "header length)", P);
    if (len < 8)
        return loom_error(LOOM_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                          P, len);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | buf[i];
    if (hn > ST_MAX_HEADER)
        return loom_error(LOOM_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the 100 MiB limit "
                          "(not a safetensors file?)", P, hn);
    if (hn > len - 8)
        return loom_error(LOOM_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the %zu bytes after the "
                          "length field (file truncated?)", P, hn, len - 8);
    f->data = buf + 8 + hn;
    f->data_size = len - 8 - hn;

    loom_json_error je;
    loom_json_doc *doc = loom_json_parse(buf + 8, (size_t)hn, NULL, &je);
    if (!doc)
        return loom_error(je.status == LOOM_OK ? LOOM_ERR_FORMAT : je.status,
                          "%s: header is not valid JSON: at header byte %zu (file byte %zu): %s", P, je.offset,
                          je.offset + 8, je.msg);
    loom_status st = load_header(f, loom_json_root(doc));
    loom_json_free(doc);
    return st;
}

/* A fresh file object labelled `label`, or NULL (message set). */
static loom_st_file *file_new(const char *label) {
    loom_st_file *f = loom_alloc(sizeof *f, "safetensors file");
    if (!f) return NULL;
    size_t n = strlen(label);
    f->path = loom_alloc(n + 1, "safetensors path");
    if (!f->path) { loom_free(f); return NULL; }
    memcpy(f->path, label, n + 1);
    return f;
}

loom_status loom_st_parse(const void *buf, size_t len, const char *label, loom_st_file **out) {
    *out = NULL;
    if (!label) label = "<buffer>";
    if (!buf && len) return loom_error(LOOM_ERR_ARG, "%s: NULL buffer of %zu bytes", label, len);
    loom_st_file *f = file_new(label);
    if (!f) return LOOM_ERR_NOMEM;
    f->copy = loom_alloc(len, "safetensors buffer copy");
    if (!f->copy) { loom_st_close(f); return LOOM_ERR_NOMEM; }
    if (len) memcpy(f->copy, buf, len);
    loom_status st = load(f, f->copy, len);
    if (st != LOOM_OK) { loom_st_close(f); return st; }
    *out = f;
    return LOOM_OK;
}

loom_status loom_st_open(const char *path, loom_st_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return loom_error(LOOM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        if (S_ISDIR(sb.st_mode))
            return loom_error(LOOM_ERR_IO, "%s: is a directory, not a safetensors file", path);
        return loom_error(LOOM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return loom_error(LOOM_ERR_IO, "%s: file too large to map", path);
    }
    loom_st_file *f = file_new(path);
    if (!f) { close(fd); return LOOM_ERR_NOMEM; }
    size_t len = (size_t)sb.st_size;
    static const unsigned char none[1];
    const unsigned char *buf = none; /* load() rejects len < 8 before reading */
    if (len >= 8) {
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            loom_st_close(f);
            return loom_error(LOOM_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, len, strerror(e));
        }
        f->map = m;
        f->map_len = len;
        buf = m;
    }
    close(fd);
    loom_status st = load(f, buf, len);
    if (st != LOOM_OK) { loom_st_close(f); return st; }
    *out = f;
    return LOOM_OK;
}

void loom_st_close(loom_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    loom_free(f->copy);
    loom_free(f->tensors);
    loom_free(f->by_name);
    loom_free(f->meta);
    loom_free(f->pool);
    loom_free(f->path);
    loom_free(f);
}

size_t loom_st_count(const loom_st_file *f) { return f->n; }

const loom_st_tensor *loom_st_at(const loom_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const loom_st_tensor *loom_st_find(const loom_st_file *f, const char *name) {
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const void *loom_st_data(const loom_st_file *f, const loom_st_tensor *t) { return f->data + t->begin; }

const char *loom_st_meta(const loom_st_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

size_t loom_st_meta_count(const loom_st_file *f) { return f->n_meta; }

void loom_st_meta_at(const loom_st_file *f, size_t i, const char **key, const char **value) {
    *key = i < f->n_meta ? f->meta[i].key : NULL;
    *value = i < f->n_meta ? f->meta[i].value : NULL;
}

const char *loom_st_path(const loom_st_file *f) { return f->path; }

/* ---- writer ------------------------------------------------------------------ */

#define WLABEL "safetensors writer"

typedef struct wtensor {
    char *name;
    loom_dtype dtype;
    int ndim;
    int64_t shape[LOOM_ST_MAX_DIMS];
    const void *data; /* borrowed */
    uint64_t bytes;
} wtensor;

struct loom_st_writer {
    wtensor *t;
    size_t n, cap;
    st_meta *meta;
    size_t n_meta, meta_cap;
    uint64_t total; /* data bytes so far */
};

static char *xstrdup(const char *s, const char *what) {
    size_t n = strlen(s) + 1;
    char *r = malloc(n);
    if (!r) {
        loom_error(LOOM_ERR_NOMEM, "out of memory: %s needs %zu bytes", what, n);
        return NULL;
    }
    return memcpy(r, s, n);
}

/* Ensures room for one more element in a malloc'd array. */
static loom_status wgrow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return LOOM_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    void *r = nc <= SIZE_MAX / elem ? realloc(*arr, nc * elem) : NULL;
    if (!r) return loom_error(LOOM_ERR_NOMEM, "out of memory: " WLABEL " table of %zu entries", nc);
    *arr = r;
    *cap = nc;
    return LOOM_OK;
}

loom_st_writer *loom_st_writer_init(void) {
    loom_st_writer *w = calloc(1, sizeof *w);
    if (!w) loom_error(LOOM_ERR_NOMEM, "out of memory: " WLABEL);
    return w;
}

void loom_st_writer_free(loom_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
}

loom_status loom_st_writer_add(loom_st_writer *w, const char *name, loom_dtype dt, int ndim,
                               const int64_t *shape, const void *data) {
    char nb[NAME_MSG];
    if (!name) return loom_error(LOOM_ERR_ARG, WLABEL ": tensor name is NULL");
    fmt_name(nb, name, strlen(name));
    if (!loom_json_utf8_valid(name, strlen(name)))
        return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': name is not valid UTF-8", nb);
    if (strcmp(name, ST_META_KEY) == 0)
        return loom_error(LOOM_ERR_ARG, WLABEL ": '%s' cannot be a tensor name", ST_META_KEY);
    if ((unsigned)dt >= LOOM_DTYPE_COUNT)
        return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': invalid dtype %d", nb, (int)dt);
    if (ndim < 0 || ndim > LOOM_ST_MAX_DIMS)
        return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': %d dims (max %d)", nb, ndim, LOOM_ST_MAX_DIMS);
    if (ndim > 0 && !shape) return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': shape is NULL", nb);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': shape[%d] = %" PRId64 " is negative", nb, i,
                              shape[i]);
    uint64_t bytes;
    if (!shape_bytes(ndim, shape, dtype_sizes[dt], &bytes) || bytes > UINT64_MAX - w->total)
        return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': byte size overflows", nb);
    if (bytes > 0 && !data) return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s': data is NULL", nb);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return loom_error(LOOM_ERR_ARG, WLABEL ": tensor '%s' added twice", nb);
    loom_status st = wgrow((void **)&w->t, &w->cap, w->n, sizeof *w->t);
    if (st != LOOM_OK) return st;
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = xstrdup(name, "tensor name"))) return LOOM_ERR_NOMEM;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->bytes = bytes;
    w->total += bytes;
    w->n++;
    return LOOM_OK;
}

loom_status loom_st_writer_meta(loom_st_writer *w, const char *key, const char *value) {
    char kb[NAME_MSG];
    if (!key || !value) return loom_error(LOOM_ERR_ARG, WLABEL ": metadata key or value is NULL");
    fmt_name(kb, key, strlen(key));
    if (!loom_json_utf8_valid(key, strlen(key)) || !loom_json_utf8_valid(value, strlen(value)))
        return loom_error(LOOM_ERR_ARG, WLABEL ": metadata '%s': key or value is not valid UTF-8", kb);
    char *v = xstrdup(value, "metadata value");
    if (!v) return LOOM_ERR_NOMEM;
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) { /* a repeated key replaces the value */
            free(w->meta[i].value);
            w->meta[i].value = v;
            return LOOM_OK;
        }
    loom_status st = wgrow((void **)&w->meta, &w->meta_cap, w->n_meta, sizeof *w->meta);
    char *k = st == LOOM_OK ? xstrdup(key, "metadata key") : NULL;
    if (!k) {
        free(v);
        return st != LOOM_OK ? st : LOOM_ERR_NOMEM;
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return LOOM_OK;
}

/* The header JSON, padded with spaces so that 8 + len is a multiple of 8. */
static loom_status build_header(const loom_st_writer *w, loom_json_buf *b) {
    loom_json_buf_put(b, "{", 1);
    int first = 1;
    if (w->n_meta) {
        loom_json_buf_puts(b, "\"" ST_META_KEY "\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) loom_json_buf_put(b, ",", 1);
            loom_json_escape(b, w->meta[i].key, strlen(w->meta[i].key)); /* UTF-8 checked on add */
            loom_json_buf_put(b, ":", 1);
            loom_json_escape(b, w->meta[i].value, strlen(w->meta[i].value));
        }
        loom_json_buf_put(b, "}", 1);
        first = 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (!first) loom_json_buf_put(b, ",", 1);
        first = 0;
        loom_json_escape(b, t->name, strlen(t->name));
        loom_json_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", dtype_names[t->dtype]);
        for (int d = 0; d < t->ndim; d++) loom_json_buf_printf(b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        loom_json_buf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->bytes);
        off += t->bytes;
    }
    loom_json_buf_put(b, "}", 1);
    while ((8 + b->len) % 8) loom_json_buf_put(b, " ", 1);
    if (b->failed) return loom_error(LOOM_ERR_NOMEM, "out of memory: " WLABEL " header");
    if (b->len > ST_MAX_HEADER)
        return loom_error(LOOM_ERR_ARG, WLABEL ": header is %zu bytes, over the 100 MiB limit", b->len);
    return LOOM_OK;
}

/* fwrite that reports a short write as an errno (ENOSPC etc.); 0 on failure. */
static int write_all(FILE *fp, const void *p, size_t n, int *err) {
    const size_t chunk = (size_t)64 << 20;
    const unsigned char *q = p;
    while (n > 0) {
        size_t k = n < chunk ? n : chunk;
        errno = 0;
        if (fwrite(q, 1, k, fp) != k) {
            *err = errno ? errno : EIO;
            return 0;
        }
        q += k;
        n -= k;
    }
    return 1;
}

/* write(2) until done, retrying short writes and EINTR; 0 with *err on failure. */
static int write_fd(int fd, const void *p, size_t n, int *err) {
    const unsigned char *q = p;
    while (n > 0) {
        size_t k = n < ((size_t)256 << 20) ? n : ((size_t)256 << 20);
        ssize_t r = write(fd, q, k);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            *err = r < 0 ? errno : ENOSPC;
            return 0;
        }
        q += r;
        n -= (size_t)r;
    }
    return 1;
}

loom_status loom_st_writer_prefix(const loom_st_writer *w, unsigned char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    loom_json_buf hb = {0};
    loom_status st = build_header(w, &hb);
    unsigned char *p = st ? NULL : malloc(8 + hb.len);
    if (!st && !p) st = loom_error(LOOM_ERR_NOMEM, "out of memory: " WLABEL " header");
    if (!st) {
        for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));
        memcpy(p + 8, hb.data, hb.len);
        *out = p;
        *len = 8 + hb.len;
    }
    loom_json_buf_free(&hb);
    return st;
}

loom_status loom_st_writer_write(loom_st_writer *w, const char *path) {
    return loom_st_writer_write_ex(w, path, 0);
}

loom_status loom_st_writer_write_ex(loom_st_writer *w, const char *path, int sync) {
    unsigned char *head;
    size_t hlen;
    loom_status st = loom_st_writer_prefix(w, &head, &hlen);
    if (st != LOOM_OK) return st;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        int e = errno;
        free(head);
        return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", path, strerror(e));
    }
    setvbuf(fp, NULL, _IOFBF, (size_t)1 << 20);
    int err = 0;
    int ok = write_all(fp, head, hlen, &err);
    /* tensor data straight from the caller's memory with write(2), past stdio's buffer */
    if (ok) {
        errno = 0;
        if (fflush(fp) != 0) { ok = 0; err = errno ? errno : EIO; }
    }
    for (size_t i = 0; ok && i < w->n; i++) {
        if ((uint64_t)w->t[i].bytes > SIZE_MAX) { ok = 0; err = EFBIG; break; }
        ok = write_fd(fileno(fp), w->t[i].data, (size_t)w->t[i].bytes, &err);
    }
    free(head);
    if (ok) {
        errno = 0;
        if (fflush(fp) != 0) { ok = 0; err = errno ? errno : EIO; }
    }
    if (ok && sync && fsync(fileno(fp)) != 0) { ok = 0; err = errno ? errno : EIO; }
    errno = 0;
    if (fclose(fp) != 0 && ok) { ok = 0; err = errno ? errno : EIO; }
    if (!ok) return loom_error(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(err));
    return LOOM_OK;
}
