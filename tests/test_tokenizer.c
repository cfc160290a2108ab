/* The GPT-2 tokenizer against its oracles: js-tiktoken's vectors, tinyshakespeare's
 * reference ids, the two loaders against each other, decode(encode(x)) == x, the
 * scanner against PCRE2 (when built with it), both merge algorithms, malformed files;
 * and tokenizer.json files (tests/tokenizer/json_tests.c). `test_tokenizer
 * --tiktoken-cases FILE` also checks cases written by tiktoken itself
 * (tests/tokenizer/tiktoken_cases.py), `--hf-cases DIR` those written by Hugging Face
 * tokenizers (tests/tokenizer/hf_cases.py). Run from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/pretokenize.h"
#include "data/tokenizer_impl.h"
#include "data/tokenizer_internal.h"
#include "io/json.h"
#include "loom/tokenizer.h"

#ifdef LOOM_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include "check.h"

static const char *TIKTOKEN = "data/gpt2/r50k_base.tiktoken";
static const char *ENCODER = "data/gpt2/encoder.json";
static const char *VOCAB = "data/gpt2/vocab.bpe";

/* the whole file, via the library's reader */
static uint8_t *read_all(const char *path, size_t *len) { return (uint8_t *)loom_read_file(path, len); }

/* A small deterministic RNG (splitmix64). */
static uint64_t rng_state = 12345;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rndn(uint32_t n) { return (uint32_t)(rnd() % n); }

static size_t put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | (cp >> 6 & 63)); o[2] = (uint8_t)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | (cp >> 12 & 63));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 63)); o[3] = (uint8_t)(0x80 | (cp & 63));
    return 4;
}

static int encode_eq(const loom_tokenizer *t, const void *s, size_t n, loom_tokenizer_special mode,
                     const uint32_t *want, size_t nwant, const char *what) {
    loom_tokens o = {0};
    loom_status st = loom_tokenizer_encode(t, s, n, mode, &o);
    int ok = st == LOOM_OK && o.len == nwant && (nwant == 0 || memcmp(o.ids, want, nwant * 4) == 0);
    if (!ok && failures < 50) {
        printf("  %s: status %d (%s), got %zu ids:", what, st, st ? loom_error_msg() : "", o.len);
        for (size_t i = 0; i < o.len && i < 40; i++) printf(" %u", o.ids[i]);
        printf("\n  want %zu:", nwant);
        for (size_t i = 0; i < nwant && i < 40; i++) printf(" %u", want[i]);
        printf("\n");
    }
    loom_tokens_free(&o);
    return ok;
}

/* ---- loaders ------------------------------------------------------------------------ */

static void test_loaders_agree(const loom_tokenizer *a, const loom_tokenizer *b) {
    CHECK(loom_tokenizer_vocab_size(a) == 50257 && loom_tokenizer_vocab_size(b) == 50257, "vocab %u %u",
          loom_tokenizer_vocab_size(a), loom_tokenizer_vocab_size(b));
    CHECK(loom_tokenizer_eot(a) == 50256 && loom_tokenizer_eot(b) == 50256, "eot %u %u", loom_tokenizer_eot(a),
          loom_tokenizer_eot(b));
    int same = 1, lookup = 1;
    for (uint32_t id = 0; id < 50257; id++) {
        size_t la, lb;
        const uint8_t *pa = loom_tokenizer_token_bytes(a, id, &la), *pb = loom_tokenizer_token_bytes(b, id, &lb);
        if (!pa || !pb || la != lb || memcmp(pa, pb, la)) same = 0;
        if (id < 50256 && (loom_tokenizer_token_id(a, pa, la) != id || loom_tokenizer_token_id(b, pa, la) != id))
            lookup = 0;
    }
    CHECK(same, "the two loaders give different token bytes");
    CHECK(lookup, "token_id(token_bytes(id)) != id");
    size_t l;
    const uint8_t *p = loom_tokenizer_token_bytes(a, 50256, &l);
    CHECK(p && l == 13 && !memcmp(p, "<|endoftext|>", 13), "special token bytes");
    CHECK(loom_tokenizer_token_id(a, "<|endoftext|>", 13) == -1, "the special text must not be a rank");
    CHECK(loom_tokenizer_token_bytes(a, 50257, &l) == NULL && l == 0, "id out of range");
    CHECK(loom_tokenizer_token_id(a, " the", 4) == 262 && loom_tokenizer_token_id(a, "!", 1) == 0, "known ids");
}

/* ---- js-tiktoken's vectors ------------------------------------------------------------ */

static int json_ids(const loom_json *arr, uint32_t *ids, size_t cap, size_t *n) {
    *n = 0;
    for (size_t i = 0; i < loom_json_len(arr) && i < cap; i++) {
        uint64_t v;
        if (!loom_json_get_u64(loom_json_at(arr, i), &v)) return 0;
        ids[(*n)++] = (uint32_t)v;
    }
    return 1;
}

static void test_vectors(const loom_tokenizer *t, const char *name) {
    size_t len;
    uint8_t *buf = read_all("tests/fixtures/gpt2_test_vectors.json", &len);
    CHECK(buf, "cannot read tests/fixtures/gpt2_test_vectors.json");
    if (!buf) return;
    loom_json_doc *doc = loom_json_parse(buf, len, NULL, NULL);
    const loom_json *vs = loom_json_get(loom_json_root(doc), "vectors");
    CHECK(vs && loom_json_len(vs) == 31, "31 vectors");
    uint32_t want[256];
    size_t nwant;
    for (size_t i = 0; i < loom_json_len(vs); i++) {
        const loom_json *v = loom_json_at(vs, i), *text = loom_json_get(v, "text");
        const loom_json *ids = loom_json_get(v, "ids"), *ida = loom_json_get(v, "ids_allow_special");
        char what[160];
        snprintf(what, sizeof what, "%s vector %zu '%.60s'", name, i, text->str);
        if (ids->type == LOOM_JSON_NULL) {
            loom_tokens o = {0};
            loom_status st = loom_tokenizer_encode(t, text->str, text->len, LOOM_TOKENIZER_SPECIAL_REFUSE, &o);
            CHECK(st == LOOM_ERR_ARG && o.len == 0 && strstr(loom_error_msg(), "<|endoftext|>"),
                  "%s: strict mode must refuse it (status %d, '%s')", what, st, loom_error_msg());
            loom_tokens_free(&o);
        } else {
            CHECK(json_ids(ids, want, 256, &nwant), "%s: ids", what);
            CHECK(encode_eq(t, text->str, text->len, LOOM_TOKENIZER_SPECIAL_REFUSE, want, nwant, what), "%s (strict)",
                  what);
            CHECK(encode_eq(t, text->str, text->len, LOOM_TOKENIZER_SPECIAL_ORDINARY, want, nwant, what),
                  "%s (ordinary)", what);
        }
        CHECK(json_ids(ida, want, 256, &nwant), "%s: ids_allow_special", what);
        CHECK(encode_eq(t, text->str, text->len, LOOM_TOKENIZER_SPECIAL_ALLOW, want, nwant, what), "%s (allow)", what);
        loom_bytes d = {0};
        CHECK(!loom_tokenizer_decode(t, want, nwant, &d) && d.len == text->len &&
                  (d.len == 0 || !memcmp(d.data, text->str, d.len)),
              "%s: decode", what);
        loom_bytes_free(&d);
    }
    loom_json_free(doc);
    free(buf);
}

/* ---- tinyshakespeare ------------------------------------------------------------------ */

static void test_shakespeare(const loom_tokenizer *t, const char *name) {
    size_t tl, ul;
    uint8_t *text = read_all("data/tinyshakespeare.txt", &tl), *ref = read_all("data/tinyshakespeare.gpt2.u16", &ul);
    CHECK(text && ref && ul == 2 * 338025, "cannot read tinyshakespeare files");
    if (text && ref) {
        loom_tokens o = {0};
        CHECK(!loom_tokenizer_encode(t, text, tl, LOOM_TOKENIZER_SPECIAL_REFUSE, &o), "%s: %s", name, loom_error_msg());
        size_t bad = SIZE_MAX;
        for (size_t i = 0; i < o.len && i < ul / 2 && bad == SIZE_MAX; i++)
            if (o.ids[i] != (uint32_t)(ref[2 * i] | ref[2 * i + 1] << 8)) bad = i;
        CHECK(o.len == ul / 2 && bad == SIZE_MAX, "%s: tinyshakespeare: %zu ids (want %zu), first difference at %lld",
              name, o.len, ul / 2, bad == SIZE_MAX ? -1LL : (long long)bad);
        for (int th = 2; th <= 3; th++) {
            loom_tokens p = {0};
            CHECK(!loom_tokenizer_encode_parallel(t, text, tl, LOOM_TOKENIZER_SPECIAL_REFUSE, th, &p) && p.len == o.len &&
                      !memcmp(p.ids, o.ids, o.len * 4),
                  "%s: parallel encode with %d threads differs", name, th);
            loom_tokens_free(&p);
        }
        loom_bytes d = {0};
        CHECK(!loom_tokenizer_decode(t, o.ids, o.len, &d) && d.len == tl && !memcmp(d.data, text, tl),
              "%s: decode(encode(tinyshakespeare))", name);
        loom_bytes_free(&d);
        loom_tokens_free(&o);
    }
    free(text);
    free(ref);
}

/* ---- special tokens, invalid UTF-8, round trips -------------------------------------- */

static void test_special_and_invalid(const loom_tokenizer *t) {
    const char *s = "a<|endoftext|> b<|endoftext|><|endoftext|>";
    uint32_t allow[] = {64, 50256, 275, 50256, 50256};
    CHECK(encode_eq(t, s, strlen(s), LOOM_TOKENIZER_SPECIAL_ALLOW, allow, 5, "allow"), "specials allowed");
    loom_tokens o = {0};
    o.len = 0;
    CHECK(loom_tokenizer_encode(t, s, strlen(s), LOOM_TOKENIZER_SPECIAL_REFUSE, &o) == LOOM_ERR_ARG &&
              strstr(loom_error_msg(), "at byte 1"),
          "refuse names the offset: %s", loom_error_msg());
    CHECK(loom_tokenizer_encode_parallel(t, s, strlen(s), LOOM_TOKENIZER_SPECIAL_REFUSE, 2, &o) == LOOM_ERR_ARG,
          "parallel refuses too");
    CHECK(!loom_tokenizer_encode(t, s, strlen(s), LOOM_TOKENIZER_SPECIAL_ORDINARY, &o), "ordinary");
    int has_eot = 0;
    for (size_t i = 0; i < o.len; i++) has_eot |= o.ids[i] == 50256;
    CHECK(!has_eot && o.len > 5, "ordinary mode must not give the special id");
    loom_tokens_free(&o);
    CHECK(loom_tokenizer_encode(t, "x", 1, (loom_tokenizer_special)7, &o) == LOOM_ERR_ARG, "bad mode");
    /* a partial literal is text */
    uint32_t part[] = {27, 91, 437, 1659, 5239, 91};
    CHECK(encode_eq(t, "<|endoftext|", 12, LOOM_TOKENIZER_SPECIAL_REFUSE, part, 6, "partial"), "partial literal");

    /* invalid UTF-8: each invalid byte is its own single-byte token; valid runs around it
     * encode as they would alone ("a" = 64, "b" = 65, " b" = 275) */
    uint32_t ff = (uint32_t)loom_tokenizer_token_id(t, "\xff", 1), e2 = (uint32_t)loom_tokenizer_token_id(t, "\xe2", 1),
             x82 = (uint32_t)loom_tokenizer_token_id(t, "\x82", 1);
    uint32_t w1[] = {64, ff, 65};
    CHECK(encode_eq(t, "a\xff" "b", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, w1, 3, "a ff b"), "invalid byte");
    uint32_t w2[] = {e2, x82};
    CHECK(encode_eq(t, "\xe2\x82", 2, LOOM_TOKENIZER_SPECIAL_REFUSE, w2, 2, "truncated"), "truncated sequence");
    uint32_t w3[] = {220, ff, 275}; /* " " before an invalid byte is a whole \s+ match */
    CHECK(encode_eq(t, " \xff b", 4, LOOM_TOKENIZER_SPECIAL_REFUSE, w3, 3, "space ff"), "space before invalid");
    uint32_t ed = (uint32_t)loom_tokenizer_token_id(t, "\xed", 1), a0 = (uint32_t)loom_tokenizer_token_id(t, "\xa0", 1),
             x80 = (uint32_t)loom_tokenizer_token_id(t, "\x80", 1);
    uint32_t w4[] = {ed, a0, x80};
    CHECK(encode_eq(t, "\xed\xa0\x80", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, w4, 3, "surrogate"), "encoded surrogate");
    CHECK(encode_eq(t, "", 0, LOOM_TOKENIZER_SPECIAL_REFUSE, NULL, 0, "empty"), "empty text");
    CHECK(encode_eq(t, NULL, 0, LOOM_TOKENIZER_SPECIAL_ALLOW, NULL, 0, "NULL"), "NULL text of length 0");

    /* decode errors */
    loom_bytes d = {0};
    uint32_t bad[] = {1, 2, 50257};
    CHECK(loom_tokenizer_decode(t, bad, 3, &d) == LOOM_ERR_ARG && d.len == 0 && strstr(loom_error_msg(), "position 2"),
          "decode of a bad id: %s", loom_error_msg());
    loom_bytes_free(&d);
}

static size_t random_text(uint8_t *buf, size_t cap, int valid_only);

static void test_round_trips(const loom_tokenizer *t) {
    enum { N = 3000 };
    uint8_t buf[2048];
    int ok = 1, okp = 1;
    for (int it = 0; it < N; it++) {
        size_t n;
        if (it % 3 == 0) { /* raw random bytes */
            n = rndn(200);
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        } else {
            n = random_text(buf, 1500, it % 3 == 1);
        }
        for (int mode = 0; mode < 3; mode++) {
            loom_tokens o = {0};
            loom_bytes d = {0};
            loom_status st = loom_tokenizer_encode(t, buf, n, (loom_tokenizer_special)mode, &o);
            if (st == LOOM_ERR_ARG && mode == 0) continue; /* contains the literal */
            if (st || loom_tokenizer_decode(t, o.ids, o.len, &d) || d.len != n || (n && memcmp(d.data, buf, n))) {
                if (ok) printf("  round trip failed at iteration %d mode %d (%zu bytes)\n", it, mode, n);
                ok = 0;
            }
            for (size_t i = 0; i < o.len; i++)
                if (o.ids[i] >= 50257 || (mode != 2 && o.ids[i] == 50256)) ok = 0;
            loom_tokens_free(&o);
            loom_bytes_free(&d);
        }
    }
    CHECK(ok, "decode(encode(x)) == x for random bytes and random UTF-8");
    /* parallel == serial on a long random mixed text with many newlines */
    size_t cap = 1 << 19, n = 0;
    uint8_t *big = malloc(cap);
    while (n + 2048 < cap) {
        n += random_text(big + n, 1500, 0);
        big[n++] = rndn(2) ? 'x' : '.';
        big[n++] = '\n';
    }
    loom_tokens a = {0}, b = {0};
    CHECK(!loom_tokenizer_encode(t, big, n, LOOM_TOKENIZER_SPECIAL_ALLOW, &a), "big");
    for (int th = 2; th <= 4; th++) {
        b.len = 0;
        if (loom_tokenizer_encode_parallel(t, big, n, LOOM_TOKENIZER_SPECIAL_ALLOW, th, &b) || b.len != a.len ||
            memcmp(a.ids, b.ids, a.len * 4))
            okp = 0;
    }
    CHECK(okp, "parallel encode of random mixed text differs from serial");
    /* the same text encoded line by line (each part < 16 KB: no piece cache) */
    b.len = 0;
    size_t longest = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && !(j > i && big[j] == '\n' && big[j - 1] > 0x20 && big[j - 1] < 0x7F)) j++;
        if (j - i > longest) longest = j - i;
        if (loom_tokenizer_encode(t, big + i, j - i, LOOM_TOKENIZER_SPECIAL_ALLOW, &b)) okp = 0;
        i = j;
    }
    CHECK(longest < (1 << 14) && okp, "line-by-line encode: longest part %zu", longest);
    CHECK(b.len == a.len && !memcmp(a.ids, b.ids, a.len * 4), "cached (whole) and uncached (by line) encodes differ");
    loom_bytes d = {0};
    CHECK(!loom_tokenizer_decode(t, a.ids, a.len, &d) && d.len == n && !memcmp(d.data, big, n),
          "decode(encode(x)) == x for a long random text");
    loom_bytes_free(&d);
    loom_tokens_free(&a);
    loom_tokens_free(&b);
    free(big);
}

/* Both merge algorithms agree, on random pieces and long real ones. */
static void test_merge_algorithms(const loom_tokenizer *t) {
    size_t tl;
    uint8_t *text = read_all("data/tinyshakespeare.txt", &tl);
    uint32_t *a = malloc(5000 * 4), *b = malloc(5000 * 4);
    uint8_t piece[5000];
    int ok = 1;
    size_t saved = loom_tokenizer_heap_threshold;
    for (int it = 0; it < 3000 && text; it++) {
        size_t n = 1 + (it < 2500 ? rndn(40) : rndn(4999));
        if (it % 2) { /* letters of real text, spaces and newlines dropped: long runs of real merges */
            size_t at = rndn((uint32_t)(tl - 20000)), k = 0;
            while (k < n) {
                uint8_t c = text[at++];
                if (c != ' ' && c != '\n') piece[k++] = c;
            }
        } else {
            const char *alpha = "aab  eeth";
            for (size_t k = 0; k < n; k++) piece[k] = rndn(4) ? (uint8_t)alpha[rndn(9)] : (uint8_t)rnd();
        }
        loom_tokenizer_heap_threshold = 0;
        size_t ka = loom_tokenizer_bpe(t, piece, n, a);
        loom_tokenizer_heap_threshold = SIZE_MAX;
        size_t kb = loom_tokenizer_bpe(t, piece, n, b);
        if (ka != kb || memcmp(a, b, ka * 4)) {
            if (ok) printf("  heap and scan merges differ on a piece of %zu bytes\n", n);
            ok = 0;
        }
        loom_bytes d = {0};
        if (loom_tokenizer_decode(t, a, ka, &d) || d.len != n || memcmp(d.data, piece, n)) ok = 0;
        loom_bytes_free(&d);
    }
    loom_tokenizer_heap_threshold = saved;
    CHECK(ok, "heap and scan byte-pair merges agree");
    /* a pathological input: one piece of 200000 letters, and 100000 spaces */
    size_t big = 200000;
    uint8_t *s = malloc(big);
    for (size_t i = 0; i < big; i++) s[i] = (uint8_t)"ab"[rndn(2)];
    loom_tokens o = {0};
    CHECK(!loom_tokenizer_encode(t, s, big, LOOM_TOKENIZER_SPECIAL_REFUSE, &o) && o.len > 0 && o.len < big,
          "one long piece");
    memset(s, ' ', 100000);
    o.len = 0;
    CHECK(!loom_tokenizer_encode(t, s, 100000, LOOM_TOKENIZER_SPECIAL_REFUSE, &o) && o.len > 0, "long space run");
    loom_tokens_free(&o);
    free(s);
    free(a);
    free(b);
    free(text);
}

/* ---- random text: atoms that stress the pattern --------------------------------------- */

static const uint32_t SPACES[] = {9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
                                  0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029,
                                  0x202F, 0x205F, 0x3000};
static const uint32_t NOT_SPACES[] = {0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0};
static const uint32_t LETTERS[] = {'a', 'Z', 0xE9, 0xDF, 0x3B1, 0x416, 0x5D0, 0x627, 0x905, 0xE01, 0x3042, 0x30AB,
                                   0x4E00, 0xAC00, 0x1C89, 0x2EBF0, 0x10D50, 0x1D400, 0x2B0, 0x1E9E, 0x01C5};
static const uint32_t NUMBERS[] = {'0', '7', 0xB2, 0xBD, 0x660, 0x669, 0x966, 0xFF11, 0x216B, 0x2460, 0x3007,
                                   0x10D40, 0x1D7CE, 0x1F100, 0xF1C, 0x2189};
static const uint32_t OTHERS[] = {'!', '.', ',', '-', '"', '\'', '<', '|', 0x301, 0x308, 0x20DD, 0x2019, 0x1F600,
                                  0x1F3FD, 0xFE0F, 0xE000, 0x378, 0x10FFFF, 0xFFFD, 0x7F, 0x1, 0x2014, 0x323B0};
static const char *ASCII_BITS[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'x", "''", "'", " '", "don't",
                                   " the", "  ", "   ", "\n", "\r\n", "\t", " \n ", "123", " 45", "a1", "1a",
                                   "<|endoftext|>", "<|endoftext", "|>", "?!", " .", "ll", "re"};
static const char *INVALID[] = {"\x80", "\xbf", "\xc0\xaf", "\xc1", "\xe2\x82", "\xed\xa0\x80", "\xe0\x80\x80",
                                "\xf4\x90\x80\x80", "\xf5", "\xff", "\xf0\x9f\x98", "\xfe"};

/* Code points that random text avoids (set by the PCRE2 test: classes that differ
 * between PCRE2's older Unicode and loom's tables). */
static uint8_t *avoid_cp;

static uint32_t random_cp(void) {
    for (;;) {
        uint32_t cp;
        switch (rndn(4)) {
        case 0: cp = rndn(0x80); break;
        case 1: cp = rndn(0x800); break;
        case 2: cp = rndn(0x10000); break;
        default: cp = rndn(0x110000); break;
        }
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (avoid_cp && avoid_cp[cp])) continue;
        return cp;
    }
}

/* Appends random atoms to buf (up to cap bytes; cap >= 64); valid_only leaves out
 * invalid UTF-8. Returns the length. */
static size_t random_text(uint8_t *buf, size_t cap, int valid_only) {
    size_t n = 0, want = rndn((uint32_t)cap - 16);
    while (n + 16 < cap && n < want) {
        uint32_t cp = 0;
        switch (rndn(valid_only ? 9 : 10)) {
        case 0: cp = SPACES[rndn(sizeof SPACES / 4)]; break;
        case 1: cp = NOT_SPACES[rndn(sizeof NOT_SPACES / 4)]; break;
        case 2: cp = LETTERS[rndn(sizeof LETTERS / 4)]; break;
        case 3: cp = NUMBERS[rndn(sizeof NUMBERS / 4)]; break;
        case 4: cp = OTHERS[rndn(sizeof OTHERS / 4)]; break;
        case 5: cp = random_cp(); break;
        case 6: cp = rndn(2) ? ' ' : 'a' + rndn(26); break;
        case 7: cp = "aeiou tns'\n"[rndn(11)]; break;
        case 8: {
            const char *b = ASCII_BITS[rndn(sizeof ASCII_BITS / sizeof *ASCII_BITS)];
            memcpy(buf + n, b, strlen(b));
            n += strlen(b);
            continue;
        }
        default: {
            const char *b = INVALID[rndn(sizeof INVALID / sizeof *INVALID)];
            memcpy(buf + n, b, strlen(b));
            n += strlen(b);
            continue;
        }
        }
        if (avoid_cp && avoid_cp[cp]) continue;
        n += put_utf8(buf + n, cp);
    }
    return n;
}

/* ---- the scanner against PCRE2 --------------------------------------------------------- */

#ifdef LOOM_HAVE_PCRE2
#define WS "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
/* GPT-2's pattern with \s spelled as White_Space (PCRE2's \s would add U+180E). */
static const char *PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{L}\\p{N}" WS "]+|[" WS "]+(?![^" WS
                             "])|[" WS "]+";

static pcre2_code *compile(const char *pat, uint32_t extra) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | extra, &err, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        printf("pcre2_compile failed at %zu: %s\n", (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
    return c;
}

/* Every code point's class per PCRE2 against loom's tables. Where they differ, PCRE2
 * (older Unicode) must call it unassigned; those code points go to avoid_cp. */
static void test_tables_vs_pcre2(void) {
    pcre2_code *cls = compile("(\\p{L})|(\\p{N})|([" WS "])|(\\p{Cn})", PCRE2_ANCHORED);
    CHECK(cls, "compile");
    if (!cls) return;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(cls, NULL);
    avoid_cp = calloc(0x110000, 1);
    size_t differ = 0, unexplained = 0;
    uint32_t first_bad = 0;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        uint8_t u[4];
        size_t n = put_utf8(u, cp);
        int rc = pcre2_match(cls, u, n, 0, 0, md, NULL);
        int pc = LOOM_UC_OTHER, cn = 0;
        if (rc >= 2) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int g = 1;
            while (g < rc && ov[2 * g] == PCRE2_UNSET) g++;
            pc = g == 1 ? LOOM_UC_LETTER : g == 2 ? LOOM_UC_NUMBER : g == 3 ? LOOM_UC_SPACE : LOOM_UC_OTHER;
            cn = g == 4;
        }
        if (pc != loom_uc_class(cp)) {
            differ++;
            avoid_cp[cp] = 1;
            if (!cn && !unexplained++) first_bad = cp;
        }
    }
    char uv[32] = "";
    pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, uv);
    printf("test_tokenizer: tables (Unicode %s) vs PCRE2 (Unicode %s): %zu code points differ, all unassigned in "
           "PCRE2's version: %s\n",
           loom_uc_version, uv, differ, unexplained ? "no" : "yes");
    CHECK(!unexplained, "%zu code points differ from PCRE2 although PCRE2 assigns them, first U+%04X", unexplained,
          first_bad);
    pcre2_match_data_free(md);
    pcre2_code_free(cls);
}

/* The scanner's pieces equal PCRE2's matches; bytes PCRE2 skips are invalid pieces. */
static int same_pieces(pcre2_code *re, pcre2_match_data *md, const uint8_t *s, size_t n) {
    size_t pos = 0, mine = 0;
    while (pos < n) {
        int rc = pcre2_match(re, s, n, pos, 0, md, NULL);
        size_t ms = n, me = n;
        if (rc > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        }
        for (; pos < ms; pos++) { /* skipped bytes: one invalid piece each */
            int inv;
            size_t j = loom_pretok_next(s, n, mine, &inv);
            if (mine != pos || j != pos + 1 || !inv) return 0;
            mine = j;
        }
        if (ms == n) break;
        int inv;
        size_t j = loom_pretok_next(s, n, mine, &inv);
        if (mine != ms || j != me || inv) return 0;
        mine = pos = me;
    }
    return mine == n;
}

static void dump(const char *what, const uint8_t *s, size_t n) {
    printf("  %s (%zu bytes):", what, n);
    for (size_t i = 0; i < n && i < 120; i++) printf(" %02x", s[i]);
    printf("\n");
}

static void test_scanner_vs_pcre2(void) {
    pcre2_code *re = compile(PATTERN, 0);
    CHECK(re, "compile the pattern");
    if (!re) return;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    uint8_t buf[4096];
    size_t bad = 0, total = 0, count = 60000;
    for (size_t it = 0; it < count; it++) {
        size_t n = random_text(buf, it % 10 ? 200 : 4000, it % 2);
        total += n;
        if (!same_pieces(re, md, buf, n) && !bad++) dump("scanner != PCRE2", buf, n);
    }
    /* every assigned code point in a few contexts: alone, after a space, in a run, before "'s" */
    for (uint32_t base = 0; base < 0x110000; base += 64) {
        size_t n = 0;
        for (uint32_t cp = base; cp < base + 64; cp++) {
            if ((cp >= 0xD800 && cp <= 0xDFFF) || avoid_cp[cp]) continue;
            uint8_t u[4];
            size_t k = put_utf8(u, cp);
            buf[n++] = ' ';
            memcpy(buf + n, u, k), n += k;
            memcpy(buf + n, u, k), n += k;
            memcpy(buf + n, "'s", 2), n += 2;
            memcpy(buf + n, u, k), n += k;
            buf[n++] = '1';
        }
        total += n;
        if (!same_pieces(re, md, buf, n) && !bad++) dump("scanner != PCRE2 (code point sweep)", buf, n);
    }
    printf("test_tokenizer: scanner vs PCRE2 on %zu random texts + all code points (%zu bytes): %zu differ\n", count,
           total, bad);
    CHECK(bad == 0, "%zu texts split differently from PCRE2", bad);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}
#endif

/* ---- malformed tokenizer files ---------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A small valid rank file: 256 single bytes (rank = byte value), then "ab" = 256. */
static char *small_tiktoken(size_t *len) {
    char *s = malloc(256 * 16 + 64);
    size_t n = 0;
    for (int b = 0; b < 256; b++)
        n += (size_t)sprintf(s + n, "%c%c== %d\n", B64[b >> 2], B64[(b & 3) << 4], b);
    n += (size_t)sprintf(s + n, "YWI= 256\n");
    *len = n;
    return s;
}

static void expect_error(loom_status st, loom_tokenizer *t, const char *what, const char *needle1,
                         const char *needle2) {
    const char *m = loom_error_msg();
    CHECK(st == LOOM_ERR_FORMAT && !t && strstr(m, needle1) && (!needle2 || strstr(m, needle2)),
          "%s: status %d, message '%s' (want '%s'%s%s)", what, st, m, needle1, needle2 ? " and " : "",
          needle2 ? needle2 : "");
    loom_tokenizer_free(t);
}

static void test_malformed_tiktoken(void) {
    size_t n;
    char *good = small_tiktoken(&n);
    loom_tokenizer *t = NULL;
    CHECK(!loom_tokenizer_from_tiktoken_mem(good, n, "t.tiktoken", &t) && t && loom_tokenizer_eot(t) == 257,
          "small valid file: %s", loom_error_msg());
    uint32_t want[] = {256, 99};
    if (t) CHECK(encode_eq(t, "abc", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, want, 2, "small"), "small file encodes");
    loom_tokenizer_free(t);

    struct { const char *text, *n1, *n2; } cases[] = {
        {"", "t.tiktoken: empty file", NULL},
        {"\n\n", "t.tiktoken: no tokens", NULL},
        {"IQ=! 0\n", "t.tiktoken:1: bad base64", NULL},
        {"IQ== 0\nI$== 1\n", "t.tiktoken:2: bad base64", NULL},
        {"IQ==\n", "t.tiktoken:1: missing rank", NULL},
        {"IQ== \n", "t.tiktoken:1: missing rank", NULL},
        {"IQ== 0\nIg== x1\n", "t.tiktoken:2: bad rank", NULL},
        {"IQ== 0\nIg== 99999999999\n", "t.tiktoken:2: bad rank", NULL},
        {"IQ== 0\nIg== -1\n", "t.tiktoken:2: bad rank", NULL},
        {"IQ== 0\n\nIg== 0\n", "t.tiktoken:3: rank 0 was already given at line 1", NULL},
        {"IQ== 0\nIQ== 1\n", "t.tiktoken:2: token 'IQ==' was already given at line 1", NULL},
        {" 0\n", "t.tiktoken:1: bad base64", NULL},
        {"IQ== 0\n", "no token for the single byte 0x00", NULL},
        {"\xff\xfe 1\n", "t.tiktoken:1: bad base64", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        t = NULL;
        loom_status st = loom_tokenizer_from_tiktoken_mem(cases[i].text, strlen(cases[i].text), "t.tiktoken", &t);
        expect_error(st, t, cases[i].text, cases[i].n1, cases[i].n2);
    }
    /* the valid file with one line broken at a time */
    char *bad = malloc(n + 64);
    memcpy(bad, good, n);
    memcpy(bad + 7 * 10, "@", 1); /* line 11's first base64 char (lines 1-10 have 7 bytes) */
    t = NULL;
    expect_error(loom_tokenizer_from_tiktoken_mem(bad, n, "t.tiktoken", &t), t, "bad char", "t.tiktoken:11: bad base64",
                 NULL);
    memcpy(bad, good, n);
    memcpy(bad + n, "YWI= 257\n", 9); /* "ab" again */
    t = NULL;
    expect_error(loom_tokenizer_from_tiktoken_mem(bad, n + 9, "t.tiktoken", &t), t, "dup token",
                 "t.tiktoken:258: token 'YWI=' was already given at line 257", NULL);
    memcpy(bad + n, "YWJj 257", 8); /* valid last line without newline: accepted */
    t = NULL;
    CHECK(!loom_tokenizer_from_tiktoken_mem(bad, n + 8, "t.tiktoken", &t) && loom_tokenizer_eot(t) == 258,
          "last line without newline: %s", loom_error_msg());
    loom_tokenizer_free(t);
    t = NULL;
    CHECK(!loom_tokenizer_from_tiktoken_mem(bad, n - 9, "t.tiktoken", &t), "truncated at a line end is a smaller vocab");
    loom_tokenizer_free(t);
    t = NULL;
    expect_error(loom_tokenizer_from_tiktoken_mem(bad, n - 5, "t.tiktoken", &t), t, "truncated in a line",
                 "t.tiktoken:257: missing rank", NULL);
    memcpy(bad, good, n);
    memcpy(bad + n, "Yw== 258", 8); /* "c" again... as a different rank */
    t = NULL;
    expect_error(loom_tokenizer_from_tiktoken_mem(bad, n + 8, "t.tiktoken", &t), t, "dup single",
                 "t.tiktoken:258: token 'Yw==' was already given at line 100", NULL);
    free(bad);
    free(good);

    t = NULL;
    loom_status st = loom_tokenizer_load_tiktoken("/nonexistent/r50k.tiktoken", &t);
    CHECK(st == LOOM_ERR_IO && !t && strstr(loom_error_msg(), "/nonexistent/r50k.tiktoken"), "missing file: %s",
          loom_error_msg());
    /* truncating the real file at every 997th byte: an error or a smaller vocab, never a crash */
    size_t rl;
    uint8_t *real = read_all(TIKTOKEN, &rl);
    int ok = real != NULL;
    for (size_t cut = 0; real && cut < rl; cut += 997 * 7) {
        t = NULL;
        st = loom_tokenizer_from_tiktoken_mem(real, cut, "r50k", &t);
        if (st && (t || !strstr(loom_error_msg(), "r50k"))) ok = 0;
        loom_tokenizer_free(t);
    }
    CHECK(ok, "truncated copies of r50k_base.tiktoken");
    free(real);
}

static void test_malformed_gpt2(void) {
    size_t el, bl;
    uint8_t *enc = read_all(ENCODER, &el), *bpe = read_all(VOCAB, &bl);
    CHECK(enc && bpe, "read the GPT-2 files");
    if (!enc || !bpe) return;
    loom_tokenizer *t = NULL;
#define GPT2(e, elen, b, blen) loom_tokenizer_from_gpt2_mem(e, elen, "encoder.json", b, blen, "vocab.bpe", &t)
    t = NULL;
    expect_error(GPT2("not json", 8, bpe, bl), t, "non-JSON", "encoder.json:1:1: not JSON", NULL);
    t = NULL;
    expect_error(GPT2(enc, el / 2, bpe, bl), t, "truncated JSON", "encoder.json:1:", "not JSON");
    t = NULL;
    expect_error(GPT2("[1, 2]", 6, bpe, bl), t, "JSON array", "encoder.json: expected a JSON object", NULL);
    t = NULL;
    expect_error(GPT2("", 0, bpe, bl), t, "empty encoder", "encoder.json: empty file", NULL);
    t = NULL;
    expect_error(GPT2(enc, el, "", 0), t, "empty vocab", "vocab.bpe: empty file", NULL);
    t = NULL;
    expect_error(GPT2(enc, el, "Ġ t\n", 4), t, "no header", "vocab.bpe:1: expected the '#version", NULL);
    /* truncated vocab.bpe at a line end: encoder.json then has tokens it does not make */
    const uint8_t *cut = bpe + bl / 2;
    while (*cut != '\n') cut++;
    t = NULL;
    expect_error(GPT2(enc, el, bpe, (size_t)(cut + 1 - bpe)), t, "truncated vocab.bpe", "encoder.json:1:",
                 "is not made by vocab.bpe");
    /* ... and in the middle of a line (after the space of "A B") */
    const uint8_t *sp = memchr(cut + 1, ' ', 100);
    t = NULL;
    expect_error(GPT2(enc, el, bpe, (size_t)(sp + 1 - bpe)), t, "vocab.bpe cut after a space", "vocab.bpe:",
                 "expected a merge 'A B'");
    /* a merge line with one token, an unknown part, a character outside the alphabet */
    const char *bpe_cases[][2] = {
        {"#version: 0.2\nĠ t\nĠt\n", "vocab.bpe:3: expected a merge 'A B'"},
        {"#version: 0.2\nĠ t\nĠ  t\n", "vocab.bpe:3: expected a merge 'A B'"},
        {"#version: 0.2\nĠ t\nĠth e\n", "vocab.bpe:3: 'Ġth' is not a token made by an earlier line"},
        {"#version: 0.2\nĠ t\nĠ ő\n", "vocab.bpe:3:4: the merge has U+0151"},
        {"#version: 0.2\nĠ t\nĠ\xff t\n", "vocab.bpe:3:1: the merge is not valid UTF-8"},
        {"#version: 0.2\nĠ t\nĠ t\n", "vocab.bpe:3: merge 'Ġ t' repeats the token of line 2"},
        {"#version: 0.2\n\n", "vocab.bpe:2: expected a merge 'A B'"},
    };
    for (size_t i = 0; i < sizeof bpe_cases / sizeof *bpe_cases; i++) {
        t = NULL;
        expect_error(GPT2(enc, el, bpe_cases[i][0], strlen(bpe_cases[i][0])), t, bpe_cases[i][0], bpe_cases[i][1],
                     NULL);
    }
    /* encoder.json for a tiny vocab.bpe: 256 bytes + "Ġt"; build it, then break it */
    const char *tiny_bpe = "#version: 0.2\nĠ t\n";
    loom_json_buf j = {0};
    loom_json_buf_puts(&j, "{");
    /* the real encoder.json's first 256 entries are the single bytes in rank order */
    loom_json_doc *doc = loom_json_parse(enc, el, NULL, NULL);
    const loom_json *root = loom_json_root(doc);
    for (size_t i = 0; i < 256; i++) {
        const loom_json *v = loom_json_at(root, i);
        loom_json_escape(&j, v->key, v->key_len);
        loom_json_buf_printf(&j, ": %s,\n", v->str);
    }
    size_t base = j.len;
    loom_json_buf_puts(&j, "\"Ġt\": 256, \"<|endoftext|>\": 257}");
    t = NULL;
    CHECK(!GPT2(j.data, j.len, tiny_bpe, strlen(tiny_bpe)) && t && loom_tokenizer_eot(t) == 257, "tiny gpt2 files: %s",
          loom_error_msg());
    uint32_t want[] = {256, 71};
    if (t) CHECK(encode_eq(t, " th", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, want, 2, "tiny"), "tiny gpt2 encodes");
    loom_tokenizer_free(t);
    const char *tails[][2] = {
        {"\"Ġt\": 255, \"<|endoftext|>\": 257}", "encoder.json:257:8: token \"Ġt\" has id 255, but vocab.bpe gives it rank 256"},
        {"\"Ġt\": 256}", "encoder.json: no \"<|endoftext|>\" entry"},
        {"\"Ġt\": 256, \"<|endoftext|>\": 256}", "has id 256, the rank of a token"},
        {"\"<|endoftext|>\": 257}", "no entry for rank 256 (vocab.bpe line 2)"},
        {"\"Ġt\": 256, \"Ġt\": 256, \"<|endoftext|>\": 257}", "token \"Ġt\" is listed twice"},
        {"\"Ġt\": \"256\", \"<|endoftext|>\": 257}", "the id of \"Ġt\" is not an integer"},
        {"\"Ġt\": 256.5, \"<|endoftext|>\": 257}", "the id of \"Ġt\" is not an integer"},
        {"\"Ġx\": 256, \"<|endoftext|>\": 257}", "token \"Ġx\" (id 256) is not made by vocab.bpe"},
        {"\"ő\": 256, \"<|endoftext|>\": 257}", "has U+0151, which is not in GPT-2's byte alphabet"},
        {"\"Ġt\": 256, \"<|endoftext|>\": 257", "not JSON"},
    };
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        j.len = base;
        loom_json_buf_puts(&j, tails[i][0]);
        t = NULL;
        expect_error(GPT2(j.data, j.len, tiny_bpe, strlen(tiny_bpe)), t, tails[i][0], tails[i][1], NULL);
    }
    loom_json_buf_free(&j);
    loom_json_free(doc);
    t = NULL;
    loom_status st = loom_tokenizer_load_gpt2(ENCODER, "/nonexistent/vocab.bpe", &t);
    CHECK(st == LOOM_ERR_IO && !t && strstr(loom_error_msg(), "/nonexistent/vocab.bpe"), "missing vocab.bpe: %s",
          loom_error_msg());
#undef GPT2
    free(enc);
    free(bpe);
}

/* ---- cases written by tiktoken itself (optional) ----------------------------------------- */

/* FILE: records of u32 text length, text bytes, u32 n, n ids (encode_ordinary), u32 m,
 * m ids (encode with allowed_special="all"); little-endian. */
static int test_tiktoken_cases(const loom_tokenizer *t, const char *path) {
    size_t len, pos = 0, cases = 0, bad = 0, bytes = 0;
    uint8_t *buf = read_all(path, &len);
    CHECK(buf, "cannot read %s", path);
    if (!buf) return 0;
#define U32(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24)
    while (pos + 4 <= len) {
        uint32_t tl = U32(buf + pos);
        const uint8_t *text = buf + pos + 4;
        pos += 4 + tl;
        for (int mode = 0; mode < 2; mode++) {
            uint32_t n = U32(buf + pos);
            uint32_t *ids = malloc((n + 1) * 4);
            for (uint32_t i = 0; i < n; i++) ids[i] = U32(buf + pos + 4 + 4 * i);
            pos += 4 + 4 * (size_t)n;
            char what[64];
            snprintf(what, sizeof what, "tiktoken case %zu (%s)", cases, mode ? "allow" : "ordinary");
            if (!encode_eq(t, text, tl, mode ? LOOM_TOKENIZER_SPECIAL_ALLOW : LOOM_TOKENIZER_SPECIAL_ORDINARY, ids, n,
                           what) &&
                !bad++)
                dump("first differing text", text, tl);
            free(ids);
        }
        cases++;
        bytes += tl;
    }
#undef U32
    printf("test_tokenizer: %zu tiktoken cases (%zu bytes): %zu differ (piece cache on texts >= %zu bytes)\n", cases,
           bytes, bad, loom_tokenizer_cache_min_len);
    CHECK(cases > 0 && bad == 0 && pos == len, "%zu of %zu tiktoken cases differ", bad, cases);
    free(buf);
    return 1;
}

#include "tokenizer/json_tests.c"

int main(int argc, char **argv) {
    loom_tokenizer *tk = NULL, *g2 = NULL;
    loom_status st = loom_tokenizer_load_tiktoken(TIKTOKEN, &tk);
    CHECK(!st && tk, "load %s: %s", TIKTOKEN, loom_error_msg());
    st = loom_tokenizer_load_gpt2(ENCODER, VOCAB, &g2);
    CHECK(!st && g2, "load %s + %s: %s", ENCODER, VOCAB, loom_error_msg());
    if (!tk || !g2) {
        printf("test_tokenizer: %d passed, %d failed\n", checks - failures, failures);
        return 1;
    }
    if (argc == 3 && !strcmp(argv[1], "--tiktoken-cases")) {
        test_tiktoken_cases(tk, argv[2]);
        loom_tokenizer_cache_min_len = 0; /* again, with the piece cache on every text */
        test_tiktoken_cases(tk, argv[2]);
    } else if (argc == 3 && !strcmp(argv[1], "--hf-cases")) {
        test_hf_cases(argv[2], tk);
    } else {
        test_loaders_agree(tk, g2);
        test_vectors(tk, "tiktoken file");
        test_vectors(g2, "encoder.json+vocab.bpe");
        test_shakespeare(tk, "tiktoken file");
        test_shakespeare(g2, "encoder.json+vocab.bpe");
        test_special_and_invalid(tk);
#ifdef LOOM_HAVE_PCRE2
        test_tables_vs_pcre2();
        test_scanner_vs_pcre2();
#else
        printf("test_tokenizer: built without PCRE2 (libpcre2-dev): scanner differential test skipped\n");
#endif
        test_round_trips(tk);
        test_merge_algorithms(tk);
        test_malformed_tiktoken();
        test_malformed_gpt2();
        test_json_gpt2(tk);
        test_json_malformed();
        test_json_added();
    }
    loom_tokenizer_free(tk);
    loom_tokenizer_free(g2);
    free(avoid_cp);
    printf("test_tokenizer: %d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
