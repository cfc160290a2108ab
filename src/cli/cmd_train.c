/* loom train: flags -> loom_train_opts -> loom_train. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/dist.h"
#include "loom/train.h"

static const char *help =
    "usage: loom train --data GLOB [flags]\n"
    "\n"
    "Trains a GPT-2 or Llama model; prints one line per step and writes OUT/metrics.jsonl,\n"
    "and at the end OUT/model.safetensors + OUT/config.json (Hugging Face form).\n"
    "\n"
    "model:\n" CLI_MODEL_HELP
    "  --init-from FILE     start from a model: ours, or a Hugging Face GPT-2 or Llama file or directory\n"
    "data:\n"
    "  --data GLOB[,GLOB]   training tokens: llm.c shards, or headerless *.u16 files\n"
    "  --val-data GLOB      validation tokens (loss every --eval-every steps and at the end)\n"
    "  --data-format F      auto (default), shard, or u16 (headerless uint16)\n"
    "  --shuffle on|off     seeded permutation of windows per epoch (default on)\n"
    "batch:\n"
    "  --batch N            sequences per micro-batch (default 8)\n"
    "  --seq-len T          tokens per sequence (default 256)\n"
    "  --total-batch-tokens N  tokens per optimizer step, a multiple of batch x seq-len\n"
    "                       (gradient accumulation; default one micro-batch)\n"
    "optimizer (AdamW, torch semantics):\n"
    "  --steps N            optimizer steps (default 100)\n"
    "  --lr X               peak learning rate (default 6e-4)\n"
    "  --min-lr X           final learning rate of the cosine (default lr/10)\n"
    "  --warmup N           linear warmup steps (default 10)\n"
    "  --weight-decay X     on tensors of 2+ dims (default 0.1)\n"
    "  --clip X             global grad-norm clip, 0 = off (default 1.0)\n"
    "  --beta1 X, --beta2 X, --eps X   (defaults 0.9, 0.95, 1e-8)\n"
    "run:\n"
    "  --seed N             weights and data order (default 1337)\n"
    "  --out DIR            output directory (default out)\n"
    "  --threads N          OpenMP threads (default: all cores)\n"
    "  --eval-every N       validation cadence in steps (default 0: at the end only)\n"
    "  --val-batches N      batches per validation (default 20)\n"
    "  --peak-gflops X      MFU denominator (default: measured at start-up)\n"
    "  --backend NAME       cpu (default) or ref (slow reference kernels)\n"
    "  --quiet              no per-step lines\n"
    "  --profile            at the end, print the time per op kind (forward, backward, optimizer)\n"
    "  --trace PREFIX       each rank writes PREFIX.rank<r>.json, a Chrome trace (Perfetto) of its steps\n"
    "  --tensorboard DIR    rank 0 writes TensorBoard event files there: loss, val loss, lr, grad norm,\n"
    "                       step time, tokens/s, MFU, peak host memory (every step, readable while running)\n"
    "checkpoints (crash-safe, checksummed; resume continues bitwise):\n"
    "  --ckpt-dir DIR       write DIR/step_%08d.safetensors and DIR/latest\n"
    "  --ckpt-every N       every N steps (default 0: at the end and on a signal only)\n"
    "  --keep K             keep the newest K checkpoints (default 3)\n"
    "  --resume [FILE]      continue from FILE, or from --ckpt-dir's latest intact checkpoint;\n"
    "                       the checkpoint's config, training flags, data and threads must match\n"
    "  --allow-change LIST  data and/or threads (comma-separated): resume although they changed\n"
    "  --overwrite          a fresh run in a --ckpt-dir that holds checkpoints discards them\n"
    "                       (without it that is refused; a directory another run holds always is)\n"
    "  --ckpt-errors stop|warn  a failed save stops the run (default) or warns and goes on\n"
    "  --stop-at N          stop after step N with a checkpoint (the schedule still spans --steps)\n"
    "MPI:\n"
    "  --zero 0|1|2         1: ZeRO-1, each rank keeps AdamW state for 1/N of the parameters;\n"
    "                       2: ZeRO-2, gradients sharded too (all bitwise the same; default 0)\n"
    "  --tp N               tensor parallelism: each layer split over N neighbouring ranks (heads,\n"
    "                       FFN, vocabulary; Megatron's scheme), data parallelism over the rest\n"
    "                       (default 1)\n"
    "  --sp                 sequence parallelism: the residual stream and the norms held as\n"
    "                       B*T/tp rows per tensor-parallel rank (gathered before, and\n"
    "                       reduce-scattered after, each parallel block)\n"
    "  --pp N               pipeline parallelism: the layers split into N stages of contiguous\n"
    "                       layers (balanced by cost; the embedding on the first, the LM head on\n"
    "                       the last), micro-batches streamed through them (default 1)\n"
    "  --pp-schedule gpipe|1f1b  the order of each stage's forwards and backwards (default 1f1b:\n"
    "                       at most N micro-batches in flight; gpipe keeps all); bitwise the same\n"
    "  --pp-layers a,b,...  layers per stage, first to last (default: balanced)\n"
    "  --bucket-mb X        gradient communication bucket size in MiB (default 16)\n"
    "  --overlap 0|1        1: reduce buckets during the backward on a communication thread\n"
    "                       (default 1; the result is bitwise the same either way)\n"
    "  --comm-timeout S     a collective unfinished after S seconds ends the job, saying which\n"
    "                       one each rank waits in (default 600; 0 = never)\n"
    "\n"
    "exit status: 0 done; 1 error; 2 bad command line; 3 stopped by SIGTERM, SIGINT or SIGUSR1\n"
    "after finishing the current step and writing a checkpoint (without --ckpt-dir: OUT/model.safetensors);\n"
    "130 a second SIGINT (no checkpoint).\n";

enum {
    O_DATA = 1, O_VAL, O_FMT, O_BATCH, O_SEQ, O_TOTAL, O_STEPS, O_LR, O_MINLR, O_WARMUP, O_WD,
    O_CLIP, O_B1, O_B2, O_EPS, O_SEED, O_SHUFFLE, O_INIT, O_OUT, O_THREADS, O_EVAL, O_VALB,
    O_PEAK, O_BACKEND, O_QUIET, O_PROFILE, O_CKDIR, O_CKEVERY, O_KEEP, O_RESUME, O_CKERR, O_STOPAT, O_COMMTO, O_ZERO, O_TRACE, O_TB, O_BUCKET,
    O_OVERLAP, O_OVERWRITE, O_ALLOW, O_TP, O_SP, O_PP, O_PPSCHED, O_PPLAYERS, O_HELP
};

/* --allow-change data,threads */
static int parse_allow(const char *s, unsigned *out) {
    *out = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (!strcmp(p, "data")) *out |= LOOM_ALLOW_DATA;
        else if (!strcmp(p, "threads")) *out |= LOOM_ALLOW_THREADS;
        else {
            loom_error(LOOM_ERR_ARG, "--allow-change: '%s' is not data or threads", p);
            return -1;
        }
    }
    if (!*out) {
        loom_error(LOOM_ERR_ARG, "--allow-change: '%s' names nothing (data, threads)", s);
        return -1;
    }
    return 0;
}

int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_MODEL_OPTIONS,
        {"data", required_argument, 0, O_DATA}, {"val-data", required_argument, 0, O_VAL},
        {"data-format", required_argument, 0, O_FMT}, {"batch", required_argument, 0, O_BATCH},
        {"seq-len", required_argument, 0, O_SEQ}, {"total-batch-tokens", required_argument, 0, O_TOTAL},
        {"steps", required_argument, 0, O_STEPS}, {"lr", required_argument, 0, O_LR},
        {"min-lr", required_argument, 0, O_MINLR}, {"warmup", required_argument, 0, O_WARMUP},
        {"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
        {"beta1", required_argument, 0, O_B1}, {"beta2", required_argument, 0, O_B2},
        {"eps", required_argument, 0, O_EPS}, {"seed", required_argument, 0, O_SEED},
        {"shuffle", required_argument, 0, O_SHUFFLE}, {"init-from", required_argument, 0, O_INIT},
        {"out", required_argument, 0, O_OUT}, {"threads", required_argument, 0, O_THREADS},
        {"eval-every", required_argument, 0, O_EVAL}, {"val-batches", required_argument, 0, O_VALB},
        {"peak-gflops", required_argument, 0, O_PEAK}, {"backend", required_argument, 0, O_BACKEND},
        {"quiet", no_argument, 0, O_QUIET}, {"profile", no_argument, 0, O_PROFILE},
        {"ckpt-dir", required_argument, 0, O_CKDIR}, {"ckpt-every", required_argument, 0, O_CKEVERY},
        {"keep", required_argument, 0, O_KEEP}, {"resume", optional_argument, 0, O_RESUME},
        {"ckpt-errors", required_argument, 0, O_CKERR}, {"stop-at", required_argument, 0, O_STOPAT},
        {"comm-timeout", required_argument, 0, O_COMMTO}, {"zero", required_argument, 0, O_ZERO},
        {"tp", required_argument, 0, O_TP}, {"sp", no_argument, 0, O_SP},
        {"pp", required_argument, 0, O_PP}, {"pp-schedule", required_argument, 0, O_PPSCHED},
        {"pp-layers", required_argument, 0, O_PPLAYERS},
        {"trace", required_argument, 0, O_TRACE}, {"tensorboard", required_argument, 0, O_TB},
        {"bucket-mb", required_argument, 0, O_BUCKET},
        {"overlap", required_argument, 0, O_OVERLAP}, {"overwrite", no_argument, 0, O_OVERWRITE},
        {"allow-change", required_argument, 0, O_ALLOW}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "train";
    cli_model m;
    cli_model_defaults(&m, "small");
    loom_train_opts o = {
        .data_format = LOOM_DATA_AUTO, .batch = 8, .seq_len = 256, .steps = 100,
        .optim = {.lr = 6e-4f, .min_lr = -1.0f, .warmup = 10, .beta1 = 0.9f, .beta2 = 0.95f,
                  .eps = 1e-8f, .weight_decay = 0.1f, .clip = 1.0f},
        .seed = 1337, .shuffle = 1, .out_dir = "out", .val_batches = 20, .backend = "cpu", .keep = 3,
        .bucket_mb = 16, .overlap = 1, .tp = 1};
    long iv;
    double fv, comm_timeout = 600;
    int c, bad = 0;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        int r = cli_model_opt(&m, c, optarg);
        if (r) { bad = r < 0; continue; }
        switch (c) {
        case O_DATA: o.data = optarg; break;
        case O_VAL: o.val_data = optarg; break;
        case O_FMT: bad = cli_data_format(optarg, &o.data_format); break;
        case O_BATCH: bad = cli_int("--batch", optarg, 1, 1 << 20, &iv); o.batch = (int)iv; break;
        case O_SEQ: bad = cli_int("--seq-len", optarg, 1, 1 << 16, &iv); o.seq_len = (int)iv; break;
        case O_TOTAL: bad = cli_int("--total-batch-tokens", optarg, 1, 1L << 40, &iv); o.total_batch_tokens = iv; break;
        case O_STEPS: bad = cli_int("--steps", optarg, 1, 1L << 30, &iv); o.steps = (int)iv; break;
        case O_LR: bad = cli_float("--lr", optarg, 0, 10, &fv); o.optim.lr = (float)fv; break;
        case O_MINLR: bad = cli_float("--min-lr", optarg, 0, 10, &fv); o.optim.min_lr = (float)fv; break;
        case O_WARMUP: bad = cli_int("--warmup", optarg, 0, 1L << 30, &iv); o.optim.warmup = (int)iv; break;
        case O_WD: bad = cli_float("--weight-decay", optarg, 0, 10, &fv); o.optim.weight_decay = (float)fv; break;
        case O_CLIP: bad = cli_float("--clip", optarg, 0, 1e30, &fv); o.optim.clip = (float)fv; break;
        case O_B1: bad = cli_float("--beta1", optarg, 0, 0.999999, &fv); o.optim.beta1 = (float)fv; break;
        case O_B2: bad = cli_float("--beta2", optarg, 0, 0.999999, &fv); o.optim.beta2 = (float)fv; break;
        case O_EPS: bad = cli_float("--eps", optarg, 1e-30, 1, &fv); o.optim.eps = (float)fv; break;
        case O_SEED: bad = cli_int("--seed", optarg, 0, 1L << 62, &iv); o.seed = (uint64_t)iv; break;
        case O_SHUFFLE: bad = cli_onoff("--shuffle", optarg, &o.shuffle); break;
        case O_INIT: o.init_from = optarg; break;
        case O_OUT: o.out_dir = optarg; break;
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &iv); o.threads = (int)iv; break;
        case O_EVAL: bad = cli_int("--eval-every", optarg, 0, 1L << 30, &iv); o.eval_every = (int)iv; break;
        case O_VALB: bad = cli_int("--val-batches", optarg, 1, 1L << 30, &iv); o.val_batches = (int)iv; break;
        case O_PEAK: bad = cli_float("--peak-gflops", optarg, 1e-3, 1e9, &fv); o.peak_flops = fv * 1e9; break;
        case O_BACKEND: o.backend = optarg; break;
        case O_QUIET: o.quiet = 1; break;
        case O_PROFILE: o.profile = 1; break;
        case O_CKDIR: o.ckpt_dir = optarg; break;
        case O_CKEVERY: bad = cli_int("--ckpt-every", optarg, 0, 1L << 30, &iv); o.ckpt_every = (int)iv; break;
        case O_KEEP: bad = cli_int("--keep", optarg, 1, 1L << 20, &iv); o.keep = (int)iv; break;
        case O_RESUME:
            o.resume = 1;
            /* `--resume FILE` as well as `--resume=FILE` */
            if (!optarg && optind < argc && argv[optind][0] != '-') optarg = argv[optind++];
            o.resume_file = optarg;
            break;
        case O_CKERR:
            if (!strcmp(optarg, "stop")) o.ckpt_errors_warn = 0;
            else if (!strcmp(optarg, "warn")) o.ckpt_errors_warn = 1;
            else bad = 1, loom_error(LOOM_ERR_ARG, "--ckpt-errors: '%s' must be stop or warn", optarg);
            break;
        case O_STOPAT: bad = cli_int("--stop-at", optarg, 1, 1L << 30, &iv); o.stop_at = (int)iv; break;
        case O_TRACE: o.trace = optarg; break;
        case O_TB: o.tensorboard = optarg; break;
        case O_ZERO: bad = cli_int("--zero", optarg, 0, 2, &iv); o.zero = (int)iv; break;
        case O_TP: bad = cli_int("--tp", optarg, 1, 4096, &iv); o.tp = (int)iv; break;
        case O_SP: o.sp = 1; break;
        case O_PP: bad = cli_int("--pp", optarg, 1, 64, &iv); o.pp = (int)iv; break;
        case O_PPSCHED:
            if ((o.pp_schedule = loom_pp_schedule_parse(optarg)) < 0)
                bad = 1, loom_error(LOOM_ERR_ARG, "--pp-schedule: '%s' must be gpipe or 1f1b", optarg);
            break;
        case O_PPLAYERS: o.pp_layers = optarg; break;
        case O_BUCKET: bad = cli_float("--bucket-mb", optarg, 1e-3, 1024, &fv); o.bucket_mb = fv; break;
        case O_OVERLAP: bad = cli_int("--overlap", optarg, 0, 1, &iv); o.overlap = (int)iv; break;
        case O_COMMTO: bad = cli_float("--comm-timeout", optarg, 0, 1e9, &fv); comm_timeout = fv; break;
        case O_OVERWRITE: o.overwrite = 1; break;
        case O_ALLOW: bad = parse_allow(optarg, &o.allow_change); break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o.data) return cli_usage_error(cmd, "--data is required");
    if (cli_model_config(&m, &o.model)) return cli_bad_value(cmd);
    if (o.resume && o.init_from) return cli_usage_error(cmd, "--resume and --init-from: give one of them");
    if (o.init_from) {
        loom_gpt_config fcfg;
        if (m.overrides[2] < 0) o.model.n_head = 0; /* the file's, or an error asking for --n-head */
        if (loom_model_file_config(o.init_from, &o.model, &fcfg)) return cli_fail(cmd);
        if (cli_model_check_init(&m, o.init_from, &fcfg)) return cli_bad_value(cmd);
    }
    if (o.optim.min_lr < 0) o.optim.min_lr = o.optim.lr * 0.1f;
    loom_dist dist;
    loom_train_block_signals(); /* main did already; before MPI_Init starts threads of its own */
    /* the tp collectives and the pipeline's sends beside the overlap thread */
    loom_dist_want_thread_multiple((o.tp > 1 || o.pp > 1) && o.overlap);
    if (loom_dist_init(&argc, &argv, &dist)) return cli_fail(cmd);
    loom_dist_set_timeout(&dist, comm_timeout);
    loom_status st = loom_train(&o, &dist);
    if (st && st != LOOM_STOPPED) return cli_fail_dist(cmd, &dist);
    loom_dist_finalize(&dist);
    return st == LOOM_STOPPED ? 3 : 0;
}
