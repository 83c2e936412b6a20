/*
 * cmd_inspect.c — sq inspect (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq inspect: not available in this build yet\n");
    return 2;
}
