/* The signal thread that train and prep share: the signals a command handles are
 * blocked in every thread (blocked first, before any other thread starts, so that the
 * OpenMP, oneDNN and MPI threads inherit the mask) and taken by one thread in sigwait(),
 * so no asynchronous handler ever interrupts the math, the allocator or a write. SIGUSR2
 * is blocked with them: it wakes the thread to end. */
#include <pthread.h>
#include <signal.h>

#include "loom/core.h"

static sigset_t g_set, g_old;
static int g_blocked, g_running;
static pthread_t g_thread;
static void (*g_on_signal)(int sig, void *ctx);
static void *g_ctx;

void loom_signals_block(const int *sigs, int n) {
    sigset_t add;
    sigemptyset(&add);
    for (int i = 0; i < n; i++) sigaddset(&add, sigs[i]);
    sigaddset(&add, SIGUSR2);
    if (!g_blocked) {
        sigemptyset(&g_set);
        pthread_sigmask(SIG_BLOCK, &add, &g_old);
        g_blocked = 1;
    } else {
        pthread_sigmask(SIG_BLOCK, &add, NULL);
    }
    for (int i = 0; i < n; i++) sigaddset(&g_set, sigs[i]);
    sigaddset(&g_set, SIGUSR2);
}

static void *signal_thread(void *arg) {
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&g_set, &sig) != 0) continue;
        if (sig == SIGUSR2) {
            if (!__atomic_load_n(&g_running, __ATOMIC_ACQUIRE)) return NULL; /* loom_signals_thread_stop */
            continue;
        }
        g_on_signal(sig, g_ctx);
    }
}

loom_status loom_signals_thread_start(void (*on_signal)(int sig, void *ctx), void *ctx) {
    LOOM_CHECK(g_blocked && !g_running);
    g_on_signal = on_signal;
    g_ctx = ctx;
    __atomic_store_n(&g_running, 1, __ATOMIC_RELEASE);
    if (pthread_create(&g_thread, NULL, signal_thread, NULL) != 0) {
        g_running = 0;
        loom_signals_thread_stop(); /* no thread to take them: the default actions again */
        return loom_error(LOOM_ERR_NOMEM, "cannot start the signal thread");
    }
    return LOOM_OK;
}

void loom_signals_thread_stop(void) {
    if (__atomic_load_n(&g_running, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&g_running, 0, __ATOMIC_RELEASE);
        pthread_kill(g_thread, SIGUSR2);
        pthread_join(g_thread, NULL);
    }
    if (g_blocked) pthread_sigmask(SIG_SETMASK, &g_old, NULL);
    g_blocked = 0;
}
