/*
 * cmd.h — the subcommands of the `quantd` program. Each takes the argv that
 * follows its name (argv[0] is the subcommand) and returns a process exit
 * status; only main() calls exit().
 */
#ifndef QUANTD_CMD_H
#define QUANTD_CMD_H

int qd_cmd_run(int argc, char **argv);
int qd_cmd_tokenize(int argc, char **argv);
int qd_cmd_inspect(int argc, char **argv);
int qd_cmd_bench(int argc, char **argv);
int qd_cmd_serve(int argc, char **argv);
int qd_cmd_quantize(int argc, char **argv);
int qd_cmd_perplexity(int argc, char **argv);
int qd_cmd_imatrix(int argc, char **argv);
int qd_cmd_gen_model(int argc, char **argv);

/* Parse a whole decimal integer in [lo, hi] (hi <= INT32_MAX for the i32
 * form): 0, or -1 for junk, trailing characters or out of range. */
#include <stdint.h>
int qd__parse_int(const char *s, long lo, long hi, long *out);
int qd__parse_i32(const char *s, long lo, long hi, int32_t *out);

#endif
