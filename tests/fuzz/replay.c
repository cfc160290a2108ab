/* Runs a libFuzzer harness over files without libFuzzer, so that CTest (and the
 * sanitizer build) replays the seed corpus on every run.
 * Usage: replay FILE...  Prints "replay: N passed, 0 failed" (a crash fails the test). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    int n = 0;
    for (int i = 1; i < argc; i++) {
        FILE *fp = fopen(argv[i], "rb");
        if (!fp) {
            fprintf(stderr, "replay: cannot open %s\n", argv[i]);
            return 1;
        }
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        size_t got = buf ? fread(buf, 1, (size_t)len, fp) : 0;
        fclose(fp);
        if (!buf || got != (size_t)len) {
            fprintf(stderr, "replay: cannot read %s\n", argv[i]);
            free(buf);
            return 1;
        }
        /* the whole file, then every prefix at a coarse stride: truncations too */
        LLVMFuzzerTestOneInput(buf, got);
        for (size_t k = 0; k < got; k += 1 + got / 64) LLVMFuzzerTestOneInput(buf, k);
        free(buf);
        n++;
    }
    printf("replay: %d passed, 0 failed\n", n);
    return 0;
}
