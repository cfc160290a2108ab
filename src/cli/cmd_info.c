/* loom info: what this build and machine are. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "kernels/kernels.h"
#include "loom/dist.h"

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"threads", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *cmd = "info";
    long threads = 0;
    int c;
    unsigned char seen[CLI_MAX_OPT] = {0};
    opterr = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, seen)) != -1) {
        switch (c) {
        case 't': if (cli_int("--threads", optarg, 1, 4096, &threads)) return cli_bad_value(cmd); break;
        case 'h': puts("usage: loom info [--threads N]\n\nPrints the build, the kernels, the CPU and its measured fp32 peak."); return 0;
        CLI_GETOPT_ERRORS(cmd, argv);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (threads > 0) omp_set_num_threads((int)threads);
    loom_cpu_info ci;
    loom_cpu_detect(&ci);
    int nt = omp_get_max_threads();
    printf("loom %s\n", LOOM_VERSION);
    printf("compiler: %s, C%ld, OpenMP %d\n", __VERSION__, (long)__STDC_VERSION__, _OPENMP);
    printf("GEMM: %s\n", loom_gemm_library());
    printf("kernels: cpu backend (OpenMP + SIMD; attention in blocks of 64 query rows, O(T) workspace per thread)\n");
    printf("cpu: %s, %d logical CPUs; AVX2 %s, FMA %s, AVX-512F %s, AVX-512 BF16 %s\n", ci.model,
           ci.n_cpus, ci.has_avx2 ? "yes" : "no", ci.has_fma ? "yes" : "no",
           ci.has_avx512f ? "yes" : "no", ci.has_avx512bf16 ? "yes" : "no");
    printf("threads: %d\n", nt);
    double p1 = loom_cpu_measure_peak_flops(1, 0.3), pn = nt > 1 ? loom_cpu_measure_peak_flops(nt, 0.3) : p1;
    printf("peak fp32 FMA: %.0f GFLOP/s on 1 thread, %.0f GFLOP/s on %d threads (MFU denominator)\n",
           p1 / 1e9, pn / 1e9, nt);
    printf("MPI: %s\nCUDA: not in this build\n", loom_dist_library());
    return 0;
}
