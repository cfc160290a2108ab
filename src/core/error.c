/* Per-thread error messages and the panic path for broken invariants. */
#include "loom/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];

loom_status loom_error(loom_status st, const char *fmt, ...) {
    /* through a local buffer: callers wrap the previous message ("...: %s",
     * loom_error_msg()), which would otherwise be read while it is overwritten */
    char buf[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(g_msg, buf, sizeof g_msg);
    return st;
}

const char *loom_error_msg(void) { return g_msg; }

void loom_panic_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "loom: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}
