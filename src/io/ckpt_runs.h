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

/* The runs of tensor k (description pi, global shape) that a rank holds: its
 * tensor-parallel slice (loom_param_slice: part tp of tps; tps 1 is the whole tensor),
 * stored row-major from element `base` of its buffer, clipped to the buffer's elements
 * [lo, hi) (a ZeRO shard, or everything). Appends to out (NULL: counts only); returns
 * the number of runs, or -1 when the tensor does not split (message set). */
long ckpt_tensor_runs(const loom_param_info *pi, int k, int tp, int tps, size_t base, size_t lo, size_t hi,
                      ckpt_run *out);

#endif
