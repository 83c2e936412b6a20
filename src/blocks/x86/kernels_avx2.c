/*
 * kernels_avx2.c — avx2 kernels (being written); registered only when the CPU has avx2.
 */
#include "../kernels.h"

void sq__register_avx2(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
