/*
 * iquants.c — scalar reference kernels of the iquants family (being written).
 */
#include "kernels.h"

void sq__register_iquants(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
