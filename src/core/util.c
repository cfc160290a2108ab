/* RNG, clock, CPU detection and peak measurement, CRC32C. */
#include "loom/core.h"

#include <math.h>
#include <pthread.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __x86_64__
#include <cpuid.h>
#include <immintrin.h>
#endif

/* splitmix64 finaliser over a mixed (key, counter): a strong 64-bit bijective mix. */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t loom_hash64(uint64_t key, uint64_t counter) {
    return mix64(mix64(key + 0x9e3779b97f4a7c15ULL) ^ (counter * 0xd6e8feb86659fd93ULL + 0x632be59bd9b4e019ULL));
}

float loom_rng_uniform(uint64_t key, uint64_t counter) {
    return (float)(loom_hash64(key, counter) >> 40) * (1.0f / 16777216.0f);
}

float loom_rng_normal(uint64_t key, uint64_t counter) {
    uint64_t h = loom_hash64(key, counter);
    /* two 32-bit uniforms from one hash; u1 in (0,1] so log is finite */
    double u1 = ((double)(h >> 32) + 1.0) * (1.0 / 4294967296.0);
    double u2 = (double)(h & 0xffffffffu) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double loom_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void loom_cpu_detect(loom_cpu_info *info) {
    memset(info, 0, sizeof *info);
    info->n_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(info->model, sizeof info->model, "unknown");
#ifdef __x86_64__
    __builtin_cpu_init();
    info->has_avx2 = __builtin_cpu_supports("avx2");
    info->has_fma = __builtin_cpu_supports("fma");
    info->has_avx512f = __builtin_cpu_supports("avx512f");
    unsigned a, b, c, d;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) info->has_avx512bf16 = (a >> 5) & 1;
    unsigned brand[12];
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
        char tmp[49];
        memcpy(tmp, brand, 48);
        tmp[48] = 0;
        const char *s = tmp;
        while (*s == ' ') s++;
        snprintf(info->model, sizeof info->model, "%s", s);
    }
#endif
}

/* A dependency-free FMA loop: 12 independent accumulators hide the FMA latency. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fma_loop_avx512(long iters) {
    __m512 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, acc[i]);
    float out[16];
    _mm512_storeu_ps(out, s);
    return (double)out[0];
}
__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long iters) {
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return (double)out[0];
}
#endif

double loom_cpu_measure_peak_flops(int threads, double seconds) {
    loom_cpu_info ci;
    loom_cpu_detect(&ci);
    int width = 0;
#if defined(__x86_64__)
    if (ci.has_avx512f) width = 16;
    else if (ci.has_avx2 && ci.has_fma) width = 8;
#endif
    if (width == 0) return 0.0;
    const long iters = 2000000; /* 2M * 12 FMAs per call */
    double best = 0.0, sink = 0.0;
    double t_end = loom_now() + seconds;
    do {
        double t0 = loom_now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
#if defined(__x86_64__)
            sink += width == 16 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#endif
        }
        double dt = loom_now() - t0;
        double flops = (double)threads * iters * 12.0 * width * 2.0 / dt;
        if (flops > best) best = flops;
    } while (loom_now() < t_end);
    if (sink == 12345.678) fprintf(stderr, "%f\n", sink); /* keep the loop alive */
    return best;
}

/* CRC32C: slicing-by-1 table, or the SSE4.2 instruction when present. */
static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[i] = c;
    }
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t loom_crc32c(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = buf;
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(crc, p, n);
#endif
    static pthread_once_t once = PTHREAD_ONCE_INIT; /* callers may be many threads at once */
    pthread_once(&once, crc_init);
    while (n--) crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

loom_status loom_mkdir_p(const char *dir, const char *flag) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return loom_error(LOOM_ERR_IO, "%s: cannot create directory %s: %s", flag, buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return loom_error(LOOM_ERR_IO, "%s: cannot create directory %s: %s", flag, dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return loom_error(LOOM_ERR_IO, "%s: %s is not a directory", flag, dir);
    return LOOM_OK;
}


char *loom_read_file(const char *path, size_t *len) {
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp) return NULL;
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) { /* fopen accepts a directory */
        if (fp != stdin) fclose(fp);
        errno = EISDIR;
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    int err = 0;
    while (buf) {
        errno = 0;
        n += fread(buf + n, 1, cap - n, fp);
        if (n < cap) break;
        char *nb = realloc(buf, (cap *= 2) + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    if (ferror(fp)) err = errno ? errno : EIO; /* the read's own errno, e.g. EISDIR */
    if (fp != stdin) fclose(fp);
    if (!buf || err) {
        free(buf);
        errno = err ? err : ENOMEM;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* CRC32C of A||B from crc(A), crc(B) and |B|: crc(A) times x^(8|B|) modulo the
 * polynomial, plus crc(B). Polynomials are bit-reflected: bit 31 is x^0. */
#define CRC32C_POLY 0x82f63b78u
static uint32_t gf2_mulmod(uint32_t a, uint32_t b) {
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) p ^= b;
        b = b & 1 ? (b >> 1) ^ CRC32C_POLY : b >> 1; /* b * x */
    }
    return p;
}

uint32_t loom_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b) {
    uint32_t xpow = 1u << 31;          /* x^0 */
    uint32_t sq = 1u << 23;            /* x^8: one byte */
    for (size_t n = len_b; n; n >>= 1) {
        if (n & 1) xpow = gf2_mulmod(xpow, sq);
        sq = gf2_mulmod(sq, sq);
    }
    return gf2_mulmod(xpow, crc_a) ^ crc_b;
}

loom_status loom_dir_lock(const char *dir, const char *flag, int *lock_fd) {
    char path[4200], host[256] = "?";
    *lock_fd = -1;
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: %s: cannot create: %s", flag, path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        char who[300] = "";
        ssize_t n = pread(fd, who, sizeof who - 1, 0);
        who[n > 0 ? n : 0] = 0;
        who[strcspn(who, "\r\n")] = 0;
        close(fd);
        if (e == EACCES || e == EAGAIN)
            return loom_error(LOOM_ERR_ARG, "%s: %s is in use by another run (%s); wait for it to end or use another "
                              "directory", flag, dir, who[0] ? who : "holder unknown");
        return loom_error(LOOM_ERR_IO, "%s: %s: cannot lock: %s", flag, path, strerror(e));
    }
    gethostname(host, sizeof host - 1);
    char who[320];
    int len = snprintf(who, sizeof who, "host %s, pid %ld\n", host, (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return loom_error(LOOM_ERR_IO, "%s: %s: write failed: %s", flag, path, strerror(e));
    }
    *lock_fd = fd;
    return LOOM_OK;
}

void loom_dir_unlock(int fd) {
    if (fd >= 0) close(fd); /* the file stays: unlinking it would race the next locker */
}
