/*
 * split.c — models stored as several GGUF files (llama.cpp's gguf-split
 * shards NAME-00001-of-0000N.gguf ...), opened as one reader handle.
 *
 * Each shard is opened and validated by the ordinary reader (so each is a
 * complete GGUF file on its own); this file then checks that the shards
 * belong together (split.no, split.count, split.tensors.count, no tensor in
 * two shards) and builds one merged handle: key/values borrowed from the
 * first shard, a tensor table of its own over all shards. Every accessor of
 * sq/gguf.h works on the merged handle unchanged.
 */
#include "reader_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t sq_gguf_split_path(char *buf, size_t size, const char *prefix, int i, int n)
{
    const int len = snprintf(buf, size, "%s-%05d-of-%05d.gguf", prefix, i + 1, n);
    return len < 0 ? 0 : (size_t)len;
}

bool sq_gguf_split_prefix(char *buf, size_t size, const char *path, int i, int n)
{
    char tail[64];
    snprintf(tail, sizeof tail, "-%05d-of-%05d.gguf", i + 1, n);
    const size_t pl = strlen(path), tl = strlen(tail);
    if (pl <= tl || strcmp(path + pl - tl, tail) != 0 || pl - tl >= size) return false;
    memcpy(buf, path, pl - tl);
    buf[pl - tl] = '\0';
    return true;
}

/* An integer split.* key of shard g, or -1 when absent; SQ_ETYPE/SQ_ERANGE
 * (message names the file and key) when it is not a small integer. */
static sq_status split_key(const sq_gguf *g, const char *key, int64_t *out, sq_error *err)
{
    *out = -1;
    if (sq_gguf_find_key(g, key) < 0) return SQ_OK;
    sq_status st = sq_gguf_get_i64(g, key, out, err);
    if (st != SQ_OK) {
        sq_error_prefix(err, "%s", sq_gguf_path(g));
        return st;
    }
    if (*out < 0 || *out > 99999)
        return sq_error_set(err, SQ_ERANGE, "%s: key %s is %lld (expected 0..99999)", sq_gguf_path(g), key,
                            (long long)*out);
    return SQ_OK;
}

/* Builds the merged handle over n validated shards (which it takes over). */
static sq_status merge(const char *path, sq_gguf **shards, int n, sq_gguf **out, sq_error *err)
{
    int64_t nt = 0;
    for (int i = 0; i < n; i++) nt += shards[i]->n_tensors;
    const size_t len = strlen(path);
    sq_gguf *g = calloc(1, sizeof *g + len + 1);
    uint64_t cap = 8;
    while (cap < (uint64_t)nt * 2) cap <<= 1;
    const size_t bytes = (size_t)nt * (sizeof(sq_gguf_tensor) + sizeof(uint64_t) + sizeof(int32_t)) +
                         (size_t)cap * sizeof(int64_t);
    void *blk = g ? calloc(1, bytes) : NULL;
    if (!g || !blk) {
        free(g);
        free(blk);
        for (int i = 0; i < n; i++) sq_gguf_close(shards[i]);
        free(shards);
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory for the index of %d shards", path, n);
    }
    memcpy(g->label, path, len + 1);
    const sq_gguf *s0 = shards[0];
    /* key/values: the first shard's, borrowed */
    g->base = s0->base;
    g->size = s0->size;
    g->version = s0->version;
    g->alignment = s0->alignment;
    g->data_offset = s0->data_offset;
    g->n_kv = s0->n_kv;
    g->kvs = s0->kvs;
    g->kv_hash = s0->kv_hash;
    g->kv_hash_mask = s0->kv_hash_mask;
    /* tensors: our own table (int64 hash first, for alignment) */
    g->block = blk;
    g->t_hash = blk;
    g->t_hash_mask = cap - 1;
    g->tensors = (sq_gguf_tensor *)(g->t_hash + cap);
    g->tensor_at = (uint64_t *)(g->tensors + nt);
    g->tensor_shard = (int32_t *)(g->tensor_at + nt);
    g->n_tensors = nt;
    g->shards = shards;
    g->n_shards = n;
    int64_t k = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < shards[i]->n_tensors; j++, k++) {
            g->tensors[k] = shards[i]->tensors[j];
            g->tensor_at[k] = shards[i]->tensor_at[j];
            g->tensor_shard[k] = i;
        }
    /* one name, one tensor, across all shards */
    for (k = 0; k < nt; k++) {
        const char *name = g->tensors[k].name;
        uint64_t s = sq__gguf_hash2(name, strlen(name), "", 0) & g->t_hash_mask;
        while (g->t_hash[s]) {
            const int64_t o = g->t_hash[s] - 1;
            if (strcmp(g->tensors[o].name, name) == 0) {
                sq_status st = sq_error_set(err, SQ_EFORMAT, "%s: tensor '%s' is in shard %s and again in shard %s",
                                            path, name, shards[g->tensor_shard[o]]->label,
                                            shards[g->tensor_shard[k]]->label);
                sq_gguf_close(g);
                return st;
            }
            s = (s + 1) & g->t_hash_mask;
        }
        g->t_hash[s] = k + 1;
    }
    *out = g;
    return SQ_OK;
}

sq_status sq_gguf_open_model(const char *path, sq_gguf **out, sq_error *err)
{
    if (!out || !path) return sq_error_set(err, SQ_EINVAL, "sq_gguf_open_model: path or out is NULL");
    *out = NULL;
    sq_gguf *first = NULL;
    sq_status st = sq_gguf_open(path, &first, err);
    if (st != SQ_OK) return st;
    int64_t count = -1, no = -1, n_tensors = -1;
    if ((st = split_key(first, SQ_GGUF_KEY_SPLIT_COUNT, &count, err)) != SQ_OK ||
        (st = split_key(first, SQ_GGUF_KEY_SPLIT_NO, &no, err)) != SQ_OK) {
        sq_gguf_close(first);
        return st;
    }
    if (count <= 1 && no <= 0) { /* an ordinary file (or a split of one) */
        *out = first;
        return SQ_OK;
    }
    char prefix[4096], other[4200];
    if (count < 1)
        st = sq_error_set(err, SQ_EFORMAT, "%s: key %s is %lld but key %s is missing or 0", path, SQ_GGUF_KEY_SPLIT_NO,
                          (long long)no, SQ_GGUF_KEY_SPLIT_COUNT);
    else if (no < 0)
        st = sq_error_set(err, SQ_EFORMAT, "%s: split.count is %lld but key %s is missing", path, (long long)count,
                          SQ_GGUF_KEY_SPLIT_NO);
    else if (no >= count)
        st = sq_error_set(err, SQ_EFORMAT, "%s: split.no %lld is not below split.count %lld", path, (long long)no,
                          (long long)count);
    else if (no != 0) {
        if (sq_gguf_split_prefix(prefix, sizeof prefix, path, (int)no, (int)count)) {
            sq_gguf_split_path(other, sizeof other, prefix, 0, (int)count);
            st = sq_error_set(err, SQ_EINVAL, "%s: this is shard %lld of %lld of a split model; give the first shard, %s",
                              path, (long long)no + 1, (long long)count, other);
        } else {
            st = sq_error_set(err, SQ_EINVAL, "%s: this is shard %lld of %lld of a split model; give the first shard",
                              path, (long long)no + 1, (long long)count);
        }
    } else if (!sq_gguf_split_prefix(prefix, sizeof prefix, path, 0, (int)count))
        st = sq_error_set(err, SQ_EINVAL,
                          "%s: the first shard of a model split into %lld files must be named PREFIX-00001-of-%05lld.gguf "
                          "(the other shards are found by that name)",
                          path, (long long)count, (long long)count);
    else if ((st = split_key(first, SQ_GGUF_KEY_SPLIT_TENSORS, &n_tensors, err)) == SQ_OK && n_tensors < 0)
        st = sq_error_set(err, SQ_EFORMAT, "%s: split model without key %s", path, SQ_GGUF_KEY_SPLIT_TENSORS);
    if (st != SQ_OK) {
        sq_gguf_close(first);
        return st;
    }

    sq_gguf **shards = calloc((size_t)count, sizeof *shards);
    if (!shards) {
        sq_gguf_close(first);
        return sq_error_set(err, SQ_ENOMEM, "%s: out of memory", path);
    }
    shards[0] = first;
    int64_t total = first->n_tensors;
    for (int i = 1; i < (int)count && st == SQ_OK; i++) {
        sq_gguf_split_path(other, sizeof other, prefix, i, (int)count);
        st = sq_gguf_open(other, &shards[i], err);
        if (st != SQ_OK) {
            sq_error_prefix(err, "%s: shard %d of %lld", path, i + 1, (long long)count);
            break;
        }
        int64_t c = -1, k = -1;
        if ((st = split_key(shards[i], SQ_GGUF_KEY_SPLIT_COUNT, &c, err)) != SQ_OK ||
            (st = split_key(shards[i], SQ_GGUF_KEY_SPLIT_NO, &k, err)) != SQ_OK)
            break;
        if (c < 0 || k < 0)
            st = sq_error_set(err, SQ_EFORMAT, "%s: key %s is missing: not a shard of the split model %s", other,
                              c < 0 ? SQ_GGUF_KEY_SPLIT_COUNT : SQ_GGUF_KEY_SPLIT_NO, path);
        else if (c != count)
            st = sq_error_set(err, SQ_EFORMAT, "%s: split.count is %lld, but the first shard %s says %lld", other,
                              (long long)c, path, (long long)count);
        else if (k != i)
            st = sq_error_set(err, SQ_EFORMAT, "%s: split.no is %lld, but this file name is shard %d (split.no %d)",
                              other, (long long)k, i + 1, i);
        total += shards[i]->n_tensors;
    }
    if (st == SQ_OK && total != n_tensors)
        st = sq_error_set(err, SQ_EFORMAT, "%s: split.tensors.count says %lld tensors, but the %lld shards hold %lld",
                          path, (long long)n_tensors, (long long)count, (long long)total);
    if (st != SQ_OK) {
        for (int i = 0; i < (int)count; i++) sq_gguf_close(shards[i]);
        free(shards);
        return st;
    }
    return merge(path, shards, (int)count, out, err);
}

int sq_gguf_n_shards(const sq_gguf *g)
{
    if (!g) return 0;
    return g->n_shards > 0 ? g->n_shards : 1;
}

const sq_gguf *sq_gguf_shard(const sq_gguf *g, int i)
{
    if (!g || i < 0 || i >= sq_gguf_n_shards(g)) return NULL;
    return g->shards ? g->shards[i] : g;
}

int sq_gguf_tensor_shard(const sq_gguf *g, const sq_gguf_tensor *t)
{
    const int64_t i = sq_gguf_tensor_index(g, t);
    if (i < 0) return -1;
    return g->tensor_shard ? g->tensor_shard[i] : 0;
}
