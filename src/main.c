/*
 * main.c — the `quantd` command: dispatches to a subcommand.
 *
 *   quantd serve | run | tokenize | inspect | bench | quantize | perplexity
 *         | gen-model
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "config.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command_t;

static const command_t commands[] = {
    {"serve", qd_cmd_serve, "run the OpenAI-compatible HTTP server"},
    {"run", qd_cmd_run, "generate text from a prompt"},
    {"tokenize", qd_cmd_tokenize, "print the token ids of stdin"},
    {"inspect", qd_cmd_inspect, "show a model's metadata and tensors"},
    {"bench", qd_cmd_bench, "measure prompt and generation speed"},
    {"quantize", qd_cmd_quantize, "convert a model to a quantized type"},
    {"perplexity", qd_cmd_perplexity, "measure perplexity / KL divergence"},
    {"gen-model", qd_cmd_gen_model, "write a random-weight test model"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd <command> [options]\n\ncommands:\n");
    for (const command_t *c = commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->help);
    fprintf(f, "\n'quantd <command> --help' describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("quantd %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (const command_t *c = commands; c->name; c++)
        if (!strcmp(argv[1], c->name))
            return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "quantd: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
