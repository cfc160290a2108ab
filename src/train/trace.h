/* Per-rank timelines in Chrome's trace-event JSON (opens in Perfetto or
 * chrome://tracing): complete events ("ph": "X") with this rank as the process. Events
 * go into a buffer sized at start-up; when it is full, later events are counted and
 * dropped, so recording never allocates inside a step. */
#ifndef LOOM_TRAIN_TRACE_H
#define LOOM_TRAIN_TRACE_H

#include <stddef.h>

#include "loom/core.h"

typedef struct loom_trace_event {
    const char *name; /* a string literal */
    int arg;          /* step or micro-batch number, -1 for none */
    int tid;          /* 0: the main thread; 1: the communication thread */
    double t0, t1;    /* loom_now() seconds */
} loom_trace_event;

typedef struct loom_trace {
    loom_trace_event *ev;
    size_t n, cap, dropped;
    int rank;
    double origin;      /* time zero of the file, on rank 0's clock */
    double offset, rtt; /* this rank's clock + offset = rank 0's (loom_dist_clock_offset) */
} loom_trace;

loom_status loom_trace_init(loom_trace *t, size_t cap, int rank);
void loom_trace_free(loom_trace *t);
/* Records [t0, now) under name; a no-op for a NULL trace. */
void loom_trace_add(loom_trace *t, const char *name, int arg, double t0);
/* Records [t0, t1) on thread row tid. */
void loom_trace_add_span(loom_trace *t, const char *name, int arg, int tid, double t0, double t1);
/* Puts the events on rank 0's clock: offset and rtt from loom_dist_clock_offset, origin
 * rank 0's time zero; then every rank's file has one time axis. */
void loom_trace_align(loom_trace *t, double offset, double rtt, double origin);
/* Writes the events to path as a JSON array. */
loom_status loom_trace_write(const loom_trace *t, const char *path);

#endif
