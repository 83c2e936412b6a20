/*
 * float.c — scalar reference kernels of the float family (being written).
 */
#include "kernels.h"

void sq__register_float(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
