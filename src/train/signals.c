/* Signals of a training run. SIGTERM, SIGINT and SIGUSR1 are blocked in every thread
 * (the OpenMP and oneDNN workers inherit the mask) and taken by one thread in sigwait(),
 * so no handler ever interrupts the math or the allocator. */
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "loom/train.h"
#include "train/signals.h"

/* Signals. SIGTERM, SIGINT and SIGUSR1 are blocked in every thread (the OpenMP and
 * oneDNN workers inherit the mask) and taken by one thread in sigwait(), so no handler
 * ever interrupts the math or the allocator. The first one asks the loop to stop
 * after the current step with a checkpoint; a second SIGINT exits at once. */
static volatile sig_atomic_t g_stop_signal;
static pthread_t g_sig_thread;
static int g_sig_thread_running;
static sigset_t g_sig_set, g_sig_old;

static void *signal_thread(void *arg) {
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&g_sig_set, &sig) != 0) continue;
        if (sig == SIGUSR2 && !g_sig_thread_running) return NULL; /* shutdown */
        if (sig == SIGINT && g_stop_signal) {
            static const char msg[] = "loom: second interrupt: exiting now without a checkpoint\n";
            ssize_t r = write(2, msg, sizeof msg - 1);
            (void)r;
            _exit(130);
        }
        if (sig != SIGUSR2) g_stop_signal = sig;
    }
}

static int g_blocked_early;

void loom_train_block_signals(void) {
    if (g_blocked_early) return;
    sigemptyset(&g_sig_set);
    sigaddset(&g_sig_set, SIGTERM);
    sigaddset(&g_sig_set, SIGINT);
    sigaddset(&g_sig_set, SIGUSR1);
    sigaddset(&g_sig_set, SIGUSR2); /* internal: wakes the thread to exit */
    pthread_sigmask(SIG_BLOCK, &g_sig_set, &g_sig_old);
    g_blocked_early = 1;
}

void loom_signals_start(void) {
    loom_train_block_signals();
    g_stop_signal = 0;
    g_sig_thread_running = 1;
    if (pthread_create(&g_sig_thread, NULL, signal_thread, NULL) != 0) g_sig_thread_running = 0;
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit is a write error, reported as such */
}

void loom_signals_stop(void) {
    if (g_sig_thread_running) {
        g_sig_thread_running = 0;
        pthread_kill(g_sig_thread, SIGUSR2);
        pthread_join(g_sig_thread, NULL);
    }
    pthread_sigmask(SIG_SETMASK, &g_sig_old, NULL);
    g_blocked_early = 0;
}


int loom_signals_pending(void) { return g_stop_signal; }
