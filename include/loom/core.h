/* loom core: status codes and error messages, counted aligned allocation, the
 * counter-based RNG, timers, CPU facts and CRC32C. Everything above builds on these;
 * nothing here knows about models, files formats or MPI. */
#ifndef LOOM_CORE_H
#define LOOM_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A caller-recoverable failure returns one of these; the message (which file or flag,
 * what is wrong) is kept per thread and read with loom_error_msg(). */
typedef enum loom_status {
    LOOM_OK = 0,
    LOOM_ERR_ARG,    /* a bad flag, option or config value */
    LOOM_ERR_IO,     /* a file could not be opened, read or written */
    LOOM_ERR_FORMAT, /* a file is malformed (wrong magic, truncated, bad header) */
    LOOM_ERR_NOMEM,  /* an allocation failed; the message says how much was asked */
    LOOM_STOPPED,    /* not a failure: a run stopped early on a signal, after a checkpoint */
} loom_status;

/* Records a printf-style message for the calling thread and returns `st`, so that
 * `return loom_error(LOOM_ERR_IO, "%s: %s", path, strerror(errno));` reads as one line. */
loom_status loom_error(loom_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded by loom_error on this thread ("" if none). */
const char *loom_error_msg(void);

/* A broken invariant is a bug, not an input error: print file:line and abort. */
void loom_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define LOOM_PANIC(...) loom_panic_at(__FILE__, __LINE__, __VA_ARGS__)
#define LOOM_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) loom_panic_at(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

/* 64-byte aligned, zeroed allocation with byte accounting. On failure returns NULL
 * and records "out of memory: <what> needs N bytes (X GiB)". Free with loom_free. */
void *loom_alloc(size_t bytes, const char *what);
void loom_free(void *p);
size_t loom_alloc_bytes_live(void); /* bytes currently held through loom_alloc */
size_t loom_alloc_bytes_peak(void);
/* A cap on live bytes (0 = none), so tests and users can provoke and bound OOM. */
void loom_alloc_set_limit(size_t bytes);

/* Counter-based RNG: every value is a pure function of (key, counter), so results do
 * not depend on thread counts or on the order in which elements are generated. */
uint64_t loom_hash64(uint64_t key, uint64_t counter);
float loom_rng_uniform(uint64_t key, uint64_t counter); /* in [0, 1) */
float loom_rng_normal(uint64_t key, uint64_t counter);  /* N(0, 1), Box-Muller */

/* Seconds on a monotonic clock. */
double loom_now(void);

/* CPU facts used for kernel selection and MFU. */
typedef struct loom_cpu_info {
    char model[64];
    int has_avx2, has_fma, has_avx512f, has_avx512bf16;
    int n_cpus;       /* online logical CPUs */
} loom_cpu_info;
void loom_cpu_detect(loom_cpu_info *info);
/* Measures the fp32 FMA peak (FLOP/s) of `threads` threads with a register-resident
 * FMA loop running about `seconds`. Used as the MFU denominator. */
double loom_cpu_measure_peak_flops(int threads, double seconds);

/* Reads a whole file ("-": standard input) into a malloc'd, NUL-terminated buffer and
 * its length; NULL with errno set on failure. The caller frees it. */
char *loom_read_file(const char *path, size_t *len);

/* mkdir -p: creates dir and its missing parents; errors start with `flag` (the option
 * that named the directory) and name the directory. */
loom_status loom_mkdir_p(const char *dir, const char *flag);

/* An advisory lock on DIR/.lock (fcntl: released by the kernel when the process ends,
 * however it ends, and honoured over NFS), which then holds "host H, pid P". A directory
 * another live process holds is refused naming it ("FLAG: DIR is in use by another run
 * (host H, pid P)"). *fd: the lock, for loom_dir_unlock. */
loom_status loom_dir_lock(const char *dir, const char *flag, int *fd);
void loom_dir_unlock(int fd);

/* One signal thread per process (train and prep): loom_signals_block(sigs, n) blocks
 * them in the calling thread, and so in every thread started after it (call it first,
 * before OpenMP or MPI start theirs); loom_signals_thread_start then takes them in one
 * thread in sigwait() and calls on_signal(sig, ctx) there for each, never in an
 * asynchronous handler; loom_signals_thread_stop ends the thread and restores the mask. */
void loom_signals_block(const int *sigs, int n);
loom_status loom_signals_thread_start(void (*on_signal)(int sig, void *ctx), void *ctx);
void loom_signals_thread_stop(void);

/* CRC32C (Castagnoli), incremental: crc = loom_crc32c(crc, buf, n), starting at 0. */
uint32_t loom_crc32c(uint32_t crc, const void *buf, size_t n);
/* The CRC32C of A followed by B, from the CRC32Cs of A and B and B's length. */
uint32_t loom_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

#ifdef __cplusplus
}
#endif
#endif
