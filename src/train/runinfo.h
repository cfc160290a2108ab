/* OUT/run.json: what a run is beside its metrics (layout, memory per buffer, the
 * checkpoints written, the time split of --profile), rewritten whole (aside, then
 * renamed) at the start, at each checkpoint and at the end, the last two followed by
 * OUT/report.html, which shows it. Rank 0 only. */
#ifndef LOOM_TRAIN_RUNINFO_H
#define LOOM_TRAIN_RUNINFO_H

#include "io/json.h"
#include "loom/model.h"
#include "train/preflight.h"

typedef struct run_info {
    const char *out_dir;
    loom_json_buf layout, memory, ckpts, profile; /* the JSON members' bodies */
    int n_ckpts;
} run_info;

void run_info_start(run_info *ri, const char *out_dir, int ranks, int tp, int per_node, int threads, int zero, int micro,
                    int B, int T, long tokens_per_step, double peak_gflops, const loom_train_mem *m, double live_bytes);
void run_info_checkpoint(run_info *ri, long step, const char *path, double bytes, double seconds);
void run_info_profile(run_info *ri, const loom_gpt *g, int steps);
/* Writes run.json and (report) report.html; a failure only warns (the run goes on). */
void run_info_write(run_info *ri, int report);
void run_info_free(run_info *ri);

#endif
