/*
 * fuzz_split.c — libFuzzer target for split models (src/gguf/split.c): the
 * input is two GGUF shards, [u32 little-endian length of the first][first]
 * [second], written as m-00001-of-00002.gguf and m-00002-of-00002.gguf in a
 * private folder; sq_gguf_open_model() opens the first, and on success every
 * tensor of the merged handle is looked up by name, mapped to its shard and
 * has each of its bytes read, so that AddressSanitizer sees any read the
 * checks of the shards (split.no, split.count, split.tensors.count, a tensor
 * in two shards) let through. Every failure must explain itself.
 * Build and run: make fuzz-build; ./build-fuzz/fuzz_split fuzz/corpus/split
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char folder[64], first[128], second[128];

/* Writes n bytes to path; false when it cannot (then the input is skipped). */
static int put(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    const int ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

/* The private folder goes when the fuzzer exits. */
static void cleanup(void)
{
    unlink(first);
    unlink(second);
    rmdir(folder);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!folder[0]) {
        snprintf(folder, sizeof folder, "/tmp/sq-fuzz-split-%ld", (long)getpid());
        if (!mkdtemp(strcat(folder, "-XXXXXX"))) abort();
        snprintf(first, sizeof first, "%s/m-00001-of-00002.gguf", folder);
        snprintf(second, sizeof second, "%s/m-00002-of-00002.gguf", folder);
        atexit(cleanup);
    }
    if (size < 4) return 0;
    const uint32_t la = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    if (la > size - 4) return 0;
    if (!put(first, data + 4, la) || !put(second, data + 4 + la, size - 4 - la)) return 0;
    sq_error err = {0};
    sq_gguf *g = NULL;
    if (sq_gguf_open_model(first, &g, &err) != SQ_OK) {
        if (err.msg[0] == '\0') abort();
        return 0;
    }
    volatile unsigned sink = 0;
    const int ns = sq_gguf_n_shards(g);
    if (ns < 1 || ns > 2 || !sq_gguf_shard(g, 0) || sq_gguf_shard(g, ns)) abort();
    const int64_t nt = sq_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        if (!t || sq_gguf_find_tensor(g, t->name) != t) abort();
        const int k = sq_gguf_tensor_shard(g, t);
        if (k < 0 || k >= ns) abort();
        const sq_gguf *s = sq_gguf_shard(g, k);
        if (t->nbytes > sq_gguf_file_size(s)) abort(); /* a tensor's bytes lie inside its own shard */
        const uint8_t *p = t->data;
        for (uint64_t b = 0; b < t->nbytes; b++) sink += p[b];
    }
    const int64_t nkv = sq_gguf_n_kv(g);
    for (int64_t i = 0; i < nkv; i++) {
        const char *key = sq_gguf_key(g, i);
        if (!key || sq_gguf_find_key(g, key) != i) abort();
        uint64_t nraw = 0;
        const uint8_t *raw = sq_gguf_kv_raw(g, i, &nraw);
        for (uint64_t b = 0; b < nraw; b++) sink += raw[b];
    }
    (void)sink;
    sq_gguf_close(g);
    return 0;
}
