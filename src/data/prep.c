/* loom prep: documents -> tokens -> shards. Inputs are read into memory one file at a
 * time and cut into documents; documents are tokenized in parallel (a large single
 * document is split at safe boundaries by the tokenizer's parallel encoder), then
 * appended in input order, so the shards do not depend on the thread count. Not here:
 * spreading the work over MPI ranks (the dist layer will split inputs at document
 * boundaries and concatenate in rank order). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "loom/data.h"
#include "loom/dist.h"
#include "loom/prep.h"
#include "loom/tokenizer.h"

/* The output is built in a temporary directory beside --out (DIR.tmp-PID) and swapped
 * in whole at the end. A signal thread takes SIGINT and SIGTERM: it removes the
 * temporary directory and exits, so an interrupted prep leaves --out as it was. Files
 * are created in the temporary directory only under g_out_lock, which the signal
 * thread holds while it removes it. */
static pthread_mutex_t g_out_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_tmp[4096];       /* the temporary directory while it exists, else "" */
static const char *g_out_name; /* --out as given, for the interrupt message */
static int g_progress;         /* a progress bar may be mid-line on stderr */
static int g_committed;        /* the output is in place: a signal no longer undoes it */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

/* rm -rf dir (symbolic links are removed, not followed); 0 or -1 with errno. */
static int remove_tree(const char *dir) { return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* fsync a file or directory by name, so that what was written or renamed there is durable. */
static loom_status sync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot open to sync: %s", path, strerror(errno));
    int r = fsync(fd), e = errno;
    close(fd);
    if (r != 0) return loom_error(LOOM_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return LOOM_OK;
}

static void on_signal(int sig, void *ctx) {
    (void)ctx;
    pthread_mutex_lock(&g_out_lock);
    if (!g_committed) {
        if (g_tmp[0]) remove_tree(g_tmp);
        fprintf(stderr, "%sloom prep: interrupted: nothing written to %s\n", g_progress ? "\n" : "", g_out_name);
        _exit(128 + sig);
    }
    pthread_mutex_unlock(&g_out_lock);
}

void loom_prep_block_signals(void) {
    static const int sigs[] = {SIGINT, SIGTERM};
    loom_signals_block(sigs, 2);
}

static void signals_start(const loom_prep_opts *o) {
    g_out_name = o->out_dir;
    g_progress = o->progress;
    g_committed = 0;
    g_tmp[0] = 0;
    loom_prep_block_signals();
    if (loom_signals_thread_start(on_signal, NULL))
        fprintf(stderr, "loom prep: warning: %s: signals take their default actions\n", loom_error_msg());
}

static void signals_stop(void) { loom_signals_thread_stop(); }

/* LOOM_OK when dir is empty, else "--out: DIR is not empty (...)". */
static loom_status check_empty(const loom_prep_opts *o, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return loom_error(LOOM_ERR_IO, "--out: cannot read the directory %s: %s", o->out_dir, strerror(errno));
    long n = 0;
    char first[256] = "";
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!n++ || strcmp(e->d_name, first) < 0) snprintf(first, sizeof first, "%s", e->d_name);
    }
    closedir(d);
    if (n == 0) return LOOM_OK;
    return loom_error(LOOM_ERR_ARG, "--out: %s is not empty (it holds %ld file%s, e.g. %s); pass --overwrite to replace it",
                      o->out_dir, n, n == 1 ? "" : "s", first);
}

/* Before any work (rank 0): --out must be missing (its parents are created), an empty
 * directory, or with --overwrite any directory. Sets dst (--out, resolved when it
 * exists) and creates the temporary directory g_tmp beside it. */
static loom_status out_begin(const loom_prep_opts *o, char *dst, size_t cap) {
    struct stat sb;
    loom_status st = LOOM_OK;
    if (stat(o->out_dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return loom_error(LOOM_ERR_ARG, "--out: %s is not a directory", o->out_dir);
        if (!o->overwrite && (st = check_empty(o, o->out_dir))) return st;
        char *real = realpath(o->out_dir, NULL); /* a link, ".", "a/": the directory itself */
        if (!real) return loom_error(LOOM_ERR_IO, "--out: %s: %s", o->out_dir, strerror(errno));
        snprintf(dst, cap, "%s", real);
        free(real);
    } else if (errno == ENOENT) {
        snprintf(dst, cap, "%s", o->out_dir);
        for (size_t n = strlen(dst); n > 1 && dst[n - 1] == '/'; n--) dst[n - 1] = 0;
        char *slash = strrchr(dst, '/');
        if (slash && slash > dst) {
            *slash = 0;
            st = loom_mkdir_p(dst, "--out");
            *slash = '/';
            if (st) return st;
        }
    } else {
        return loom_error(LOOM_ERR_IO, "--out: %s: %s", o->out_dir, strerror(errno));
    }
    pthread_mutex_lock(&g_out_lock);
    if ((size_t)snprintf(g_tmp, sizeof g_tmp, "%s.tmp-%ld", dst, (long)getpid()) >= sizeof g_tmp - 64)
        st = loom_error(LOOM_ERR_ARG, "--out: the path %s is too long", o->out_dir);
    else if (mkdir(g_tmp, 0777) != 0)
        st = loom_error(LOOM_ERR_IO, "--out: cannot create the directory %s: %s", g_tmp, strerror(errno));
    if (st) g_tmp[0] = 0;
    pthread_mutex_unlock(&g_out_lock);
    return st;
}

static loom_status rename_failed(const char *from, const char *to, int e, const char *more) {
    return loom_error(LOOM_ERR_IO, "--out: cannot rename %s to %s: %s%s", from, to, strerror(e), more);
}

/* Puts the finished g_tmp in place of dst: a rename when dst is missing or empty; with
 * --overwrite an exchange with the old directory (where the file system cannot
 * exchange: old aside, new in, old back if that fails), whose path goes to old. */
static loom_status out_swap(const loom_prep_opts *o, const char *dst, char *old, size_t cap) {
    if (rename(g_tmp, dst) == 0) return LOOM_OK;
    int e = errno, full = e == ENOTEMPTY || e == EEXIST;
    loom_status st;
    if (full && !o->overwrite && (st = check_empty(o, dst))) return st; /* filled since the start */
    if (!full || !o->overwrite) return rename_failed(g_tmp, dst, e, "");
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, g_tmp, AT_FDCWD, dst, RENAME_EXCHANGE) == 0) {
        snprintf(old, cap, "%s", g_tmp);
        return LOOM_OK;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return loom_error(LOOM_ERR_IO, "--out: cannot exchange %s and %s: %s", g_tmp, dst, strerror(errno));
#endif
    snprintf(old, cap, "%s.old-%ld", dst, (long)getpid());
    if (rename(dst, old) != 0) return rename_failed(dst, old, errno, "");
    if (rename(g_tmp, dst) == 0) return LOOM_OK;
    e = errno;
    char more[sizeof g_tmp + 64] = "";
    if (rename(old, dst) != 0) snprintf(more, sizeof more, "; the old output is now %s", old); /* else it is back */
    return rename_failed(g_tmp, dst, e, more);
}

/* The end of a successful run (rank 0): g_tmp synced and swapped in, the old output
 * removed, the parent directory synced. */
static loom_status out_commit(const loom_prep_opts *o, const char *dst) {
    char old[sizeof g_tmp + 32] = "";
    loom_status st = sync_path(g_tmp);
    pthread_mutex_lock(&g_out_lock);
    if (!st) st = out_swap(o, dst, old, sizeof old);
    if (!st) {
        g_committed = 1;
        g_tmp[0] = 0;
    }
    pthread_mutex_unlock(&g_out_lock);
    if (st) return st;
    if (old[0] && remove_tree(old) != 0)
        fprintf(stderr, "loom prep: warning: cannot remove the old output, now %s: %s\n", old, strerror(errno));
    char parent[sizeof g_tmp];
    snprintf(parent, sizeof parent, "%s", dst);
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else slash[slash == parent] = 0; /* "/x": the parent is "/" */
    return sync_path(parent);
}

/* After a failure: the temporary directory goes. */
static void out_abandon(void) {
    pthread_mutex_lock(&g_out_lock);
    if (g_tmp[0]) remove_tree(g_tmp);
    g_tmp[0] = 0;
    pthread_mutex_unlock(&g_out_lock);
}

/* The shard writer: tokens stream into val shards first, then train shards. */
typedef struct shard_sink {
    const char *dir;
    long shard_tokens, val_left;
    void *buf;             /* uint16 tokens, or uint32 when wide */
    int wide;              /* the vocabulary needs more than 16 bits (Llama 3) */
    long fill;
    int val_shards, train_shards;
    uint64_t train_tokens, val_tokens;
    int in_val; /* the buffer holds validation tokens */
    loom_json_buf manifest_shards;
} shard_sink;

static loom_status sink_flush(shard_sink *s) {
    if (s->fill == 0) return LOOM_OK;
    char path[4096];
    if (s->in_val) snprintf(path, sizeof path, "%s/val_%06d.bin", s->dir, s->val_shards++);
    else snprintf(path, sizeof path, "%s/train_%06d.bin", s->dir, s->train_shards++);
    pthread_mutex_lock(&g_out_lock);
    loom_status st = loom_shard_write(path, s->buf, (size_t)s->fill, s->wide);
    if (!st) st = sync_path(path);
    pthread_mutex_unlock(&g_out_lock);
    if (st) return st;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    loom_json_buf_printf(&s->manifest_shards, "%s\n    {\"file\": \"%s\", \"split\": \"%s\", \"tokens\": %ld}",
                         s->manifest_shards.len ? "," : "", base, s->in_val ? "val" : "train", s->fill);
    s->fill = 0;
    return LOOM_OK;
}

static loom_status sink_put(shard_sink *s, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int val = s->val_left > 0;
        if (val != s->in_val || s->fill == s->shard_tokens) {
            loom_status st = sink_flush(s);
            if (st) return st;
            s->in_val = val;
        }
        if (s->wide) ((uint32_t *)s->buf)[s->fill++] = ids[i];
        else ((uint16_t *)s->buf)[s->fill++] = (uint16_t)ids[i];
        if (val) s->val_left--, s->val_tokens++;
        else s->train_tokens++;
    }
    return LOOM_OK;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

typedef struct doc {
    const char *text;
    size_t len;
    loom_tokens toks;
} doc;

static void progress(const loom_prep_opts *o, uint64_t done, uint64_t total, double t0) {
    if (!o->progress || total == 0) return;
    double dt = loom_now() - t0, f = (double)done / total, rate = done / 1e6 / (dt > 0 ? dt : 1e-9);
    int w = 30, k = (int)(f * w);
    double eta = f > 0 ? dt * (1 - f) / f : 0;
    fprintf(stderr, "\r[%.*s%*s] %5.1f%% %7.1f MB/s ETA %4.0fs", k, "##############################", w - k, "",
            100 * f, rate, eta);
    if (done == total) fputc('\n', stderr);
}

/* Cuts a JSON-lines buffer into documents (the decoded text field of each line). The
 * decoded strings live in `docs[i].text` (malloc'd, freed by the caller). */
static loom_status jsonl_docs(const loom_prep_opts *o, const char *path, const char *buf, size_t len,
                              doc **docs, size_t *n, uint64_t *skipped);

loom_status loom_prep_jsonl_count(const char *buf, size_t len, const char *field, int skip_bad,
                                  uint64_t *documents, uint64_t *text_bytes, uint64_t *skipped) {
    loom_prep_opts o = {.jsonl_field = field, .skip_bad = skip_bad};
    doc *docs = NULL;
    size_t n = 0;
    *skipped = *documents = *text_bytes = 0;
    loom_status st = jsonl_docs(&o, "input.jsonl", buf, len, &docs, &n, skipped);
    for (size_t i = 0; !st && i < n; i++) *text_bytes += docs[i].len;
    for (size_t i = 0; !st && i < n; i++) free((char *)docs[i].text);
    if (!st) free(docs);
    *documents = n;
    return st;
}

static loom_status jsonl_docs(const loom_prep_opts *o, const char *path, const char *buf, size_t len,
                              doc **docs, size_t *n, uint64_t *skipped) {
    size_t cap = 1024, nd = 0, line = 0;
    doc *d = malloc(cap * sizeof *d);
    if (!d) return loom_error(LOOM_ERR_NOMEM, "out of memory reading %s", path);
    loom_status st = LOOM_OK;
    for (size_t pos = 0; pos < len && !st;) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len, ll = end - pos;
        line++;
        const char *l = buf + pos;
        pos = end + 1;
        while (ll && (l[ll - 1] == '\r' || l[ll - 1] == ' ' || l[ll - 1] == '\t')) ll--;
        if (ll == 0) continue; /* blank lines are allowed */
        loom_json_error je;
        loom_json_doc *jd = loom_json_parse(l, ll, NULL, &je);
        const loom_json *v = NULL;
        char why[256] = "";
        if (!jd) snprintf(why, sizeof why, "broken JSON: %s at column %zu", je.msg, je.col);
        else if (loom_json_root(jd)->type != LOOM_JSON_OBJECT) snprintf(why, sizeof why, "not a JSON object");
        else if (!(v = loom_json_get(loom_json_root(jd), o->jsonl_field)))
            snprintf(why, sizeof why, "no field \"%s\"", o->jsonl_field);
        else if (v->type != LOOM_JSON_STRING) snprintf(why, sizeof why, "field \"%s\" is not a string", o->jsonl_field);
        if (why[0]) {
            if (!o->skip_bad)
                st = loom_error(LOOM_ERR_FORMAT, "%s:%zu: %s (use --skip-bad to count and skip such lines)", path,
                                line, why);
            else (*skipped)++;
        } else {
            if (nd == cap) {
                doc *nd2 = realloc(d, (cap *= 2) * sizeof *d);
                if (!nd2) { st = loom_error(LOOM_ERR_NOMEM, "out of memory reading %s", path); }
                else d = nd2;
            }
            char *t = st ? NULL : malloc(v->len + 1);
            if (!st && !t) st = loom_error(LOOM_ERR_NOMEM, "out of memory reading %s", path);
            if (!st) {
                memcpy(t, v->str, v->len);
                t[v->len] = 0;
                d[nd++] = (doc){t, v->len, {0}};
            }
        }
        loom_json_free(jd);
    }
    if (st) {
        for (size_t i = 0; i < nd; i++) free((char *)d[i].text);
        free(d);
        return st;
    }
    *docs = d;
    *n = nd;
    return LOOM_OK;
}

/* Appends one id to a token array (1 on allocation failure). */
static int tokens_push(loom_tokens *t, uint32_t id) {
    if (t->len == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 4096;
        uint32_t *p = realloc(t->ids, nc * sizeof *p);
        if (!p) return 1;
        t->ids = p;
        t->cap = nc;
    }
    t->ids[t->len++] = id;
    return 0;
}

/* Writes dir/manifest.json (rank 0). */
static loom_status write_manifest(const loom_prep_opts *o, const char *dir, const loom_prep_stats *stats,
                                  const shard_sink *sink) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    pthread_mutex_lock(&g_out_lock);
    loom_status st = LOOM_OK;
    FILE *fp = fopen(path, "w");
    if (!fp) st = loom_error(LOOM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    else {
        loom_json_buf tk = {0};
        loom_json_escape(&tk, o->tokenizer, strlen(o->tokenizer));
        fprintf(fp,
                "{\n  \"format\": \"llm.c shards: 256 x int32 header {%d, %d, count}, %s tokens\",\n"
                "  \"tokenizer\": %s,\n  \"documents\": %llu,\n  \"skipped_lines\": %llu,\n  \"bytes\": %llu,\n"
                "  \"train_tokens\": %llu,\n  \"val_tokens\": %llu,\n  \"shard_tokens\": %ld,\n  \"shards\": [%s\n  ]\n}\n",
                sink->wide ? LOOM_SHARD32_MAGIC : LOOM_SHARD_MAGIC, sink->wide ? LOOM_SHARD32_VERSION : LOOM_SHARD_VERSION,
                sink->wide ? "uint32" : "uint16", tk.data ? tk.data : "\"\"", (unsigned long long)stats->documents,
                (unsigned long long)stats->skipped, (unsigned long long)stats->bytes,
                (unsigned long long)sink->train_tokens, (unsigned long long)sink->val_tokens, o->shard_tokens,
                sink->manifest_shards.data ? sink->manifest_shards.data : "");
        loom_json_buf_free(&tk);
        if (fclose(fp) != 0) st = loom_error(LOOM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (!st) st = sync_path(path);
    }
    pthread_mutex_unlock(&g_out_lock);
    return st;
}

/* Tokenizes the inputs; rank 0 writes the shards and the manifest into dir. */
static loom_status prep_run(const loom_prep_opts *o, const loom_dist *dist, const char *dir, double t0,
                            loom_prep_stats *stats) {
    const int rank = dist->rank, R = dist->size;
    loom_tokenizer *tok;
    loom_status st = loom_tokenizer_load(o->tokenizer, &tok);
    if (st) return st;
    const uint32_t vocab = loom_tokenizer_vocab_size(tok);
    const int threads = o->threads > 0 ? o->threads : omp_get_max_threads();
    shard_sink sink = {.dir = dir, .shard_tokens = o->shard_tokens, .val_left = o->val_tokens,
                       .in_val = o->val_tokens > 0, .wide = vocab > 65536};
    sink.buf = malloc((sink.wide ? sizeof(uint32_t) : sizeof(uint16_t)) * (size_t)o->shard_tokens);
    if (!sink.buf) {
        loom_tokenizer_free(tok);
        return loom_error(LOOM_ERR_NOMEM, "--shard-tokens: out of memory for a shard of %ld tokens", o->shard_tokens);
    }
    uint64_t total_bytes = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        struct stat sb;
        if (strcmp(o->inputs[i], "-") && stat(o->inputs[i], &sb) == 0) total_bytes += (uint64_t)sb.st_size;
    }
    const uint32_t eot = loom_tokenizer_eot(tok);
    for (int i = 0; i < o->n_inputs && !st; i++) {
        const char *path = o->inputs[i];
        if (R > 1 && !strcmp(path, "-")) {
            st = loom_error(LOOM_ERR_ARG, "standard input (-) works with one process only: give files under mpirun");
            break;
        }
        size_t len = 0;
        char *buf = loom_read_file(path, &len);
        if (!buf) {
            st = loom_error(LOOM_ERR_IO, "%s: cannot read: %s", strcmp(path, "-") ? path : "standard input", strerror(errno));
            break;
        }
        doc *docs = NULL;
        size_t nd = 0;
        int jsonl = ends_with(path, ".jsonl") || ends_with(path, ".jsonl.txt");
        if (jsonl) {
            st = jsonl_docs(o, path, buf, len, &docs, &nd, &stats->skipped);
        } else {
            docs = malloc(sizeof *docs);
            if (docs) docs[nd++] = (doc){buf, len, {0}};
            else st = loom_error(LOOM_ERR_NOMEM, "out of memory");
        }
        /* This rank's share as one stream of ids (<|endoftext|> before each document):
         * one document is cut at safe points into a piece per rank, many documents are
         * split into a contiguous range per rank. Rank 0 gathers the streams in rank
         * order, so the shards are the same for any number of ranks and threads. */
        loom_tokens mine = {0};
        int failed = st != LOOM_OK;
        if (!failed && nd == 1) {
            const char *text = docs[0].text;
            const size_t n = docs[0].len;
            size_t a = 0, b = n;
            for (int k = 1; k <= R; k++) {
                size_t c = k == R ? n : loom_tokenizer_safe_cut(text, n, n / R * k);
                if (c < a) c = a;
                if (k == rank) a = c;
                if (k == rank + 1) { b = c; break; }
            }
            if (rank == 0) failed = tokens_push(&mine, eot);
            failed = failed || loom_tokenizer_encode_parallel(tok, text + a, b - a, LOOM_TOKENIZER_SPECIAL_ORDINARY,
                                                              threads, &mine) != LOOM_OK;
        } else if (!failed) {
            const size_t d0 = nd * (size_t)rank / R, d1 = nd * (size_t)(rank + 1) / R;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) reduction(| : failed)
            for (size_t k = d0; k < d1; k++)
                failed |= loom_tokenizer_encode(tok, docs[k].text, docs[k].len, LOOM_TOKENIZER_SPECIAL_ORDINARY,
                                                &docs[k].toks) != LOOM_OK;
            for (size_t k = d0; k < d1 && !failed; k++) {
                failed = tokens_push(&mine, eot);
                for (size_t i = 0; i < docs[k].toks.len && !failed; i++) failed = tokens_push(&mine, docs[k].toks.ids[i]);
            }
        }
        if (loom_dist_any(&dist->world, failed) && !st)
            st = loom_error(LOOM_ERR_NOMEM, "%s: tokenizing failed on some rank (out of memory?)", path);
        uint32_t *all = NULL;
        size_t total = 0;
        if (!st) st = loom_dist_gather_u32(&dist->world, mine.ids, mine.len, &all, &total);
        if (!st && rank == 0) st = sink_put(&sink, all, total);
        free(all);
        loom_tokens_free(&mine);
        for (size_t k = 0; k < nd; k++) {
            loom_tokens_free(&docs[k].toks);
            if (jsonl) free((char *)docs[k].text);
        }
        stats->documents += nd;
        stats->bytes += len;
        free(docs);
        free(buf);
        if (rank == 0) progress(o, stats->bytes, total_bytes > stats->bytes ? total_bytes : stats->bytes, t0);
    }
    if (!st && rank == 0) st = sink_flush(&sink);
    if (!st && rank == 0) st = write_manifest(o, dir, stats, &sink);
    stats->train_tokens = sink.train_tokens;
    stats->val_tokens = sink.val_tokens;
    stats->train_shards = sink.train_shards;
    stats->val_shards = sink.val_shards;
    loom_json_buf_free(&sink.manifest_shards);
    free(sink.buf);
    loom_tokenizer_free(tok);
    return st;
}

/* Before any other collective: every rank was given the same inputs (names and sizes)
 * and flags, or the gathers would pair different files. */
static loom_status prep_agree(const loom_prep_opts *o, const loom_dist *dist) {
    if (dist->size < 2) return LOOM_OK;
    loom_agree *a = calloc(1, sizeof *a);
    if (!a) return loom_error(LOOM_ERR_NOMEM, "out of memory comparing the ranks' flags");
    uint32_t names = 0;
    unsigned long long bytes = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        struct stat sb;
        names = loom_crc32c(names, o->inputs[i], strlen(o->inputs[i]) + 1);
        if (stat(o->inputs[i], &sb) == 0) bytes += (unsigned long long)sb.st_size;
    }
    loom_agree_put(a, "loom version", "%s", LOOM_VERSION);
    loom_agree_put(a, "the input list", "%d file(s), %llu bytes, names crc %08x", o->n_inputs, bytes, (unsigned)names);
    loom_agree_put(a, "--out", "%s", o->out_dir);
    loom_agree_put(a, "--tokenizer", "%s", o->tokenizer);
    loom_agree_put(a, "--shard-tokens", "%ld", o->shard_tokens);
    loom_agree_put(a, "--val-tokens", "%ld", o->val_tokens);
    loom_agree_put(a, "--jsonl-field", "%s", o->jsonl_field);
    loom_agree_put(a, "--skip-bad", "%d", o->skip_bad);
    loom_agree_put(a, "--overwrite", "%d", o->overwrite);
    loom_status st = loom_dist_agree(&dist->world, a, "inputs and flags");
    free(a);
    return st;
}

loom_status loom_prep(const loom_prep_opts *o, const loom_dist *dist, loom_prep_stats *stats) {
    memset(stats, 0, sizeof *stats);
    const loom_dist one = loom_dist_single();
    if (!dist) dist = &one;
    const double t0 = loom_now();
    if (o->n_inputs < 1) return loom_error(LOOM_ERR_ARG, "prep: no input given");
    if (o->shard_tokens < 1) return loom_error(LOOM_ERR_ARG, "--shard-tokens: must be at least 1");
    if (o->val_tokens < 0) return loom_error(LOOM_ERR_ARG, "--val-tokens: must be >= 0");
    if (!o->out_dir || !o->out_dir[0]) return loom_error(LOOM_ERR_ARG, "--out: no directory given");
    loom_status ag = prep_agree(o, dist);
    if (ag) return ag;
    signals_start(o);
    char dst[sizeof g_tmp] = ""; /* only rank 0 touches the file system */
    loom_status st = dist->rank == 0 ? out_begin(o, dst, sizeof dst) : LOOM_OK;
    if (loom_dist_any(&dist->world, st != LOOM_OK) && !st)
        st = loom_error(LOOM_ERR_IO, "--out: rank 0 could not set up %s", o->out_dir);
    if (!st) st = prep_run(o, dist, g_tmp, t0, stats);
    if (!st && dist->rank == 0) st = out_commit(o, dst);
    if (st) out_abandon();
    signals_stop();
    stats->seconds = loom_now() - t0;
    return st;
}
