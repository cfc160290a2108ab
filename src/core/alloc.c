/* The one allocation wrapper: 64-byte aligned, zeroed, counted. A small header in front
 * of each block remembers its size so loom_free can keep the books. */
#include "loom/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define LOOM_ALIGN 64

static _Atomic size_t g_live, g_peak, g_limit;

void loom_alloc_set_limit(size_t bytes) { atomic_store(&g_limit, bytes); }
size_t loom_alloc_bytes_live(void) { return atomic_load(&g_live); }
size_t loom_alloc_bytes_peak(void) { return atomic_load(&g_peak); }

void *loom_alloc(size_t bytes, const char *what) {
    size_t limit = atomic_load(&g_limit);
    size_t total = bytes + LOOM_ALIGN;
    void *raw = NULL;
    if (total >= bytes && (limit == 0 || atomic_load(&g_live) + bytes <= limit))
        raw = aligned_alloc(LOOM_ALIGN, (total + LOOM_ALIGN - 1) / LOOM_ALIGN * LOOM_ALIGN);
    if (!raw) {
        loom_error(LOOM_ERR_NOMEM, "out of memory: %s needs %zu bytes (%.2f GiB)",
                   what ? what : "allocation", bytes, (double)bytes / (1u << 30));
        return NULL;
    }
    memset(raw, 0, total);
    *(size_t *)raw = bytes;
    size_t live = atomic_fetch_add(&g_live, bytes) + bytes;
    size_t peak = atomic_load(&g_peak);
    while (live > peak && !atomic_compare_exchange_weak(&g_peak, &peak, live)) {}
    return (char *)raw + LOOM_ALIGN;
}

void loom_free(void *p) {
    if (!p) return;
    char *raw = (char *)p - LOOM_ALIGN;
    atomic_fetch_sub(&g_live, *(size_t *)raw);
    free(raw);
}
