/* Pipeline parallelism's plan: the layer split and each stage's list of actions
 * (pipeline.h). GPipe: every forward, then every backward. 1F1B (PipeDream-Flush, as
 * Megatron-LM runs it): stage s runs min(p - s - 1, m) forwards ahead, then alternates
 * one forward and one backward, then drains the backwards; at most p - s micro-batches
 * are in flight on it, against m for GPipe, and the bubble is the same. Every stage
 * runs the backwards in micro-batch order, so each parameter's gradient is summed in
 * the same order whatever the schedule. */
#include <stdlib.h>
#include <string.h>

#include "loom/train.h"
#include "train/pipeline.h"

static const char *const kind_names[LOOM_PP_KINDS] = {[LOOM_PP_1F1B] = "1f1b", [LOOM_PP_GPIPE] = "gpipe"};

int loom_pp_schedule_parse(const char *s) {
    for (int k = 0; k < LOOM_PP_KINDS; k++)
        if (!strcmp(s, kind_names[k])) return k;
    return -1;
}

const char *loom_pp_kind_name(int kind) { return kind >= 0 && kind < LOOM_PP_KINDS ? kind_names[kind] : "?"; }

int loom_pp_schedule(int kind, int p, int m, int s, loom_pp_action *out) {
    int n = 0;
    if (kind == LOOM_PP_GPIPE) {
        for (int j = 0; j < m; j++) out[n++] = (loom_pp_action){'F', j};
        for (int j = 0; j < m; j++) out[n++] = (loom_pp_action){'B', j};
        return n;
    }
    const int warm = p - s - 1 < m ? p - s - 1 : m;
    for (int j = 0; j < warm; j++) out[n++] = (loom_pp_action){'F', j};
    for (int j = 0; j < m - warm; j++) {
        out[n++] = (loom_pp_action){'F', warm + j};
        out[n++] = (loom_pp_action){'B', j};
    }
    for (int j = m - warm; j < m; j++) out[n++] = (loom_pp_action){'B', j};
    return n;
}

int loom_pp_lists_run(int p, int m, const loom_pp_action *a, int *sets) {
    unsigned char *fdone = calloc((size_t)p * m + 1, 1), *bdone = calloc((size_t)p * m + 1, 1);
    int pos[LOOM_PP_MAX] = {0}, live[LOOM_PP_MAX] = {0}, ok = fdone && bdone && p <= LOOM_PP_MAX;
    for (int s = 0; s < p; s++) sets[s] = 0;
    for (int progress = 1; ok && progress;) {
        progress = 0;
        for (int s = 0; s < p; s++) {
            while (pos[s] < 2 * m) {
                const loom_pp_action x = a[(size_t)s * 2 * m + pos[s]];
                if (x.micro < 0 || x.micro >= m) { ok = 0; break; }
                const size_t i = (size_t)s * m + x.micro;
                if (x.op == 'F' ? fdone[i] : bdone[i]) { ok = 0; break; } /* twice */
                const int ready = x.op == 'F' ? s == 0 || fdone[i - m] : fdone[i] && (s == p - 1 || bdone[i + m]);
                if (!ready) break;
                if (x.op == 'F') fdone[i] = 1, live[s]++;
                else bdone[i] = 1, live[s]--;
                if (live[s] > sets[s]) sets[s] = live[s];
                pos[s]++;
                progress = 1;
            }
        }
    }
    int stuck = !ok;
    for (int s = 0; s < p; s++) stuck |= pos[s] != 2 * m;
    free(fdone);
    free(bdone);
    return stuck;
}

/* every stage's list of a schedule, run against the others */
static int simulate(int kind, int p, int m, int *sets) {
    loom_pp_action *a = malloc(sizeof *a * ((size_t)p * 2 * m + 1));
    if (!a) return 1;
    for (int s = 0; s < p; s++) loom_pp_schedule(kind, p, m, s, a + (size_t)s * 2 * m);
    const int stuck = loom_pp_lists_run(p, m, a, sets);
    free(a);
    return stuck;
}

/* The cost of a layer and of the LM head per token (forward multiply-adds), from the
 * description: a layer's weights and its attention over T positions; the head V x C. */
static void costs(const loom_gpt_config *cfg, int T, double *layer, double *head) {
    loom_gpt_sizes a, b;
    loom_gpt_compute_sizes(cfg, 1, T, 1, 0, &(loom_stage){0, 1, 1}, &a);
    loom_gpt_compute_sizes(cfg, 1, T, 1, 0, &(loom_stage){0, 2, 1}, &b);
    *layer = (double)(b.n_params - a.n_params) + 2.0 * T * cfg->n_embd;
    *head = (double)cfg->vocab_size * cfg->n_embd;
}

/* The contiguous split of L layers into p stages (each at least one) with the smallest
 * most expensive stage, the head's cost on the last; ties go to the earlier split. */
static void balance(int L, int p, double layer, double head, int *l0) {
    double best[LOOM_PP_MAX + 1][257];
    int cut[LOOM_PP_MAX + 1][257];
    /* best[k][n]: the first n layers over k stages (the last of them not the model's last) */
    for (int n = 0; n <= L; n++) best[1][n] = n * layer, cut[1][n] = 0;
    for (int k = 2; k <= p; k++)
        for (int n = k; n <= L; n++) {
            best[k][n] = 1e300;
            for (int c = k - 1; c < n; c++) {
                double v = best[k - 1][c] > (n - c) * layer ? best[k - 1][c] : (n - c) * layer;
                if (k == p && n == L) v = best[k - 1][c] > (n - c) * layer + head ? best[k - 1][c] : (n - c) * layer + head;
                if (v < best[k][n]) best[k][n] = v, cut[k][n] = c;
            }
        }
    if (p == 1) {
        l0[0] = 0;
        l0[1] = L;
        return;
    }
    l0[p] = L;
    for (int k = p, n = L; k >= 1; k--) {
        l0[k - 1] = cut[k][n];
        n = cut[k][n];
    }
}

loom_status loom_pp_plan_make(loom_pp_plan *pl, const loom_gpt_config *cfg, int T, int p, int m, int kind,
                              const char *layers) {
    memset(pl, 0, sizeof *pl);
    const int L = cfg->n_layer;
    if (p < 1 || p > LOOM_PP_MAX) return loom_error(LOOM_ERR_ARG, "--pp: must be 1 to %d (got %d)", LOOM_PP_MAX, p);
    if (p > L) return loom_error(LOOM_ERR_ARG, "--pp %d: more stages than the model's %d layers", p, L);
    if (L > 256) return loom_error(LOOM_ERR_ARG, "--pp: at most 256 layers (the model has %d)", L);
    pl->kind = kind, pl->stages = p, pl->micro = m;
    if (layers) {
        const char *q = layers;
        int s = 0, at = 0;
        while (*q) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q || v < 1 || s >= p)
                return loom_error(LOOM_ERR_ARG, "--pp-layers '%s': give %d positive layer counts, comma-separated", layers,
                                  p);
            pl->l0[s++] = at;
            at += (int)v;
            q = *end == ',' ? end + 1 : end;
            if (*end && *end != ',')
                return loom_error(LOOM_ERR_ARG, "--pp-layers '%s': give %d positive layer counts, comma-separated", layers,
                                  p);
        }
        if (s != p || at != L)
            return loom_error(LOOM_ERR_ARG, "--pp-layers '%s': %d stage(s) of %d layers in all; the run has %d stages and "
                              "the model %d layers", layers, s, at, p, L);
        pl->l0[p] = L;
    } else {
        double layer = 1, head = 0;
        if (L > 1) costs(cfg, T, &layer, &head);
        balance(L, p, layer, head, pl->l0);
    }
    if (simulate(kind, p, m, pl->sets))
        return loom_error(LOOM_ERR_ARG, "--pp-schedule %s: the schedule for %d stages and %d micro-batches does not run "
                          "to its end", loom_pp_kind_name(kind), p, m);
    return LOOM_OK;
}

loom_stage loom_pp_stage(const loom_pp_plan *pl, int s) {
    return (loom_stage){pl->l0[s], pl->l0[s + 1], pl->sets[s] > 0 ? pl->sets[s] : 1};
}
