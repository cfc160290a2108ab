/* safetensors reading and writing (https://huggingface.co/docs/safetensors format):
 * an 8-byte little-endian header length N, N bytes of JSON header, then raw tensor data.
 * The reader validates everything (it is fuzzed): any input yields either a consistent
 * file or one error message; it never crashes. Checkpoint atomicity lives above this. */
#ifndef LOOM_SAFETENSORS_H
#define LOOM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "loom/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_dtype {
    LOOM_DTYPE_F32, LOOM_DTYPE_F16, LOOM_DTYPE_BF16, LOOM_DTYPE_F64,
    LOOM_DTYPE_I8, LOOM_DTYPE_I16, LOOM_DTYPE_I32, LOOM_DTYPE_I64,
    LOOM_DTYPE_U8, LOOM_DTYPE_U16, LOOM_DTYPE_U32, LOOM_DTYPE_U64, LOOM_DTYPE_BOOL,
    LOOM_DTYPE_COUNT
} loom_dtype;

size_t loom_dtype_size(loom_dtype dt);       /* bytes per element */
const char *loom_dtype_name(loom_dtype dt);  /* "F32", "BF16", ... */

#define LOOM_ST_MAX_DIMS 8

typedef struct loom_st_tensor {
    char *name;
    loom_dtype dtype;
    int ndim;
    int64_t shape[LOOM_ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data section, end - begin = numel*size */
} loom_st_tensor;

typedef struct loom_st_file loom_st_file; /* opaque */

/* Opens and validates `path` (memory-mapped). On error returns a status and a message
 * naming the file and the problem (e.g. "x.safetensors: tensor 'wte.weight': data
 * offsets [0, 40) do not match shape [3, 4] of F32 (48 bytes)"). */
loom_status loom_st_open(const char *path, loom_st_file **out);
/* The same over a buffer in memory (copied); `label` names it in messages. */
loom_status loom_st_parse(const void *buf, size_t len, const char *label, loom_st_file **out);
void loom_st_close(loom_st_file *f);

size_t loom_st_count(const loom_st_file *f);
const loom_st_tensor *loom_st_at(const loom_st_file *f, size_t i); /* in header order */
const loom_st_tensor *loom_st_find(const loom_st_file *f, const char *name); /* or NULL */
const void *loom_st_data(const loom_st_file *f, const loom_st_tensor *t);
/* __metadata__ value for `key`, or NULL. */
const char *loom_st_meta(const loom_st_file *f, const char *key);
size_t loom_st_meta_count(const loom_st_file *f);
void loom_st_meta_at(const loom_st_file *f, size_t i, const char **key, const char **value);
const char *loom_st_path(const loom_st_file *f);

/* Writer: collect tensors (data pointers are borrowed until write) and metadata, then
 * write the whole file. Tensors are laid out in the order added. */
typedef struct loom_st_writer loom_st_writer;
loom_st_writer *loom_st_writer_init(void); /* NULL on OOM (message set) */
void loom_st_writer_free(loom_st_writer *w);
loom_status loom_st_writer_add(loom_st_writer *w, const char *name, loom_dtype dt, int ndim,
                               const int64_t *shape, const void *data);
loom_status loom_st_writer_meta(loom_st_writer *w, const char *key, const char *value);
/* The bytes before the tensor data (the 8-byte header length and the header), malloc'd
 * into *out; the tensors' data follows them back to back in the order added, so a
 * caller can write the file in parts (loom_ckpt_save_dist). */
loom_status loom_st_writer_prefix(const loom_st_writer *w, unsigned char **out, size_t *len);
/* Writes to `path` (created or truncated). Errors name the path. */
loom_status loom_st_writer_write(loom_st_writer *w, const char *path);
/* The same; with sync = 1 the data is also fsync'ed to the device before returning. */
loom_status loom_st_writer_write_ex(loom_st_writer *w, const char *path, int sync);

#ifdef __cplusplus
}
#endif
#endif
