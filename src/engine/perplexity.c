/*
 * perplexity.c — perplexity and KL divergence, computed the way llama.cpp's
 * llama-perplexity computes them, so that figures can be compared directly:
 *
 * - the text is tokenized once; chunk i is tokens [i*n_ctx, (i+1)*n_ctx) with
 *   its first token replaced by BOS, evaluated from an empty KV cache;
 * - only the second half is scored: the logits at positions first..n_ctx-2
 *   (first = n_ctx/2) predict the next token;
 * - -log p uses max subtraction and a double sum of expf, as llama.cpp does;
 * - the final error is sqrt(var(nll)/(count-1)) * PPL.
 *
 * KL divergence base files use llama.cpp's --kl-divergence-base format (so a
 * file written by either tool is read by both):
 *   "_logits_" (8 bytes), uint32 n_ctx, int32 n_vocab, int32 n_chunk,
 *   int32 tokens[n_chunk * n_ctx],
 *   then per chunk, per scored position (n_ctx - 1 - n_ctx/2 of them), a row of
 *   nv = 2*((n_vocab+1)/2) + 4 uint16: float scale, float min_log_prob (the
 *   first 4 uint16), then log p[i] ≈ min_log_prob + scale * q[i] for every token
 *   (q = 0 for log-probs more than 16 below the best), zero padding.
 * All little-endian (the host order on every platform we build for).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sq/engine.h"
#include "sq/gguf.h"

void sq_ppl_result_free(sq_ppl_result *r)
{
    if (!r) return;
    free(r->kld_values);
    free(r->p_diff_values);
    r->kld_values = NULL;
    r->p_diff_values = NULL;
}

/* Compresses one row of logits to llama.cpp's uint16 log-probability row
 * (nv entries, see the file comment); returns -log p[tok]. */
static double compress_row(const float *logits, int n_vocab, uint16_t *row, int32_t tok)
{
    float max = logits[0], min = logits[0];
    for (int i = 1; i < n_vocab; i++) {
        if (logits[i] > max) max = logits[i];
        if (logits[i] < min) min = logits[i];
    }
    if (min < max - 16) min = max - 16;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += expf(logits[i] - max);
    const float log_sum_exp = (float)log(sum);
    const float min_log_prob = min - max - log_sum_exp;
    const float scale = (max - min) / 65535.f;
    const int nv = 2 * ((n_vocab + 1) / 2) + 4;
    memset(row, 0, sizeof(uint16_t) * (size_t)nv);
    memcpy(row, &scale, 4);
    memcpy(row + 2, &min_log_prob, 4);
    uint16_t *q = row + 4;
    if (scale != 0.0f) {
        const float inv = 1 / scale;
        for (int i = 0; i < n_vocab; i++) q[i] = logits[i] > min ? (uint16_t)lrintf(inv * (logits[i] - min)) : 0;
    }
    return (double)(max + log_sum_exp - logits[tok]);
}

/* KL divergence of this model's logits from a stored base row, and the other
 * sums llama.cpp keeps; writes the token's KL and p - p_base. */
static void kld_row(const float *logits, int n_vocab, const uint16_t *base, int32_t tok, sq_kld_sums *k,
                    float *kld_out, float *pdiff_out)
{
    float max = logits[0];
    int imax = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) {
            max = logits[i];
            imax = i;
        }
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; i++) sum_exp += expf(logits[i] - max);
    const float log_sum_exp = (float)log(sum_exp);
    float scale, min_log_prob;
    memcpy(&scale, base, 4);
    memcpy(&min_log_prob, base + 2, 4);
    const uint16_t *q = base + 4;

    const float nll = max + log_sum_exp - logits[tok];
    k->sum_nll += nll;
    k->sum_nll2 += (double)nll * nll;
    const float nll_base = -(scale * q[tok] + min_log_prob);
    k->sum_nll_base += nll_base;
    k->sum_nll_base2 += (double)nll_base * nll_base;
    k->sum_nll_nll_base += (double)nll * nll_base;

    const float lse = max + log_sum_exp;
    double sum = 0.0;
    int imax_base = -1;
    float best = 0;
    for (int i = 0; i < n_vocab; i++) {
        const float lp_base = scale * q[i] + min_log_prob;
        if (i == 0 || lp_base > best) {
            best = lp_base;
            imax_base = i;
        }
        if (lp_base > -16.f) sum += expf(lp_base) * (lp_base - logits[i] + lse);
    }
    k->sum_kld += sum;
    k->sum_kld2 += sum * sum;
    k->count++;
    if (imax == imax_base) k->n_same_top++;
    const float p_diff = expf(-nll) - expf(-nll_base);
    k->sum_p_diff += p_diff;
    const double d2 = (double)p_diff * p_diff;
    k->sum_p_diff2 += d2;
    k->sum_p_diff4 += d2 * d2;
    if (fabsf(p_diff) > k->max_p_diff) k->max_p_diff = fabsf(p_diff);
    *kld_out = (float)sum;
    *pdiff_out = p_diff;
}

/* The base file being written (temp name, renamed at the end) or read. */
typedef struct kfile {
    FILE *f;
    char *path, *tmp;
} kfile;

static void kfile_abort(kfile *k)
{
    if (k->f) fclose(k->f);
    if (k->tmp) {
        unlink(k->tmp);
        sq_gguf_temp_unlist(k->tmp);
    }
    free(k->tmp);
    k->f = NULL;
    k->tmp = NULL;
}

static sq_status wr(kfile *k, const void *p, size_t n, sq_error *err)
{
    if (fwrite(p, 1, n, k->f) != n)
        return sq_error_set(err, SQ_EIO, "%s: write failed: %s", k->path, strerror(errno));
    return SQ_OK;
}

static sq_status rd(kfile *k, void *p, size_t n, const char *what, sq_error *err)
{
    if (fread(p, 1, n, k->f) != n)
        return sq_error_set(err, SQ_EFORMAT, "%s: file ends while reading %s", k->path, what);
    return SQ_OK;
}

/* The rule before any work: llama.cpp needs two chunks' worth of tokens. */
int sq_perplexity_n_chunks(size_t n_tokens, int n_ctx, int n_chunks, sq_error *err)
{
    if (n_ctx < 1 || n_tokens < 2 * (size_t)n_ctx) {
        sq_error_set(err, SQ_EINVAL, "the text has %zu tokens; at least %d (2 × context %d) are needed for perplexity",
                     n_tokens, 2 * n_ctx, n_ctx);
        return -1;
    }
    const size_t n = n_tokens / (size_t)n_ctx;
    return n_chunks > 0 && (size_t)n_chunks < n ? n_chunks : n > 1000000000 ? 1000000000 : (int)n;
}

sq_status sq_perplexity(sq_context *c, const int32_t *tokens, size_t n_tokens, int32_t bos, const sq_ppl_params *p,
                        sq_ppl_result *out, sq_error *err)
{
    memset(out, 0, sizeof *out);
    const sq_hparams *hp = sq_model_hparams(sq_context_model(c));
    const int n_vocab = (int)hp->n_vocab;
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : 512;
    const bool comparing = p->kld_base_in != NULL;
    kfile kf = {0};
    int32_t *file_tokens = NULL;
    uint16_t *rows = NULL;
    int32_t *chunk = NULL;
    sq_status st = SQ_OK;
    int n_chunk;

    if (comparing) {
        kf.path = (char *)p->kld_base_in;
        kf.f = fopen(kf.path, "rb");
        if (!kf.f) return sq_error_set(err, SQ_EIO, "%s: cannot open: %s", kf.path, strerror(errno));
        char magic[8];
        uint32_t fctx;
        int32_t fvocab, fchunk;
        if ((st = rd(&kf, magic, 8, "the magic", err))) goto done;
        if (memcmp(magic, "_logits_", 8) != 0) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: not a log-probability file (no '_logits_' magic)", kf.path);
            goto done;
        }
        if ((st = rd(&kf, &fctx, 4, "n_ctx", err)) || (st = rd(&kf, &fvocab, 4, "n_vocab", err)) ||
            (st = rd(&kf, &fchunk, 4, "n_chunk", err)))
            goto done;
        if (fctx < 4 || fctx > (uint32_t)sq_context_n_ctx(c)) {
            st = sq_error_set(err, SQ_EINVAL, "%s: computed with a context of %u; this context holds %d", kf.path,
                              fctx, sq_context_n_ctx(c));
            goto done;
        }
        if (fvocab != n_vocab) {
            st = sq_error_set(err, SQ_EINVAL, "%s: vocabulary of %d tokens, the model has %d", kf.path, (int)fvocab,
                              n_vocab);
            goto done;
        }
        if (fchunk <= 0 || (uint64_t)fchunk * fctx > (1ULL << 31)) {
            st = sq_error_set(err, SQ_EFORMAT, "%s: bad chunk count %d", kf.path, (int)fchunk);
            goto done;
        }
        n_ctx = (int)fctx;
        file_tokens = malloc(sizeof(int32_t) * (size_t)fchunk * (size_t)n_ctx);
        if (!file_tokens) {
            st = sq_error_set(err, SQ_ENOMEM, "out of memory");
            goto done;
        }
        if ((st = rd(&kf, file_tokens, sizeof(int32_t) * (size_t)fchunk * (size_t)n_ctx, "the tokens", err)))
            goto done;
        for (size_t i = 0; i < (size_t)fchunk * (size_t)n_ctx; i++)
            if (file_tokens[i] < 0 || file_tokens[i] >= n_vocab) {
                st = sq_error_set(err, SQ_EFORMAT, "%s: token %zu (%d) is outside the vocabulary", kf.path, i,
                                  (int)file_tokens[i]);
                goto done;
            }
        tokens = file_tokens;
        n_tokens = (size_t)fchunk * (size_t)n_ctx;
        n_chunk = fchunk;
    } else {
        if (n_ctx > sq_context_n_ctx(c))
            return sq_error_set(err, SQ_EINVAL, "chunk length %d exceeds the context (%d)", n_ctx,
                                sq_context_n_ctx(c));
        if ((n_chunk = sq_perplexity_n_chunks(n_tokens, n_ctx, p->n_chunks, err)) < 0) return err ? err->code : SQ_EINVAL;
    }
    if (p->n_chunks > 0 && p->n_chunks < n_chunk) n_chunk = p->n_chunks;

    const int first = n_ctx / 2;
    const int n_scored = n_ctx - 1 - first;
    const int nv = 2 * ((n_vocab + 1) / 2) + 4;
    chunk = malloc(sizeof(int32_t) * (size_t)n_ctx);
    if (comparing || p->kld_base_out) rows = malloc(sizeof(uint16_t) * (size_t)nv * (size_t)n_scored);
    if (comparing) {
        out->kld_values = malloc(sizeof(float) * (size_t)n_scored * (size_t)n_chunk);
        out->p_diff_values = malloc(sizeof(float) * (size_t)n_scored * (size_t)n_chunk);
    }
    if (!chunk || ((comparing || p->kld_base_out) && !rows) ||
        (comparing && (!out->kld_values || !out->p_diff_values))) {
        st = sq_error_set(err, SQ_ENOMEM, "out of memory");
        goto done;
    }

    if (p->kld_base_out) {
        kf.path = (char *)p->kld_base_out;
        struct stat sb; /* the rename would replace a device or pipe (/dev/null as root) */
        if (stat(kf.path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            st = sq_error_set(err, SQ_EINVAL, "%s: exists and is not a regular file; the base file must be a file",
                              kf.path);
            goto done;
        }
        size_t L = strlen(kf.path) + 16;
        kf.tmp = malloc(L);
        if (!kf.tmp) {
            st = sq_error_set(err, SQ_ENOMEM, "out of memory");
            goto done;
        }
        snprintf(kf.tmp, L, "%s.tmp%ld", kf.path, (long)getpid());
        /* listed before it exists: a tool's SIGINT handler removes it */
        sq_gguf_temp_list(kf.tmp);
        kf.f = fopen(kf.tmp, "wb");
        if (!kf.f) {
            const int e = errno;
            sq_gguf_temp_unlist(kf.tmp);
            st = sq_error_set(err, SQ_EIO, "%s: cannot create the temporary file %s: %s", kf.path, kf.tmp, strerror(e));
            free(kf.tmp);
            kf.tmp = NULL;
            goto done;
        }
        const uint32_t uctx = (uint32_t)n_ctx;
        const int32_t iv = n_vocab, ic = n_chunk;
        if ((st = wr(&kf, "_logits_", 8, err)) || (st = wr(&kf, &uctx, 4, err)) || (st = wr(&kf, &iv, 4, err)) ||
            (st = wr(&kf, &ic, 4, err)) ||
            (st = wr(&kf, tokens, sizeof(int32_t) * (size_t)n_chunk * (size_t)n_ctx, err)))
            goto done;
    }

    double nll = 0.0, nll2 = 0.0;
    uint64_t count = 0;
    for (int ci = 0; ci < n_chunk; ci++) {
        const double t0 = sq_time_now();
        const int32_t *ct = tokens + (size_t)ci * (size_t)n_ctx;
        memcpy(chunk, ct, sizeof(int32_t) * (size_t)n_ctx);
        if (bos >= 0) chunk[0] = bos;
        if (comparing &&
            (st = rd(&kf, rows, sizeof(uint16_t) * (size_t)nv * (size_t)n_scored, "the log-probabilities", err)))
            goto done;
        sq_kv_clear(c);
        /* logits for positions first .. n_ctx-1 (the last one is not scored) */
        st = sq_eval(c, chunk, n_ctx, n_ctx - first, err);
        if (st) {
            sq_error_prefix(err, "chunk %d", ci + 1);
            goto done;
        }
        const float *lg = sq_get_logits(c);
        for (int i = 0; i < n_scored; i++) {
            const float *row = lg + (size_t)i * (size_t)n_vocab;
            const int32_t next = ct[first + i + 1];
            double v;
            if (comparing) {
                const size_t at = (size_t)ci * (size_t)n_scored + (size_t)i;
                kld_row(row, n_vocab, rows + (size_t)i * (size_t)nv, next, &out->k, &out->kld_values[at],
                        &out->p_diff_values[at]);
                v = sq_nll_of(row, n_vocab, next);
            } else if (p->kld_base_out) {
                v = compress_row(row, n_vocab, rows + (size_t)i * (size_t)nv, next);
            } else {
                v = sq_nll_of(row, n_vocab, next);
            }
            nll += v;
            nll2 += v * v;
        }
        count += (uint64_t)n_scored;
        if (p->kld_base_out && (st = wr(&kf, rows, sizeof(uint16_t) * (size_t)nv * (size_t)n_scored, err)))
            goto done;
        if (p->on_chunk) {
            sq_ppl_report r = {ci + 1, n_chunk, count, nll, nll2, exp(nll / (double)count), sq_time_now() - t0,
                               comparing, out->k};
            p->on_chunk(p->ud, &r);
        }
    }

    out->n_chunks = n_chunk;
    out->count = count;
    out->kld = comparing;
    {
        const double mean = nll / (double)count, m2 = nll2 / (double)count;
        out->ppl = exp(mean);
        const double var = m2 - mean * mean;
        out->ppl_err = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * out->ppl : 0.0;
    }
    if (p->kld_base_out) {
        if (fflush(kf.f) != 0 || fsync(fileno(kf.f)) != 0) {
            st = sq_error_set(err, SQ_EIO, "%s: write failed: %s", kf.tmp, strerror(errno));
            goto done;
        }
        if (fclose(kf.f) != 0) {
            kf.f = NULL;
            st = sq_error_set(err, SQ_EIO, "%s: close failed: %s", kf.tmp, strerror(errno));
            goto done;
        }
        kf.f = NULL;
        if (rename(kf.tmp, kf.path) != 0) {
            st = sq_error_set(err, SQ_EIO, "cannot rename %s to %s: %s", kf.tmp, kf.path, strerror(errno));
            goto done;
        }
        sq_gguf_temp_unlist(kf.tmp);
        free(kf.tmp);
        kf.tmp = NULL;
    }

done:
    if (comparing) {
        if (kf.f) fclose(kf.f);
        kf.f = NULL;
    } else {
        kfile_abort(&kf);
    }
    free(file_tokens);
    free(rows);
    free(chunk);
    if (st) sq_ppl_result_free(out);
    return st;
}
