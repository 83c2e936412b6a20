/*
 * test_isa_env.c — the SQ_ISA environment override of the kernel dispatch
 * (src/blocks/dispatch.c): set before the kernel table is first built, it
 * caps the ISA at the one named (never above what the CPU has), so the AVX2
 * path can be run on an AVX-512 machine. The table is built once per
 * process, so this file checks one value: "avx2".
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"

static void test_avx2_cap(void)
{
    CHECK_INT(setenv("SQ_ISA", "avx2", 1), 0);
    const sq_isa got = sq_blocks_isa(); /* first use: builds the table under SQ_ISA */
    const sq_isa cpu = sq_blocks_set_isa(SQ_ISA_AVX512); /* the most this CPU has */
    const char *fs = getenv("SQ_FORCE_SCALAR"); /* takes precedence */
    const bool scalar = fs && *fs && strcmp(fs, "0") != 0;
    const sq_isa want = scalar ? SQ_ISA_SCALAR : cpu < SQ_ISA_AVX2 ? cpu : SQ_ISA_AVX2;
    CHECK_MSG(got == want, "SQ_ISA=avx2 gave %s, expected %s (CPU: %s)", sq_isa_name(got), sq_isa_name(want),
              sq_isa_name(cpu));
    sq_blocks_set_isa(got);
}

int main(void)
{
    RUN(test_avx2_cap);
    return harness_finish("isa_env");
}
