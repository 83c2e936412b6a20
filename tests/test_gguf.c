/*
 * test_gguf.c — the GGUF reader, writer and `sq inspect` on real files:
 * every GGUF in ../shared (demo model, llama.cpp's Q4_K_M and imatrix files,
 * the vocab files) with concrete facts, the Q4_K_M tensor types and shapes
 * against llama-quantize's own log, byte-identical copy round trips, writer
 * behaviour (replace in place, alignment, atomicity), SmarterQuant sizes and
 * the JSON output of `sq inspect`. Malformed files: test_gguf_malformed.c.
 */
#include <dirent.h>
#include <jansson.h>
#include <unistd.h>

#include "harness.h"
#include "testutil.h"
#include "sq/gguf.h"

/* ---- helpers ---- */

/* Opens ../shared/REL; the demo model is also vendored in the repository
 * (models/), so tests of it still run in a fresh clone without ../shared. */
static sq_gguf *open_shared(const char *rel)
{
    char path[1024];
    if (!harness_shared_file(path, sizeof path, rel)) {
        if (strncmp(rel, "models/", 7) != 0 || access(rel, R_OK) != 0) return NULL;
        snprintf(path, sizeof path, "%s", rel);
    }
    sq_error err = {0};
    sq_gguf *g = NULL;
    if (sq_gguf_open(path, &g, &err) != SQ_OK) {
        CHECK_MSG(0, "open %s: %s", rel, err.msg);
        return NULL;
    }
    return g;
}

/* Copies src to path with the writer: copy_kvs, add_tensor for each tensor,
 * data streamed in uneven chunks. */
static sq_status copy_file(const sq_gguf *src, const char *path, sq_error *err)
{
    sq_gguf_writer *w = NULL;
    sq_status st = sq_gguf_writer_open(path, &w, err);
    if (st) return st;
    if ((st = sq_gguf_writer_copy_kvs(w, src, err))) goto fail;
    for (int64_t i = 0; i < sq_gguf_n_tensors(src); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(src, i);
        if ((st = sq_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, t->nbytes, err))) goto fail;
    }
    for (int64_t i = 0; i < sq_gguf_n_tensors(src); i++) {
        const sq_gguf_tensor *t = sq_gguf_tensor_at(src, i);
        const size_t first = (size_t)(t->nbytes / 3);
        if ((st = sq_gguf_writer_write(w, t->data, first, err))) goto fail;
        if ((st = sq_gguf_writer_write(w, (const char *)t->data + first, (size_t)t->nbytes - first, err)))
            goto fail;
    }
    return sq_gguf_writer_finish(w, err);
fail:
    sq_gguf_writer_abort(w);
    return st;
}

/* ---- the demo model ---- */

static void test_demo_model(void)
{
    sq_gguf *g = open_shared("models/sqdemo-f16.gguf");
    if (!g) SKIP("../shared/models/sqdemo-f16.gguf absent");
    sq_error err = {0};
    CHECK_INT(sq_gguf_version(g), 3);
    CHECK_INT(sq_gguf_n_kv(g), 23);
    CHECK_INT(sq_gguf_n_tensors(g), 39);
    CHECK_INT(sq_gguf_alignment(g), 32);
    CHECK_INT(sq_gguf_data_offset(g), 91712);
    CHECK_INT(sq_gguf_file_size(g), 33664576);

    sq_gguf_str s = {0};
    CHECK_INT(sq_gguf_get_str(g, "general.architecture", &s, &err), SQ_OK);
    CHECK(s.len == 5 && memcmp(s.ptr, "llama", 5) == 0);
    uint32_t u = 0;
    CHECK_INT(sq_gguf_get_u32(g, "llama.block_count", &u, &err), SQ_OK);
    CHECK_INT(u, 4);
    int64_t i64 = 0;
    CHECK_INT(sq_gguf_get_i64(g, "llama.feed_forward_length", &i64, &err), SQ_OK);
    CHECK_INT(i64, 1536);
    float f = 0;
    CHECK_INT(sq_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f, &err), SQ_OK);
    CHECK(f == 1e-5f);
    bool b = false;
    CHECK_INT(sq_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err), SQ_OK);
    CHECK(b);
    CHECK_INT(sq_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, &err), SQ_OK);
    CHECK(!b);

    /* type mismatch and absence give clear errors */
    CHECK_INT(sq_gguf_get_str(g, "llama.block_count", &s, &err), SQ_ETYPE);
    CHECK_CONTAINS(err.msg, "key 'llama.block_count' has type u32, wanted string");
    CHECK_INT(sq_gguf_get_u32(g, "tokenizer.ggml.tokens", &u, &err), SQ_ETYPE);
    CHECK_CONTAINS(err.msg, "array of string");
    CHECK_INT(sq_gguf_get_u32(g, "no.such.key", &u, &err), SQ_ENOTFOUND);
    CHECK_CONTAINS(err.msg, "'no.such.key' not found");
    CHECK_INT(sq_gguf_find_key(g, "no.such.key"), -1);

    /* the vocabulary: 4096 strings, O(1) access */
    int64_t ki = -1;
    sq_gguf_type et = SQ_GGUF_TYPE_COUNT;
    uint64_t n = 0;
    CHECK_INT(sq_gguf_get_arr(g, "tokenizer.ggml.tokens", &ki, &et, &n, &err), SQ_OK);
    CHECK_INT(et, SQ_GGUF_STRING);
    CHECK_INT(n, 4096);
    CHECK_INT(ki, 15);
    CHECK_STR(sq_gguf_key(g, ki), "tokenizer.ggml.tokens");
    CHECK_INT(sq_gguf_kv_type(g, ki), SQ_GGUF_ARRAY);
    CHECK_INT(sq_gguf_arr_n(g, ki), 4096);
    s = sq_gguf_arr_str(g, ki, 0);
    CHECK(s.len == 5 && memcmp(s.ptr, "<unk>", 5) == 0);
    s = sq_gguf_arr_str(g, ki, 3);
    CHECK(s.len == 6 && memcmp(s.ptr, "<0x00>", 6) == 0);
    s = sq_gguf_arr_str(g, ki, 4095);
    CHECK(s.ptr != NULL && s.len > 0);
    s = sq_gguf_arr_str(g, ki, 4096);
    CHECK(s.ptr == NULL && s.len == 0);
    CHECK(sq_gguf_arr_data(g, ki) == NULL); /* strings have no fixed-size data */

    const int64_t tt = sq_gguf_find_key(g, "tokenizer.ggml.token_type");
    CHECK_INT(sq_gguf_arr_type(g, tt), SQ_GGUF_INT32);
    CHECK(sq_gguf_arr_data(g, tt) != NULL);
    CHECK_INT(sq_gguf_arr_get_int(g, tt, 0, &i64, &err), SQ_OK);
    CHECK_INT(i64, 2);
    CHECK_INT(sq_gguf_arr_get_int(g, tt, 3, &i64, &err), SQ_OK);
    CHECK_INT(i64, 6);
    CHECK_INT(sq_gguf_arr_get_int(g, tt, 4096, &i64, &err), SQ_ERANGE);
    double d = 1;
    CHECK_INT(sq_gguf_arr_get_float(g, sq_gguf_find_key(g, "tokenizer.ggml.scores"), 0, &d, &err), SQ_OK);
    CHECK(d == 0.0);
    CHECK_INT(sq_gguf_arr_get_float(g, tt, 0, &d, &err), SQ_ETYPE);

    /* tensors: shapes, types, offsets, and the data pointer really is the file's bytes */
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(t->n_dims, 2);
        CHECK_INT(t->ne[0], 512);
        CHECK_INT(t->ne[1], 4096);
        CHECK_INT(t->ne[2], 1);
        CHECK_INT(t->type, SQ_TYPE_F16);
        CHECK_INT(t->offset, 0);
        CHECK_INT(t->nbytes, 512 * 4096 * 2);
        CHECK(!t->smarterquant);
        CHECK_INT(sq_gguf_tensor_index(g, t), 0);
    }
    t = sq_gguf_find_tensor(g, "blk.3.ffn_down.weight");
    CHECK(t && t->ne[0] == 1536 && t->ne[1] == 512 && t->type == SQ_TYPE_F16 && t->offset == 27803648);
    t = sq_gguf_find_tensor(g, "output_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 512 && t->type == SQ_TYPE_F32 && t->nbytes == 2048);
    CHECK(sq_gguf_find_tensor(g, "nope") == NULL);
    CHECK(sq_gguf_tensor_at(g, 39) == NULL && sq_gguf_tensor_at(g, -1) == NULL);
    int n_f16 = 0, n_f32 = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor *x = sq_gguf_tensor_at(g, i);
        n_f16 += x->type == SQ_TYPE_F16;
        n_f32 += x->type == SQ_TYPE_F32;
        CHECK(sq_gguf_find_tensor(g, x->name) == x);
    }
    CHECK_INT(n_f16, 30); /* llama.cpp: "type f16: 30 tensors" */
    CHECK_INT(n_f32, 9);

    FILE *fp = fopen(sq_gguf_path(g), "rb");
    t = sq_gguf_find_tensor(g, "output.weight");
    if (fp && t) {
        unsigned char buf[64];
        fseek(fp, (long)(sq_gguf_data_offset(g) + t->offset), SEEK_SET);
        CHECK(fread(buf, 1, sizeof buf, fp) == sizeof buf && memcmp(buf, t->data, sizeof buf) == 0);
    }
    if (fp) fclose(fp);

    /* formatting */
    char out[256];
    sq_gguf_kv_format(g, sq_gguf_find_key(g, "general.architecture"), 8, 0, out, sizeof out);
    CHECK_STR(out, "\"llama\"");
    sq_gguf_kv_format(g, ki, 3, 0, out, sizeof out);
    CHECK_STR(out, "[\"<unk>\", \"<s>\", \"</s>\", ...]");
    sq_gguf_kv_format(g, sq_gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon"), 8, 0, out, sizeof out);
    CHECK_STR(out, "1e-05");
    const size_t need = sq_gguf_kv_format(g, ki, 0, SQ_GGUF_FMT_JSON, NULL, 0);
    char *all = malloc(need + 1);
    CHECK(sq_gguf_kv_format(g, ki, 0, SQ_GGUF_FMT_JSON, all, need + 1) == need);
    json_error_t je;
    json_t *arr = json_loads(all, 0, &je);
    CHECK_MSG(arr && json_is_array(arr) && json_array_size(arr) == 4096, "full token array is valid JSON: %s",
              je.text);
    json_decref(arr);
    free(all);
    sq_gguf_close(g);
}

/* ---- llama.cpp's Q4_K_M file against llama-quantize's log ---- */

static void test_q4km_against_log(void)
{
    char lp[1024];
    sq_gguf *g = open_shared("golden/llama.cpp/sqdemo-Q4_K_M-imatrix.gguf");
    if (!g || !harness_shared_file(lp, sizeof lp, "golden/llama.cpp/quantize-q4km.log")) {
        sq_gguf_close(g);
        SKIP("llama.cpp golden files absent");
    }
    CHECK_INT(sq_gguf_n_tensors(g), 39);
    CHECK_INT(sq_gguf_n_kv(g), 28);
    uint32_t ft = 0;
    CHECK_INT(sq_gguf_get_u32(g, "general.file_type", &ft, NULL), SQ_OK);
    CHECK_INT(ft, 15); /* LLAMA_FTYPE_MOSTLY_Q4_K_M */
    size_t n = 0;
    char *log = harness_read_file(lp, &n);
    CHECK(log != NULL);
    if (!log) {
        sq_gguf_close(g);
        return;
    }
    log = realloc(log, n + 1);
    log[n] = '\0';
    int seen = 0;
    uint64_t total = 0;
    for (char *p = log; (p = strstr(p, "/  39] ")) != NULL; p++) {
        char name[128], type[32];
        long ne[4];
        if (sscanf(p, "/  39] %127s - [ %ld, %ld, %ld, %ld], type = %31[^,]", name, &ne[0], &ne[1], &ne[2],
                   &ne[3], type) != 6)
            continue;
        /* the new type follows "converting to" before the tensor's "size =", else it is kept */
        char *conv = strstr(p, "converting to "), *size = strstr(p, "size =");
        if (conv && size && conv < size) sscanf(conv, "converting to %31[^ .]", type);
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, name);
        CHECK_MSG(t != NULL, "tensor %s from the log is in the file", name);
        if (!t) continue;
        CHECK_MSG(t->ne[0] == ne[0] && t->ne[1] == ne[1] && t->ne[2] == ne[2] && t->ne[3] == ne[3],
                  "%s shape", name);
        CHECK_MSG(strcmp(sq_type_name(t->type), type) == 0, "%s: type %s, log says %s", name,
                  sq_type_name(t->type), type);
        total += t->nbytes;
        seen++;
    }
    CHECK_INT(seen, 39);
    /* "quant size = 9.98 MiB" */
    CHECK_MSG(total > 9.975 * 1048576 && total < 9.985 * 1048576, "total %llu bytes", (unsigned long long)total);
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "blk.2.ffn_down.weight");
    CHECK(t && t->type == SQ_TYPE_Q6_K && t->nbytes == 512 * (1536 / 256) * 210);
    free(log);
    sq_gguf_close(g);
}

/* The demo model's metadata as llama.cpp's loader dumped it (quantize-q4km.log, "- kv N: KEY TYPE = VALUE"):
 * same index, key, type, array element type and count, and value. */
static void test_demo_kvs_against_llama_log(void)
{
    char lp[1024];
    sq_gguf *g = open_shared("models/sqdemo-f16.gguf");
    if (!g || !harness_shared_file(lp, sizeof lp, "golden/llama.cpp/quantize-q4km.log")) {
        sq_gguf_close(g);
        SKIP("demo model or quantize log absent");
    }
    size_t n = 0;
    char *log = harness_read_file(lp, &n);
    log = realloc(log, n + 1);
    log[n] = '\0';
    int seen = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        int idx;
        char key[256], type[64], value[256] = "";
        if (sscanf(line, "llama_model_loader: - kv %d: %255s %63s = %255[^\n]", &idx, key, type, value) < 3)
            continue;
        seen++;
        CHECK_MSG(idx < sq_gguf_n_kv(g) && strcmp(sq_gguf_key(g, idx), key) == 0, "kv %d is %s", idx, key);
        const sq_gguf_type t = sq_gguf_kv_type(g, idx);
        char mine[64];
        static const char *short_names[SQ_GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16", "i16", "u32", "i32", "f32",
                                                              "bool", "str", "arr", "u64", "i64", "f64"};
        if (t == SQ_GGUF_ARRAY)
            snprintf(mine, sizeof mine, "arr[%s,%llu]", short_names[sq_gguf_arr_type(g, idx)],
                     (unsigned long long)sq_gguf_arr_n(g, idx));
        else
            snprintf(mine, sizeof mine, "%s", short_names[t]);
        CHECK_MSG(strcmp(mine, type) == 0, "kv %s: type %s, llama.cpp says %s", key, mine, type);
        if (t == SQ_GGUF_UINT32) {
            uint32_t u = 0;
            sq_gguf_get_u32(g, key, &u, NULL);
            CHECK_MSG(u == strtoul(value, NULL, 10), "kv %s = %u, llama.cpp says %s", key, u, value);
        } else if (t == SQ_GGUF_FLOAT32) {
            float f = 0;
            sq_gguf_get_f32(g, key, &f, NULL);
            CHECK_NEAR(f, strtod(value, NULL), 1e-6 + 1e-6 * fabs(f));
        } else if (t == SQ_GGUF_BOOL) {
            bool b = false;
            sq_gguf_get_bool(g, key, &b, NULL);
            CHECK_STR(b ? "true" : "false", value);
        } else if (t == SQ_GGUF_STRING) {
            sq_gguf_str s = {0};
            sq_gguf_get_str(g, key, &s, NULL);
            /* llama.cpp cuts long strings and marks them with "..." */
            size_t cmp = strlen(value);
            if (cmp > 3 && strcmp(value + cmp - 3, "...") == 0) cmp -= 3;
            CHECK_MSG(s.len >= cmp && memcmp(s.ptr, value, cmp) == 0, "kv %s = %.*s, llama.cpp says %s", key,
                      (int)s.len, s.ptr, value);
        }
    }
    CHECK_INT(seen, 23);
    free(log);
    sq_gguf_close(g);
}

static void test_imatrix_and_vocab(void)
{
    sq_gguf *g = open_shared("golden/llama.cpp/sqdemo.imatrix.gguf");
    if (!g) SKIP("imatrix file absent");
    sq_error err = {0};
    CHECK_INT(sq_gguf_n_tensors(g), 56);
    CHECK_INT(sq_gguf_n_kv(g), 4);
    uint32_t cc = 0;
    CHECK_INT(sq_gguf_get_u32(g, "imatrix.chunk_count", &cc, &err), SQ_OK);
    CHECK_INT(cc, 214);
    int64_t ki;
    sq_gguf_type et;
    uint64_t n;
    CHECK_INT(sq_gguf_get_arr(g, "imatrix.datasets", &ki, &et, &n, &err), SQ_OK);
    CHECK(et == SQ_GGUF_STRING && n == 1);
    sq_gguf_str s = sq_gguf_arr_str(g, ki, 0);
    CHECK(s.len == 9 && memcmp(s.ptr, "calib.txt", 9) == 0);
    const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "blk.0.ffn_down.weight.in_sum2");
    CHECK(t && t->type == SQ_TYPE_F32 && t->ne[0] == 1536 && t->n_dims == 1);
    t = sq_gguf_find_tensor(g, "blk.3.ffn_up.weight.counts");
    CHECK(t && t->ne[0] == 1 && t->nbytes == 4);
    sq_gguf_close(g);

    static const struct {
        const char *file, *arch, *model;
        uint64_t tokens;
        int64_t n_kv;
    } vocab[] = {
        {"vocab/ggml-vocab-llama-bpe.gguf", "llama", "gpt2", 128256, 20},
        {"vocab/ggml-vocab-llama-spm.gguf", "llama", "llama", 32000, 22},
        {"vocab/ggml-vocab-phi-3.gguf", "phi3", "llama", 32064, 26},
    };
    for (size_t v = 0; v < sizeof vocab / sizeof vocab[0]; v++) {
        g = open_shared(vocab[v].file);
        if (!g) continue;
        CHECK_INT(sq_gguf_n_tensors(g), 0);
        CHECK_INT(sq_gguf_n_kv(g), vocab[v].n_kv);
        CHECK_INT(sq_gguf_get_str(g, "general.architecture", &s, &err), SQ_OK);
        CHECK(s.len == strlen(vocab[v].arch) && memcmp(s.ptr, vocab[v].arch, s.len) == 0);
        CHECK_INT(sq_gguf_get_str(g, "tokenizer.ggml.model", &s, &err), SQ_OK);
        CHECK(s.len == strlen(vocab[v].model) && memcmp(s.ptr, vocab[v].model, s.len) == 0);
        CHECK_INT(sq_gguf_get_arr(g, "tokenizer.ggml.tokens", &ki, &et, &n, &err), SQ_OK);
        CHECK_INT(n, vocab[v].tokens);
        s = sq_gguf_arr_str(g, ki, n - 1);
        CHECK(s.ptr != NULL);
        sq_gguf_close(g);
    }
    g = open_shared("vocab/ggml-vocab-llama-bpe.gguf");
    if (g) {
        CHECK_INT(sq_gguf_get_arr(g, "tokenizer.ggml.merges", &ki, &et, &n, &err), SQ_OK);
        CHECK_INT(n, 280147);
        s = sq_gguf_arr_str(g, ki, 4);
        CHECK(s.len == 3 && memcmp(s.ptr, "i n", 3) == 0);
        sq_gguf_close(g);
    }
}

/* ---- round trips ---- */

static void round_trip(const char *rel)
{
    char tmp[512], out[600];
    sq_gguf *g = open_shared(rel);
    if (!g) SKIP("%s absent", rel);
    if (!harness_tmpdir(tmp, sizeof tmp)) {
        sq_gguf_close(g);
        CHECK_MSG(0, "mkdtemp");
        return;
    }
    snprintf(out, sizeof out, "%s/copy.gguf", tmp);
    sq_error err = {0};
    CHECK_MSG(copy_file(g, out, &err) == SQ_OK, "copy %s: %s", rel, err.msg);
    CHECK_MSG(tu_files_equal(sq_gguf_path(g), out), "%s: copy is byte-identical", rel);
    CHECK_INT(tu_count_files(tmp, ""), 1); /* no temporary file left behind */
    sq_gguf_close(g);
    tu_rm_rf(tmp);
}

static void test_round_trip_demo(void) { round_trip("models/sqdemo-f16.gguf"); }
static void test_round_trip_q4km(void) { round_trip("golden/llama.cpp/sqdemo-Q4_K_M-imatrix.gguf"); }
static void test_round_trip_imatrix(void) { round_trip("golden/llama.cpp/sqdemo.imatrix.gguf"); }

/* ---- writer behaviour ---- */

static void test_writer_keys_and_alignment(void)
{
    char tmp[512], out[600];
    CHECK(harness_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/w.gguf", tmp);
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "general.architecture", "llama", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "a.u32", 7, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_i32(w, "a.i32", -7, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_f32(w, "a.f32", 0.25f, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_bool(w, "a.bool", true, &err), SQ_OK);
    const uint16_t u16s[3] = {1, 2, 65535};
    CHECK_INT(sq_gguf_writer_set_arr(w, "a.arr_u16", SQ_GGUF_UINT16, u16s, 3, &err), SQ_OK);
    const char *strs[3] = {"x", "", "zz"};
    CHECK_INT(sq_gguf_writer_set_arr_str(w, "a.arr_str", strs, 3, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "general.alignment", 64, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "general.alignment", 48, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "power of two");
    CHECK_INT(sq_gguf_writer_set_i32(w, "general.alignment", 64, &err), SQ_EINVAL);
    CHECK_INT(sq_gguf_writer_set_arr(w, "a.bad", SQ_GGUF_STRING, NULL, 0, &err), SQ_EINVAL);
    CHECK_INT(sq_gguf_writer_set_u32(w, "", 1, &err), SQ_EINVAL);
    /* replace in place: a.u32 keeps its position, changes type and value */
    CHECK_INT(sq_gguf_writer_set_str(w, "a.u32", "now a string", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "a.gone", 1, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_remove_key(w, "a.gone", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_remove_key(w, "a.gone", &err), SQ_ENOTFOUND);

    const int64_t ne1[1] = {3}, ne2[2] = {64, 2};
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t.small", 1, ne1, SQ_TYPE_F32, 12, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t.q8", 2, ne2, SQ_TYPE_Q8_0, 2 * 2 * 34, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t.small", 1, ne1, SQ_TYPE_F32, 12, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "duplicate tensor name");
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t.bad", 5, ne2, SQ_TYPE_F32, 0, &err), SQ_EINVAL);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t.bad", 1, ne1, 4, 0, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "unknown tensor type 4");
    char longname[80];
    memset(longname, 'n', 70);
    longname[70] = '\0';
    CHECK_INT(sq_gguf_writer_add_tensor(w, longname, 1, ne1, SQ_TYPE_F32, 12, &err), SQ_EINVAL);
    const float small[3] = {1, 2, 3};
    uint8_t q8[136];
    for (int i = 0; i < 136; i++) q8[i] = (uint8_t)i;
    CHECK_INT(sq_gguf_writer_write(w, small, sizeof small, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "late", 1, &err), SQ_EINVAL); /* frozen after data */
    CHECK_INT(sq_gguf_writer_write(w, q8, 100, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, q8 + 100, 36, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_OK);

    sq_gguf *g = NULL;
    CHECK_INT(sq_gguf_open(out, &g, &err), SQ_OK);
    if (g) {
        CHECK_INT(sq_gguf_alignment(g), 64);
        CHECK_INT(sq_gguf_data_offset(g) % 64, 0);
        CHECK_INT(sq_gguf_n_kv(g), 8);
        CHECK_STR(sq_gguf_key(g, 1), "a.u32");
        sq_gguf_str s;
        CHECK_INT(sq_gguf_get_str(g, "a.u32", &s, &err), SQ_OK);
        CHECK(s.len == 12 && memcmp(s.ptr, "now a string", 12) == 0);
        int64_t v;
        CHECK_INT(sq_gguf_get_i64(g, "a.i32", &v, &err), SQ_OK);
        CHECK_INT(v, -7);
        uint32_t u;
        CHECK_INT(sq_gguf_get_u32(g, "a.i32", &u, &err), SQ_ERANGE);
        CHECK_CONTAINS(err.msg, "does not fit in u32");
        float f;
        CHECK_INT(sq_gguf_get_f32(g, "a.f32", &f, &err), SQ_OK);
        CHECK(f == 0.25f);
        const int64_t ai = sq_gguf_find_key(g, "a.arr_u16");
        CHECK_INT(sq_gguf_arr_get_int(g, ai, 2, &v, &err), SQ_OK);
        CHECK_INT(v, 65535);
        const int64_t si = sq_gguf_find_key(g, "a.arr_str");
        CHECK_INT(sq_gguf_arr_n(g, si), 3);
        CHECK(sq_gguf_arr_str(g, si, 1).len == 0 && sq_gguf_arr_str(g, si, 1).ptr != NULL);
        CHECK(sq_gguf_arr_str(g, si, 2).len == 2);
        const sq_gguf_tensor *t = sq_gguf_find_tensor(g, "t.q8");
        CHECK(t && t->offset == 64 && t->nbytes == 136 && memcmp(t->data, q8, 136) == 0);
        t = sq_gguf_find_tensor(g, "t.small");
        CHECK(t && t->offset == 0 && memcmp(t->data, small, 12) == 0);
        CHECK_INT(sq_gguf_file_size(g), sq_gguf_data_offset(g) + 64 + 192); /* last tensor padded too */
        sq_gguf_close(g);
    }
    CHECK_INT(tu_count_files(tmp, ""), 1);
    tu_rm_rf(tmp);
}

/* A failed or aborted write leaves nothing behind, not even under the final name. */
static void test_writer_atomicity(void)
{
    char tmp[512], out[600];
    CHECK(harness_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/w.gguf", tmp);
    sq_error err = {0};
    const int64_t ne[2] = {32, 2};
    const uint8_t data[256] = {0};

    /* too little data */
    sq_gguf_writer *w = NULL;
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t", 2, ne, SQ_TYPE_F32, 256, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, data, 100, &err), SQ_OK);
    CHECK_INT(tu_count_files(tmp, ""), 1); /* the temporary file exists meanwhile */
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "got 100 of its 256 bytes");
    CHECK_INT(tu_count_files(tmp, ""), 0);
    CHECK(access(out, F_OK) != 0);

    /* too much data */
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t", 2, ne, SQ_TYPE_F32, 256, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, data, 200, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, data, 200, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "beyond the last tensor");
    CHECK_INT(tu_count_files(tmp, ""), 0);
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EIO);
    CHECK_INT(tu_count_files(tmp, ""), 0);

    /* declared size that disagrees with shape and type */
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t", 2, ne, SQ_TYPE_F32, 250, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, data, 250, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "declared 250 bytes but its shape and type need 256");
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EIO);
    CHECK_INT(tu_count_files(tmp, ""), 0);

    /* abort */
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "x", 1, &err), SQ_OK);
    sq_gguf_writer_abort(w);
    sq_gguf_writer_abort(NULL);
    CHECK_INT(tu_count_files(tmp, ""), 0);

    /* an existing file under the final name survives a failed write untouched */
    FILE *f = fopen(out, "wb");
    fputs("old", f);
    fclose(f);
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "t", 2, ne, SQ_TYPE_F32, 256, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EINVAL);
    size_t n = 0;
    char *old = harness_read_file(out, &n);
    CHECK(old && n == 3 && memcmp(old, "old", 3) == 0);
    free(old);
    CHECK_INT(tu_count_files(tmp, ""), 1);

    /* a directory that does not exist */
    snprintf(out, sizeof out, "%s/no/such/dir/w.gguf", tmp);
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_EIO);
    CHECK_CONTAINS(err.msg, "cannot create temporary file");
    tu_rm_rf(tmp);
}

/* ---- SmarterQuant sizes (spec sections 4 and 5) ---- */

static void test_smarterquant_sizes(void)
{
    char tmp[512], out[600];
    CHECK(harness_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/sq.gguf", tmp);
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    /* the worked example of spec section 4: C=1728, types [14,13,12,6], R=640 -> 761,600 bytes */
    CHECK_INT(sq_gguf_writer_set_bool(w, "blk.0.ffn_down.weight.smarterquant.enabled", true, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "blk.0.ffn_down.weight.smarterquant.permutation", "[]", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "blk.0.ffn_down.weight.smarterquant.block_types", " [14, 13,12,6] ", &err),
              SQ_OK);
    int32_t rev[512], inv[1728];
    for (int j = 0; j < 512; j++) rev[j] = 511 - j;
    const sq_gguf_sqmeta mb = {{8, 2, 2, 2}, rev, 512};
    CHECK_INT(sq_gguf_writer_set_sqmeta(w, "b", &mb, &err), SQ_OK);
    CHECK(sq_gguf_writer_has_sqmeta(w, "b") && !sq_gguf_writer_has_sqmeta(w, "c"));
    CHECK_INT(sq_gguf_writer_set_bool(w, "c.smarterquant.enabled", false, &err), SQ_OK); /* not SQ */
    const int64_t ne_a[2] = {1728, 640}, ne_b[2] = {512, 3}, ne_c[2] = {512, 3};
    const uint64_t na = 761600, nb = 3 * (272 + 144), nc = 3 * 16 * 18;
    CHECK_INT(sq_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", 2, ne_a, SQ_TYPE_Q5_0, na, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "b", 2, ne_b, SQ_TYPE_Q4_0, nb, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "c", 2, ne_c, SQ_TYPE_Q4_0, nc, &err), SQ_OK);
    uint8_t *buf = calloc(1, na);
    for (uint64_t i = 0; i < na; i++) buf[i] = (uint8_t)(i * 7);
    CHECK_INT(sq_gguf_writer_write(w, buf, na, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, buf, nb, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_write(w, buf + 1, nc, &err), SQ_OK);
    CHECK_MSG(sq_gguf_writer_finish(w, &err) == SQ_OK, "finish: %s", err.msg);

    sq_gguf *g = NULL;
    CHECK_MSG(sq_gguf_open(out, &g, &err) == SQ_OK, "open: %s", err.msg);
    if (g) {
        const sq_gguf_tensor *a = sq_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        const sq_gguf_tensor *b = sq_gguf_find_tensor(g, "b"), *c = sq_gguf_find_tensor(g, "c");
        CHECK(a && a->smarterquant && a->nbytes == na && a->type == SQ_TYPE_Q5_0);
        CHECK(a && a->sq.types[0] == 14 && a->sq.types[1] == 13 && a->sq.types[2] == 12 && a->sq.types[3] == 6);
        CHECK(a && a->sq.perm == NULL && a->sq.n_cols == 1728);
        CHECK(b && b->smarterquant && b->nbytes == nb && b->offset == (na + 31) / 32 * 32);
        CHECK(b && b->sq.perm && b->sq.n_cols == 512 && memcmp(b->sq.perm, rev, sizeof rev) == 0);
        CHECK(b && !memcmp(b->sq.types, mb.types, sizeof mb.types));
        /* the inverse: where each original column is stored (identity without a permutation) */
        if (b) sq_gguf_sqmeta_inverse(&b->sq, inv);
        bool ok = true;
        for (int j = 0; j < 512; j++) ok = ok && inv[rev[j]] == j;
        CHECK(b && ok);
        if (a) sq_gguf_sqmeta_inverse(&a->sq, inv);
        for (int j = 0; j < 1728; j++) ok = ok && inv[j] == j;
        CHECK(a && ok);
        CHECK(c && !c->smarterquant && c->nbytes == nc && c->offset == b->offset + (nb + 31) / 32 * 32);
        CHECK(a && memcmp(a->data, buf, na) == 0);
        CHECK(c && memcmp(c->data, buf + 1, nc) == 0);
        sq_gguf_close(g);
    }

    /* the writer refuses sizes that ignore the block types, and bad block_types */
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_bool(w, "b.smarterquant.enabled", true, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "b.smarterquant.block_types", "[8,2,2,2]", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "b", 2, ne_b, SQ_TYPE_Q4_0, nc, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "(smarterquant block_types) need 1248");
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_bool(w, "b.smarterquant.enabled", true, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "b.smarterquant.block_types", "[8,2,2]", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "b", 2, ne_b, SQ_TYPE_Q4_0, nb, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "bad smarterquant block_types");
    /* nor a permutation the reader would refuse: wrong length, not a string, a duplicate */
    static const struct {
        const char *perm;
        const char *want;
    } badp[] = {{"[1,0,2]", "permutation has 3 entries, but the tensor has 512 columns"},
                {NULL, "bad smarterquant permutation: key 'b.smarterquant.permutation' must be a string, not u32"}};
    for (int k = 0; k < 2; k++) {
        CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
        CHECK_INT(sq_gguf_writer_set_sqmeta(w, "b", &mb, &err), SQ_OK);
        if (badp[k].perm) CHECK_INT(sq_gguf_writer_set_str(w, "b.smarterquant.permutation", badp[k].perm, &err), SQ_OK);
        else CHECK_INT(sq_gguf_writer_set_u32(w, "b.smarterquant.permutation", 7, &err), SQ_OK);
        CHECK_INT(sq_gguf_writer_add_tensor(w, "b", 2, ne_b, SQ_TYPE_Q4_0, nb, &err), SQ_OK);
        CHECK_INT(sq_gguf_writer_finish(w, &err), SQ_EINVAL);
        CHECK_CONTAINS(err.msg, badp[k].want);
    }
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    rev[9] = rev[10];
    CHECK_INT(sq_gguf_writer_set_sqmeta(w, "b", &mb, &err), SQ_EINVAL);
    CHECK_CONTAINS(err.msg, "tensor 'b': permutation index 10: value 501 is a duplicate (already at index 9)");
    rev[9] = 502;
    sq_gguf_writer_abort(w);
    /* the good file from above is still there, untouched */
    CHECK(sq_gguf_open(out, &g, &err) == SQ_OK);
    sq_gguf_close(g);
    CHECK_INT(tu_count_files(tmp, ""), 1);
    free(buf);
    tu_rm_rf(tmp);
}

/* sq_gguf_sqmeta_kv_bytes is what the three keys add to a header: a file
 * with alignment 1 (so the data starts right after the header) written with
 * and without them. The bound for no permutation holds for every type. */
static void test_sqmeta_kv_bytes(void)
{
    char tmp[512], out[600];
    CHECK(harness_tmpdir(tmp, sizeof tmp) != NULL);
    int32_t perm[640];
    for (int j = 0; j < 640; j++) perm[j] = (j * 7) % 640;
    const sq_gguf_sqmeta metas[3] = {{{14, 13, 8, 8}, perm, 640}, {{14, 2, 8, 8}, NULL, 640}, {{0, 0, 0, 0}, NULL, 640}};
    const char *name = "blk.17.ffn_down.weight";
    uint64_t data_at[4] = {0};
    for (int k = 0; k < 4; k++) {
        snprintf(out, sizeof out, "%s/kv%d.gguf", tmp, k);
        sq_error err = {0};
        sq_gguf_writer *w = NULL;
        CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
        CHECK_INT(sq_gguf_writer_set_u32(w, "general.alignment", 1, &err), SQ_OK);
        if (k < 3) CHECK_INT(sq_gguf_writer_set_sqmeta(w, name, &metas[k], &err), SQ_OK);
        const int64_t ne[2] = {640, 1};
        uint64_t nbytes = sq_row_size(SQ_TYPE_Q8_0, 640);
        if (k < 3) {
            size_t rb = 0;
            CHECK_INT(sq_mixed_row_bytes(metas[k].types, 640, &rb, &err), SQ_OK);
            nbytes = rb;
        }
        CHECK_INT(sq_gguf_writer_add_tensor(w, name, 2, ne, k < 3 ? metas[k].types[3] : SQ_TYPE_Q8_0, nbytes, &err),
                  SQ_OK);
        uint8_t *z = calloc(1, nbytes);
        CHECK_INT(sq_gguf_writer_write(w, z, nbytes, &err), SQ_OK);
        free(z);
        CHECK_MSG(sq_gguf_writer_finish(w, &err) == SQ_OK, "%s", err.msg);
        sq_gguf *g = NULL;
        CHECK_MSG(sq_gguf_open(out, &g, &err) == SQ_OK, "%s", err.msg);
        data_at[k] = sq_gguf_data_offset(g);
        sq_gguf_close(g);
    }
    for (int k = 0; k < 3; k++) {
        CHECK_MSG(data_at[k] - data_at[3] == sq_gguf_sqmeta_kv_bytes(name, &metas[k]), "meta %d: %llu bytes, said %llu",
                  k, (unsigned long long)(data_at[k] - data_at[3]),
                  (unsigned long long)sq_gguf_sqmeta_kv_bytes(name, &metas[k]));
    }
    CHECK(sq_gguf_sqmeta_kv_bytes(name, &metas[0]) > sq_gguf_sqmeta_kv_bytes(name, &metas[1]));
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_gguf_sqmeta m = {{t, t, t, t}, NULL, 640};
        CHECK(sq_gguf_sqmeta_kv_bytes(name, &m) <= sq_gguf_sqmeta_kv_bytes(name, NULL));
    }
    tu_rm_rf(tmp);
}

/* ---- sq inspect ---- */

static void test_inspect_tool(void)
{
    char path[1024], cmd[2300];
    if (access(harness_sq_bin(), X_OK) != 0) SKIP("sq binary not built");
    int rc;
    snprintf(cmd, sizeof cmd, "%s inspect --help", harness_sq_bin());
    char *o = tu_popen_read(cmd, &rc);
    CHECK(rc == 0 && o && strstr(o, "--full") && strstr(o, "--json"));
    free(o);
    snprintf(cmd, sizeof cmd, "%s inspect /nonexistent.gguf 2>&1", harness_sq_bin());
    o = tu_popen_read(cmd, &rc);
    CHECK(rc != 0 && o && strstr(o, "cannot open"));
    free(o);

    if (!harness_shared_file(path, sizeof path, "golden/llama.cpp/sqdemo-Q4_K_M-imatrix.gguf"))
        SKIP("../shared absent");
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", harness_sq_bin(), path);
    o = tu_popen_read(cmd, &rc);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(o, "GGUF v3, 28 key/values, 39 tensors, alignment 32");
    CHECK_CONTAINS(o, "tokenizer.ggml.tokens");
    CHECK_CONTAINS(o, "array[string,4096]");
    CHECK_CONTAINS(o, "\"<unk>\", \"<s>\"");
    CHECK_CONTAINS(o, ", ...]");
    CHECK_CONTAINS(o, "blk.2.ffn_down.weight");
    CHECK_CONTAINS(o, "bits per weight");
    free(o);

    snprintf(cmd, sizeof cmd, "%s inspect --json '%s'", harness_sq_bin(), path);
    o = tu_popen_read(cmd, &rc);
    CHECK_INT(rc, 0);
    json_error_t je;
    json_t *j = o ? json_loads(o, 0, &je) : NULL;
    CHECK_MSG(j != NULL, "inspect --json output is JSON: %s", o ? je.text : "no output");
    if (j) {
        CHECK_INT(json_integer_value(json_object_get(j, "n_tensors")), 39);
        CHECK_INT(json_integer_value(json_object_get(j, "version")), 3);
        json_t *kv = json_object_get(j, "kv");
        CHECK_INT(json_array_size(kv), 28);
        json_t *tok = NULL;
        for (size_t k = 0; k < json_array_size(kv); k++)
            if (!strcmp(json_string_value(json_object_get(json_array_get(kv, k), "key")), "tokenizer.ggml.tokens"))
                tok = json_array_get(kv, k);
        CHECK_STR(json_string_value(json_object_get(tok, "key")), "tokenizer.ggml.tokens");
        CHECK_INT(json_integer_value(json_object_get(tok, "n")), 4096);
        CHECK(json_is_true(json_object_get(tok, "truncated")));
        CHECK_STR(json_string_value(json_array_get(json_object_get(tok, "value"), 1)), "<s>");
        json_t *ts = json_object_get(j, "tensors");
        CHECK_INT(json_array_size(ts), 39);
        json_t *t0 = json_array_get(ts, 0);
        CHECK_STR(json_string_value(json_object_get(t0, "name")), "output.weight");
        CHECK_STR(json_string_value(json_object_get(t0, "type")), "q6_K");
        CHECK_INT(json_integer_value(json_array_get(json_object_get(t0, "shape"), 1)), 4096);
        json_t *sum = json_object_get(j, "summary");
        CHECK_INT(json_integer_value(json_object_get(sum, "weight_tensors")), 30);
        const double bpw = json_real_value(json_object_get(sum, "bits_per_weight"));
        CHECK_MSG(bpw > 4.9 && bpw < 5.1, "bpw %g", bpw);
        json_decref(j);
    }
    free(o);

    /* --full --json on the biggest vocabulary: every one of the 280147 merges */
    if (harness_shared_file(path, sizeof path, "vocab/ggml-vocab-llama-bpe.gguf")) {
        snprintf(cmd, sizeof cmd, "%s inspect --json --full '%s'", harness_sq_bin(), path);
        o = tu_popen_read(cmd, &rc);
        j = o ? json_loads(o, 0, &je) : NULL;
        CHECK_MSG(rc == 0 && j != NULL, "bpe --full --json parses: %s", je.text);
        if (j) {
            json_t *m = json_array_get(json_object_get(j, "kv"), 17);
            CHECK_STR(json_string_value(json_object_get(m, "key")), "tokenizer.ggml.merges");
            CHECK_INT(json_array_size(json_object_get(m, "value")), 280147);
            CHECK(json_is_false(json_object_get(m, "truncated")));
            json_decref(j);
        }
        free(o);
    }
}

/* inspect of a SmarterQuant file shows block types and the permutation flag */
static void test_inspect_smarterquant(void)
{
    char tmp[512], out[600], cmd[1400];
    if (access(harness_sq_bin(), X_OK) != 0) SKIP("sq binary not built");
    CHECK(harness_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(out, sizeof out, "%s/sq.gguf", tmp);
    sq_error err = {0};
    sq_gguf_writer *w = NULL;
    CHECK_INT(sq_gguf_writer_open(out, &w, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_u32(w, "esc\x1b[31mkey", 1, &err), SQ_OK); /* must not reach the terminal raw */
    int32_t perm[300];
    for (int j = 0; j < 300; j++) perm[j] = (j + 1) % 300;
    const sq_gguf_sqmeta mp = {{0, 1, 1, 1}, perm, 300};
    CHECK_INT(sq_gguf_writer_set_sqmeta(w, "p", &mp, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_bool(w, "u.smarterquant.enabled", true, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "u.smarterquant.permutation", "[]", &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_set_str(w, "u.smarterquant.block_types", "[1,0,0,0]", &err), SQ_OK);
    const int64_t ne[2] = {300, 2};
    const uint64_t np = 2 * (256 * 4 + 44 * 2), nu = 2 * (256 * 2 + 44 * 4);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "p", 2, ne, SQ_TYPE_F16, np, &err), SQ_OK);
    CHECK_INT(sq_gguf_writer_add_tensor(w, "u", 2, ne, SQ_TYPE_F32, nu, &err), SQ_OK);
    uint8_t *z = calloc(1, np + nu);
    CHECK_INT(sq_gguf_writer_write(w, z, np + nu, &err), SQ_OK);
    CHECK_MSG(sq_gguf_writer_finish(w, &err) == SQ_OK, "%s", err.msg);
    free(z);
    int rc;
    snprintf(cmd, sizeof cmd, "%s inspect '%s'", harness_sq_bin(), out);
    char *o = tu_popen_read(cmd, &rc);
    CHECK_INT(rc, 0);
    CHECK_CONTAINS(o, "smarterquant [f32, f16, f16, f16] permuted");
    CHECK_CONTAINS(o, "smarterquant [f16, f32, f32, f32] not permuted");
    CHECK_CONTAINS(o, "2 tensors (2 smarterquant)");
    CHECK_CONTAINS(o, "\"esc\\x1b[31mkey\"");
    CHECK(o && strchr(o, 0x1b) == NULL);
    free(o);
    snprintf(cmd, sizeof cmd, "%s inspect --json '%s'", harness_sq_bin(), out);
    o = tu_popen_read(cmd, &rc);
    json_error_t je;
    json_t *j = o ? json_loads(o, 0, &je) : NULL;
    CHECK(j != NULL);
    if (j) {
        json_t *sq = json_object_get(json_array_get(json_object_get(j, "tensors"), 0), "smarterquant");
        CHECK(json_is_true(json_object_get(sq, "permuted")));
        CHECK_INT(json_integer_value(json_array_get(json_object_get(sq, "block_types"), 1)), 1);
        CHECK_INT(json_integer_value(json_object_get(json_array_get(json_object_get(j, "tensors"), 0), "bytes")),
                  np);
        json_decref(j);
    }
    free(o);
    tu_rm_rf(tmp);
}

/* ---- sq_gguf_prefault ---- */

/* The process's resident file-backed memory in kB (/proc/self/status RssFile), -1 if unknown. */
static long rss_file_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssFile: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* A position-weighted sum of the bytes of g's last tensor (reads every one). */
static uint64_t last_tensor_sum(const sq_gguf *g)
{
    const sq_gguf_tensor *t = sq_gguf_tensor_at(g, sq_gguf_n_tensors(g) - 1);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < t->nbytes; i++) sum += ((const uint8_t *)t->data)[i] * (i % 251 + 1);
    return sum;
}

/* A fresh map has only the pages the parse touched; prefault maps in (nearly)
 * all of the file at once, and the bytes read the same. NULL is a no-op. */
static void test_prefault(void)
{
    sq_gguf_prefault(NULL);
    sq_gguf *g = open_shared("models/sqdemo-f16.gguf");
    if (!g) return;
    const long before = rss_file_kb();
    if (before < 0) {
        sq_gguf_close(g);
        SKIP("no RssFile in /proc/self/status");
    }
    sq_gguf_prefault(g);
    const long after = rss_file_kb();
    const uint64_t sum_prefaulted = last_tensor_sum(g);
    const long file_kb = (long)(sq_gguf_file_size(g) / 1024);
    CHECK_MSG(after - before >= file_kb * 9 / 10, "prefault mapped %ld kB of a %ld kB file", after - before, file_kb);
    sq_gguf_close(g);
    /* the same bytes through a map that was never prefaulted */
    g = open_shared("models/sqdemo-f16.gguf");
    if (!g) return;
    CHECK(last_tensor_sum(g) == sum_prefaulted);
    sq_gguf_close(g);
}

int main(void)
{
    RUN(test_demo_model);
    RUN(test_q4km_against_log);
    RUN(test_demo_kvs_against_llama_log);
    RUN(test_imatrix_and_vocab);
    RUN(test_round_trip_demo);
    RUN(test_round_trip_q4km);
    RUN(test_round_trip_imatrix);
    RUN(test_writer_keys_and_alignment);
    RUN(test_writer_atomicity);
    RUN(test_smarterquant_sizes);
    RUN(test_sqmeta_kv_bytes);
    RUN(test_inspect_tool);
    RUN(test_inspect_smarterquant);
    RUN(test_prefault);
    return harness_finish("gguf");
}
