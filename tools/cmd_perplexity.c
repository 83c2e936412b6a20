/*
 * cmd_perplexity.c — sq perplexity (not built yet: this placeholder says so and fails).
 */
#include <stdio.h>

#include "cmds.h"

int sq_cmd_perplexity(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sq perplexity: not available in this build yet\n");
    return 2;
}
