/* Byte-level BPE: tiktoken's two GPT-2 loaders (tiktoken rank file; encoder.json +
 * vocab.bpe), an open-addressing hash map from token bytes to ids, tiktoken's
 * byte_pair_merge (plus an equivalent heap version for long pieces), and encode/decode:
 * added tokens matched literally first, then the pre-tokenizer scanners of
 * pretokenize.h, with a per-call cache of merged pieces. The tokenizer.json loader and
 * Hugging Face's merge order are in tokenizer_json.c. */
#include "loom/tokenizer.h"

#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/pretokenize.h"
#include "data/tokenizer_impl.h"
#include "data/tokenizer_internal.h"
#include "io/json.h"

#define NONE LOOM_TOK_NONE
#define MAX_RANK LOOM_TOK_MAX_ID
#define EMPTY_SLOT UINT64_MAX
#define EOT_LEN (sizeof LOOM_TOKENIZER_EOT_TEXT - 1)

size_t loom_tokenizer_heap_threshold = 64;
size_t loom_tokenizer_cache_min_len = 1 << 14;

/* ---- hashing ----------------------------------------------------------------------- */

/* a[0..n) == b[0..n), with word compares for the short strings most tokens are. */
static inline int bytes_eq(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n > 8) return memcmp(a, b, n) == 0;
    if (n == 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        return x == y;
    }
    return n == 0 || loom_tok_load_tail(a, n) == loom_tok_load_tail(b, n);
}

/* The id of bytes p[0..n), or NONE. */
static inline uint32_t lookup(const loom_tokenizer *t, const uint8_t *p, size_t n) {
    uint64_t h = loom_tok_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & t->mask;
    for (;;) {
        uint64_t s = t->slots[i];
        if (s == EMPTY_SLOT) return NONE;
        if ((uint32_t)(s >> 32) == tag) {
            uint32_t id = (uint32_t)s;
            if (t->len[id] == n && bytes_eq(t->bytes + t->off[id], p, n)) return id;
        }
        i = (i + 1) & t->mask;
    }
}

/* ---- building: entries in file order, checked for duplicates as they come ---------- */

typedef struct entry {
    uint32_t off, len, rank, line;
} entry;

typedef struct builder {
    const char *name; /* file name for messages */
    entry *e;
    size_t n, cap;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    uint64_t *slots; /* (hash >> 32) << 32 | entry index */
    size_t mask;
} builder;

static loom_status builder_init(builder *b, const char *name, size_t max_entries, size_t max_bytes) {
    memset(b, 0, sizeof *b);
    b->name = name;
    size_t cap = 1024;
    while (cap < 2 * max_entries) cap *= 2;
    b->cap = max_entries;
    b->arena_cap = max_bytes;
    b->e = malloc(max_entries * sizeof *b->e);
    b->arena = malloc(max_bytes ? max_bytes : 1);
    b->slots = malloc(cap * sizeof *b->slots);
    b->mask = cap - 1;
    if (!b->e || !b->arena || !b->slots)
        return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer tables for %zu tokens", max_entries);
    memset(b->slots, 0xFF, cap * sizeof *b->slots);
    return LOOM_OK;
}

static void builder_free(builder *b) {
    free(b->e);
    free(b->arena);
    free(b->slots);
    memset(b, 0, sizeof *b);
}

/* The entry index holding bytes p[0..n), or NONE. */
static uint32_t builder_find(const builder *b, const uint8_t *p, size_t n, size_t *slot) {
    uint64_t h = loom_tok_hash(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & b->mask;
    for (;;) {
        uint64_t s = b->slots[i];
        if (s == EMPTY_SLOT) break;
        if ((uint32_t)(s >> 32) == tag) {
            const entry *e = &b->e[(uint32_t)s];
            if (e->len == n && memcmp(b->arena + e->off, p, n) == 0) return (uint32_t)s;
        }
        i = (i + 1) & b->mask;
    }
    if (slot) *slot = i;
    return NONE;
}

/* Adds token bytes p[0..n) with `rank` from `line`; returns the index of an earlier
 * entry with the same bytes instead (adding nothing), else NONE. The caller sized the
 * builder, so this cannot run out of room. */
static uint32_t builder_add(builder *b, const uint8_t *p, size_t n, uint32_t rank, uint32_t line) {
    size_t slot = 0;
    uint32_t old = builder_find(b, p, n, &slot);
    if (old != NONE) return old;
    LOOM_CHECK(b->n < b->cap && b->arena_len + n <= b->arena_cap);
    entry *e = &b->e[b->n];
    e->off = (uint32_t)b->arena_len;
    e->len = (uint32_t)n;
    e->rank = rank;
    e->line = line;
    memcpy(b->arena + b->arena_len, p, n);
    b->arena_len += n;
    b->slots[slot] = (loom_tok_hash(p, n) >> 32 << 32) | (uint64_t)b->n;
    b->n++;
    return NONE;
}

/* Turns the entries into a tokenizer: ids = ranks, plus the special token at `eot`.
 * Fails on a repeated rank, a rank that equals `eot` and a missing single byte. */
static loom_status builder_finish(builder *b, uint32_t eot, loom_tokenizer **out) {
    uint32_t vocab = eot + 1;
    for (size_t i = 0; i < b->n; i++)
        if (b->e[i].rank >= vocab) vocab = b->e[i].rank + 1;
    loom_tokenizer *t = calloc(1, sizeof *t);
    uint32_t *line_of = calloc(vocab, sizeof *line_of);
    if (t) {
        t->off = calloc(vocab, sizeof *t->off);
        t->len = calloc(vocab, sizeof *t->len);
        t->bytes = malloc(b->arena_len + EOT_LEN);
        t->added = calloc(1, sizeof *t->added);
        t->added_bytes = malloc(EOT_LEN);
    }
    if (!t || !line_of || !t->off || !t->len || !t->bytes || !t->added || !t->added_bytes) {
        free(line_of);
        loom_tokenizer_free(t);
        return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer of %u ids", vocab);
    }
    loom_status st = LOOM_OK;
    for (size_t i = 0; i < b->n && !st; i++) {
        const entry *e = &b->e[i];
        if (e->rank == eot)
            st = loom_error(LOOM_ERR_FORMAT, "%s:%u: rank %u is the special token's id", b->name, e->line, e->rank);
        else if (t->len[e->rank])
            st = loom_error(LOOM_ERR_FORMAT, "%s:%u: rank %u was already given at line %u", b->name, e->line,
                            e->rank, line_of[e->rank]);
        t->off[e->rank] = e->off;
        t->len[e->rank] = e->len;
        line_of[e->rank] = e->line;
    }
    free(line_of);
    memcpy(t->bytes, b->arena, b->arena_len);
    memcpy(t->bytes + b->arena_len, LOOM_TOKENIZER_EOT_TEXT, EOT_LEN);
    t->off[eot] = (uint32_t)b->arena_len;
    t->len[eot] = (uint32_t)EOT_LEN;
    t->vocab = vocab;
    t->eot = eot;
    t->model = LOOM_TOK_TIKTOKEN;
    t->pretok = LOOM_PRETOK_GPT2;
    t->uc = loom_uc_default;
    memcpy(t->added_bytes, LOOM_TOKENIZER_EOT_TEXT, EOT_LEN);
    t->added[0] = (loom_added_token){.id = eot, .off = 0, .len = (uint32_t)EOT_LEN, .special = 1};
    t->n_added = 1;
    if (!st) st = loom_tok_finish(t, NULL, b->name);
    if (st) {
        loom_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LOOM_OK;
}

/* ---- the indexes of a finished tokenizer ----------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The added tokens of each pass, sorted by first byte, longest first. */
static loom_status index_added(loom_tokenizer *t) {
    uint64_t *keys = malloc((t->n_added ? t->n_added : 1) * sizeof *keys);
    for (int p = 0; p < 2; p++) t->order[p] = malloc((t->n_added ? t->n_added : 1) * sizeof *t->order[p]);
    if (!keys || !t->order[0] || !t->order[1]) {
        free(keys);
        return loom_error(LOOM_ERR_NOMEM, "out of memory: added-token index");
    }
    for (int p = 0; p < 2; p++) {
        size_t n = 0;
        for (size_t i = 0; i < t->n_added; i++) {
            const loom_added_token *a = &t->added[i];
            if (a->normalized != p) continue;
            uint64_t len = a->len < 0xFFFFFF ? a->len : 0xFFFFFF;
            keys[n++] = (uint64_t)t->added_bytes[a->off] << 56 | (0xFFFFFF - len) << 32 | i;
        }
        qsort(keys, n, sizeof *keys, cmp_u64);
        memset(t->first[p], 0, sizeof t->first[p]);
        for (size_t k = 0; k < n; k++) {
            t->order[p][k] = (uint32_t)keys[k];
            t->first[p][(keys[k] >> 56) + 1]++;
        }
        for (int c = 0; c < 256; c++) t->first[p][c + 1] += t->first[p][c];
        t->single_first[p] = n ? (int)(keys[0] >> 56) : -1;
        t->all_special[p] = 1;
        for (size_t k = 0; k < n; k++) t->all_special[p] &= t->added[t->order[p][k]].special;
        if (n && (keys[n - 1] >> 56) != (keys[0] >> 56)) t->single_first[p] = -1;
    }
    free(keys);
    /* a cut at "\n" after a letter or digit (loom_tokenizer_safe_cut) splits no token's
     * match unless a token has "\n" past its first byte, or takes the spaces after it */
    for (size_t i = 0; i < t->n_added; i++) {
        const loom_added_token *a = &t->added[i];
        if (a->rstrip || (a->len > 1 && memchr(t->added_bytes + a->off + 1, '\n', a->len - 1))) t->cut_unsafe = 1;
    }
    return LOOM_OK;
}

loom_status loom_tok_finish(loom_tokenizer *t, const uint8_t *in_map, const char *name) {
    size_t count = 0, cap = 1024;
    for (uint32_t id = 0; id < t->vocab; id++) count += t->len[id] && (!in_map || in_map[id]);
    while (cap < 2 * count) cap *= 2;
    t->slots = malloc(cap * sizeof *t->slots);
    t->mask = cap - 1;
    if (!t->slots) return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer hash map of %zu tokens", count);
    memset(t->slots, 0xFF, cap * sizeof *t->slots);
    uint8_t *skip = NULL;
    if (!in_map) { /* the added tokens' ids are not in the map */
        skip = calloc(t->vocab, 1);
        if (!skip) return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer of %u ids", t->vocab);
        for (size_t i = 0; i < t->n_added; i++) skip[t->added[i].id] = 1;
    }
    for (uint32_t id = 0; id < t->vocab; id++) {
        if (!t->len[id] || (in_map ? !in_map[id] : skip[id])) continue;
        const uint8_t *p = t->bytes + t->off[id];
        if (lookup(t, p, t->len[id]) != NONE) {
            char sh[48];
            free(skip);
            return loom_error(LOOM_ERR_FORMAT, "%s: two tokens have the bytes '%s' (ids %u and %u)", name,
                              loom_tok_shown(sh, sizeof sh, p, t->len[id]), lookup(t, p, t->len[id]), id);
        }
        uint64_t h = loom_tok_hash(p, t->len[id]);
        size_t i = (size_t)h & t->mask;
        while (t->slots[i] != EMPTY_SLOT) i = (i + 1) & t->mask;
        t->slots[i] = (h >> 32 << 32) | id;
    }
    free(skip);
    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        t->byte_id[c] = lookup(t, &byte, 1);
        if (t->byte_id[c] == NONE) return loom_error(LOOM_ERR_FORMAT, "%s: no token for the single byte 0x%02X", name, c);
    }
    if (t->model == LOOM_TOK_TIKTOKEN) {
        t->pair_id = malloc(65536 * sizeof *t->pair_id);
        if (!t->pair_id) return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer pair table");
        for (uint32_t ab = 0; ab < 65536; ab++) {
            uint8_t two[2] = {(uint8_t)(ab >> 8), (uint8_t)ab};
            t->pair_id[ab] = lookup(t, two, 2);
        }
    } else {
        t->byte_merge = malloc(65536 * sizeof *t->byte_merge);
        if (!t->byte_merge) return loom_error(LOOM_ERR_NOMEM, "out of memory: tokenizer pair table");
        for (uint32_t ab = 0; ab < 65536; ab++) t->byte_merge[ab] = loom_tok_merge_of(t, t->byte_id[ab >> 8], t->byte_id[ab & 255]);
    }
    return index_added(t);
}

/* ---- helpers for messages and files ------------------------------------------------- */

/* Whether code point cp (>= 0x80) may appear as itself in a message: not a C1 control,
 * nor an invisible, line-breaking or text-reordering format character. */
static int shown_as_is(uint32_t cp) {
    return cp >= 0xA0 && !(cp >= 0x200B && cp <= 0x200F) && !(cp >= 0x2028 && cp <= 0x202E) &&
           !(cp >= 0x2060 && cp <= 0x206F) && cp != 0xFEFF;
}

/* An excerpt of s[0..n) for a message into buf (cap >= 8), at most 40 bytes (cap - 4 if
 * less) plus "..." where it is cut, as one line of plain text: printable ASCII and
 * well-formed UTF-8 characters as they are, every other byte (controls, bytes that are
 * not UTF-8, the characters shown_as_is refuses) as \xNN. */
const char *loom_tok_shown(char *buf, size_t cap, const void *s, size_t n) {
    const uint8_t *p = s;
    size_t k = 0, i = 0, lim = cap > 44 ? 40 : cap - 4; /* room for "..." and the NUL */
    while (i < n) {
        uint32_t cp = 0;
        size_t cl = p[i] >= 0x20 && p[i] < 0x7F ? 1 : p[i] >= 0x80 ? (size_t)loom_utf8_decode(p + i, n - i, &cp) : 0;
        if (cl > 1 && !shown_as_is(cp)) cl = 0;
        if (k + (cl ? cl : 4) > lim) break;
        if (cl) {
            memcpy(buf + k, p + i, cl);
            k += cl;
            i += cl;
        } else {
            k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", p[i++]);
        }
    }
    if (i < n) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = 0;
    return buf;
}

loom_status loom_tok_read_file(const char *path, uint8_t **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return loom_error(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) { /* fopen accepts a directory */
        fclose(f);
        return loom_error(LOOM_ERR_IO, "%s: is a directory, not a tokenizer file", path);
    }
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return loom_error(LOOM_ERR_NOMEM, "%s: out of memory reading the file", path);
        }
        errno = 0;
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *nb = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
        if (!nb) free(b);
        b = nb;
        cap *= 2;
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (err) {
        free(b);
        return loom_error(LOOM_ERR_IO, "%s: read failed: %s", path, strerror(err));
    }
    *buf = b;
    *len = n;
    return LOOM_OK;
}

static size_t count_lines(const uint8_t *s, size_t n) {
    size_t k = 1;
    if (n == 0) return k;
    for (const uint8_t *p = s; (p = memchr(p, '\n', (size_t)(s + n - p))) != NULL; p++) k++;
    return k;
}

/* The next line of s[0..n) at *pos, without its "\n" or "\r\n". Returns 0 at the end. */
static int next_line(const uint8_t *s, size_t n, size_t *pos, const uint8_t **line, size_t *len) {
    if (*pos >= n) return 0;
    const uint8_t *p = s + *pos, *nl = memchr(p, '\n', n - *pos);
    size_t l = nl ? (size_t)(nl - p) : n - *pos;
    *pos += l + (nl != NULL);
    if (l && p[l - 1] == '\r') l--;
    *line = p;
    *len = l;
    return 1;
}

/* ---- tiktoken rank file -------------------------------------------------------------- */

static int b64_value(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 (padded, length a multiple of 4) into out; returns the byte
 * count, or -1 if malformed. */
static long b64_decode(const uint8_t *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = (i + j >= n - pad) ? 0 : b64_value(s[i + j]);
            if (d < 0) return -1;
            v = v << 6 | (uint32_t)d;
        }
        out[k++] = (uint8_t)(v >> 16);
        out[k++] = (uint8_t)(v >> 8);
        out[k++] = (uint8_t)v;
    }
    return (long)(k - pad);
}

loom_status loom_tokenizer_from_tiktoken_mem(const void *buf, size_t len, const char *name,
                                             loom_tokenizer **out) {
    const uint8_t *s = buf;
    *out = NULL;
    if (!name) name = "<tiktoken>";
    if (len == 0) return loom_error(LOOM_ERR_FORMAT, "%s: empty file (expected lines 'base64 rank')", name);
    size_t lines = count_lines(s, len);
    builder b;
    loom_status st = builder_init(&b, name, lines, len);
    size_t pos = 0, lineno = 0;
    const uint8_t *l;
    size_t ll;
    uint8_t *tmp = malloc(len + 4);
    uint32_t max_rank = 0;
    char sh[48];
    if (!st && !tmp) st = loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    while (!st && next_line(s, len, &pos, &l, &ll)) {
        lineno++;
        if (ll == 0) continue;
        const uint8_t *sp = memchr(l, ' ', ll);
        if (!sp) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: missing rank (expected 'base64 rank', got '%s')", name,
                            lineno, loom_tok_shown(sh, sizeof sh, l, ll));
            break;
        }
        size_t tl = (size_t)(sp - l);
        long nb = b64_decode(l, tl, tmp);
        if (nb <= 0) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: bad base64 token '%s'", name, lineno, loom_tok_shown(sh, sizeof sh, l, tl));
            break;
        }
        const uint8_t *r = sp + 1, *re = l + ll;
        while (r < re && *r == ' ') r++;
        while (re > r && re[-1] == ' ') re--;
        uint64_t rank = 0;
        int ok = r < re && re - r <= 9;
        for (const uint8_t *q = r; ok && q < re; q++) {
            ok = *q >= '0' && *q <= '9';
            rank = rank * 10 + (uint64_t)(*q - '0');
        }
        if (!ok || rank >= MAX_RANK - 1) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: %s rank '%s' (expected an integer below %u)", name, lineno,
                            r == re ? "missing" : "bad", loom_tok_shown(sh, sizeof sh, r, (size_t)(re - r)), MAX_RANK - 1);
            break;
        }
        uint32_t dup = builder_add(&b, tmp, (size_t)nb, (uint32_t)rank, (uint32_t)lineno);
        if (dup != NONE) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: token '%s' was already given at line %u", name, lineno,
                            loom_tok_shown(sh, sizeof sh, l, tl), b.e[dup].line);
            break;
        }
        if (rank > max_rank) max_rank = (uint32_t)rank;
    }
    free(tmp);
    if (!st && b.n == 0) st = loom_error(LOOM_ERR_FORMAT, "%s: no tokens (expected lines 'base64 rank')", name);
    if (!st) st = builder_finish(&b, max_rank + 1, out);
    builder_free(&b);
    return st;
}

loom_status loom_tok_load_with(const char *path, loom_tokenizer **out,
                               loom_status (*from_mem)(const void *, size_t, const char *, loom_tokenizer **)) {
    uint8_t *buf;
    size_t len;
    *out = NULL;
    loom_status st = loom_tok_read_file(path, &buf, &len);
    if (st) return st;
    st = from_mem(buf, len, path, out);
    free(buf);
    return st;
}

loom_status loom_tokenizer_load_tiktoken(const char *path, loom_tokenizer **out) {
    return loom_tok_load_with(path, out, loom_tokenizer_from_tiktoken_mem);
}

/* ---- encoder.json + vocab.bpe ------------------------------------------------------ */

/* GPT-2's bytes_to_unicode, inverted: the byte for code point cp < 0x144, or -1. And
 * the order of the 256 single-byte ranks (printable bytes first, as tiktoken builds). */
void loom_tok_gpt2_alphabet(int16_t uc2byte[0x144], uint8_t rank_to_byte[256]) {
    int n = 0, extra = 0;
    for (int cp = 0; cp < 0x144; cp++) uc2byte[cp] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) {
            uc2byte[b] = (int16_t)b;
            rank_to_byte[n++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) {
            uc2byte[256 + extra++] = (int16_t)b;
            rank_to_byte[n++] = (uint8_t)b;
        }
    }
}

/* Maps a token spelled in GPT-2's byte alphabet back to its bytes. Returns the byte
 * count, or -1 (invalid UTF-8) or -2 - cp (a character outside the alphabet). */
long loom_tok_gpt2_unmap(const int16_t uc2byte[0x144], const uint8_t *s, size_t n, uint8_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int cl = loom_utf8_decode(s + i, n - i, &cp);
        if (!cl) return -1;
        if (cp >= 0x144 || uc2byte[cp] < 0) return -2 - (long)cp;
        out[k++] = (uint8_t)uc2byte[cp];
        i += (size_t)cl;
    }
    return (long)k;
}

static loom_status unmap_error(long r, const char *name, size_t line, size_t col) {
    if (r == -1) return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: the merge is not valid UTF-8", name, line, col);
    return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: the merge has U+%04lX, which is not in GPT-2's byte alphabet",
                      name, line, col, -2 - r);
}

void loom_tok_line_col(const uint8_t *s, size_t off, size_t *line, size_t *col) {
    size_t l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') l++, c = 1;
        else c++;
    }
    *line = l;
    *col = c;
}

/* vocab.bpe into the builder: 256 single bytes, then one rank per merge line. */
static loom_status parse_vocab_bpe(builder *b, const int16_t *uc2byte, const uint8_t *rank_to_byte,
                                   const uint8_t *s, size_t len, const char *name) {
    char sh[48], sh2[48];
    for (uint32_t r = 0; r < 256; r++) builder_add(b, &rank_to_byte[r], 1, r, 0);
    if (len == 0) return loom_error(LOOM_ERR_FORMAT, "%s: empty file (expected '#version' and merge lines)", name);
    size_t pos = 0, lineno = 1;
    const uint8_t *l;
    size_t ll;
    next_line(s, len, &pos, &l, &ll);
    if (ll < 8 || memcmp(l, "#version", 8) != 0)
        return loom_error(LOOM_ERR_FORMAT, "%s:1: expected the '#version: 0.2' line, got '%s'", name,
                          loom_tok_shown(sh, sizeof sh, l, ll));
    uint8_t *tmp = malloc(len + 1);
    if (!tmp) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    loom_status st = LOOM_OK;
    uint32_t rank = 256;
    while (!st && next_line(s, len, &pos, &l, &ll)) {
        lineno++;
        const uint8_t *sp = memchr(l, ' ', ll);
        if (!sp || sp == l || sp + 1 == l + ll || memchr(sp + 1, ' ', (size_t)(l + ll - sp - 1))) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: expected a merge 'A B', got '%s'", name, lineno,
                            loom_tok_shown(sh, sizeof sh, l, ll));
            break;
        }
        size_t la = (size_t)(sp - l), lb = ll - la - 1;
        long na = loom_tok_gpt2_unmap(uc2byte, l, la, tmp), nb = na >= 0 ? loom_tok_gpt2_unmap(uc2byte, sp + 1, lb, tmp + na) : 0;
        if (na < 0 || nb < 0) {
            st = unmap_error(na < 0 ? na : nb, name, lineno, na < 0 ? 1 : la + 2);
            break;
        }
        int first = builder_find(b, tmp, (size_t)na, NULL) == NONE;
        if (first || builder_find(b, tmp + na, (size_t)nb, NULL) == NONE) {
            const uint8_t *part = first ? l : sp + 1;
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: '%s' is not a token made by an earlier line", name, lineno,
                            loom_tok_shown(sh, sizeof sh, part, first ? la : lb));
            break;
        }
        uint32_t dup = builder_add(b, tmp, (size_t)(na + nb), rank, (uint32_t)lineno);
        if (dup != NONE) {
            if (b->e[dup].line)
                st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: merge '%s' repeats the token of line %u", name, lineno,
                                loom_tok_shown(sh2, sizeof sh2, l, ll), b->e[dup].line);
            else
                st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: merge '%s' makes a single byte", name, lineno,
                                loom_tok_shown(sh2, sizeof sh2, l, ll));
            break;
        }
        if (++rank >= MAX_RANK - 1) st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: too many merges", name, lineno);
    }
    free(tmp);
    return st;
}

/* An error about the encoder.json member whose value starts at byte `off`:
 * "name:line:col: message". */
static loom_status member_error(const uint8_t *s, size_t off, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static loom_status member_error(const uint8_t *s, size_t off, const char *name, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line, col;
    loom_tok_line_col(s, off, &line, &col);
    return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: %s", name, line, col, msg);
}

/* encoder.json must give exactly the builder's tokens and ranks, plus <|endoftext|>. */
static loom_status check_encoder_json(builder *b, const int16_t *uc2byte, const uint8_t *s, size_t len,
                                      const char *name, const char *bpe_name, uint32_t *eot) {
    char sh[48];
    if (len == 0) return loom_error(LOOM_ERR_FORMAT, "%s: empty file (expected a JSON object)", name);
    loom_json_error je;
    loom_json_doc *doc = loom_json_parse(s, len, NULL, &je);
    if (!doc) {
        if (je.status == LOOM_ERR_NOMEM) return loom_error(LOOM_ERR_NOMEM, "%s: %s", name, je.msg);
        return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: not JSON: %s", name, je.line, je.col, je.msg);
    }
    const loom_json *root = loom_json_root(doc);
    uint8_t *seen = calloc(b->n ? b->n : 1, 1), *tmp = malloc(len + 1);
    loom_status st = LOOM_OK;
    int have_eot = 0;
    size_t count = 0;
    if (!seen || !tmp) st = loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    else if (root->type != LOOM_JSON_OBJECT)
        st = loom_error(LOOM_ERR_FORMAT, "%s: expected a JSON object of token -> id, got %s", name,
                        loom_json_type_name(root->type));
    for (size_t i = 0; !st && i < root->n; i++) {
        const loom_json *v = &root->items[i];
        uint64_t id;
        if (!loom_json_get_u64(v, &id) || id >= MAX_RANK - 1) {
            st = member_error(s, v->offset, name, "the id of \"%s\" is not an integer below %u",
                              loom_tok_shown(sh, sizeof sh, v->key, v->key_len), MAX_RANK - 1);
            break;
        }
        if (v->key_len == EOT_LEN && memcmp(v->key, LOOM_TOKENIZER_EOT_TEXT, EOT_LEN) == 0) {
            *eot = (uint32_t)id;
            have_eot = 1;
            continue;
        }
        if (v->key_len == 15 && memcmp(v->key, "<|startoftext|>", 15) == 0) continue; /* tiktoken drops it too */
        long n = loom_tok_gpt2_unmap(uc2byte, (const uint8_t *)v->key, v->key_len, tmp);
        uint32_t e = n > 0 ? builder_find(b, tmp, (size_t)n, NULL) : NONE;
        loom_tok_shown(sh, sizeof sh, v->key, v->key_len);
        if (n == -1)
            st = member_error(s, v->offset, name, "token \"%s\" is not valid UTF-8", sh);
        else if (n < 0)
            st = member_error(s, v->offset, name, "token \"%s\" has U+%04lX, which is not in GPT-2's byte alphabet",
                              sh, -2 - n);
        else if (e == NONE)
            st = member_error(s, v->offset, name, "token \"%s\" (id %llu) is not made by %s", sh,
                              (unsigned long long)id, bpe_name);
        else if (b->e[e].rank != id)
            st = member_error(s, v->offset, name, "token \"%s\" has id %llu, but %s gives it rank %u", sh,
                              (unsigned long long)id, bpe_name, b->e[e].rank);
        else if (seen[e])
            st = member_error(s, v->offset, name, "token \"%s\" is listed twice", sh);
        else {
            seen[e] = 1;
            count++;
        }
    }
    if (!st && count != b->n) {
        size_t miss = 0;
        while (seen[miss]) miss++;
        st = loom_error(LOOM_ERR_FORMAT, "%s: has %zu tokens but %s makes %zu: no entry for rank %u (%s line %u)",
                        name, count, bpe_name, b->n, b->e[miss].rank, bpe_name, b->e[miss].line);
    }
    if (!st && !have_eot) st = loom_error(LOOM_ERR_FORMAT, "%s: no \"%s\" entry", name, LOOM_TOKENIZER_EOT_TEXT);
    free(seen);
    free(tmp);
    loom_json_free(doc);
    return st;
}

loom_status loom_tokenizer_from_gpt2_mem(const void *enc, size_t enc_len, const char *enc_name,
                                         const void *bpe, size_t bpe_len, const char *bpe_name,
                                         loom_tokenizer **out) {
    *out = NULL;
    if (!enc_name) enc_name = "<encoder.json>";
    if (!bpe_name) bpe_name = "<vocab.bpe>";
    int16_t uc2byte[0x144];
    uint8_t rank_to_byte[256];
    loom_tok_gpt2_alphabet(uc2byte, rank_to_byte);
    builder b;
    loom_status st = builder_init(&b, bpe_name, count_lines(bpe, bpe_len) + 256, bpe_len + 256);
    if (!st) st = parse_vocab_bpe(&b, uc2byte, rank_to_byte, bpe, bpe_len, bpe_name);
    uint32_t eot = 0;
    if (!st) st = check_encoder_json(&b, uc2byte, enc, enc_len, enc_name, bpe_name, &eot);
    if (!st && eot < b.n)
        st = loom_error(LOOM_ERR_FORMAT, "%s: \"%s\" has id %u, the rank of a token of %s", enc_name,
                        LOOM_TOKENIZER_EOT_TEXT, eot, bpe_name);
    if (!st) st = builder_finish(&b, eot, out);
    builder_free(&b);
    return st;
}

loom_status loom_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path,
                                     loom_tokenizer **out) {
    uint8_t *enc = NULL, *bpe = NULL;
    size_t enc_len = 0, bpe_len = 0;
    *out = NULL;
    loom_status st = loom_tok_read_file(encoder_json_path, &enc, &enc_len);
    if (!st) st = loom_tok_read_file(vocab_bpe_path, &bpe, &bpe_len);
    if (!st) st = loom_tokenizer_from_gpt2_mem(enc, enc_len, encoder_json_path, bpe, bpe_len, vocab_bpe_path, out);
    free(enc);
    free(bpe);
    return st;
}

void loom_tokenizer_free(loom_tokenizer *tok) {
    if (!tok) return;
    free(tok->bytes);
    free(tok->off);
    free(tok->len);
    free(tok->slots);
    free(tok->pair_id);
    free(tok->uc_own);
    free(tok->mkeys);
    free(tok->mvals);
    free(tok->byte_merge);
    free(tok->added);
    free(tok->added_bytes);
    free(tok->order[0]);
    free(tok->order[1]);
    free(tok);
}

uint32_t loom_tokenizer_vocab_size(const loom_tokenizer *tok) { return tok->vocab; }
uint32_t loom_tokenizer_eot(const loom_tokenizer *tok) { return tok->eot; }

const uint8_t *loom_tokenizer_token_bytes(const loom_tokenizer *tok, uint32_t id, size_t *len) {
    if (id >= tok->vocab || tok->len[id] == 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tok->len[id];
    return tok->bytes + tok->off[id];
}

int64_t loom_tokenizer_token_id(const loom_tokenizer *tok, const void *bytes, size_t len) {
    if (len == 0) return -1;
    uint32_t id = lookup(tok, bytes, len);
    return id == NONE ? -1 : (int64_t)id;
}

/* ---- byte pair merge ----------------------------------------------------------------- */

/* tiktoken's _byte_pair_merge: parts (start, rank = rank of this part and the next
 * joined, tid = id of this part); repeatedly join the pair of lowest rank, leftmost on
 * ties. pt has room for n + 1 parts. O(n * merges). */
typedef struct bpe_part {
    uint32_t start, rank, tid;
} bpe_part;

static size_t bpe_scan(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out, bpe_part *pt) {
    size_t m = n + 1, mini = 0;
    uint32_t minr = NONE;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = t->pair_id[p[i] << 8 | p[i + 1]];
        pt[i] = (bpe_part){(uint32_t)i, r, t->byte_id[p[i]]};
        if (r < minr) minr = r, mini = i;
    }
    pt[n - 1] = (bpe_part){(uint32_t)(n - 1), NONE, t->byte_id[p[n - 1]]};
    pt[n] = (bpe_part){(uint32_t)n, NONE, NONE};
    while (minr != NONE) {
        size_t i = mini;
        pt[i].tid = minr;
        if (i > 0) pt[i - 1].rank = i + 2 < m ? lookup(t, p + pt[i - 1].start, pt[i + 2].start - pt[i - 1].start) : NONE;
        pt[i].rank = i + 3 < m ? lookup(t, p + pt[i].start, pt[i + 3].start - pt[i].start) : NONE;
        for (size_t k = i + 1; k + 1 < m; k++) pt[k] = pt[k + 1];
        m--;
        minr = NONE;
        for (size_t k = 0; k + 1 < m; k++)
            if (pt[k].rank < minr) minr = pt[k].rank, mini = k;
    }
    for (size_t k = 0; k + 1 < m; k++) out[k] = pt[k].tid;
    return m - 1;
}

/* The same merges as bpe_scan in O(n log n): parts form a linked list by start offset,
 * candidate pairs sit in a min-heap keyed (rank, start) and are dropped when stale. */
static size_t bpe_heap(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out) {
    uint32_t *nxt = malloc((n + 1) * sizeof *nxt), *prv = malloc(n * sizeof *prv);
    uint32_t *prank = malloc(n * sizeof *prank), *tid = malloc(n * sizeof *tid);
    uint64_t *heap = malloc(3 * n * sizeof *heap); /* n - 1 pairs, then at most 2 per merge */
    size_t hn = 0, k = 0;
    if (!nxt || !prv || !prank || !tid || !heap) {
        free(nxt), free(prv), free(prank), free(tid), free(heap);
        loom_error(LOOM_ERR_NOMEM, "out of memory: merging a piece of %zu bytes", n);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        nxt[i] = (uint32_t)(i + 1);
        prv[i] = (uint32_t)i - 1;
        tid[i] = t->byte_id[p[i]];
        prank[i] = i + 1 < n ? t->pair_id[p[i] << 8 | p[i + 1]] : NONE;
        if (prank[i] != NONE) heap_push(heap, &hn, (uint64_t)prank[i] << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
        if (tid[i] == NONE || prank[i] != r) continue; /* stale */
        uint32_t q = nxt[i], nq = nxt[q];
        tid[i] = r;
        tid[q] = NONE;
        nxt[i] = nq;
        if (nq < n) prv[nq] = i;
        prank[i] = nq < n ? lookup(t, p + i, nxt[nq] - i) : NONE;
        if (prank[i] != NONE) heap_push(heap, &hn, (uint64_t)prank[i] << 32 | i);
        if (i > 0) {
            uint32_t pi = prv[i];
            prank[pi] = lookup(t, p + pi, nq - pi);
            if (prank[pi] != NONE) heap_push(heap, &hn, (uint64_t)prank[pi] << 32 | pi);
        }
    }
    for (size_t i = 0; i < n; i = nxt[i]) out[k++] = tid[i];
    free(nxt), free(prv), free(prank), free(tid), free(heap);
    return k;
}

size_t loom_tokenizer_bpe(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out) {
    if (n == 1) {
        out[0] = t->byte_id[p[0]];
        return 1;
    }
    if (t->model == LOOM_TOK_HF_BPE) return loom_tok_hf_bpe(t, p, n, out);
    if (n > loom_tokenizer_heap_threshold && n < UINT32_MAX) return bpe_heap(t, p, n, out);
    enum { STACK = 128 };
    bpe_part sbuf[STACK + 1], *buf = sbuf;
    if (n > STACK) {
        buf = malloc((n + 1) * sizeof *buf);
        if (!buf) {
            loom_error(LOOM_ERR_NOMEM, "out of memory: merging a piece of %zu bytes", n);
            return SIZE_MAX;
        }
    }
    size_t k = bpe_scan(t, p, n, out, buf);
    if (buf != sbuf) free(buf);
    return k;
}

/* ---- encode / decode ------------------------------------------------------------------ */

static int tokens_reserve(loom_tokens *o, size_t more) {
    if (o->cap - o->len >= more) return 0;
    size_t need = o->len + more, nc = o->cap ? o->cap : 1024;
    if (need < o->len || need > SIZE_MAX / 2 / sizeof *o->ids) return -1;
    while (nc < need) nc *= 2;
    uint32_t *r = realloc(o->ids, nc * sizeof *r);
    if (!r) return -1;
    o->ids = r;
    o->cap = nc;
    return 0;
}

void loom_tokens_free(loom_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

void loom_bytes_free(loom_bytes *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* A direct-mapped cache of recent pieces that needed merging, owned by one encode call
 * (so encoding stays thread-safe). Words repeat, so most merges are done once. */
enum { CACHE_SLOTS = 4096, CACHE_BYTES = 22, CACHE_IDS = 6 };
typedef struct piece_cache {
    uint8_t len, nids;
    uint8_t bytes[CACHE_BYTES];
    uint32_t ids[CACHE_IDS];
} piece_cache;

/* One encode call: the text, the mode, the output, the cache (CACHE_SLOTS entries, or
 * NULL). `dry`: only look for refused special tokens. */
typedef struct enc_ctx {
    const loom_tokenizer *t;
    const uint8_t *text;
    loom_tokenizer_special mode;
    loom_tokens *o;
    piece_cache *cache;
    int dry;
} enc_ctx;

/* Appends the ids of the piece p[0..plen) (room for plen ids is reserved). */
static inline loom_status emit_piece(const enc_ctx *c, const uint8_t *p, size_t plen, int invalid) {
    const loom_tokenizer *t = c->t;
    loom_tokens *o = c->o;
    uint32_t id = NONE;
    if (invalid || plen == 1) id = t->byte_id[p[0]];
    else if (t->model == LOOM_TOK_TIKTOKEN || t->ignore_merges) id = lookup(t, p, plen);
    if (id != NONE) {
        o->ids[o->len++] = id;
        return LOOM_OK;
    }
    piece_cache *pc = c->cache && plen <= CACHE_BYTES ? &c->cache[loom_tok_hash(p, plen) & (CACHE_SLOTS - 1)] : NULL;
    if (pc && pc->len == plen && memcmp(pc->bytes, p, plen) == 0) {
        memcpy(o->ids + o->len, pc->ids, pc->nids * sizeof *pc->ids);
        o->len += pc->nids;
        return LOOM_OK;
    }
    size_t k = loom_tokenizer_bpe(t, p, plen, o->ids + o->len);
    if (k == SIZE_MAX) return LOOM_ERR_NOMEM;
    if (pc && k <= CACHE_IDS) {
        pc->len = (uint8_t)plen;
        pc->nids = (uint8_t)k;
        memcpy(pc->bytes, p, plen);
        memcpy(pc->ids, o->ids + o->len, k * sizeof *pc->ids);
    }
    o->len += k;
    return LOOM_OK;
}

/* Every piece of s[0..n) by one scanner of pretokenize.h, each merged. */
#define EACH_PIECE(SCAN, END)                                                                   \
    for (size_t i = 0; i < n;) {                                                                \
        int invalid;                                                                            \
        size_t j = SCAN(&t->uc, s, END, i, &invalid);                                           \
        if (tokens_reserve(c->o, j - i))                                                        \
            return loom_error(LOOM_ERR_NOMEM, "out of memory: %zu token ids", c->o->len + j - i); \
        loom_status st = emit_piece(c, s + i, j - i, invalid);                                  \
        if (st) return st;                                                                      \
        i = j;                                                                                  \
    }

/* Encodes s[0..n), a text without added tokens: pre-tokenizer, then merges. */
static loom_status encode_segment(const enc_ctx *c, const uint8_t *s, size_t n) {
    const loom_tokenizer *t = c->t;
    if (c->dry) return LOOM_OK;
    if (t->pretok == LOOM_PRETOK_GPT2) {
        EACH_PIECE(loom_pretok_next_uc, n)
    } else if (t->pretok == LOOM_PRETOK_LLAMA3) {
        EACH_PIECE(loom_pretok_next_llama3, n)
    } else { /* Digits: each of its pieces cut by GPT-2's pattern, the piece's end as the text's */
        const uint8_t *s0 = s;
        size_t n0 = n;
        for (size_t k = 0; k < n0;) {
            size_t e = loom_pretok_digits_end(&t->uc, s0, n0, k, t->individual_digits);
            s = s0 + k;
            n = e - k;
            EACH_PIECE(loom_pretok_next_uc, n)
            k = e;
        }
    }
    return LOOM_OK;
}
#undef EACH_PIECE

size_t loom_tok_pieces(const loom_tokenizer *t, const uint8_t *s, size_t n, size_t *ends) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = t->pretok == LOOM_PRETOK_DIGITS ? loom_pretok_digits_end(&t->uc, s, n, i, t->individual_digits) : n;
        for (int invalid; i < e; ends[k++] = i)
            i = t->pretok == LOOM_PRETOK_LLAMA3 ? loom_pretok_next_llama3(&t->uc, s, e, i, &invalid)
                                                : loom_pretok_next_uc(&t->uc, s, e, i, &invalid);
    }
    return k;
}

/* The leftmost-longest added token of pass p in s[from..n): its index into t->added,
 * with *at its offset; or -1. */
static long find_added(const loom_tokenizer *t, int p, const uint8_t *s, size_t n, size_t from, size_t *at) {
    const uint32_t *first = t->first[p], *order = t->order[p];
    if (first[256] == 0) return -1;
    for (size_t i = from; i < n; i++) {
        if (t->single_first[p] >= 0) { /* jump to the next possible start */
            const uint8_t *q = memchr(s + i, t->single_first[p], n - i);
            if (!q) return -1;
            i = (size_t)(q - s);
        }
        for (uint32_t k = first[s[i]]; k < first[s[i] + 1]; k++) {
            const loom_added_token *a = &t->added[order[k]];
            if (a->len <= n - i && memcmp(s + i, t->added_bytes + a->off, a->len) == 0) {
                *at = i;
                return order[k];
            }
        }
    }
    return -1;
}

/* Whether the character that ends at s[i] (i > lo) / starts at s[i] (i < n) is White_Space
 * (Rust's \s, which tokenizers' lstrip and rstrip use); sets *len. */
static int space_before(const uint8_t *s, size_t lo, size_t i, size_t *len) {
    size_t k = i - 1;
    while (k > lo && i - k < 4 && (s[k] & 0xC0) == 0x80) k--;
    size_t cl;
    if (loom_pretok_char(s, i, k, &cl) != LOOM_UC_SPACE || k + cl != i) return 0;
    *len = cl;
    return 1;
}
static int space_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    return loom_pretok_char(s, n, i, len) == LOOM_UC_SPACE;
}

/* Pass p of the added-token split of s[0..n) (pass 0: the whole text, by the tokens
 * with normalized false; pass 1: each text between them, by the others), as
 * tokenizers' AddedVocabulary::find_matches: matches are found leftmost-longest and
 * without overlap; one that the mode skips is left as text (and not searched again);
 * the text between kept matches goes to the next pass, after pass 1 to the
 * pre-tokenizer. */
static loom_status split_added(const enc_ctx *c, int p, const uint8_t *s, size_t n) {
    if (p == 2) return encode_segment(c, s, n);
    const loom_tokenizer *t = c->t;
    if (c->mode == LOOM_TOKENIZER_SPECIAL_ORDINARY && t->all_special[p]) return split_added(c, p + 1, s, n);
    size_t pos = 0, done = 0, at = 0, sl;
    long k;
    loom_status st = LOOM_OK;
    while (!st && (k = find_added(t, p, s, n, pos, &at)) >= 0) {
        const loom_added_token *a = &t->added[k];
        size_t start = at, stop = at + a->len;
        pos = stop;
        if (a->special && c->mode == LOOM_TOKENIZER_SPECIAL_ORDINARY) continue;
        if (a->special && c->mode == LOOM_TOKENIZER_SPECIAL_REFUSE) {
            char sh[48];
            return loom_error(LOOM_ERR_ARG,
                              "text contains the special token %s at byte %zu (allow it, or encode it as ordinary text)",
                              loom_tok_shown(sh, sizeof sh, t->added_bytes + a->off, a->len), (size_t)(s + at - c->text));
        }
        if (a->lstrip) {
            while (start > done && space_before(s, done, start, &sl)) start -= sl;
        }
        if (a->rstrip) {
            while (stop < n && space_at(s, n, stop, &sl)) stop += sl;
            pos = stop; /* the loader refuses tokens that start with a space when some token rstrips */
        }
        if (done < start) st = split_added(c, p + 1, s + done, start - done);
        if (!st && !c->dry) {
            if (tokens_reserve(c->o, 1)) return loom_error(LOOM_ERR_NOMEM, "out of memory: %zu token ids", c->o->len + 1);
            c->o->ids[c->o->len++] = a->id;
        }
        done = stop;
    }
    if (!st && done < n) st = split_added(c, p + 1, s + done, n - done);
    return st;
}

static loom_status encode_mode(const loom_tokenizer *t, const uint8_t *s, size_t n, loom_tokenizer_special mode,
                               loom_tokens *o) {
    /* the cache pays for itself on texts of more than a few KB; it is optional */
    piece_cache *cache = n >= loom_tokenizer_cache_min_len ? calloc(CACHE_SLOTS, sizeof *cache) : NULL;
    enc_ctx c = {.t = t, .text = s, .mode = mode, .o = o, .cache = cache};
    loom_status st = split_added(&c, 0, s, n);
    free(cache);
    return st;
}

/* An unknown mode, or (REFUSE) a special token in the text, is LOOM_ERR_ARG. */
static loom_status check_mode(const loom_tokenizer *t, const uint8_t *s, size_t n, loom_tokenizer_special mode) {
    if (mode != LOOM_TOKENIZER_SPECIAL_REFUSE && mode != LOOM_TOKENIZER_SPECIAL_ORDINARY &&
        mode != LOOM_TOKENIZER_SPECIAL_ALLOW)
        return loom_error(LOOM_ERR_ARG, "tokenizer: unknown special-token mode %d", (int)mode);
    if (mode != LOOM_TOKENIZER_SPECIAL_REFUSE) return LOOM_OK;
    enc_ctx c = {.t = t, .text = s, .mode = mode, .dry = 1};
    return split_added(&c, 0, s, n);
}

loom_status loom_tokenizer_encode(const loom_tokenizer *tok, const void *text, size_t len,
                                  loom_tokenizer_special mode, loom_tokens *out) {
    const uint8_t *s = len ? text : (const uint8_t *)"";
    loom_status st = check_mode(tok, s, len, mode);
    if (st) return st;
    size_t before = out->len;
    st = encode_mode(tok, s, len, mode, out);
    if (st) out->len = before;
    return st;
}

/* The first position >= from where a chunk may start: s[i] == '\n' after an ASCII
 * letter or digit. No match of any pattern loom knows spans it (GPT-2's and Llama 3's
 * letter and number runs end there; Llama 3 joins "\n" to punctuation before it, so a
 * printable byte is not enough), and the matches before it do not depend on what
 * follows, so chunks encode independently. Returns n if none. */
size_t loom_tokenizer_safe_cut(const void *text, size_t n, size_t from) {
    const uint8_t *s = text;
    if (from < 1) from = 1;
    while (from < n) {
        const uint8_t *nl = memchr(s + from, '\n', n - from);
        if (!nl) return n;
        size_t i = (size_t)(nl - s);
        uint8_t b = s[i - 1] | 0x20;
        if ((b >= 'a' && b <= 'z') || (s[i - 1] >= '0' && s[i - 1] <= '9')) return i;
        from = i + 1;
    }
    return n;
}

loom_status loom_tokenizer_encode_parallel(const loom_tokenizer *tok, const void *text, size_t len,
                                           loom_tokenizer_special mode, int threads, loom_tokens *out) {
    if (threads <= 0) threads = omp_get_max_threads();
    enum { MIN_CHUNK = 1 << 16 };
    if (threads == 1 || len < 2 * MIN_CHUNK || tok->cut_unsafe) return loom_tokenizer_encode(tok, text, len, mode, out);
    const uint8_t *s = text;
    loom_status st = check_mode(tok, s, len, mode);
    if (st) return st;
    /* checked: no special token is there, so refusing encodes as ordinary does */
    if (mode == LOOM_TOKENIZER_SPECIAL_REFUSE) mode = LOOM_TOKENIZER_SPECIAL_ORDINARY;
    size_t nchunks = (size_t)threads * 4;
    if (nchunks > len / MIN_CHUNK) nchunks = len / MIN_CHUNK;
    size_t *cut = malloc((nchunks + 1) * sizeof *cut);
    loom_tokens *parts = calloc(nchunks, sizeof *parts);
    loom_status *sts = calloc(nchunks, sizeof *sts);
    if (!cut || !parts || !sts) {
        free(cut), free(parts), free(sts);
        return loom_error(LOOM_ERR_NOMEM, "out of memory: parallel encode of %zu chunks", nchunks);
    }
    cut[0] = 0;
    for (size_t c = 1; c < nchunks; c++) {
        size_t want = len / nchunks * c;
        cut[c] = loom_tokenizer_safe_cut(s, len, want > cut[c - 1] ? want : cut[c - 1] + 1);
        if (cut[c] > len) cut[c] = len;
    }
    cut[nchunks] = len;
    char msg[256] = "";
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (size_t c = 0; c < nchunks; c++) {
        if (cut[c + 1] > cut[c]) {
            sts[c] = encode_mode(tok, s + cut[c], cut[c + 1] - cut[c], mode, &parts[c]);
            if (sts[c]) {
#pragma omp critical(loom_tokenizer_msg)
                snprintf(msg, sizeof msg, "%s", loom_error_msg());
            }
        }
    }
    size_t total = 0;
    for (size_t c = 0; c < nchunks && !st; c++) {
        st = sts[c];
        total += parts[c].len;
    }
    if (st) st = loom_error(st, "%s", msg);
    else if (tokens_reserve(out, total)) st = loom_error(LOOM_ERR_NOMEM, "out of memory: %zu token ids", total);
    for (size_t c = 0; c < nchunks; c++) {
        if (!st && parts[c].len) {
            memcpy(out->ids + out->len, parts[c].ids, parts[c].len * sizeof *out->ids);
            out->len += parts[c].len;
        }
        loom_tokens_free(&parts[c]);
    }
    free(cut), free(parts), free(sts);
    return st;
}

loom_status loom_tokenizer_decode(const loom_tokenizer *tok, const uint32_t *ids, size_t n, loom_bytes *out) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= tok->vocab || tok->len[ids[i]] == 0)
            return loom_error(LOOM_ERR_ARG, "decode: id %u at position %zu is not a token (vocab size %u)", ids[i], i,
                              tok->vocab);
        total += tok->len[ids[i]];
    }
    if (out->cap - out->len <= total) {
        size_t need = out->len + total + 1, nc = out->cap ? out->cap : 256;
        while (nc < need) nc *= 2;
        uint8_t *r = realloc(out->data, nc);
        if (!r) return loom_error(LOOM_ERR_NOMEM, "out of memory: decoding %zu bytes", need);
        out->data = r;
        out->cap = nc;
    }
    uint8_t *d = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        memcpy(d, tok->bytes + tok->off[ids[i]], tok->len[ids[i]]);
        d += tok->len[ids[i]];
    }
    out->len += total;
    out->data[out->len] = 0;
    return LOOM_OK;
}
