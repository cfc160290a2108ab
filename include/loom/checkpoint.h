/* Training checkpoints: one safetensors file per save (DIR/step_%08d.safetensors) with
 * the model under its Hugging Face names (GPT-2's or Llama's), AdamW moments as optim.m.<name> and
 * optim.v.<name>, and in __metadata__ the config, the step, the loader position, the
 * flags that decide the arithmetic of the next steps and a CRC32C of every tensor.
 * Commits are atomic (temporary name, fsync, rename, fsync of the directory, then
 * DIR/latest the same way), so a crash at any instant leaves the previous checkpoint
 * intact and `latest` naming a complete one. */
#ifndef LOOM_CHECKPOINT_H
#define LOOM_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "loom/dist.h"
#include "loom/model.h"
#include "loom/optim.h"
#include "loom/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_CKPT_FORMAT "1"

/* Everything besides tensors that a run needs to continue bitwise. The sample order
 * and weight init are counter-based (keyed by seed), so (seed, cursor) is the whole
 * RNG and loader state. */
typedef struct loom_ckpt_state {
    long step;              /* optimizer steps completed */
    uint64_t cursor;        /* samples consumed so far (global loader position) */
    uint64_t epoch;         /* cursor / samples per epoch, informational */
    long adam_t;            /* AdamW updates done (bias correction) */
    uint64_t seed;
    int batch, seq_len, shuffle, steps;
    long total_batch_tokens;
    loom_adamw_config optim;
    int threads;            /* per rank: the arithmetic of a step depends on it */
    const char *data;       /* what the training data were (loom_run_data_desc); saved, read by the caller */
} loom_ckpt_state;

/* Makes DIR the run's own: its lock (loom_dir_lock; release with loom_dir_unlock), and
 * a fresh run (not resuming) in a directory that holds checkpoints is refused, unless
 * `overwrite`, which deletes them and `latest`. */
loom_status loom_ckpt_dir_claim(const char *dir, int resuming, int overwrite, int *lock_fd);

/* Writes DIR/step_%08d.safetensors for st->step atomically, points DIR/latest at it,
 * then deletes the oldest step_* files beyond `keep` (keep >= 1). On failure the
 * temporary file is removed and the previous checkpoints and `latest` are untouched.
 * *bytes receives the file size. */
loom_status loom_ckpt_save(const char *dir, int keep, const loom_gpt *g, const loom_adamw *opt,
                           const loom_ckpt_state *st, char *path_out, size_t cap, double *bytes);

/* The same, written by all ranks of group d (every rank of the job) at once into one file
 * with MPI-IO (collective): each rank writes, of its tensor-parallel parts (replicated
 * tensors: tensor-parallel rank 0 only), the parameters and AdamW moments of its shard
 * [lo, hi) of loom_dist_shard over the data-parallel group dp (opt holds at least that
 * range: a ZeRO shard or everything), rank 0 the header with the tensors' CRC32Cs
 * combined from every rank's parts; rank 0 then commits as above. The file is the one a
 * single process writes. Every rank returns the same status. */
loom_status loom_ckpt_save_dist(const loom_group *d, const loom_group *dp, const char *dir, int keep, const loom_gpt *g,
                                const loom_adamw *opt, const loom_ckpt_state *st, char *path_out, size_t cap,
                                double *bytes);

/* Opens `file`, or (file == NULL) the checkpoint DIR/latest names, and verifies it.
 * For `latest`, a missing or corrupt file falls back to the newest intact step_* file,
 * with a warning on stderr. On success *out is the open, verified file. */
loom_status loom_ckpt_open(const char *dir, const char *file, loom_st_file **out);

/* Checks that f is a loom checkpoint and that every tensor's CRC32C matches. */
loom_status loom_ckpt_verify(const loom_st_file *f);

/* Reads the config and state from a verified checkpoint's metadata. */
loom_status loom_ckpt_read_state(const loom_st_file *f, loom_gpt_config *cfg, loom_ckpt_state *st);

/* Refuses to continue when the checkpoint's config or flags differ from the run's,
 * naming every differing field ("n_layer 2 (checkpoint) vs 4 (flags), lr ..."). */
loom_status loom_ckpt_check_match(const char *path, const loom_gpt_config *ccfg,
                                  const loom_ckpt_state *cst, const loom_gpt_config *cfg,
                                  const loom_ckpt_state *st);

/* Copies parameters and AdamW moments into g and opt (shapes must match). */
loom_status loom_ckpt_load(const loom_st_file *f, loom_gpt *g, loom_adamw *opt);

#ifdef __cplusplus
}
#endif
#endif
