/* loom export: a model as a Hugging Face model directory (GPT-2 or Llama). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

static const char *help =
    "usage: loom export --init-from MODEL.safetensors --out DIR [flags]\n"
    "\n"
    "Writes DIR/model.safetensors (Hugging Face names and layouts, F32) and DIR/config.json:\n"
    "GPT2Config for GPT-2 (GPT2LMHeadModel loads it), LlamaConfig for Llama (LlamaForCausalLM).\n"
    "\n"
    "  --init-from FILE     the model (without it: a fresh init of --model with --seed)\n" CLI_MODEL_HELP
    "  --seed N             seed of a fresh init (default 1337)\n"
    "  --out DIR            output directory (created if missing)\n";

enum { O_INIT = 1, O_OUT, O_SEED, O_HELP };

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_MODEL_OPTIONS, {"init-from", required_argument, 0, O_INIT}, {"out", required_argument, 0, O_OUT},
        {"seed", required_argument, 0, O_SEED}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "export", *init = NULL, *out = NULL;
    cli_model m;
    cli_model_defaults(&m, "small");
    long seed = 1337;
    int bad = 0, c;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        int r = cli_model_opt(&m, c, optarg);
        if (r) { bad = r < 0; continue; }
        switch (c) {
        case O_INIT: init = optarg; break;
        case O_OUT: out = optarg; break;
        case O_SEED: bad = cli_int("--seed", optarg, 0, 1L << 62, &seed); break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error(cmd, "--out is required");
    if (loom_mkdir_p(out, "--out")) return cli_fail(cmd);
    loom_gpt *g = NULL;
    int lrc = cli_load_model(&m, init, (uint64_t)seed, 1, 1, &g);
    if (lrc) return cli_load_failed(cmd, lrc);
    char path[4096];
    int rc = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    if (loom_model_save(g, path)) rc = cli_fail(cmd);
    snprintf(path, sizeof path, "%s/config.json", out);
    if (!rc && loom_model_write_hf_config(&g->cfg, path)) rc = cli_fail(cmd);
    if (!rc) printf("wrote %s/model.safetensors (%.2fM parameters) and %s/config.json\n", out,
                    g->sizes.n_params / 1e6, out);
    loom_gpt_free(g);
    return rc;
}
