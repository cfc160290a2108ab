/* Inside io: how the part of a tensor that one rank holds maps onto the tensor in a
 * checkpoint file, as contiguous runs. A save writes each rank's runs at their offsets;
 * a load reads them back; rank 0 checks that all ranks' runs tile every tensor. */
#ifndef LOOM_IO_CKPT_RUNS_H
#define LOOM_IO_CKPT_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "loom/model.h"

/* One contiguous run of a tensor that a rank holds: n elements at element `at` of the
 * rank's buffer, which are elements [file_at, file_at + n) of tensor k (of the 3 nt
 * tensors: parameters, then m, then v) in the file. */
typedef struct ckpt_run {
    int k;
    size_t at, n;
    uint64_t file_at;
} ckpt_run;

/* The runs of tensor k (description pi: its full shape and pi->slice, the part a rank
 * holds) stored row-major from element `base` of the rank's buffer, clipped to the
 * buffer's elements [lo, hi) (a ZeRO shard, or everything); padding rows are in no run,
 * nor a tensor of another pipeline stage.
 * Appends to out (NULL: counts only); returns the number of runs. */
long ckpt_tensor_runs(const loom_param_info *pi, int k, size_t base, size_t lo, size_t hi, ckpt_run *out);

#endif
