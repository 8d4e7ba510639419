/*
 * fuzz_path.c — libFuzzer target for the request-path normalizer that both
 * auth and routing use (qd_api_normalize_path in src/api/api.c). Whatever
 * it accepts must be canonical: starts with '/', no empty, "." or ".."
 * segment, no trailing '/', and — when decoding left no '%' or '?' —
 * normalizing it again changes nothing. So no spelling of a path reaches
 * a route the canonical form would not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

static int canonical(const char *s)
{
    if (s[0] != '/')
        return 0;
    if (!s[1])
        return 1;
    for (const char *p = s; *p;) {
        const char *seg = p + 1, *e = strchr(seg, '/');
        size_t n = e ? (size_t)(e - seg) : strlen(seg);
        if (n == 0 || (n == 1 && seg[0] == '.') ||
            (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        p = seg + n;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char out[1024], again[1024];
    if (qd_api_normalize_path(in, out, sizeof out) == 0) {
        if (strlen(out) >= sizeof out || !canonical(out))
            __builtin_trap();
        if (!strpbrk(out, "%?")) {
            if (qd_api_normalize_path(out, again, sizeof again) ||
                strcmp(out, again))
                __builtin_trap();
        }
    }
    free(in);
    return 0;
}
