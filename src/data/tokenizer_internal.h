/* Tokenizer internals shared with the tests and the fuzzer (not public API): the two
 * byte-pair merge algorithms, the switch between them, and the piece cache's switch. */
#ifndef LOOM_DATA_TOKENIZER_INTERNAL_H
#define LOOM_DATA_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "loom/tokenizer.h"

/* Pieces up to this many bytes are merged by tiktoken's own O(n*m) scan; longer ones
 * by a heap in O(n log n). Both pick the lowest rank, leftmost on ties, so they give
 * the same ids; the tests set this to 0 or SIZE_MAX to check that. Default 64. */
extern size_t loom_tokenizer_heap_threshold;

/* Encode calls on texts of at least this many bytes keep a cache of merged pieces
 * (default 16 KB); the tests set 0 or SIZE_MAX to check that it changes nothing. */
extern size_t loom_tokenizer_cache_min_len;

/* BPE of one piece (len >= 1): writes its ids to out[0..k) (room for len ids) and
 * returns k, or returns SIZE_MAX when memory ran out (with loom_error set). */
size_t loom_tokenizer_bpe(const loom_tokenizer *tok, const uint8_t *piece, size_t len, uint32_t *out);

#endif
