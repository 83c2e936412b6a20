/*
 * test_base.c — error messages, fp16/bf16 rounding, the type table and the
 * SmarterQuant row geometry of spec section 4.
 */
#include "harness.h"
#include "sq/base.h"
#include "sq/types.h"

static void test_error(void)
{
    sq_error e = {0};
    CHECK_INT(sq_error_set(&e, SQ_EFORMAT, "bad %s at %d", "count", 12), SQ_EFORMAT);
    CHECK_STR(e.msg, "bad count at 12");
    sq_error_prefix(&e, "file %s", "x.gguf");
    CHECK_STR(e.msg, "file x.gguf: bad count at 12");
    CHECK_INT(sq_error_set(NULL, SQ_EIO, "ignored"), SQ_EIO);
}

static void test_fp16(void)
{
    CHECK_INT(sq_f32_to_fp16(1.0f), 0x3c00);
    CHECK_INT(sq_f32_to_fp16(-2.0f), 0xc000);
    CHECK_INT(sq_f32_to_fp16(65504.0f), 0x7bff);
    CHECK_INT(sq_f32_to_fp16(1e6f), 0x7c00);          /* overflow to inf */
    CHECK_INT(sq_f32_to_fp16(5.9604645e-8f), 0x0001); /* smallest subnormal */
    /* ties to even: 1 + 2^-11 lies halfway between 1 and 1+2^-10 */
    CHECK_INT(sq_f32_to_fp16(1.0f + 1.0f / 2048), 0x3c00);
    CHECK_INT(sq_f32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);
    /* every half round-trips exactly */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN */
        if (sq_f32_to_fp16(sq_fp16_to_f32((sq_fp16)h)) != h) bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(sq_f32_to_bf16(1.0f), 0x3f80);
    CHECK(sq_bf16_to_f32(0x3f80) == 1.0f);
    CHECK_INT(sq_f32_to_bf16(1.00390625f), 0x3f80); /* halfway: ties to even */
}

static void test_types(void)
{
    CHECK_STR(sq_type_name(12), "q4_K");
    CHECK_INT(sq_type_from_name("Q4_K"), 12);
    CHECK_INT(sq_type_from_name("iq4_xs"), 23);
    CHECK_INT(sq_type_from_name("nope"), -1);
    CHECK(sq_type_info_get(4) == NULL);
    CHECK(sq_type_info_get(31) == NULL);
    CHECK(sq_type_info_get(43) == NULL);
    CHECK(!sq_type_info_get(SQ_TYPE_Q8_1)->is_weight);
    CHECK_INT(sq_row_size(SQ_TYPE_Q4_K, 512), 288);
    CHECK_INT(sq_row_size(SQ_TYPE_Q4_K, 100), 0);
    CHECK_INT(sq_row_size(SQ_TYPE_F16, 7), 14);
}

static void test_mixed_geometry(void)
{
    /* spec section 4, worked example */
    int types[4] = {14, 13, 12, 6};
    size_t rb = 0;
    sq_error e = {0};
    CHECK_INT(sq_mixed_row_bytes(types, 1728, &rb, &e), SQ_OK);
    CHECK_INT(rb, 1190);
    CHECK_INT(sq_n_segments(1728), 7);
    CHECK_INT(sq_segment_len(1728, 6), 192);
    int bad[4] = {14, 13, 12, 12};
    CHECK_INT(sq_mixed_row_bytes(bad, 1728, &rb, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "segment 6");
    int act[4] = {9, 9, 9, 9};
    CHECK_INT(sq_mixed_row_bytes(act, 512, &rb, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "not usable for weights");

    /* every segment count against a loop over the segments (the function
     * counts the middle ones by one multiplication) */
    static const int mix[][4] = {{14, 13, 12, 6}, {8, 2, 3, 7}, {0, 1, 30, 8}, {12, 12, 12, 2}};
    for (int m = 0; m < 4; m++)
        for (int64_t C = 32; C <= 12 * 256; C += 32) {
            size_t want = 0;
            bool ok = true;
            for (int64_t s = 0; s < sq_n_segments(C); s++) {
                const size_t b = sq_row_size(sq_segment_type(mix[m], s), sq_segment_len(C, s));
                ok = ok && b > 0;
                want += b;
            }
            const sq_status st = sq_mixed_row_bytes(mix[m], C, &rb, &e);
            CHECK_MSG(ok ? st == SQ_OK && rb == want : st == SQ_EINVAL, "types %d: C %lld: status %d, %zu bytes, want %zu",
                      m, (long long)C, st, rb, want);
        }
    /* a row of 2^50 columns (a hostile header) in no time; one of 2^62 F32 overflows */
    const int f32[4] = {0, 0, 0, 0};
    CHECK_INT(sq_mixed_row_bytes(f32, (int64_t)1 << 50, &rb, &e), SQ_OK);
    CHECK(rb == (size_t)4 << 50);
    CHECK_INT(sq_mixed_row_bytes(f32, (int64_t)1 << 62, &rb, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "overflows");
    CHECK_INT(sq_mixed_row_bytes(f32, 0, &rb, &e), SQ_EINVAL);
}

/* The imatrix column holds llama.cpp's two rules: llama-quantize's
 * tensor_requires_imatrix refuses IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S and
 * IQ1_M without one; ggml_quantize_requires_imatrix is true only for IQ2_XXS,
 * IQ2_XS and IQ1_S. No other type needs one. */
static void test_imatrix_need(void)
{
    for (int t = 0; t < SQ_TYPE_COUNT; t++) {
        const sq_type_info *ti = sq_type_info_get(t);
        if (!ti) continue;
        const bool ggml = t == SQ_TYPE_IQ2_XXS || t == SQ_TYPE_IQ2_XS || t == SQ_TYPE_IQ1_S;
        const bool refused = ggml || t == SQ_TYPE_IQ3_XXS || t == SQ_TYPE_IQ2_S || t == SQ_TYPE_IQ1_M;
        const sq_imatrix_need want = ggml ? SQ_IMATRIX_REQUIRED : refused ? SQ_IMATRIX_REFUSED : SQ_IMATRIX_OPTIONAL;
        CHECK_MSG(ti->needs_imatrix == want, "%s: needs_imatrix %d, want %d", ti->name, ti->needs_imatrix, want);
        CHECK(!!ti->needs_imatrix == refused);
    }
}

/* sq_perm_validate: length, range and duplicates, each named. */
static void test_perm_validate(void)
{
    sq_error e = {0};
    const int32_t p[6] = {5, 0, 4, 1, 3, 2};
    CHECK_INT(sq_perm_validate(p, 6, 6, &e), SQ_OK);
    CHECK_INT(sq_perm_validate(p, 6, 7, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "permutation has 6 entries, but the tensor has 7 columns");
    const int32_t dup[4] = {1, 0, 1, 3};
    CHECK_INT(sq_perm_validate(dup, 4, 4, &e), SQ_EINVAL);
    CHECK_CONTAINS(e.msg, "permutation index 2: value 1 is a duplicate (already at index 0)");
    const int32_t neg[3] = {0, -1, 2};
    CHECK_INT(sq_perm_validate(neg, 3, 3, &e), SQ_ERANGE);
    CHECK_CONTAINS(e.msg, "permutation index 1: value -1 is out of range 0..2");
    CHECK_INT(sq_perm_validate(NULL, 3, 3, &e), SQ_EINVAL);
}

/* sq_buf: growable text, and the fixed snprintf-style kind that counts what
 * does not fit; sq_grow_array doubles and keeps the contents. */
static void test_buf(void)
{
    sq_buf b = {0};
    CHECK(sq_buf_str(&b, "ab") && sq_buf_add(&b, "cdef", 2) && sq_buf_printf(&b, "-%d-", 42));
    CHECK_STR(b.p, "abcd-42-");
    CHECK_INT(b.n, 8);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(sq_buf_printf(&b, "%s|", big));
    CHECK_INT(b.n, 8 + 999 + 1);
    CHECK(b.p[b.n] == 0 && b.p[b.n - 1] == '|' && !b.failed);
    sq_buf_free(&b);
    CHECK(b.p == NULL && b.n == 0);
    CHECK(sq_buf_add(&b, "", 0) && b.p && b.p[0] == 0);
    sq_buf_free(&b);

    char mem[6];
    sq_buf f = sq_buf_fixed(mem, sizeof mem);
    CHECK(sq_buf_str(&f, "abc") && sq_buf_printf(&f, "%d", 12345) && sq_buf_str(&f, "z"));
    CHECK_INT(f.n, 9); /* the length the whole text needs */
    CHECK_STR(mem, "abc12");
    sq_buf_free(&f); /* no-op */
    sq_buf none = sq_buf_fixed(NULL, 0);
    CHECK(sq_buf_printf(&none, "%s", "hello") && none.n == 5);

    size_t cap = 0;
    int *a = NULL;
    for (int i = 0; i < 100; i++) {
        int *na = sq_grow_array(a, &cap, (size_t)i + 1, sizeof *a);
        CHECK(na != NULL);
        if (!na) break;
        a = na;
        a[i] = i;
    }
    CHECK(cap >= 100 && cap <= 128);
    bool ok = true;
    for (int i = 0; a && i < 100; i++) ok = ok && a[i] == i;
    CHECK(ok);
    size_t cap2 = cap;
    CHECK(sq_grow_array(a, &cap2, SIZE_MAX / 2, sizeof *a) == NULL && cap2 == cap);
    free(a);
}

int main(void)
{
    RUN(test_error);
    RUN(test_fp16);
    RUN(test_types);
    RUN(test_mixed_geometry);
    RUN(test_imatrix_need);
    RUN(test_perm_validate);
    RUN(test_buf);
    return harness_finish("base");
}
