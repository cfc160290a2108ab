/* loom report: training runs as one self-contained HTML page. */
#include <stdio.h>

#include "cli/cli.h"
#include "loom/report.h"

static const char *usage =
    "usage: loom report OUT_DIR... [--out FILE]\n"
    "\n"
    "Writes one self-contained HTML page (inline SVG plots, no scripts, no network) of the\n"
    "training runs in the given output directories (what loom train --out wrote): every\n"
    "metric of metrics.jsonl over steps and the loss over wall-clock time, with several\n"
    "runs overlaid, and each run's config.json. loom train writes OUT_DIR/report.html itself\n"
    "at each checkpoint and at the end.\n"
    "\n"
    "  --out FILE           the page (default: the first OUT_DIR's report.html)\n";

int cmd_report(int argc, char **argv) {
    static const struct option opts[] = {{"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "report", *out = NULL;
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
    if (optind >= argc) return cli_usage_error(cmd, "give at least one OUT_DIR (what loom train --out wrote)");
    char def[4200];
    if (!out) {
        snprintf(def, sizeof def, "%s/report.html", argv[optind]);
        out = def;
    }
    if (loom_report_write((const char *const *)argv + optind, argc - optind, out)) return cli_fail(cmd);
    printf("wrote %s (%d run(s))\n", out, argc - optind);
    return 0;
}
