/*
 * test_imatrix.c — importance matrices: the legacy .dat parser (values,
 * trailer, every malformation with its message), llama.cpp's GGUF file of
 * the demo model, and the GGUF writer read back.
 */
#include <unistd.h>

#include "harness.h"
#include "sq/gguf.h"
#include "sq/imatrix.h"

/* A little-endian byte builder for .dat files. */
typedef struct buf {
    unsigned char b[4096];
    size_t n;
} buf;

static void put_i32(buf *b, int32_t v)
{
    memcpy(b->b + b->n, &v, 4);
    b->n += 4;
}
static void put_bytes(buf *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put_entry(buf *b, const char *name, int32_t ncall, const float *v, int32_t n)
{
    put_i32(b, (int32_t)strlen(name));
    put_bytes(b, name, strlen(name));
    put_i32(b, ncall);
    put_i32(b, n);
    put_bytes(b, v, (size_t)n * 4);
}

static void test_dat_values(void)
{
    const float a[4] = {1.0f, 2.0f, 3.0f, 10.0f}, z[2] = {0.25f, 0.5f};
    buf b = {.n = 0};
    put_i32(&b, 2);
    put_entry(&b, "blk.0.attn_q.weight", 3, a, 4);
    put_entry(&b, "blk.0.ffn_down.weight", 0, z, 2); /* ncall 0: values kept as they are */
    sq_imatrix *im = NULL;
    sq_error e = {0};
    CHECK_INT(sq_imatrix_parse(b.b, b.n, "t.dat", &im, &e), SQ_OK);
    CHECK_INT(sq_imatrix_n_entries(im), 2);
    CHECK(sq_imatrix_is_legacy(im));
    int64_t n = 0;
    const float *v = sq_imatrix_find(im, "blk.0.attn_q.weight", &n);
    CHECK(v != NULL);
    CHECK_INT(n, 4);
    if (v) {
        CHECK(v[0] == 1.0f / 3.0f && v[1] == 2.0f / 3.0f && v[2] == 1.0f && v[3] == 10.0f / 3.0f);
    }
    v = sq_imatrix_find(im, "blk.0.ffn_down.weight", &n);
    CHECK(v && n == 2 && v[0] == 0.25f && v[1] == 0.5f);
    CHECK(sq_imatrix_find(im, "blk.1.attn_q.weight", &n) == NULL);
    CHECK_INT(sq_imatrix_n_datasets(im), 0);
    CHECK_INT(sq_imatrix_chunk_count(im), 0);
    sq_imatrix_free(im);

    /* with the optional trailer */
    put_i32(&b, 214);
    put_i32(&b, 9);
    put_bytes(&b, "calib.txt", 9);
    CHECK_INT(sq_imatrix_parse_dat(b.b, b.n, "t.dat", &im, &e), SQ_OK);
    CHECK_INT(sq_imatrix_chunk_count(im), 214);
    CHECK_INT(sq_imatrix_n_datasets(im), 1);
    CHECK_STR(sq_imatrix_dataset(im, 0), "calib.txt");
    sq_imatrix_free(im);
    sq_imatrix_free(NULL);
}

/* Each malformation: the status, a phrase of the message, and the file name in it. */
static void expect_bad(const buf *b, const char *phrase)
{
    sq_imatrix *im = NULL;
    sq_error e = {0};
    sq_status st = sq_imatrix_parse(b->b, b->n, "bad.dat", &im, &e);
    CHECK_MSG(st == SQ_EFORMAT, "'%s': status %d", phrase, (int)st);
    CHECK(im == NULL);
    CHECK_CONTAINS(e.msg, "bad.dat");
    CHECK_CONTAINS(e.msg, phrase);
}

static void test_dat_errors(void)
{
    const float a[2] = {1, 2};
    buf b;
    b.n = 0;
    put_bytes(&b, "ab", 2);
    expect_bad(&b, "too short");
    b.n = 0;
    put_i32(&b, 0);
    expect_bad(&b, "not positive");
    b.n = 0;
    put_i32(&b, 1000000);
    put_entry(&b, "x", 1, a, 2);
    expect_bad(&b, "does not fit");
    b.n = 0;
    put_i32(&b, 2);
    put_entry(&b, "x", 1, a, 2);
    expect_bad(&b, "entry 2: truncated");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 900);
    put_bytes(&b, "abcd", 4);
    expect_bad(&b, "bad name length 900");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 1);
    put_bytes(&b, "x", 1);
    put_i32(&b, 1);
    put_i32(&b, 50);
    put_bytes(&b, a, 8);
    expect_bad(&b, "runs past the end");
    b.n = 0;
    put_i32(&b, 1);
    put_i32(&b, 1);
    put_bytes(&b, "x", 1);
    put_i32(&b, 1);
    put_i32(&b, -3);
    expect_bad(&b, "value count -3 is not positive");
    b.n = 0;
    put_i32(&b, 2);
    put_entry(&b, "dup", 1, a, 2);
    put_entry(&b, "dup", 1, a, 2);
    expect_bad(&b, "appears twice");
    const float nan_v[2] = {1.0f, NAN};
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, nan_v, 2);
    expect_bad(&b, "non-finite");
    b.n = 0;
    put_i32(&b, 1);
    put_entry(&b, "w", 1, a, 2);
    put_i32(&b, 5);
    put_i32(&b, 100);
    put_bytes(&b, "short", 5);
    expect_bad(&b, "dataset name length 100");

    sq_imatrix *im = NULL;
    sq_error e = {0};
    CHECK_INT(sq_imatrix_load("/nonexistent/im.dat", &im, &e), SQ_EIO);
    CHECK_CONTAINS(e.msg, "/nonexistent/im.dat");
}

static void test_gguf_demo(void)
{
    char path[1024];
    if (!harness_shared_file(path, sizeof path, "golden/llama.cpp/sqdemo.imatrix.gguf"))
        SKIP("../shared/golden/llama.cpp/sqdemo.imatrix.gguf absent");
    sq_imatrix *im = NULL;
    sq_error e = {0};
    sq_status st = sq_imatrix_load(path, &im, &e);
    if (st == SQ_EUNSUPPORTED) SKIP("GGUF reader not in this build: %s", e.msg);
    CHECK_INT(st, SQ_OK);
    if (st != SQ_OK) {
        fprintf(stderr, "  %s\n", e.msg);
        return;
    }
    /* imatrix.log: 28 entries computed on 214 chunks of 512 from calib.txt */
    CHECK_INT(sq_imatrix_n_entries(im), 28);
    CHECK_INT(sq_imatrix_chunk_count(im), 214);
    CHECK_INT(sq_imatrix_chunk_size(im), 512);
    CHECK_INT(sq_imatrix_n_datasets(im), 1);
    CHECK_STR(sq_imatrix_dataset(im, 0), "calib.txt");
    CHECK(!sq_imatrix_is_legacy(im));
    int64_t n = 0;
    const float *v = sq_imatrix_find(im, "blk.3.ffn_down.weight", &n);
    CHECK(v != NULL && n == 1536);
    CHECK(sq_imatrix_find(im, "output.weight", &n) == NULL);
    CHECK(sq_imatrix_find(im, "token_embd.weight", &n) == NULL);
    v = sq_imatrix_find(im, "blk.0.attn_q.weight", &n);
    CHECK(v != NULL && n == 512);
    int positive = 0;
    for (int64_t i = 0; v && i < n; i++) positive += v[i] > 0.0f && isfinite(v[i]);
    CHECK_INT(positive, 512);
    sq_imatrix_free(im);
}

static void test_gguf_write_read(void)
{
    char dir[256], path[512];
    if (!harness_tmpdir(dir, sizeof dir)) SKIP("no temporary directory");
    snprintf(path, sizeof path, "%s/im.gguf", dir);
    float s1[6] = {2, 4, 6, 8, 10, 12}, c1[1] = {2};
    float s2[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c2[2] = {4, 0}; /* two experts, the second never routed */
    /* given out of order: the writer sorts by name */
    const sq_imatrix_stat stats[2] = {{"blk.0.ffn_down_exps.weight", s2, c2, 4, 2}, {"blk.0.attn_q.weight", s1, c1, 6, 1}};
    const char *ds[] = {"calib.txt"};
    sq_error e = {0};
    sq_status st = sq_imatrix_write_gguf(path, stats, 2, ds, 1, 7, 512, &e);
    if (st == SQ_EUNSUPPORTED) {
        remove(dir);
        SKIP("GGUF writer not in this build: %s", e.msg);
    }
    CHECK_INT(st, SQ_OK);
    sq_imatrix *im = NULL;
    CHECK_INT(sq_imatrix_load(path, &im, &e), SQ_OK);
    CHECK_INT(sq_imatrix_n_entries(im), 2);
    /* stored sorted by name, as llama-imatrix does: the expert entry first */
    CHECK_STR(sq_imatrix_entry_name(im, 0), "blk.0.attn_q.weight");
    sq_gguf *gg = NULL;
    if (sq_gguf_open(path, &gg, &e) == SQ_OK) {
        CHECK_INT(sq_gguf_n_tensors(gg), 4);
        CHECK_STR(sq_gguf_tensor_at(gg, 0)->name, "blk.0.attn_q.weight.in_sum2");
        CHECK_STR(sq_gguf_tensor_at(gg, 1)->name, "blk.0.attn_q.weight.counts");
        CHECK_STR(sq_gguf_tensor_at(gg, 2)->name, "blk.0.ffn_down_exps.weight.in_sum2");
        CHECK_INT(sq_gguf_tensor_at(gg, 2)->ne[1], 2);
        sq_gguf_str gt = {0};
        CHECK(sq_gguf_get_str(gg, "general.type", &gt, &e) == SQ_OK && gt.len == 7 && !memcmp(gt.ptr, "imatrix", 7));
        sq_gguf_close(gg);
    }
    CHECK_INT(sq_imatrix_chunk_count(im), 7);
    CHECK_INT(sq_imatrix_chunk_size(im), 512);
    CHECK_STR(sq_imatrix_dataset(im, 0), "calib.txt");
    int64_t n = 0;
    const float *v = sq_imatrix_find(im, "blk.0.attn_q.weight", &n);
    CHECK(v && n == 6 && v[0] == 1.0f && v[5] == 6.0f);
    v = sq_imatrix_find(im, "blk.0.ffn_down_exps.weight", &n);
    CHECK(v && n == 8 && v[0] == 0.25f && v[3] == 1.0f && v[4] == 1.0f && v[7] == 1.0f);
    sq_imatrix_free(im);
    remove(path);
    /* the same weight twice is refused, and nothing is written */
    const sq_imatrix_stat twice[2] = {{"w", s1, c1, 6, 1}, {"w", s1, c1, 6, 1}};
    CHECK_INT(sq_imatrix_write_gguf(path, twice, 2, ds, 1, 7, 512, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "given twice");
    CHECK(access(path, F_OK) != 0);
    remove(dir);
}

int main(void)
{
    RUN(test_dat_values);
    RUN(test_dat_errors);
    RUN(test_gguf_demo);
    RUN(test_gguf_write_read);
    return harness_finish("imatrix");
}
