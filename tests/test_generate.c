/* Generation: KV-cache logits equal a full forward pass over the same tokens (fp32
 * tolerance; bit for bit with the ref backend, whose kernels do the same arithmetic for a
 * row whatever the batch) at every position and for every row, for GPT-2 and for Llama
 * (grouped-query heads, tied and untied head), also with rows at different positions;
 * sampling is deterministic for a seed and honours temperature 0, top-k and top-p;
 * cached and uncached generation choose the same tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "loom/model.h"

#include "check.h"

enum { B = 3, T = 20 };

/* A model of cfg with capacity (B, T) on a backend: its init weights times 4, so that
 * the logits are far from uniform. */
static loom_gpt *model_new(const loom_gpt_config *cfg, const char *backend) {
    loom_gpt *g;
    if (loom_gpt_init(&g, cfg, B, T, 0, backend)) {
        printf("FAIL: loom_gpt_init: %s\n", loom_error_msg());
        exit(1);
    }
    loom_gpt_init_weights(g, 7);
    for (size_t i = 0; i < g->sizes.n_params; i++) g->params[i] *= 4.0f;
    return g;
}

/* Row b starts offset[b] steps late (feeding position 0 until then) and, once at T - 1,
 * stays there: every step the rows sit at different positions. Each position's logits
 * must be the full forward's (bitwise: exactly). */
static void check_kv_vs_full(const char *what, loom_gpt *g, const int offset[B], int bitwise) {
    const int V = g->cfg.vocab_size;
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 37 + 11) % V;
    loom_gpt_forward(g, tokens, NULL, B, T, 0.0f);
    float *full = malloc(sizeof(float) * B * T * V);
    memcpy(full, g->logits, sizeof(float) * B * T * V);
    double maxref = 0;
    for (int i = 0; i < B * T * V; i++) maxref = fmax(maxref, fabs(full[i]));

    loom_gpt_kv *kv;
    CHECK(loom_gpt_kv_init(&kv, g, B) == LOOM_OK, "%s: kv_init: %s", what, loom_error_msg());
    if (!kv) return;
    int maxoff = 0, compared = 0;
    for (int b = 0; b < B; b++) maxoff = offset[b] > maxoff ? offset[b] : maxoff;
    double maxdiff = 0;
    for (int s = 0; s < T + maxoff; s++) {
        int32_t tok[B];
        int pos[B];
        for (int b = 0; b < B; b++) {
            const int t = s - offset[b];
            pos[b] = t < 0 ? 0 : t >= T ? T - 1 : t;
            tok[b] = tokens[b * T + pos[b]];
        }
        const float *lg = loom_gpt_kv_step(g, kv, tok, pos);
        CHECK(lg != NULL, "%s: kv_step: %s", what, loom_error_msg());
        if (!lg) break;
        for (int b = 0; b < B; b++) {
            if (s - offset[b] < 0 || s - offset[b] >= T) continue; /* a repeat */
            compared++;
            for (int v = 0; v < V; v++)
                maxdiff = fmax(maxdiff, fabs(lg[b * V + v] - full[((size_t)b * T + pos[b]) * V + v]));
        }
    }
    printf("%s (%s): KV cache vs full forward: max |diff| %.3g (max |logit| %.3g)\n", what,
           ((const loom_backend *)g->backend)->name, maxdiff, maxref);
    CHECK(compared == B * T, "%s: compared %d positions", what, compared);
    CHECK(maxdiff <= (bitwise ? 0.0 : 1e-5 * maxref + 1e-6), "%s: KV-cache logits differ from the full forward by %.3g",
          what, maxdiff);
    loom_gpt_kv_free(kv);
    free(full);
}

/* Generation is deterministic for a seed, and the KV cache and recomputation agree. */
static void check_generate(const char *what, const loom_gpt *g) {
    const int32_t p0[] = {5, 6, 7}, p1[] = {9}, p2[] = {1, 2};
    const int32_t *prompts[3] = {p0, p1, p2};
    const int plen[3] = {3, 1, 2};
    int32_t outs[3][3][8];
    int olen[3][3];
    for (int run = 0; run < 3; run++) {
        loom_sample_opts go = {.max_tokens = 8, .temperature = 0.8f, .top_k = 20, .top_p = 0.95f, .seed = 42,
                               .eot = -1, .use_kv_cache = run != 1};
        int32_t *outp[3] = {outs[run][0], outs[run][1], outs[run][2]};
        CHECK(loom_generate(g, 3, prompts, plen, &go, NULL, NULL, outp, olen[run]) == LOOM_OK, "%s: generate: %s",
              what, loom_error_msg());
    }
    CHECK(!memcmp(outs[0], outs[1], sizeof outs[0]) && !memcmp(olen[0], olen[1], sizeof olen[0]),
          "%s: KV-cache and full-recompute generation chose different tokens", what);
    CHECK(!memcmp(outs[0], outs[2], sizeof outs[0]), "%s: the same seed chose different tokens", what);
    CHECK(olen[0][0] == 8 && olen[0][1] == 8 && olen[0][2] == 8, "%s: 8 new tokens per row", what);
}

/* top-k keeps the k most likely (ties by lower id) in order: the same choices, with
 * top-p after it, as sorting the whole vocabulary, on logits with many ties. */
typedef struct prob_id {
    float p;
    int32_t id;
} prob_id;

static void check_top_k_vs_full_sort(void) {
    enum { NV = 1000 };
    static float lg[NV], sc[2 * NV];
    static prob_id ref[NV];
    int agree = 0, draws = 0;
    for (int i = 0; i < NV; i++) lg[i] = (float)((i * 7919 + 13) % 23) * 0.25f;
    const int ks[] = {1, 5, 40, 999};
    const float ps[] = {1.0f, 0.9f, 0.5f};
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
        for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
            const loom_sample_opts so = {.temperature = 0.7f, .top_k = ks[a], .top_p = ps[c]};
            int32_t best = 0;
            for (int i = 1; i < NV; i++) best = lg[i] > lg[best] ? i : best;
            for (int i = 0; i < NV; i++) ref[i].p = expf((lg[i] - lg[best]) / so.temperature), ref[i].id = i;
            for (int i = 1; i < NV; i++) /* insertion sort: p descending, then id ascending */
                for (int j = i; j > 0; j--) {
                    const prob_id t = ref[j], prev = ref[j - 1];
                    if (t.p < prev.p || (t.p == prev.p && t.id > prev.id)) break;
                    ref[j] = prev, ref[j - 1] = t;
                }
            int n = ks[a];
            double total = 0, kept = 0, sum = 0;
            for (int i = 0; i < n; i++) total += ref[i].p;
            for (int i = 0; i < n && ps[c] < 1.0f; i++)
                if ((kept += ref[i].p) >= ps[c] * total) {
                    n = i + 1;
                    break;
                }
            for (int i = 0; i < n; i++) sum += ref[i].p;
            for (int d = 0; d < 200; d++, draws++) {
                const float u = (d + 0.5f) / 200;
                double acc = 0, target = (double)u * sum;
                int32_t want = ref[n - 1].id;
                for (int i = 0; i < n; i++)
                    if ((acc += ref[i].p) > target) {
                        want = ref[i].id;
                        break;
                    }
                agree += loom_sample_token(lg, NV, &so, u, sc) == want;
            }
        }
    CHECK(agree == draws, "top-k / top-p: %d of %d draws differ from the full sort's", draws - agree, draws);
}

int main(void) {
    const int same[B] = {0, 0, 0}, staggered[B] = {0, 3, 7};
    const loom_gpt_config gpt2 = {.vocab_size = 97, .block_size = 24, .n_layer = 2, .n_embd = 32, .n_head = 4};
    loom_gpt *g = model_new(&gpt2, "ref");
    check_kv_vs_full("gpt2", g, same, 1);
    check_kv_vs_full("gpt2, rows at different positions", g, staggered, 1);
    loom_gpt_free(g);
    g = model_new(&gpt2, "cpu");
    check_kv_vs_full("gpt2", g, same, 0);
    check_kv_vs_full("gpt2, rows at different positions", g, staggered, 0);

    /* sampling */
    float logits[5] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f}, scratch[10];
    loom_sample_opts o = {.max_tokens = 8, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .eot = -1};
    CHECK(loom_sample_token(logits, 5, &o, 0.9f, scratch) == 1, "greedy picks the first maximum");
    o.temperature = 1.0f;
    o.top_k = 2;
    int seen[5] = {0};
    for (int i = 0; i < 1000; i++) seen[loom_sample_token(logits, 5, &o, (i + 0.5f) / 1000, scratch)]++;
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[4] == 0 && seen[1] > 400 && seen[3] > 400, "top-k 2 keeps ids 1 and 3");
    o.top_k = 0;
    o.top_p = 0.3f; /* id 1 alone holds 1/2.52 = 0.40 of the mass */
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 1000; i++) seen[loom_sample_token(logits, 5, &o, (i + 0.5f) / 1000, scratch)]++;
    CHECK(seen[1] == 1000, "top-p 0.3 keeps only the most likely id (tie broken by lower id)");
    o.top_p = 1.0f;
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 1000; i++) seen[loom_sample_token(logits, 5, &o, (i + 0.5f) / 1000, scratch)]++;
    CHECK(seen[4] > 0 && seen[4] < seen[0] && seen[0] < seen[2] && seen[2] < seen[1], "full softmax order");

    check_top_k_vs_full_sort();
    check_generate("gpt2", g);
    loom_gpt_free(g);

    /* Llama: grouped-query heads (3 query heads per key/value head), untied and tied */
    for (int tied = 0; tied < 2; tied++) {
        const loom_gpt_config llama = {.vocab_size = 97, .block_size = 24, .n_layer = 2, .n_embd = 48, .n_head = 6,
                                       .arch = LOOM_ARCH_LLAMA, .n_kv_head = 2, .ffn_dim = 80, .untied = !tied,
                                       .rope_theta = 10000.0f, .norm_eps = 1e-5f};
        const char *name = tied ? "llama, tied" : "llama, untied";
        char what[64];
        snprintf(what, sizeof what, "%s, rows at different positions", name);
        for (int cpu = 0; cpu < 2; cpu++) {
            g = model_new(&llama, cpu ? "cpu" : "ref");
            check_kv_vs_full(name, g, same, !cpu);
            check_kv_vs_full(what, g, staggered, !cpu);
            if (cpu) check_generate(name, g);
            loom_gpt_free(g);
        }
    }
    return CHECK_FINISH("test_generate");
}
