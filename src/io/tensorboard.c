/* TensorBoard event files (include/loom/tensorboard.h). The protocol buffers are
 * written by hand; the fields used (tensorflow/core/util/event.proto, summary.proto):
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *             Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; } */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "loom/tensorboard.h"

struct loom_tb {
    int fd;
    char path[4200];
};

/* A growing byte buffer; `failed` after an allocation failure. */
typedef struct pbuf {
    unsigned char *p;
    size_t len, cap;
    int failed;
} pbuf;

static void put(pbuf *b, const void *src, size_t n) {
    if (b->failed || n == 0) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_varint(pbuf *b, uint64_t v) {
    unsigned char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, tmp, (size_t)n);
}

/* field numbers and wire types: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit */
static void put_key(pbuf *b, int field, int wire) { put_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void put_bytes(pbuf *b, int field, const void *data, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    put(b, data, n);
}
static void put_le(pbuf *b, uint64_t v, int bytes) {
    unsigned char tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (unsigned char)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

/* TFRecord's masked CRC32C. */
static uint32_t masked_crc(const void *data, size_t n) {
    const uint32_t c = loom_crc32c(0, data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* The Event's common head: wall_time and step. */
static void event_head(pbuf *e, long step) {
    double w = wall_now();
    uint64_t bits;
    memcpy(&bits, &w, sizeof bits);
    put_key(e, 1, 1);
    put_le(e, bits, 8);
    put_key(e, 2, 0);
    put_varint(e, (uint64_t)(int64_t)step);
}

/* Frames the event as one TFRecord and writes it in one write(). */
static loom_status write_record(loom_tb *tb, pbuf *e) {
    pbuf r = {0};
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)e->len >> (8 * i));
    put(&r, len, 8);
    put_le(&r, masked_crc(len, 8), 4);
    put(&r, e->p, e->len);
    put_le(&r, masked_crc(e->p, e->len), 4);
    loom_status st = LOOM_OK;
    if (e->failed || r.failed) {
        st = loom_error(LOOM_ERR_NOMEM, "%s: out of memory building an event", tb->path);
    } else {
        size_t done = 0;
        while (done < r.len) {
            ssize_t w = write(tb->fd, r.p + done, r.len - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                st = loom_error(LOOM_ERR_IO, "%s: write failed: %s", tb->path, strerror(w < 0 ? errno : EIO));
                break;
            }
            done += (size_t)w;
        }
    }
    free(r.p);
    free(e->p);
    *e = (pbuf){0};
    return st;
}

loom_status loom_tb_open(loom_tb **out, const char *dir, const char *flag) {
    *out = NULL;
    loom_status st = loom_mkdir_p(dir, flag);
    if (st) return st;
    loom_tb *tb = calloc(1, sizeof *tb);
    if (!tb) return loom_error(LOOM_ERR_NOMEM, "out of memory");
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%ld.%s.%ld.loom", dir, (long)wall_now(), host,
             (long)getpid());
    tb->fd = open(tb->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (tb->fd < 0) {
        st = loom_error(LOOM_ERR_IO, "%s: %s: cannot create: %s", flag, tb->path, strerror(errno));
        free(tb);
        return st;
    }
    pbuf e = {0};
    event_head(&e, 0);
    static const char version[] = "brain.Event:2";
    put_bytes(&e, 3, version, sizeof version - 1);
    if ((st = write_record(tb, &e))) {
        loom_tb_close(tb);
        return st;
    }
    *out = tb;
    return LOOM_OK;
}

loom_status loom_tb_scalars(loom_tb *tb, long step, int n, const char *const *tags, const float *values) {
    pbuf summary = {0}, value = {0}, e = {0};
    for (int i = 0; i < n; i++) {
        put_bytes(&value, 1, tags[i], strlen(tags[i]));
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        put_key(&value, 2, 5);
        put_le(&value, bits, 4);
        put_bytes(&summary, 1, value.p, value.len);
        value.len = 0;
    }
    event_head(&e, step);
    put_bytes(&e, 5, summary.p, summary.len);
    e.failed |= summary.failed | value.failed;
    free(summary.p);
    free(value.p);
    return write_record(tb, &e);
}

void loom_tb_close(loom_tb *tb) {
    if (!tb) return;
    if (tb->fd >= 0) close(tb->fd);
    free(tb);
}

const char *loom_tb_path(const loom_tb *tb) { return tb->path; }
