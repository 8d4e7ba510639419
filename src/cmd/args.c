/*
 * args.c — number parsing shared by the subcommands' option loops.
 */
#include <errno.h>
#include <stdlib.h>

#include "cmd/cmd.h"

int qd__parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int qd__parse_i32(const char *s, long lo, long hi, int32_t *out)
{
    long v;
    if (qd__parse_int(s, lo, hi, &v))
        return -1;
    *out = (int32_t)v;
    return 0;
}
