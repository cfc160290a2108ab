/* Signals of a training run, taken by the process's signal thread (core): the first
 * SIGTERM, SIGINT or SIGUSR1 asks the loop to stop after the current step with a
 * checkpoint; a second SIGINT exits at once. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "loom/train.h"
#include "train/signals.h"

static volatile sig_atomic_t g_stop_signal;

static void on_signal(int sig, void *ctx) {
    (void)ctx;
    if (sig == SIGINT && g_stop_signal) {
        static const char msg[] = "loom: second interrupt: exiting now without a checkpoint\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(130);
    }
    g_stop_signal = sig;
}

void loom_train_block_signals(void) {
    static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    loom_signals_block(sigs, 3);
}

void loom_signals_start(void) {
    loom_train_block_signals();
    g_stop_signal = 0;
    if (loom_signals_thread_start(on_signal, NULL))
        fprintf(stderr, "loom: warning: %s: signals take their default actions\n", loom_error_msg());
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit is a write error, reported as such */
}

void loom_signals_stop(void) { loom_signals_thread_stop(); }

int loom_signals_pending(void) { return g_stop_signal; }
