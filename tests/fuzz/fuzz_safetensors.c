/* libFuzzer harness for the safetensors reader and the JSON parser: parses the input
 * as a safetensors file and walks every tensor and metadata entry, then parses it as
 * JSON and checks that escaping each string re-parses to the same bytes. Build and
 * run with bench/fuzz.sh; not part of the ctest suite. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "loom/safetensors.h"

#define REQUIRE(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Every accepted file must be self-consistent and readable in full. */
static void walk_safetensors(const loom_st_file *f) {
    volatile unsigned sink = 0;
    for (size_t i = 0; i < loom_st_count(f); i++) {
        const loom_st_tensor *t = loom_st_at(f, i);
        REQUIRE(t && t->name && t->begin <= t->end && t->ndim >= 0 && t->ndim <= LOOM_ST_MAX_DIMS);
        REQUIRE(loom_st_find(f, t->name) == t);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
        REQUIRE(numel * loom_dtype_size(t->dtype) == t->end - t->begin);
        const unsigned char *p = loom_st_data(f, t);
        for (uint64_t b = 0; b < t->end - t->begin; b++) sink += p[b];
    }
    for (size_t i = 0; i < loom_st_meta_count(f); i++) {
        const char *k, *v;
        loom_st_meta_at(f, i, &k, &v);
        REQUIRE(k && v && loom_st_meta(f, k) == v);
        sink += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    (void)sink;
}

/* Escaping a parsed string and parsing it again must give the same bytes. */
static void check_strings(const loom_json *v) {
    if (v->type == LOOM_JSON_STRING) {
        loom_json_buf b = {0};
        REQUIRE(loom_json_escape(&b, v->str, v->len) == 0);
        if (!b.failed) {
            loom_json_doc *d = loom_json_parse(b.data, b.len, NULL, NULL);
            REQUIRE(d && loom_json_root(d)->len == v->len && memcmp(loom_json_root(d)->str, v->str, v->len) == 0);
            loom_json_free(d);
        }
        loom_json_buf_free(&b);
    }
    for (size_t i = 0; i < loom_json_len(v); i++) check_strings(loom_json_at(v, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_st_file *f = NULL;
    if (loom_st_parse(data, size, "fuzz", &f) == LOOM_OK) {
        walk_safetensors(f);
        loom_st_close(f);
    } else {
        REQUIRE(f == NULL && strncmp(loom_error_msg(), "fuzz: ", 6) == 0);
    }

    loom_json_error err;
    loom_json_opts opts = {.max_mem = 64u << 20};
    loom_json_doc *doc = loom_json_parse(data, size, &opts, &err);
    if (doc) {
        check_strings(loom_json_root(doc));
        loom_json_free(doc);
    } else {
        REQUIRE(err.msg[0] && err.offset <= size);
    }
    return 0;
}
