/* Token files: glob, mmap, validate, and map global sample numbers to windows. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom/data.h"

typedef struct token_file {
    char *path;
    void *map;
    size_t map_len;
    const void *tokens;    /* uint16, or uint32 (wide) */
    int wide;
    uint64_t n_tokens;
    uint64_t first_sample; /* global number of this file's sample 0 */
    uint64_t n_samples;
} token_file;

struct loom_dataset {
    token_file *files;
    int n_files;
    int T;
    uint64_t n_samples, n_tokens;
};

static inline uint32_t token_at(const token_file *f, uint64_t i) {
    return f->wide ? ((const uint32_t *)f->tokens)[i] : ((const uint16_t *)f->tokens)[i];
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static loom_status open_file(token_file *f, const char *path, loom_data_format fmt, int vocab) {
    f->path = strdup(path);
    if (!f->path) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode);
        close(fd);
        if (dir) return loom_error(LOOM_ERR_ARG, "%s: is a directory (give its files, e.g. '%s/*.bin')", path, path);
        return loom_error(LOOM_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len == 0) {
        close(fd);
        return loom_error(LOOM_ERR_FORMAT, "%s: empty file", path);
    }
    f->map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return loom_error(LOOM_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    f->map_len = len;
    const size_t hdr = LOOM_SHARD_HEADER_INTS * sizeof(int32_t);
    int32_t h[3] = {0, 0, 0};
    if (len >= sizeof h) memcpy(h, f->map, sizeof h);
    const int wide_magic = h[0] == LOOM_SHARD32_MAGIC;
    int is_shard = fmt == LOOM_DATA_SHARD || (fmt == LOOM_DATA_AUTO && (h[0] == LOOM_SHARD_MAGIC || wide_magic));
    if (fmt == LOOM_DATA_AUTO && !is_shard && !ends_with(path, ".u16"))
        return loom_error(LOOM_ERR_FORMAT,
                          "%s: bad magic %d (an llm.c shard starts with %d, or %d for uint32 tokens; name headerless "
                          "uint16 files *.u16 or pass --data-format u16)",
                          path, h[0], LOOM_SHARD_MAGIC, LOOM_SHARD32_MAGIC);
    if (is_shard) {
        if (len < hdr)
            return loom_error(LOOM_ERR_FORMAT, "%s: truncated header (%zu bytes, a shard header is %zu)",
                              path, len, hdr);
        if (h[0] != LOOM_SHARD_MAGIC && !wide_magic)
            return loom_error(LOOM_ERR_FORMAT, "%s: bad magic %d (expected %d or %d)", path, h[0], LOOM_SHARD_MAGIC,
                              LOOM_SHARD32_MAGIC);
        const int want = wide_magic ? LOOM_SHARD32_VERSION : LOOM_SHARD_VERSION;
        if (h[1] != want)
            return loom_error(LOOM_ERR_FORMAT, "%s: unsupported shard version %d (expected %d: %s tokens)", path, h[1],
                              want, wide_magic ? "uint32" : "uint16");
        if (h[2] <= 0)
            return loom_error(LOOM_ERR_FORMAT, "%s: the header's token count is %d (it must be positive)", path, h[2]);
        const uint64_t size = wide_magic ? 4 : 2, have = (uint64_t)(len - hdr);
        if (have < (uint64_t)h[2] * size)
            return loom_error(LOOM_ERR_FORMAT, "%s: truncated: header says %d tokens, file holds %zu bytes of tokens",
                              path, h[2], len - hdr);
        if (have > (uint64_t)h[2] * size)
            return loom_error(LOOM_ERR_FORMAT, "%s: the header says %d tokens, but the file holds %zu bytes of tokens "
                              "(%llu tokens): the count is too small or the file has trailing bytes",
                              path, h[2], len - hdr, (unsigned long long)(have / size));
        f->tokens = (const char *)f->map + hdr;
        f->wide = wide_magic;
        f->n_tokens = (uint64_t)h[2];
    } else {
        if (len % 2)
            return loom_error(LOOM_ERR_FORMAT, "%s: odd size %zu for uint16 tokens (truncated?)", path, len);
        f->tokens = f->map;
        f->n_tokens = len / 2;
    }
    /* every token < vocab, checked once here so training never reads a bad id */
    uint64_t bad = UINT64_MAX;
#pragma omp parallel for reduction(min : bad) schedule(static)
    for (uint64_t i = 0; i < f->n_tokens; i++)
        if (token_at(f, i) >= (uint32_t)vocab && i < bad) bad = i;
    if (bad != UINT64_MAX)
        return loom_error(LOOM_ERR_FORMAT, "%s: token %u at position %llu is >= vocab size %d", path,
                          token_at(f, bad), (unsigned long long)bad, vocab);
    return LOOM_OK;
}

loom_status loom_dataset_open(loom_dataset **out, const char *globs, loom_data_format fmt,
                              int vocab, int T, const char *flag) {
    *out = NULL;
    loom_dataset *ds = calloc(1, sizeof *ds);
    char *pats = strdup(globs ? globs : "");
    if (!ds || !pats) {
        free(ds);
        free(pats);
        return loom_error(LOOM_ERR_NOMEM, "out of memory");
    }
    ds->T = T;
    glob_t g;
    memset(&g, 0, sizeof g);
    int flags = 0, any = 0;
    loom_status st = LOOM_OK;
    for (char *save = NULL, *p = strtok_r(pats, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        any = 1;
        int r = glob(p, flags | GLOB_NOCHECK, NULL, &g);
        if (r != 0) {
            st = loom_error(LOOM_ERR_IO, "%s: cannot expand pattern '%s'", flag, p);
            break;
        }
        flags = GLOB_APPEND;
    }
    if (!st && !any) st = loom_error(LOOM_ERR_ARG, "%s: no file given", flag);
    if (!st) {
        ds->files = calloc(g.gl_pathc, sizeof *ds->files);
        if (!ds->files) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; !st && i < g.gl_pathc; i++) {
        token_file *f = &ds->files[ds->n_files++];
        st = open_file(f, g.gl_pathv[i], fmt, vocab);
        if (st) break;
        f->first_sample = ds->n_samples;
        f->n_samples = f->n_tokens > (uint64_t)T ? (f->n_tokens - 1) / (uint64_t)T : 0;
        ds->n_samples += f->n_samples;
        ds->n_tokens += f->n_tokens;
    }
    if (!st && ds->n_samples == 0)
        st = loom_error(LOOM_ERR_FORMAT, "%s: %s holds %llu tokens, fewer than one window of %d",
                        flag, globs, (unsigned long long)ds->n_tokens, T + 1);
    if (any) globfree(&g);
    free(pats);
    if (st) {
        loom_dataset_close(ds);
        return st;
    }
    *out = ds;
    return LOOM_OK;
}

void loom_dataset_close(loom_dataset *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->n_files; i++) {
        if (ds->files[i].map) munmap(ds->files[i].map, ds->files[i].map_len);
        free(ds->files[i].path);
    }
    free(ds->files);
    free(ds);
}

uint64_t loom_dataset_samples(const loom_dataset *ds) { return ds->n_samples; }
uint64_t loom_dataset_tokens(const loom_dataset *ds) { return ds->n_tokens; }
int loom_dataset_files(const loom_dataset *ds) { return ds->n_files; }

void loom_dataset_file_info(const loom_dataset *ds, int i, loom_data_file_info *out) {
    const token_file *f = &ds->files[i];
    const size_t blk = 4096, len = f->map_len;
    uint32_t crc = 0;
    if (len <= 16 * blk) {
        crc = loom_crc32c(0, f->map, len);
    } else {
        for (int k = 0; k < 16; k++) { /* blocks 0 and 15 are the first and the last */
            size_t at = (size_t)((len - blk) * (uint64_t)k / 15);
            crc = loom_crc32c(crc, (const char *)f->map + at, blk);
        }
    }
    *out = (loom_data_file_info){f->path, len, f->n_tokens, crc};
}

uint64_t loom_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch) {
    if (n <= 1) return 0;
    int bits = 2;
    while (bits < 64 && (1ULL << bits) < n) bits += 2; /* even, so the halves match */
    const int half = bits / 2;
    const uint64_t mask = (1ULL << half) - 1;
    const uint64_t key = loom_hash64(seed, epoch);
    uint64_t x = i;
    do { /* cycle walking: re-encrypt until the value falls inside [0, n) */
        uint64_t l = x >> half, r = x & mask;
        for (int round = 0; round < 6; round++) {
            uint64_t f = loom_hash64(key + (uint64_t)round, r) & mask;
            uint64_t nl = r, nr = l ^ f;
            l = nl;
            r = nr;
        }
        x = (l << half) | r;
    } while (x >= n);
    return x;
}

void loom_dataset_sample(const loom_dataset *ds, uint64_t cursor, int shuffle, uint64_t seed,
                         int32_t *inputs, int32_t *targets) {
    uint64_t epoch = cursor / ds->n_samples, s = cursor % ds->n_samples;
    if (shuffle) s = loom_permute(s, ds->n_samples, seed, epoch);
    int lo = 0, hi = ds->n_files - 1; /* the last file whose first_sample <= s */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ds->files[mid].first_sample <= s) lo = mid;
        else hi = mid - 1;
    }
    const token_file *f = &ds->files[lo];
    const uint64_t w = (s - f->first_sample) * (uint64_t)ds->T;
    for (int t = 0; t < ds->T; t++) {
        inputs[t] = (int32_t)token_at(f, w + t);
        targets[t] = (int32_t)token_at(f, w + t + 1);
    }
}

loom_status loom_shard_write(const char *path, const void *tokens, size_t n, int wide) {
    if (n > INT32_MAX) return loom_error(LOOM_ERR_ARG, "%s: %zu tokens do not fit one shard", path, n);
    FILE *fp = fopen(path, "wb");
    if (!fp) return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int32_t h[LOOM_SHARD_HEADER_INTS] = {wide ? LOOM_SHARD32_MAGIC : LOOM_SHARD_MAGIC,
                                         wide ? LOOM_SHARD32_VERSION : LOOM_SHARD_VERSION, (int32_t)n};
    const size_t size = wide ? 4 : 2;
    int ok = fwrite(h, sizeof h, 1, fp) == 1 && (n == 0 || fwrite(tokens, size, n, fp) == n);
    ok = (fclose(fp) == 0) && ok;
    if (!ok) return loom_error(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return LOOM_OK;
}
