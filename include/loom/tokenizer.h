/* The GPT-2 byte-level BPE tokenizer, encoding exactly as tiktoken's r50k_base/"gpt2"
 * does: the same pre-tokenizer regex (with Unicode classes), merges by rank, and the
 * special token <|endoftext|>. Loaded from tiktoken's rank file or from GPT-2's
 * encoder.json + vocab.bpe. A loaded tokenizer is read-only: any number of threads may
 * encode and decode with it at once. */
#ifndef LOOM_TOKENIZER_H
#define LOOM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_tokenizer loom_tokenizer;

/* The one special token GPT-2 has. */
#define LOOM_TOKENIZER_EOT_TEXT "<|endoftext|>"

/* What encode does with the literal text "<|endoftext|>" in its input. */
typedef enum loom_tokenizer_special {
    /* tiktoken's encode() default (disallowed_special="all"): input containing the
     * literal is refused with LOOM_ERR_ARG ("... at byte N"), and nothing is appended. */
    LOOM_TOKENIZER_SPECIAL_REFUSE = 0,
    /* tiktoken's encode_ordinary(): the literal is ordinary text ("<", "|", "endoftext", "|>"). */
    LOOM_TOKENIZER_SPECIAL_ORDINARY,
    /* tiktoken's encode(allowed_special="all"): each literal becomes the special id (50256),
     * and the text between literals is encoded on its own, as tiktoken does. */
    LOOM_TOKENIZER_SPECIAL_ALLOW,
} loom_tokenizer_special;

/* A growable array of token ids; start from {0} and free with loom_tokens_free. */
typedef struct loom_tokens {
    uint32_t *ids;
    size_t len, cap;
} loom_tokens;
void loom_tokens_free(loom_tokens *t); /* frees and resets to {0} */

/* A growable byte array (decode output); start from {0}, free with loom_bytes_free.
 * `data` is kept NUL-terminated when non-NULL, but `len` is authoritative. */
typedef struct loom_bytes {
    uint8_t *data;
    size_t len, cap;
} loom_bytes;
void loom_bytes_free(loom_bytes *b);

/* Loads tiktoken's rank file (r50k_base.tiktoken): one "base64(token bytes) SP rank" per
 * line (empty lines skipped, "\r\n" accepted). Ranks must be unique and below 2^24 - 1, the
 * token byte strings unique, and all 256 single bytes present. The special token gets
 * id max(rank) + 1 (50256 for GPT-2), as tiktoken's r50k_base defines it. Errors name
 * "path:line" and what is wrong. */
loom_status loom_tokenizer_load_tiktoken(const char *path, loom_tokenizer **out);

/* Loads GPT-2's original files. Ranks are built as tiktoken's data_gym loader builds
 * them: the 256 bytes in bytes_to_unicode order, then one rank per "A B" merge line of
 * vocab.bpe (after the "#version" line), in order. encoder.json must then map exactly
 * these tokens (in the same byte->unicode spelling) to exactly these ranks, plus
 * "<|endoftext|>" to the special id; any difference is an error naming the file, line
 * and token. */
loom_status loom_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path,
                                     loom_tokenizer **out);

/* The same two loaders on bytes in memory; `name` (and enc_name, bpe_name) stand for
 * the file names in error messages. Used by the fuzzer and the tests. Every loader
 * sets *out to NULL when it fails. */
loom_status loom_tokenizer_from_tiktoken_mem(const void *buf, size_t len, const char *name,
                                             loom_tokenizer **out);
loom_status loom_tokenizer_from_gpt2_mem(const void *enc, size_t enc_len, const char *enc_name,
                                         const void *bpe, size_t bpe_len, const char *bpe_name,
                                         loom_tokenizer **out);
void loom_tokenizer_free(loom_tokenizer *tok);

/* Number of ids, the special one included (50257 for GPT-2), and the special id. */
uint32_t loom_tokenizer_vocab_size(const loom_tokenizer *tok);
uint32_t loom_tokenizer_eot(const loom_tokenizer *tok);

/* Appends the ids of text[0..len) to `out` (on error `out` is left as it was).
 * Valid UTF-8 is encoded exactly as tiktoken encodes the same string. tiktoken takes
 * only str; for bytes that are not valid UTF-8, loom defines: the input is cut into
 * maximal valid UTF-8 runs and invalid bytes; each run is encoded as tiktoken would
 * encode it alone (a regex match never spans an invalid byte, as with PCRE2's
 * MATCH_INVALID_UTF), and each invalid byte becomes its own single-byte token. So
 * decode(encode(x)) == x for every byte string. (An encoded surrogate such as ED A0 80
 * is invalid UTF-8 too; tiktoken's Python encode() would first turn a str's lone
 * surrogates into U+FFFD.) Errors: LOOM_ERR_ARG (a refused special token or an unknown
 * mode), LOOM_ERR_NOMEM. */
loom_status loom_tokenizer_encode(const loom_tokenizer *tok, const void *text, size_t len,
                                  loom_tokenizer_special mode, loom_tokens *out);

/* The same result as loom_tokenizer_encode, computed by `threads` OpenMP threads
 * (<= 0: all) over chunks cut at boundaries that no regex match crosses (a '\n' after a
 * printable ASCII byte). Small inputs run on one thread. */
loom_status loom_tokenizer_encode_parallel(const loom_tokenizer *tok, const void *text, size_t len,
                                           loom_tokenizer_special mode, int threads, loom_tokens *out);

/* The first position >= from where text may be cut so that both sides encode
 * independently (a '\n' right after a printable ASCII byte), or len if there is none.
 * Encoding [0, cut) and [cut, len) separately gives the ids of encoding the whole. */
size_t loom_tokenizer_safe_cut(const void *text, size_t len, size_t from);

/* Appends the bytes of ids[0..n) to `out`; the special id decodes to "<|endoftext|>".
 * An id that is no token (>= vocab size, or a gap in the ranks) is LOOM_ERR_ARG naming
 * its position, and `out` is left as it was. */
loom_status loom_tokenizer_decode(const loom_tokenizer *tok, const uint32_t *ids, size_t n,
                                  loom_bytes *out);

/* The bytes of token `id` (not NUL-terminated) and their count, or NULL for an id out
 * of range. Valid as long as the tokenizer. */
const uint8_t *loom_tokenizer_token_bytes(const loom_tokenizer *tok, uint32_t id, size_t *len);

/* The id whose bytes are exactly bytes[0..len), or -1 (the special token's text is not
 * a rank and gives -1). */
int64_t loom_tokenizer_token_id(const loom_tokenizer *tok, const void *bytes, size_t len);

#ifdef __cplusplus
}
#endif
#endif
