/* Tests for src/io/json.c and src/io/safetensors.c: JSON values, escapes and errors;
 * a safetensors write/read round trip; a battery of malformed headers, each of which
 * must fail with a message naming the label; and a seeded mutation loop (run it under
 * ASan/UBSan to catch out-of-bounds reads). Not a benchmark. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json.h"
#include "loom/core.h"
#include "loom/safetensors.h"

static int g_checks, g_failed;

#define CHECK(cond)                                                              \
    do {                                                                         \
        g_checks++;                                                              \
        if (!(cond)) {                                                           \
            g_failed++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        g_checks++;                                                              \
        if (!(cond)) {                                                           \
            g_failed++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* ---- JSON -------------------------------------------------------------------- */

static loom_json_doc *parse_str(const char *s, loom_json_error *err) {
    return loom_json_parse(s, strlen(s), NULL, err);
}

static void test_json_values(void) {
    loom_json_error err;
    const char *src = " {\"a\": 1, \"b\": [true, false, null], \"c\": \"x\\n\\u00e9\\ud83d\\ude00\\/\","
                      " \"d\": {\"e\": -2.5e-3}, \"a\": 2, \"\": \"\"} ";
    loom_json_doc *doc = parse_str(src, &err);
    CHECK_MSG(doc != NULL, "%s", err.msg);
    if (!doc) return;
    const loom_json *r = loom_json_root(doc);
    CHECK(r->type == LOOM_JSON_OBJECT && loom_json_len(r) == 6);
    CHECK(strcmp(r->items[0].key, "a") == 0 && strcmp(r->items[1].key, "b") == 0); /* key order */
    CHECK(loom_json_get(r, "a")->number == 1.0); /* first of the duplicates */
    CHECK(loom_json_at(r, 4)->number == 2.0);
    const loom_json *b = loom_json_get(r, "b");
    CHECK(b && b->type == LOOM_JSON_ARRAY && loom_json_len(b) == 3);
    CHECK(loom_json_at(b, 0)->boolean == 1 && loom_json_at(b, 1)->type == LOOM_JSON_BOOL &&
          loom_json_at(b, 1)->boolean == 0 && loom_json_at(b, 2)->type == LOOM_JSON_NULL);
    CHECK(loom_json_at(b, 3) == NULL);
    const char *c = loom_json_str(loom_json_get(r, "c"));
    CHECK(c && strcmp(c, "x\n\xc3\xa9\xf0\x9f\x98\x80/") == 0);
    CHECK(loom_json_get(loom_json_get(r, "d"), "e")->number == -2.5e-3);
    CHECK(loom_json_get(r, "zz") == NULL && loom_json_get(b, "a") == NULL);
    CHECK(loom_json_str(loom_json_get(r, "")) && loom_json_get(r, "")->len == 0);
    CHECK(loom_json_consumed(doc) == strlen(src));
    loom_json_free(doc);

    /* numbers: exact integer reads from the raw token */
    static const struct { const char *s; int u_ok; uint64_t u; int i_ok; int64_t i; } nums[] = {
        {"0", 1, 0, 1, 0},
        {"-0", 0, 0, 1, 0},
        {"18446744073709551615", 1, UINT64_MAX, 0, 0},
        {"18446744073709551616", 0, 0, 0, 0},
        {"9223372036854775807", 1, 9223372036854775807ull, 1, INT64_MAX},
        {"-9223372036854775808", 0, 0, 1, INT64_MIN},
        {"-9223372036854775809", 0, 0, 0, 0},
        {"1.0", 0, 0, 0, 0},
        {"1e3", 0, 0, 0, 0},
    };
    for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
        doc = parse_str(nums[k].s, &err);
        CHECK_MSG(doc != NULL, "%s: %s", nums[k].s, err.msg);
        if (!doc) continue;
        uint64_t u = 77;
        int64_t i = 77;
        int uok = loom_json_get_u64(loom_json_root(doc), &u), iok = loom_json_get_i64(loom_json_root(doc), &i);
        CHECK_MSG(uok == nums[k].u_ok && (!uok || u == nums[k].u) && (uok || u == 77), "u64 of %s", nums[k].s);
        CHECK_MSG(iok == nums[k].i_ok && (!iok || i == nums[k].i) && (iok || i == 77), "i64 of %s", nums[k].s);
        loom_json_free(doc);
    }
    doc = parse_str("[1.5e3, -0.25, 1E+2, 1e400]", &err);
    CHECK(doc && loom_json_at(loom_json_root(doc), 0)->number == 1500.0 &&
          loom_json_at(loom_json_root(doc), 1)->number == -0.25 && loom_json_at(loom_json_root(doc), 2)->number == 100.0);
    CHECK(doc && strcmp(loom_json_at(loom_json_root(doc), 3)->str, "1e400") == 0);
    loom_json_free(doc);

    /* the input need not be NUL-terminated: only len bytes are read */
    doc = loom_json_parse("123", 2, NULL, &err);
    CHECK(doc && loom_json_root(doc)->number == 12.0);
    loom_json_free(doc);
    doc = loom_json_parse("\"ab\"", 3, NULL, &err);
    CHECK(doc == NULL && strstr(err.msg, "unterminated"));

    /* U+0000 inside a string keeps its length */
    doc = parse_str("\"a\\u0000b\"", &err);
    CHECK(doc && loom_json_root(doc)->len == 3 && memcmp(loom_json_root(doc)->str, "a\0b", 3) == 0);
    loom_json_free(doc);

    /* allow_trailing: JSON-lines style */
    loom_json_opts o = {.allow_trailing = 1};
    doc = loom_json_parse("{} \n{\"x\":1}", 11, &o, &err);
    CHECK(doc && loom_json_consumed(doc) == 4);
    loom_json_free(doc);

    /* depth: 64 levels parse, 65 do not */
    char deep[200];
    for (int d = 64; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        doc = loom_json_parse(deep, 2 * (size_t)d, NULL, &err);
        if (d == 64) CHECK(doc != NULL);
        else CHECK(doc == NULL && strstr(err.msg, "nesting") && err.offset == 64);
        loom_json_free(doc);
    }
    /* memory cap */
    char big[4001]; /* "[0,0,...,0]" with 1999 zeros */
    big[0] = '[';
    for (int k = 0; k < 1999; k++) { big[1 + 2 * k] = '0'; big[2 + 2 * k] = ','; }
    big[3998] = ']';
    big[3999] = ' ';
    big[4000] = 0;
    o = (loom_json_opts){.max_mem = 8192};
    doc = loom_json_parse(big, 4000, &o, &err);
    CHECK(doc == NULL && err.status == LOOM_ERR_NOMEM);
    doc = loom_json_parse(big, 4000, NULL, &err);
    CHECK(doc && loom_json_len(loom_json_root(doc)) == 1999);
    loom_json_free(doc);
}

static void test_json_errors(void) {
    static const struct { const char *s; size_t offset; const char *what; } bad[] = {
        {"", 0, "end of input"},
        {"   ", 3, "end of input"},
        {"[1,]", 3, "expected a value"},
        {"[1 2]", 3, "',' or ']'"},
        {"{\"a\" 1}", 5, "':'"},
        {"{\"a\":1,}", 7, "string key"},
        {"{a:1}", 1, "string key"},
        {"{\"a\":1", 6, "',' or '}'"},
        {"01", 1, "leading zeros"},
        {"1.", 2, "after '.'"},
        {"-", 1, "after '-'"},
        {"1e", 2, "exponent"},
        {"+1", 0, "expected a value"},
        {".5", 0, "expected a value"},
        {"\"abc", 4, "unterminated"},
        {"\"\\x\"", 1, "invalid escape"},
        {"\"\\u12\"", 1, "hex digits"},
        {"\"\\ud800\"", 1, "surrogate"},
        {"\"\\ud800\\u0041\"", 1, "surrogate"},
        {"\"\\udc00\"", 1, "lone low surrogate"},
        {"\"a\x01\"", 2, "control character"},
        {"\"a\tb\"", 2, "control character"},
        {"\"\xc0\x80\"", 1, "UTF-8"},
        {"\"\xed\xa0\x80\"", 1, "UTF-8"},
        {"\"\xf4\x90\x80\x80\"", 1, "UTF-8"},
        {"\"\xe2\x82\"", 1, "UTF-8"},
        {"\xff", 0, "expected a value"},
        {"[1] x", 4, "after the JSON value"},
        {"tru", 0, "expected a value"},
        {"nul", 0, "expected a value"},
        {"[", 1, "end of input"},
        {"NaN", 0, "expected a value"},
        {"\xef\xbb\xbf{}", 0, "expected a value"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        loom_json_error err;
        loom_json_doc *doc = parse_str(bad[k].s, &err);
        CHECK_MSG(doc == NULL && err.status == LOOM_ERR_FORMAT && err.msg[0] && err.offset == bad[k].offset &&
                      strstr(err.msg, bad[k].what),
                  "input #%zu: offset %zu msg '%s'", k, err.offset, err.msg);
        loom_json_free(doc);
    }
    loom_json_error err;
    CHECK(parse_str("{\n  \"a\": x}", &err) == NULL && err.line == 2 && err.col == 8 && err.offset == 9);
}

static void test_json_escape(void) {
    loom_json_buf b = {0};
    const char s[] = "q\"b\\s/\n\t\x01\x1f \xc3\xa9 \xf0\x9f\x98\x80";
    CHECK(loom_json_escape(&b, s, sizeof s - 1) == 0 && !b.failed);
    CHECK(b.data && strcmp(b.data, "\"q\\\"b\\\\s/\\n\\t\\u0001\\u001f \xc3\xa9 \xf0\x9f\x98\x80\"") == 0);
    loom_json_error err;
    loom_json_doc *doc = loom_json_parse(b.data, b.len, NULL, &err);
    CHECK(doc && loom_json_root(doc)->len == sizeof s - 1 && memcmp(loom_json_root(doc)->str, s, sizeof s - 1) == 0);
    loom_json_free(doc);
    size_t before = b.len;
    CHECK(loom_json_escape(&b, "\xff", 1) == -1 && b.len == before);
    loom_json_buf_printf(&b, "%d-%s", 42, "x");
    CHECK(strcmp(b.data + before, "42-x") == 0);
    loom_json_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
    CHECK(loom_json_utf8_valid("abc\xc3\xa9", 5) && !loom_json_utf8_valid("\xc3", 1) &&
          !loom_json_utf8_valid("\xf5\x80\x80\x80", 4));
}

/* ---- safetensors: round trip -------------------------------------------------- */

static char g_tmp[256];

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

static float g_f32[6] = {1, -2, 3.5f, 4, 5, 6};
static int64_t g_i64[4] = {-1, 0, 1, INT64_MAX};
static uint16_t g_bf16 = 0x3f80;
static unsigned char g_bool[5] = {1, 0, 1, 1, 0};
static double g_f64 = 3.25;

/* Checks a file written by write_sample(). */
static void check_sample(const loom_st_file *f) {
    CHECK(loom_st_count(f) == 6);
    const char *order[] = {"h.0.attn.c_attn.weight", "ids", "scalar", "empty", "mask", "deep"};
    for (size_t i = 0; i < 6; i++) CHECK(loom_st_at(f, i) && strcmp(loom_st_at(f, i)->name, order[i]) == 0);
    CHECK(loom_st_at(f, 6) == NULL);
    const loom_st_tensor *t = loom_st_find(f, "h.0.attn.c_attn.weight");
    CHECK(t && t->dtype == LOOM_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float fv[6];
    if (t) memcpy(fv, loom_st_data(f, t), sizeof fv);
    CHECK(t && memcmp(fv, g_f32, sizeof fv) == 0 && t->begin == 0 && t->end == 24);
    t = loom_st_find(f, "ids");
    int64_t iv[4];
    if (t) memcpy(iv, loom_st_data(f, t), sizeof iv);
    CHECK(t && t->dtype == LOOM_DTYPE_I64 && memcmp(iv, g_i64, sizeof iv) == 0);
    t = loom_st_find(f, "scalar");
    CHECK(t && t->ndim == 0 && t->dtype == LOOM_DTYPE_BF16 && t->end - t->begin == 2 &&
          memcmp(loom_st_data(f, t), &g_bf16, 2) == 0);
    t = loom_st_find(f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 7 && t->begin == t->end);
    t = loom_st_find(f, "mask");
    CHECK(t && t->dtype == LOOM_DTYPE_BOOL && memcmp(loom_st_data(f, t), g_bool, 5) == 0);
    t = loom_st_find(f, "deep");
    CHECK(t && t->ndim == 8 && t->dtype == LOOM_DTYPE_F64 && memcmp(loom_st_data(f, t), &g_f64, 8) == 0);
    CHECK(loom_st_find(f, "nope") == NULL && loom_st_find(f, "") == NULL);
    CHECK(loom_st_meta_count(f) == 3);
    CHECK(loom_st_meta(f, "format") && strcmp(loom_st_meta(f, "format"), "pt") == 0);
    CHECK(loom_st_meta(f, "note") && strcmp(loom_st_meta(f, "note"), "say \"hi\"\n\xc3\xa9") == 0);
    CHECK(loom_st_meta(f, "step") && strcmp(loom_st_meta(f, "step"), "200") == 0); /* replaced */
    const char *k, *v;
    loom_st_meta_at(f, 0, &k, &v);
    CHECK(strcmp(k, "format") == 0 && strcmp(v, "pt") == 0);
    loom_st_meta_at(f, 3, &k, &v);
    CHECK(k == NULL && v == NULL);
    CHECK(loom_st_meta(f, "nope") == NULL);
}

static loom_status write_sample(const char *path) {
    loom_st_writer *w = loom_st_writer_init();
    if (!w) return LOOM_ERR_NOMEM;
    int64_t s_w[2] = {2, 3}, s_ids[1] = {4}, s_empty[2] = {0, 7}, s_mask[1] = {5}, s_deep[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    loom_status st = LOOM_OK;
    if (!st) st = loom_st_writer_meta(w, "format", "pt");
    if (!st) st = loom_st_writer_meta(w, "step", "100");
    if (!st) st = loom_st_writer_add(w, "h.0.attn.c_attn.weight", LOOM_DTYPE_F32, 2, s_w, g_f32);
    if (!st) st = loom_st_writer_add(w, "ids", LOOM_DTYPE_I64, 1, s_ids, g_i64);
    if (!st) st = loom_st_writer_add(w, "scalar", LOOM_DTYPE_BF16, 0, NULL, &g_bf16);
    if (!st) st = loom_st_writer_add(w, "empty", LOOM_DTYPE_F32, 2, s_empty, NULL);
    if (!st) st = loom_st_writer_add(w, "mask", LOOM_DTYPE_BOOL, 1, s_mask, g_bool);
    if (!st) st = loom_st_writer_add(w, "deep", LOOM_DTYPE_F64, 8, s_deep, &g_f64);
    if (!st) st = loom_st_writer_meta(w, "note", "say \"hi\"\n\xc3\xa9");
    if (!st) st = loom_st_writer_meta(w, "step", "200");
    if (!st) st = loom_st_writer_write(w, path);
    loom_st_writer_free(w);
    return st;
}

static void test_roundtrip(void) {
    loom_status st = write_sample(g_tmp);
    CHECK_MSG(st == LOOM_OK, "%s", loom_error_msg());
    loom_st_file *f = NULL;
    st = loom_st_open(g_tmp, &f);
    CHECK_MSG(st == LOOM_OK, "%s", loom_error_msg());
    if (f) {
        CHECK(strcmp(loom_st_path(f), g_tmp) == 0);
        check_sample(f);
        loom_st_close(f);
    }
    size_t len = 0;
    unsigned char *buf = read_all(g_tmp, &len);
    CHECK(buf && len > 8);
    if (!buf) return;
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | buf[i];
    CHECK((8 + hn) % 8 == 0 && 8 + hn + 24 + 32 + 2 + 5 + 8 == len);
    st = loom_st_parse(buf, len, "mem", &f);
    CHECK_MSG(st == LOOM_OK, "%s", loom_error_msg());
    if (f) {
        CHECK(strcmp(loom_st_path(f), "mem") == 0);
        check_sample(f);
        loom_st_close(f);
    }
    free(buf);

    /* an empty writer gives a valid empty file */
    loom_st_writer *w = loom_st_writer_init();
    CHECK(w && loom_st_writer_write(w, g_tmp) == LOOM_OK);
    loom_st_writer_free(w);
    CHECK(loom_st_open(g_tmp, &f) == LOOM_OK && f && loom_st_count(f) == 0 && loom_st_meta_count(f) == 0);
    loom_st_close(f);
}

static void test_writer_errors(void) {
    loom_st_writer *w = loom_st_writer_init();
    float x[4] = {0};
    int64_t s[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1}, neg[1] = {-1}, huge[3] = {INT64_MAX, INT64_MAX, 2};
    CHECK(loom_st_writer_add(w, "a", LOOM_DTYPE_F32, 2, s, x) == LOOM_OK);
    CHECK(loom_st_writer_add(w, "a", LOOM_DTYPE_F32, 2, s, x) == LOOM_ERR_ARG && strstr(loom_error_msg(), "'a'"));
    CHECK(loom_st_writer_add(w, "__metadata__", LOOM_DTYPE_F32, 2, s, x) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_add(w, "b", LOOM_DTYPE_F32, 9, s, x) == LOOM_ERR_ARG && strstr(loom_error_msg(), "'b'"));
    CHECK(loom_st_writer_add(w, "c", LOOM_DTYPE_F32, 1, neg, x) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_add(w, "d", LOOM_DTYPE_F32, 3, huge, x) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_add(w, "e", LOOM_DTYPE_COUNT, 2, s, x) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_add(w, "f", LOOM_DTYPE_F32, 2, s, NULL) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_add(w, "\xff", LOOM_DTYPE_F32, 2, s, x) == LOOM_ERR_ARG);
    CHECK(loom_st_writer_meta(w, "k", "\xc3") == LOOM_ERR_ARG);
    /* write errors name the path and the reason */
    if (access("/dev/full", W_OK) == 0) {
        CHECK(loom_st_writer_write(w, "/dev/full") == LOOM_ERR_IO && strstr(loom_error_msg(), "/dev/full") &&
              strstr(loom_error_msg(), "space"));
    }
    CHECK(loom_st_writer_write(w, "/nonexistent-dir/x.safetensors") == LOOM_ERR_IO &&
          strstr(loom_error_msg(), "/nonexistent-dir/x.safetensors"));
    loom_st_writer_free(w);

    loom_st_file *f = NULL;
    CHECK(loom_st_open("/nonexistent-dir/x.safetensors", &f) == LOOM_ERR_IO && f == NULL &&
          strstr(loom_error_msg(), "/nonexistent-dir/x.safetensors"));
    CHECK(loom_st_open("/tmp", &f) == LOOM_ERR_IO && f == NULL);
    FILE *fp = fopen(g_tmp, "wb"); /* empty file: must fail cleanly (no mmap of 0 bytes) */
    if (fp) fclose(fp);
    CHECK(loom_st_open(g_tmp, &f) == LOOM_ERR_FORMAT && f == NULL && strstr(loom_error_msg(), g_tmp) &&
          strstr(loom_error_msg(), "empty"));
    fp = fopen(g_tmp, "wb");
    if (fp) { fwrite("\x02\0\0\0\0\0\0", 1, 7, fp); fclose(fp); }
    CHECK(loom_st_open(g_tmp, &f) == LOOM_ERR_FORMAT && f == NULL && strstr(loom_error_msg(), "too short"));
}

/* A file written by the Python safetensors package, when the fixture is present
 * (ctest runs from the project root). */
static void test_interop(void) {
    const char *path = "tests/fixtures/gpt2_ref.safetensors";
    if (access(path, R_OK) != 0) return;
    loom_st_file *f = NULL;
    loom_status st = loom_st_open(path, &f);
    CHECK_MSG(st == LOOM_OK, "%s", loom_error_msg());
    if (!f) return;
    const loom_st_tensor *t = loom_st_find(f, "wte.weight");
    CHECK(loom_st_count(f) > 0 && t && t->ndim == 2 && t->begin == 0);
    loom_st_close(f);
}

/* ---- safetensors: malformed inputs -------------------------------------------- */

/* Builds [u64 len][header][data_len zero bytes] with the length field = strlen(header)
 * + len_delta. */
static unsigned char *build(const char *header, size_t data_len, long len_delta, size_t *out_len) {
    size_t hn = strlen(header);
    *out_len = 8 + hn + data_len;
    unsigned char *buf = calloc(1, *out_len);
    uint64_t field = (uint64_t)((long)hn + len_delta);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(field >> (8 * i));
    memcpy(buf + 8, header, hn);
    return buf;
}

/* Parses buf and expects failure with a message that starts with the label and
 * contains `what`. */
static void expect_bad(const unsigned char *buf, size_t len, const char *what, int line) {
    loom_st_file *f = (loom_st_file *)&f; /* must be reset to NULL */
    const char *label = "bad.safetensors";
    loom_status st = loom_st_parse(buf, len, label, &f);
    const char *msg = loom_error_msg();
    g_checks++;
    if (st == LOOM_OK || f != NULL || !msg[0] || strncmp(msg, label, strlen(label)) != 0 || !strstr(msg, what)) {
        g_failed++;
        fprintf(stderr, "%s:%d: malformed input not rejected as expected (status %d, want '%s'): %s\n",
                __FILE__, line, (int)st, what, msg);
    }
    if (st == LOOM_OK) loom_st_close(f);
}

static void bad_header(const char *header, size_t data_len, const char *what, int line) {
    size_t len;
    unsigned char *buf = build(header, data_len, 0, &len);
    loom_error(LOOM_OK, "%s", ""); /* clear the previous message */
    expect_bad(buf, len, what, line);
    free(buf);
}
#define BAD(header, data_len, what) bad_header(header, data_len, what, __LINE__)

#define T1 "\"t\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}"

static void test_malformed(void) {
    /* sizes and the length field */
    size_t len;
    loom_error(LOOM_OK, "%s", "");
    expect_bad((const unsigned char *)"", 0, "empty", __LINE__);
    expect_bad((const unsigned char *)"\x02\0\0\0\0", 5, "too short", __LINE__);
    unsigned char *buf = build("{}", 0, 10, &len);
    expect_bad(buf, len, "exceeds the 2 bytes", __LINE__);
    free(buf);
    buf = build("{}", 0, 0, &len);
    memset(buf, 0xff, 8);
    expect_bad(buf, len, "100 MiB", __LINE__);
    free(buf);
    buf = build("{}", 0, 0, &len);
    expect_bad(buf, 7, "too short", __LINE__); /* truncated length field */
    expect_bad(buf, 9, "exceeds", __LINE__);   /* truncated header */
    free(buf);

    /* JSON level */
    BAD("hello", 0, "not valid JSON");
    BAD("", 0, "not valid JSON");
    BAD("[]", 0, "must be a JSON object");
    BAD("{} x", 0, "not valid JSON");
    buf = build("{}", 2, 2, &len); /* NUL padding instead of spaces */
    expect_bad(buf, len, "not valid JSON", __LINE__);
    free(buf);
    BAD("{\"t\":{\"dtype\":\"F32\"\xff}}", 0, "not valid JSON");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}", 4, "not valid JSON"); /* unclosed */
    {
        char deep[300] = "{\"__metadata__\":";
        size_t k = strlen(deep);
        for (int i = 0; i < 100; i++) deep[k++] = '[';
        for (int i = 0; i < 100; i++) deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        BAD(deep, 0, "nesting");
    }

    /* tensor entries */
    BAD("{\"t\":[1]}", 0, "tensor 't': expected an object");
    BAD("{\"t\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 't': unsupported dtype 'F8'");
    BAD("{\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype");
    BAD("{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype must be a string, found 4");
    BAD("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing field 'dtype'");
    BAD("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing field 'shape'");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing field 'data_offsets'");
    BAD("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "appears twice");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field 'x'");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0] must be a non-negative");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "found 2.0");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "found string");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", 4, "below 2^63");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4, "overflows");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807],\"data_offsets\":[0,4]}}", 4, "overflows");
    BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
        "tensor 't': shape has 9 dims (max 8)");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":7,\"data_offsets\":[0,4]}}", 4, "shape must be an array");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48,
        "tensor 't': data offsets [0, 40) do not match shape [3, 4] of F32 (48 bytes)");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "end before they begin");
    BAD("{" T1 "}", 47, "run past the data section (47 bytes");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "found array of 3");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8, "data_offsets must be an array");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "data_offsets[0]");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,1e1]}}", 16, "data_offsets[1]");
    BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551615,3]}}", 8, "end before");
    BAD("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "NUL");
    BAD("{\"\\u0001x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, "tensor '\\x01x'");

    /* the set of tensors */
    BAD("{" T1 "," T1 "}", 48, "tensor 't' appears twice");
    BAD("{" T1 ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[40,48]}}", 48,
        "tensors 't' [0, 48) and 'u' [40, 48) overlap");
    BAD("{\"u\":{\"dtype\":\"F32\",\"shape\":[12],\"data_offsets\":[0,48]}," T1 "}", 48, "overlap");

    /* metadata */
    BAD("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ 'a': value must be a string, found 1");
    BAD("{\"__metadata__\":[\"a\"]}", 0, "__metadata__ must be an object");
    BAD("{\"__metadata__\":null}", 0, "__metadata__ must be an object");
    BAD("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "key 'a' appears twice");
    BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice");
    BAD("{\"__metadata__\":{\"a\":\"x\\u0000\"}}", 0, "NUL");

    /* the label is copied and NULL gets a default */
    loom_st_file *f = NULL;
    buf = build("[]", 0, 0, &len);
    CHECK(loom_st_parse(buf, len, NULL, &f) == LOOM_ERR_FORMAT && strncmp(loom_error_msg(), "<buffer>", 8) == 0);
    free(buf);
}

/* Valid corner cases that must be accepted. */
static void test_valid_corners(void) {
    static const struct { const char *header; size_t data; size_t count; } good[] = {
        {"{}", 0, 0},
        {"{}      ", 0, 0},                 /* space padding */
        {" \n{ }\t", 5, 0},                 /* data nobody references */
        {"{" T1 ",\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,8]}}", 48, 2}, /* empty inside t */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
         "\"b\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[0,2]}}", 8, 2}, /* gaps, any order */
        {"{\"__metadata__\":{},\"\\u00e9\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 1},
    };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        size_t len;
        unsigned char *buf = build(good[k].header, good[k].data, 0, &len);
        loom_st_file *f = NULL;
        loom_status st = loom_st_parse(buf, len, "good", &f);
        CHECK_MSG(st == LOOM_OK && f && loom_st_count(f) == good[k].count, "case %zu: %s", k, loom_error_msg());
        loom_st_close(f);
        free(buf);
    }
    size_t len;
    unsigned char *buf = build("{\"\\u00e9\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0, &len);
    loom_st_file *f = NULL;
    CHECK(loom_st_parse(buf, len, "good", &f) == LOOM_OK && loom_st_find(f, "\xc3\xa9") != NULL);
    loom_st_close(f);
    free(buf);
}

/* ---- safetensors: mutation loop ----------------------------------------------- */

static void test_mutations(void) {
    if (write_sample(g_tmp) != LOOM_OK) { CHECK(0); return; }
    size_t len0 = 0;
    unsigned char *orig = read_all(g_tmp, &len0);
    if (!orig) { CHECK(0); return; }
    unsigned char *buf = malloc(len0 + 16);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | orig[i];
    size_t n_ok = 0, n_bad_msg = 0;
    const int iters = 20000;
    for (int it = 0; it < iters; it++) {
        uint64_t key = 0x5afe7e45u, c = (uint64_t)it * 16;
        memcpy(buf, orig, len0);
        size_t len = len0;
        int kind = (int)(loom_hash64(key, c++) % 6);
        int nflip = 1 + (int)(loom_hash64(key, c++) % 4);
        switch (kind) {
        case 0: /* flip bytes anywhere */
        case 1: /* flip bytes in the header */
            for (int k = 0; k < nflip; k++) {
                size_t span = kind == 0 ? len : (size_t)hn;
                size_t pos = (kind == 0 ? 0 : 8) + (size_t)(loom_hash64(key, c++) % span);
                buf[pos] ^= (unsigned char)(1u << (loom_hash64(key, c++) % 8));
            }
            break;
        case 2: /* replace header bytes by JSON-ish characters */
            for (int k = 0; k < nflip; k++) {
                static const char set[] = "{}[]\",:0123456789-.eE \\u";
                size_t pos = 8 + (size_t)(loom_hash64(key, c++) % hn);
                buf[pos] = (unsigned char)set[loom_hash64(key, c++) % (sizeof set - 1)];
            }
            break;
        case 3: /* truncate */
            len = (size_t)(loom_hash64(key, c++) % (len0 + 1));
            break;
        case 4: /* rewrite the header length */
            for (int i = 0; i < 8; i++) buf[i] = 0;
            buf[0] = (unsigned char)loom_hash64(key, c++);
            buf[1] = (unsigned char)(loom_hash64(key, c++) % 4);
            break;
        case 5: /* change a digit in the header (offsets / shapes) */
            for (int k = 0; k < 8; k++) {
                size_t pos = 8 + (size_t)(loom_hash64(key, c++) % hn);
                if (buf[pos] >= '0' && buf[pos] <= '9') {
                    buf[pos] = (unsigned char)('0' + loom_hash64(key, c++) % 10);
                    break;
                }
            }
            break;
        }
        /* parse from an exact-size heap copy so ASan sees any overread */
        unsigned char *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        loom_st_file *f = NULL;
        loom_status st = loom_st_parse(exact, len, "fuzz", &f);
        free(exact);
        if (st == LOOM_OK) {
            n_ok++;
            unsigned sum = 0;
            for (size_t i = 0; i < loom_st_count(f); i++) {
                const loom_st_tensor *t = loom_st_at(f, i);
                const unsigned char *d = loom_st_data(f, t);
                for (uint64_t b = t->begin; b < t->end; b++) sum += d[b - t->begin];
                if (loom_st_find(f, t->name) != t) n_bad_msg++;
            }
            for (size_t i = 0; i < loom_st_meta_count(f); i++) {
                const char *k, *v;
                loom_st_meta_at(f, i, &k, &v);
                sum += (unsigned)strlen(k) + (unsigned)strlen(v);
            }
            (void)sum;
            loom_st_close(f);
        } else if (f != NULL || strncmp(loom_error_msg(), "fuzz: ", 6) != 0) {
            n_bad_msg++;
            if (n_bad_msg < 5) fprintf(stderr, "mutation %d: bad error: '%s'\n", it, loom_error_msg());
        }
    }
    CHECK(n_bad_msg == 0);
    CHECK(n_ok > 0 && n_ok < (size_t)iters);
    printf("test_safetensors: mutation loop: %d inputs, %zu accepted, %zu rejected\n", iters, n_ok,
           (size_t)iters - n_ok);
    free(buf);
    free(orig);
}

/* CRC32C: the standard check value, and combine(crc(A), crc(B), |B|) == crc(A||B)
 * for every split of random buffers (the parallel checkpoint writer combines per-rank
 * pieces this way) */
static void test_crc32c(void) {
    CHECK(loom_crc32c(0, "123456789", 9) == 0xe3069283u);
    unsigned char buf[1000];
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < sizeof buf; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
    const size_t lens[] = {0, 1, 7, 64, 999, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const size_t n = lens[li];
        uint32_t whole = loom_crc32c(0, buf, n);
        for (size_t cut = 0; cut <= n; cut += 1 + cut / 3)
            CHECK_MSG(loom_crc32c_combine(loom_crc32c(0, buf, cut), loom_crc32c(0, buf + cut, n - cut), n - cut) == whole,
                      "crc32c combine, length %zu cut at %zu", n, cut);
    }
}

int main(void) {
    test_crc32c();
    snprintf(g_tmp, sizeof g_tmp, "/tmp/loom_test_st_%d.safetensors", (int)getpid());
    size_t live0 = loom_alloc_bytes_live();
    test_json_values();
    test_json_errors();
    test_json_escape();
    test_roundtrip();
    test_writer_errors();
    test_interop();
    test_malformed();
    test_valid_corners();
    test_mutations();
    CHECK(loom_alloc_bytes_live() == live0); /* everything loom_alloc'd was freed */
    unlink(g_tmp);
    if (g_failed) {
        printf("test_safetensors: %d of %d checks FAILED\n", g_failed, g_checks);
        return 1;
    }
    printf("test_safetensors: %d checks passed\n", g_checks);
    return 0;
}
