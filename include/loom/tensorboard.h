/* TensorBoard event files written by loom itself: TFRecord framing (length, masked
 * CRC32C of the length, the record, masked CRC32C of the record) around hand-encoded
 * `Event` protocol buffers, each step's scalars one `Summary` in one record. Every
 * record goes to the file in one write() as soon as it is made, so the file can be read
 * while the run goes on and, after kill -9, holds every whole record up to the last. */
#ifndef LOOM_TENSORBOARD_H
#define LOOM_TENSORBOARD_H

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_tb loom_tb;

/* Creates DIR (mkdir -p; errors name `flag`) and in it a new event file
 * events.out.tfevents.<seconds>.<host>.<pid>.loom, starting with the file-version
 * event TensorBoard expects. */
loom_status loom_tb_open(loom_tb **out, const char *dir, const char *flag);
/* One event at `step`: the n scalars tags[i] = values[i], stamped with the wall clock. */
loom_status loom_tb_scalars(loom_tb *tb, long step, int n, const char *const *tags, const float *values);
void loom_tb_close(loom_tb *tb);
const char *loom_tb_path(const loom_tb *tb);

#ifdef __cplusplus
}
#endif
#endif
