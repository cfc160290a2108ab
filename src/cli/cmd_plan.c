/* loom plan: what a layout costs before it runs (bytes per rank of every stage, exactly
 * what the trainer allocates; the bubble; traffic per dimension; a predicted step time),
 * or every valid layout of a job ranked. loom bench: the machine speeds plan uses. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loom/train.h"

static const char *help =
    "usage: loom plan [model flags] --ranks N | --nodes N --ranks-per-node K [flags]\n"
    "\n"
    "One layout (--tp and/or --pp given): the bytes each rank of every pipeline stage\n"
    "allocates (exactly what `loom train` reports at start-up for the same flags), the\n"
    "pipeline bubble, the bytes each rank sends per step on each dimension, and a predicted\n"
    "step time. Without --tp and --pp: every valid layout of the job (tp inside a node,\n"
    "pp, a power-of-two dp, ZeRO 0/1/2, --sp), ranked: those that fit --mem first, then by\n"
    "predicted step time.\n"
    "\n" CLI_MODEL_HELP
    "  --batch N, --seq-len T, --total-batch-tokens N   as loom train (defaults 8, 256, one micro-batch)\n"
    "  --ranks N            ranks of the job (default --nodes x --ranks-per-node)\n"
    "  --nodes N, --ranks-per-node K   (default 1 node of --ranks)\n"
    "  --threads N          threads per rank (default 1)\n"
    "  --mem SIZE           memory per node (e.g. 80G, 512M): layouts that need more do not fit\n"
    "  --tp N, --pp N, --sp, --zero 0|1|2, --pp-schedule gpipe|1f1b, --pp-layers a,b,...\n"
    "  --bucket-mb X, --backend cpu|ref   as loom train\n"
    "  --machine FILE       speeds from `loom bench --out FILE` (default: measured now, links assumed)\n"
    "  --calibrate          time this model's layer and the rest (forward + backward of one\n"
    "                       micro-batch, --threads) here, instead of FLOPs at the GEMM speed\n"
    "  --top K              layouts shown when searching (default 10)\n"
    "  --json               one JSON object\n";

enum { O_BATCH = 1, O_SEQ, O_TOTAL, O_RANKS, O_NODES, O_RPN, O_THREADS, O_MEM, O_TP, O_PP, O_SP, O_ZERO, O_SCHED,
       O_LAYERS, O_BUCKET, O_BACKEND, O_MACHINE, O_TOP, O_JSON, O_OUT, O_CALIB, O_HELP };

static int parse_size(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    double k = 1;
    if (*end == 'K' || *end == 'k') k = 1024.0, end++;
    else if (*end == 'M' || *end == 'm') k = 1048576.0, end++;
    else if (*end == 'G' || *end == 'g') k = 1073741824.0, end++;
    else if (*end == 'T' || *end == 't') k = 1099511627776.0, end++;
    if (end == s || *end || !(v > 0)) {
        loom_error(LOOM_ERR_ARG, "--mem: '%s' is not a size (e.g. 80G, 512M)", s);
        return -1;
    }
    *out = v * k;
    return 0;
}

static void print_one(const loom_plan_query *q, const loom_plan *p, const loom_machine *m, int json) {
    const double MiB = 1048576.0;
    if (json) {
        printf("{\"dp\": %d, \"tp\": %d, \"pp\": %d, \"zero\": %d, \"sp\": %d, \"schedule\": \"%s\", "
               "\"micro_batches\": %d, \"bubble\": %.6f, \"stages\": [", p->dp, p->tp, p->pp, p->zero, p->sp,
               p->pp > 1 && p->schedule ? "gpipe" : "1f1b", p->micro, p->bubble);
        for (int s = 0; s < p->pp; s++) {
            size_t all = 0;
            for (int k = 0; k < 5; k++) all += p->bytes[s][k];
            printf("%s{\"layers\": [%d, %d], \"activation_sets\": %d, \"bytes\": {\"model\": %zu, \"adamw\": %zu, "
                   "\"step\": %zu, \"tensor_parallel\": %zu, \"batch\": %zu, \"total\": %zu}}", s ? ", " : "",
                   p->l0[s], p->l0[s + 1] - 1, p->pp > 1 ? p->sets[s] : 1, p->bytes[s][0], p->bytes[s][1],
                   p->bytes[s][2], p->bytes[s][3], p->bytes[s][4], all);
        }
        printf("], \"sent_bytes_per_step\": {\"data_parallel\": %.0f, \"tensor_parallel\": %.0f, \"pipeline\": %.0f}, "
               "\"predicted_ms\": {\"step\": %.3f, \"compute\": %.3f, \"tensor_parallel\": %.3f, \"pipeline_fill\": "
               "%.3f, \"data_parallel_exposed\": %.3f, \"adamw\": %.3f}, \"fits\": %s}", p->comm_dp, p->comm_tp,
               p->comm_pp, 1e3 * p->t_step, 1e3 * p->t_compute, 1e3 * p->t_tp, 1e3 * p->t_pp, 1e3 * p->t_dp,
               1e3 * p->t_opt, p->fits ? "true" : "false");
        return;
    }
    printf("layout: %d ranks (%d per node) = data-parallel %d x tensor-parallel %d x pipeline %d, ZeRO %d%s, %d "
           "micro-batch(es) of %d x %d per data-parallel rank, schedule %s\n", q->ranks, q->ranks_per_node, p->dp,
           p->tp, p->pp, p->zero, p->sp ? ", --sp" : "", p->micro, q->B, q->T,
           p->pp > 1 && p->schedule ? "gpipe" : "1f1b");
    for (int s = 0; s < p->pp; s++) {
        size_t all = 0;
        for (int k = 0; k < 5; k++) all += p->bytes[s][k];
        const int sets = p->pp > 1 ? p->sets[s] : 1;
        printf("bytes per rank on stage %d (layers %d-%d, %d activation set%s): model %zu, AdamW %zu, step %zu, "
               "tensor-parallel %zu, batch %zu = %zu (%.1f MiB)\n", s, p->l0[s], p->l0[s + 1] - 1, sets,
               sets == 1 ? "" : "s", p->bytes[s][0], p->bytes[s][1], p->bytes[s][2], p->bytes[s][3],
               p->bytes[s][4], all, all / MiB);
    }
    printf("pipeline bubble: (p-1)/(m+p-1) = %.1f%%\n", 100 * p->bubble);
    printf("sent per step and rank: data-parallel %.3f MB, tensor-parallel %.3f MB, pipeline %.3f MB\n",
           p->comm_dp / 1e6, p->comm_tp / 1e6, p->comm_pp / 1e6);
    printf("predicted step: %.1f ms = compute %.1f (of which tensor-parallel %.1f) + pipeline fill %.1f + "
           "data-parallel beyond the last backward %.1f + AdamW %.1f\n", 1e3 * p->t_step, 1e3 * p->t_compute,
           1e3 * p->t_tp * (p->micro + p->pp - 1) / (p->micro ? p->micro : 1), 1e3 * p->t_pp, 1e3 * p->t_dp,
           1e3 * p->t_opt);
    printf("machine: GEMM %.1f GFLOP/s per thread x %d, memory %.1f GB/s, links %.1f GB/s (node) %.1f GB/s (network) "
           "%.1f us (%s)\n", m->gemm_gflops, q->threads, m->mem_gbps, m->link_gbps_node, m->link_gbps_net, m->link_us,
           m->source);
    if (q->mem_per_node > 0)
        printf("memory: %.2f GiB per node of %.2f: %s\n", (double)p->max_bytes * q->ranks_per_node / 1073741824.0,
               q->mem_per_node / 1073741824.0, p->fits ? "fits" : "does not fit");
}

int cmd_plan(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_MODEL_OPTIONS,
        {"batch", required_argument, 0, O_BATCH}, {"seq-len", required_argument, 0, O_SEQ},
        {"total-batch-tokens", required_argument, 0, O_TOTAL}, {"ranks", required_argument, 0, O_RANKS},
        {"nodes", required_argument, 0, O_NODES}, {"ranks-per-node", required_argument, 0, O_RPN},
        {"threads", required_argument, 0, O_THREADS}, {"mem", required_argument, 0, O_MEM},
        {"tp", required_argument, 0, O_TP}, {"pp", required_argument, 0, O_PP}, {"sp", no_argument, 0, O_SP},
        {"zero", required_argument, 0, O_ZERO}, {"pp-schedule", required_argument, 0, O_SCHED},
        {"pp-layers", required_argument, 0, O_LAYERS}, {"bucket-mb", required_argument, 0, O_BUCKET},
        {"backend", required_argument, 0, O_BACKEND}, {"machine", required_argument, 0, O_MACHINE},
        {"top", required_argument, 0, O_TOP}, {"json", no_argument, 0, O_JSON}, {"calibrate", no_argument, 0, O_CALIB},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    const char *cmd = "plan", *machine = NULL;
    cli_model m;
    cli_model_defaults(&m, "small");
    loom_plan_query q = {.B = 8, .T = 256, .threads = 1, .backend = "cpu", .tp = 0, .pp = 0};
    long iv, ranks = 0, nodes = 0, rpn = 0, top = 10;
    double fv, bucket_mb = 16;
    int json = 0, bad = 0, c, given = 0, calibrate = 0;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        int r = cli_model_opt(&m, c, optarg);
        if (r) { bad = r < 0; continue; }
        switch (c) {
        case O_BATCH: bad = cli_int("--batch", optarg, 1, 1 << 20, &iv); q.B = (int)iv; break;
        case O_SEQ: bad = cli_int("--seq-len", optarg, 1, 1 << 20, &iv); q.T = (int)iv; break;
        case O_TOTAL: bad = cli_int("--total-batch-tokens", optarg, 1, 1L << 40, &q.total_batch_tokens); break;
        case O_RANKS: bad = cli_int("--ranks", optarg, 1, 1L << 24, &ranks); break;
        case O_NODES: bad = cli_int("--nodes", optarg, 1, 1L << 20, &nodes); break;
        case O_RPN: bad = cli_int("--ranks-per-node", optarg, 1, 4096, &rpn); break;
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &iv); q.threads = (int)iv; break;
        case O_MEM: bad = parse_size(optarg, &q.mem_per_node); break;
        case O_TP: bad = cli_int("--tp", optarg, 1, 4096, &iv); q.tp = (int)iv; given = 1; break;
        case O_PP: bad = cli_int("--pp", optarg, 1, LOOM_PP_MAX_STAGES, &iv); q.pp = (int)iv; given = 1; break;
        case O_SP: q.sp = 1; break;
        case O_ZERO: bad = cli_int("--zero", optarg, 0, 2, &iv); q.zero = (int)iv; break;
        case O_SCHED:
            if ((q.schedule = loom_pp_schedule_parse(optarg)) < 0)
                bad = 1, loom_error(LOOM_ERR_ARG, "--pp-schedule: '%s' must be gpipe or 1f1b", optarg);
            break;
        case O_LAYERS: q.pp_layers = optarg; break;
        case O_BUCKET: bad = cli_float("--bucket-mb", optarg, 1e-3, 1024, &fv); bucket_mb = fv; break;
        case O_BACKEND: q.backend = optarg; break;
        case O_MACHINE: machine = optarg; break;
        case O_TOP: bad = cli_int("--top", optarg, 1, 100000, &top); break;
        case O_JSON: json = 1; break;
        case O_CALIB: calibrate = 1; break;
        case O_HELP: fputs(help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (cli_model_config(&m, &q.cfg)) return cli_bad_value(cmd);
    if (strcmp(q.backend, "cpu") && strcmp(q.backend, "ref"))
        return cli_usage_error(cmd, "--backend: unknown backend '%s' (cpu, ref)", q.backend);
    if (!ranks && !nodes) return cli_usage_error(cmd, "give --ranks N or --nodes N (with --ranks-per-node K)");
    if (!nodes) nodes = 1;
    if (!rpn) rpn = ranks ? (ranks + nodes - 1) / nodes : 1;
    if (!ranks) ranks = nodes * rpn;
    if (ranks != nodes * rpn)
        return cli_usage_error(cmd, "--ranks %ld is not --nodes %ld x --ranks-per-node %ld", ranks, nodes, rpn);
    q.ranks = (int)ranks, q.ranks_per_node = (int)rpn;
    q.bucket = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    if (q.bucket < 1) q.bucket = 1;
    loom_machine mc;
    if (machine) {
        if (loom_machine_load(machine, &mc)) return cli_fail(cmd);
    } else {
        omp_set_num_threads(q.threads);
        loom_machine_measure(q.threads, &mc);
    }
    if (calibrate) {
        omp_set_num_threads(q.threads);
        if (loom_plan_calibrate(&q)) return cli_fail(cmd);
        snprintf(mc.source + strlen(mc.source), sizeof mc.source - strlen(mc.source),
                 "; compute: this model timed here, %.1f ms a layer, %.1f ms the rest", 1e3 * q.layer_s, 1e3 * q.rest_s);
    }
    if (given) {
        if (!q.tp) q.tp = 1;
        if (!q.pp) q.pp = 1;
        loom_plan p;
        if (loom_plan_one(&q, &mc, &p)) return cli_fail(cmd);
        print_one(&q, &p, &mc, json);
        if (json) printf("\n");
        return 0;
    }
    if (q.pp_layers) return cli_usage_error(cmd, "--pp-layers: give --pp too (a search balances the layers itself)");
    loom_plan *best = malloc(sizeof *best * (size_t)top);
    if (!best) return cli_usage_error(cmd, "out of memory");
    long considered = 0;
    const double t0 = loom_now();
    const int n = loom_plan_search(&q, &mc, best, (int)top, &considered);
    const double secs = loom_now() - t0;
    if (json) {
        printf("{\"ranks\": %d, \"ranks_per_node\": %d, \"considered\": %ld, \"valid\": %d, \"seconds\": %.3f, "
               "\"layouts\": [", q.ranks, q.ranks_per_node, considered, n, secs);
        for (int i = 0; i < n && i < top; i++) {
            if (i) printf(", ");
            print_one(&q, &best[i], &mc, 1);
        }
        printf("]}\n");
    } else {
        printf("%d ranks (%d per node): %d valid layouts of %ld considered, in %.3f s; the best %d:\n", q.ranks,
               q.ranks_per_node, n, considered, secs, n < top ? n : (int)top);
        printf("%4s %5s %4s %4s %4s %3s %6s %8s %13s %5s %10s\n", "#", "dp", "tp", "pp", "zero", "sp", "micro",
               "bubble%", "max MiB/rank", "fits", "step ms");
        for (int i = 0; i < n && i < top; i++) {
            const loom_plan *p = &best[i];
            printf("%4d %5d %4d %4d %4d %3d %6d %8.1f %13.1f %5s %10.1f\n", i + 1, p->dp, p->tp, p->pp, p->zero, p->sp,
                   p->micro, 100 * p->bubble, p->max_bytes / 1048576.0, p->fits ? "yes" : "no", 1e3 * p->t_step);
        }
        printf("machine: %s\n", mc.source);
    }
    free(best);
    if (!n) return cli_usage_error(cmd, "no valid layout for %d ranks (check --total-batch-tokens: at least one "
                                   "micro-batch per data-parallel rank)", q.ranks);
    return 0;
}

static const char *bench_help =
    "usage: [mpirun -np 2] loom bench [--threads N] [--out FILE]\n"
    "\n"
    "Measures what `loom plan` predicts from: fp32 GEMM GFLOP/s per thread and memory\n"
    "bandwidth with N threads, and under MPI with 2 or more ranks the point-to-point\n"
    "bandwidth and latency between ranks 0 and 1 (the node's link when they share a\n"
    "node, else the network's). Writes the JSON `loom plan --machine` reads.\n";

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {{"threads", required_argument, 0, O_THREADS}, {"out", required_argument, 0, O_OUT},
                                         {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "bench", *out = NULL;
    long threads = 1;
    int bad = 0, c;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while (!bad && (c = cli_getopt(argc, argv, opts, seen)) != -1) {
        switch (c) {
        case O_THREADS: bad = cli_int("--threads", optarg, 1, 4096, &threads); break;
        case O_OUT: out = optarg; break;
        case O_HELP: fputs(bench_help, stdout); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (bad) return cli_bad_value(cmd);
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    loom_dist d;
    if (loom_dist_init(&argc, &argv, &d)) return cli_fail(cmd);
    omp_set_num_threads((int)threads);
    loom_machine m;
    loom_machine_measure((int)threads, &m);
    if (d.size > 1 && d.rank < 2) { /* ping-pong between ranks 0 and 1 */
        const size_t big = (size_t)4 << 20; /* floats: 16 MiB */
        float *buf = loom_alloc(sizeof(float) * big, "bandwidth probe");
        if (!buf) return cli_fail(cmd);
        const int peer = 1 - d.rank;
        double lat = 0, bw = 0;
        for (int pass = 0; pass < 2; pass++) {
            const size_t n = pass ? big : 1;
            const int reps = pass ? 8 : 200;
            const double t0 = loom_now();
            for (int r = 0; r < reps; r++) {
                loom_p2p q = {0};
                if (d.rank == 0) {
                    loom_p2p_isend(&d.world, buf, n, peer, 9, &q);
                    loom_p2p_wait(&q, "bench ping");
                    loom_p2p_irecv(&d.world, buf, n, peer, 9, &q);
                    loom_p2p_wait(&q, "bench pong");
                } else {
                    loom_p2p_irecv(&d.world, buf, n, peer, 9, &q);
                    loom_p2p_wait(&q, "bench ping");
                    loom_p2p_isend(&d.world, buf, n, peer, 9, &q);
                    loom_p2p_wait(&q, "bench pong");
                }
            }
            const double one = (loom_now() - t0) / (2.0 * reps);
            if (pass) bw = sizeof(float) * n / one / 1e9;
            else lat = one * 1e6;
        }
        loom_free(buf);
        m.link_us = lat;
        if (d.local_size == d.size) m.link_gbps_node = bw; /* ranks 0 and 1 share a node */
        else m.link_gbps_net = bw;
        snprintf(m.source, sizeof m.source, "loom bench: GEMM and memory with %ld thread(s), ranks 0-1 %s", threads,
                 d.local_size == d.size ? "on one node (network link assumed 10 GB/s)"
                                         : "across nodes (node link assumed 10 GB/s)");
    }
    int rc = 0;
    if (d.rank == 0) {
        FILE *fp = out ? fopen(out, "w") : stdout;
        if (!fp) {
            loom_error(LOOM_ERR_IO, "--out %s: cannot create it", out);
            rc = cli_fail(cmd);
        } else {
            fprintf(fp, "{\"gemm_gflops\": %.3f, \"mem_gbps\": %.3f, \"link_gbps_node\": %.3f, \"link_gbps_net\": %.3f, "
                    "\"link_us\": %.3f, \"threads\": %ld, \"source\": \"%s\"}\n", m.gemm_gflops, m.mem_gbps,
                    m.link_gbps_node, m.link_gbps_net, m.link_us, threads, m.source);
            if (out && fclose(fp) != 0) {
                loom_error(LOOM_ERR_IO, "--out %s: write failed", out);
                rc = cli_fail(cmd);
            }
        }
    }
    loom_dist_finalize(&d);
    return rc;
}
