/* The run report (include/loom/report.h): metrics.jsonl parsed line by line, each metric
 * one inline SVG line plot with every run as one path, plus the runs' configs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "loom/report.h"

/* The metrics a plot is drawn for, in page order: metrics.jsonl key, axis label. */
static const char *const METRICS[][2] = {
    {"loss", "training loss"}, {"val_loss", "validation loss"}, {"lr", "learning rate"},
    {"grad_norm", "gradient norm"}, {"tokens_per_s", "tokens/s"}, {"mfu", "MFU (fraction of the fp32 peak)"},
    {"ms", "step time (ms)"}};
enum { N_METRICS = sizeof METRICS / sizeof METRICS[0], MAX_RUNS = 16 };
static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                                     "#e377c2"};

typedef struct series {
    double *x, *y; /* step (or seconds), value */
    size_t n, cap;
} series;

typedef struct run {
    const char *dir, *name;
    series m[N_METRICS], loss_t; /* loss over wall-clock seconds */
    loom_json_doc *config, *info; /* config.json, run.json (either may be absent) */
} run;

static int push(series *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *x2 = realloc(s->x, cap * sizeof *x2), *y2 = x2 ? realloc(s->y, cap * sizeof *y2) : NULL;
        if (x2) s->x = x2;
        if (!y2) return -1;
        s->y = y2, s->cap = cap;
    }
    s->x[s->n] = x, s->y[s->n++] = y;
    return 0;
}

static loom_status read_run(run *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->dir);
    size_t len;
    char *buf = loom_read_file(path, &len);
    if (!buf) return loom_error(LOOM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    loom_status st = LOOM_OK;
    double t = 0.0;
    size_t line = 0;
    for (char *p = buf, *nl; p < buf + len && !st; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) nl = buf + len; /* a last line without newline: a run still writing, or killed */
        line++;
        if (nl == p) continue;
        loom_json_error err;
        loom_json_doc *doc = loom_json_parse(p, (size_t)(nl - p), NULL, &err);
        const loom_json *o = doc ? loom_json_root(doc) : NULL, *step = o ? loom_json_get(o, "step") : NULL;
        if (!doc || o->type != LOOM_JSON_OBJECT || !step || step->type != LOOM_JSON_NUMBER) {
            if (nl == buf + len) { /* a cut last line is not an error */
                loom_json_free(doc);
                break;
            }
            st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: %s", path, line, doc ? "not a metrics line (no \"step\")" : err.msg);
        }
        for (int k = 0; k < N_METRICS && !st; k++) {
            const loom_json *v = loom_json_get(o, METRICS[k][0]);
            if (v && v->type == LOOM_JSON_NUMBER && isfinite(v->number) && push(&r->m[k], step->number, v->number))
                st = loom_error(LOOM_ERR_NOMEM, "out of memory reading %s", path);
        }
        const loom_json *ms = o && !st ? loom_json_get(o, "ms") : NULL, *loss = o && !st ? loom_json_get(o, "loss") : NULL;
        if (ms && loss && ms->type == LOOM_JSON_NUMBER && loss->type == LOOM_JSON_NUMBER) {
            t += ms->number / 1e3;
            if (push(&r->loss_t, t, loss->number)) st = loom_error(LOOM_ERR_NOMEM, "out of memory reading %s", path);
        }
        loom_json_free(doc);
    }
    free(buf);
    if (!st && r->m[0].n == 0) st = loom_error(LOOM_ERR_FORMAT, "%s: no steps", path);
    loom_json_doc **docs[2] = {&r->config, &r->info};
    static const char *names[2] = {"config.json", "run.json"};
    for (int i = 0; i < 2 && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", r->dir, names[i]);
        char *text = loom_read_file(path, &len);
        if (text) *docs[i] = loom_json_parse(text, len, NULL, NULL); /* shown when it parses */
        free(text);
    }
    return st;
}

static void put_escaped(FILE *fp, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (c == '&') fputs("&amp;", fp);
        else if (c == '<') fputs("&lt;", fp);
        else if (c == '>') fputs("&gt;", fp);
        else if (c == '"') fputs("&quot;", fp);
        else fputc(c, fp);
    }
}

/* A round tick step for the span (1, 2 or 5 times a power of ten), about 5 ticks. */
static double tick_step(double span) {
    const double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return p * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

/* One plot: every run's series s(run) as a path, axes with ticks and labels. */
static void plot(FILE *fp, const char *id, const char *title, const char *xlabel, run *runs, int n,
                 series *(*pick)(run *, int), int k) {
    const double W = 640, H = 280, L = 70, R = 20, T = 30, B = 45;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    size_t points = 0;
    for (int i = 0; i < n; i++) {
        const series *s = pick(&runs[i], k);
        for (size_t j = 0; j < s->n; j++) {
            x0 = fmin(x0, s->x[j]), x1 = fmax(x1, s->x[j]), y0 = fmin(y0, s->y[j]), y1 = fmax(y1, s->y[j]);
            points++;
        }
    }
    if (!points) return; /* a metric no run has (val loss without --val-data) */
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + fmax(fabs(y0) * 0.1, 1e-12);
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    fprintf(fp, "<h3>%s</h3>\n<svg id=\"plot-%s\" class=\"plot\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                "data-x0=\"%.9g\" data-x1=\"%.9g\" data-y0=\"%.9g\" data-y1=\"%.9g\">\n",
            title, id, W, H, W, H, x0, x1, y0, y1);
    fprintf(fp, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" class=\"frame\"/>\n", L, T, W - L - R, H - T - B);
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    for (int axis = 0; axis < 2; axis++) {
        const double lo = axis ? y0 : x0, hi = axis ? y1 : x1, st = tick_step(hi - lo);
        for (double v = ceil(lo / st) * st; v <= hi + 1e-9 * st; v += st) {
            if (axis)
                fprintf(fp, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/><text class=\"tick\" "
                            "x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
                        L, W - R, PY(v), PY(v), L - 6, PY(v) + 4, fabs(v) < 1e-12 * st ? 0.0 : v);
            else
                fprintf(fp, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/><text class=\"tick\" "
                            "x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.4g</text>\n",
                        PX(v), PX(v), T, H - B, PX(v), H - B + 16, v);
        }
    }
    fprintf(fp, "<text class=\"axis-label\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2,
            H - 8, xlabel);
    fprintf(fp, "<text class=\"axis-label\" x=\"14\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.0f)\">%s"
                "</text>\n", (T + H - B) / 2, (T + H - B) / 2, title);
    for (int i = 0; i < n; i++) {
        const series *s = pick(&runs[i], k);
        if (!s->n) continue;
        fprintf(fp, "<path class=\"series\" data-run=\"%d\" data-points=\"%zu\" stroke=\"%s\" d=\"", i, s->n,
                COLORS[i % (int)(sizeof COLORS / sizeof *COLORS)]);
        for (size_t j = 0; j < s->n; j++) fprintf(fp, "%s%.2f,%.2f", j ? " L" : "M", PX(s->x[j]), PY(s->y[j]));
        fprintf(fp, "\"/>\n");
    }
#undef PX
#undef PY
    fprintf(fp, "</svg>\n");
}

static void put_value(FILE *fp, const loom_json *v) {
    if (v->type == LOOM_JSON_STRING || v->type == LOOM_JSON_NUMBER) {
        put_escaped(fp, v->str, v->len);
    } else if (v->type == LOOM_JSON_BOOL) {
        fputs(v->boolean ? "true" : "false", fp);
    } else if (v->type == LOOM_JSON_ARRAY) { /* e.g. "architectures": ["GPT2LMHeadModel"] */
        for (size_t i = 0; i < v->n; i++) {
            if (i) fputs(", ", fp);
            put_value(fp, &v->items[i]);
        }
    } else {
        fputs(loom_json_type_name(v->type), fp);
    }
}

/* An object's members as rows; with `share`, each number also as a bar of its share of
 * the sum (the memory per buffer, the profile's time split). */
static void table_object(FILE *fp, const char *cls, const loom_json *o, int share) {
    double sum = 0.0;
    for (size_t j = 0; j < o->n; j++)
        if (o->items[j].type == LOOM_JSON_NUMBER && strcmp(o->items[j].key, "all_allocated")) sum += o->items[j].number;
    fprintf(fp, "<table class=\"%s\">\n", cls);
    for (size_t j = 0; j < o->n; j++) {
        const loom_json *v = &o->items[j];
        fputs("<tr><th>", fp);
        put_escaped(fp, v->key, v->key_len);
        fputs("</th><td>", fp);
        put_value(fp, v);
        fputs("</td>", fp);
        if (share && v->type == LOOM_JSON_NUMBER && sum > 0 && strcmp(v->key, "all_allocated")) {
            const double f = v->number / sum;
            fprintf(fp, "<td>%.1f%%</td><td><svg class=\"bar\" width=\"200\" height=\"10\"><rect width=\"%.1f\" "
                        "height=\"10\" fill=\"#1f77b4\"/></svg></td>", 100 * f, 200 * f);
        }
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

/* An array of objects as a table, the columns the first one's keys. */
static void table_array(FILE *fp, const char *cls, const loom_json *a) {
    if (!a->n || a->items[0].type != LOOM_JSON_OBJECT) {
        fputs("<p>none</p>\n", fp);
        return;
    }
    const loom_json *h = &a->items[0];
    fprintf(fp, "<table class=\"%s\">\n<tr>", cls);
    for (size_t j = 0; j < h->n; j++) {
        fputs("<th>", fp);
        put_escaped(fp, h->items[j].key, h->items[j].key_len);
        fputs("</th>", fp);
    }
    fputs("</tr>\n", fp);
    for (size_t i = 0; i < a->n; i++) {
        fputs("<tr>", fp);
        for (size_t j = 0; j < h->n; j++) {
            const loom_json *v = loom_json_get(&a->items[i], h->items[j].key);
            fputs("<td>", fp);
            if (v) put_value(fp, v);
            fputs("</td>", fp);
        }
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

static series *pick_metric(run *r, int k) { return &r->m[k]; }
static series *pick_loss_time(run *r, int k) {
    (void)k;
    return &r->loss_t;
}

loom_status loom_report_write(const char *const *dirs, int n, const char *out) {
    if (n < 1 || n > MAX_RUNS) return loom_error(LOOM_ERR_ARG, "report: give 1 to %d run directories (got %d)", MAX_RUNS, n);
    run runs[MAX_RUNS];
    memset(runs, 0, sizeof runs);
    loom_status st = LOOM_OK;
    for (int i = 0; i < n && !st; i++) {
        runs[i].dir = dirs[i];
        const char *slash = strrchr(dirs[i], '/');
        runs[i].name = slash && slash[1] ? slash + 1 : dirs[i];
        st = read_run(&runs[i]);
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", out, (long)getpid());
    FILE *fp = st ? NULL : fopen(tmp, "w");
    if (!st && !fp) st = loom_error(LOOM_ERR_IO, "--out: cannot create %s: %s", tmp, strerror(errno));
    if (fp) {
        fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>loom report</title>\n<style>\n"
              "body{font-family:sans-serif;margin:24px;color:#222} .plot{display:block;margin:8px 0 24px}\n"
              ".frame{fill:none;stroke:#888} .grid{stroke:#eee} .tick{font-size:11px;fill:#555}\n"
              ".axis-label{font-size:12px;fill:#222} .series{fill:none;stroke-width:1.5}\n"
              "table{border-collapse:collapse;margin:8px 0 24px} td,th{border:1px solid #ccc;padding:2px 8px;"
              "font-size:13px;text-align:left}\n</style></head><body>\n<h1>loom report</h1>\n<h2>Runs</h2>\n<ul>\n", fp);
        for (int i = 0; i < n; i++) {
            fprintf(fp, "<li class=\"run\"><span style=\"color:%s\">&#9632;</span> ", COLORS[i % 8]);
            put_escaped(fp, runs[i].dir, strlen(runs[i].dir));
            fprintf(fp, ": %zu steps</li>\n", runs[i].m[0].n);
        }
        fputs("</ul>\n<h2>Metrics over steps</h2>\n", fp);
        for (int k = 0; k < N_METRICS; k++) plot(fp, METRICS[k][0], METRICS[k][1], "step", runs, n, pick_metric, k);
        fputs("<h2>Over time</h2>\n", fp);
        plot(fp, "loss-time", "training loss", "seconds of training", runs, n, pick_loss_time, 0);
        for (int i = 0; i < n; i++) {
            const loom_json *c = runs[i].config ? loom_json_root(runs[i].config) : NULL;
            const loom_json *ri = runs[i].info ? loom_json_root(runs[i].info) : NULL;
            fputs("<h2>Run ", fp);
            put_escaped(fp, runs[i].dir, strlen(runs[i].dir));
            fputs("</h2>\n", fp);
            if (c && c->type == LOOM_JSON_OBJECT) {
                fputs("<h3>Model config</h3>\n", fp);
                table_object(fp, "config", c, 0);
            }
            static const char *const parts[][2] = {{"layout", "Layout"}, {"memory_mib_per_rank", "Memory per rank (MiB)"},
                                                   {"profile_ms_per_step", "Time per step (ms, --profile)"},
                                                   {"checkpoints", "Checkpoints written"}};
            for (int k = 0; ri && ri->type == LOOM_JSON_OBJECT && k < 4; k++) {
                const loom_json *v = loom_json_get(ri, parts[k][0]);
                if (!v) continue;
                fprintf(fp, "<h3>%s</h3>\n", parts[k][1]);
                if (v->type == LOOM_JSON_OBJECT) table_object(fp, parts[k][0], v, k == 1 || k == 2);
                else if (v->type == LOOM_JSON_ARRAY) table_array(fp, parts[k][0], v);
            }
        }
        fputs("</body></html>\n", fp);
        if (fclose(fp) != 0) st = loom_error(LOOM_ERR_IO, "--out: write to %s failed: %s", tmp, strerror(errno));
        if (!st && rename(tmp, out) != 0)
            st = loom_error(LOOM_ERR_IO, "--out: cannot rename %s to %s: %s", tmp, out, strerror(errno));
        if (st) unlink(tmp);
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < N_METRICS; k++) free(runs[i].m[k].x), free(runs[i].m[k].y);
        free(runs[i].loss_t.x), free(runs[i].loss_t.y);
        loom_json_free(runs[i].config);
        loom_json_free(runs[i].info);
    }
    return st;
}
