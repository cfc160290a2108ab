/* The tokenizer's representation, shared by tokenizer.c (the tiktoken and GPT-2
 * loaders, encode, decode) and tokenizer_json.c (the Hugging Face tokenizer.json
 * loader). Not public API. */
#ifndef LOOM_DATA_TOKENIZER_IMPL_H
#define LOOM_DATA_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "data/pretokenize.h"
#include "loom/tokenizer.h"

#define LOOM_TOK_NONE UINT32_MAX
#define LOOM_TOK_NONE64 UINT64_MAX
#define LOOM_TOK_MAX_ID (1u << 24) /* ranks and ids are below this */

/* How pieces are merged. */
enum {
    LOOM_TOK_TIKTOKEN = 0, /* by rank: any two parts whose join is a token, lowest id first */
    LOOM_TOK_HF_BPE = 1,   /* by Hugging Face's merge list: listed pairs only, lowest merge index first */
};

/* How text is cut into pieces (pretokenize.h). */
enum {
    LOOM_PRETOK_GPT2 = 0,   /* GPT-2's pattern */
    LOOM_PRETOK_LLAMA3 = 1, /* Llama 3's pattern */
    LOOM_PRETOK_DIGITS = 2, /* Digits pieces, each cut by GPT-2's pattern */
};

/* A token matched literally in the text before pre-tokenization (tiktoken's special
 * token; a tokenizer.json's added_tokens). */
typedef struct loom_added_token {
    uint32_t id, off, len; /* content: tok->added_bytes[off..off+len) */
    uint8_t special, lstrip, rstrip, normalized;
} loom_added_token;

struct loom_tokenizer {
    uint32_t vocab;        /* ids are < vocab; some may be unused (len 0) */
    uint32_t eot;          /* the end-of-text token's id */
    uint8_t *bytes;        /* all token bytes, back to back */
    uint32_t *off, *len;   /* per id: where its bytes are; len 0 = no such id */
    uint64_t *slots;       /* hash map of token bytes: (hash >> 32) << 32 | id, or EMPTY */
    size_t mask;           /* slots - 1 (a power of two minus one) */
    uint32_t byte_id[256]; /* id of each single byte */
    uint32_t *pair_id;     /* tiktoken: [a << 8 | b]: id of the two bytes a b, or NONE */
    int model, pretok;     /* LOOM_TOK_*, LOOM_PRETOK_* */
    int individual_digits; /* Digits: one piece per numeric character (else per run) */
    int ignore_merges;     /* Hugging Face BPE: a piece that is a token is that token */
    int cut_unsafe;        /* an added token may cross a safe cut: encode in one thread */
    loom_uc_tables uc;     /* the pre-tokenizer's character classes */
    uint8_t *uc_own;       /* the storage of uc when not loom_uc_default */
    /* Hugging Face merges: key (left id << 32 | right id) -> value (index << 32 | new id) */
    uint64_t *mkeys, *mvals;
    size_t mmask;
    uint64_t *byte_merge; /* [a << 8 | b]: the merge of the two single-byte tokens, or NONE64 */
    /* added tokens; pass 0 = normalized false, pass 1 = normalized true (tokenizers
     * matches the first kind in the whole text, then the second in what is left) */
    loom_added_token *added;
    size_t n_added;
    uint8_t *added_bytes;
    uint32_t *order[2];      /* per pass: indices into added by first byte, longest first */
    uint32_t first[2][257];  /* per pass: order[p][first[p][b] .. first[p][b + 1]) start with b */
    int single_first[2];     /* per pass: the one first byte all its tokens share, or -1 */
    int all_special[2];      /* per pass: all its tokens are special (ORDINARY skips the pass) */
};

/* ---- hashing of token bytes ------------------------------------------------------------- */

/* The n bytes (1..7) at p as one word, injectively for a given n. */
static inline uint64_t loom_tok_load_tail(const uint8_t *p, size_t n) {
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return a | ((uint64_t)b << 32);
    }
    return p[0] | ((uint64_t)p[n >> 1] << 8) | ((uint64_t)p[n - 1] << 16);
}

/* A fast 64-bit hash of short byte strings (tokens are mostly under 16 bytes). */
static inline uint64_t loom_tok_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    if (n) h = (h ^ loom_tok_load_tail(p, n)) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

/* A hash of a merge key. */
static inline size_t loom_tok_hash64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return (size_t)k;
}

/* The merge of tokens a and b (index << 32 | new id), or LOOM_TOK_NONE64. */
static inline uint64_t loom_tok_merge_of(const loom_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    for (size_t i = loom_tok_hash64(key) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mkeys[i] == key) return t->mvals[i];
        if (t->mkeys[i] == UINT64_MAX) return LOOM_TOK_NONE64;
    }
}

/* ---- shared helpers (tokenizer.c) -------------------------------------------------------- */

/* An excerpt of s[0..n) for a message into buf (cap >= 8): at most 40 bytes, printable
 * ASCII and well-formed UTF-8 as they are, other bytes as \xNN, "..." where cut. */
const char *loom_tok_shown(char *buf, size_t cap, const void *s, size_t n);

/* Reads a whole file; errors name the path. */
loom_status loom_tok_read_file(const char *path, uint8_t **buf, size_t *len);
/* Reads path whole and builds a tokenizer from its bytes with from_mem (named by path). */
loom_status loom_tok_load_with(const char *path, loom_tokenizer **out,
                               loom_status (*from_mem)(const void *, size_t, const char *, loom_tokenizer **));

/* 1-based line and column of byte `off` of s. */
void loom_tok_line_col(const uint8_t *s, size_t off, size_t *line, size_t *col);

/* GPT-2's bytes_to_unicode, inverted: the byte for code point cp < 0x144, or -1; and
 * the order of the 256 single-byte ranks. */
void loom_tok_gpt2_alphabet(int16_t uc2byte[0x144], uint8_t rank_to_byte[256]);

/* Maps a string spelled in GPT-2's byte alphabet back to its bytes. Returns the byte
 * count, or -1 (invalid UTF-8) or -2 - cp (a character outside the alphabet). */
long loom_tok_gpt2_unmap(const int16_t uc2byte[0x144], const uint8_t *s, size_t n, uint8_t *out);

/* Finishes a tokenizer whose vocab, eot, bytes/off/len, model, pretok, uc, added
 * tokens (and for LOOM_TOK_HF_BPE mkeys/mvals/mmask) are set: builds the hash map over
 * the ids with in_map[id] != 0 (all ids when in_map is NULL; no two may have the same
 * bytes), byte_id, the pair tables and the added-token index. Errors name `name`. */
loom_status loom_tok_finish(loom_tokenizer *t, const uint8_t *in_map, const char *name);

/* The pieces of s[0..n) by t's pre-tokenizer alone (no added tokens): writes their
 * ends to ends[0..k) (room for n) and returns k. For the tests. */
size_t loom_tok_pieces(const loom_tokenizer *t, const uint8_t *s, size_t n, size_t *ends);

/* Hugging Face's BPE of one piece of n >= 2 bytes (tokenizer_json.c): as
 * loom_tokenizer_bpe. */
size_t loom_tok_hf_bpe(const loom_tokenizer *t, const uint8_t *p, size_t n, uint32_t *out);

/* A binary min-heap of 64-bit keys (the BPE merges' candidate pairs, keyed (rank, start)). */
static inline void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static inline uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

#endif
