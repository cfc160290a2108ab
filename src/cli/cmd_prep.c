/* loom prep: raw text -> token shards. */
#include <glob.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "loom/dist.h"
#include "loom/prep.h"

static const char *help =
    "usage: loom prep INPUT... --out DIR [flags]\n"
    "\n"
    "Tokenizes text (byte-level BPE: GPT-2's as tiktoken, or a tokenizer.json as Hugging Face\n"
    "tokenizers) into llm.c shards (uint16; uint32 past 65,536 ids): OUT/val_%06d.bin\n"
    "(the first --val-tokens tokens), OUT/train_%06d.bin, and OUT/manifest.json. Every\n"
    "document is preceded by <|endoftext|>. A plain file is one document; in a *.jsonl\n"
    "file each line is a JSON object and its --jsonl-field is one document. An INPUT of\n"
    "- is standard input. The output is the same whatever --threads is. It is written\n"
    "beside DIR (DIR.tmp-PID) and moved into place when complete; SIGINT or SIGTERM\n"
    "before then removes it and leaves DIR as it was.\n"
    "\n"
    "  --out DIR            output directory: created, or an empty one\n"
    "  --overwrite          replace DIR even if it is not empty (else that is refused)\n"
    "  --tokenizer FILE     tiktoken rank file or Hugging Face tokenizer.json\n"
    "                       (default data/gpt2/r50k_base.tiktoken)\n"
    "  --shard-tokens N     tokens per shard (default 100000000)\n"
    "  --val-tokens N       the first N tokens form the validation split (default 0)\n"
    "  --jsonl-field NAME   text field of JSON-lines inputs (default text)\n"
    "  --skip-bad           count and report bad JSON-lines lines instead of stopping\n"
    "  --threads N          OpenMP threads (default: all cores)\n"
    "  --quiet              no progress bar\n"
    "\n"
    "exit status: 0 done; 1 error; 2 bad command line; 130 SIGINT, 143 SIGTERM (nothing written).\n";

enum { O_OUT = 1, O_OVER, O_TOK, O_SHARD, O_VAL, O_FIELD, O_SKIP, O_THREADS, O_QUIET, O_HELP };

int cmd_prep(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, O_OUT}, {"overwrite", no_argument, 0, O_OVER},
        {"tokenizer", required_argument, 0, O_TOK},
        {"shard-tokens", required_argument, 0, O_SHARD}, {"val-tokens", required_argument, 0, O_VAL},
        {"jsonl-field", required_argument, 0, O_FIELD}, {"skip-bad", no_argument, 0, O_SKIP},
        {"threads", required_argument, 0, O_THREADS}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "prep";
    loom_prep_opts o = {.tokenizer = cli_default_tokenizer(), .jsonl_field = "text",
                        .shard_tokens = 100000000, .progress = isatty(2)};
    long iv;
    int c, bad = 0;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    /* GNU getopt permutes: inputs may come before or after the flags; "-" stays an input */
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        switch (c) {
        case O_OUT: o.out_dir = optarg; break;
        case O_OVER: o.overwrite = 1; break;
        case O_TOK: o.tokenizer = optarg; break;
        case O_SHARD: bad = cli_int("--shard-tokens", optarg, 1, 2000000000L, &iv); o.shard_tokens = iv; break;
        case O_VAL: bad = cli_int("--val-tokens", optarg, 0, 1L << 40, &iv); o.val_tokens = iv; break;
        case O_FIELD: o.jsonl_field = optarg; break;
        case O_SKIP: o.skip_bad = 1; break;
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &iv); o.threads = (int)iv; break;
        case O_QUIET: o.progress = 0; break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (!o.out_dir) return cli_usage_error(cmd, "--out is required");
    if (optind >= argc) return cli_usage_error(cmd, "no input given (files, or - for standard input)");
    /* inputs may be glob patterns (quoted, so the shell left them): expand each, sorted */
    glob_t gl;
    memset(&gl, 0, sizeof gl);
    for (int i = optind; i < argc; i++)
        if (glob(argv[i], (i > optind ? GLOB_APPEND : 0) | GLOB_NOCHECK, NULL, &gl) != 0) {
            loom_error(LOOM_ERR_IO, "cannot expand the input pattern '%s'", argv[i]);
            globfree(&gl);
            return cli_fail(cmd);
        }
    o.inputs = (const char *const *)gl.gl_pathv;
    o.n_inputs = (int)gl.gl_pathc;
    loom_dist dist;
    loom_prep_block_signals(); /* before MPI_Init starts threads of its own */
    if (loom_dist_init(&argc, &argv, &dist)) {
        globfree(&gl);
        return cli_fail(cmd);
    }
    if (dist.rank > 0) o.progress = 0;
    loom_prep_stats s;
    if (loom_prep(&o, &dist, &s)) {
        globfree(&gl);
        return cli_fail_dist(cmd, &dist);
    }
    loom_dist_finalize(&dist);
    globfree(&gl);
    if (dist.rank > 0) return 0;
    printf("prep: %llu documents, %.1f MB in %.2f s (%.1f MB/s): %llu train tokens in %d shard(s), %llu val tokens "
           "in %d shard(s)%s\n",
           (unsigned long long)s.documents, s.bytes / 1e6, s.seconds, s.bytes / 1e6 / s.seconds,
           (unsigned long long)s.train_tokens, s.train_shards, (unsigned long long)s.val_tokens, s.val_shards, "");
    if (s.skipped) printf("prep: skipped %llu bad JSON-lines line(s) (--skip-bad)\n", (unsigned long long)s.skipped);
    return 0;
}
