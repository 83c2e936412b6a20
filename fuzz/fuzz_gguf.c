/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader: open the input as a
 * GGUF from memory, then walk every accessor over every key and tensor
 * (formatting included) and touch every byte of every tensor's data, so that
 * AddressSanitizer sees any read the validation let through.
 * Build and run: make fuzz-build; ./build-fuzz/fuzz_gguf fuzz/corpus/gguf
 */
#include <stdlib.h>
#include <string.h>

#include "sq/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sq_error err = {0};
    sq_gguf *g = NULL;
    if (sq_gguf_open_memory(data, size, "fuzz", &g, &err) != SQ_OK) {
        if (err.msg[0] == '\0') abort(); /* every failure must explain itself */
        return 0;
    }
    volatile unsigned sink = 0;
    char buf[512];
    const int64_t nkv = sq_gguf_n_kv(g);
    for (int64_t i = 0; i < nkv; i++) {
        const char *key = sq_gguf_key(g, i);
        if (sq_gguf_find_key(g, key) != i) abort();
        const sq_gguf_type t = sq_gguf_kv_type(g, i);
        uint64_t nraw = 0;
        const uint8_t *raw = sq_gguf_kv_raw(g, i, &nraw);
        for (uint64_t k = 0; k < nraw; k++) sink += raw[k];
        sq_gguf_kv_format(g, i, 4, 0, buf, sizeof buf);
        sq_gguf_kv_format(g, i, 0, SQ_GGUF_FMT_JSON, buf, sizeof buf);
        int64_t i64;
        uint32_t u32;
        float f;
        bool b;
        sq_gguf_str s;
        sq_gguf_get_i64(g, key, &i64, &err);
        sq_gguf_get_u32(g, key, &u32, &err);
        sq_gguf_get_f32(g, key, &f, &err);
        sq_gguf_get_bool(g, key, &b, &err);
        sq_gguf_get_str(g, key, &s, &err);
        if (t == SQ_GGUF_STRING && sq_gguf_get_str(g, key, &s, &err) == SQ_OK)
            for (uint64_t k = 0; k < s.len; k++) sink += (unsigned char)s.ptr[k];
        if (t != SQ_GGUF_ARRAY) continue;
        const uint64_t n = sq_gguf_arr_n(g, i);
        const sq_gguf_type et = sq_gguf_arr_type(g, i);
        if (et == SQ_GGUF_STRING) {
            for (uint64_t j = 0; j < n && j < 4096; j++) {
                const sq_gguf_str e = sq_gguf_arr_str(g, i, j);
                if (!e.ptr) abort();
                if (e.len) sink += (unsigned char)e.ptr[0] + (unsigned char)e.ptr[e.len - 1];
            }
            if (sq_gguf_arr_str(g, i, n).ptr) abort();
        }
        const uint8_t *d = sq_gguf_arr_data(g, i);
        if (d && n) sink += d[0];
        double dv;
        for (uint64_t j = 0; j < n && j < 64; j++) {
            sq_gguf_arr_get_int(g, i, j, &i64, &err);
            sq_gguf_arr_get_float(g, i, j, &dv, &err);
        }
    }
    const int64_t nt = sq_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(g, i);
        if (sq_gguf_find_tensor(g, t->name) != t || sq_gguf_tensor_index(g, t) != i) abort();
        const uint8_t *d = t->data;
        for (uint64_t k = 0; k < t->nbytes; k++) sink += d[k];
    }
    (void)sink;
    sq_gguf_close(g);
    return 0;
}
