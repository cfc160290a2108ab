/* A small strict JSON (RFC 8259) parser into a read-only tree, plus a string escaper
 * for writing JSON. Used for safetensors headers, config.json and JSON-lines input.
 * It is not a streaming parser and not a serializer (callers print JSON themselves). */
#ifndef LOOM_IO_JSON_H
#define LOOM_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

typedef enum loom_json_type {
    LOOM_JSON_NULL,
    LOOM_JSON_BOOL,
    LOOM_JSON_NUMBER,
    LOOM_JSON_STRING,
    LOOM_JSON_ARRAY,
    LOOM_JSON_OBJECT,
} loom_json_type;

/* One value. All pointers point into the owning document and live until
 * loom_json_free. Strings are NUL-terminated, but `len` is authoritative since a
 * decoded string may contain U+0000. */
typedef struct loom_json loom_json;
struct loom_json {
    loom_json_type type;
    int boolean;        /* BOOL: 0 or 1 */
    double number;      /* NUMBER: value by strtod (may be +-inf for huge exponents) */
    char *str;          /* STRING: decoded UTF-8; NUMBER: the raw token, e.g. "-1.5e3" */
    size_t len;         /* STRING/NUMBER: byte length of `str` */
    char *key;          /* when this value is an object member: its decoded key, else NULL */
    size_t key_len;
    loom_json *items;   /* ARRAY/OBJECT: the `n` elements / member values, in input order */
    size_t n;
    size_t offset;      /* byte offset of the value's first character in the input */
};

typedef struct loom_json_opts {
    int max_depth;      /* nesting limit for arrays+objects; 0 = 64 */
    size_t max_mem;     /* cap on memory the tree may use; 0 = 1 GiB */
    int allow_trailing; /* 1: stop after the first value (see loom_json_consumed) */
} loom_json_opts;

/* Where and why a parse failed. `status` is LOOM_ERR_FORMAT for bad input and
 * LOOM_ERR_NOMEM when an allocation or the max_mem cap failed. */
typedef struct loom_json_error {
    loom_status status;
    size_t offset;      /* byte offset of the problem */
    size_t line, col;   /* 1-based, derived from offset (col counts bytes) */
    char msg[160];      /* e.g. "expected ',' or ']' after array element" */
} loom_json_error;

typedef struct loom_json_doc loom_json_doc;

/* Parses `len` bytes at `buf` (need not be NUL-terminated) as one JSON value with
 * optional surrounding whitespace. Returns the document, or NULL and fills `err`
 * (`opts` and `err` may be NULL). Never reads outside [buf, buf+len). Strings must be
 * valid UTF-8 without raw control characters; \u escapes must not leave lone
 * surrogates. Objects keep duplicate keys (loom_json_get returns the first). Does not
 * call loom_error; callers turn `err` into their own message. */
loom_json_doc *loom_json_parse(const void *buf, size_t len, const loom_json_opts *opts,
                               loom_json_error *err);
void loom_json_free(loom_json_doc *doc);
const loom_json *loom_json_root(const loom_json_doc *doc);
/* Bytes consumed: the root value plus the whitespace after it. Equals `len` unless
 * opts.allow_trailing was set and something followed the value. */
size_t loom_json_consumed(const loom_json_doc *doc);

/* "null", "bool", "number", "string", "array", "object". */
const char *loom_json_type_name(loom_json_type t);

/* First member of object `obj` whose key equals the NUL-terminated `key`, or NULL
 * (also NULL when obj is NULL or not an object). */
const loom_json *loom_json_get(const loom_json *obj, const char *key);
/* Element count of an array or object; 0 for anything else (or NULL). */
size_t loom_json_len(const loom_json *v);
/* Element i of an array, or the value of member i of an object; NULL if out of range. */
const loom_json *loom_json_at(const loom_json *v, size_t i);
/* The decoded string if v is a string, else NULL. */
const char *loom_json_str(const loom_json *v);

/* Exact integer reads from the raw number text: succeed (return 1 and set *out) only
 * when v is a number written as a plain integer (no fraction or exponent) that fits.
 * Return 0 otherwise, leaving *out unchanged. */
int loom_json_get_u64(const loom_json *v, uint64_t *out);
int loom_json_get_i64(const loom_json *v, int64_t *out);

/* 1 if s[0..len) is well-formed UTF-8 (no overlongs, surrogates or values > U+10FFFF). */
int loom_json_utf8_valid(const char *s, size_t len);

/* A growable byte buffer for building JSON text. Failures are sticky: after an
 * allocation failure `failed` is set and further appends do nothing, so a caller can
 * check once at the end. `data` is kept NUL-terminated whenever it is non-NULL. */
typedef struct loom_json_buf {
    char *data;
    size_t len, cap;
    int failed;
} loom_json_buf;

void loom_json_buf_put(loom_json_buf *b, const void *s, size_t n);
void loom_json_buf_puts(loom_json_buf *b, const char *s);
void loom_json_buf_printf(loom_json_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void loom_json_buf_free(loom_json_buf *b); /* frees data and resets to empty */

/* Appends s[0..len) as a quoted JSON string literal: '"' and '\' and control
 * characters are escaped, other bytes are copied. Returns 0, or -1 (appending nothing)
 * if s is not valid UTF-8; an allocation failure shows in b->failed. */
int loom_json_escape(loom_json_buf *b, const char *s, size_t len);

#endif
