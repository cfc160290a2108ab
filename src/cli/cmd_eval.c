/* loom eval: mean cross-entropy of a model over a token file's windows, in order. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/train.h"

static const char *help =
    "usage: loom eval --init-from MODEL.safetensors --data GLOB [flags]\n"
    "\n"
    "Mean cross-entropy over the data's windows in order (sample i = tokens\n"
    "[i*T, i*T+T+1)), batch by batch: the mean of the batch means over full batches.\n"
    "The last line printed is `loss <value>` (or one JSON object with --json).\n"
    "\n"
    "  --init-from FILE     the model (without it: a fresh init of --model with --seed)\n" CLI_MODEL_HELP
    "  --data GLOB          token files (llm.c shards or *.u16)\n"
    "  --data-format F      auto, shard or u16\n"
    "  --batch N            sequences per batch (default 8)\n"
    "  --seq-len T          tokens per sequence (default 256)\n"
    "  --max-batches N      stop after N batches (default all)\n"
    "  --seed N             seed of a fresh init (default 1337)\n"
    "  --threads N          OpenMP threads\n"
    "  --json               print one JSON object\n";

enum { O_INIT = 1, O_DATA, O_FMT, O_BATCH, O_SEQ, O_MAXB, O_SEED, O_THREADS, O_JSON, O_HELP };

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_MODEL_OPTIONS,
        {"init-from", required_argument, 0, O_INIT}, {"data", required_argument, 0, O_DATA},
        {"data-format", required_argument, 0, O_FMT}, {"batch", required_argument, 0, O_BATCH},
        {"seq-len", required_argument, 0, O_SEQ}, {"max-batches", required_argument, 0, O_MAXB},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "eval", *init = NULL, *data = NULL;
    cli_model m;
    cli_model_defaults(&m, "small");
    long B = 8, T = 256, maxb = 0, seed = 1337, threads = 0, iv;
    int json = 0, bad = 0, c;
    loom_data_format fmt = LOOM_DATA_AUTO;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        int r = cli_model_opt(&m, c, optarg);
        if (r) { bad = r < 0; continue; }
        switch (c) {
        case O_INIT: init = optarg; break;
        case O_DATA: data = optarg; break;
        case O_FMT: bad = cli_data_format(optarg, &fmt); break;
        case O_BATCH: bad = cli_int("--batch", optarg, 1, 1 << 20, &B); break;
        case O_SEQ: bad = cli_int("--seq-len", optarg, 1, 1 << 16, &T); break;
        case O_MAXB: bad = cli_int("--max-batches", optarg, 1, 1L << 40, &maxb); break;
        case O_SEED: bad = cli_int("--seed", optarg, 0, 1L << 62, &seed); break;
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &threads); break;
        case O_JSON: json = 1; break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    (void)iv;
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!data) return cli_usage_error(cmd, "--data is required");
    if (threads > 0) omp_set_num_threads((int)threads);
    loom_gpt *g = NULL;
    int lrc = cli_load_model(&m, init, (uint64_t)seed, (int)B, (int)T, &g);
    if (lrc) return cli_load_failed(cmd, lrc);
    loom_dataset *ds = NULL;
    double loss = 0;
    long nb = 0;
    int rc = 0;
    if (loom_dataset_open(&ds, data, fmt, g->cfg.vocab_size, (int)T, "--data") ||
        loom_eval_loss(g, ds, (int)B, (int)T, maxb, &loss, &nb))
        rc = cli_fail(cmd);
    else if (json)
        printf("{\"loss\": %.9g, \"batches\": %ld, \"batch\": %ld, \"seq_len\": %ld, \"tokens\": %ld}\n",
               loss, nb, B, T, nb * B * T);
    else
        printf("batches %ld (%ld x %ld tokens)\nloss %.6f\n", nb, B, T, loss);
    loom_dataset_close(ds);
    loom_gpt_free(g);
    return rc;
}
