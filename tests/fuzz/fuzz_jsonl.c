/* libFuzzer harness for prep's JSON-lines reader: any bytes give documents, counted
 * skips, or one "input.jsonl:LINE: ..." error; never a crash or a leak. The first
 * byte's low bit picks --skip-bad. Built by bench/fuzz.sh jsonl; tests/fuzz/replay.c
 * runs it over tests/fuzz/corpus_jsonl in CTest. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "loom/prep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint64_t docs, bytes, skipped;
    loom_status st = loom_prep_jsonl_count((const char *)data + 1, size - 1, "text", data[0] & 1, &docs, &bytes,
                                           &skipped);
    if (st != LOOM_OK && strncmp(loom_error_msg(), "input.jsonl:", 12) != 0) __builtin_trap();
    return 0;
}
