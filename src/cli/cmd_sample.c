/* loom sample: generate text from a model (exported safetensors or a training
 * checkpoint) with a KV cache, streaming the text of a single prompt as it goes. */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/tokenizer.h"

static const char *help =
    "usage: loom sample --init-from MODEL [--prompt TEXT]... [flags]\n"
    "\n"
    "Generates text. One prompt streams its continuation as it is produced; several\n"
    "prompts (repeat --prompt / --prompt-file) are generated together as a batch.\n"
    "\n"
    "  --init-from FILE     model: an exported model.safetensors or a training checkpoint\n"
    "                       (without it: a fresh init of --model, for testing)\n" CLI_MODEL_HELP
    "  --prompt TEXT        a prompt (default: <|endoftext|>, i.e. unconditional)\n"
    "  --prompt-file FILE   a prompt read from a file\n"
    "  --tokenizer FILE     tiktoken rank file or Hugging Face tokenizer.json\n"
    "                       (default data/gpt2/r50k_base.tiktoken)\n"
    "  --max-tokens N       new tokens per prompt; with the prompt they must fit in the\n"
    "                       model's block size (default 200, or as many as fit)\n"
    "  --temperature X      0 = greedy (default 0.8)\n"
    "  --top-k N            keep the N most likely tokens, 0 = off (default 40)\n"
    "  --top-p X            nucleus sampling, 1 = off (default 0.95)\n"
    "  --seed N             the draws depend only on the seed (default 1337)\n"
    "  --no-kv-cache        recompute a full forward pass per token (for comparison)\n"
    "  --threads N          OpenMP threads\n"
    "Stops a row at <|endoftext|>. Tokens/s goes to stderr.\n";

enum { O_INIT = 1, O_PROMPT, O_PFILE, O_TOK, O_MAXT, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_NOKV, O_THREADS, O_HELP };

typedef struct stream_ctx {
    const loom_tokenizer *tok;
    int stream;
} stream_ctx;

static void on_token(void *p, int row, int32_t id) {
    stream_ctx *c = p;
    if (!c->stream || row != 0 || (uint32_t)id == loom_tokenizer_eot(c->tok)) return;
    size_t n = 0;
    const uint8_t *b = loom_tokenizer_token_bytes(c->tok, (uint32_t)id, &n);
    if (b) fwrite(b, 1, n, stdout);
    fflush(stdout);
}

int cmd_sample(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_MODEL_OPTIONS,
        {"init-from", required_argument, 0, O_INIT}, {"prompt", required_argument, 0, O_PROMPT},
        {"prompt-file", required_argument, 0, O_PFILE}, {"tokenizer", required_argument, 0, O_TOK},
        {"max-tokens", required_argument, 0, O_MAXT}, {"temperature", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
        {"seed", required_argument, 0, O_SEED}, {"no-kv-cache", no_argument, 0, O_NOKV},
        {"threads", required_argument, 0, O_THREADS}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "sample", *init = NULL, *tokpath = NULL;
    enum { MAXP = 64 };
    const char *ptext[MAXP];
    int pfile[MAXP], np = 0;
    cli_model m;
    cli_model_defaults(&m, "small");
    long maxt = 200, topk = 40, seed = 1337, threads = 0;
    double temp = 0.8, topp = 0.95;
    int kvc = 1, bad = 0, maxt_given = 0, c;
    unsigned char seen[CLI_MAX_OPT] = {0};
    seen[O_PROMPT] = CLI_REPEATABLE; /* one sample per --prompt */
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        int r = cli_model_opt(&m, c, optarg);
        if (r) { bad = r < 0; continue; }
        switch (c) {
        case O_INIT: init = optarg; break;
        case O_PROMPT:
        case O_PFILE:
            if (np == MAXP) return cli_usage_error(cmd, "at most %d prompts", MAXP);
            ptext[np] = optarg;
            pfile[np++] = c == O_PFILE;
            break;
        case O_TOK: tokpath = optarg; break;
        case O_MAXT: bad = cli_int("--max-tokens", optarg, 1, 1 << 20, &maxt); maxt_given = 1; break;
        case O_TEMP: bad = cli_float("--temperature", optarg, 0, 100, &temp); break;
        case O_TOPK: bad = cli_int("--top-k", optarg, 0, 1 << 24, &topk); break;
        case O_TOPP: bad = cli_float("--top-p", optarg, 1e-6, 1, &topp); break;
        case O_SEED: bad = cli_int("--seed", optarg, 0, 1L << 62, &seed); break;
        case O_NOKV: kvc = 0; break;
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &threads); break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (threads > 0) omp_set_num_threads((int)threads);
    loom_tokenizer *tok = NULL;
    if (!tokpath) tokpath = cli_default_tokenizer();
    if (loom_tokenizer_load(tokpath, &tok)) return cli_fail(cmd);
    loom_gpt *g = NULL;
    int lrc = cli_load_model(&m, init, (uint64_t)seed, 1, 1, &g);
    if (lrc) {
        loom_tokenizer_free(tok);
        return cli_load_failed(cmd, lrc);
    }
    int rc = 0;
    if (np == 0) { ptext[0] = ""; pfile[0] = 0; np = 1; } /* no prompt: from the end-of-text token */
    loom_tokens toks[MAXP];
    memset(toks, 0, sizeof toks);
    int32_t *prompts[MAXP] = {0}, *outs[MAXP] = {0};
    int plen[MAXP], olen[MAXP];
    for (int i = 0; i < np && !rc; i++) {
        size_t len = strlen(ptext[i]);
        char *buf = pfile[i] ? loom_read_file(ptext[i], &len) : NULL;
        if (pfile[i] && !buf) {
            loom_error(LOOM_ERR_IO, "--prompt-file: cannot read %s: %s", ptext[i], strerror(errno));
            rc = cli_fail(cmd);
            break;
        }
        if (loom_tokenizer_encode(tok, buf ? buf : ptext[i], len, LOOM_TOKENIZER_SPECIAL_ALLOW, &toks[i]))
            rc = cli_fail(cmd);
        free(buf);
        if (!rc && toks[i].len == 0) { /* an empty prompt starts from the tokenizer's end-of-text id */
            loom_tokens_free(&toks[i]);
            if (!(toks[i].ids = malloc(sizeof(uint32_t)))) {
                loom_error(LOOM_ERR_NOMEM, "out of memory");
                rc = cli_fail(cmd);
                break;
            }
            toks[i].ids[0] = loom_tokenizer_eot(tok);
            toks[i].len = toks[i].cap = 1;
        }
        prompts[i] = malloc(sizeof(int32_t) * (toks[i].len ? toks[i].len : 1));
        outs[i] = malloc(sizeof(int32_t) * maxt);
        if (!prompts[i] || !outs[i]) { loom_error(LOOM_ERR_NOMEM, "out of memory"); rc = cli_fail(cmd); }
        for (size_t k = 0; !rc && k < toks[i].len; k++) {
            if (toks[i].ids[k] >= (uint32_t)g->cfg.vocab_size) {
                loom_error(LOOM_ERR_ARG, "prompt %d: token %u is outside the model's vocabulary of %d", i + 1,
                           toks[i].ids[k], g->cfg.vocab_size);
                rc = cli_fail(cmd);
            } else prompts[i][k] = (int32_t)toks[i].ids[k];
        }
        plen[i] = (int)toks[i].len;
        /* the model sees block_size positions: room for block_size - plen new tokens (a
         * prompt with no room at all is loom_generate's error); the default just stops there */
        int room = g->cfg.block_size - plen[i];
        if (!rc && maxt_given && room > 0 && maxt > room) {
            char which[32] = "the prompt";
            if (np > 1) snprintf(which, sizeof which, "prompt %d", i + 1);
            rc = cli_usage_error(cmd, "--max-tokens: %ld new tokens after %s of %d tokens exceed the model's "
                                 "block size %d (at most %d)", maxt, which, plen[i], g->cfg.block_size, room);
        }
    }
    if (!rc) {
        loom_sample_opts o = {.max_tokens = (int)maxt, .temperature = (float)temp, .top_k = (int)topk,
                              .top_p = (float)topp, .seed = (uint64_t)seed,
                              .eot = (int)loom_tokenizer_eot(tok), .use_kv_cache = kvc};
        stream_ctx sc = {tok, np == 1};
        if (np == 1) { /* echo the prompt, then stream */
            fwrite(pfile[0] ? "" : ptext[0], 1, pfile[0] ? 0 : strlen(ptext[0]), stdout);
            fflush(stdout);
        }
        double t0 = loom_now();
        if (loom_generate(g, np, (const int32_t *const *)prompts, plen, &o, on_token, &sc, outs, olen)) {
            rc = cli_fail(cmd);
        } else {
            double dt = loom_now() - t0;
            long total = 0;
            for (int i = 0; i < np; i++) total += olen[i];
            if (np == 1) putchar('\n');
            for (int i = 0; np > 1 && i < np; i++) {
                loom_bytes text = {0};
                uint32_t *ids = malloc(sizeof(uint32_t) * (olen[i] ? olen[i] : 1));
                for (int k = 0; ids && k < olen[i]; k++) ids[k] = (uint32_t)outs[i][k];
                if (ids && !loom_tokenizer_decode(tok, ids, olen[i], &text))
                    printf("--- sample %d ---\n%s%.*s\n", i + 1, pfile[i] ? "" : ptext[i], (int)text.len,
                           text.data ? (const char *)text.data : "");
                free(ids);
                loom_bytes_free(&text);
            }
            fprintf(stderr, "sampled %ld tokens (%d prompt%s) in %.2f s: %.1f tokens/s (KV cache %s)\n", total, np,
                    np > 1 ? "s" : "", dt, total / dt, kvc ? "on" : "off");
        }
    }
    for (int i = 0; i < np; i++) {
        loom_tokens_free(&toks[i]);
        free(prompts[i]);
        free(outs[i]);
    }
    loom_gpt_free(g);
    loom_tokenizer_free(tok);
    return rc;
}
