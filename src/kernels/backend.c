/* Backend lookup by name. */
#include <string.h>

#include "kernels/kernels.h"

const loom_backend *loom_backend_get(const char *name) {
    if (!strcmp(name, "cpu")) return loom_backend_cpu();
    if (!strcmp(name, "ref")) return loom_backend_ref();
    return NULL;
}
