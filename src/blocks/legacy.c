/*
 * legacy.c — scalar reference kernels of the legacy family (being written).
 */
#include "kernels.h"

void sq__register_legacy(sq__kernels table[SQ_TYPE_COUNT])
{
    (void)table;
}
