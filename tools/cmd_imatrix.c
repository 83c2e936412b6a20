/*
 * cmd_imatrix.c — sq imatrix (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_imatrix(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq imatrix: not available in this build yet\n");
    return 2;
}
