/*
 * bench_matvec.c — the machine's matrix-vector bandwidth ceiling for a model:
 * how fast its weights can be read, and how fast they can be multiplied by
 * one vector (what a generated token does), in GB/s of weight bytes.
 *
 *   bench_matvec [MODEL.gguf [THREADS [REPS]]]     (default: the demo model, 2, 5)
 *
 * Two walks over the same bytes (every weight matrix of the model, in file
 * order, token_embd only when it is also the output), each timed by wall
 * clock, best of REPS (default 5), on 1 and THREADS (default 2) threads:
 *   read    a plain sum of the bytes (AVX2 loads), split in contiguous
 *           halves: the memory-read ceiling;
 *   matvec  sq_weight_matmul with n = 1 on each weight, one after the other
 *           (a thread-pool run each, as the engine does): the ceiling of token
 *           generation for this file, since generation adds attention, norms
 *           and the like on top of exactly these products.
 * tokens/s ceiling = 1 / (matvec time of the walk). On a busy machine the
 * wall clock measures the load; the last two columns divide the bytes by the
 * process's CPU time per thread (the time our threads really ran, stalls on
 * memory included, spinning in the pool too). Without BENCH_QUIET the
 * per-type split of the matvec time is printed (which types are slow to read;
 * SmarterQuant tensors by the one type of all their segments, or as "SQ mixed"),
 * and the same by role (the tensor name without its "blk.N." prefix, e.g.
 * ffn_down, output) and class, so that a slow tensor kind shows up.
 * Weights come from the engine when it runs the architecture (SmarterQuant
 * tensors with their permutations), otherwise straight from the file (plain
 * tensors; 3-D expert tensors as one matrix).
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq/engine.h"
#include "sq/gguf.h"
#include "sq/matmul.h"
#include "sq/sqtensor.h"

#define MAX_W 20000

typedef struct walk {
    sq_weight w[MAX_W];
    const char *name[MAX_W];
    int n;
    uint64_t bytes;
    int64_t max_cols, max_rows;
} walk;

/* Whether tensor t is a weight the forward pass multiplies by. */
static bool is_product(const sq_gguf *g, const sq_gguf_tensor *t)
{
    if (t->n_dims < 2) return false;
    if (strcmp(t->name, "token_embd.weight") == 0) return sq_gguf_find_tensor(g, "output.weight") == NULL;
    return strstr(t->name, "ffn_gate_inp") == NULL;
}

/* Collects the model's weights: the engine's views when it loads the model,
 * the file's tensors otherwise. */
static int collect(walk *k, const char *path, sq_model **model, sq_gguf **file)
{
    sq_error err = {0};
    const sq_gguf *g = NULL;
    if (sq_model_load(path, model, &err) == SQ_OK) g = sq_model_gguf(*model);
    else {
        fprintf(stderr, "note: the engine does not run it (%s); plain tensors from the file\n", err.msg);
        if (sq_gguf_open_model(path, file, &err) != SQ_OK) {
            fprintf(stderr, "bench_matvec: %s\n", err.msg);
            return -1;
        }
        g = *file;
    }
    for (int64_t i = 0; i < sq_gguf_n_tensors(g) && k->n < MAX_W; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        if (!is_product(g, t)) continue;
        sq_weight *w = &k->w[k->n];
        const sq_weight *mw = *model ? sq_model_weight(*model, t->name) : NULL;
        if (mw) *w = *mw;
        else if (*model) continue; /* the engine does not multiply it */
        else {
            const int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
            sq_status st = t->smarterquant ? sq_weight_mixed(w, t->data, t->sq.types, t->sq.perm, rows, t->ne[0], &err)
                                           : sq_weight_plain(w, t->data, t->type, rows, t->ne[0], &err);
            if (st) {
                fprintf(stderr, "skipping %s: %s\n", t->name, err.msg);
                continue;
            }
        }
        k->name[k->n++] = t->name;
        k->bytes += (uint64_t)w->row_bytes * (uint64_t)w->rows;
        if (w->cols > k->max_cols) k->max_cols = w->cols;
        if (w->rows > k->max_rows) k->max_rows = w->rows;
    }
    return k->n > 0 ? 0 : -1;
}

/* CPU time of the whole process: on a busy machine, time our threads really ran. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- read: sum every weight's bytes ---- */

typedef struct read_job {
    const walk *k;
    double sink[64];
} read_job;

/* Sums bytes [a, b) of buf (64-byte steps inside; the ends byte by byte). */
__attribute__((target("avx2"))) static double sum_bytes(const uint8_t *buf, size_t a, size_t b)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = s0;
    size_t i = a;
    uint64_t tail = 0;
    for (; i < b && (i & 63); i++) tail += buf[i];
    for (; i + 64 <= b; i += 64) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(const void *)(buf + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(const void *)(buf + i + 32)));
    }
    for (; i < b; i++) tail += buf[i];
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)(void *)t, _mm256_add_epi64(s0, s1));
    return (double)(t[0] + t[1] + t[2] + t[3] + tail);
}

/* Thread ith reads its contiguous share of every weight. */
static void read_task(void *p, int ith, int nth)
{
    read_job *j = p;
    double s = 0;
    for (int i = 0; i < j->k->n; i++) {
        const sq_weight *w = &j->k->w[i];
        const size_t n = w->row_bytes * (size_t)w->rows;
        s += sum_bytes(w->data, n * (size_t)ith / (size_t)nth, n * (size_t)(ith + 1) / (size_t)nth);
    }
    j->sink[ith & 63] = s;
}

/* ---- matvec: every weight times one vector ---- */

/* The class a weight's time is counted in: its type for a plain tensor;
 * for a SmarterQuant tensor SQ_TYPE_COUNT when its segments mix types, else
 * SQ_TYPE_COUNT + 1 + the one type of all its segments. */
static int weight_class(const sq_weight *w)
{
    if (!w->mixed) return w->type;
    const int t0 = sq_segment_type(w->types, 0);
    for (int64_t s = 1; s < sq_n_segments(w->cols); s++)
        if (sq_segment_type(w->types, s) != t0) return SQ_TYPE_COUNT;
    return SQ_TYPE_COUNT + 1 + t0;
}

static double walk_matvec(const walk *k, sq_threadpool *tp, const float *x, float *y, void *work, size_t ws,
                          double *per_weight)
{
    const double t0 = sq_time_now();
    for (int i = 0; i < k->n; i++) {
        const double a = per_weight ? sq_time_now() : 0;
        sq_error err = {0};
        if (sq_weight_matmul(tp, &k->w[i], x, 1, y, work, ws, &err) != SQ_OK) {
            fprintf(stderr, "bench_matvec: %s: %s\n", k->name[i], err.msg);
            exit(1);
        }
        if (per_weight) per_weight[i] += sq_time_now() - a;
    }
    return sq_time_now() - t0;
}

/* The name of class c (weight_class). */
static void class_name(int c, char *name, size_t n)
{
    if (c < SQ_TYPE_COUNT) snprintf(name, n, "%s", sq_type_name(c));
    else if (c == SQ_TYPE_COUNT) snprintf(name, n, "SQ mixed");
    else snprintf(name, n, "SQ %s", sq_type_name(c - SQ_TYPE_COUNT - 1));
}

/* A weight's role: its name without the "blk.N." prefix and ".weight". */
static void role_of(const char *tname, char *out, size_t n)
{
    const char *s = tname;
    if (strncmp(s, "blk.", 4) == 0 && strchr(s + 4, '.')) s = strchr(s + 4, '.') + 1;
    snprintf(out, n, "%s", s);
    char *dot = strstr(out, ".weight");
    if (dot) *dot = 0;
}

/* Prints one line per distinct key: bytes, time per repetition, GB/s.
 * key[i] is weight i's label (at most 64 distinct ones are listed). */
static void print_grouped(const walk *k, const double *per_weight, char (*key)[64], int reps)
{
    static char seen[64][64];
    int ns = 0;
    for (int i = 0; i < k->n && ns < 64; i++) {
        bool dup = false;
        for (int s = 0; s < ns && !dup; s++) dup = strcmp(seen[s], key[i]) == 0;
        if (!dup) snprintf(seen[ns++], 64, "%s", key[i]);
    }
    for (int s = 0; s < ns; s++) {
        uint64_t b = 0;
        double t = 0;
        int cnt = 0;
        for (int i = 0; i < k->n; i++)
            if (strcmp(seen[s], key[i]) == 0)
                b += (uint64_t)k->w[i].row_bytes * (uint64_t)k->w[i].rows, t += per_weight[i], cnt++;
        if (t > 0)
            printf("  %-28s %4d %8.1f MiB %8.2f ms %6.1f GB/s\n", seen[s], cnt, (double)b / 1048576.0,
                   t * 1e3 / reps, (double)b * reps / t / 1e9);
    }
}

/* The matvec time by class (weight_class) and by role and class, summed over
 * the repetitions on nt threads. */
static void print_classes(const walk *k, const double *per_weight, int nt, int reps)
{
    static char key[MAX_W][64];
    printf("\nmatvec time by weight type (%d threads, all %d repetitions; SQ: SmarterQuant tensors whose segments\n"
           "all have that type, SQ mixed: the others):\n", nt, reps);
    for (int i = 0; i < k->n; i++) class_name(weight_class(&k->w[i]), key[i], sizeof key[i]);
    print_grouped(k, per_weight, key, reps);
    printf("\nby role and type (tensors, MiB, ms per walk, GB/s):\n");
    for (int i = 0; i < k->n; i++) {
        char role[40], cls[24];
        role_of(k->name[i], role, sizeof role);
        class_name(weight_class(&k->w[i]), cls, sizeof cls);
        snprintf(key[i], sizeof key[i], "%.30s %.24s", role, cls);
    }
    print_grouped(k, per_weight, key, reps);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "models/sqdemo-f16.gguf"; /* `make bench` runs it without arguments */
    const int nt = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 5;
    static walk k;
    sq_model *model = NULL;
    sq_gguf *file = NULL;
    if (collect(&k, path, &model, &file) != 0) return 1;
    float *x = malloc(sizeof(float) * (size_t)k.max_cols), *y = malloc(sizeof(float) * (size_t)k.max_rows);
    size_t ws = 0;
    for (int i = 0; i < k.n; i++) {
        const size_t s = sq_weight_matmul_work_size(&k.w[i], 1);
        if (s > ws) ws = s;
    }
    void *work = sq_aligned_alloc(ws ? ws : 64);
    if (!x || !y || !work) return 1;
    for (int64_t i = 0; i < k.max_cols; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    printf("%s: %d weight matrices, %.1f MiB (%s)\n", path, k.n, (double)k.bytes / 1048576.0,
           model ? "the engine's views" : "plain tensors");
    printf("| threads | read GB/s | matvec GB/s | matvec / read | tokens/s ceiling | by CPU time: read | matvec |\n"
           "|---:|---:|---:|---:|---:|---:|---:|\n");
    static double per_weight[MAX_W];
    for (int t = 1; t <= nt; t = t < nt ? (2 * t < nt ? 2 * t : nt) : nt + 1) {
        sq_threadpool *tp = t > 1 ? sq_threadpool_create(t) : NULL;
        double best_r = 1e30, best_m = 1e30, cpu_r = 1e30, cpu_m = 1e30;
        for (int r = 0; r < reps; r++) {
            read_job j = {.k = &k};
            double c0 = cpu_now();
            const double a = sq_time_now();
            sq_threadpool_run(tp, read_task, &j);
            const double dr = sq_time_now() - a, cr = (cpu_now() - c0) / t;
            best_r = dr < best_r ? dr : best_r;
            cpu_r = cr < cpu_r ? cr : cpu_r;
            c0 = cpu_now();
            const double dm = walk_matvec(&k, tp, x, y, work, ws, t == nt ? per_weight : NULL);
            const double cm = (cpu_now() - c0) / t;
            best_m = dm < best_m ? dm : best_m;
            cpu_m = cm < cpu_m ? cm : cpu_m;
        }
        printf("| %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f |\n", t, (double)k.bytes / best_r / 1e9,
               (double)k.bytes / best_m / 1e9, best_r / best_m, 1.0 / best_m, (double)k.bytes / cpu_r / 1e9,
               (double)k.bytes / cpu_m / 1e9);
        sq_threadpool_free(tp);
    }
    if (!getenv("BENCH_QUIET")) print_classes(&k, per_weight, nt, reps);
    sq_aligned_free(work);
    free(x);
    free(y);
    sq_model_free(model);
    sq_gguf_close(file);
    return 0;
}
