/* Whole-model parity with PyTorch: tests/pytorch/gpt2_ref.py builds the same GPT-2 in
 * float64 from the same weights and batches and dumps logits, loss, every gradient, and
 * the losses, grad norms, weights and AdamW moments after 10 steps (warmup, cosine,
 * clipping, accumulation over 2 micro-batches). We run loom's own kernels and training
 * step on the same inputs and compare. Usage: test_gpt_parity [FIXTURE [MODEL]]: with MODEL
 * (a Hugging Face model file, as tests/pytorch/llama_ref.py saves one) the config and the
 * weights come from it, else from the fixture. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/io.h"
#include "loom/safetensors.h"
#include "loom/train.h"

static int failures, checks;

static const float *tensor(const loom_st_file *f, const char *name, size_t *n) {
    const loom_st_tensor *t = loom_st_find(f, name);
    if (!t || t->dtype != LOOM_DTYPE_F32) {
        fprintf(stderr, "fixture: tensor %s missing or not F32\n", name);
        exit(1);
    }
    if (n) *n = (t->end - t->begin) / 4;
    return loom_st_data(f, t);
}

static double meta(const loom_st_file *f, const char *key) {
    const char *v = loom_st_meta(f, key);
    if (!v) {
        fprintf(stderr, "fixture: metadata %s missing\n", key);
        exit(1);
    }
    return atof(v);
}

/* max |a - ref| over a tensor, compared with tol_rel * max|ref| + tol_abs */
static void compare(const char *what, const float *a, const float *ref, size_t n, double tol_rel,
                    double tol_abs) {
    double maxdiff = 0, maxref = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (d > maxdiff || isnan(d)) maxdiff = d, worst = i;
        if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
    }
    double tol = tol_rel * maxref + tol_abs;
    checks++;
    if (!(maxdiff <= tol)) {
        failures++;
        printf("FAIL %s: max |diff| %.3g at [%zu] (loom %.9g, torch %.9g) > tol %.3g (max|ref| %.3g)\n",
               what, maxdiff, worst, a[worst], ref[worst], tol, maxref);
    }
}

static void compare_scalar(const char *what, double a, double ref, double tol_rel) {
    checks++;
    if (!(fabs(a - ref) <= tol_rel * fabs(ref))) {
        failures++;
        printf("FAIL %s: loom %.9g torch %.9g (rel diff %.3g > %.3g)\n", what, a, ref,
               fabs(a - ref) / fabs(ref), tol_rel);
    }
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/gpt2_ref.safetensors";
    loom_st_file *f;
    if (loom_st_open(path, &f)) {
        fprintf(stderr, "%s\n", loom_error_msg());
        return 1;
    }
    printf("fixture: %s (torch %s, %s)\n", path, loom_st_meta(f, "torch_version"), loom_st_meta(f, "dtype"));
    const char *model = argc > 2 ? argv[2] : path;
    loom_gpt_config cfg = {0};
    if (argc > 2 ? loom_model_file_config(model, &cfg, &cfg) != LOOM_OK : 0) {
        fprintf(stderr, "%s\n", loom_error_msg());
        return 1;
    }
    if (argc <= 2)
        cfg = (loom_gpt_config){.vocab_size = (int)meta(f, "vocab_size"), .block_size = (int)meta(f, "block_size"),
                                .n_layer = (int)meta(f, "n_layer"), .n_embd = (int)meta(f, "n_embd"),
                                .n_head = (int)meta(f, "n_head")};
    const int B = (int)meta(f, "batch"), T = (int)meta(f, "seq_len"), accum = (int)meta(f, "accum");
    const int steps = (int)meta(f, "steps");
    loom_gpt *g;
    if (loom_gpt_init(&g, &cfg, B, T, 1, "cpu") || loom_model_load(g, model)) {
        fprintf(stderr, "%s\n", loom_error_msg());
        return 1;
    }
    const loom_st_tensor *ti = loom_st_find(f, "inputs"), *tt = loom_st_find(f, "targets");
    if (!ti || !tt || ti->dtype != LOOM_DTYPE_I32 || tt->dtype != LOOM_DTYPE_I32) {
        fprintf(stderr, "fixture: inputs/targets missing\n");
        return 1;
    }
    size_t ntok = (size_t)steps * accum * B * T;
    int32_t *inputs = malloc(ntok * 4), *targets = malloc(ntok * 4);
    memcpy(inputs, loom_st_data(f, ti), ntok * 4);
    memcpy(targets, loom_st_data(f, tt), ntok * 4);

    /* 1. forward: logits and loss of step 0, micro-batch 0 */
    float loss = loom_gpt_forward(g, inputs, targets, B, T, 0.0f);
    compare_scalar("loss", loss, tensor(f, "ref.loss", NULL)[0], 1e-5);
    size_t nl;
    const float *ref_logits = tensor(f, "ref.logits", &nl);
    compare("logits", g->logits, ref_logits, nl, 1e-5, 0);

    /* 2. backward: every gradient of that micro-batch's mean loss */
    loom_gpt_zero_grad(g, NULL);
    loom_gpt_forward(g, inputs, targets, B, T, 1.0f / (B * T));
    loom_gpt_backward(g, inputs, B, T);
    char name[96];
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        snprintf(name, sizeof name, "grad.%s", pi->name);
        size_t n;
        const float *ref = tensor(f, name, &n);
        compare(name, g->grads + pi->offset, ref, pi->numel, 1e-4, 0);
    }
    printf("forward + backward: loss %.9g (torch %.9g); %d gradient tensors compared\n", loss,
           tensor(f, "ref.loss", NULL)[0], g->sizes.n_tensors);

    /* 3. ten training steps through loom_train_step */
    loom_adamw_config oc = {.lr = (float)meta(f, "lr"), .min_lr = (float)meta(f, "min_lr"),
                            .warmup = (int)meta(f, "warmup"), .total_steps = steps,
                            .beta1 = (float)meta(f, "beta1"), .beta2 = (float)meta(f, "beta2"),
                            .eps = (float)meta(f, "eps"), .weight_decay = (float)meta(f, "weight_decay"),
                            .clip = (float)meta(f, "clip")};
    loom_adamw opt;
    loom_step_ctx sc;
    if (loom_adamw_init(&opt, &oc, g->sizes.n_params) || loom_step_ctx_init(&sc, g, accum, NULL, 0, 1 << 20, 0)) return 1;
    const float *ref_losses = tensor(f, "train.losses", NULL), *ref_norms = tensor(f, "train.grad_norms", NULL);
    const float *ref_lrs = tensor(f, "train.lrs", NULL);
    for (int s = 0; s < steps; s++) {
        size_t off = (size_t)s * accum * B * T;
        float lr = loom_lr_at(&oc, s);
        double norm;
        float l = loom_train_step(g, &opt, &sc, inputs + off, targets + off, B, T, lr, &norm);
        printf("step %2d: loss %.9f (torch %.9f)  norm %.6f (torch %.6f)  lr %.6g\n", s, l, ref_losses[s],
               norm, ref_norms[s], lr);
        snprintf(name, sizeof name, "step %d loss", s);
        compare_scalar(name, l, ref_losses[s], 1e-5);
        snprintf(name, sizeof name, "step %d grad norm", s);
        compare_scalar(name, norm, ref_norms[s], 1e-4);
        snprintf(name, sizeof name, "step %d lr", s);
        compare_scalar(name, lr, ref_lrs[s], 1e-6);
    }
    /* weights move by up to ~0.05 per element over the run; float32 vs float64 noise
     * in the (mathematically zero) key-bias gradient is amplified by Adam to ~1e-5. In
     * the Llama cases (weights of std 0.2, so larger gradients) an element whose
     * gradient sits within float32 noise of zero in some step takes a different Adam
     * step there: up to 4e-4 on one machine, 8e-4 on another (a torch build that sums in
     * another order), a tenth of one step at the peak lr of 1e-2. So for Llama: every
     * element within one peak-lr step, and at most 1 in 1,000 of a tensor beyond 5e-4 (a
     * wrong gradient moves far more). */
    const double wtol = argc > 2 ? 5e-4 : 1e-4;
    for (int i = 0; i < g->sizes.n_tensors; i++) {
        const loom_param_info *pi = &g->params_info[i];
        snprintf(name, sizeof name, "final.%s", pi->name);
        const float *w = g->params + pi->offset, *wr = tensor(f, name, NULL);
        if (argc > 2) {
            size_t beyond = 0;
            double worst = 0;
            for (size_t k = 0; k < pi->numel; k++) {
                const double d = fabs((double)w[k] - wr[k]);
                beyond += !(d <= wtol);
                if (!(d <= worst)) worst = d;
            }
            checks++;
            if (!(worst <= oc.lr) || beyond > pi->numel / 1000) {
                failures++;
                printf("FAIL %s: %zu of %zu elements beyond %.1g, worst %.3g (bound: one step at lr %.3g)\n", name, beyond,
                       pi->numel, wtol, worst, oc.lr);
            }
        } else {
            compare(name, w, wr, pi->numel, 0, wtol);
        }
        snprintf(name, sizeof name, "final.m.%s", pi->name);
        compare(name, opt.m + pi->offset, tensor(f, name, NULL), pi->numel, 1e-3, 1e-7);
        snprintf(name, sizeof name, "final.v.%s", pi->name);
        compare(name, opt.v + pi->offset, tensor(f, name, NULL), pi->numel, 1e-3, 1e-10);
    }
    loom_step_ctx_free(&sc, g);
    loom_adamw_free(&opt);
    loom_gpt_free(g);
    free(inputs);
    free(targets);
    loom_st_close(f);
    printf("test_gpt_parity: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
