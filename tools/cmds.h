/*
 * tools/cmds.h — the subcommands of build/sq, one file each (tools/cmd_NAME.c).
 * Each takes the arguments after its name (argv[0] is "sq NAME") and returns
 * the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef SQ_TOOLS_CMDS_H
#define SQ_TOOLS_CMDS_H

int sq_cmd_inspect(int argc, char **argv);
int sq_cmd_blocks(int argc, char **argv);
int sq_cmd_quantize(int argc, char **argv);
int sq_cmd_run(int argc, char **argv);
int sq_cmd_perplexity(int argc, char **argv);
int sq_cmd_bench(int argc, char **argv);
int sq_cmd_imatrix(int argc, char **argv);
int sq_cmd_plan(int argc, char **argv);
int sq_cmd_tokenize(int argc, char **argv);
int sq_cmd_serve(int argc, char **argv);

#endif
