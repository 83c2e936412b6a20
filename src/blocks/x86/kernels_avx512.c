/*
 * kernels_avx512.c — avx512 kernels (being written); registered only when the CPU has avx512.
 */
#include "../kernels.h"

void sq__register_avx512(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
