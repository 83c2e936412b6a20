/*
 * cmd_plan.c — sq plan (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_plan(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq plan: not available in this build yet\n");
    return 2;
}
