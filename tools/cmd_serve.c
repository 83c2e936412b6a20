/*
 * cmd_serve.c — sq serve (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq serve: not available in this build yet\n");
    return 2;
}
