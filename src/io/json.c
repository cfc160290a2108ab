/* Strict recursive-descent JSON parser into an arena-backed tree, and a JSON string
 * escaper. Every read is bounds-checked against the input end; depth and memory are
 * capped. Not a streaming parser; numbers are converted with strtod in the C locale
 * (loom never calls setlocale), with the raw token kept for exact integer reads. */
#include "io/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_DEFAULT_DEPTH 64
#define JSON_DEFAULT_MEM ((size_t)1 << 30)
#define JSON_MAX_NUMBER_LEN 1024 /* longer number tokens are rejected (strtod cost) */
#define ARENA_MIN_BLOCK 1024
#define ARENA_MAX_BLOCK ((size_t)1 << 20)

/* Arena block: the tree's nodes, strings and number tokens all live in these. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct loom_json_doc {
    loom_json root;
    size_t consumed;
    arena_block *blocks; /* head is the block currently filled */
    size_t next_block;   /* size of the next ordinary block (grows geometrically) */
};

typedef struct parser {
    const unsigned char *base, *p, *end;
    int depth, max_depth;
    size_t mem, max_mem;
    loom_json_doc *doc;
    loom_json *stack; /* children of the arrays/objects being parsed, innermost on top */
    size_t sn, scap;
    char *sbuf;       /* scratch for decoding one string */
    size_t slen, sbcap;
    loom_json_error *err;
} parser;

/* ---- errors ------------------------------------------------------------------ */

/* Records the first failure (at byte `at`) and returns 0 so callers can `return fail(..)`. */
__attribute__((format(printf, 4, 5)))
static int fail_st(parser *P, loom_status st, const unsigned char *at, const char *fmt, ...) {
    loom_json_error *e = P->err;
    if (e->status != LOOM_OK) return 0;
    e->status = st;
    if (at < P->base) at = P->base;
    if (at > P->end) at = P->end;
    e->offset = (size_t)(at - P->base);
    e->line = 1;
    e->col = 1;
    for (const unsigned char *q = P->base; q < at; q++) {
        if (*q == '\n') { e->line++; e->col = 1; }
        else e->col++;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return 0;
}
#define fail(P, at, ...) fail_st(P, LOOM_ERR_FORMAT, at, __VA_ARGS__)

/* Describes the byte at q for a message: "'x'", "byte 0x01" or "end of input". */
static const char *describe(const parser *P, const unsigned char *q, char buf[16]) {
    if (q >= P->end) return "end of input";
    if (*q >= 0x20 && *q < 0x7f) snprintf(buf, 16, "'%c'", *q);
    else snprintf(buf, 16, "byte 0x%02x", *q);
    return buf;
}

/* ---- memory ------------------------------------------------------------------ */

/* Accounts `n` more bytes against max_mem; 0 (error recorded) if over the cap. */
static int charge(parser *P, size_t n) {
    if (n > P->max_mem - P->mem)
        return fail_st(P, LOOM_ERR_NOMEM, P->p, "document needs more than %zu bytes of memory", P->max_mem);
    P->mem += n;
    return 1;
}

/* n bytes (16-aligned) from the document arena, or NULL with the error recorded. */
static void *arena_alloc(parser *P, size_t n) {
    loom_json_doc *d = P->doc;
    if (n > SIZE_MAX / 2) { fail_st(P, LOOM_ERR_NOMEM, P->p, "allocation of %zu bytes too large", n); return NULL; }
    n = (n + 15) & ~(size_t)15;
    arena_block *b = d->blocks;
    if (b && b->cap - b->used >= n) {
        void *r = b->data + b->used;
        b->used += n;
        return r;
    }
    int dedicated = n > ARENA_MAX_BLOCK / 4; /* big requests get their own block */
    size_t cap = dedicated ? n : (n > d->next_block ? n : d->next_block);
    if (!charge(P, sizeof(arena_block) + cap)) return NULL;
    arena_block *nb = malloc(sizeof(arena_block) + cap);
    if (!nb) { fail_st(P, LOOM_ERR_NOMEM, P->p, "out of memory (%zu bytes)", cap); return NULL; }
    nb->cap = cap;
    nb->used = n;
    if (dedicated && b) { /* keep filling the current block */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        d->blocks = nb;
        if (d->next_block < ARENA_MAX_BLOCK) d->next_block *= 2;
    }
    return nb->data;
}

/* Copies s[0..n) into the arena with a terminating NUL. */
static char *arena_strdup(parser *P, const char *s, size_t n) {
    char *r = arena_alloc(P, n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, s, n);
    r[n] = 0;
    return r;
}

/* Grows a malloc'd array so it holds at least `need` elements of `elem` bytes. */
static int grow(parser *P, void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return fail_st(P, LOOM_ERR_NOMEM, P->p, "document too large");
        nc *= 2;
    }
    if (!charge(P, (nc - *cap) * elem)) return 0;
    void *r = realloc(*arr, nc * elem);
    if (!r) return fail_st(P, LOOM_ERR_NOMEM, P->p, "out of memory (%zu bytes)", nc * elem);
    *arr = r;
    *cap = nc;
    return 1;
}

static int push_child(parser *P, const loom_json *v) {
    if (!grow(P, (void **)&P->stack, &P->scap, P->sn + 1, sizeof(loom_json))) return 0;
    P->stack[P->sn++] = *v;
    return 1;
}

static int sbuf_put(parser *P, const void *s, size_t n) {
    if (n == 0) return 1;
    if (!grow(P, (void **)&P->sbuf, &P->sbcap, P->slen + n, 1)) return 0;
    memcpy(P->sbuf + P->slen, s, n);
    P->slen += n;
    return 1;
}

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Length (1-4) of the well-formed UTF-8 sequence at s (avail bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0xc2) return 0;        /* continuation byte or overlong 2-byte lead */
    else if (c < 0xe0) n = 2;
    else if (c < 0xf0) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;      /* overlong */
        else if (c == 0xed) hi = 0x9f; /* UTF-16 surrogates */
    } else if (c < 0xf5) {
        n = 4;
        if (c == 0xf0) lo = 0x90;      /* overlong */
        else if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

int loom_json_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n = utf8_seq(p, (size_t)(end - p));
        if (!n) return 0;
        p += n;
    }
    return 1;
}

static size_t utf8_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- parser ------------------------------------------------------------------ */

static void skip_ws(parser *P) {
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')) P->p++;
}

/* Four hex digits at q (bounds already checked) -> value, or -1. */
static long hex4(const unsigned char *q) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = q[i];
        int d = c >= '0' && c <= '9' ? (int)(c - '0')
              : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
              : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10) : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Parses the string literal at P->p (which is '"') into the arena. */
static int parse_string(parser *P, char **out, size_t *out_len) {
    const unsigned char *start = P->p, *p = P->p + 1, *end = P->end;
    P->slen = 0;
    for (;;) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
        if (!sbuf_put(P, run, (size_t)(p - run))) return 0;
        if (p >= end)
            return fail(P, p, "unterminated string (opened at byte %zu)", (size_t)(start - P->base));
        unsigned c = *p;
        if (c == '"') { p++; break; }
        if (c < 0x20)
            return fail(P, p, "raw control character 0x%02x in string (must be escaped)", c);
        if (c >= 0x80) {
            size_t n = utf8_seq(p, (size_t)(end - p));
            if (!n) return fail(P, p, "invalid UTF-8 byte 0x%02x in string", c);
            if (!sbuf_put(P, p, n)) return 0;
            p += n;
            continue;
        }
        /* backslash escape */
        if (end - p < 2)
            return fail(P, end, "unterminated string (opened at byte %zu)", (size_t)(start - P->base));
        unsigned e = p[1];
        char ch;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
            if (end - p < 6 || hex4(p + 2) < 0)
                return fail(P, p, "invalid \\u escape: expected 4 hex digits");
            uint32_t cp = (uint32_t)hex4(p + 2);
            size_t used = 6;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(P, p, "invalid \\u escape: lone low surrogate \\u%04x", (unsigned)cp);
            if (cp >= 0xd800 && cp <= 0xdbff) {
                long lo = (end - p >= 12 && p[6] == '\\' && p[7] == 'u') ? hex4(p + 8) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(P, p, "invalid \\u escape: high surrogate \\u%04x not followed by a low surrogate",
                                (unsigned)cp);
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                used = 12;
            }
            unsigned char u[4];
            if (!sbuf_put(P, u, utf8_encode(cp, u))) return 0;
            p += used;
            continue;
        }
        default: {
            char d[16];
            return fail(P, p, "invalid escape '\\' followed by %s", describe(P, p + 1, d));
        }
        }
        if (!sbuf_put(P, &ch, 1)) return 0;
        p += 2;
    }
    char *s = arena_strdup(P, P->sbuf ? P->sbuf : "", P->slen);
    if (!s) return 0;
    *out = s;
    *out_len = P->slen;
    P->p = p;
    return 1;
}

static int is_digit(const parser *P, const unsigned char *q) { return q < P->end && *q >= '0' && *q <= '9'; }

/* Parses a number token per the JSON grammar; keeps the raw text and strtod value. */
static int parse_number(parser *P, loom_json *out) {
    const unsigned char *s = P->p, *p = P->p;
    if (*p == '-') p++;
    if (!is_digit(P, p)) return fail(P, p, "invalid number: expected a digit after '-'");
    if (*p == '0') {
        p++;
        if (is_digit(P, p)) return fail(P, p, "invalid number: leading zeros are not allowed");
    } else {
        while (is_digit(P, p)) p++;
    }
    if (p < P->end && *p == '.') {
        p++;
        if (!is_digit(P, p)) return fail(P, p, "invalid number: expected a digit after '.'");
        while (is_digit(P, p)) p++;
    }
    if (p < P->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < P->end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(P, p)) return fail(P, p, "invalid number: expected a digit in the exponent");
        while (is_digit(P, p)) p++;
    }
    size_t n = (size_t)(p - s);
    if (n > JSON_MAX_NUMBER_LEN)
        return fail(P, s, "number token is %zu characters long (max %d)", n, JSON_MAX_NUMBER_LEN);
    out->type = LOOM_JSON_NUMBER;
    out->str = arena_strdup(P, (const char *)s, n);
    if (!out->str) return 0;
    out->len = n;
    out->number = strtod(out->str, NULL);
    P->p = p;
    return 1;
}

static int parse_value(parser *P, loom_json *out);

/* Moves the children pushed since `base` into one arena array owned by `out`. */
static int pop_children(parser *P, loom_json *out, size_t base) {
    size_t n = P->sn - base;
    out->n = n;
    if (n) {
        out->items = arena_alloc(P, n * sizeof(loom_json));
        if (!out->items) return 0;
        memcpy(out->items, P->stack + base, n * sizeof(loom_json));
    }
    P->sn = base;
    return 1;
}

static int enter(parser *P) {
    if (++P->depth > P->max_depth)
        return fail(P, P->p, "nesting deeper than %d levels", P->max_depth);
    return 1;
}

static int parse_array(parser *P, loom_json *out) {
    char d[16];
    out->type = LOOM_JSON_ARRAY;
    if (!enter(P)) return 0;
    size_t base = P->sn;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == ']') {
        P->p++;
    } else {
        for (;;) {
            loom_json child;
            memset(&child, 0, sizeof child);
            if (!parse_value(P, &child) || !push_child(P, &child)) return 0;
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') { P->p++; continue; }
            if (P->p < P->end && *P->p == ']') { P->p++; break; }
            return fail(P, P->p, "expected ',' or ']' after array element, found %s", describe(P, P->p, d));
        }
    }
    P->depth--;
    return pop_children(P, out, base);
}

static int parse_object(parser *P, loom_json *out) {
    char d[16];
    out->type = LOOM_JSON_OBJECT;
    if (!enter(P)) return 0;
    size_t base = P->sn;
    P->p++;
    skip_ws(P);
    if (P->p < P->end && *P->p == '}') {
        P->p++;
    } else {
        for (;;) {
            skip_ws(P);
            if (P->p >= P->end || *P->p != '"')
                return fail(P, P->p, "expected a string key in object, found %s", describe(P, P->p, d));
            char *key;
            size_t key_len;
            if (!parse_string(P, &key, &key_len)) return 0;
            skip_ws(P);
            if (P->p >= P->end || *P->p != ':')
                return fail(P, P->p, "expected ':' after object key, found %s", describe(P, P->p, d));
            P->p++;
            loom_json child;
            memset(&child, 0, sizeof child);
            if (!parse_value(P, &child)) return 0;
            child.key = key;
            child.key_len = key_len;
            if (!push_child(P, &child)) return 0;
            skip_ws(P);
            if (P->p < P->end && *P->p == ',') { P->p++; continue; }
            if (P->p < P->end && *P->p == '}') { P->p++; break; }
            return fail(P, P->p, "expected ',' or '}' after object member, found %s", describe(P, P->p, d));
        }
    }
    P->depth--;
    return pop_children(P, out, base);
}

static int match_literal(parser *P, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(P->end - P->p) < n || memcmp(P->p, lit, n) != 0) return 0;
    P->p += n;
    return 1;
}

/* Parses one value (after optional whitespace) into *out (zeroed by the caller). */
static int parse_value(parser *P, loom_json *out) {
    char d[16];
    skip_ws(P);
    out->offset = (size_t)(P->p - P->base);
    if (P->p >= P->end) return fail(P, P->p, "unexpected end of input: expected a value");
    switch (*P->p) {
    case '{': return parse_object(P, out);
    case '[': return parse_array(P, out);
    case '"':
        out->type = LOOM_JSON_STRING;
        return parse_string(P, &out->str, &out->len);
    case 't':
    case 'f':
    case 'n':
        if (match_literal(P, "true")) { out->type = LOOM_JSON_BOOL; out->boolean = 1; return 1; }
        if (match_literal(P, "false")) { out->type = LOOM_JSON_BOOL; return 1; }
        if (match_literal(P, "null")) { out->type = LOOM_JSON_NULL; return 1; }
        break;
    default:
        if (*P->p == '-' || (*P->p >= '0' && *P->p <= '9')) return parse_number(P, out);
    }
    return fail(P, P->p, "expected a value (object, array, string, number, true, false or null), found %s",
                describe(P, P->p, d));
}

loom_json_doc *loom_json_parse(const void *buf, size_t len, const loom_json_opts *opts, loom_json_error *err) {
    loom_json_error local_err;
    if (!err) err = &local_err;
    memset(err, 0, sizeof *err);
    parser P;
    memset(&P, 0, sizeof P);
    static const unsigned char empty[1];
    P.base = buf ? (const unsigned char *)buf : empty;
    if (!buf) len = 0;
    P.p = P.base;
    P.end = P.base + len;
    P.err = err;
    P.max_depth = opts && opts->max_depth > 0 ? opts->max_depth : JSON_DEFAULT_DEPTH;
    P.max_mem = opts && opts->max_mem > 0 ? opts->max_mem : JSON_DEFAULT_MEM;
    if (!charge(&P, sizeof(loom_json_doc))) return NULL;
    P.doc = calloc(1, sizeof(loom_json_doc));
    if (!P.doc) {
        fail_st(&P, LOOM_ERR_NOMEM, P.p, "out of memory");
        return NULL;
    }
    P.doc->next_block = ARENA_MIN_BLOCK;
    int ok = parse_value(&P, &P.doc->root);
    if (ok) {
        skip_ws(&P);
        if (P.p < P.end && !(opts && opts->allow_trailing)) {
            char d[16];
            ok = fail(&P, P.p, "unexpected %s after the JSON value", describe(&P, P.p, d));
        }
    }
    free(P.stack);
    free(P.sbuf);
    if (!ok) {
        loom_json_free(P.doc);
        return NULL;
    }
    P.doc->consumed = (size_t)(P.p - P.base);
    return P.doc;
}

void loom_json_free(loom_json_doc *doc) {
    if (!doc) return;
    arena_block *b = doc->blocks;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(doc);
}

const loom_json *loom_json_root(const loom_json_doc *doc) { return doc ? &doc->root : NULL; }
size_t loom_json_consumed(const loom_json_doc *doc) { return doc ? doc->consumed : 0; }

/* ---- accessors --------------------------------------------------------------- */

const char *loom_json_type_name(loom_json_type t) {
    switch (t) {
    case LOOM_JSON_NULL: return "null";
    case LOOM_JSON_BOOL: return "bool";
    case LOOM_JSON_NUMBER: return "number";
    case LOOM_JSON_STRING: return "string";
    case LOOM_JSON_ARRAY: return "array";
    case LOOM_JSON_OBJECT: return "object";
    }
    return "?";
}

const loom_json *loom_json_get(const loom_json *obj, const char *key) {
    if (!obj || obj->type != LOOM_JSON_OBJECT || !key) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->items[i].key_len == n && memcmp(obj->items[i].key, key, n) == 0) return &obj->items[i];
    return NULL;
}

size_t loom_json_len(const loom_json *v) {
    return v && (v->type == LOOM_JSON_ARRAY || v->type == LOOM_JSON_OBJECT) ? v->n : 0;
}

const loom_json *loom_json_at(const loom_json *v, size_t i) {
    return i < loom_json_len(v) ? &v->items[i] : NULL;
}

const char *loom_json_str(const loom_json *v) { return v && v->type == LOOM_JSON_STRING ? v->str : NULL; }

/* Parses the digits of s[0..n) (all must be digits, n >= 1) into *out; 0 on overflow. */
static int digits_u64(const char *s, size_t n, uint64_t *out) {
    if (n == 0) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

int loom_json_get_u64(const loom_json *v, uint64_t *out) {
    uint64_t x;
    if (!v || v->type != LOOM_JSON_NUMBER || !digits_u64(v->str, v->len, &x)) return 0;
    *out = x;
    return 1;
}

int loom_json_get_i64(const loom_json *v, int64_t *out) {
    if (!v || v->type != LOOM_JSON_NUMBER || v->len == 0) return 0;
    int neg = v->str[0] == '-';
    uint64_t x;
    if (!digits_u64(v->str + neg, v->len - (size_t)neg, &x)) return 0;
    if (neg) {
        if (x > (uint64_t)INT64_MAX + 1) return 0;
        *out = x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x;
    } else {
        if (x > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)x;
    }
    return 1;
}

/* ---- writing ----------------------------------------------------------------- */

/* Makes room for n more bytes plus the NUL; 0 (and b->failed) on failure. */
static int buf_reserve(loom_json_buf *b, size_t n) {
    if (b->failed) return 0;
    if (n > SIZE_MAX - b->len - 1) { b->failed = 1; return 0; }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < need) nc = nc > SIZE_MAX / 2 ? need : nc * 2;
    char *r = realloc(b->data, nc);
    if (!r) { b->failed = 1; return 0; }
    b->data = r;
    b->cap = nc;
    return 1;
}

void loom_json_buf_put(loom_json_buf *b, const void *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void loom_json_buf_puts(loom_json_buf *b, const char *s) { loom_json_buf_put(b, s, strlen(s)); }

void loom_json_buf_printf(loom_json_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) b->failed = 1;
    if (n >= 0 && buf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void loom_json_buf_free(loom_json_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

int loom_json_escape(loom_json_buf *b, const char *s, size_t len) {
    if (!loom_json_utf8_valid(s, len)) return -1;
    loom_json_buf_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\') p++;
        loom_json_buf_put(b, run, (size_t)(p - run));
        if (p >= end) break;
        unsigned c = *p++;
        switch (c) {
        case '"': loom_json_buf_put(b, "\\\"", 2); break;
        case '\\': loom_json_buf_put(b, "\\\\", 2); break;
        case '\b': loom_json_buf_put(b, "\\b", 2); break;
        case '\f': loom_json_buf_put(b, "\\f", 2); break;
        case '\n': loom_json_buf_put(b, "\\n", 2); break;
        case '\r': loom_json_buf_put(b, "\\r", 2); break;
        case '\t': loom_json_buf_put(b, "\\t", 2); break;
        default: loom_json_buf_printf(b, "\\u%04x", c); break;
        }
    }
    loom_json_buf_put(b, "\"", 1);
    return 0;
}
