/*
 * sq.c — the single binary: dispatches "sq NAME ..." to tools/cmd_NAME.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq/blocks.h"

#include "cmds.h"

#define SQ_VERSION "0.1.0"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"quantize", sq_cmd_quantize, "quantize a GGUF model (llama-quantize interface) with SmarterQuant tensors"},
    {"run", sq_cmd_run, "generate text with a model"},
    {"perplexity", sq_cmd_perplexity, "perplexity and KL divergence over a text file"},
    {"bench", sq_cmd_bench, "prompt-processing and generation speed"},
    {"serve", sq_cmd_serve, "HTTP server, OpenAI-compatible"},
    {"imatrix", sq_cmd_imatrix, "compute an importance matrix from calibration text"},
    {"plan", sq_cmd_plan, "choose permutations and block types under a size budget"},
    {"inspect", sq_cmd_inspect, "show a GGUF file's header, metadata and tensors"},
    {"tokenize", sq_cmd_tokenize, "tokenize text with a model's vocabulary"},
    {"blocks", sq_cmd_blocks, "block-format workbench: quantize, dequantize, dot, types"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "sq %s — SmarterQuant: mixed precision inside GGUF tensors\n\n", SQ_VERSION);
    fprintf(f, "usage: sq COMMAND [options]   (sq COMMAND --help lists its flags)\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-11s %s\n", "help", "this text");
    fprintf(f, "  %-11s %s\n", "version", "print the version");
}

/* SQ_ISA caps the kernels' instruction set (src/blocks/dispatch.c); the
 * library ignores a value it does not know, so a typo is reported here. */
static void check_isa_env(void)
{
    const char *want = getenv("SQ_ISA");
    sq_isa isa;
    if (!want || sq_isa_from_name(want, &isa)) return;
    fprintf(stderr, "sq: warning: SQ_ISA='%s' is not one of scalar, avx2, avx512, amx; using %s\n", want,
            sq_isa_name(sq_blocks_isa()));
}

int main(int argc, char **argv)
{
    check_isa_env();
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc >= 3 && !strcmp(argv[1], "help")) {
            for (size_t i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *hargv[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, hargv);
                }
        }
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("sq %s\n", SQ_VERSION);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            sq_progress_set_tool(commands[i].name); /* names the command in a failed write's message */
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "sq: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
