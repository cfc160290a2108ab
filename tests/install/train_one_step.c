/* Built against an installed loom (pkg-config --cflags --libs loom) by tests/cli/install.sh:
 * trains one AdamW step of the tiny GPT-2 through the public API and checks that the
 * loss on the same batch went down. Prints "loss A -> B". */
#include <math.h>
#include <stdio.h>

#include <loom/model.h>
#include <loom/optim.h>

int main(void) {
    loom_gpt_config cfg;
    loom_gpt *g = NULL;
    enum { B = 2, T = 16 };
    if (loom_gpt_preset("tiny", &cfg) || loom_gpt_init(&g, &cfg, B, T, 1, "cpu")) {
        fprintf(stderr, "train_one_step: %s\n", loom_error_msg());
        return 1;
    }
    loom_gpt_init_weights(g, 7);
    int32_t in[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) in[i] = (int32_t)((i * 31 + 5) % cfg.vocab_size);
    for (int i = 0; i < B * T; i++) tg[i] = in[(i + 1) % (B * T)];
    loom_adamw_config oc = {.lr = 1e-3f, .min_lr = 1e-3f, .warmup = 0, .total_steps = 1, .beta1 = 0.9f,
                            .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.0f, .clip = 1.0f};
    loom_adamw opt;
    if (loom_adamw_init(&opt, &oc, g->sizes.n_params)) {
        fprintf(stderr, "train_one_step: %s\n", loom_error_msg());
        return 1;
    }
    loom_gpt_zero_grad(g, NULL);
    const float before = loom_gpt_forward(g, in, tg, B, T, 1.0f / (B * T));
    loom_gpt_backward(g, in, B, T);
    if (loom_adamw_step(&opt, g, oc.lr, loom_grad_norm(g, g->grads))) {
        fprintf(stderr, "train_one_step: %s\n", loom_error_msg());
        return 1;
    }
    const float after = loom_gpt_forward(g, in, tg, B, T, 0.0f);
    printf("loss %.6f -> %.6f\n", before, after);
    loom_adamw_free(&opt);
    loom_gpt_free(g);
    return isfinite(before) && isfinite(after) && after < before ? 0 : 1;
}
