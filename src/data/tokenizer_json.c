/* Hugging Face tokenizer.json files of byte-level BPE models (GPT-2, Llama 3, SmolLM /
 * StarCoder and others), encoding exactly as the `tokenizers` library (0.20) does:
 * the loader, the character classes of its Oniguruma regexes, and its merge order. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/pretokenize.h"
#include "data/tokenizer_impl.h"
#include "data/tokenizer_internal.h"
#include "io/json.h"
#include "loom/tokenizer.h"

#define NONE LOOM_TOK_NONE
#define NONE64 LOOM_TOK_NONE64

/* ---- character classes as tokenizers' Oniguruma (Unicode 14) sees them ------------------ */

/* Letters and numbers of loom's tables (Unicode 16) that Oniguruma 6.9.8, inside
 * tokenizers 0.20, does not know (assigned in Unicode 15 and 16): to it they are
 * unassigned, so [^\s\p{L}\p{N}]. Measured against tokenizers 0.20.3 over every code
 * point (tests/tokenizer/hf_cases.py checks them again). */
static const uint32_t ONIG_NOT_L[][2] = {
    {0x1C89, 0x1C8A},   {0xA7CB, 0xA7CD},   {0xA7DA, 0xA7DC},   {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x1123F, 0x11240}, {0x11380, 0x11389}, {0x1138B, 0x1138B},
    {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3},
    {0x11BC0, 0x11BE0}, {0x11F02, 0x11F02}, {0x11F04, 0x11F10}, {0x11F12, 0x11F33}, {0x1342F, 0x1342F},
    {0x13441, 0x13446}, {0x13460, 0x143FA}, {0x16100, 0x1611D}, {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF},
    {0x1B132, 0x1B132}, {0x1B155, 0x1B155}, {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E4D0, 0x1E4EB},
    {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x2B739, 0x2B739}, {0x2EBF0, 0x2EE5D}, {0x31350, 0x323AF},
};
static const uint32_t ONIG_NOT_N[][2] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x11F50, 0x11F59}, {0x16130, 0x16139},
    {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA},
};

/* The tables with those code points made OTHER; changed blocks are copied (and shared
 * when equal), so stage1 still indexes at most 256 blocks. */
static loom_status onig_tables(loom_tokenizer *t) {
    size_t nb = 0;
    for (size_t i = 0; i < 0x1100; i++)
        if ((size_t)loom_uc_stage1[i] + 1 > nb) nb = (size_t)loom_uc_stage1[i] + 1;
    uint8_t *mem = malloc(0x1100 + 256 * 256);
    if (!mem) return loom_error(LOOM_ERR_NOMEM, "out of memory: character tables");
    uint8_t *st1 = mem, *st2 = mem + 0x1100, blk[256];
    memcpy(st1, loom_uc_stage1, 0x1100);
    memcpy(st2, loom_uc_stage2, nb * 256);
    for (uint32_t hi = 0; hi < 0x1100; hi++) {
        memcpy(blk, st2 + (size_t)st1[hi] * 256, 256);
        int changed = 0;
        for (int r = 0; r < 2; r++) {
            const uint32_t(*rg)[2] = r ? ONIG_NOT_N : ONIG_NOT_L;
            size_t nr = r ? sizeof ONIG_NOT_N / sizeof *ONIG_NOT_N : sizeof ONIG_NOT_L / sizeof *ONIG_NOT_L;
            for (size_t k = 0; k < nr; k++)
                for (uint32_t cp = rg[k][0] > hi << 8 ? rg[k][0] : hi << 8; cp <= rg[k][1] && cp >> 8 == hi; cp++) {
                    blk[cp & 255] = LOOM_UC_OTHER;
                    changed = 1;
                }
        }
        if (!changed) continue;
        size_t b = 0;
        while (b < nb && memcmp(st2 + b * 256, blk, 256)) b++;
        if (b == nb) {
            LOOM_CHECK(nb < 256);
            memcpy(st2 + nb++ * 256, blk, 256);
        }
        st1[hi] = (uint8_t)b;
    }
    t->uc_own = mem;
    t->uc = (loom_uc_tables){st1, st2};
    return LOOM_OK;
}

/* ---- tokenizers' BPE: only listed pairs merge, lowest merge index first ------------------ */

/* Word::merge_all of tokenizers pops the pair of lowest merge index, leftmost on ties,
 * until none is left; this scan does the same in O(n * merges). pr has room for n. */
static size_t hf_bpe_scan(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out, uint64_t *pr) {
    uint64_t minv = NONE64;
    size_t mini = 0, m = n;
    for (size_t i = 0; i < n; i++) out[i] = t->byte_id[p[i]];
    for (size_t i = 0; i + 1 < n; i++) {
        pr[i] = t->byte_merge[p[i] << 8 | p[i + 1]];
        if (pr[i] < minv) minv = pr[i], mini = i;
    }
    while (minv != NONE64) { /* values are index << 32 | id: the least is the lowest index */
        size_t i = mini;
        out[i] = (uint32_t)minv;
        memmove(out + i + 1, out + i + 2, (m - i - 2) * sizeof *out);
        if (m >= i + 3) memmove(pr + i + 1, pr + i + 2, (m - i - 3) * sizeof *pr);
        m--;
        if (i + 1 < m) pr[i] = loom_tok_merge_of(t, out[i], out[i + 1]);
        if (i > 0) pr[i - 1] = loom_tok_merge_of(t, out[i - 1], out[i]);
        minv = NONE64;
        for (size_t k = 0; k + 1 < m; k++)
            if (pr[k] < minv) minv = pr[k], mini = k;
    }
    return m;
}

/* The same merges in O(n log n), as tokenizers does them: symbols in a linked list by
 * start offset, candidate pairs in a min-heap keyed (merge index, start), stale ones
 * dropped. */
static size_t hf_bpe_heap(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out) {
    uint32_t *nxt = malloc((n + 1) * sizeof *nxt), *prv = malloc(n * sizeof *prv), *tid = malloc(n * sizeof *tid);
    uint64_t *pv = malloc(n * sizeof *pv), *heap = malloc(3 * n * sizeof *heap);
    size_t hn = 0, k = 0;
    if (!nxt || !prv || !tid || !pv || !heap) {
        free(nxt), free(prv), free(tid), free(pv), free(heap);
        loom_error(LOOM_ERR_NOMEM, "out of memory: merging a piece of %zu bytes", n);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < n; i++) {
        nxt[i] = (uint32_t)(i + 1);
        prv[i] = (uint32_t)i - 1;
        tid[i] = t->byte_id[p[i]];
        pv[i] = i + 1 < n ? t->byte_merge[p[i] << 8 | p[i + 1]] : NONE64;
        if (pv[i] != NONE64) heap_push(heap, &hn, (pv[i] >> 32) << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(heap, &hn);
        uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
        if (tid[i] == NONE || pv[i] == NONE64 || (uint32_t)(pv[i] >> 32) != r) continue; /* stale */
        uint32_t q = nxt[i], nq = nxt[q];
        tid[i] = (uint32_t)pv[i];
        tid[q] = NONE;
        nxt[i] = nq;
        if (nq < n) prv[nq] = i;
        pv[i] = nq < n ? loom_tok_merge_of(t, tid[i], tid[nq]) : NONE64;
        if (pv[i] != NONE64) heap_push(heap, &hn, (pv[i] >> 32) << 32 | i);
        if (i > 0) {
            uint32_t pi = prv[i];
            pv[pi] = loom_tok_merge_of(t, tid[pi], tid[i]);
            if (pv[pi] != NONE64) heap_push(heap, &hn, (pv[pi] >> 32) << 32 | pi);
        }
    }
    for (size_t i = 0; i < n; i = nxt[i]) out[k++] = tid[i];
    free(nxt), free(prv), free(tid), free(pv), free(heap);
    return k;
}

size_t loom_tok_hf_bpe(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out) {
    if (n > loom_tokenizer_heap_threshold && n < UINT32_MAX) return hf_bpe_heap(t, p, n, out);
    enum { STACK = 128 };
    uint64_t sbuf[STACK], *buf = sbuf;
    if (n > STACK) {
        buf = malloc(n * sizeof *buf);
        if (!buf) {
            loom_error(LOOM_ERR_NOMEM, "out of memory: merging a piece of %zu bytes", n);
            return SIZE_MAX;
        }
    }
    size_t k = hf_bpe_scan(t, p, n, out, buf);
    if (buf != sbuf) free(buf);
    return k;
}

/* ---- the loader --------------------------------------------------------------------------- */

typedef struct jload {
    const char *name;    /* the file, for messages */
    const uint8_t *text; /* its bytes, for line:col */
    int16_t uc2byte[0x144];
    uint8_t rank_to_byte[256];
    /* model.vocab: member i is token string key -> id */
    const loom_json *vocab;
    uint64_t *vslots; /* (hash >> 32) << 32 | member index */
    size_t vmask;
} jload;

/* "name:line:col: message" about the value v (or "name: message" when v is NULL). */
static loom_status jerr(const jload *L, const loom_json *v, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static loom_status jerr(const jload *L, const loom_json *v, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!v) return loom_error(LOOM_ERR_FORMAT, "%s: %s", L->name, msg);
    size_t line, col;
    loom_tok_line_col(L->text, v->offset, &line, &col);
    return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: %s", L->name, line, col, msg);
}

/* The id of token string s[0..n) in model.vocab, or NONE. */
static uint32_t vocab_find(const jload *L, const void *s, size_t n, size_t *slot) {
    uint64_t h = loom_tok_hash(s, n);
    for (size_t i = (size_t)h & L->vmask;; i = (i + 1) & L->vmask) {
        uint64_t e = L->vslots[i];
        if (e == UINT64_MAX) {
            if (slot) *slot = i;
            return NONE;
        }
        const loom_json *v = &L->vocab->items[(uint32_t)e];
        if ((uint32_t)(e >> 32) == (uint32_t)(h >> 32) && v->key_len == n && memcmp(v->key, s, n) == 0)
            return (uint32_t)v->number;
    }
}

/* A field that must be a bool (or absent / null: `def`). */
static loom_status get_bool(const jload *L, const loom_json *obj, const char *key, const char *path, int def,
                            int *out) {
    const loom_json *v = loom_json_get(obj, key);
    *out = def;
    if (!v || v->type == LOOM_JSON_NULL) return LOOM_OK;
    if (v->type != LOOM_JSON_BOOL) return jerr(L, v, "%s.%s: expected true or false, got %s", path, key,
                                               loom_json_type_name(v->type));
    *out = v->boolean;
    return LOOM_OK;
}

/* obj.type, or NULL (with an error) when obj is not an object with a string "type". */
static const char *type_of(const jload *L, const loom_json *obj, const char *path, loom_status *st) {
    const char *ty = obj && obj->type == LOOM_JSON_OBJECT ? loom_json_str(loom_json_get(obj, "type")) : NULL;
    if (!ty) *st = jerr(L, obj, "%s: expected an object with a \"type\"", path);
    return ty;
}

/* A ByteLevel pre-tokenizer: *use_regex as given (default true); add_prefix_space must be false. */
static loom_status byte_level(const jload *L, const loom_json *pt, const char *path, int *use_regex) {
    int aps;
    loom_status st = get_bool(L, pt, "add_prefix_space", path, 0, &aps);
    if (!st && aps)
        st = jerr(L, loom_json_get(pt, "add_prefix_space"), "%s.add_prefix_space: true is not supported", path);
    if (!st) st = get_bool(L, pt, "use_regex", path, 1, use_regex);
    return st;
}

/* The pre-tokenizers loom knows; the pattern of a Split. */
static const char LLAMA3_PATTERN[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
#define KNOWN_PRETOK                                                                                 \
    "(loom knows ByteLevel, Sequence[Split(Llama 3's or GPT-2's pattern), ByteLevel(use_regex false)] " \
    "and Sequence[Digits, ByteLevel])"

static loom_status parse_split(const jload *L, const loom_json *sp, const char *path, int *pretok) {
    char sh[48];
    const loom_json *pat = loom_json_get(sp, "pattern"), *re = loom_json_get(pat, "Regex");
    const char *beh = loom_json_str(loom_json_get(sp, "behavior"));
    int invert;
    loom_status st = get_bool(L, sp, "invert", path, 0, &invert);
    if (st) return st;
    if (!re || re->type != LOOM_JSON_STRING)
        return jerr(L, pat ? pat : sp, "%s.pattern: expected {\"Regex\": ...}", path);
    if (re->len == sizeof LLAMA3_PATTERN - 1 && !memcmp(re->str, LLAMA3_PATTERN, re->len)) *pretok = LOOM_PRETOK_LLAMA3;
    else if (re->len == sizeof GPT2_PATTERN - 1 && !memcmp(re->str, GPT2_PATTERN, re->len)) *pretok = LOOM_PRETOK_GPT2;
    else
        return jerr(L, re, "%s.pattern: regex \"%s\" is not supported (loom knows Llama 3's and GPT-2's)", path,
                    loom_tok_shown(sh, sizeof sh, re->str, re->len));
    if (!beh || strcmp(beh, "Isolated"))
        return jerr(L, loom_json_get(sp, "behavior") ? loom_json_get(sp, "behavior") : sp,
                    "%s.behavior: only \"Isolated\" is supported", path);
    if (invert) return jerr(L, loom_json_get(sp, "invert"), "%s.invert: true is not supported", path);
    return LOOM_OK;
}

/* The pre_tokenizer: one of the forms of KNOWN_PRETOK. */
static loom_status parse_pretok(const jload *L, const loom_json *root, loom_tokenizer *t) {
    const loom_json *pt = loom_json_get(root, "pre_tokenizer");
    loom_status st = LOOM_OK;
    char path[64];
    if (!pt || pt->type == LOOM_JSON_NULL)
        return jerr(L, pt, "pre_tokenizer: %s; a byte-level BPE needs ByteLevel %s", pt ? "null" : "missing",
                    KNOWN_PRETOK);
    const char *ty = type_of(L, pt, "pre_tokenizer", &st);
    if (!ty) return st;
    int use_regex = 1;
    if (!strcmp(ty, "ByteLevel")) {
        st = byte_level(L, pt, "pre_tokenizer", &use_regex);
        if (!st && !use_regex)
            st = jerr(L, loom_json_get(pt, "use_regex"), "pre_tokenizer: ByteLevel with use_regex false alone is not supported");
        t->pretok = LOOM_PRETOK_GPT2;
        return st;
    }
    if (strcmp(ty, "Sequence"))
        return jerr(L, loom_json_get(pt, "type"), "pre_tokenizer: type \"%s\" is not supported %s", ty, KNOWN_PRETOK);
    const loom_json *seq = loom_json_get(pt, "pretokenizers");
    size_t n = loom_json_len(seq);
    if (!seq || seq->type != LOOM_JSON_ARRAY || n == 0 || n > 2)
        return jerr(L, seq ? seq : pt, "pre_tokenizer.pretokenizers: expected 1 or 2 pre-tokenizers %s", KNOWN_PRETOK);
    const char *ty0 = type_of(L, &seq->items[0], "pre_tokenizer.pretokenizers[0]", &st);
    if (!ty0) return st;
    const char *ty1 = n == 2 ? type_of(L, &seq->items[1], "pre_tokenizer.pretokenizers[1]", &st) : NULL;
    if (st) return st;
    snprintf(path, sizeof path, "pre_tokenizer.pretokenizers[%zu]", n - 1);
    const loom_json *last = &seq->items[n - 1];
    if (strcmp(n == 2 ? ty1 : ty0, "ByteLevel"))
        return jerr(L, loom_json_get(last, "type"), "%s: type \"%s\" is not supported here %s", path, n == 2 ? ty1 : ty0,
                    KNOWN_PRETOK);
    if ((st = byte_level(L, last, path, &use_regex))) return st;
    if (n == 1) {
        t->pretok = LOOM_PRETOK_GPT2;
        if (!use_regex) return jerr(L, last, "%s: ByteLevel with use_regex false alone is not supported", path);
        return LOOM_OK;
    }
    const loom_json *first = &seq->items[0];
    if (!strcmp(ty0, "Split")) {
        if ((st = parse_split(L, first, "pre_tokenizer.pretokenizers[0]", &t->pretok))) return st;
        if (use_regex) return jerr(L, loom_json_get(last, "use_regex"), "%s.use_regex: must be false after a Split", path);
        return LOOM_OK;
    }
    if (!strcmp(ty0, "Digits")) {
        if ((st = get_bool(L, first, "individual_digits", "pre_tokenizer.pretokenizers[0]", 0, &t->individual_digits)))
            return st;
        if (!use_regex) return jerr(L, last, "%s.use_regex: must be true after Digits", path);
        t->pretok = LOOM_PRETOK_DIGITS;
        return LOOM_OK;
    }
    return jerr(L, loom_json_get(first, "type"), "pre_tokenizer.pretokenizers[0]: type \"%s\" is not supported %s", ty0,
                KNOWN_PRETOK);
}

/* The model's fields other than vocab and merges. */
static loom_status parse_model_fields(const jload *L, const loom_json *model, loom_tokenizer *t) {
    char sh[48];
    loom_status st = LOOM_OK;
    const char *ty = type_of(L, model, "model", &st);
    if (!ty) return st;
    if (strcmp(ty, "BPE"))
        return jerr(L, loom_json_get(model, "type"), "model.type \"%s\" is not supported (loom reads byte-level BPE)",
                    loom_tok_shown(sh, sizeof sh, ty, strlen(ty)));
    const loom_json *d = loom_json_get(model, "dropout");
    if (d && d->type != LOOM_JSON_NULL && !(d->type == LOOM_JSON_NUMBER && d->number == 0))
        return jerr(L, d, "model.dropout: only null is supported (loom's BPE is deterministic)");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const loom_json *v = loom_json_get(model, affix[i]);
        if (v && v->type != LOOM_JSON_NULL && !(v->type == LOOM_JSON_STRING && v->len == 0))
            return jerr(L, v, "model.%s: only null is supported", affix[i]);
    }
    return get_bool(L, model, "ignore_merges", "model", 0, &t->ignore_merges);
}

/* The bytes of a token string, as tokenizers' ByteLevel decoder gives them: mapped
 * through the byte alphabet when every character is in it, else its UTF-8 as it is.
 * Returns the count; *in_alphabet tells which. */
static size_t token_bytes(const jload *L, const char *s, size_t n, uint8_t *out, int *in_alphabet) {
    long k = loom_tok_gpt2_unmap(L->uc2byte, (const uint8_t *)s, n, out);
    *in_alphabet = k >= 0;
    if (k >= 0) return (size_t)k;
    memcpy(out, s, n);
    return n;
}

/* model.vocab: ids unique and below LOOM_TOK_MAX_ID, every byte's character present. */
static loom_status parse_vocab(jload *L, const loom_json *model, uint32_t *max_id) {
    char sh[48], sh2[48];
    const loom_json *v = loom_json_get(model, "vocab");
    if (!v || v->type != LOOM_JSON_OBJECT)
        return jerr(L, v ? v : model, "model.vocab: %s (expected an object of token -> id)",
                    v ? "not an object" : "missing");
    if (v->n == 0) return jerr(L, v, "model.vocab: empty");
    L->vocab = v;
    size_t cap = 1024;
    while (cap < 2 * v->n) cap *= 2;
    L->vslots = malloc(cap * sizeof *L->vslots);
    L->vmask = cap - 1;
    if (!L->vslots) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory for %zu tokens", L->name, v->n);
    memset(L->vslots, 0xFF, cap * sizeof *L->vslots);
    *max_id = 0;
    for (size_t i = 0; i < v->n; i++) {
        const loom_json *e = &v->items[i];
        uint64_t id;
        if (!loom_json_get_u64(e, &id) || id >= LOOM_TOK_MAX_ID - 1)
            return jerr(L, e, "model.vocab: the id of \"%s\" is not an integer below %u",
                        loom_tok_shown(sh, sizeof sh, e->key, e->key_len), LOOM_TOK_MAX_ID - 1);
        size_t slot = 0;
        uint32_t old = vocab_find(L, e->key, e->key_len, &slot);
        if (old != NONE)
            return jerr(L, e, "model.vocab: token \"%s\" is listed twice", loom_tok_shown(sh, sizeof sh, e->key, e->key_len));
        /* e->number is the id (exact below 2^53): vocab_find reads it */
        L->vslots[slot] = (loom_tok_hash((const uint8_t *)e->key, e->key_len) >> 32 << 32) | i;
        if (id > *max_id) *max_id = (uint32_t)id;
    }
    uint32_t *owner = malloc(((size_t)*max_id + 1) * sizeof *owner);
    if (!owner) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", L->name);
    memset(owner, 0xFF, ((size_t)*max_id + 1) * sizeof *owner);
    loom_status st = LOOM_OK;
    for (size_t i = 0; i < v->n && !st; i++) {
        const loom_json *e = &v->items[i];
        uint32_t id = (uint32_t)e->number;
        if (owner[id] != NONE) {
            const loom_json *o = &v->items[owner[id]];
            st = jerr(L, e, "model.vocab: \"%s\" and \"%s\" both have id %u", loom_tok_shown(sh, sizeof sh, o->key, o->key_len),
                      loom_tok_shown(sh2, sizeof sh2, e->key, e->key_len), id);
        }
        owner[id] = (uint32_t)i;
    }
    free(owner);
    for (int r = 0; r < 256 && !st; r++) { /* each byte's character of the alphabet */
        uint8_t b = L->rank_to_byte[r];
        uint32_t cp = 0;
        while (L->uc2byte[cp] != b) cp++;
        char ch[3] = {(char)cp, 0, 0};
        if (cp >= 0x80) ch[0] = (char)(0xC0 | cp >> 6), ch[1] = (char)(0x80 | (cp & 63));
        if (vocab_find(L, ch, strlen(ch), NULL) == NONE)
            st = jerr(L, v, "model.vocab: no token for byte 0x%02X (\"%s\", U+%04X in the byte-level alphabet)", b, ch,
                      cp);
    }
    return st;
}

/* model.merges: "A B" strings or [A, B] pairs of tokens of model.vocab whose join is one
 * too; merge i gets index i (a repeated pair: the last index, as tokenizers' map). */
static loom_status parse_merges(const jload *L, const loom_json *model, loom_tokenizer *t) {
    char sh[48], sh2[48];
    const loom_json *m = loom_json_get(model, "merges");
    if (!m || m->type != LOOM_JSON_ARRAY)
        return jerr(L, m ? m : model, "model.merges: %s (expected an array)", m ? "not an array" : "missing");
    size_t cap = 1024, maxlen = 0;
    while (cap < 2 * m->n) cap *= 2;
    for (size_t i = 0; i < L->vocab->n; i++)
        if (L->vocab->items[i].key_len > maxlen) maxlen = L->vocab->items[i].key_len;
    t->mkeys = malloc(cap * sizeof *t->mkeys);
    t->mvals = malloc(cap * sizeof *t->mvals);
    t->mmask = cap - 1;
    char *join = malloc(2 * maxlen + 2);
    if (!t->mkeys || !t->mvals || !join) {
        free(join);
        return loom_error(LOOM_ERR_NOMEM, "%s: out of memory for %zu merges", L->name, m->n);
    }
    memset(t->mkeys, 0xFF, cap * sizeof *t->mkeys);
    loom_status st = LOOM_OK;
    for (size_t i = 0; i < m->n && !st; i++) {
        const loom_json *e = &m->items[i];
        const char *a, *b;
        size_t la, lb;
        if (e->type == LOOM_JSON_STRING) {
            const char *sp = memchr(e->str, ' ', e->len);
            if (!sp || memchr(sp + 1, ' ', e->len - (size_t)(sp + 1 - e->str))) {
                st = jerr(L, e, "model.merges[%zu]: \"%s\" is not \"A B\" (two tokens, one space)", i,
                          loom_tok_shown(sh, sizeof sh, e->str, e->len));
                break;
            }
            a = e->str, la = (size_t)(sp - e->str), b = sp + 1, lb = e->len - la - 1;
        } else if (e->type == LOOM_JSON_ARRAY && e->n == 2 && e->items[0].type == LOOM_JSON_STRING &&
                   e->items[1].type == LOOM_JSON_STRING) {
            a = e->items[0].str, la = e->items[0].len, b = e->items[1].str, lb = e->items[1].len;
        } else {
            st = jerr(L, e, "model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"], got %s", i,
                      e->type == LOOM_JSON_ARRAY ? "another array" : loom_json_type_name(e->type));
            break;
        }
        uint32_t ia = vocab_find(L, a, la, NULL), ib = vocab_find(L, b, lb, NULL), in = NONE;
        if (ia != NONE && ib != NONE && la <= maxlen && lb <= maxlen) {
            memcpy(join, a, la);
            memcpy(join + la, b, lb);
            in = vocab_find(L, join, la + lb, NULL);
        }
        if (ia == NONE || ib == NONE) {
            st = jerr(L, e, "model.merges[%zu]: \"%s\" is not in model.vocab", i,
                      ia == NONE ? loom_tok_shown(sh, sizeof sh, a, la) : loom_tok_shown(sh, sizeof sh, b, lb));
        } else if (in == NONE) {
            st = jerr(L, e, "model.merges[%zu]: \"%s\" + \"%s\": the merged token is not in model.vocab", i,
                      loom_tok_shown(sh, sizeof sh, a, la), loom_tok_shown(sh2, sizeof sh2, b, lb));
        } else {
            uint64_t key = (uint64_t)ia << 32 | ib;
            size_t s = loom_tok_hash64(key) & t->mmask;
            while (t->mkeys[s] != UINT64_MAX && t->mkeys[s] != key) s = (s + 1) & t->mmask;
            t->mkeys[s] = key;
            t->mvals[s] = (uint64_t)i << 32 | in;
        }
    }
    free(join);
    return st;
}

/* added_tokens: each {id, content, special, single_word, lstrip, rstrip, normalized}.
 * tokenizers gives a token its model.vocab id, else the next one after the vocab and
 * the added tokens before it, whatever "id" says; loom requires "id" to be that. */
static loom_status parse_added(const jload *L, const loom_json *root, loom_tokenizer *t, uint32_t *max_id) {
    char sh[48], path[48];
    const loom_json *at = loom_json_get(root, "added_tokens");
    if (!at || at->type == LOOM_JSON_NULL) return LOOM_OK;
    if (at->type != LOOM_JSON_ARRAY) return jerr(L, at, "added_tokens: expected an array");
    size_t total = 0;
    for (size_t i = 0; i < at->n; i++) {
        const loom_json *c = loom_json_get(&at->items[i], "content");
        total += c && c->type == LOOM_JSON_STRING ? c->len : 0;
    }
    t->added = calloc(at->n ? at->n : 1, sizeof *t->added);
    t->added_bytes = malloc(total ? total : 1);
    if (!t->added || !t->added_bytes) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", L->name);
    uint32_t vocab_len = (uint32_t)L->vocab->n, max_added = 0;
    size_t off = 0;
    for (size_t i = 0; i < at->n; i++) {
        const loom_json *e = &at->items[i], *c = loom_json_get(e, "content"), *jid = loom_json_get(e, "id");
        snprintf(path, sizeof path, "added_tokens[%zu]", i);
        uint64_t id;
        int special, single_word, lstrip, rstrip, normalized;
        loom_status st;
        if (e->type != LOOM_JSON_OBJECT) return jerr(L, e, "%s: expected an object", path);
        if (!c || c->type != LOOM_JSON_STRING || c->len == 0)
            return jerr(L, c ? c : e, "%s.content: expected a non-empty string", path);
        loom_tok_shown(sh, sizeof sh, c->str, c->len);
        if (!loom_json_get_u64(jid, &id) || id >= LOOM_TOK_MAX_ID - 1)
            return jerr(L, jid ? jid : e, "%s \"%s\": \"id\" is not an integer below %u", path, sh, LOOM_TOK_MAX_ID - 1);
        if ((st = get_bool(L, e, "special", path, 0, &special)) ||
            (st = get_bool(L, e, "single_word", path, 0, &single_word)) ||
            (st = get_bool(L, e, "lstrip", path, 0, &lstrip)) || (st = get_bool(L, e, "rstrip", path, 0, &rstrip)) ||
            (st = get_bool(L, e, "normalized", path, !special, &normalized)))
            return st;
        if (single_word)
            return jerr(L, loom_json_get(e, "single_word"), "%s \"%s\": single_word true is not supported", path, sh);
        for (size_t k = 0; k < i; k++)
            if (t->added[k].len == c->len && !memcmp(t->added_bytes + t->added[k].off, c->str, c->len))
                return jerr(L, c, "%s: \"%s\" is already added_tokens[%zu]", path, sh, k);
        uint32_t in_vocab = vocab_find(L, c->str, c->len, NULL), want = in_vocab;
        if (want == NONE) want = i == 0 ? vocab_len : (max_added >= vocab_len || vocab_len == 0) ? max_added + 1 : vocab_len;
        if (id != want)
            return jerr(L, jid, "%s \"%s\": id %llu, but tokenizers gives it id %u (%s)", path, sh, (unsigned long long)id,
                        want, in_vocab != NONE ? "its model.vocab id" : "the next free id");
        if (i == 0 || want > max_added) max_added = want;
        if (want > *max_id) *max_id = want;
        memcpy(t->added_bytes + off, c->str, c->len);
        t->added[t->n_added++] = (loom_added_token){.id = want, .off = (uint32_t)off, .len = (uint32_t)c->len,
                                                    .special = (uint8_t)special, .lstrip = (uint8_t)lstrip,
                                                    .rstrip = (uint8_t)rstrip, .normalized = (uint8_t)normalized};
        off += c->len;
    }
    /* an rstrip token's match takes the spaces after it, where tokenizers still looks
     * for tokens (and would overlap them): refused when a token starts with a space */
    for (size_t i = 0; i < t->n_added; i++) {
        if (!t->added[i].rstrip) continue;
        for (size_t k = 0; k < t->n_added; k++) {
            size_t cl;
            const loom_added_token *a = &t->added[k];
            if (loom_pretok_char(t->added_bytes + a->off, a->len, 0, &cl) == LOOM_UC_SPACE)
                return jerr(L, &at->items[i], "added_tokens[%zu]: rstrip with added_tokens[%zu] starting with a space "
                            "is not supported", i, k);
        }
    }
    return LOOM_OK;
}

/* The end-of-text token: the first special added token of this list. */
static const char *const EOT_NAMES[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};

static loom_status find_eot(const jload *L, loom_tokenizer *t) {
    for (size_t k = 0; k < sizeof EOT_NAMES / sizeof *EOT_NAMES; k++) {
        size_t n = strlen(EOT_NAMES[k]);
        for (size_t i = 0; i < t->n_added; i++) {
            const loom_added_token *a = &t->added[i];
            if (a->special && a->len == n && !memcmp(t->added_bytes + a->off, EOT_NAMES[k], n)) {
                t->eot = a->id;
                return LOOM_OK;
            }
        }
    }
    return jerr(L, NULL, "no end-of-text token: none of <|endoftext|>, <|end_of_text|>, </s>, <eos> is a special "
                "added token");
}

/* Token bytes of every id: model.vocab's, then the added tokens' own. `in_map` marks
 * the tokens BPE can make (all characters in the byte alphabet). */
static loom_status build_bytes(const jload *L, loom_tokenizer *t, uint8_t **in_map) {
    char sh[48], sh2[48];
    size_t total = 0;
    for (size_t i = 0; i < L->vocab->n; i++) total += L->vocab->items[i].key_len;
    for (size_t i = 0; i < t->n_added; i++) total += t->added[i].len;
    t->bytes = malloc(total ? total : 1);
    t->off = calloc(t->vocab, sizeof *t->off);
    t->len = calloc(t->vocab, sizeof *t->len);
    *in_map = calloc(t->vocab, 1);
    if (!t->bytes || !t->off || !t->len || !*in_map)
        return loom_error(LOOM_ERR_NOMEM, "%s: out of memory: tokenizer of %u ids", L->name, t->vocab);
    size_t off = 0;
    int ok;
    for (size_t i = 0; i < L->vocab->n; i++) {
        const loom_json *e = &L->vocab->items[i];
        uint32_t id = (uint32_t)e->number;
        size_t n = token_bytes(L, e->key, e->key_len, t->bytes + off, &ok);
        t->off[id] = (uint32_t)off;
        t->len[id] = (uint32_t)n;
        (*in_map)[id] = (uint8_t)ok;
        off += n;
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const loom_added_token *a = &t->added[i];
        const char *c = (const char *)t->added_bytes + a->off;
        if (vocab_find(L, c, a->len, NULL) != NONE) continue; /* the same string */
        if (t->len[a->id]) {
            size_t vi = 0;
            while ((uint32_t)L->vocab->items[vi].number != a->id) vi++;
            return jerr(L, NULL, "added token \"%s\" gets id %u, which model.vocab gives to \"%s\"",
                        loom_tok_shown(sh, sizeof sh, c, a->len), a->id,
                        loom_tok_shown(sh2, sizeof sh2, L->vocab->items[vi].key, L->vocab->items[vi].key_len));
        }
        size_t n = token_bytes(L, c, a->len, t->bytes + off, &ok);
        t->off[a->id] = (uint32_t)off;
        t->len[a->id] = (uint32_t)n;
        off += n;
    }
    return LOOM_OK;
}

/* normalizer, decoder, version: what loom requires of them. */
static loom_status parse_rest(const jload *L, const loom_json *root) {
    char sh[48];
    const loom_json *v = loom_json_get(root, "version");
    if (v && (v->type != LOOM_JSON_STRING || strcmp(v->str, "1.0")))
        return jerr(L, v, "version: expected \"1.0\"");
    const loom_json *nz = loom_json_get(root, "normalizer");
    if (nz && nz->type != LOOM_JSON_NULL) {
        const char *ty = loom_json_str(loom_json_get(nz, "type"));
        return jerr(L, nz, "normalizer: %s%s%s is not supported (loom reads tokenizers without a normalizer)",
                    ty ? "type \"" : "a non-null value", ty ? loom_tok_shown(sh, sizeof sh, ty, strlen(ty)) : "",
                    ty ? "\"" : "");
    }
    const loom_json *d = loom_json_get(root, "decoder");
    const char *ty = loom_json_str(loom_json_get(d, "type"));
    if (!ty || strcmp(ty, "ByteLevel"))
        return jerr(L, d, "decoder: %s%s%s is not supported (loom decodes byte-level BPE: ByteLevel)",
                    ty ? "type \"" : d && d->type != LOOM_JSON_NULL ? "this value" : "none",
                    ty ? loom_tok_shown(sh, sizeof sh, ty, strlen(ty)) : "", ty ? "\"" : "");
    return LOOM_OK;
}

loom_status loom_tokenizer_from_json_mem(const void *buf, size_t len, const char *name, loom_tokenizer **out) {
    *out = NULL;
    if (!name) name = "<tokenizer.json>";
    jload L = {.name = name, .text = buf};
    loom_tok_gpt2_alphabet(L.uc2byte, L.rank_to_byte);
    if (len == 0) return loom_error(LOOM_ERR_FORMAT, "%s: empty file (expected a tokenizer.json object)", name);
    loom_json_error je;
    loom_json_doc *doc = loom_json_parse(buf, len, NULL, &je);
    if (!doc) {
        if (je.status == LOOM_ERR_NOMEM) return loom_error(LOOM_ERR_NOMEM, "%s: %s", name, je.msg);
        return loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: not JSON: %s", name, je.line, je.col, je.msg);
    }
    const loom_json *root = loom_json_root(doc), *model = loom_json_get(root, "model");
    loom_tokenizer *t = calloc(1, sizeof *t);
    uint8_t *in_map = NULL;
    uint32_t max_id = 0;
    loom_status st = LOOM_OK;
    if (!t) st = loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    else if (root->type != LOOM_JSON_OBJECT)
        st = jerr(&L, NULL, "expected a JSON object (a tokenizer.json), got %s", loom_json_type_name(root->type));
    else if (!model)
        st = jerr(&L, NULL, "no \"model\" object: not a tokenizer.json");
    else if (model->type != LOOM_JSON_OBJECT)
        st = jerr(&L, model, "\"model\" is %s, not an object: not a tokenizer.json", loom_json_type_name(model->type));
    if (!st) {
        t->model = LOOM_TOK_HF_BPE;
        st = parse_model_fields(&L, model, t);
    }
    if (!st) st = parse_rest(&L, root);
    if (!st) st = parse_pretok(&L, root, t);
    if (!st) st = parse_vocab(&L, model, &max_id);
    if (!st) st = parse_merges(&L, model, t);
    if (!st) st = parse_added(&L, root, t, &max_id);
    if (!st) {
        t->vocab = max_id + 1;
        st = build_bytes(&L, t, &in_map);
    }
    if (!st) st = find_eot(&L, t);
    if (!st) st = onig_tables(t);
    if (!st) st = loom_tok_finish(t, in_map, name);
    free(in_map);
    free(L.vslots);
    loom_json_free(doc);
    if (st) {
        loom_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LOOM_OK;
}

loom_status loom_tokenizer_load_json(const char *path, loom_tokenizer **out) {
    return loom_tok_load_with(path, out, loom_tokenizer_from_json_mem);
}

loom_status loom_tokenizer_load(const char *path, loom_tokenizer **out) {
    uint8_t *buf;
    size_t len, n = strlen(path), i = 0;
    *out = NULL;
    loom_status st = loom_tok_read_file(path, &buf, &len);
    if (st) return st;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    int json = (n >= 5 && !strcmp(path + n - 5, ".json")) || (i < len && buf[i] == '{');
    st = json ? loom_tokenizer_from_json_mem(buf, len, path, out) : loom_tokenizer_from_tiktoken_mem(buf, len, path, out);
    free(buf);
    return st;
}
