/*
 * cmd_run.c — sq run (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq run: not available in this build yet\n");
    return 2;
}
