/*
 * bench_gguf.c — how fast the GGUF reader opens a model and `sq inspect`
 * answers, on a ~124 MiB file written here with the streaming writer.
 *
 * Baselines measured in the same run:
 *   open_read:  open() + read() of exactly the header bytes + close() — the
 *               least any header reader can do;
 *   spawn:      `sq version` as a subprocess (posix_spawn, no shell) — the
 *               cost of starting the tool at all.
 * Printed: median milliseconds of sq_gguf_open+close, open+walk of every key
 * and tensor, `sq inspect FILE` (and --json) as a subprocess, and ratios to
 * the baselines. Also the writer's throughput against plain write()+fsync.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "sq/gguf.h"

#define REPS 21
#define N_LAYERS 60
#define COLS 1024

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* Writes the benchmark model: a 32000-entry vocabulary in the metadata, a
 * token embedding and N_LAYERS square F16 matrices: 124 MiB of data. */
static int write_model(const char *path, double *seconds, uint64_t *bytes)
{
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    const double t0 = sq_time_now();
    if (sq_gguf_writer_open(path, &w, &err)) goto fail;
    char **vocab = malloc(32000 * sizeof *vocab);
    char *pool = malloc(32000 * 16);
    float *scores = malloc(32000 * sizeof *scores);
    for (int i = 0; i < 32000; i++) {
        vocab[i] = pool + i * 16;
        snprintf(vocab[i], 16, "tok%05d", i);
        scores[i] = -(float)i;
    }
    sq_status st = sq_gguf_writer_set_str(w, "general.architecture", "llama", &err);
    if (!st) st = sq_gguf_writer_set_u32(w, "llama.block_count", N_LAYERS, &err);
    if (!st) st = sq_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)vocab, 32000, &err);
    if (!st) st = sq_gguf_writer_set_arr(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores, 32000, &err);
    free(vocab);
    free(pool);
    free(scores);
    const int64_t ne_e[2] = {COLS, 2048}, ne_w[2] = {COLS, COLS};
    if (!st) st = sq_gguf_writer_add_tensor(w, "token_embd.weight", 2, ne_e, SQ_TYPE_F16, COLS * 2048 * 2, &err);
    for (int l = 0; l < N_LAYERS && !st; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.w.weight", l);
        st = sq_gguf_writer_add_tensor(w, name, 2, ne_w, SQ_TYPE_F16, COLS * COLS * 2, &err);
    }
    const size_t chunk = COLS * COLS * 2;
    uint8_t *buf = malloc(chunk);
    for (size_t i = 0; i < chunk; i++) buf[i] = (uint8_t)(i * 31);
    *bytes = 0;
    for (int k = 0; k < 2 && !st; k++) st = sq_gguf_writer_write(w, buf, chunk, &err), *bytes += chunk;
    for (int l = 0; l < N_LAYERS && !st; l++) st = sq_gguf_writer_write(w, buf, chunk, &err), *bytes += chunk;
    free(buf);
    if (st) {
        sq_gguf_writer_abort(w);
        goto fail;
    }
    if (sq_gguf_writer_finish(w, &err)) goto fail;
    *seconds = sq_time_now() - t0;
    return 0;
fail:
    fprintf(stderr, "bench_gguf: writing %s: %s\n", path, err.msg);
    return 1;
}

/* Baseline for the writer: the same number of bytes with write() + fsync. */
static double plain_write(const char *path, uint64_t bytes)
{
    const size_t chunk = 1 << 20;
    uint8_t *buf = calloc(1, chunk);
    const double t0 = sq_time_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (uint64_t done = 0; fd >= 0 && done < bytes; done += chunk)
        if (write(fd, buf, chunk) != (ssize_t)chunk) break;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    const double s = sq_time_now() - t0;
    unlink(path);
    free(buf);
    return s;
}

/* Median wall time of running argv (stdout to /dev/null), spawned directly (no shell). */
static double time_cmd(char *const argv[])
{
    double v[REPS];
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    for (int r = 0; r < REPS; r++) {
        const double t0 = sq_time_now();
        pid_t pid;
        int status = 0;
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0 || waitpid(pid, &status, 0) < 0 ||
            !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            posix_spawn_file_actions_destroy(&fa);
            return -1;
        }
        v[r] = sq_time_now() - t0;
    }
    posix_spawn_file_actions_destroy(&fa);
    return median(v, REPS) * 1e3;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    char dir[512], path[600], plain[600];
    snprintf(dir, sizeof dir, "%s/sqbench.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/bench124.gguf", dir);
    snprintf(plain, sizeof plain, "%s/plain.bin", dir);
    double wsec = 0;
    uint64_t bytes = 0;
    if (write_model(path, &wsec, &bytes)) return 1;
    const double psec = plain_write(plain, bytes);
    struct stat st;
    stat(path, &st);
    printf("file: %s, %.1f MiB (%lld bytes)\n", path, (double)st.st_size / 1048576.0, (long long)st.st_size);
    printf("writer: %.1f ms (%.0f MiB/s); plain write+fsync of the same bytes: %.1f ms; ratio %.2f\n", wsec * 1e3,
           (double)bytes / 1048576.0 / wsec, psec * 1e3, wsec / psec);

    sq_error err = {0};
    sq_gguf *g = NULL;
    if (sq_gguf_open(path, &g, &err)) {
        fprintf(stderr, "bench_gguf: %s\n", err.msg);
        return 1;
    }
    const uint64_t hdr = sq_gguf_data_offset(g);
    sq_gguf_close(g);

    double base[REPS], opn[REPS], walk[REPS];
    char *hbuf = malloc(hdr);
    for (int r = 0; r < REPS; r++) {
        double t0 = sq_time_now();
        int fd = open(path, O_RDONLY);
        size_t got = 0;
        while (got < hdr) {
            ssize_t k = read(fd, hbuf + got, hdr - got);
            if (k <= 0) break;
            got += (size_t)k;
        }
        close(fd);
        base[r] = sq_time_now() - t0;

        t0 = sq_time_now();
        sq_gguf_open(path, &g, &err);
        sq_gguf_close(g);
        opn[r] = sq_time_now() - t0;

        t0 = sq_time_now();
        sq_gguf_open(path, &g, &err);
        volatile uint64_t sink = 0;
        for (int64_t i = 0; i < sq_gguf_n_kv(g); i++) sink += (uint64_t)sq_gguf_kv_type(g, i);
        const int64_t tok = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
        for (uint64_t j = 0; j < sq_gguf_arr_n(g, tok); j++) sink += sq_gguf_arr_str(g, tok, j).len;
        for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) sink += sq_gguf_tensor_at(g, i)->nbytes;
        (void)sink;
        sq_gguf_close(g);
        walk[r] = sq_time_now() - t0;
    }
    free(hbuf);
    const double mb = median(base, REPS) * 1e3, mo = median(opn, REPS) * 1e3, mw = median(walk, REPS) * 1e3;
    printf("header: %llu bytes (32000-entry vocabulary, 61 tensors)\n", (unsigned long long)hdr);
    printf("baseline open+read header+close: %.3f ms\n", mb);
    printf("sq_gguf_open+close:              %.3f ms  (ratio %.2f)\n", mo, mo / mb);
    printf("open+walk every key/string/tensor: %.3f ms (ratio %.2f)\n", mw, mw / mb);

    const char *sq = getenv("SQ_BIN");
    if (sq && *sq && access(sq, X_OK) == 0) {
        char *a_ver[] = {(char *)sq, "version", NULL};
        char *a_insp[] = {(char *)sq, "inspect", path, NULL};
        char *a_json[] = {(char *)sq, "inspect", "--json", path, NULL};
        const double spawn = time_cmd(a_ver);
        const double insp = time_cmd(a_insp);
        const double inspj = time_cmd(a_json);
        printf("baseline spawn 'sq version':     %.3f ms\n", spawn);
        printf("sq inspect (124 MiB model):      %.3f ms  (ratio %.2f to spawn)\n", insp, insp / spawn);
        printf("sq inspect --json:               %.3f ms  (ratio %.2f to spawn)\n", inspj, inspj / spawn);
    } else {
        printf("SQ_BIN not set: sq inspect not timed\n");
    }
    unlink(path);
    rmdir(dir);
    return 0;
}
