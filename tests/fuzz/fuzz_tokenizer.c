/* libFuzzer harness for the GPT-2 tokenizer. The first input byte picks the target:
 * 0: the rest is a tiktoken rank file; 1: encoder.json NUL vocab.bpe; anything else:
 * text for GPT-2's tokenizer (data/gpt2/r50k_base.tiktoken, run from the repository
 * root). Whatever loads must round-trip decode(encode(x)) == x, and the two merge
 * algorithms must agree. Build and run with `bench/fuzz.sh tokenizer`; not in ctest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/pretokenize.h"
#include "data/tokenizer_internal.h"
#include "loom/tokenizer.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void round_trip(const loom_tokenizer *t, const uint8_t *s, size_t n) {
    for (int mode = 0; mode < 3; mode++) {
        loom_tokens o = {0};
        loom_bytes d = {0};
        loom_status st = loom_tokenizer_encode(t, s, n, (loom_tokenizer_special)mode, &o);
        int has_eot = n >= 13 && memmem(s, n, LOOM_TOKENIZER_EOT_TEXT, 13) != NULL;
        if (mode == LOOM_TOKENIZER_SPECIAL_REFUSE) {
            REQUIRE((st == LOOM_ERR_ARG) == has_eot);
            if (st) continue;
        }
        REQUIRE(st == LOOM_OK && o.len <= n);
        for (size_t i = 0; i < o.len; i++)
            REQUIRE(o.ids[i] < loom_tokenizer_vocab_size(t) &&
                    (mode == LOOM_TOKENIZER_SPECIAL_ALLOW || o.ids[i] != loom_tokenizer_eot(t)));
        REQUIRE(loom_tokenizer_decode(t, o.ids, o.len, &d) == LOOM_OK);
        REQUIRE(d.len == n && (n == 0 || memcmp(d.data, s, n) == 0));
        loom_tokens p = {0};
        REQUIRE(loom_tokenizer_encode_parallel(t, s, n, (loom_tokenizer_special)mode, 2, &p) == LOOM_OK);
        REQUIRE(p.len == o.len && (o.len == 0 || memcmp(p.ids, o.ids, o.len * 4) == 0));
        size_t saved = loom_tokenizer_cache_min_len; /* the piece cache changes nothing */
        loom_tokenizer_cache_min_len = 0;
        p.len = 0;
        REQUIRE(loom_tokenizer_encode(t, s, n, (loom_tokenizer_special)mode, &p) == LOOM_OK);
        loom_tokenizer_cache_min_len = saved;
        REQUIRE(p.len == o.len && (o.len == 0 || memcmp(p.ids, o.ids, o.len * 4) == 0));
        loom_tokens_free(&p);
        loom_tokens_free(&o);
        loom_bytes_free(&d);
    }
    /* the scanner's pieces tile the input */
    size_t i = 0;
    while (i < n) {
        int inv;
        size_t j = loom_pretok_next(s, n, i, &inv);
        REQUIRE(j > i && j <= n && (!inv || j == i + 1));
        i = j;
    }
    /* the whole input as one piece: scan and heap merges agree */
    if (n > 0 && n <= 1024) {
        uint32_t *a = malloc(n * 4), *b = malloc(n * 4);
        size_t saved = loom_tokenizer_heap_threshold;
        loom_tokenizer_heap_threshold = 0;
        size_t ka = loom_tokenizer_bpe(t, s, n, a);
        loom_tokenizer_heap_threshold = SIZE_MAX;
        size_t kb = loom_tokenizer_bpe(t, s, n, b);
        loom_tokenizer_heap_threshold = saved;
        REQUIRE(ka == kb && ka <= n && memcmp(a, b, ka * 4) == 0);
        free(a);
        free(b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static loom_tokenizer *gpt2;
    if (!gpt2 && loom_tokenizer_load_tiktoken("data/gpt2/r50k_base.tiktoken", &gpt2) != LOOM_OK) abort();
    if (size == 0) return 0;
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    static const uint8_t sample[] = "Hello world! It's 2024: naïve café, 日本語 \xf0\x9f\x98\x80 <|endoftext|> \xff end\n";
    loom_tokenizer *t = NULL;
    if (data[0] == 0) {
        if (loom_tokenizer_from_tiktoken_mem(s, n, "fuzz.tiktoken", &t) == LOOM_OK) {
            REQUIRE(t && loom_tokenizer_eot(t) < loom_tokenizer_vocab_size(t));
            round_trip(t, sample, sizeof sample - 1);
        } else {
            REQUIRE(!t);
        }
    } else if (data[0] == 1) {
        const uint8_t *nul = memchr(s, 0, n);
        size_t el = nul ? (size_t)(nul - s) : n;
        const uint8_t *bpe = nul ? nul + 1 : s + n;
        if (loom_tokenizer_from_gpt2_mem(s, el, "fuzz.json", bpe, (size_t)(s + n - bpe), "fuzz.bpe", &t) == LOOM_OK) {
            REQUIRE(t);
            round_trip(t, sample, sizeof sample - 1);
        } else {
            REQUIRE(!t);
        }
    } else {
        round_trip(gpt2, s, n);
    }
    loom_tokenizer_free(t);
    return 0;
}
