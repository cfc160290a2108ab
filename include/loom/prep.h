/* Preprocessing: raw text (plain files, JSON-lines files, standard input) tokenized in
 * parallel into llm.c token shards. Every document is preceded by <|endoftext|>; a
 * plain file is one document, a JSON-lines line is one document (its text field).
 * The output depends only on the inputs and flags, never on the thread count. */
#ifndef LOOM_PREP_H
#define LOOM_PREP_H

#include <stdint.h>

#include "loom/core.h"
#include "loom/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_prep_opts {
    const char *const *inputs; /* files, or "-" for standard input */
    int n_inputs;
    const char *out_dir;
    const char *tokenizer;     /* tiktoken rank file or Hugging Face tokenizer.json */
    const char *jsonl_field;   /* the text field of *.jsonl inputs */
    long shard_tokens;         /* tokens per shard (the last one may be shorter) */
    long val_tokens;           /* the first N tokens go to val_*.bin */
    int threads;               /* <= 0: all */
    int skip_bad;              /* 1: count and report bad JSON-lines lines instead of failing */
    int overwrite;             /* 1: a non-empty out_dir is replaced (else it is refused) */
    int progress;              /* 1: a progress bar on stderr */
} loom_prep_opts;

typedef struct loom_prep_stats {
    uint64_t documents, skipped, bytes, train_tokens, val_tokens;
    int train_shards, val_shards;
    double seconds;
} loom_prep_stats;

/* Runs the whole preprocessing on every rank of dist (NULL: one process); each rank
 * tokenizes its share, rank 0 writes OUT/val_%06d.bin, OUT/train_%06d.bin and
 * OUT/manifest.json. OUT must be missing or empty, or o->overwrite set; the files are
 * written (and synced) into OUT.tmp-PID beside it, which then replaces OUT whole, so
 * OUT never mixes runs. A SIGINT or SIGTERM removes OUT.tmp-PID and exits the process
 * with 128 + the signal, leaving OUT as it was. Errors name the file (and line) and
 * what is wrong. */
loom_status loom_prep(const loom_prep_opts *o, const loom_dist *dist, loom_prep_stats *stats);

/* Blocks SIGINT and SIGTERM in the calling thread, so that threads created afterwards
 * (MPI's, OpenMP's) inherit the mask and only loom_prep's signal thread takes them.
 * Call it first thing, before MPI_Init; loom_prep calls it too. */
void loom_prep_block_signals(void);

/* The JSON-lines reader of prep on a buffer: counts the documents (the `field` of each
 * line), their bytes, and the bad lines (skip_bad = 1) or stops at the first bad one
 * with "input.jsonl:LINE: what". For tests and the fuzzer. */
loom_status loom_prep_jsonl_count(const char *buf, size_t len, const char *field, int skip_bad,
                                  uint64_t *documents, uint64_t *text_bytes, uint64_t *skipped);

#ifdef __cplusplus
}
#endif
#endif
