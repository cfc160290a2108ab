/* Writes the seed files in tests/fuzz/corpus/ with the loom safetensors writer. Run
 * once by hand (the seeds are committed); not part of the build:
 *   gcc -std=c11 -D_GNU_SOURCE -Iinclude -Isrc tests/fuzz/make_corpus.c src/io/json.c \
 *       src/io/safetensors.c src/core/[a-z]*.c -fopenmp -lm -o /tmp/mc && /tmp/mc tests/fuzz/corpus */
#include <stdio.h>
#include <string.h>

#include "loom/safetensors.h"

static int finish(loom_st_writer *w, const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    loom_status st = loom_st_writer_write(w, path);
    loom_st_writer_free(w);
    if (st != LOOM_OK) fprintf(stderr, "%s\n", loom_error_msg());
    return st != LOOM_OK;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    int bad = 0;
    static float f32[24];
    static uint16_t h16[16];
    static int64_t i64[3] = {-1, 0, 1};
    for (int i = 0; i < 24; i++) f32[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 16; i++) h16[i] = (uint16_t)(0x3f80 + i);

    loom_st_writer *w = loom_st_writer_init(); /* no tensors, no metadata */
    bad |= finish(w, dir, "empty.safetensors");

    w = loom_st_writer_init();
    int64_t s23[2] = {2, 3};
    loom_st_writer_add(w, "weight", LOOM_DTYPE_F32, 2, s23, f32);
    bad |= finish(w, dir, "one_f32.safetensors");

    w = loom_st_writer_init(); /* a GPT-2-shaped miniature with metadata */
    int64_t wte[2] = {6, 4}, wpe[2] = {2, 4}, ln[1] = {4}, attn[2] = {4, 4};
    loom_st_writer_meta(w, "format", "pt");
    loom_st_writer_meta(w, "step", "12");
    loom_st_writer_add(w, "wte.weight", LOOM_DTYPE_F32, 2, wte, f32);
    loom_st_writer_add(w, "wpe.weight", LOOM_DTYPE_F32, 2, wpe, f32);
    loom_st_writer_add(w, "h.0.ln_1.weight", LOOM_DTYPE_BF16, 1, ln, h16);
    loom_st_writer_add(w, "h.0.ln_1.bias", LOOM_DTYPE_F16, 1, ln, h16 + 4);
    loom_st_writer_add(w, "h.0.attn.c_attn.weight", LOOM_DTYPE_BF16, 2, attn, h16);
    bad |= finish(w, dir, "gpt2_tiny.safetensors");

    w = loom_st_writer_init(); /* every odd corner: scalar, empty, 8 dims, escapes */
    int64_t none[2] = {0, 5}, d8[8] = {1, 1, 1, 1, 1, 1, 1, 3}, s3[1] = {3};
    loom_st_writer_meta(w, "note \"q\"", "tab\there \xc3\xa9 \xf0\x9f\x98\x80");
    loom_st_writer_add(w, "scalar", LOOM_DTYPE_F64, 0, NULL, f32);
    loom_st_writer_add(w, "empty", LOOM_DTYPE_U8, 2, none, NULL);
    loom_st_writer_add(w, "deep/\xc3\xa9\n", LOOM_DTYPE_I64, 8, d8, i64);
    loom_st_writer_add(w, "mask", LOOM_DTYPE_BOOL, 1, s3, "\1\0\1");
    loom_st_writer_add(w, "u16", LOOM_DTYPE_U16, 1, s3, h16);
    bad |= finish(w, dir, "corners.safetensors");
    return bad;
}
