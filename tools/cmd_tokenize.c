/*
 * cmd_tokenize.c — sq tokenize (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq tokenize: not available in this build yet\n");
    return 2;
}
