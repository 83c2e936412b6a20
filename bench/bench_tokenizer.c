/*
 * bench_tokenizer.c — tokenizing heldout.txt as one input (what perplexity
 * does) with the demo model's vocabulary and with the Llama-3 vocabulary.
 * Baseline measured in the same run: the SPM merge with one queue over the
 * whole text (llama.cpp's algorithm as written) against our line-by-line
 * merge, which gives the same ids (checked here too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tok_internal.h"
#include "sq/gguf.h"
#include "sq/tokenizer.h"
#include "benchutil.h"

static sq_vocab *load(const char *path)
{
    sq_vocab *v = NULL;
    sq_error e = {0};
    if (sq_vocab_load_file(path, &v, &e) != SQ_OK) fprintf(stderr, "%s\n", e.msg);
    return v;
}

/* Best of reps runs, in seconds; the ids of the last run in *ids. */
static double best_time(const sq_vocab *v, const char *text, size_t n, int reps, sq_token **ids, size_t *nids)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        sq_error e = {0};
        free(*ids);
        *ids = NULL;
        double t0 = sq_time_now();
        if (sq_tokenize(v, text, n, true, false, ids, nids, &e) != SQ_OK) {
            fprintf(stderr, "%s\n", e.msg);
            return -1;
        }
        double dt = sq_time_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

int main(void)
{
    char tp[1024], mp[1024], bp[1024];
    bench_shared_path(tp, sizeof tp, "data/heldout.txt");
    bench_shared_path(mp, sizeof mp, "models/sqdemo-f16.gguf");
    bench_shared_path(bp, sizeof bp, "vocab/ggml-vocab-llama-bpe.gguf");
    FILE *f = fopen(tp, "rb");
    if (!f) {
        printf("bench_tokenizer: %s absent, nothing to measure\n", tp);
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);

    sq_vocab *v = load(mp);
    if (!v) return 1;
    sq_token *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    double fast = best_time(v, text, (size_t)n, 5, &a, &na);
    v->spm_newline_split = false; /* the baseline: one queue over the whole text */
    double base = best_time(v, text, (size_t)n, 5, &b, &nb);
    v->spm_newline_split = true;
    bool same = na == nb && memcmp(a, b, na * sizeof *a) == 0;
    printf("| vocabulary | input | tokens | one queue (s) | line by line (s) | speed-up | same ids |\n");
    printf("|---|---|---|---|---|---|---|\n");
    printf("| sqdemo (SPM, 4096) | heldout.txt %ld B | %zu | %.3f | %.3f | %.2fx | %s |\n", n, na, base, fast,
           base / fast, same ? "yes" : "NO");
    free(a);
    free(b);
    sq_vocab_free(v);

    v = load(bp);
    if (v) {
        a = NULL;
        double t = best_time(v, text, (size_t)n, 5, &a, &na);
        printf("| llama-bpe (BPE, 128256) | heldout.txt %ld B | %zu | — | %.3f | — | — |\n", n, na, t);
        free(a);
        sq_vocab_free(v);
    }
    free(text);
    return same ? 0 : 1;
}
