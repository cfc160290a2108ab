/* Byte-level BPE tokenizers. GPT-2's encodes exactly as tiktoken's r50k_base/"gpt2"
 * does: the same pre-tokenizer regex (with Unicode classes), merges by rank, and the
 * special token <|endoftext|>; it is loaded from tiktoken's rank file or from GPT-2's
 * encoder.json + vocab.bpe. A Hugging Face tokenizer.json of a byte-level BPE model
 * (GPT-2, Llama 3, SmolLM/StarCoder style) encodes exactly as the `tokenizers` library
 * (0.20) does. A loaded tokenizer is read-only: any number of threads may encode and
 * decode with it at once. */
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

/* What encode does with the literal text "<|endoftext|>" in its input (tiktoken files),
 * or with a tokenizer.json's special added tokens. A tokenizer.json's non-special added
 * tokens always match, as in tokenizers, and loom never adds BOS/EOS: ALLOW is
 * tokenizers' encode(text, add_special_tokens=False), ORDINARY the same with
 * encode_special_tokens=True (special tokens' text is encoded as text), REFUSE is
 * ALLOW where the text contains no special token, and an error where it does. */
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

/* Loads a Hugging Face tokenizer.json of a byte-level BPE model. Supported: model.type
 * "BPE" (vocab in GPT-2's byte-to-unicode alphabet with all 256 bytes, merges as "A B"
 * strings or [A, B] pairs, ignore_merges; dropout, continuing_subword_prefix and
 * end_of_word_suffix null), no normalizer, decoder ByteLevel, and the pre_tokenizer
 *   ByteLevel (use_regex true)                                  GPT-2, RoBERTa style
 *   Sequence[Split(Llama 3's pattern, Isolated), ByteLevel(use_regex false)]  Llama 3
 *   Sequence[Digits(individual_digits), ByteLevel(use_regex true)]   SmolLM, StarCoder
 * (ByteLevel's add_prefix_space false), and added_tokens (special or not; lstrip and
 * rstrip; not single_word), whose "id" must be the one tokenizers assigns. Anything
 * else is refused with one line naming the file, line:col and field. post_processor,
 * truncation and padding are ignored (loom adds no tokens and cuts nothing).
 * The vocab size is the largest id + 1. The end-of-text id (loom_tokenizer_eot) is the
 * first special added token of "<|endoftext|>" (GPT-2, SmolLM), "<|end_of_text|>"
 * (Llama 3), "</s>", "<eos>"; without one the file is refused. Token bytes (decode) are
 * what tokenizers' ByteLevel decoder gives before its UTF-8 repair: a token whose
 * characters are all in the byte alphabet maps through it, any other (usually an added
 * token) is its own UTF-8. Character classes are those of tokenizers 0.20 (Unicode 14
 * for the regexes, 15 for Digits), not loom_uc_version's. */
loom_status loom_tokenizer_load_json(const char *path, loom_tokenizer **out);

/* Loads `path` by its kind: a tokenizer.json when the name ends in ".json" or the file
 * starts with '{', else tiktoken's rank file. What --tokenizer FILE takes. */
loom_status loom_tokenizer_load(const char *path, loom_tokenizer **out);

/* The loaders on bytes in memory; `name` (and enc_name, bpe_name) stand for the file
 * names in error messages. Used by the fuzzer and the tests. Every loader sets *out to
 * NULL when it fails. */
loom_status loom_tokenizer_from_tiktoken_mem(const void *buf, size_t len, const char *name,
                                             loom_tokenizer **out);
loom_status loom_tokenizer_from_gpt2_mem(const void *enc, size_t enc_len, const char *enc_name,
                                         const void *bpe, size_t bpe_len, const char *bpe_name,
                                         loom_tokenizer **out);
loom_status loom_tokenizer_from_json_mem(const void *buf, size_t len, const char *name, loom_tokenizer **out);
void loom_tokenizer_free(loom_tokenizer *tok);

/* Number of ids, the special ones included (50257 for GPT-2), and the end-of-text id. */
uint32_t loom_tokenizer_vocab_size(const loom_tokenizer *tok);
uint32_t loom_tokenizer_eot(const loom_tokenizer *tok);

/* Appends the ids of text[0..len) to `out` (on error `out` is left as it was).
 * Valid UTF-8 is encoded exactly as tiktoken (for a tokenizer.json: tokenizers)
 * encodes the same string. Both take only str; for bytes that are not valid UTF-8,
 * loom defines: the input is cut into maximal valid UTF-8 runs and invalid bytes; each
 * run is encoded as tiktoken would encode it alone (a regex match never spans an
 * invalid byte, as with PCRE2's MATCH_INVALID_UTF), and each invalid byte becomes its
 * own single-byte token. So decode(encode(x)) == x for every byte string (with a
 * tokenizer.json: unless x has an added token whose text uses the byte alphabet's
 * characters, such as "Ġ", which decodes through it). (An encoded surrogate such as ED A0 80
 * is invalid UTF-8 too; tiktoken's Python encode() would first turn a str's lone
 * surrogates into U+FFFD.) Errors: LOOM_ERR_ARG (a refused special token or an unknown
 * mode), LOOM_ERR_NOMEM. */
loom_status loom_tokenizer_encode(const loom_tokenizer *tok, const void *text, size_t len,
                                  loom_tokenizer_special mode, loom_tokens *out);

/* The same result as loom_tokenizer_encode, computed by `threads` OpenMP threads
 * (<= 0: all) over chunks cut by loom_tokenizer_safe_cut. Small inputs, and tokenizers
 * with an added token that such a cut could split (one with "\n" after its first byte,
 * or rstrip), run on one thread. */
loom_status loom_tokenizer_encode_parallel(const loom_tokenizer *tok, const void *text, size_t len,
                                           loom_tokenizer_special mode, int threads, loom_tokens *out);

/* The first position >= from where text may be cut so that both sides encode
 * independently (a '\n' right after an ASCII letter or digit), or len if there is none.
 * Encoding [0, cut) and [cut, len) separately gives the ids of encoding the whole, with
 * every pre-tokenizer loom supports (and no added token that crosses the cut; see
 * loom_tokenizer_encode_parallel). */
size_t loom_tokenizer_safe_cut(const void *text, size_t len, size_t from);

/* Appends the bytes of ids[0..n) to `out`; a special id decodes to its text.
 * An id that is no token (>= vocab size, or a gap in the ranks) is LOOM_ERR_ARG naming
 * its position, and `out` is left as it was. */
loom_status loom_tokenizer_decode(const loom_tokenizer *tok, const uint32_t *ids, size_t n,
                                  loom_bytes *out);

/* The bytes of token `id` (not NUL-terminated) and their count, or NULL for an id out
 * of range. Valid as long as the tokenizer. */
const uint8_t *loom_tokenizer_token_bytes(const loom_tokenizer *tok, uint32_t id, size_t *len);

/* The id whose bytes are exactly bytes[0..len), or -1: among the tokens merges can
 * make (a tiktoken file's ranks; a tokenizer.json's model.vocab tokens spelled in the
 * byte alphabet). The text of an added token that is not such a token gives -1. */
int64_t loom_tokenizer_token_id(const loom_tokenizer *tok, const void *bytes, size_t len);

#ifdef __cplusplus
}
#endif
#endif
