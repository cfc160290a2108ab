/* MB/s of loom's GPT-2 encoder: single-thread loom_tokenizer_encode and 2-thread
 * loom_tokenizer_encode_parallel on tinyshakespeare and on a larger mixed-Unicode text
 * made from it (--write-mixed writes that text so tiktoken can read the same bytes).
 * bench/bench_tokenizer.sh runs this beside tiktoken. Each figure is a median. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loom/tokenizer.h"

/* the whole file, via the library's reader */
static uint8_t *read_all(const char *path, size_t *len) { return (uint8_t *)loom_read_file(path, len); }

/* The corpus 4 times over, each line changed with a fixed pattern: accented vowels,
 * Greek, Cyrillic, CJK, Hangul, Arabic, emoji, other digits and non-ASCII spaces
 * (5.97 MB, 24% of the bytes non-ASCII). */
static uint8_t *make_mixed(const uint8_t *s, size_t n, size_t *out_len) {
    static const char *inserts[] = {" Καλημέρα κόσμε", " Привет, мир!", " 日本語のテキストです。", " 안녕하세요 세계",
                                    " مرحبا بالعالم", " 😀👍🏽 🇺🇸", " ٣٤٥ ४२ １２３", "\u00a0nbsp\u3000ideographic",
                                    " naïve café résumé", " don’t “quoted”"};
    size_t cap = n * 4 * 2 + 1024, k = 0, line = 0;
    uint8_t *o = malloc(cap);
    if (!o) return NULL;
    for (int rep = 0; rep < 4; rep++) {
        for (size_t i = 0; i < n; i++) {
            uint8_t c = s[i];
            if (c == '\n') {
                line++;
                if ((line + (size_t)rep) % 3 == 0) {
                    const char *ins = inserts[(line / 3 + (size_t)rep) % 10];
                    memcpy(o + k, ins, strlen(ins));
                    k += strlen(ins);
                }
                o[k++] = c;
            } else if ((line + (size_t)rep) % 4 == 1 && (c == 'e' || c == 'o' || c == 'a')) {
                const char *acc = c == 'e' ? "é" : c == 'o' ? "ö" : "à";
                memcpy(o + k, acc, 2);
                k += 2;
            } else {
                o[k++] = c;
            }
        }
    }
    *out_len = k;
    return o;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double cpu_self(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
/* Busy CPU seconds of the whole machine, from /proc/stat. */
static double cpu_busy(void) {
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (!f) return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
               &v[7]) != 8)
        v[0] = 0;
    fclose(f);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median MB/s over `trials` trials, each repeating the encode for >= min_time s. */
static void run(const loom_tokenizer *tok, const char *name, const uint8_t *s, size_t n, int threads, int trials,
                double min_time) {
    double mbs[64];
    loom_tokens out = {0};
    size_t ntok = 0;
    double b0 = cpu_busy(), c0 = cpu_self(), w0 = now();
    for (int t = 0; t < trials; t++) {
        int reps = 0;
        double t0 = now(), el;
        do {
            out.len = 0;
            loom_status st = threads == 1 ? loom_tokenizer_encode(tok, s, n, LOOM_TOKENIZER_SPECIAL_ORDINARY, &out)
                                          : loom_tokenizer_encode_parallel(tok, s, n, LOOM_TOKENIZER_SPECIAL_ORDINARY,
                                                                           threads, &out);
            if (st) {
                fprintf(stderr, "bench_tokenizer: %s\n", loom_error_msg());
                exit(1);
            }
            reps++;
            el = now() - t0;
        } while (el < min_time);
        mbs[t] = (double)n * reps / el / 1e6;
        ntok = out.len;
    }
    double wall = now() - w0, own = cpu_self() - c0, busy = cpu_busy() - b0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double other = wall > 0 ? 100.0 * (busy - own) / (wall * (double)ncpu) : 0;
    if (other < 0) other = 0;
    qsort(mbs, (size_t)trials, sizeof *mbs, cmp_double);
    printf("loom      %-16s %d thread%s %8.2f MB/s  (median of %d, min %.2f, max %.2f)  %zu bytes -> %zu tokens  "
           "other %.0f%%\n",
           name, threads, threads > 1 ? "s" : " ", mbs[trials / 2], trials, mbs[0], mbs[trials - 1], n, ntok, other);
    fflush(stdout);
    loom_tokens_free(&out);
}

int main(int argc, char **argv) {
    const char *text_path = "data/tinyshakespeare.txt", *rank_path = "data/gpt2/r50k_base.tiktoken";
    const char *write_mixed = NULL;
    int trials = 7, max_threads = 2;
    double min_time = 0.3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (!strcmp(argv[i], "--ranks") && i + 1 < argc) rank_path = argv[++i];
        else if (!strcmp(argv[i], "--trials") && i + 1 < argc) trials = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) max_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) min_time = atof(argv[++i]);
        else if (!strcmp(argv[i], "--write-mixed") && i + 1 < argc) write_mixed = argv[++i];
        else {
            fprintf(stderr,
                    "usage: bench_tokenizer [--text FILE] [--ranks FILE] [--trials 7] [--threads 2] [--min-time 0.3]\n"
                    "                       [--write-mixed FILE (write the mixed text and exit)]\n");
            return 2;
        }
    }
    if (trials < 1 || trials > 64) trials = 7;
    size_t n = 0, mn = 0;
    uint8_t *text = read_all(text_path, &n), *mixed = text ? make_mixed(text, n, &mn) : NULL;
    if (!text || !mixed) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        return 1;
    }
    if (write_mixed) {
        FILE *f = fopen(write_mixed, "wb");
        if (!f || fwrite(mixed, 1, mn, f) != mn || fclose(f)) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", write_mixed);
            return 1;
        }
        return 0;
    }
    loom_tokenizer *tok;
    double t0 = now();
    if (loom_tokenizer_load(rank_path, &tok)) {
        fprintf(stderr, "bench_tokenizer: %s\n", loom_error_msg());
        return 1;
    }
    printf("bench_tokenizer: loaded %s in %.0f ms; %d trials of >= %.2f s each\n", rank_path, (now() - t0) * 1e3,
           trials, min_time);
    for (int th = 1; th <= max_threads; th++) {
        run(tok, "tinyshakespeare", text, n, th, trials, min_time);
        run(tok, "mixed-unicode", mixed, mn, th, trials, min_time);
    }
    loom_tokenizer_free(tok);
    free(text);
    free(mixed);
    return 0;
}
