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
}

int main(void)
{
    RUN(test_error);
    RUN(test_fp16);
    RUN(test_types);
    RUN(test_mixed_geometry);
    return harness_finish("base");
}
