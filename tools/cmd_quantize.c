/*
 * cmd_quantize.c — sq quantize (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_quantize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq quantize: not available in this build yet\n");
    return 2;
}
