/* Token sampling and the generation loop: every row feeds one token per step (its
 * next prompt token, or the token it just sampled), so all rows share the position
 * and one KV-cache step serves the batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/model.h"

typedef struct prob_idx {
    float p;
    int32_t id;
} prob_idx;

static int cmp_prob_desc(const void *a, const void *b) {
    const prob_idx *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* cmp_prob_desc's order: a before b */
static int prob_before(const prob_idx *a, const prob_idx *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static void heap_sift(prob_idx *h, int n, int i) { /* h[0] is the last of the n in the order */
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && prob_before(&h[c], &h[c + 1])) c++;
        if (!prob_before(&h[i], &h[c])) return;
        prob_idx t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* Moves the first k of pi(V) in cmp_prob_desc's order (a total order: ties by id) to
 * pi[0, k), sorted: a k-heap over the V, then a sort of the k, instead of sorting all V. */
static void top_k_sorted(prob_idx *pi, int V, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift(pi, k, i);
    for (int i = k; i < V; i++)
        if (prob_before(&pi[i], &pi[0])) {
            pi[0] = pi[i];
            heap_sift(pi, k, 0);
        }
    qsort(pi, k, sizeof *pi, cmp_prob_desc);
}

int32_t loom_sample_token(const float *logits, int V, const loom_sample_opts *o, float u, float *scratch) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (o->temperature <= 0.0f) return best;
    prob_idx *pi = (prob_idx *)scratch; /* 2*V floats hold V (float, int32) pairs */
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        pi[i].p = expf((logits[i] - logits[best]) / o->temperature);
        pi[i].id = i;
        sum += pi[i].p;
    }
    int n = V;
    if ((o->top_k > 0 && o->top_k < V) || o->top_p < 1.0f) {
        if (o->top_k > 0 && o->top_k < V) {
            n = o->top_k;
            top_k_sorted(pi, V, n);
        } else {
            qsort(pi, V, sizeof *pi, cmp_prob_desc);
        }
        if (o->top_p < 1.0f) {
            double kept = 0.0, total = 0.0;
            for (int i = 0; i < n; i++) total += pi[i].p;
            for (int i = 0; i < n; i++) {
                kept += pi[i].p;
                if (kept >= o->top_p * total) {
                    n = i + 1;
                    break;
                }
            }
        }
        sum = 0.0;
        for (int i = 0; i < n; i++) sum += pi[i].p;
    }
    double target = (double)u * sum, acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += pi[i].p;
        if (acc > target) return pi[i].id;
    }
    return pi[n - 1].id;
}

loom_status loom_generate(const loom_gpt *g, int B, const int32_t *const *prompts, const int *prompt_len,
                          const loom_sample_opts *o, void (*on_token)(void *ctx, int row, int32_t id), void *ctx,
                          int32_t **out, int *out_len) {
    const int V = g->cfg.vocab_size, Tm = g->cfg.block_size;
    int max_prompt = 0;
    for (int b = 0; b < B; b++) {
        if (prompt_len[b] < 1) return loom_error(LOOM_ERR_ARG, "prompt %d is empty", b + 1);
        if (prompt_len[b] > max_prompt) max_prompt = prompt_len[b];
        for (int t = 0; t < prompt_len[b]; t++)
            if (prompts[b][t] < 0 || prompts[b][t] >= V)
                return loom_error(LOOM_ERR_ARG, "prompt %d: token %d is outside the vocabulary of %d", b + 1,
                                  prompts[b][t], V);
        out_len[b] = 0;
    }
    if (max_prompt >= Tm)
        return loom_error(LOOM_ERR_ARG, "a prompt of %d tokens leaves no room in the block size %d", max_prompt, Tm);
    loom_gpt_kv *kv = NULL;
    loom_gpt *full = NULL;
    loom_status st = o->use_kv_cache ? loom_gpt_kv_init(&kv, g, B) : loom_gpt_init(&full, &g->cfg, B, Tm, 0, "cpu");
    if (st) return st;
    if (full) memcpy(full->params, g->params, g->sizes.n_params * sizeof(float));
    int32_t *tok = malloc(sizeof(int32_t) * B), *hist = malloc(sizeof(int32_t) * (size_t)B * Tm);
    int *pos = malloc(sizeof(int) * B), *done = calloc(B, sizeof(int));
    float *scratch = malloc(sizeof(float) * 2 * (size_t)V);
    int32_t *prefix = full ? malloc(sizeof(int32_t) * (size_t)B * Tm) : NULL; /* the uncached path's input */
    if (!tok || !hist || !pos || !done || !scratch || (full && !prefix)) {
        st = loom_error(LOOM_ERR_NOMEM, "out of memory for generation");
        goto end;
    }
    for (int step = 0; step + 1 < Tm; step++) {
        int active = 0;
        for (int b = 0; b < B; b++) {
            int k = step - prompt_len[b];
            /* a finished row keeps feeding its last token; its outputs are ignored */
            int t = k < 0 ? prompts[b][step] : k < out_len[b] ? out[b][k] : hist[(size_t)b * Tm + step - 1];
            tok[b] = t;
            pos[b] = step;
            hist[(size_t)b * Tm + step] = t;
            active |= !done[b];
        }
        if (!active) break;
        const float *logits;
        if (kv) {
            if (!(logits = loom_gpt_kv_step(g, kv, tok, pos))) {
                st = LOOM_ERR_ARG;
                goto end;
            }
        } else { /* the whole prefix again: rows are (B, step+1) */
            for (int b = 0; b < B; b++) memcpy(prefix + (size_t)b * (step + 1), hist + (size_t)b * Tm, sizeof(int32_t) * (step + 1));
            loom_gpt_forward(full, prefix, NULL, B, step + 1, 0.0f);
            if ((st = full->status)) goto end;
            for (int b = 0; b < B; b++) /* gather each row's last position into row b of the logits */
                memmove(full->logits + (size_t)b * V, full->logits + ((size_t)b * (step + 1) + step) * V, sizeof(float) * V);
            logits = full->logits;
        }
        for (int b = 0; b < B; b++) {
            if (done[b] || step + 1 < prompt_len[b]) continue; /* still reading the prompt */
            float u = loom_rng_uniform(o->seed, (uint64_t)step * B + b);
            int32_t id = loom_sample_token(logits + (size_t)b * V, V, o, u, scratch);
            out[b][out_len[b]++] = id;
            if (on_token) on_token(ctx, b, id);
            if (out_len[b] >= o->max_tokens || id == o->eot) done[b] = 1;
        }
    }
end:
    free(tok);
    free(hist);
    free(pos);
    free(done);
    free(scratch);
    free(prefix);
    loom_gpt_kv_free(kv);
    loom_gpt_free(full);
    return st;
}
