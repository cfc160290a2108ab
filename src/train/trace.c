/* Chrome trace-event output for loom train --trace. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "train/trace.h"

loom_status loom_trace_init(loom_trace *t, size_t cap, int rank) {
    memset(t, 0, sizeof *t);
    t->ev = loom_alloc(cap * sizeof *t->ev, "trace buffer");
    if (!t->ev) return LOOM_ERR_NOMEM;
    t->cap = cap;
    t->rank = rank;
    t->origin = loom_now();
    return LOOM_OK;
}

void loom_trace_free(loom_trace *t) {
    loom_free(t->ev);
    memset(t, 0, sizeof *t);
}

void loom_trace_add_span(loom_trace *t, const char *name, int arg, int tid, double t0, double t1) {
    if (!t || !t->ev) return;
    if (t->n == t->cap) {
        t->dropped++;
        return;
    }
    t->ev[t->n++] = (loom_trace_event){name, arg, tid, t0, t1};
}

void loom_trace_add(loom_trace *t, const char *name, int arg, double t0) {
    if (t) loom_trace_add_span(t, name, arg, 0, t0, loom_now());
}

loom_status loom_trace_write(const loom_trace *t, const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return loom_error(LOOM_ERR_IO, "--trace: cannot create %s: %s", path, strerror(errno));
    fprintf(fp, "[\n");
    for (size_t i = 0; i < t->n; i++) {
        const loom_trace_event *e = &t->ev[i];
        fprintf(fp, "{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.1f, \"dur\": %.1f", e->name,
                t->rank, e->tid, (e->t0 - t->origin) * 1e6, (e->t1 - e->t0) * 1e6);
        if (e->arg >= 0) fprintf(fp, ", \"args\": {\"n\": %d}", e->arg);
        fprintf(fp, "},\n");
    }
    fprintf(fp, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"rank %d%s\"}}\n]\n",
            t->rank, t->rank, t->dropped ? " (trace buffer full: later events dropped)" : "");
    if (fclose(fp) != 0) return loom_error(LOOM_ERR_IO, "--trace: write to %s failed: %s", path, strerror(errno));
    return LOOM_OK;
}
