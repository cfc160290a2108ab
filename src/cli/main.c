/* `loom`: one binary, one subcommand per job. Parses flags and calls the library; no
 * math here. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/train.h"

static const char *usage =
    "loom " LOOM_VERSION ": train and run GPT-2 and Llama models on CPU clusters\n"
    "\n"
    "usage: loom <command> [flags]   (loom <command> --help for its flags)\n"
    "\n"
    "commands:\n"
    "  prep     tokenize text (plain or JSON-lines) into token shards, in parallel\n"
    "  train    train a GPT-2 or Llama model on token shards\n"
    "  eval     mean cross-entropy of a model over a token file's windows\n"
    "  sample   generate text from a model or checkpoint (KV cache, top-k, top-p)\n"
    "  export   write a model as a Hugging Face model (GPT-2 or Llama safetensors + config.json)\n"
    "  info     this build and machine: GEMM library, threads, CPU features, peak FLOP/s\n"
    "  trace    merge the per-rank traces of train --trace into one (loom trace merge PREFIX)\n"
    "  report   training runs as one self-contained HTML page of plots and configs\n"
    "  plan     a layout's bytes per rank, bubble, traffic and step time; or every layout ranked\n"
    "  bench    measure this machine's GEMM, memory and link speeds for plan\n";

/* train takes SIGTERM, SIGINT and SIGUSR1 in a thread of its own once it runs: until
 * then they wait, blocked, rather than kill a run in its first milliseconds. This runs
 * before main, as soon as the libraries are loaded (glibc passes argc and argv). */
__attribute__((constructor)) static void block_early(int argc, char **argv) {
    if (argc > 1 && argv && argv[1] && !strcmp(argv[1], "train")) loom_train_block_signals();
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("loom %s\n", LOOM_VERSION);
        return 0;
    }
    const char *cmd = argv[1];
    argv[1] = argv[0];
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc - 1, argv + 1);
    if (!strcmp(cmd, "prep")) return cmd_prep(argc - 1, argv + 1);
    if (!strcmp(cmd, "trace")) return cmd_trace(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "loom: error: unknown command '%s' (commands: prep, train, eval, sample, export, info, trace, report)\n", cmd);
    return 2;
}
