/* OUT/run.json and the report after it (train/runinfo.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "loom/report.h"
#include "train/runinfo.h"

void run_info_start(run_info *ri, const char *out_dir, int ranks, int tp, int per_node, int threads, int zero, int micro,
                    int B, int T, long tokens_per_step, double peak_gflops, const loom_train_mem *m, double live_bytes) {
    memset(ri, 0, sizeof *ri);
    ri->out_dir = out_dir;
    loom_json_buf_printf(&ri->layout,
                         "\"ranks\": %d, \"data_parallel\": %d, \"tensor_parallel\": %d, \"ranks_per_node\": %d, "
                         "\"threads_per_rank\": %d, \"zero\": %d, "
                         "\"micro_batches_per_rank\": %d, \"batch\": %d, \"seq_len\": %d, \"tokens_per_step\": %ld, "
                         "\"peak_gflops\": %.1f", ranks, ranks / tp, tp, per_node, threads, zero, micro, B, T, tokens_per_step, peak_gflops);
    const double MiB = 1048576.0;
    loom_json_buf_printf(&ri->memory,
                         "\"parameters\": %.1f, \"gradients\": %.1f, \"accumulation_tree\": %.1f, "
                         "\"send_receive_bucket\": %.1f, \"adamw_m_v\": %.1f, \"activations\": %.1f, \"batch\": %.1f, "
                         "\"predicted_total\": %.2f, \"all_allocated\": %.2f",
                         m->params / MiB, m->grads / MiB, m->tree / MiB, m->comm / MiB, m->adamw / MiB, m->acts / MiB,
                         m->batch / MiB, m->total / MiB, live_bytes / MiB);
}

void run_info_checkpoint(run_info *ri, long step, const char *path, double bytes, double seconds) {
    loom_json_buf_printf(&ri->ckpts, "%s{\"step\": %ld, \"file\": ", ri->n_ckpts++ ? ", " : "", step);
    loom_json_escape(&ri->ckpts, path, strlen(path));
    loom_json_buf_printf(&ri->ckpts, ", \"megabytes\": %.1f, \"seconds\": %.3f}", bytes / 1e6, seconds);
}

void run_info_profile(run_info *ri, const loom_gpt *g, int steps) {
    loom_json_buf_free(&ri->profile);
    for (int k = 0; k < LOOM_PROF_COUNT; k++) {
        const char *name = loom_prof_name((loom_prof_kind)k);
        loom_json_buf_puts(&ri->profile, k ? ", " : "");
        loom_json_escape(&ri->profile, name, strlen(name));
        loom_json_buf_printf(&ri->profile, ": %.3f", 1e3 * g->prof_s[k] / steps);
    }
}

void run_info_write(run_info *ri, int report) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/run.json", ri->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "w");
    int ok = fp != NULL;
    if (fp) {
        const loom_json_buf *b[4] = {&ri->layout, &ri->memory, &ri->ckpts, &ri->profile};
        for (int i = 0; i < 4; i++) ok &= !b[i]->failed;
        fprintf(fp, "{\"layout\": {%s},\n \"memory_mib_per_rank\": {%s},\n \"checkpoints\": [%s]",
                ri->layout.data ? ri->layout.data : "", ri->memory.data ? ri->memory.data : "",
                ri->ckpts.data ? ri->ckpts.data : "");
        if (ri->profile.len) fprintf(fp, ",\n \"profile_ms_per_step\": {%s}", ri->profile.data);
        fprintf(fp, "}\n");
        ok &= fclose(fp) == 0;
        ok = ok && rename(tmp, path) == 0;
        if (!ok) unlink(tmp);
    }
    if (!ok) fprintf(stderr, "loom: warning: %s not written: %s\n", path, strerror(errno ? errno : EIO));
    if (!report) return;
    snprintf(path, sizeof path, "%s/report.html", ri->out_dir);
    if (loom_report_write(&ri->out_dir, 1, path))
        fprintf(stderr, "loom: warning: %s not written: %s\n", path, loom_error_msg());
}

void run_info_free(run_info *ri) {
    loom_json_buf_free(&ri->layout);
    loom_json_buf_free(&ri->memory);
    loom_json_buf_free(&ri->ckpts);
    loom_json_buf_free(&ri->profile);
}
