/*
 * kquants.c — scalar reference kernels of the kquants family (being written).
 */
#include "kernels.h"

void sq__register_kquants(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
