/* Checks before a run's first step, each refusing with one line that names the field:
 * every rank was given the same run (one collective), a resumed run's data and threads
 * are its checkpoint's, and what training allocates fits the machine. */
#ifndef LOOM_TRAIN_PREFLIGHT_H
#define LOOM_TRAIN_PREFLIGHT_H

#include <stddef.h>

#include "loom/data.h"
#include "loom/dist.h"
#include "loom/safetensors.h"
#include "loom/train.h"

/* The data of a run, one line per file: "<crc32c hex> <tokens> <bytes> <path>" (from
 * loom_dataset_file_info); malloc'd, NULL with the message set when out of memory. */
char *loom_run_data_desc(const loom_dataset *ds);

/* A resumed run against its checkpoint: the training data (file count, names, sizes,
 * tokens, sampled CRC32C) and the threads per rank must be the same, unless `allow`
 * (LOOM_ALLOW_DATA, LOOM_ALLOW_THREADS) accepts the change; a checkpoint that does not
 * record them (made before loom recorded them) is accepted with a warning. */
loom_status loom_run_check_resume(const loom_st_file *ck, const char *data_desc, int threads, unsigned allow);

/* Every rank's config, flags and data against rank 0's, in one allgather: refuses with
 * the first field that differs and the values of rank 0 and the first rank that
 * differs. Every rank returns the same status. */
loom_status loom_run_agree(const loom_dist *d, const loom_train_opts *o, const loom_gpt_config *cfg,
                           const char *train_desc, const char *val_desc);

/* The bytes one rank allocates for training, buffer by buffer: the one place these
 * sizes are added up, for the memory check and the start-up line. */
typedef struct loom_train_mem {
    double params, grads, tree, comm, adamw, acts, batch, total;
    /* exactly what each part allocates on data-parallel rank 0 (bytes): the model, AdamW's
     * moments, the step's buffers (tree, buckets, pipeline), the tensor-parallel
     * reducer, the batch (LOOM_MEM_* order) */
    size_t bytes[5], bytes_total;
} loom_train_mem;
enum { LOOM_MEM_MODEL, LOOM_MEM_ADAMW, LOOM_MEM_STEP, LOOM_MEM_TP, LOOM_MEM_BATCH };
extern const char *const loom_mem_names[5];
void loom_run_memory(const loom_gpt_config *cfg, int B, int T, int accum, int ranks, int tp, int sp,
                     const loom_stage *stage, int pp, int zero, size_t bucket, const char *backend, int threads,
                     loom_train_mem *m);
/* Refuses a run whose ranks on this node (local) need more than its physical memory. */
loom_status loom_run_check_memory(const loom_train_mem *m, int local, int B, int T);

#endif
