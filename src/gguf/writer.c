/*
 * writer.c — streaming GGUF v3 writer.
 *
 * The writer keeps only metadata in memory (keys with their raw value bytes,
 * tensor infos); tensor data is streamed through a 1 MiB buffer straight to a
 * temporary file "PATH.tmp-PID-N" in the destination's directory. The header
 * is written at the first data write (or at finish): from then on metadata is
 * frozen. Each tensor's data is followed by zero padding up to the alignment
 * (the last one too, as ggml does), so tensor offsets are the running sum of
 * padded sizes. finish() checks every byte was delivered, fsyncs and renames
 * onto PATH; any I/O failure or abort() unlinks the temporary file, so no
 * partial file ever appears under PATH.
 *
 * Byte-exact copies: sq_gguf_writer_copy_kvs() takes each value's raw bytes
 * from the reader, and the layout rule above is ggml's, so reading a
 * ggml-written file and writing it back reproduces it byte for byte.
 *
 * Before the header is written every tensor's declared nbytes is checked
 * against the size rule the reader applies (SmarterQuant-aware, from the keys
 * set on this writer), so a file this writer finishes always reads back.
 */
#include "reader_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WBUF_BYTES (1u << 20)

typedef struct wkv {
    char *key;
    size_t key_len;
    uint32_t type;
    uint8_t *raw; /* value bytes exactly as stored in the file */
    size_t raw_len;
} wkv;

typedef struct wtensor {
    char *name;
    int n_dims;
    int64_t ne[SQ_GGUF_MAX_DIMS];
    int type;
    uint64_t nbytes, offset;
} wtensor;

struct sq_gguf_writer {
    char *path, *tmp;
    int fd;              /* temporary file, -1 once closed */
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    uint64_t alignment;
    bool header_done;
    bool failed;         /* sticky: an I/O or data error happened, tmp is gone */
    size_t cur;          /* tensor receiving data */
    uint64_t cur_written;
    uint8_t *buf;
    size_t buf_len;
};

/* ---- live temporary files (for signal handlers) ----
 * Every open writer's temporary path is listed here from open until it is
 * renamed or removed, so that a tool's SIGINT/SIGTERM handler can remove them
 * with sq_gguf_writer_unlink_temps() (only unlink(), async-signal-safe). The
 * slots hold pointers to w->tmp, which the writer owns; a writer is listed
 * before its path can be freed and unlisted before it is. When all slots are
 * taken a writer is simply not listed (it still cleans up on errors). */
#define N_TEMP_SLOTS 64
static char *volatile temp_slots[N_TEMP_SLOTS];

static void temp_list(char *tmp)
{
    for (int i = 0; i < N_TEMP_SLOTS; i++) {
        char *expected = NULL;
        if (__atomic_compare_exchange_n(&temp_slots[i], &expected, tmp, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;
    }
}

static void temp_unlist(char *tmp)
{
    for (int i = 0; i < N_TEMP_SLOTS; i++) {
        char *expected = tmp;
        if (__atomic_compare_exchange_n(&temp_slots[i], &expected, NULL, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return;
    }
}

/* Another writer's temporary file (perplexity's base file), listed and
 * unlisted by its owner through the same slots. */
void sq_gguf_temp_list(char *path)
{
    if (path) temp_list(path);
}

void sq_gguf_temp_unlist(char *path)
{
    if (path) temp_unlist(path);
}

void sq_gguf_writer_unlink_temps(void)
{
    for (int i = 0; i < N_TEMP_SLOTS; i++) {
        char *t = __atomic_load_n(&temp_slots[i], __ATOMIC_SEQ_CST);
        if (t) unlink(t);
    }
}

/* Whether a and b name the same existing file (same device and inode, so
 * "./x", "dir/../x", symbolic and hard links to x all count as x). */
bool sq_gguf_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* ---- low-level output ---- */

/* Marks the writer failed and removes the temporary file. */
static void discard(sq_gguf_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->tmp && !w->failed) {
        unlink(w->tmp);
        temp_unlist(w->tmp);
    }
    w->failed = true;
}

static sq_status write_all(sq_gguf_writer *w, const void *data, size_t n, sq_error *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        const ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            discard(w);
            return sq_error_set(err, SQ_EIO, "%s: write failed: %s", w->path, strerror(e));
        }
        p += k;
        n -= (size_t)k;
    }
    return SQ_OK;
}

static sq_status flush_buf(sq_gguf_writer *w, sq_error *err)
{
    if (w->buf_len == 0) return SQ_OK;
    sq_status st = write_all(w, w->buf, w->buf_len, err);
    w->buf_len = 0;
    return st;
}

/* Appends bytes through the buffer; large chunks bypass it. */
static sq_status out(sq_gguf_writer *w, const void *data, size_t n, sq_error *err)
{
    if (n >= WBUF_BYTES) {
        sq_status st = flush_buf(w, err);
        return st ? st : write_all(w, data, n, err);
    }
    if (w->buf_len + n > WBUF_BYTES) {
        sq_status st = flush_buf(w, err);
        if (st) return st;
    }
    memcpy(w->buf + w->buf_len, data, n);
    w->buf_len += n;
    return SQ_OK;
}

static sq_status out_u32(sq_gguf_writer *w, uint32_t v, sq_error *err) { return out(w, &v, 4, err); }
static sq_status out_u64(sq_gguf_writer *w, uint64_t v, sq_error *err) { return out(w, &v, 8, err); }

static sq_status out_zeros(sq_gguf_writer *w, uint64_t n, sq_error *err)
{
    static const uint8_t zeros[256];
    while (n > 0) {
        const size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        sq_status st = out(w, zeros, k, err);
        if (st) return st;
        n -= k;
    }
    return SQ_OK;
}

/* ---- open / abort ---- */

sq_status sq_gguf_writer_open(const char *path, sq_gguf_writer **outw, sq_error *err)
{
    static unsigned counter;
    if (!path || !outw) return sq_error_set(err, SQ_EINVAL, "sq_gguf_writer_open: path or out is NULL");
    *outw = NULL;
    /* The temporary file is renamed onto path at the end: that would replace a
     * device (as root, /dev/null), a pipe, or fail on a folder after all the
     * work. Such a path is refused now. */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return sq_error_set(err, SQ_EINVAL, "%s: exists and is not a regular file (%s); the output must be a file",
                            path, S_ISDIR(sb.st_mode) ? "a folder" : "a device, pipe or socket");
    sq_gguf_writer *w = calloc(1, sizeof *w);
    const size_t plen = strlen(path);
    if (w) {
        w->fd = -1;
        w->alignment = SQ_GGUF_DEFAULT_ALIGNMENT;
        w->path = strdup(path);
        w->tmp = malloc(plen + 48);
        w->buf = malloc(WBUF_BYTES);
    }
    if (!w || !w->path || !w->tmp || !w->buf) {
        if (w) {
            free(w->path);
            free(w->tmp);
            free(w->buf);
            free(w);
        }
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory opening the writer", path);
    }
    for (int attempt = 0; attempt < 100 && w->fd < 0; attempt++) {
        snprintf(w->tmp, plen + 48, "%s.tmp-%ld-%u", path, (long)getpid(),
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        /* listed before it exists, so a signal arriving just after open() finds it */
        temp_list(w->tmp);
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd < 0) {
            const int e = errno;
            temp_unlist(w->tmp);
            errno = e;
            if (e != EEXIST) break;
        }
    }
    if (w->fd < 0) {
        const int e = errno;
        sq_status st = sq_error_set(err, SQ_EIO, "%s: cannot create temporary file %s: %s", path, w->tmp,
                                    strerror(e));
        free(w->path);
        free(w->tmp);
        free(w->buf);
        free(w);
        return st;
    }
    *outw = w;
    return SQ_OK;
}

static void free_writer(sq_gguf_writer *w)
{
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].raw);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    free(w->buf);
    free(w->path);
    free(w->tmp);
    free(w);
}

void sq_gguf_writer_abort(sq_gguf_writer *w)
{
    if (!w) return;
    discard(w);
    free_writer(w);
}

/* ---- metadata ---- */

/* Common checks for any call that changes metadata. */
static sq_status can_edit(sq_gguf_writer *w, const char *key, sq_error *err)
{
    if (!w) return sq_error_set(err, SQ_EINVAL, "gguf writer: NULL writer");
    if (w->failed) return sq_error_set(err, SQ_EIO, "%s: the writer already failed", w->path);
    if (w->header_done)
        return sq_error_set(err, SQ_EINVAL, "%s: key '%s': metadata cannot change after tensor data was written",
                            w->path, key ? key : "(null)");
    if (!key) return sq_error_set(err, SQ_EINVAL, "%s: NULL key", w->path);
    const size_t n = strlen(key);
    if (n == 0 || n > SQ__GGUF_MAX_KEY)
        return sq_error_set(err, SQ_EINVAL, "%s: key of %zu bytes (must be 1..%u)", w->path, n, SQ__GGUF_MAX_KEY);
    return SQ_OK;
}

static int64_t wfind(const sq_gguf_writer *w, const char *key, size_t n)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kvs[i].key_len == n && memcmp(w->kvs[i].key, key, n) == 0) return (int64_t)i;
    return -1;
}

/* Sets key to (type, raw bytes): replaces in place or appends. Takes
 * ownership of raw (freed on failure). */
static sq_status set_raw(sq_gguf_writer *w, const char *key, uint32_t type, uint8_t *raw, size_t raw_len,
                         sq_error *err)
{
    sq_status st = can_edit(w, key, err);
    if (st) {
        free(raw);
        return st;
    }
    const size_t n = strlen(key);
    static const char align_key[] = "general.alignment";
    if (n == sizeof align_key - 1 && memcmp(key, align_key, n) == 0) {
        uint32_t a = 0;
        if (type == SQ_GGUF_UINT32) memcpy(&a, raw, 4);
        if (type != SQ_GGUF_UINT32 || !sq__gguf_pow2(a)) {
            free(raw);
            return sq_error_set(err, SQ_EINVAL, "%s: general.alignment must be a u32 nonzero power of two",
                                w->path);
        }
        w->alignment = a;
    }
    const int64_t i = wfind(w, key, n);
    if (i >= 0) {
        free(w->kvs[i].raw);
        w->kvs[i].type = type;
        w->kvs[i].raw = raw;
        w->kvs[i].raw_len = raw_len;
        return SQ_OK;
    }
    if (w->n_kv == w->cap_kv) {
        const size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            free(raw);
            return sq_error_set(err, SQ_ENOMEM, "%s: out of memory adding key '%s'", w->path, key);
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *kc = strdup(key);
    if (!kc) {
        free(raw);
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory adding key '%s'", w->path, key);
    }
    w->kvs[w->n_kv++] = (wkv){kc, n, type, raw, raw_len};
    return SQ_OK;
}

/* Copies n bytes into a fresh allocation for set_raw. */
static sq_status set_bytes(sq_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n, sq_error *err)
{
    uint8_t *raw = malloc(n ? n : 1);
    if (!raw) return sq_error_set(err, SQ_ENOMEM, "out of memory setting key '%s'", key ? key : "(null)");
    if (n) memcpy(raw, v, n);
    return set_raw(w, key, type, raw, n, err);
}

sq_status sq_gguf_writer_set_u32(sq_gguf_writer *w, const char *key, uint32_t v, sq_error *err)
{
    return set_bytes(w, key, SQ_GGUF_UINT32, &v, 4, err);
}

sq_status sq_gguf_writer_set_u16(sq_gguf_writer *w, const char *key, uint16_t v, sq_error *err)
{
    return set_bytes(w, key, SQ_GGUF_UINT16, &v, 2, err);
}

sq_status sq_gguf_writer_set_i32(sq_gguf_writer *w, const char *key, int32_t v, sq_error *err)
{
    return set_bytes(w, key, SQ_GGUF_INT32, &v, 4, err);
}

sq_status sq_gguf_writer_set_f32(sq_gguf_writer *w, const char *key, float v, sq_error *err)
{
    return set_bytes(w, key, SQ_GGUF_FLOAT32, &v, 4, err);
}

sq_status sq_gguf_writer_set_bool(sq_gguf_writer *w, const char *key, bool v, sq_error *err)
{
    const uint8_t b = v ? 1 : 0;
    return set_bytes(w, key, SQ_GGUF_BOOL, &b, 1, err);
}

sq_status sq_gguf_writer_set_str(sq_gguf_writer *w, const char *key, const char *v, sq_error *err)
{
    if (!v) return sq_error_set(err, SQ_EINVAL, "key '%s': NULL string value", key ? key : "(null)");
    const uint64_t n = strlen(v);
    uint8_t *raw = malloc(8 + n);
    if (!raw) return sq_error_set(err, SQ_ENOMEM, "out of memory setting key '%s'", key ? key : "(null)");
    memcpy(raw, &n, 8);
    memcpy(raw + 8, v, n);
    return set_raw(w, key, SQ_GGUF_STRING, raw, 8 + n, err);
}

sq_status sq_gguf_writer_set_arr(sq_gguf_writer *w, const char *key, sq_gguf_type elem_type, const void *data,
                                 uint64_t n, sq_error *err)
{
    const size_t es = sq__gguf_fixed_size(elem_type);
    if (!es)
        return sq_error_set(err, SQ_EINVAL, "key '%s': sq_gguf_writer_set_arr needs a fixed-size element type, not %s",
                            key ? key : "(null)", sq_gguf_type_name(elem_type));
    if (n && !data) return sq_error_set(err, SQ_EINVAL, "key '%s': NULL array data", key ? key : "(null)");
    if (n > (SIZE_MAX - 12) / es)
        return sq_error_set(err, SQ_EINVAL, "key '%s': array of %llu elements is too large", key ? key : "(null)",
                            (unsigned long long)n);
    uint8_t *raw = malloc(12 + n * es);
    if (!raw) return sq_error_set(err, SQ_ENOMEM, "out of memory setting key '%s'", key ? key : "(null)");
    const uint32_t et = elem_type;
    memcpy(raw, &et, 4);
    memcpy(raw + 4, &n, 8);
    if (n) memcpy(raw + 12, data, n * es);
    return set_raw(w, key, SQ_GGUF_ARRAY, raw, 12 + n * es, err);
}

sq_status sq_gguf_writer_set_arr_str(sq_gguf_writer *w, const char *key, const char *const *v, uint64_t n,
                                     sq_error *err)
{
    if (n && !v) return sq_error_set(err, SQ_EINVAL, "key '%s': NULL string array", key ? key : "(null)");
    size_t total = 12;
    for (uint64_t j = 0; j < n; j++) {
        if (!v[j])
            return sq_error_set(err, SQ_EINVAL, "key '%s': string %llu is NULL", key ? key : "(null)",
                                (unsigned long long)j);
        total += 8 + strlen(v[j]);
    }
    uint8_t *raw = malloc(total);
    if (!raw) return sq_error_set(err, SQ_ENOMEM, "out of memory setting key '%s'", key ? key : "(null)");
    const uint32_t et = SQ_GGUF_STRING;
    memcpy(raw, &et, 4);
    memcpy(raw + 4, &n, 8);
    size_t at = 12;
    for (uint64_t j = 0; j < n; j++) {
        const uint64_t len = strlen(v[j]);
        memcpy(raw + at, &len, 8);
        memcpy(raw + at + 8, v[j], len);
        at += 8 + len;
    }
    return set_raw(w, key, SQ_GGUF_ARRAY, raw, total, err);
}

sq_status sq_gguf_writer_copy_kv(sq_gguf_writer *w, const sq_gguf *src, int64_t i, sq_error *err)
{
    if (!src) return sq_error_set(err, SQ_EINVAL, "sq_gguf_writer_copy_kv: NULL source");
    if (i < 0 || i >= src->n_kv)
        return sq_error_set(err, SQ_ERANGE, "%s: key index %lld out of range (%lld keys)", src->label,
                            (long long)i, (long long)src->n_kv);
    const sq__gguf_kv *kv = &src->kvs[i];
    return set_bytes(w, kv->key, kv->type, src->base + kv->val_off, (size_t)kv->val_size, err);
}

sq_status sq_gguf_writer_copy_kvs(sq_gguf_writer *w, const sq_gguf *src, sq_error *err)
{
    if (!src) return sq_error_set(err, SQ_EINVAL, "sq_gguf_writer_copy_kvs: NULL source");
    for (int64_t i = 0; i < src->n_kv; i++) {
        sq_status st = sq_gguf_writer_copy_kv(w, src, i, err);
        if (st) return st;
    }
    return SQ_OK;
}

sq_status sq_gguf_writer_remove_key(sq_gguf_writer *w, const char *key, sq_error *err)
{
    sq_status st = can_edit(w, key, err);
    if (st) return st;
    const int64_t i = wfind(w, key, strlen(key));
    if (i < 0) return sq_error_set(err, SQ_ENOTFOUND, "%s: key '%s' not present", w->path, key);
    free(w->kvs[i].key);
    free(w->kvs[i].raw);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - (size_t)i - 1) * sizeof *w->kvs);
    w->n_kv--;
    if (strcmp(key, "general.alignment") == 0) w->alignment = SQ_GGUF_DEFAULT_ALIGNMENT;
    return SQ_OK;
}

/* ---- tensors ---- */

sq_status sq_gguf_writer_add_tensor(sq_gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type,
                                    uint64_t nbytes, sq_error *err)
{
    if (!w) return sq_error_set(err, SQ_EINVAL, "gguf writer: NULL writer");
    if (w->failed) return sq_error_set(err, SQ_EIO, "%s: the writer already failed", w->path);
    if (!name || !ne) return sq_error_set(err, SQ_EINVAL, "%s: add_tensor: NULL name or shape", w->path);
    if (w->header_done)
        return sq_error_set(err, SQ_EINVAL, "%s: tensor '%s': tensors cannot be added after data was written",
                            w->path, name);
    const size_t len = strlen(name);
    if (len == 0 || len >= SQ__GGUF_LLAMA_MAX_NAME)
        return sq_error_set(err, SQ_EINVAL, "%s: tensor name '%s' has %zu bytes (llama.cpp accepts 1..%d)", w->path,
                            name, len, SQ__GGUF_LLAMA_MAX_NAME - 1);
    if (n_dims < 1 || n_dims > SQ_GGUF_MAX_DIMS)
        return sq_error_set(err, SQ_EINVAL, "%s: tensor '%s': n_dims %d outside 1..%d", w->path, name, n_dims,
                            SQ_GGUF_MAX_DIMS);
    if (!sq_type_info_get(type))
        return sq_error_set(err, SQ_EINVAL, "%s: tensor '%s': unknown tensor type %d", w->path, name, type);
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || __builtin_mul_overflow(nel, ne[d], &nel))
            return sq_error_set(err, SQ_EINVAL, "%s: tensor '%s': bad dimension ne[%d] = %lld", w->path, name, d,
                                (long long)ne[d]);
    }
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return sq_error_set(err, SQ_EINVAL, "%s: duplicate tensor name '%s'", w->path, name);
    if (w->n_t == w->cap_t) {
        const size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->ts, cap * sizeof *t);
        if (!t) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory adding tensor '%s'", w->path, name);
        w->ts = t;
        w->cap_t = cap;
    }
    wtensor t = {.name = strdup(name), .n_dims = n_dims, .ne = {1, 1, 1, 1}, .type = type, .nbytes = nbytes};
    if (!t.name) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory adding tensor '%s'", w->path, name);
    for (int d = 0; d < n_dims; d++) t.ne[d] = ne[d];
    w->ts[w->n_t++] = t;
    return SQ_OK;
}

/* The SmarterQuant metadata of tensor t from this writer's keys, checked by
 * the reader's rules (sqmeta.c), the permutation's values included: *on is
 * true with types[] filled when the tensor is SmarterQuant-enabled. */
static sq_status writer_sq_types(sq_gguf_writer *w, const wtensor *t, int types[4], bool *on, sq_error *err)
{
    sq__gguf_val v[3];
    *on = false;
    for (int k = 0; k < 3; k++) {
        char *key = sq__gguf_sq_key(t->name, k);
        if (!key) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", w->path);
        const int64_t i = wfind(w, key, strlen(key));
        free(key);
        v[k] = i < 0 ? (sq__gguf_val){0}
                     : (sq__gguf_val){true, w->kvs[i].type, w->kvs[i].raw, w->kvs[i].raw_len, 0};
    }
    sq__gguf_sqscan s;
    uint64_t at;
    char why[400];
    if (sq__gguf_sqmeta_scan(t->name, t->ne[0], v, &s, &at, why, sizeof why) != SQ_OK)
        return sq_error_set(err, SQ_EINVAL, "%s: %s", w->path, why);
    if (s.n_perm > 0) {
        int32_t *perm = malloc((size_t)s.n_perm * sizeof *perm);
        if (!perm) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", w->path);
        sq_status st = sq__gguf_sqmeta_perm(t->name, &s, perm, why, sizeof why);
        free(perm);
        if (st != SQ_OK) return sq_error_set(err, SQ_EINVAL, "%s: %s", w->path, why);
    }
    *on = s.on;
    memcpy(types, s.types, sizeof s.types);
    return SQ_OK;
}

/* ---- SmarterQuant metadata ---- */

sq_status sq_gguf_writer_set_sqmeta(sq_gguf_writer *w, const char *name, const sq_gguf_sqmeta *m, sq_error *err)
{
    if (!w || !name || !m) return sq_error_set(err, SQ_EINVAL, "sq_gguf_writer_set_sqmeta: NULL argument");
    if (m->perm) {
        sq_status st = sq_perm_validate(m->perm, m->n_cols, m->n_cols, err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "%s: tensor '%s'", w->path, name);
            return st;
        }
    }
    const size_t plen = m->perm ? sq_format_int_array_json(m->perm, m->n_cols, NULL, 0) : 2;
    char types[64];
    char *perm = malloc(plen + 1), *key[3];
    for (int k = 0; k < 3; k++) key[k] = sq__gguf_sq_key(name, k);
    sq_status st = SQ_OK;
    if (!perm || !key[0] || !key[1] || !key[2]) st = sq_error_set(err, SQ_ENOMEM, "%s: out of memory", w->path);
    if (st == SQ_OK) {
        sq_format_int_array_json(m->perm, m->perm ? m->n_cols : 0, perm, plen + 1);
        sq_format_types_json(m->types, types, sizeof types);
        st = sq_gguf_writer_set_bool(w, key[SQ__SQ_ENABLED], true, err);
    }
    if (st == SQ_OK) st = sq_gguf_writer_set_str(w, key[SQ__SQ_PERM], perm, err);
    if (st == SQ_OK) st = sq_gguf_writer_set_str(w, key[SQ__SQ_TYPES], types, err);
    for (int k = 0; k < 3; k++) free(key[k]);
    free(perm);
    return st;
}

sq_status sq_gguf_writer_remove_sqmeta(sq_gguf_writer *w, const char *name, sq_error *err)
{
    if (!w || !name) return sq_error_set(err, SQ_EINVAL, "sq_gguf_writer_remove_sqmeta: NULL argument");
    sq_status st = SQ_OK;
    for (int k = 0; k < 3 && st == SQ_OK; k++) {
        char *key = sq__gguf_sq_key(name, k);
        if (!key) return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", w->path);
        if (wfind(w, key, strlen(key)) >= 0) st = sq_gguf_writer_remove_key(w, key, err);
        free(key);
    }
    return st;
}

bool sq_gguf_writer_has_sqmeta(const sq_gguf_writer *w, const char *name)
{
    char *key = w && name ? sq__gguf_sq_key(name, SQ__SQ_TYPES) : NULL;
    const bool has = key && wfind(w, key, strlen(key)) >= 0;
    free(key);
    return has;
}

/* Validates sizes, assigns offsets and writes header, keys, infos, padding. */
static sq_status write_header(sq_gguf_writer *w, sq_error *err)
{
    sq_status st;
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->ts[i];
        int types[4];
        bool on;
        if ((st = writer_sq_types(w, t, types, &on, err))) return st;
        uint64_t want;
        char why[300];
        if (!sq__gguf_tensor_size(t->n_dims, t->ne, t->type, on ? types : NULL, &want, why, sizeof why))
            return sq_error_set(err, SQ_EINVAL, "%s: tensor '%s': %s", w->path, t->name, why);
        if (want != t->nbytes)
            return sq_error_set(err, SQ_EINVAL,
                                "%s: tensor '%s': declared %llu bytes but its shape and type%s need %llu", w->path,
                                t->name, (unsigned long long)t->nbytes, on ? " (smarterquant block_types)" : "",
                                (unsigned long long)want);
        t->offset = off;
        off = sq__gguf_align(off + t->nbytes, w->alignment);
    }
    w->header_done = true;
    if ((st = out_u32(w, SQ__GGUF_MAGIC, err)) || (st = out_u32(w, SQ__GGUF_VERSION, err)) ||
        (st = out_u64(w, w->n_t, err)) || (st = out_u64(w, w->n_kv, err)))
        return st;
    uint64_t pos = SQ__GGUF_HEADER_BYTES;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kvs[i];
        if ((st = out_u64(w, kv->key_len, err)) || (st = out(w, kv->key, kv->key_len, err)) ||
            (st = out_u32(w, kv->type, err)) || (st = out(w, kv->raw, kv->raw_len, err)))
            return st;
        pos += 8 + kv->key_len + 4 + kv->raw_len;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->ts[i];
        const uint64_t len = strlen(t->name);
        if ((st = out_u64(w, len, err)) || (st = out(w, t->name, len, err)) ||
            (st = out_u32(w, (uint32_t)t->n_dims, err)))
            return st;
        for (int d = 0; d < t->n_dims; d++)
            if ((st = out_u64(w, (uint64_t)t->ne[d], err))) return st;
        if ((st = out_u32(w, (uint32_t)t->type, err)) || (st = out_u64(w, t->offset, err))) return st;
        pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    w->cur = 0;
    w->cur_written = 0;
    return out_zeros(w, sq__gguf_align(pos, w->alignment) - pos, err);
}

/* Moves past finished tensors (padding each), including empty ones. */
static sq_status advance(sq_gguf_writer *w, sq_error *err)
{
    while (w->cur < w->n_t && w->cur_written == w->ts[w->cur].nbytes) {
        const uint64_t n = w->ts[w->cur].nbytes;
        sq_status st = out_zeros(w, sq__gguf_align(n, w->alignment) - n, err);
        if (st) return st;
        w->cur++;
        w->cur_written = 0;
    }
    return SQ_OK;
}

sq_status sq_gguf_writer_write(sq_gguf_writer *w, const void *data, size_t nbytes, sq_error *err)
{
    if (!w) return sq_error_set(err, SQ_EINVAL, "gguf writer: NULL writer");
    if (w->failed) return sq_error_set(err, SQ_EIO, "%s: the writer already failed", w->path);
    sq_status st;
    if (!w->header_done) {
        if ((st = write_header(w, err)) || (st = advance(w, err))) {
            discard(w);
            return st;
        }
    }
    const uint8_t *p = data;
    while (nbytes > 0) {
        if (w->cur >= w->n_t) {
            discard(w);
            return sq_error_set(err, SQ_EINVAL, "%s: %zu bytes written beyond the last tensor's data", w->path,
                                nbytes);
        }
        const wtensor *t = &w->ts[w->cur];
        const uint64_t room = t->nbytes - w->cur_written;
        const size_t k = nbytes < room ? nbytes : (size_t)room;
        if ((st = out(w, p, k, err))) return st;
        w->cur_written += k;
        p += k;
        nbytes -= k;
        if ((st = advance(w, err))) return st;
    }
    return SQ_OK;
}

/* Everything finish does before the rename: the header when no data was
 * written, a check that every tensor got all its bytes, flush, fsync, close.
 * On failure the temporary file is removed (the writer is not freed). */
static sq_status complete(sq_gguf_writer *w, sq_error *err)
{
    sq_status st = SQ_OK;
    if (w->failed) {
        st = sq_error_set(err, SQ_EIO, "%s: the writer already failed; nothing was written", w->path);
        goto fail;
    }
    if (!w->header_done && ((st = write_header(w, err)) || (st = advance(w, err)))) goto fail;
    if (w->cur < w->n_t) {
        const wtensor *t = &w->ts[w->cur];
        st = sq_error_set(err, SQ_EINVAL, "%s: tensor '%s' got %llu of its %llu bytes of data (%zu of %zu tensors complete)",
                          w->path, t->name, (unsigned long long)w->cur_written, (unsigned long long)t->nbytes,
                          w->cur, w->n_t);
        goto fail;
    }
    if ((st = flush_buf(w, err))) goto fail;
    if (fsync(w->fd) != 0) {
        st = sq_error_set(err, SQ_EIO, "%s: fsync failed: %s", w->path, strerror(errno));
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        st = sq_error_set(err, SQ_EIO, "%s: close failed: %s", w->path, strerror(errno));
        goto fail;
    }
    w->fd = -1;
    return SQ_OK;
fail:
    discard(w);
    return st;
}

/* Moves a completed temporary file onto its final name. */
static sq_status commit(sq_gguf_writer *w, sq_error *err)
{
    if (rename(w->tmp, w->path) != 0) {
        sq_status st = sq_error_set(err, SQ_EIO, "%s: cannot rename %s onto it: %s", w->path, w->tmp, strerror(errno));
        discard(w);
        return st;
    }
    temp_unlist(w->tmp);
    return SQ_OK;
}

sq_status sq_gguf_writer_finish(sq_gguf_writer *w, sq_error *err)
{
    if (!w) return sq_error_set(err, SQ_EINVAL, "gguf writer: NULL writer");
    return sq_gguf_writer_finish_all(&w, 1, err);
}

sq_status sq_gguf_writer_finish_all(sq_gguf_writer **ws, int n, sq_error *err)
{
    sq_status st = SQ_OK;
    for (int i = 0; i < n && st == SQ_OK; i++)
        if (ws[i]) st = complete(ws[i], err);
    int renamed = 0;
    for (; st == SQ_OK && renamed < n; renamed++)
        if (ws[renamed]) st = commit(ws[renamed], err);
    if (st != SQ_OK) {
        /* all or nothing: the shards already renamed go too */
        for (int i = 0; i < renamed - 1; i++)
            if (ws[i]) unlink(ws[i]->path);
        for (int i = 0; i < n; i++)
            if (ws[i]) discard(ws[i]);
    }
    for (int i = 0; i < n; i++)
        if (ws[i]) free_writer(ws[i]);
    return st;
}
