/* The signal thread of a training run (signals.c). The first SIGTERM, SIGINT or SIGUSR1
 * asks the loop to stop after the current step; a second SIGINT exits at once (130). */
#ifndef LOOM_TRAIN_SIGNALS_H
#define LOOM_TRAIN_SIGNALS_H

void loom_signals_start(void); /* blocks the signals (if not yet) and starts the thread */
void loom_signals_stop(void);  /* ends the thread and restores the signal mask */
int loom_signals_pending(void); /* the first stop signal received since the start, or 0 */

#endif
