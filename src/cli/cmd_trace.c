/* loom trace merge: the per-rank traces of one run into one file. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/train.h"

static const char *usage =
    "usage: loom trace merge PREFIX --out FILE\n"
    "\n"
    "Merges the per-rank traces that `loom train --trace PREFIX` wrote (PREFIX.rank0.json,\n"
    "PREFIX.rank1.json, ...) into one Chrome trace-event file, one process per rank, which\n"
    "opens in Perfetto (ui.perfetto.dev) or chrome://tracing. The ranks' times are already\n"
    "on one axis: rank 0's clock, each rank's offset measured with MPI round trips at\n"
    "start-up (each file's clock_sync event gives it and the round trip that bounds its\n"
    "error).\n"
    "\n"
    "  --out FILE           the merged trace (written aside, then renamed into place)\n";

int cmd_trace(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "trace", *out = NULL;
    int c;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, seen)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (optind >= argc || strcmp(argv[optind], "merge"))
        return cli_usage_error(cmd, "expected 'merge PREFIX' (loom trace merge PREFIX --out FILE)");
    if (optind + 1 >= argc) return cli_usage_error(cmd, "merge: give the PREFIX that train --trace was given");
    if (optind + 2 < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 2]);
    if (!out) return cli_usage_error(cmd, "--out FILE is required");
    int ranks = 0;
    if (loom_trace_merge(argv[optind + 1], out, &ranks)) return cli_fail(cmd);
    printf("merged the traces of %d rank(s) into %s\n", ranks, out);
    return 0;
}
