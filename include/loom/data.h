/* Token datasets and the global sample order. A dataset is a set of token files
 * (llm.c shards: 256 x int32 header {20240520, 1, count} then uint16 tokens, or
 * {20240801, 7, count} then uint32 tokens, llm.c's form for vocabularies past 65536
 * such as Llama 3's; or headerless uint16 files), memory-mapped and validated at open. A sample is a window
 * of T+1 tokens: file-local sample i covers tokens [i*T, i*T+T+1). Samples are numbered
 * globally across files in glob order; an epoch visits each once, in a seeded order
 * that depends only on (seed, epoch, index). */
#ifndef LOOM_DATA_H
#define LOOM_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_SHARD_MAGIC 20240520
#define LOOM_SHARD_VERSION 1
#define LOOM_SHARD32_MAGIC 20240801 /* uint32 tokens */
#define LOOM_SHARD32_VERSION 7
#define LOOM_SHARD_HEADER_INTS 256

typedef enum loom_data_format {
    LOOM_DATA_AUTO, /* shard if the magic matches; a *.u16 file is headerless; else error */
    LOOM_DATA_SHARD,
    LOOM_DATA_U16,
} loom_data_format;

typedef struct loom_dataset loom_dataset;

/* Opens every file matching the comma-separated glob patterns, validates headers and
 * that every token is < vocab_size, and numbers the windows of length T+1.
 * Errors name the file (and position) and what is wrong. */
loom_status loom_dataset_open(loom_dataset **out, const char *globs, loom_data_format fmt,
                              int vocab_size, int T, const char *flag);
void loom_dataset_close(loom_dataset *ds);
uint64_t loom_dataset_samples(const loom_dataset *ds);  /* windows per epoch */
uint64_t loom_dataset_tokens(const loom_dataset *ds);
int loom_dataset_files(const loom_dataset *ds);

/* What file i is, cheaply: its path, size, tokens, and a CRC32C of its first and last
 * 4 KiB and 14 blocks of 4 KiB spread evenly between (a replaced, grown or cut file
 * changes it; one edited token between the blocks does not). */
typedef struct loom_data_file_info {
    const char *path;
    uint64_t bytes, tokens;
    uint32_t crc;
} loom_data_file_info;
void loom_dataset_file_info(const loom_dataset *ds, int i, loom_data_file_info *out);

/* Sample number `cursor` of the run (cursor counts samples since the start of training,
 * across epochs): epoch = cursor / n, position = cursor % n, then permuted when
 * shuffle is on. Writes T inputs and the T next-token targets. */
void loom_dataset_sample(const loom_dataset *ds, uint64_t cursor, int shuffle, uint64_t seed,
                         int32_t *inputs, int32_t *targets);

/* A bijection of [0, n) keyed by (seed, epoch): a Feistel network with cycle walking. */
uint64_t loom_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch);

/* Writes an llm.c shard (header + n tokens) to path: uint16 tokens, or with wide
 * uint32 tokens (the 20240801 header). */
loom_status loom_shard_write(const char *path, const void *tokens, size_t n, int wide);

#ifdef __cplusplus
}
#endif
#endif
