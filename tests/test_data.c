/* Data layer: the permutation is a bijection that depends only on (seed, epoch, i);
 * windows map to the right tokens in order and across files; shard validation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/data.h"

#include "check.h"

static void test_permutation(void) {
    const uint64_t sizes[] = {1, 2, 3, 7, 16, 17, 1000, 4097, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        unsigned char *seen = calloc(n, 1);
        int ok = 1;
        uint64_t fixed = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t p = loom_permute(i, n, 42, 3);
            if (p >= n || seen[p]) ok = 0;
            else seen[p] = 1;
            fixed += p == i;
        }
        CHECK(ok, "permutation of %llu is not a bijection", (unsigned long long)n);
        if (n >= 1000) CHECK(fixed < n / 20, "permutation of %llu leaves %llu fixed points", (unsigned long long)n,
                             (unsigned long long)fixed);
        free(seen);
    }
    /* different epochs and seeds give different orders; same inputs give the same */
    int diff_epoch = 0, diff_seed = 0;
    for (uint64_t i = 0; i < 100; i++) {
        diff_epoch += loom_permute(i, 1000, 1, 0) != loom_permute(i, 1000, 1, 1);
        diff_seed += loom_permute(i, 1000, 1, 0) != loom_permute(i, 1000, 2, 0);
        CHECK(loom_permute(i, 1000, 7, 5) == loom_permute(i, 1000, 7, 5), "not deterministic");
    }
    CHECK(diff_epoch > 90 && diff_seed > 90, "orders barely change: %d %d", diff_epoch, diff_seed);
}

/* uint32 shards (llm.c's 20240801 header), for vocabularies past 65536: ids above
 * 16 bits read back whole, mixed with uint16 shards in one dataset; a bad version and
 * an id >= vocab refused naming the file. */
static void test_wide(const char *dir) {
    uint32_t a[40];
    uint16_t b[20];
    for (int i = 0; i < 40; i++) a[i] = 128000u + (uint32_t)i;
    for (int i = 0; i < 20; i++) b[i] = (uint16_t)i;
    char pa[512], pb[512], pat[512];
    snprintf(pa, sizeof pa, "%s/w_000.bin", dir);
    snprintf(pb, sizeof pb, "%s/w_001.bin", dir);
    snprintf(pat, sizeof pat, "%s/w_*.bin", dir);
    CHECK(!loom_shard_write(pa, a, 40, 1) && !loom_shard_write(pb, b, 20, 0), "write: %s", loom_error_msg());
    loom_dataset *ds = NULL;
    CHECK(!loom_dataset_open(&ds, pat, LOOM_DATA_AUTO, 128256, 4, "--data"), "open: %s", loom_error_msg());
    if (ds) {
        int32_t in[4], tg[4];
        loom_dataset_sample(ds, 1, 0, 0, in, tg);
        CHECK(in[0] == 128004 && tg[3] == 128008, "wide window 1: %d %d", in[0], tg[3]);
        loom_dataset_sample(ds, 9, 0, 0, in, tg); /* (40-1)/4 = 9 windows in the wide file: the second file's first */
        CHECK(in[0] == 0 && tg[3] == 4, "narrow window after the wide file: %d %d", in[0], tg[3]);
        loom_dataset_close(ds);
    }
    CHECK(loom_dataset_open(&ds, pa, LOOM_DATA_AUTO, 128010, 4, "--data") == LOOM_ERR_FORMAT &&
              strstr(loom_error_msg(), "token 128010 at position 10"), "wide id >= vocab: %s", loom_error_msg());
    FILE *fp = fopen(pa, "r+b");
    const int32_t v = 1;
    CHECK(fp && fseek(fp, 4, SEEK_SET) == 0 && fwrite(&v, 4, 1, fp) == 1 && fclose(fp) == 0, "patch the version");
    CHECK(loom_dataset_open(&ds, pa, LOOM_DATA_AUTO, 200000, 4, "--data") == LOOM_ERR_FORMAT &&
              strstr(loom_error_msg(), "unsupported shard version 1 (expected 7: uint32 tokens)"),
          "wide magic with version 1: %s", loom_error_msg());
    unlink(pa);
    unlink(pb);
}

static void test_windows(const char *dir) {
    /* two shards: 0..99 and 100..149 (as token values) */
    uint16_t a[100], b[50];
    for (int i = 0; i < 100; i++) a[i] = (uint16_t)i;
    for (int i = 0; i < 50; i++) b[i] = (uint16_t)(100 + i);
    char pa[512], pb[512], pat[512];
    snprintf(pa, sizeof pa, "%s/d_000.bin", dir);
    snprintf(pb, sizeof pb, "%s/d_001.bin", dir);
    snprintf(pat, sizeof pat, "%s/d_*.bin", dir);
    CHECK(!loom_shard_write(pa, a, 100, 0) && !loom_shard_write(pb, b, 50, 0), "write: %s", loom_error_msg());
    loom_dataset *ds;
    const int T = 8;
    CHECK(!loom_dataset_open(&ds, pat, LOOM_DATA_AUTO, 200, T, "--data"), "open: %s", loom_error_msg());
    /* windows: file a has (100-1)/8 = 12, file b (50-1)/8 = 6 */
    CHECK(loom_dataset_samples(ds) == 18, "samples %llu", (unsigned long long)loom_dataset_samples(ds));
    int32_t in[8], tg[8];
    loom_dataset_sample(ds, 0, 0, 0, in, tg);
    CHECK(in[0] == 0 && tg[0] == 1 && in[7] == 7 && tg[7] == 8, "window 0");
    loom_dataset_sample(ds, 11, 0, 0, in, tg);
    CHECK(in[0] == 88 && tg[7] == 96, "window 11: %d %d", in[0], tg[7]);
    loom_dataset_sample(ds, 12, 0, 0, in, tg);
    CHECK(in[0] == 100 && tg[7] == 108, "window 12 (second file): %d", in[0]);
    loom_dataset_sample(ds, 18 + 12, 0, 0, in, tg); /* epoch 1 wraps */
    CHECK(in[0] == 100, "epoch wrap: %d", in[0]);
    /* shuffled: every window exactly once per epoch */
    int seen[18] = {0};
    for (int i = 0; i < 18; i++) {
        loom_dataset_sample(ds, 18 * 2 + i, 1, 99, in, tg);
        int w = in[0] < 100 ? in[0] / 8 : 12 + (in[0] - 100) / 8;
        if (w >= 0 && w < 18) seen[w]++;
        CHECK(tg[0] == in[0] + 1, "target follows input");
    }
    int all = 1;
    for (int i = 0; i < 18; i++) all &= seen[i] == 1;
    CHECK(all, "shuffled epoch does not visit each window once");
    loom_dataset_close(ds);

    /* token >= vocab is refused at open with file and position */
    CHECK(loom_dataset_open(&ds, pat, LOOM_DATA_AUTO, 120, T, "--data") == LOOM_ERR_FORMAT &&
              strstr(loom_error_msg(), "d_000.bin") == NULL && strstr(loom_error_msg(), "d_001.bin") &&
              strstr(loom_error_msg(), "position 20"),
          "vocab check: %s", loom_error_msg());
    /* truncated shard */
    FILE *fp = fopen(pb, "r+b");
    CHECK(fp && ftruncate(fileno(fp), 1024 + 20) == 0, "truncate");
    fclose(fp);
    CHECK(loom_dataset_open(&ds, pat, LOOM_DATA_AUTO, 200, T, "--data") == LOOM_ERR_FORMAT &&
              strstr(loom_error_msg(), "truncated"), "truncated: %s", loom_error_msg());
    /* wrong magic */
    fp = fopen(pb, "r+b");
    int32_t bad = 12345;
    fwrite(&bad, 4, 1, fp);
    fclose(fp);
    CHECK(loom_dataset_open(&ds, pat, LOOM_DATA_AUTO, 200, T, "--data") == LOOM_ERR_FORMAT &&
              strstr(loom_error_msg(), "bad magic 12345"), "magic: %s", loom_error_msg());
    /* missing file */
    CHECK(loom_dataset_open(&ds, "/nonexistent/x.bin", LOOM_DATA_AUTO, 200, T, "--data") == LOOM_ERR_IO &&
              strstr(loom_error_msg(), "/nonexistent/x.bin"), "missing: %s", loom_error_msg());
    unlink(pa);
    unlink(pb);
}

int main(void) {
    char dir[] = "/tmp/loom_test_data_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    test_permutation();
    test_windows(dir);
    test_wide(dir);
    rmdir(dir);
    printf("test_data: %d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
