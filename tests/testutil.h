/*
 * testutil.h — small helpers several test files share: running the `sq`
 * tool and capturing its output, counting and removing files in a test's
 * temporary directory, writing a text file, a deterministic random source.
 * Header-only (static functions), included after harness.h.
 */
#ifndef SQ_TESTUTIL_H
#define SQ_TESTUTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"
#include "sq/base.h"
#include "sq/gguf.h"
#include "sq/quantize.h"
#include "sq/types.h"

/* Runs `sq ARGS` in dir (NULL: here); captures stdout+stderr into out[cap]
 * (NUL-terminated). Returns the exit status, -1 when it did not exit. */
static inline int tu_run_sq(const char *dir, const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", dir ? dir : ".", harness_sq_bin(), args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    const size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    const int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs `sq ARGS` in dir and checks its exit status and, when want is not
 * NULL, that its output contains want. The output stays in out for more checks. */
static inline void tu_expect_sq(const char *dir, const char *args, int want_rc, const char *want, char *out, size_t cap)
{
    const int rc = tu_run_sq(dir, args, out, cap);
    CHECK_MSG(rc == want_rc, "sq %s: exit status %d, want %d\n%s", args, rc, want_rc, out);
    if (want) CHECK_MSG(strstr(out, want) != NULL, "sq %s: output lacks '%s':\n%s", args, want, out);
}

/* Runs a shell command and returns all it printed on stdout (malloc'd,
 * NUL-terminated; NULL when it could not run); *rc gets pclose's status. */
static inline char *tu_popen_read(const char *cmd, int *rc)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) buf[n] = '\0';
    const int st = pclose(p);
    if (rc) *rc = st;
    return buf;
}

/* Number of directory entries (besides . and ..) whose name starts with
 * prefix ("" counts them all). */
static inline int tu_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !strncmp(e->d_name, prefix, strlen(prefix))) n++;
    closedir(d);
    return n;
}

/* Whether any entry of dir has `part` in its name (e.g. ".tmp-": a writer's leftover). */
static inline bool tu_any_file_with(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, part)) found = true;
    closedir(d);
    return found;
}

static inline void tu_write_text(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Whether two files have the same bytes (false when either cannot be read). */
static inline bool tu_files_equal(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    void *x = harness_read_file(a, &na), *y = harness_read_file(b, &nb);
    const bool eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

/* Removes a flat directory and its files. */
static inline void tu_rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        remove(p);
    }
    closedir(d);
    remove(dir);
}

/* One step of xorshift64 (13, 7, 17) on *s: the same sequence on every run
 * for the same seed. Tests keep their own seeds and draw from the state. */
static inline uint64_t tu_xorshift64(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t tu_rng_state = 0x9e3779b97f4a7c15ull;
static inline uint32_t tu_rnd(void) { return (uint32_t)(tu_xorshift64(&tu_rng_state) >> 11); }

/* Uniform in [-1, 1). */
static inline float tu_rndf(void) { return (float)((tu_rnd() & 0xFFFFFF) / 16777216.0 * 2.0 - 1.0); }

/* Roughly Gaussian in (-2, 2) (a sum of four uniforms). */
static inline float tu_rnd_gauss(void)
{
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(tu_rnd() & 0xffff) / 65536.0f - 0.5f;
    return s;
}

/* Quantize parameters for a file type: nothing else set, no output or
 * token-embedding override, n_threads threads. */
/* Whether ggml's quantizer of type t needs importance weights (IQ2_XXS,
 * IQ2_XS, IQ1_S: the type table's SQ_IMATRIX_REQUIRED). */
static inline bool tu_needs_weights(int t)
{
    const sq_type_info *ti = sq_type_info_get(t);
    return ti && ti->needs_imatrix == SQ_IMATRIX_REQUIRED;
}

static inline sq_quantize_params tu_quantize_params(int ftype, int n_threads)
{
    sq_quantize_params p;
    memset(&p, 0, sizeof p);
    p.ftype = ftype;
    p.n_threads = n_threads;
    p.output_tensor_type = p.token_embedding_type = -1;
    return p;
}

/* Activations of an activation type (Q8_0, Q8_1, Q8_K, F16, BF16, F32) back
 * to n floats, for double-precision references of the dot kernels. */
static inline void tu_act_to_float(int at, const void *xq, float *out, int64_t n)
{
    const unsigned char *p = xq;
    if (at == SQ_TYPE_Q8_0 || at == SQ_TYPE_Q8_1) {
        const size_t bs = at == SQ_TYPE_Q8_0 ? 34 : 36, off = at == SQ_TYPE_Q8_0 ? 2 : 4;
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t h;
            memcpy(&h, p + b * bs, 2);
            const float d = sq_fp16_to_f32(h);
            for (int j = 0; j < 32; j++) out[b * 32 + j] = d * (float)(int8_t)p[b * bs + off + j];
        }
    } else if (at == SQ_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / 256; b++) {
            float d;
            memcpy(&d, p + b * 292, 4);
            for (int j = 0; j < 256; j++) out[b * 256 + j] = d * (float)(int8_t)p[b * 292 + 4 + j];
        }
    } else if (at == SQ_TYPE_F16 || at == SQ_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = at == SQ_TYPE_F16 ? sq_fp16_to_f32(h) : sq_bf16_to_f32(h);
        }
    } else if (at == SQ_TYPE_F32) {
        memcpy(out, xq, sizeof(float) * (size_t)n);
    }
}

/* Copies the GGUF model src into n shards BASE-0000k-of-0000n.gguf as
 * gguf-split lays them out: the key/values in the first, the split keys in
 * every one, the tensors cut into n consecutive parts in file order. */
static inline sq_status tu_split_model(const char *src, const char *base, int n, sq_error *e)
{
    sq_gguf *g = NULL;
    sq_status st = sq_gguf_open(src, &g, e);
    if (st != SQ_OK) return st;
    const int64_t nt = sq_gguf_n_tensors(g);
    for (int k = 0; k < n && st == SQ_OK; k++) {
        char path[1200];
        sq_gguf_split_path(path, sizeof path, base, k, n);
        sq_gguf_writer *w = NULL;
        st = sq_gguf_writer_open(path, &w, e);
        if (st == SQ_OK && k == 0) st = sq_gguf_writer_copy_kvs(w, g, e);
        if (st == SQ_OK) st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_NO, (uint16_t)k, e);
        if (st == SQ_OK) st = sq_gguf_writer_set_u16(w, SQ_GGUF_KEY_SPLIT_COUNT, (uint16_t)n, e);
        if (st == SQ_OK) st = sq_gguf_writer_set_i32(w, SQ_GGUF_KEY_SPLIT_TENSORS, (int32_t)nt, e);
        const int64_t t0 = k * nt / n, t1 = (k + 1) * nt / n;
        for (int64_t i = t0; i < t1 && st == SQ_OK; i++) {
            const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
            st = sq_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->nbytes, e);
        }
        for (int64_t i = t0; i < t1 && st == SQ_OK; i++) {
            const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
            st = sq_gguf_writer_write(w, t->data, (size_t)t->nbytes, e);
        }
        if (w) {
            if (st == SQ_OK) st = sq_gguf_writer_finish(w, e);
            else sq_gguf_writer_abort(w);
        }
    }
    sq_gguf_close(g);
    return st;
}

/* Writes a legacy (.dat) imatrix with one entry `name` of nval values, all
 * 1 but value bad_at, which is bad_value (bad_at < 0: none). */
static inline bool tu_write_legacy_imatrix(const char *path, const char *name, int32_t nval, int bad_at, float bad_value)
{
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    const int32_t n_entries = 1, len = (int32_t)strlen(name), ncall = 1;
    bool ok = fwrite(&n_entries, 4, 1, f) == 1 && fwrite(&len, 4, 1, f) == 1 &&
              fwrite(name, 1, (size_t)len, f) == (size_t)len && fwrite(&ncall, 4, 1, f) == 1 &&
              fwrite(&nval, 4, 1, f) == 1;
    for (int i = 0; i < nval && ok; i++) {
        const float v = i == bad_at ? bad_value : 1.0f;
        ok = fwrite(&v, 4, 1, f) == 1;
    }
    return fclose(f) == 0 && ok;
}

#endif /* SQ_TESTUTIL_H */
