/*
 * cmd_bench.c — sq bench (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq bench: not available in this build yet\n");
    return 2;
}
