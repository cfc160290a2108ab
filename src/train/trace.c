/* Chrome trace-event output for loom train --trace, and `loom trace merge`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "loom/train.h"
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

void loom_trace_align(loom_trace *t, double offset, double rtt, double origin) {
    t->offset = offset;
    t->rtt = rtt;
    t->origin = origin;
}

loom_status loom_trace_write(const loom_trace *t, const char *path) {
    FILE *fp = fopen(path, "w");
    if (!fp) return loom_error(LOOM_ERR_IO, "--trace: cannot create %s: %s", path, strerror(errno));
    fprintf(fp, "[\n");
    for (size_t i = 0; i < t->n; i++) {
        const loom_trace_event *e = &t->ev[i];
        fprintf(fp, "{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.1f, \"dur\": %.1f", e->name,
                t->rank, e->tid, (e->t0 + t->offset - t->origin) * 1e6, (e->t1 - e->t0) * 1e6);
        if (e->arg >= 0) fprintf(fp, ", \"args\": {\"n\": %d}", e->arg);
        fprintf(fp, "},\n");
    }
    fprintf(fp, "{\"name\": \"clock_sync\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"offset_us\": %.1f, "
            "\"round_trip_us\": %.1f}},\n", t->rank, t->offset * 1e6, t->rtt * 1e6);
    fprintf(fp, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"rank %d%s\"}}\n]\n",
            t->rank, t->rank, t->dropped ? " (trace buffer full: later events dropped)" : "");
    if (fclose(fp) != 0) return loom_error(LOOM_ERR_IO, "--trace: write to %s failed: %s", path, strerror(errno));
    return LOOM_OK;
}

/* Element i of array a as it was written: from its first byte to the next element's (or
 * to the array's closing bracket), less the comma and blanks between. */
static void raw_item(const char *buf, size_t close, const loom_json *a, size_t i, size_t *at, size_t *len) {
    size_t b = a->items[i].offset, e = i + 1 < a->n ? a->items[i + 1].offset : close;
    while (e > b && (buf[e - 1] == ' ' || buf[e - 1] == '\n' || buf[e - 1] == '\r' || buf[e - 1] == '\t')) e--;
    if (e > b && buf[e - 1] == ',') e--;
    while (e > b && (buf[e - 1] == ' ' || buf[e - 1] == '\n' || buf[e - 1] == '\r' || buf[e - 1] == '\t')) e--;
    *at = b, *len = e - b;
}

loom_status loom_trace_merge(const char *prefix, const char *out, int *ranks) {
    *ranks = 0;
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    FILE *fp = NULL;
    loom_status st = LOOM_OK;
    size_t events = 0;
    for (int r = 0;; r++) {
        snprintf(path, sizeof path, "%s.rank%d.json", prefix, r);
        size_t len = 0;
        char *buf = loom_read_file(path, &len);
        if (!buf) {
            if (errno == ENOENT && r > 0) break;
            st = loom_error(LOOM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        loom_json_error err;
        loom_json_doc *doc = loom_json_parse(buf, len, NULL, &err);
        const loom_json *a = doc ? loom_json_root(doc) : NULL;
        if (!doc) {
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu:%zu: %s", path, err.line, err.col, err.msg);
        } else if (a->type != LOOM_JSON_ARRAY) {
            st = loom_error(LOOM_ERR_FORMAT, "%s: not a trace (a JSON array of events)", path);
        } else {
            for (size_t i = 0; i < a->n && !st; i++) {
                const loom_json *pid = a->items[i].type == LOOM_JSON_OBJECT ? loom_json_get(&a->items[i], "pid") : NULL;
                if (!pid || pid->type != LOOM_JSON_NUMBER || pid->number != r)
                    st = loom_error(LOOM_ERR_FORMAT, "%s: event %zu is not rank %d's (no pid %d): files of another run?",
                                    path, i, r, r);
            }
        }
        if (!st && !fp && !(fp = fopen(tmp, "w"))) st = loom_error(LOOM_ERR_IO, "--out: cannot create %s: %s", tmp, strerror(errno));
        if (!st) {
            size_t close = len;
            while (close > 0 && buf[close - 1] != ']') close--;
            if (r == 0) fputs("[\n", fp);
            for (size_t i = 0; i < a->n; i++) {
                size_t at, n;
                raw_item(buf, close - 1, a, i, &at, &n);
                fprintf(fp, "%s%.*s", events++ ? ",\n" : "", (int)n, buf + at);
            }
            *ranks = r + 1;
        }
        loom_json_free(doc);
        free(buf);
        if (st) break;
    }
    if (fp) {
        if (!st) fputs("\n]\n", fp);
        if (fclose(fp) != 0 && !st) st = loom_error(LOOM_ERR_IO, "--out: write to %s failed: %s", tmp, strerror(errno));
        if (!st && rename(tmp, out) != 0) st = loom_error(LOOM_ERR_IO, "--out: cannot rename %s to %s: %s", tmp, out, strerror(errno));
        if (st) unlink(tmp);
    }
    return st;
}
