/* Generation: KV-cache logits equal a full forward pass over the same tokens (fp32
 * tolerance) at every position and for every row; sampling is deterministic for a
 * seed and honours temperature 0, top-k and top-p; cached and uncached generation
 * choose the same tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/model.h"

#include "check.h"

int main(void) {
    const loom_gpt_config cfg = {.vocab_size = 97, .block_size = 24, .n_layer = 2, .n_embd = 32, .n_head = 4};
    const int B = 3, T = 20, V = cfg.vocab_size;
    loom_gpt *g;
    if (loom_gpt_init(&g, &cfg, B, T, 0, "cpu")) return 1;
    loom_gpt_init_weights(g, 7);
    /* larger weights than GPT-2's init so that the logits are far from uniform */
    for (size_t i = 0; i < g->sizes.n_params; i++) g->params[i] *= 4.0f;
    int32_t tokens[3 * 20];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 37 + 11) % V;
    loom_gpt_forward(g, tokens, NULL, B, T, 0.0f);
    float *full = malloc(sizeof(float) * B * T * V);
    memcpy(full, g->logits, sizeof(float) * B * T * V);
    double maxref = 0;
    for (int i = 0; i < B * T * V; i++) maxref = fmax(maxref, fabs(full[i]));

    loom_gpt_kv *kv;
    if (loom_gpt_kv_init(&kv, g, B)) return 1;
    double maxdiff = 0;
    for (int t = 0; t < T; t++) {
        int32_t tok[3];
        int pos[3];
        for (int b = 0; b < B; b++) tok[b] = tokens[b * T + t], pos[b] = t;
        const float *lg = loom_gpt_kv_step(g, kv, tok, pos);
        for (int b = 0; b < B; b++)
            for (int v = 0; v < V; v++) maxdiff = fmax(maxdiff, fabs(lg[b * V + v] - full[((size_t)b * T + t) * V + v]));
    }
    printf("KV cache vs full forward: max |diff| %.3g (max |logit| %.3g)\n", maxdiff, maxref);
    CHECK(maxdiff <= 1e-5 * maxref + 1e-6, "KV-cache logits differ from the full forward by %.3g", maxdiff);
    loom_gpt_kv_free(kv);

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

    /* generation: deterministic for a seed; KV cache and recompute agree */
    const int32_t p0[] = {5, 6, 7}, p1[] = {9}, p2[] = {1, 2};
    const int32_t *prompts[3] = {p0, p1, p2};
    const int plen[3] = {3, 1, 2};
    int32_t outs[2][3][8];
    int olen[2][3];
    for (int run = 0; run < 2; run++) {
        loom_sample_opts go = {.max_tokens = 8, .temperature = 0.8f, .top_k = 20, .top_p = 0.95f, .seed = 42,
                               .eot = -1, .use_kv_cache = run == 0};
        int32_t *outp[3] = {outs[run][0], outs[run][1], outs[run][2]};
        CHECK(loom_generate(g, 3, prompts, plen, &go, NULL, NULL, outp, olen[run]) == LOOM_OK, "generate: %s",
              loom_error_msg());
    }
    CHECK(!memcmp(outs[0], outs[1], sizeof outs[0]) && !memcmp(olen[0], olen[1], sizeof olen[0]),
          "KV-cache and full-recompute generation chose different tokens");
    CHECK(olen[0][0] == 8 && olen[0][1] == 8 && olen[0][2] == 8, "8 new tokens per row");
    loom_gpt_free(g);
    free(full);
    printf("test_generate: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
