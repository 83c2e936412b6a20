/*
 * cmd_blocks.c — sq blocks (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_blocks(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq blocks: not available in this build yet\n");
    return 2;
}
