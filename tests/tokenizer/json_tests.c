/* The tokenizer.json tests of test_tokenizer.c, which #includes this file (it shares
 * that file's helpers and check.h's counters):
 *   test_json_gpt2       GPT-2 as a tokenizer.json built from encoder.json + vocab.bpe
 *                        (as tokenizers' ByteLevelBPETokenizer writes it) encodes as
 *                        the tiktoken file does: vectors, tinyshakespeare, specials,
 *                        invalid UTF-8, round trips, both merge algorithms
 *   test_json_malformed  one clear error per kind of broken or unsupported file
 *   test_json_added      added tokens: modes, leftmost-longest, lstrip/rstrip, passes
 *   test_hf_cases        (--hf-cases DIR) the ids tokenizers itself gave, written by
 *                        tests/tokenizer/hf_cases.py */

/* GPT-2's tokenizer.json, as ByteLevelBPETokenizer(encoder.json, vocab.bpe) saves it. */
static char *gpt2_tokenizer_json(size_t *len, int pair_merges) {
    size_t el, bl;
    uint8_t *enc = read_all(ENCODER, &el), *bpe = read_all(VOCAB, &bl);
    if (!enc || !bpe) {
        free(enc);
        free(bpe);
        return NULL;
    }
    loom_json_buf j = {0};
    loom_json_buf_puts(&j, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                           "  \"added_tokens\": [{\"id\": 50256, \"content\": \"<|endoftext|>\", \"single_word\": false, "
                           "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, \"special\": true}],\n"
                           "  \"normalizer\": null,\n"
                           "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                           "\"trim_offsets\": true, \"use_regex\": true},\n"
                           "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
                           "\"trim_offsets\": false, \"use_regex\": true},\n"
                           "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                           "\"use_regex\": true},\n"
                           "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
                           "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", \"fuse_unk\": false, "
                           "\"byte_fallback\": false,\n  \"vocab\": ");
    loom_json_buf_put(&j, enc, el);
    loom_json_buf_puts(&j, ",\n  \"merges\": [");
    const uint8_t *p = memchr(bpe, '\n', bl) + 1, *end = bpe + bl;
    int first = 1;
    while (p < end) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        if (le > p) {
            loom_json_buf_puts(&j, first ? "\n    " : ",\n    ");
            first = 0;
            if (pair_merges) {
                const uint8_t *sp = memchr(p, ' ', (size_t)(le - p));
                loom_json_buf_puts(&j, "[");
                loom_json_escape(&j, (const char *)p, (size_t)(sp - p));
                loom_json_buf_puts(&j, ", ");
                loom_json_escape(&j, (const char *)sp + 1, (size_t)(le - sp - 1));
                loom_json_buf_puts(&j, "]");
            } else {
                loom_json_escape(&j, (const char *)p, (size_t)(le - p));
            }
        }
        p = le + 1;
    }
    loom_json_buf_puts(&j, "\n  ]}\n}\n");
    free(enc);
    free(bpe);
    *len = j.len;
    return j.data;
}

static void test_json_gpt2(const loom_tokenizer *tk) {
    for (int pairs = 0; pairs < 2; pairs++) {
        size_t len;
        char *js = gpt2_tokenizer_json(&len, pairs);
        CHECK(js, "build GPT-2's tokenizer.json");
        if (!js) return;
        loom_tokenizer *t = NULL;
        loom_status st = loom_tokenizer_from_json_mem(js, len, "gpt2.json", &t);
        CHECK(!st && t, "load GPT-2's tokenizer.json (%s merges): %s", pairs ? "pair" : "string", loom_error_msg());
        free(js);
        if (!t) return;
        CHECK(loom_tokenizer_vocab_size(t) == 50257 && loom_tokenizer_eot(t) == 50256, "json: vocab %u eot %u",
              loom_tokenizer_vocab_size(t), loom_tokenizer_eot(t));
        int same = 1;
        for (uint32_t id = 0; id < 50257; id++) {
            size_t la, lb;
            const uint8_t *pa = loom_tokenizer_token_bytes(t, id, &la), *pb = loom_tokenizer_token_bytes(tk, id, &lb);
            if (!pa || !pb || la != lb || memcmp(pa, pb, la)) same = 0;
        }
        CHECK(same, "json and tiktoken GPT-2 give different token bytes");
        CHECK(loom_tokenizer_token_id(t, " the", 4) == 262, "json: token_id");
        if (pairs) {
            loom_tokenizer_free(t);
            continue;
        }
        test_vectors(t, "tokenizer.json");
        test_shakespeare(t, "tokenizer.json");
        test_special_and_invalid(t);
        test_round_trips(t);
        test_merge_algorithms(t);
        loom_tokenizer_free(t);
    }
}

/* ---- malformed and unsupported files --------------------------------------------------- */

/* A small valid tokenizer.json: the 256 single bytes (ids in GPT-2's rank order, one per
 * line), "Ġt" = 256 by the merge "Ġ t", "<|endoftext|>" = 257 (an added token). */
static char *tiny_json(size_t *len) {
    size_t el;
    uint8_t *enc = read_all(ENCODER, &el);
    if (!enc) return NULL;
    loom_json_doc *doc = loom_json_parse(enc, el, NULL, NULL);
    const loom_json *root = loom_json_root(doc);
    loom_json_buf j = {0};
    loom_json_buf_puts(&j, "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 257, \"content\": \"<|endoftext|>\", "
                           "\"special\": true}],\n\"normalizer\": null,\n\"pre_tokenizer\": {\"type\": \"ByteLevel\", "
                           "\"add_prefix_space\": false, \"use_regex\": true},\n\"decoder\": {\"type\": \"ByteLevel\"},\n"
                           "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": {\n");
    for (size_t i = 0; i < 256; i++) {
        const loom_json *v = loom_json_at(root, i);
        loom_json_escape(&j, v->key, v->key_len);
        loom_json_buf_printf(&j, ": %s,\n", v->str);
    }
    loom_json_buf_puts(&j, "\"Ġt\": 256, \"<|endoftext|>\": 257},\n\"merges\": [\"Ġ t\"]}}\n");
    loom_json_free(doc);
    free(enc);
    *len = j.len;
    return j.data;
}

/* s with the first `from` replaced by `to` (NULL if `from` is not in s). */
static char *replaced(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) return NULL;
    size_t a = (size_t)(at - s), lf = strlen(from), lt = strlen(to), n = strlen(s);
    char *r = malloc(n - lf + lt + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, lt);
    memcpy(r + a + lt, at + lf, n - a - lf + 1);
    return r;
}

#define SEQ_SPLIT(pat, regex)                                                                              \
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"" pat "\"}, " \
    "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "      \
    "\"use_regex\": " regex "}]}"
#define BYTELEVEL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

static void test_json_malformed(void) {
    size_t n;
    char *good = tiny_json(&n);
    CHECK(good, "tiny tokenizer.json");
    if (!good) return;
    loom_tokenizer *t = NULL;
    CHECK(!loom_tokenizer_from_json_mem(good, n, "t.json", &t) && t && loom_tokenizer_eot(t) == 257 &&
              loom_tokenizer_vocab_size(t) == 258,
          "tiny tokenizer.json: %s", loom_error_msg());
    uint32_t want[] = {256, 71};
    if (t) CHECK(encode_eq(t, " th", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, want, 2, "tiny json"), "tiny json encodes");
    loom_tokenizer_free(t);
    struct { const char *from, *to, *n1, *n2; } cases[] = {
        {"\"merges\": [\"Ġ t\"]", "\"merges\": [[\"Ġ\", \"t\"]]", NULL, NULL}, /* valid: pair merges */
        {"\"version\": \"1.0\", ", "", NULL, NULL},                             /* valid: no version */
        {BYTELEVEL, SEQ_SPLIT("'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+",
                              "false"), NULL, NULL},                            /* valid: GPT-2 as a Split */
        {"\"model\"", "\"modle\"", "t.json: no \"model\" object", NULL},
        {"\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "t.json:5:", "model.type \"WordPiece\" is not supported"},
        {"\"dropout\": null", "\"dropout\": 0.1", "t.json:5:", "model.dropout: only null"},
        {"\"dropout\": null", "\"dropout\": null, \"end_of_word_suffix\": \"</w>\"", "model.end_of_word_suffix", NULL},
        {"\"merges\": [\"Ġ t\"]", "\"merges\": [\"Ġ ő\"]", "t.json:263:", "model.merges[0]: \"ő\" is not in model.vocab"},
        {"\"merges\": [\"Ġ t\"]", "\"merges\": [\"Ġ x\"]", "model.merges[0]: \"Ġ\" + \"x\": the merged token is not in model.vocab", NULL},
        {"\"merges\": [\"Ġ t\"]", "\"merges\": [\"Ġ  t\"]", "model.merges[0]: \"Ġ  t\" is not \"A B\"", NULL},
        {"\"merges\": [\"Ġ t\"]", "\"merges\": [[\"Ġ\"]]", "model.merges[0]: expected \"A B\" or [\"A\", \"B\"]", NULL},
        {"\"merges\": [\"Ġ t\"]", "\"merges\": {}", "model.merges: not an array", NULL},
        {"\"Ġt\": 256", "\"Ġt\": 255", "t.json:262:", "model.vocab: \"Ń\" and \"Ġt\" both have id 255"},
        {"\"Ġt\": 256", "\"Ġt\": 256, \"Ġt\": 258", "model.vocab: token \"Ġt\" is listed twice", NULL},
        {"\"Ġt\": 256", "\"Ġt\": \"256\"", "model.vocab: the id of \"Ġt\" is not an integer", NULL},
        {"\"Ā\":", "\"ĀĀ\":", "model.vocab: no token for byte 0x00 (\"Ā\", U+0100 in the byte-level alphabet)", NULL},
        {"\"vocab\": {", "\"vocab\": 7, \"x\": {", "model.vocab: not an object", NULL},
        {BYTELEVEL, "{\"type\": \"Whitespace\"}", "t.json:3:", "pre_tokenizer: type \"Whitespace\" is not supported"},
        {BYTELEVEL, "null", "pre_tokenizer: null", NULL},
        {BYTELEVEL, "{\"type\": \"ByteLevel\", \"add_prefix_space\": true}", "pre_tokenizer.add_prefix_space: true is not supported", NULL},
        {BYTELEVEL, "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}", "use_regex false alone", NULL},
        {BYTELEVEL, SEQ_SPLIT("\\\\w+", "false"), "pre_tokenizer.pretokenizers[0].pattern: regex \"\\w+\" is not supported", NULL},
        {BYTELEVEL, SEQ_SPLIT("'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|\\\\s+(?!\\\\S)|\\\\s+", "true"),
         "pre_tokenizer.pretokenizers[1].use_regex: must be false after a Split", NULL},
        {BYTELEVEL, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Punctuation\"}, " BYTELEVEL "]}",
         "pre_tokenizer.pretokenizers[0]: type \"Punctuation\" is not supported", NULL},
        {BYTELEVEL, "{\"type\": \"Sequence\", \"pretokenizers\": []}", "pre_tokenizer.pretokenizers: expected 1 or 2", NULL},
        {"\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "t.json:2:", "normalizer: type \"NFC\" is not supported"},
        {"\"decoder\": {\"type\": \"ByteLevel\"}", "\"decoder\": null", "decoder:", "is not supported"},
        {"\"decoder\": {\"type\": \"ByteLevel\"}", "\"decoder\": {\"type\": \"WordPiece\"}", "decoder: type \"WordPiece\"", NULL},
        {"\"id\": 257", "\"id\": 300", "t.json:1:", "added_tokens[0] \"<|endoftext|>\": id 300, but tokenizers gives it id 257"},
        {"\"id\": 257, \"content\": \"<|endoftext|>\"", "\"id\": 258, \"content\": \"<|end|>\"", "no end-of-text token", NULL},
        {"\"special\": true}", "\"special\": false}", "no end-of-text token", NULL},
        {"\"special\": true}", "\"special\": true, \"single_word\": true}", "single_word true is not supported", NULL},
        {"\"special\": true}", "\"special\": \"yes\"}", "added_tokens[0].special: expected true or false", NULL},
        {"\"special\": true}]", "\"special\": true}, {\"id\": 257, \"content\": \"<|endoftext|>\"}]",
         "added_tokens[1]: \"<|endoftext|>\" is already added_tokens[0]", NULL},
        {"\"content\": \"<|endoftext|>\"", "\"content\": \"\"", "added_tokens[0].content: expected a non-empty string", NULL},
        {"\"version\": \"1.0\"", "\"version\": \"2.0\"", "version: expected \"1.0\"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *s = replaced(good, cases[i].from, cases[i].to);
        CHECK(s, "case %zu: '%s' is not in the tiny file", i, cases[i].from);
        if (!s) continue;
        t = NULL;
        loom_status st = loom_tokenizer_from_json_mem(s, strlen(s), "t.json", &t);
        if (!cases[i].n1) {
            CHECK(!st && t, "case %zu ('%s') must load: %s", i, cases[i].to, loom_error_msg());
            if (t) CHECK(encode_eq(t, " th", 3, LOOM_TOKENIZER_SPECIAL_REFUSE, want, 2, "tiny json"), "case %zu encodes", i);
            loom_tokenizer_free(t);
        } else {
            expect_error(st, t, cases[i].to, cases[i].n1, cases[i].n2);
            CHECK(!strchr(loom_error_msg(), '\n'), "case %zu: one line: %s", i, loom_error_msg());
        }
        free(s);
    }
    struct { const char *text, *n1; } whole[] = {
        {"", "t.json: empty file"},
        {"not json", "t.json:1:1: not JSON"},
        {"[1, 2]", "t.json: expected a JSON object (a tokenizer.json), got array"},
        {"{\"model\": 5}", "t.json:1:11: \"model\" is number, not an object"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        t = NULL;
        expect_error(loom_tokenizer_from_json_mem(whole[i].text, strlen(whole[i].text), "t.json", &t), t, whole[i].text,
                     whole[i].n1, NULL);
    }
    t = NULL;
    expect_error(loom_tokenizer_from_json_mem(good, n / 2, "t.json", &t), t, "truncated", "t.json:", "not JSON");
    /* every cut, and random bytes changed: a tokenizer or one error line naming the file */
    int ok = 1;
    char *mut = malloc(n);
    for (size_t it = 0; it < n + 3000; it++) {
        size_t len = it < n ? it : n;
        memcpy(mut, good, n);
        if (it >= n)
            for (int k = 0; k < 1 + (int)rndn(3); k++) mut[rndn((uint32_t)n)] = "\"{}[],: 0a\\Ġ\x80"[rndn(14)];
        t = NULL;
        loom_status st = loom_tokenizer_from_json_mem(mut, len, "t.json", &t);
        if (st ? t || strncmp(loom_error_msg(), "t.json", 6) || strchr(loom_error_msg(), '\n') : !t) ok = 0;
        if (t) {
            loom_tokens o = {0};
            loom_bytes d = {0};
            if (loom_tokenizer_encode(t, " the cat<|endoftext|>", 21, LOOM_TOKENIZER_SPECIAL_ALLOW, &o) ||
                loom_tokenizer_decode(t, o.ids, o.len, &d))
                ok = 0;
            loom_tokens_free(&o);
            loom_bytes_free(&d);
        }
        loom_tokenizer_free(t);
    }
    free(mut);
    CHECK(ok, "cut and changed copies of the tiny tokenizer.json");
    /* GPT-2's encoder.json is JSON but no tokenizer.json */
    size_t el;
    uint8_t *enc = read_all(ENCODER, &el);
    t = NULL;
    if (enc) expect_error(loom_tokenizer_from_json_mem(enc, el, "encoder.json", &t), t, "encoder.json", "encoder.json:1:",
                          "\"model\" is number, not an object: not a tokenizer.json");
    free(enc);

    /* loom_tokenizer_load picks the loader by name or content */
    char path[64];
    snprintf(path, sizeof path, "/tmp/loom_test_tok_%d", (int)getpid());
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(good, 1, n, f) == n && !fclose(f), "write %s", path);
    t = NULL;
    CHECK(!loom_tokenizer_load(path, &t) && t && loom_tokenizer_vocab_size(t) == 258, "load by content: %s",
          loom_error_msg());
    loom_tokenizer_free(t);
    remove(path);
    t = NULL;
    CHECK(!loom_tokenizer_load(TIKTOKEN, &t) && t && loom_tokenizer_vocab_size(t) == 50257, "load a rank file: %s",
          loom_error_msg());
    loom_tokenizer_free(t);
    t = NULL;
    CHECK(loom_tokenizer_load("/nonexistent/tokenizer.json", &t) == LOOM_ERR_IO && !t &&
              strstr(loom_error_msg(), "/nonexistent/tokenizer.json"),
          "missing file: %s", loom_error_msg());
    t = NULL;
    expect_error(loom_tokenizer_load(ENCODER, &t), t, "encoder.json by name", "data/gpt2/encoder.json", "not a tokenizer.json");
    free(good);
}

/* Added tokens on the tiny file: the ids tokenizers 0.20.3 gives for the same file. */
static void test_json_added(void) {
    size_t n;
    char *good = tiny_json(&n);
    if (!good) return;
    char *s = replaced(good, "\"special\": true}]",
                       "\"special\": true}, {\"id\": 258, \"content\": \"<m>\", \"special\": true, \"lstrip\": true, "
                       "\"normalized\": false}, {\"id\": 259, \"content\": \"ab\", \"normalized\": true}, "
                       "{\"id\": 260, \"content\": \"<m>x\", \"normalized\": true, \"rstrip\": true}]");
    loom_tokenizer *t = NULL;
    CHECK(s && !loom_tokenizer_from_json_mem(s, strlen(s), "t.json", &t) && t && loom_tokenizer_vocab_size(t) == 261,
          "tiny json with added tokens: %s", loom_error_msg());
    if (t) {
        /* "<m>" (normalized false) is matched first, taking the two spaces before it; then
         * "ab" and "<m>x" (normalized true) in what is left, "<m>x" taking the spaces after */
        uint32_t a1[] = {64, 258, 87, 259, 65};
        CHECK(encode_eq(t, "a  <m>xabb", 10, LOOM_TOKENIZER_SPECIAL_ALLOW, a1, 5, "allow"), "lstrip, passes");
        /* ordinary: "<m>" is text, so "<m>x" (second pass) matches there and takes "  " */
        uint32_t o1[] = {64, 220, 220, 260, 259, 65};
        CHECK(encode_eq(t, "a  <m>x  abb", 12, LOOM_TOKENIZER_SPECIAL_ORDINARY, o1, 6, "ordinary"), "rstrip, ordinary");
        loom_tokens o = {0};
        CHECK(loom_tokenizer_encode(t, "ab<m>", 5, LOOM_TOKENIZER_SPECIAL_REFUSE, &o) == LOOM_ERR_ARG &&
                  strstr(loom_error_msg(), "special token <m> at byte 2"),
              "refuse names the token: %s", loom_error_msg());
        uint32_t r1[] = {259, 259};
        CHECK(encode_eq(t, "abab", 4, LOOM_TOKENIZER_SPECIAL_REFUSE, r1, 2, "refuse"), "non-special tokens pass refuse");
        loom_bytes d = {0};
        uint32_t ids[] = {258, 260, 257};
        CHECK(!loom_tokenizer_decode(t, ids, 3, &d) && d.len == 20 && !memcmp(d.data, "<m><m>x<|endoftext|>", 20),
              "decode added tokens");
        loom_bytes_free(&d);
        loom_tokens_free(&o);
        CHECK(loom_tokenizer_token_id(t, "<m>", 3) == -1, "added tokens are not in the map");
    }
    loom_tokenizer_free(t);
    free(s);
    s = replaced(good, "\"special\": true}]", "\"special\": true}, {\"id\": 258, \"content\": \" z\", \"rstrip\": true}]");
    t = NULL;
    if (s)
        expect_error(loom_tokenizer_from_json_mem(s, strlen(s), "t.json", &t), t, "rstrip", "rstrip with added_tokens[1]",
                     "starting with a space");
    free(s);
    free(good);
}

/* ---- the ids tokenizers itself gave (tests/tokenizer/hf_cases.py) ------------------------ */

#define U32(p) ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24)

/* The u32 count and array at *pos; advances it. */
static const uint8_t *take(const uint8_t *buf, size_t len, size_t *pos, uint32_t *n, size_t width) {
    if (*pos + 4 > len) return NULL;
    *n = U32(buf + *pos);
    const uint8_t *p = buf + *pos + 4;
    *pos += 4 + (size_t)*n * width;
    return *pos <= len ? p : NULL;
}

static int ids_eq(const loom_tokens *o, const uint8_t *want, uint32_t n) {
    if (o->len != n) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (o->ids[i] != U32(want + 4 * (size_t)i)) return 0;
    return 1;
}

static void show_diff(const char *what, const uint8_t *text, size_t tl, const loom_tokens *o, const uint8_t *want,
                      uint32_t n) {
    size_t i = 0;
    while (i < o->len && i < n && o->ids[i] == U32(want + 4 * i)) i++;
    printf("  %s: %zu ids, tokenizers %u; first difference at id %zu:", what, o->len, n, i);
    for (size_t k = i; k < i + 8 && k < o->len; k++) printf(" %u", o->ids[k]);
    printf(" | tokenizers:");
    for (size_t k = i; k < i + 8 && k < n; k++) printf(" %u", U32(want + 4 * k));
    printf("\n  text (%zu bytes):", tl);
    for (size_t k = 0; k < tl && k < 80; k++) printf(" %02x", text[k]);
    printf("\n");
}

/* One tokenizer: its ids for the first `count` texts. Returns the ids compared. */
static size_t hf_case_file(const char *dir, const char *name, uint32_t vocab, uint32_t eot, size_t count,
                           const uint8_t *texts, size_t tlen, const loom_tokenizer *tk) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    loom_tokenizer *t = NULL;
    loom_status st = loom_tokenizer_load(path, &t);
    CHECK(!st && t, "load %s: %s", path, loom_error_msg());
    if (!t) return 0;
    CHECK(loom_tokenizer_vocab_size(t) == vocab && loom_tokenizer_eot(t) == eot, "%s: vocab %u eot %u (want %u %u)",
          name, loom_tokenizer_vocab_size(t), loom_tokenizer_eot(t), vocab, eot);
    snprintf(path, sizeof path, "%s/%s.ids", dir, name);
    size_t len, pos = 0, tpos = 0, compared = 0, pieces = 0, bad = 0, badp = 0, badd = 0, badr = 0, badpar = 0;
    uint8_t *buf = read_all(path, &len);
    CHECK(buf, "cannot read %s", path);
    size_t *ends = NULL, ends_cap = 0;
    for (size_t i = 0; buf && i < count; i++) {
        uint32_t tl = 0, na = 0, no = 0, np = 0, nd = 0;
        const uint8_t *text = take(texts, tlen, &tpos, &tl, 1);
        const uint8_t *allow = take(buf, len, &pos, &na, 4), *ord = take(buf, len, &pos, &no, 4);
        const uint8_t *pe = take(buf, len, &pos, &np, 4), *dec = take(buf, len, &pos, &nd, 1);
        if (!text || !allow || !ord || !pe || !dec) {
            CHECK(0, "%s: truncated at text %zu", path, i);
            break;
        }
        char what[160];
        loom_tokens o = {0};
        /* allow: the defaults; ordinary: the piece cache on and the heap merge for all */
        snprintf(what, sizeof what, "%s text %zu (allow)", name, i);
        st = loom_tokenizer_encode(t, text, tl, LOOM_TOKENIZER_SPECIAL_ALLOW, &o);
        if (st || !ids_eq(&o, allow, na)) {
            if (bad++ < 3) show_diff(what, text, tl, &o, allow, na);
        }
        loom_bytes d = {0};
        if (!st && (loom_tokenizer_decode(t, o.ids, o.len, &d) || d.len != nd || (nd && memcmp(d.data, dec, nd))))
            badd++;
        if (!st && nd == tl && (d.len != tl || (tl && memcmp(d.data, text, tl)))) badr++;
        loom_bytes_free(&d);
        int has_special = 0;
        for (size_t k = 0; k < t->n_added; k++)
            for (size_t q = 0; q < o.len; q++) has_special |= t->added[k].special && o.ids[q] == t->added[k].id;
        if (tl > (1 << 17)) { /* parallel == serial */
            loom_tokens p = {0};
            st = loom_tokenizer_encode_parallel(t, text, tl, LOOM_TOKENIZER_SPECIAL_ALLOW, 2, &p);
            if (st || !ids_eq(&p, allow, na)) badpar++;
            loom_tokens_free(&p);
        }
        o.len = 0;
        snprintf(what, sizeof what, "%s text %zu (ordinary)", name, i);
        size_t saved_cache = loom_tokenizer_cache_min_len, saved_heap = loom_tokenizer_heap_threshold;
        loom_tokenizer_cache_min_len = 0;
        loom_tokenizer_heap_threshold = 0;
        st = loom_tokenizer_encode(t, text, tl, LOOM_TOKENIZER_SPECIAL_ORDINARY, &o);
        loom_tokenizer_cache_min_len = saved_cache;
        loom_tokenizer_heap_threshold = saved_heap;
        if (st || !ids_eq(&o, ord, no)) {
            if (bad++ < 3) show_diff(what, text, tl, &o, ord, no);
        }
        o.len = 0;
        st = loom_tokenizer_encode(t, text, tl, LOOM_TOKENIZER_SPECIAL_REFUSE, &o);
        if (has_special ? st != LOOM_ERR_ARG : (st || !ids_eq(&o, allow, na))) badr++;
        compared += na + no;
        loom_tokens_free(&o);
        if (np) { /* the pre-tokenizer's pieces */
            if (ends_cap < tl) {
                free(ends);
                ends_cap = tl;
                ends = malloc(ends_cap * sizeof *ends);
            }
            size_t k = loom_tok_pieces(t, text, tl, ends), q = 0;
            while (q < k && q < np && ends[q] == U32(pe + 4 * q)) q++;
            if (k != np || q != k) {
                if (badp++ < 3) {
                    printf("  %s text %zu: pieces differ at piece %zu (loom ends at %zu, tokenizers at %u)\n", name, i, q,
                           q < k ? ends[q] : 0, q < np ? U32(pe + 4 * q) : 0);
                    size_t from = q ? ends[q - 1] : 0;
                    printf("    from byte %zu:", from);
                    for (size_t b = from; b < tl && b < from + 24; b++) printf(" %02x", text[b]);
                    printf("\n");
                }
            }
            pieces += np;
        }
        if (i == 0 && tk && !strcmp(name, "gpt2")) { /* GPT-2 by tokenizer.json == by the tiktoken file */
            loom_tokens a = {0}, b = {0};
            CHECK(!loom_tokenizer_encode(t, text, tl, LOOM_TOKENIZER_SPECIAL_REFUSE, &a) &&
                      !loom_tokenizer_encode(tk, text, tl, LOOM_TOKENIZER_SPECIAL_REFUSE, &b) && a.len == b.len &&
                      !memcmp(a.ids, b.ids, a.len * 4) && ids_eq(&b, allow, na),
                  "gpt2: the corpus by tokenizer.json, by r50k_base.tiktoken and by tokenizers differ");
            printf("test_tokenizer: gpt2: the corpus (%u bytes): tokenizer.json == tiktoken file == tokenizers (%zu ids)\n",
                   tl, b.len);
            loom_tokens_free(&a);
            loom_tokens_free(&b);
        }
    }
    printf("test_tokenizer: hf %-16s %zu texts, %zu ids and %zu pieces compared: %zu differ, %zu pieces differ, "
           "%zu decodes differ, %zu refuse/round trips, %zu parallel differ\n",
           name, count, compared, pieces, bad, badp, badd, badr, badpar);
    CHECK(buf && pos == len && bad == 0 && badp == 0 && badd == 0 && badr == 0 && badpar == 0, "%s: tokenizers cases",
          name);
    free(ends);
    free(buf);
    loom_tokenizer_free(t);
    return compared;
}

static void test_hf_cases(const char *dir, const loom_tokenizer *tk) {
    char path[512], name[64];
    snprintf(path, sizeof path, "%s/texts.bin", dir);
    size_t tlen, total = 0, files = 0;
    uint8_t *texts = read_all(path, &tlen);
    snprintf(path, sizeof path, "%s/list.txt", dir);
    FILE *f = fopen(path, "r");
    CHECK(texts && f, "cannot read %s/texts.bin and list.txt", dir);
    unsigned vocab, eot;
    size_t count;
    while (f && fscanf(f, "%63s %u %u %zu", name, &vocab, &eot, &count) == 4) {
        total += hf_case_file(dir, name, vocab, eot, count, texts, tlen, tk);
        files++;
    }
    if (f) fclose(f);
    printf("test_tokenizer: %zu tokenizer.json files, %zu ids compared with tokenizers\n", files, total);
    CHECK(files >= 7, "only %zu tokenizers in %s/list.txt", files, dir);
    free(texts);
}
#undef U32
