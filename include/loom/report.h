/* `loom report`: one self-contained HTML page (inline SVG, no scripts, no network) of
 * one or more training runs' output directories: a plot of every metric of
 * metrics.jsonl over steps, the loss over wall-clock time, the runs overlaid, and each
 * run's config.json and run.json (layout, memory per buffer, the --profile time split,
 * the checkpoints written). */
#ifndef LOOM_REPORT_H
#define LOOM_REPORT_H

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads DIR/metrics.jsonl (and DIR/config.json and DIR/run.json when present) of each of the n dirs and
 * writes the page to `out` (aside, then renamed). A missing or malformed metrics file
 * is an error naming it and its line. */
loom_status loom_report_write(const char *const *dirs, int n, const char *out);

#ifdef __cplusplus
}
#endif
#endif
